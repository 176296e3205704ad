"""Checks that a run folder's tensors are the ones its ``run.json`` describes (torch-free; issue 16).

``run.json`` ``files`` holds the sha256 of each tensor file it describes (``masks.safetensors``);
a copied-in or edited file is refused, naming the file and the key. A binary mask must hold only 0
and 1 and agree with the real-valued mask it was derived from: ``binary == (mask >= threshold)``
(``>`` for piggyback), with the threshold of ``train.mask_threshold``.

Runs written before the hash was recorded carry no ``files``: they are read unchecked, and a warning
says so once per process (docs/run-folder.md).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import catalogue
from hwsim.fileio.atomic import sha256_file

TENSOR_FILES = ("masks.safetensors",)


class UncheckedRunWarning(UserWarning):
    """A run folder without ``files`` sha256 (written by an older ksm): its tensors are read unchecked."""


_warned = False


def one_line_warnings() -> None:
    """Show :class:`UncheckedRunWarning` as one ``warning: ...`` line on stderr (the CLIs call this);
    Python's default adds the source file, line and code line, which mean nothing to a user."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, UncheckedRunWarning):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            default(message, category, filename, lineno, file, line)

    if getattr(warnings.showwarning, "__name__", "") != "show":
        warnings.showwarning = show


def check_files(folder: Path, record: dict[str, Any], error: type[Exception]) -> None:
    """Refuse a tensor file whose sha256 is not the one ``run.json`` ``files`` records."""
    global _warned
    files = record.get("files")
    run_path = folder / "run.json"
    if files is None:
        if not _warned:
            _warned = True
            warnings.warn(f"{run_path}: no files sha256 (written by an older ksm); its tensors are read unchecked "
                          f"(this warning is shown once)", UncheckedRunWarning, stacklevel=3)
        return
    if not isinstance(files, dict):
        raise error(f"{run_path}: files: must be an object of file name -> {{sha256}}")
    for name in TENSOR_FILES:
        entry = files.get(name)
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(expected, str) or len(expected) != 64:
            raise error(f"{run_path}: files.{name}.sha256: missing or not a hex sha256")
        path = folder / name
        if not path.is_file():
            raise error(f"{path}: missing file")
        if sha256_file(path) != expected:
            raise error(f"{path}: sha256 differs from run.json files.{name}.sha256 ({expected[:12]}…); the file "
                        f"is not the one this run wrote")


def check_binary(key: str, binary: np.ndarray, real: np.ndarray | None, method: str, threshold: Any,
                 where: str, error: type[Exception]) -> None:
    """A binary mask holds only 0/1 and equals its real-valued mask thresholded."""
    if binary.size and not np.isin(binary, (0, 1)).all():
        raise error(f"{where}: {key}: a binary mask must hold only 0 and 1")
    if real is None or isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        return
    if real.shape != binary.shape:
        raise error(f"{where}: {key}: shape {list(binary.shape)} differs from its real-valued mask {list(real.shape)}")
    traits = catalogue.find(method)
    if traits is None:
        raise error(f"{where}: {key}: unknown method {method!r} (known: {', '.join(catalogue.names())})")
    expected = real > threshold if traits.strict_threshold else real >= threshold
    if not np.array_equal(binary.astype(bool), expected):
        raise error(f"{where}: {key}: disagrees with its real-valued mask at threshold {threshold} "
                    f"({int((binary.astype(bool) != expected).sum())} entries)")
