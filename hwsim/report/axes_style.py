"""What makes a figure readable, shared by the report's and the sweep's figures: engineering units on an
axis (µJ, ms, MiB rather than J with a x10⁻⁴ offset), plain tick labels on log axes (``2``, ``5``, ``10``
rather than ``1.3795x10⁰``), and labels written at the end of each line instead of a legend over the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

# SI prefixes for energy and time, binary ones for bytes: the scale that puts a value in [1, 1000)
_SI = ((1e0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))
_BINARY = ((2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1.0, "B"))


def engineering(values: Iterable[float], unit: str) -> tuple[float, str]:
    """(factor, unit label) that puts the median of ``values`` in [1, 1000): multiply the data by the factor.

    ``unit`` is the SI base unit of the data: ``J`` or ``s`` get SI prefixes (``µJ``, ``ms``), ``B`` binary
    ones (``KiB``, ``MiB``); any other unit (``mm²``, ``%``) is left as it is."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 1.0, unit
    mid = float(np.median(finite))
    if unit == "B":
        scale, name = next(((s, n) for s, n in _BINARY if mid >= s), _BINARY[-1])
        return 1.0 / scale, name
    if unit in ("J", "s"):
        scale, prefix = next(((s, p) for s, p in _SI if mid >= s), _SI[-1])
        return 1.0 / scale, prefix + unit
    return 1.0, unit


def plain_ticks(axis, log: bool) -> None:  # axis: a matplotlib Axis (ax.xaxis or ax.yaxis)
    """Tick labels as plain numbers (``0.5``, ``2``, ``100``): no offset text, no scientific notation; on a
    log axis also the 2 and 5 between decades when fewer than two decades are shown."""
    from matplotlib import ticker

    plain = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    axis.set_major_formatter(plain)
    if log:
        low, high = axis.get_view_interval()
        if low > 0 and high / low < 100:
            axis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
            axis.set_minor_formatter(plain)
        else:
            axis.set_minor_formatter(ticker.NullFormatter())
    else:
        formatter = ticker.ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        axis.set_major_formatter(formatter)


def spread(positions: Sequence[float], gap: float, low: float, high: float) -> list[float]:
    """Positions moved apart so that neighbours are at least ``gap`` apart, each moved as little as this
    simple sweep allows, kept within [low, high] where the room allows; the order is kept."""
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = [float(positions[i]) for i in order]
    for k in range(1, len(placed)):  # push up
        placed[k] = max(placed[k], placed[k - 1] + gap)
    overflow = placed[-1] - high if placed else 0.0
    if overflow > 0:  # then down from the top, not below low
        placed[-1] -= overflow
        for k in range(len(placed) - 2, -1, -1):
            placed[k] = min(placed[k], placed[k + 1] - gap)
        shift = low - placed[0]
        if shift > 0:
            placed = [p + shift for p in placed]
    out = [0.0] * len(placed)
    for rank, i in enumerate(order):
        out[i] = placed[rank]
    return out


def label_line_ends(ax, ends: Sequence[tuple[float, float, str, str]], log_y: bool = False,
                    fontsize: float = 7.5) -> None:
    """Write each line's name just right of its last point, ``ends`` = (x, y, text, colour), moving labels
    apart vertically where lines end close together (a thin leader joins a moved label to its line)."""
    if not ends:
        return
    low, high = ax.get_ylim()

    def to_frac(y: float) -> float:
        if log_y:
            return (math.log10(y) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return (y - low) / (high - low)

    fracs = spread([to_frac(y) for _x, y, _t, _c in ends], gap=fontsize / 140.0, low=0.0, high=1.0)
    transform = ax.get_xaxis_transform()  # x in data, y in axes fraction
    left, right = ax.get_xlim()
    dx = 0.03 * (right - left)
    longest = max(len(text) for _x, _y, text, _c in ends)
    ticks = [t for t in ax.get_xticks() if left <= t <= right]
    ax.set_xlim(left, right + (right - left) * (0.05 + 0.0105 * longest))  # room for the labels inside the axes
    ax.set_xticks(ticks)  # no ticks over the labels' room
    for (x, y, text, colour), frac in zip(ends, fracs):
        ax.annotate(text, xy=(x, to_frac(y)), xycoords=transform, xytext=(x + dx, frac), textcoords=transform,
                    fontsize=fontsize, color=colour, va="center", ha="left", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.5, "shrinkA": 0, "shrinkB": 2},
                    bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.8})
