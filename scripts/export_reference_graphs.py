"""Export the seven Coral Edge TPU reference CNNs as small, weight-stripped ONNX graphs.

Makes ``tests/hwsim/fixtures/coral/<name>.onnx``: random weights (seed 0; BatchNorm parameters and running
statistics randomized as well, so the exporter merges no equal tensors into ``Identity`` nodes), batch 1,
NCHW, opset 13, through torch's legacy TorchScript exporter with constant folding off (BatchNormalization
stays its own node; convs keep the bias flags their torch modules have). Each float tensor over ``MAX_KEPT``
elements (initializers and ``Constant`` values) then loses its data but keeps its dims and data type; small
and integer tensors (Reshape targets and the like) are kept whole. Before writing, every stripped graph is
checked against its unstripped export: ``onnx.shape_inference.infer_shapes`` gives the same value_info, and,
where the project's ``hwsim`` is importable, ``hwsim.workload.onnx_reader.load_onnx`` gives the same layers.

Not imported by the test suite (the tests never need timm). timm and what it imports go into a throwaway
``pip install --target`` folder, never into the project's venv. From the repository root::

    TIMM_PKGS=$(mktemp -d)
    .venv/bin/python -m pip install --no-deps --target "$TIMM_PKGS" \\
        timm==1.0.31 huggingface_hub==2.4.0 httpx2==2.17.0 httpcore2==2.17.0 \\
        h11==0.16.0 anyio==4.16.0 idna==3.21 truststore==0.10.5
    PYTHONPATH="$TIMM_PKGS" .venv/bin/python scripts/export_reference_graphs.py tests/hwsim/fixtures/coral

(the venv already has pyyaml, safetensors, filelock, fsspec, packaging, tqdm and click, which timm and
huggingface_hub also import; httpx2 and the packages after it only keep huggingface_hub's lazy imports quiet).

Versions used for the committed files: Python 3.11, torch 2.14.1, torchvision 0.29.1, onnx 1.23.2,
timm 1.0.31 (huggingface_hub 2.4.0). Nothing is downloaded at run time: every model is built with
``weights=None`` / ``pretrained=False``.

Networks (name: source, input):
    mobilenet_v1            timm ``mobilenetv1_100``          224x224
    mobilenet_v2            torchvision ``mobilenet_v2``      224x224
    efficientnet_edgetpu_s  timm ``efficientnet_es``          timm's pretrained_cfg input_size (224x224)
    efficientnet_edgetpu_m  timm ``efficientnet_em``          timm's pretrained_cfg input_size (240x240)
    inception_v3            torchvision ``inception_v3``      299x299 (aux_logits=False, init_weights=False)
    resnet50                torchvision ``resnet50``          299x299
    inception_v1            torchvision ``googlenet``         224x224 (aux_logits=False, init_weights=False)
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
import torchvision
from onnx import TensorProto, shape_inference

OPSET = 13
MAX_KEPT = 64  # float tensors with more elements than this lose their data (dims and type are kept)
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
# timm names whose registry docstring / module docstring must say what Coral's rows are
TIMM_EXPECT = {
    "mobilenetv1_100": "MobileNet V1",
    "efficientnet_es": "EfficientNet-Edge Small",
    "efficientnet_em": "EfficientNet-Edge-Medium",
}


def _timm(name: str) -> tuple[torch.nn.Module, tuple[int, int]]:
    import timm

    model = timm.create_model(name, pretrained=False)
    doc = (timm.models.model_entrypoint(name).__doc__ or "").strip()
    if TIMM_EXPECT[name] not in doc:
        raise SystemExit(f"timm {name}: docstring {doc!r} does not name {TIMM_EXPECT[name]!r}")
    if name.startswith("efficientnet_e"):  # built by timm's EfficientNet-EdgeTPU generator
        gen = timm.models.efficientnet._gen_efficientnet_edge.__doc__ or ""
        if "EfficientNet-EdgeTPU" not in gen:
            raise SystemExit(f"timm {name}: its generator no longer says EfficientNet-EdgeTPU")
    size = model.pretrained_cfg["input_size"]  # (C, H, W) of timm's default pretrained config
    return model, (int(size[1]), int(size[2]))


Builder = Callable[[], tuple[torch.nn.Module, tuple[int, int]]]


def _tv(fn: Callable[..., torch.nn.Module], hw: int, **kwargs: Any) -> Builder:
    return lambda: (fn(weights=None, **kwargs), (hw, hw))


NETWORKS: dict[str, Builder] = {
    "mobilenet_v1": lambda: _timm("mobilenetv1_100"),
    "mobilenet_v2": _tv(torchvision.models.mobilenet_v2, 224),
    "efficientnet_edgetpu_s": lambda: _timm("efficientnet_es"),
    "efficientnet_edgetpu_m": lambda: _timm("efficientnet_em"),
    "inception_v3": _tv(torchvision.models.inception_v3, 299, aux_logits=False, init_weights=False),
    "resnet50": _tv(torchvision.models.resnet50, 299),
    "inception_v1": _tv(torchvision.models.googlenet, 224, aux_logits=False, init_weights=False),
}
# the input each Coral row names (EfficientNet-EdgeTpu rows name none: timm's size is used, checked here)
EXPECTED_HW = {"mobilenet_v1": 224, "mobilenet_v2": 224, "efficientnet_edgetpu_s": 224,
               "efficientnet_edgetpu_m": 240, "inception_v3": 299, "resnet50": 299, "inception_v1": 224}


def randomize_norms(model: torch.nn.Module) -> None:
    """Random BatchNorm affine parameters and running statistics: left at their ones/zeros initial values,
    equal tensors are merged by the exporter into one initializer plus ``Identity`` nodes, which no real
    (trained) network's graph has."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
                if m.running_mean is not None:
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)


def export(model: torch.nn.Module, hw: tuple[int, int]) -> onnx.ModelProto:
    randomize_norms(model)
    x = torch.randn(1, 3, *hw)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=OPSET,
                          do_constant_folding=False, input_names=["input"], output_names=["logits"])
    return onnx.load_from_string(buf.getvalue())


def _strip_tensor(t: onnx.TensorProto) -> bool:
    n = 1
    for d in t.dims:
        n *= d
    if t.data_type not in FLOAT_TYPES or n <= MAX_KEPT or t.data_location == TensorProto.EXTERNAL:
        return False
    for field in ("raw_data", "float_data", "double_data", "int32_data"):  # fp16/bf16 live in int32_data
        t.ClearField(field)
    return True


def strip(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    stripped = sum(_strip_tensor(t) for t in out.graph.initializer)
    for node in out.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    stripped += _strip_tensor(a.t)
    return out, stripped


def _inferred(model: onnx.ModelProto) -> dict[str, str]:
    g = shape_inference.infer_shapes(model, strict_mode=True).graph
    return {v.name: str(v.type) for v in (*g.value_info, *g.output)}


def _workload(path: Path) -> Any:
    from hwsim.workload.onnx_reader import load_onnx

    return load_onnx(path, warn=False)


def check(full: onnx.ModelProto, small_path: Path, full_path: Path, hwsim: bool) -> str:
    small = onnx.load(str(small_path))
    a, b = _inferred(full), _inferred(small)
    if a != b:
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        raise SystemExit(f"{small_path.name}: shape inference differs after stripping at {diff[:5]}")
    if not hwsim:
        return f"{len(a)} inferred shapes equal"
    wa, wb = _workload(full_path), _workload(small_path)
    if wa[0].layers != wb[0].layers or wa[1] != wb[1]:
        raise SystemExit(f"{small_path.name}: hwsim's reader reads the stripped graph differently")
    return f"{len(a)} inferred shapes equal, {len(wa[0].layers)} hwsim layers equal"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the stripped <name>.onnx files")
    parser.add_argument("--only", nargs="*", choices=sorted(NETWORKS), help="export only these networks")
    parser.add_argument("--keep-full", type=Path, default=None,
                        help="also write the unstripped exports into this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    try:
        import hwsim.workload.onnx_reader
        hwsim = True
    except ImportError:
        hwsim = False
        print("hwsim not importable: its reader check is skipped", file=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        full_dir = args.keep_full or Path(tmp)
        full_dir.mkdir(parents=True, exist_ok=True)
        for name in args.only or NETWORKS:
            torch.manual_seed(0)
            model, hw = NETWORKS[name]()
            if hw != (EXPECTED_HW[name],) * 2:
                raise SystemExit(f"{name}: input {hw}, expected {EXPECTED_HW[name]}x{EXPECTED_HW[name]}")
            full = export(model, hw)
            full_path = full_dir / f"{name}.onnx"
            onnx.save(full, str(full_path))
            small, n = strip(full)
            small_path = args.out_dir / f"{name}.onnx"
            onnx.save(small, str(small_path))
            verdict = check(full, small_path, full_path, hwsim)
            ops = Counter(node.op_type for node in small.graph.node)
            print(f"{name}: input 1x3x{hw[0]}x{hw[1]}, {n} tensors stripped, "
                  f"{full_path.stat().st_size} -> {small_path.stat().st_size} bytes; {verdict}")
            ranked = sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))
            print("    ops: " + ", ".join(f"{op} {c}" for op, c in ranked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
