"""Write the network tables that ``hwsim`` bundles (``ksm-sim --network NAME``), layers and graph.

Run once, from the repository root: ``python -m ksm.network.bundle_networks``. Each network is built by
torchvision's own model builder (random weights: only the structure matters), exported to ONNX at 224×224
(ImageNet input, 1000 classes; torch's TorchScript exporter, opset 13, BatchNorm left as its own operator so
every convolution keeps the bias flag of its module) and read back through hwsim's ONNX reader
(:func:`hwsim.workload.onnx_reader.load_onnx`), the one path every ONNX model takes: the table's ``layers`` are
the reader's layers and its ``graph`` the reader's graph, tensors renamed after the operator writing them
(``layer1.0.conv1:out``). A test in ``tests/ksm/test_geometry.py`` checks the committed files against a fresh
export, and the layers against the forward hooks of :func:`ksm.network.geometry.layer_records`.

``alexnet.json`` is not written here: it is the two-GPU AlexNet of the Eyeriss paper, a layer table by hand.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torchvision

from hwsim.fileio.atomic import atomic_write
from hwsim.workload.graph import Graph
from hwsim.workload.onnx_reader import load_onnx

NETWORKS = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50,
            "vgg16": torchvision.models.vgg16_bn, "mobilenet_v2": torchvision.models.mobilenet_v2}
INPUT_HW = (224, 224)
OPSET = 13
FOLDER = Path(__file__).resolve().parents[2] / "hwsim" / "networks"


def export_onnx(model: torch.nn.Module, path: Path, input_hw: tuple[int, int] = INPUT_HW) -> None:
    """``model`` as an ONNX file: eval mode, batch 1, BatchNorm not folded into the convolutions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, *input_hw),), str(path), dynamo=False,
                          opset_version=OPSET, do_constant_folding=False, input_names=["image"],
                          output_names=["logits"])


def renamed(graph: Graph) -> Graph:
    """The graph with each tensor named after the operator that writes it (``<op>:out``), the input ``image``:
    names that say where a tensor comes from, shorter than the exporter's."""
    names = {t: t for t in graph.inputs}
    for op in graph.ops:
        for i, t in enumerate(op.outputs):
            names[t] = f"{op.name}:out" if len(op.outputs) == 1 else f"{op.name}:out{i}"
    ops = tuple(dataclasses.replace(op, inputs=tuple(names[t] for t in op.inputs),
                                    outputs=tuple(names[t] for t in op.outputs)) for op in graph.ops)
    return Graph(ops=ops, tensors={names[t]: shape for t, shape in graph.tensors.items()},
                 inputs=tuple(names[t] for t in graph.inputs), outputs=tuple(names[t] for t in graph.outputs))


def network_table(name: str) -> dict[str, Any]:
    """The bundled table of one network (VGG-16 is torchvision's vgg16_bn: same convs, plus BN)."""
    torch.manual_seed(0)
    model = NETWORKS[name](weights=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        export_onnx(model, path)
        work, _ = load_onnx(path, warn=False)
    return {"format": "ksm-layers/1", "network": name, "torchvision_builder": NETWORKS[name].__name__,
            "input_hw": list(INPUT_HW),
            "exported_with": f"torch.onnx.export (TorchScript exporter), opset {OPSET}, BatchNorm unfolded; "
                             "read by hwsim.workload.onnx_reader",
            "layers": [layer.record() for layer in work.layers], "graph": renamed(work.graph).record()}


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name in NETWORKS:
        path = FOLDER / f"{name}.json"
        atomic_write(path, json.dumps(network_table(name), indent=1) + "\n")
        print(path)


if __name__ == "__main__":
    main()
