"""ksm.training.runfolder's life cycle: ``--force`` replaces only a run, nothing non-finite is written, and a
run folder whose files were changed behind its run.json is refused by both readers (ksm's and hwsim's)."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import hwsim.workload.runcheck
from hwsim.errors import InputError
from hwsim.fileio.atomic import sha256_file
from hwsim.ksm_sim import main as sim
from hwsim.workload.layers import load_run
from ksm.data.datasets import TaskData
from ksm.training.pipeline import make_spec, run_task
from ksm.training.runfolder import FORMAT, RunError, check_output, check_sequence, read_run, write_run


def _fake_run(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"format": FORMAT}))


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


def test_a_run_with_non_finite_tensors_is_never_written(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="'m' holds nan or inf"):
        write_run(tmp_path / "r", {}, {"m": (torch.tensor([1.0, float("inf")]), "mask")}, force=False)
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def trained_run(backbone_file: Path, small_task: TaskData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-epoch KSM run folder (seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trained") / "run"
    run_task(make_spec("ksm", weights=str(backbone_file), epochs=1, batch_size=64), small_task, out, progress=False)
    torch.set_num_threads(threads)
    return out


def _copy(run: Path, to: Path) -> Path:
    return Path(shutil.copytree(run, to))


def _rewrite(folder: Path, change: Callable[[dict[str, torch.Tensor]], Any]) -> None:
    """Change the tensors and record the new file's sha256, so that only the content check can object."""
    tensors = load_file(str(folder / "masks.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "masks.safetensors"))
    record = json.loads((folder / "run.json").read_text())
    record["files"]["masks.safetensors"]["sha256"] = sha256_file(folder / "masks.safetensors")
    (folder / "run.json").write_text(json.dumps(record))


def _both_refuse(folder: Path, message: str) -> None:
    with pytest.raises(RunError, match=message):
        read_run(folder)
    with pytest.raises(InputError, match=message):
        load_run(folder)


def test_run_json_records_the_masks_sha256(trained_run: Path) -> None:
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
    old = _copy(trained_run, tmp_path / "old")
    record = json.loads((old / "run.json").read_text())
    del record["files"]
    (old / "run.json").write_text(json.dumps(record))
    hwsim.workload.runcheck._warned = False
    with pytest.warns(hwsim.workload.runcheck.UncheckedRunWarning, match="read unchecked"):
        read_run(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_run(old)  # once per process


def test_the_cli_shows_the_unchecked_run_warning_as_one_line(trained_run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
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


# ---------------------------------------------------------------------------------------------
# Fuzzing the ksm-side run-folder reader: it returns or raises RunError, nothing else

_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


def _read_clean(folder: Path) -> None:
    try:
        read_run(folder)
    except RunError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000


@_FUZZ
@given(key=st.sampled_from(["format", "task", "method", "tensors", "train", "files", "backbone"]), value=_JSON)
def test_fuzz_ksm_reader_any_value(trained_run: Path, tmp_path: Path, key: str, value: Any) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = _copy(trained_run, Path(tmp) / "r")
        record = json.loads((folder / "run.json").read_text())
        record[key] = value
        (folder / "run.json").write_text(json.dumps(record))
        _read_clean(folder)


@_FUZZ
@given(raw=st.binary(max_size=300), which=st.sampled_from(["run.json", "masks.safetensors"]))
def test_fuzz_ksm_reader_any_bytes(trained_run: Path, tmp_path: Path, raw: bytes, which: str) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = _copy(trained_run, Path(tmp) / "r")
        (folder / which).write_bytes(raw)
        _read_clean(folder)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"format": ' + "9" * 5000 + "}"])
def test_ksm_reader_bounds_depth_and_integers(trained_run: Path, tmp_path: Path, text: str) -> None:
    folder = _copy(trained_run, tmp_path / "r")
    (folder / "run.json").write_text(text)
    with pytest.raises(RunError, match="deeper|digits"):
        read_run(folder)
