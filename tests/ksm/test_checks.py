"""ksm.checks as ksm-train meets it: a task name never leaves ``--runs-dir``, and a float option is
never nan or inf."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ksm.cli.ksm_train import main


@pytest.mark.parametrize("task", ["../x", "a/b", "/abs", "..", ".", ".hidden", "a\\b", ""])
def test_task_names_cannot_leave_the_runs_dir(tmp_path: Path, task: str) -> None:
    runs = tmp_path / "sub" / "runs"
    (tmp_path / "data" / "x").mkdir(parents=True)
    result = CliRunner().invoke(main, ["--task", task, "--data-root", str(tmp_path / "data"), "--runs-dir", str(runs),
                                       "--weights", "none", "--force"])
    assert result.exit_code == 2 and "is not a task name" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("option", ["--lr-mask", "--lr-head", "--threshold", "--mask-init", "--beta", "--temperature",
                                    "--prune-ratio", "--grow-step", "--target-accuracy"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_options_are_refused(tmp_path: Path, option: str, value: str) -> None:
    result = CliRunner().invoke(main, ["--task", "digits", option, value, "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "is not a finite number" in result.output and option in result.output
    assert not (tmp_path / "r").exists()
