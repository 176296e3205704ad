"""Durable writes and file hashes: the one way ``ksm`` puts a file or a folder where a reader may look.

A reader (``ksm-sim``, a resumed run, a second process) must never see half a file. So every file is
written to a temporary sibling ``.<name>.<pid>.tmp``, flushed to disk (``fsync``) and renamed into
place with ``os.replace``, which is atomic within one folder on POSIX and Windows; a folder is built
the same way under a temporary sibling name and renamed as a whole.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hwsim.fileio.atomic import UnsafeTarget, check_target, fill_and_replace, sha256_file  # noqa: F401 - torch-free, shared

Writer = Callable[[Path], object]  # writes a complete file at the path it is given


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


def fresh_temp(path: Path) -> Path:
    """Create the empty temporary sibling of ``path`` ourselves: exclusive, never through a symlink, mode 0666
    less the umask (as any new file), so that the file renamed into place has a normal mode."""
    tmp = temp_sibling(path)
    if os.path.lexists(tmp):
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp)
        else:
            os.unlink(tmp)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
    return tmp


def write_atomic(path: Path, write: Writer) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temporary sibling, fsync it and rename it into place.

    ``path`` must be absent or a regular file: a symbolic link, a folder or a device is refused
    (:class:`UnsafeTarget`), never followed or replaced.
    """
    path = Path(path)
    check_target(path)
    return fill_and_replace(fresh_temp(path), path, write)


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


class Busy(ValueError):
    """Another process holds the lock of an output folder."""


def lock_path(out: Path) -> Path:
    """``.<name>.lock`` beside ``out``: the lock file of one output folder."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


@contextmanager
def folder_lock(out: Path) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on the lock file of ``out`` for as long as the block runs; a second writer
    gets :class:`Busy` at once. The holder removes the lock file when it is done (while still holding the
    lock); a writer that locked a file removed meanwhile sees that its inode is no longer the path's and tries
    again, so two writers never hold two different lock files of one folder."""
    import fcntl

    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Busy(f"{out}: another ksm-train is writing this folder (lock {path.name}); wait for it to "
                       f"finish") from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed this file after we opened it: lock the new one
    else:
        raise Busy(f"{out}: could not lock {path.name}")
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)
