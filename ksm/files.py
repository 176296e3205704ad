"""Durable writes and file hashes: the one way ``ksm`` puts a file or a folder where a reader may look.

A reader (``ksm-sim``, a resumed run, a second process) must never see half a file. So every file is
written to a temporary sibling ``.<name>.<pid>.tmp``, flushed to disk (``fsync``) and renamed into
place with ``os.replace``, which is atomic within one folder on POSIX and Windows; a folder is built
the same way under a temporary sibling name and renamed as a whole.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

Writer = Callable[[Path], object]  # writes a complete file at the path it is given


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temp_sibling(path: Path) -> Path:
    """``.<name>.<pid>.tmp`` next to ``path``: hidden from readers, unique per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to disk, so that a rename after it never exposes an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, write: Writer) -> Path:
    """``write(path)``, then fsync: for a temporary file that is renamed into place later."""
    write(path)
    fsync_file(path)
    return path


def write_atomic(path: Path, write: Writer) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temporary sibling, fsync it and rename it into place."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        write_synced(tmp, write)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def new_temp_folder(out: Path) -> Path:
    """An empty temporary sibling folder of ``out``, in which a whole folder is built before :func:`replace_folder`."""
    tmp = temp_sibling(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``; an existing ``out`` is moved aside first, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
