"""Take a design point into the detailed tools: ZigZag and Timeloop input files (``ksm-sim --export``).

The writers live in :mod:`hwsim.interop.zigzag_files` and :mod:`hwsim.interop.timeloop_files`; this module
picks one by name and publishes the folder through the output guard.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwsim.fileio.output_guard import build_folder
from hwsim.cost.simulate import SimResult
from hwsim.hardware.profile import Profile
from hwsim.interop.export_common import FORMATS, _safe
from hwsim.interop.timeloop_files import write_timeloop
from hwsim.interop.zigzag_files import write_zigzag
from hwsim.workload.layers import Workload

__all__ = ["FORMATS", "INDEX", "export", "export_all", "folder_names", "write_timeloop", "write_zigzag"]

INDEX = "index.csv"  # which workload and profile each folder of a several-pair export holds


def export(fmt: str, work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None,
           *, batch: int = 1, objective: str = "energy", result: SimResult | None = None) -> list[Path]:
    """Write ``fmt`` (``zigzag`` or ``timeloop``) files for one workload on one profile; with ``result`` (its
    ``simulate``), every layer carries the mapping ``ksm-sim`` chose, so the tool costs what ``ksm-sim`` did."""
    writers = {"zigzag": write_zigzag, "timeloop": write_timeloop}
    if fmt not in writers:
        raise ValueError(f"--export: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    mappings = {c.name: c.mapping for c in result.layers if c.mapping} if result is not None else None
    return writers[fmt](work, profile, folder, extras, batch=batch, objective=objective, mappings=mappings)


def export_all(fmt: str, works: list[Workload], profiles: list[Profile], folder: str | Path,
               designs: dict[int, Any] | None = None, inputs: Sequence[str | Path] = (), *, batch: int = 1,
               objective: str = "energy", results: Sequence[SimResult] = ()) -> list[Path]:
    """Export every workload on every profile: into ``folder`` itself for one pair, else into
    ``folder/<workload>-<profile>/`` (:func:`folder_names`: unique, ``-2``, ``-3`` ... where two pairs
    share a name) with ``folder/index.csv`` saying which workload and profile each holds. Returns the
    folders written. ``results``: the ``simulate`` results of the
    same command, whose chosen mappings go into the files (the first result of each workload and profile).

    ``folder`` goes through the output guard (:func:`hwsim.fileio.output_guard.build_folder`): new, empty or
    made by this project, holding none of ``inputs``, built under a temporary sibling and published whole.
    """
    folder = Path(folder)
    pairs = [(w, p) for w in works for p in profiles]
    chosen: dict[tuple[int, int], SimResult] = {}
    for r in results:
        chosen.setdefault((id(r.work), id(r.profile)), r)
    out = []
    names = folder_names(works, profiles) if len(pairs) > 1 else [None]
    with build_folder(folder, f"ksm-sim --export {fmt}", inputs) as tmp:
        for (work, profile), name in zip(pairs, names):
            design = (designs or {}).get(id(profile))
            export(fmt, work, profile, tmp / name if name else tmp, design.extras if design is not None else None,
                   batch=batch, objective=objective, result=chosen.get((id(work), id(profile))))
            out.append(folder / name if name else folder)
        if len(pairs) > 1:
            with (tmp / INDEX).open("w", newline="", encoding="utf-8") as handle:
                rows = csv.writer(handle)
                rows.writerow(["folder", "workload", "workload_number", "profile", "profile_number"])
                sources = _sources(works, inputs)
                for (work, profile), name in zip(pairs, names):
                    rows.writerow([name, sources[id(work)], next(i for i, w in enumerate(works, 1) if w is work),
                                   profile.name, next(i for i, p in enumerate(profiles, 1) if p is profile)])
    return out


def _sources(works: Sequence[Workload], inputs: Sequence[str | Path]) -> dict[int, str]:
    """Each workload's input as the command named it: the n-th workload whose source is ``digits`` came from
    the n-th input of that name (``--masks a/digits b/digits``: both in the command's order); a bundled
    network by its name."""
    by_name: dict[str, list[str]] = {}
    for path in inputs:
        by_name.setdefault(Path(path).name, []).append(str(path))
    out = {}
    for work in works:
        left = by_name.get(Path(str(work.source)).name)
        out[id(work)] = left.pop(0) if left else str(work.source)
    return out


def folder_names(works: Sequence[Workload], profiles: Sequence[Profile]) -> list[str]:
    """One folder name per workload and profile (workloads outer): ``<workload file name>-<profile name>``,
    made file-name safe; where that name is taken (two runs named alike in different folders, two profiles
    of one name, or names that differ only in case or in characters a file name cannot hold), the later
    pair gets ``-2``, ``-3`` ... in order."""
    out: list[str] = []
    taken: set[str] = set()
    for work in works:
        for profile in profiles:
            base = _safe(f"{Path(str(work.source)).name}-{profile.name}")
            name, n = base, 1
            while name.lower() in taken:
                n += 1
                name = f"{base}-{n}"
            taken.add(name.lower())
            out.append(name)
    return out
