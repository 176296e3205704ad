"""The run folder's whole life cycle (docs/run-folder.md): check, record, write, read, resume; and sequence folders.

A run is written into a temporary sibling folder and renamed into place, so ``runs/<task>/`` either
holds a complete run or does not exist. Tensors go to ``masks.safetensors`` (readable from numpy
without torch); everything else to ``run.json``, whose record :func:`run_record` builds for every
method. An unfinished run keeps its per-epoch checkpoint in ``.<task>.partial/``.

PackNet and CPG write a *sequence folder*: one run folder per task plus ``shared.safetensors``, the
weights the tasks share. After each task the new shared file is written to a pending name
(``.shared.safetensors.<t>.tmp``), the task folder is written (its ``run.json`` names the pending
file's sha256), then the file is renamed into place; a resumed sequence finishes an interrupted
rename and checks the file against the last finished task before it goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

import ksm
from hwsim.fileio.bounded import read_json
from hwsim.workload.runcheck import check_binaries, check_files, check_record, check_tensors, read_record
from hwsim.fileio.atomic import atomic_write, new_temp_folder, replace_folder, sha256_file, write_synced
from ksm.network.backbones import BackboneSpec
from ksm.data.datasets import TaskData
from ksm.network.geometry import layer_records
from ksm.checks import is_run_folder
from ksm.training.train_log import LOGS  # ksm-train --log: the scalar logs, part of the run when asked for
from ksm.config_file import CONFIG, config_yaml  # the options the run was made with, as ksm-train --config reads them

if TYPE_CHECKING:
    from ksm.methods.base import Method

FORMAT = "ksm-run/1"
RUN_JSON = "run.json"
MASKS = "masks.safetensors"
SHARED = "shared.safetensors"
SHARED_FORMAT = "ksm-shared/1"
MAX_TASKS = 255  # the shared file's task index is a uint8; 0 means free


class RunError(ValueError):
    """A run folder that cannot be read or written; the message names the file."""


# ---------------------------------------------------------------------------------------------
# One run folder
# ---------------------------------------------------------------------------------------------
def partial_dir(out: Path) -> Path:
    """Where an unfinished run keeps its per-epoch checkpoint."""
    return out.parent / f".{out.name}.partial"


def check_output(out: Path, *, force: bool, resume: bool = False) -> None:
    """Refuse to start a run whose result could not be written (or would overwrite one).

    ``force`` replaces only a finished run of this project (a ``run.json`` of :data:`FORMAT`);
    a folder holding anything else is never replaced.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RunError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not is_run_folder(out, FORMAT):
            if (out / RUN_JSON).is_file() and not (out / RUN_JSON).is_symlink():
                # a damaged run of ours (truncated, a field): say what is wrong with it; another tool's file is
                # foreign, below
                data = read_json(out / RUN_JSON, RunError)
                if isinstance(data, dict) and str(data.get("format", "")).startswith(FORMAT.split("/")[0]):
                    read_record(out, RunError)
            raise RunError(f"{out}: holds files that are not a ksm-train run; they are never replaced "
                           f"(choose another --out, or move them away)")
        if not force:
            raise RunError(f"{out}: a finished run is already there (use --force to overwrite it)")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (RUN_JSON, MASKS, LOGS, CONFIG))
        if foreign:  # a user's notes, an export written into the run: --force replaces the folder as a whole
            raise RunError(f"{out}: holds {foreign[0]!r}, which ksm-train did not write; --force replaces only a "
                           f"run folder that holds nothing but its run (move {foreign[0]!r} away first)")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{parent}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise RunError(f"{parent}: not writable")
    if partial_dir(out).exists() and not resume and not force:
        raise RunError(f"{partial_dir(out)}: an interrupted run is there; continue it with --resume "
                       f"or start over with --force")


def drop_empty_partial(out: Path) -> None:
    """Remove the partial folder of a run that stopped before its first checkpoint (it would block a retry),
    with the scalar logs of that first epoch (a retry starts them over)."""
    partial = partial_dir(out)
    if (partial / LOGS).is_dir() and not (partial / "checkpoint.pt").exists():
        shutil.rmtree(partial / LOGS, ignore_errors=True)
    try:
        partial.rmdir()  # only succeeds when empty
    except OSError:
        pass


def versions() -> dict[str, str]:
    """The software a run was trained with (``run.json`` ``train.versions``)."""
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "ksm": ksm.__version__,
            "python": platform.python_version()}


def run_record(data: TaskData, method: Method, model: nn.Module, *, backbone: BackboneSpec, digest: str | None,
               metrics: dict[str, Any], train: dict[str, Any], wall_seconds: float, **extra: Any) -> dict[str, Any]:
    """The ``run.json`` record of a trained task, for every method.

    ``train`` holds the settings recorded under ``train`` (the wall time and versions are added);
    ``extra`` adds top-level keys (a sequence's ``sequence`` and CPG's ``cpg``); the method adds its
    own options (``method_options``) and what it records about the task (``Method.describe``).
    """
    options = method.options()
    return {
        "task": data.name,
        "method": method.name,
        **({"method_options": options} if options else {}),  # what rebuilds the method (LoRA's rank)
        "backbone": {"arch": backbone.arch, "weights": backbone.weights, "sha256": digest},
        "batchnorm": method.batchnorm,
        "dataset": data.describe(),
        "metrics": metrics,
        "train": {**train, "wall_seconds": wall_seconds, "versions": versions()},
        "layers": layer_records(model, data.input_size),
        **method.describe(model),
        **extra,
    }


def write_run(out: Path, record: dict[str, Any], tensors: dict[str, tuple[Tensor, str]], *, force: bool,
              logs: Path | None = None, config: dict[str, Any] | None = None) -> Path:
    """Write ``run.json`` and ``masks.safetensors`` into ``out`` atomically; return ``out``.

    ``logs``: a folder of scalar logs written while the run trained (``ksm-train --log``), copied in as
    ``out/logs`` before the folder is renamed into place, so the finished run holds its whole log.
    ``config``: the command's resolved options, written as ``out/config.yaml`` (``ksm-train --config`` reads it).

    The record is checked against the schema every reader uses (:func:`hwsim.workload.runcheck.check_record`)
    before anything is written, so a writer bug stops here, not when the run is read. A full disk or a file
    size limit is one ``OSError`` naming the file; nothing is left behind.
    """
    check_output(out, force=force, resume=True)
    bad = [k for k, (v, _) in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise RunError(f"{out}: tensor {bad[0]!r} holds nan or inf values; the run is not written")
    masks = save({k: v.detach().contiguous().cpu() for k, (v, _) in tensors.items()}, metadata={"format": FORMAT})
    record = {"format": FORMAT, **record, "tensors": {k: role for k, (_, role) in tensors.items()},
              "files": {MASKS: {"sha256": hashlib.sha256(masks).hexdigest()}}}
    text = json.dumps(record, indent=1) + "\n"
    check_record(json.loads(text), f"{out / RUN_JSON} (not written)", RunError)  # what a reader will see
    tmp = new_temp_folder(out)
    try:
        write_synced(tmp / MASKS, lambda path: path.write_bytes(masks))
        write_synced(tmp / RUN_JSON, lambda path: path.write_text(text, encoding="utf-8"))
        if logs is not None and logs.is_dir():
            _copy_synced(logs, tmp / LOGS)
        if config is not None:
            config_text = config_yaml(config)
            write_synced(tmp / CONFIG, lambda path: path.write_text(config_text, encoding="utf-8"))
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(partial_dir(out), ignore_errors=True)
    return out


def _copy_synced(source: Path, target: Path) -> None:
    """Copy the folder ``source`` (files and sub-folders) to ``target``, each file fsynced."""
    target.mkdir()
    for entry in sorted(source.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            _copy_synced(entry, target / entry.name)
        elif entry.is_file() and not entry.is_symlink():
            write_synced(target / entry.name, lambda path, entry=entry: shutil.copyfile(entry, path))


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(run.json, tensors) of a finished run; ``RunError`` names the file and the problem.

    ``run.json`` is validated by its schema (:class:`hwsim.schemas.run_record.RunRecord`: its tensors' roles
    are its method's) before the tensors are opened; the tensors are then checked against it (sha256, the same
    keys both ways, each of its layer's shape, binary masks) by the same code as ``hwsim``'s reader
    (:mod:`hwsim.workload.runcheck`), so both accept and refuse the same folders.
    """
    folder = Path(folder)
    meta_path, tensor_path = folder / RUN_JSON, folder / MASKS
    for path in (meta_path, tensor_path):
        if not path.exists():
            raise RunError(f"{path}: missing (not a finished run folder)")
    record, run = read_record(folder, RunError)
    check_files(folder, run, RunError)
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError) as exc:
        raise RunError(f"{tensor_path}: not a readable safetensors file ({exc})") from None
    where = str(tensor_path)
    check_tensors(run, {key: tuple(value.shape) for key, value in tensors.items()}, where, RunError)
    check_binaries(run, lambda key: _as_numpy(tensors[key]), where, RunError)
    return record, tensors


def _as_numpy(tensor: Tensor) -> Any:
    """A stored tensor as numpy (a half or bfloat16 real mask as float32, which numpy can compare)."""
    return tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()


def check_backbone(path: Path, record: dict[str, Any], digest: str | None) -> None:
    """Refuse to rebuild a run on other backbone weights than it was trained on."""
    expected = record["backbone"].get("sha256")
    if expected and digest != expected:
        raise RunError(f"{path}: backbone sha256 {expected[:12]}… does not match the weights "
                       f"loaded now ({(digest or 'none')[:12]}…)")


# ---------------------------------------------------------------------------------------------
# Sequence folders (PackNet, CPG)
# ---------------------------------------------------------------------------------------------
def finished_tasks(folder: Path, tasks: list[str]) -> list[dict[str, Any]]:
    """run.json of the finished tasks, which must be a prefix of ``tasks``."""
    records = []
    for i, task in enumerate(tasks):
        path = folder / task / RUN_JSON
        if not path.exists():
            later = [t for t in tasks[i + 1:] if (folder / t / RUN_JSON).exists()]
            if later:
                raise RunError(f"{folder / later[0]}: finished, but the earlier task {task!r} of the sequence is not")
            break
        records.append(read_run(folder / task)[0])
    return records


def check_sequence(folder: Path, tasks: list[str], *, force: bool, resume: bool) -> int:
    """Refuse a sequence that could not be written; return how many tasks are already finished."""
    if not tasks:
        raise ValueError("a sequence needs at least one task")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"a task appears twice in the sequence {tasks}")
    if len(tasks) > MAX_TASKS:
        raise ValueError(f"at most {MAX_TASKS} tasks per sequence (uint8 task index), got {len(tasks)}")
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder}: exists and is not a folder")
    if force:
        for task in tasks:
            if (folder / task).is_symlink() or ((folder / task).exists() and (
                    not (folder / task).is_dir() or any((folder / task).iterdir()))
                    and not is_run_folder(folder / task, FORMAT)):
                raise RunError(f"{folder / task}: holds files that are not a ksm-train run; they are never "
                               f"replaced (choose another folder, or move them away)")
        return 0
    if not folder.exists():
        return 0
    done = finished_tasks(folder, tasks)
    if (done or (folder / SHARED).exists()) and not resume:
        raise RunError(f"{folder}: a sequence is already there ({len(done)} of {len(tasks)} tasks finished); "
                       f"continue it with --resume or start over with --force")
    return len(done)


def open_sequence(folder: Path, tasks: list[str], *, force: bool, resume: bool) -> list[dict[str, Any]]:
    """Make ``folder`` ready for the sequence ``tasks``; return the records of the tasks already finished."""
    n_done = check_sequence(folder, tasks, force=force, resume=resume)
    folder.mkdir(parents=True, exist_ok=True)
    if force:
        for task in tasks:
            shutil.rmtree(folder / task, ignore_errors=True)
        (folder / SHARED).unlink(missing_ok=True)
    return finished_tasks(folder, tasks)[:n_done] if n_done else []


def pending_shared(folder: Path, position: int) -> Path:
    """Where task ``position`` leaves the new shared file until its task folder is written."""
    return folder / f".{SHARED}.{position}.tmp"


def write_pending_shared(folder: Path, position: int, tensors: dict[str, Tensor]) -> tuple[Path, str]:
    """Write the shared weights task ``position`` leaves to its pending file; return (the file, its sha256)."""
    path = pending_shared(folder, position)
    # one metadata key: safetensors writes several in no fixed order, and the file's sha256 must be reproducible
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata={"format": SHARED_FORMAT})
    atomic_write(path, data)  # a full disk or a file size limit: one OSError naming the file, no partial file
    return path, hashlib.sha256(data).hexdigest()


def write_sequence_task(folder: Path, record: dict[str, Any], tensors: dict[str, tuple[Tensor, str]],
                        pending: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a finished task's run folder, then put its pending shared file in place; return the record as read back."""
    write_run(folder / record["task"], record, tensors, force=True, config=config)
    os.replace(pending, folder / SHARED)
    return read_run(folder / record["task"])[0]


def close_sequence(folder: Path) -> None:
    """Remove pending shared files that interrupted writes left and a resume did not need."""
    for stale in folder.glob(f".{SHARED}.*.tmp"):
        stale.unlink(missing_ok=True)


def restore_sequence(folder: Path, last: dict[str, Any], tasks: list[str], settings: dict[str, Any],
                     digest: str | None) -> dict[str, Tensor]:
    """Check that a half-finished sequence goes on as it began and return the shared tensors its last task left.

    An interrupted rename of the shared file (between the task folder and the file) is finished here.
    """
    seq = last["sequence"]  # validated by read_run: tasks, position, shared are there
    where = folder / last["task"] / RUN_JSON
    if not seq.get("shared_sha256"):
        raise RunError(f"{where}: sequence.shared_sha256: missing, so the shared file cannot be checked; "
                       f"start over with --force")
    if seq.get("tasks") != tasks:
        raise RunError(f"{where}: the sequence was started with tasks {seq.get('tasks')}, "
                       f"not {tasks}; name the same tasks in the same order, or start over with --force")
    if seq.get("settings") != json.loads(json.dumps(settings)):
        raise RunError(f"{where}: the sequence was started with other settings "
                       f"{seq.get('settings')}; rerun with the same options or with --force")
    if last["backbone"].get("sha256") != digest:
        raise RunError(f"{where}: backbone sha256 differs from the weights loaded now")
    path = folder / SHARED
    pending = pending_shared(folder, seq["position"])
    if pending.exists() and sha256_file(pending) == seq["shared_sha256"]:
        os.replace(pending, path)  # interrupted between writing the task folder and renaming the file
    if not path.exists() or sha256_file(path) != seq["shared_sha256"]:
        raise RunError(f"{path}: missing or not the file that task {last['task']!r} wrote "
                       f"(sha256 {seq['shared_sha256'][:12]}…); start over with --force")
    return _load_shared(path)


def _load_shared(path: Path) -> dict[str, Tensor]:
    """The shared file's tensors; ``RunError`` for an empty or unreadable file."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise RunError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split())[:80]})") from None


def read_sequence_task(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor], Path, dict[str, Tensor]]:
    """(run.json, task tensors, shared file, shared tensors) of one finished task of a sequence."""
    folder = Path(folder)
    record, tensors = read_run(folder)
    seq = record.get("sequence")  # validated by read_run: position, tasks and shared are there when it is
    if seq is None:
        raise RunError(f"{folder / RUN_JSON}: sequence: missing key (not a task of a sequence)")
    path = folder / seq["shared"]
    if not path.exists():
        raise RunError(f"{folder / RUN_JSON}: sequence.shared: {path} is missing")
    return record, tensors, path, _load_shared(path)
