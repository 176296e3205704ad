"""What training reports: one line per epoch in any log, --log csv|tensorboard scalars in the run folder, no
warning from the default job's own settings, and one line naming the extra when torch is missing."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksm.cli.ksm_train import main
from ksm.training.train_log import EPOCH_COLUMNS, LOGS, STEP_COLUMNS, backends, clock, epoch_line

EPOCH_LINE = re.compile(r"^digits ksm epoch (\d+)/(\d+): loss \d+\.\d{4}, train top-1 \d+\.\d\d%, val top-1 -, "
                        r"\d+\.\d img/s, elapsed \d+:\d\d:\d\d, ETA \d+:\d\d:\d\d$")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _crash_at_step(monkeypatch: pytest.MonkeyPatch, crash: int):
    """Make the log raise KeyboardInterrupt when step ``crash`` is logged (an interrupted run); returns the
    original ``ScalarLog.step`` to put back before resuming."""
    from ksm.training import train_log

    original = train_log.ScalarLog.step

    def crashing(self, step, epoch, values):  # the method's own signature
        if step == crash:
            raise KeyboardInterrupt
        original(self, step, epoch, values)

    monkeypatch.setattr(train_log.ScalarLog, "step", crashing)
    return original


def test_epoch_line_says_loss_accuracies_rate_and_times() -> None:
    row = {"epoch": 2, "loss": 0.11204, "train_top1": 0.9618, "seconds": 31.5}
    line = epoch_line("digits", "ksm", row, 3, images=1437, elapsed=81.3, eta=40.2)
    assert line == ("digits ksm epoch 2/3: loss 0.1120, train top-1 96.18%, val top-1 -, 45.6 img/s, "
                    "elapsed 0:01:21, ETA 0:00:40")
    with_val = epoch_line("animals", "piggyback", {**row, "val_top1": 0.5, "phase": "retrain"}, 3, images=10,
                          elapsed=3725, eta=0)
    assert "animals piggyback retrain epoch 2/3" in with_val and "val top-1 50.00%" in with_val
    assert "elapsed 1:02:05, ETA 0:00:00" in with_val and clock(-1) == "0:00:00"


def test_log_backends_repeatable_or_comma_separated() -> None:
    assert backends(["csv"]) == ("csv",)
    assert backends(["tensorboard,csv", "csv"]) == ("csv", "tensorboard")
    with pytest.raises(ValueError, match="'wandb' is not a log"):
        backends(["csv,wandb"])


def test_default_job_draws_no_warning_of_its_own() -> None:
    """The smallest task of `ksm-train --suite default` (digits) at the command's default epochs, batch and
    --max-train gets enough optimiser steps not to be warned about."""
    from ksm.data.datasets import load_digits
    from ksm.training.calibrate import warn_few_steps

    ctx = main.make_context("ksm-train", ["--suite", "default"])
    epochs, batch, cap = ctx.params["epochs"], ctx.params["batch_size"], ctx.params["max_train"]
    images = len(load_digits()["y_train"])
    assert images < cap  # digits is the suite's smallest task, under the cap
    assert warn_few_steps("digits", math.ceil(min(images, cap) / batch), epochs) is None
    assert warn_few_steps("digits", math.ceil(images / batch), 1) is not None  # one epoch of digits still is


def test_tiny_run_logs_one_line_an_epoch_and_csv_scalars(tmp_path: Path, backbone_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """A redirected job (stderr not a terminal: no bar) sees one line per epoch, and --log csv leaves the step
    and epoch scalars in the finished run folder, nothing in its partial folder."""
    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--task", "digits", "--weights", str(backbone_file), "--runs-dir", str(runs),
                                       "--epochs", "2", "--max-train", "64", "--input-size", "32", "--log", "csv"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("digits ksm epoch")]
    assert len(lines) == 2 and all(EPOCH_LINE.match(line) for line in lines), result.stderr
    assert lines[1].startswith("digits ksm epoch 2/2") and lines[1].endswith("ETA 0:00:00")
    assert "\r" not in result.stderr  # no progress bar in a log
    logs = runs / "digits" / LOGS
    steps, epochs = _rows(logs / "steps.csv"), _rows(logs / "epochs.csv")
    assert tuple(steps[0]) == STEP_COLUMNS and tuple(epochs[0]) == EPOCH_COLUMNS
    assert [(int(r["step"]), int(r["epoch"])) for r in steps] == [(1, 1), (2, 1), (3, 2), (4, 2)]  # 64 images / 32
    assert float(steps[0]["lr_body"]) == pytest.approx(1e-3) and float(steps[-1]["lr_head"]) < 1e-3  # cosine
    assert all(math.isfinite(float(r["loss"])) and 0 <= float(r["top1"]) <= 1 for r in steps)
    assert [int(r["epoch"]) for r in epochs] == [1, 2] and [int(r["step"]) for r in epochs] == [2, 4]
    history = __import__("json").loads((runs / "digits" / "run.json").read_text())["metrics"]["history"]
    assert [float(r["loss"]) for r in epochs] == [h["loss"] for h in history]  # the record's own numbers
    assert epochs[0]["val_top1"] == "" and float(epochs[0]["images_per_second"]) > 0
    assert not any(p.name.endswith(".partial") for p in runs.iterdir())
    again = CliRunner().invoke(main, ["--task", "digits", "--weights", str(backbone_file), "--runs-dir", str(runs),
                                      "--epochs", "1", "--max-train", "64", "--input-size", "32", "--force"])
    assert again.exit_code == 0, again.output  # --force replaces a run that holds its logs and config.yaml
    assert not (runs / "digits" / LOGS).exists()  # this run kept no log


def test_a_resumed_run_logs_each_step_once(tmp_path: Path, backbone_file: Path, small_task, one_thread: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted in its second epoch, a run's CSV log holds the steps it took after its checkpoint; resumed,
    the log drops them and reads as an uninterrupted run's: every step and epoch once, in order."""
    from ksm.training import train_log
    from ksm.training.pipeline import make_spec, run_task

    spec = make_spec("ksm", weights=str(backbone_file), epochs=3, batch_size=40)  # 120 images: 3 steps an epoch
    out = tmp_path / "run"
    original = _crash_at_step(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_task(spec, small_task, out, progress=False, log=("csv",))
    partial = out.parent / ".run.partial" / LOGS
    assert [int(r["step"]) for r in _rows(partial / "steps.csv")] == [1, 2, 3, 4]  # step 4: after the checkpoint
    monkeypatch.setattr(train_log.ScalarLog, "step", original)
    run_task(spec, small_task, out, progress=False, resume=True, log=("csv",))
    assert [int(r["step"]) for r in _rows(out / LOGS / "steps.csv")] == list(range(1, 10))
    assert [int(r["epoch"]) for r in _rows(out / LOGS / "epochs.csv")] == [1, 2, 3]


def test_tensorboard_events_in_the_run_folder(tmp_path: Path, backbone_file: Path, small_task, one_thread: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorBoard's own reader sees every step and epoch once, a resumed run's included (purge_step)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ksm.training import train_log
    from ksm.training.pipeline import make_spec, run_task

    spec = make_spec("ksm", weights=str(backbone_file), epochs=2, batch_size=40)  # 3 steps an epoch
    out = tmp_path / "run"
    original = _crash_at_step(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_task(spec, small_task, out, progress=False, log=("tensorboard", "csv"))
    monkeypatch.setattr(train_log.ScalarLog, "step", original)
    run_task(spec, small_task, out, progress=False, resume=True, log=("tensorboard", "csv"))
    events = EventAccumulator(str(out / LOGS / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("step/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events.Scalars("epoch/train_top1")] == [3, 6]
    losses = [float(r["loss"]) for r in _rows(out / LOGS / "steps.csv")]
    assert [e.value for e in events.Scalars("step/loss")] == pytest.approx(losses)  # the same scalars as the CSV


def test_tensorboard_missing_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = CliRunner().invoke(main, ["--task", "digits", "--log", "tensorboard", "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and not (tmp_path / "r").exists()
    assert result.output.strip() == ("Error: --log tensorboard needs the tensorboard package, which is not "
                                     "installed: pip install 'ksm[tensorboard]'")


def test_log_with_a_sequence_method_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--task", "digits", "--method", "packnet", "--log", "csv",
                                       "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--log is written for independent runs only" in result.output


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
import importlib
module, sys.argv = sys.argv[1], [sys.argv[2], *sys.argv[3:]]
importlib.import_module(module).main()
"""


@pytest.mark.parametrize("module, command, extra, args", [
    ("ksm.cli.ksm_train", "ksm-train", "train", ["--suite", "default"]),
    ("ksm.cli.ksm_compare", "ksm-compare", "train", ["--protocol", "smoke"]),
    ("ksm.cli.ksm_export", "ksm-export", "train,export", ["runs/digits"]),
    ("ksm.cli.ksm_train", "ksm-train", "train", ["--help"]),
])
def test_without_torch_one_line_names_the_extra(module: str, command: str, extra: str, args: list[str],
                                                tmp_path: Path) -> None:
    """A torch-free install (pip install .): the entry point, imported and run with torch unimportable."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, module, command, *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stdout == "" and done.stderr.strip().splitlines() == [
        f"Error: {command} needs PyTorch (torch is not installed): pip install 'ksm[{extra}]'"]
