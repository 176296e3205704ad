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

Every error is one line naming the key (``spec.yaml: axes.array.rows: ...``). The points (designs ×
workloads × modes) are counted from the axes' lengths before any design is built: past ``--max-points``
(:data:`MAX_POINTS`) the sweep is refused with its estimate (:mod:`hwsim.work_budget`).
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

import numpy as np

from hwsim import catalogue
from hwsim.fileio import bounded
from hwsim.errors import InputError
from hwsim.workload.layers import Workload, load_network, load_run, load_topology
from hwsim.cost.mask_cost import MODES
from hwsim.hardware.overrides import apply_overrides, apply_values
from hwsim.hardware.profile import Design, design_from_raw, load_yaml, read_raw_profile
from hwsim.work_budget import Estimate, refuse_over_cap

TOP_KEYS = ("name", "profiles", "set", "axes", "workloads", "methods", "modes", "tasks", "mask_density",
            "batchnorm", "batch", "steady_state", "objectives", "constraints")
WORKLOAD_KINDS = ("network", "topology", "onnx", "runs")
# objective / constraint name -> column of the points table
QUANTITIES = {"energy": "energy_j", "latency": "latency_s", "area": "area_mm2", "edp": "edp_js",
              "storage": "task_specific_bytes", "accuracy": "accuracy"}
UNITS = {"energy_j": "J", "latency_s": "s", "area_mm2": "mm²", "edp_js": "J·s", "task_specific_bytes": "B",
         "accuracy": "top-1"}
REMOVE = ("absent", "remove", None)
# Bounds that turn a typo (num: 1e9) into one line instead of gigabytes: an axis of 100,000 values is
# already hours of work. The whole sweep is held to MAX_POINTS (ksm-explore --max-points lifts it),
# counted from the axes' lengths before any design is built.
MAX_AXIS_VALUES = 100_000
MAX_POINTS = 200_000
# The estimate's constants, measured on the committed example (reports/explore: 9,000 points in 13.6 s on
# a process pool of 2, so 330 points/s a core; its peak memory grows by about 40 MB over a one-design
# sweep, so about 5 kB a point held: the point, its row and its line of the tables).
POINTS_PER_SECOND_PER_CORE = 330.0
BYTES_PER_POINT = 5_000
# A count in the spec (tasks, batch) beyond a million is a typo: the cost model multiplies it into a
# layer's bytes and MACs, and past this the products leave the 64-bit integers of the tables.
MAX_COUNT = 1_000_000
NOTES: list[str] = []  # warnings of the last load_spec (operators an ONNX workload leaves uncosted)


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


def _fail(where: str, message: str) -> InputError:
    return InputError(f"{where}: {message}")


def _number(v: Any) -> float | None:
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _axis_values(raw: Any, where: str) -> tuple[Any, ...]:
    """A list, or ``{linear: [a, b], num|step}``, or ``{log: [a, b], num}``; ``integer: true`` rounds."""
    if isinstance(raw, list):
        if not raw:
            raise _fail(where, "empty axis (give at least one value)")
        if len(raw) > MAX_AXIS_VALUES:
            raise _fail(where, f"{len(raw)} values, more than the {MAX_AXIS_VALUES} an axis may have")
        seen: list[Any] = []
        for value in raw:
            if value in seen:  # `in` on a list: values may be unhashable (a level inserted)
                raise _fail(where, f"{bounded.short(value)} is listed twice (each point would be swept twice)")
            seen.append(value)
        return tuple(raw)
    if not isinstance(raw, dict) or not ({"linear", "log"} & set(raw)):
        raise _fail(where, "must be a list of values, {linear: [start, stop], num: N} or "
                           "{log: [start, stop], num: N}")
    kind = "linear" if "linear" in raw else "log"
    allowed = {kind, "num", "step", "integer"}
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})")
    ends = raw[kind]
    if not isinstance(ends, list) or len(ends) != 2 or any(_number(e) is None for e in ends):
        raise _fail(f"{where}.{kind}", f"must be [start, stop] (two numbers), got {ends!r}")
    a, b = (_number(e) for e in ends)
    assert a is not None and b is not None
    if "num" in raw and "step" in raw:
        raise _fail(where, "give num or step, not both")
    if kind == "log":
        if a <= 0 or b <= 0:
            raise _fail(f"{where}.log", f"ends must be positive, got {ends!r}")
        if "step" in raw:
            raise _fail(f"{where}.step", "a log range takes num (points), not step")
    if "step" in raw:
        step = _number(raw["step"])
        if step is None or step <= 0:
            raise _fail(f"{where}.step", f"must be a positive number, got {raw['step']!r}")
        n = math.floor((b - a) / step + 1e-9) + 1 if b >= a else 0
        if n > MAX_AXIS_VALUES:
            raise _fail(where, f"{n:.3g} values from {a:g} to {b:g} in steps of {step:g}, more than the "
                               f"{MAX_AXIS_VALUES} an axis may have")
        values = [a + i * step for i in range(n)]
    else:
        num = raw.get("num")
        if not isinstance(num, int) or isinstance(num, bool) or num < 1:
            raise _fail(f"{where}.num", f"must be a positive integer, got {bounded.short(num)}")
        if num > MAX_AXIS_VALUES:
            raise _fail(f"{where}.num", f"{num} values, more than the {MAX_AXIS_VALUES} an axis may have")
        if num == 1:
            values = [a]
        elif kind == "linear":
            values = list(np.linspace(a, b, num))
        else:
            values = list(np.geomspace(a, b, num))
    if not values:
        raise _fail(where, f"empty axis: no values from {a:g} to {b:g}")
    integer = raw.get("integer", False)
    if not isinstance(integer, bool):
        raise _fail(f"{where}.integer", "must be true or false")
    out = [round(float(v)) if integer else float(v) for v in values]
    return tuple(dict.fromkeys(out))  # rounding may merge neighbours


def _list_of(raw: Any, where: str, kinds: tuple[type, ...] = (str,)) -> list[Any]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _fail(where, "must not be empty")
    for item in items:
        if not isinstance(item, kinds):
            raise _fail(where, f"expected {' or '.join(k.__name__ for k in kinds)} entries, got {item!r}")
    return items


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def _soft_precision(folder: Path) -> dict[int, float]:
    """``metrics.soft_precision`` of a run: {scale bits: top-1} (docs/run-folder.md)."""
    try:
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    raw = (run.get("metrics") or {}).get("soft_precision") or {}
    out: dict[int, float] = {}
    if isinstance(raw, dict):
        for bits, top1 in raw.items():
            if str(bits).isdigit() and isinstance(top1, (int, float)) and not isinstance(top1, bool):
                out[int(bits)] = float(top1)
    return out


def _workloads(raw: Any, base: Path, where: str) -> list[tuple[str, WorkloadItem]]:
    """(kind, item) for every workload entry."""
    if not isinstance(raw, list) or not raw:
        raise _fail(where, "must be a non-empty list of {network|topology|onnx|runs: ...}")
    out: list[tuple[str, WorkloadItem]] = []
    for i, entry in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise _fail(here, f"must be one of {{{', '.join(f'{k}: ...' for k in WORKLOAD_KINDS)}}}, got {entry!r}")
        kind, value = next(iter(entry.items()))
        if kind not in WORKLOAD_KINDS:
            raise _fail(f"{here}.{kind}", f"unknown workload kind (known: {', '.join(WORKLOAD_KINDS)})")
        try:
            if kind == "network":
                text = str(value)
                target = str(_resolve(text, base)) if text.endswith(".json") else text
                work = load_network(target)
                out.append((kind, WorkloadItem(f"network:{work.source}", work)))
            elif kind == "topology":
                work = load_topology(_resolve(str(value), base))
                out.append((kind, WorkloadItem(f"topology:{work.source}", work)))
            elif kind == "onnx":
                from hwsim.workload.onnx_reader import load_onnx

                work, skipped = load_onnx(_resolve(str(value), base), warn=False)
                if skipped:
                    listed = ", ".join(f"{n} {op}" for op, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
                    NOTES.append(f"{value}: not costed by hwsim: {listed}")
                out.append((kind, WorkloadItem(f"onnx:{work.source}", work)))
            else:
                patterns = value if isinstance(value, list) else [value]
                folders: list[Path] = []
                for pattern in patterns:
                    matches = sorted(glob.glob(str(_resolve(str(pattern), base))))
                    folders += [Path(m) for m in matches if (Path(m) / "run.json").is_file()]
                if not folders:
                    raise _fail(f"{here}.runs", f"no run folder (with run.json) matches {value!r}")
                for folder in folders:
                    work = load_run(folder)
                    out.append((kind, WorkloadItem(f"run:{folder.name}", work, _soft_precision(folder))))
        except InputError as exc:
            raise _fail(f"{here}.{kind}", str(exc)) from None
    keys = [item.key for _, item in out]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise _fail(where, f"two workloads are both {dup!r}")
    return out


def _constraints(raw: Any, where: str) -> dict[str, tuple[float | None, float | None]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(where, "must be a mapping like {area: {max: 10}, accuracy: {min: 0.8}}")
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, bounds in raw.items():
        here = f"{where}.{name}"
        if name not in QUANTITIES:
            raise _fail(here, f"unknown quantity (known: {', '.join(QUANTITIES)})")
        if not isinstance(bounds, dict) or not bounds or any(k not in ("min", "max") for k in bounds):
            raise _fail(here, f"must be {{min: x}}, {{max: y}} or both, got {bounds!r}")
        lo, hi = bounds.get("min"), bounds.get("max")
        for key, v in (("min", lo), ("max", hi)):
            if v is not None and _number(v) is None:
                raise _fail(f"{here}.{key}", f"must be a number, got {v!r}")
        lo = _number(lo) if lo is not None else None
        hi = _number(hi) if hi is not None else None
        if lo is not None and hi is not None and lo > hi:
            raise _fail(here, f"contradictory: min {lo:g} > max {hi:g} (no point can satisfy it)")
        if name != "accuracy" and hi is not None and hi <= 0:
            raise _fail(f"{here}.max", f"contradictory: {name} is positive, so max {hi:g} excludes every point")
        if name == "accuracy" and lo is not None and lo > 1:
            raise _fail(f"{here}.min", f"contradictory: accuracy is a fraction in [0, 1], got min {lo:g}")
        out[name] = (lo, hi)
    return out


def load_spec(path: str | Path, max_points: int = MAX_POINTS, cores: int = 1) -> Spec:
    """Read and validate a spec; count its points (refused past ``max_points``: the estimate for ``cores``
    is in one line), then build and validate every design of the sweep. Writes nothing."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError(f"{path}: missing file")
    raw = load_yaml(path.read_text(encoding="utf-8"), where)
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a mapping (see ksm-explore --help)")
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise _fail(f"{where}: {unknown[0]}", f"unknown key (known: {', '.join(TOP_KEYS)})")
    for key in ("profiles", "workloads"):
        if key not in raw:
            raise _fail(f"{where}: {key}", "missing key")
    base = path.parent
    NOTES.clear()
    profiles = [str(p) for p in _list_of(raw["profiles"], f"{where}: profiles")]
    profiles = [str(_resolve(p, base)) if p.endswith((".yaml", ".yml")) else p for p in profiles]
    sets = [str(s) for s in _list_of(raw.get("set", []) or [], f"{where}: set")] if raw.get("set") else []

    axes_raw = raw.get("axes") or {}
    if not isinstance(axes_raw, dict):
        raise _fail(f"{where}: axes", "must be a mapping of dotted profile path -> values")
    axes = [Axis(str(k), _axis_values(v, f"{where}: axes.{k}")) for k, v in axes_raw.items()]
    designs = len(profiles) * math.prod(len(axis.values) for axis in axes)

    def choice(key: str, allowed: tuple[Any, ...], default: list[Any]) -> list[Any]:
        if key not in raw:
            return default
        items = raw[key] if isinstance(raw[key], list) else [raw[key]]
        if not items:
            raise _fail(f"{where}: {key}", "must not be empty")
        for item in items:
            if item not in allowed:
                raise _fail(f"{where}: {key}", f"unknown value {item!r} (known: {', '.join(map(str, allowed))})")
        return list(dict.fromkeys(items))

    methods = choice("methods", (*catalogue.names(), None, "none"), [None])
    methods = [None if m == "none" else m for m in methods]
    modes = choice("modes", MODES, list(MODES))

    def positive_int(key: str, default: int) -> int:
        v = raw.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_COUNT:
            raise _fail(f"{where}: {key}", f"must be an integer from 1 to {MAX_COUNT:,}, got {bounded.short(v)}")
        return v

    tasks, batch = positive_int("tasks", 6), positive_int("batch", 1)
    density = _number(raw.get("mask_density", 0.5))
    if density is None or not 0 <= density <= 1:
        raise _fail(f"{where}: mask_density", f"must be a fraction in [0, 1], got {raw.get('mask_density')!r}")
    batchnorm = raw.get("batchnorm")  # absent: each method's own default (catalogue.batchnorm_of)
    if batchnorm not in ("task", "frozen", None):
        raise _fail(f"{where}: batchnorm", f"must be task or frozen, got {batchnorm!r}")
    steady = raw.get("steady_state", False)
    if not isinstance(steady, bool):
        raise _fail(f"{where}: steady_state", f"must be true or false, got {steady!r}")
    objectives = choice("objectives", tuple(q for q in QUANTITIES if q != "accuracy"),
                        ["energy", "latency", "area"])
    constraints = _constraints(raw.get("constraints"), f"{where}: constraints")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise _fail(f"{where}: name", "must be a non-empty string")

    loaded = _workloads(raw["workloads"], base, f"{where}: workloads")
    if "accuracy" in constraints and not any(item.work.top1 is not None for _, item in loaded):
        raise _fail(f"{where}: constraints.accuracy", "no workload records an accuracy (only run folders do)")
    items = []
    for kind, item in loaded:
        if kind == "runs":
            items.append(item)
            continue
        for method in methods:  # a plain network: charge each method named in the spec
            w = item.work
            work = Workload(source=w.source, layers=w.layers, method=method,
                            batchnorm=catalogue.batchnorm_of(method, batchnorm))
            suffix = f"+{method}" if method else ""
            items.append(WorkloadItem(item.key + suffix, work))
    points = designs * sum(len(point_modes(modes, item.work.method)) for item in items)
    estimate = refuse_over_cap(sweep_estimate(points, cores, max_points, what=where))

    spec = Spec(path=path, estimate=estimate, notes=list(NOTES), name=name, profiles=profiles, sets=sets, axes=axes,
                workloads=items, methods=methods, modes=modes, tasks=tasks, mask_density=float(density),
                batchnorm=batchnorm, batch=batch, steady_state=steady, objectives=objectives, constraints=constraints)
    from hwsim.explore.point import Options, check_options

    check_options(Options(tasks=tasks, mask_density=float(density), batch=batch, steady_state=steady),
                  f"{where}: ")
    spec.designs = build_designs(spec)
    return spec


def build_designs(spec: Spec) -> list[tuple[dict[str, str], Design]]:
    """Every (base profile x axis value combination), validated as a profile file is."""
    out = []
    for base in spec.profiles:
        raw, where = read_raw_profile(base)
        if spec.sets:
            raw = apply_overrides(raw, spec.sets)
        for combo in itertools.product(*(axis.values for axis in spec.axes)):
            values = {axis.key: (None if v in REMOVE else v) for axis, v in zip(spec.axes, combo)}
            blame = f"{spec.path}: axes " + ", ".join(f"{k}={value_label(v)}" for k, v in values.items())
            try:
                design_raw = apply_values(raw, values)
            except InputError as exc:
                raise InputError(f"{blame}: {str(exc).split(': ', 1)[-1]}") from None
            design = design_from_raw(design_raw, where, blame)
            labels = {"profile": Path(base).stem if base.endswith((".yaml", ".yml")) else base}
            labels.update({axis.key: value_label(v) for axis, v in zip(spec.axes, combo)})
            out.append((labels, design))
    return out


def design_hash(design: Design) -> str:
    """A stable digest of a design's raw mapping (the resume key's profile part)."""
    text = json.dumps(design.raw, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
