"""The vectorised scorer: energy and cycles of every loop order of many (layer, unrolling) items at once.

The formulas of :func:`hwsim.cost.mapping.one_mapping.evaluate`, over numpy arrays with one row per
candidate order (ZigZag's cost model, run for a whole LOMA enumeration in one pass). Speed without
changing the answer (a test holds the search to a brute force over ``evaluate``):

- **subset tables**: everything an order's cost depends on is a function of a few *sets* of loops: the
  tile below a cut (the loops below it), and the loops a tile stays in place for (those below the next
  loop the operand depends on: ZigZag's and Timeloop's stationarity). With at most 6 loops there are 64
  subsets, so tile extents, halos, fit tests and irrelevant-loop products are computed once per subset
  and gathered per order (products of integer loop counts are exact in any order), instead of once per
  (order, position);
- **many items per pass**: every new layer shape of a network and each of its kept unrollings are rows
  of shared numpy passes of a few thousand orders each (small enough for the temporaries to stay in
  cache), so numpy's per-call cost is not paid once per layer;
- **branch and bound** (:func:`search_batch`, the search's scorer): a memory shared by several operands
  is allocated two ways (one common cut, and ZigZag's cut per operand), but the second allocation's
  combination search and its scoring are spent only on the few orders a lower bound of their score does
  not rule out: an order that cannot beat its item's best common-cut score keeps that score, which
  changes neither any item's least score nor the order that reaches it (see :func:`_bounded`);
- **a small peak**: a pass keeps few row arrays alive at once (per-item values repeated where used, the
  subset tables' inputs freed before the per-order arithmetic, cut positions as bytes), about 300 bytes
  per row, so the heap glibc grows for one pass stays under its trim threshold and is reused by the
  next instead of returned to the system and faulted in again (see ``best_mapping._PASS_ROWS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from hwsim.cost.mapping.bursts import port_factor, run_elements
from hwsim.cost.mapping.loop_orders import Orders
from hwsim.cost.mapping.one_mapping import objective_key
from hwsim.cost.mapping.space import DIMS, OPERANDS, RELEVANT, Arch, Shape, Spatial, input_overlap, noc_boundaries
from hwsim.cost.mapping.stall import Chain, roofline, transfer_stall
from hwsim.cost.mapping.tiles import SHARED_CUTS, Window, tile_elements
from hwsim.hardware.profile import MemoryLevel

W, I, O = OPERANDS
# one row group of a pass: (layer, unrolling, its loops as (dimension index, factor), their orders)
Item = tuple[Shape, Spatial, tuple[tuple[int, int], ...], Orders]


def columns(b: np.ndarray) -> dict[str, np.ndarray]:
    """Bounds arrays (..., dimension of ``DIMS``) as :func:`tile_elements` reads them."""
    return {d: b[..., k] for k, d in enumerate(DIMS)}


class Ledger:
    """Energy (pJ) and words read/written per level of a batch of candidate mappings (:meth:`add`); with
    ``part`` (an array of zeros), also the energy of the charges tagged for it apart (see
    :func:`charge_traffic`'s ``split``)."""

    __slots__ = ("energy", "r_lv", "w_lv", "part")

    def __init__(self, energy: np.ndarray, part: np.ndarray | None = None) -> None:
        self.energy = energy
        self.r_lv: dict[str, np.ndarray] = {}
        self.w_lv: dict[str, np.ndarray] = {}
        self.part = part

    def add(self, lv: MemoryLevel, r: np.ndarray | float, r_bits: np.ndarray | float, w: np.ndarray | float,
            w_bits: np.ndarray | float, tag: int = 0, r_port: np.ndarray | float = 1.0,
            w_port: np.ndarray | float = 1.0, r_tile: np.ndarray | float = 1.0,
            w_tile: np.ndarray | float = 1.0) -> None:
        """Charge ``r`` reads of ``r_bits`` and ``w`` writes of ``w_bits`` at ``lv`` (whole words per PE);
        ``tag``: 1 adds the reads' energy to ``part`` as well, 2 the writes', 3 both; ``r_port``/``w_port``:
        port time per word of the reads/writes (:func:`hwsim.cost.mapping.bursts.port_factor`), not energy;
        ``r_tile``/``w_tile``: elements per transfer at a per-PE level, each transfer whole words
        (:func:`hwsim.cost.mapping.one_mapping._words`)."""
        if lv.per_pe:
            rw = r / r_tile * np.ceil(r_tile * r_bits / lv.word_bits)
            ww = w / w_tile * np.ceil(w_tile * w_bits / lv.word_bits)
        else:
            rw, ww = r * r_bits / lv.word_bits, w * w_bits / lv.word_bits
        energy = self.energy + rw * lv.read_energy_pj
        energy += ww * lv.write_energy_pj  # in place: one row array fewer alive (a small peak)
        self.energy = energy
        self.r_lv[lv.name] = self.r_lv.get(lv.name, 0.0) + rw * r_port
        self.w_lv[lv.name] = self.w_lv.get(lv.name, 0.0) + ww * w_port
        if tag and self.part is not None:
            if tag & 1:
                self.part = self.part + rw * lv.read_energy_pj
            if tag & 2:
                self.part = self.part + ww * lv.write_energy_pj

    def noc(self, pj: np.ndarray) -> None:
        """Charge ``pj`` of the array's network (no port: :func:`hwsim.cost.mapping.space.noc_boundaries`)."""
        self.energy = self.energy + pj


def charge_traffic(a: Arch, n: int, cuts: dict[str, list[np.ndarray]], macs: float | np.ndarray,
                   n_out: float | np.ndarray, mc: dict[str, float | np.ndarray], fills: Callable,
                   add: Callable, first_tile: Callable, held_of: Callable[[str], np.ndarray],
                   split: MemoryLevel | None = None, run_of: Callable | None = None,
                   tile_of: Callable | None = None, full: dict[str, np.ndarray] | None = None,
                   noc: Callable[[np.ndarray], None] | None = None, overlap: float | np.ndarray = 1.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Charge every operand's reads and writes along its chain (``add``) for ``n`` candidate mappings at
    once; return the first tile's onload and offload bytes. ``held_of(o)``: the MACs a word of weights or
    inputs serves where it lands before it is fetched again. Called once per batch (vectorised over
    the candidates) by :func:`score_batch` and by the tests' per-order reference scorer.

    ``split``: a level shared by the PEs that is the last on-chip level of the operands it holds; the
    charges that depend on its cuts (its fills and what it sends up, and the DRAM traffic above it) are
    tagged for :class:`Ledger`'s ``part`` (``add``'s sixth argument); :func:`split_energy` computes the
    same charges from the fills alone.

    ``run_of(o, j)``: the contiguous run (elements) of the tile of ``o`` below position ``j`` over the array
    (:func:`hwsim.cost.mapping.bursts.run_elements`); given, a level with a burst charges its port in bursts
    (``add``'s ``r_port``/``w_port``, as :func:`hwsim.cost.mapping.one_mapping.evaluate` does); ``full``: each
    candidate's layer bounds ``C`` and ``G``, for a level's ``input_block_depth``.

    ``tile_of(o, j)``: one PE's tile of ``o`` below position ``j`` (elements): a per-PE level moves its
    tiles in whole words per transfer (``add``'s ``r_tile``/``w_tile``).

    ``noc(pj)``: charges the array's network (:meth:`Ledger.noc`), needed where the profile prices it
    (``a.noc_pj``): what crosses it as :func:`hwsim.cost.mapping.one_mapping.evaluate` counts it
    (:func:`hwsim.cost.mapping.space.noc_boundaries`).

    ``overlap``: the input reads a shared level sends towards the array are divided by it as well as by the
    multicast (:func:`hwsim.cost.mapping.space.input_overlap`); ``fills`` counts it in a shared level's tile."""
    ebytes = a.ebytes
    if a.noc_pj and noc is None:
        raise ValueError("the profile prices the array's network (noc_pj): charge_traffic needs noc")

    def port(lv: MemoryLevel, o: str, j: np.ndarray | None, bits: np.ndarray | float) -> dict[str, object]:
        """``add``'s port factor for a transfer of the tile below ``j`` (none: the MACs' own reads)."""
        if j is None or run_of is None or not lv.burst_bytes:
            return {}
        return {"f": port_factor(lv, o, run_of(o, j), bits, np.minimum, np.maximum, full, np.where)}

    def ports(r: dict[str, object], w: dict[str, object]) -> dict[str, object]:
        return {**({"r_port": r["f"]} if r else {}), **({"w_port": w["f"]} if w else {})}

    def tiles(lv: MemoryLevel, o: str, r: np.ndarray | None, w: np.ndarray | None) -> dict[str, object]:
        """``add``'s elements per transfer at a per-PE level (of the tiles below ``r`` and ``w``)."""
        if not lv.per_pe or tile_of is None or not packs:  # every width whole words: packing changes nothing
            return {}
        return {**({"r_tile": tile_of(o, r)} if r is not None else {}),
                **({"w_tile": tile_of(o, w)} if w is not None else {})}

    packs = any(b % lv.word_bits for lv, _ in a.alloc if lv.per_pe for b in (*a.bits.values(), a.out_bits))
    sent = {**mc, I: mc[I] * overlap}  # PEs one read towards the array reaches (as evaluate's ``sent``)
    onload = np.zeros(n)
    offload = np.zeros(n)
    for o in OPERANDS:
        chain, c = a.chains[o], cuts[o]
        top = len(chain) - 2 if split is not None and len(chain) > 1 and chain[-2] is split else -2
        into = [fills(o, c[i], not lv.per_pe) for i, lv in enumerate(chain[:-1])]
        # between two per-PE levels each PE moves its own data: the multicast divides only where a shared parent
        # feeds a per-PE child (as one_mapping.evaluate counts them)
        down = [into[i] / (sent[o] if chain[i].per_pe and not chain[i + 1].per_pe else 1.0)
                for i in range(len(into))]
        if o in (W, I):
            if chain[0].word_bits >= a.bits[o]:
                held = held_of(o)
            else:
                held = np.ones(n)
            for i, lv in enumerate(chain):
                r = macs / held / (1.0 if lv.per_pe else sent[o]) if i == 0 else down[i - 1]
                w = into[i] if i < len(into) else 0.0
                add(lv, r, a.bits[o], w, a.bits[o], 2 if i == top else 1 if i == top + 1 else 0,
                    **ports(port(lv, o, c[i - 1] if i else None, a.bits[o]),
                            port(lv, o, c[i] if i < len(into) else None, a.bits[o])),
                    **tiles(lv, o, c[i - 1] if i else None, c[i] if i < len(into) else None))
            for i in noc_boundaries(a, o) if a.noc_pj else ():  # every PE's copy crosses the array's network
                noc(into[i] * a.bits[o] / 8 * a.noc_pj)
            if len(chain) > 1:
                onload = np.maximum(onload, first_tile(o, chain[0], c[0]) * ebytes[o])
        else:
            # each output leaves at least once, once per PE holding part of it where the parent is per PE too
            final = [n_out * mc[O] if chain[i + 1].per_pe else n_out for i in range(len(down))]
            up = [np.maximum(x, f) for x, f in zip(down, final)]
            del down  # not charged: two row arrays fewer alive (a small peak)
            back = [u - f for u, f in zip(up, final)]
            ps, fin = a.bits[O], a.out_bits
            for i, lv in enumerate(chain):
                bits_up = np.where(back[i] > 0.5, ps, fin) if i < len(up) else fin
                if i == 0:
                    red = 1.0 if lv.per_pe else mc[O]
                    add(lv, macs / red, ps, macs / red, ps)
                else:
                    bits_in = np.where(back[i - 1] > 0.5, ps, fin)
                    child = port(lv, O, c[i - 1], bits_in)
                    add(lv, back[i - 1], bits_in, up[i - 1], bits_in, 3 if i == top + 1 else 0, **ports(child, child),
                        **tiles(lv, O, c[i - 1], c[i - 1]))
                own = i < len(into)
                if lv.per_pe and own:
                    r_up = np.maximum(into[i], n_out * mc[O])
                    add(lv, r_up, bits_up, r_up - n_out * mc[O], ps,
                        **ports(port(lv, O, c[i], bits_up), port(lv, O, c[i], ps)), **tiles(lv, O, c[i], c[i]))
                else:
                    add(lv, up[i] if i < len(up) else 0.0, bits_up, back[i] if i < len(back) else 0.0, ps,
                        3 if i == top else 0, **ports(port(lv, O, c[i] if own else None, bits_up),
                                                      port(lv, O, c[i] if own else None, ps)),
                        **tiles(lv, O, c[i] if own else None, c[i] if own else None))
            for i in noc_boundaries(a, O) if a.noc_pj else ():  # partial sums passed PE to PE on the way up
                noc(up[i] * (mc[O] - 1.0) * ps / 8 * a.noc_pj)
            if len(chain) > 1:
                offload = first_tile(O, chain[0], c[0]) * a.out_bits / 8
    return onload, offload


def cycles_of(temporal: np.ndarray | float, stall: np.ndarray, onload: np.ndarray, offload: np.ndarray
              ) -> np.ndarray:
    """Cycles of candidate mappings: the temporal loops, the stall, the on-loading and the off-loading
    (:func:`stall_of`), in that order (the same float sums as ``MappingCost.cycles``)."""
    return temporal + stall + onload + offload


def stall_of(a: Arch, cuts: dict[str, list[np.ndarray]], prefix: np.ndarray, prod: np.ndarray,
             ir: dict[str, np.ndarray], zr_i: np.ndarray, tile: Callable[[str, bool, np.ndarray], np.ndarray],
             pe: dict[str, np.ndarray | float], temporal: np.ndarray | float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ZigZag's per-period stall, on-loading and off-loading (:func:`hwsim.cost.mapping.stall.transfer_stall`)
    of many orders at once, from the loops below each position: ``prefix`` (positions, orders) their subset
    ids (global), ``prod`` per subset id the product of its loops, ``ir[o]`` that of the loops ``o`` does
    not depend on,
    ``zr_i`` that of the input's B, G, C loops (ZigZag's relevant loops of inputs, not the partly
    relevant OY, OX, FY, FX); ``tile(o, shared, j)`` the elements of ``o``'s tile below positions ``j``;
    ``pe[o]`` the PEs with distinct data of ``o`` (integer unrolling). As
    :func:`hwsim.cost.mapping.one_mapping._chain` builds them position by position."""
    npos, nr = prefix.shape
    base = np.arange(nr)
    loops_prod = prod[prefix]  # (positions, orders)

    def at(x: np.ndarray, j: np.ndarray) -> np.ndarray:
        return x.ravel()[j * nr + base]

    ir_out_all = ir[O][prefix[-1]]
    chains = {}
    for o in OPERANDS:
        irp = ir[o][prefix]
        rel = irp[1:] == irp[:-1]  # the loop at each position is one ``o`` depends on (padding: factor 1)
        zp = zr_i[prefix] if o == I else None
        zr = (zp[1:] != zp[:-1]) if o == I else rel
        nxt = np.empty((npos, nr), dtype=np.intp)  # the first position at or above j of a loop o depends on
        nxt[-1] = npos - 1
        for j in range(npos - 2, -1, -1):
            nxt[j] = np.where(rel[j], j, nxt[j + 1])
        last_rel = np.full((npos, nr), -1, dtype=np.intp)  # the last position below j of a loop o depends on
        last_nzr = np.full((npos, nr), -1, dtype=np.intp)  # ... of a loop outside ZigZag's relevant ones
        for j in range(1, npos):
            last_rel[j] = np.where(rel[j - 1], j - 1, last_rel[j - 1])
            last_nzr[j] = np.where(zr[j - 1], last_nzr[j - 1], j - 1)
        chain = a.chains[o]
        period, window, top_r, tiles, bits, boost, back = [], [], [], [], [], [], []
        lo = np.zeros(nr, dtype=np.intp)
        for i, lv in enumerate(chain[:-1]):
            c = cuts[o][i].astype(np.intp)
            k = at(nxt, c)
            p = at(loops_prod, k)
            period.append(p)
            window.append(at(loops_prod, np.maximum(lo, at(last_rel, k) + 1)))
            top_r.append(p / at(loops_prod, np.maximum(lo, at(last_nzr, k) + 1)))
            tiles.append(tile(o, not lv.per_pe, c))
            boost.append(pe[o] if lv.per_pe and not chain[i + 1].per_pe else 1.0)
            if o == O:
                back.append(ir_out_all / ir[O][at(prefix, k)] > 1)
                bits.append(np.where(back[-1], a.bits[O], a.out_bits))
            else:
                bits.append(a.bits[o])
            lo = k
        chains[o] = Chain(period=period, window=window, top_r=top_r, tile=tiles, bits=bits, boost=boost,
                          mac_period=at(loops_prod, nxt[0]) if o != O else 1.0,
                          mac_boost=1.0 if chain[0].per_pe else pe[o], mac_bits=a.bits[o],
                          back=back if o == O else None, mac_back=ir_out_all > 1)
    return transfer_stall(a, temporal, chains, a.bits[O], True)


def score_batch(a: Arch, items: list[Item], objective: str = "energy") -> tuple[np.ndarray, np.ndarray]:
    """Energy (pJ) and cycles of every order of every (layer shape, spatial unrolling, loops, order
    tables) item, in one numpy pass (rows item after item); computed per loop *subset*.

    A memory shared by several operands is allocated both ways (``SHARED_CUTS``, as
    :func:`hwsim.cost.mapping.one_mapping.evaluate` does): the orders whose two allocations differ are
    scored a second time (a second numpy pass over those orders only), and each order keeps the one
    ``objective`` prefers (the common cut on ties).

    Per order, the cost is :func:`hwsim.cost.mapping.one_mapping.evaluate`'s (without its snapping of
    near-integer counts). Every per-order quantity is a function of one subset of the loops: the tile
    below a cut is the subset below it (bounds, extents, input halo, the fit test of a level: for the
    positions above every operand's previous cut, each operand's tile is the same prefix), and the
    loops a tile stays in place for are the subset below the next relevant loop (``Orders.stay``: the
    irrelevant-loop product, an exact integer whatever the order of multiplication). So each is
    computed once for each of the ``2**n`` subsets and gathered per order; the remaining arithmetic is
    done in the same order as a direct per-order computation, with the layer's and the unrolling's
    numbers as per-row arrays, so the scores are the same numbers (a test holds them to the reference
    per-order scorer in ``tests/hwsim/reference_orders.py``). Items with fewer loops are padded with
    loops of one iteration (subset tables) and with the full set (order tables), which changes no
    gathered value.
    """
    return _score(a, items, objective, True)[:2]


def search_batch(a: Arch, items: list[Item], objective: str = "energy"
                 ) -> tuple[np.ndarray, np.ndarray, PassCuts]:
    """:func:`score_batch` for the search: only what the search reads is exact, each item's least score
    and the first order reaching it; an order whose cut per operand provably cannot beat its item's
    best common-cut score keeps its common-cut score (branch and bound, see :func:`_bounded`), which
    spares both the combination search of its allocation and its second scoring. Also the orders'
    allocations (:class:`PassCuts`), for :func:`hwsim.cost.mapping.one_mapping.evaluate` to cost the
    winner without allocating it again."""
    return _score(a, items, objective, False)


def _score(a: Arch, items: list[Item], objective: str, exact: bool) -> tuple[np.ndarray, np.ndarray, PassCuts]:
    """:func:`score_batch` (``exact``) or :func:`search_batch`."""
    nd = len(DIMS)
    m = len(items)
    n_max = max(len(flat) for _, _, flat, _ in items)
    n_sub = 1 << n_max
    levels = [lv for lv, _ in a.alloc]
    fac = np.ones((m, n_max, nd))
    ways_v = np.ones((m, nd))
    fways_v = np.ones((m, nd))  # the unrolling rounded down, as ZigZag's latency model counts it
    size = np.empty((m, nd))
    geo = np.empty((m, 8))  # sy, sx, fy, fx, oy, ox, full rows, full cols of the input window
    per_pe = [lv for lv in levels if lv.per_pe]
    keys: list[object] = ["macs", "temporal", "mac_e", "n_out", "C", "G", "overlap"]
    for o in OPERANDS:
        keys += [("mc", o), ("pe", o), ("pei", o)]
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
        fways_v[k] = [sizes[j] // folds[j] if d in ways else 1 for j, d in enumerate(DIMS)]
        geo[k] = (shape.sy, shape.sx, shape.fy, shape.fx, shape.oy, shape.ox,
                  shape.iy or (shape.oy - 1) * shape.sy + shape.fy, shape.ix or (shape.ox - 1) * shape.sx + shape.fx)
        true_ways = [(d, sizes[j] / float(folds[j])) for j, d in enumerate(DIMS) if d in ways]
        macs = float(shape.macs)
        temporal = float(math.prod([f for _, f in flat]))
        row = [macs, temporal, macs * mac_pj, float(shape.b * shape.g * shape.k * shape.oy * shape.ox),
               float(shape.c), float(shape.g), input_overlap(dict(true_ways), shape.sy, shape.sx)]
        for rel in rel_o:
            row.append(math.prod([u for d, u in true_ways if d not in rel]))
            row.append(math.prod([u for d, u in true_ways if d in rel]))
            row.append(float(math.prod([sizes[j] // folds[j] for j, d in enumerate(DIMS) if d in ways and d in rel])))
        row += [bw * (macs / temporal) for bw in bw_pe]
        vals.append(row)
        counts.append(len(t.loop))

    tab = _subset_tables(a, fac, size, ways_v, geo, fways_v)

    # per-order tables, padded to n_max loops with the full set; subset ids offset to the item's rows
    def padded(x: np.ndarray, n: int) -> np.ndarray:
        return x if n == n_max else np.concatenate([x, np.repeat(x[-1:], n_max - n, axis=0)], axis=0)

    off = np.repeat(np.arange(m, dtype=np.int64) * n_sub, counts)
    prefix_local = np.concatenate([padded(t.prefix, len(flat)) for _, _, flat, t in items], axis=1)
    stay_local = {o: np.concatenate([padded(t.stay[o], len(flat)) for _, _, flat, t in items], axis=1).ravel()
                  for o in OPERANDS}  # (positions x orders), flat: position j of order r at j * nr + r
    nr = prefix_local.shape[1]
    per_item = np.array(vals).T
    index = {key: i for i, key in enumerate(keys)}
    rows = _Rows(prefix_local, {o: s.reshape(-1, nr) for o, s in stay_local.items()}, off,
                 np.repeat(np.arange(m), counts))
    del prefix_local, stay_local
    alloc = _Allocator(a, rows.prefix + off[None, :], off + (n_sub - 1), lambda o, shared: tab[(o, shared)],
                       tab["all"], per_item[index["temporal"]][rows.item_of], tab[("ir", O)], n_sub)

    def per_row(r: _Rows, key: object) -> np.ndarray:
        """The item's value of ``key`` on each of the rows ``r`` (repeated where used, not kept for the pass)."""
        return per_item[index[key]][r.item_of]

    def fills(r: _Rows, o: str, j: np.ndarray, shared: bool, macs: np.ndarray, mc: np.ndarray) -> np.ndarray:
        """Elements written into a level whose tile spans the loops below position ``j`` of each order."""
        at = j.astype(np.intp) * r.n + np.arange(r.n)
        ir = tab[("ir", o)][r.stay[o].ravel()[at] + r.off] * (mc if shared else 1.0)
        out = macs / ir
        if o == I:
            s = r.prefix.ravel()[at] + r.off
            out = out * tab[(I, shared)][s] / tab[("den", shared)][s]
        return out

    def score(r: _Rows, cuts: dict[str, list[np.ndarray]], split: MemoryLevel | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Energy and cycles of the rows ``r`` under the allocation ``cuts`` (and the energy that depends on
        ``split``'s cuts, see :func:`charge_traffic`)."""
        nr = r.n
        macs, n_out = per_row(r, "macs"), per_row(r, "n_out")
        mc = {o: per_row(r, ("mc", o)) for o in OPERANDS}
        base = np.arange(nr)
        prefix = r.prefix.ravel()

        def first_tile(o: str, lv: MemoryLevel, j: np.ndarray) -> np.ndarray:
            tile = tab[(o, not lv.per_pe)][prefix[j.astype(np.intp) * nr + base] + r.off]
            if lv.per_pe:
                tile = tile * per_row(r, ("pe", o))
            return tile

        ledger = Ledger(per_row(r, "mac_e"), None if split is None else np.zeros(nr))

        def run_of(o: str, j: np.ndarray) -> np.ndarray:
            return tab[("run", o)][prefix[j.astype(np.intp) * nr + base] + r.off]

        onload, offload = charge_traffic(a, nr, cuts, macs, n_out, mc,
                                         lambda o, j, shared: fills(r, o, j, shared, macs, mc[o]), ledger.add,
                                         first_tile, lambda o: tab[("ir", o)][r.stay[o][0] + r.off], split,
                                         run_of if ("run", W) in tab else None,
                                         lambda o, j: tab[(o, False)][prefix[j.astype(np.intp) * nr + base]
                                                                      + r.off],
                                         {d: per_row(r, d) for d in ("C", "G")}, ledger.noc,
                                         per_row(r, "overlap"))
        temporal = per_row(r, "temporal")

        def tile(o: str, shared: bool, j: np.ndarray) -> np.ndarray:
            return tab[(o, "lat" if shared else False)][prefix[j * nr + base] + r.off]

        if a.per_period:
            stall, on_c, off_c = stall_of(a, cuts, r.prefix + r.off, tab["all"], {o: tab[("ir", o)] for o in OPERANDS},
                                          tab["zr_i"], tile, {o: per_row(r, ("pei", o)) for o in OPERANDS}, temporal)
        else:
            stall, on_c, off_c = roofline(a, ledger.r_lv, ledger.w_lv, temporal,
                                          lambda lv: (per_row(r, ("bw", lv.name)) if lv.per_pe
                                                      else lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits * 1),
                                          onload, offload)
        cycles = cycles_of(temporal, stall, on_c, off_c)
        return ledger.energy, cycles, ledger.part

    loops_of = np.repeat([len(flat) for _, _, flat, _ in items], counts)  # per order: its loops (then padding)
    shared_levels = [lv for lv, ops in a.alloc if len(ops) > 1]
    if not shared_levels:
        cuts = alloc.cuts("per_operand")
        out = PassCuts(cuts, loops_of)
        out.over = overflows(alloc, cuts)
        return *score(rows, cuts)[:2], out
    split = _split_level(a)
    if split is None:  # several shared levels: both allocations whole, the orders where they differ scored twice
        cuts, each = allocations_of(alloc, SHARED_CUTS)
        energy, cycles, _ = score(rows, cuts)
        differ = np.zeros(nr, dtype=bool)
        for o in OPERANDS:
            for x, y in zip(cuts[o], each[o]):
                differ |= x != y
        extra = np.nonzero(differ)[0]
        out = PassCuts(cuts, loops_of)
        out.over = overflows(alloc, cuts)
        if extra.size:
            each = {o: [x[extra] for x in v] for o, v in each.items()}
            e2, c2, _ = score(rows.subset(extra), each)
            out.add(extra, each, *_keep_preferred(energy, cycles, extra, e2, c2, objective, out.over,
                                                  overflows(alloc.subset(extra), each)))
        return energy, cycles, out
    # one shared level, the last on chip of each operand it holds: only its cuts differ between the two
    # allocations; every other level is cut once
    cuts = {o: [] for o in OPERANDS}
    for lv, ops in a.alloc:
        start = {o: (cuts[o][-1] if cuts[o] else np.zeros(nr, dtype=np.intp)) for o in ops}
        if lv is split:
            got = alloc.common(lv, ops, start)
            sh_ops, sh_start = ops, start
        else:
            got = alloc.level_cut(lv, ops, start, "per_operand")
        for o in ops:
            cuts[o].append(got[o])
    energy, cycles, part = score(rows, cuts, split)
    whole = alloc  # every order's allocator (``alloc`` becomes the live orders')
    over = overflows(alloc, cuts)  # per order, whether its common cut overflows a level
    if exact:  # the bound's premise, checked where the tests score every order: split_energy charges what
        # charge_traffic tags (a change to one of them must be made to the other)
        macs = per_row(rows, "macs")
        again = split_energy(a, split, {o: fills(rows, o, cuts[o][-1], True, macs, per_row(rows, ("mc", o)))
                                        for o in sh_ops}, per_row(rows, "n_out"), nr)
        if not np.allclose(again, part, rtol=1e-9, atol=0.0):
            raise AssertionError("split_energy no longer charges what charge_traffic tags for the shared level")
    live = np.arange(nr)  # the orders whose cut per operand is still to be found
    if not exact:  # bound and prune (see _bounded): first with the energy that does not depend on split's cuts
        # the least common-cut score among the orders whose common cut fits (inf where none does: then no
        # order is pruned, since one whose cut per operand fits is preferred to any that overflows)
        key = np.where(over, np.inf, objective_key(energy, cycles, objective))
        least = np.minimum.reduceat(key, np.concatenate([[0], np.cumsum(counts)[:-1]]))[rows.item_of]
        rest = energy - part + _least_split_energy(a, split, sh_ops, per_item, index, tab, n_sub)[rows.item_of]
        rest -= 1e-9 * energy
        live = np.nonzero(objective_key(rest, per_row(rows, "temporal"), objective) <= least)[0]
        del rest
        if not live.size:
            out = PassCuts(cuts, loops_of)
            out.known = np.zeros(nr, dtype=bool)
            out.over = over
            return energy, cycles, out
        alloc = alloc.subset(live)
        sh_start = {o: x[live] for o, x in sh_start.items()}
    common = {o: cuts[o][-1][live] for o in sh_ops}
    pick, hard = alloc.picks(split, sh_ops, sh_start)
    # the orders whose cut per operand may differ from the common one: the combination search is needed,
    # or an operand's largest tile that fits alone is not its common cut
    maybe = np.zeros(live.size, dtype=bool)
    maybe[hard] = True
    for o in sh_ops:
        maybe |= pick[o] != common[o]
    cand = np.nonzero(maybe)[0]
    if not exact and cand.size:
        r = live[cand]
        cand = cand[_bounded(a, split, sh_ops, {o: x[cand] for o, x in sh_start.items()},
                             {o: x[cand] for o, x in pick.items()}, rows.subset(r), energy[r], part[r], least[r],
                             objective, per_row, fills, tab)]
        hard = np.intersect1d(hard, cand) if cand.size else cand
    if hard.size:
        alloc.solve(split, sh_ops, sh_start, pick, hard)
    differ = np.zeros(cand.size, dtype=bool)
    for o in sh_ops:
        differ |= pick[o][cand] != common[o][cand]
    out = PassCuts(cuts, loops_of)
    out.over = over
    if not exact:  # the orders whose cut per operand is known: the common one, or found
        out.known = np.zeros(nr, dtype=bool)
        out.known[live[~maybe]] = True
        out.known[live[cand]] = True
    cand = cand[differ]
    if cand.size:
        extra = live[cand]
        each = {o: [x[extra] for x in v] for o, v in cuts.items()}
        for o in sh_ops:
            each[o][-1] = pick[o][cand]
        e2, c2, _ = score(rows.subset(extra), each)
        better, near = _keep_preferred(energy, cycles, extra, e2, c2, objective, over,
                                       overflows(whole.subset(extra), each))
        out.add(extra, each, better, near & ~_alike(a, split, sh_ops, alloc, sh_start, cand, common, pick,
                                                    rows.subset(extra), tab))
    return energy, cycles, out


def _alike(a: Arch, split: MemoryLevel, ops: tuple[str, ...], alloc: _Allocator, start: dict[str, np.ndarray],
           rows: np.ndarray, common: dict[str, np.ndarray], each: dict[str, np.ndarray], r: _Rows,
           tab: dict[object, np.ndarray]) -> np.ndarray:
    """Whether the two cuts of ``split`` (``common`` and ``each``, of the allocator's orders ``rows``,
    which are ``r``) cost the same to the last bit: for every operand, the same loops a tile stays in
    place for (an exact integer product), the same input tile and halo, the same first tile where
    ``split`` is the operand's innermost level, and both allocations fit or neither. Then evaluate's
    counts are the same numbers for both, and it keeps the common cut (the first on ties)."""
    size_tab, lookup = alloc.sized(split, ops, start)
    cols = np.arange(r.n)
    same = np.ones(r.n, dtype=bool)
    t_common = t_each = 0.0
    for o in ops:
        c, e = common[o][rows], each[o][rows]
        ir = tab[("ir", o)]
        same &= ir[r.stay[o][c, cols] + r.off] == ir[r.stay[o][e, cols] + r.off]
        if o == I or a.chains[o][0] is split:
            sc, se = r.prefix[c, cols] + r.off, r.prefix[e, cols] + r.off
            for t in ((o, True), ("den", True)) if o == I else ((o, True),):
                same &= tab[t][sc] == tab[t][se]
        t_common = t_common + size_tab[o][lookup[c, rows]]
        t_each = t_each + size_tab[o][lookup[e, rows]]
    return same & ((t_common <= split.size_bytes) == (t_each <= split.size_bytes))


class PassCuts:
    """The allocations of a pass's orders (:func:`search_batch`): for each, the cuts to hand
    :func:`hwsim.cost.mapping.one_mapping.evaluate` (:meth:`of`)."""

    def __init__(self, cuts: dict[str, list[np.ndarray]], loops_of: np.ndarray) -> None:
        self.cuts = cuts  # the common cut's allocation of every order (the only one without a shared level)
        self.loops_of = loops_of  # per order, its number of loops (a cut past it lies in the padding: all of them)
        self.known: np.ndarray | None = None  # per order, whether its cut per operand is known (all if None)
        self.extra = np.zeros(0, dtype=np.intp)  # the orders (ascending) whose cut per operand differs
        self.each: dict[str, list[np.ndarray]] = {}  # ... and that allocation of them
        self.choice = np.zeros(0, dtype=np.int8)  # ... and which to cost: 0 the common, 1 the other, 2 both
        self.over: np.ndarray | None = None  # per order, whether the allocation its score is of overflows a level

    def add(self, extra: np.ndarray, each: dict[str, list[np.ndarray]], better: np.ndarray, near: np.ndarray
            ) -> None:
        """The orders ``extra`` have the cut per operand ``each``, preferred where ``better``, and their two
        scores are too close (``near``) for the batch's rounding to tell them apart as evaluate would
        (close but not the same to the last bit: see :func:`_alike`)."""
        self.extra, self.each = extra, each
        self.choice = np.where(near, 2, better.astype(np.int8))

    def of(self, r: int) -> list[dict[str, list[int]]] | None:
        """The allocations of order ``r`` for evaluate's ``allocations`` (None: not known, evaluate allocates)."""
        if self.known is not None and not self.known[r]:
            return None
        n = int(self.loops_of[r])
        common = {o: [min(int(x[r]), n) for x in v] for o, v in self.cuts.items()}
        i = int(np.searchsorted(self.extra, r))
        if i == self.extra.size or self.extra[i] != r:
            return [common]
        each = {o: [min(int(x[i]), n) for x in v] for o, v in self.each.items()}
        return [[common], [each], [common, each]][int(self.choice[i])]


class _Rows:
    """Orders of a pass (all of them, or some: :meth:`subset`): the subset of loops below each position
    (``prefix``, (positions, orders), local to the item), the subset below the next loop each operand
    depends on (``stay[o]``), the item's offset into the subset tables and the item of each order."""

    __slots__ = ("prefix", "stay", "off", "item_of", "n")

    def __init__(self, prefix: np.ndarray, stay: dict[str, np.ndarray], off: np.ndarray, item_of: np.ndarray
                 ) -> None:
        self.prefix, self.stay, self.off, self.item_of = prefix, stay, off, item_of
        self.n = prefix.shape[1]

    def subset(self, rows: np.ndarray) -> _Rows:
        return _Rows(self.prefix[:, rows], {o: s[:, rows] for o, s in self.stay.items()}, self.off[rows],
                     self.item_of[rows])


def _split_level(a: Arch) -> MemoryLevel | None:
    """The memory shared by several operands when there is one, shared by the PEs, and it is the last on-chip
    level of every operand it holds (then the two allocations differ in its cuts only, and
    :func:`_bounded` applies); else None."""
    shared = [(lv, ops) for lv, ops in a.alloc if len(ops) > 1]
    if len(shared) != 1:
        return None
    lv, ops = shared[0]
    if lv.per_pe or any(a.chains[o][-2] is not lv for o in ops):
        return None
    return lv


def split_energy(a: Arch, split: MemoryLevel, into: dict[str, np.ndarray], n_out: np.ndarray | float,
                 n: int) -> np.ndarray:
    """The energy :func:`charge_traffic` tags for ``split`` (its writes from DRAM and what it sends up,
    DRAM's side of both), from each of its operands' fills ``into[o]`` alone (elements written into it).
    Every charge grows with the fills (outputs: partial sums at least as wide as final outputs)."""
    ledger = Ledger(np.zeros(n), np.zeros(n))
    for o in OPERANDS:
        chain = a.chains[o]
        if o not in into:
            continue
        dram, f = chain[-1], into[o]
        if o in (W, I):
            ledger.add(split, 0.0, a.bits[o], f, a.bits[o], 2)
            ledger.add(dram, f / 1.0, a.bits[o], 0.0, a.bits[o], 1)
        else:
            up = np.maximum(f / 1.0, n_out)
            back = up - n_out
            bits = np.where(back > 0.5, a.bits[O], a.out_bits)
            ledger.add(split, up, bits, back, a.bits[O], 3)
            ledger.add(dram, back, bits, up, bits, 3)
    return ledger.part


def _bounded(a: Arch, split: MemoryLevel, ops: tuple[str, ...], start: dict[str, np.ndarray],
             pick: dict[str, np.ndarray], r: _Rows, energy: np.ndarray, part: np.ndarray, least: np.ndarray,
             objective: str, per_row: Callable, fills: Callable, tab: dict[object, np.ndarray]) -> np.ndarray:
    """Which of the orders ``r`` (their common-cut ``energy``, the ``part`` of it that depends on ``split``'s
    cuts, their item's least common-cut score ``least``) may have a cut per operand of ``split`` that
    beats ``least`` (:func:`score_batch` with ``exact=False``; a boolean per order).

    Branch and bound. An order's score under any cut per operand is at least: its energy less ``part``
    (the charges that depend on ``split``'s cuts, tagged by :func:`charge_traffic`), plus those charges
    with every operand at the largest cut its tile alone allows (``pick``: the cut per operand lies
    between its start and that), with its cycles at least its temporal loops. More loops below a cut
    mean fewer fills: the loops a tile stays in place for only grow (an exact integer product), and for
    inputs the halo ratio is taken as its least over the cuts in range (a strided window's whole-layer
    tile counts rows the window skips, so the ratio is not monotone in the loops). An order whose bound
    exceeds ``least`` (less 1e-9 of its energy, for rounding) is not its item's best under either
    allocation, and keeps its common-cut score: the item's least score and the first order reaching it
    stay exact. :func:`score_batch` first drops the orders whose energy less ``part`` alone is above it."""
    n = r.n
    macs = per_row(r, "macs")
    into = {}
    for o in ops:
        mc = per_row(r, ("mc", o))
        if o == I:  # the fills at the largest cut times the least halo ratio over the cuts in range
            j = pick[I].astype(np.intp)
            ir = tab[("ir", I)][r.stay[I][j, np.arange(n)] + r.off] * mc
            ratio = tab[(I, True)] / tab[("den", True)]
            pos = np.arange(r.prefix.shape[0])[:, None]
            least_ratio = np.where((pos >= start[I][None, :]) & (pos <= j[None, :]),
                                   ratio[r.prefix + r.off[None, :]], np.inf).min(axis=0)
            into[I] = macs / ir * least_ratio
        else:
            into[o] = fills(r, o, pick[o], True, macs, mc)
    relaxed = split_energy(a, split, into, per_row(r, "n_out"), n)
    bound = energy - part + relaxed
    bound -= 1e-9 * (energy + relaxed)
    return objective_key(bound, per_row(r, "temporal"), objective) <= least


def _least_split_energy(a: Arch, split: MemoryLevel, ops: tuple[str, ...], per_item: np.ndarray,
                        index: dict[object, int], tab: dict[object, np.ndarray], n_sub: int) -> np.ndarray:
    """Per item, the least energy :func:`split_energy` charges under any allocation: each operand's fills
    with every loop below ``split`` (the loops a tile stays in place for at their most), inputs at the
    least halo ratio of any of the item's subsets of loops."""
    m = per_item.shape[1]
    macs = per_item[index["macs"]]
    full = np.arange(m) * n_sub + (n_sub - 1)
    into = {}
    for o in ops:
        into[o] = macs / (tab[("ir", o)][full] * per_item[index[("mc", o)]])
        if o == I:
            ratio = tab[(I, True)] / tab[("den", True)]
            into[o] = into[o] * np.minimum.reduceat(ratio, np.arange(m) * n_sub)
    return split_energy(a, split, into, per_item[index["n_out"]], m)


def _keep_preferred(energy: np.ndarray, cycles: np.ndarray, extra: np.ndarray, e2: np.ndarray, c2: np.ndarray,
                    objective: str, over: np.ndarray, over2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In place: the scores of the orders ``extra`` replaced by their second scoring (``e2``, ``c2``) where
    it is preferred (as :func:`hwsim.cost.mapping.one_mapping.preferred`: its tiles fit where the first's
    overflow a level (``over``, per order, updated; ``over2``: the second's), else ``objective`` strictly
    prefers it, the first on ties). Returns where it did, and where the two fit alike and their scores
    are within 1e-6 of each other (evaluate's own counts, snapped to integers within 1e-9, could order
    them otherwise)."""
    k2, k1 = objective_key(e2, c2, objective), objective_key(energy[extra], cycles[extra], objective)
    o1 = over[extra]
    alike = o1 == over2
    better = np.where(alike, k2 < k1, o1)
    near = alike & (np.abs(k2 - k1) <= 1e-6 * np.maximum(np.abs(k1), np.abs(k2)))
    energy[extra[better]] = e2[better]
    cycles[extra[better]] = c2[better]
    over[extra[better]] = over2[better]
    return better, near


def _subset_tables(a: Arch, fac: np.ndarray, size: np.ndarray, ways_v: np.ndarray, geo: np.ndarray,
                   fways_v: np.ndarray) -> dict[object, np.ndarray]:
    """Per-subset tables of :func:`score_batch`, (items x 2**n) rows (loops past an item's own are
    one-iteration loops): each operand's tile per PE and shared, the input tile's halo-free size, the
    irrelevant-loop products, and each level's fit test. ``fac`` (items, loops, dimensions) holds the
    loop counts, ``size``/``ways_v`` (items, dimensions) the layer's bounds and the unrolling, ``geo``
    the input window. A function of its own so that the bounds it builds them from are freed before the
    per-order arithmetic (a small peak: see the module's docstring)."""
    B, G, K, C, OY, OX, FY, FX = range(8)
    m, n_max, nd = fac.shape
    n_sub = 1 << n_max
    cum = np.ones((m, n_sub, nd))  # per dimension, the product of the subset's loops: exact integers
    for i in range(n_max):  # the subsets whose highest loop is i: those without it, times its count
        cum[:, 1 << i:2 << i] = cum[:, :1 << i] * fac[:, i, None, :]
    size_t = np.repeat(size, n_sub, axis=0)
    cum = cum.reshape(m * n_sub, nd)
    bnd = {False: np.minimum(cum, size_t), True: np.minimum(cum * np.repeat(ways_v, n_sub, axis=0), size_t)}

    win = Window(*np.repeat(geo, n_sub, axis=0).T)
    cols = {s: columns(bnd[s]) for s in (False, True)}
    tab: dict[object, np.ndarray] = {(o, s): tile_elements(o, cols[s], win, np.minimum, np.where)
                                     for o in OPERANDS for s in (False, True)}
    for s in (False, True):
        b = bnd[s]
        tab[("den", s)] = b[:, B] * b[:, G] * b[:, C] * b[:, OY] * b[:, FY] * b[:, OX] * b[:, FX]
    for o in OPERANDS:
        tab[("ir", o)] = np.prod(cum[:, [k for k, d in enumerate(DIMS) if d not in RELEVANT[o]]], axis=1)
    tab["all"] = np.prod(cum, axis=1)
    if any(lv.burst_bytes for lv, _ in a.alloc) or a.chains[W][-1].burst_bytes:  # runs of each tile, over the array
        full = columns(size_t)
        for o in OPERANDS:
            tab[("run", o)] = run_elements(o, cols[True], full, win, np.minimum, np.where)
    if a.per_period:  # ZigZag's stall model (hwsim.cost.mapping.stall): the shared tiles with the unrolling
        # rounded down, and the product of the input's relevant loops (B, G, C)
        b = columns(np.minimum(cum * np.repeat(fways_v, n_sub, axis=0), size_t))
        for o in OPERANDS:
            tab[(o, "lat")] = tile_elements(o, b, win, np.minimum, np.where)
        tab["zr_i"] = cum[:, B] * cum[:, G] * cum[:, C]
    return tab


def allocate(a: Arch, pre: np.ndarray, full: np.ndarray, tile: Callable[[str, bool], np.ndarray],
             below: np.ndarray, temporal: np.ndarray, ir_out: np.ndarray, shared_cut: str = "per_operand"
             ) -> dict[str, list[np.ndarray]]:
    """LOMA's allocation (:func:`hwsim.cost.mapping.tiles.allocate_level`, level by level, innermost
    first; a level shared by several operands cut by :func:`~hwsim.cost.mapping.tiles.common_cut` instead
    when ``shared_cut`` is ``"common"``) for many loop orders at once: per operand, the position of its
    cut at each of its levels (the loops below it stay in that level). ``pre`` (positions, orders): the id of the loop subset below each
    position (``full``, (orders,): of all the loops); per subset id, ``tile(o, shared)`` the elements of
    ``o``'s tile (shared: spanning the array), ``below`` the product of its loops, ``ir_out`` that of
    its loops outputs do not depend on; ``temporal`` (orders,): all loops' product."""
    return allocations(a, pre, full, tile, below, temporal, ir_out, (shared_cut,))[0]


def allocations(a: Arch, pre: np.ndarray, full: np.ndarray, tile: Callable[[str, bool], np.ndarray],
                below: np.ndarray, temporal: np.ndarray, ir_out: np.ndarray, shared_cuts: tuple[str, ...]
                ) -> list[dict[str, list[np.ndarray]]]:
    """:func:`allocate` under each of ``shared_cuts``: the levels whose operands start from the same cuts
    under several of them (all the levels below the first shared one) are cut once."""
    return allocations_of(_Allocator(a, pre, full, tile, below, temporal, ir_out), shared_cuts)


def overflows(alloc: _Allocator, cuts: dict[str, list[np.ndarray]]) -> np.ndarray:
    """Per order of ``alloc``, whether the allocation ``cuts`` (of those orders) overflows a level: the tiles of
    a level's operands do not fit in it together (:func:`hwsim.cost.mapping.tiles.tiles_fit`, outputs at the
    output width where the level holds only final ones, as ``evaluate`` sizes them)."""
    a = alloc.a
    over = np.zeros(alloc.n, dtype=bool)
    for lv, ops in a.alloc:
        at = {o: a.chains[o].index(lv) for o in ops}
        start = {O: cuts[O][at[O] - 1]} if O in ops and at[O] > 0 else {}
        size_tab, lookup = alloc.sized(lv, ops, start)
        total = 0.0
        for o in ops:
            total = total + size_tab[o][lookup[cuts[o][at[o]].astype(np.intp), alloc.cols]]
        over |= total > lv.size_bytes
    return over


def overflow_of(a: Arch, pre: np.ndarray, full: np.ndarray, tile: Callable[[str, bool], np.ndarray],
                below: np.ndarray, temporal: np.ndarray, ir_out: np.ndarray, cuts: dict[str, list[np.ndarray]]
                ) -> np.ndarray:
    """:func:`overflows` of the allocation ``cuts`` of many loop orders (arguments as :func:`allocate`'s)."""
    return overflows(_Allocator(a, pre, full, tile, below, temporal, ir_out), cuts)


def allocations_of(alloc: _Allocator, shared_cuts: tuple[str, ...]) -> list[dict[str, list[np.ndarray]]]:
    """:func:`allocations` by the allocator ``alloc``."""
    n = alloc.n
    states: list[dict[str, list[np.ndarray]]] = [{o: [] for o in OPERANDS} for _ in shared_cuts]
    for lv, ops in alloc.a.alloc:
        done: dict[tuple[object, ...], dict[str, np.ndarray]] = {}
        for cuts, mode in zip(states, shared_cuts):
            start = {o: (cuts[o][-1] if cuts[o] else None) for o in ops}
            key = (mode if len(ops) > 1 else "", *(id(x) for x in start.values()))
            got = done.get(key)
            if got is None:
                got = done[key] = alloc.level_cut(lv, ops, {o: (np.zeros(n, dtype=np.intp) if x is None else x)
                                                            for o, x in start.items()}, mode)
            for o in ops:
                cuts[o].append(got[o])
    return states


class _Allocator:
    """LOMA's allocation of many loop orders at once, level by level (:func:`allocations`): the common cut
    of a shared level (:meth:`common`), each operand's largest tile that fits alone (:meth:`picks`) and the
    combination search among them where those do not fit together (:meth:`solve`). Arguments as
    :func:`allocate`'s."""

    def __init__(self, a: Arch, pre: np.ndarray, full: np.ndarray, tile: Callable[[str, bool], np.ndarray],
                 below: np.ndarray, temporal: np.ndarray, ir_out: np.ndarray, n_sub: int | None = None) -> None:
        self.a, self.pre, self.full, self.tile = a, pre, full, tile
        self.below, self.temporal, self.ir_out = below, temporal, ir_out
        width, self.n = pre.shape
        self.jj = np.arange(width)[:, None]
        self.cols = np.arange(self.n)
        self._sized: dict[tuple[str, int], tuple[dict[str, np.ndarray], np.ndarray, object]] = {}
        self._growing: dict[tuple[str, bool], bool] = {}
        self.n_sub = n_sub

    def _grows(self, o: str, shared: bool) -> bool:
        """Whether every tile of ``o`` (``shared``: spanning the array) is at least as large as the tile of
        any subset of its loops (then whether a tile fits is monotone along every order's positions)."""
        key = (o, shared)
        got = self._growing.get(key)
        if got is None and self.n_sub is None:
            got = self._growing[key] = False
        if got is None:
            t = self.tile(o, shared)
            n_sub = self.n_sub
            t = t.reshape(-1, n_sub)
            got = True
            for i in range(n_sub.bit_length() - 1):  # every subset without loop i, against it with loop i
                without = _without(n_sub, i)
                got = got and bool((t[:, without | (1 << i)] >= t[:, without]).all())
            self._growing[key] = got
        return got

    def _last_fit(self, over: np.ndarray, lookup: np.ndarray, start: np.ndarray, monotone: bool) -> np.ndarray:
        """Per order, the last position from ``start`` on before the first one after ``start`` whose
        subset overflows (``over`` per subset id, looked up by ``lookup``). Where overflowing is monotone
        along the positions, that is ``start`` plus the positions after it that fit (a count of bytes,
        as the search before the cut per operand counted them)."""
        after = self.jj > start[None, :]
        if monotone:
            return start + ((~over)[lookup] & after).view(np.uint8).sum(axis=0, dtype=np.uint8)
        return np.maximum(start, _first(over[lookup] & after) - 1)

    def subset(self, rows: np.ndarray) -> _Allocator:
        """The allocator of the orders ``rows`` only."""
        out = _Allocator(self.a, self.pre[:, rows], self.full[rows], self.tile, self.below, self.temporal[rows],
                         self.ir_out, self.n_sub)
        out._growing = self._growing
        return out

    def cuts(self, shared_cut: str) -> dict[str, list[np.ndarray]]:
        """:func:`allocate`'s answer."""
        return allocations_of(self, (shared_cut,))[0]

    def sized(self, lv: MemoryLevel, ops: tuple[str, ...], start: dict[str, np.ndarray]
              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per operand of ``lv``, the bytes of its tile per subset id, and the ids to look them up by
        (positions, orders). Outputs are sized at the output width where only final ones arrive
        (holds_final): the tables of such a level are doubled (partial-sum width, then output width) and
        an order's positions look up the half its start selects."""
        hit = self._sized.get((lv.name, id(start.get(O))))
        if hit is not None and hit[2] is start.get(O):
            return hit[0], hit[1]
        a, tile, shared = self.a, self.tile, not lv.per_pe
        widths = {o: a.ebytes[o] for o in ops}
        if O in ops and a.chains[O][0] != lv:
            final = self.ir_out[self.pre[start[O], self.cols]] == self.ir_out[self.full]
            widths[O] = np.array([a.ebytes[O], a.out_bits / 8])

            def sized(o: str) -> np.ndarray:
                t = tile(o, shared)
                return (np.concatenate([t * widths[O][0], t * widths[O][1]]) if o == O
                        else np.concatenate([t * widths[o]] * 2))

            lookup = self.pre + np.where(final, len(self.below), 0)[None, :]
        else:
            def sized(o: str) -> np.ndarray:
                return tile(o, shared) * widths[o]

            lookup = self.pre
        size_tab = {o: sized(o) for o in ops}
        self._sized[(lv.name, id(start.get(O)))] = (size_tab, lookup, start.get(O))
        return size_tab, lookup

    def common(self, lv: MemoryLevel, ops: tuple[str, ...], start: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One cut for all the operands of a shared level (:func:`hwsim.cost.mapping.tiles.common_cut`)."""
        size_tab, lookup = self.sized(lv, ops, start)
        j0 = start[ops[0]]
        for o in ops[1:]:
            j0 = np.maximum(j0, start[o])
        total = 0.0
        for o in ops:
            total = total + size_tab[o]
        j = self._last_fit(total > lv.size_bytes, lookup, j0, all(self._grows(o, not lv.per_pe) for o in ops))
        return {o: np.maximum(start[o], j) for o in ops}

    def picks(self, lv: MemoryLevel, ops: tuple[str, ...], start: dict[str, np.ndarray]
              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per operand, its last candidate (its candidates run from its start while its tile alone fits:
        ZigZag's calc_size_slices), and the orders where those do not fit together (the combination search
        is needed: :meth:`solve`); elsewhere they are the cut per operand (the least cost, and ZigZag's
        last combination)."""
        size_tab, lookup = self.sized(lv, ops, start)
        cap = lv.size_bytes
        pick = {}
        for o in ops:
            pick[o] = self._last_fit(size_tab[o] > cap, lookup, start[o], self._grows(o, not lv.per_pe))
        if len(ops) == 1:
            return pick, np.zeros(0, dtype=np.intp)
        total = 0.0
        for o in ops:
            total = total + size_tab[o][lookup[pick[o], self.cols]]
        return pick, np.nonzero(total > cap)[0]

    def solve(self, lv: MemoryLevel, ops: tuple[str, ...], start: dict[str, np.ndarray], pick: dict[str, np.ndarray],
              hard: np.ndarray) -> None:
        """In place: the cut per operand of the orders ``hard`` (of :meth:`picks`), by the combination search."""
        size_tab, lookup = self.sized(lv, ops, start)
        jj, pre = self.jj, self.pre
        if hard.size > _HARD_ROWS:  # blocks of orders with alike candidate counts: fewer combinations each
            key = np.ones(hard.size, dtype=np.intp)
            for o in ops:
                key *= pick[o][hard] - start[o][hard] + 1
            hard = hard[np.argsort(key, kind="stable")]
        for lo in range(0, hard.size, _HARD_ROWS):
            rows = hard[lo:lo + _HARD_ROWS]
            sub = pre[:, rows]
            look = lookup[:, rows]
            got = _best_combination([size_tab[o][look] for o in ops],
                                    [(jj >= start[o][None, rows]) & (jj <= pick[o][None, rows]) for o in ops],
                                    self.temporal[rows][None, :] / self.below[sub], lv.size_bytes,
                                    [start[o][rows] for o in ops])
            for o, g in zip(ops, got):
                pick[o][rows] = g

    def level_cut(self, lv: MemoryLevel, ops: tuple[str, ...], start: dict[str, np.ndarray], shared_cut: str
                  ) -> dict[str, np.ndarray]:
        """The cuts of ``lv``'s operands from their ``start`` (``shared_cut``: one of ``SHARED_CUTS``)."""
        if shared_cut == "common" and len(ops) > 1:
            return self.common(lv, ops, start)
        pick, hard = self.picks(lv, ops, start)
        self.solve(lv, ops, start, pick, hard)
        return pick


@lru_cache(maxsize=16)
def _without(n_sub: int, i: int) -> np.ndarray:
    """The subsets of ``log2(n_sub)`` loops without loop ``i``."""
    ids = np.arange(n_sub)
    return ids[(ids & (1 << i)) == 0]


def _first(stop: np.ndarray) -> np.ndarray:
    """Per column of ``stop`` (positions, orders), the first position flagged (the count if none)."""
    for p in range(1, len(stop)):  # row by row: numpy's reductions along the short axis are slower
        stop[p] |= stop[p - 1]
    # counted in bytes (at most 9 positions), twice as fast as a sum of booleans into integers
    return len(stop) - stop.view(np.uint8).sum(axis=0, dtype=np.uint8).astype(np.intp)


_HARD_ROWS = 512  # orders per block of the combination search (its temporaries: ~50 x 512 x 8 bytes)


def _best_combination(size: list[np.ndarray], ok: list[np.ndarray], unallocated: np.ndarray, cap: float,
                      start: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`hwsim.cost.mapping.tiles.allocate_level`'s choice among several operands, for many orders
    (arrays (positions, orders)): every combination of the candidates of all operands but the one with
    the most (broadcast, as offsets from each start), that one at its largest candidate that still fits
    (an operand's cost never rises with more loops: each loop it depends on multiplies its tile by at
    most its count while dividing the iterations left above by it); the least total cost, ties to the
    combination ZigZag enumerates last (lexicographic in the operands' order). The orders where some
    operand's cost does rise (a strided window, whose whole-layer input tile counts the rows it skips)
    are searched over every combination (:func:`_every_combination`): each order's answer is its own,
    whatever the other orders of its block (the search scores only some orders a second time)."""
    k = len(size)
    width, h = size[0].shape
    cols = np.arange(h)
    count = [x.sum(axis=0) for x in ok]  # candidates run from the start: start .. start + count - 1
    span = [int(c.max()) for c in count]
    imp = max(range(k), key=lambda i: span[i])  # the operand placed implicitly
    others = [i for i in range(k) if i != imp]
    # per operand and offset d from its start: the candidate's position, tile bytes and cost, (span, h)
    pos, sz, cost = [], [], []
    for i in range(k):
        p = np.minimum(start[i][None, :] + np.arange(span[i])[:, None], (start[i] + count[i] - 1)[None, :])
        pos.append(p)
        sz.append(size[i][p, cols])
        cost.append(unallocated[p, cols] * sz[-1])
    n_o = len(others)
    shape = tuple(span[i] for i in others) + (h,)
    s_first = np.zeros(shape)
    c_first = np.zeros(shape)
    code = np.zeros(shape)
    for r, i in enumerate(others):
        view = (slice(None) if q == r else None for q in range(n_o))
        view = (*view, slice(None))
        s_first = s_first + sz[i][view]
        c_first = c_first + cost[i][view]
        code = code + pos[i][view] * float(width) ** (k - 1 - i)
    n_c = math.prod(shape[:-1])
    rem = (cap - s_first).reshape(n_c, h)
    c_first, code = c_first.reshape(n_c, h), code.reshape(n_c, h)
    last = np.full((n_c, h), -1, dtype=np.intp)
    c_last = np.full((n_c, h), np.inf)
    for d in range(span[imp]):  # ascending: the largest fitting candidate wins
        fit = sz[imp][d][None, :] <= rem
        last = np.where(fit, d, last)
        c_last = np.where(fit, cost[imp][d][None, :], c_last)
    total = c_first + c_last  # inf where the implicit operand fits nowhere
    found_c = last >= 0
    pl = pos[imp][np.maximum(last, 0), cols]
    code += pl * float(width) ** (k - 1 - imp)
    least = total.min(axis=0)
    best = np.argmax(np.where((total == least[None, :]) & found_c, code, -1.0), axis=0)
    found = np.isfinite(least)
    out: list[np.ndarray] = [np.empty(0)] * k
    idx = np.unravel_index(best, shape[:-1])
    for r, i in enumerate(others):
        out[i] = pos[i][idx[r], cols]
    out[imp] = pl[best, cols]
    out = [np.where(found, x, s) for x, s in zip(out, start)]
    # where an operand's cost rises with a candidate (a strided window whose whole-layer tile counts the
    # rows it skips), the largest fitting candidate may not be the cheapest: those orders searched whole
    rises = np.zeros(h, dtype=bool)
    for i in range(k):
        rises |= ((cost[i][1:] > cost[i][:-1]) & (pos[i][1:] > pos[i][:-1])).any(axis=0)
    if rises.any():
        r = np.nonzero(rises)[0]
        got = _every_combination([p[:, r] for p in pos], [x[:, r] for x in sz], [c[:, r] for c in cost], cap,
                                 [x[r] for x in start], width)
        for x, g in zip(out, got):
            x[r] = g
    return out


def _every_combination(pos: list[np.ndarray], sz: list[np.ndarray], cost: list[np.ndarray], cap: float,
                       start: list[np.ndarray], width: int) -> list[np.ndarray]:
    """:func:`_best_combination` by every combination of every operand's candidates (``pos``, ``sz``,
    ``cost``: (candidates, orders) each): the least total cost among those that fit together, ties to the
    combination ZigZag enumerates last; the starts where none fits."""
    k = len(pos)
    h = pos[0].shape[1]
    shape = tuple(len(p) for p in pos) + (h,)
    total_s, total_c, code = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for i in range(k):
        view = (*(slice(None) if q == i else None for q in range(k)), slice(None))
        total_s = total_s + sz[i][view]
        total_c = total_c + cost[i][view]
        code = code + pos[i][view] * float(width) ** (k - 1 - i)
    total_s, total_c, code = (x.reshape(-1, h) for x in (total_s, total_c, code))
    total_c = np.where(total_s <= cap, total_c, np.inf)
    least = total_c.min(axis=0)
    best = np.argmax(np.where(total_c == least[None, :], code, -1.0), axis=0)
    idx = np.unravel_index(best, shape[:-1])
    cols = np.arange(h)
    found = np.isfinite(least)
    return [np.where(found, pos[i][idx[i], cols], start[i]) for i in range(k)]
