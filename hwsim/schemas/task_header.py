"""The packed task file's header (``ksm-task/1``), checked against the tensors it describes.

``ksm-export --pack`` writes one safetensors file per task; its ``__metadata__`` (the header) says what the
tensors are: the method, the layers, which of them are masked and with what shapes, the BatchNorms, the head,
the precisions. ``ksm-sim`` prices the file from the header, so a header that disagrees with its tensors
prices a task the file does not hold. :class:`TaskHeader` declares every key and checks, before any pricing,
the header against itself (masked layers are layers of ``layers``, the head is the classifier) and, given the
tensors (``validate(TaskHeader, header, file, context={"arrays": arrays})``), against them: every tensor the
header implies is there with its shape and type, every bit stream holds exactly the bits the header implies
(rounded up to whole bytes), and no tensor is left unaccounted for. The writer (:mod:`ksm.deploy.task_file`)
validates the header it is about to write with the same model.

Safetensors metadata values are strings: the names (:data:`TEXT_KEYS`) are stored as they are, every other
value as JSON. :func:`encode_header` and :func:`decode_header` are the two directions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from hwsim import catalogue
from hwsim.fileio.bounded import MAX_ROWS, MAX_SIZE, parse_json, short
from hwsim.schemas.run_record import MAX_TASKS, LayerRecord, Name, Sha256, check_layer_names
from hwsim.schemas.validation import Fraction, Real, Record, Whole

FORMAT = "ksm-task/1"
MAX_SCALE_BITS = 16  # KSM's soft scale: 1-15 bits a uniform code, 16 bits the float16 pattern
# Elements of one stored tensor, and of all masked layers together: VGG-16, the largest backbone here, has
# 138 M weights (2**27); 2**36 leaves room for any CNN and keeps every product of sizes far inside int64.
MAX_ELEMENTS = 1 << 36
FLOAT_BITS = {16: "float16", 32: "float32"}
# The header keys stored as plain text (every other value is JSON); of them, those that may be None, written
# ``null`` (a sha256 or a description, never the word "null").
TEXT_KEYS = ("format", "method", "task", "arch", "weights", "backbone_sha256", "dataset", "profile", "head",
             "top1_measured_at")
NULLABLE_TEXT = ("backbone_sha256", "top1_measured_at")
# The kinds of mask (hwsim.catalogue.MaskKind.name) whose tensors this header describes (see _STORED below).
KINDS = (catalogue.KERNEL.name, catalogue.ELEMENT.name, catalogue.TASK_INDEX.name,
         catalogue.TASK_INDEX_PICK.name, catalogue.COPY.name, catalogue.LOW_RANK.name, catalogue.NONE.name)

Dim = Whole(ge=1, le=MAX_SIZE, description="a tensor dimension")
Shape = Annotated[list[Dim], Field(min_length=1, max_length=4)]


# --------------------------------------------------------------------------------------------------------
# Encoding: metadata strings <-> values
def encode_header(header: Mapping[str, Any]) -> dict[str, str]:
    """The header as safetensors metadata: names as they are, everything else (and None) as compact JSON (NaN
    too: the schema then refuses it by name)."""
    return {key: value if key in TEXT_KEYS and isinstance(value, str) else
            json.dumps(value, separators=(",", ":")) for key, value in header.items()}


def decode_header(raw: Mapping[str, str], where: str, error: type[Exception]) -> dict[str, Any]:
    """The metadata's values decoded: names as text (``null`` is None), other values as bounded JSON; a
    key the schema does not know is decoded if it can be, for the schema to refuse it by name."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TEXT_KEYS:
            out[key] = None if value == "null" and key in NULLABLE_TEXT else value
        elif key in TaskHeader.model_fields:
            out[key] = parse_json(value, f"{where}: {key}", error)
        else:
            try:
                out[key] = json.loads(value)
            except (ValueError, RecursionError):
                out[key] = value
    return out


def _entry(*keys: str) -> Any:
    """A list written ``[a, b, c]`` in the file, read as ``{keys[0]: a, ...}`` so that an error names the part."""
    def convert(value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or not 0 < len(value) <= len(keys):
            raise ValueError(f"must be a list [{', '.join(keys)}]")
        return dict(zip(keys, value))
    return BeforeValidator(convert)


# --------------------------------------------------------------------------------------------------------
# Parts of the header
class Precisions(Record):
    """The profile's widths the file stores at (bits); 8-bit weights are int8 codes with per-row scales."""

    weights: Literal[8, 16, 32] = Field(description="bits of stored weights (head, copies, adapters): 8 = int8 "
                                                    "codes, 16/32 = floats")
    psums: Literal[16, 32] = Field(description="bits of stored biases (float16 or float32)")
    batchnorm: Literal[16, 32] = Field(description="bits of the folded BatchNorm scale and shift")


class MaskedLayer(Record):
    """One masked (or copied, or adapted) layer, written ``[layer, shape]`` or, for LoRA,
    ``[layer, A shape, B shape]``."""

    layer: Name = Field(description="the layer's name in `layers`")
    shape: Shape = Field(description="the mask's shape: [out, in/groups] for a kernel-wise mask, the weight's "
                                     "shape for an element-wise mask or a copy, LoRA's A [rank, in/groups, ...]")
    b_shape: Shape | None = Field(default=None, description="LoRA only: B's shape [out, rank(, 1, 1)]")


class BatchNormEntry(Record):
    """One task BatchNorm folded to ``y = scale * x + shift``, written ``[name, channels, eps]``."""

    name: Name = Field(description="the BatchNorm module's name")
    channels: Whole(ge=1, le=MAX_SIZE, description="its channels")
    eps: Real(gt=0, lt=1, description="its epsilon (running_var = 1 - eps when loaded)")


class SequenceLayer(Record):
    """A layer's weights in a sequence (PackNet, CPG), written ``[layer, earlier, grown]``."""

    layer: Name = Field(description="the layer's name in `layers`")
    earlier: Whole(ge=0, le=MAX_ELEMENTS,
                   description="weights owned by earlier tasks (CPG's pick mask covers them)")
    grown: Whole(ge=0, le=MAX_ELEMENTS, description="weights this task's growth added (stored as grown.<layer>)")


class Sequence(Record):
    """Where the task sits in its sequence; the shared weights and index map are the sequence's file."""

    position: Whole(ge=1, le=MAX_TASKS, description="this task's place in the sequence, from 1")
    tasks: Whole(ge=1, le=MAX_TASKS, description="tasks in the sequence")
    index_bits: Whole(ge=1, le=8) | None = Field(
        default=None, description="bits of the shared task-index map, ceil(log2(tasks + 1))")
    shared_sha256: Sha256 | None = Field(default=None, description="sha256 of the sequence's shared weights file")
    view_sha256: Sha256 | None = Field(default=None, description="sha256 of the weights this task computes with")
    weights: Annotated[list[Annotated[SequenceLayer, _entry("layer", "earlier", "grown")]],
                       Field(max_length=MAX_ROWS)] = Field(default=[],
                                                           description="per layer: [layer, earlier, grown]")

    @model_validator(mode="after")
    def _in_range(self) -> Sequence:
        if self.position > self.tasks:
            raise ValueError(f"sequence.position {self.position} is beyond sequence.tasks {self.tasks}")
        if self.index_bits is not None and self.index_bits != max(1, math.ceil(math.log2(self.tasks + 1))):
            raise ValueError(f"sequence.index_bits {self.index_bits} is not ceil(log2(tasks + 1)) for "
                             f"{self.tasks} tasks")
        return self


# --------------------------------------------------------------------------------------------------------
# What the header implies is stored
@dataclass(frozen=True)
class Stored:
    """A tensor the header implies: its shape (None: one dimension of any length, checked by a rule on its
    content), its numpy dtype, and the header key it follows from (for the error)."""

    shape: tuple[int, ...] | None
    dtype: str
    why: str


def weight_shape(layer: LayerRecord) -> tuple[int, ...]:
    """The layer's weight as PyTorch stores it."""
    if layer.kind == "linear":
        return (layer.out_channels, layer.in_channels)
    return (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel)


def stream_bytes(bits: int) -> int:
    """Bytes of a bit stream: ``ceil(bits / 8)``."""
    return -(-bits // 8)


def _bits(bits: int, why: str) -> Stored:
    return Stored((stream_bytes(bits),), "uint8", why)


def _weights(header: TaskHeader, shape: tuple[int, ...], why: str) -> Stored:
    bits = header.precisions.weights
    return Stored(shape, "int8" if bits == 8 else FLOAT_BITS[bits], why)


def _learned_mask(header: TaskHeader) -> dict[str, Stored]:
    entries = sum(math.prod(m.shape) for m in header.masked)
    out = {"mask.binary": _bits(entries, f"masked ({entries} mask entries, one bit each)")}
    if header.scale_bits:
        out["mask.scale"] = Stored(None, "uint8", f"scale_bits {header.scale_bits}")
    return out


def _copy(header: TaskHeader) -> dict[str, Stored]:
    out: dict[str, Stored] = {}
    for m in header.masked:
        layer = header.layer(m.layer)
        out[f"weight.{m.layer}"] = _weights(header, tuple(m.shape), f"masked {m.layer!r}")
        if layer.bias:
            out[f"bias.{m.layer}"] = Stored((layer.out_channels,), FLOAT_BITS[header.precisions.psums],
                                            f"layers {m.layer!r} (bias)")
    return out


def _adapters(header: TaskHeader) -> dict[str, Stored]:
    return {f"{part}.{m.layer}": _weights(header, tuple(shape), f"masked {m.layer!r}")
            for m in header.masked for part, shape in (("lora_A", m.shape), ("lora_B", m.b_shape or []))}


def _picks(header: TaskHeader) -> dict[str, Stored]:
    seq = header.sequence
    counts = seq.weights if seq is not None else []
    earlier = sum(c.earlier for c in counts)
    out = {"pick.bits": _bits(earlier, f"sequence.weights ({earlier} weights of earlier tasks, one bit each)")} \
        if earlier else {}
    for c in counts:
        if c.grown:
            out[f"grown.{c.layer}"] = _weights(header, (c.grown,), f"sequence.weights {c.layer!r} (grown)")
    return out


def _nothing(header: TaskHeader) -> dict[str, Stored]:
    return {}


# What a packed file stores for each mask kind beside BatchNorm and the head.
_STORED = {catalogue.KERNEL.name: _learned_mask, catalogue.ELEMENT.name: _learned_mask,
           catalogue.TASK_INDEX.name: _nothing, catalogue.TASK_INDEX_PICK.name: _picks,
           catalogue.COPY.name: _copy, catalogue.LOW_RANK.name: _adapters, catalogue.NONE.name: _nothing}
assert set(_STORED) == set(KINDS)


# --------------------------------------------------------------------------------------------------------
class TaskHeader(Record):
    """The header (safetensors `__metadata__`) of a packed task file, `ksm-export --pack`'s output: one
    safetensors file per task holding exactly the bits `ksm-sim` prices as the task's `task_specific_bytes`.
    Values are strings in the file: names as they are, everything else as JSON. Tensors: `mask.binary` (one bit
    per mask entry, layers in `masked` order, MSB first), `mask.scale` (KSM's soft scale, `scale_bits` bits per
    zero bit), `weight.<layer>`/`bias.<layer>` (fine-tuning), `lora_A.<layer>`/`lora_B.<layer>` (LoRA),
    `pick.bits`/`grown.<layer>` (CPG), `batchnorm.scale`/`batchnorm.shift`, `head.weight`/`head.bias`."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`method` is a method of the catalogue whose mask kind has a packed form.",
        "Layer names in `layers` are unique; `head` is the last linear layer, with `num_classes` outputs.",
        "Every `masked` layer is a layer of `layers`, once, not the head; its shape is the layer's kernel-wise "
        "mask [out, in/groups] (KSM), its weight's shape (Piggyback, fine-tuning), or LoRA's A [rank, in/groups, "
        "kh, kw] and B [out, rank, 1, 1] (rank ≤ min(out, in/groups·kh·kw)).",
        "KSM, Piggyback and fine-tuning mask every layer but the head; the other methods list none.",
        "`scale_bits` > 0 only with `soft` true, for a method with a soft part (KSM); `soft`, `top1_measured_at` "
        "only for a learned mask; `scaling` for LoRA alone; `sequence` exactly for sequence methods (PackNet, "
        "CPG), whose layers are layers of `layers`, once.",
        "`quant_scales` holds one positive scale per row of every int8 tensor (8-bit `precisions.weights`: "
        "`head`, a copied layer's name, `lora_A.<layer>`, `lora_B.<layer>`), and nothing else.",
        "Masked entries, and the weights of any layer, number at most 2^36.",
        "The tensors are exactly those the header implies, with the shapes and types it implies; a bit stream "
        "(`mask.binary`, `mask.scale`, `pick.bits`) holds ceil(bits / 8) bytes of the bits the header implies "
        "(`mask.scale`: `scale_bits` per zero bit of `mask.binary`).",
    )

    format: str = Field(pattern=r"^ksm-task/1(\.[0-9]+)?$", description=f"`{FORMAT}` (a minor version may follow)")
    method: Name = Field(description="the method (a catalogue name: ksm, piggyback, finetune, ...)")
    task: Name = Field(description="the task's name")
    arch: Name = Field(description="the backbone's architecture (torchvision name)")
    weights: Name = Field(description="the backbone's weights (torchvision name or file)")
    backbone_sha256: Sha256 | None = Field(description="sha256 of the backbone's weights file (null: random init)")
    dataset: Name = Field(description="the dataset the task was trained on")
    num_classes: Whole(ge=1, le=MAX_SIZE, description="classes of the head")
    input_size: Annotated[list[Dim], Field(min_length=2, max_length=2)] | None = Field(
        description="input [height, width] in pixels")
    profile: Name = Field(description="the hwsim profile whose precisions the file stores at")
    precisions: Precisions = Field(description="the stored widths (bits)")
    scale_bits: Whole(ge=0, le=MAX_SCALE_BITS, description="bits of KSM's soft scale per zero mask bit (0: none)")
    soft: bool | None = Field(default=None, description="a learned mask: whether its soft part was trained")
    top1: Fraction | None = Field(default=None, description="top-1 accuracy recorded for these precisions, a "
                                                            "fraction in [0, 1]")
    top1_measured_at: Name | None = Field(
        default=None, description="what `top1` was measured at (`soft scale 8 bits`, `float`)")
    layers: Annotated[list[LayerRecord], Field(min_length=1, max_length=MAX_ROWS)] = Field(
        description="the run's conv and linear layers, in execution order (as in run.json)")
    masked: Annotated[list[Annotated[MaskedLayer, _entry("layer", "shape", "b_shape")]],
                      Field(max_length=MAX_ROWS)] = Field(
        description="the layers the task stores something for, in stream order: [layer, shape] or (LoRA) "
                    "[layer, A shape, B shape]")
    batchnorms: Annotated[list[Annotated[BatchNormEntry, _entry("name", "channels", "eps")]],
                          Field(max_length=MAX_ROWS)] = Field(
        description="task BatchNorms in stream order, [name, channels, eps]; empty: frozen BatchNorm")
    head: Name = Field(description="the classifier layer's name (the last linear layer of `layers`)")
    quant_scales: dict[Name, Annotated[list[Real(gt=0, le=1e12)], Field(min_length=1, max_length=MAX_SIZE)]] = \
        Field(description="per-row scales of int8 tensors, by tensor (`head`, a layer, `lora_A.<layer>`); a "
                          "scale above 1e12 would mean weights above 1e14")
    scaling: Real(gt=0, le=1e6) | None = Field(default=None, description="LoRA only: alpha / rank, the branch's "
                                                                         "factor (at most 1e6)")
    sequence: Sequence | None = Field(default=None, description="PackNet, CPG: the task's place in its sequence")

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        traits = catalogue.find(value)
        if traits is None:
            raise ValueError(f"not a method of the catalogue (known: {', '.join(catalogue.names())})")
        if traits.mask.name not in _STORED:
            raise ValueError(f"mask kind {traits.mask.name!r} has no packed form in hwsim.schemas.task_header "
                             f"(known kinds: {', '.join(_STORED)})")
        return value

    # -- lookups --------------------------------------------------------------------------------------
    @property
    def traits(self) -> catalogue.MethodTraits:
        return catalogue.get(self.method)

    @cached_property
    def _by_name(self) -> dict[str, LayerRecord]:
        return {r.name: r for r in self.layers}

    def layer(self, name: str) -> LayerRecord:
        """The layer called ``name`` (a dictionary: 100 000 masked layers must not cost 10^10 comparisons)."""
        return self._by_name[name]

    def stored(self) -> dict[str, Stored]:
        """Every tensor the header implies, in the order the file's streams are read."""
        out = _STORED[self.traits.mask.name](self)
        if self.batchnorms:
            channels = sum(b.channels for b in self.batchnorms)
            for part in ("scale", "shift"):
                out[f"batchnorm.{part}"] = Stored((channels,), FLOAT_BITS[self.precisions.batchnorm],
                                                  f"batchnorms ({channels} channels)")
        head = self.layer(self.head)
        out["head.weight"] = _weights(self, weight_shape(head), f"head {self.head!r}")
        out["head.bias"] = Stored((head.out_channels,), FLOAT_BITS[self.precisions.psums], f"head {self.head!r}")
        return out

    def int8_rows(self) -> dict[str, int]:
        """The ``quant_scales`` keys the header implies, with their rows (8-bit weights only)."""
        if self.precisions.weights != 8:
            return {}
        kind = self.traits.mask
        rows = {"head": self.layer(self.head).out_channels}
        if kind == catalogue.COPY:
            rows |= {m.layer: m.shape[0] for m in self.masked}
        elif kind.branch:
            rows |= {f"{part}.{m.layer}": shape[0] for m in self.masked
                     for part, shape in (("lora_A", m.shape), ("lora_B", m.b_shape or [0]))}
        return rows

    def to_meta(self) -> dict[str, Any]:
        """The checked header in the file's own form (entries as lists, as the writer gives them), with the
        checked values: what a reader indexes (``meta["masked"]``) is what was validated."""
        meta = self.model_dump(mode="json", exclude_unset=True)
        meta["masked"] = [[m.layer, m.shape] + ([m.b_shape] if m.b_shape is not None else []) for m in self.masked]
        meta["batchnorms"] = [[b.name, b.channels, b.eps] for b in self.batchnorms]
        if self.sequence is not None:
            meta["sequence"]["weights"] = [[c.layer, c.earlier, c.grown] for c in self.sequence.weights]
        return meta

    # -- rules on the header alone --------------------------------------------------------------------
    @model_validator(mode="after")
    def _layers_and_head(self) -> TaskHeader:
        check_layer_names(self.layers)
        for i, layer in enumerate(self.layers):
            if layer.weights > MAX_ELEMENTS:
                raise ValueError(f"layers[{i}]: {layer.weights} weights, more than 2^36")
        linear = [layer.name for layer in self.layers if layer.kind == "linear"]
        if not linear or self.head != linear[-1]:
            last = f"the last linear layer is {linear[-1]!r}" if linear else "layers has no linear layer"
            raise ValueError(f"head: {self.head!r} is not the classifier ({last}, which ksm-sim prices as the "
                             f"head)")
        if self.layer(self.head).out_channels != self.num_classes:
            raise ValueError(f"num_classes: {self.num_classes}, but head {self.head!r} has "
                             f"{self.layer(self.head).out_channels} outputs")
        return self

    @model_validator(mode="after")
    def _masked_layers(self) -> TaskHeader:
        layers = {layer.name: layer for layer in self.layers}
        kind = self.traits.mask
        seen: set[str] = set()
        for i, m in enumerate(self.masked):
            where = f"masked[{i}]"
            if m.layer not in layers:
                raise ValueError(f"{where}: {m.layer!r} is not a layer of layers")
            if m.layer in seen or m.layer == self.head:
                raise ValueError(f"{where}: {m.layer!r} is " + ("listed twice" if m.layer in seen else "the head"))
            seen.add(m.layer)
            if kind.branch and not 1 <= m.shape[0] <= max_rank(layers[m.layer]):
                raise ValueError(f"{where}: rank {m.shape[0]} is not in 1..{max_rank(layers[m.layer])} for layer "
                                 f"{m.layer!r}")
            expected = _mask_shapes(kind, layers[m.layer], m)
            got = [m.shape] if m.b_shape is None else [m.shape, m.b_shape]
            if expected is None:
                raise ValueError(f"{where}: method {self.method!r} stores no per-layer tensors; masked must be "
                                 f"empty")
            if got != expected:
                raise ValueError(f"{where}: {_shapes(got)} does not fit layer {m.layer!r} (weight "
                                 f"{list(weight_shape(layers[m.layer]))}): method {self.method!r} stores "
                                 f"{_shapes(expected)}")
        if kind in (catalogue.KERNEL, catalogue.ELEMENT, catalogue.COPY):
            missing = [name for name in layers if name != self.head and name not in seen]
            if missing:
                raise ValueError(f"masked: layer {missing[0]!r} of layers is not masked (method {self.method!r} "
                                 f"masks every layer but the head)")
        total = sum(math.prod(m.shape) + math.prod(m.b_shape or [0]) for m in self.masked)
        if total > MAX_ELEMENTS:
            raise ValueError(f"masked: {total} entries, more than 2^36")
        return self

    @model_validator(mode="after")
    def _method_keys(self) -> TaskHeader:
        traits, kind = self.traits, self.traits.mask
        if self.scale_bits and not (traits.soft_part and self.soft):
            why = "soft is not true" if traits.soft_part else f"method {self.method!r} has no soft part"
            raise ValueError(f"scale_bits: {self.scale_bits}, but {why} (a soft scale is stored only for a soft "
                             f"mask)")
        if self.soft and not traits.soft_part:
            raise ValueError(f"soft: true, but method {self.method!r} has no soft part")
        for key in ("soft", "top1_measured_at"):
            if getattr(self, key) is not None and not kind.learned:
                raise ValueError(f"{key}: method {self.method!r} learns no mask; the key does not belong here")
        if (self.scaling is None) == kind.branch:
            raise ValueError(f"scaling: {'missing (LoRA needs alpha / rank)' if kind.branch else 'LoRA only'}")
        if (self.sequence is None) == traits.sequence:
            raise ValueError(f"sequence: {'missing' if traits.sequence else 'only for a sequence method'} "
                             f"(method {self.method!r})")
        if self.sequence is not None:
            names, seen = {layer.name for layer in self.layers}, set()
            for i, c in enumerate(self.sequence.weights):
                if c.layer not in names or c.layer in seen:
                    why = "is listed twice" if c.layer in seen else "is not a layer of layers"
                    raise ValueError(f"sequence.weights[{i}]: {c.layer!r} {why}")
                seen.add(c.layer)
                if c.earlier > self.layer(c.layer).weights:
                    raise ValueError(f"sequence.weights[{i}]: {c.earlier} earlier weights, more than layer "
                                     f"{c.layer!r} has")
        return self

    @model_validator(mode="after")
    def _quant_scales(self) -> TaskHeader:
        rows = self.int8_rows()
        for key, scales in self.quant_scales.items():
            if key not in rows:
                why = "weights are not int8" if self.precisions.weights != 8 else "no int8 tensor has that name"
                raise ValueError(f"quant_scales.{key}: not a scale key of this file ({why})")
            if len(scales) != rows[key]:
                raise ValueError(f"quant_scales.{key}: {len(scales)} scales for {rows[key]} rows")
        missing = [key for key in rows if key not in self.quant_scales]
        if missing:
            raise ValueError(f"quant_scales.{missing[0]}: missing (8-bit weights are int8 codes with a scale per "
                             f"row)")
        return self

    # -- rules against the tensors (given as context) -------------------------------------------------
    @model_validator(mode="after")
    def _tensors(self, info: ValidationInfo) -> TaskHeader:
        arrays = (info.context or {}).get("arrays")
        if arrays is not None:
            check_tensors(self, arrays)
        return self


def _mask_shapes(kind: catalogue.MaskKind, layer: LayerRecord, m: MaskedLayer) -> list[list[int]] | None:
    """The shapes a masked entry of ``kind`` must have for ``layer`` (None: the kind lists no layers)."""
    w = weight_shape(layer)
    if kind.kernel_wise:
        return [list(w[:2])]
    if kind.branch:
        rank = m.shape[0]
        return [[rank, *w[1:]], [w[0], rank, *([1, 1] if len(w) == 4 else [])]]
    if kind.learned or kind == catalogue.COPY:
        return [list(w)]
    return None


def max_rank(layer: LayerRecord) -> int:
    """The largest LoRA rank of a layer: ``min(out, in/groups * kh * kw)``."""
    w = weight_shape(layer)
    return min(w[0], math.prod(w[1:]))


def _shapes(shapes: list[list[int]]) -> str:
    return " and ".join(str(list(s)) for s in shapes)


def check_tensors(header: TaskHeader, arrays: Mapping[str, Any]) -> None:
    """The tensors against the header: each one it implies present with its shape and dtype, the soft
    scale's stream as long as the zero bits imply, nothing else. Raises ValueError (the rule's message)."""
    stored = header.stored()
    for name, want in stored.items():
        if name not in arrays:
            raise ValueError(f"tensor {name}: missing ({want.why} implies it)")
        array = arrays[name]
        shape, dtype = tuple(int(n) for n in array.shape), np.dtype(array.dtype).name
        if dtype != want.dtype:
            raise ValueError(f"tensor {name}: {dtype}, but {want.why} implies {want.dtype}"
                             f" (precisions {header.precisions.weights}/{header.precisions.psums}/"
                             f"{header.precisions.batchnorm} bits)")
        if want.shape is None:
            if len(shape) != 1:
                raise ValueError(f"tensor {name}: shape {list(shape)}, but {want.why} implies one byte stream")
        elif shape != want.shape:
            stream = want.dtype == "uint8" and len(want.shape) == 1 and len(shape) == 1
            what = (f"{shape[0]} bytes, but {want.why} implies {want.shape[0]}" if stream
                    else f"shape {list(shape)}, but {want.why} implies {list(want.shape)}")
            raise ValueError(f"tensor {name}: {what}")
    extra = sorted(set(arrays) - set(stored))
    if extra:
        raise ValueError(f"tensor {short(extra[0])}: not accounted for by the header (method {header.method!r} "
                         f"stores {', '.join(stored)})")
    if "mask.scale" in stored:
        entries = sum(math.prod(m.shape) for m in header.masked)
        zeros = entries - int(np.unpackbits(np.asarray(arrays["mask.binary"], np.uint8), count=entries).sum())
        want = stream_bytes(zeros * header.scale_bits)
        got = int(arrays["mask.scale"].shape[0])
        if got != want:
            raise ValueError(f"tensor mask.scale: {got} bytes, but scale_bits {header.scale_bits} for each of the "
                             f"{zeros} zero bits of mask.binary implies {want}")
