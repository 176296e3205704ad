"""Writing files so that a reader never sees half of one.

Every file hwsim writes (the report's Markdown and PNGs, ``ksm-sim --json``, ``ksm-explore``'s tables,
figures and report) goes through :func:`atomic_write_with`: a writer fills a temporary sibling, the
sibling is flushed to disk and renamed over the target, so an interrupted run leaves the old file or
the new one, never a mix. :func:`atomic_write` is the same for bytes or text already in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary sibling of ``path``, fsync it and rename it into place.

    Creates the folder. The file gets the mode a plain ``open`` would give (0666 less the umask), not
    mkstemp's 0600, which would make a committed report private.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` atomically; create its folder."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(payload))
