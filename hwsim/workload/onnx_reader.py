"""Any ONNX CNN as an hwsim workload (``ksm-sim --onnx model.onnx``; ``onnx:`` in a sweep spec).

Costed operators: ``Conv`` (2-D; groups, strides, dilations, explicit or ``auto_pad`` padding), ``Gemm``
and ``MatMul``/``FusedMatMul``-free ``MatMul`` with a constant weight (both as linear layers). Every
other operator (activations, pooling, BatchNormalization, Add, reshapes ...) is not costed and is listed,
with counts, in one warning line. The graph's image input gets one static shape ``[N, C, H, W]``
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
from hwsim.fileio.bounded import MAX_SIZE, short
from hwsim.schemas.validation import validate
from hwsim.schemas.onnx_shapes import ConvAttributes, OnnxInput
from hwsim.workload.layers import Layer, Workload

COSTED = ("Conv", "Gemm", "MatMul")


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
    """Read an ONNX CNN; returns the workload and ``{operator: count}`` of what was not costed.

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
    if not path.is_file():
        raise InputError(f"{path}: missing file")
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
    skipped: Counter[str] = Counter()
    names: set[str] = set()

    def unique(name: str) -> str:
        base, i = name or "layer", 1
        out = base
        while out in names:
            i += 1
            out = f"{base}_{i}"
        names.add(out)
        return out

    for index, node in enumerate(g.node):
        op = node.op_type
        where = f"{path}: node {node.name or index} ({op})"
        if op in COSTED and (len(node.input) < 2 or not node.output):
            raise InputError(f"{where}: needs an input, a weight and an output, got {len(node.input)} inputs "
                             f"and {len(node.output)} outputs")
        if op == "Conv":
            layer = _conv(node, shapes, where, unique(node.name or f"conv{index}"))
            if layer is None:
                skipped["Conv (not 2-D)"] += 1
            else:
                layers.append(layer)
        elif op in ("Gemm", "MatMul"):
            layer = _linear(node, shapes, inits, where, unique(node.name or f"{op.lower()}{index}"))
            if layer is None:
                skipped[f"{op} (no constant weight)"] += 1
            else:
                layers.append(layer)
        else:
            skipped[op] += 1
    if not any(layer.kind == "conv" for layer in layers):
        raise _not_a_cnn(path, g)
    if skipped and warn:
        listed = ", ".join(f"{n} {op}" for op, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        warnings.warn(OnnxWarning(f"{path.name}: not costed by hwsim: {listed}"), stacklevel=2)
    return Workload(source=path.stem, layers=tuple(layers)), dict(skipped)


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
