"""An accelerator profile file (YAML): every key it may have, its unit, its physical range, its rules.

:func:`hwsim.hardware.profile.profile_from_dict` validates a decoded profile mapping (a bundled profile, a
``--profile`` file, either after ``--set`` or a sweep's axis values) against :class:`ProfileFile` and builds
the frozen dataclasses the cost model uses from the result. The area model's two keys (``technology_nm``,
``area``, read by :mod:`hwsim.hardware.area`) are declared here too, so one schema says everything a profile
may hold.

The ranges are physical, not stylistic: wide enough for any accelerator from a microcontroller NPU to a
wafer-scale engine, narrow enough that a typo (``1e308``, ``1e-320``) is refused with the key named instead of
turning a table into ``inf`` or ``NaN`` (every product and quotient the cost and area models form of these
numbers stays finite). Every number is a YAML number (``1.0e9``, which YAML 1.1 reads as a string, is the
number it means).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from hwsim.hardware.area import REFERENCE_NM
from hwsim.hardware.node_scaling import DEVICES, MAX_NM as MAX_SCALING_NM, MIN_NM as MIN_SCALING_NM, energy_scale
from hwsim.schemas.validation import Real, Record, Whole, first_repeat

OPERANDS = ("weights", "inputs", "outputs")
DATAFLOWS = ("weight_stationary", "output_stationary", "row_stationary")
SPATIAL_DIMS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX")
NOC = "noc"  # the energy entry (pseudo-level) of the array's network: array.noc_energy_pj_per_byte

Operand = Literal[OPERANDS]  # type: ignore[valid-type]  # Literal of a tuple: one of its items
Dataflow = Literal[DATAFLOWS]  # type: ignore[valid-type]
SpatialDim = Literal[SPATIAL_DIMS]  # type: ignore[valid-type]

# Bounds, and where each comes from when it is not obvious.
MIN_CLOCK_HZ, MAX_CLOCK_HZ = 1e3, 1e11  # 1 kHz (slower is no accelerator) .. 100 GHz (above any CMOS clock)
MAX_ARRAY_SIDE = 65536  # 2**16 PEs per side: 4.3e9 PEs, far above a wafer-scale engine's ~1e6 cores
MAX_PRECISION_BITS = 64  # float64 is the widest datapath word any profile could mean
MAX_SIZE_BYTES = 1e15  # 1 PB: above any memory one accelerator addresses
MAX_WORD_BITS = 4096  # one access; the widest SRAM ports and HBM bursts are 1-2 kbit
MAX_ENERGY_PJ = 1e9  # 1 mJ per access or operation: six orders above a DRAM access (~1e3 pJ per 64 bits)
# Cycles are bytes / bandwidth: a floor keeps them finite. One byte per thousand cycles is slower than any
# memory link a profile could describe (a 90 MHz, 8-bit link beside a 1 GHz array is ~0.1 B/cycle).
MIN_BANDWIDTH, MAX_BANDWIDTH = 1e-3, 1e12
MAX_STATIC_POWER_W = 1e4  # 10 kW: a rack; no single accelerator leaks more
MIN_NODE_NM, MAX_NODE_NM = 1.0, 1000.0  # CMOS nodes run from 1 um down to a few nm
MIN_OPS_PER_CYCLE = 1e-3  # a vector unit slower than one operation per thousand cycles is none (a 1e-300 rate
# turns a latency into inf)
MAX_LEVELS = 16  # memory hierarchies have 2-6 levels; each level multiplies the mapping search
MAX_NAME = 100  # names key tables and axis keys (levels.NAME.size_bytes)
MAX_DESCRIPTION = 500  # one line in --list-profiles
MAX_UM2 = 1e11  # no component is larger than a 300 mm wafer (7.1e10 um2)
MAX_MM2 = 1e5  # the same wafer, in mm2
MIN_SRAM_EFFICIENCY = 0.01  # area is divided by it; CACTI 6.5 reports 0.5-0.8 for megabyte-class arrays
MAX_ENERGY_PER_CYCLE_PJ = 1e9  # 1 mJ per clock cycle: 1 MW at 1 GHz, far above any chip's clock and control
MIN_VDD_V, MAX_VDD_V = 0.3, 2.0  # near-threshold operation .. above 180 nm's nominal 1.8 V
# The mapping search's parameters: defaults are ZigZag 3.9.1's (get_hardware_performance_zigzag: lpf_limit 6,
# nb_spatial_mappings_generated 3), and the search's limits on them (ProfileSearch)
LPF_LIMIT, MAX_LPF_LIMIT = 6, 8  # 8 loops: 8! = 40,320 orders per unrolling, and subsets of 8 loops fit a byte
SPATIAL_KEEP, MAX_SPATIAL_KEEP = 3, 64  # 64 unrollings per layer: far above the 15 a dataflow's lists give
MAX_PE_BLOCK = 7  # 7 loops above the per-PE block: 7! = 5,040 orders times the block's own orders
# The dimensions each `pe_split` operand does not depend on (hwsim.cost.mapping.space.RELEVANT's complement, but
# the groups': tests/hwsim/test_hostile_session5.py checks the two agree): a per-PE block tiles them, and its
# orders are scored whole (n! per tiling), so a block of more than 4 (the outputs' reduction FX, FY, C and the
# inputs' K: Eyeriss's PE, 24 orders) is refused with `pe_block`: 7 made a layer take minutes.
PE_SPLIT_DIMS = {"outputs": ("C", "FY", "FX"), "inputs": ("K",), "weights": ("B", "OY", "OX")}
MAX_PE_BLOCK_DIMS = 4


def Bits(meaning: str) -> Any:  # noqa: N802 - a type
    """An operand width in bits."""
    return Whole(ge=1, le=MAX_PRECISION_BITS, description=f"{meaning} (bits)")


def Energy(meaning: str) -> Any:  # noqa: N802 - a type
    """An energy in pJ, zero allowed (an operation a profile does not charge)."""
    return Real(ge=0, le=MAX_ENERGY_PJ, description=f"{meaning} (pJ)")


class ProfileArray(Record):
    """The MAC array: ``rows`` x ``cols`` processing elements, one multiply-accumulate per PE per cycle."""

    rows: Whole(ge=1, le=MAX_ARRAY_SIDE, description="processing elements per column (the array's rows)")
    cols: Whole(ge=1, le=MAX_ARRAY_SIDE, description="processing elements per row (the array's columns)")
    mac_energy_pj: Energy("one multiply-accumulate at the profile's precisions")
    noc_energy_pj_per_byte: Real(
        ge=0, le=MAX_ENERGY_PJ,
        description="the array's network, per byte moved across the PE array (pJ/byte): each PE's copy of a "
                    "weight or input filled into a `per_pe` level from a level shared by the PEs, and each "
                    "partial sum passed PE to PE in a reduction over the array (ISCA 2016's inter-PE 'array' "
                    "level; the energy entry `noc`); 0: free") = 0.0


VectorKind = Literal["elementwise", "activation", "batchnorm", "pool", "global_pool", "copy", "resize",
                     "softmax", "unknown"]


class ProfilePooling(Record):
    """Pooling run on the MAC engine's OFM micro-blocks (`weight_sets`' micro-block of rows x columns x
    `output_channels`): every micro-block of the output takes `tap_cycles` per window tap, at least `min_taps`
    taps per sub-kernel, the window cut into sub-kernels of at most `sub_kernel_rows` x `sub_kernel_cols`
    taps (Vela 5.2.0 for Ethos-U55: 4 cycles per tap at int8, at least 4 taps, 8x8 sub-kernels). A global
    average pool (a spatial mean or sum) runs as `global_pool` says: `depthwise`, a depthwise convolution of
    unit weights over the whole input, costed by `weight_sets` (Vela lowers a mean so), or `pool`, a window as
    large as the input; a global maximum always as such a window."""

    tap_cycles: Real(ge=0, le=1e6, description="cycles a micro-block spends on one window tap (cycles)")
    min_taps: Whole(ge=1, le=MAX_ARRAY_SIDE, description="the fewest taps a sub-kernel is charged")
    sub_kernel_rows: Whole(ge=1, le=MAX_ARRAY_SIDE, description="window rows of one sub-kernel at most")
    sub_kernel_cols: Whole(ge=1, le=MAX_ARRAY_SIDE, description="window columns of one sub-kernel at most")
    global_pool: Literal["depthwise", "pool"] = Field(
        description="how a global average pool runs: `depthwise` (a depthwise convolution of unit weights, "
                    "costed by `weight_sets`) or `pool` (a window the size of its input)")


class ProfileVectorUnit(Record):
    """The unit that runs a graph's non-MAC operators (element-wise, pooling, resize, softmax, unfused
    activations): ``ops_per_cycle`` operations per cycle at ``energy_pj_per_op`` each."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`pooling` and a rate for `pool` or `global_pool` in `ops_per_cycle_by_kind` are not both given.",
    )

    ops_per_cycle: Real(ge=MIN_OPS_PER_CYCLE, le=float(MAX_ARRAY_SIDE) ** 2,
                        description="operations per cycle (lanes x operations per lane)")
    energy_pj_per_op: Energy("one operation of the vector unit")
    ops_per_cycle_by_kind: dict[VectorKind, Real(ge=MIN_OPS_PER_CYCLE, le=float(MAX_ARRAY_SIDE) ** 2)] = Field(
        None, description="operator kind -> operations per cycle, for the kinds the unit runs at another rate "
                          "(e.g. pooling on the MAC engine)")
    pooling: ProfilePooling | None = Field(
        None, description="pooling and global pooling on the MAC engine's micro-blocks instead of at a rate "
                          "(needs `weight_sets`); absent: at the rates above")

    @field_validator("pooling")
    @classmethod
    def _one_pool_cost(cls, pooling: ProfilePooling | None, info: ValidationInfo) -> ProfilePooling | None:
        both = sorted(set(info.data.get("ops_per_cycle_by_kind") or {}) & {"pool", "global_pool"})
        if pooling is not None and both:
            raise ValueError(f"ops_per_cycle_by_kind.{both[0]} is not used when pooling is given: drop one")
        return pooling


class ProfilePrecisionBits(Record):
    """Operand widths in bits, as stored and moved."""

    weights: Bits("a weight")
    inputs: Bits("an input activation")
    psums: Bits("a partial sum (the accumulator)")
    outputs: Bits("a final output activation")
    mask_scale: Bits("one mask element of a soft (scaling) mask")
    batchnorm: Bits("a folded BatchNorm scale or shift")


class ProfileMaskOpEnergy(Record):
    """Energy of applying one mask element to one weight."""

    gate: Energy("a binary mask gating one weight")
    multiply: Energy("a soft mask scaling one weight")


class ProfileInputBlockDepth(Record):
    """How deep the blocks are in which the engine reads an NHWC input through this level (Arm Vela 5.2.0's
    IFM block on the Ethos-U55): the layer's input channels rounded up to `granule`, at most `max`
    (`depthwise_max` for a depthwise layer). A block shallower than the tensor's depth is read in runs of its
    depth, each charged as a whole burst where it is shorter than `burst_bytes`. A block is whole granules
    (the engine's IFM micro-blocks), so `max` and `depthwise_max` are multiples of `granule` (Vela: 32 and 16
    over 8)."""

    RULES: ClassVar[tuple[str, ...]] = ("`max` and `depthwise_max` are multiples of `granule`.",)

    granule: Whole(ge=1, le=MAX_SIZE_BYTES,
                   description="the block depth is the input channels rounded up to a multiple of this "
                               "(channels)")
    max: Whole(ge=1, le=MAX_SIZE_BYTES,
               description="the deepest block of a convolution (channels, a multiple of `granule`)")
    depthwise_max: Whole(ge=1, le=MAX_SIZE_BYTES,
                         description="the deepest block of a depthwise layer (channels, a multiple of "
                                     "`granule`)")

    @field_validator("max", "depthwise_max")
    @classmethod
    def _granule_fits(cls, depth: int, info: ValidationInfo) -> int:
        """A block is whole micro-blocks: Vela 5.2.0's IFM block depth is ``RoundAway(min(depth, 32), 8)`` (a
        multiple of the 8-deep IFM micro-block) and the depthwise one the OFM block's 16 (``ethos_u55.cpp``
        ``FindBlockConfig`` L439, L458-461). A cap between granules would make a block no engine reads (the
        cost model caps the rounded depth at it, :func:`hwsim.cost.mapping.bursts.input_block_run`):
        refused."""
        granule = info.data.get("granule")
        if granule is not None and depth < granule:
            raise ValueError(f"{depth} is shallower than the granule ({granule}); no block could be that "
                             "shallow")
        if granule is not None and depth % granule:
            raise ValueError(f"not a multiple of the granule ({granule}): a block is whole granules")
        return depth


class ProfileLevel(Record):
    """One memory level. Energies are per access of ``word_bits`` bits; bandwidth is per instance."""

    RULES: ClassVar[tuple[str, ...]] = ("A level lists each operand once.",)

    name: str = Field(min_length=1, max_length=MAX_NAME,
                      description="the level's name, unique in the profile (e.g. `dram`, `sram_1MB`)")
    size_bytes: Real(ge=1, le=MAX_SIZE_BYTES, description="capacity of one instance (bytes)")
    word_bits: Whole(ge=1, le=MAX_WORD_BITS,
                     description="bits one access moves (the energies are per access)")
    read_energy_pj: Energy("one read access of `word_bits` bits")
    write_energy_pj: Energy("one write access of `word_bits` bits")
    bandwidth_bytes_per_cycle: Real(ge=MIN_BANDWIDTH, le=MAX_BANDWIDTH,
                                    description="bytes one instance moves per clock cycle (bytes/cycle)")
    operands: list[Operand] = Field(min_length=1, max_length=len(OPERANDS),
                                    description="the operands the level holds")
    per_pe: bool = Field(False, description="true: one instance inside every PE (a register file, spad or "
                                            "accumulator; an operand may have several, innermost)")
    burst_bytes: Whole(ge=1, le=MAX_SIZE_BYTES,
                       description="shortest transfer the port makes (whole bytes, at most `size_bytes`): a "
                                   "contiguous run of a tile shorter than it costs a whole burst of port time, not "
                                   "energy (e.g. 32 for an SRAM on a 32-byte AXI burst)") = None
    max_run_elements: dict[Operand, Whole(ge=1, le=MAX_SIZE_BYTES)] | None = Field(
        None, description="per operand, the longest contiguous run the engine moves through this level, whatever "
                          "the tile (elements; e.g. `{outputs: 16}`), for operands the level holds; only with "
                          "`burst_bytes`")
    input_block_depth: ProfileInputBlockDepth | None = Field(
        None, description="the blocks in which the engine reads inputs through this level (channels): a "
                          "block shallower than the tensor is read in runs of its depth; only with "
                          "`burst_bytes`, on a level that holds inputs")
    shared_port: bool = Field(False, description="true: one read-write port of `bandwidth_bytes_per_cycle` "
                                                 "(a single-ported SRAM); false: a read port and a write port "
                                                 "of that bandwidth each (the outermost level always has one "
                                                 "port)")

    @field_validator("operands")
    @classmethod
    def _operands_once(cls, operands: list[str]) -> list[str]:
        if first_repeat(operands) is not None:
            raise ValueError("each operand may be listed once")
        return operands

    @field_validator("burst_bytes")
    @classmethod
    def _burst_fits(cls, burst: int | None, info: ValidationInfo) -> int | None:
        size = info.data.get("size_bytes")
        if burst is not None and size is not None and burst > size:
            raise ValueError(f"a burst of {burst} bytes is larger than the level ({size:g} bytes)")
        return burst

    @field_validator("max_run_elements")
    @classmethod
    def _runs_need_a_burst(cls, runs: dict[str, int] | None, info: ValidationInfo) -> dict[str, int] | None:
        """Runs only shape the burst charge: without a burst, or for an operand the level does not hold, they
        would be silently ignored, so they are refused."""
        if not runs:
            return runs
        if info.data.get("burst_bytes") is None:
            raise ValueError("runs only matter with burst_bytes on the same level; give burst_bytes or drop them")
        held = info.data.get("operands") or []
        foreign = [o for o in runs if o not in held]
        if held and foreign:
            raise ValueError(f"{', '.join(foreign)}: not held by this level (it holds {', '.join(held)})")
        return runs

    @field_validator("input_block_depth")
    @classmethod
    def _blocks_need_a_burst(cls, blocks: ProfileInputBlockDepth | None, info: ValidationInfo
                             ) -> ProfileInputBlockDepth | None:
        """The blocks only shape the burst charge of inputs: refused where they would be silently ignored."""
        if blocks is None:
            return blocks
        if info.data.get("burst_bytes") is None:
            raise ValueError("input blocks only matter with burst_bytes on the same level; give burst_bytes "
                             "or drop them")
        held = info.data.get("operands") or []
        if held and "inputs" not in held:
            raise ValueError(f"the level does not hold inputs (it holds {', '.join(held)})")
        return blocks


class SpatialAxesRecord(Record):
    """The dimensions each array axis may unroll (shared by a profile's `spatial` and its `alternatives`)."""

    RULES: ClassVar[tuple[str, ...]] = ("An axis lists each dimension once.",)

    rows: list[SpatialDim] = Field(min_length=1, max_length=len(SPATIAL_DIMS),
                                   description="dimensions the rows may unroll, in order of preference")
    cols: list[SpatialDim] = Field(min_length=1, max_length=len(SPATIAL_DIMS),
                                   description="dimensions the columns may unroll, in order of preference")

    @field_validator("rows", "cols")
    @classmethod
    def _dims_once(cls, dims: list[str]) -> list[str]:
        if first_repeat(dims) is not None:
            raise ValueError("each dimension may be listed once")
        return dims


class ProfileSpatialAlternative(SpatialAxesRecord):
    """One more spatial unrolling the mapping search costs beside `rows` and `cols`, its axes resolved as theirs
    are (with `search: false`, each axis unrolls its first listed dimension larger than 1), for the layers
    `layers` names; `divisors` adds smaller unrollings of it, as ZigZag's spatial-mapping generator does."""

    RULES: ClassVar[tuple[str, ...]] = SpatialAxesRecord.RULES + ("`divisors` and `cols_block` are not both given.",)

    layers: Literal["all", "dense", "depthwise"] = Field(
        "all", description="the layers it is for: `depthwise` (one input channel per group), `dense` (the rest) "
                           "or `all`")
    divisors: list[Literal["rows", "cols"]] = Field(
        default_factory=list, max_length=2,
        description="the axes (`rows`, `cols`) on which a dimension may also unroll any divisor of the ways it "
                    "would take (min(size, lanes)), as ZigZag 3.9.1's generator does on an axis its mapping "
                    "leaves free")

    cols_block: dict[SpatialDim, Whole(ge=2, le=MAX_ARRAY_SIDE, description="ways")] | None = Field(
        None, description="the columns unroll every dimension named here together, each min(size, ways) ways (a "
                          "fixed block, as Ethos-U's OFM micro-block of 2x2 pixels x 8 channels), instead of "
                          "one dimension of `cols`; costed, instead of `rows`/`cols`, only for a layer whose "
                          "unrollings of `rows`/`cols` leave columns idle and that the block fills more of")

    @field_validator("divisors")
    @classmethod
    def _axes_once(cls, axes: list[str]) -> list[str]:
        if first_repeat(axes) is not None:
            raise ValueError("each axis may be listed once")
        return axes

    @field_validator("cols_block")
    @classmethod
    def _block_on_cols(cls, block: dict[str, int] | None, info: ValidationInfo) -> dict[str, int] | None:
        if block is not None:
            cols = info.data.get("cols") or []
            if set(block) != set(cols):
                raise ValueError(f"cols_block must name exactly the dimensions of cols ({', '.join(cols)})")
            if len(block) < 2:
                raise ValueError("cols_block unrolls two dimensions or more; one is what cols does")
            if info.data.get("divisors"):  # block_options takes the block's ways and the rows' as they are
                raise ValueError("divisors is not used with cols_block (the block's ways are fixed, and its rows "
                                 "unroll as rows does): drop one")
        return block


class ProfileSpatial(SpatialAxesRecord):
    """The loop dimensions the array's rows and columns may unroll; without this key, the dataflow's defaults.
    Dimensions: batch `B`, group `G`, output channel `K`, input channel `C`, output rows and columns `OY`,
    `OX`, filter rows and columns `FY`, `FX`. With `alternatives`, the search costs every distinct unrolling
    they and `rows`/`cols` resolve to for a layer (the 3 of highest utilisation, as ZigZag's spatial-mapping
    generator keeps 3, and any tied with the third) and keeps the best under the objective."""

    search: bool = Field(True, description="false: each axis unrolls the first listed dimension larger than "
                                           "1 (a fixed spatial mapping) instead of searching the list")
    alternatives: list[ProfileSpatialAlternative] = Field(
        default_factory=list, max_length=8,
        description="more unrollings the search costs beside `rows`/`cols` (each resolved as they are), keeping the "
                    "best for the objective; ZigZag's generator costs several where a mapping leaves an axis free")


class ProfileSearch(Record):
    """The mapping search's own parameters (the reference tools'), for a profile whose chip's mappings lie
    outside the default space; absent keys keep the defaults, so the search is then unchanged."""

    lpf_limit: Whole(ge=1, le=MAX_LPF_LIMIT,
                     description="loops left after merging each dimension's prime factors (LOMA's `lpf_limit`, "
                                 "ZigZag 3.9.1 `get_hardware_performance_zigzag`, default 6); every order of them "
                                 f"is scored, so each one more multiplies the search by up to that count; at most "
                                 f"{MAX_LPF_LIMIT} (one per loop dimension, the scorer's loop subsets are bytes)"
                     ) = LPF_LIMIT
    spatial_keep: Whole(ge=1, le=MAX_SPATIAL_KEEP,
                        description="spatial unrollings costed per layer, those of highest utilisation (ZigZag "
                                    "3.9.1's `nb_spatial_mappings_generated`, default 3), and any tied with the "
                                    "last") = SPATIAL_KEEP
    pe_split: list[Operand] = Field(
        default_factory=lambda: ["outputs"], max_length=len(OPERANDS),
        description="the operands kept in a per-PE level by the search's split candidate: for each operand "
                    "listed, the dimensions it does not depend on (outputs: C, FY, FX, the reduction; inputs: K; "
                    "weights: B, OY, OX) get, where LOMA's merged loop is too large for a per-PE level, a loop "
                    "of the largest divisor that fits it, scored beside LOMA's loops (Timeloop's per-level "
                    "tiling factors); each operand listed must be held by a `per_pe` level (refused "
                    "otherwise: the split would do nothing); default `[outputs]`, `[]`: no split candidate")
    pe_block: Whole(ge=0, le=MAX_PE_BLOCK,
                    description="0 (default): off. N >= 1: more candidates tiled per level, as "
                                "Timeloop's mapper tiles (a factor per dimension per storage level, then"
                                " an order within each level), on every unrolling of the `spatial_keep` "
                                "highest distinct utilisations (on a `row_stationary` profile also its PE "
                                "sets of different filters, rows FY x C x K, of at least those "
                                "utilisations): each tiling of the dimensions the "
                                "`pe_split` operands do not depend on (FX, FY, C, then K) that fits "
                                "every operand's innermost per-PE level, the last dimension as large as "
                                "fits, is one innermost block in each of its orders; the rest of the "
                                "folds, merged as LOMA merges to at most N loops, is permuted above it, "
                                "the groups' loop outermost. The best is kept where its tiles fit, so "
                                "the search never does worse; a profile without it is searched as "
                                "before. Needs a `per_pe` level, and a `pe_split` whose operands leave the block at most "
                                f"{MAX_PE_BLOCK_DIMS} dimensions (refused otherwise); at most "
                                f"{MAX_PE_BLOCK} (N! orders times the block's per tiling)") = 0

    @field_validator("pe_split")
    @classmethod
    def _operands_once(cls, operands: list[str]) -> list[str]:
        if first_repeat(operands) is not None:
            raise ValueError("each operand may be listed once")
        return operands


class ProfileArea(Record):
    """The area model's constants, at the profile's node (:mod:`hwsim.hardware.area`); every key is optional
    and replaces the model's published default."""

    # absent (None) means the model's default, scaled to the node; a value given is taken at the node as is
    mac_um2: Real(ge=0, le=MAX_UM2, description="one PE's MAC (µm²)") = None
    sram_bitcell_um2: Real(ge=0, le=MAX_UM2, description="one SRAM bit cell (µm²)") = None
    sram_efficiency: Real(ge=MIN_SRAM_EFFICIENCY, le=1,
                          description="fraction of an SRAM macro that is bit cells") = None
    sram_port_bit_um2: Real(ge=0, le=MAX_UM2,
                            description="SRAM periphery per bit of port width (µm²)") = None
    register_bit_um2: Real(ge=0, le=MAX_UM2, description="one flip-flop bit (µm²)") = None
    other_mm2: Real(ge=0, le=MAX_MM2,
                    description="anything else (control, NoC), added as is (mm²)") = None
    levels: dict[str, Real(ge=0, le=MAX_MM2)] = Field(
        None, description="a level's area per instance instead of the model: level name -> mm² "
                          f"(each ≥ 0, ≤ {MAX_MM2:g})")


class ProfileOutputStage(Record):
    """The output stage after the MAC array: requantisation, activation and write-back of each final output.
    A layer's time is at least its outputs over ``outputs_per_cycle`` (as Vela takes an Ethos-U layer's time as
    the larger of its MAC and output cycles), and each output costs ``energy_pj_per_output``."""

    outputs_per_cycle: Real(ge=MIN_OPS_PER_CYCLE, le=float(MAX_ARRAY_SIDE) ** 2,
                            description="final outputs the stage produces per cycle (outputs/cycle)")
    energy_pj_per_output: Energy("requantising, activating and writing back one output") = 0.0


class ProfileWeightSets(Record):
    """The MAC engine loads its weights in sets, each taking `cycles` to load, and passes each over the output's
    micro-blocks, `micro_block_cycles` per micro-block: per set the larger of the two is a floor on the MAC time
    (Vela 5.2.0 for Ethos-U55: `cyclesWb` 32 cycles per set, 4 cycles per 2x2-pixel micro-block)."""

    cycles: Real(ge=1, le=1e6, description="cycles to load one weight set (cycles)")
    output_channels: Whole(ge=1, le=MAX_ARRAY_SIDE, description="output channels per set (the OFM micro-block's "
                                                                 "depth)")
    input_channels: Whole(ge=1, le=MAX_ARRAY_SIDE, description="input channels per set of one tap (the IFM "
                                                                "block's depth, depth-first traversal)")
    taps_per_step: Whole(ge=1, le=MAX_ARRAY_SIDE, description="kernel taps per set of a depthwise or part-kernel "
                                                               "step")
    part_kernel_input_channels: Whole(ge=1, le=MAX_ARRAY_SIDE, description="input channels per part-kernel set")
    micro_block_rows: Whole(ge=1, le=MAX_ARRAY_SIDE, description="output rows of a micro-block")
    micro_block_cols: Whole(ge=1, le=MAX_ARRAY_SIDE, description="output columns of a micro-block")
    micro_block_cycles: Real(ge=0, le=1e6, description="cycles a set spends on one micro-block (cycles)")


class ProfileChipEnergy(Record):
    """Chip-level energy beside the per-access energies: the clock network and control, per clock cycle of
    the layer's latency, and the node and supply at which the profile's per-access energies were given (they
    are scaled once, when the profile is built, to ``technology_nm`` at ``vdd_v`` with Stillmaker & Baas's
    energy fits, :mod:`hwsim.hardware.node_scaling`; the outermost level, off-chip, only with
    ``scale_outermost``). Leakage is ``static_power_w``."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`energy_node_nm`, `energy_vdd_v` and `vdd_v` come together (all three or none).",
    )

    clock_pj_per_cycle: Energy("the clock network, per cycle, at the profile's node") = 0.0
    control_pj_per_cycle: Energy("control (sequencers, configuration, NoC control), per cycle, at the "
                                 "profile's node") = 0.0
    energy_node_nm: Real(ge=MIN_SCALING_NM, le=MAX_SCALING_NM,
                         description="the node the per-access energies were given at (nm); absent: at "
                                     "`technology_nm`, not scaled") = None
    energy_vdd_v: Real(ge=MIN_VDD_V, le=MAX_VDD_V,
                       description="the supply the per-access energies were given at (V)") = None
    vdd_v: Real(ge=MIN_VDD_V, le=MAX_VDD_V, description="the chip's supply (V)") = None
    scale_outermost: bool = Field(
        False, description="true: the outermost level's energies are scaled too (they were given relative to "
                           "the same on-chip anchor, as Eyeriss's normalised DRAM cost); false: they are the "
                           "off-chip memory's own and stay as given")
    device: Literal[DEVICES] = Field(  # type: ignore[valid-type]
        "hp", description="the scaling fits' device type at 45 nm and below: `hp` (high performance) or "
                          "`lp` (low power)")


class ProfileDramCompression(Record):
    """How feature maps are stored in the outermost level (DRAM): run-length coded, as Eyeriss v1 stores them
    (Chen et al., JSSC 2017, §IV-B and Fig. 8: 5-bit runs of zeros, 16-bit values, three (run, value) pairs and
    a last-word flag in each 64-bit word; every feature map but the network's input image). A layer's inputs
    read from DRAM are charged at the coded size expected for its input sparsity, its final outputs written to
    DRAM at that of the layers that read them (or a given output sparsity); a map whose zeros the run does not
    give, filters and spilled partial sums move dense (:mod:`hwsim.cost.dram_compression`)."""

    RULES: ClassVar[tuple[str, ...]] = (
        "A `word_bits` word holds at least one (run, level) pair.",
        "`level_bits` is at least `precision_bits.inputs` and `precision_bits.outputs` (a value must fit its "
        "level).",
        "Only with `latency_model: roofline`, and with no level's `burst_bytes` or `shared_port`.",
    )

    format: Literal["rlc"] = Field(description="the code: `rlc` (runs of zeros and the values after them)")
    run_bits: Whole(ge=1, le=32, description="bits counting a run of zeros (Eyeriss: 5)")
    level_bits: Bits("a coded value (Eyeriss: 16)")
    word_bits: Whole(ge=2, le=MAX_WORD_BITS,
                     description="bits of one coded word, holding as many (run, level) pairs as fit; the bits "
                                 "left mark the last word (Eyeriss: 64)")


class ProfileFile(Record):
    """An accelerator profile: clock, MAC array, dataflow, precisions, memory levels (outermost first), and
    optionally a spatial mapping, static power and the area model's node and constants. Each number should
    carry its source in a YAML comment."""

    RULES: ClassVar[tuple[str, ...]] = (
        "Level names are unique, and none is `noc` (the array network's energy entry).",
        "The outermost level (`levels[0]`, DRAM or a microcontroller's system memory) holds weights, inputs "
        "and outputs, and is not `per_pe`.",
        "An operand's `per_pe` levels, however many, are the innermost of the levels holding it (none is "
        "above a shared level holding it).",
        "`area.levels` names levels of the profile, and not the outermost one (off-chip memory has no area "
        "here).",
        "`chip_energy.energy_node_nm` given: `technology_nm` lies within the scaling fits (7-180 nm) and both "
        "supplies within the fits of both nodes.",
        "`vector_unit.pooling` comes with `weight_sets` (it counts their micro-blocks).",
        "A spatial alternative's `cols_block` ways multiply to at most `array.cols`.",
        "Each operand a given `search.pe_split` names is held by a `per_pe` level.",
    )

    name: str = Field(min_length=1, max_length=MAX_NAME,
                      description="the profile's name, shown in every table")
    description: str = Field(max_length=MAX_DESCRIPTION, description="one line, shown by `--list-profiles`")
    clock_hz: Real(ge=MIN_CLOCK_HZ, le=MAX_CLOCK_HZ, description="the array's clock (Hz)")
    dataflow: Dataflow = Field(description="what stays in a PE: the mapping search's default unrollings")
    array: ProfileArray = Field(description="the MAC array")
    vector_unit: ProfileVectorUnit | None = Field(
        None, description="the unit running non-MAC operators; absent: they run on the MAC array, one operation "
                          "per PE per cycle at the MAC's energy")
    precision_bits: ProfilePrecisionBits = Field(description="operand widths")
    mask_op_energy_pj: ProfileMaskOpEnergy = Field(description="energy of applying one mask element")
    levels: list[ProfileLevel] = Field(min_length=1, max_length=MAX_LEVELS,
                                       description="memory levels, outermost (DRAM) first")
    spatial: ProfileSpatial | None = Field(None, description="the unrollings the mapping search may use; "
                                                             "absent: the dataflow's defaults")
    static_power_w: Real(ge=0, le=MAX_STATIC_POWER_W,
                         description="leakage and clock tree, charged times latency (W)") = 0.0
    latency_model: Literal["roofline", "per_period"] = Field(
        "roofline", description="how memory ports stall the array: `roofline` (each port's accesses over the "
                                "layer against its bandwidth, the first tiles loaded before) or `per_period` "
                                "(ZigZag 3.9.1: every transfer within its allowed window of each data-transfer "
                                "period, one-off transfers loaded before the MACs start)")
    technology_nm: Real(ge=MIN_NODE_NM, le=MAX_NODE_NM,
                        description="the process node the area model scales to (nm); 45 is the node of its "
                                    "anchors") = REFERENCE_NM
    area: ProfileArea | None = Field(None, description="the area model's constants at this node")
    output_stage: ProfileOutputStage | None = Field(
        None, description="the output stage's rate and energy; absent: outputs leave the array for free")
    weight_sets: ProfileWeightSets | None = Field(
        None, validate_default=True, description="the MAC engine's floor per weight set loaded; absent: none")
    chip_energy: ProfileChipEnergy | None = Field(
        None, description="clock network and control energy per cycle, and the node the per-access energies "
                          "were given at; absent: none, and energies taken as given")
    search: ProfileSearch | None = Field(
        None, description="the mapping search's parameters (LOMA's lpf_limit, the unrollings kept, the per-PE "
                          "split); absent: the defaults")
    zero_gating: bool = Field(False, description="true: a MAC whose input activation is zero is skipped, its "
                                                 "MAC energy and its innermost weight read saved, as Eyeriss "
                                                 "gates them (Chen et al., JSSC 2017, §V-C); the zeros' fraction "
                                                 "is the run's input sparsity")
    dram_compression: ProfileDramCompression | None = Field(
        None, description="feature maps run-length coded in DRAM (charged at their expected coded size for the "
                          "run's input sparsity; the input image and maps of unknown zeros dense); absent: "
                          "feature maps dense in DRAM")

    @field_validator("levels")
    @classmethod
    def _hierarchy(cls, levels: list[ProfileLevel], info: ValidationInfo) -> list[ProfileLevel]:
        i = first_repeat([level.name for level in levels])
        if i is not None:
            raise ValueError(f"level names must be unique: levels[{i}] is a second {levels[i].name!r}")
        if NOC in (level.name for level in levels):
            raise ValueError(f"no level may be named {NOC!r}: it is the energy entry of the array's network")
        array = info.data.get("array")
        if array is not None and array.noc_energy_pj_per_byte and not any(level.per_pe for level in levels):
            raise ValueError("array.noc_energy_pj_per_byte is charged between a shared level and a per_pe one, "
                             "and no level is per_pe: it would be silently ignored; drop it or add a per_pe level")
        dram = levels[0]
        if dram.per_pe or set(dram.operands) != set(OPERANDS):
            raise ValueError(f"the outermost level (levels[0], {dram.name!r}) must hold weights, inputs and "
                             "outputs and not be per_pe")
        if dram.shared_port:
            raise ValueError(f"the outermost level (levels[0], {dram.name!r}) always has one port: shared_port "
                             "would change nothing")
        for operand in OPERANDS:
            held = [level for level in levels if operand in level.operands]
            flags = [level.per_pe for level in held]
            if True in flags and not all(flags[flags.index(True):]):
                above, below = held[flags.index(True)], held[flags.index(False, flags.index(True))]
                raise ValueError(f"{operand}: per_pe levels must be the innermost holding it, but per_pe "
                                 f"{above.name!r} is above the shared {below.name!r}")
        return levels

    @field_validator("spatial")
    @classmethod
    def _blocks_fit_the_columns(cls, spatial: ProfileSpatial | None, info: ValidationInfo) -> ProfileSpatial | None:
        """A fixed column block wider than the array could never be placed on it: the search dropped it for
        every layer that fills it, silently, and used it for smaller ones only; refused instead."""
        array = info.data.get("array")
        for i, alt in enumerate(spatial.alternatives if spatial is not None and array is not None else ()):
            ways = math.prod((alt.cols_block or {}).values())
            if ways > array.cols:
                raise ValueError(f"alternatives[{i}].cols_block: its ways multiply to {ways}, more than the "
                                 f"array's {array.cols} columns (array.cols)")
        return spatial

    @field_validator("latency_model")
    @classmethod
    def _bursts_need_roofline(cls, model: str, info: ValidationInfo) -> str:
        """Bursts stretch a port's time in the roofline's per-port sums; the per-period model times tiles,
        not runs, so a burst there would be silently ignored: refused instead."""
        bursty = [level.name for level in info.data.get("levels") or [] if level.burst_bytes]
        if model == "per_period" and bursty:
            raise ValueError(f"burst_bytes (levels {', '.join(bursty)}) is modelled by the roofline latency model "
                             "only; drop it or use latency_model: roofline")
        return model

    @field_validator("area")
    @classmethod
    def _area_levels(cls, area: ProfileArea | None, info: ValidationInfo) -> ProfileArea | None:
        levels = info.data.get("levels")
        if area is None or not area.levels or not levels:
            return area  # a bad `levels` is reported on its own
        names = [level.name for level in levels[1:]]
        for name in area.levels:
            if name == levels[0].name:
                raise ValueError(f"levels.{name}: the outermost level is off-chip and has no area")
            if name not in names:
                raise ValueError(f"levels.{name}: no such level (on-chip levels: {', '.join(names)})")
        return area

    @field_validator("search")
    @classmethod
    def _split_needs_a_per_pe_level(cls, search: ProfileSearch | None,
                                    info: ValidationInfo) -> ProfileSearch | None:
        """The split candidate pins loops for an operand's per-PE levels (best_mapping.pinned_loops): an
        operand named in a given `pe_split` that no per-PE level holds would be silently skipped, so it is
        refused. The default (`[outputs]`, not given) stays quiet on a profile without per-PE outputs. A
        `pe_block` (best_mapping.pe_block_loops) on a profile without per-PE levels would add nothing:
        refused."""
        levels = info.data.get("levels")
        if search is None or not levels:
            return search  # a bad `levels` is reported on its own
        per_pe = {o for level in levels if level.per_pe for o in level.operands}
        if search.pe_block and not per_pe:
            raise ValueError(f"pe_block: {search.pe_block}: no level is per_pe, so there is no per-PE block "
                             "to tile (set per_pe on the PE's own levels, or drop pe_block)")
        block = {d for operand in search.pe_split for d in PE_SPLIT_DIMS[operand]}
        if search.pe_block and len(block) > MAX_PE_BLOCK_DIMS:
            raise ValueError(f"pe_block: {search.pe_block} with pe_split {search.pe_split}: the per-PE block would "
                             f"tile {len(block)} dimensions ({', '.join(sorted(block))}), each tiling scored in "
                             f"{math.factorial(len(block)):,} orders; at most {MAX_PE_BLOCK_DIMS} (drop pe_block, "
                             "or name fewer operands in pe_split)")
        if "pe_split" not in search.model_fields_set:
            return search
        for operand in search.pe_split:
            if operand not in per_pe:
                holding = ", ".join(o for o in OPERANDS if o in per_pe) or "none"
                raise ValueError(f"pe_split: {operand}: no per_pe level holds it, so the split would do "
                                 f"nothing (per_pe levels hold: {holding})")
        return search

    @field_validator("weight_sets")
    @classmethod
    def _pooling_micro_blocks(cls, ws: ProfileWeightSets | None, info: ValidationInfo) -> ProfileWeightSets | None:
        unit = info.data.get("vector_unit")
        if ws is None and unit is not None and unit.pooling is not None:
            raise ValueError("vector_unit.pooling runs on the MAC engine's micro-blocks: give weight_sets too")
        return ws

    @field_validator("dram_compression")
    @classmethod
    def _compression(cls, code: ProfileDramCompression | None,
                     info: ValidationInfo) -> ProfileDramCompression | None:
        if code is None:
            return code
        if code.word_bits < code.run_bits + code.level_bits:
            raise ValueError(f"a {code.word_bits}-bit word holds no (run, level) pair of "
                             f"{code.run_bits} + {code.level_bits} bits")
        precision = info.data.get("precision_bits")
        for name in ("inputs", "outputs"):
            if precision is not None and code.level_bits < getattr(precision, name):
                raise ValueError(f"level_bits {code.level_bits} is narrower than precision_bits.{name} "
                                 f"{getattr(precision, name)}")
        if info.data.get("latency_model") == "per_period":
            raise ValueError("dram_compression is modelled with latency_model: roofline only")
        # the coded layer's stall is recounted from bytes over each port's width (layer_cost._code_dram_maps),
        # which knows neither bursts nor a single read-write port
        for level in info.data.get("levels") or ():
            if level.burst_bytes is not None or level.shared_port:
                key = "burst_bytes" if level.burst_bytes is not None else "shared_port"
                raise ValueError(f"dram_compression is not modelled with a level's {key} (level {level.name!r})")
        return code

    @field_validator("chip_energy")
    @classmethod
    def _energy_node(cls, chip: ProfileChipEnergy | None, info: ValidationInfo) -> ProfileChipEnergy | None:
        if chip is None:
            return chip
        given = [chip.energy_node_nm is not None, chip.energy_vdd_v is not None, chip.vdd_v is not None]
        if any(given) and not all(given):
            raise ValueError("energy_node_nm, energy_vdd_v and vdd_v come together (all three or none)")
        node = info.data.get("technology_nm", REFERENCE_NM)
        if chip.energy_node_nm is not None:
            try:
                energy_scale(chip.energy_node_nm, chip.energy_vdd_v, node, chip.vdd_v, chip.device)
            except ValueError as exc:
                raise ValueError(f"per-access energies cannot be scaled to technology_nm {node:g}: {exc}") from None
        return chip
