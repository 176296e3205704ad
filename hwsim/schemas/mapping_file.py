"""A given mapping (``ksm-sim --mapping FILE``): ZigZag's or Timeloop's notation, per layer or one for all.

:func:`hwsim.cost.mapping.given_mapping.read_mapping_file` validates a decoded YAML (or JSON) file against
:class:`MappingFile` and :func:`~hwsim.cost.mapping.given_mapping.given_cost` turns one entry, a layer and a
profile into the cost of that mapping (no search). The file holds either one entry for every layer
(``default``), entries per layer name (``layers``), or both; a file that is one bare entry (Timeloop's
``map.yaml``: a top-level ``mapping:`` list; or ZigZag's two keys) is its ``default``; a file that is a list
is ZigZag 3.9.1's mapping file (``ksm-sim --export zigzag``'s ``mapping.yaml``): entries by ``name``, each
with ``spatial_mapping`` and ``temporal_ordering`` (every loop, innermost first, allocated as the search
allocates).

An entry is written in one of two notations:

- **ZigZag** (Mei et al., IEEE TC 2021; what ZigZag 3.9.1 prints): ``spatial_mapping`` ``{D1: [[K, 16]],
  D2: [[C, 16]]}`` (D1 the array's rows, D2 its columns) and ``temporal_mapping`` per operand (``W``,
  ``I``, ``O``; or ``weights``, ``inputs``, ``outputs``), the loops of each memory level that serves the
  operand, innermost level first: a list of levels (``O: [[[FY, 3]], [[OY, 28], [K, 10]], []]``, one per
  level of the operand's chain, DRAM last), or level name -> loops. Within a level, loops are innermost first.
  A layer's ``mapping`` as ``ksm-sim --json`` writes it (``spatial`` rows and columns,
  ``temporal_innermost_first``) is read as this notation. A loop is ``[K, 16]`` or
  ``"K, 16"``. Dimensions: ``B G K C OY OX FY FX``.
- **Timeloop** (v0.4 mapping; Parashar et al., ISPASS 2019): ``mapping:`` a list of directives ``{target:
  <level>, type: temporal | spatial, factors: "C=4 M=2", permutation: "MC"}`` (permutation innermost
  first, as Timeloop reads it; ``split`` puts the permutation's dimensions from that index on the array's
  Y axis, the rows, the others on X, the columns) and ``{target: <level>, type: dataspace, keep: [...],
  bypass: [...]}``. Dimensions ``C M R S N P Q G`` (``K`` too, as Timeloop's conv1d tutorial problems
  name it) are hwsim's ``C K FX FY B OX OY G`` (Timeloop's CNN layer projects inputs as ``R + P`` on the
  width and ``S + Q`` on the height). A spatial factor may carry a residual (``C=10,4``: an uneven unrolling);
  ``mac_weights_reg`` / ``mac_inputs_reg`` (:data:`MAC_REGISTERS`, ksm-sim's Timeloop export) are the MAC's hold.

The structure is checked here; what depends on the layer and the profile (factors against the layer's
dimensions, level names, which level serves which operand) is checked when a layer is costed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from hwsim.fileio.bounded import MAX_SIZE, short
from hwsim.schemas.validation import Record, Whole, as_tuple

ZIGZAG_DIMS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX")
# Timeloop's CNN-layer dimension -> hwsim's (Timeloop's problem shape cnn-layer.yaml: Inputs project R with P
# on the width (Wstride) and S with Q on the height; conv1d tutorial problems call the output channel K)
TIMELOOP_DIMS = {"C": "C", "M": "K", "K": "K", "R": "FX", "S": "FY", "N": "B", "P": "OX", "Q": "OY", "G": "G"}
# operand keys of a ZigZag temporal mapping -> hwsim's operand (ZigZag's workloads name weights W or I2,
# inputs I or I1)
ZIGZAG_OPERANDS = {"W": "weights", "I2": "weights", "weights": "weights", "I": "inputs", "I1": "inputs",
                   "inputs": "inputs", "O": "outputs", "outputs": "outputs"}
ZIGZAG_LINKS = {"O": "O", "W": "I2", "I": "I1"}  # ZigZag's memory_operand_links as ksm-sim's export writes them
# the one-element MAC operand registers ksm-sim's Timeloop export adds per PE (hwsim.interop.timeloop_files.
# registers): read as the hold at the MAC hwsim models without a level
MAC_REGISTERS = {"mac_weights_reg": "weights", "mac_inputs_reg": "inputs"}
TIMELOOP_SPACES = {"Weights": "weights", "Inputs": "inputs", "Outputs": "outputs"}
MAX_LOOPS = 64  # loops of one level: a layer has 8 dimensions, each of at most 20 prime factors
MAX_LEVELS = 16  # as a profile
MAX_LAYERS = 100_000  # as a graph's operators
MAX_NAME = 512  # as a layer name

Factor = Whole(ge=1, le=MAX_SIZE, description="iterations of the loop")


def _loop(value: Any) -> Any:
    """``"K, 16"`` or ``"K 16"`` -> ``("K", 16)``; a list ``[K, 16]`` -> the tuple."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,()]+", value) if p]
        if len(parts) == 2 and parts[1].isdigit():
            return (parts[0], int(parts[1]))
        raise ValueError("a loop is [DIM, FACTOR] or \"DIM, FACTOR\"")
    return as_tuple(value)


Loop = Annotated[tuple[Literal[ZIGZAG_DIMS], Factor], BeforeValidator(_loop)]  # type: ignore[valid-type]
Loops = Annotated[tuple[Loop, ...], BeforeValidator(as_tuple), Field(max_length=MAX_LOOPS)]


def is_pair(value: Any) -> bool:
    """Whether ``value`` is one ``[DIM, FACTOR]`` loop: a dimension name (a string with no comma or space)
    and a whole number. ``["C, 8", "FX, 3"]`` (what ZigZag's mapping files and ksm-sim's ZigZag export write
    on an axis of two loops) is two loops, not one."""
    return (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
            and re.fullmatch(r"\s*[A-Za-z]+\s*", value[0]) is not None
            and ((isinstance(value[1], int) and not isinstance(value[1], bool))
                 or (isinstance(value[1], str) and value[1].strip().isdigit())))


def _axis(value: Any) -> Any:
    """One loop (``[K, 16]``, ``"K, 16"``) on an axis is a list of one; any other list is a list of loops."""
    if isinstance(value, str) or is_pair(value):
        return (value,)
    return as_tuple(value)


AxisLoops = Annotated[tuple[Loop, ...], BeforeValidator(_axis), Field(max_length=len(ZIGZAG_DIMS))]


def _factors(value: Any) -> Any:
    """Timeloop's ``"C=4 M=2"`` (or a mapping ``{C: 4}``) -> ``(("C", 4, 4), ("M", 2, 2))``: dimension,
    factor, residual (the last iteration's factor: ``"C=10,4"``, what Timeloop writes for an uneven split
    and ksm-sim's Timeloop export for an uneven unrolling; the factor itself when none is given)."""
    if isinstance(value, dict):
        return tuple((d, f, f) for d, f in value.items())
    if not isinstance(value, str):
        return value
    out = []
    for word in value.split():
        m = re.fullmatch(r"([A-Za-z]+)=?(\d+)(?:,(\d+))?", word)  # timeloop-mapper writes "C4 M2"
        if m is None:
            raise ValueError(f"factors are DIM=N (or DIM=N,RESIDUAL) separated by spaces (\"C=4 M=2\"); "
                             f"{short(word)} is neither")
        f = int(m.group(2))
        out.append((m.group(1), f, int(m.group(3)) if m.group(3) is not None else f))
    return tuple(out)


def _permutation(value: Any) -> Any:
    """``"PRK"`` (one letter per dimension) or ``"P R K"`` -> ``("P", "R", "K")``, innermost first."""
    if isinstance(value, str):
        return tuple(value.split()) if any(c.isspace() for c in value.strip()) else tuple(value)
    return as_tuple(value)


TimeloopDim = Literal[tuple(TIMELOOP_DIMS)]  # type: ignore[valid-type]
DataSpace = Literal[tuple(TIMELOOP_SPACES)]  # type: ignore[valid-type]


class TimeloopDirective(Record):
    """One entry of a Timeloop ``mapping:`` list."""

    RULES: ClassVar[tuple[str, ...]] = (
        "A `temporal` or `spatial` directive gives `factors`; a `dataspace` (or `bypass`) directive gives "
        "`keep` and/or `bypass`, and no factors.",
        "A permutation names each dimension once and every dimension whose factor is above 1.",
    )

    target: str = Field(min_length=1, max_length=MAX_NAME,
                        description="the memory level (a profile level's name) the directive is for; a `spatial` "
                                    "directive may name a container instead (hwsim has one array)")
    type: Literal["temporal", "spatial", "dataspace", "bypass", "datatype"] = Field(
        description="`temporal` loops at the level, `spatial` unrolling on the array, `dataspace` which "
                    "operands the level keeps")
    factors: Annotated[tuple[tuple[TimeloopDim, Factor, Factor], ...], BeforeValidator(_factors),
                       Field(max_length=len(TIMELOOP_DIMS))] | None = Field(
        None, description="loop bounds, `\"C=4 M=2 R=1\"` (unnamed dimensions are 1); a spatial factor may "
                          "carry Timeloop's residual, `\"C=10,4\"` (10 ways, the last fold 4: an uneven unrolling)")
    permutation: Annotated[tuple[TimeloopDim, ...], BeforeValidator(_permutation),
                           Field(max_length=len(TIMELOOP_DIMS))] | None = Field(
        None, description="loop order, innermost first (`\"MC\"`: M inside C)")
    split: Whole(ge=0, le=len(TIMELOOP_DIMS)) | None = Field(
        None, description="spatial: the permutation's dimensions from this index on go on the rows (Y), the "
                          "others on the columns (X); default: all on X")
    keep: tuple[DataSpace, ...] | None = Field(None, description="dataspace: the operands the level holds")
    bypass: tuple[DataSpace, ...] | None = Field(None, description="dataspace: the operands that pass it by")

    @field_validator("keep", "bypass", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return as_tuple(value)

    @model_validator(mode="after")
    def _consistent(self) -> TimeloopDirective:
        if self.type in ("temporal", "spatial"):
            if self.factors is None:
                raise ValueError(f"target {short(self.target)}: a {self.type} directive needs factors")
            if self.keep is not None or self.bypass is not None:
                raise ValueError(f"target {short(self.target)}: keep/bypass belong to a dataspace directive")
            _once([d for d, _, _ in self.factors], f"target {short(self.target)}: factors")
            for d, f, r in self.factors:
                if r > f:
                    raise ValueError(f"target {short(self.target)}: {d}={f},{r}: the residual (the last iteration's "
                                     "factor) is at most the factor")
                if r != f and self.type != "spatial":
                    raise ValueError(f"target {short(self.target)}: {d}={f},{r}: a residual factor is read on a "
                                     "spatial directive only (an uneven unrolling; hwsim's temporal loops are even)")
            if self.permutation is not None:
                _once(list(self.permutation), f"target {short(self.target)}: the permutation")
                left = [d for d, f, _ in self.factors if f > 1 and d not in self.permutation]
                if left:
                    raise ValueError(f"target {short(self.target)}: the permutation leaves out {', '.join(left)}")
            elif sum(f > 1 for _, f, _ in self.factors) > 1:
                raise ValueError(f"target {short(self.target)}: several factors above 1 need a permutation "
                                 "(innermost first)")
        else:
            if self.factors is not None or self.permutation is not None:
                raise ValueError(f"target {short(self.target)}: a {self.type} directive has no factors")
            if self.keep is None and self.bypass is None:
                raise ValueError(f"target {short(self.target)}: a {self.type} directive needs keep or bypass")
            both = set(self.keep or ()) & set(self.bypass or ())
            if both:
                raise ValueError(f"target {short(self.target)}: keeps and bypasses {', '.join(sorted(both))}")
        return self


def _once(names: list[str], what: str) -> None:
    """Refuse a dimension named twice, after aliases: Timeloop's ``K`` and ``M`` are both the output channels."""
    seen: dict[str, str] = {}
    for d in names:
        canon = TIMELOOP_DIMS[d]
        if canon in seen:
            same = f"{d} twice" if seen[canon] == d else f"both {seen[canon]} and {d} (both are the output " \
                                                          "channels, hwsim's K)"
            raise ValueError(f"{what} name {same}")
        seen[canon] = d


TemporalLevels = tuple[Loops, ...] | dict[Annotated[str, Field(min_length=1, max_length=MAX_NAME)], Loops]


class MappingEntry(Record):
    """The mapping of one layer (or of every layer): ZigZag's two keys, or Timeloop's ``mapping`` list."""

    RULES: ClassVar[tuple[str, ...]] = (
        "An entry is in one notation: `spatial_mapping` and `temporal_mapping` (ZigZag), or `mapping` "
        "(Timeloop).",
        "A ZigZag temporal mapping gives each of the three operands once.",
    )

    spatial_mapping: dict[Literal["D1", "D2"], AxisLoops] | None = Field(
        None, description="ZigZag: loops unrolled on the array's rows (`D1`) and columns (`D2`), e.g. "
                          "`{D1: [[C, 16]], D2: [[K, 16]]}`; absent or empty: no unrolling")
    temporal_mapping: dict[Literal[tuple(ZIGZAG_OPERANDS)], Annotated[  # type: ignore[valid-type]
        TemporalLevels, BeforeValidator(as_tuple)]] | None = Field(
        None, description="ZigZag: per operand, the loops of each level serving it, innermost level first (a "
                          "list, one per level, DRAM last; or level name -> loops)")
    temporal_ordering: Loops | None = Field(
        None, description="ZigZag 3.9.1's mapping file (what `ksm-sim --export zigzag` writes): every temporal "
                          "loop, innermost first, e.g. `[[FX, 3], [K, 4]]`; allocated to the memory levels "
                          "bottom-up as ksm-sim's search allocates its own (LOMA's rule, as ZigZag does)")
    memory_operand_links: dict[str, str] | None = Field(
        None, description="ZigZag: layer operand -> memory operand; only ksm-sim's export's `{O: O, W: I2, I: I1}` "
                          "is read (the profile says which level holds which operand)")
    mapping: tuple[TimeloopDirective, ...] | None = Field(
        None, max_length=8 * MAX_LEVELS, description="Timeloop v0.4: the mapping directives")

    @field_validator("mapping", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return as_tuple(value)

    @model_validator(mode="before")
    @classmethod
    def _hwsim_notation(cls, data: Any) -> Any:
        """A layer's ``mapping`` from ``ksm-sim --json`` (``spatial`` rows/cols, ``temporal_innermost_first``
        per operand and level; ``given``, ``overflow`` and ``kernel_steps`` notes dropped: whether FY and FX are
        the engine's kernel steps, the loop bounds say when the layer is costed) is ZigZag's notation."""
        if isinstance(data, dict) and "temporal_innermost_first" in data:
            data = {k: v for k, v in data.items() if k not in ("given", "overflow", "kernel_steps")}
            spatial = data.pop("spatial", None)
            data["temporal_mapping"] = data.pop("temporal_innermost_first")
            if isinstance(spatial, dict) and set(spatial) <= {"rows", "cols"}:
                data["spatial_mapping"] = {"D1": spatial.get("rows", []), "D2": spatial.get("cols", [])}
            elif spatial is not None:
                data["spatial"] = spatial  # refused as an unknown key
        return data

    @model_validator(mode="after")
    def _one_notation(self) -> MappingEntry:
        zigzag = any(x is not None for x in (self.spatial_mapping, self.temporal_mapping, self.temporal_ordering,
                                             self.memory_operand_links))
        if zigzag and self.mapping is not None:
            raise ValueError("give either ZigZag's spatial_mapping/temporal_mapping or Timeloop's mapping, not both")
        if self.temporal_mapping is not None and self.temporal_ordering is not None:
            raise ValueError("give temporal_mapping (loops per level) or temporal_ordering (loops, allocated as "
                             "ksm-sim allocates them), not both")
        if self.mapping is None and self.temporal_mapping is None and self.temporal_ordering is None:
            raise ValueError("no mapping: give temporal_mapping or temporal_ordering (ZigZag) or mapping (Timeloop)")
        links = self.memory_operand_links or {}
        wrong = {k: v for k, v in links.items() if ZIGZAG_LINKS.get(k) != v}
        if wrong:
            raise ValueError(f"memory_operand_links: {', '.join(f'{k}: {v}' for k, v in wrong.items())} is not read: "
                             "only O: O, W: I2, I: I1 (the profile says which level holds which operand)")
        if self.temporal_mapping is not None:
            seen: dict[str, str] = {}
            for key in self.temporal_mapping:
                o = ZIGZAG_OPERANDS[key]
                if o in seen:
                    raise ValueError(f"temporal_mapping: {seen[o]} and {key} are both {o}")
                seen[o] = key
            missing = [o for o in ZIGZAG_OPERANDS.values() if o not in seen]
            if missing:
                raise ValueError(f"temporal_mapping: no loops for {', '.join(dict.fromkeys(missing))} "
                                 "(give W, I and O)")
        return self

    @property
    def notation(self) -> str:
        return "timeloop" if self.mapping is not None else "zigzag"


SHAPE = ("must be a mapping (`default:` and/or `layers:`, or one bare Timeloop `mapping:` list or ZigZag entry) "
         "or ZigZag's list of named entries (`- name: default ...`)")


def _zigzag_list(items: list[Any]) -> dict[str, Any]:
    """ZigZag's mapping file (a list of entries, each with a ``name``: a layer's, or ``default``) as
    ``default`` and ``layers``. An entry without temporal loops (ZigZag's ``default`` with only a spatial
    mapping: ZigZag searches the rest) maps nothing: the layers it would serve are searched."""
    out: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"[{i}]: a ZigZag mapping entry is a mapping with a `name` (a layer's, or default), "
                             f"not {short(item)}")
        name = item["name"]
        entry = {k: v for k, v in item.items() if k != "name"}
        if name in layers or (name == "default" and "default" in out):
            raise ValueError(f"[{i}]: a second entry named {short(name)}")
        if name == "default":
            out["default"] = entry if {"temporal_ordering", "temporal_mapping"} & set(entry) else None
        else:
            layers[name] = entry
    if out.get("default") is None:
        out.pop("default", None)
        if not layers:
            raise ValueError("the ZigZag list maps no layer: its default gives no temporal loops (ksm-sim searches "
                             "without --mapping)")
    if layers:
        out["layers"] = layers
    return out


class MappingFile(Record):
    """A mapping file: one entry for every layer (`default`), entries per layer name (`layers`), or both. A file
    that is one bare entry (Timeloop's `map.yaml`, or ZigZag's two keys) is its `default`; a file that is a list is
    ZigZag's mapping file (`ksm-sim --export zigzag`'s `mapping.yaml`: entries by `name`)."""

    RULES: ClassVar[tuple[str, ...]] = (
        "The file gives `default`, `layers`, or both. A layer named in `layers` takes its entry; every other "
        "layer takes `default`; with no `default`, the layers not named are searched as without `--mapping`.",
        "A layer whose entry is null is costed as without `--mapping` (searched; a layer with no MAC loop nest, "
        "such as an element-wise add, as it always is): `--json` writes null for such a layer's mapping.",
    )

    default: MappingEntry | None = Field(None, description="the mapping of every layer not named in `layers`")
    layers: dict[Annotated[str, Field(min_length=1, max_length=MAX_NAME)], MappingEntry | None] | None = Field(
        None, max_length=MAX_LAYERS, description="layer name -> its mapping (null: searched, as not named; what "
                                                 "`--json` writes for a layer without a loop nest)")

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        if isinstance(data, list):
            return _zigzag_list(data)
        if not isinstance(data, dict):
            raise ValueError(SHAPE)
        if {"mapping", "temporal_mapping", "spatial_mapping", "temporal_ordering", "temporal_innermost_first"} & set(data):
            return {"default": data}
        return data

    @model_validator(mode="after")
    def _some(self) -> MappingFile:
        if self.default is None and not self.layers:
            raise ValueError("no mapping: give default, layers, or a bare Timeloop/ZigZag mapping")
        return self

    def entry(self, layer: str) -> tuple[MappingEntry, str] | None:
        """The entry that maps ``layer`` and how the file names it (``layers.<name>`` or ``default``)."""
        if self.layers and layer in self.layers:
            entry = self.layers[layer]
            return None if entry is None else (entry, f"layers.{layer}")
        if self.default is not None:
            return self.default, "default"
        return None
