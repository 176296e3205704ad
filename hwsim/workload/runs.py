"""Reading the run folders a report or ``ksm-sim --masks`` is given.

A :class:`Run` is one run folder: the workload hwsim costs and the ``run.json`` record its accuracy
and label come from. :func:`expand_run_paths` turns command-line paths (a shell glob that also matched
``results.md``, a folder of runs, a PackNet/CPG sequence folder) into run folders;
:func:`load_runs` reads them and checks that they form one comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.catalogue import label_rank, run_label, sort_labels
from hwsim.errors import InputError
from hwsim.schemas.run_record import Metrics, RunRecord
from hwsim.workload.layers import Workload, load_run_record


@dataclass(frozen=True, slots=True)
class Run:
    """One run folder: the workload hwsim costs plus the validated ``run.json`` record it came from."""

    folder: Path
    work: Workload
    record: RunRecord

    @property
    def task(self) -> str:
        return str(self.work.task)

    @property
    def method(self) -> str:
        return str(self.work.method)

    @property
    def label(self) -> str:
        """``ksm``, ``piggyback (BN task)``, ``ksm (binary only)``: :func:`hwsim.catalogue.run_label`."""
        return run_label(self.record.model_dump(exclude_unset=True))

    @property
    def metrics(self) -> Metrics:
        return self.record.metrics

    @property
    def top1(self) -> float | None:
        return self.metrics.top1

    @property
    def int8_top1(self) -> float | None:
        return self.metrics.int8.top1 if self.metrics.int8 else None

    @property
    def soft_precision(self) -> dict[int, float]:
        """bits -> test top-1 with the KSM soft part quantised to that many bits (empty if not measured)."""
        return dict(sorted((int(bits), top1) for bits, top1 in self.metrics.soft_precision.items()))

    @property
    def backbone(self) -> tuple[Any, ...]:
        """(arch, weights, sha256): runs compare only on one backbone."""
        bb = self.record.backbone
        return (bb.arch, bb.weights, bb.sha256)


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
        work, record = load_run_record(folder)  # run.json read once, through its schema
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
