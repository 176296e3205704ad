"""Engineering units for printed tables (the JSON stays in SI base units).

Each quantity gets the SI prefix that puts its magnitude in [1, 1000) (energy: pJ .. J; time: ns .. s)
or a binary prefix for bytes (B, KiB, MiB, GiB), and the unit travels with the number ("12.3 µJ").
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_SI = ((1e0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))


def si(value: float, unit: str, digits: int = 4) -> str:
    """``si(1.23e-5, "J")`` -> ``"12.3 µJ"``; zero and non-finite values print plainly."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    mag = abs(value)
    for scale, prefix in _SI:
        if mag >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value / 1e-12:.{digits}g} p{unit}"


def energy(joules: float) -> str:
    """Joules in pJ .. J."""
    return si(joules, "J")


def seconds(s: float) -> str:
    """Seconds in ns .. s."""
    return si(s, "s")


def nbytes(n: float, digits: int = 4) -> str:
    """Bytes in B, KiB, MiB or GiB."""
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g} {unit}"
    return f"{n:.{digits}g} B"


_LINE_BREAKS = re.compile("[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # Unicode's directional marks and overrides


def markdown(frame: "pd.DataFrame", **kwargs: Any) -> str:
    """``frame.to_markdown(**kwargs)`` with every ``|`` inside a cell, a column name or the index escaped
    (``\\|``, and a backslash as ``\\\\`` so that none can undo that), line breaks as spaces and Unicode's
    bidirectional controls dropped, so that no cell text (a level list, a mapping, an ONNX node's name) can
    split a row of the table or reorder it on screen: GitHub-flavoured Markdown's table rule."""
    def esc(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        v = _LINE_BREAKS.sub(" ", _BIDI.sub("", v))  # a newline would start a row; a bidi override reorders text
        return v.replace("\\", "\\\\").replace("|", "\\|")

    out = frame.map(esc) if len(frame.columns) else frame.copy()
    out.columns = [esc(c) for c in out.columns]
    out.index = out.index.map(esc)
    if out.index.name is not None:
        out.index.name = esc(out.index.name)
    return out.to_markdown(**kwargs)
