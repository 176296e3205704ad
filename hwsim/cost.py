"""The per-layer cost model: small pure functions over a :class:`~hwsim.layers.Layer` and a profile.

Notation (Timeloop/ZigZag): G groups; per group K output channels, C input channels; output P x Q
(OY x OX); kernel R x S (FY x FX); the reduction window of one output is ``win = C*R*S``.

The model, in four steps (``docs`` of each function give the formula and where it comes from):

1. **Compute.** The dataflow fixes which loop dimensions are unrolled over the array's rows and
   columns (:func:`map_weight_stationary`, :func:`map_output_stationary`, :func:`map_row_stationary`).
   Cycles = product over dimensions of ceil(size / unrolling); utilisation = MACs / (cycles * PEs).
2. **Array traffic.** The same folding gives how many operand elements the array pulls from its
   innermost shared buffer (SCALE-Sim's closed forms for WS and OS, the Eyeriss RS reuse for RS).
3. **Tiling per memory tier** (:func:`tier_traffic`). Tier k is, for every operand, the k-th level
   below DRAM that holds it. If the tier holds the working set of the layer, traffic from its parent
   is compulsory; otherwise the layer is blocked by output-row strips (inputs and outputs resident,
   weights refetched per strip) or by output-channel blocks (weights and outputs resident, inputs
   refetched per block), whichever moves fewer bytes; if neither fits, data passes through at the
   array's rate. Traffic into a level is clamped between the compulsory minimum and the array rate.
4. **Energy and latency.** Accesses (in words of the level's port width) x energy per access, plus
   MACs x MAC energy and mask operations; roofline latency = max(compute cycles, bytes / bandwidth of
   each level).

Conventions a reader must know:

- Inputs are counted as the window's **footprint**, padding included where the window touches it
  (``(P-1)*min(stride, R) + R`` rows), as ZigZag counts the padded ifmap (hwsim-anchors.md §2.3, §3.4).
- Partial sums live at ``psums`` bits on chip; final outputs move at ``outputs`` bits. Partial sums
  that spill to a parent are written up and read back at ``psums`` bits.
- Pipeline fill/drain and bank conflicts are not modelled (SCALE-Sim measures 8-10 % on small layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from hwsim.layers import Layer
from hwsim.mapping import Shape, search
from hwsim.profile import OPERANDS, MemoryLevel, Profile

W, I, O = OPERANDS  # "weights", "inputs", "outputs"

# --------------------------------------------------------------------------------------------
# Workload sizes


@dataclass(frozen=True, slots=True)
class Dims:
    """Loop bounds of one layer, per group."""

    g: int
    k: int
    c: int
    oy: int
    ox: int
    fy: int
    fx: int

    @property
    def win(self) -> int:
        """Reduction window of one output element: C*R*S."""
        return self.c * self.fy * self.fx

    @property
    def px(self) -> int:
        """Output pixels P*Q."""
        return self.oy * self.ox


def dims(layer: Layer) -> Dims:
    """Loop bounds of a layer (a linear layer is a 1x1 conv on a 1x1 map)."""
    return Dims(g=layer.groups, k=layer.out_channels // layer.groups, c=layer.in_channels // layer.groups,
                oy=layer.output_hw[0], ox=layer.output_hw[1], fy=layer.kernel_hw[0], fx=layer.kernel_hw[1])


def macs(layer: Layer) -> int:
    """Multiply-accumulates: out_channels * (in_channels / groups) * kh * kw * P * Q.

    The count torchvision reports as GFLOPS for its models (conv and linear MACs; hwsim-anchors.md §3.4:
    128*128*28*28*9 = 115,605,504 for ResNet-18 conv3_x).
    """
    d = dims(layer)
    return d.g * d.k * d.win * d.px


def weight_elems(layer: Layer) -> int:
    """Weights: out_channels * (in_channels / groups) * kh * kw (bias not counted)."""
    d = dims(layer)
    return d.g * d.k * d.win


def output_elems(layer: Layer) -> int:
    """Output activations: out_channels * P * Q."""
    return layer.out_channels * layer.output_hw[0] * layer.output_hw[1]


def input_elems(layer: Layer) -> int:
    """Input footprint: the ifmap elements the sliding window touches, padding included.

    Per axis ``(P-1)*min(stride, kernel) + kernel``, capped at the padded input size: 30 x 30 x 128 =
    115,200 for ResNet-18 conv3_x (ZigZag's padded-ifmap count, hwsim-anchors.md §3.4). With stride
    larger than the kernel (a 1x1 stride-2 shortcut) only the touched rows and columns count.
    """
    touched = 1
    for axis in (0, 1):
        p, k, s = layer.output_hw[axis], layer.kernel_hw[axis], layer.stride_hw[axis]
        padded = layer.input_hw[axis] + 2 * layer.padding_hw[axis]
        touched *= min((p - 1) * min(s, k) + k, padded)
    return layer.in_channels * touched


def kernel_mask_entries(layer: Layer) -> int:
    """Kernel-wise mask entries (KSM): one per (output channel, input channel of its group)."""
    return layer.out_channels * (layer.in_channels // layer.groups)


def element_mask_entries(layer: Layer) -> int:
    """Element-wise mask entries (Piggyback, PackNet): one per weight, = kernel entries * kh * kw."""
    return weight_elems(layer)


# --------------------------------------------------------------------------------------------
# Spatial mapping: cycles and array-level traffic


@dataclass(frozen=True, slots=True)
class Mapping:
    """Compute cycles and the element traffic between the innermost shared buffer and the array.

    ``outputs`` counts output-element transfers up from the array (final plus spilled partial sums).
    """

    cycles: int
    weights: int
    inputs: int
    outputs: int


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def map_weight_stationary(d: Dims, rows: int, cols: int, input_footprint: int) -> Mapping:
    """Weight stationary on a systolic array (TPU-like; SCALE-Sim ``ws``).

    Rows unroll the im2col window (C*R*S), columns the output channels K; groups that leave rows and
    columns free are packed block-diagonally. Each weight is loaded once; every window element is
    streamed once per column fold; every output gets one partial sum per row fold
    (SCALE-Sim closed forms, hwsim-anchors.md §3.2: ifmap reads = PQ * win * ceil(K/cols),
    filter reads = compulsory, ofmap writes = PQ * K * ceil(win/rows)).
    Cycles = ceil(G/u_g) * ceil(K/cols) * ceil(win/rows) * PQ (= MACs/1024 on a 32x32 array for
    ResNet-18 conv3_x: 112,896, as ZigZag's tpu_like, §3.4).
    """
    u_win, u_k = min(d.win, rows), min(d.k, cols)
    u_g = max(1, min(d.g, rows // u_win, cols // u_k))
    f_win, f_k, f_g = _cdiv(d.win, u_win), _cdiv(d.k, u_k), _cdiv(d.g, u_g)
    return Mapping(cycles=f_g * f_k * f_win * d.px, weights=d.g * d.k * d.win,
                   inputs=d.g * d.px * d.win * f_k, outputs=d.g * d.k * d.px * f_win)


def map_output_stationary(d: Dims, rows: int, cols: int, input_footprint: int) -> Mapping:
    """Output stationary (SCALE-Sim ``os``, ShiDianNao-like).

    Rows unroll output pixels, columns output channels; each PE accumulates one output over the
    whole window, so outputs leave once. Every window element is streamed once per column fold, every
    weight once per row (pixel) fold: ifmap reads = PQ * win * ceil(K/cols), filter reads =
    K * win * ceil(PQ/rows) (SCALE-Sim closed forms, hwsim-anchors.md §3.2). Groups use free columns.
    Cycles = ceil(G/u_g) * ceil(K/cols) * ceil(PQ/rows) * win.
    """
    u_px, u_k = min(d.px, rows), min(d.k, cols)
    u_g = max(1, min(d.g, cols // u_k))
    f_px, f_k, f_g = _cdiv(d.px, u_px), _cdiv(d.k, u_k), _cdiv(d.g, u_g)
    return Mapping(cycles=f_g * f_k * f_px * d.win, weights=d.g * d.k * d.win * f_px,
                   inputs=d.g * d.px * d.win * f_k, outputs=d.g * d.k * d.px)


def map_row_stationary(d: Dims, rows: int, cols: int, input_footprint: int, filters_per_pe: int = 1,
                       channels_per_pe: int = 1) -> Mapping:
    """Row stationary (Eyeriss v1; Chen et al., ISCA 2016).

    A PE set is R filter rows (array rows) by E output rows (array columns); spare rows take more
    input channels, spare columns more output channels, remaining room more groups. Each PE runs a
    1-D convolution (Q outputs x S taps) and, as in Eyeriss, interleaves ``p = filters_per_pe`` filters
    and ``q = channels_per_pe`` channels in its spads (sized from the profile's per-PE levels).
    Weights are reloaded once per output-row fold; inputs once per fold of the output channels
    (reuse across ``u_k * p`` filters); partial sums accumulate vertically and across ``q`` channels in
    the PE, and spill once per remaining fold of input channels and filter rows.
    Cycles = ceil(G/u_g) * ceil(K/u_k) * ceil(C/u_c) * ceil(R/u_r) * ceil(P/u_p) * Q * S.
    """
    u_fy = min(d.fy, rows)
    u_c = max(1, min(d.c, rows // u_fy))
    u_oy = min(d.oy, cols)
    u_k = max(1, min(d.k, cols // u_oy))
    u_g = max(1, min(d.g, (rows // (u_fy * u_c)) * (cols // (u_oy * u_k))))
    f_fy, f_c, f_oy, f_k, f_g = (_cdiv(d.fy, u_fy), _cdiv(d.c, u_c), _cdiv(d.oy, u_oy), _cdiv(d.k, u_k),
                                 _cdiv(d.g, u_g))
    p = max(1, min(filters_per_pe, f_k))
    q = max(1, min(channels_per_pe, f_c))
    out = d.g * d.k * d.px
    return Mapping(cycles=f_g * f_k * f_c * f_fy * f_oy * d.ox * d.fx, weights=d.g * d.k * d.win * f_oy,
                   inputs=input_footprint * _cdiv(f_k, p), outputs=out * _cdiv(f_c, q) * f_fy)


MAPPERS = {"weight_stationary": map_weight_stationary, "output_stationary": map_output_stationary,
           "row_stationary": map_row_stationary}


def mapping(layer: Layer, profile: Profile) -> Mapping:
    """Cycles and array traffic of a layer under the profile's dataflow and array shape."""
    d = dims(layer)
    a = profile.array
    if profile.dataflow == "row_stationary":
        p, q = rs_reuse(profile, d.fx)
        return map_row_stationary(d, a.rows, a.cols, input_elems(layer), p, q)
    return MAPPERS[profile.dataflow](d, a.rows, a.cols, input_elems(layer))


def rs_reuse(profile: Profile, taps: int) -> tuple[int, int]:
    """Filters ``p`` and channels ``q`` one row-stationary PE interleaves, from its spad sizes.

    ``p`` = psum spad words (one partial sum per filter); ``q`` = filter spad words // (p * S), as in
    Eyeriss' mapping where the filter spad holds p*q*S weights (Chen et al., ISCA 2016). Profiles
    without per-PE levels get p = q = 1.
    """
    pb = profile.precision_bits
    pe = {o: next((lv for lv in profile.chain(o) if lv.per_pe), None) for o in (W, O)}
    p = int(pe[O].size_bytes * 8 // pb.psums) if pe[O] else 1
    p = max(1, p)
    q = int(pe[W].size_bytes * 8 // pb.weights // (p * taps)) if pe[W] else 1
    return p, max(1, q)


# --------------------------------------------------------------------------------------------
# Tiling per memory tier


@dataclass(frozen=True, slots=True)
class Tier:
    """The k-th shared (not per-PE) level below DRAM of each operand that has one."""

    levels: tuple[tuple[str, MemoryLevel], ...]  # (operand, level)


@dataclass(frozen=True, slots=True)
class Plan:
    """A profile, pre-digested for the per-layer loop: chains and tiers (computed once per profile)."""

    shared: dict[str, tuple[MemoryLevel, ...]]  # operand -> shared levels below DRAM, outermost first
    per_pe: dict[str, MemoryLevel | None]  # operand -> its per-PE level, if any
    tiers: tuple[Tier, ...]


@lru_cache(maxsize=64)
def plan(profile: Profile) -> Plan:
    """Split every operand's chain into shared levels and its per-PE level; group them into tiers."""
    shared, per_pe = {}, {}
    for operand in OPERANDS:
        chain = profile.chain(operand)[1:]
        shared[operand] = tuple(lv for lv in chain if not lv.per_pe)
        per_pe[operand] = next((lv for lv in chain if lv.per_pe), None)
    depth = max(len(v) for v in shared.values())
    tiers = tuple(Tier(tuple((o, shared[o][k]) for o in OPERANDS if k < len(shared[o]))) for k in range(depth))
    return Plan(shared=shared, per_pe=per_pe, tiers=tiers)


def blocks_needed(footprints: dict[str, float], tier: Tier, resident: tuple[str, ...]) -> int:
    """Blocks the resident operands must be split into so that each block fits its memories.

    For every memory of the tier: ceil(sum of the resident operands' footprints it holds / its size);
    the tier needs the largest. Operands not held at this tier take no room here.
    """
    need: dict[str, float] = {}
    size: dict[str, float] = {}
    for operand, level in tier.levels:
        if operand in resident:
            need[level.name] = need.get(level.name, 0.0) + footprints[operand]
            size[level.name] = level.size_bytes
    return max([1] + [math.ceil(need[n] / size[n]) for n in need])


def tier_traffic(layer: Layer, tier: Tier, footprints: dict[str, float], compulsory: dict[str, int],
                 array: dict[str, int], byte_cost: dict[str, float]) -> dict[str, int]:
    """Element traffic into the tier's levels from their parents, for the operands held at this tier.

    Candidates (loop-blocking, as Timeloop/ZigZag evaluate one mapping; hwsim-anchors.md §2.1):

    - everything fits its memory: compulsory traffic (W, I, O once);
    - output-row strips: inputs and partial sums resident, ``nb`` strips; weights refetched ``nb``
      times (feasible while a strip is at least one output row);
    - output-channel blocks: weights and partial sums resident, ``nb`` blocks; inputs refetched
      ``ceil(nb / groups)`` times (a block inside one group needs only that group's inputs);
    - pass-through: the array's own traffic (the tier is too small to block).

    Each candidate is one consistent loop order (its traffic is never below compulsory); the one
    moving the fewest bytes wins. Non-increasing in every size of the tier (larger memories never need
    more blocks), which a test checks. If the winner refetches an operand more often than the array's
    own order would, the array's order follows it (the caller keeps traffic non-decreasing inwards).
    """
    held = tuple(dict.fromkeys(o for o, _ in tier.levels))

    def clamp(candidate: dict[str, int]) -> dict[str, int]:
        return {o: max(compulsory[o], candidate[o]) for o in held}

    def cost(traffic: dict[str, int]) -> float:
        return sum(traffic[o] * byte_cost[o] for o in held)

    all_fit = blocks_needed(footprints, tier, OPERANDS) == 1
    if all_fit:
        return clamp(compulsory)
    options = [clamp(array)]
    strips = blocks_needed(footprints, tier, (I, O))
    if strips <= layer.output_hw[0]:
        options.append(clamp({W: compulsory[W] * strips, I: compulsory[I], O: compulsory[O]}))
    chans = blocks_needed(footprints, tier, (W, O))
    if chans <= layer.out_channels:
        refetch = _cdiv(chans, layer.groups)
        options.append(clamp({W: compulsory[W], I: compulsory[I] * refetch, O: compulsory[O]}))
    return min(options, key=cost)


# --------------------------------------------------------------------------------------------
# One layer


@dataclass(frozen=True, slots=True)
class MaskLoad:
    """Per-inference mask work of one layer (on-the-fly mode): bits stored, and op energy per weight."""

    bits: float
    op_pj_per_weight: float


@dataclass(frozen=True, slots=True)
class LayerCost:
    """The cost of one layer (for the whole batch) on one profile. Bytes, cycles, picojoules."""

    name: str
    kind: str
    macs: int
    compute_cycles: int
    cycles: float
    utilization: float
    bound: str  # "compute" or the name of the level whose bandwidth stalls the layer
    read_bytes: dict[tuple[str, str], float]  # (level, operand) -> bytes read from that level
    write_bytes: dict[tuple[str, str], float]
    energy_pj: dict[tuple[str, str], float]  # (level, operand) -> pJ; plus ("mac", "mac"), ("mask_ops", "masks")
    mask_ops: float
    stall_cycles: float = 0.0
    onload_cycles: float = 0.0
    offload_cycles: float = 0.0
    mapping: dict | None = None  # the chosen mapping in ZigZag/Timeloop notation
    batch: int = 1


def shape_of(layer: Layer, batch: int = 1) -> Shape:
    """The loop bounds the mapping search works on (per group K and C; input footprint with padding)."""
    d = dims(layer)
    iy, ix = (min((p - 1) * min(s, k) + k, h + 2 * pad) for p, k, s, h, pad in
              zip(layer.output_hw, layer.kernel_hw, layer.stride_hw, layer.input_hw, layer.padding_hw))
    return Shape(b=batch, g=d.g, k=d.k, c=d.c, oy=d.oy, ox=d.ox, fy=d.fy, fx=d.fx, sy=layer.stride_hw[0],
                 sx=layer.stride_hw[1], iy=iy, ix=ix)


def _words(nbytes: float, level: MemoryLevel, bits: int) -> float:
    """Accesses of ``level`` needed to move ``nbytes`` of ``bits``-wide elements.

    Shared buffers pack elements into port-wide words (ZigZag counts port-width words: 115,200 B in
    64-bit words = 14,400 DRAM accesses, hwsim-anchors.md §3.4); a per-PE register file moves one
    element per access, or several accesses when the element is wider than the port.
    """
    if level.per_pe:
        return nbytes * 8 / bits * math.ceil(bits / level.word_bits)
    return nbytes * 8 / level.word_bits


def layer_cost(layer: Layer, profile: Profile, mask: MaskLoad | None = None, batch: int = 1,
               objective: str = "energy") -> LayerCost:
    """Traffic per level and operand, energy and latency of one layer under its best mapping.

    The mapping (spatial unrolling, loop order, tiles per level) is the one :func:`hwsim.mapping.search`
    finds for ``objective``; its access counts are closed forms (see :mod:`hwsim.mapping`). Masks travel
    with the weights: every weight element moved between two levels above the array carries
    ``mask.bits / weights`` bits of mask (Sparseloop's metadata model, Wu et al., MICRO 2021), and each
    weight entering the array costs one mask operation.

    Args:
        layer: the layer.
        profile: the accelerator.
        mask: on-the-fly mask work for this layer, or None.
        batch: images per inference (the batch is a loop of the mapping).
        objective: energy, latency or edp.
    """
    m = search(shape_of(layer, batch), profile, objective)
    read = dict(m.reads)
    write = dict(m.writes)
    energy = dict(m.energy_pj)
    n_w = weight_elems(layer)
    mask_ops = 0.0
    if mask is not None and mask.bits > 0:
        per_weight = mask.bits / n_w  # mask bits per weight element
        wbits = profile.precision_bits.weights
        chain = profile.chain(W)
        for level in chain:
            if level.per_pe:
                continue
            r = m.reads.get((level.name, W), 0.0) * 8 / wbits  # weight elements read from the level
            w = m.writes.get((level.name, W), 0.0) * 8 / wbits
            key = (level.name, "masks")
            read[key] = r * per_weight / 8
            write[key] = w * per_weight / 8
            energy[key] = (_words(read[key], level, 1) * level.read_energy_pj
                           + _words(write[key], level, 1) * level.write_energy_pj)
        shared = [lv for lv in chain if not lv.per_pe]
        mask_ops = m.reads.get((shared[-1].name, W), 0.0) * 8 / wbits  # weights entering the array
        energy[("mask_ops", "masks")] = mask_ops * mask.op_pj_per_weight
    if profile.static_power_w > 0:  # leakage and clock tree for the layer's latency, reported apart
        energy[("static", "static")] = profile.static_power_w * m.cycles / profile.clock_hz * 1e12
    util = m.compute_cycles and macs(layer) * batch / (m.compute_cycles * profile.array.pes)
    return LayerCost(name=layer.name, kind=layer.kind, macs=macs(layer) * batch, compute_cycles=m.compute_cycles,
                     cycles=m.cycles, utilization=float(util), bound=m.bound, read_bytes=read, write_bytes=write,
                     energy_pj=energy, mask_ops=mask_ops, stall_cycles=m.stall_cycles, onload_cycles=m.onload_cycles,
                     offload_cycles=m.offload_cycles, mapping=m.notation(profile), batch=batch)
