"""Reading the run folders a report or ``ksm-sim --masks`` is given.

A :class:`Run` is one run folder: the workload hwsim costs and the ``run.json`` record its accuracy
and label come from. :func:`expand_run_paths` turns command-line paths (a shell glob that also matched
``results.md``, a folder of runs, a PackNet/CPG sequence folder) into run folders;
:func:`load_runs` reads them and checks that they form one comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.catalogue import label_rank, run_label, sort_labels
from hwsim.errors import InputError
from hwsim.workload.layers import Workload, load_run


@dataclass(frozen=True, slots=True)
class Run:
    """One run folder: the workload hwsim costs plus the ``run.json`` record it came from."""

    folder: Path
    work: Workload
    record: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.work.task)

    @property
    def method(self) -> str:
        return str(self.work.method)

    @property
    def label(self) -> str:
        """``ksm``, ``piggyback (BN task)``, ``ksm (binary only)``: :func:`hwsim.catalogue.run_label`."""
        return run_label(self.record)

    @property
    def metrics(self) -> dict[str, Any]:
        m = self.record.get("metrics")
        return m if isinstance(m, dict) else {}

    @property
    def top1(self) -> float | None:
        return _fraction(self.metrics.get("top1"))

    @property
    def int8_top1(self) -> float | None:
        int8 = self.metrics.get("int8")
        return _fraction(int8.get("top1")) if isinstance(int8, dict) else None

    @property
    def soft_precision(self) -> dict[int, float | None]:
        """bits -> test top-1 with the KSM soft part quantised to that many bits (empty if not measured)."""
        raw = self.metrics.get("soft_precision")
        if not isinstance(raw, dict):
            return {}
        out: dict[int, float | None] = {}
        for key, value in raw.items():
            try:
                out[int(key)] = _fraction(value)
            except (TypeError, ValueError):
                continue
        return dict(sorted(out.items()))

    @property
    def backbone(self) -> tuple[Any, ...]:
        bb = self.record.get("backbone")
        if not isinstance(bb, dict):
            return (None, None, None)
        return (bb.get("arch"), bb.get("weights"), bb.get("sha256"))


def _fraction(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def expand_run_paths(paths: Iterable[str | Path], *, packed: bool = False) -> tuple[list[Path], list[Path]]:
    """Split ``--masks`` arguments into run folders and skipped paths.

    With ``packed``, a deployable task file (:func:`hwsim.workload.packed.is_packed_task`) is kept beside the
    run folders.

    A shell glob such as ``runs/*`` also matches the ``results.md``/``results.csv`` that ksm-train
    writes beside the runs: plain files, and folders that neither are nor hold run folders, are skipped
    (and returned so the caller can say so). A folder without ``run.json`` that holds run folders is
    expanded to them, and to the tasks of the PackNet/CPG sequence folders it holds, so ``--masks runs/``
    works too. A path that does not exist is kept, so that reading it fails with its name.
    """
    from hwsim.workload.packed import is_packed_task

    folders: list[Path] = []
    skipped: list[Path] = []

    def runs_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file())

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            (folders if packed and is_packed_task(path) else skipped).append(path)
        elif path.is_dir() and not (path / "run.json").exists():
            inner = runs_in(path)
            if not (path / "shared.safetensors").exists():  # not itself a sequence: look one level into those
                for child in sorted(path.iterdir()):
                    if (child / "shared.safetensors").is_file():
                        inner.extend(runs_in(child))
            if inner:
                folders.extend(inner)
            else:
                skipped.append(path)  # e.g. an empty output folder of another tool that the glob matched
        else:
            folders.append(path)
    return list(dict.fromkeys(folders)), skipped


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Read run folders and check that they form one report: at least one run, one backbone, and at
    most one run per (task, method label). Raises :class:`InputError` with a message that says what to do."""
    runs = []
    for folder in paths:
        folder = Path(folder)
        work = load_run(folder)
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        runs.append(Run(folder=folder, work=work, record=record))
    if not runs:
        raise InputError("report: no run folders given (pass --masks runs/* after ksm-train has written some)")
    backbones: dict[tuple[Any, ...], list[str]] = {}
    for r in runs:
        backbones.setdefault(r.backbone, []).append(r.folder.name)
    if len(backbones) > 1:
        parts = [f"{bb[0]}/{bb[1]} (sha256 {str(bb[2])[:12]}): {', '.join(names)}" for bb, names in backbones.items()]
        raise InputError("report: the runs use different backbones, so their costs do not compare; "
                         "report one backbone at a time. " + "; ".join(parts))
    seen: dict[tuple[str, str], Path] = {}
    for r in runs:
        key = (r.task, r.label)
        if key in seen:
            raise InputError(f"report: two runs for task {r.task!r}, method {r.label!r}: {seen[key]} and "
                             f"{r.folder}; pass one of them")
        seen[key] = r.folder
    return runs


def order_runs(runs: list[Run]) -> list[Run]:
    """Tasks alphabetically (whatever order the folders came in), then methods in catalogue order."""
    return sorted(runs, key=lambda r: (r.task, label_rank(r.label)))


def methods_of(runs: list[Run]) -> list[str]:
    """The runs' method labels, in catalogue order."""
    return sort_labels([r.label for r in runs])


def tasks_of(runs: list[Run]) -> list[str]:
    """The runs' tasks, in the order the runs come."""
    return list(dict.fromkeys(r.task for r in runs))
