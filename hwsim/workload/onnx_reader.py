"""Any ONNX CNN as an hwsim workload (``ksm-sim --onnx model.onnx``; ``onnx:`` in a sweep spec).

The reader keeps the graph (:class:`~hwsim.workload.graph.Graph`): every node becomes an operator with its
activation tensors (their shapes from shape inference, without the batch) and its producer and consumers.
``Conv`` (2-D; groups, strides, dilations, explicit or ``auto_pad`` padding), ``Gemm`` and ``MatMul`` with a
constant weight are layers, costed on the MAC array; every other operator gets its kind from
:data:`~hwsim.workload.graph.ONNX_KINDS` (element-wise, activation, BatchNorm, pooling, concatenation, split,
reshape, copy, resize, softmax). Nodes on constants only (``Constant``, an ``Identity`` of a weight, shape
arithmetic) are folded, as a compiler folds them. An operator hwsim has no model for is named, with counts,
in one warning line and costed as one vector operation per output element, never dropped. A node exported
by torch (``/layer1/layer1.0/conv1/Conv``) is named after its module (``layer1.0.conv1``,
:func:`module_name`), so a run folder's layers are found in the graph by name. The graph's image input gets one static shape ``[N, C, H, W]``
(:class:`~hwsim.schemas.onnx_shapes.OnnxInput`: the model's own, a symbolic batch taken as 1, or the one
``--input-shape`` gives, which must agree with the model's static dimensions) before
``onnx.shape_inference`` derives every layer's sizes from it; a size still unknown after it is refused, never
taken as 1. Each ``Conv``'s attributes are checked by :class:`~hwsim.schemas.onnx_shapes.ConvAttributes`.

hwsim's :class:`~hwsim.workload.layers.Layer` has symmetric padding and no dilation. A dilated or asymmetrically
padded conv is represented exactly in MACs and output size: its kernel keeps ``k`` taps, the dilation's
extra span ``(d - 1)(k - 1)`` is taken off the total padding (off the input when the padding is smaller),
and an odd total padding adds one row/column to ``input_hw`` (so ``(H + 2p - k) // s + 1`` is still the
ONNX output size).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from hwsim.errors import InputError
from hwsim.fileio.bounded import ECHO, MAX_SIZE, check_file, short
from hwsim.schemas.validation import validate
from hwsim.schemas.graph_record import GraphRecord, check_graph_layers
from hwsim.schemas.onnx_shapes import ConvAttributes, OnnxInput
from hwsim.workload.graph import ONNX_KINDS, Graph, Op
from hwsim.workload.layers import Layer, Workload

COSTED = ("Conv", "Gemm", "MatMul")
CONTROL_FLOW = ("If", "Loop", "Scan")


class OnnxWarning(UserWarning):
    """Operators of an ONNX model that hwsim does not cost."""


def _shape(info: Any) -> list[int | None] | None:
    """A tensor's dimensions, ``None`` for one that is not static (never guessed as 1); ``None`` when the
    tensor has no shape at all."""
    t = info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def _declared(info: Any) -> list[int | str | None] | None:
    """The input's dimensions as the model declares them: an int, a symbol's name, or None (unnamed)."""
    t = info.type.tensor_type
    if not info.type.HasField("tensor_type") or not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
            else (d.dim_param or None) for d in t.shape.dim]


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``1x3x224x224`` or ``1,3,224,224`` -> ``(1, 3, 224, 224)``; its rank and ranges are the schema's."""
    parts = [p.strip() for p in text.replace("x", ",").replace("X", ",").split(",")]
    for part in parts:
        if not part.isdigit() or len(part) > 9:
            raise InputError(f"--input-shape: {short(part)} is not a dimension (give N x C x H x W, "
                             f"e.g. 1x3x224x224), got {short(text)}")
    return tuple(int(p) for p in parts)


def _fix_input(model: Any, path: Path, input_shape: tuple[int, ...] | None,
               given_by: str = "--input-shape") -> OnnxInput:
    """Give the graph's image input one static shape, before shape inference derives the others from it.

    Exporters' stale intermediate shapes (symbolic ``H``) are dropped, so inference recomputes them.
    """
    g = model.graph
    weights = {t.name for t in g.initializer}  # older exporters list the weights as inputs too
    inputs = [i for i in g.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(short(i.name) for i in inputs[:4])
        raise InputError(f"{path}: {len(inputs)} graph inputs ({names or 'none'}); hwsim costs a CNN with one "
                         "image input")
    info = inputs[0]
    declared = _declared(info)
    where = f"{path}: input {short(info.name)}"
    if input_shape is None:
        if declared is None:
            raise InputError(f"{where}: no shape declared: give it, e.g. --input-shape 1x3x224x224")
        spec = validate(OnnxInput, {"name": info.name, "shape": declared}, where)
    else:
        shown = "x".join(str(d) for d in input_shape)
        spec = validate(OnnxInput, {"name": info.name, "shape": tuple(input_shape)},
                        f"{given_by} {shown} (for {where})",
                        context={"declared": declared})
    dims = info.type.tensor_type.shape.dim
    del dims[:]
    for size in spec.shape:
        dims.add().dim_value = size
    del g.value_info[:]
    return spec


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_onnx(path: str | Path, warn: bool = True, input_shape: tuple[int, ...] | None = None,
              given_by: str = "--input-shape") -> tuple[Workload, dict[str, int]]:
    """Read an ONNX CNN; returns the workload (layers and graph) and ``{operator: count}`` of the operators hwsim
    has no cost model for (costed as one vector operation per output element).

    ``input_shape``: the image input's ``[N, C, H, W]`` (``--input-shape``), needed when the model leaves a
    dimension other than the batch symbolic; ``given_by`` names where it came from in errors (the option, or a
    sweep spec's key). Raises :class:`InputError` (one line) for a missing, corrupt or
    non-CNN file, a shape that is not static, or a node whose attributes or shapes do not hold together.
    """
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        raise InputError("--onnx needs the onnx package: pip install 'ksm[explore]'") from None
    path = Path(path)
    check_file(path, InputError)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError, ValueError...
        raise InputError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    if not model.graph.node:
        raise InputError(f"{path}: not a readable ONNX model (no graph nodes)")
    if not any(node.op_type == "Conv" for node in model.graph.node):
        raise _not_a_cnn(path, model.graph)
    _fix_input(model, path, input_shape, given_by)
    try:
        model = shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises InferenceError and C++ errors alike
        raise InputError(f"{path}: ONNX shape inference failed: {str(exc).splitlines()[0]}") from None
    g = model.graph
    shapes: dict[str, list[int] | None] = {}
    for info in (*g.input, *g.value_info, *g.output):
        shapes[info.name] = _shape(info)
    inits = {t.name: list(t.dims) for t in g.initializer}
    shapes.update(inits)
    for node in g.node:  # Constant nodes hold weights in some exporters
        if node.op_type == "Constant" and node.output:
            value = _attrs(node).get("value")
            if value is not None:
                inits[node.output[0]] = list(value.dims)
                shapes[node.output[0]] = list(value.dims)

    layers: list[Layer] = []
    ops: list[Op] = []
    skipped: Counter[str] = Counter()  # operators hwsim has no model for, costed as one operation per element
    names: set[str] = set()
    constant = set(inits)  # weights and constants: not tensors of the graph
    image = [i.name for i in g.input if i.name not in inits]
    tensors: dict[str, tuple[int, ...]] = {}

    def unique(name: str) -> str:
        base, i = name or "op", 1
        out = base
        while out in names:
            i += 1
            out = f"{base}_{i}"
        names.add(out)
        return out

    def activation(t: str, where: str) -> None:
        if t not in tensors:
            shape = shapes.get(t)
            if shape is None or len(shape) < 1:
                raise InputError(f"{where}: tensor {short(t)} has no shape after shape inference")
            dims = _static_dims(shape, f"tensor {short(t)}", where)
            tensors[t] = tuple(int(d) for d in dims[1:]) or (1,)

    for t in image:
        activation(t, f"{path}: input {short(t)}")
    for index, node in enumerate(g.node):
        op = node.op_type
        where = f"{path}: node {_plain(node.name) if node.name else index} ({_plain(op)})"
        if op in CONTROL_FLOW or any(a.type in (5, 10) for a in node.attribute):  # GRAPH, GRAPHS attributes
            raise InputError(f"{where}: control flow (a node holding subgraphs) is not costed by hwsim; export the "
                             "network without it")
        if not [t for t in node.output if t]:
            raise InputError(f"{where}: writes no named tensor")
        live = [t for t in node.input if t and t not in constant]
        if not live:  # a Constant, or an operator on constants only: folded at compile time
            constant.update(t for t in node.output if t)
            if op == "Identity" and node.input and node.input[0] in inits and node.output:
                inits[node.output[0]] = inits[node.input[0]]  # a weight shared through an Identity
            continue
        if op in COSTED and (len(node.input) < 2 or not node.output):
            raise InputError(f"{where}: needs an input, a weight and an output, got {len(node.input)} inputs "
                             f"and {len(node.output)} outputs")
        outputs = [t for t in node.output if t]
        layer = None  # a layer's own checks (attributes, weight) come first: they say more than a missing shape
        if op == "Conv":
            layer = _conv(node, shapes, where, unique(module_name(node.name) or f"conv{index}"))
            if layer is None:
                skipped["Conv (not 2-D)"] += 1
        elif op in ("Gemm", "MatMul"):
            layer = _linear(node, shapes, inits, where, unique(module_name(node.name) or f"{op.lower()}{index}"))
            if layer is None:
                skipped[f"{op} (no constant weight)"] += 1
        for t in (*live, *outputs):
            activation(t, where)
        if layer is not None:
            layers.append(layer)
            ops.append(Op(name=layer.name, kind=layer.kind, inputs=(live[0],), outputs=tuple(outputs), onnx=op,
                          layer=layer.name))
            continue
        kind = ONNX_KINDS.get(op, "unknown") if op not in COSTED else "unknown"
        if kind in ("concat", "split"):
            kind = _along(node, shapes, kind, where)
        if kind == "unknown" and op not in COSTED:
            skipped[op] += 1
        pool = _pool(node, tensors[live[0]], where) if kind == "pool" else {}
        ops.append(Op(name=unique(operator_name(node.name, op) or f"{op}{index}"), kind=kind,
                      inputs=tuple(live), outputs=tuple(outputs), onnx=op, **pool))
    if not any(layer.kind == "conv" for layer in layers):
        raise _not_a_cnn(path, g)
    if skipped and warn:
        listed = ", ".join(f"{n} {op}" for op, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        warnings.warn(OnnxWarning(f"{path.name}: no cost model for {listed}: costed as one vector operation per "
                                  "output element"), stacklevel=2)
    written = {t for o in ops for t in o.outputs}
    for o in g.output:
        if o.name not in written and o.name not in image and o.name not in constant:
            raise InputError(f"{path}: graph output {short(o.name)} is written by no node")
    outputs = tuple(o.name for o in g.output if o.name in written)
    graph = Graph(ops=tuple(ops), tensors=tensors, inputs=tuple(image), outputs=outputs)
    # the table's schema holds for a model's graph too: one writer per tensor, shapes by each kind's rule, sizes
    record = validate(GraphRecord, graph.record(), f"{path}: graph")
    try:
        check_graph_layers(record, layers)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    return Workload(source=path.stem, layers=tuple(layers), graph=graph), dict(skipped)


def module_name(node_name: str) -> str:
    """The PyTorch module an exported node belongs to, from the scope path torch's exporter writes
    (``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``, the name ``named_modules()`` and ``run.json``
    give it); a node name of another form is kept as it is."""
    parts = node_name.strip("/").split("/")
    if not node_name.startswith("/"):
        return node_name
    if len(parts) < 2:
        return ""  # an operator of the top-level module: it has no module of its own
    scope: list[str] = []
    for part in parts[:-1]:  # the last part is the operator (Conv, Add_1)
        if scope and part.startswith(scope[-1] + "."):
            scope[-1] = part  # a child of a Sequential is scoped as "<parent>.<index>"
        else:
            scope.append(part)
    return ".".join(scope)


def operator_name(node_name: str, op_type: str) -> str:
    """A non-layer operator's name: ``<module>/<OpType>`` (``layer1.0/Add``), the node's own name at the top
    level (``/Concat`` -> ``Concat``), empty for an unnamed node (the reader then numbers it)."""
    label = module_name(node_name)
    return f"{label}/{op_type}" if label else node_name.strip("/")


def _plain(text: str) -> str:
    """A name from the file as it reads, on one line and at most :data:`~hwsim.fileio.bounded.ECHO` characters."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= ECHO else text[:ECHO - 1] + "…"


def _along(node: Any, shapes: dict[str, Any], kind: str, where: str) -> str:
    """A Concat or Split along the channels is a view (``concat``/``split``); along the height or width it
    moves data (``copy``); along the batch it is refused: hwsim costs one image."""
    x = shapes.get(node.output[0] if kind == "concat" else node.input[0])
    rank = len(x) if x else 4
    axis = _attrs(node).get("axis", 0)
    axis = axis + rank if isinstance(axis, int) and axis < 0 else axis
    if axis == 0:
        raise InputError(f"{where}: {kind}s along the batch (axis 0); hwsim costs one image at a time")
    return kind if axis == 1 else "copy"


def _pool(node: Any, x: tuple[int, ...], where: str) -> dict[str, Any]:
    """A pooling node's window (kernel_shape), strides, pads (from ``auto_pad`` when it is given, on the
    input ``x`` = ``(C, H, W)``) and ceil_mode, checked to be 2-D and in range."""
    attrs = _attrs(node)

    def sizes(key: str, n: int, default: list[int], low: int) -> tuple[int, ...]:
        value = attrs.get(key, default)
        if not isinstance(value, list) or len(value) != n or not all(
                isinstance(v, int) and low <= v <= MAX_SIZE for v in value):
            raise InputError(f"{where}: {key} must be {n} sizes from {low} to {MAX_SIZE}, got {short(value)}")
        return tuple(int(v) for v in value)

    window, stride = sizes("kernel_shape", 2, [], 1), sizes("strides", 2, [1, 1], 1)
    pads = sizes("pads", 4, [0, 0, 0, 0], 0)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER") and len(x) == 3:
        total = [max(0, (-(-x[1 + i] // stride[i]) - 1) * stride[i] + window[i] - x[1 + i]) for i in (0, 1)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        pads = (*small, *big) if auto == "SAME_UPPER" else (*big, *small)
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    return {"window": window, "stride": stride, "pads": pads, "ceil": bool(attrs.get("ceil_mode", 0))}


def _not_a_cnn(path: Path, graph: Any) -> InputError:
    return InputError(f"{path}: not a CNN: no 2-D Conv operator (operators: "
                      f"{', '.join(sorted({n.op_type for n in graph.node}))})")


def _static_dims(shape: list[int | None], what: str, where: str, batch: bool = True) -> list[int]:
    """Every dimension known (after the batch, with ``batch``: one inference is costed) and at most
    ``MAX_SIZE``: a guessed 1 or a typo of 2**40 would cost the wrong layer, silently."""
    dims = shape[1:] if batch else shape
    if any(d is None for d in dims):
        raise InputError(f"{where}: {what} shape {['?' if d is None else d for d in shape]} is not static "
                         "after shape inference")
    if any(d > MAX_SIZE for d in dims if d is not None):
        raise InputError(f"{where}: {what} shape {shape} has a dimension over {MAX_SIZE}")
    return [d if d is not None else 1 for d in shape]


def _conv(node: Any, shapes: dict[str, Any], where: str, name: str) -> Layer | None:
    x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
    y = shapes.get(node.output[0])
    if w is None or x is None:
        raise InputError(f"{where}: unknown input or weight shape (shape inference gave none)")
    if len(w) != 4 or len(x) != 4:
        return None
    x, w = _static_dims(x, "input", where), _static_dims(w, "weight", where, batch=False)
    a = validate(ConvAttributes, _attrs(node), where, context={"weight": w, "channels": x[1]})
    k_out, _, kh, kw = w
    groups, c_in = a.group, x[1]
    strides, dil = a.strides, a.dilations
    kernel = (kh, kw)  # kernel_shape, when given, is checked equal to it
    in_hw = x[2:]
    if a.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_hw = [-(-in_hw[i] // strides[i]) for i in (0, 1)]
        totals = [max(0, (out_hw[i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - in_hw[i]) for i in (0, 1)]
    elif a.auto_pad == "VALID":
        totals = [0, 0]
    else:
        totals = [a.pads[0] + a.pads[2], a.pads[1] + a.pads[3]]
    span = [dil[i] * (kernel[i] - 1) + 1 for i in (0, 1)]
    expected = [(in_hw[i] + totals[i] - span[i]) // strides[i] + 1 for i in (0, 1)]
    if y is not None and len(y) == 4 and None not in y[2:] and list(y[2:]) != expected:
        raise InputError(f"{where}: output {y[2:]} disagrees with input {in_hw}, kernel, stride, dilation, pads")
    eff = [totals[i] - (dil[i] - 1) * (kernel[i] - 1) for i in (0, 1)]  # padding of the dense equivalent
    pad = [max(e, 0) // 2 for e in eff]
    input_hw = [in_hw[i] + (eff[i] % 2 if eff[i] >= 0 else eff[i]) for i in (0, 1)]
    try:
        return Layer(name=name, kind="conv", in_channels=int(c_in), out_channels=int(k_out),
                     kernel_hw=(int(kernel[0]), int(kernel[1])), stride_hw=(int(strides[0]), int(strides[1])),
                     padding_hw=(int(pad[0]), int(pad[1])), groups=groups,
                     input_hw=(int(input_hw[0]), int(input_hw[1])), output_hw=(int(expected[0]), int(expected[1])),
                     bias=len(node.input) > 2 and bool(node.input[2]))
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _linear(node: Any, shapes: dict[str, Any], inits: dict[str, Any], where: str, name: str) -> Layer | None:
    a_name, b_name = node.input[0], node.input[1]
    if b_name not in inits:
        return None  # activation x activation (attention): not a CNN layer
    a, b = shapes.get(a_name), inits[b_name]
    if a is None or len(b) != 2:
        return None
    a, b = _static_dims(a, "input", where), _static_dims(b, "weight", where, batch=False)
    attrs = _attrs(node)
    if node.op_type == "Gemm":
        if attrs.get("transA", 0):
            return None
        k_in, n_out = (b[1], b[0]) if attrs.get("transB", 0) else (b[0], b[1])
        rows = 1  # Gemm's M is the batch
    else:
        k_in, n_out = b
        rows = 1
        for d in a[1:-1]:  # [batch, ..., K]: rows other than the batch are positions
            rows *= d
    if a[-1] != k_in:
        raise InputError(f"{where}: input features {a[-1]} disagree with weight {b}")
    try:
        return Layer(name=name, kind="linear", in_channels=int(k_in), out_channels=int(n_out), kernel_hw=(1, 1),
                     input_hw=(int(rows), 1), output_hw=(int(rows), 1),
                     bias=node.op_type == "Gemm" and len(node.input) > 2 and bool(node.input[2]))
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
