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

:func:`evaluate` is the reference: the search scores orders with the same formulas over numpy arrays
(:mod:`hwsim.cost.mapping.batch_scorer`) and rebuilds its winner here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.cost.mapping.space import DIMS, OPERANDS, RELEVANT, Arch, Shape, Spatial, sizes
from hwsim.cost.mapping.tiles import Window, tile_elements, tiles_fit, window
from hwsim.hardware.profile import MemoryLevel, Profile

W, I, O = OPERANDS


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
    cuts: dict[str, list[int]] = {o: [] for o in OPERANDS}
    for lv, ops in a.alloc:
        start = {o: (cuts[o][-1] if cuts[o] else 0) for o in ops}
        j = max(start.values())
        shared = not lv.per_pe
        while j < n_loops and tiles_fit(lv, ops, lambda o: tile_elements(o, bounds(max(start[o], j + 1), shared),
                                                                          win), ebytes):
            j += 1
        for o in ops:
            cuts[o].append(max(start[o], j))

    macs = float(shape.macs)
    temporal = math.prod([f for _, f in loops])
    mc = {o: _multicast(true_ways, o) for o in OPERANDS}

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
                first = _first_tile(win, o, chain[0], bounds(c[0], not chain[0].per_pe), true_ways)
                onload = max(onload, first * ebytes[o])
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
                first = _first_tile(win, O, chain[0], bounds(c[0], not chain[0].per_pe), true_ways)
                offload = first * a.out_bits / 8
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


def _first_tile(win: Window, o: str, level: MemoryLevel, b: dict[str, float], true_ways: dict[str, float]) -> float:
    """Elements of the first tile of ``o`` at its innermost level (all PEs' distinct copies when per PE):
    what must arrive before the array starts (on-loading) or leave after it stops (off-loading)."""
    tile = tile_elements(o, b, win)
    if level.per_pe:
        tile *= math.prod(u for d, u in true_ways.items() if d in RELEVANT[o])
    return tile


def _multicast(true_ways: dict[str, float], o: str) -> float:
    """PEs sharing one copy of a tile (or reduced into one output): unrolled dimensions irrelevant to ``o``."""
    return math.prod(u for d, u in true_ways.items() if d not in RELEVANT[o])


