"""Take a design point into the detailed tools: ZigZag and Timeloop input files (``ksm-sim --export``).

The writers live in :mod:`hwsim.interop.zigzag_files` and :mod:`hwsim.interop.timeloop_files`; this module
picks one by name and publishes the folder through the output guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwsim.fileio.output_guard import build_folder
from hwsim.hardware.profile import Profile
from hwsim.interop.export_common import FORMATS, _safe
from hwsim.interop.timeloop_files import write_timeloop
from hwsim.interop.zigzag_files import write_zigzag
from hwsim.workload.layers import Workload

__all__ = ["FORMATS", "export", "export_all", "write_timeloop", "write_zigzag"]


def export(fmt: str, work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None) -> list[Path]:
    """Write ``fmt`` (``zigzag`` or ``timeloop``) files for one workload on one profile."""
    if fmt == "zigzag":
        return write_zigzag(work, profile, folder, extras)
    if fmt == "timeloop":
        return write_timeloop(work, profile, folder, extras)
    raise ValueError(f"--export: unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def export_all(fmt: str, works: list[Workload], profiles: list[Profile], folder: str | Path,
               designs: dict[int, Any] | None = None, inputs: Sequence[str | Path] = ()) -> list[Path]:
    """Export every workload on every profile: into ``folder`` itself for one pair, else into
    ``folder/<workload>-<profile>/``. Returns the folders written.

    ``folder`` goes through the output guard (:func:`hwsim.fileio.output_guard.build_folder`): new, empty or
    made by this project, holding none of ``inputs``, built under a temporary sibling and published whole.
    """
    folder = Path(folder)
    pairs = [(w, p) for w in works for p in profiles]
    out = []
    with build_folder(folder, f"ksm-sim --export {fmt}", inputs) as tmp:
        for work, profile in pairs:
            design = (designs or {}).get(id(profile))
            name = None if len(pairs) == 1 else _safe(f"{Path(work.source).name}-{profile.name}")
            export(fmt, work, profile, tmp / name if name else tmp, design.extras if design is not None else None)
            out.append(folder / name if name else folder)
    return out
