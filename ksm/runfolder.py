"""Reading and writing run folders (docs/run-folder.md), atomically.

A run is written into a temporary sibling folder and renamed into place, so ``runs/<task>/`` either
holds a complete run or does not exist. Tensors go to ``masks.safetensors`` (readable from numpy
without torch); everything else to ``run.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

FORMAT = "ksm-run/1"
RUN_JSON = "run.json"
MASKS = "masks.safetensors"


class RunError(ValueError):
    """A run folder that cannot be read or written; the message names the file."""


def partial_dir(out: Path) -> Path:
    """Where an unfinished run keeps its per-epoch checkpoint."""
    return out.parent / f".{out.name}.partial"


def check_output(out: Path, *, force: bool, resume: bool = False) -> None:
    """Refuse to start a run whose result could not be written (or would overwrite one)."""
    if (out / RUN_JSON).exists() and not force:
        raise RunError(f"{out}: a finished run is already there (use --force to overwrite it)")
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder")
    if out.exists() and not (out / RUN_JSON).exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out}: folder exists and is not a run (use --force to replace it)")
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


def write_run(out: Path, record: dict[str, Any], tensors: dict[str, tuple[Tensor, str]], *, force: bool) -> Path:
    """Write ``run.json`` and ``masks.safetensors`` into ``out`` atomically; return ``out``."""
    check_output(out, force=force, resume=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file({k: v.detach().contiguous().cpu() for k, (v, _) in tensors.items()}, str(tmp / MASKS),
                  metadata={"format": FORMAT})
        record = {"format": FORMAT, **record, "tensors": {k: role for k, (_, role) in tensors.items()}}
        (tmp / RUN_JSON).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(partial_dir(out), ignore_errors=True)
    return out


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(run.json, tensors) of a finished run; ``RunError`` names the file and the problem."""
    folder = Path(folder)
    meta_path, tensor_path = folder / RUN_JSON, folder / MASKS
    for path in (meta_path, tensor_path):
        if not path.exists():
            raise RunError(f"{path}: missing (not a finished run folder)")
    try:
        record = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{meta_path}: not valid JSON ({exc})") from None
    fmt = str(record.get("format", ""))
    if fmt.split(".")[0] != FORMAT:
        raise RunError(f"{meta_path}: format {fmt!r} is not {FORMAT!r}")
    for key in ("task", "method", "backbone", "dataset", "tensors"):
        if key not in record:
            raise RunError(f"{meta_path}: key {key!r} missing")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError) as exc:
        raise RunError(f"{tensor_path}: not a readable safetensors file ({exc})") from None
    missing = sorted(set(record["tensors"]) - set(tensors))
    if missing:
        raise RunError(f"{tensor_path}: key {missing[0]!r} listed in run.json is missing")
    return record, tensors
