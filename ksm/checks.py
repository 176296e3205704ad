"""Checks on what a user hands ``ksm``'s commands, made before any time is spent on it.

Each check answers bad input with one line naming the option or file; values echoed back are cut to
:data:`ECHO` characters so that a hostile input never floods the terminal.
"""

from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

ECHO = 60
UNDERFLOW = 1e-300  # a non-zero number below it is an underflow, refused by every schema (hwsim.schemas)


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
    """A ``click.FloatRange`` that also refuses ``nan``, ``±inf`` and a non-zero magnitude below
    :data:`UNDERFLOW`, as run.json's schema refuses the value recorded (``hwsim/schemas/validation.py``)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{short(value)} is not a finite number", param, ctx)
        if number != 0 and abs(number) < UNDERFLOW:
            self.fail(f"{short(value)} is below {UNDERFLOW:g} (an underflow, not a setting)", param, ctx)
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


@dataclass(frozen=True)
class ImageFolderScan:
    """What one walk of an image folder found: the sorted class names, each split's (path, class index)."""

    classes: tuple[str, ...]
    samples: dict[str, list[tuple[str, int]]]


def check_image_folder(folder: Path, suffixes: tuple[str, ...], splits: tuple[str, ...] = ("train", "test")
                       ) -> ImageFolderScan:
    """Walk ``folder/<split>/<class>/`` once per split and decode every image, before any training.

    Refused, in one line naming the file or folder: a split with fewer than two classes (one class trains to
    "top-1 100%"); a class with no image in a split; a class in one split and not the other (class indices
    are given by the sorted names, so a missing class would shift every label after it); a symbolic link
    that loops, or a folder reached a second time through a link (a link to ``..`` counted 126 images for 6
    files); an image that does not decode. The samples are listed in torchvision ``ImageFolder``'s order
    (classes sorted; in each, ``sorted(os.walk(...))`` and sorted file names): a good folder trains as before.
    """
    found: dict[str, dict[str, list[str]]] = {}
    for split in splits:
        split_dir = folder / split
        names = _class_names(split_dir)
        if len(names) < 2:
            raise ValueError(f"{split_dir}: {len(names)} class folder(s) {list(names)}; a classifier needs "
                             f"at least two")
        seen = {os.path.realpath(split_dir)}
        for name in names:
            _see(split_dir / name, seen)
        found[split] = {name: _class_images(split_dir / name, suffixes, seen) for name in names}
    first, *others = splits
    for split in others:
        if list(found[split]) != list(found[first]):
            odd = sorted(set(found[split]) ^ set(found[first]))[0]
            where = first if odd in found[first] else split
            raise ValueError(f"{folder / where / odd}: a class of {where} only; {' and '.join(splits)} must "
                             f"have the same class folders")
    classes = tuple(found[first])
    samples = {split: [(path, index) for index, name in enumerate(classes) for path in found[split][name]]
               for split in splits}
    check_images([path for split in splits for path, _ in samples[split]])
    return ImageFolderScan(classes, samples)


def _class_names(split_dir: Path) -> list[str]:
    """The sorted names of the folders in ``split_dir`` (as ``ImageFolder``); a looping link is refused."""
    names = []
    with os.scandir(split_dir) as entries:
        for entry in entries:
            try:
                if entry.is_dir():
                    names.append(entry.name)
            except OSError as exc:
                raise ValueError(_path_error(Path(entry.path), exc)) from None
    return sorted(names)


def _path_error(path: Path, exc: OSError) -> str:
    """One line for a path that cannot be read: a symbolic link that loops, or another OS error."""
    if exc.errno == errno.ELOOP:
        return f"{path}: a symbolic link that loops (it leads back to itself); remove it"
    return f"{path}: {exc.strerror or exc}"


def _see(path: Path, seen: set[str]) -> None:
    """Add the folder ``path``'s real path to ``seen``; refuse one already there (a loop, a second copy)."""
    real = os.path.realpath(path)
    if real in seen:
        raise ValueError(f"{path}: a link to {real}, a folder already read (a symbolic link loop or a second "
                         f"copy of its images); remove the link")
    seen.add(real)


def _class_images(class_dir: Path, suffixes: tuple[str, ...], seen: set[str]) -> list[str]:
    """The images under ``class_dir`` in ``ImageFolder``'s order, following links to folders not yet read."""
    walked = []
    def refuse(exc: OSError) -> None:
        raise ValueError(_path_error(Path(exc.filename or class_dir), exc))

    for root, dirs, files in os.walk(class_dir, onerror=refuse, followlinks=True):
        for name in dirs:
            _see(Path(root, name), seen)
        for name in files:  # os.walk lists a link it cannot follow as a file
            path = Path(root, name)
            if path.is_symlink():
                try:
                    path.stat()
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise ValueError(_path_error(path, exc)) from None
        walked.append((root, files))
    images = [os.path.join(root, name) for root, files in sorted(walked) for name in sorted(files)
              if name.lower().endswith(suffixes)]
    if not images:
        raise ValueError(f"{class_dir}: no images ({', '.join(suffixes)}); every class needs images in every "
                         f"split")
    return images


def check_images(paths: list[str]) -> None:
    """Decode every image as training will (header, then the pixels) before any training; one line names the
    first bad file.

    ``verify`` alone reads only the header: a half-written JPEG passed it and failed mid-run, on the test
    split after all the training. JPEGs are decoded at their smallest DCT scale, which still reads every byte.
    """
    bad = [(path, error) for path in paths if (error := _image_error(path))]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{bad[0][0]}: not a readable image ({bad[0][1]}){more}; fix or remove it before training")


def _image_error(path: str) -> str | None:
    """Why ``path`` does not decode to RGB (the exception's class name), or None if it does."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (1, 1))  # JPEG: 1/8 scale, the whole file still read; other formats: no-op
            image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a bad file
        return exc.__class__.__name__
    return None


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
    """One line for an OSError: the file and the reason; the output guard's, so that both packages say it alike."""
    from hwsim.fileio.output_guard import os_error_line as line

    return line(exc)
