"""What ``ksm-compare`` runs of a method: its variants and the contrasts between them, declared by its class.

A method's class lists its comparison variants (:meth:`ksm.methods.base.Method.comparison_variants`:
KSM and its two ablations, LoRA at two ranks) and the contrasts the report tests
(:meth:`~ksm.methods.base.Method.comparison_contrasts`); :func:`variants` and :func:`contrasts` gather
them from the registry when asked, so a method registered later (a plug-in, a test's toy method) is
compared like a built-in one without an edit to :mod:`ksm.compare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwsim import catalogue
from ksm.methods.registry import method_class, method_names

LATE = 10_000  # where a contrast without a position sorts: after the published report's rows


@dataclass(frozen=True)
class Variant:
    """A method with its BatchNorm policy (and, for KSM, with or without its soft part)."""

    name: str
    method: str
    batchnorm: str | None = None  # None: the method's default
    soft: bool = True
    role: str = "method"  # or "ablation"
    options: tuple[tuple[str, Any], ...] = ()  # the method's own options (LoRA's rank), as (key, value) pairs
    # in the protocols' default variant list: a variant added later is asked for by name (ksm-compare
    # --variant), so that adding it changes no protocol's record and invalidates no finished comparison
    standard: bool = False

    @property
    def sequence(self) -> bool:
        return catalogue.get(self.method).sequence

    @property
    def head_only(self) -> bool:
        """Whether the body learning rate trains nothing of this variant (the protocol's grid collapses)."""
        return not method_class(self.method).trains_body


@dataclass(frozen=True)
class Contrast:
    """Two variants whose difference the report tests (Welch), row ``position`` of its contrasts table."""

    a: str
    b: str
    position: int = LATE  # the built-ins keep the published report's order; a new method's come after

    @classmethod
    def with_subject(cls, b: str, position: int = LATE) -> Contrast:
        """The catalogue's subject (KSM, its own variant) against ``b``."""
        return cls(str(catalogue.subject()), b, position)


def variants() -> dict[str, Variant]:
    """Every registered method's variants by name: the standard ones first (methods, then ablations),
    then those asked for by name, each group in the catalogue's display order."""
    found = [v for name in method_names() for v in method_class(name).comparison_variants()]
    table: dict[str, Variant] = {}
    for v in sorted(found, key=lambda v: (not v.standard, v.role == "ablation")):  # stable: display order kept
        if v.name in table:
            raise ValueError(f"comparison variant {v.name!r} is declared twice ({table[v.name].method}, {v.method})")
        table[v.name] = v
    return table


def contrasts() -> list[tuple[str, str]]:
    """Every registered method's contrasts (A, B), in report order."""
    found = [c for name in method_names() for c in method_class(name).comparison_contrasts()]
    return [(c.a, c.b) for c in sorted(found, key=lambda c: c.position)]
