"""Reports that link each task's accuracy to its hardware cost: ``reports/<name>/README.md`` + PNGs.

``write_report`` reads run folders (``hwsim.workload.runs``), costs every run on every profile in both
mask-application modes (``hwsim.report.tables``), and writes one Markdown file whose tables come from pandas
(``to_markdown``) and whose figures (``hwsim.report.figures``, matplotlib) are PNG files beside it, linked by
relative paths so the report renders on any Git host.

The report is the ordered list :data:`SECTIONS`: each section is a small function that returns its
Markdown lines and the figures they link (:class:`Part`). Adding a figure is one section (or one
:class:`Figure` in a section); the list of figure files a report owns is derived from the sections.

Every number in the report comes from the run folders (``run.json`` metrics, ``masks.safetensors``
shapes and binary masks) and the cost model; the prose around them is fixed text. A missing
accuracy is printed as ``n/a``, never as zero.

Example:
    >>> from hwsim.report.sections import write_report                      # doctest: +SKIP
    >>> write_report(["runs/fashion_mnist", "runs/fashion_mnist-piggyback"], ["edge_npu"],
    ...              "reports/mine", command="ksm-sim --masks runs/* --report reports/mine")
"""

from __future__ import annotations

import fnmatch
import glob
import math
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim import catalogue, units
from hwsim.report import figures
from hwsim.errors import InputError
from hwsim.fileio.atomic import atomic_write
from hwsim.fileio.output_guard import build_folder
from hwsim.hardware.profile import PROFILES, Profile, bundled_profiles, load_designs
from hwsim.workload.runs import Run, expand_run_paths, load_runs, methods_of, order_runs, tasks_of
from hwsim.report.tables import (
    TOLERANCE_PP,
    Costs,
    Settings,
    accuracy_storage_frame,
    binary_only_frame,
    bits_needed,
    cost_runs,
    crossings,
    energy_parts_frame,
    has_task_index,
    headline_frame,
    layer_mask_frame,
    per_profile_frame,
    profiles_frame,
    reference_ksm,
    soft_precision_frame,
    system_storage_frame,
    tasks_on_chip_frame,
)

MISSING = "n/a"

__all__ = [  # the report's API; the tables and run loading it re-exports live in hwsim.report.tables and hwsim.workload.runs
    "SECTIONS", "Costs", "Figure", "Part", "ReportInput", "Run", "Section", "Settings", "build_report", "cost_runs",
    "crossings", "expand_run_paths", "figure_patterns", "load_runs", "markdown", "regen_command",
    "soft_precision_frame", "system_storage_frame", "write_report",
]


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
    return units.markdown(text, index=False, disable_numparse=True,
                            colalign=["right" if n else "left" for n in numeric])


def regen_command(masks: Sequence[str | Path], profiles: Sequence[str], out_dir: str | Path,
                  extra: Sequence[str] = ()) -> str:
    """The ``ksm-sim`` command that regenerates a report, with a shell glob (``runs/*``) in place of
    the folder list when the folders are exactly what that glob matches."""
    paths = [str(m) for m in masks]
    by_parent: dict[str, list[str]] = {}
    for p in paths:  # each folder's entries collapse to one glob when they are exactly what it matches
        by_parent.setdefault(os.path.dirname(p.rstrip("/")), []).append(p)
    if len(paths) > 1:
        collapsed = []
        for parent, group in by_parent.items():
            pattern = os.path.join(parent, "*") if parent else "*"
            matched = {os.path.normpath(p) for p in glob.glob(pattern)}
            if len(group) > 1 and matched == {os.path.normpath(p) for p in group}:
                collapsed.append(pattern)
            else:
                collapsed += group
        paths = collapsed
    words = ["ksm-sim"]
    if paths and all(p.endswith("*") for p in paths):
        words += ["--masks", *paths]  # --masks takes the folders listed after it
        paths = []
    for p in paths:
        words += ["--masks", p if p.endswith("*") else shlex.quote(p)]
    for name in profiles:
        words += ["--profile", shlex.quote(str(name))]
    words += [shlex.quote(str(e)) for e in extra]
    words += ["--report", shlex.quote(str(out_dir))]
    return " ".join(words)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def profile_source(profile: Profile) -> str:
    """The leading comment block of a bundled profile's YAML (where its numbers come from)."""
    resource = PROFILES / f"{profile.name}.yaml"
    if profile.name not in bundled_profiles() or not resource.is_file():
        return MISSING
    lines = []
    for line in resource.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or MISSING


# --------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True, slots=True)
class Figure:
    """A PNG a section links to: its file name beside ``README.md`` and how to draw it at a path."""

    name: str
    draw: Callable[[Path], Path]


@dataclass(frozen=True, slots=True)
class Part:
    """What one section contributes: its Markdown lines and the figures they link."""

    lines: list[str]
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReportInput:
    """What every section reads: the costed runs and the words around them."""

    costs: Costs
    command: str
    title: str | None = None
    skipped: Sequence[Path] = ()

    @property
    def runs(self) -> list[Run]:
        return self.costs.runs

    @property
    def ref(self) -> Profile:
        return self.costs.reference

    @property
    def tasks(self) -> list[str]:
        return tasks_of(self.runs)

    @property
    def methods(self) -> list[str]:
        return methods_of(self.runs)

    @property
    def styles(self) -> dict[str, catalogue.Style]:
        """Each method label's colour and marker (from the catalogue), in display order."""
        return {m: catalogue.style(m) for m in self.methods}


def intro(r: ReportInput) -> Part:
    """Title, the command that regenerates the report, and what went into it."""
    runs, tasks, methods = r.runs, r.tasks, r.methods
    arch = runs[0].backbone[0] or "unknown"
    weights = runs[0].backbone[1]
    title = r.title or f"Accuracy and hardware cost: {len(tasks)} tasks x {len(methods)} methods"
    md: list[str] = [f"# {title}", "",
                     "Regenerate this report (from the repository root, after the runs exist):", "",
                     "```sh", r.command, "```", ""]
    md += [f"Backbone `{arch}`" + (f" (weights `{weights}`)" if weights else "") + f"; {len(runs)} runs "
           f"({len(tasks)} tasks: {', '.join(f'`{t}`' for t in tasks)}; methods: "
           f"{', '.join(f'`{m}`' for m in methods)}); profiles: {', '.join(f'`{p.name}`' for p in r.costs.profiles)}. "
           f"Storage is priced at the precisions of `{r.ref.name}` (the first profile). Accuracy is the test-split "
           "top-1 recorded by `ksm-train` in each `run.json` (float model"
           + ("; the int8 column is `metrics.int8.top1`" if any(run.int8_top1 is not None for run in runs) else "")
           + "); `n/a` means the run did not record it.", ""]
    flags = r.costs.settings.flags()
    if flags:
        md += [f"Costed with `{' '.join(flags)}` (`ksm-sim` options; the others at their defaults).", ""]
    if r.skipped:
        # each path once, as given (runs/results.md and runs-lora/results.md are two files, not one listed twice)
        md += ["Skipped (not run folders): " + ", ".join(f"`{_shown(p)}`" for p in dict.fromkeys(r.skipped)) + ".", ""]
    return Part(md)


def how_to_read(r: ReportInput) -> Part:
    """Fixed prose: what task-specific storage and the two application modes mean."""
    batch = r.costs.settings.batch
    images = "one image" if batch == 1 else f"a batch of {batch} images"
    return Part(["## How to read this", "",
                 ("Each run folder is one task learned by one method on the same frozen backbone. A method's "
                  "*task-specific* storage is what the device keeps per task beside the shared backbone: the mask "
                  "(KSM: one bit per kernel plus the soft scale where that bit is 0; Piggyback: one bit per weight), "
                  "the BatchNorm scale and shift when BatchNorm is per task, the classifier head, and for fine-tuning "
                  f"a full copy of the trained weights. Costs are per inference of {images}, from hwsim's analytical "
                  "model (a mapping search per layer, `hwsim.cost.mapping`): *on the fly* streams the mask with every "
                  "weight fetch and gates or multiplies each weight (LoRA runs its low-rank branch); *folded* writes the masked weights once at a task switch, after which an "
                  "inference costs the same as the plain backbone. Better methods sit up and to the left in the "
                  "accuracy-storage figure; the system-storage figure shows when keeping per-task copies stops "
                  "paying."), ""])


def _accuracy_figure(r: ReportInput) -> Figure:
    return Figure("accuracy-vs-storage.png",
                  lambda path: figures.accuracy_vs_storage(accuracy_storage_frame(r.costs), r.styles, path))


def headline(r: ReportInput) -> Part:
    """Per method: accuracy per task, storage, energy and latency; the accuracy-storage figure."""
    head = headline_frame(r.costs)
    return Part(["## Headline", "",
                 (f"Test top-1 per task, and per-task storage, energy and latency per inference (on `{r.ref.name}`, "
                  "mask applied on the fly), averaged over each method's tasks. The mean top-1 is `n/a` when a task "
                  "is missing."), "",
                 markdown(head, {c: ".2f" for c in head.columns if c.endswith("(%)")}), "",
                 "![Accuracy vs per-task storage](accuracy-vs-storage.png)", ""],
                [_accuracy_figure(r)])


PER_PROFILE_TABLES = (  # (quantity, mode, caption) of section 1's per-profile tables
    ("energy", "on_the_fly", "Energy per inference (µJ), mask applied on the fly"),
    ("latency", "on_the_fly", "Latency per inference (ms: compute + stalls + on/off-loading), mask applied on the fly"),
    ("switch_energy", "folded", ("Task-switch energy (µJ), folded: read the task's tensors, the "
                                 "backbone weights and the mask, write the task's weights")),
    ("switch_latency", "folded", "Task-switch latency (ms), folded"),
    ("switch_energy", "on_the_fly", "Task-switch energy (µJ), on the fly: load BatchNorm and head only"),
)


def per_task(r: ReportInput) -> Part:
    """Section 1: accuracy and storage per (task, method), then energy, latency and switch cost per profile."""
    acc = accuracy_storage_frame(r.costs)
    pb = r.ref.precision_bits
    md = ["## 1. Accuracy, storage and cost per task and method", "",
          (f"Per-task storage at `{r.ref.name}` precisions: weights {pb.weights} bits, mask scale "
           f"{pb.mask_scale} bits, BatchNorm scale and shift {pb.batchnorm} bits each per channel. "
           "1 KiB = 1024 bytes."), "",
          markdown(acc, {c: ".2f" for c in acc.columns if c.endswith("(%)")}), ""]
    for quantity, mode, caption in PER_PROFILE_TABLES:
        md += [f"**{caption}**, per profile:", "", markdown(per_profile_frame(r.costs, quantity, mode)), ""]
    md += [("With the mask folded into the weights at the task switch, an inference costs what the plain "
            "backbone with the task's head costs (the `feature` rows above, where present); the switch pays "
            "instead."), ""]
    return Part(md)


def accuracy_vs_storage(r: ReportInput) -> Part:
    """Section 2: the accuracy-storage figure, with how to read it."""
    return Part(["## 2. Accuracy vs per-task storage", "",
                 ("One point per (task, method); the line joins each task's Pareto front (no other method is both "
                  "smaller and more accurate). Runs without a recorded accuracy are left out of this figure; a run "
                  f"more than {figures.OUTLIER_PP:g} points below its task's best is pinned to the bottom edge with "
                  "its value written."), "",
                 "![Accuracy vs per-task storage](accuracy-vs-storage.png)", ""],
                [_accuracy_figure(r)])


def energy(r: ReportInput) -> Part:
    """Section 3: energy per inference by memory level and operand, one figure per profile."""
    md = ["## 3. Where the energy goes", "",
          ("Energy per inference split by memory level (left) and by operand (right), per method, mask "
           "applied on the fly, mean over each method's tasks; one figure per profile."), ""]
    figs = []
    for prof in r.costs.profiles:
        name = f"energy-{_slug(prof.name)}.png"
        figs.append(Figure(name, lambda path, prof=prof: figures.energy_split(
            energy_parts_frame(r.costs, prof), prof.name, path)))
        md += [f"![Energy per inference on {prof.name}]({name})", ""]
    parts = energy_parts_frame(r.costs, r.ref)
    flat = parts.copy()
    flat.columns = [f"{g}: {n}" for g, n in parts.columns]
    flat = flat[[c for c in flat.columns if c.startswith("level")]]
    flat.insert(len(flat.columns), "total", flat.sum(axis=1))
    md += [f"Energy per inference by level on `{r.ref.name}` (µJ):", "", markdown(flat.rename_axis("method"),
                                                                                  index=True), ""]
    return Part(md, figs)


def operator_kinds(r: ReportInput) -> Part:
    """Section 3b: where one inference's time and energy go, by operator kind, on each profile."""
    run = r.runs[0]
    md = ["## 3b. Where the time goes, by operator kind", "",
          (f"One inference of `{run.folder.name}` (task `{run.task}`, method `{run.label}`, mask applied on the fly; "
           "every run shares the backbone) per operator kind: how each kind runs (on the MAC array, on the "
           "vector unit, fused into its producer's output stage, or as a view that moves no data), its share of "
           "the latency, energy, and bytes moved to and from the outermost level. The backbone is costed as its "
           "graph when the run's layers match a bundled network (`docs/graphs.md`), else as a chain."), ""]
    for prof in r.costs.profiles:
        result = r.costs.get(0, prof, "on_the_fly")
        frame = result.operators_frame()
        frame["energy (µJ)"] = frame.pop("energy (J)") * 1e6
        frame["DRAM (KiB)"] = frame.pop("DRAM (B)") / 1024
        frame["latency share (%)"] = frame.pop("latency share") * 100
        res = result.residency or {}
        md += [f"`{prof.name}` ({'graph' if res.get('graph') == 'graph' else 'chain'}; non-MAC operators on "
               f"{prof.vector.describe()}):", "",
               markdown(frame, {"operators": ",d", "MACs": ",d", "outputs on chip": ",d"}), ""]
    return Part(md)


def system_storage(r: ReportInput) -> Part:
    """Section 4: storage of the whole system as tasks are added, and where fine-tuning overtakes."""
    system = system_storage_frame(r.costs)
    cross = crossings(system)
    pb = r.ref.precision_bits
    md = ["## 4. Storage of the whole system as tasks are added", "",
          (f"Shared backbone weights ({pb.weights}-bit) + T x the method's mean task-specific storage; "
           "fine-tuning keeps its own copy of every layer it trains, so those layers are not shared"
           + ("; PackNet keeps one map of each weight's owning task for all tasks, ceil(log2(T + 1)) bits per "
              "weight, plus each task's BatchNorm and head" if any(has_task_index(run.method) for run in r.runs)
              else "") + "."), "",
          "![System storage vs number of tasks](system-storage.png)", ""]
    shown = [t for t in (1, 2, 4, 8, 16) if t in system.index]
    md += [markdown(system.loc[shown].T.rename(columns=lambda t: f"T={t} (MiB)").rename_axis("method"),
                    index=True), ""]
    if cross:
        words = [f"`{m}` from T = {t}" if t else f"`{m}`: not within {len(system)} tasks"
                 for m, t in cross.items()]
        md += ["Fine-tuning stores more than " + "; ".join(words) + ".", ""]
    return Part(md, [Figure("system-storage.png",
                            lambda path: figures.system_storage(system, r.styles, path, cross))])


def tasks_on_chip(r: ReportInput) -> Part:
    """Section 4b: how many tasks' task-specific data fit on chip beside the backbone, per profile."""
    md = ["## 4b. How many tasks fit on chip", "",
          ("The outermost on-chip memory that holds weights keeps the backbone's weights (at the profile's "
           "weight precision) and the largest activation working set of one inference; the tasks whose "
           "task-specific data (masks + BatchNorm + head, mean over the method's tasks) fit in the rest "
           "switch without touching DRAM, and in a stream of inferences (`ksm-sim --steady-state`) their "
           "masks are read from chip. 0 means the backbone alone does not fit; `all` means a task adds "
           "nothing to store."), "",
          markdown(tasks_on_chip_frame(r.costs), {"tasks that fit": ",d"}), ""]
    return Part(md)


def layer_masks(r: ReportInput) -> Part:
    """Section 5: per-layer mask storage and traffic of the reference KSM run."""
    md = ["## 5. Which layers the mask costs most in", ""]
    k = reference_ksm(r.costs)
    if k is None:
        return Part(md + ["No KSM run was given, so there is no per-layer mask breakdown.", ""])
    runs, ref = r.runs, r.ref
    layers = layer_mask_frame(r.costs, k)
    top = layers.sort_values("mask (KiB)", ascending=False).head(10)
    md += [(f"KSM run `{runs[k].folder.name}` on `{ref.name}`: mask storage per layer and the mask bytes "
            f"read from `{ref.dram.name}` per inference when the mask is applied on the fly "
            f"({len(layers)} masked layers, {_auto(layers['mask (KiB)'].sum())} KiB stored, "
            f"{_auto(layers['mask traffic (KiB/inference)'].sum())} KiB read per inference)."), "",
           "![Per-layer mask storage and traffic](layer-masks.png)", "",
           f"The {len(top)} largest:", "", markdown(top, {"share of storage (%)": ".1f",
                                                        "share of traffic (%)": ".1f"}), ""]
    return Part(md, [Figure("layer-masks.png", lambda path: figures.layer_masks(
        layers, f"{runs[k].task} / {runs[k].label}", ref.name, path))])


def soft_precision(r: ReportInput) -> Part:
    """Section 6: KSM's accuracy and mask storage against the bits of its soft part."""
    md = ["## 6. How many bits the soft mask needs", ""]
    soft = soft_precision_frame(r.costs)
    binary = binary_only_frame(r.costs)
    if soft.empty:
        return Part(md + ["No soft KSM run was given, so there is no precision sweep.", ""])
    md += [("Test top-1 of each KSM run with its soft part quantised to b bits after training "
            "(`metrics.soft_precision`; b = 0 keeps only the binary mask), beside the mask storage "
            "that precision costs per task (one bit per kernel entry + b bits per soft entry)."), "",
           "![Accuracy and storage vs soft-mask precision](soft-precision.png)", ""]
    wide = soft.pivot(index="bits", columns="task", values=["top-1 (%)", "masks (KiB)"])
    order = {task: i for i, task in enumerate(r.tasks)}  # a column is a task, or "task / run" for several runs
    names = sorted(soft["task"].unique(), key=lambda n: (order.get(n.split(" / ")[0], len(order)), n))
    wide = wide.reindex(columns=[(q, t) for q in ("top-1 (%)", "masks (KiB)") for t in names])
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
    return Part(md, [Figure("soft-precision.png", lambda path: figures.soft_precision(soft, binary, path))])


def profiles(r: ReportInput) -> Part:
    """Section 7: the profiles' headline numbers and sources, and the run folders read."""
    md = ["## 7. Accelerator profiles", "",
          ("Headline numbers of the profiles (from `hwsim/profiles/*.yaml`; every number there carries its "
           "source in a comment). Energies are estimates from the cited tables, not measurements."), "",
          markdown(profiles_frame(r.costs.profiles)), ""]
    md += ["Sources:", ""] + [f"- `{p.name}`: {profile_source(p)}" for p in r.costs.profiles] + [""]
    md += ["Run folders:", ""] + [f"- `{run.folder.name}`: task `{run.task}`, method `{run.label}`"
                                  for run in r.runs] + [""]
    return Part(md)


@dataclass(frozen=True, slots=True)
class Section:
    """One entry of the report: the function that writes it and the names (glob patterns) of the
    figure files it may write, so a regenerated report can drop the figures it no longer links."""

    build: Callable[[ReportInput], Part]
    figures: tuple[str, ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section(intro),
    Section(how_to_read),
    Section(headline, ("accuracy-vs-storage.png",)),
    Section(per_task),
    Section(accuracy_vs_storage, ("accuracy-vs-storage.png",)),
    Section(energy, ("energy-*.png",)),
    Section(operator_kinds),
    Section(system_storage, ("system-storage.png",)),
    Section(tasks_on_chip),
    Section(layer_masks, ("layer-masks.png",)),
    Section(soft_precision, ("soft-precision.png",)),
    Section(profiles),
)


REPORT_TOOL = "ksm-sim --report"  # the writer named in the folder's marker


def figure_patterns(sections: Sequence[Section] = SECTIONS) -> tuple[str, ...]:
    """The file names (glob patterns) of every figure the sections may write."""
    return tuple(dict.fromkeys(p for s in sections for p in s.figures))


def _shown(path: Path) -> str:
    """A path as a report names it: relative to the working directory, else its folder and name (no machine's
    absolute path in a committed report)."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return f"{path.parent.name}/{path.name}"


def build_report(costs: Costs, out_dir: Path, command: str, title: str | None = None,
                 skipped: Sequence[Path] = (), sections: Sequence[Section] = SECTIONS) -> tuple[str, list[Path]]:
    """Run the sections, draw their figures into ``out_dir``; return (Markdown text, figure paths)."""
    r = ReportInput(costs=costs, command=command, title=title, skipped=skipped)
    md: list[str] = []
    drawn: dict[str, Path] = {}
    for section in sections:
        part = section.build(r)
        md += part.lines
        for fig in part.figures:
            if not any(fnmatch.fnmatchcase(fig.name, p) for p in section.figures):
                raise ValueError(f"section {section.build.__name__}: figure {fig.name!r} is not declared")
            if fig.name not in drawn:  # two sections may link one figure
                drawn[fig.name] = fig.draw(out_dir / fig.name)
    return "\n".join(md), list(drawn.values())


def write_report(masks: Sequence[str | Path], profiles: Sequence[str | Profile], out_dir: str | Path,
                 command: str | None = None, title: str | None = None, settings: Settings = Settings()) -> Path:
    """Read the runs, cost them, and write ``out_dir/README.md`` plus its PNG figures.

    Args:
        masks: run folders (plain files are skipped; a folder of run folders is expanded).
        profiles: bundled profile names, ``all``, YAML paths, or loaded profiles; the first prices storage.
        out_dir: the report folder: new, empty, or one this project made (its marker); built under a temporary
            sibling and published whole. Figures an earlier report wrote and this one does not are removed;
            other files in it are left alone.
        command: the command line printed at the top; default: the ``ksm-sim`` command for these inputs.
        title: the report's title; default: tasks x methods.
        settings: how the runs are costed, as ``ksm-sim``'s options for its table (``--tasks``, ``--batch``,
            ``--set`` ...); the profiles named are loaded with its ``--set`` overrides, and the report names every
            setting not at its default.

    Returns:
        The path of the written ``README.md``.
    """
    out_dir = Path(out_dir)
    folders, skipped = expand_run_paths(masks)
    inputs = [*masks, *(p for p in profiles if isinstance(p, (str, Path)) and Path(p).exists())]
    with build_folder(out_dir, REPORT_TOOL, inputs) as tmp:  # refused before any work; published whole
        runs = order_runs(load_runs(folders))
        if settings.sets and any(isinstance(p, Profile) for p in profiles):
            raise InputError("report: --set overrides profiles given by name or path, not loaded ones")
        loaded: list[Profile] = []
        for p in profiles:
            loaded += [p] if isinstance(p, Profile) else [d.profile for d in load_designs([p], settings.sets)]
        loaded = list({p.name: p for p in loaded}.values())
        costs = cost_runs(runs, loaded, settings)
        if command is None:
            names = [p if isinstance(p, str) else p.name for p in profiles]
            command = regen_command(masks, names, out_dir, settings.flags())
        text, _pngs = build_report(costs, tmp, command, title, skipped)
        atomic_write(tmp / "README.md", text)
    return out_dir / "README.md"
