"""Mapping search: loop order, tiles per memory level and spatial unrolling, costed in closed form.

A *mapping* of one layer (Timeloop/ZigZag notation) is

- a **spatial unrolling**: a loop dimension (or, for the dataflow defaults, two) on the array's rows
  and on its columns, each unrolled ``u = min(size, axis)`` ways; ``ceil(size / u)`` folds remain as a
  temporal loop. As ZigZag's "uneven" unrolling, access counts use the true bounds (K = 128 on 14
  columns in 10 folds is 12.8 ways on average), the cycle count the ceiling;
- a **temporal loop nest**: the remaining loops, innermost first, each a prime factor of a dimension's
  fold count, merged down to at most 6 loops (LOMA's ``lpf_limit``; Symons et al., "LOMA: Fast
  Auto-Scheduling on DNN Accelerators through Loop-Order-based Memory Allocation", AICAS 2021);
- **memory allocation**: for every operand, the loops below each of its memory levels. As LOMA does,
  loops go to the innermost level of each operand while its tile still fits (a memory shared by
  several operands holds all their tiles at once), then to the next level, and so on up to DRAM.

Access counts for a mapping (ZigZag's ``Mapping.calc_data_access``, Mei et al., "ZigZag: Enlarging
Joint Architecture-Mapping Design Space Exploration for DNN Accelerators", IEEE TC 2021; Timeloop's
tile analysis, Parashar et al., ISPASS 2019):

- elements written into a level (its **fills**) = MACs / (the loops below it that the operand does
  not depend on x the irrelevant loops directly above it, which leave the tile in place); for inputs
  times the halo ratio of the tile (``(oy - 1) * stride + fy`` rows over ``oy * fy``);
- a level shared by the PEs sends one copy to every PE that needs it (multicast over the unrolled
  dimensions the operand does not depend on) and partial sums are reduced on the way up; a per-PE
  level is read and written by each PE itself;
- the innermost level is read once per MAC, except while the innermost loops do not change the
  operand (the word stays at the MAC: ZigZag's ``access_same_data_considered_as_no_access``);
- **outputs** travel up as partial sums and come back for further accumulation except the first time
  (read-modify-write); a level's transfers move at the partial-sum width unless only final outputs cross;
- transfers are counted in words of the level's port (``word_bits``); a per-PE register file moves
  one element per access.

Cycles (ZigZag's latency model, Mei et al. 2021, §IV-C): the product of the temporal loop counts
(compute) + the stall of the slowest memory port (on-chip memories have a read and a write port, DRAM
one shared port; a per-PE memory serves its PE) + on-loading of the first tiles the array needs and
off-loading of the last outputs, which cannot overlap compute. Array fill and drain are not modelled
(ZigZag 3.9.1 adds none for its example arrays either).

The search scores every loop order of the best-utilised spatial unrollings with numpy and rebuilds
the winner with :func:`evaluate`; results are cached per (layer shape, profile, objective).
Speed without changing the answer (a test holds the search to a brute force over :func:`evaluate`):

- **subset tables** (:func:`_score_batch`): everything an order's cost depends on is a function of a
  few *sets* of loops: the tile below a cut (the loops below it), and the loops a tile stays in place
  for (those below the next loop the operand depends on: ZigZag's and Timeloop's stationarity). With
  at most 6 loops there are 64 subsets, so tile extents, halos, fit tests and irrelevant-loop products
  are computed once per subset and gathered per order (products of integer loop counts are exact in
  any order), instead of once per (order, position);
- **one search per network** (:func:`search_many`, which :func:`hwsim.simulate` calls first): every
  new layer shape of a network and each of its kept unrollings are rows of shared numpy passes of a
  few thousand orders each (small enough for the temporaries to stay in cache), so numpy's per-call
  cost is not paid once per layer;
- **layer-independent order tables** (:func:`_order_tables`): the distinct orders of a multiset of
  loops depend only on which loops repeat, so layers with the same pattern share them;
- orders are not pruned beyond interchangeable loops (same dimension and count: the same order). The
  stationarity argument that lets Timeloop and ZigZag skip orders (only the innermost relevant loop of
  each operand in a level matters) holds for fixed tiles; under LOMA's bottom-up allocation
  (Symons et al., AICAS 2021) swapping two loops changes the set below the swap point, hence which
  tile fits and where each level's cut falls, so such orders can cost differently and are all scored.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwsim.hardware.profile import OPERANDS, MemoryLevel, Profile

W, I, O = OPERANDS
DIMS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX")
# which dimensions each operand depends on (OY/FY and OX/FX are partially relevant to inputs)
RELEVANT = {W: frozenset({"G", "K", "C", "FY", "FX"}), I: frozenset({"B", "G", "C", "OY", "OX", "FY", "FX"}),
            O: frozenset({"B", "G", "K", "OY", "OX"})}
OBJECTIVES = ("energy", "latency", "edp")
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


@dataclass(frozen=True, slots=True)
class MappingCost:
    """One evaluated mapping. Element counts per (level name, operand); cycles; energy in pJ."""

    spatial: Spatial
    loops: tuple[tuple[str, int], ...]  # temporal loops, innermost first
    cuts: dict[str, tuple[int, ...]]  # operand -> number of loops below each of its levels (innermost first)
    reads: dict[tuple[str, str], float]  # (level, operand) -> bytes read from the level
    writes: dict[tuple[str, str], float]
    energy_pj: dict[tuple[str, str], float]
    compute_cycles: int
    stall_cycles: float
    onload_cycles: float
    offload_cycles: float
    bound: str

    @property
    def cycles(self) -> float:
        return self.compute_cycles + self.stall_cycles + self.onload_cycles + self.offload_cycles

    @property
    def energy(self) -> float:
        return sum(self.energy_pj.values())

    def notation(self, profile: Profile) -> dict[str, object]:
        """The mapping in ZigZag/Timeloop notation: spatial unrolling and, per operand, loops per level."""
        per_operand = {}
        for o in OPERANDS:
            chain = profile.chain(o)[::-1]  # innermost first
            cuts = self.cuts[o]
            levels = {}
            lo = 0
            for level, hi in zip(chain, (*cuts, len(self.loops))):
                levels[level.name] = [list(x) for x in self.loops[lo:hi]]
                lo = hi
            per_operand[o] = levels
        return {"spatial": {"rows": [list(x) for x in self.spatial.rows], "cols": [list(x) for x in self.spatial.cols]},
                "temporal_innermost_first": per_operand}


def _sizes(shape: Shape) -> dict[str, int]:
    """``{d: shape.size(d) for d in DIMS}``, without a method call per dimension."""
    return {"B": int(shape.b), "G": int(shape.g), "K": int(shape.k), "C": int(shape.c), "OY": int(shape.oy),
            "OX": int(shape.ox), "FY": int(shape.fy), "FX": int(shape.fx)}


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _extent(shape: Shape, o: str, bounds: dict[str, float]) -> float:
    """Elements of operand ``o`` touched by loop bounds ``bounds`` (the tile; inputs with their halo)."""
    g = bounds.get("G", 1)
    if o == W:
        return g * bounds.get("K", 1) * bounds.get("C", 1) * bounds.get("FY", 1) * bounds.get("FX", 1)
    if o == O:
        return bounds.get("B", 1) * g * bounds.get("K", 1) * bounds.get("OY", 1) * bounds.get("OX", 1)
    oy, fy, ox, fx = bounds.get("OY", 1), bounds.get("FY", 1), bounds.get("OX", 1), bounds.get("FX", 1)
    rows = (oy - 1) * min(shape.sy, fy) + fy if fy < shape.fy or oy < shape.oy else (shape.iy or (oy - 1) * shape.sy + fy)
    cols = (ox - 1) * min(shape.sx, fx) + fx if fx < shape.fx or ox < shape.ox else (shape.ix or (ox - 1) * shape.sx + fx)
    return bounds.get("B", 1) * g * bounds.get("C", 1) * rows * cols


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


_DEFAULT_SPATIAL = {  # dimensions each array axis may unroll, by dataflow
    "weight_stationary": (("C", "FX", "FY"), ("K", "G")),
    "output_stationary": (("OX", "OY"), ("K", "G")),
    "row_stationary": (("FY", "C"), ("OY", "K", "G")),
}


@lru_cache(maxsize=64)
def arch(profile: Profile) -> Arch:
    pb = profile.precision_bits
    chains = {o: tuple(reversed(profile.chain(o))) for o in OPERANDS}
    depth = {o: {lv.name: i for i, lv in enumerate(chains[o])} for o in OPERANDS}
    order: list[MemoryLevel] = []
    for o in OPERANDS:
        for lv in chains[o][:-1]:
            if lv not in order:
                order.append(lv)
    order.sort(key=lambda lv: (not lv.per_pe, max(depth[o].get(lv.name, -1) for o in OPERANDS)))
    alloc = tuple((lv, tuple(o for o in OPERANDS if lv.name in depth[o])) for lv in order)
    return Arch(alloc=alloc, chains=chains, bits={W: pb.weights, I: pb.inputs, O: pb.psums}, out_bits=pb.outputs,
                pes=profile.array.pes, rows=profile.array.rows, cols=profile.array.cols,
                mac_pj=profile.array.mac_energy_pj,
                spatial_dims=((profile.spatial.rows, profile.spatial.cols) if profile.spatial
                              else _DEFAULT_SPATIAL[profile.dataflow]),
                spatial_pairs=profile.spatial is None,
                spatial_first=bool(profile.spatial and not profile.spatial.search))


def spatial_options(shape: Shape, a: Arch) -> list[Spatial]:
    """Candidate unrollings: one dimension per axis (the profile's dataflow allows which), or two
    dimensions on an axis when the first does not fill it (e.g. C x FY for a 3-channel stem)."""
    size = _sizes(shape)

    def axis(dims: tuple[str, ...], n: int, taken: set[str]) -> list[tuple[tuple[str, int], ...]]:
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
        return out or [()]
    opts = []
    for r in axis(a.spatial_dims[0], a.rows, set()):
        for c in axis(a.spatial_dims[1], a.cols, {d for d, _ in r}):
            opts.append(Spatial(rows=r, cols=c))
    return opts


def evaluate(shape: Shape, a: Arch, spatial: Spatial, loops: tuple[tuple[str, int], ...]) -> MappingCost:
    """Allocate ``loops`` (innermost first) to every operand's levels bottom-up (LOMA) and count accesses.

    Elements crossing the boundary below a level (its fills) = MACs / (the product of the loops below
    it that the operand does not depend on, times the irrelevant loops directly above: stationarity);
    for inputs times the halo ratio (window rows x cols over OY*FY x OX*FX) of the tile. This is
    ZigZag's ``data_access_raw`` (MACs over the irrelevant-loop product, exact with uneven unrolling)
    and Timeloop's tile x tile-changes for the halo.
    """
    n_loops = len(loops)
    folds = dict.fromkeys(DIMS, 1)
    for d, f in loops:
        folds[d] *= f
    ways_int = spatial.ways()
    sizes = _sizes(shape)
    true_ways = {d: sizes[d] / folds[d] for d in ways_int}  # uneven unrolling: 128 on 14 -> 12.8
    cum: list[dict[str, int]] = [dict.fromkeys(DIMS, 1)]
    for d, f in loops:
        nxt = dict(cum[-1])
        nxt[d] *= f
        cum.append(nxt)
    memo: dict[tuple[int, bool], dict[str, float]] = {}
    sfy, sfx, soy, sox, ssy, ssx, siy, six = shape.fy, shape.fx, shape.oy, shape.ox, shape.sy, shape.sx, shape.iy, shape.ix

    def extent(o: str, b: dict[str, float]) -> float:
        """:func:`_extent` for bounds that name every dimension (the same products, in the same order)."""
        if o == W:
            return b["G"] * b["K"] * b["C"] * b["FY"] * b["FX"]
        if o == O:
            return b["B"] * b["G"] * b["K"] * b["OY"] * b["OX"]
        oy, fy, ox, fx = b["OY"], b["FY"], b["OX"], b["FX"]
        rows = (oy - 1) * min(ssy, fy) + fy if fy < sfy or oy < soy else (siy or (oy - 1) * ssy + fy)
        cols = (ox - 1) * min(ssx, fx) + fx if fx < sfx or ox < sox else (six or (ox - 1) * ssx + fx)
        return b["B"] * b["G"] * b["C"] * rows * cols

    def bounds(j: int, shared: bool) -> dict[str, float]:
        b = memo.get((j, shared))
        if b is None:
            c = cum[j]
            if shared:
                b = {d: float(min(c[d] * ways_int.get(d, 1), sizes[d])) for d in DIMS}
            else:
                b = {d: float(min(c[d], sizes[d])) for d in DIMS}
            memo[(j, shared)] = b
        return b

    # allocation (LOMA): levels innermost first; a memory shared by several operands holds all their tiles
    ebytes = {o: a.bits[o] / 8 for o in OPERANDS}
    cuts: dict[str, list[int]] = {o: [] for o in OPERANDS}
    for lv, ops in a.alloc:
        start = {o: (cuts[o][-1] if cuts[o] else 0) for o in ops}
        j = max(start.values())
        shared = not lv.per_pe
        cap = lv.size_bytes

        while j < n_loops and sum([extent(o, bounds(max(start[o], j + 1), shared)) * ebytes[o]
                                   for o in ops]) <= cap:
            j += 1
        for o in ops:
            cuts[o].append(max(start[o], j))

    macs = float(shape.macs)
    temporal = math.prod([f for _, f in loops])
    mc = {o: _multicast(spatial, true_ways, o) for o in OPERANDS}

    def fills(o: str, j: int, shared: bool) -> float:
        """Elements written into a level whose tile spans loops[:j] (and the array when ``shared``)."""
        k = j
        while k < n_loops and loops[k][0] not in RELEVANT[o]:
            k += 1
        rel_o = RELEVANT[o]
        ir = math.prod([f for d, f in loops[:k] if d not in rel_o])
        if shared:
            ir *= mc[o]
        n = macs / ir
        if o == I:
            b = bounds(j, shared)
            rel = b["OY"] * b["FY"] * b["OX"] * b["FX"]
            n *= extent(I, b) / (b["B"] * b["G"] * b["C"] * rel)
        return _tidy(n)

    reads: dict[tuple[str, str], float] = {}
    writes: dict[tuple[str, str], float] = {}
    energy: dict[tuple[str, str], float] = {}

    def add(level: MemoryLevel, o: str, r: float, r_bits: int, w: float, w_bits: int) -> None:
        key = (level.name, o)
        reads[key] = reads.get(key, 0.0) + r * r_bits / 8
        writes[key] = writes.get(key, 0.0) + w * w_bits / 8
        if level.per_pe:
            rw, ww = r * math.ceil(r_bits / level.word_bits), w * math.ceil(w_bits / level.word_bits)
        else:
            rw, ww = r * r_bits / level.word_bits, w * w_bits / level.word_bits
        energy[key] = energy.get(key, 0.0) + rw * level.read_energy_pj + ww * level.write_energy_pj
        r_acc[level.name] = r_acc.get(level.name, 0.0) + rw
        w_acc[level.name] = w_acc.get(level.name, 0.0) + ww

    r_acc: dict[str, float] = {}
    w_acc: dict[str, float] = {}
    n_out = float(shape.b * shape.g * shape.k * shape.oy * shape.ox)
    onload = offload = 0.0
    for o in OPERANDS:
        chain, c = a.chains[o], cuts[o]
        # into[i]: elements written into chain[i] from its parent; out[i]: elements chain[i+1] sends down
        into = [fills(o, c[i], not lv.per_pe) for i, lv in enumerate(chain[:-1])]
        down = [into[i] / (mc[o] if chain[i].per_pe else 1.0) for i in range(len(into))]
        if o in (W, I):
            # the innermost level's read port keeps its word at the MAC while the innermost loops do not
            # change it (ZigZag's access_same_data_considered_as_no_access: reads / mac_level_data_stationary_cycle,
            # when the port is at least one element wide)
            held = 1.0
            for d, f in (loops if chain[0].word_bits >= a.bits[o] else ()):
                if d in RELEVANT[o]:
                    break
                held *= f
            for i, lv in enumerate(chain):
                r = (macs / held / (1.0 if lv.per_pe else mc[o])) if i == 0 else down[i - 1]
                w = into[i] if i < len(into) else 0.0
                add(lv, o, r, a.bits[o], w, a.bits[o])
            if len(chain) > 1:
                onload = max(onload, _first_tile(shape, o, chain[0], bounds(c[0], not chain[0].per_pe),
                                                 spatial, true_ways) * ebytes[o])
        else:
            # up[i]: output elements chain[i] sends up (partial or final); back[i]: partial sums it gets back
            up = [max(x, n_out) for x in down]
            back = [u - n_out for u in up]
            ps, fin = a.bits[O], a.out_bits
            for i, lv in enumerate(chain):
                bits_up = ps if (i < len(up) and back[i] > 0.5) else fin
                bits_in = ps if (i > 0 and back[i - 1] > 0.5) else fin
                if i == 0:  # the MACs read and write the innermost level once per MAC (reduced across PEs)
                    red = 1.0 if lv.per_pe else mc[O]
                    r_child, w_child, bits_in = macs / red, macs / red, ps
                else:
                    r_child, w_child = back[i - 1], up[i - 1]
                r_up = up[i] if i < len(up) else 0.0
                w_back = back[i] if i < len(back) else 0.0
                if lv.per_pe and i < len(into):  # every PE's register file is read and written itself;
                    # the reduction across PEs happens on the way up (ZigZag counts the rf per PE)
                    r_up = max(into[i], n_out * mc[O])
                    w_back = r_up - n_out * mc[O]
                add(lv, O, r_child, ps if i == 0 else bits_in, w_child, bits_in)
                add(lv, O, r_up, bits_up, w_back, ps)
            if len(chain) > 1:
                offload = _first_tile(shape, O, chain[0], bounds(c[0], not chain[0].per_pe),
                                      spatial, true_ways) * a.out_bits / 8
    energy[("mac", "mac")] = macs * a.mac_pj
    stall, bound = 0.0, "compute"
    seen: set[str] = set()
    outer = a.chains[W][-1].name
    for o in OPERANDS:
        for lv in a.chains[o]:
            if lv.name in seen:
                continue
            seen.add(lv.name)
            # port accesses per cycle; a per-PE memory serves its own PE (the active PEs share the load)
            bw = lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits * (macs / temporal if lv.per_pe else 1)
            r, w = r_acc.get(lv.name, 0.0), w_acc.get(lv.name, 0.0)
            # DRAM has one read-write port; on-chip memories a read port and a write port (as every
            # memory of ZigZag's example architectures and Eyeriss' spads)
            # the first tiles' on-loading and the last outputs' off-loading are charged apart (they cannot
            # overlap compute); the rest of the DRAM traffic overlaps it
            t = (r + w - (onload + offload) * 8 / lv.word_bits if lv.name == outer else max(r, w)) / bw
            if t - temporal > stall:
                stall, bound = t - temporal, lv.name
    dram_bw = a.chains[W][-1].bandwidth_bytes_per_cycle
    return MappingCost(spatial=spatial, loops=loops, cuts={o: tuple(v) for o, v in cuts.items()}, reads=reads,
                       writes=writes, energy_pj=energy, compute_cycles=int(temporal), stall_cycles=stall,
                       onload_cycles=onload / dram_bw, offload_cycles=offload / dram_bw, bound=bound)


def _tidy(x: float) -> float:
    """Snap a count to the integer it is meant to be (halo ratios leave 59535.999...)."""
    r = round(x)
    return float(r) if abs(x - r) <= 1e-9 * max(1.0, abs(x)) else x


def _first_tile(shape: Shape, o: str, level: MemoryLevel, b: dict[str, float], spatial: Spatial,
                true_ways: dict[str, float]) -> float:
    """Elements of the first tile of ``o`` at its innermost level (all PEs' distinct copies when per PE):
    what must arrive before the array starts (on-loading) or leave after it stops (off-loading)."""
    tile = _extent(shape, o, b)
    if level.per_pe:
        tile *= math.prod(u for d, u in true_ways.items() if d in RELEVANT[o])
    return tile


def _multicast(spatial: Spatial, true_ways: dict[str, float], o: str) -> float:
    """PEs sharing one copy of a tile (or reduced into one output): unrolled dimensions irrelevant to ``o``."""
    return math.prod(u for d, u in true_ways.items() if d not in RELEVANT[o])


class _Ledger:
    """Energy (pJ) and words read/written per level of a batch of candidate mappings, as :meth:`add` charges them."""

    __slots__ = ("energy", "r_lv", "w_lv")

    def __init__(self, energy: np.ndarray) -> None:
        self.energy = energy
        self.r_lv: dict[str, np.ndarray] = {}
        self.w_lv: dict[str, np.ndarray] = {}

    def add(self, lv: MemoryLevel, r: np.ndarray | float, r_bits: np.ndarray | float, w: np.ndarray | float,
            w_bits: np.ndarray | float) -> None:
        """Charge ``r`` reads of ``r_bits`` and ``w`` writes of ``w_bits`` at ``lv`` (whole words per PE)."""
        if lv.per_pe:
            rw, ww = r * np.ceil(r_bits / lv.word_bits), w * np.ceil(w_bits / lv.word_bits)
        else:
            rw, ww = r * r_bits / lv.word_bits, w * w_bits / lv.word_bits
        self.energy = self.energy + rw * lv.read_energy_pj + ww * lv.write_energy_pj
        self.r_lv[lv.name] = self.r_lv.get(lv.name, 0.0) + rw
        self.w_lv[lv.name] = self.w_lv.get(lv.name, 0.0) + ww


def _traffic(a: Arch, n: int, cuts: dict[str, list[np.ndarray]], macs: float, n_out: float, mc: dict[str, float],
             ebytes: dict[str, float], fills: Callable, add: Callable, first_tile: Callable,
             held_of: Callable[[str], np.ndarray], onload: np.ndarray, offload: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Charge every operand's reads and writes along its chain (``add``) for ``n`` candidate mappings at
    once; return the first tile's onload and offload bytes. ``held_of(o)``: the MACs a word of weights or
    inputs serves where it lands before it is fetched again. Shared by :func:`score_orders` and
    :func:`_score_batch`, called once per batch (vectorised over the candidates)."""
    for o in OPERANDS:
        chain, c = a.chains[o], cuts[o]
        into = [fills(o, c[i], not lv.per_pe) for i, lv in enumerate(chain[:-1])]
        down = [into[i] / (mc[o] if chain[i].per_pe else 1.0) for i in range(len(into))]
        if o in (W, I):
            if chain[0].word_bits >= a.bits[o]:
                held = held_of(o)
            else:
                held = np.ones(n)
            for i, lv in enumerate(chain):
                r = macs / held / (1.0 if lv.per_pe else mc[o]) if i == 0 else down[i - 1]
                w = into[i] if i < len(into) else 0.0
                add(lv, r, a.bits[o], w, a.bits[o])
            if len(chain) > 1:
                onload = np.maximum(onload, first_tile(o, chain[0], c[0]) * ebytes[o])
        else:
            up = [np.maximum(x, n_out) for x in down]
            back = [u - n_out for u in up]
            ps, fin = a.bits[O], a.out_bits
            for i, lv in enumerate(chain):
                bits_up = np.where(back[i] > 0.5, ps, fin) if i < len(up) else fin
                if i == 0:
                    red = 1.0 if lv.per_pe else mc[O]
                    add(lv, macs / red, ps, macs / red, ps)
                else:
                    bits_in = np.where(back[i - 1] > 0.5, ps, fin)
                    add(lv, back[i - 1], bits_in, up[i - 1], bits_in)
                if lv.per_pe and i < len(into):
                    r_up = np.maximum(into[i], n_out * mc[O])
                    add(lv, r_up, bits_up, r_up - n_out * mc[O], ps)
                else:
                    add(lv, up[i] if i < len(up) else 0.0, bits_up, back[i] if i < len(back) else 0.0, ps)
            if len(chain) > 1:
                offload = first_tile(O, chain[0], c[0]) * a.out_bits / 8
    return onload, offload


def _cycles(a: Arch, n: int, r_lv: dict[str, np.ndarray], w_lv: dict[str, np.ndarray], temporal: np.ndarray | float,
            onload: np.ndarray, offload: np.ndarray, bw_of: Callable[[MemoryLevel], np.ndarray | float]) -> np.ndarray:
    """Cycles of ``n`` candidate mappings: the temporal loops, the worst level's bandwidth stall (each level
    once; ``bw_of(level)``: its words per cycle), and the first tile's onload and offload at DRAM bandwidth."""
    stall = np.zeros(n)
    outer = a.chains[W][-1].name
    seen: set[str] = set()
    for o in OPERANDS:
        for lv in a.chains[o]:
            if lv.name in seen:
                continue
            seen.add(lv.name)
            bw = bw_of(lv)
            r, w = r_lv.get(lv.name, 0.0), w_lv.get(lv.name, 0.0)
            t = ((r + w - (onload + offload) * 8 / lv.word_bits) if lv.name == outer else np.maximum(r, w)) / bw
            stall = np.maximum(stall, t - temporal)
    dram_bw = a.chains[W][-1].bandwidth_bytes_per_cycle
    cycles = temporal + stall + (onload + offload) / dram_bw
    return cycles


def score_orders(shape: Shape, a: Arch, spatial: Spatial, orders: np.ndarray, factors: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Energy (pJ) and cycles of many loop orders at once: :func:`evaluate`'s formulas over numpy arrays.

    ``orders`` holds dimension indices (into ``DIMS``), ``factors`` the loop counts, both shaped
    (orders, loops), innermost loop first. The reference form of what the search computes with
    :func:`_score_batch` (per loop subset, many layers at once); tests check that both give the same
    numbers and that they agree with :func:`evaluate`, which rebuilds the winner.
    """
    n, n_loops = orders.shape
    ways = spatial.ways()
    size = np.array([shape.size(d) for d in DIMS], dtype=float)
    folds = np.ones(len(DIMS))
    for j in range(n_loops):
        folds[orders[0, j]] *= factors[0, j]
    ways_v = np.array([ways.get(d, 1) for d in DIMS], dtype=float)
    true_ways = {d: shape.size(d) / folds[k] for k, d in enumerate(DIMS) if d in ways}
    onehot = orders[:, :, None] == np.arange(len(DIMS))[None, None, :]
    mult = np.where(onehot, factors[:, :, None], 1.0)
    cum = np.concatenate([np.ones((n, 1, len(DIMS))), np.cumprod(mult, axis=1)], axis=1)  # (n, L+1, 8)
    b_pe = np.minimum(cum, size)
    b_sh = np.minimum(cum * ways_v, size)
    B, G, K, C, OY, OX, FY, FX = range(8)

    def extent(o: str, b: np.ndarray) -> np.ndarray:
        if o == W:
            return b[..., G] * b[..., K] * b[..., C] * b[..., FY] * b[..., FX]
        if o == O:
            return b[..., B] * b[..., G] * b[..., K] * b[..., OY] * b[..., OX]
        full_r = shape.iy or (shape.oy - 1) * shape.sy + shape.fy
        full_c = shape.ix or (shape.ox - 1) * shape.sx + shape.fx
        part = (b[..., FY] < shape.fy) | (b[..., OY] < shape.oy)
        rows = np.where(part, (b[..., OY] - 1) * np.minimum(shape.sy, b[..., FY]) + b[..., FY], full_r)
        part = (b[..., FX] < shape.fx) | (b[..., OX] < shape.ox)
        cols = np.where(part, (b[..., OX] - 1) * np.minimum(shape.sx, b[..., FX]) + b[..., FX], full_c)
        return b[..., B] * b[..., G] * b[..., C] * rows * cols

    ext = {(o, s): extent(o, b_sh if s else b_pe) for o in OPERANDS for s in (False, True)}  # (n, L+1)
    ebytes = {o: a.bits[o] / 8 for o in OPERANDS}
    rows_idx = np.arange(n)
    jj = np.arange(n_loops + 1)[None, :]
    cuts: dict[str, list[np.ndarray]] = {o: [] for o in OPERANDS}
    for lv, ops in a.alloc:
        shared = not lv.per_pe
        start = {o: (cuts[o][-1] if cuts[o] else np.zeros(n, dtype=int)) for o in ops}
        j0 = np.max(np.stack([start[o] for o in ops]), axis=0)
        total = np.zeros((n, n_loops + 1))
        for o in ops:
            idx = np.maximum(start[o][:, None], jj)
            total += np.take_along_axis(ext[(o, shared)], idx, axis=1) * ebytes[o]
        fits = (total <= lv.size_bytes) & (jj > j0[:, None])
        j = j0 + fits.sum(axis=1)
        for o in ops:
            cuts[o].append(np.maximum(start[o], j))

    macs = float(shape.macs)
    temporal = float(np.prod(factors[0]))
    rel = {o: np.isin(orders, [DIMS.index(d) for d in RELEVANT[o]]) for o in OPERANDS}
    idx_l = np.arange(n_loops)[None, :]
    nextrel = {}
    cir = {}
    for o in OPERANDS:
        pos = np.where(rel[o], idx_l, n_loops)
        nextrel[o] = np.concatenate([np.minimum.accumulate(pos[:, ::-1], axis=1)[:, ::-1],
                                     np.full((n, 1), n_loops)], axis=1)  # (n, L+1)
        cir[o] = np.concatenate([np.ones((n, 1)), np.cumprod(np.where(rel[o], 1.0, factors), axis=1)], axis=1)
    mc = {o: math.prod(u for d, u in true_ways.items() if d not in RELEVANT[o]) for o in OPERANDS}

    def fills(o: str, j: np.ndarray, shared: bool) -> np.ndarray:
        k = nextrel[o][rows_idx, j]
        ir = cir[o][rows_idx, k] * (mc[o] if shared else 1.0)
        out = macs / ir
        if o == I:
            b = (b_sh if shared else b_pe)[rows_idx, j]
            out = out * extent(I, b) / (b[:, B] * b[:, G] * b[:, C] * b[:, OY] * b[:, FY] * b[:, OX] * b[:, FX])
        return out

    ledger = _Ledger(np.full(n, macs * a.mac_pj))
    add, r_lv, w_lv = ledger.add, ledger.r_lv, ledger.w_lv

    n_out = float(shape.b * shape.g * shape.k * shape.oy * shape.ox)
    onload = np.zeros(n)
    offload = np.zeros(n)

    def first_tile(o: str, lv: MemoryLevel, j: np.ndarray) -> np.ndarray:
        t = extent(o, (b_pe if lv.per_pe else b_sh)[rows_idx, j])
        if lv.per_pe:
            t = t * math.prod(u for d, u in true_ways.items() if d in RELEVANT[o])
        return t

    onload, offload = _traffic(a, n, cuts, macs, n_out, mc, ebytes, fills, add, first_tile,
                               lambda o: np.prod(np.where(np.cumprod(~rel[o], axis=1).astype(bool), factors, 1.0),
                                                 axis=1),  # the leading run of irrelevant loops
                               onload, offload)
    cycles = _cycles(a, n, r_lv, w_lv, temporal, onload, offload,
                     lambda lv: lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits * (macs / temporal if lv.per_pe else 1))
    return ledger.energy, cycles


@lru_cache(maxsize=16)
def _permutations(n: int) -> np.ndarray:
    """All orders of ``n`` positions, as an (n!, n) index array."""
    flat = itertools.chain.from_iterable(itertools.permutations(range(n)))  # itertools' (lexicographic) order
    return np.fromiter(flat, dtype=np.int64, count=math.factorial(n) * n).reshape(math.factorial(n), n)


@lru_cache(maxsize=256)
def _loop_orders(factor_list: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct order of the (dimension index, factor) loops, as LOMA enumerates them."""
    loops = np.array(factor_list, dtype=np.int64).reshape(-1, 2)
    code = loops[:, 0] * 1_000_003 + loops[:, 1]  # one number per (dimension, factor)
    perms = _permutations(len(factor_list))
    _, first = np.unique(code[perms], axis=0, return_index=True)  # repeated loops give repeated orders
    rows = perms[np.sort(first)]
    return loops[rows, 0], loops[rows, 1].astype(float)


@dataclass(frozen=True, slots=True)
class _Orders:
    """Layer-independent tables of every distinct order of ``n`` loops with a given repetition pattern.

    ``loop[r, p]``: which loop (index into the factor list) order ``r`` puts at position ``p``;
    ``prefix[j, r]``: the subset (bit mask) of loops below position ``j``; ``stay[o][j, r]``: the subset
    below the first loop at or above ``j`` that operand ``o`` depends on (the tile below ``j`` plus the
    irrelevant loops directly above it, which leave the tile in place: stationarity). Positions are
    the first axis so that sums over positions run over contiguous rows.
    """

    loop: np.ndarray
    prefix: np.ndarray
    stay: dict[str, np.ndarray]


@lru_cache(maxsize=512)
def _order_tables(pattern: tuple[tuple[int, int], ...]) -> _Orders:
    """The distinct orders of loops given as (dimension index, rank of the factor within its dimension).

    Two loops with the same dimension and factor are interchangeable, so the orders are deduplicated
    on (dimension, factor rank) exactly as :func:`_loop_orders` does on (dimension, factor), in the
    same order: the tables depend on the pattern only, so layers with the same pattern share them.
    """
    n = len(pattern)
    perms, prefix = _all_orders(n)
    stay = {o: _stay_all(tuple(DIMS[d] in RELEVANT[o] for d, _ in pattern)) for o in OPERANDS}
    if len(set(pattern)) == n:  # no two loops interchangeable: every permutation is distinct
        return _Orders(loop=perms, prefix=prefix, stay=stay)
    # one integer per order (base-64 digits (dimension, factor rank)); first occurrences, in order
    code = np.array([d * 8 + r for d, r in pattern], dtype=np.int64)
    _, first = np.unique(code[perms] @ (64 ** np.arange(n, dtype=np.int64)), return_index=True)
    rows = np.sort(first)
    return _Orders(loop=perms[rows], prefix=prefix[:, rows], stay={o: s[:, rows] for o, s in stay.items()})


@lru_cache(maxsize=16)
def _all_orders(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every order of ``n`` loops, (n!, n), and the subset below each position, (n + 1, n!) bytes."""
    perms = _permutations(n)
    prefix = np.zeros((n + 1, len(perms)), dtype=np.uint8)  # subsets of at most 8 loops (8 dimensions)
    prefix[1:] = np.cumsum(1 << perms, axis=1).T
    return perms, prefix


@lru_cache(maxsize=1024)
def _stay_all(relevant: tuple[bool, ...]) -> np.ndarray:
    """For every order of loops of which those flagged ``relevant`` matter to an operand, the subset
    below the first relevant loop at or above each position, (n + 1, n!) bytes."""
    perms, prefix = _all_orders(len(relevant))
    rel = np.array(relevant)[perms].T  # (positions, orders)
    s = prefix.copy()  # from the outermost position in: the subset below the next relevant loop
    for j in range(len(relevant) - 1, -1, -1):
        s[j] = np.where(rel[j], prefix[j], s[j + 1])
    return s


def _score_batch(a: Arch, items: list[tuple[Shape, Spatial, tuple[tuple[int, int], ...], _Orders]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_orders` for every order of every (layer shape, spatial unrolling, loops, order
    tables) item, in one numpy pass (rows item after item); computed per loop *subset*.

    Every per-order quantity of :func:`score_orders` is a function of one subset of the loops: the tile
    below a cut is the subset below it (bounds, extents, input halo, the fit test of a level: for the
    positions above every operand's previous cut, each operand's tile is the same prefix), and the
    loops a tile stays in place for are the subset below the next relevant loop (``_Orders.stay``: the
    irrelevant-loop product, an exact integer whatever the order of multiplication). So each is
    computed once for each of the ``2**n`` subsets and gathered per order; the remaining arithmetic is
    :func:`score_orders`' own, in the same order, with the layer's and the unrolling's numbers as
    per-row arrays, so the scores are the same numbers (a test checks). Items with fewer loops are
    padded with loops of one iteration (subset tables) and with the full set (order tables), which
    changes no gathered value.
    """
    nd = len(DIMS)
    B, G, K, C, OY, OX, FY, FX = range(8)
    m = len(items)
    n_max = max(len(flat) for _, _, flat, _ in items)
    width, n_sub = n_max + 1, 1 << n_max
    ebytes = {o: a.bits[o] / 8 for o in OPERANDS}
    levels = [lv for lv, _ in a.alloc]
    fac = np.ones((m, n_max, nd))
    ways_v = np.ones((m, nd))
    size = np.empty((m, nd))
    geo = np.empty((m, 8))  # sy, sx, fy, fx, oy, ox, full rows, full cols of the input window
    per_pe = [lv for lv in levels if lv.per_pe]
    keys: list[object] = ["macs", "temporal", "mac_e", "n_out"]
    for o in OPERANDS:
        keys += [("mc", o), ("pe", o)]
    keys += [("bw", lv.name) for lv in per_pe]
    bw_pe = [lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits for lv in per_pe]
    rel_o = [RELEVANT[o] for o in OPERANDS]
    mac_pj = a.mac_pj
    vals: list[list[float]] = []
    counts = []
    for k, (shape, sp, flat, t) in enumerate(items):
        ways = sp.ways()
        folds = [1] * nd
        fk = fac[k]
        for i, (d, f) in enumerate(flat):
            folds[d] *= f
            fk[i, d] = f
        sizes = [shape.b, shape.g, shape.k, shape.c, shape.oy, shape.ox, shape.fy, shape.fx]  # shape.size(d)
        size[k] = sizes
        ways_v[k] = [ways.get(d, 1) for d in DIMS]
        geo[k] = (shape.sy, shape.sx, shape.fy, shape.fx, shape.oy, shape.ox,
                  shape.iy or (shape.oy - 1) * shape.sy + shape.fy, shape.ix or (shape.ox - 1) * shape.sx + shape.fx)
        true_ways = [(d, sizes[j] / float(folds[j])) for j, d in enumerate(DIMS) if d in ways]
        macs = float(shape.macs)
        temporal = float(math.prod([f for _, f in flat]))
        row = [macs, temporal, macs * mac_pj, float(shape.b * shape.g * shape.k * shape.oy * shape.ox)]
        for rel in rel_o:
            row.append(math.prod([u for d, u in true_ways if d not in rel]))
            row.append(math.prod([u for d, u in true_ways if d in rel]))
        row += [bw * (macs / temporal) for bw in bw_pe]
        vals.append(row)
        counts.append(len(t.loop))

    # per-subset tables, (items x 2**n_max) rows: loops past an item's own are one-iteration loops
    cum = np.ones((m, n_sub, nd))  # per dimension, the product of the subset's loops: exact integers
    for i in range(n_max):  # the subsets whose highest loop is i: those without it, times its count
        cum[:, 1 << i:2 << i] = cum[:, :1 << i] * fac[:, i, None, :]
    size_t = np.repeat(size, n_sub, axis=0)
    cum = cum.reshape(m * n_sub, nd)
    bnd = {False: np.minimum(cum, size_t), True: np.minimum(cum * np.repeat(ways_v, n_sub, axis=0), size_t)}
    sy, sx, fy, fx, oy, ox, full_r, full_c = np.repeat(geo, n_sub, axis=0).T

    def extent(o: str, b: np.ndarray) -> np.ndarray:
        if o == W:
            return b[:, G] * b[:, K] * b[:, C] * b[:, FY] * b[:, FX]
        if o == O:
            return b[:, B] * b[:, G] * b[:, K] * b[:, OY] * b[:, OX]
        part = (b[:, FY] < fy) | (b[:, OY] < oy)
        rows = np.where(part, (b[:, OY] - 1) * np.minimum(sy, b[:, FY]) + b[:, FY], full_r)
        part = (b[:, FX] < fx) | (b[:, OX] < ox)
        cols = np.where(part, (b[:, OX] - 1) * np.minimum(sx, b[:, FX]) + b[:, FX], full_c)
        return b[:, B] * b[:, G] * b[:, C] * rows * cols

    tab: dict[object, np.ndarray] = {(o, s): extent(o, bnd[s]) for o in OPERANDS for s in (False, True)}
    for s in (False, True):
        b = bnd[s]
        tab[("den", s)] = b[:, B] * b[:, G] * b[:, C] * b[:, OY] * b[:, FY] * b[:, OX] * b[:, FX]
    for o in OPERANDS:
        tab[("ir", o)] = np.prod(cum[:, [k for k, d in enumerate(DIMS) if d not in RELEVANT[o]]], axis=1)
    for li, (lv, ops) in enumerate(a.alloc):
        total = 0.0
        for o in ops:
            total = total + tab[(o, not lv.per_pe)] * ebytes[o]
        tab[("fit", li)] = total <= lv.size_bytes

    # per-order tables, padded to n_max loops with the full set; subset ids offset to the item's rows
    def padded(x: np.ndarray, n: int) -> np.ndarray:
        return x if n == n_max else np.concatenate([x, np.repeat(x[-1:], n_max - n, axis=0)], axis=0)

    off = np.repeat(np.arange(m, dtype=np.int64) * n_sub, counts)
    prefix = np.concatenate([padded(t.prefix, len(flat)) for _, _, flat, t in items], axis=1) + off[None, :]
    stay_local = {o: np.concatenate([padded(t.stay[o], len(flat)) for _, _, flat, t in items], axis=1).ravel()
                  for o in OPERANDS}  # (positions x orders), flat: position j of order r at j * nr + r
    rep = dict(zip(keys, np.repeat(np.array(vals).T, counts, axis=1)))
    nr = prefix.shape[1]
    base = np.arange(nr)
    jj = np.arange(width)[:, None]
    cuts: dict[str, list[np.ndarray]] = {o: [] for o in OPERANDS}
    for li, (lv, ops) in enumerate(a.alloc):
        # for the positions above every operand's previous cut, the tiles are those of one prefix subset
        fits = tab[("fit", li)][prefix]  # (positions, orders)
        starts = [cuts[o][-1] for o in ops if cuts[o]]
        if not starts:
            j = fits[1:].sum(axis=0)
            for o in ops:
                cuts[o].append(j)
            continue
        j0 = starts[0]
        for other in starts[1:]:  # the highest previous cut (integers: any order)
            j0 = np.maximum(j0, other)
        j = j0 + (fits & (jj > j0[None, :])).sum(axis=0)
        for o in ops:
            cuts[o].append(np.maximum(cuts[o][-1], j) if cuts[o] else j)
    prefix = prefix.ravel()

    macs, temporal, n_out = rep["macs"], rep["temporal"], rep["n_out"]
    mc = {o: rep[("mc", o)] for o in OPERANDS}

    flat_at: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def at(j: np.ndarray) -> np.ndarray:
        """Flat index of position ``j[r]`` of every order ``r`` (operands sharing a level share ``j``)."""
        hit = flat_at.get(id(j))
        if hit is None or hit[0] is not j:
            hit = flat_at[id(j)] = (j, j * nr + base)
        return hit[1]

    def fills(o: str, j: np.ndarray, shared: bool) -> np.ndarray:
        ir = tab[("ir", o)][stay_local[o][at(j)] + off] * (mc[o] if shared else 1.0)
        out = macs / ir
        if o == I:
            s = prefix[at(j)]
            out = out * tab[(I, shared)][s] / tab[("den", shared)][s]
        return out

    ledger = _Ledger(rep["mac_e"])
    add, r_lv, w_lv = ledger.add, ledger.r_lv, ledger.w_lv

    onload = np.zeros(nr)
    offload = np.zeros(nr)

    def first_tile(o: str, lv: MemoryLevel, j: np.ndarray) -> np.ndarray:
        tile = tab[(o, not lv.per_pe)][prefix[at(j)]]
        if lv.per_pe:
            tile = tile * rep[("pe", o)]
        return tile

    onload, offload = _traffic(a, nr, cuts, macs, n_out, mc, ebytes, fills, add, first_tile,
                               lambda o: tab[("ir", o)][stay_local[o][base] + off], onload, offload)
    cycles = _cycles(a, nr, r_lv, w_lv, temporal, onload, offload,
                     lambda lv: rep[("bw", lv.name)] if lv.per_pe else lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits * 1)
    return ledger.energy, cycles


# (profile, objective) -> shape -> the chosen mapping: the profile (a deep frozen dataclass, slow to
# hash) is hashed once per lookup of a whole network, not once per layer
_SEARCHES: dict[tuple[Profile, str], dict[Shape, MappingCost]] = {}
_SEARCHES_MAX = 4096
# id(mapping) -> (mapping, its notation): built once per search result, shared by the layers using it
_NOTATIONS: dict[int, tuple[MappingCost, dict[str, object]]] = {}


def search(shape: Shape, profile: Profile, objective: str = "energy") -> MappingCost:
    """The cheapest mapping under ``objective`` (energy, latency or edp).

    Spatial: the profile's unrollings, the ``SPATIAL_KEEP`` of highest utilisation (as ZigZag's
    spatial-mapping generator keeps 3). Temporal: every distinct order of the loop prime factors, at
    most ``LPF_LIMIT`` of them after merging the smallest (LOMA, lpf_limit 6), each allocated bottom-up
    to the memory levels. Cached per (shape, profile, objective); :func:`search_many` fills the cache
    for many shapes in one numpy pass.
    """
    m = _SEARCHES.get((profile, objective), {}).get(shape)
    if m is None:
        m = search_many((shape,), profile, objective)[0]
    return m


def notation(m: MappingCost, profile: Profile) -> dict[str, object]:
    """``m.notation(profile)`` for a mapping returned by :func:`search`, built once per search result
    (the same dict for every layer of that shape: treat it as read-only)."""
    hit = _NOTATIONS.get(id(m))
    if hit is not None and hit[0] is m:
        return hit[1]
    out = m.notation(profile)
    if len(_NOTATIONS) >= _SEARCHES_MAX:
        _NOTATIONS.clear()
    _NOTATIONS[id(m)] = (m, out)
    return out


def search_many(shapes: Iterable[Shape], profile: Profile, objective: str = "energy") -> list[MappingCost]:
    """:func:`search` for every shape in ``shapes``, the ones not yet cached scored together.

    One numpy pass over every loop order of every kept unrolling of every distinct new shape (a
    network's layers share one pass instead of paying numpy's per-call overhead once per layer); each
    shape's choice is the one :func:`search` makes on its own (its rows are its own, in its order).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    shapes = list(shapes)
    if sum(map(len, _SEARCHES.values())) + 2 * len(shapes) > _SEARCHES_MAX:
        _SEARCHES.clear()
        _NOTATIONS.clear()
    cache = _SEARCHES.setdefault((profile, objective), {})
    new = dict.fromkeys(x for s in dict.fromkeys(shapes)
                        for x in ((dataclasses.replace(s, b=1), s) if s.b > 1 else (s,)) if x not in cache)
    # single-image shapes first: a batch's search compares with its single image's
    order = sorted(new, key=lambda s: s.b > 1)
    for i in range(0, len(order), _BLOCK):  # bounded memory: _BLOCK shapes per numpy pass
        _search_block(order[i:i + _BLOCK], profile, objective, cache)
    return [cache[s] for s in shapes]


def _passes(items: list[tuple[Shape, Spatial, tuple[tuple[int, int], ...], _Orders]]) -> list[list]:
    """``items`` in consecutive groups of at most ``_PASS_ROWS`` orders (one item at least): numpy's
    temporaries of a few thousand rows stay in the core's cache (1.5-2x faster than one pass of 26,000)."""
    out: list[list] = []
    rows = _PASS_ROWS
    for it in items:
        if rows + len(it[3].loop) > _PASS_ROWS:
            out.append([])
            rows = 0
        out[-1].append(it)
        rows += len(it[3].loop)
    return out


_PASS_ROWS = 6144
_BLOCK = 128  # layer shapes per numpy pass (about 2,000 rows each, 7 positions: ~16 MB per array at most)


def _search_block(new: list[Shape], profile: Profile, objective: str, cache: dict[Shape, MappingCost]) -> None:
    """Search the uncached ``new`` shapes in one numpy pass and cache the results (see search_many)."""
    if new:
        a = arch(profile)
        plans = []
        items = []
        for shape in new:
            sizes = list(_sizes(shape).values())
            ranked = []
            for sp in spatial_options(shape, a):
                ways = sp.ways()
                folds = tuple(-(-n // ways.get(d, 1)) for d, n in zip(DIMS, sizes))
                ranked.append((-(shape.macs / (math.prod(folds) * a.pes)), sp, folds))  # _utilisation
            ranked.sort(key=lambda x: x[0])  # stable: ties keep the options' order
            kept = [sp for _, sp, _ in ranked[:SPATIAL_KEEP]]
            flats = [_flat_loops(folds) for _, _, folds in ranked[:SPATIAL_KEEP]]
            plans.append((shape, kept, flats))
            items += [(shape, sp, flat, _order_tables(_pattern(flat))) for sp, flat in zip(kept, flats) if flat]
        keys = np.concatenate([np.zeros(0)] + [_key_arrays(*_score_batch(a, g), objective) for g in _passes(items)])
        lo = 0
        for shape, kept, flats in plans:
            best: tuple[float, Spatial, tuple[tuple[str, int], ...]] | None = None
            for sp, flat in zip(kept, flats):
                if not flat:
                    loops: tuple[tuple[str, int], ...] = ()
                    m = evaluate(shape, a, sp, loops)
                    key = float(_key_arrays(np.array([m.energy]), np.array([m.cycles]), objective)[0])
                else:
                    t = _order_tables(_pattern(flat))
                    seg = keys[lo:lo + len(t.loop)]
                    lo += len(t.loop)
                    k = int(np.argmin(seg))
                    key = float(seg[k])
                    loops = tuple((DIMS[flat[i][0]], flat[i][1]) for i in t.loop[k])
                if best is None or key < best[0]:
                    best = (key, sp, loops)
            assert best is not None
            chosen = evaluate(shape, a, best[1], best[2])
            if shape.b > 1:
                # the batch loop outermost around the best single-image mapping is always a valid mapping:
                # the search never does worse per image than batch 1 (the lpf limit can otherwise hide it)
                one = cache[dataclasses.replace(shape, b=1)]
                alt = evaluate(shape, a, one.spatial, (*one.loops, ("B", shape.b)))
                if float(_key_arrays(np.array([alt.energy]), np.array([alt.cycles]), objective)[0]) < best[0]:
                    chosen = alt
            cache[shape] = chosen


@lru_cache(maxsize=4096)
def _flat_loops(folds: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The temporal loops left by ``folds`` (per dimension of ``DIMS``): prime factors, merged down to
    ``LPF_LIMIT`` loops, as (dimension index, factor) in ``DIMS`` order, smallest factor first."""
    factors = _limit_factors({d: _primes(f) for d, f in zip(DIMS, folds) if f > 1}, LPF_LIMIT)
    return tuple((DIMS.index(d), f) for d in DIMS if d in factors for f in factors[d])


def clear_caches() -> None:
    """Empty every cache of this module (searches, loop factors, order tables): a cold start."""
    _SEARCHES.clear()
    _NOTATIONS.clear()
    for f in (_flat_loops, _pattern, _order_tables, _loop_orders, _permutations, _all_orders, _stay_all, arch):
        f.cache_clear()


@lru_cache(maxsize=4096)
def _pattern(flat: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """(dimension, factor) loops as (dimension, rank of the factor among that dimension's factors)."""
    ranks = {d: sorted({f for dd, f in flat if dd == d}) for d, _ in flat}
    return tuple((d, ranks[d].index(f)) for d, f in flat)


def _key_arrays(energy: np.ndarray, cycles: np.ndarray, objective: str) -> np.ndarray:
    """What the search minimises: energy (pJ), cycles, or their product (EDP)."""
    if objective == "energy":
        return energy + 1e-9 * cycles  # ties broken by latency
    if objective == "latency":
        return cycles + 1e-12 * energy
    return energy * cycles


SPATIAL_KEEP = 3
LPF_LIMIT = 6  # LOMA's default lpf_limit (zigzag.api.get_hardware_performance_zigzag)


def _limit_factors(factors: dict[str, list[int]], limit: int) -> dict[str, list[int]]:
    """Merge the smallest prime factors until at most ``limit`` loops remain (LOMA's ``lpf_limit``)."""
    out = {d: sorted(v) for d, v in factors.items()}
    total = sum(len(v) for v in out.values())
    while total > limit:
        best = None  # the smallest product of two factors (then the dimension's name)
        for k, v in out.items():
            if len(v) > 1 and (best is None or (v[0] * v[1], k) < best):
                best = (v[0] * v[1], k)
        if best is None:
            break
        v = out[best[1]]
        out[best[1]] = sorted([v[0] * v[1], *v[2:]])
        total -= 1
    return out


def _utilisation(shape: Shape, sp: Spatial, a: Arch) -> float:
    """MACs over (temporal iterations x unrolled PEs): how well the unrolling fills the array."""
    ways = sp.ways()
    iters = math.prod(-(-shape.size(d) // ways.get(d, 1)) for d in DIMS)
    return shape.macs / (iters * a.pes)
