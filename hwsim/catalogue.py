"""The catalogue of methods: one row of torch-free traits per method, shared by ``ksm`` and ``hwsim``.

Why a table: a method's name, its default BatchNorm policy, what it stores per task, whether it learns
the tasks in order, where it sorts and how it is drawn are needed by both packages; kept in one row
they cannot drift apart (a run gets one label everywhere, a method one colour in every figure). ``ksm``
binds a name to its training code (``ksm.methods.registry``), ``hwsim`` prices its mask through its
:class:`MaskKind` (``hwsim.cost.mask_cost``) and reads its packed task file by that kind
(``hwsim.workload.packed``), and tables and figures label, order and colour runs from the row.
Adding a method is one :func:`register` call here (hwsim never imports ksm, so a row registered anywhere
else is unknown to ``ksm-sim``) plus its class in ksm; nothing in hwsim or ksm compares a method's name
with a literal.

This module imports nothing from hwsim or ksm, so every other module may import it.

Example:
    >>> from hwsim import catalogue
    >>> catalogue.get("piggyback").batchnorm
    'frozen'
    >>> catalogue.run_label({"method": "piggyback", "batchnorm": "task"})
    'piggyback (BN task)'
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_LR = 1e-3  # ksm-train's default --lr-mask: a run trained at another rate says so in its label
SOFT_PRECISIONS = (0, 2, 4, 8, 16)  # bits of KSM's soft part that ksm-train measures and the report sweeps


@dataclass(frozen=True, slots=True)
class MaskKind:
    """What a method keeps per task to turn the shared weights into the task's weights.

    ``name`` selects the storage rule in ``hwsim.cost.mask_cost`` (one rule per kind, not per method, so a new
    method with a known kind needs no cost code). ``roles`` are the tensor roles of ``run.json`` ``tensors``
    (docs/run-folder.md) a task of this kind stores besides its head and BatchNorm, and ``required`` those
    every task stores: a run whose tensors' roles are not its method's is refused when it is read
    (:class:`hwsim.schemas.run_record.RunRecord`), so a swapped ``method`` is never costed or exported.
    """

    name: str
    applied: bool  # a mask gates the shared weights: costed on the fly or folded at a task switch
    learned: bool  # a real-valued mask tensor is trained (stored as ``<layer>.mask``/``.binary``)
    needs_run: bool = False  # its storage depends on counts only a run records (not costable from a network)
    branch: bool = False  # a low-rank branch beside the layer (hwsim.cost.lora_cost), not bits streamed with the weights
    kernel_wise: bool = False  # one mask entry per kernel, ``[out, in/groups]``, rather than one per weight
    roles: tuple[str, ...] = ()  # tensor roles a task stores besides "head" and "batchnorm"
    required: tuple[str, ...] = ()  # of ``roles``, those every task stores

    def __post_init__(self) -> None:
        if not set(self.required) <= set(self.roles):
            raise ValueError(f"mask kind {self.name!r}: required roles {self.required} are not all in {self.roles}")


# KSM: a bit per kernel + soft scale (no scale when trained without its soft part)
KERNEL = MaskKind("kernel", applied=True, learned=True, kernel_wise=True, roles=("mask", "binary", "scale"),
                  required=("mask", "binary"))
ELEMENT = MaskKind("element", applied=True, learned=True, roles=("mask", "binary"),
                   required=("mask", "binary"))  # Piggyback: a bit per weight
TASK_INDEX = MaskKind("task_index", applied=True, learned=False)  # PackNet: owning task per weight (shared file)
# CPG: + a pick mask per layer holding earlier tasks' weights (none for the first task), growth
TASK_INDEX_PICK = MaskKind("task_index_pick", applied=True, learned=False, needs_run=True, roles=("pick",))
COPY = MaskKind("copy", applied=False, learned=False, roles=("weight",),
                required=("weight",))  # fine-tuning: the task's own weights
NONE = MaskKind("none", applied=False, learned=False)  # head only
LOW_RANK = MaskKind("low_rank", applied=True, learned=False, needs_run=True, branch=True,
                    roles=("lora_A", "lora_B"), required=("lora_A", "lora_B"))  # LoRA: B A per layer
ALWAYS_STORED = ("head",)  # every method stores its task's classifier head
TASK_BATCHNORM = "batchnorm"  # the role of a task's BatchNorm tensors, stored when run.json batchnorm is "task"


@dataclass(frozen=True, slots=True)
class MethodTraits:
    """Everything about a method that does not need torch."""

    name: str  # as in run.json "method" and on the command lines
    description: str  # a few words for --help: what the method learns
    batchnorm: str  # the BatchNorm policy it trains with unless told otherwise: "task" or "frozen"
    mask: MaskKind
    sequence: bool  # the tasks are learnt in order on shared weights (one sequence folder)
    order: int  # position in tables and legends
    color: str  # the one colour of this method in every figure
    marker: str  # the one matplotlib marker of this method in every figure
    soft_part: bool = False  # KSM: a run trained without its soft part is labelled "(binary only)"
    # options that name a run (run.json "method_options" key, prefix): LoRA's ("rank", "r") -> "lora r4"
    tag_options: tuple[tuple[str, str], ...] = ()
    # its binary mask is ``real > threshold`` (Piggyback, Mallya et al. 2018) rather than ``real >= threshold``
    strict_threshold: bool = False
    # the method this project studies (KSM): its run folders are named by the task alone, and the report's
    # per-layer section and the exploration's masks-against-copies comparison are about it; one row at most
    subject: bool = False

    def __post_init__(self) -> None:
        if self.batchnorm not in ("task", "frozen"):
            raise ValueError(f"{self.name}: batchnorm must be 'task' or 'frozen', not {self.batchnorm!r}")
        if not self.name or " " in self.name:
            raise ValueError(f"method name must be one word, not {self.name!r}")


_TABLE: dict[str, MethodTraits] = {}
FALLBACK_COLOR = "#7f7f7f"  # drawn for a method the catalogue does not know, so no row may take it


def register(traits: MethodTraits) -> MethodTraits:
    """Add a method to the catalogue; a name may be registered once, and one method is the subject."""
    if traits.name in _TABLE:
        raise ValueError(f"method {traits.name!r} is already in the catalogue")
    if traits.subject and subject() is not None:
        raise ValueError(f"method {traits.name!r}: {subject()!r} is already the catalogue's subject")
    taken = {t.color.lower(): t.name for t in _TABLE.values()} | {FALLBACK_COLOR: "methods the catalogue does not know"}
    if traits.color.lower() in taken:  # one colour, one method, in every figure
        raise ValueError(f"method {traits.name!r}: colour {traits.color} is already {taken[traits.color.lower()]}'s")
    _TABLE[traits.name] = traits
    return traits


def unregister(name: str) -> None:
    """Remove a method (tests that register a toy method clean up with this)."""
    _TABLE.pop(name, None)


def get(name: str) -> MethodTraits:
    """The traits of ``name``; a ``KeyError`` that lists the known methods otherwise."""
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r} (known: {', '.join(names())})") from None


def find(name: Any) -> MethodTraits | None:
    """The traits of ``name``, or None for an unknown one."""
    return _TABLE.get(name) if isinstance(name, str) else None


def names() -> tuple[str, ...]:
    """Every method, in display order."""
    return tuple(t.name for t in sorted(_TABLE.values(), key=lambda t: (t.order, t.name)))


def methods() -> tuple[MethodTraits, ...]:
    """Every method's traits, in display order."""
    return tuple(get(n) for n in names())


def costable_from_network() -> tuple[str, ...]:
    """The methods a plain network (no run folder) can be charged with: not those whose storage depends on
    counts only a run records (CPG's growth, LoRA's ranks). ``ksm-sim --method`` and ``ksm-explore``'s
    ``methods:`` take exactly these."""
    return tuple(t.name for t in methods() if not t.mask.needs_run)


def batchnorm_of(method: str | None, given: str | None = None) -> str:
    """The BatchNorm policy to charge ``method`` with: ``given`` where the user named one, else the method's own
    default (its row), so that a frozen-BatchNorm method is never charged task BatchNorm it does not store.
    A plain network (no method) stores no task BatchNorm either way: "task" is returned as before."""
    if given is not None:
        return given
    traits = find(method)
    return traits.batchnorm if traits is not None else "task"


def subject() -> str | None:
    """The method this project studies (the row with ``subject``), None if none is registered."""
    return next((t.name for t in methods() if t.subject), None)


def full_copy() -> str | None:
    """The first method, in display order, that stores a whole copy of the weights per task (fine-tuning):
    the storage reference the report and the exploration compare masks against."""
    return next((t.name for t in methods() if t.mask == COPY), None)


# --------------------------------------------------------------------------------------------
# Runs: one label and one order for both packages


def option_tag(name: str, options: Mapping[str, Any] | None) -> str:
    """The words a method's options add to a run's name (``r4`` for LoRA at rank 4; empty otherwise)."""
    traits = find(name)
    if traits is None or not options:
        return ""
    return "-".join(f"{prefix}{options[key]:g}" if isinstance(options[key], float) else f"{prefix}{options[key]}"
                    for key, prefix in traits.tag_options if options.get(key) is not None)


def run_label(record: Mapping[str, Any]) -> str:
    """How a run (its ``run.json`` record) is named in every table and figure.

    The method, then what differs from its defaults: ``piggyback (BN task)``, ``ksm (binary only)``,
    ``piggyback (lr 0.0001)``. A learning rate chosen on validation (``metrics.selection``) is part of
    the protocol, not of the method, so it is not named.
    """
    method = str(record.get("method"))
    traits = find(method)
    label = method
    options = record.get("method_options")
    tag = option_tag(method, options if isinstance(options, Mapping) else None)
    if tag:
        label += f" {tag}"
    bn = record.get("batchnorm")
    if bn and traits is not None and bn != traits.batchnorm:
        label += f" (BN {bn})"
    train = record.get("train")
    train = train if isinstance(train, Mapping) else {}
    if traits is not None and traits.soft_part and train.get("soft") is False:
        label += " (binary only)"
    lr = train.get("lr_body")
    metrics = record.get("metrics")
    chosen = isinstance(metrics, Mapping) and bool(metrics.get("selection"))
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr != DEFAULT_LR \
            and not chosen:
        label += f" (lr {lr:g})"
    return label


def base_method(label: str) -> str:
    """The method a label names (``piggyback (BN task)`` -> ``piggyback``)."""
    return label.split(" ", 1)[0]


def label_rank(label: str) -> tuple[int, int, str]:
    """Sort key of a run label: methods in display order, each method's own label before its variants."""
    base = base_method(label)
    order = names()
    position = order.index(base) if base in order else len(order)
    natural = re.sub(r"\d+", lambda m: m.group().zfill(9), label)  # "lora r4" before "lora r16"
    return (position, 0 if label == base else 1, natural)


def sort_labels(labels: list[str] | tuple[str, ...]) -> list[str]:
    """Distinct labels in display order."""
    return sorted(dict.fromkeys(labels), key=label_rank)


@dataclass(frozen=True, slots=True)
class Style:
    """How a label is drawn: its method's colour and marker; a variant's marker is left open."""

    color: str
    marker: str
    filled: bool

    @property
    def facecolor(self) -> str:
        return self.color if self.filled else "none"


FALLBACK_STYLE = Style(FALLBACK_COLOR, "X", True)  # a method the catalogue does not know


# How far a variant's colour moves from its method's towards black (<0) or white (>0): one hue per method,
# a different lightness per variant, so that ksm, ksm (binary only) and ksm (BN frozen) stay apart in one
# figure and keep their method's colour in all of them. Known kinds of variant get a fixed shade; any other
# variant text one of the rest by a stable hash (zlib.crc32: the same in every process and figure).
VARIANT_SHADES = {"binary": -0.4, "bn": 0.45, "lr": -0.65}
OTHER_SHADES = (0.3, -0.3, 0.45, -0.55)


def shade(color: str, amount: float) -> str:
    """``color`` (``#rrggbb``) mixed with black (``amount`` < 0) or white (> 0) by ``|amount|``."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + (target - c) * min(abs(amount), 1.0)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def variant_shade(variant: str) -> float:
    """The shade (see :func:`shade`) of a variant's words (``(binary only)``, ``-bnfrozen``, ``r16``); 0 for none."""
    words = variant.strip(" -").lower()
    if not words:
        return 0.0
    for key, amount in VARIANT_SHADES.items():
        if key in words:
            return amount
    return OTHER_SHADES[zlib.crc32(words.encode()) % len(OTHER_SHADES)]


def style(label: str) -> Style:
    """The colour and marker of a run label (or a bare method name): the method's, the colour shaded for a
    variant (:func:`variant_shade`), the marker open for a variant other than the method's own options."""
    traits = find(base_method(label))
    if traits is None:
        return FALLBACK_STYLE
    rest = label[len(traits.name):]
    tagged = bool(traits.tag_options) and rest.startswith(" ") and " " not in rest[1:]  # "lora r4": filled
    return Style(shade(traits.color, variant_shade(rest)), traits.marker, filled=label == traits.name or tagged)


# --------------------------------------------------------------------------------------------
# The built-in methods (colours: matplotlib's tab10 in display order)

for _traits in (
    MethodTraits("ksm", "kernel-wise soft mask", "task", KERNEL, sequence=False, order=0,
                 color="#1f77b4", marker="o", soft_part=True, subject=True),
    MethodTraits("piggyback", "element-wise binary mask", "frozen", ELEMENT, sequence=False, order=1,
                 color="#ff7f0e", marker="s", strict_threshold=True),
    MethodTraits("packnet", "prune and retrain, the tasks in order on shared weights", "task", TASK_INDEX,
                 sequence=True, order=2, color="#2ca02c", marker="^"),
    MethodTraits("cpg", "compact, pick and grow, the tasks in order on shared weights", "task", TASK_INDEX_PICK,
                 sequence=True, order=3, color="#d62728", marker="D"),
    MethodTraits("finetune", "all weights", "task", COPY, sequence=False, order=4, color="#9467bd", marker="v"),
    MethodTraits("feature", "head only", "frozen", NONE, sequence=False, order=5, color="#8c564b", marker="P"),
    MethodTraits("lora", "low-rank adapters (LoRA) per layer", "task", LOW_RANK, sequence=False, order=6,
                 color="#e377c2", marker="h", tag_options=(("rank", "r"),)),
):
    register(_traits)
del _traits
