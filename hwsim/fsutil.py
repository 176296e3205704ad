"""Writing files so that a reader never sees half of one.

Every file hwsim writes (the report's Markdown and PNGs, ``ksm-sim --json``) goes through
:func:`atomic_write`: the bytes go to a temporary sibling, are flushed to disk, and the sibling is
renamed over the target, so an interrupted run leaves the old file or the new one, never a mix.
The target must be absent or a regular file: a symbolic link, a folder or a device is refused
(:class:`UnsafeTarget`), never followed or replaced; the new file gets the mode of any new file
(0666 less the umask), not a temporary file's 0600.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


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


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` atomically; create its folder."""
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode(encoding) if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        check_target(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
