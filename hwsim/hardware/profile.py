"""Accelerator profiles: frozen dataclasses loaded from YAML, validated, units in the field names.

A profile file looks like this (every number should carry its source in a comment)::

    name: edge_npu
    description: one line
    clock_hz: 9.33e8
    dataflow: weight_stationary        # weight_stationary | output_stationary | row_stationary
    array: {rows: 32, cols: 32, mac_energy_pj: 0.23}
    precision_bits: {weights: 8, inputs: 8, psums: 32, outputs: 8, mask_scale: 8, batchnorm: 16}
    mask_op_energy_pj: {gate: 0.03, multiply: 0.2}
    levels:                            # outermost (DRAM) first
      - name: dram
        size_bytes: 4.0e9
        word_bits: 64                  # one access moves this many bits
        read_energy_pj: 512            # per access (word)
        write_energy_pj: 512
        bandwidth_bytes_per_cycle: 18
        operands: [weights, inputs, outputs]
        per_pe: false                  # optional; true = one instance inside every PE
        burst_bytes: 32                # optional; a shorter contiguous run costs a whole burst of port time
        max_run_elements: {outputs: 16}  # optional; the engine moves this operand in runs of at most 16
        input_block_depth: {granule: 8, max: 32, depthwise_max: 16}  # optional; the engine's input blocks

Optional keys: ``spatial`` (the unrollings the mapping search may use; ``alternatives`` lists more of them,
each costed, the best kept), ``static_power_w``, ``vector_unit``
(``{ops_per_cycle, energy_pj_per_op}``: what runs non-MAC operators), ``output_stage``
(``{outputs_per_cycle, energy_pj_per_output}``: requantisation and write-back, which bounds a layer's time),
``chip_energy`` (``{clock_pj_per_cycle, control_pj_per_cycle, energy_node_nm, energy_vdd_v, vdd_v, device}``:
clock and control per cycle, and the node the per-access energies were given at, scaled to ``technology_nm``
once, here: :mod:`hwsim.hardware.node_scaling`), ``zero_gating`` (MACs on zero inputs skipped), ``latency_model``
(``roofline`` or ``per_period``, ZigZag 3.9.1's: :mod:`hwsim.cost.mapping.stall`), a level's ``shared_port``
(one read-write port), ``dram_compression`` (``{format: rlc, run_bits, level_bits, word_bits}``: feature maps
run-length coded in DRAM, :mod:`hwsim.cost.dram_compression`), ``search`` (the mapping search's ``lpf_limit``,
``spatial_keep`` and ``pe_split``: :class:`SearchParams`), and the area
model's ``technology_nm`` and ``area`` (:mod:`hwsim.hardware.area`). Every key, its unit, its physical range and
the cross-field rules are declared once, in :class:`hwsim.schemas.profile_file.ProfileFile` (and documented from
it in ``docs/reference/profile.md``); a file that breaks one is refused with one line naming the file and the key.

There is one loader: :func:`read_raw_profile` reads the YAML, :mod:`hwsim.hardware.overrides` applies
``--set``, :func:`design_from_raw` validates (area keys included), and :func:`load_design` chains the three.
``ksm-sim`` (its tables, ``--list-profiles`` and ``--report``), :func:`load_profile` and ``ksm-explore`` (which
applies its axis values between reading and validating) all go through it, so a key one accepts, all accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hwsim.cost.dram_compression import RunLengthCode
from hwsim.errors import InputError
from hwsim.fileio.bounded import MAX_YAML_BYTES, parse_yaml, read_text
from hwsim.hardware.node_scaling import energy_scale
from hwsim.hardware.overrides import apply_overrides, parse_set
from hwsim.schemas.validation import validate
from hwsim.schemas.profile_file import (  # noqa: F401 - OPERANDS, DATAFLOWS, SPATIAL_DIMS are re-exported
    DATAFLOWS,
    LPF_LIMIT,
    SPATIAL_KEEP,
    OPERANDS,
    SPATIAL_DIMS,
    ProfileFile,
)


@dataclass(frozen=True, slots=True)
class InputBlockDepth:
    """How deep the blocks are in which the engine reads an NHWC input through a bursty level: the layer's
    input channels rounded up to ``granule``, at most ``max`` (``depthwise_max`` for a depthwise layer); a
    block shallower than the tensor is read in runs of its depth
    (:func:`hwsim.cost.mapping.bursts.input_block_run`)."""

    granule: int
    max: int
    depthwise_max: int


@dataclass(frozen=True, slots=True)
class MemoryLevel:
    """One memory level. Energies are per access of ``word_bits`` bits; bandwidth is per instance."""

    name: str
    size_bytes: float
    word_bits: int
    read_energy_pj: float
    write_energy_pj: float
    bandwidth_bytes_per_cycle: float
    operands: tuple[str, ...]
    per_pe: bool = False
    burst_bytes: float = 0.0  # shortest transfer the port makes (0: none); see hwsim.cost.mapping.bursts
    max_run_elements: tuple[tuple[str, int], ...] = ()  # (operand, longest run the engine moves) pairs
    input_block_depth: InputBlockDepth | None = None  # the engine's IFM blocks (None: the tile's runs)
    shared_port: bool = False  # one read-write port (else a read and a write port); the outermost level has one


@dataclass(frozen=True, slots=True)
class Array:
    """The MAC array: ``rows`` x ``cols`` processing elements, one MAC per PE per cycle."""

    rows: int
    cols: int
    mac_energy_pj: float
    noc_energy_pj_per_byte: float = 0.0  # the array's network (ISCA 2016's inter-PE level), per byte moved

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True, slots=True)
class Pooling:
    """Pooling on the MAC engine's OFM micro-blocks: ``tap_cycles`` per window tap per micro-block, at least
    ``min_taps`` per sub-kernel of at most ``sub_kernel`` (rows, columns) taps; a global average pool as a
    ``depthwise`` convolution of unit weights or as a ``pool`` window (:mod:`hwsim.cost.pool_engine`)."""

    tap_cycles: float
    min_taps: int
    sub_kernel: tuple[int, int]
    global_pool: str


@dataclass(frozen=True, slots=True)
class VectorUnit:
    """Where a graph's non-MAC operators run (:mod:`hwsim.cost.operator_cost`): operations per cycle and energy
    per operation. ``assumed``: the profile names no vector unit, and these are the MAC array's."""

    ops_per_cycle: float
    energy_pj_per_op: float
    assumed: bool = False
    by_kind: tuple[tuple[str, float], ...] = ()  # (operator kind, ops/cycle) for kinds run at another rate
    pooling: Pooling | None = None  # None: pooling at its rate; else on the MAC engine's micro-blocks

    def rate(self, kind: str) -> float:
        """Operations per cycle for one operator kind."""
        return dict(self.by_kind).get(kind, self.ops_per_cycle)

    def describe(self) -> str:
        """One line for tables: what runs the non-MAC operators."""
        where = "the MAC array (the profile names no vector unit)" if self.assumed else "a vector unit"
        extra = "".join(f", {kind} {rate:g}" for kind, rate in self.by_kind)
        if self.pooling is not None:
            extra += f", pooling on the MAC engine's micro-blocks ({self.pooling.tap_cycles:g} cycles per tap)"
        return f"{where}: {self.ops_per_cycle:g} ops/cycle{extra}, {self.energy_pj_per_op:g} pJ/op"


@dataclass(frozen=True, slots=True)
class Precision:
    """Operand widths in bits. ``psums`` is the accumulator width; ``outputs`` the final activation width."""

    weights: int
    inputs: int
    psums: int
    outputs: int
    mask_scale: int
    batchnorm: int


@dataclass(frozen=True, slots=True)
class MaskOpEnergy:
    """Energy of applying one mask element to one weight: a gate (binary) or a multiply (soft scale)."""

    gate: float
    multiply: float


@dataclass(frozen=True, slots=True)
class SpatialAlternative:
    """One more unrolling the search costs (``spatial.alternatives``): axes resolved as :class:`SpatialAxes`'
    are, for ``layers`` (all, dense or depthwise); on the axes ``divisors`` names, every divisor of the ways
    taken, too."""

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    layers: str = "all"
    divisors: tuple[str, ...] = ()  # "rows", "cols"
    cols_block: tuple[tuple[str, int], ...] = ()  # the columns unroll these (dimension, ways) together, where fuller


@dataclass(frozen=True, slots=True)
class SpatialAxes:
    """Loop dimensions the array's rows and columns may unroll (the mapping search picks one per axis)."""

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    search: bool = True  # False: each axis unrolls the first listed dimension larger than 1
    alternatives: tuple[SpatialAlternative, ...] = ()  # more unrollings costed; the best is kept


@dataclass(frozen=True, slots=True)
class SearchParams:
    """The mapping search's parameters (``search``): LOMA's ``lpf_limit``, the unrollings kept per layer (ZigZag's
    ``nb_spatial_mappings_generated``) and the operands the per-PE split candidate keeps in a per-PE level
    (:func:`hwsim.cost.mapping.best_mapping.pinned_loops`). The defaults are the search's of every profile that
    does not set them."""

    lpf_limit: int = LPF_LIMIT
    spatial_keep: int = SPATIAL_KEEP
    pe_split: tuple[str, ...] = ("outputs",)
    pe_block: int = 0


@dataclass(frozen=True, slots=True)
class WeightSets:
    """The MAC engine loads its weights in sets (one kernel step of ``taps_per_step`` taps, or one tap, for
    ``output_channels`` output channels and an input-channel slice) and passes each over the output's
    micro-blocks of ``micro_block`` (rows, columns) pixels, ``micro_block_cycles`` each; a set takes ``cycles``
    to load: a floor on the MAC time (Vela's ``cyclesWb`` and kernel steps: :mod:`hwsim.cost.weight_sets`)."""

    cycles: float
    output_channels: int
    input_channels: int
    taps_per_step: int
    part_kernel_input_channels: int
    micro_block: tuple[int, int]
    micro_block_cycles: float


@dataclass(frozen=True, slots=True)
class OutputStage:
    """Requantisation, activation and write-back of final outputs: a layer takes at least its outputs over
    ``outputs_per_cycle`` cycles, and each output costs ``energy_pj_per_output`` (already scaled to the node)."""

    outputs_per_cycle: float
    energy_pj_per_output: float = 0.0


@dataclass(frozen=True, slots=True)
class ChipEnergy:
    """Chip-level energy: the clock network and control per cycle (at the profile's node), and the factor by
    which the per-access energies the profile gave (at ``energy_node_nm``) were scaled to its node
    (:mod:`hwsim.hardware.node_scaling`; 1.0 when not scaled)."""

    clock_pj_per_cycle: float = 0.0
    control_pj_per_cycle: float = 0.0
    energy_scale: float = 1.0
    energy_node_nm: float | None = None  # None: the energies were given at the profile's node
    technology_nm: float | None = None  # the node they were scaled to

    def describe(self) -> str:
        """One line for tables: clock, control, and the node scaling applied."""
        scaled = (f"per-access energies x{self.energy_scale:.3g} from {self.energy_node_nm:g} nm to "
                  f"{self.technology_nm:g} nm" if self.energy_node_nm is not None else "per-access energies as given")
        return f"clock {self.clock_pj_per_cycle:g} pJ/cycle, control {self.control_pj_per_cycle:g} pJ/cycle, {scaled}"


@dataclass(frozen=True, slots=True)
class Profile:
    """An accelerator: clock, MAC array, dataflow, precisions and memory levels (outermost first)."""

    name: str
    description: str
    clock_hz: float
    dataflow: str
    array: Array
    precision_bits: Precision
    mask_op_energy_pj: MaskOpEnergy
    levels: tuple[MemoryLevel, ...]
    spatial: SpatialAxes | None = None  # None: the dataflow's default unrollings
    static_power_w: float = 0.0  # leakage and clock tree, charged x latency
    vector_unit: VectorUnit | None = None  # None: non-MAC operators run on the MAC array (see `vector`)
    output_stage: OutputStage | None = None  # None: outputs leave the array without bounding its time
    weight_sets: WeightSets | None = None  # None: weights reach the MACs with no floor per set loaded
    chip_energy: ChipEnergy | None = None  # None: no clock or control energy, energies as given
    zero_gating: bool = False  # MACs on zero inputs skipped (their MAC and innermost weight read)
    latency_model: str = "roofline"  # or "per_period" (ZigZag 3.9.1's): hwsim.cost.mapping.stall
    dram_compression: RunLengthCode | None = None  # None: feature maps dense in DRAM (hwsim.cost.dram_compression)
    search: SearchParams = SearchParams()  # the mapping search's parameters (defaults: ZigZag 3.9.1's)

    @property
    def vector(self) -> VectorUnit:
        """The unit running non-MAC operators: the profile's, or the MAC array (one operation per PE per
        cycle at the MAC's energy) when it names none."""
        if self.vector_unit is not None:
            return self.vector_unit
        return VectorUnit(ops_per_cycle=float(self.array.pes), energy_pj_per_op=self.array.mac_energy_pj,
                          assumed=True)

    @property
    def dram(self) -> MemoryLevel:
        """The outermost level (off-chip memory, or the system memory of a microcontroller NPU)."""
        return self.levels[0]

    def chain(self, operand: str) -> tuple[MemoryLevel, ...]:
        """The levels that hold ``operand``, outermost first."""
        return tuple(level for level in self.levels if operand in level.operands)

    @property
    def peak_macs_per_s(self) -> float:
        return self.array.pes * self.clock_hz

    @property
    def on_chip_bytes(self) -> float:
        return sum(level.size_bytes * (self.array.pes if level.per_pe else 1) for level in self.levels[1:])


# --------------------------------------------------------------------------------------------
# Loading and validation


def profile_from_dict(raw: Any, where: str) -> Profile:
    """Validate a decoded YAML mapping against :class:`~hwsim.schemas.profile_file.ProfileFile` (types,
    physical ranges, the cross-field rules, the area model's keys too) and build the :class:`Profile`;
    ``where`` names the file in the one-line error."""
    return _profile(validate(ProfileFile, raw, where))


def energy_scale_of(model: ProfileFile) -> float:
    """The factor taking the profile's per-access energies from the node and supply they were given at
    (``chip_energy.energy_node_nm``, ``energy_vdd_v``) to its ``technology_nm`` at ``vdd_v``
    (:func:`hwsim.hardware.node_scaling.energy_scale`); 1.0 when no source node is given."""
    c = model.chip_energy
    if c is None or c.energy_node_nm is None:
        return 1.0
    return energy_scale(c.energy_node_nm, c.energy_vdd_v, model.technology_nm, c.vdd_v, c.device)


def _profile(model: ProfileFile) -> Profile:
    """The runtime dataclasses of a validated profile (the cost model's objects; no check is repeated).

    Per-access and per-operation energies (MAC, array network, on-chip levels, vector unit, mask operations,
    output stage) are scaled here, once, by :func:`energy_scale_of`, so the mapping search and every cost see
    the chip's energies; the per-cycle clock and control energies (given at the chip's node) are not, nor is the outermost
    level (off-chip memory: its energy is the DRAM's and its interface's, not the chip's node) unless
    ``chip_energy.scale_outermost`` says its energies were given relative to the same on-chip anchor."""
    a, p, m, s = model.array, model.precision_bits, model.mask_op_energy_pj, model.spatial
    k = energy_scale_of(model)
    c, o = model.chip_energy, model.output_stage
    k_out = k if c is not None and c.scale_outermost else 1.0  # the outermost level's own energies stay
    return Profile(
        name=model.name, description=model.description, clock_hz=model.clock_hz, dataflow=model.dataflow,
        array=Array(rows=a.rows, cols=a.cols, mac_energy_pj=a.mac_energy_pj * k,
                    noc_energy_pj_per_byte=a.noc_energy_pj_per_byte * k),
        precision_bits=Precision(weights=p.weights, inputs=p.inputs, psums=p.psums, outputs=p.outputs,
                                 mask_scale=p.mask_scale, batchnorm=p.batchnorm),
        mask_op_energy_pj=MaskOpEnergy(gate=m.gate * k, multiply=m.multiply * k),
        levels=tuple(MemoryLevel(name=lv.name, size_bytes=lv.size_bytes, word_bits=lv.word_bits,
                                 read_energy_pj=lv.read_energy_pj * (k if i else k_out),
                                 write_energy_pj=lv.write_energy_pj * (k if i else k_out),
                                 bandwidth_bytes_per_cycle=lv.bandwidth_bytes_per_cycle,
                                 operands=tuple(lv.operands), per_pe=lv.per_pe,
                                 burst_bytes=lv.burst_bytes or 0.0,
                                 max_run_elements=tuple(sorted((lv.max_run_elements or {}).items())),
                                 input_block_depth=None if lv.input_block_depth is None else InputBlockDepth(
                                     granule=lv.input_block_depth.granule, max=lv.input_block_depth.max,
                                     depthwise_max=lv.input_block_depth.depthwise_max),
                                 shared_port=lv.shared_port)
                for i, lv in enumerate(model.levels)),
        spatial=None if s is None else SpatialAxes(
            rows=tuple(s.rows), cols=tuple(s.cols), search=s.search,
            alternatives=tuple(SpatialAlternative(rows=tuple(x.rows), cols=tuple(x.cols), layers=x.layers,
                                                  divisors=tuple(x.divisors),
                                                  cols_block=tuple((x.cols_block or {}).items()))
                               for x in s.alternatives)),
        static_power_w=model.static_power_w, latency_model=model.latency_model,
        vector_unit=None if model.vector_unit is None else VectorUnit(
            ops_per_cycle=model.vector_unit.ops_per_cycle, energy_pj_per_op=model.vector_unit.energy_pj_per_op * k,
            by_kind=tuple(sorted((model.vector_unit.ops_per_cycle_by_kind or {}).items())),
            pooling=None if (pl := model.vector_unit.pooling) is None else Pooling(
                tap_cycles=pl.tap_cycles, min_taps=pl.min_taps, sub_kernel=(pl.sub_kernel_rows, pl.sub_kernel_cols),
                global_pool=pl.global_pool)),
        output_stage=None if o is None else OutputStage(outputs_per_cycle=o.outputs_per_cycle,
                                                        energy_pj_per_output=o.energy_pj_per_output * k),
        chip_energy=None if c is None else ChipEnergy(
            clock_pj_per_cycle=c.clock_pj_per_cycle, control_pj_per_cycle=c.control_pj_per_cycle, energy_scale=k,
            energy_node_nm=c.energy_node_nm, technology_nm=model.technology_nm if c.energy_node_nm else None),
        zero_gating=model.zero_gating,
        weight_sets=None if model.weight_sets is None else WeightSets(
            cycles=model.weight_sets.cycles, output_channels=model.weight_sets.output_channels,
            input_channels=model.weight_sets.input_channels, taps_per_step=model.weight_sets.taps_per_step,
            part_kernel_input_channels=model.weight_sets.part_kernel_input_channels,
            micro_block=(model.weight_sets.micro_block_rows, model.weight_sets.micro_block_cols),
            micro_block_cycles=model.weight_sets.micro_block_cycles),
        dram_compression=None if model.dram_compression is None else RunLengthCode(
            run_bits=model.dram_compression.run_bits, level_bits=model.dram_compression.level_bits,
            word_bits=model.dram_compression.word_bits),
        search=SearchParams() if model.search is None else SearchParams(
            lpf_limit=model.search.lpf_limit, spatial_keep=model.search.spatial_keep,
            pe_split=tuple(model.search.pe_split), pe_block=model.search.pe_block))


def _extras(model: ProfileFile) -> dict[str, Any]:
    """The area model's keys as the file gave them (validated numbers): absent keys stay absent, so that
    :func:`hwsim.hardware.area.area_breakdown` applies its defaults, scaled to the node."""
    extras: dict[str, Any] = {}
    if "technology_nm" in model.model_fields_set:
        extras["technology_nm"] = model.technology_nm
    if model.area is not None:
        extras["area"] = model.area.model_dump(exclude_unset=True)
    return extras


PROFILES = resources.files("hwsim") / "profiles"  # the bundled profiles, one <name>.yaml each


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped in ``hwsim/profiles``."""
    return sorted(p.name[:-5] for p in PROFILES.iterdir() if p.name.endswith(".yaml"))


def load_yaml(text: str, where: str) -> Any:
    """Decode YAML ``text``, bounded (aliases, nodes, depth, integers, duplicate keys: ``hwsim.fileio.bounded``);
    any problem becomes a one-line :class:`InputError` naming ``where``."""
    return parse_yaml(text, where, InputError)


def read_raw_profile(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The decoded YAML mapping of a bundled profile (by name) or a profile file (by path), and the name
    errors use; not yet validated (overrides apply to it first)."""
    text_name = str(name_or_path)
    if text_name.endswith((".yaml", ".yml")) or Path(text_name).is_file():
        path = Path(text_name)
        text, where = read_text(path, MAX_YAML_BYTES, InputError), str(path)
    else:
        resource = PROFILES / f"{text_name}.yaml"
        if not resource.is_file():
            raise InputError(f"--profile: unknown profile {text_name!r} "
                             f"(bundled: {', '.join(bundled_profiles())}; or give a .yaml path)")
        text, where = resource.read_text(encoding="utf-8"), f"{text_name}.yaml"
    raw = load_yaml(text, where)
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a mapping, got {type(raw).__name__}")
    return raw, where


@dataclass(frozen=True)
class Design:
    """A validated profile plus the raw mapping it came from and the area keys beside it."""

    profile: Profile
    raw: dict[str, Any] = field(compare=False)
    extras: dict[str, Any] = field(compare=False)
    where: str = ""


def design_from_raw(raw: dict[str, Any], where: str, blame: str | None = None) -> Design:
    """Validate ``raw`` as a profile file is validated, area keys included. ``blame`` prefixes errors
    (``--set ...``, a sweep's axis values)."""
    try:
        model = validate(ProfileFile, raw, where)
    except InputError as exc:
        raise InputError(f"{blame}: {exc}" if blame else str(exc)) from None
    return Design(profile=_profile(model), raw=raw, extras=_extras(model), where=where)


def load_design(name_or_path: str | Path, sets: Sequence[str] = ()) -> Design:
    """The one profile loader: read a bundled profile or a YAML file, apply ``--set`` overrides
    (:mod:`hwsim.hardware.overrides`), validate."""
    raw, where = read_raw_profile(name_or_path)
    if not sets:
        return design_from_raw(raw, where)
    blame = f"--set {', '.join(parse_set(s)[0] for s in sets)}"
    return design_from_raw(apply_overrides(raw, sets), where, blame)


def load_designs(names: Sequence[str | Path], sets: Sequence[str] = ()) -> list[Design]:
    """:func:`load_design` of every profile named (``all``: every bundled one), each once, in order."""
    wanted: list[str | Path] = []
    for name in names:
        wanted.extend(bundled_profiles() if name == "all" else [name])
    return [load_design(name, sets) for name in dict.fromkeys(wanted)]


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a bundled profile by name (``edge_npu``) or a YAML file by path (:func:`load_design`)."""
    return load_design(name_or_path).profile
