"""The cost of one mapping: LOMA's bottom-up memory allocation and ZigZag's access counts, for one loop order.

A *mapping* of one layer (Timeloop/ZigZag notation) is a spatial unrolling (:mod:`hwsim.cost.mapping.space`),
a temporal loop nest (:mod:`hwsim.cost.mapping.loop_orders`), and a **memory allocation**: for every
operand, the loops below each of its memory levels. As LOMA does, loops go to the innermost level of
each operand while its tile still fits (a memory shared by several operands holds all their tiles at
once: :func:`hwsim.cost.mapping.tiles.tiles_fit`), then to the next level, and so on up to DRAM.

Access counts for a mapping (ZigZag's ``Mapping.calc_data_access``, Mei et al., "ZigZag: Enlarging
Joint Architecture-Mapping Design Space Exploration for DNN Accelerators", IEEE TC 2021; Timeloop's
tile analysis, Parashar et al., ISPASS 2019):

- elements written into a level (its **fills**) = MACs / (the loops below it that the operand does
  not depend on x the irrelevant loops directly above it, which leave the tile in place); for inputs
  times the halo ratio of the tile (``(oy - 1) * stride + fy`` rows over ``oy * fy``);
- a level shared by the PEs sends one copy to every PE that needs it (multicast over the unrolled
  dimensions the operand does not depend on, and for inputs over the diagonal of an unrolled output and
  kernel dimension pair: :func:`hwsim.cost.mapping.space.input_overlap`) and partial sums are reduced on the
  way up; a per-PE level is read and written by each PE itself, and between two per-PE levels of an operand
  (a register under a scratchpad) each PE moves its own data: no multicast, no reduction;
- the innermost level is read once per MAC, except while the innermost loops do not change the
  operand (the word stays at the MAC: ZigZag's ``access_same_data_considered_as_no_access``);
- **outputs** travel up as partial sums and come back for further accumulation except the first time
  (read-modify-write); a level's transfers move at the partial-sum width unless only final outputs cross;
- the array's network (a profile's ``array.noc_energy_pj_per_byte``, ISCA 2016's inter-PE level) carries
  every PE's copy of a weight or input filled into a per-PE level from a shared one, and the partial sums
  passed PE to PE where several PEs reduce into one output (:func:`hwsim.cost.mapping.space.noc_boundaries`);
  charged per byte as the energy entry ``("noc", operand)``;
- transfers are counted in words of the level's port (``word_bits``); a per-PE level moves a tile to or
  from the level above in whole words per transfer (ZigZag 3.9.1's ``_calc_memory_access``: a tile of 7
  16-bit partial sums in ceil(112 / 24) = 5 words of a 24-bit port) and the MACs' reads and writes in
  whole words per element.

Cycles: the product of the temporal loop counts (compute) + the stall of the slowest memory port + the
on-loading before the array starts and the off-loading after it stops, which cannot overlap compute
(:mod:`hwsim.cost.mapping.stall`). The profile's ``latency_model`` picks the stall: ``per_period`` is
ZigZag 3.9.1's (each transfer within its window of every data-transfer period, one-off transfers
on-loaded, per-link loading added up); ``roofline`` (the default) charges each port its accesses over
the layer (on-chip memories have a read and a write port unless single-ported, DRAM one; a per-PE memory
serves its PE) and on-loads the first tiles the array needs. Array fill and drain are not modelled
(ZigZag 3.9.1 adds none for its example arrays either).

:func:`evaluate` is the reference: the search scores orders with the same formulas over numpy arrays
(:mod:`hwsim.cost.mapping.batch_scorer`) and rebuilds its winner here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.cost.mapping.bursts import port_factor, run_elements
from hwsim.cost.mapping.space import (DIMS, OPERANDS, RELEVANT, Arch, Shape, Spatial, input_overlap,
                                     noc_boundaries, sizes)
from hwsim.cost.mapping.stall import Chain, roofline, transfer_stall
from hwsim.cost.mapping.tiles import (SHARED_CUTS, Window, allocate_level, common_cut, holds_final, tile_elements,
                                     tiles_fit, window)
from hwsim.cost.weight_sets import KernelSteps
from hwsim.hardware.profile import MemoryLevel, Profile
from hwsim.schemas.profile_file import NOC

W, I, O = OPERANDS
OBJECTIVES = ("energy", "latency", "edp")


def objective_key(energy, cycles, objective: str):
    """What the search minimises (floats or numpy arrays alike): energy (pJ), cycles, or their product (EDP).

    Energy breaks its ties by cycles and latency by energy, relatively: the primary times
    ``1 + TIE * _rank(secondary)`` with ``_rank`` in [0, 1], so the secondary moves the key by at most
    ``TIE`` of the primary and never outweighs a primary lower by more than that, however large it is (an
    additive ``energy + 1e-9 * cycles`` let 1e15 stalled cycles outweigh energy)."""
    if objective == "energy":
        return energy * (1.0 + TIE * _rank(cycles))  # ties broken by latency
    if objective == "latency":
        return cycles * (1.0 + TIE * _rank(energy))  # ties broken by energy
    return energy * cycles


TIE = 1e-9  # the relative width of a tie in objective_key
_TOP = 2.0 ** 64 - 1  # _rank is 1 from here up


def _rank(x):
    """A monotone map of x >= 0 into [0, 1] in exact arithmetic (the same bits for a float and an array
    element): log2(1 + x), piecewise linear between powers of two (frexp's exponent and its mantissa's
    place), over 64, and 1 from 2**64 up (infinity too). 64 binades, not a float's 1024, keep the tie-break
    fine: a secondary 1e-5 apart still moves a key by several of its last bits."""
    m, e = np.frexp(1.0 + np.clip(x, 0.0, _TOP))
    return (e - 1 + (2.0 * m - 1.0)) / 64.0


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
    # levels (by name) whose tiles exceed their capacity under this allocation (LOMA's common cut overflows
    # where the tiles at its highest start do not fit together; the search keeps such a mapping only when no
    # mapping it scores fits: see best_mapping); a given allocation (``evaluate(cuts=...)``) may overflow
    # too, and the cost is still counted as if it fit (as Timeloop reports a mapping it would reject)
    overflow: tuple[str, ...] = ()
    # where the loops' FY and FX are the engine's kernel steps, not the layer's kernel (a depthwise or
    # part-kernel layer on a profile with weight_sets: hwsim.cost.weight_sets.kernel_steps); None: the kernel's
    kernel_steps: KernelSteps | None = None

    @property
    def cycles(self) -> float:
        return self.compute_cycles + self.stall_cycles + self.onload_cycles + self.offload_cycles

    @property
    def energy(self) -> float:
        return sum(self.energy_pj.values())

    def notation(self, profile: Profile) -> dict[str, object]:
        """The mapping in ZigZag/Timeloop notation: spatial unrolling and, per operand, loops per level; and
        ``kernel_steps`` where its FY and FX are the engine's kernel steps (:class:`KernelSteps`)."""
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
        out: dict[str, object] = {
            "spatial": {"rows": [list(x) for x in self.spatial.rows], "cols": [list(x) for x in self.spatial.cols]},
            "temporal_innermost_first": per_operand}
        if self.kernel_steps is not None:  # FY counts kernel steps and FX taps per step: said, not left to guess
            out["kernel_steps"] = self.kernel_steps.record()
        return out


def evaluate(shape: Shape, a: Arch, spatial: Spatial, loops: tuple[tuple[str, int], ...], *,
             cuts: dict[str, tuple[int, ...]] | None = None, objective: str = "energy",
             allocations: list[dict[str, list[int]]] | None = None) -> MappingCost:
    """Allocate ``loops`` (innermost first) to every operand's levels bottom-up (LOMA) and count accesses.

    A memory shared by several operands is allocated both ways (:data:`hwsim.cost.mapping.tiles.SHARED_CUTS`):
    one common cut for all its operands (:func:`~hwsim.cost.mapping.tiles.common_cut`), and ZigZag 3.9.1's
    own cut per operand (:func:`~hwsim.cost.mapping.tiles.allocate_level`); where they differ, the one
    ``objective`` (:func:`objective_key`) prefers is kept, the common cut on ties; an allocation whose
    tiles fit every level is kept before one that overflows a level (:func:`preferred`). The allocation is
    one more dimension of the search: ZigZag's greedy per-operand choice (it minimises a traffic
    estimate of its own) can be worse than the common cut, and the common cut re-reads an operand that
    ZigZag's allocation keeps whole.

    ``cuts``: a given memory allocation instead of LOMA's: per operand, the number of temporal loops
    (innermost first) below each of its levels, innermost level first (``a.chains[o][:-1]``, i.e.
    ``profile.chain(o)[::-1]`` without DRAM; a last entry for DRAM, equal to ``len(loops)``, may be
    given), as :attr:`MappingCost.cuts` stores it. The result's ``overflow`` names the levels whose
    tiles do not fit (a given allocation is costed all the same).

    ``allocations``: LOMA's allocations when the caller has them already (the search's batch has), in the
    order above (the common cut first): each is costed and the one ``objective`` prefers kept, the first
    on ties, instead of allocating here (the same cuts: the batch allocates by the same rules). One
    allocation when the batch's scores tell the two apart by far more than their rounding.

    Elements crossing the boundary below a level (its fills) = MACs / (the product of the loops below
    it that the operand does not depend on, times the irrelevant loops directly above: stationarity);
    for inputs times the halo ratio (window rows x cols over OY*FY x OX*FX) of the tile. This is
    ZigZag's ``data_access_raw`` (MACs over the irrelevant-loop product, exact with uneven unrolling)
    and Timeloop's tile x tile-changes for the halo.
    """
    given = cuts
    n_loops = len(loops)
    folds = dict.fromkeys(DIMS, 1)
    for d, f in loops:
        folds[d] *= f
    ways_int = spatial.ways()
    size = sizes(shape)
    true_ways = {d: size[d] / folds[d] for d in ways_int}  # uneven unrolling: 128 on 14 -> 12.8
    cum: list[dict[str, int]] = [dict.fromkeys(DIMS, 1)]
    for d, f in loops:
        nxt = dict(cum[-1])
        nxt[d] *= f
        cum.append(nxt)
    memo: dict[tuple[int, bool], dict[str, float]] = {}
    win = window(shape)

    def bounds(j: int, shared: bool) -> dict[str, float]:
        b = memo.get((j, shared))
        if b is None:
            c = cum[j]
            if shared:
                b = {d: float(min(c[d] * ways_int.get(d, 1), size[d])) for d in DIMS}
            else:
                b = {d: float(min(c[d], size[d])) for d in DIMS}
            memo[(j, shared)] = b
        return b

    # allocation (LOMA): levels innermost first; a memory shared by several operands holds all their tiles
    ebytes = a.ebytes
    ir_out = [1]  # the product of the loops below each position that outputs do not depend on (reduction)
    below = [1]  # the product of all loops below each position
    for d, f in loops:
        ir_out.append(ir_out[-1] * (1 if d in RELEVANT[O] else f))
        below.append(below[-1] * f)
    temporal_iters = below[-1]

    def held(lv: MemoryLevel, start_out: int) -> dict[str, float]:
        """Bytes per element of each operand as ``lv`` holds it: outputs at the output width where the
        level only ever sees final outputs (see :func:`hwsim.cost.mapping.tiles.holds_final`)."""
        if O in lv.operands and holds_final(a, lv, ir_out[start_out] == ir_out[-1]):
            return {**ebytes, O: a.out_bits / 8}
        return ebytes

    levels: dict[tuple[object, ...], dict[str, int]] = {}  # a level's cuts, by its starts (shared by the modes)
    tiles: dict[tuple[str, int, bool, float], float] = {}  # bytes of a tile, by operand, position, span, width

    def allocation(mode: str) -> dict[str, list[int]]:
        """LOMA's cuts, a shared level cut as ``mode`` says (one of ``SHARED_CUTS``)."""
        cuts: dict[str, list[int]] = {o: [] for o in OPERANDS}
        for lv, ops in a.alloc:
            shared = not lv.per_pe
            start = {o: (cuts[o][-1] if cuts[o] else 0) for o in ops}
            key = (lv.name, mode if len(ops) > 1 else "", *start.values())
            pick = levels.get(key)
            if pick is None:
                eb = held(lv, start.get(O, 0))

                def size(o: str, j: int, eb: dict[str, float] = eb, shared: bool = shared) -> float:
                    k = (o, j, shared, eb[o])
                    s = tiles.get(k)
                    if s is None:
                        s = tiles[k] = tile_elements(o, bounds(j, shared), win) * eb[o]
                    return s

                if mode == "common" and len(ops) > 1:
                    pick = common_cut(lv.size_bytes, ops, start, n_loops, size)
                else:
                    pick = allocate_level(lv.size_bytes, ops, start, n_loops, size,
                                          lambda j: temporal_iters / below[j])
                levels[key] = pick
            for o in ops:
                cuts[o].append(pick[o])
        return cuts

    if given is not None:
        return _counted(shape, a, spatial, loops, _given_cuts(a, given, n_loops), held, bounds, win, true_ways)
    if allocations:
        best = _counted(shape, a, spatial, loops, allocations[0], held, bounds, win, true_ways)
        for each in allocations[1:]:
            if each != allocations[0]:
                other = _counted(shape, a, spatial, loops, each, held, bounds, win, true_ways)
                if preferred(other, best, objective):
                    best = other
        return best
    common = allocation(SHARED_CUTS[0])
    each = allocation(SHARED_CUTS[1]) if any(len(ops) > 1 for _, ops in a.alloc) else common
    best = _counted(shape, a, spatial, loops, common, held, bounds, win, true_ways)
    if each != common:
        other = _counted(shape, a, spatial, loops, each, held, bounds, win, true_ways)
        if preferred(other, best, objective):
            best = other
    return best


def preferred(m: MappingCost, than: MappingCost, objective: str) -> bool:
    """Whether the search prefers ``m`` to ``than``: a mapping whose tiles fit every level before one that
    overflows a level (ZigZag and Timeloop reject the latter), then the lesser :func:`objective_key`
    (``than`` on ties)."""
    if bool(m.overflow) != bool(than.overflow):
        return not m.overflow
    return objective_key(m.energy, m.cycles, objective) < objective_key(than.energy, than.cycles, objective)


def _counted(shape: Shape, a: Arch, spatial: Spatial, loops: tuple[tuple[str, int], ...],
             cuts: dict[str, list[int]], held, bounds, win: Window, true_ways: dict[str, float]) -> MappingCost:
    """The cost of ``loops`` under the allocation ``cuts`` (see :func:`evaluate`; ``held`` and ``bounds``
    are its per-level element widths and per-position loop bounds)."""
    n_loops = len(loops)
    ebytes = a.ebytes
    overflow = tuple(lv.name for lv, ops in a.alloc
                     if not tiles_fit(lv, ops, lambda o, lv=lv: tile_elements(
                         o, bounds(cuts[o][a.chains[o].index(lv)], not lv.per_pe), win),
                                      held(lv, cuts[O][a.chains[O].index(lv) - 1] if lv in a.chains[O][1:] else 0)))

    macs = float(shape.macs)
    temporal = math.prod([f for _, f in loops])
    mc = {o: _multicast(true_ways, o) for o in OPERANDS}
    # PEs one read of the level above the array reaches: the multicast, for inputs also the diagonal reuse of
    # an unrolled output/kernel pair (space.input_overlap); a shared level's own fills count it in its tile
    sent = {**mc, I: mc[I] * input_overlap(true_ways, shape.sy, shape.sx)}

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
            n *= tile_elements(I, b, win) / (b["B"] * b["G"] * b["C"] * rel)
        return _tidy(n)

    reads: dict[tuple[str, str], float] = {}
    writes: dict[tuple[str, str], float] = {}
    energy: dict[tuple[str, str], float] = {}

    def add(level: MemoryLevel, o: str, r: float, r_bits: int, w: float, w_bits: int,
            r_tile: int | None = None, w_tile: int | None = None) -> None:
        key = (level.name, o)
        reads[key] = reads.get(key, 0.0) + r * r_bits / 8
        writes[key] = writes.get(key, 0.0) + w * w_bits / 8
        if level.per_pe:  # whole words per transfer: a tile moved to or from the level above packs into
            # ceil(tile x bits / word) words, an element read by the MACs takes ceil(bits / word)
            rw, ww = _words(r, r_bits, level, _pe_tile(o, r_tile)), _words(w, w_bits, level, _pe_tile(o, w_tile))
        else:
            rw, ww = r * r_bits / level.word_bits, w * w_bits / level.word_bits
        energy[key] = energy.get(key, 0.0) + rw * level.read_energy_pj + ww * level.write_energy_pj
        if level.burst_bytes:  # port time in bursts of the runs of the tile moved (below the cut r_tile/w_tile,
            # over the whole array: a shared level moves every PE's tile of a per-PE child in one go)
            rw *= port_factor(level, o, run_elements(o, bounds(r_tile, True), full, win), r_bits, full=full) \
                if r_tile is not None else 1.0
            ww *= port_factor(level, o, run_elements(o, bounds(w_tile, True), full, win), w_bits, full=full) \
                if w_tile is not None else 1.0
        r_acc[level.name] = r_acc.get(level.name, 0.0) + rw
        w_acc[level.name] = w_acc.get(level.name, 0.0) + ww

    def _pe_tile(o: str, j: int | None) -> float:
        """Elements one PE's tile below position ``j`` holds (1: the MACs' own reads and writes, or where
        every width is whole words: then packing changes nothing)."""
        return 1.0 if j is None or not packs else float(tile_elements(o, bounds(j, False), win))

    packs = any(b % lv.word_bits for lv, _ in a.alloc if lv.per_pe for b in (*a.bits.values(), a.out_bits))

    r_acc: dict[str, float] = {}
    w_acc: dict[str, float] = {}
    full = sizes(shape)
    n_out = float(shape.b * shape.g * shape.k * shape.oy * shape.ox)
    onload = offload = 0.0
    for o in OPERANDS:
        chain, c = a.chains[o], cuts[o]
        # into[i]: elements written into chain[i] from its parent (all PEs' copies when per PE); down[i]:
        # elements chain[i+1] sends down for them: one copy multicast to the PEs that share it where a
        # shared parent feeds a per-PE child, each PE's own where the parent is per PE too (no multicast
        # between two levels of one PE)
        into = [fills(o, c[i], not lv.per_pe) for i, lv in enumerate(chain[:-1])]
        down = [into[i] / _fanout(chain[i], chain[i + 1], sent[o]) for i in range(len(into))]
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
                r = (macs / held / (1.0 if lv.per_pe else sent[o])) if i == 0 else down[i - 1]
                w = into[i] if i < len(into) else 0.0
                add(lv, o, r, a.bits[o], w, a.bits[o], c[i - 1] if i else None,
                    c[i] if i < len(into) else None)
            for i in noc_boundaries(a, o) if a.noc_pj else ():  # every PE's copy crosses the array's network
                energy[(NOC, o)] = energy.get((NOC, o), 0.0) + into[i] * a.bits[o] / 8 * a.noc_pj
            if len(chain) > 1:
                first = _first_tile(win, o, chain[0], bounds(c[0], not chain[0].per_pe), true_ways)
                onload = max(onload, first * ebytes[o])
        else:
            # up[i]: output elements chain[i] sends up (partial or final); back[i]: partial sums it gets back;
            # each output leaves at least once, once per PE holding a part of it where the parent is per PE
            final = [n_out * (mc[O] if chain[i + 1].per_pe else 1.0) for i in range(len(down))]
            up = [max(x, f) for x, f in zip(down, final)]
            back = [u - f for u, f in zip(up, final)]
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
                child = c[i - 1] if i else None
                own = c[i] if i < len(into) else None
                add(lv, O, r_child, ps if i == 0 else bits_in, w_child, bits_in, child, child)
                add(lv, O, r_up, bits_up, w_back, ps, own, own)
            for i in noc_boundaries(a, O) if a.noc_pj else ():  # partial sums passed PE to PE on the way up
                energy[(NOC, O)] = energy.get((NOC, O), 0.0) + up[i] * (mc[O] - 1.0) * ps / 8 * a.noc_pj
            if len(chain) > 1:
                first = _first_tile(win, O, chain[0], bounds(c[0], not chain[0].per_pe), true_ways)
                offload = first * a.out_bits / 8
    energy[("mac", "mac")] = macs * a.mac_pj

    def bw(lv: MemoryLevel) -> float:
        """Port accesses per cycle; a per-PE memory serves its own PE (the active PEs share the load)."""
        return lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits * (macs / temporal if lv.per_pe else 1)

    if a.per_period:  # ZigZag 3.9.1's model (hwsim.cost.mapping.stall)
        fw, size = floor_ways(shape, loops, spatial), sizes(shape)
        stall, on_c, off_c = (float(x) for x in transfer_stall(
            a, float(temporal), {o: _chain(a, o, loops, cuts[o], win, fw, size) for o in OPERANDS}, a.bits[O],
            True))
    else:
        stall, on_c, off_c = (float(x) for x in roofline(a, r_acc, w_acc, float(temporal), bw, onload, offload))
    bound, worst = "compute", 0.0
    seen: set[str] = set()
    outer = a.chains[W][-1].name
    for o in OPERANDS if stall > 0 else ():  # the level whose port is busiest beyond the compute (the report's)
        for lv in a.chains[o]:
            if lv.name not in seen:
                seen.add(lv.name)
                r, w = r_acc.get(lv.name, 0.0), w_acc.get(lv.name, 0.0)
                t = (r + w - (onload + offload) * 8 / lv.word_bits if lv.name == outer else max(r, w)) / bw(lv)
                if t - temporal > worst or bound == "compute" and a.per_period:
                    bound, worst = lv.name, t - temporal
    return MappingCost(spatial=spatial, loops=loops, cuts={o: tuple(v) for o, v in cuts.items()}, reads=reads,
                       writes=writes, energy_pj=energy, compute_cycles=int(temporal), stall_cycles=stall,
                       onload_cycles=on_c, offload_cycles=off_c, bound=bound,
                       overflow=overflow)


def _words(n: float, bits, level: MemoryLevel, tile: float = 1.0):
    """Port words of ``n`` elements of ``bits`` moved to or from a per-PE ``level`` in transfers of
    ``tile`` elements each: every transfer takes whole words, ``ceil(tile x bits / word_bits)`` (ZigZag 3.9.1,
    ``CostModelEvaluation._calc_memory_access``: ``ceil(data_elem_move_per_period x data_precision / min_bw)``
    per period; the batch scorer's ``Ledger.add`` counts the same)."""
    return n / tile * math.ceil(tile * bits / level.word_bits)


# dimensions ZigZag counts relevant for the double-buffer check (its r loops: for inputs not the partly
# relevant OY, OX, FY, FX)
ZZ_R = {W: RELEVANT[W], I: frozenset({"B", "G", "C"}), O: RELEVANT[O]}


def floor_ways(shape: Shape, loops: tuple[tuple[str, int], ...], spatial: Spatial) -> dict[str, int]:
    """The unrolling ZigZag's latency model counts with: each dimension's ways rounded down (its
    ``spatial_mapping_int``: 128 on 14 lanes in 10 folds is 12.8 ways, counted as 12)."""
    folds = dict.fromkeys(DIMS, 1)
    for d, f in loops:
        folds[d] *= f
    size = sizes(shape)
    return {d: size[d] // folds[d] for d in spatial.ways()}


def _chain(a: Arch, o: str, loops: tuple[tuple[str, int], ...], c: list[int], win: Window,
           ways: dict[str, int], size: dict[str, int]) -> Chain:
    """``o``'s transfers for :func:`hwsim.cost.mapping.stall.transfer_stall`: periods, windows and tiles
    per level of its chain under the cuts ``c``, with the unrolling ``ways`` (:func:`floor_ways`)."""
    n, rel, zr = len(loops), RELEVANT[o], ZZ_R[o]
    chain = a.chains[o]
    ks = []
    for j in c:
        while j < n and loops[j][0] not in rel:
            j += 1
        ks.append(j)
    first = 0
    while first < n and loops[first][0] not in rel:
        first += 1
    pe = math.prod(u for d, u in ways.items() if d in rel)
    period, window, top_r, tile, bits, boost, back = [], [], [], [], [], [], []
    lo = 0
    reduced = [math.prod(f for d, f in loops[k:] if d not in RELEVANT[O]) for k in range(n + 1)]
    for i, (lv, k) in enumerate(zip(chain[:-1], ks)):
        period.append(float(math.prod(f for _, f in loops[:k])))
        ir = r = 1
        for d, f in reversed(loops[lo:k]):
            if d in rel:
                break
            ir *= f
        for d, f in reversed(loops[lo:k]):
            if d not in zr:
                break
            r *= f
        window.append(period[-1] / ir)
        top_r.append(float(r))
        b = dict.fromkeys(DIMS, 1)
        for d, f in loops[:c[i]]:
            b[d] *= f
        tile.append(float(tile_elements(o, {d: float(min(b[d] * (1 if lv.per_pe else ways.get(d, 1)), size[d]))
                                             for d in DIMS}, win)))
        boost.append(float(pe) if lv.per_pe and not chain[i + 1].per_pe else 1.0)
        if o == O:
            back.append(reduced[k] > 1)
            bits.append(a.bits[O] if back[-1] else a.out_bits)
        else:
            bits.append(a.bits[o])
        lo = k
    return Chain(period=period, window=window, top_r=top_r, tile=tile, bits=bits, boost=boost,
                 mac_period=float(math.prod(f for _, f in loops[:first])) if o != O else 1.0,
                 mac_boost=1.0 if chain[0].per_pe else float(pe), mac_bits=a.bits[o],
                 back=back if o == O else None, mac_back=reduced[0] > 1)


def _given_cuts(a: Arch, given: dict[str, tuple[int, ...]], n_loops: int) -> dict[str, list[int]]:
    """``given`` checked against the profile and the loop count (see :func:`evaluate`'s ``cuts``)."""
    out: dict[str, list[int]] = {}
    for o in OPERANDS:
        if o not in given:
            raise ValueError(f"cuts: no allocation for {o} (operands: {', '.join(OPERANDS)})")
        levels = a.chains[o][:-1]
        c = [int(x) for x in given[o]]
        if len(c) == len(levels) + 1 and c[-1] == n_loops:
            c = c[:-1]
        if len(c) != len(levels):
            raise ValueError(f"cuts[{o!r}]: {len(c)} cuts for {len(levels)} on-chip levels "
                             f"({', '.join(lv.name for lv in levels)}), innermost first")
        if any(x < 0 or x > n_loops for x in c) or any(x > y for x, y in zip(c, c[1:])):
            raise ValueError(f"cuts[{o!r}] = {tuple(c)}: each cut must lie in 0..{n_loops} and none below the "
                             "one of the level inside it")
        out[o] = c
    return out


def _tidy(x: float) -> float:
    """Snap a count to the integer it is meant to be (halo ratios leave 59535.999...)."""
    r = round(x)
    return float(r) if abs(x - r) <= 1e-9 * max(1.0, abs(x)) else x


def _first_tile(win: Window, o: str, level: MemoryLevel, b: dict[str, float], true_ways: dict[str, float]) -> float:
    """Elements of the first tile of ``o`` at its innermost level (all PEs' distinct copies when per PE):
    what must arrive before the array starts (on-loading) or leave after it stops (off-loading)."""
    tile = tile_elements(o, b, win)
    if level.per_pe:
        tile *= math.prod(u for d, u in true_ways.items() if d in RELEVANT[o])
    return tile


def _fanout(child: MemoryLevel, parent: MemoryLevel, multicast: float) -> float:
    """Copies of one element of ``parent`` that ``child``'s fills count: the PEs it is multicast to (or
    reduced from) where a level shared by the PEs feeds a per-PE one; 1 between two levels of one PE (each
    PE moves its own data) and between two shared levels."""
    return multicast if child.per_pe and not parent.per_pe else 1.0


def _multicast(true_ways: dict[str, float], o: str) -> float:
    """PEs sharing one copy of a tile (or reduced into one output): unrolled dimensions irrelevant to ``o``."""
    return math.prod(u for d, u in true_ways.items() if d not in RELEVANT[o])


