"""The mapping search space: a layer's loop bounds, the array's spatial unrollings, the profile digested.

ZigZag's seam between the workload, the spatial-mapping generator and the hardware description (Mei et
al., "ZigZag: Enlarging Joint Architecture-Mapping Design Space Exploration for DNN Accelerators", IEEE TC
2021): everything here is fixed before a loop order is chosen.

A **spatial unrolling** puts a loop dimension (or, for the dataflow defaults, two) on the array's rows
and on its columns, each unrolled ``u = min(size, axis)`` ways; ``ceil(size / u)`` folds remain as a
temporal loop. As ZigZag's "uneven" unrolling, access counts use the true bounds (K = 128 on 14
columns in 10 folds is 12.8 ways on average), the cycle count the ceiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from hwsim.hardware.profile import (LPF_LIMIT, OPERANDS, SPATIAL_KEEP, MemoryLevel, Profile, SpatialAlternative,
                                    WeightSets)

W, I, O = OPERANDS
DIMS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX")
# which dimensions each operand depends on (OY/FY and OX/FX are partially relevant to inputs)
RELEVANT = {W: frozenset({"G", "K", "C", "FY", "FX"}), I: frozenset({"B", "G", "C", "OY", "OX", "FY", "FX"}),
            O: frozenset({"B", "G", "K", "OY", "OX"})}
_FIELD = {d: d.lower() for d in DIMS}  # Shape's field for each dimension


@dataclass(frozen=True, slots=True)
class Shape:
    """Loop bounds of one layer (per group K and C), its stride and its input footprint rows/cols."""

    b: int
    g: int
    k: int
    c: int
    oy: int
    ox: int
    fy: int
    fx: int
    sy: int = 1
    sx: int = 1
    iy: int = 0  # input rows the window touches (padding included), 0 = (oy-1)*sy + fy
    ix: int = 0

    def size(self, dim: str) -> int:
        return int(getattr(self, _FIELD[dim]))

    @property
    def macs(self) -> int:
        return self.b * self.g * self.k * self.c * self.oy * self.ox * self.fy * self.fx

    @property
    def win(self) -> int:
        """Reduction window of one output element: C*R*S."""
        return self.c * self.fy * self.fx

    @property
    def px(self) -> int:
        """Output pixels P*Q."""
        return self.oy * self.ox


def sizes(shape: Shape) -> dict[str, int]:
    """``{d: shape.size(d) for d in DIMS}``, without a method call per dimension."""
    return {"B": int(shape.b), "G": int(shape.g), "K": int(shape.k), "C": int(shape.c), "OY": int(shape.oy),
            "OX": int(shape.ox), "FY": int(shape.fy), "FX": int(shape.fx)}


@dataclass(frozen=True, slots=True)
class Spatial:
    """Unrolling on the array: ``rows`` and ``cols`` as (dimension, ways) pairs."""

    rows: tuple[tuple[str, int], ...]
    cols: tuple[tuple[str, int], ...]

    def ways(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d, u in (*self.rows, *self.cols):
            out[d] = out.get(d, 1) * u
        return out


def folds(shape: Shape, spatial: Spatial) -> tuple[int, ...]:
    """Temporal iterations left per dimension of ``DIMS`` once ``spatial`` is unrolled: ceil(size / ways)."""
    ways = spatial.ways()
    return tuple(-(-n // ways.get(d, 1)) for d, n in sizes(shape).items())


def utilisation(shape: Shape, folds_: tuple[int, ...], a: Arch) -> float:
    """MACs over (temporal iterations x PEs): how well an unrolling leaving ``folds_`` fills the array."""
    return shape.macs / (math.prod(folds_) * a.pes)


@dataclass(frozen=True, slots=True)
class Arch:
    """The profile, pre-digested: per operand its levels innermost first, DRAM last."""

    chains: dict[str, tuple[MemoryLevel, ...]]
    bits: dict[str, int]
    out_bits: int
    pes: int
    rows: int
    cols: int
    mac_pj: float
    spatial_dims: tuple[tuple[str, ...], tuple[str, ...]]
    spatial_pairs: bool
    spatial_first: bool = False  # each axis takes the first listed dimension larger than 1 (no search)
    alloc: tuple[tuple[MemoryLevel, tuple[str, ...]], ...] = ()  # levels innermost first, with their operands
    spatial_alts: tuple[SpatialAlternative, ...] = ()  # the profile's spatial.alternatives
    per_period: bool = False  # ZigZag's per-period stall model (else the roofline): hwsim.cost.mapping.stall
    lpf_limit: int = LPF_LIMIT  # LOMA's lpf_limit: loops left after merging prime factors (hwsim.cost.mapping.loop_orders)
    spatial_keep: int = SPATIAL_KEEP  # unrollings costed per layer (ZigZag's nb_spatial_mappings_generated)
    pe_split: tuple[str, ...] = (O,)  # operands the per-PE split candidate serves (best_mapping.pinned_loops)
    pe_block: int = 0  # loops above the per-PE block candidate's (best_mapping.pe_block_loops); 0: none
    pe_sets: bool = False  # the row_stationary dataflow's own axes: best_mapping.pe_set_unrollings
    weight_sets: WeightSets | None = None  # the engine's kernel steps (hwsim.cost.weight_sets.kernel_steps)
    noc_pj: float = 0.0  # the array's network, pJ per byte (array.noc_energy_pj_per_byte): noc_boundaries

    @property
    def ebytes(self) -> dict[str, float]:
        """Bytes per element of each operand as it is held on chip (outputs as partial sums)."""
        return {o: self.bits[o] / 8 for o in OPERANDS}


_DEFAULT_SPATIAL = {  # dimensions each array axis may unroll, by dataflow
    "weight_stationary": (("C", "FX", "FY"), ("K", "G")),
    "output_stationary": (("OX", "OY"), ("K", "G")),
    "row_stationary": (("FY", "C"), ("OY", "K", "G")),
}


@lru_cache(maxsize=64)
def arch(profile: Profile) -> Arch:
    """``profile`` as the search reads it; the levels in LOMA's allocation order: per-PE levels first
    (an operand's per-PE levels are the innermost of its chain, however many), and each level after every
    level below it in some operand's chain (ordered by its height, the longest chain of levels below it:
    a topological order, so each level's allocation starts from the cuts of the levels inside it)."""
    pb = profile.precision_bits
    chains = {o: tuple(reversed(profile.chain(o))) for o in OPERANDS}
    depth = {o: {lv.name: i for i, lv in enumerate(chains[o])} for o in OPERANDS}
    order: list[MemoryLevel] = []
    for o in OPERANDS:
        for lv in chains[o][:-1]:
            if lv not in order:
                order.append(lv)
    height: dict[str, int] = {}

    def above_all_below(lv: MemoryLevel) -> int:
        h = height.get(lv.name)
        if h is None:
            h = height[lv.name] = max((above_all_below(chains[o][depth[o][lv.name] - 1]) + 1
                                       for o in OPERANDS if depth[o].get(lv.name, 0) > 0), default=0)
        return h

    order.sort(key=lambda lv: (not lv.per_pe, above_all_below(lv)))
    alloc = tuple((lv, tuple(o for o in OPERANDS if lv.name in depth[o])) for lv in order)
    return Arch(alloc=alloc, chains=chains, bits={W: pb.weights, I: pb.inputs, O: pb.psums}, out_bits=pb.outputs,
                pes=profile.array.pes, rows=profile.array.rows, cols=profile.array.cols,
                mac_pj=profile.array.mac_energy_pj,
                spatial_dims=((profile.spatial.rows, profile.spatial.cols) if profile.spatial
                              else _DEFAULT_SPATIAL[profile.dataflow]),
                spatial_pairs=profile.spatial is None,
                spatial_first=bool(profile.spatial and not profile.spatial.search),
                spatial_alts=profile.spatial.alternatives if profile.spatial else (),
                per_period=profile.latency_model == "per_period", lpf_limit=profile.search.lpf_limit,
                spatial_keep=profile.search.spatial_keep, pe_split=profile.search.pe_split,
                pe_block=profile.search.pe_block,
                pe_sets=profile.dataflow == "row_stationary" and profile.spatial is None,
                weight_sets=profile.weight_sets, noc_pj=profile.array.noc_energy_pj_per_byte)


def noc_boundaries(a: Arch, o: str) -> tuple[int, ...]:
    """The positions ``i`` of ``o``'s chain (innermost first) where a per-PE level ``chain[i]`` is fed by a
    level shared by the PEs ``chain[i + 1]``: the transfers that cross the array's network.

    The array level of Chen, Emer, Sze, "Eyeriss: A Spatial Architecture for Energy-Efficient Dataflow for
    Convolutional Neural Networks", ISCA 2016, §VI: a weight or input word costs ``a·EC(DRAM) +
    ab·EC(GLB) + abc·EC(array) + abcd·EC(RF)``, its ``abc`` the copies delivered into the PEs (the buffer's
    reads ``ab`` times their reuse ``c`` across the array: one charge per PE-word, multicast or forwarded PE
    to PE alike); a partial sum ``(2a-1)·EC(DRAM) + 2a(b-1)·EC(GLB) + ab(c-1)·EC(array) + 2abc(d-1)·EC(RF)``,
    its ``ab(c-1)`` the passes between the ``c`` PEs accumulating one output on its way up. hwsim charges these
    at ``Arch.noc_pj`` per byte: per-PE fills of weights and inputs at their width (``into[i]``, all PEs'
    copies), and per output sent up to the shared level ``(multicast - 1)`` passes at the partial-sum width.
    Partial sums returned from the shared level, transfers between two levels of one PE, and MACs reading a
    shared level directly are not charged (ISCA 2016's formulas charge none of them at the array level)."""
    chain = a.chains[o]
    return tuple(i for i in range(len(chain) - 1) if chain[i].per_pe and not chain[i + 1].per_pe)


def input_overlap(ways: dict[str, float], sy: int, sx: int) -> float:
    """PEs one input element reaches per read where an output dimension and its kernel dimension are both
    unrolled (OY with FY, OX with FX): the PEs of a diagonal need the same input row, so the level above the
    array reads ``(oy - 1) * min(sy, fy) + fy`` rows (the tile projection's rows, :mod:`hwsim.cost.mapping.tiles`)
    for the ``oy x fy`` PEs (likewise columns); 1 where at most one of each pair is unrolled.

    The row-stationary dataflow's diagonal ifmap multicast (Chen, Emer, Sze, ISCA 2016, §V-A: "ifmap rows
    are reused across PEs diagonally"; JSSC 2017, §V-B: the GLB's ifmap multicast to the PEs whose IDs
    match). ZigZag 3.9.1 counts it by decoupling the partially relevant loops of the spatial unrolling into
    input rows and reuse (``decouple_pr_loop`` in zigzag/mapping/mapping_assist_funcs.py, used by
    ``SpatialMappingInternal``), which divides the reads of the level above the array: 13 output rows x 3
    kernel rows on the array read 15 input rows, 39 / 15 = 2.6 PEs per read (AlexNet CONV4 on Eyeriss).
    ``ways``: the unrolling per dimension (uneven unrolling's true ways, as the multicast takes them)."""
    out = 1.0
    for o, f, s in (("OY", "FY", sy), ("OX", "FX", sx)):
        uo, uf = ways.get(o, 1.0), ways.get(f, 1.0)
        if uo > 1 and uf > 1:
            out *= uo * uf / ((uo - 1) * min(s, uf) + uf)
    return out


def spatial_options(shape: Shape, a: Arch) -> list[Spatial]:
    """Candidate unrollings: one dimension per axis (the profile's dataflow allows which), or two
    dimensions on an axis when the first does not fill it (e.g. C x FY for a 3-channel stem). The profile's
    ``spatial.alternatives`` for the layer's kind add theirs, each resolved as the main lists are (with
    ``divisors``, also every divisor of the ways taken, as ZigZag's spatial-mapping generator yields them);
    an unrolling already listed is listed once."""
    size = sizes(shape)

    def axis(dims: tuple[str, ...], n: int, taken: set[str],
             divisors: bool = False) -> list[tuple[tuple[str, int], ...]]:
        out = []
        for d in dims:
            if d in taken or size[d] == 1:
                continue
            u = min(size[d], n)
            out.append(((d, u),))
            rest = n // u
            for d2 in dims if a.spatial_pairs else ():
                if d2 != d and d2 not in taken and rest > 1 and size[d2] > 1:
                    out.append(((d, u), (d2, min(size[d2], rest))))
        if a.spatial_first:
            out = out[:1]
        if divisors:
            out = list(dict.fromkeys(((d, v),) for (d, u), *_ in out for v in range(u, 1, -1) if u % v == 0))
        return out or [()]
    opts = []
    for r in axis(a.spatial_dims[0], a.rows, set()):
        for c in axis(a.spatial_dims[1], a.cols, {d for d, _ in r}):
            opts.append(Spatial(rows=r, cols=c))
    if a.spatial_alts:
        depthwise = shape.g > 1 and shape.c == 1
        # the best the profile's own unrollings do, where none fills the columns (else a block is not costed)
        fullest = (max(utilisation(shape, folds(shape, sp), a) for sp in opts)
                   if all(math.prod(u for _, u in sp.cols) < a.cols for sp in opts) else math.inf)
        blocks: list[Spatial] = []
        for alt in a.spatial_alts:
            if alt.layers != "all" and (alt.layers == "depthwise") != depthwise:
                continue
            if alt.cols_block:
                blocks += block_options(shape, a, alt, axis(alt.rows, a.rows, set()), fullest, blocks)
                continue
            for r in axis(alt.rows, a.rows, set(), "rows" in alt.divisors):
                for c in axis(alt.cols, a.cols, {d for d, _ in r}, "cols" in alt.divisors):
                    sp = Spatial(rows=r, cols=c)
                    if sp not in opts:
                        opts.append(sp)
        if blocks:  # the engine's own block, where fuller, is what it runs: it replaces the rest
            return blocks
    return opts


def block_options(shape: Shape, a: Arch, alt: SpatialAlternative, rows: list[tuple[tuple[str, int], ...]],
                  fullest: float, taken: list[Spatial]) -> list[Spatial]:
    """The unrollings of an alternative whose columns are a fixed block (``cols_block``): every dimension of the
    block together, each ``min(size, ways)`` ways, beside each row unrolling ``rows``; kept only where the
    profile's own unrollings leave columns idle in every fold (fewer output channels than columns) and the block
    fills more of the array (``fullest``, their best utilisation, or infinity), and then costed instead of them
    (:func:`spatial_options`): the block is what the engine runs, the profile's columns of output channels its
    equivalent where they fill all columns. (Where they fill all columns but not all folds, 40 or 144 output
    channels, the block would fill the last fold too; but with 8 channels on the columns the search's tiles
    write 8-channel runs to the system memory, which Vela's deeper OFM blocks do not: MobileNetV2's 24->144
    expansion went from 1.01 to 1.91 of Vela's cycles.)

    Ethos-U55's MAC engine computes an OFM micro-block of 2x2 pixels x 8 output channels per step (Vela 5.2.0:
    ``architecture_features.py`` ``ofm_ublock Block(2, 2, 8)``; Regor ``ethos_u55.cpp`` ``s_EthosU55Configs``);
    for 32 or more output channels hwsim's 32 columns of output channels fill the engine as the block does, but
    8 output channels fill a quarter of them and all of the block (conv3x3_8to8_40: U55P
    ``EstimateMacCyclesPerBlock`` charges 4 cycles per micro-block, whatever its channels)."""
    size = sizes(shape)
    cols = tuple((d, min(size[d], u)) for d, u in alt.cols_block if size[d] > 1)
    if math.prod(u for _, u in cols) > a.cols:
        return []
    out = []
    for r in rows:
        if {d for d, _ in r} & {d for d, _ in cols}:
            continue
        sp = Spatial(rows=r, cols=cols)
        if sp not in taken and sp not in out and utilisation(shape, folds(shape, sp), a) > fullest:
            out.append(sp)
    return out
