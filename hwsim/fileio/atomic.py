"""Writing files so that a reader never sees half of one.

Every file hwsim writes (the report's Markdown and PNGs, ``ksm-sim --json``, ``ksm-explore``'s tables,
figures and report) goes through :func:`atomic_write_with`: a writer fills a temporary sibling, the
sibling is flushed to disk and renamed over the target, so an interrupted run leaves the old file or
the new one, never a mix. :func:`atomic_write` is the same for bytes or text already in memory.
The target must be absent or a regular file: a symbolic link, a folder or a device is refused
(:class:`UnsafeTarget`), never followed or replaced; the new file gets the mode of any new file
(0666 less the umask), not a temporary file's 0600.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class UnsafeTarget(ValueError):
    """An output path that is a symbolic link or not a regular file."""


def check_target(path: Path) -> None:
    """Refuse ``path`` unless it is absent or a regular file (``lstat``: a symlink is not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UnsafeTarget(f"{path}: is a symbolic link; not replaced (remove it, or write elsewhere)")
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UnsafeTarget(f"{path}: is {kind}; not replaced (remove it, or write elsewhere)")


def atomic_write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary sibling of ``path``, fsync it and rename it into place.

    Creates the folder. The temporary file is created exclusively and without following links
    (``O_EXCL | O_NOFOLLOW``) at 0666 less the umask, the mode a plain ``open`` would give.
    """
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    os.close(fd)
    return fill_and_replace(tmp, path, write)


def fill_and_replace(tmp: Path, path: Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` into the empty temporary file ``tmp``, fsync it, and rename it over ``path`` (checked
    again just before: still absent or a regular file); ``tmp`` is removed on any failure."""
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        check_target(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` atomically; create its folder."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(payload))
