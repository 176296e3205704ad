"""A tile: the part of an operand that the loops below a memory level touch, and whether tiles fit.

ZigZag's memory allocator asks two questions of a set of loops, and both the scalar cost of one mapping
(:mod:`hwsim.cost.mapping.one_mapping`) and the vectorised scorer (:mod:`hwsim.cost.mapping.batch_scorer`)
ask them; each is written once here, for Python floats and numpy arrays alike:

- the **tile projection** (:func:`tile_elements`): the elements of an operand that loop bounds touch (its
  data space, Timeloop's tile); inputs with their halo, ``(oy - 1) * min(stride, fy) + fy`` rows, or the
  whole padded footprint the window touches once the bounds span the layer;
- the **fit test** (:func:`tiles_fit`): LOMA's allocation puts loops into a level while the tiles fit; a
  memory shared by several operands holds all their tiles at once (Symons et al., AICAS 2021).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

from hwsim.cost.mapping.space import OPERANDS, Arch, Shape
from hwsim.hardware.profile import MemoryLevel

W, I, O = OPERANDS
T = TypeVar("T")  # a float, or a numpy array of one value per candidate


class Window(NamedTuple):
    """What the input projection needs of a layer: strides, kernel, output size and the full footprint
    (rows, cols) the window touches, padding included (floats, or per-candidate arrays)."""

    sy: object
    sx: object
    fy: object
    fx: object
    oy: object
    ox: object
    rows: object
    cols: object


def window(shape: Shape) -> Window:
    """The input window of ``shape`` (``iy``/``ix`` when given, else ``(o - 1) * stride + kernel``)."""
    return Window(shape.sy, shape.sx, shape.fy, shape.fx, shape.oy, shape.ox,
                  shape.iy or (shape.oy - 1) * shape.sy + shape.fy,
                  shape.ix or (shape.ox - 1) * shape.sx + shape.fx)


def _pick(cond: bool, yes: float, no: float) -> float:
    """``np.where`` for one value."""
    return yes if cond else no


def tile_elements(o: str, b: Mapping[str, T], w: Window, minimum: Callable = min,
                  where: Callable = _pick) -> T:
    """Elements of operand ``o`` that the loop bounds ``b`` (per dimension of ``DIMS``) touch.

    Pass ``np.minimum`` and ``np.where`` for arrays of bounds. A partial window (fewer output rows or
    kernel rows than the layer's) touches ``(oy - 1) * min(sy, fy) + fy`` input rows; the whole window
    touches the layer's footprint ``w.rows`` (likewise for columns).
    """
    if o == W:
        return b["G"] * b["K"] * b["C"] * b["FY"] * b["FX"]
    if o == O:
        return b["B"] * b["G"] * b["K"] * b["OY"] * b["OX"]
    oy, fy, ox, fx = b["OY"], b["FY"], b["OX"], b["FX"]
    rows = where((fy < w.fy) | (oy < w.oy), (oy - 1) * minimum(w.sy, fy) + fy, w.rows)
    cols = where((fx < w.fx) | (ox < w.ox), (ox - 1) * minimum(w.sx, fx) + fx, w.cols)
    return b["B"] * b["G"] * b["C"] * rows * cols


def holds_final(a: Arch, level: MemoryLevel, reduced_below: bool) -> bool:
    """Whether ``level`` holds outputs only as final outputs (so its tiles are sized at the output width,
    not the partial-sum width): partial sums accumulate in the innermost level holding outputs; a level
    above it sees final outputs only once every reduction loop (``reduced_below``: the loops outputs do
    not depend on) lies below it. ZigZag 3.9.1's ``MemoryAllocator.get_precision``
    (zigzag/opt/loma/memory_allocator.py): the final-output precision where no loop irrelevant to the
    output is left unallocated."""
    return reduced_below and O in level.operands and a.chains[O][0] != level


SHARED_CUTS = ("common", "per_operand")  # the two allocations of a memory shared by several operands


def common_cut(capacity: float, ops: tuple[str, ...], start: Mapping[str, int], n: int,
               size: Callable[[str, int], float]) -> dict[str, int]:
    """One cut for every operand of a shared level: the loops go into it, innermost first, while the tiles
    of all its operands fit together (each operand keeps at least the loops below its own level inside);
    ``size(o, j)``: bytes of the tile of ``o`` below position ``j``. The allocation this model used
    before ZigZag's per-operand one (:func:`allocate_level`); the search keeps whichever of the two its
    objective prefers, per loop order (ZigZag's greedy choice may trade a cheap operand's tile for an
    expensive one's). Where the tiles at the highest start already overflow together, every operand is
    cut there all the same: the allocation overflows, and the search keeps it only where no allocation of
    any order it scores fits (``one_mapping.preferred``; reported in ``MappingCost.overflow``)."""
    j = max(start.values())
    while j < n and sum(size(o, max(start[o], j + 1)) for o in ops) <= capacity:
        j += 1
    return {o: max(start[o], j) for o in ops}


def allocate_level(capacity: float, ops: tuple[str, ...], start: Mapping[str, int], n: int,
                   size: Callable[[str, int], float], unallocated: Callable[[int], float]) -> dict[str, int]:
    """LOMA's allocation of one memory level (ZigZag 3.9.1, ``MemoryAllocator.allocate_node`` and
    ``find_best_loop_combination`` in zigzag/opt/loma/memory_allocator.py): each operand ``o`` of the level
    takes its own number of loops ``j >= start[o]`` (the tile below ``j`` is ``size(o, j)`` bytes); the
    candidates of an operand run from its start while its tile alone fits (``calc_size_slices``); of the
    combinations whose tiles fit together, the one that minimises the sum over operands of the
    iterations left above (``unallocated(j)``) times the tile size, the last such in lexicographic order
    (ZigZag's ``<=``) on ties. When even the starts do not fit together, every operand keeps its start
    (ZigZag drops such an order; here it is costed, and the search keeps it only where nothing it scores
    fits, reported as an overflow)."""
    cands = []  # per operand: (position, tile bytes, cost) of each candidate
    for o in ops:
        j = start[o]
        c = [(j, size(o, j))]
        while j < n:
            s = size(o, j + 1)
            if s > capacity:
                break
            j += 1
            c.append((j, s))
        cands.append([(j, s, unallocated(j) * s) for j, s in c])
    if len(ops) == 1 or sum(c[-1][1] for c in cands) <= capacity:
        # every operand at its last candidate fits: the least cost (an operand's cost never rises with
        # more loops) and the last combination ZigZag enumerates
        return {o: c[-1][0] for o, c in zip(ops, cands)}
    best, best_cost = None, math.inf
    for combo in itertools.product(*cands):
        total = 0.0
        for _, s, _ in combo:
            total = total + s
        if total > capacity:
            continue
        cost = 0.0
        for _, _, c in combo:
            cost = cost + c
        if cost <= best_cost:
            best, best_cost = combo, cost
    return dict(zip(ops, [x[0] for x in best] if best is not None else [start[o] for o in ops]))


def tiles_fit(level: MemoryLevel, ops: Iterable[str], tile: Callable[[str], T],
              ebytes: Mapping[str, float]) -> T:
    """Whether the tiles of ``ops`` (``tile(o)`` elements of ``ebytes[o]`` bytes each) fit in ``level``
    together: a memory shared by several operands holds all their tiles at once."""
    total = 0.0
    for o in ops:
        total = total + tile(o) * ebytes[o]
    return total <= level.size_bytes
