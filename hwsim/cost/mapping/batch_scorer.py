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
- **a small peak**: a pass keeps few row arrays alive at once (per-item values repeated where used, the
  subset tables' inputs freed before the per-order arithmetic, cut positions as bytes), about 300 bytes
  per row, so the heap glibc grows for one pass stays under its trim threshold and is reused by the
  next instead of returned to the system and faulted in again (see ``best_mapping._PASS_ROWS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hwsim.cost.mapping.loop_orders import Orders
from hwsim.cost.mapping.space import DIMS, OPERANDS, RELEVANT, Arch, Shape, Spatial
from hwsim.cost.mapping.tiles import Window, tile_elements, tiles_fit
from hwsim.hardware.profile import MemoryLevel

W, I, O = OPERANDS
# one row group of a pass: (layer, unrolling, its loops as (dimension index, factor), their orders)
Item = tuple[Shape, Spatial, tuple[tuple[int, int], ...], Orders]


def columns(b: np.ndarray) -> dict[str, np.ndarray]:
    """Bounds arrays (..., dimension of ``DIMS``) as :func:`tile_elements` reads them."""
    return {d: b[..., k] for k, d in enumerate(DIMS)}


class Ledger:
    """Energy (pJ) and words read/written per level of a batch of candidate mappings (:meth:`add`)."""

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
        energy = self.energy + rw * lv.read_energy_pj
        energy += ww * lv.write_energy_pj  # in place: one row array fewer alive (a small peak)
        self.energy = energy
        self.r_lv[lv.name] = self.r_lv.get(lv.name, 0.0) + rw
        self.w_lv[lv.name] = self.w_lv.get(lv.name, 0.0) + ww


def charge_traffic(a: Arch, n: int, cuts: dict[str, list[np.ndarray]], macs: float | np.ndarray,
                   n_out: float | np.ndarray, mc: dict[str, float | np.ndarray], fills: Callable,
                   add: Callable, first_tile: Callable, held_of: Callable[[str], np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Charge every operand's reads and writes along its chain (``add``) for ``n`` candidate mappings at
    once; return the first tile's onload and offload bytes. ``held_of(o)``: the MACs a word of weights or
    inputs serves where it lands before it is fetched again. Called once per batch (vectorised over
    the candidates) by :func:`score_batch` and by the tests' per-order reference scorer."""
    ebytes = a.ebytes
    onload = np.zeros(n)
    offload = np.zeros(n)
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
            del down  # not charged: two row arrays fewer alive (a small peak)
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


def cycles_of(a: Arch, n: int, r_lv: dict[str, np.ndarray], w_lv: dict[str, np.ndarray],
              temporal: np.ndarray | float, onload: np.ndarray, offload: np.ndarray,
              bw_of: Callable[[MemoryLevel], np.ndarray | float]) -> np.ndarray:
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


def score_batch(a: Arch, items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Energy (pJ) and cycles of every order of every (layer shape, spatial unrolling, loops, order
    tables) item, in one numpy pass (rows item after item); computed per loop *subset*.

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
    nd = len(DIMS)
    m = len(items)
    n_max = max(len(flat) for _, _, flat, _ in items)
    width, n_sub = n_max + 1, 1 << n_max
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

    tab = _subset_tables(a, fac, size, ways_v, geo)

    # per-order tables, padded to n_max loops with the full set; subset ids offset to the item's rows
    def padded(x: np.ndarray, n: int) -> np.ndarray:
        return x if n == n_max else np.concatenate([x, np.repeat(x[-1:], n_max - n, axis=0)], axis=0)

    off = np.repeat(np.arange(m, dtype=np.int64) * n_sub, counts)
    prefix_local = np.concatenate([padded(t.prefix, len(flat)) for _, _, flat, t in items], axis=1)
    stay_local = {o: np.concatenate([padded(t.stay[o], len(flat)) for _, _, flat, t in items], axis=1).ravel()
                  for o in OPERANDS}  # (positions x orders), flat: position j of order r at j * nr + r
    nr = prefix_local.shape[1]
    cuts = _cuts(a, tab, prefix_local + off[None, :], width)
    prefix_local = prefix_local.ravel()
    per_item = np.array(vals).T
    index = {key: i for i, key in enumerate(keys)}

    def per_row(key: object) -> np.ndarray:
        """The item's value of ``key`` on each of its rows (repeated where used, not kept for the pass)."""
        return np.repeat(per_item[index[key]], counts)

    macs, n_out = per_row("macs"), per_row("n_out")
    mc = {o: per_row(("mc", o)) for o in OPERANDS}
    base = np.arange(nr)

    def at(j: np.ndarray) -> np.ndarray:
        """Flat index of position ``j[r]`` of every order ``r``."""
        return j.astype(np.intp) * nr + base

    def fills(o: str, j: np.ndarray, shared: bool) -> np.ndarray:
        ir = tab[("ir", o)][stay_local[o][at(j)] + off] * (mc[o] if shared else 1.0)
        out = macs / ir
        if o == I:
            s = prefix_local[at(j)] + off
            out = out * tab[(I, shared)][s] / tab[("den", shared)][s]
        return out

    ledger = Ledger(per_row("mac_e"))
    add, r_lv, w_lv = ledger.add, ledger.r_lv, ledger.w_lv

    def first_tile(o: str, lv: MemoryLevel, j: np.ndarray) -> np.ndarray:
        tile = tab[(o, not lv.per_pe)][prefix_local[at(j)] + off]
        if lv.per_pe:
            tile = tile * per_row(("pe", o))
        return tile

    onload, offload = charge_traffic(a, nr, cuts, macs, n_out, mc, fills, add, first_tile,
                                     lambda o: tab[("ir", o)][stay_local[o][base] + off])
    cycles = cycles_of(a, nr, r_lv, w_lv, per_row("temporal"), onload, offload,
                       lambda lv: (per_row(("bw", lv.name)) if lv.per_pe
                                   else lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits * 1))
    return ledger.energy, cycles


def _subset_tables(a: Arch, fac: np.ndarray, size: np.ndarray, ways_v: np.ndarray, geo: np.ndarray
                   ) -> dict[object, np.ndarray]:
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
    for li, (lv, ops) in enumerate(a.alloc):
        tab[("fit", li)] = tiles_fit(lv, ops, lambda o: tab[(o, not lv.per_pe)], a.ebytes)
    return tab


def _cuts(a: Arch, tab: dict[object, np.ndarray], prefix: np.ndarray, width: int
          ) -> dict[str, list[np.ndarray]]:
    """LOMA's bottom-up allocation for every order at once: per operand, the position of its cut at each
    of its levels (the loops below it stay in that level). ``prefix`` (positions, orders): the row of
    ``tab`` of the subset below each position; for the positions above every operand's previous cut,
    the tiles are those of one prefix subset."""
    jj = np.arange(width)[:, None]
    cuts: dict[str, list[np.ndarray]] = {o: [] for o in OPERANDS}
    for li, (_, ops) in enumerate(a.alloc):
        fits = tab[("fit", li)][prefix]  # (positions, orders)
        starts = [cuts[o][-1] for o in ops if cuts[o]]
        if not starts:
            j = fits[1:].sum(axis=0, dtype=np.uint8)  # positions 0..8: a byte per order
            for o in ops:
                cuts[o].append(j)
            continue
        j0 = starts[0]
        for other in starts[1:]:  # the highest previous cut (integers: any order)
            j0 = np.maximum(j0, other)
        j = j0 + (fits & (jj > j0[None, :])).sum(axis=0, dtype=np.uint8)
        for o in ops:
            cuts[o].append(np.maximum(cuts[o][-1], j) if cuts[o] else j)
    return cuts
