"""Hostile but realistic input: nothing of the user's removed, nothing silently wrong (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksm.cli.ksm_train import main
from ksm.training.runfolder import FORMAT, RunError, check_output, check_sequence


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


@pytest.mark.parametrize("option", ["--lr-mask", "--lr-head", "--threshold", "--mask-init", "--beta", "--temperature",
                                    "--prune-ratio", "--grow-step", "--target-accuracy"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_options_are_refused(tmp_path: Path, option: str, value: str) -> None:
    result = CliRunner().invoke(main, ["--task", "digits", option, value, "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "is not a finite number" in result.output and option in result.output
    assert not (tmp_path / "r").exists()


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(
        backbone_file: Path, small_task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    import torch
    from torch.nn import functional

    import ksm.training.loop
    from ksm.training.pipeline import make_spec, run_task
    from ksm.training.runfolder import partial_dir
    from ksm.checks import NonFiniteLoss

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


def test_a_run_with_non_finite_tensors_is_never_written(tmp_path: Path) -> None:
    import torch

    from ksm.training.runfolder import write_run

    with pytest.raises(RunError, match="'m' holds nan or inf"):
        write_run(tmp_path / "r", {}, {"m": (torch.tensor([1.0, float("inf")]), "mask")}, force=False)
    assert not (tmp_path / "r").exists()


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


def _spec(backbone_file: Path, **changes):
    from ksm.methods.base import MaskConfig
    from ksm.training.pipeline import make_spec

    mask = MaskConfig(**changes.pop("mask", {}))
    return make_spec("ksm", weights=str(backbone_file), epochs=2, batch_size=32, seed=3, mask=mask, **changes)


def test_sigkill_then_resume_is_bit_identical(backbone_file: Path, small_task, tmp_path: Path,
                                              one_thread: None) -> None:
    import subprocess
    import sys

    import torch

    from ksm.training.pipeline import run_task
    from ksm.training.runfolder import partial_dir, read_run

    out = tmp_path / "killed"
    script = _KILLED_RUN.format(weights=str(backbone_file), out=str(out))
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False)
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


@pytest.mark.parametrize(("changes", "key"), [({"mask": {"threshold": 0.01}}, "spec.mask.threshold"),
                                              ({"soft": False}, "spec.soft"),
                                              ({"batchnorm": "frozen"}, "spec.batchnorm"),
                                              ({"mask": {"init": 0.02}}, "spec.mask.init"),
                                              ({"lr_head": 0.01}, "lr_head"),
                                              ("dataset", "dataset.train_size")])
def test_resume_refuses_any_other_setting(backbone_file: Path, small_task, other_task, tmp_path: Path,
                                          one_thread: None, changes, key: str) -> None:
    from ksm.training.pipeline import run_task
    from ksm.training.runfolder import partial_dir

    class Stop(Exception):
        pass

    def stop(epoch: int) -> None:
        raise Stop

    out = tmp_path / "run"
    with pytest.raises(Stop):
        run_task(_spec(backbone_file), small_task, out, progress=False, on_epoch=stop)
    data = small_task
    if changes == "dataset":
        from ksm.data.datasets import TaskData

        data = TaskData(**{**small_task.__dict__, "sizes": {**small_task.sizes, "train": 100}})
        changes = {}
    with pytest.raises(ValueError, match=rf"{key}") as caught:
        run_task(_spec(backbone_file, **changes), data, out, progress=False, resume=True)
    assert "without --resume" in str(caught.value)
    assert (partial_dir(out) / "checkpoint.pt").exists() and not out.exists()


@pytest.fixture(scope="module")
def trained_run(backbone_file: Path, small_task, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-epoch KSM run folder (seconds)."""
    import torch

    from ksm.training.pipeline import make_spec, run_task

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trained") / "run"
    run_task(make_spec("ksm", weights=str(backbone_file), epochs=1, batch_size=64), small_task, out, progress=False)
    torch.set_num_threads(threads)
    return out


def _copy(run: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, to))


def _rewrite(folder: Path, change) -> None:
    """Change the tensors and record the new file's sha256, so that only the content check can object."""
    from safetensors.torch import load_file, save_file

    from hwsim.fileio.atomic import sha256_file

    tensors = load_file(str(folder / "masks.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "masks.safetensors"))
    record = json.loads((folder / "run.json").read_text())
    record["files"]["masks.safetensors"]["sha256"] = sha256_file(folder / "masks.safetensors")
    (folder / "run.json").write_text(json.dumps(record))


def _both_refuse(folder: Path, message: str) -> None:
    from hwsim.errors import InputError
    from hwsim.workload.layers import load_run
    from ksm.training.runfolder import read_run

    with pytest.raises(RunError, match=message):
        read_run(folder)
    with pytest.raises(InputError, match=message):
        load_run(folder)


def test_run_json_records_the_masks_sha256(trained_run: Path) -> None:
    from hwsim.workload.layers import load_run
    from hwsim.fileio.atomic import sha256_file
    from ksm.training.runfolder import read_run

    record = json.loads((trained_run / "run.json").read_text())
    assert record["files"] == {"masks.safetensors": {"sha256": sha256_file(trained_run / "masks.safetensors")}}
    read_run(trained_run)
    load_run(trained_run)


def test_masks_swapped_in_from_another_run_are_refused(trained_run: Path, tmp_path: Path) -> None:
    other = _copy(trained_run, tmp_path / "other")
    _rewrite(other, lambda t: t.update({k: v + 1 for k, v in t.items() if k.endswith(".scale")}))
    victim = _copy(trained_run, tmp_path / "victim")
    (victim / "masks.safetensors").write_bytes((other / "masks.safetensors").read_bytes())
    _both_refuse(victim, r"masks.safetensors: sha256 differs from run.json files.masks.safetensors.sha256")


def test_binary_masks_are_checked_against_the_real_masks(trained_run: Path, tmp_path: Path) -> None:
    key = next(k for k in json.loads((trained_run / "run.json").read_text())["tensors"] if k.endswith(".binary"))
    twos = _copy(trained_run, tmp_path / "twos")
    _rewrite(twos, lambda t: t[key].fill_(2))
    _both_refuse(twos, rf"{key}: a binary mask must hold only 0 and 1")
    flipped = _copy(trained_run, tmp_path / "flipped")
    _rewrite(flipped, lambda t: t[key].view(-1)[:3].apply_(lambda v: 1 - v))
    _both_refuse(flipped, rf"{key}: disagrees with its real-valued mask at threshold")


def test_an_old_run_without_the_hash_is_read_with_one_warning(trained_run: Path, tmp_path: Path) -> None:
    import hwsim.workload.runcheck
    from hwsim.workload.layers import load_run
    from ksm.training.runfolder import read_run

    old = _copy(trained_run, tmp_path / "old")
    record = json.loads((old / "run.json").read_text())
    del record["files"]
    (old / "run.json").write_text(json.dumps(record))
    hwsim.workload.runcheck._warned = False
    with pytest.warns(hwsim.workload.runcheck.UncheckedRunWarning, match="read unchecked"):
        read_run(old)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_run(old)  # once per process


def test_the_cli_shows_the_unchecked_run_warning_as_one_line(trained_run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    import hwsim.workload.runcheck
    from hwsim.ksm_sim import main as sim

    old = _copy(trained_run, tmp_path / "old")
    record = json.loads((old / "run.json").read_text())
    del record["files"]
    (old / "run.json").write_text(json.dumps(record))
    monkeypatch.setattr(hwsim.workload.runcheck, "_warned", False)
    with warnings.catch_warnings():  # the CLI's one-line display is undone with the test
        warnings.simplefilter("always")
        result = CliRunner().invoke(sim, ["--masks", str(old)])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if "read unchecked" in x]
    assert line.startswith("warning: ") and "UncheckedRunWarning" not in result.output and ".py:" not in line


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
def test_writers_never_follow_or_replace_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    import os

    from hwsim.fileio.atomic import UnsafeTarget, atomic_write, atomic_write_with

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    target = tmp_path / "out.json"
    {"symlink": lambda: target.symlink_to(victim), "folder": target.mkdir, "fifo": lambda: os.mkfifo(target)}[kind]()
    with pytest.raises(UnsafeTarget, match="not replaced"):
        atomic_write(target, "new")
    with pytest.raises(UnsafeTarget, match="not replaced"):
        atomic_write_with(target, lambda tmp: tmp.write_text("new"))
    assert victim.read_text() == "keep" and os.path.lexists(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "victim.txt"]  # no temporary left


def test_written_files_have_the_umask_mode(tmp_path: Path) -> None:
    import os
    import stat

    from hwsim.fileio.atomic import atomic_write, new_temp_folder, replace_folder, write_synced

    old = os.umask(0o022)
    try:
        folder = new_temp_folder(tmp_path / "folder")
        write_synced(folder / "c", lambda path: path.write_text("x"))
        replace_folder(folder, tmp_path / "folder")
        for path in (atomic_write(tmp_path / "a", "x"), tmp_path / "folder" / "c"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "folder"]  # no temporary left
    finally:
        os.umask(old)


def test_ksm_sim_json_does_not_replace_a_symlink(tmp_path: Path) -> None:
    from hwsim.ksm_sim import main as sim

    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "out.json").symlink_to(victim)
    result = CliRunner().invoke(sim, ["--network", "mobilenet_v2", "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 1 and "is a symbolic link; not replaced" in result.output, result.output
    assert victim.read_text() == "keep" and (tmp_path / "out.json").is_symlink()


def test_a_second_writer_on_one_run_folder_gets_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from ksm.folder_lock import Busy, folder_lock

    out = tmp_path / "runs" / "digits"
    code = ("import sys, time\nfrom ksm.folder_lock import folder_lock\n"
            f"with folder_lock(__import__('pathlib').Path({str(out)!r})):\n"
            "    print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out), "--weights", "none"])
        assert result.exit_code == 1 and "another ksm-train is writing this folder" in result.output
        assert "Traceback" not in result.output and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with folder_lock(out), pytest.raises(Busy), folder_lock(out):
        pass  # a second lock in one process is refused too (flock is per open file)


# ---------------------------------------------------------------------------------------------
# Fuzzing the ksm-side run-folder reader: it returns or raises RunError, nothing else

_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


def _read_clean(folder: Path) -> None:
    from ksm.training.runfolder import read_run

    try:
        read_run(folder)
    except RunError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000


@_FUZZ
@given(key=st.sampled_from(["format", "task", "method", "tensors", "train", "files", "backbone"]), value=_JSON)
def test_fuzz_ksm_reader_any_value(trained_run: Path, tmp_path: Path, key: str, value) -> None:
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = Path(shutil.copytree(trained_run, Path(tmp) / "r"))
        record = json.loads((folder / "run.json").read_text())
        record[key] = value
        (folder / "run.json").write_text(json.dumps(record))
        _read_clean(folder)


@_FUZZ
@given(raw=st.binary(max_size=300), which=st.sampled_from(["run.json", "masks.safetensors"]))
def test_fuzz_ksm_reader_any_bytes(trained_run: Path, tmp_path: Path, raw: bytes, which: str) -> None:
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = Path(shutil.copytree(trained_run, Path(tmp) / "r"))
        (folder / which).write_bytes(raw)
        _read_clean(folder)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"format": ' + "9" * 5000 + "}"])
def test_ksm_reader_bounds_depth_and_integers(trained_run: Path, tmp_path: Path, text: str) -> None:
    folder = _copy(trained_run, tmp_path / "r")
    (folder / "run.json").write_text(text)
    with pytest.raises(RunError, match="deeper|digits"):
        from ksm.training.runfolder import read_run

        read_run(folder)


@pytest.mark.parametrize("content", [b"", b"not an image", b"\xff\xd8\xff"])
def test_a_bad_image_in_the_test_split_is_refused_before_training(tmp_path: Path, content: bytes) -> None:
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("a", "b"):
            folder = tmp_path / "data" / "flowers" / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "data" / "flowers" / "test" / "b" / "1.png").write_bytes(content)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--task", "flowers", "--data-root", str(tmp_path / "data"), "--runs-dir",
                                       str(runs), "--weights", "none", "--input-size", "16", "--no-progress"])
    assert result.exit_code == 1 and "test/b/1.png: not a readable image" in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())


# ---------------------------------------------------------------------------------------------
# Bad input per command, table-driven: one line, non-zero exit, no traceback, nothing half-written
@pytest.fixture(scope="module")
def digits_run(backbone_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built-in-task run trained through ksm-train (seconds): what ksm-export can re-load data for."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("digits") / "digits"
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out), "--weights", str(backbone_file),
                                       "--epochs", "1", "--max-train", "40", "--input-size", "32", "--no-progress"])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


def _sequence_with_empty_shared(run: Path, tmp: Path) -> Path:
    folder = _copy(run, tmp / "packnet" / "digits")
    record = json.loads((folder / "run.json").read_text())
    record["sequence"] = {"position": 1, "tasks": ["digits"], "shared": "../shared.safetensors"}
    (folder / "run.json").write_text(json.dumps(record))
    (tmp / "packnet" / "shared.safetensors").write_bytes(b"")
    return folder


BAD_INPUTS = [  # (command, arguments with {tmp}/{run}, the one line expected)
    ("train", ["--task", "digits", "--device", "bogus"], "is not a torch device"),
    ("train", ["--task", "digits", "--device", "cuda:7"], "CUDA device"),
    ("train", ["--task", "digits", "--runs-dir", "{tmp}/r", "--max-train", "20"], "results.md: is a folder"),
    ("train", ["--task", "../escape"], "is not a task name"),
    ("train", ["--task", "digits", "--lr-mask", "nan"], "is not a finite number"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/afile"], "exists and is not a folder"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/c", "--device", "bogus"], "is not a torch device"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/c", "--variant", "ksm"], "at least two variants"),
    ("export", ["{run}", "--onnx", "{tmp}/afile/x.onnx"], "afile"),
    ("export", ["{tmp}/packnet/digits", "--onnx", "{tmp}/p.onnx"], "shared.safetensors: not a readable safetensors"),
    ("export", ["{run}", "--table-file", "{tmp}/d", "--int8"], "is a directory"),
    ("sim", ["--network", "mobilenet_v2", "--json", "{tmp}/d"], "is a directory"),
    ("sim", ["--masks", "{tmp}/d"], "not a run folder"),  # nothing to cost is not a success
    ("sim", ["--network", "mobilenet_v2", "--profile", "{tmp}/p.yaml"], "is a folder, not a file"),
    ("export", ["{run}", "--int8", "--table-file", "{tmp}/link", "--out-dir", "{tmp}/ex"], "symbolic link"),
    ("export", ["{tmp}/linked", "--int8", "--out-dir", "{tmp}/ex"], "linked/run.json: is a symbolic link"),
    ("export", ["{tmp}/negative", "--pack", "{tmp}/n.ksmtask"], "dataset.num_classes -10 is not a positive integer"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp1", "--report", "{tmp}/rep"], "metrics.selection.role: missing key"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp2", "--report", "{tmp}/rep"], "no finished comparison runs"),
]


@pytest.mark.parametrize(("command", "args", "message"), BAD_INPUTS)
def test_bad_input_per_command(digits_run: Path, tmp_path: Path, command: str, args: list[str], message: str) -> None:
    from hwsim.ksm_sim import main as sim
    from ksm.cli.ksm_compare import main as compare
    from ksm.cli.ksm_export import main as export

    (tmp_path / "afile").write_text("mine")
    (tmp_path / "d").mkdir()
    (tmp_path / "r" / "results.md").mkdir(parents=True)
    (tmp_path / "p.yaml").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "afile")
    for name, text in (("cmp1", '{"task": "digits", "metrics": {"selection": {"variant": "ksm"}}}'), ("cmp2", "[1, 2]")):
        (tmp_path / name / "x").mkdir(parents=True)
        (tmp_path / name / "x" / "run.json").write_text(text)
    _sequence_with_empty_shared(digits_run, tmp_path)
    linked = _copy(digits_run, tmp_path / "linked")  # run.json a symlink to a file elsewhere
    (tmp_path / "elsewhere.json").write_bytes((linked / "run.json").read_bytes())
    (linked / "run.json").unlink()
    (linked / "run.json").symlink_to(tmp_path / "elsewhere.json")
    negative = _copy(digits_run, tmp_path / "negative")
    record = json.loads((negative / "run.json").read_text())
    record["dataset"]["num_classes"] = -10
    (negative / "run.json").write_text(json.dumps(record))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    run_before = {p.name: p.read_bytes() for p in digits_run.iterdir()}
    cli = {"train": main, "compare": compare, "export": export, "sim": sim}[command]
    extra = ["--weights", "none"] if command == "train" else []
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path, run=digits_run) for a in args] + extra)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    assert {p.name: p.read_bytes() for p in digits_run.iterdir()} == run_before


def test_a_failed_export_check_leaves_no_onnx(digits_run: Path, tmp_path: Path) -> None:
    from ksm.deploy.onnx_export import ExportError
    from ksm.deploy.run_export import export_run

    with pytest.raises(ExportError):
        export_run(digits_run, tmp_path / "x.onnx", tolerance=1e-30)
    assert not any(tmp_path.iterdir())
