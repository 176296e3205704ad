"""--onnx: ONNX CNNs built with onnx.helper (no torch), shapes from shape inference, one warning line."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

from hwsim.ksm_sim import main
from hwsim.cost.layer_cost import macs
from hwsim.errors import InputError
from hwsim.workload.onnx_reader import OnnxWarning, load_onnx


def _w(name: str, shape: tuple[int, ...]):
    return numpy_helper.from_array(np.zeros(shape, dtype=np.float32), name)


def tiny_cnn(path: Path, batch: int | str = 1) -> Path:
    """conv 3x3 s2 p1 -> relu -> depthwise 3x3 dilation 2 pads (2,2,2,2) -> conv 2x2 asymmetric pads ->
    global average pool -> flatten -> gemm (transB) -> matmul."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", group=8, dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"], name="asym", pads=[0, 0, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c3"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w4", "b4"], ["g"], name="fc", transB=1),
        helper.make_node("MatMul", ["g", "w5"], ["y"], name="proj"),
    ]
    inits = [_w("w1", (8, 3, 3, 3)), _w("w2", (8, 1, 3, 3)), _w("w3", (16, 8, 2, 2)), _w("b3", (16,)),
             _w("w4", (10, 16)), _w("b4", (10,)), _w("w5", (10, 4))]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def test_layers_from_onnx(tmp_path: Path) -> None:
    with pytest.warns(OnnxWarning) as record:
        work, skipped = load_onnx(tiny_cnn(tmp_path / "tiny.onnx", batch="N"))
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert "1 Flatten" in str(record[0].message) and "1 GlobalAveragePool" in str(record[0].message)
    assert skipped == {"Relu": 1, "GlobalAveragePool": 1, "Flatten": 1}
    by = {layer.name: layer for layer in work.layers}
    assert list(by) == ["conv1", "dw", "asym", "fc", "proj"]
    c1 = by["conv1"]
    assert (c1.stride_hw, c1.padding_hw, c1.input_hw, c1.output_hw) == ((2, 2), (1, 1), (32, 32), (16, 16))
    dw = by["dw"]  # dilation 2: output stays 16x16; kernel keeps 9 taps
    assert dw.groups == 8 and dw.output_hw == (16, 16) and dw.kernel_hw == (3, 3)
    assert macs(dw) == 8 * 1 * 9 * 16 * 16
    asym = by["asym"]  # pads 0 top/left, 1 bottom/right: 16 + 1 - 2 + 1 = 16
    assert asym.output_hw == (16, 16) and macs(asym) == 16 * 8 * 4 * 16 * 16
    assert (by["fc"].kind, by["fc"].in_channels, by["fc"].out_channels) == ("linear", 16, 10)
    assert (by["proj"].in_channels, by["proj"].out_channels) == (10, 4)


def test_cli_onnx_one_warning_line(tmp_path: Path) -> None:
    path = tiny_cnn(tmp_path / "tiny.onnx")
    r = CliRunner().invoke(main, ["--onnx", str(path)])
    assert r.exit_code == 0, r.output
    assert r.output.count("warning:") == 1 and "not costed by hwsim: " in r.output
    assert "## tiny on edge_npu" in r.output


def test_corrupt_and_non_cnn(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(InputError, match="not a readable ONNX"):
        load_onnx(bad)
    mlp = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_w("w", (3, 4))]),
        opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(mlp, str(tmp_path / "mlp.onnx"))
    with pytest.raises(InputError, match="not a CNN"):
        load_onnx(tmp_path / "mlp.onnx")
    r = CliRunner().invoke(main, ["--onnx", str(bad)])
    assert r.exit_code != 0 and r.output.strip().count("\n") == 0


def test_onnx_in_a_sweep(tmp_path: Path) -> None:
    from hwsim.explore.ksm_explore import explore

    tiny_cnn(tmp_path / "tiny.onnx")
    spec = tmp_path / "s.yaml"
    spec.write_text("profiles: edge_npu\naxes: {array.rows: [8, 16]}\nworkloads: [{onnx: tiny.onnx}]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the spec path reports the note itself, never a Python warning
        result = explore(spec, tmp_path / "o", workers=1, progress=False, figures=False)
    assert len(result["frame"]) == 2 and result["spec"].notes
    assert "not costed by hwsim" in (tmp_path / "o" / "summary.md").read_text()


def test_exported_folded_model_costs_what_its_run_folder_costs(tmp_path: Path) -> None:
    """The graph ksm-export writes (ksm.deploy.onnx_export.export_onnx) and the layers ksm-train records in run.json
    (ksm.network.geometry.layer_records) cost the same on every bundled profile."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from hwsim import bundled_profiles, load_profile, simulate
    from hwsim.workload.layers import Workload, layers_from_records
    from ksm.deploy.onnx_export import export_onnx
    from ksm.network.geometry import layer_records

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=5).eval()
    path = export_onnx(model, tmp_path / "task.onnx", torch.zeros(1, 3, 64, 64))
    from_onnx, _ = load_onnx(path, warn=False)
    from_run = Workload("run", layers_from_records(layer_records(model, (64, 64)), "run.json"))
    assert len(from_onnx.layers) == len(from_run.layers)
    for name in bundled_profiles():
        p = load_profile(name)
        a, b = simulate(from_onnx, p), simulate(from_run, p)
        assert a.macs == b.macs
        assert a.energy_j == pytest.approx(b.energy_j, rel=1e-12) and a.latency_s == pytest.approx(b.latency_s, rel=1e-12)
