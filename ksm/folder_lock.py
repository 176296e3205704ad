"""Output-folder locks: one ``ksm-train`` writes a run folder at a time.

Writing a file or a folder so that a reader never sees half of it is :mod:`hwsim.fileio.atomic`'s job (torch-free,
shared by both packages); what is ksm's own is the lock that keeps a second training process off a folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
