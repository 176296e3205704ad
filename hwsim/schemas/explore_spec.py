"""The sweep spec of ``ksm-explore SPEC.yaml``: every key, its type, its range and the rules across keys.

:func:`hwsim.explore.spec.load_spec` validates the decoded YAML with :class:`ExploreSpec` before it reads a
workload or builds a design, so a typo (``batch: 1e15``, ``num: 1e9``, a profile named twice, ``cpg`` charged
on a plain network) is one line naming the key, and nothing is written. What the schema cannot know without
reading other files (a profile's fields, a network's layers, whether a run folder records an accuracy) is
checked by the loader, still before anything is written.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, create_model, model_validator

from hwsim import catalogue
from hwsim.cost.mask_cost import MODES
from hwsim.fileio.bounded import MAX_SIZE, short
from hwsim.schemas.validation import Real, Record, Whole, as_tuple, first_repeat

# An axis of 100,000 values is already hours of work; a typo (num: 1e9) must be one line, not gigabytes. The
# whole sweep is held to ksm-explore --max-points, counted from the axes' lengths before any design is built.
MAX_AXIS_VALUES = 100_000
# A count in the spec (tasks, batch) beyond a million is a typo: the cost model multiplies it into a layer's
# bytes and MACs, and past this the products leave the 64-bit integers of the tables.
MAX_COUNT = 1_000_000
MAX_ITEMS = 1_000  # profiles, overrides, workloads: more is a generated file gone wrong, not a sweep
MAX_TEXT = 4_096  # a name, a path or a KEY=VALUE (PATH_MAX)
# An axis range's ends and step are values of some profile field: each is checked by the profile's own range
# once applied; this bound only keeps the arithmetic of the range finite (no profile quantity nears 1e18).
MAX_END = 1e18
WORKLOAD_KINDS = ("network", "topology", "onnx", "runs")
REMOVE = ("absent", "remove", None)  # an axis value that removes a level
# objective / constraint name -> column of the points table
QUANTITIES = {"energy": "energy_j", "latency": "latency_s", "area": "area_mm2", "edp": "edp_js",
              "storage": "task_specific_bytes", "accuracy": "accuracy"}
OBJECTIVES = ("energy", "latency", "area", "edp", "storage")


def _as_list(value: Any) -> Any:
    """One item may be written without the brackets (``profiles: edge_npu``)."""
    return value if isinstance(value, list) else [value]


def _empty_is_none(value: Any) -> Any:
    """A key written with nothing after it (``axes:``, everything commented out) is the default."""
    return None if value == {} or value == [] else value


Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


def _one_line(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError("must be one line")
    return text


def _set_item(text: str) -> str:
    key, sep, _value = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ValueError("expected KEY=VALUE with a dotted KEY (e.g. array.rows=16)")
    return text


def _method(name: str | None) -> str | None:
    """A method of the catalogue (read when the spec is, so a method registered by a plug-in counts)."""
    if name is None or name == "none":
        return None
    if catalogue.find(name) is None:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(catalogue.names())}, none)")
    return name


def profile_label(name: str) -> str:
    """The ``profile`` column of a design's rows: a bundled name, or a file's stem."""
    return PurePath(name).stem if name.endswith((".yaml", ".yml")) else name


def same_value(value: Any) -> Any:
    """An axis value as the profile will read it: ``absent``/``remove``/null alike."""
    return None if value in REMOVE else value


End = Real(ge=-MAX_END, le=MAX_END, description="an end of the range, in the field's unit")


class AxisRange(Record):
    """One axis: the values one dotted profile path (as `ksm-sim --set`) takes across the sweep. Written as a
    list (`[2, 4, 8]`, a level's mapping, `absent` to remove a level), which is read as `{values: [...]}`, or
    as a range: `{linear: [start, stop], num: N}`, `{linear: [start, stop], step: S}` or
    `{log: [start, stop], num: N}`, with `integer: true` to round each value (neighbours that round alike are
    merged). Each value is checked by the profile's own schema once applied."""

    RULES: ClassVar[tuple[str, ...]] = (
        "Exactly one of `values` (a list), `linear` or `log`.",
        f"A list holds 1 to {MAX_AXIS_VALUES:,} values, none twice (`absent`, `remove` and null are the same "
        "value; so are `1.0e9` and `1000000000`).",
        "`num`, `step` and `integer` belong to a range; a range takes `num` or `step`, not both; a `log` range "
        "takes `num` only, and both its ends are positive.",
        f"A `step` range has at least one and at most {MAX_AXIS_VALUES:,} values.",
    )

    values: list[Any] | None = Field(default=None, description="the values, in the order swept")
    linear: list[End] | None = Field(default=None, min_length=2, max_length=2,
                                     description="[start, stop], evenly spaced (both ends included)")
    log: list[End] | None = Field(default=None, min_length=2, max_length=2,
                                  description="[start, stop], geometrically spaced (both ends included)")
    num: Whole(ge=1, le=MAX_AXIS_VALUES) | None = Field(default=None, ge=1, le=MAX_AXIS_VALUES,
                                                        description="how many values the range has")
    step: Real(gt=0, le=MAX_END) | None = Field(default=None, gt=0, le=MAX_END,
                                                           description="the spacing of a linear range")
    integer: bool = Field(default=False, description="round each value of the range to an integer")

    @model_validator(mode="before")
    @classmethod
    def _list_is_values(cls, raw: Any) -> Any:
        if isinstance(raw, list):
            return {"values": raw}
        if not isinstance(raw, dict) or not ({"values", "linear", "log"} & set(raw)):
            raise ValueError("must be a list of values, {linear: [start, stop], num: N} or "
                             "{log: [start, stop], num: N}")
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> AxisRange:
        given = [k for k in ("values", "linear", "log") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give one of values, linear or log, not {' and '.join(given)}")
        if self.values is not None:
            extra = [k for k in ("num", "step", "integer") if k in self.model_fields_set]
            if extra:
                raise ValueError(f"{extra[0]} belongs to a range (linear or log), not to a list of values")
            self._check_list(self.values)
            return self
        if self.num is not None and self.step is not None:
            raise ValueError("give num or step, not both")
        if self.num is None and self.step is None:
            raise ValueError("a range needs num: N (how many values) or step: S")
        a, b = self.linear or self.log or (0.0, 0.0)
        if self.log is not None:
            if a <= 0 or b <= 0:
                raise ValueError(f"log: both ends must be positive, got [{a:g}, {b:g}]")
            if self.step is not None:
                raise ValueError("a log range takes num (how many values), not step")
        if self.step is not None:
            n = self._step_count(a, b, self.step)
            if n < 1:
                raise ValueError(f"empty axis: no values from {a:g} to {b:g} in steps of {self.step:g}")
            if n > MAX_AXIS_VALUES:
                raise ValueError(f"{n:.3g} values from {a:g} to {b:g} in steps of {self.step:g}, more than the "
                                 f"{MAX_AXIS_VALUES} an axis may have")
        return self

    @staticmethod
    def _check_list(values: list[Any]) -> None:
        if not values:
            raise ValueError("empty axis (give at least one value)")
        if len(values) > MAX_AXIS_VALUES:
            raise ValueError(f"{len(values)} values, more than the {MAX_AXIS_VALUES} an axis may have")
        i = first_repeat([same_value(value) for value in values])
        if i is not None:
            raise ValueError(f"{short(values[i])} is listed twice (each point would be swept twice)")

    @staticmethod
    def _step_count(a: float, b: float, step: float) -> float:
        """Values from ``a`` to ``b`` (included, to a rounding) every ``step``; a float, as it may be huge."""
        return math.floor((b - a) / step + 1e-9) + 1 if b >= a else 0

    def points(self) -> tuple[Any, ...]:
        """The axis's values, in order (a range computed, rounded where ``integer``, neighbours merged)."""
        if self.values is not None:
            return tuple(self.values)
        a, b = self.linear or self.log or (0.0, 0.0)
        if self.step is not None:
            values = [a + i * self.step for i in range(int(self._step_count(a, b, self.step)))]
        elif self.num == 1:
            values = [a]
        elif self.linear is not None:
            values = list(np.linspace(a, b, self.num or 1))
        else:
            values = list(np.geomspace(a, b, self.num or 1))
        out = [round(float(v)) if self.integer else float(v) for v in values]
        return tuple(dict.fromkeys(out))  # rounding may merge neighbours


Dim = Whole(ge=1, le=MAX_SIZE, description="a dimension (2^20 bounds every size of a layer)")


class WorkloadEntry(Record):
    """One workload of the sweep: exactly one of `network`, `topology`, `onnx` or `runs` (paths relative to
    the spec). `methods` are charged on a network, a topology or an ONNX model; run folders name their own."""

    RULES: ClassVar[tuple[str, ...]] = (
        "Exactly one of `network`, `topology`, `onnx` or `runs`.",
        "`input_shape` is given only beside `onnx`.",
    )

    network: Text | None = Field(default=None, description="a bundled network's name or a `ksm-layers/1` .json")
    topology: Text | None = Field(default=None, description="a SCALE-Sim topology CSV")
    onnx: Text | None = Field(default=None, description="an ONNX CNN")
    input_shape: Annotated[tuple[Dim, Dim, Dim, Dim] | None, BeforeValidator(as_tuple)] = Field(
        default=None, description="the ONNX model's input [N, C, H, W] where the model leaves it symbolic")
    runs: Annotated[list[Text], BeforeValidator(_as_list)] | None = Field(
        default=None, min_length=1, max_length=MAX_ITEMS,
        description="run folders (glob patterns, or a list of them): their masks and recorded accuracy")

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError(f"must be one of {', '.join(f'{{{k}: ...}}' for k in WORKLOAD_KINDS)}")
        return raw

    @model_validator(mode="after")
    def _one_kind(self) -> WorkloadEntry:
        given = [k for k in WORKLOAD_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(WORKLOAD_KINDS)}"
                             + (f", not {' and '.join(given)}" if given else ""))
        if self.input_shape is not None and self.onnx is None:
            raise ValueError(f"input_shape applies to an onnx workload, not to {given[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in WORKLOAD_KINDS if getattr(self, k) is not None)


class Bounds(Record):
    """A constraint's bounds: a point is feasible where ``min <= value <= max``."""

    RULES: ClassVar[tuple[str, ...]] = ("At least one of `min` and `max`; `min` is at most `max`.",)

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"contradictory: min {self.min:g} > max {self.max:g} (no point can satisfy it)")
        return self


def _bounds(name: str, high: float, unit: str) -> type[Bounds]:
    """Bounds of a positive quantity: ``min`` from 0, ``max`` above 0 (a max of 0 excludes every point)."""
    doc = f"Bounds on {name} ({unit}): a point is feasible where `min <= {name} <= max`."
    fields = {"min": (Real(ge=0, le=high) | None,
                      Field(default=None, ge=0, le=high, description=f"lowest {name} ({unit})")),
              "max": (Real(gt=0, le=high) | None,
                      Field(default=None, gt=0, le=high, description=f"highest {name} ({unit})"))}
    return create_model(f"{name.capitalize()}Bounds", __base__=Bounds, __doc__=doc, **fields)  # type: ignore[call-overload]


# The upper bounds are typos' limits, far above any edge accelerator: a megajoule or 11 days per inference, a
# square metre of silicon, an exabyte of task data.
EnergyBounds = _bounds("energy", 1e6, "J per inference")
LatencyBounds = _bounds("latency", 1e6, "s per inference")
AreaBounds = _bounds("area", 1e6, "mm²")
EdpBounds = _bounds("edp", 1e12, "J·s")
StorageBounds = _bounds("storage", 1e18, "task-specific bytes")


class AccuracyBounds(Bounds):
    """Bounds on the recorded top-1 accuracy (a fraction); only run folders record one."""

    min: Real(ge=0, le=1) | None = Field(default=None, ge=0, le=1, description="lowest top-1 accuracy")
    max: Real(ge=0, le=1) | None = Field(default=None, ge=0, le=1, description="highest top-1 accuracy")


class Constraints(Record):
    """Which points are feasible; only feasible points can be on a front."""

    energy: EnergyBounds | None = Field(default=None, description="energy per inference (J)")  # type: ignore[valid-type]
    latency: LatencyBounds | None = Field(default=None, description="latency per inference (s)")  # type: ignore[valid-type]
    area: AreaBounds | None = Field(default=None, description="silicon area (mm²)")  # type: ignore[valid-type]
    edp: EdpBounds | None = Field(default=None, description="energy-delay product (J·s)")  # type: ignore[valid-type]
    storage: StorageBounds | None = Field(default=None, description="task-specific bytes (B)")  # type: ignore[valid-type]
    accuracy: AccuracyBounds | None = Field(default=None, description="recorded top-1 accuracy (a fraction)")

    def pairs(self) -> dict[str, tuple[float | None, float | None]]:
        """``{quantity: (min, max)}`` of the constraints given."""
        return {name: (b.min, b.max) for name in QUANTITIES if (b := getattr(self, name)) is not None}


class ExploreSpec(Record):
    """A design-space sweep (`ksm-explore SPEC.yaml`): base profiles, axes of profile values whose product is
    the designs, workloads, how they are costed, what is minimised and what is feasible. The points (designs x
    workloads x modes) are counted from the axes' lengths before any design is built and refused past
    `ksm-explore --max-points`."""

    RULES: ClassVar[tuple[str, ...]] = (
        "No profile is listed twice, and no two profiles share a label (a bundled name, or a file's stem), "
        "which names their rows.",
        "An axis key is a dotted profile path with no empty part.",
        "A method whose storage depends on counts only a run records (CPG, LoRA) is refused where the spec "
        "has a network, topology or ONNX workload (as `ksm-sim --method` refuses it).",
        "A constraint on accuracy needs a run folder that records one (checked when the runs are read).",
    )

    name: Annotated[Text, AfterValidator(_one_line)] | None = Field(
        default=None, description="the summary's title (default: the spec file's name)")
    profiles: Annotated[list[Text], BeforeValidator(_as_list)] = Field(
        min_length=1, max_length=MAX_ITEMS,
        description="base profiles: bundled names or .yaml paths (relative to the spec); one may be written "
                    "without brackets")
    sets: Annotated[list[Annotated[Text, AfterValidator(_set_item)]] | None, BeforeValidator(_as_list)] = Field(
        default=None, alias="set", max_length=MAX_ITEMS,
        description="overrides `KEY=VALUE` applied to every base profile (as `ksm-sim --set`)")
    axes: Annotated[dict[str, AxisRange] | None, BeforeValidator(_empty_is_none)] = Field(
        default=None, max_length=64,
        description="dotted profile path (as `--set`) -> its values; the designs are the product of the axes")
    workloads: list[WorkloadEntry] = Field(min_length=1, max_length=MAX_ITEMS, description="what is costed")
    methods: Annotated[list[Annotated[str | None, AfterValidator(_method)]], BeforeValidator(_as_list)] = Field(
        default=[None], min_length=1, max_length=MAX_ITEMS,
        description="methods charged on networks, topologies and ONNX models (a method of the catalogue, as "
                    "`ksm-sim --method`, or `none`: the plain network); run folders name their own")
    modes: Annotated[list[Literal[MODES]], BeforeValidator(_as_list)] = Field(  # type: ignore[valid-type]
        default=list(MODES), min_length=1, description="how a mask is applied: folded at a task switch, or on "
                                                       "the fly as weights stream in")
    tasks: Whole(ge=1, le=MAX_COUNT, description="tasks sharing the backbone") = 6
    mask_density: Real(ge=0, le=1, description="KSM's fraction of binary-1 entries, where no binary "
                                                          "mask is stored") = 0.5
    batchnorm: Literal["task", "frozen"] | None = Field(
        default=None, description="BatchNorm policy charged with a method (default: each method's own)")
    batch: Whole(ge=1, le=MAX_COUNT, description="images per inference") = 1
    steady_state: bool = Field(default=False, description="weights and masks that fit on chip stay there "
                                                          "across inferences (default: cold, from DRAM)")
    objectives: Annotated[list[Literal[OBJECTIVES]], BeforeValidator(_as_list)] = Field(  # type: ignore[valid-type]
        default=["energy", "latency", "area"], min_length=1,
        description="what the Pareto front minimises")
    constraints: Annotated[Constraints | None, BeforeValidator(_empty_is_none)] = Field(
        default=None, description="bounds a feasible point meets")

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError(f"must be a mapping of the keys of a sweep (see ksm-explore --help), got {short(raw)}")
        return raw

    @model_validator(mode="after")
    def _across_keys(self) -> ExploreSpec:
        labels: dict[str, str] = {}
        for name in self.profiles:
            label = profile_label(name)
            if label in labels:
                first = labels[label]
                raise ValueError(f"profiles: {name} is listed twice (each point would be swept twice)"
                                 if first == name else
                                 f"profiles: {first} and {name} would both label their rows {label!r}")
            labels[label] = name
        for key in self.axes or {}:
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"axes: {key!r} is not a dotted profile path (e.g. levels.sram_1MB.size_bytes)")
        plain = [w.kind for w in self.workloads if w.kind != "runs"]
        if plain:
            allowed = catalogue.costable_from_network()
            for method in self.methods:
                if method is not None and method not in allowed:
                    raise ValueError(f"methods: {method} cannot be charged on a {plain[0]} (its storage depends "
                                     f"on counts only its runs record; give its run folders as runs:). On a "
                                     f"{plain[0]}: {', '.join(allowed)}, none")
        return self
