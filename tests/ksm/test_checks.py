"""ksm.checks as ksm-train meets it: a task name never leaves ``--runs-dir``, and a float option is
never nan or inf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _folder(root: Path, classes: tuple[str, ...] = ("a", "b")) -> Path:
    """DIR/flowers/{train,test}/<class>/<i>.png, three 8×8 images each."""
    from PIL import Image

    for split in ("train", "test"):
        for cls in classes:
            (root / "flowers" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "flowers" / split / cls / f"{i}.png")
    return root


def _one_class(root: Path) -> None:
    _folder(root, ("a",))


def _loop(root: Path) -> None:
    (_folder(root) / "flowers" / "train" / "b" / "up").symlink_to("..")


def _self_link(root: Path) -> None:
    (_folder(root) / "flowers" / "train" / "c").symlink_to("c")


def _half_written(root: Path) -> None:
    """A JPEG cut after its header: ``verify`` passed it, and the test split failed after all the training."""
    import numpy as np
    from PIL import Image

    image = _folder(root) / "flowers" / "test" / "a" / "2.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    image.write_bytes(image.read_bytes()[:1500])  # of 3,093 bytes


@pytest.mark.parametrize(("build", "named"), [(_one_class, "flowers/train: 1 class folder(s)"),
                                              (_loop, "train/b/up: a link to"),
                                              (_self_link, "train/c: a symbolic link that loops"),
                                              (_half_written, "test/a/2.jpg: not a readable image")])
def test_a_bad_data_folder_is_one_line_before_training(tmp_path: Path, build: Any, named: str) -> None:
    build(tmp_path / "data")
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--task", "flowers", "--data-root", str(tmp_path / "data"),
                                       "--runs-dir", str(runs), "--weights", "none", "--input-size", "16",
                                       "--epochs", "1", "--no-progress"])
    assert result.exit_code == 1 and named in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())
