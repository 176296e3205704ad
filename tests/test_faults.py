"""Faults every command survives: a full disk, a file size limit (``ulimit -f``), a read-only folder, SIGKILL.

A failed write is one line naming the file, a non-zero exit, no traceback, no temporary left and the previous
output intact, whichever library wrote the file (json, matplotlib, pyarrow, safetensors, onnx, torch). A killed
``ksm-train`` continues with ``--resume`` to the result an uninterrupted run has; a killed ``ksm-sim --report`` or
``ksm-explore`` leaves no folder, and its rerun sweeps the dead process's temporaries and succeeds.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from hwsim.explore.ksm_explore import main as explore
from hwsim.fileio.atomic import atomic_write_with, new_temp_folder, published_path, write_synced
from hwsim.fileio.output_guard import build_folder, one_line_os_errors, os_error_line, write_marker
from hwsim.ksm_sim import main as sim
from ksm.cli.ksm_compare import main as compare
from ksm.cli.ksm_export import main as export
from ksm.cli.ksm_train import main as train

LIMIT = 4096  # bytes: run.json-sized files pass, no figure, table, task file, model or checkpoint does


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """``ulimit -f`` on this process: a write past ``limit`` bytes fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``, hidden ones included: a file's sha256, ``dir`` for a folder."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def one_line(result: Result, reason: str, where: str) -> str:
    """Assert a command failed with exactly one ``Error:`` line naming ``where`` and ``reason``, no traceback."""
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(errors) == 1 and where in errors[0] and reason in errors[0], result.output
    assert "Traceback" not in result.output
    return errors[0]


# ---- the atomic writer: whatever a writer library raises is one OSError naming the target -----------------


def _torch_like(tmp: Path) -> None:
    """A writer that loses the errno, as torch's zip writer does (``file write failed``)."""
    try:
        tmp.write_bytes(b"x" * (4 * LIMIT))
    except OSError:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from None


def _raiser(exc: BaseException) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise exc

    return write


WRITER_FAILURES = [  # (writer, the errno its target's error carries, the reason's text)
    (_raiser(OSError(errno.ENOSPC, "No space left on device")), errno.ENOSPC, "No space left on device"),
    (_raiser(RuntimeError("Error while serializing: I/O error: File too large (os error 27)")), errno.EFBIG,
     "File too large"),  # safetensors
    (_raiser(OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")), errno.ENOSPC,
     "No space left on device"),  # pyarrow
    (_raiser(TypeError("Object of type set is not JSON serializable")), None,
     "cannot write (TypeError: Object of type set is not JSON serializable)"),  # a writer's own bug
]


@pytest.mark.parametrize(("write", "code", "reason"), WRITER_FAILURES)
def test_any_writer_failure_is_one_oserror_naming_the_target(tmp_path: Path, write: Callable[[Path], None],
                                                             code: int | None, reason: str) -> None:
    (tmp_path / "out.bin").write_bytes(b"previous")
    with pytest.raises(OSError) as info:
        atomic_write_with(tmp_path / "out.bin", write)
    assert (info.value.filename, info.value.errno) == (str(tmp_path / "out.bin"), code)
    assert os_error_line(info.value) == f"{tmp_path / 'out.bin'}: {reason}"
    assert tree(tmp_path) == {"out.bin": hashlib.sha256(b"previous").hexdigest()}  # old file, no temporary

    folder = new_temp_folder(tmp_path / "run")  # a file written inside a folder built whole
    with pytest.raises(OSError) as info:
        write_synced(folder / "masks.safetensors", write)
    assert (info.value.filename, info.value.errno) == (str(tmp_path / "run" / "masks.safetensors"), code)
    assert list(folder.iterdir()) == []


def test_a_lost_errno_is_found_at_the_file_size_limit(tmp_path: Path) -> None:
    """torch says only 'file write failed'; the partial file at ``ulimit -f`` says why."""
    with file_size_limit(LIMIT), pytest.raises(OSError) as info:
        atomic_write_with(tmp_path / "checkpoint.pt", _torch_like)
    assert os_error_line(info.value) == f"{tmp_path / 'checkpoint.pt'}: File too large"
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_keeps_its_name(tmp_path: Path) -> None:
    """A writer that copies a missing source names the source, not the target."""
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_with(tmp_path / "copy", lambda tmp: shutil.copyfile(tmp_path / "missing", tmp))
    assert info.value.filename == str(tmp_path / "missing") and list(tmp_path.iterdir()) == []


def test_errors_inside_a_folder_being_built_name_its_published_path(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with pytest.raises(OSError) as info, build_folder(out, "test") as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "fig.png"))
    assert info.value.filename == str(out / "fig.png") and list(tmp_path.iterdir()) == []
    assert published_path(tmp_path / ".a.123.0123abcd.tmp" / ".b.json.9.deadbeef.tmp") == tmp_path / "a" / "b.json"
    assert published_path(tmp_path / ".hidden.tmp") == tmp_path / ".hidden.tmp"  # not one of ours


def test_a_command_turns_any_oserror_into_one_line() -> None:
    @click.command()
    @one_line_os_errors
    def failing() -> None:
        raise OSError(errno.EROFS, "Read-only file system", "out/.x.json.77.0123abcd.tmp")

    result = CliRunner().invoke(failing, [])
    assert one_line(result, "Read-only file system", "out/x.json") == "Error: out/x.json: Read-only file system"


# ---- every command under every fault ------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A backbone file, a trained run (piggyback: seconds), an explore spec and a finished comparison folder."""
    import torch
    import torchvision

    from ksm.compare.protocol import PROTOCOLS

    root = tmp_path_factory.mktemp("inputs")
    old_cache, os.environ["KSM_CACHE_DIR"] = os.environ.get("KSM_CACHE_DIR"), str(root / "cache")
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), root / "w.pth")
    result = CliRunner().invoke(train, ["--task", "digits", "--method", "piggyback", "--out", str(root / "run"),
                                        "--weights", str(root / "w.pth"), "--epochs", "1", "--max-train", "40",
                                        "--input-size", "32", "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    (root / "spec.yaml").write_text("profiles: [edge_npu]\nworkloads: [{network: alexnet}]\n")
    run = root / "cmp" / "seed0" / "digits-ksm"
    run.mkdir(parents=True)
    (root / "cmp" / "protocol.json").write_text(json.dumps(PROTOCOLS["smoke"].to_json()))
    selection = {"variant": "ksm", "role": "method", "seed": 0, "trials": [{"seconds_per_step": 0.1}],
                 "chosen": {"val_top1": 0.5, "lr_body": 1e-3, "lr_head": 1e-3, "epoch": 1}}
    record = json.loads((root / "run" / "run.json").read_text())  # a real record, as a comparison writes it
    record["train"]["wall_seconds"] = 1.0
    record["metrics"].update(top1=0.5, selection=selection)
    (run / "run.json").write_text(json.dumps(record))
    yield {"root": root, "weights": root / "w.pth", "run": root / "run", "spec": root / "spec.yaml",
           "cmp": root / "cmp"}
    torch.set_num_threads(threads)
    if old_cache is None:
        os.environ.pop("KSM_CACHE_DIR", None)
    else:
        os.environ["KSM_CACHE_DIR"] = old_cache


def _marked(folder: Path, tool: str) -> None:
    """A previous output folder of ``tool``: what a failed rerun must leave as it was."""
    folder.mkdir()
    (folder / "README.md").write_text("previous\n")
    write_marker(folder, tool, ["README.md"])


COMMANDS = {  # name: (command, arguments, the file or folder its failure names, its previous output)
    "sim-json": (sim, ["--network", "alexnet", "--json", "{out}/x.json"], "x.json",
                 lambda out: (out / "x.json").write_text("{}")),
    "sim-report": (sim, ["--masks", "{run}", "--report", "{out}/rep"], "rep",
                   lambda out: _marked(out / "rep", "ksm-sim --report")),
    "explore": (explore, ["{spec}", "-o", "{out}/ex", "-q", "-j", "1"], "ex",
                lambda out: _marked(out / "ex", "ksm-explore")),
    "pack": (export, ["{run}", "--pack", "{out}/t.ksmtask"], "t.ksmtask",
             lambda out: (out / "t.ksmtask").write_bytes(b"previous")),
    "onnx": (export, ["{run}", "--onnx", "{out}/t.onnx"], "t.onnx",
             lambda out: (out / "t.onnx").write_bytes(b"previous")),
    "compare": (compare, ["--report-only", "--out", "{cmp}", "--report", "{out}/crep"], "crep",
                lambda out: _marked(out / "crep", "ksm-compare")),
    "train": (train, ["--task", "digits", "--method", "piggyback", "--out", "{out}/trun", "--weights", "{weights}",
                      "--epochs", "1", "--max-train", "40", "--input-size", "32", "--no-progress", "--threads", "1"],
              ".trun.partial/checkpoint.pt", lambda out: None),  # the first file it writes: epoch 1's checkpoint
}


def invoke(name: str, out: Path, inputs: dict[str, Path]) -> Result:
    command, args, _, _ = COMMANDS[name]
    return CliRunner().invoke(command, [a.format(out=out, **inputs) for a in args])


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_file_size_limit_is_one_line_and_leaves_the_previous_output(tmp_path: Path, inputs: dict[str, Path],
                                                                     name: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    COMMANDS[name][3](out)
    before = tree(out)
    with file_size_limit(LIMIT):
        result = invoke(name, out, inputs)
    one_line(result, "File too large", str(out / COMMANDS[name][2]))
    assert tree(out) == before  # the previous output as it was, no temporary, no partial folder


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only; skipped where mounting is not permitted); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(folder: Path) -> None:
    """Use up every free block of ``folder``'s file system."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        with pytest.raises(OSError) as info:
            while True:
                handle.write(b"\0" * 4096)
    assert info.value.errno == errno.ENOSPC


@pytest.mark.parametrize("name", ["sim-json", "sim-report", "explore", "pack", "compare", "train"])
def test_a_full_disk_is_one_line_and_leaves_the_previous_output(tmpfs: Callable[[str], Path],
                                                               inputs: dict[str, Path], name: str) -> None:
    out = tmpfs("size=1m")
    COMMANDS[name][3](out)
    _fill(out)
    before = tree(out)
    result = invoke(name, out, inputs)
    one_line(result, "No space left on device", str(out / COMMANDS[name][2]))
    assert tree(out) == before


@pytest.mark.parametrize("name", ["sim-json", "sim-report", "explore", "pack", "compare", "train"])
def test_a_read_only_folder_is_one_line_and_leaves_the_previous_output(tmp_path: Path, tmpfs: Callable[[str], Path],
                                                                      inputs: dict[str, Path], name: str) -> None:
    """A read-only tmpfs as root (whom no mode stops); a folder of mode 0555 for anyone else."""
    if os.geteuid() == 0:
        out, reason = tmpfs("size=1m"), "Read-only file system"
    else:
        out, reason = tmp_path / "out", "Permission denied"
        out.mkdir()
    COMMANDS[name][3](out)
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
    else:
        out.chmod(0o555)
    before = tree(out)
    try:
        result = invoke(name, out, inputs)
    finally:
        out.chmod(0o755) if os.geteuid() != 0 else None
    one_line(result, "not writable" if name == "train" else reason, str(out))  # ksm-train refuses before training
    assert tree(out) == before


def test_ksm_train_never_writes_over_its_data_or_weights(tmp_path: Path) -> None:
    """The output guard: a run folder that is, or holds, --data-root or the --weights file is refused up front."""
    data, weights = tmp_path / "data", tmp_path / "runs" / "w.pth"
    (data / "digits").mkdir(parents=True)
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    before = tree(tmp_path)
    for args, message in ((["--data-root", str(data), "--runs-dir", str(data)], "lies inside the input"),
                          (["--data-root", str(data), "--out", str(data)], "is the input"),
                          (["--weights", str(weights), "--out", str(weights.parent)], "holds the input")):
        result = CliRunner().invoke(train, ["--task", "digits", *args])
        assert result.exit_code == 1 and message in result.output, result.output
    assert tree(tmp_path) == before


# ---- SIGKILL at a chosen point ----------------------------------------------------------------------------

KILL_AT_FSYNC = """
import os, re, signal, sys
import hwsim.fileio.atomic as atomic
pattern, after, real, seen = re.compile(sys.argv[1]), int(sys.argv[2]), atomic.fsync_file, []
def fsync_or_die(path):
    if pattern.search(str(atomic.published_path(path))):
        seen.append(path)
        if len(seen) > after:
            os.kill(os.getpid(), signal.SIGKILL)  # the file is written, not yet renamed into place
    real(path)
atomic.fsync_file = fsync_or_die
__import__(sys.argv[3], fromlist=["main"]).main(sys.argv[4:])
"""


def killed(pattern: str, after: int, module: str, args: list[str]) -> None:
    """Run ``module``'s command in a process that SIGKILLs itself on the (``after`` + 1)-th write of a file whose
    published path matches ``pattern``, once the file is written and before it is renamed into place."""
    done = subprocess.run([sys.executable, "-c", KILL_AT_FSYNC, pattern, str(after), module, *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == -signal.SIGKILL, (done.stdout + done.stderr)[-2000:]


def _train_args(out: Path, inputs: dict[str, Path]) -> list[str]:
    """A 3-epoch piggyback run: a mask and optimiser moments in its checkpoint, seconds to train."""
    return ["--task", "digits", "--method", "piggyback", "--out", str(out), "--weights", str(inputs["weights"]),
            "--epochs", "3", "--max-train", "40", "--input-size", "32", "--no-progress", "--threads", "1"]


def _comparable(folder: Path) -> tuple[str, dict]:
    """A run's tensors (the file's sha256) and its record less the wall times."""
    record = json.loads((folder / "run.json").read_text())
    record["train"].pop("wall_seconds")
    record["metrics"].pop("train_seconds")
    for epoch in record["metrics"]["history"]:
        epoch.pop("seconds")
    return hashlib.sha256((folder / "masks.safetensors").read_bytes()).hexdigest(), record


@pytest.mark.slow
def test_a_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """Killed writing epoch 2's checkpoint, then, resumed, killed writing its run folder: the second --resume
    sweeps both dead processes' temporaries and ends where an uninterrupted run ends, tensor for tensor."""
    out, partial = tmp_path / "run", tmp_path / ".run.partial"
    killed(r"/\.run\.partial/checkpoint\.pt$", 1, "ksm.cli.ksm_train", _train_args(out, inputs))
    stale = list(partial.glob(".checkpoint.pt.*.tmp"))  # epoch 2's checkpoint, written, never renamed
    assert not out.exists() and (partial / "checkpoint.pt").exists() and len(stale) == 1

    killed(r"/run/run\.json$", 0, "ksm.cli.ksm_train", [*_train_args(out, inputs), "--resume"])
    assert not out.exists() and not stale[0].exists() and len(list(tmp_path.glob(".run.*.tmp"))) == 1

    result = CliRunner().invoke(train, [*_train_args(out, inputs), "--resume"])
    assert result.exit_code == 0, result.output
    # nothing else left (config.yaml: the resolved options every run records)
    assert sorted(tree(tmp_path)) == ["run", "run/config.yaml", "run/masks.safetensors", "run/run.json"]

    straight = CliRunner().invoke(train, _train_args(tmp_path / "straight", inputs))
    assert straight.exit_code == 0, straight.output
    assert _comparable(out) == _comparable(tmp_path / "straight")


@pytest.mark.parametrize(("name", "module", "last_file"), [("sim-report", "hwsim.ksm_sim", "README.md"),
                                                           ("explore", "hwsim.explore.ksm_explore", "summary.md")])
def test_a_killed_report_leaves_no_folder_and_reruns(tmp_path: Path, inputs: dict[str, Path], name: str, module: str,
                                                     last_file: str) -> None:
    """Killed as the folder's last file is written: no folder; the rerun sweeps the dead temporaries."""
    _, args, output, _ = COMMANDS[name]
    killed(rf"/{output}/{last_file}$", 0, module, [a.format(out=tmp_path, **inputs) for a in args])
    left = [p.name for p in tmp_path.iterdir()]  # the dead process's temporary folder, never published
    assert len(left) == 1 and left[0].startswith(f".{output}.") and left[0].endswith(".tmp")
    result = invoke(name, tmp_path, inputs)
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == [output] and (tmp_path / output / last_file).exists()
