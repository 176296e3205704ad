"""The one output guard of every command: an output never clobbers an input or a file this project did not write.

Three rules, checked before any work and enforced at the end (issue 26):

1. **No aliasing.** An output never equals or lies inside an input, and no input lies inside an output (real
   paths: symbolic links resolved), so ``ksm-sim --masks RUN --json RUN/run.json`` is refused, not run
   (:func:`check_no_alias`).
2. **Only our folders.** A folder a command makes carries a marker, :data:`MARKER`, naming the version and
   which tool wrote which of its entries. A folder that exists, is not empty and has no marker is the user's:
   nothing is written into it (:func:`check_output_folder`). Readers never require the marker.
3. **Whole or nothing.** A folder is built under a temporary sibling (:func:`build_folder`); a new folder is
   renamed into place whole, an existing marked one receives the new entries one rename each, the index file
   (``README.md``) last, and loses only the entries the same tool wrote before and did not write again: a
   user's files and other tools' outputs beside them stay. Files go through :mod:`hwsim.fileio.atomic`.

Every path option and argument of every command is typed :class:`PathOption` (or :class:`NameOrPath` for a
bundled name or a file), which refuses ``''`` as that option before anything else is checked.

A failed write (a full disk, ``ulimit -f``, a read-only folder) is one line naming the file as it would have been
published, never its temporary: every command's entry point is wrapped in :func:`one_line_os_errors`, which turns
any :class:`OSError` into one ``click.ClickException`` line (:func:`os_error_line`).

Temporaries (``.NAME.PID.HEX.tmp``, :func:`hwsim.fileio.atomic.temp_sibling`) are removed on failure and on
SIGTERM (:func:`raise_on_sigterm` turns the signal into ``SystemExit`` so every ``except BaseException``
clean-up runs) and swept by the next write beside NAME when their process is gone (:func:`hwsim.fileio.atomic.sweep_stale`).
Torch-free, so that ksm uses it too.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import ParamSpec, TypeVar

import click

from hwsim import __version__
from hwsim.fileio.atomic import atomic_write, new_temp_folder, published_path, remove_entry, replace_folder

P = ParamSpec("P")
R = TypeVar("R")

MARKER = ".ksm-output.json"
MARKER_FORMAT = "ksm-output/1"
INDEX_FILES = ("README.md", "summary.md")  # moved into place last: their presence means the folder is whole


class OutputRefused(ValueError):
    """An output that would overwrite an input or something this project did not write; one line."""


class _RefusesEmpty:
    """A click type that refuses an empty value as its option's: ``Path("")`` is the working folder, so
    ``--network ''`` would read ``.`` and ``--json ''`` write there, and the error would blame another
    option."""

    wanted = "a path"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if value == "":
            self.fail(f"is empty (give {self.wanted})", param, ctx)  # type: ignore[attr-defined]
        return super().convert(value, param, ctx)  # type: ignore[misc]


class PathOption(_RefusesEmpty, click.Path):
    """The click type of every path option and argument of every command: ``click.Path`` without ``''``."""


class NameOrPath(_RefusesEmpty, click.types.StringParamType):
    """The click type of an option that takes a bundled name or a file (``--profile``, ``--network``,
    ``--weights``): any text but ``''``."""

    name = "text"
    wanted = "a name or a path"


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def check_no_alias(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """Refuse any output that is an input, lies inside one, or holds one (compared as real paths)."""
    ins = [(Path(i), _real(i)) for i in inputs]
    for out in outputs:
        real_out = _real(out)
        for given, real_in in ins:
            if real_out == real_in:
                raise OutputRefused(f"{out}: is the input {given}; it is never overwritten (choose another output)")
            if real_in in real_out.parents:
                raise OutputRefused(f"{out}: lies inside the input {given}; it is never written into "
                                    "(choose another output)")
            if real_out in real_in.parents:
                raise OutputRefused(f"{out}: holds the input {given}; it is never replaced (choose another output)")


def read_marker(folder: Path) -> dict[str, str] | None:
    """``{entry: tool}`` of a marked folder, or ``None`` when ``folder`` has no readable marker."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT or not isinstance(data.get("written"), dict):
        return None
    return {str(k): str(v) for k, v in data["written"].items()}


def is_marked(folder: Path) -> bool:
    """Whether ``folder`` was made by this project (holds a valid :data:`MARKER`)."""
    return read_marker(Path(folder)) is not None


def check_output_folder(out: str | Path) -> None:
    """Refuse a folder output that exists as something else, or is not empty and was not made by this project."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputRefused(f"{out}: exists and is not a folder; not replaced (choose another output)")
    if out.is_dir() and not is_marked(out) and any(out.iterdir()):
        raise OutputRefused(f"{out}: folder is not empty and was not written by this project (no {MARKER}); "
                            "its files are never replaced (choose another output, or empty it)")


def write_marker(folder: Path, tool: str, entries: Iterable[str], dropped: Iterable[str] = ()) -> None:
    """Record that ``tool`` wrote ``entries`` into ``folder`` (other tools' entries kept, ``dropped`` removed)."""
    written = {k: v for k, v in (read_marker(folder) or {}).items() if k not in set(dropped)}
    written.update({name: tool for name in entries})
    document = {"format": MARKER_FORMAT, "version": __version__, "written": dict(sorted(written.items()))}
    atomic_write(folder / MARKER, json.dumps(document, indent=1) + "\n")


def publish_folder(tmp: Path, out: Path, tool: str) -> Path:
    """Put the finished folder ``tmp`` at ``out`` and mark it as ``tool``'s (see the module's rule 3)."""
    entries = sorted((p.name for p in tmp.iterdir() if p.name != MARKER), key=lambda n: (n in INDEX_FILES, n))
    if not out.exists():
        write_marker(tmp, tool, entries)
        os.replace(tmp, out)
        return out
    check_output_folder(out)  # again, just before touching it
    before = read_marker(out) or {}
    for name in entries:
        replace_folder(tmp / name, out / name)  # a file or a folder entry, each by one rename
    stale = [name for name, by in before.items() if by == tool and name not in entries]
    for name in stale:
        remove_entry(out / name)
    write_marker(out, tool, entries, dropped=stale)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextmanager
def build_folder(out: str | Path, tool: str, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Check ``out`` (rules 1 and 2), yield an empty temporary sibling to build it in, then publish it.

    On any exception (``SystemExit`` from SIGTERM included) the temporary folder is removed and ``out`` is
    untouched.
    """
    out = Path(out)
    check_no_alias([out], inputs)
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp_folder(out)  # sweeps the stale temporaries of ``out`` first
    try:
        yield tmp
        publish_folder(tmp, out, tool)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        published = _published_error(exc, out)
        if published is exc:
            raise
        raise published from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _published_error(exc: OSError, out: Path) -> OSError:
    """``exc`` naming its file as published (:func:`hwsim.fileio.atomic.published_path`), not inside the
    temporary folder that is about to be removed; one that names no file (a plain ``write`` on a full disk)
    names the folder ``out`` being built."""
    if exc.filename is None:
        return OSError(exc.errno, exc.strerror or str(exc), str(out))
    if not isinstance(exc.filename, (str, os.PathLike)) or published_path(exc.filename) == Path(exc.filename):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(published_path(exc.filename)))


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the file (as it would be published, never a temporary) and the reason."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.filename is None:
        return str(reason)
    name = published_path(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else exc.filename
    return f"{name}: {reason}"


def one_line_os_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command's entry point so that any OSError (a full disk, ``ulimit -f``, a read-only folder) that
    reaches it exits with one line naming the file (:func:`os_error_line`), never a traceback. Put it right
    above the function, under the click decorators."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except OSError as exc:
            raise click.ClickException(os_error_line(exc)) from None

    return run


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def raise_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit`` in the main thread, so that temporaries are cleaned up as on Ctrl-C."""
    try:
        signal.signal(signal.SIGTERM, _exit_on_signal)
    except ValueError:  # not the main thread (a test runner's worker): leave the default
        pass
