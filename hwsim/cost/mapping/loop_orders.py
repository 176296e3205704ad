"""The temporal loops of a mapping and every order of them: LOMA's loop-order enumeration.

Once the array is unrolled (:mod:`hwsim.cost.mapping.space`), each dimension's fold count is split into
its prime factors, merged down to at most ``LPF_LIMIT`` loops (LOMA's ``lpf_limit``, merging the two
smallest factors of the dimension with the most, as ZigZag 3.9.1's ``limit_lpfs``; Symons et al.,
"LOMA: Fast Auto-Scheduling on DNN Accelerators through Loop-Order-based Memory Allocation", AICAS
2021), and every distinct order of those loops is a candidate (ZigZag's ``opt/loma`` engine).

The orders of a multiset of loops depend only on which loops repeat, so they are layer-independent
tables (:func:`order_tables`), shared by every layer with the same pattern. Orders are not pruned
beyond interchangeable loops (same dimension and count: the same order): the stationarity argument
that lets Timeloop and ZigZag skip orders holds for fixed tiles; under LOMA's bottom-up allocation
swapping two loops changes the set below the swap point, hence which tile fits and where each
level's cut falls, so such orders can cost differently and are all scored.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwsim.cost.mapping.space import DIMS, OPERANDS, RELEVANT
# LOMA's default lpf_limit, 6 (zigzag.api.get_hardware_performance_zigzag); a profile's search.lpf_limit sets another
from hwsim.hardware.profile import LPF_LIMIT


def primes(n: int) -> list[int]:
    """The prime factors of ``n``, smallest first, with repeats."""
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def limit_factors(factors: dict[str, list[int]], limit: int, pinned: dict[str, int] | None = None
                  ) -> dict[str, list[int]]:
    """Merge prime factors until at most ``limit`` loops remain, as LOMA does (ZigZag 3.9.1,
    ``LomaEngine.limit_lpfs`` in zigzag/opt/loma/engine.py): take the dimension with the most factors (the
    first in ``factors``' order on ties: ZigZag's ``max`` over its layer dimensions, in the workload's
    order B, G, K, C, OY, OX, FY, FX) and merge its two smallest factors; stop when no dimension has two.

    ``pinned``: per dimension, one factor kept as a loop of its own and never merged (``factors`` holds the
    rest of that dimension), as ZigZag keeps a ``StaticPositionsAndSizesConstraint``'s sizes out of the
    merge (``reduce_static_fps``, ``find_smallest_non_static_pf``): a pinned factor counts towards its
    dimension's loops, and a dimension merges only while two of its factors are not pinned."""
    pinned = pinned or {}
    out = {d: sorted(v) for d, v in factors.items()}
    total = sum(len(v) for v in out.values()) + len(pinned)
    while total > limit:
        free = [k for k in out if len(out[k]) >= 2]
        if not free:
            break
        d = max(free, key=lambda k: len(out[k]) + (k in pinned))  # the first of the longest
        v = out[d]
        out[d] = sorted([v[0] * v[1], *v[2:]])
        total -= 1
    for d, f in pinned.items():
        out[d] = sorted([*out.get(d, []), f])
    return out


@lru_cache(maxsize=4096)
def flat_loops(folds: tuple[int, ...], pins: tuple[tuple[str, int], ...] = (), limit: int = LPF_LIMIT
               ) -> tuple[tuple[int, int], ...]:
    """The temporal loops left by ``folds`` (per dimension of ``DIMS``): prime factors, merged down to
    ``limit`` loops (the profile's ``search.lpf_limit``, ``LPF_LIMIT`` by default), as (dimension index, factor)
    in ``DIMS`` order, smallest factor first; ``pins``: (dimension, factor) loops kept whole
    (:func:`limit_factors`' ``pinned``; each factor divides its fold)."""
    pinned = dict(pins)
    factors = limit_factors({d: primes(f // pinned.get(d, 1)) for d, f in zip(DIMS, folds) if f > 1}, limit,
                            pinned)
    return tuple((DIMS.index(d), f) for d in DIMS if d in factors for f in factors[d])


@lru_cache(maxsize=4096)
def pattern(flat: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """(dimension, factor) loops as (dimension, rank of the factor among that dimension's factors)."""
    ranks = {d: sorted({f for dd, f in flat if dd == d}) for d, _ in flat}
    return tuple((d, ranks[d].index(f)) for d, f in flat)


@dataclass(frozen=True, slots=True)
class Orders:
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
def order_tables(pattern_: tuple[tuple[int, int], ...]) -> Orders:
    """The distinct orders of loops given as (dimension index, rank of the factor within its dimension).

    Two loops with the same dimension and factor are interchangeable, so the orders are deduplicated on
    (dimension, factor rank), keeping each order's first occurrence in itertools' (lexicographic) order
    of the permutations: the tables depend on the pattern only, so layers with the same pattern share them.
    """
    n = len(pattern_)
    perms, prefix = _all_orders(n)
    stay = {o: _stay_all(tuple(DIMS[d] in RELEVANT[o] for d, _ in pattern_)) for o in OPERANDS}
    if len(set(pattern_)) == n:  # no two loops interchangeable: every permutation is distinct
        return Orders(loop=perms, prefix=prefix, stay=stay)
    # one integer per order (base-64 digits (dimension, factor rank)); first occurrences, in order
    code = np.array([d * 8 + r for d, r in pattern_], dtype=np.int64)
    _, first = np.unique(code[perms] @ (64 ** np.arange(n, dtype=np.int64)), return_index=True)
    rows = np.sort(first)
    return Orders(loop=perms[rows], prefix=prefix[:, rows], stay={o: s[:, rows] for o, s in stay.items()})


@lru_cache(maxsize=256)
def block_order_tables(pattern_: tuple[tuple[int, int], ...], inner: int, top: int = 0) -> Orders:
    """The distinct orders of loops (as :func:`order_tables`' ``pattern_``) whose first ``inner`` loops stay a
    block at the innermost positions, in every order among themselves, the others in every order above it.

    Timeloop's mapping space (Parashar et al., ISPASS 2019; Timeloop v3's mapping format): a tiling factor per
    dimension per storage level, then a permutation within each level, so the loops of one level are never
    interleaved with another's; here the block is the per-PE level's loops
    (:func:`hwsim.cost.mapping.best_mapping.pe_block_loops`) and only ``inner! x (n - inner - top)!`` orders
    are scored, not ``n!``; the last ``top`` loops stay outermost in the order given. Subsets of up to 16
    loops (bit masks as ``uint16`` past 8 loops: the per-level split makes more loops than LOMA's
    ``lpf_limit``)."""
    n = len(pattern_)
    inner_p, outer_p = permutations(inner), permutations(n - inner - top) + inner
    loop = np.concatenate([np.repeat(inner_p, len(outer_p), axis=0), np.tile(outer_p, (len(inner_p), 1)),
                           np.tile(np.arange(n - top, n), (len(inner_p) * len(outer_p), 1))], axis=1)
    if len(set(pattern_)) < n:  # interchangeable loops (same dimension, same factor): first occurrences
        code = np.array([d * 8 + r for d, r in pattern_], dtype=np.int64)
        _, first = np.unique(code[loop], axis=0, return_index=True)
        loop = loop[np.sort(first)]
    prefix = _prefixes(loop)
    stay = {o: _stays(prefix, np.array([DIMS[d] in RELEVANT[o] for d, _ in pattern_])[loop].T) for o in OPERANDS}
    return Orders(loop=loop, prefix=prefix, stay=stay)


@lru_cache(maxsize=16)
def permutations(n: int) -> np.ndarray:
    """All orders of ``n`` positions, as an (n!, n) index array."""
    flat = itertools.chain.from_iterable(itertools.permutations(range(n)))  # itertools' (lexicographic) order
    return np.fromiter(flat, dtype=np.int64, count=math.factorial(n) * n).reshape(math.factorial(n), n)


@lru_cache(maxsize=16)
def _all_orders(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every order of ``n`` loops, (n!, n), and the subset below each position, (n + 1, n!) bytes."""
    perms = permutations(n)
    return perms, _prefixes(perms)  # subsets of at most 8 loops (8 dimensions): bytes


@lru_cache(maxsize=1024)
def _stay_all(relevant: tuple[bool, ...]) -> np.ndarray:
    """For every order of loops of which those flagged ``relevant`` matter to an operand, the subset
    below the first relevant loop at or above each position, (n + 1, n!) bytes."""
    perms, prefix = _all_orders(len(relevant))
    return _stays(prefix, np.array(relevant)[perms].T)


def _prefixes(loop: np.ndarray) -> np.ndarray:
    """For orders ``loop`` (orders, n), the subset (bit mask) of loops below each position, (n + 1, orders):
    ``uint8`` for up to 8 loops, ``uint16`` past."""
    n = loop.shape[1]
    prefix = np.zeros((n + 1, len(loop)), dtype=np.uint8 if n <= 8 else np.uint16)
    prefix[1:] = np.cumsum(1 << loop, axis=1).T
    return prefix


def _stays(prefix: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """``Orders.stay`` of one operand: from ``prefix`` and ``rel`` (positions, orders: whether the loop at a
    position matters to the operand), the subset below the first relevant loop at or above each position."""
    s = prefix.copy()  # from the outermost position in: the subset below the next relevant loop
    for j in range(prefix.shape[0] - 2, -1, -1):
        s[j] = np.where(rel[j], prefix[j], s[j + 1])
    return s


def clear() -> None:
    """Empty this module's tables (loop factors, patterns, orders): part of a cold start."""
    for f in (flat_loops, pattern, order_tables, block_order_tables, permutations, _all_orders, _stay_all):
        f.cache_clear()
