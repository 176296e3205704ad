"""Writing files and folders so that a reader never sees half of one: the one atomic writer of both packages.

Every file hwsim or ksm writes (reports, ``ksm-sim --json``, ``ksm-explore``'s tables, run folders, checkpoints,
task files, comparison tables) goes through :func:`atomic_write_with`: a writer fills a temporary sibling
(:func:`temp_sibling`, hidden from readers and unique per call), the sibling is flushed to disk and renamed over
the target with ``os.replace``, which is atomic within one folder on POSIX and Windows, so an interrupted run
leaves the old file or the new one, never a mix. :func:`atomic_write` is the same for bytes or text already in
memory. A whole folder is built under a temporary sibling (:func:`new_temp_folder`, its files written with
:func:`write_synced`) and renamed as a whole (:func:`replace_folder`).

A write that fails (a full disk, a file size limit, a read-only folder, or a writer library that raises its own
error for any of them) is one :class:`OSError` naming the file the caller asked for, never the hidden temporary
(:func:`write_error`), and leaves no temporary behind.

The target must be absent or a regular file: a symbolic link, a folder or a device is refused
(:class:`UnsafeTarget`), never followed or replaced; the new file gets the mode of any new file
(0666 less the umask), not a temporary file's 0600. Every write first sweeps the temporaries of its target that a
killed process left (:func:`sweep_stale`). What may be written where is :mod:`hwsim.fileio.output_guard`'s
job. Torch-free, so that ksm uses it too.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
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


def temp_sibling(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` next to ``path``: hidden from readers (a leading dot), unique per call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


TEMP_NAME = re.compile(r"\.(.+)\.\d+\.[0-9a-f]{8}\.tmp")  # what temp_sibling makes of NAME


def published_path(path: str | Path) -> Path:
    """The path ``path`` will have once published: each temporary sibling in it (``.NAME.PID.HEX.tmp``) read
    as its NAME, so that an error names the file the user asked for, not a hidden temporary."""
    path = Path(path)
    parts = [match.group(1) if (match := TEMP_NAME.fullmatch(part)) else part for part in path.parts]
    return Path(*parts) if parts else path


_ERRNO_IN_TEXT = re.compile(r"(?:os error|errno|code:)\s*\[?(\d+)", re.IGNORECASE)


def _errno_of(exc: BaseException, written: Path) -> int | None:
    """The errno behind a writer's failure: its own, one its message quotes (safetensors' ``os error 28``,
    pyarrow's ``[errno 27]``), or, for a library that drops it (torch's ``file write failed``), the file size
    limit or a full file system found at ``written``."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    found = _ERRNO_IN_TEXT.search(str(exc))
    if found and int(found.group(1)) in errno.errorcode:
        return int(found.group(1))
    for code in (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EIO):
        if os.strerror(code).lower() in str(exc).lower():
            return code
    return _errno_of_filesystem(written)


def _errno_of_filesystem(written: Path) -> int | None:
    """EFBIG when the partly written file reached the process's file size limit (``ulimit -f``), ENOSPC when its
    file system has no free block left; None otherwise."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and os.stat(written).st_size >= limit:
            return errno.EFBIG
    except (ImportError, OSError, ValueError):
        pass
    try:
        if os.statvfs(written.parent).f_bavail == 0:
            return errno.ENOSPC
    except (AttributeError, OSError):
        pass
    return None


def write_error(exc: BaseException, target: Path, written: Path | None = None) -> OSError:
    """A writer's failure as one clean :class:`OSError` naming ``target`` as it will be published
    (:func:`published_path`); ``written`` is the file it was filling, where a lost errno is looked for. An
    OSError about another file (a source the writer reads) keeps its errno and names that file."""
    target = published_path(target)
    if isinstance(exc, OSError) and isinstance(exc.filename, (str, os.PathLike)) \
            and published_path(exc.filename) != target:
        other = published_path(exc.filename)
        return exc if other == Path(exc.filename) else OSError(exc.errno, exc.strerror or str(exc), str(other))
    code = _errno_of(exc, written or target)
    if code is not None:
        return OSError(code, os.strerror(code), str(target))
    reason = (str(exc).strip().splitlines() or [""])[0]
    detail = f"{exc.__class__.__name__}: {reason}" if reason else exc.__class__.__name__
    return OSError(None, f"cannot write ({detail[:200]})", str(target))


def remove_entry(path: Path) -> None:
    """Remove a file, a link or a whole folder (a temporary, or an output being replaced)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` (``.NAME.PID.HEX.tmp``, ``.NAME.PID.old``) whose process is gone."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(?:[0-9a-f]{{8}}\.tmp|old)")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                remove_entry(sibling)
            except OSError:  # best effort: a leftover the next write cannot remove does not stop it
                continue
            removed.append(sibling)
    return removed


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to disk, so that a rename after it never exposes an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, write: Writer) -> Path:
    """``write(path)``, then fsync: for a file inside a temporary folder, or one renamed into place later.

    Any failure (the writer's own error type included) is one OSError naming the file (as it will be
    published, :func:`published_path`); the partly written file is removed."""
    try:
        write(path)
        os.chmod(path, 0o666 & ~_umask())  # a writer that recreates the file (safetensors does) leaves it 0600
        fsync_file(path)
    except Exception as exc:  # noqa: BLE001 - torch, safetensors, pyarrow raise their own types for EFBIG/ENOSPC
        error = write_error(exc, path, path)  # before the removal: a lost errno is read from the partial file
        _unlink_quietly(path)
        if error is exc:
            raise
        raise error from exc
    return path


def _unlink_quietly(path: Path) -> None:
    """Remove a partly written file; a failure to do so must not hide the error that made it partial."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write_with(path: str | Path, write: Writer) -> Path:
    """Let ``write`` fill a temporary sibling of ``path``, fsync it and rename it into place.

    Creates the folder. The temporary file is created exclusively and without following links
    (``O_EXCL | O_NOFOLLOW``) at 0666 less the umask, the mode a plain ``open`` would give. ``path`` is
    checked (:func:`check_target`) before and again just before the rename; the temporary file is removed on
    any failure.
    """
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = temp_sibling(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
    try:
        write_synced(tmp, write)
        check_target(path)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename in (None, str(tmp), tmp):  # name the file the user asked for, not the hidden temporary
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (read by setting it and putting it back: POSIX has no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` atomically; create its folder."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(payload))


def new_temp_folder(out: Path) -> Path:
    """An empty temporary sibling folder of ``out``, in which a whole folder is built before :func:`replace_folder`."""
    sweep_stale(out)
    tmp = temp_sibling(out)
    try:
        tmp.mkdir()
    except OSError as exc:  # a read-only or full file system: name the folder asked for, not the temporary
        raise write_error(exc, out, tmp) from exc
    return tmp


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished ``tmp`` (a folder, or a file) at ``out``; an existing ``out`` is moved aside first (a
    folder cannot be renamed over), then removed."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        remove_entry(old)
