"""The report's numbers: every run costed on every profile, and the tables built from those costs.

Each ``*_frame`` function returns a pandas table of plain numbers (NaN where a run did not record
something); turning them into Markdown and figures is ``hwsim.report.sections``'s job, so the tables can be
tested and reused (``ksm-sim --list-profiles`` prints :func:`profiles_frame`) without matplotlib.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pandas as pd

from hwsim import catalogue
from hwsim.catalogue import SOFT_PRECISIONS
from hwsim.cost.layer_cost import weight_elems
from hwsim.errors import InputError
from hwsim.cost.mask_cost import MODES, packnet_mask_bits, task_cost
from hwsim.hardware.profile import Profile
from hwsim.cost.residency import backbone_weight_bytes, tasks_that_fit, weight_level
from hwsim.workload.layers import Workload
from hwsim.workload.runs import Run, methods_of, tasks_of
from hwsim.cost.simulate import SimResult, simulate

TOLERANCE_PP = 0.5  # "needs b bits": within this many percentage points of the most precise one
MAX_TASKS = 20  # x range of the system-storage figure
KIB = 1024.0
MIB = 1024.0 * 1024.0


def has_task_index(method: str) -> bool:
    """PackNet, CPG: one map of each weight's owning task, shared by all tasks."""
    return catalogue.get(method).mask in (catalogue.TASK_INDEX, catalogue.TASK_INDEX_PICK)


@dataclass(frozen=True, slots=True)
class Settings:
    """How workloads are costed: the ``ksm-sim`` options that its printed table and its ``--report`` share, so
    that both cost a run alike. ``sets`` are the ``--set`` overrides the profiles were loaded with (the profiles
    a report is given carry them already; they are recorded to say so)."""

    tasks: int = 6
    mask_density: float = 0.5
    batch: int = 1
    objective: str = "energy"
    steady_state: bool = False
    sets: tuple[str, ...] = ()
    input_sparsity: float | None = None  # zero input activations (gated, DRAM maps coded); None: not given

    def simulate(self, work: Workload, profile: Profile, mode: str | None) -> SimResult:
        """:func:`hwsim.cost.simulate.simulate` under these settings."""
        return simulate(work, profile, mode, tasks=self.tasks, mask_density=self.mask_density, batch=self.batch,
                        objective=self.objective, steady_state=self.steady_state, input_sparsity=self.input_sparsity)

    def flags(self) -> list[str]:
        """The ``ksm-sim`` options that give these settings; those at their default are left out."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.name == "sets":
                out += [word for item in value for word in ("--set", item)]
            elif value != f.default:
                out += [flag] if isinstance(value, bool) else [flag, str(value)]
        return out


@dataclass(frozen=True, slots=True)
class Costs:
    """Every run on every profile in both modes: ``results[(i, profile name, mode)]``, costed under ``settings``."""

    runs: list[Run]
    profiles: list[Profile]
    results: dict[tuple[int, str, str], SimResult]
    settings: Settings = field(default_factory=Settings)

    @property
    def reference(self) -> Profile:
        """The profile whose precisions price storage in the tables (the first one given)."""
        return self.profiles[0]

    def get(self, i: int, profile: Profile | str, mode: str) -> SimResult:
        name = profile if isinstance(profile, str) else profile.name
        return self.results[(i, name, mode)]


def cost_runs(runs: list[Run], profiles: Sequence[Profile], settings: Settings = Settings()) -> Costs:
    """Simulate every run on every profile, folded and on the fly, under ``settings``."""
    if not profiles:
        raise InputError("report: no profile given")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise InputError(f"report: two profiles share a name: {names}")
    results = {}
    for i, run in enumerate(runs):
        for prof in profiles:
            for mode in MODES:
                results[(i, prof.name, mode)] = settings.simulate(run.work, prof, mode)
    return Costs(runs=list(runs), profiles=list(profiles), results=results, settings=settings)


def _pct(x: float | None) -> float:
    return math.nan if x is None else 100.0 * x


def accuracy_storage_frame(costs: Costs) -> pd.DataFrame:
    """Table 1: per task x method, test accuracy and the task-specific bytes (reference precisions)."""
    rows = []
    with_int8 = any(r.int8_top1 is not None for r in costs.runs)
    for i, run in enumerate(costs.runs):
        t = costs.get(i, costs.reference, "folded").task
        row: dict[str, Any] = {"task": run.task, "method": run.label, "top-1 (%)": _pct(run.top1)}
        if with_int8:
            row["int8 top-1 (%)"] = _pct(run.int8_top1)
        row.update({"masks (KiB)": t.mask_storage_bits / 8 / KIB, "BatchNorm (KiB)": t.batchnorm_bytes / KIB,
                    "head (KiB)": t.head_bytes / KIB, "task-specific (KiB)": t.task_specific_bytes / KIB})
        rows.append(row)
    return pd.DataFrame(rows)


def per_profile_frame(costs: Costs, quantity: str, mode: str) -> pd.DataFrame:
    """Per task x method (rows) and profile (columns): ``energy`` (µJ) or ``latency`` (ms) per
    inference, or ``switch_energy`` (µJ) / ``switch_latency`` (ms) of switching to the task."""
    rows = []
    for i, run in enumerate(costs.runs):
        row: dict[str, Any] = {"task": run.task, "method": run.label}
        for prof in costs.profiles:
            r = costs.get(i, prof, mode)
            if quantity == "energy":
                row[prof.name] = r.energy_j * 1e6
            elif quantity == "latency":
                row[prof.name] = r.latency_s * 1e3
            elif quantity == "switch_energy":
                row[prof.name] = r.task.switch_energy_pj * 1e-12 * 1e6
            elif quantity == "switch_latency":
                row[prof.name] = r.task.switch_cycles / prof.clock_hz * 1e3
            else:
                raise ValueError(f"quantity: unknown {quantity!r}")
        rows.append(row)
    return pd.DataFrame(rows)


def headline_frame(costs: Costs) -> pd.DataFrame:
    """Per method: top-1 on each task and their mean (only when every task has one), the mean
    task-specific storage, and the mean energy and latency per inference on the reference profile."""
    tasks = tasks_of(costs.runs)
    ref = costs.reference
    rows = []
    for label in methods_of(costs.runs):
        idx = [i for i, r in enumerate(costs.runs) if r.label == label]
        acc = {costs.runs[i].task: costs.runs[i].top1 for i in idx}
        row: dict[str, Any] = {"method": label}
        for task in tasks:
            row[f"{task} (%)"] = _pct(acc.get(task))
        values = [acc.get(task) for task in tasks]
        row["mean top-1 (%)"] = (math.nan if any(v is None for v in values)
                                 else 100.0 * sum(v for v in values if v is not None) / len(values))
        res = [costs.get(i, ref, "on_the_fly") for i in idx]
        row["task-specific (KiB)"] = _mean(r.task.task_specific_bytes / KIB for r in res)
        row[f"energy on {ref.name} (µJ)"] = _mean(r.energy_j * 1e6 for r in res)
        row[f"latency on {ref.name} (ms)"] = _mean(r.latency_s * 1e3 for r in res)
        rows.append(row)
    return pd.DataFrame(rows)


def tasks_on_chip_frame(costs: Costs) -> pd.DataFrame:
    """Per profile and method: how many tasks' task-specific data (masks + BatchNorm + head, at the
    profile's precisions, mean over the method's tasks) fit on chip beside the backbone's weights
    and the largest activation working set (:func:`hwsim.cost.residency.tasks_that_fit`); 0 where the
    backbone alone does not fit."""
    rows = []
    for prof in costs.profiles:
        wl = weight_level(prof)
        for label in methods_of(costs.runs):
            idx = [i for i, r in enumerate(costs.runs) if r.label == label]
            res = [costs.get(i, prof, "on_the_fly") for i in idx]
            per_task = _mean(r.task.task_specific_bytes for r in res)
            layers = res[0].work.layers
            fit = tasks_that_fit(per_task, layers, prof)
            rows.append({"profile": prof.name, "method": label,
                         "on-chip weight memory (KiB)": (wl.size_bytes if wl else 0) / KIB,
                         "backbone weights (KiB)": backbone_weight_bytes(layers, prof) / KIB,
                         "task-specific (KiB/task)": per_task / KIB,
                         "tasks that fit": "all" if fit >= 10**9 else fit})
    return pd.DataFrame(rows)


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else math.nan


def energy_parts_frame(costs: Costs, profile: Profile, mode: str = "on_the_fly") -> pd.DataFrame:
    """Energy per inference (µJ) by memory level and by operand, per method (mean over its tasks).

    Rows: method; columns: ``("level", <name>)`` for each memory level plus ``noc`` (the array's network),
    ``mac`` and ``mask ops``, and ``("operand", <name>)`` for weights, inputs, outputs, masks and MAC. Each
    group sums to the total.
    """
    level_names = [lv.name for lv in profile.levels]
    rows = {}
    for label in methods_of(costs.runs):
        idx = [i for i, r in enumerate(costs.runs) if r.label == label]
        acc: dict[tuple[str, str], float] = {}
        for i in idx:
            for (level, operand), j in costs.get(i, profile, mode).energy_by().items():
                lv = {"mac": "MAC", "mask_ops": "mask ops"}.get(level, level)
                op = {"mac": "MAC", "masks": "masks"}.get(operand, operand)
                if level == "mask_ops":
                    op = "mask ops"
                acc[("level", lv)] = acc.get(("level", lv), 0.0) + j * 1e6 / len(idx)
                acc[("operand", op)] = acc.get(("operand", op), 0.0) + j * 1e6 / len(idx)
        rows[label] = acc
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0)
    cols = ([("level", n) for n in [*level_names, "noc", "MAC", "mask ops"]]
            + [("operand", n) for n in ("weights", "inputs", "outputs", "masks", "MAC", "mask ops")])
    cols = [c for c in cols if c in frame.columns and (frame[c] != 0).any()]
    frame = frame[cols]
    frame.columns = pd.MultiIndex.from_tuples(cols)
    return frame


def shared_backbone_bytes(run: Run, profile: Profile, copied: Iterable[str] = ()) -> float:
    """Bytes of the backbone weights that all tasks share (every layer but the head, at the profile's
    weight width), less the layers a method copies per task (fine-tuning)."""
    skip = set(copied)
    head = run.work.head
    return sum(weight_elems(layer) for layer in run.work.layers
               if layer is not head and layer.name not in skip) * profile.precision_bits.weights / 8


def system_storage_frame(costs: Costs, max_tasks: int = MAX_TASKS) -> pd.DataFrame:
    """Storage of the whole system (MiB) for T = 1..max_tasks tasks, per method (columns): the shared
    backbone plus T times the method's mean task-specific bytes (reference profile precisions).
    Fine-tuning keeps a full copy of the layers it trains per task, so those layers are not shared.
    PackNet and CPG keep one index map for all tasks (``ceil(log2(T + 1))`` bits per weight of the
    masked layers, ``hwsim.cost.mask_cost.packnet_mask_bits``) plus each task's BatchNorm and head, and for CPG
    its pick masks and the weights its growth added."""
    ref = costs.reference
    tasks = range(1, max_tasks + 1)
    data = {}
    for label in methods_of(costs.runs):
        idx = [i for i, r in enumerate(costs.runs) if r.label == label]
        res = [costs.get(i, ref, "folded") for i in idx]
        run = costs.runs[idx[0]]
        if has_task_index(run.method):  # one index map for all tasks, plus each task's own bytes
            masked = [layer for layer in run.work.layers if layer.name in res[0].task.shared_bits]
            per_task = _mean(r.task.task_specific_bytes for r in res)  # BatchNorm, head; CPG picks, growth
            shared = shared_backbone_bytes(run, ref)
            data[label] = [(shared + sum(packnet_mask_bits(layer, t) for layer in masked) / 8 + t * per_task) / MIB
                           for t in tasks]
            continue
        per_task = _mean(r.task.task_specific_bytes for r in res)
        copied = res[0].task.mask_bits if catalogue.get(run.method).mask == catalogue.COPY else {}
        shared = shared_backbone_bytes(run, ref, copied)
        data[label] = [(shared + t * per_task) / MIB for t in tasks]
    frame = pd.DataFrame(data, index=pd.RangeIndex(1, max_tasks + 1, name="tasks"))
    return frame


def crossings(system: pd.DataFrame, method: str | None = None) -> dict[str, int | None]:
    """For each other method: the smallest task count at which ``method`` (default: the catalogue's
    :func:`~hwsim.catalogue.full_copy`, fine-tuning) stores more (None if never)."""
    method = method or catalogue.full_copy()
    if method not in system.columns:
        return {}
    out: dict[str, int | None] = {}
    for other in system.columns:
        if other == method:
            continue
        above = system.index[system[method] > system[other]]
        out[other] = int(above[0]) if len(above) else None
    return out


def reference_ksm(costs: Costs) -> int | None:
    """Index of the run of the catalogue's subject (KSM) that the per-layer section shows: the first
    run labelled with the bare method name (soft KSM), else any run of it."""
    subject = catalogue.subject()
    for want in (subject, None):
        for i, r in enumerate(costs.runs):
            if r.method == subject and (want is None or r.label == want):
                return i
    return None


def layer_mask_frame(costs: Costs, i: int) -> pd.DataFrame:
    """Per masked layer of run ``i`` (reference profile, on the fly): stored mask (KiB), the mask bytes
    fetched from the outermost level per inference, and each one's share of the run's total."""
    r = costs.get(i, costs.reference, "on_the_fly")
    layers = r.layers_frame().set_index("layer")
    rows = []
    for name, bits in r.task.mask_bits.items():
        rows.append({"layer": name, "mask (KiB)": bits / 8 / KIB,
                     "mask traffic (KiB/inference)": float(layers.loc[name, "DRAM rd mask (B)"]) / KIB})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for col, share in (("mask (KiB)", "share of storage (%)"), ("mask traffic (KiB/inference)",
                                                                "share of traffic (%)")):
        total = frame[col].sum()
        frame[share] = 100.0 * frame[col] / total if total else math.nan
    return frame


def _trained_soft(run: Run) -> bool | None:
    """For a method with a soft part (its catalogue row): whether this run was trained with it (``train.soft``
    and a stored scale); None for a method without one. Read from the run, never from its label."""
    return run.work.ksm_soft if catalogue.get(run.method).soft_part else None


def soft_precision_frame(costs: Costs) -> pd.DataFrame:
    """Per soft KSM run and precision b in 0, 2, 4, 8, 16 bits: the measured top-1 with the soft part
    quantised to b bits (``metrics.soft_precision``) and the mask storage at b bits (binary bit per
    kernel entry + b bits per soft entry; hwsim's KSM storage with the profile's ``mask_scale`` = b)."""
    ref = costs.reference
    soft = [run for run in costs.runs if _trained_soft(run) is True]
    per_task = Counter(run.task for run in soft)
    rows = []
    for run in soft:
        # one soft run of a task is named by the task (the committed report); several by task and run label
        name = run.task if per_task[run.task] == 1 else f"{run.task} / {run.label}"
        measured = run.soft_precision
        for bits in sorted(set(SOFT_PRECISIONS) | set(measured)):
            prof = replace(ref, precision_bits=replace(ref.precision_bits, mask_scale=bits))
            tc = task_cost(run.work, prof, "on_the_fly")
            rows.append({"task": name, "bits": bits, "top-1 (%)": _pct(measured.get(bits)),
                         "masks (KiB)": tc.mask_storage_bits / 8 / KIB,
                         "task-specific (KiB)": tc.task_specific_bytes / KIB})
    return pd.DataFrame(rows, columns=["task", "bits", "top-1 (%)", "masks (KiB)", "task-specific (KiB)"])


def bits_needed(soft: pd.DataFrame, tolerance_pp: float = TOLERANCE_PP) -> dict[str, tuple[int, float]]:
    """Per task: the fewest soft-mask bits whose top-1 is within ``tolerance_pp`` percentage points of
    the top-1 at the most bits measured, with the mask storage (KiB) at that precision."""
    out: dict[str, tuple[int, float]] = {}
    for task, sub in soft.dropna(subset=["top-1 (%)"]).groupby("task", sort=False):
        sub = sub.sort_values("bits")
        if len(sub) < 2:
            continue
        target = sub["top-1 (%)"].iloc[-1] - tolerance_pp
        row = sub[sub["top-1 (%)"] >= target].iloc[0]
        out[str(task)] = (int(row["bits"]), float(row["masks (KiB)"]))
    return out


def binary_only_frame(costs: Costs) -> pd.DataFrame:
    """Runs of a method with a soft part trained without it: task, top-1 (%), mask storage (KiB)."""
    rows = []
    for i, run in enumerate(costs.runs):
        if _trained_soft(run) is False:
            t = costs.get(i, costs.reference, "folded").task
            rows.append({"task": run.task, "method": run.label, "top-1 (%)": _pct(run.top1),
                         "masks (KiB)": t.mask_storage_bits / 8 / KIB})
    return pd.DataFrame(rows, columns=["task", "method", "top-1 (%)", "masks (KiB)"])


def profiles_frame(profiles: Sequence[Profile], levels: bool = False) -> pd.DataFrame:
    """The headline numbers of profiles (the report's section 7, ``ksm-sim --list-profiles`` with
    ``levels``: the memory levels from the outermost inward)."""
    rows = []
    for p in profiles:
        dram = p.dram
        pb = p.precision_bits
        rows.append({
            "profile": p.name, "dataflow": p.dataflow.replace("_", " "), "MACs": f"{p.array.rows}x{p.array.cols}",
            "clock (MHz)": p.clock_hz / 1e6, "peak (GMAC/s)": p.peak_macs_per_s / 1e9,
            "W/I/mask-scale/BN bits": f"{pb.weights}/{pb.inputs}/{pb.mask_scale}/{pb.batchnorm}",
            "on-chip (KiB)": p.on_chip_bytes / KIB,
            "outer level": dram.name,
            "outer BW (GB/s)": dram.bandwidth_bytes_per_cycle * p.clock_hz / 1e9,
            "outer read (pJ/bit)": dram.read_energy_pj / dram.word_bits,
            "MAC (pJ)": p.array.mac_energy_pj,
        } | ({"levels": " > ".join(lv.name for lv in p.levels)} if levels else {}))
    return pd.DataFrame(rows)
