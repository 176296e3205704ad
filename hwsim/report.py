"""Reports that link each task's accuracy to its hardware cost: ``reports/<name>/README.md`` + PNGs.

``write_report`` reads run folders (``docs/run-folder.md``), costs every run on every profile in both
mask-application modes with :func:`hwsim.sim.simulate`, and writes one Markdown file whose tables
come from pandas (``to_markdown``) and whose figures (``hwsim.figures``, matplotlib) are PNG files
beside it, linked by relative paths so the report renders on any Git host.

Every number in the report comes from the run folders (``run.json`` metrics, ``masks.safetensors``
shapes and binary masks) and the cost model; the prose around them is fixed text. A missing
accuracy is printed as ``n/a``, never as zero.

Example:
    >>> from hwsim.report import write_report                      # doctest: +SKIP
    >>> write_report(["runs/fashion_mnist", "runs/fashion_mnist-piggyback"], ["edge_npu"],
    ...              "reports/mine", command="ksm-sim --masks runs/* --report reports/mine")
"""

from __future__ import annotations

import glob
import json
import math
import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.cost import weight_elems
from hwsim.layers import InputError, Workload, load_run
from hwsim.masks import MODES, packnet_mask_bits, task_cost
from hwsim.profile import Profile, bundled_profiles, load_profile
from hwsim.sim import SimResult, simulate

SOFT_BITS = (0, 2, 4, 8, 16)  # the precisions ksm-train records in metrics.soft_precision
TOLERANCE_PP = 0.5  # "needs b bits": within this many percentage points of the most precise one
MAX_TASKS = 20  # x range of the system-storage figure
KIB = 1024.0
MIB = 1024.0 * 1024.0
MISSING = "n/a"
FIGURE_PREFIXES = ("accuracy-vs-storage", "energy-", "system-storage", "layer-masks", "soft-precision")
METHOD_ORDER = ("ksm", "ksm (binary only)", "piggyback", "piggyback (BN task)", "packnet", "cpg", "finetune",
                "finetune (BN frozen)", "feature", "feature (BN task)")
# The BatchNorm policy each method is trained with by default (matches ksm-train's labels).
_DEFAULT_BN = {"ksm": "task", "finetune": "task", "piggyback": "frozen", "feature": "frozen"}


# --------------------------------------------------------------------------------------------
# Runs


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
        """``ksm``, ``piggyback (BN task)``, ``ksm (binary only)``: the method as ksm-train names it."""
        label = self.method
        bn = self.record.get("batchnorm")
        if bn and bn != _DEFAULT_BN.get(label, bn):
            label += f" (BN {bn})"
        train = self.record.get("train") or {}
        if self.method == "ksm" and isinstance(train, dict) and train.get("soft") is False:
            label += " (binary only)"
        return label

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


def expand_run_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Split ``--masks`` arguments into run folders and skipped paths.

    A shell glob such as ``runs/*`` also matches the ``results.md``/``results.csv`` that ksm-train
    writes beside the runs: plain files, and folders that neither are nor hold run folders, are skipped
    (and returned so the caller can say so). A folder without ``run.json`` that holds run folders is
    expanded to them, and to the tasks of the PackNet/CPG sequence folders it holds, so ``--masks runs/``
    works too. A path that does not exist is kept, so that reading it fails with its name.
    """
    folders: list[Path] = []
    skipped: list[Path] = []

    def runs_in(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file())

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            skipped.append(path)
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


def _order(runs: list[Run]) -> list[Run]:
    """Tasks alphabetically (whatever order the folders came in), then methods in METHOD_ORDER."""
    return sorted(runs, key=lambda r: (r.task, _method_rank(r.label)))


def _method_rank(label: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(label) if label in METHOD_ORDER else len(METHOD_ORDER), label)


def methods_of(runs: list[Run]) -> list[str]:
    return sorted(dict.fromkeys(r.label for r in runs), key=_method_rank)


def tasks_of(runs: list[Run]) -> list[str]:
    return list(dict.fromkeys(r.task for r in runs))


# --------------------------------------------------------------------------------------------
# Costing


@dataclass(frozen=True, slots=True)
class Costs:
    """Every run on every profile in both modes: ``results[(i, profile name, mode)]``."""

    runs: list[Run]
    profiles: list[Profile]
    results: dict[tuple[int, str, str], SimResult]

    @property
    def reference(self) -> Profile:
        """The profile whose precisions price storage in the tables (the first one given)."""
        return self.profiles[0]

    def get(self, i: int, profile: Profile | str, mode: str) -> SimResult:
        name = profile if isinstance(profile, str) else profile.name
        return self.results[(i, name, mode)]


def cost_runs(runs: list[Run], profiles: Sequence[Profile], tasks: int = 6, mask_density: float = 0.5) -> Costs:
    """Simulate every run on every profile, folded and on the fly."""
    if not profiles:
        raise InputError("report: no profile given")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise InputError(f"report: two profiles share a name: {names}")
    results = {}
    for i, run in enumerate(runs):
        for prof in profiles:
            for mode in MODES:
                results[(i, prof.name, mode)] = simulate(run.work, prof, mode, tasks=tasks, mask_density=mask_density)
    return Costs(runs=list(runs), profiles=list(profiles), results=results)


# --------------------------------------------------------------------------------------------
# Tables (numbers; formatting happens in ``markdown``)


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


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else math.nan


def energy_parts_frame(costs: Costs, profile: Profile, mode: str = "on_the_fly") -> pd.DataFrame:
    """Energy per inference (µJ) by memory level and by operand, per method (mean over its tasks).

    Rows: method; columns: ``("level", <name>)`` for each memory level plus ``mac`` and ``mask ops``,
    and ``("operand", <name>)`` for weights, inputs, outputs, masks and MAC. Each group sums to the total.
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
    cols = ([("level", n) for n in [*level_names, "MAC", "mask ops"]]
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
    masked layers, ``hwsim.masks.packnet_mask_bits``) plus each task's BatchNorm and head, and for CPG
    its pick masks and the weights its growth added."""
    ref = costs.reference
    tasks = range(1, max_tasks + 1)
    data = {}
    for label in methods_of(costs.runs):
        idx = [i for i, r in enumerate(costs.runs) if r.label == label]
        res = [costs.get(i, ref, "folded") for i in idx]
        run = costs.runs[idx[0]]
        if run.method in ("packnet", "cpg"):  # one index map for all tasks, plus each task's own bytes
            masked = [layer for layer in run.work.layers if layer.name in res[0].task.shared_bits]
            per_task = _mean(r.task.task_specific_bytes for r in res)  # BatchNorm, head; CPG picks, growth
            shared = shared_backbone_bytes(run, ref)
            data[label] = [(shared + sum(packnet_mask_bits(layer, t) for layer in masked) / 8 + t * per_task) / MIB
                           for t in tasks]
            continue
        per_task = _mean(r.task.task_specific_bytes for r in res)
        copied = res[0].task.mask_bits if run.method == "finetune" else {}
        shared = shared_backbone_bytes(run, ref, copied)
        data[label] = [(shared + t * per_task) / MIB for t in tasks]
    frame = pd.DataFrame(data, index=pd.RangeIndex(1, max_tasks + 1, name="tasks"))
    return frame


def crossings(system: pd.DataFrame, method: str = "finetune") -> dict[str, int | None]:
    """For each other method: the smallest task count at which ``method`` stores more (None if never)."""
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
    """Index of the KSM run the per-layer section shows: the first soft KSM run, else any KSM run."""
    for want in ("ksm", None):
        for i, r in enumerate(costs.runs):
            if r.method == "ksm" and (want is None or r.label == want):
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


def soft_precision_frame(costs: Costs) -> pd.DataFrame:
    """Per soft KSM run and precision b in 0, 2, 4, 8, 16 bits: the measured top-1 with the soft part
    quantised to b bits (``metrics.soft_precision``) and the mask storage at b bits (binary bit per
    kernel entry + b bits per soft entry; hwsim's KSM storage with the profile's ``mask_scale`` = b)."""
    ref = costs.reference
    rows = []
    for i, run in enumerate(costs.runs):
        if run.method != "ksm" or run.label != "ksm":
            continue
        measured = run.soft_precision
        for bits in sorted(set(SOFT_BITS) | set(measured)):
            prof = replace(ref, precision_bits=replace(ref.precision_bits, mask_scale=bits))
            tc = task_cost(run.work, prof, "on_the_fly")
            rows.append({"task": run.task, "bits": bits, "top-1 (%)": _pct(measured.get(bits)),
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
    """KSM runs trained without the soft part: task, top-1 (%), mask storage (KiB)."""
    rows = []
    for i, run in enumerate(costs.runs):
        if run.method == "ksm" and run.label != "ksm":
            t = costs.get(i, costs.reference, "folded").task
            rows.append({"task": run.task, "method": run.label, "top-1 (%)": _pct(run.top1),
                         "masks (KiB)": t.mask_storage_bits / 8 / KIB})
    return pd.DataFrame(rows, columns=["task", "method", "top-1 (%)", "masks (KiB)"])


def profile_source(profile: Profile) -> str:
    """The leading comment block of a bundled profile's YAML (where its numbers come from)."""
    resource = resources.files("hwsim") / "profiles" / f"{profile.name}.yaml"
    if profile.name not in bundled_profiles() or not resource.is_file():
        return MISSING
    lines = []
    for line in resource.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or MISSING


def profiles_frame(profiles: Sequence[Profile]) -> pd.DataFrame:
    """The headline numbers of the profiles the report uses."""
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
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Markdown


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if fmt == "auto":
            return _auto(float(value))
        return format(value, fmt)
    return str(value)


def _auto(x: float) -> str:
    """Four significant digits, thousands separated, no exponent above 1 (``1,234``, ``12.35``, ``0.0123``)."""
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 1e-3:
        digits = max(0, 3 - math.floor(math.log10(abs(x))))
        return f"{x:.{digits}f}"
    return f"{x:.3g}"


def markdown(frame: pd.DataFrame, formats: dict[str, str] | None = None, default: str = "auto",
             index: bool = False) -> str:
    """A pipe table: numbers formatted per column (``formats``), NaN/None shown as ``n/a``."""
    formats = formats or {}
    frame = frame.reset_index() if index else frame
    text = pd.DataFrame({str(c): [_cell(v, formats.get(str(c), default)) for v in frame[c]] for c in frame.columns})
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    return text.to_markdown(index=False, disable_numparse=True,
                            colalign=["right" if n else "left" for n in numeric])


def regen_command(masks: Sequence[str | Path], profiles: Sequence[str], out_dir: str | Path,
                  extra: Sequence[str] = ()) -> str:
    """The ``ksm-sim`` command that regenerates a report, with a shell glob (``runs/*``) in place of
    the folder list when the folders are exactly what that glob matches."""
    paths = [str(m) for m in masks]
    parents = {os.path.dirname(p.rstrip("/")) for p in paths}
    if len(paths) > 1 and len(parents) == 1:
        parent = parents.pop()
        pattern = os.path.join(parent, "*") if parent else "*"
        matched = {os.path.normpath(p) for p in glob.glob(pattern)}
        if matched and matched == {os.path.normpath(p) for p in paths}:
            paths = [pattern]
    words = ["ksm-sim"]
    for p in paths:
        words += ["--masks", p if p.endswith("*") else shlex.quote(p)]
    for name in profiles:
        words += ["--profile", shlex.quote(str(name))]
    words += [shlex.quote(str(e)) for e in extra]
    words += ["--report", shlex.quote(str(out_dir))]
    return " ".join(words)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def build_report(costs: Costs, out_dir: Path, command: str, title: str | None = None,
                 skipped: Sequence[Path] = ()) -> tuple[str, list[Path]]:
    """Write the figures into ``out_dir`` and return (Markdown text, figure paths)."""
    from hwsim import figures  # local: matplotlib only when a report is written

    runs, ref = costs.runs, costs.reference
    tasks, methods = tasks_of(runs), methods_of(runs)
    arch = runs[0].backbone[0] or "unknown"
    weights = runs[0].backbone[1]
    pngs: list[Path] = []
    colors = figures.method_colors(methods)

    def fig(path_name: str) -> Path:
        path = out_dir / path_name
        pngs.append(path)
        return path

    title = title or f"Accuracy and hardware cost: {len(tasks)} tasks x {len(methods)} methods"
    md: list[str] = [f"# {title}", "",
                     "Regenerate this report (from the repository root, after the runs exist):", "",
                     "```sh", command, "```", ""]
    md += [f"Backbone `{arch}`" + (f" (weights `{weights}`)" if weights else "") + f"; {len(runs)} runs "
           f"({len(tasks)} tasks: {', '.join(f'`{t}`' for t in tasks)}; methods: "
           f"{', '.join(f'`{m}`' for m in methods)}); profiles: {', '.join(f'`{p.name}`' for p in costs.profiles)}. "
           f"Storage is priced at the precisions of `{ref.name}` (the first profile). Accuracy is the test-split "
           "top-1 recorded by `ksm-train` in each `run.json` (float model"
           + ("; the int8 column is `metrics.int8.top1`" if any(r.int8_top1 is not None for r in runs) else "")
           + "); `n/a` means the run did not record it.", ""]
    if skipped:
        md += ["Skipped (not run folders): " + ", ".join(f"`{p.name}`" for p in skipped) + ".", ""]

    # ---- how to read --------------------------------------------------------------------------
    md += ["## How to read this", "",
           ("Each run folder is one task learned by one method on the same frozen backbone. A method's "
           "*task-specific* storage is what the device keeps per task beside the shared backbone: the mask "
           "(KSM: one bit per kernel plus the soft scale where that bit is 0; Piggyback: one bit per weight), "
           "the BatchNorm scale and shift when BatchNorm is per task, the classifier head, and for fine-tuning "
           "a full copy of the trained weights. Costs are per inference of one image, from hwsim's analytical "
           "model (no mapping search): *on the fly* streams the mask with every weight fetch and gates or "
           "multiplies each weight; *folded* writes the masked weights once at a task switch, after which an "
           "inference costs the same as the plain backbone. Better methods sit up and to the left in the "
           "accuracy-storage figure; the system-storage figure shows when keeping per-task copies stops "
           "paying."), ""]

    # ---- headline -----------------------------------------------------------------------------
    head = headline_frame(costs)
    md += ["## Headline", "",
           (f"Test top-1 per task, and per-task storage, energy and latency per inference (on `{ref.name}`, "
           "mask applied on the fly), averaged over each method's tasks. The mean top-1 is `n/a` when a task "
           "is missing."), "",
           markdown(head, {c: ".2f" for c in head.columns if c.endswith("(%)")}), ""]
    figures.accuracy_vs_storage(accuracy_storage_frame(costs), colors, fig("accuracy-vs-storage.png"))
    md += ["![Accuracy vs per-task storage](accuracy-vs-storage.png)", ""]

    # ---- 1: per task x method -----------------------------------------------------------------
    acc = accuracy_storage_frame(costs)
    pb = ref.precision_bits
    md += ["## 1. Accuracy, storage and cost per task and method", "",
           (f"Per-task storage at `{ref.name}` precisions: weights {pb.weights} bits, mask scale "
           f"{pb.mask_scale} bits, BatchNorm scale and shift {pb.batchnorm} bits each per channel. "
           "1 KiB = 1024 bytes."), "",
           markdown(acc, {c: ".2f" for c in acc.columns if c.endswith("(%)")}), ""]
    for quantity, mode, caption in (
            ("energy", "on_the_fly", "Energy per inference (µJ), mask applied on the fly"),
            ("latency", "on_the_fly", "Latency per inference (ms, roofline), mask applied on the fly"),
            ("switch_energy", "folded", ("Task-switch energy (µJ), folded: read the task's tensors, the "
                                        "backbone weights and the mask, write the task's weights")),
            ("switch_latency", "folded", "Task-switch latency (ms), folded"),
            ("switch_energy", "on_the_fly", "Task-switch energy (µJ), on the fly: load BatchNorm and head only")):
        md += [f"**{caption}**, per profile:", "", markdown(per_profile_frame(costs, quantity, mode)), ""]
    md += [("With the mask folded into the weights at the task switch, an inference costs what the plain "
           "backbone with the task's head costs (the `feature` rows above, where present); the switch pays "
           "instead."), ""]

    # ---- 2: accuracy vs storage ---------------------------------------------------------------
    md += ["## 2. Accuracy vs per-task storage", "",
           ("One point per (task, method); the line joins each task's Pareto front (no other method is both "
           "smaller and more accurate). Runs without a recorded accuracy are left out of this figure; a run "
           f"more than {figures.OUTLIER_PP:g} points below its task's best is pinned to the bottom edge with its "
           "value written."), "",
           "![Accuracy vs per-task storage](accuracy-vs-storage.png)", ""]

    # ---- 3: energy split ----------------------------------------------------------------------
    md += ["## 3. Where the energy goes", "",
           ("Energy per inference split by memory level (left) and by operand (right), per method, mask "
           "applied on the fly, mean over each method's tasks; one figure per profile."), ""]
    for prof in costs.profiles:
        parts = energy_parts_frame(costs, prof)
        name = f"energy-{_slug(prof.name)}.png"
        figures.energy_split(parts, prof.name, fig(name))
        md += [f"![Energy per inference on {prof.name}]({name})", ""]
    parts = energy_parts_frame(costs, ref)
    flat = parts.copy()
    flat.columns = [f"{g}: {n}" for g, n in parts.columns]
    flat = flat[[c for c in flat.columns if c.startswith("level")]]
    flat.insert(len(flat.columns), "total", flat.sum(axis=1))
    md += [f"Energy per inference by level on `{ref.name}` (µJ):", "", markdown(flat.rename_axis("method"),
                                                                                index=True), ""]

    # ---- 4: system storage --------------------------------------------------------------------
    system = system_storage_frame(costs)
    cross = crossings(system)
    figures.system_storage(system, colors, fig("system-storage.png"), cross)
    md += ["## 4. Storage of the whole system as tasks are added", "",
           (f"Shared backbone weights ({pb.weights}-bit) + T x the method's mean task-specific storage; "
           "fine-tuning keeps its own copy of every layer it trains, so those layers are not shared"
           + ("; PackNet keeps one map of each weight's owning task for all tasks, ceil(log2(T + 1)) bits per "
              "weight, plus each task's BatchNorm and head" if any(r.method in ("packnet", "cpg") for r in runs)
              else "") + "."), "",
           "![System storage vs number of tasks](system-storage.png)", ""]
    shown = [t for t in (1, 2, 4, 8, 16) if t in system.index]
    md += [markdown(system.loc[shown].T.rename(columns=lambda t: f"T={t} (MiB)").rename_axis("method"),
                    index=True), ""]
    if cross:
        words = [f"`{m}` from T = {t}" if t else f"`{m}`: not within {len(system)} tasks"
                 for m, t in cross.items()]
        md += ["Fine-tuning stores more than " + "; ".join(words) + ".", ""]

    # ---- 5: per-layer mask cost ---------------------------------------------------------------
    md += ["## 5. Which layers the mask costs most in", ""]
    k = reference_ksm(costs)
    if k is None:
        md += ["No KSM run was given, so there is no per-layer mask breakdown.", ""]
    else:
        layers = layer_mask_frame(costs, k)
        figures.layer_masks(layers, f"{runs[k].task} / {runs[k].label}", ref.name, fig("layer-masks.png"))
        top = layers.sort_values("mask (KiB)", ascending=False).head(10)
        md += [(f"KSM run `{runs[k].folder.name}` on `{ref.name}`: mask storage per layer and the mask bytes "
               f"read from `{ref.dram.name}` per inference when the mask is applied on the fly "
               f"({len(layers)} masked layers, {_auto(layers['mask (KiB)'].sum())} KiB stored, "
               f"{_auto(layers['mask traffic (KiB/inference)'].sum())} KiB read per inference)."), "",
               "![Per-layer mask storage and traffic](layer-masks.png)", "",
               f"The {len(top)} largest:", "", markdown(top, {"share of storage (%)": ".1f",
                                                            "share of traffic (%)": ".1f"}), ""]

    # ---- 6: soft precision --------------------------------------------------------------------
    md += ["## 6. How many bits the soft mask needs", ""]
    soft = soft_precision_frame(costs)
    binary = binary_only_frame(costs)
    if soft.empty:
        md += ["No soft KSM run was given, so there is no precision sweep.", ""]
    else:
        figures.soft_precision(soft, binary, fig("soft-precision.png"))
        md += [("Test top-1 of each KSM run with its soft part quantised to b bits after training "
               "(`metrics.soft_precision`; b = 0 keeps only the binary mask), beside the mask storage "
               "that precision costs per task (one bit per kernel entry + b bits per soft entry)."), "",
               "![Accuracy and storage vs soft-mask precision](soft-precision.png)", ""]
        wide = soft.pivot(index="bits", columns="task", values=["top-1 (%)", "masks (KiB)"])
        wide = wide.reindex(columns=[(q, t) for q in ("top-1 (%)", "masks (KiB)") for t in tasks
                                     if (q, t) in wide.columns])
        wide.columns = [f"{t} {'top-1 (%)' if q.startswith('top') else 'mask (KiB)'}" for q, t in wide.columns]
        md += [markdown(wide.reset_index(), {c: ".2f" for c in wide.columns if "top-1" in c} | {"bits": "d"}), ""]
        needed = bits_needed(soft)
        if needed:
            md += [f"Fewest bits whose top-1 is within {TOLERANCE_PP} percentage points of the "
                   f"{int(soft.dropna(subset=['top-1 (%)'])['bits'].max())}-bit one: "
                   + "; ".join(f"`{task}` {b} bits ({_auto(kib)} KiB of mask per task)"
                               for task, (b, kib) in needed.items()) + ".", ""]
        if not binary.empty:
            md += ["KSM trained without the soft part (shown as open markers at 0 bits):", "",
                   markdown(binary, {"top-1 (%)": ".2f"}), ""]

    # ---- 7: profiles --------------------------------------------------------------------------
    md += ["## 7. Accelerator profiles", "",
           ("Headline numbers of the profiles (from `hwsim/profiles/*.yaml`; every number there carries its "
           "source in a comment). Energies are estimates from the cited tables, not measurements."), "",
           markdown(profiles_frame(costs.profiles)), ""]
    md += ["Sources:", ""] + [f"- `{p.name}`: {profile_source(p)}" for p in costs.profiles] + [""]
    md += ["Run folders:", ""] + [f"- `{r.folder.name}`: task `{r.task}`, method `{r.label}`" for r in runs] + [""]
    return "\n".join(md), pngs


def write_report(masks: Sequence[str | Path], profiles: Sequence[str | Profile], out_dir: str | Path,
                 command: str | None = None, title: str | None = None, tasks: int = 6,
                 mask_density: float = 0.5) -> Path:
    """Read the runs, cost them, and write ``out_dir/README.md`` plus its PNG figures.

    Args:
        masks: run folders (plain files are skipped; a folder of run folders is expanded).
        profiles: bundled profile names, ``all``, YAML paths, or loaded profiles; the first prices storage.
        out_dir: the report folder (created). Figures this function wrote before are replaced.
        command: the command line printed at the top; default: the ``ksm-sim`` command for these inputs.
        title: the report's title; default: tasks x methods.
        tasks: tasks sharing the backbone (PackNet's index width), as ``ksm-sim --tasks``.
        mask_density: KSM density assumed for runs without a binary mask, as ``ksm-sim --mask-density``.

    Returns:
        The path of the written ``README.md``.
    """
    out_dir = Path(out_dir)
    folders, skipped = expand_run_paths(masks)
    runs = _order(load_runs(folders))
    loaded: list[Profile] = []
    for p in profiles:
        if isinstance(p, Profile):
            loaded.append(p)
        elif p == "all":
            loaded.extend(load_profile(n) for n in bundled_profiles())
        else:
            loaded.append(load_profile(p))
    loaded = list({p.name: p for p in loaded}.values())
    costs = cost_runs(runs, loaded, tasks=tasks, mask_density=mask_density)
    if command is None:
        extra = []
        if tasks != 6:
            extra += ["--tasks", str(tasks)]
        if mask_density != 0.5:
            extra += ["--mask-density", str(mask_density)]
        command = regen_command(masks, [p if isinstance(p, str) else p.name for p in profiles], out_dir, extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    text, pngs = build_report(costs, out_dir, command, title, skipped)
    for stale in out_dir.glob("*.png"):  # figures of an earlier report (e.g. a profile since dropped)
        if stale not in pngs and stale.name.startswith(FIGURE_PREFIXES):
            stale.unlink()
    path = out_dir / "README.md"
    tmp = out_dir / f".README.md.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
