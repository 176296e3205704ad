"""Checks on what a user hands ``ksm``'s commands, made before any time is spent on it.

Each check answers bad input with one line naming the option or file; values echoed back are cut to
:data:`ECHO` characters so that a hostile input never floods the terminal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

ECHO = 60


def short(value: Any) -> str:
    """``repr(value)`` cut to :data:`ECHO` characters."""
    text = repr(value)
    return text if len(text) <= ECHO else text[:ECHO - 1] + "…"


def task_name(name: str) -> str:
    """A task name usable as one path component under ``--runs-dir``: no separators, ``..``, or absolute paths."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name.startswith(".") or Path(name).is_absolute()):
        raise click.BadParameter(f"{short(name)} is not a task name (one folder name: no '/', '..', "
                                 f"leading '.' or absolute path)", param_hint="'--task'")
    return name


class FiniteFloat(click.FloatRange):
    """A ``click.FloatRange`` that also refuses ``nan`` and ``±inf``."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{short(value)} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        """``--help``'s range note; click would print ``x<=None`` for an unbounded one."""
        return "finite" if self.min is None and self.max is None else super()._describe_range()


def finite(min: float | None = None, max: float | None = None, *, min_open: bool = False,
           max_open: bool = False) -> FiniteFloat:
    """The click type of a finite float option, optionally in a range."""
    return FiniteFloat(min, max, min_open=min_open, max_open=max_open)


def is_run_folder(folder: Path, run_format: str) -> bool:
    """True if ``folder`` holds a run of this project: a ``run.json`` whose ``format`` is ``run_format``."""
    path = folder / "run.json"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 << 20:
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(record, dict) and str(record.get("format", "")).split(".")[0] == run_format


class NonFiniteLoss(ValueError):
    """Training met a nan or infinite loss: its result would be garbage, so it stops."""


def check_finite_loss(loss: Any, ctx: Any, where: str) -> None:
    """Stop training on a nan/inf loss (on any rank: every rank stops together), naming task, epoch and step.

    It is raised before the step's update, so the checkpoint of the last finished epoch stays as it was.
    """
    bad = not math.isfinite(float(loss.detach()))
    if getattr(ctx, "active", False):
        from ksm.training.distributed import all_sum

        bad = all_sum(ctx, [float(bad)])[0] > 0
    if bad:
        raise NonFiniteLoss(f"{where}: the loss is {float(loss.detach())} (not finite); training stopped, no run "
                            f"written (the last finished epoch's checkpoint, if any, is kept for --resume)")


def settings_json(settings: Any) -> Any:
    """``settings`` as JSON holds it (tuples become lists, paths and other objects strings), for comparison."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def first_difference(saved: Any, now: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """(dotted key, saved value, value now) of the first setting that differs, or None."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            found = first_difference(saved.get(key, "<absent>"), now.get(key, "<absent>"), f"{where}.{key}".lstrip("."))
            if found:
                return found
        return None
    return None if saved == now else (where or "settings", saved, now)


def check_same_settings(path: Path, saved: Any, now: Any) -> None:
    """Refuse to resume a checkpoint written with other settings, naming the first that differs."""
    if saved is None and now is not None:
        raise ValueError(f"{path}: the checkpoint does not record its run's settings (older ksm); start over "
                         f"without --resume")
    found = first_difference(saved, now)
    if found:
        key, old, new = found
        raise ValueError(f"{path}: was written with {key} = {short(old)}, now {short(new)}; rerun with the same "
                         f"options, or start over without --resume")


def check_images(paths: list[str]) -> None:
    """Open every image's header (PIL ``verify``) before any training; one line names the first bad file."""
    from PIL import Image

    bad: list[tuple[str, str]] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a bad file
            bad.append((path, exc.__class__.__name__))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{bad[0][0]}: not a readable image ({bad[0][1]}){more}; fix or remove it before training")


def device_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback of ``--device``: a torch device this machine has, refused up front otherwise."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise click.BadParameter(f"{short(value)} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise click.BadParameter(f"{value}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise click.BadParameter(f"{value}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise click.BadParameter(f"{value}: only cpu, cuda and mps are supported")
    return value


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: the file and the reason."""
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc)
