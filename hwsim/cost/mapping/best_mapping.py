"""The search: the cheapest mapping of each layer shape under an objective, and the cache of its answers.

ZigZag's outer loop (Mei et al., IEEE TC 2021): for every spatial unrolling kept (the ``SPATIAL_KEEP`` of
highest utilisation, as ZigZag's spatial-mapping generator keeps 3), LOMA's engine enumerates the loop
orders (:mod:`hwsim.cost.mapping.loop_orders`) and the cost model scores them
(:mod:`hwsim.cost.mapping.batch_scorer`); the winner is rebuilt by
:func:`hwsim.cost.mapping.one_mapping.evaluate`. Results are cached per (layer shape, profile,
objective); :func:`search_many` (which :func:`hwsim.simulate` calls first) searches every new shape of a
network in shared numpy passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from hwsim.cost.mapping import loop_orders
from hwsim.cost.mapping.batch_scorer import Item, PassCuts, search_batch
from hwsim.cost.mapping.loop_orders import (block_order_tables, flat_loops, limit_factors, order_tables,
                                            pattern, primes)
from hwsim.cost.mapping.one_mapping import OBJECTIVES, MappingCost, evaluate, objective_key, preferred
from hwsim.cost.mapping.space import (DIMS, OPERANDS, RELEVANT, Arch, Shape, Spatial, arch, folds, sizes,
                                      spatial_options, utilisation)
from hwsim.cost.mapping.tiles import tile_elements, window
from hwsim.cost.weight_sets import KernelSteps, kernel_steps, stepped
from hwsim.hardware.profile import SPATIAL_KEEP, Profile  # noqa: F401 - SPATIAL_KEEP: the default, re-exported
O = OPERANDS[2]

# (what the search reads of the profile, objective) -> shape -> the chosen mapping: looked up once per
# whole network, not once per layer. The key is the profile as digested by :func:`arch` (everything the
# search and :func:`evaluate` read), not the profile itself: designs that differ only in what the search
# never reads (a mask-scale precision, a vector unit, an output stage, area keys) share their searches
_SEARCHES: dict[tuple[tuple, str], dict[Shape, MappingCost]] = {}
_SEARCHES_MAX = 4096
# id(mapping) -> (mapping, its notation): built once per search result, shared by the layers using it
_NOTATIONS: dict[int, tuple[MappingCost, dict[str, object]]] = {}


def search(shape: Shape, profile: Profile, objective: str = "energy") -> MappingCost:
    """The cheapest mapping under ``objective`` (energy, latency or edp).

    Spatial: the profile's unrollings, the ``search.spatial_keep`` of highest utilisation (3 by default, as
    ZigZag's spatial-mapping generator keeps) and those tied with the last (:func:`kept_unrollings`).
    Temporal: every distinct order of the loop prime factors, at most ``search.lpf_limit`` of them after
    merging the smallest (LOMA; 6 by default, ``eyeriss`` 8, ``ethos_u55`` 7), each allocated bottom-up to the
    memory levels. Cached per (shape, what the search reads of the profile, objective); :func:`search_many`
    fills the cache for many shapes in one numpy pass.
    """
    m = _SEARCHES.get((search_key(profile), objective), {}).get(shape)
    if m is None:
        m = search_many((shape,), profile, objective)[0]
    return m


@lru_cache(maxsize=256)
def search_key(profile: Profile) -> tuple:
    """Everything the search reads of ``profile``: every field of :func:`arch`'s digest (dicts as sorted
    items), so two profiles with equal keys get the same mapping for every shape and objective (the search
    and :func:`evaluate` see the profile only through ``arch(profile)``). A field added to ``Arch`` joins
    the key by itself."""
    a = arch(profile)
    return tuple(tuple(sorted(v.items())) if isinstance(v, dict) else v
                 for v in (getattr(a, f.name) for f in dataclasses.fields(a)))


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
    cache = _SEARCHES.setdefault((search_key(profile), objective), {})
    new = dict.fromkeys(x for s in dict.fromkeys(shapes)
                        for x in ((dataclasses.replace(s, b=1), s) if s.b > 1 else (s,)) if x not in cache)
    # single-image shapes first: a batch's search compares with its single image's
    order = sorted(new, key=lambda s: s.b > 1)
    for i in range(0, len(order), _BLOCK):  # bounded memory: _BLOCK shapes per numpy pass
        _search_block(order[i:i + _BLOCK], profile, objective, cache)
    return [cache[s] for s in shapes]


def _passes(items: list[Item]) -> list[list[Item]]:
    """``items`` in consecutive groups of at most ``_PASS_ROWS`` orders (one item at least): numpy's
    temporaries of a few thousand rows stay in the core's cache (1.5-2x faster than one pass of 26,000).
    Each pass also pays a fixed numpy overhead for the search's later stages (the bound, the cut per
    operand of the few orders left, their second scoring: :func:`search_batch`), so 10,240 rows beat
    5,120 (cold ResNet-50 on edge_npu 19.6 vs 22.5 ms of CPU) although a pass's peak memory then passes
    glibc's heap trim threshold (about 2 MB once numpy is loaded) and some of the heap is faulted in
    again (about 500 minor page faults per cold ResNet-50 run)."""
    out: list[list[Item]] = []
    rows = _PASS_ROWS
    for it in items:
        if rows + len(it[3].loop) > _PASS_ROWS:
            out.append([])
            rows = 0
        out[-1].append(it)
        rows += len(it[3].loop)
    return out


_PASS_ROWS = 10240
_BLOCK = 128  # layer shapes per numpy pass (about 2,000 rows each, 7 positions: ~16 MB per array at most)


def _search_block(new: list[Shape], profile: Profile, objective: str, cache: dict[Shape, MappingCost]) -> None:
    """Search the uncached ``new`` shapes in one numpy pass and cache the results (see search_many)."""
    if new:
        a = arch(profile)
        plans = []
        items: list[Item] = []
        blocks: list[Item] = []
        for shape in new:
            shape = engine_shape(shape, a)
            kept, flats, pinned, inner = [], [], [], []
            for sp, left in kept_unrollings(shape, a):
                flat = flat_loops(left, (), a.lpf_limit)
                more = pinned_loops(a, left, flat)
                # the factors a register holds, as a loop of their own (see pinned_loops), where they differ
                for f in (flat,) if more is None else (flat, more):
                    kept.append(sp)
                    flats.append(f)
                    pinned.append(f is more)
                    inner.append(())
            for sp, left in (block_unrollings(shape, a) if a.pe_block else ()):
                # the per-level tilings (see pe_block_loops): their orders in passes of their own
                for f, n, top in pe_block_loops(a, shape, left):
                    kept.append(sp)
                    flats.append(f)
                    pinned.append(True)
                    inner.append((n, top))
            plans.append((shape, kept, flats, pinned, inner))
            items += [(shape, sp, flat, order_tables(pattern(flat)))
                      for sp, flat, n in zip(kept, flats, inner) if flat and not n]
            blocks += [(shape, sp, flat, block_order_tables(pattern(flat), *n))
                       for sp, flat, n in zip(kept, flats, inner) if n]
        # the block candidates' rows after every other row (subsets of more loops: passes of their own)
        scored = [search_batch(a, g, objective) for g in _passes(items) + _passes(blocks)]
        keys = np.concatenate([np.zeros(0)] + [objective_key(e, c, objective) for e, c, _ in scored])
        # per order, whether its scored allocation overflows a level: such orders only where none fits
        over = np.concatenate([np.zeros(0, dtype=bool)] + [p.over for _, _, p in scored])
        starts = np.cumsum([0] + [len(e) for e, _, _ in scored])
        allocs: list[PassCuts] = [p for _, _, p in scored]
        lo = 0
        lo_block = len(keys) - sum(len(t.loop) for _, _, _, t in blocks)  # the first block row
        for asked, (shape, kept, flats, pinned, inner) in zip(new, plans):
            # (overflows, key): a mapping whose tiles fit every level first (ZigZag and Timeloop reject the
            # others), then the least key; an overflowing one only where no order of any kept unrolling fits
            best: Candidate | None = None
            extra: dict[bool, Candidate] = {}  # the best split (False) and per-level (True) candidates
            for sp, flat, pin, n in zip(kept, flats, pinned, inner):
                row = -1  # the winning order's row in the passes (its allocations: PassCuts)
                if not flat:
                    loops: tuple[tuple[str, int], ...] = ()
                    m = evaluate(shape, a, sp, loops, objective=objective)
                    key, bad = _key_of(m, objective), bool(m.overflow)
                else:
                    t = block_order_tables(pattern(flat), *n) if n else order_tables(pattern(flat))
                    at = lo_block if n else lo
                    seg = keys[at:at + len(t.loop)]
                    seg_over = over[at:at + len(t.loop)]
                    bad = bool(seg_over.all())
                    k = int(np.argmin(seg if bad or not seg_over.any() else np.where(seg_over, np.inf, seg)))
                    row = at + k
                    if n:
                        lo_block += len(t.loop)
                    else:
                        lo += len(t.loop)
                    key = float(seg[k])
                    loops = tuple((DIMS[flat[i][0]], flat[i][1]) for i in t.loop[k])
                if pin:  # the split or per-level candidates
                    if not bad and (bool(n) not in extra or key < extra[bool(n)][1]):
                        extra[bool(n)] = (bad, key, sp, loops, row)
                elif best is None or (bad, key) < best[:2]:
                    best = (bad, key, sp, loops, row)
            assert best is not None
            chosen = _rebuilt(shape, a, best, objective, starts, allocs)
            for best_pin in sorted(extra.values(), key=lambda c: c[1]):
                # the pinned loops' winner, where its tiles fit (LOMA's allocation reports an overflow when the
                # tiles below a level's start already exceed it: a pinned register tile can cause that); else
                # the per-level candidate's, where better (see pe_block_loops)
                if best_pin[:2] < best[:2]:
                    other = _rebuilt(shape, a, best_pin, objective, starts, allocs)
                    if not other.overflow:
                        chosen, best = other, best_pin
            if shape.b > 1:
                # the batch loop outermost around the best single-image mapping is always a valid mapping:
                # the search never does worse per image than batch 1 (the lpf limit can otherwise hide it)
                one = cache[dataclasses.replace(asked, b=1)]
                alt = evaluate(shape, a, one.spatial, (*one.loops, ("B", shape.b)), objective=objective)
                if preferred(alt, chosen, objective):
                    chosen = alt
            cache[asked] = with_steps(chosen, asked, a)


def engine_shape(shape: Shape, a: Arch) -> Shape:
    """The loop bounds the search maps: ``shape``, its kernel in the engine's steps where the profile has
    ``weight_sets`` (:func:`hwsim.cost.weight_sets.kernel_steps`; the layer's MACs stay the true ones)."""
    return shape if a.weight_sets is None else kernel_steps(shape, a.weight_sets)


def engine_kernel(shape: Shape, a: Arch) -> KernelSteps | None:
    """Where :func:`engine_shape` maps ``shape``'s kernel as the engine's steps, which (else None)."""
    return stepped(shape, a.weight_sets)


def with_steps(m: MappingCost, shape: Shape, a: Arch) -> MappingCost:
    """``m``, a mapping of ``engine_shape(shape, a)``, marked as such where its FY and FX are kernel steps (its
    record then says so: :meth:`MappingCost.notation`)."""
    steps = engine_kernel(shape, a)
    return m if steps is None or m.kernel_steps == steps else dataclasses.replace(m, kernel_steps=steps)


# a scored order: (its allocation overflows a level, objective key, unrolling, loops, row in the passes or -1)
Candidate = tuple[bool, float, Spatial, tuple[tuple[str, int], ...], int]


def _rebuilt(shape: Shape, a: Arch, best: Candidate, objective: str, starts: np.ndarray,
             allocs: list[PassCuts]) -> MappingCost:
    """The winning order ``best`` costed by :func:`evaluate` with the allocation the batch scorer gave it."""
    given = None
    if best[4] >= 0:
        p = int(np.searchsorted(starts, best[4], side="right")) - 1
        given = allocs[p].of(best[4] - int(starts[p]))
    return evaluate(shape, a, best[2], best[3], objective=objective, allocations=given)


def ranked_unrollings(shape: Shape, a: Arch, opts: list[Spatial]
                      ) -> list[tuple[float, Spatial, tuple[int, ...]]]:
    """``opts`` with their utilisation and temporal folds, highest utilisation first (stable: ties keep the
    options' order)."""
    ranked = [(utilisation(shape, left, a), sp, left) for sp in opts for left in (folds(shape, sp),)]
    ranked.sort(key=lambda x: -x[0])
    return ranked


def kept_unrollings(shape: Shape, a: Arch) -> list[tuple[Spatial, tuple[int, ...]]]:
    """The unrollings the search costs, with their temporal folds: the ``a.spatial_keep`` of highest
    utilisation (the profile's ``search.spatial_keep``; ZigZag's generator keeps 3 by default), and every other one tied with the last of them, so that
    which of two equally used unrollings (OY or OX of a depthwise layer) is costed never depends on the
    order the profile lists them in."""
    ranked = ranked_unrollings(shape, a, spatial_options(shape, a))
    keep = a.spatial_keep
    cut = ranked[min(keep, len(ranked)) - 1][0] if ranked else 0.0
    return [(sp, left) for i, (u, sp, left) in enumerate(ranked) if i < keep or u == cut]


def block_unrollings(shape: Shape, a: Arch) -> list[tuple[Spatial, tuple[int, ...]]]:
    """The unrollings the per-level candidates (:func:`pe_block_loops`) are costed on: every one of the
    ``search.spatial_keep`` highest distinct utilisations. ZigZag keeps that many unrollings (3 by default,
    :func:`kept_unrollings`), but unrollings of equal utilisation are common (K on 14 columns, or 2 groups x 7
    output channels; FY x C or C alone on 12 rows), so the 3 kept can all be of one utilisation: on
    ``eyeriss`` AlexNet CONV4's four at 98 % leave out every unrolling of the row-stationary PE set (filter
    rows on the PE rows, ofmap rows on the columns: Chen et al., IEEE JSSC 2017, §IV-A, 156 PEs at CONV4,
    Table V). Timeloop's mapper chooses the spatial factors as part of the same per-level tiling; a per-level
    candidate scores a few thousand orders, not LOMA's ``lpf_limit!``, so it is costed on every unrolling of
    those utilisations.

    On a row_stationary profile (its default axes) they are also costed on the PE-set unrollings
    (:func:`pe_set_unrollings`) of at least the lowest of those utilisations; the utilisations counted, and
    so the other unrollings costed, stay those of ``spatial_options``."""
    opts = spatial_options(shape, a)
    ranked = ranked_unrollings(shape, a, opts)
    levels = sorted({u for u, _, _ in ranked}, reverse=True)[:a.spatial_keep]
    if not levels:
        return []
    out = [(sp, left) for u, sp, left in ranked if u >= levels[-1]]
    for sp in pe_set_unrollings(shape, a, opts) if a.pe_sets else ():
        left = folds(shape, sp)
        if utilisation(shape, left, a) >= levels[-1]:
            out.append((sp, left))
    return out


def pe_set_unrollings(shape: Shape, a: Arch, opts: list[Spatial]) -> list[Spatial]:
    """The row-stationary PE sets that process different filters: rows FY x C^r x K^t, the rows holding
    n = rows // FY sets of FY filter rows, ``t`` >= 2 of them on different filters (t divides n) and r = n / t
    (at most C) on different channels, so that r·t·FY <= rows and the sets fill the rows; beside every column
    unrolling of ``opts`` (the layer's ``spatial_options``) without K.

    Eyeriss maps a layer as PE sets of R filter rows x E ofmap rows, and where several fit the array they
    process r different channels and t different filters (Chen et al., IEEE JSSC 2017, §IV-A); the chip's
    AlexNet CONV3-5 run 156 active PEs (Table V) as 4 sets of 3 x 13 on its 12 x 14 array. The dataflow's
    rows unroll FY and C, at most two dimensions an axis (:func:`spatial_options`: t = 1 only), and at CONV3
    the 16 channels a pass of r = 4 leave the chip's split (p = 16, m = 64 psums in the GLB) overflowing the
    108 KB GLB: with t = 2 or 4 it fits (tests/hwsim/test_eyeriss_chip_mapping.py). Only the per-level
    candidates cost them (LOMA's kept unrollings, :func:`kept_unrollings`, stay ZigZag's)."""
    size = sizes(shape)
    fy = min(size["FY"], a.rows)
    sets = a.rows // fy
    cols = list(dict.fromkeys(sp.cols for sp in opts if all(d != "K" for d, _ in sp.cols)))
    out: list[Spatial] = []
    for t in (t for t in range(2, min(sets, size["K"]) + 1) if sets % t == 0):  # r·t sets fill the rows
        r = min(sets // t, size["C"])
        rows = (*((("FY", fy),) if fy > 1 else ()), *((("C", r),) if r > 1 else ()), ("K", t))
        out += [Spatial(rows=rows, cols=c) for c in cols]
    return out


def pinned_loops(a: Arch, left: tuple[int, ...], flat: tuple[tuple[int, int], ...]
                 ) -> tuple[tuple[int, int], ...] | None:
    """The loops of ``left`` (temporal folds per dimension) with, per dimension, the factor a per-PE level can
    hold kept whole, where LOMA's merge (``flat``) left that dimension no loop small enough for it; None when
    there is no such dimension.

    LOMA merges the smallest prime factors of the dimension with the most (``loop_orders.limit_factors``), so
    32 input-channel folds become one loop of 32; a per-PE register of 4 weights (Ethos-U55's MAC lane holds
    the weights of 4 cycles, 32 channels over 8 lanes) then holds no input-channel loop, the weights cannot
    stay in it and the accumulation over channels cannot stay in the per-PE accumulator: every order of
    those loops sends partial sums up. For each operand of the profile's ``search.pe_split`` (default: outputs)
    that a per-PE level holds, the extra candidate pins, for each per-PE level (innermost first) and each
    dimension its operand depends on and that operand does not (for outputs, the reduction C, FY, FX: the
    accumulation stays; for inputs, K: an input stays while the filters pass, Eyeriss's p filters per PE, Chen
    et al., JSSC 2017, §IV-A), the largest proper divisor of the fold that fits the level alone (ZigZag's static
    loop sizes, which ``limit_lpfs`` does not merge; Timeloop's per-level tiling factors); the search scores
    both and keeps the better where its tiles fit (no ``overflow``), so it never does worse than LOMA's loops
    alone."""
    kept = [x for x in a.pe_split if any(lv.per_pe for lv in a.chains[x][:-1])]
    if not kept:
        return None
    merged: dict[str, list[int]] = {}
    for d, f in flat:
        merged.setdefault(DIMS[d], []).append(f)
    pins: dict[str, int] = {}
    for lv, ops in a.alloc:
        if not lv.per_pe:
            continue
        for o in ops:
            cap = int(lv.size_bytes // a.ebytes[o])
            for d, n in zip(DIMS, left):
                if (d in pins or all(d in RELEVANT[x] for x in kept) or d not in RELEVANT[o] or n <= 2
                        or min(merged.get(d, [n])) <= cap):
                    continue
                p = max((x for x in range(2, min(cap, n - 1) + 1) if n % x == 0), default=0)
                if p:
                    pins[d] = p
    if not pins:
        return None
    out = flat_loops(left, tuple(sorted(pins.items())), a.lpf_limit)
    return None if out == flat else out


def pe_block_loops(a: Arch, shape: Shape, left: tuple[int, ...]
                   ) -> list[tuple[tuple[tuple[int, int], ...], int, int]]:
    """The per-level tiling candidates of an unrolling whose temporal folds are ``left``: per candidate, its
    loops as (dimension index, factor), the per-PE block's first and the groups' last, the block's loop count
    and the groups' (0 or 1).

    Timeloop's mapper picks a tiling factor per dimension per storage level, then an order within each level
    (Parashar et al., ISPASS 2019; Timeloop v3's mapping format: each level's sub-nest has one loop per
    problem dimension, in a permutation of its own, and an unconstrained mapper tries every factorisation and
    order). LOMA splits each fold into merged prime factors and permutes them all, so a dimension split over
    three levels, as Eyeriss splits the output channels into the p filters of a PE's spad, the m/p more whose
    psums the global buffer holds and the M/m passes from DRAM (Chen et al., IEEE JSSC 2017, §IV-A, Table IV:
    16 | 4 | 3 at AlexNet CONV4), needs more loops than its ``lpf_limit`` allows and a split its
    smallest-first merge never forms. Here the per-PE level is tiled first, as the chip's p and q are bounded
    by its spads (p·q·S filter weights, q·S ifmap values, p psums per PE: JSSC 2017, §IV-A): for each operand
    of ``search.pe_split`` in turn, the dimensions it does not depend on (outputs: FX, FY, C, the reduction
    kept in the psum register; inputs: K, the filters passing while an ifmap value stays) each take a divisor
    of its fold, every choice for which every operand's per-PE tile still fits its innermost per-PE level, the
    last dimension only the largest such (one candidate per choice of the others: a spad tiling that is not
    the fullest can still win, as the chip's q = 3 where 4 fits leaves the buffer room for m = 64 channels'
    psums at CONV5). Its loops stay one innermost block, in each of its orders; the rest of each fold but the
    groups' is split and merged as LOMA does (``loop_orders.limit_factors``) to at most ``search.pe_block``
    loops, every order of them scored above the block; the groups' loop stays outermost (every operand depends
    on G, so no level reuses anything across groups). The allocation stays LOMA's bottom-up one, so the
    buffer's share (the m/p, the n images, the channels) is whichever of those loops fits it."""
    fits: list[tuple[int, str]] = []  # (elements, operand) of each operand's innermost per-PE level
    for o in OPERANDS:
        lv = a.chains[o][0]
        if lv.per_pe and len(a.chains[o]) > 1:
            fits.append((int(lv.size_bytes // a.ebytes[o]), o))
    if not fits:
        return []
    w = window(shape)
    order: list[str] = []
    for x in a.pe_split:
        order += [d for d in reversed(DIMS) if d not in RELEVANT[x] and d not in order]
    order = [d for d in order if left[DIMS.index(d)] > 1]
    tilings: list[dict[str, int]] = []

    def fill(i: int, tile: dict[str, int]) -> None:
        if i == len(order):
            tilings.append(dict(tile))
            return
        d = order[i]
        n = left[DIMS.index(d)]
        ok = [f for f in range(1, n + 1) if n % f == 0
              and all(tile_elements(o, {**tile, d: f}, w) <= cap for cap, o in fits)]
        for f in ok if i < len(order) - 1 else ok[-1:]:
            fill(i + 1, {**tile, d: f})

    fill(0, dict.fromkeys(DIMS, 1))
    g = left[DIMS.index("G")]
    out = []
    for tile in tilings:
        inner = tuple((DIMS.index(d), tile[d]) for d in order if tile[d] > 1)
        if not inner:
            continue
        rest = limit_factors({d: primes(n // tile[d]) for d, n in zip(DIMS, left)
                              if n // tile[d] > 1 and d != "G"}, a.pe_block)
        top = ((DIMS.index("G"), g),) if g > 1 else ()
        out.append(((*inner, *((DIMS.index(d), f) for d in DIMS if d in rest for f in rest[d]), *top),
                    len(inner), len(top)))
    return out


def _key_of(m: MappingCost, objective: str) -> float:
    """:func:`objective_key` of one evaluated mapping (the same float as its row in a scored batch)."""
    return float(objective_key(np.array([m.energy]), np.array([m.cycles]), objective)[0])


def clear_caches() -> None:
    """Empty every cache of the mapping search (searches, loop factors, order tables): a cold start."""
    _SEARCHES.clear()
    _NOTATIONS.clear()
    loop_orders.clear()
    arch.cache_clear()
    search_key.cache_clear()
