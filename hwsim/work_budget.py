"""Bounded work, said up front: a command estimates what it is asked to do before starting, and
refuses past a cap in one line that prints the estimate and the option lifting the cap.

Why: a typo (``--seeds 1000000000``, ``num: 1e6`` on two axes, ``--input-size 100000``) otherwise
runs for hours, holds gigabytes or dies with a traceback after writing half its outputs. Torch-free,
so that ``ksm`` and ``hwsim`` bound their work the same way (``docs/map.md``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

from hwsim.errors import InputError


class WorkRefused(InputError):
    """A command was asked for more work than its cap; the message is the estimate in one line."""


@dataclass(frozen=True)
class Estimate:
    """What a command is about to do, estimated before it starts, and the cap it is held to.

    ``units`` counts the work (``unit`` names it: points, epoch-trainings); ``seconds`` and
    ``bytes`` are estimates from stated constants (0 where a command does not estimate one);
    ``capped`` says which of ``units`` and ``bytes`` the ``cap`` bounds, ``option`` lifts it.
    """

    what: str
    unit: str
    units: int
    seconds: float
    bytes: float
    cap: float
    option: str
    capped: Literal["units", "bytes"] = "units"

    @classmethod
    def of(cls, what: str, unit: str, units: int, *, seconds_per_unit: float = 0.0, bytes_per_unit: float = 0.0,
           fixed_bytes: float = 0.0, cap: float, option: str, capped: Literal["units", "bytes"] = "units") -> Estimate:
        """An estimate linear in ``units`` (every command's work is a count times a per-unit cost, and memory
        may hold ``fixed_bytes`` besides: a data set loaded once)."""
        return cls(what, unit, units, units * seconds_per_unit, fixed_bytes + units * bytes_per_unit, cap, option,
                   capped)

    @property
    def over(self) -> bool:
        """Whether the capped quantity is past the cap."""
        return (self.units if self.capped == "units" else self.bytes) > self.cap

    def line(self) -> str:
        """The estimate and, when over, the cap and how to lift it: one line."""
        parts = [f"about {self.units:,} {self.unit}"]
        if self.seconds:
            parts.append(f"~{duration(self.seconds)}")
        if self.bytes:
            parts.append(f"~{size(self.bytes)}")
        text = f"{self.what}: {', '.join(parts)}"
        if not self.over:
            return text
        if self.capped == "units":
            cap, needed = f"{int(self.cap):,} {self.unit}", str(self.units)
        else:
            cap, needed = size(self.cap), f"{math.ceil(self.bytes / 2**30 * 10) / 10:.1f}"
        return f"{text} (over the cap of {cap}); lift it with {self.option} {needed}"


def refuse_over_cap(estimate: Estimate) -> Estimate:
    """Raise :class:`WorkRefused` (one line) if ``estimate`` is past its cap; else return it."""
    if estimate.over:
        raise WorkRefused(estimate.line())
    return estimate


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``5.6 h``, ``3.1 days``, ``4.2e+06 years``: the scale a person reads a wait in."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    if seconds < 86400 * 365 * 2:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (86400 * 365):.2g} years"


def size(n_bytes: float) -> str:
    """Bytes in binary units, one decimal (``1.5 GiB``)."""
    for unit, scale in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:.0f} B"


def machine_memory() -> int:
    """This machine's physical memory in bytes (``os.sysconf``); 0 where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0
