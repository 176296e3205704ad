"""A network's graph (the ``graph`` key of a ``ksm-layers/1`` network table): operators, tensors, their links.

Written by the ONNX reader (:func:`hwsim.workload.onnx_reader.load_onnx`) for the bundled networks; read back
through :class:`GraphRecord`, whose rules make a graph one the cost model can execute in order: every tensor
written once, every operator reading only tensors already written, each conv/linear operator one layer of the
table with the shapes of its tensors agreeing with that layer's geometry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from hwsim.fileio.bounded import MAX_SIZE, short
from hwsim.schemas.validation import Record, Whole, as_tuple, first_repeat

MAX_OPS = 100_000  # operators: a hundred times the largest CNN's node count
MAX_RANK = 4  # dimensions of a tensor without its batch
MAX_ELEMS = 2 ** 40  # elements of one tensor: a 16k x 16k image with 4096 channels
Kind = Literal["conv", "linear", "elementwise", "activation", "batchnorm", "pool", "global_pool", "concat",
               "split", "reshape", "copy", "resize", "softmax", "unknown"]
TensorName = Annotated[str, Field(min_length=1, max_length=512)]


Shape = Annotated[tuple[Whole(ge=1, le=MAX_SIZE), ...], BeforeValidator(as_tuple),
                  Field(min_length=1, max_length=MAX_RANK)]
Window = Annotated[tuple[Whole(ge=1, le=MAX_SIZE), Whole(ge=1, le=MAX_SIZE)], BeforeValidator(as_tuple)]


class OpRecord(Record):
    """One operator (``graph.ops[i]``)."""

    name: str = Field(min_length=1, max_length=512, description="unique within the graph; a conv/linear "
                                                                "operator's name is its layer's unless `layer` says")
    kind: Kind = Field(description="what it costs and where it runs (`docs/graphs.md` lists the kinds)")
    onnx: str = Field("", max_length=128, description="the ONNX operator it was read from (empty for a chain)")
    inputs: list[TensorName] = Field(min_length=1, max_length=MAX_OPS,
                                     description="activation tensors it reads (weights and constants are not graph "
                                                 "tensors)")
    outputs: list[TensorName] = Field(min_length=1, max_length=MAX_OPS, description="tensors it writes")
    layer: str | None = Field(None, max_length=512, description="conv/linear: the layer of `layers` it is, when "
                                                               "named differently")
    window: Window | None = Field(None, description="pool: the window [height, width] (default [1, 1])")
    stride: Window | None = Field(None, description="pool: the strides [height, width] (default [1, 1])")
    pads: Annotated[tuple[Whole(ge=0, le=MAX_SIZE), Whole(ge=0, le=MAX_SIZE), Whole(ge=0, le=MAX_SIZE),
                          Whole(ge=0, le=MAX_SIZE)], BeforeValidator(as_tuple)] | None = Field(
        None, description="pool: padding [top, left, bottom, right] (default none)")
    ceil: bool = Field(False, description="pool: output size rounded up (ONNX `ceil_mode`)")


class GraphRecord(Record):
    """The graph of a network: operators in execution order and the shape of every tensor."""

    RULES: ClassVar[tuple[str, ...]] = (
        "Operator names are unique; every tensor an operator reads is a graph input or written by an earlier "
        "operator (the list is an execution order); every tensor is written once; graph inputs are written by "
        "no operator; every listed tensor has a shape and every shape belongs to a tensor of the graph.",
        "Each `conv`/`linear` operator is one layer of the table's `layers` and each layer is one such "
        "operator; it reads one tensor of the layer's input channels and writes one of its output channels "
        "and map size.",
        "Every other operator's outputs agree with its inputs by its kind's rule: an activation, BatchNorm or "
        "softmax keeps its input's shape; an element-wise operator's output is its inputs broadcast; a "
        "reshape keeps the element count; a pool's output follows its window, strides, pads and rounding (the "
        "window no larger than the padded input); a global pool keeps the channels; a concatenation adds its "
        "inputs' channels and a split divides its input's, the rest of the shape equal.",
    )

    inputs: list[TensorName] = Field(min_length=1, max_length=16, description="tensors entering the network "
                                                                              "(the image)")
    outputs: list[TensorName] = Field(min_length=1, max_length=MAX_OPS, description="tensors leaving it")
    tensors: dict[TensorName, Shape] = Field(max_length=4 * MAX_OPS, description="every tensor's shape per "
                                                                                 "inference, without the batch")
    ops: list[OpRecord] = Field(min_length=1, max_length=MAX_OPS, description="operators in execution order")

    @model_validator(mode="after")
    def _executable(self) -> GraphRecord:
        for name, shape in self.tensors.items():
            if math.prod(shape) > MAX_ELEMS:
                raise ValueError(f"tensors.{short(name)}: {math.prod(shape)} elements, over {MAX_ELEMS}")
        i = first_repeat([op.name for op in self.ops])
        if i is not None:
            raise ValueError(f"ops[{i}].name: {short(self.ops[i].name)} is listed twice")
        written = set(self.inputs)
        if len(written) != len(self.inputs):
            raise ValueError("inputs: a tensor is listed twice")
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                if t not in written:
                    raise ValueError(f"ops[{i}] ({short(op.name)}): reads {short(t)} before any operator writes it")
            for t in op.outputs:
                if t in written:
                    raise ValueError(f"ops[{i}] ({short(op.name)}): writes {short(t)}, already written")
                written.add(t)
            if op.kind in ("conv", "linear") and (len(op.inputs) != 1 or len(op.outputs) != 1):
                raise ValueError(f"ops[{i}] ({short(op.name)}): a {op.kind} operator reads one tensor and "
                                 "writes one")
        for t in self.outputs:
            if t not in written:
                raise ValueError(f"outputs: {short(t)} is written by no operator")
        missing = next((t for t in written if t not in self.tensors), None)
        if missing is not None:
            raise ValueError(f"tensors: no shape for {short(missing)}")
        extra = next((t for t in self.tensors if t not in written), None)
        if extra is not None:
            raise ValueError(f"tensors: {short(extra)} is neither a graph input nor written by an operator")
        for i, op in enumerate(self.ops):
            problem = shape_problem(op, [self.tensors[t] for t in op.inputs], [self.tensors[t] for t in op.outputs])
            if problem:
                raise ValueError(f"ops[{i}] ({short(op.name)}): {problem}")
        return self


def check_graph_layers(graph: GraphRecord, layers: Sequence[Any]) -> None:
    """The rule between a graph and its table's layers (``layers`` are validated ``LayerRecord``\\ s): each
    conv/linear operator is one layer, each layer one operator, and the tensors agree with its geometry
    (channels first for a conv, last for a linear layer)."""
    by_name = {layer.name: layer for layer in layers}
    seen: set[str] = set()
    for i, op in enumerate(graph.ops):
        if op.kind not in ("conv", "linear"):
            continue
        name = op.layer or op.name
        layer = by_name.get(name)
        if layer is None:
            raise ValueError(f"graph.ops[{i}]: {short(name)} is not a layer of the table")
        if name in seen:
            raise ValueError(f"graph.ops[{i}]: layer {short(name)} is a second operator")
        seen.add(name)
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        axis = 0 if layer.kind == "conv" else -1  # NCHW maps; a linear layer's features are the last axis
        if x[axis] != layer.in_channels or y[axis] != layer.out_channels:
            raise ValueError(f"graph.ops[{i}] ({short(name)}): tensors of {x[axis]} -> {y[axis]} channels, the layer "
                             f"has {layer.in_channels} -> {layer.out_channels}")
        if layer.kind == "conv" and tuple(y[1:]) != tuple(layer.output_hw):
            raise ValueError(f"graph.ops[{i}] ({short(name)}): output map {list(y[1:])}, the layer's output_hw is "
                             f"{list(layer.output_hw)}")
    left = next((layer.name for layer in layers if layer.name not in seen), None)
    if left is not None:
        raise ValueError(f"graph: layer {short(left)} is no operator of the graph")


def broadcast(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...] | None:
    """NumPy/ONNX multidirectional broadcasting of tensor shapes (aligned on the right), or None."""
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        sizes = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def pooled(x: tuple[int, ...], window: Sequence[int], stride: Sequence[int], pads: Sequence[int],
           ceil: bool) -> tuple[int, ...] | None:
    """A window pool's output ``(C, H', W')`` of a ``(C, H, W)`` input, or None when the window does not fit the
    padded input."""
    if len(x) != 3:
        return None
    hw = []
    for axis in (0, 1):
        span = x[1 + axis] + pads[axis] + pads[axis + 2] - window[axis]
        if span < 0:
            return None
        hw.append((-(-span // stride[axis]) if ceil else span // stride[axis]) + 1)
    return (x[0], *hw)


def derived_output(op: Any, ins: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """A non-MAC operator's output shape from its inputs' by its kind's rule, or None where the kind has no rule
    or the inputs do not hold together. ``op`` has ``kind``, ``onnx`` and the pool fields (a record's or a
    runtime :class:`~hwsim.workload.graph.Op`'s). The one rule set behind :func:`shape_problem` (the check of
    a graph) and :func:`hwsim.workload.graph.at_layers` (a graph at another input size)."""
    if not ins:
        return None
    x, kind = ins[0], op.kind
    if kind == "elementwise":
        return broadcast(ins)
    if kind in ("activation", "batchnorm", "softmax") or (kind == "reshape" and op.onnx in ("Identity", "Dropout")):
        return x
    if kind == "reshape" and op.onnx == "Flatten":
        return (math.prod(x),)
    if kind == "global_pool" and len(x) == 3:
        return (x[0], 1, 1)
    if kind == "concat" and all(len(s) == len(x) and s[1:] == x[1:] for s in ins):
        return (sum(s[0] for s in ins), *x[1:])
    if kind == "pool":
        return pooled(x, op.window or (1, 1), op.stride or (1, 1), op.pads or (0, 0, 0, 0), op.ceil)
    return None


def shape_problem(op: Any, ins: list[tuple[int, ...]], outs: list[tuple[int, ...]]) -> str | None:
    """What is wrong between a non-MAC operator's input and output shapes by its kind's rule (see
    :class:`GraphRecord`'s rules and :func:`derived_output`), or None. A reshape other than Identity/Dropout
    only keeps its element count, a global pool may drop its 1 x 1 map, and a split's outputs divide its input."""
    kind = op.kind
    if kind in ("conv", "linear", "copy", "resize", "unknown"):
        return None
    x, y = ins[0], outs[0]
    if kind == "split":
        if any(len(s) != len(x) or s[1:] != x[1:] for s in outs) or sum(s[0] for s in outs) != x[0]:
            return f"splits {list(x)} into {[list(s) for s in outs]}: channels add up, the rest is equal"
        return None
    if kind == "global_pool":
        return None if y[0] == x[0] and math.prod(y) == x[0] else f"writes {list(y)} from {list(x)}: one value " \
                                                                   "per channel"
    if kind == "reshape" and op.onnx not in ("Identity", "Dropout"):
        return None if math.prod(y) == math.prod(x) else f"writes {math.prod(y)} elements from {math.prod(x)}"
    want = derived_output(op, ins)
    if want == y:
        return None
    if kind == "elementwise":
        return f"writes {list(y)}, its inputs {[list(s) for s in ins]} broadcast to {list(want) if want else 'nothing'}"
    if kind == "pool":
        if want is None:
            return f"a window {list(op.window or (1, 1))} does not fit its input {list(x)} with pads"
        return f"writes {list(y)}, its window gives {list(want)}"
    if kind == "concat":
        return f"writes {list(y)} from {[list(s) for s in ins]}: channels add up, the rest is equal"
    return f"writes {list(y)}, its input is {list(x)}"
