"""A reference scorer for the mapping search's tests: every loop order costed directly, position by position.

:func:`hwsim.cost.mapping.batch_scorer.score_batch` computes the same numbers from per-*subset* tables for
many layers at once; :func:`score_orders` computes them per (order, position) for one layer and
unrolling, the plain way. The tests hold the two to the same floats, and hold :func:`score_orders` to the
scalar :func:`hwsim.cost.mapping.one_mapping.evaluate`. Not part of the product (nothing in hwsim needs it).
"""

from __future__ import annotations

import math

import numpy as np

from hwsim.cost.mapping.batch_scorer import Ledger, allocate, charge_traffic, columns, cycles_of, overflow_of
from hwsim.cost.mapping.one_mapping import _chain, floor_ways, objective_key
from hwsim.cost.mapping.stall import roofline, transfer_stall
from hwsim.cost.mapping.loop_orders import permutations
from hwsim.cost.mapping.space import DIMS, OPERANDS, RELEVANT, Arch, Shape, Spatial, input_overlap, sizes
from hwsim.cost.mapping.tiles import tile_elements, window
from hwsim.hardware.profile import MemoryLevel

W, I, O = OPERANDS


def loop_orders(factor_list: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct order of the (dimension index, factor) loops, as LOMA enumerates them: dimension
    indices and factors, each shaped (orders, loops), innermost loop first."""
    loops = np.array(factor_list, dtype=np.int64).reshape(-1, 2)
    code = loops[:, 0] * 1_000_003 + loops[:, 1]  # one number per (dimension, factor)
    perms = permutations(len(factor_list))
    _, first = np.unique(code[perms], axis=0, return_index=True)  # repeated loops give repeated orders
    rows = perms[np.sort(first)]
    return loops[rows, 0], loops[rows, 1].astype(float)


def score_orders(shape: Shape, a: Arch, spatial: Spatial, orders: np.ndarray, factors: np.ndarray,
                 objective: str = "energy") -> tuple[np.ndarray, np.ndarray]:
    """Energy (pJ) and cycles of many loop orders at once: ``evaluate``'s formulas over numpy arrays.

    Every order is scored under both allocations of a shared memory (the common cut, then the cut per
    operand) and keeps the second where its tiles fit and the first's overflow a level, else only where
    ``objective`` strictly prefers it, as ``evaluate`` does.

    ``orders`` holds dimension indices (into ``DIMS``), ``factors`` the loop counts, both shaped
    (orders, loops), innermost loop first (as :func:`loop_orders` gives them).
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

    win = window(shape)

    def extent(o: str, b: np.ndarray) -> np.ndarray:
        return tile_elements(o, columns(b), win, np.minimum, np.where)

    ext = {(o, s): extent(o, b_sh if s else b_pe) for o in OPERANDS for s in (False, True)}  # (n, L+1)
    below = np.concatenate([np.ones((n, 1)), np.cumprod(factors, axis=1)], axis=1)  # (n, L+1)
    out_ir = np.concatenate([np.ones((n, 1)), np.cumprod(np.where(np.isin(orders, [DIMS.index(d) for d in RELEVANT[O]]),
                                                                  1.0, factors), axis=1)], axis=1)
    ids = np.arange((n_loops + 1) * n).reshape(n_loops + 1, n)  # (position, order) as one id into the .T tables
    tables = (ids, ids[-1], lambda o, shared: ext[(o, shared)].T.ravel(), below.T.ravel(), below[:, -1],
              out_ir.T.ravel())
    cuts = [allocate(a, *tables, shared_cut=mode) for mode in ("common", "per_operand")]
    (e, c), (e2, c2) = [_score(shape, a, spatial, orders, factors, x, true_ways, b_pe, b_sh, extent) for x in cuts]
    over, over2 = [overflow_of(a, *tables, x) for x in cuts]
    # an allocation whose tiles fit every level before one that overflows, then the objective
    better = np.where(over == over2, objective_key(e2, c2, objective) < objective_key(e, c, objective), over)
    return np.where(better, e2, e), np.where(better, c2, c)


def _score(shape: Shape, a: Arch, spatial: Spatial, orders: np.ndarray, factors: np.ndarray,
           cuts: dict[str, list[np.ndarray]], true_ways: dict[str, float], b_pe: np.ndarray, b_sh: np.ndarray,
           extent) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_orders` under one allocation ``cuts``."""
    n, n_loops = orders.shape
    rows_idx = np.arange(n)
    B, G, K, C, OY, OX, FY, FX = range(8)

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
            window_elements = b[:, B] * b[:, G] * b[:, C] * b[:, OY] * b[:, FY] * b[:, OX] * b[:, FX]
            out = out * extent(I, b) / window_elements
        return out

    ledger = Ledger(np.full(n, macs * a.mac_pj))
    add = ledger.add

    n_out = float(shape.b * shape.g * shape.k * shape.oy * shape.ox)

    def first_tile(o: str, lv: MemoryLevel, j: np.ndarray) -> np.ndarray:
        t = extent(o, (b_pe if lv.per_pe else b_sh)[rows_idx, j])
        if lv.per_pe:
            t = t * math.prod(u for d, u in true_ways.items() if d in RELEVANT[o])
        return t

    def held(o: str) -> np.ndarray:
        """The product of the leading run of loops irrelevant to ``o``."""
        return np.prod(np.where(np.cumprod(~rel[o], axis=1).astype(bool), factors, 1.0), axis=1)

    onload, offload = charge_traffic(a, n, cuts, macs, n_out, mc, fills, add, first_tile, held,
                                     tile_of=lambda o, j: extent(o, b_pe[rows_idx, j]), noc=ledger.noc,
                                     overlap=input_overlap(true_ways, shape.sy, shape.sx))
    if not a.per_period:
        stall, on_c, off_c = roofline(a, ledger.r_lv, ledger.w_lv, temporal,
                                      lambda lv: lv.bandwidth_bytes_per_cycle * 8 / lv.word_bits
                                      * (macs / temporal if lv.per_pe else 1), onload, offload)
        return ledger.energy, cycles_of(temporal, stall, on_c, off_c)
    # ZigZag's per-period stall, order by order as evaluate builds it (the batch scorer gathers it per subset)
    win = window(shape)
    stall, on_c, off_c = np.empty(n), np.empty(n), np.empty(n)
    for r in range(n):
        loops = tuple((DIMS[d], int(f)) for d, f in zip(orders[r], factors[r]))

        fw = floor_ways(shape, loops, spatial)
        stall[r], on_c[r], off_c[r] = transfer_stall(
            a, temporal, {o: _chain(a, o, loops, [int(x[r]) for x in cuts[o]], win, fw, sizes(shape))
                          for o in OPERANDS}, a.bits[O], True)
    cycles = cycles_of(temporal, stall, on_c, off_c)
    return ledger.energy, cycles
