"""The sweep description (``ksm-explore SPEC.yaml``): parsing and validation, before anything is written.

A spec::

    name: edge-npu-sram                  # optional: the title of the summary
    profiles: [edge_npu]                 # base profile(s): bundled names or .yaml paths (relative to the spec)
    set: [precision_bits.weights=8]      # optional: overrides applied to every base (as ksm-sim --set)
    axes:                                # dotted profile paths (as --set); the sweep is their product
      levels.sram_1MB.size_bytes: {log: [131072, 8388608], num: 7, integer: true}
      array: [{rows: 16, cols: 16}, {rows: 32, cols: 32}, {rows: 16, cols: 64}]
      precision_bits.mask_scale: [2, 4, 8]
      clock_hz: {linear: [5.0e8, 1.0e9], num: 3}   # or {linear: [a, b], step: s}
      levels.l2: [absent, {like: sram_1MB, after: sram_1MB, size_bytes: 262144}]  # a level removed/inserted
    workloads:                           # any mix; paths relative to the spec
      - network: resnet50                #   a bundled network or a ksm-layers/1 .json
      - topology: layers.csv             #   a SCALE-Sim topology
      - onnx: model.onnx                 #   an ONNX CNN
        input_shape: [1, 3, 224, 224]    #     where the model leaves its input symbolic
      - runs: runs/*                     #   run folders (glob): their masks and recorded accuracy
    methods: [ksm, finetune]             # charged on networks/topologies/onnx (run folders name their own)
    modes: [folded, on_the_fly]          # mask application (default: both)
    tasks: 8
    mask_density: 0.5
    batchnorm: task                    # default: each method's own (catalogue)
    batch: 1
    steady_state: false
    objectives: [energy, latency, area]  # minimised: energy, latency, area, edp, storage
    constraints: {area: {max: 10}, latency: {max: 0.05}, accuracy: {min: 0.8}}

Every key, its type, its range and the rules across keys are declared once, in
:class:`hwsim.schemas.explore_spec.ExploreSpec` (its page: ``docs/reference/explore-spec.md``), and checked
before any workload is read or design built; an error is one line naming the key
(``spec.yaml: axes.array.num: ...``). Then the workloads are read, the points (designs × workloads × modes)
counted from the axes' lengths (past ``--max-points``, :data:`MAX_POINTS`, the sweep is refused with its
estimate, :mod:`hwsim.work_budget`), and every design built and validated as a profile file is: a profile
file's own error names the file, an axis value's names the axis and the value.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim import catalogue
from hwsim.errors import InputError
from hwsim.fileio.bounded import MAX_YAML_BYTES, read_text
from hwsim.hardware.overrides import apply_overrides, apply_values
from hwsim.hardware.profile import Design, design_from_raw, load_yaml, read_raw_profile
from hwsim.schemas.validation import validate
from hwsim.schemas.explore_spec import QUANTITIES, REMOVE, ExploreSpec, WorkloadEntry, profile_label
from hwsim.work_budget import Estimate, refuse_over_cap
from hwsim.workload.layers import Workload, load_network, load_run_record
from hwsim.workload.topology import load_topology

UNITS = {"energy_j": "J", "latency_s": "s", "area_mm2": "mm²", "edp_js": "J·s", "task_specific_bytes": "B",
         "accuracy": "top-1"}
# The whole sweep is held to MAX_POINTS (ksm-explore --max-points lifts it), counted from the axes' lengths
# before any design is built.
MAX_POINTS = 200_000
# The estimate's constants, measured on the committed example (reports/explore: 9,000 points in 13.6 s on
# a process pool of 2, so 330 points/s a core; its peak memory grows by about 40 MB over a one-design
# sweep, so about 5 kB a point held: the point, its row and its line of the tables).
POINTS_PER_SECOND_PER_CORE = 330.0
BYTES_PER_POINT = 5_000


@dataclass(frozen=True)
class Axis:
    """One swept profile path and its values (decoded YAML)."""

    key: str
    values: tuple[Any, ...]

    def labels(self) -> list[str]:
        return [value_label(v) for v in self.values]


@dataclass(frozen=True)
class WorkloadItem:
    """One workload of the sweep: a key for the tables, the layers, and (runs) accuracy per scale bits."""

    key: str
    work: Workload
    soft_precision: dict[int, float] = field(default_factory=dict)
    label: str = ""  # the method as tables and figures name it (hwsim.catalogue.run_label); "" for none

    @property
    def variant(self) -> str:
        return self.label or self.work.method or "none"


@dataclass
class Spec:
    """A validated sweep."""

    path: Path
    name: str
    profiles: list[str]
    sets: list[str]
    axes: list[Axis]
    workloads: list[WorkloadItem]
    methods: list[str | None]
    modes: list[str]
    tasks: int
    mask_density: float
    batchnorm: str | None  # None: each method's own default
    batch: int
    steady_state: bool
    objectives: list[str]
    constraints: dict[str, tuple[float | None, float | None]]
    designs: list[tuple[dict[str, str], Design]] = field(default_factory=list)  # (axis labels, design)
    notes: list[str] = field(default_factory=list)  # one-line warnings (uncosted ONNX operators)
    estimate: Estimate | None = None  # the sweep's size, time and memory, estimated before designs were built

    @property
    def objective_columns(self) -> list[str]:
        return [QUANTITIES[o] for o in self.objectives]


def value_label(value: Any) -> str:
    """A short, stable text for an axis value (table cell and plot tick)."""
    if value in REMOVE:
        return "absent"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def point_modes(modes: list[str], method: str | None) -> list[str | None]:
    """The modes a workload of ``method`` is costed in: a mode changes nothing for a method without an
    applied mask (finetune, feature), so it is costed once, folded; a plain network without a method once."""
    traits = catalogue.find(method)
    if traits is not None and traits.mask.applied:
        return list(modes)
    return ["folded"] if method else [None]


def sweep_estimate(points: int, cores: int = 1, max_points: int = MAX_POINTS, what: str = "ksm-explore") -> Estimate:
    """The sweep's points, time on ``cores`` and memory, with the cap ``--max-points`` lifts."""
    return Estimate.of(what, "points", points, seconds_per_unit=1 / (POINTS_PER_SECOND_PER_CORE * cores),
                       bytes_per_unit=BYTES_PER_POINT, cap=max_points, option="--max-points")


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def _onnx_item(entry: WorkloadEntry, base: Path, notes: list[str]) -> WorkloadItem:
    from hwsim.workload.onnx_reader import load_onnx

    assert entry.onnx is not None
    work, skipped = load_onnx(_resolve(entry.onnx, base), warn=False, input_shape=entry.input_shape,
                              given_by="the spec's input_shape")
    if skipped:
        listed = ", ".join(f"{n} {op}" for op, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        notes.append(f"{entry.onnx}: no cost model for {listed}: costed as one vector operation per output "
                     "element")
    return WorkloadItem(f"onnx:{work.source}", work)


def _run_items(patterns: list[str], base: Path) -> list[WorkloadItem]:
    folders: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(_resolve(pattern, base))))
        folders += [Path(m) for m in matches if (Path(m) / "run.json").is_file()]
    if not folders:
        raise InputError(f"no run folder (with run.json) matches {', '.join(patterns)}")
    return [_run_item(folder) for folder in dict.fromkeys(folders)]  # two patterns matching one: costed once


def _run_item(folder: Path) -> WorkloadItem:
    """A run folder, read once through its schema (:func:`hwsim.workload.layers.load_run_record`), with its
    ``metrics.soft_precision``: {scale bits: measured top-1} (docs/run-folder.md)."""
    work, run = load_run_record(folder)
    measured = {int(bits): float(top1) for bits, top1 in run.metrics.soft_precision.items()}
    return WorkloadItem(f"run:{folder.name}", work, measured, label=catalogue.run_label(run.model_dump(exclude_unset=True)))


def _entry_items(entry: WorkloadEntry, base: Path, notes: list[str]) -> list[WorkloadItem]:
    """The workloads of one entry of ``workloads:`` (a glob of run folders gives several)."""
    if entry.network is not None:
        target = str(_resolve(entry.network, base)) if entry.network.endswith(".json") else entry.network
        work = load_network(target)
        return [WorkloadItem(f"network:{work.source}", work)]
    if entry.topology is not None:
        work = load_topology(_resolve(entry.topology, base))
        return [WorkloadItem(f"topology:{work.source}", work)]
    if entry.onnx is not None:
        return [_onnx_item(entry, base, notes)]
    return _run_items(entry.runs or [], base)


def _workloads(entries: list[WorkloadEntry], base: Path, where: str,
               notes: list[str]) -> list[tuple[str, WorkloadItem]]:
    """(kind, item) for every workload entry; a reader's error names the entry."""
    out: list[tuple[str, WorkloadItem]] = []
    for i, entry in enumerate(entries):
        try:
            out += [(entry.kind, item) for item in _entry_items(entry, base, notes)]
        except InputError as exc:
            raise InputError(f"{where}: workloads[{i}].{entry.kind}: {exc}") from None
    keys = [item.key for _, item in out]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise InputError(f"{where}: workloads: two workloads are both {dup!r}")
    return out


def _charged(loaded: list[tuple[str, WorkloadItem]], spec: ExploreSpec) -> list[WorkloadItem]:
    """Run folders as they are; every other workload once per method named in the spec."""
    items = []
    for kind, item in loaded:
        if kind == "runs":
            items.append(item)
            continue
        for method in dict.fromkeys(spec.methods):
            w = item.work
            work = Workload(source=w.source, layers=w.layers, method=method,
                            batchnorm=catalogue.batchnorm_of(method, spec.batchnorm))
            items.append(WorkloadItem(item.key + (f"+{method}" if method else ""), work, label=method or ""))
    return items


def read_spec(path: Path) -> ExploreSpec:
    """The spec file decoded (bounded YAML) and checked against :class:`ExploreSpec`; nothing else read."""
    text = read_text(path, MAX_YAML_BYTES, InputError)
    return validate(ExploreSpec, load_yaml(text, str(path)), str(path))


def load_spec(path: str | Path, max_points: int = MAX_POINTS, cores: int = 1) -> Spec:
    """Read and validate a spec; count its points (refused past ``max_points``: the estimate for ``cores``
    is in one line), then build and validate every design of the sweep. Writes nothing."""
    path = Path(path)
    where = str(path)
    raw = read_spec(path)
    base = path.parent
    profiles = [str(_resolve(p, base)) if p.endswith((".yaml", ".yml")) else p for p in raw.profiles]
    axes = [Axis(key, axis.points()) for key, axis in (raw.axes or {}).items()]
    constraints = raw.constraints.pairs() if raw.constraints is not None else {}
    notes: list[str] = []
    loaded = _workloads(raw.workloads, base, where, notes)
    if "accuracy" in constraints and not any(item.work.top1 is not None for _, item in loaded):
        raise InputError(f"{where}: constraints.accuracy: no workload records an accuracy (only run folders do)")
    items = _charged(loaded, raw)
    modes = list(dict.fromkeys(raw.modes))
    designs = len(profiles) * math.prod(len(axis.values) for axis in axes)
    points = designs * sum(len(point_modes(modes, item.work.method)) for item in items)
    estimate = refuse_over_cap(sweep_estimate(points, cores, max_points, what=where))

    spec = Spec(path=path, estimate=estimate, notes=notes, name=raw.name or path.stem, profiles=profiles,
                sets=list(raw.sets or []), axes=axes, workloads=items, methods=list(dict.fromkeys(raw.methods)),
                modes=modes, tasks=raw.tasks, mask_density=float(raw.mask_density), batchnorm=raw.batchnorm,
                batch=raw.batch, steady_state=raw.steady_state, objectives=list(dict.fromkeys(raw.objectives)),
                constraints=constraints)
    from hwsim.explore.point import Options, check_options

    check_options(Options(tasks=spec.tasks, mask_density=spec.mask_density, batch=spec.batch,
                          steady_state=spec.steady_state), f"{where}: ")
    spec.designs = build_designs(spec)
    return spec




# --------------------------------------------------------------------------------------------
# Designs: each base profile (a file's error names the file) x each combination of axis values (an error
# names the axis and the value that made the profile invalid)


def _base_raw(spec: Spec, name: str) -> tuple[dict[str, Any], str]:
    """A base profile's mapping with the spec's ``set`` applied, validated on its own first."""
    raw, where = read_raw_profile(name)
    try:
        design_from_raw(raw, where)
    except InputError as exc:
        raise InputError(f"{spec.path}: profiles: {exc}") from None
    if not spec.sets:
        return raw, where
    try:
        raw = apply_overrides(raw, spec.sets)
        design_from_raw(raw, where)
    except InputError as exc:
        raise InputError(f"{spec.path}: set: {str(exc).removeprefix('--set ')}") from None
    return raw, where


def _design(raw: dict[str, Any], where: str, values: dict[str, Any]) -> Design:
    return design_from_raw(apply_values(raw, values), where)


def _valid(raw: dict[str, Any], where: str, values: dict[str, Any]) -> InputError | None:
    try:
        _design(raw, where, values)
    except InputError as exc:
        return exc
    return None


def _blame(spec: Spec, raw: dict[str, Any], where: str, values: dict[str, Any], exc: InputError) -> InputError:
    """Name the axis and the value that made a (valid) base profile invalid: the one whose value, left out,
    leaves a valid profile; else the first whose value alone is invalid; else the combination."""
    for key, value in values.items():
        if len(values) > 1 and _valid(raw, where, {k: v for k, v in values.items() if k != key}) is None:
            return InputError(f"{spec.path}: axes.{key}: value {value_label(value)}: {_reason(exc, key)}")
    for key, value in values.items():
        alone = _valid(raw, where, {key: value})
        if alone is not None:
            return InputError(f"{spec.path}: axes.{key}: value {value_label(value)}: {_reason(alone, key)}")
    combo = ", ".join(f"{k}={value_label(v)}" for k, v in values.items())
    return InputError(f"{spec.path}: axes {combo} together: {_reason(exc, None)}")


def _reason(exc: InputError, key: str | None) -> str:
    """An override's error without its ``--set KEY: `` prefix (the caller names the axis)."""
    text = str(exc)
    for prefix in ([f"--set {key}: "] if key else []) + ["--set "]:
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def build_designs(spec: Spec) -> list[tuple[dict[str, str], Design]]:
    """Every (base profile x axis value combination), validated as a profile file is."""
    out = []
    for base in spec.profiles:
        raw, where = _base_raw(spec, base)
        for combo in itertools.product(*(axis.values for axis in spec.axes)):
            values = {axis.key: (None if v in REMOVE else v) for axis, v in zip(spec.axes, combo)}
            try:
                design = _design(raw, where, values)
            except InputError as exc:
                raise _blame(spec, raw, where, values, exc) from None
            labels = {"profile": profile_label(base)}
            labels.update({axis.key: value_label(v) for axis, v in zip(spec.axes, combo)})
            out.append((labels, design))
    return out


def design_hash(design: Design) -> str:
    """A stable digest of a design's raw mapping (the resume key's profile part)."""
    text = json.dumps(design.raw, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
