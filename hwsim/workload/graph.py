"""A workload as a graph: every operator, the tensors between them, their producers and consumers.

A network is costed as a graph (issue 23): the conv and linear layers (:class:`~hwsim.workload.layers.Layer`,
what masks apply to) plus every other operator an exporter writes (Add, Concat, pooling, Resize, Softmax,
activations, unfused BatchNorm, reshapes), each reading and writing named tensors. The graph is what decides
which tensors are alive at once (:mod:`hwsim.cost.memory_plan`) and what each non-MAC operator costs
(:mod:`hwsim.cost.operator_cost`).

Where the graph comes from:

- an ONNX model (:func:`hwsim.workload.onnx_reader.load_onnx`), which keeps every node;
- a bundled network table (``hwsim/networks/<name>.json``: ``graph`` beside ``layers``), written from
  torchvision through the same ONNX reader (``python -m ksm.network.bundle_networks``);
- a run folder, which takes its backbone's bundled graph when its recorded layers are that graph's layers;
- anything else (a SCALE-Sim topology CSV, a hand-written layer table, a run at another input size) is a
  **chain** (:func:`chain_graph`): each layer reads the previous layer's output when the channels and map
  size agree, and reads from off-chip memory otherwise, as hwsim costed every workload before graphs.

Shapes are per inference, without the batch: ``(C, H, W)`` for a feature map, ``(F,)`` for a vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hwsim.schemas.graph_record import derived_output
from hwsim.workload.layers import Layer

# --------------------------------------------------------------------------------------------
# Operator kinds: the ONNX operators hwsim knows, by what they cost. The one table the reader, the schema and
# the cost model share.

KINDS: dict[str, str] = {
    "conv": "convolution on the MAC array (a layer)",
    "linear": "fully connected layer (Gemm, MatMul with a constant weight) on the MAC array",
    "elementwise": "binary element-wise operator (Add, Mul, Sub, Div, Max, Min, Sum): one operation per output "
                   "element and extra input",
    "activation": "unary activation (Relu, Clip, Sigmoid, HardSwish...): one operation per element, free when "
                  "fused into its producer's output stage",
    "batchnorm": "BatchNormalization left unfused by the exporter: one scale-and-shift per element, free when "
                 "fused into the convolution that produces its input",
    "pool": "windowed pooling (MaxPool, AveragePool): one operation per output element and window tap",
    "global_pool": "global pooling or a spatial mean (GlobalAveragePool, ReduceMean): one operation per input "
                   "element",
    "concat": "concatenation: its producers write into slices of one buffer, nothing is moved",
    "split": "split along channels: its consumers read slices of one buffer, nothing is moved",
    "reshape": "reshape, flatten, squeeze, identity, dropout: a new view of the same bytes, nothing is moved",
    "copy": "operators that move data without arithmetic (Transpose, Pad, Slice, Tile, Expand, Gather): one "
            "operation per output element",
    "resize": "Resize/Upsample: one operation per output element",
    "softmax": "Softmax/LogSoftmax: three passes (exponent, sum, scale), one operation per element each",
    "unknown": "an operator hwsim has no model for: named in a warning, costed as one operation per output "
               "element",
}
MAC_KINDS = ("conv", "linear")
ALIAS_KINDS = ("concat", "split", "reshape")  # views: no data moved, no operation
FUSABLE_KINDS = ("activation", "batchnorm")  # free when fused into the producer's output stage

ONNX_KINDS: dict[str, str] = {
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "PRelu"), "elementwise"),
    **dict.fromkeys(("Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Elu", "Selu",
                     "Softplus", "Softsign", "Gelu", "Erf", "Exp", "Log", "Neg", "Abs", "Sqrt", "Reciprocal",
                     "Mish", "ThresholdedRelu", "Celu", "Cast", "QuantizeLinear", "DequantizeLinear"),
                    "activation"),
    "BatchNormalization": "batchnorm", "InstanceNormalization": "batchnorm",
    **dict.fromkeys(("MaxPool", "AveragePool", "LpPool"), "pool"),
    **dict.fromkeys(("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceMax",
                     "ReduceSum"), "global_pool"),
    "Concat": "concat",
    "Split": "split",
    **dict.fromkeys(("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"), "reshape"),
    **dict.fromkeys(("Transpose", "Pad", "Slice", "Tile", "Expand", "Gather", "DepthToSpace", "SpaceToDepth"),
                    "copy"),
    **dict.fromkeys(("Resize", "Upsample"), "resize"),
    **dict.fromkeys(("Softmax", "LogSoftmax"), "softmax"),
}


@dataclass(frozen=True, slots=True)
class Op:
    """One operator: its kind (:data:`KINDS`), the ONNX operator it came from, the activation tensors it reads
    and writes (weights and constants are not tensors of the graph), its layer's name for a conv or linear
    operator, and a pooling window's ``(kh, kw)``, strides, pads ``(top, left, bottom, right)`` and rounding (what
    :func:`at_layers` needs to derive its output at another input size)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    onnx: str = ""
    layer: str | None = None
    window: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil: bool = False

    def record(self) -> dict[str, Any]:
        """The op as a ``graph.ops`` record of a network table."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "onnx": self.onnx,
                               "inputs": list(self.inputs), "outputs": list(self.outputs)}
        if self.layer is not None and self.layer != self.name:
            out["layer"] = self.layer
        if self.kind == "pool":
            out.update(window=list(self.window), stride=list(self.stride), pads=list(self.pads), ceil=self.ceil)
        return out


@dataclass(frozen=True, slots=True)
class Graph:
    """Operators in execution order (a topological order: the ONNX file's, or the layers'), the shape of every
    tensor, and which tensors enter (the image) and leave (the logits) the network."""

    ops: tuple[Op, ...]
    tensors: Mapping[str, tuple[int, ...]]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    chain: bool = False  # built from a layer list by :func:`chain_graph`, not read from a model
    producer: Mapping[str, int] = field(init=False, repr=False, compare=False)
    consumers: Mapping[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    # what the cost model derives from the graph alone, kept with it (a sweep costs one graph on many designs)
    memo: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        producer: dict[str, int] = {}
        consumers: dict[str, list[int]] = {}
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                consumers.setdefault(t, []).append(i)
            for t in op.outputs:
                producer[t] = i
        object.__setattr__(self, "tensors", MappingProxyType(dict(self.tensors)))
        object.__setattr__(self, "producer", MappingProxyType(producer))
        object.__setattr__(self, "consumers", MappingProxyType({t: tuple(c) for t, c in consumers.items()}))
        object.__setattr__(self, "memo", {})

    def __reduce__(self) -> tuple:
        """Pickled by its fields alone (a process pool's workers rebuild the links; the memo stays behind)."""
        return (Graph, (self.ops, dict(self.tensors), self.inputs, self.outputs, self.chain))

    def elems(self, tensor: str) -> int:
        """Elements of one tensor, per inference."""
        return math.prod(self.tensors[tensor])

    def record(self) -> dict[str, Any]:
        """The graph as the ``graph`` record of a network table (``docs/reference/network-table.md``)."""
        return {"inputs": list(self.inputs), "outputs": list(self.outputs),
                "tensors": {name: list(shape) for name, shape in self.tensors.items()},
                "ops": [op.record() for op in self.ops]}

    def kind_counts(self) -> dict[str, int]:
        """How many operators of each kind."""
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts


def host_written(graph: Graph) -> frozenset[str]:
    """The tensors the host writes before the network runs, not a map the network makes: the graph's
    inputs (the image). Every cost rule that treats the network's input apart asks this: the layout a layer
    reads it in (:func:`hwsim.cost.simulate.layer_profiles`: NHWC, Vela's IFM blocks), the run-length code of
    DRAM maps (:func:`hwsim.cost.dram_compression.coded_maps`: Eyeriss codes every fmap "except for the input
    data to the first layer", Chen et al., JSSC 2017, §IV-B), the memory plan (:mod:`hwsim.cost.memory_plan`:
    off chip) and the next image fetched during this one (:mod:`hwsim.cost.residency`).

    A graph read from a model or a table has no other tensor that no operator writes (``GraphRecord``'s
    rule: every tensor read is a graph input or written by an earlier operator). A chain (:func:`chain_graph`)
    has: a layer that does not follow the previous one reads a tensor no layer of the list writes, made by a
    pooling or a branch the list does not show. That tensor is a feature map of the network, not the host's
    (Eyeriss codes it; Vela 5.2.0 stores it in NHCWB16 bricks like any map the network makes), so it is not
    here; it still has no producer in the graph, which the memory plan reads from ``graph.producer``."""
    return frozenset(graph.inputs)


def feeds(a: Layer, b: Layer) -> bool:
    """Whether, in a chain, ``b`` reads ``a``'s output: same channels and map size."""
    return a.out_channels == b.in_channels and tuple(a.output_hw) == tuple(b.input_hw)


def chain_graph(layers: Sequence[Layer]) -> Graph:
    """The graph of a layer list without one: each layer reads the previous one's output when its channels and
    map size agree (:func:`feeds`); otherwise it reads a tensor from off-chip memory that no operator of the
    graph writes (a pooling or a branch the list does not show), and the previous output leaves the chip.

    The graph of a tuple of layers is built once and returned again for the same tuple (a sweep costs one
    workload on many designs: its graph's memo, the memory plans, is kept across them)."""
    if not isinstance(layers, tuple):
        return _chain_graph(layers)
    hit = _CHAINS.get(id(layers))
    if hit is not None and hit[0] is layers:
        return hit[1]
    graph = _chain_graph(layers)
    if len(_CHAINS) >= 64:
        _CHAINS.clear()
    _CHAINS[id(layers)] = (layers, graph)
    return graph


_CHAINS: dict[int, tuple[tuple[Layer, ...], Graph]] = {}  # id(layers) -> (layers, their chain graph)


def _chain_graph(layers: Sequence[Layer]) -> Graph:
    """:func:`chain_graph` without the cache."""
    tensors: dict[str, tuple[int, ...]] = {}
    ops: list[Op] = []
    previous: Layer | None = None
    for layer in layers:
        if previous is not None and feeds(previous, layer):
            source = f"{previous.name}:out"
        else:
            source = f"{layer.name}:in"
            tensors[source] = (layer.in_channels, *layer.input_hw)
        out = f"{layer.name}:out"
        tensors[out] = (layer.out_channels, *layer.output_hw)
        ops.append(Op(name=layer.name, kind=layer.kind, inputs=(source,), outputs=(out,), onnx="", layer=layer.name))
        previous = layer
    first = (f"{layers[0].name}:in",) if layers else ()
    consumed = {t for op in ops for t in op.inputs}
    last = tuple(t for op in ops for t in op.outputs if t not in consumed)
    return Graph(ops=tuple(ops), tensors=tensors, inputs=first, outputs=last, chain=True)


def graph_from_record(record: Any) -> Graph:
    """The runtime graph of a validated ``graph`` record (:class:`~hwsim.schemas.graph_record.GraphRecord`)."""
    ops = tuple(Op(name=o.name, kind=o.kind, inputs=tuple(o.inputs), outputs=tuple(o.outputs), onnx=o.onnx,
                   layer=o.layer or (o.name if o.kind in MAC_KINDS else None),
                   window=tuple(o.window) if o.window else (1, 1), stride=tuple(o.stride) if o.stride else (1, 1),
                   pads=tuple(o.pads) if o.pads else (0, 0, 0, 0), ceil=bool(o.ceil)) for o in record.ops)
    return Graph(ops=ops, tensors={name: tuple(shape) for name, shape in record.tensors.items()},
                 inputs=tuple(record.inputs), outputs=tuple(record.outputs))


def at_layers(graph: Graph, layers: Sequence[Layer], image: tuple[int, ...]) -> Graph | None:
    """The same graph with every tensor's shape derived again for another input size: ``image`` is the input
    ``(C, H, W)``, ``layers`` the network's layers at that size (a run records them), which give every conv and
    linear output. Other operators follow their kind's rule (:func:`hwsim.schemas.graph_record.derived_output`,
    the rules a graph is checked by: element-wise: the inputs broadcast; activation, BatchNorm, softmax: the
    input; pooling: its window, strides, pads and rounding; global pooling: ``(C, 1, 1)``; concatenation:
    channels added; Flatten: one vector). None when a layer's input disagrees with the tensor
    the graph gives it, or an operator has no rule (a Reshape to a fixed shape, a Resize): the graph does not
    hold at that size, and the caller falls back to a chain."""
    by_name = {layer.name: layer for layer in layers}
    if len(graph.inputs) != 1:
        return None
    shapes: dict[str, tuple[int, ...]] = {graph.inputs[0]: tuple(image)}
    for op in graph.ops:
        ins = [shapes[t] for t in op.inputs]
        out = _derived(op, ins, by_name)
        if out is None or len(op.outputs) != 1:
            return None
        shapes[op.outputs[0]] = out
    named = {op.layer for op in graph.ops}
    if any(layer.name not in named for layer in layers):
        return None
    return Graph(ops=graph.ops, tensors=shapes, inputs=graph.inputs, outputs=graph.outputs)


def _derived(op: Op, ins: list[tuple[int, ...]], layers: Mapping[str, Layer]) -> tuple[int, ...] | None:
    """One operator's output shape from its inputs' (see :func:`at_layers`), or None."""
    if op.kind in MAC_KINDS:
        layer = layers.get(op.layer or "")
        if layer is None or not ins:
            return None
        x = ins[0]
        if layer.kind == "conv":
            return (layer.out_channels, *layer.output_hw) if x == (layer.in_channels, *layer.input_hw) else None
        return (*x[:-1], layer.out_channels) if x[-1] == layer.in_channels or math.prod(x) == layer.in_channels \
            else None
    return derived_output(op, ins)
