"""Hostile but realistic input: nothing of the user's removed, nothing silently wrong (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksm.cli import main
from ksm.runfolder import FORMAT, RunError, check_output, check_sequence


def _fake_run(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"format": FORMAT}))


@pytest.mark.parametrize("contents", [{"notes.txt": "mine"}, {"run.json": "{}"},
                                      {"run.json": '{"format": "other/1"}'}, {"run.json": "[1]"}])
def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path: Path, contents: dict[str, str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in contents.items():
        (out / name).write_text(text)
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out), "--force", "--weights", "none"])
    assert result.exit_code == 1 and "not a ksm-train run" in result.output
    assert "--force" not in result.output and "Traceback" not in result.output
    assert {p.name: p.read_text() for p in out.iterdir()} == contents


def test_force_replaces_a_run_and_an_empty_folder_is_fine(tmp_path: Path) -> None:
    _fake_run(tmp_path / "run")
    with pytest.raises(RunError, match="--force"):
        check_output(tmp_path / "run", force=False)
    check_output(tmp_path / "run", force=True)
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", force=False)


def test_a_symlinked_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(RunError, match="not a folder"):
        check_output(tmp_path / "link", force=True)


def test_sequence_force_keeps_foreign_task_folders(tmp_path: Path) -> None:
    seq = tmp_path / "packnet"
    (seq / "a").mkdir(parents=True)
    (seq / "a" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="not a ksm-train run"):
        check_sequence(seq, ["a", "b"], force=True, resume=False)
    _fake_run(seq / "b")
    (seq / "a" / "keep.txt").unlink()
    assert check_sequence(seq, ["a", "b"], force=True, resume=False) == 0


@pytest.mark.parametrize("task", ["../x", "a/b", "/abs", "..", ".", ".hidden", "a\\b", ""])
def test_task_names_cannot_leave_the_runs_dir(tmp_path: Path, task: str) -> None:
    runs = tmp_path / "sub" / "runs"
    (tmp_path / "data" / "x").mkdir(parents=True)
    result = CliRunner().invoke(main, ["--task", task, "--data-root", str(tmp_path / "data"), "--runs-dir", str(runs),
                                       "--weights", "none", "--force"])
    assert result.exit_code == 2 and "is not a task name" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
