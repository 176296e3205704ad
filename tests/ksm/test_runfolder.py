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
from ksm.training.runfolder import FORMAT, MASKS, RunError, check_output, check_sequence, read_run, write_run


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


def test_force_never_deletes_a_file_ksm_train_did_not_write(tmp_path: Path) -> None:
    """``--out r --force`` on a finished run holding a user's notes deleted them (a hostile input found it):
    --force replaces a run folder only when it holds nothing but its run."""
    _fake_run(tmp_path / "run")
    (tmp_path / "run" / MASKS).write_bytes(b"")
    (tmp_path / "run" / "mynotes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"run: holds 'mynotes.txt', which ksm-train did not write"):
        check_output(tmp_path / "run", force=True)
    assert (tmp_path / "run" / "mynotes.txt").read_text() == "mine"


def test_a_damaged_run_json_is_named_not_called_foreign(tmp_path: Path) -> None:
    """A truncated run.json (``--resume``/``--force`` onto it) is named with what is wrong with it."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"format": "ksm-run/1", "task": ')
    with pytest.raises(RunError, match=r"run/run.json: not valid JSON"):
        check_output(tmp_path / "run", force=True, resume=True)


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


def _edit_record(run: Path, to: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of ``run`` whose run.json is changed (its tensors and their sha256 untouched)."""
    folder = _copy(run, to)
    record = json.loads((folder / "run.json").read_text())
    change(record)
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_tensors_must_name_every_stored_tensor_in_both_readers(trained_run: Path, tmp_path: Path) -> None:
    """One rule, in hwsim.workload.runcheck, for ksm's reader and hwsim's: a tensor stored but left out of
    ``tensors`` is refused (hwsim priced it at an assumed density), and so is one named but not stored."""
    tensors = json.loads((trained_run / "run.json").read_text())["tensors"]
    key = next(k for k in tensors if k.endswith(".binary"))
    left_out = _edit_record(trained_run, tmp_path / "left_out", lambda r: r["tensors"].pop(key))
    _both_refuse(left_out, rf"masks\.safetensors: {key}: stored but not named in run\.json tensors")
    extra = _edit_record(trained_run, tmp_path / "extra",
                         lambda r: r["tensors"].update({"ghost.weight": "batchnorm"}))
    _both_refuse(extra, r"masks\.safetensors: ghost\.weight: missing tensor \(named in run\.json tensors\)")


def test_a_tensor_of_another_shape_than_its_layer_is_refused_by_both_readers(trained_run: Path,
                                                                             tmp_path: Path) -> None:
    """``layers`` against the stored tensors: a layer's in_channels doubled makes its mask the wrong shape."""
    record = json.loads((trained_run / "run.json").read_text())
    i, layer = next((i, x) for i, x in enumerate(record["layers"]) if x["kernel"] == [1, 1] and x["groups"] == 1
                    and x["kind"] == "conv")
    doubled = _edit_record(trained_run, tmp_path / "doubled",
                           lambda r: r["layers"][i].update(in_channels=2 * layer["in_channels"]))
    _both_refuse(doubled, rf"masks\.safetensors: {layer['name']}\.mask: shape .* disagrees with layer "
                          rf"'{layer['name']}' \(run\.json layers\[{i}\]")


@pytest.mark.parametrize(("method", "says"), [
    ("finetune", r"run\.json: tensors\..*\.mask: method 'finetune' stores no 'mask' tensor"),
    ("packnet", r"run\.json: tensors\..*\.mask: method 'packnet' stores no 'mask' tensor"),
    ("feature", r"run\.json: tensors\..*\.mask: method 'feature' stores no 'mask' tensor"),
    ("piggyback", r"run\.json: tensors\..*\.scale: method 'piggyback' stores no 'scale' tensor"),
])
def test_a_swapped_method_is_refused_by_both_readers(trained_run: Path, tmp_path: Path, method: str,
                                                     says: str) -> None:
    _both_refuse(_edit_record(trained_run, tmp_path / method, lambda r: r.update(method=method)), says)


@pytest.mark.parametrize("method", ["ksm", "piggyback", "packnet", "cpg", "finetune", "feature", "lora"])
def test_each_method_stores_the_roles_its_mask_kind_declares(backbone_file: Path, method: str) -> None:
    """The roles a record is checked against (``MaskKind.roles``, ``required``) are the roles each class's
    ``state`` writes, so a run ksm writes is never refused for its own method."""
    from hwsim import catalogue
    from ksm.training.pipeline import build

    model, built, _, _ = build(make_spec(method, weights=str(backbone_file)))
    roles = {role for _, role in built.state(model).values()}
    kind = catalogue.get(method).mask
    assert roles - {"head", "batchnorm"} <= set(kind.roles) and set(kind.required) | {"head"} <= roles
    assert ("batchnorm" in roles) == (built.batchnorm == "task")


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


# ---------------------------------------------------------------------------------------------
# run.json through the one schema: the writer checks what every reader will check


def _record(**changes: Any) -> dict[str, Any]:
    """A minimal valid record (one linear layer, BatchNorm-free) with ``changes``."""
    fc = {"name": "fc", "kind": "linear", "in_channels": 4, "out_channels": 3, "kernel": [1, 1], "stride": [1, 1],
          "padding": [0, 0], "groups": 1, "input_hw": [1, 1], "output_hw": [1, 1], "bias": True}
    record = {"task": "t", "method": "feature", "backbone": {"arch": "toy", "weights": None, "sha256": None},
              "batchnorm": "frozen", "dataset": {"name": "t", "num_classes": 3}, "metrics": {"top1": 0.5},
              "train": {"seed": 0}, "layers": [fc]}
    record.update(changes)
    return record


def _head() -> dict[str, tuple[torch.Tensor, str]]:
    return {"fc.weight": (torch.zeros(3, 4), "head"), "fc.bias": (torch.zeros(3), "head")}


@pytest.mark.parametrize(("changes", "says"), [
    ({"metrics": {"top1": 1.5}}, r"metrics\.top1: must be a fraction in \[0, 1\]"),
    ({"method": "nope"}, r"method: unknown method"),
    ({"dataset": {"name": "t", "num_classes": 4}}, r"dataset\.num_classes is 4 but the stored head has 3"),
    ({"train": {"mask_threshold": float("nan")}}, r"train\.mask_threshold: "),
])
def test_a_record_the_readers_would_refuse_is_never_written(tmp_path: Path, changes: dict, says: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(RunError, match=rf"run\.json \(not written\): {says}"):
        write_run(out, _record(**changes), _head(), force=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no folder, no temporary


def test_a_written_record_reads_back_through_both_readers(tmp_path: Path) -> None:
    out = write_run(tmp_path / "run", _record(), _head(), force=False)
    record, tensors = read_run(out)
    assert record["files"][MASKS]["sha256"] == sha256_file(out / MASKS) and set(tensors) == {"fc.weight", "fc.bias"}
    assert load_run(out).method == "feature" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize(("edit", "says"), [
    (lambda r: r["train"].update(mask_threshold="0.5"), r"train\.mask_threshold: "),
    (lambda r: r["dataset"].update(input_size=[0, 32]), r"dataset\.input_size\[0\]: must be at least 1"),
    (lambda r: r["tensors"].update({"ghost.binary": "binary"}), r"tensors\.ghost\.binary: no layer 'ghost'"),
    (lambda r: r["layers"][0].update(groups=0), r"layers\[0\]\.groups: must be at least 1"),
])
def test_ksm_reader_refuses_what_hwsim_refuses(trained_run: Path, tmp_path: Path, edit: Callable, says: str) -> None:
    folder = _copy(trained_run, tmp_path / "r")
    record = json.loads((folder / "run.json").read_text())
    edit(record)
    (folder / "run.json").write_text(json.dumps(record))
    _both_refuse(folder, rf"run\.json: {says}")


def test_a_full_file_system_is_one_os_error_naming_the_file(tmp_path: Path) -> None:
    """``ulimit -f``: the masks are written from bytes in Python, so the write fails with EFBIG naming the file
    (never a SafetensorError traceback), and nothing is left behind."""
    script = (
        "import resource, json, torch\n"
        "from pathlib import Path\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "from ksm.training.runfolder import write_run\n"
        f"record = json.loads({json.dumps(json.dumps(_record(batchnorm='task')))})\n"  # stores a BatchNorm
        "tensors = {'fc.weight': (torch.zeros(3, 4), 'head'), 'fc.bias': (torch.zeros(3), 'head'),\n"
        "           'bn.weight': (torch.zeros(100000), 'batchnorm')}\n"
        "try:\n"
        f"    write_run(Path({str(tmp_path / 'run')!r}), record, tensors, force=False)\n"
        "except OSError as exc:\n"
        "    print('OSError', exc.errno, exc.filename)\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2])
    assert done.stdout.split() == ["OSError", "27", str(tmp_path / "run" / MASKS)], done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_pending_shared_file_is_reproducible_and_atomic(tmp_path: Path) -> None:
    from ksm.training.runfolder import write_pending_shared

    shared = {"a.weight": torch.arange(6.0).view(2, 3), "a.task": torch.ones(2, 3, dtype=torch.uint8)}
    path, digest = write_pending_shared(tmp_path, 1, shared)
    assert digest == sha256_file(path) and write_pending_shared(tmp_path, 1, shared)[1] == digest
    assert torch.equal(load_file(str(path))["a.weight"], shared["a.weight"])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_int8_results_are_validated_before_run_json_is_replaced(trained_run: Path, tmp_path: Path) -> None:
    from ksm.deploy.int8_results import record_int8

    folder = _copy(trained_run, tmp_path / "r")
    before = (folder / "run.json").read_bytes()
    with pytest.raises(RunError, match=r"run\.json \(not written\): metrics\.int8\.top1: must be a fraction"):
        record_int8(folder, {"top1": 93.5})  # a percentage where a fraction belongs
    assert (folder / "run.json").read_bytes() == before
    record_int8(folder, {"top1": 0.935, "on_the_fly_top1": 0.93})
    assert load_run(folder).top1_int8 == 0.935
