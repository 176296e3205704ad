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

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

from hwsim.cost.mapping.space import OPERANDS, Shape
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


def tiles_fit(level: MemoryLevel, ops: Iterable[str], tile: Callable[[str], T],
              ebytes: Mapping[str, float]) -> T:
    """Whether the tiles of ``ops`` (``tile(o)`` elements of ``ebytes[o]`` bytes each) fit in ``level``
    together: a memory shared by several operands holds all their tiles at once."""
    total = 0.0
    for o in ops:
        total = total + tile(o) * ebytes[o]
    return total <= level.size_bytes
