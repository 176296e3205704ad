"""ksm.training.loop's checkpoints: a nan loss stops training keeping the last one, a killed run resumes
bit-identically from it, and a resume with any other setting is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional

import ksm.training.loop
from ksm.checks import NonFiniteLoss
from ksm.data.datasets import TaskData
from ksm.methods.base import MaskConfig
from ksm.training.pipeline import RunSpec, make_spec, run_task
from ksm.training.runfolder import partial_dir, read_run


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(
        backbone_file: Path, small_task: TaskData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        one_thread: None) -> None:
    calls = {"n": 0}
    steps = -(-small_task.sizes["train"] // 32)

    def poisoned(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = functional.cross_entropy(logits, y)
        return loss * float("nan") if calls["n"] == steps + 2 else loss

    monkeypatch.setattr(ksm.training.loop, "F", type("F", (), {"cross_entropy": staticmethod(poisoned)}))
    spec = make_spec("ksm", weights=str(backbone_file), epochs=2, batch_size=32)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"digits_small ksm: epoch 2, step 2: the loss is nan"):
        run_task(spec, small_task, out, progress=False)
    assert not out.exists()
    saved = torch.load(partial_dir(out) / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 0 and all(torch.isfinite(v).all() for v in saved["state"].values())
    monkeypatch.undo()
    # nan before the first checkpoint: no partial folder left to block a retry
    calls["n"] = 0
    monkeypatch.setattr(ksm.training.loop, "F", type("F", (), {"cross_entropy": staticmethod(poisoned)}))
    spec1 = make_spec("ksm", weights=str(backbone_file), epochs=1, batch_size=32)
    calls["n"] = steps  # the 2nd call of the first epoch is poisoned
    with pytest.raises(NonFiniteLoss, match="epoch 1, step 2"):
        run_task(spec1, small_task, tmp_path / "other", progress=False)
    assert not partial_dir(tmp_path / "other").exists() and not (tmp_path / "other").exists()


_KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from ksm.data.datasets import array_task, load_digits, resize_gray, stratified_split
from ksm.training.pipeline import make_spec, run_task
raw = load_digits()  # the small_task fixture of conftest.py
tr, _ = stratified_split(raw["y_train"], 120, 0)
te, _ = stratified_split(raw["y_test"], 60, 0)
arrays = {{"x_train": resize_gray(raw["x_train"][tr], (32, 32)), "y_train": raw["y_train"][tr],
          "x_test": resize_gray(raw["x_test"][te], (32, 32)), "y_test": raw["y_test"][te]}}
task = array_task("digits_small", arrays, (32, 32), "sklearn digits subset", num_classes=10)
spec = make_spec("ksm", weights={weights!r}, epochs=2, batch_size=32, seed=3)
run_task(spec, task, __import__("pathlib").Path({out!r}), progress=False,
         on_epoch=lambda e: os.kill(os.getpid(), signal.SIGKILL) if e == 0 else None)
"""


def _spec(backbone_file: Path, **changes) -> RunSpec:
    mask = MaskConfig(**changes.pop("mask", {}))
    return make_spec("ksm", weights=str(backbone_file), epochs=2, batch_size=32, seed=3, mask=mask, **changes)


def test_sigkill_then_resume_is_bit_identical(backbone_file: Path, small_task: TaskData, tmp_path: Path,
                                              one_thread: None) -> None:
    out = tmp_path / "killed"
    script = _KILLED_RUN.format(weights=str(backbone_file), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists() and (partial_dir(out) / "checkpoint.pt").exists()
    first_wall = torch.load(partial_dir(out) / "checkpoint.pt", weights_only=True)["wall_seconds"]
    assert first_wall > 0
    run_task(_spec(backbone_file), small_task, out, progress=False, resume=True)
    straight = tmp_path / "straight"
    run_task(_spec(backbone_file), small_task, straight, progress=False)
    (ra, a), (rb, b) = read_run(straight), read_run(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ra["metrics"]["top1"] == rb["metrics"]["top1"]
    assert rb["train"]["wall_seconds"] > first_wall  # counts the killed process too
    assert "earlier_wall_seconds" not in rb["metrics"]


def _stopped_after_one_epoch(backbone_file: Path, data: TaskData, out: Path) -> Path:
    """``out``, whose run was interrupted after its first epoch's checkpoint."""
    class Stop(Exception):
        pass

    def stop(epoch: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_task(_spec(backbone_file), data, out, progress=False, on_epoch=stop)
    return out


@pytest.mark.parametrize(("changes", "key"), [({"mask": {"threshold": 0.01}}, "spec.mask.threshold"),
                                              ({"soft": False}, "spec.soft"),
                                              ({"batchnorm": "frozen"}, "spec.batchnorm"),
                                              ({"mask": {"init": 0.02}}, "spec.mask.init"),
                                              ({"lr_head": 0.01}, "lr_head"),
                                              ("dataset", "dataset.train_size")])
def test_resume_refuses_any_other_setting(backbone_file: Path, small_task: TaskData, other_task: TaskData,
                                          tmp_path: Path, one_thread: None, changes: dict | str,
                                          key: str) -> None:
    out = _stopped_after_one_epoch(backbone_file, small_task, tmp_path / "run")
    data = small_task
    if changes == "dataset":
        data = TaskData(**{**small_task.__dict__, "sizes": {**small_task.sizes, "train": 100}})
        changes = {}
    with pytest.raises(ValueError, match=rf"{key}") as caught:
        run_task(_spec(backbone_file, **changes), data, out, progress=False, resume=True)
    assert "without --resume" in str(caught.value)
    assert (partial_dir(out) / "checkpoint.pt").exists() and not out.exists()


@pytest.mark.parametrize("keep", [0, 0.5])
def test_a_truncated_checkpoint_on_resume_is_one_line(backbone_file: Path, small_task: TaskData,
                                                      tmp_path: Path, one_thread: None, keep: float) -> None:
    out = _stopped_after_one_epoch(backbone_file, small_task, tmp_path / "run")
    checkpoint = partial_dir(out) / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:int(keep * checkpoint.stat().st_size)])  # was a traceback
    with pytest.raises(ValueError, match=r"checkpoint\.pt: not a readable checkpoint \(truncated") as caught:
        run_task(_spec(backbone_file), small_task, out, progress=False, resume=True)
    assert "\n" not in str(caught.value) and "without --resume" in str(caught.value)
