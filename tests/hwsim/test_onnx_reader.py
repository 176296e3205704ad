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
    """conv 3x3 s2 p1 -> relu -> LRN (an operator hwsim has no model for) -> depthwise 3x3 dilation 2 pads
    (2,2,2,2) -> conv 2x2 asymmetric pads -> global average pool -> flatten -> gemm (transB) -> matmul."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("LRN", ["r1"], ["n1"], size=3),
        helper.make_node("Conv", ["n1", "w2"], ["c2"], name="dw", group=8, dilations=[2, 2], pads=[2, 2, 2, 2]),
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
    assert "no cost model for 1 LRN" in str(record[0].message)
    assert skipped == {"LRN": 1}  # every other operator has a kind, and the graph keeps them all
    kinds = [(op.name, op.kind) for op in work.graph.ops]
    assert [k for _, k in kinds] == ["conv", "activation", "unknown", "conv", "conv", "global_pool", "reshape",
                                     "linear", "linear"]
    assert work.graph.inputs == ("x",) and work.graph.outputs == ("y",)
    assert work.graph.tensors["p"] == (16, 1, 1) and work.graph.tensors["f"] == (16,)
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
    assert r.output.count("warning:") == 1 and "no cost model for 1 LRN" in r.output
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
    assert "no cost model for 1 LRN" in (tmp_path / "o" / "summary.md").read_text()


def test_exported_folded_model_costs_what_its_run_folder_costs(tmp_path: Path) -> None:
    """The graph ksm-export writes (ksm.deploy.onnx_export.export_onnx) and the layers ksm-train records in run.json
    (ksm.network.geometry.layer_records) on the bundled backbone's graph derived at the run's size
    (hwsim.workload.layers.backbone_graph: what a run folder is costed on) cost the same on every bundled profile."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from hwsim import bundled_profiles, load_profile, simulate
    from hwsim.workload.layers import Workload, backbone_graph, layers_from_records
    from ksm.deploy.onnx_export import export_onnx
    from ksm.network.geometry import layer_records

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=5).eval()
    path = export_onnx(model, tmp_path / "task.onnx", torch.zeros(1, 3, 64, 64))
    from_onnx, _ = load_onnx(path, warn=False)
    layers = layers_from_records(layer_records(model, (64, 64)), "run.json")
    from_run = Workload("run", layers, graph=backbone_graph("mobilenet_v2", layers))
    assert from_run.graph is not None
    assert len(from_onnx.layers) == len(from_run.layers)
    for name in bundled_profiles():
        p = load_profile(name)
        a, b = simulate(from_onnx, p), simulate(from_run, p)
        assert a.macs == b.macs
        assert a.energy_j == pytest.approx(b.energy_j, rel=1e-12) and a.latency_s == pytest.approx(b.latency_s, rel=1e-12)


# --------------------------------------------------------------------------------------------
# The input shape (OnnxInput) and the Conv attributes (ConvAttributes)


def one_conv(path: Path, shape: list | None, value_info: list | None = None, weight: tuple[int, ...] = (8, 3, 3, 3),
             **attrs) -> Path:
    """x -> conv (``weight``, default 8 filters 3x3 of 3 channels; ``attrs``, default stride 2 pad 1) -> relu, with the
    input's shape as declared."""
    attrs = attrs or {"strides": [2, 2], "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", **attrs), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, "H2", "W2"])],
                              [_w("w", weight)], value_info=value_info or [])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_symbolic_height_and_width_are_refused_not_costed_as_1x1(tmp_path: Path) -> None:
    """Was: a model with input [N, 3, H, W] was costed as a 1x1 image, silently."""
    path = one_conv(tmp_path / "sym.onnx", ["N", 3, "H", "W"])
    with pytest.raises(InputError) as caught:
        load_onnx(path, warn=False)
    line = str(caught.value)
    assert line.startswith(f"{path}: input 'x': ") and "dimension 2 (height) is symbolic ('H')" in line
    assert "--input-shape" in line and "\n" not in line
    r = CliRunner().invoke(main, ["--onnx", str(path)])
    assert r.exit_code != 0 and "dimension 2 (height)" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["1x3x64x48", "1,3,64,48", " 1 , 3 , 64 , 48 "])
def test_input_shape_fixes_the_symbolic_dimensions(tmp_path: Path, text: str) -> None:
    path = one_conv(tmp_path / "sym.onnx", ["N", 3, "H", "W"])
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["--onnx", str(path), "--input-shape", text, "--json", str(out)])
    assert r.exit_code == 0, r.output
    (layer,) = __import__("json").loads(out.read_text())["results"][0]["layers"]
    assert layer["macs"] == 8 * 3 * 9 * 32 * 24  # a 64x48 input, stride 2, pad 1: a 32x24 output


def test_load_onnx_takes_the_shape_and_a_symbolic_batch_stays_1(tmp_path: Path) -> None:
    work, _ = load_onnx(one_conv(tmp_path / "n.onnx", ["N", 3, 32, 32]), warn=False)
    assert (work.layers[0].input_hw, work.layers[0].output_hw) == ((32, 32), (16, 16))
    work, _ = load_onnx(one_conv(tmp_path / "s.onnx", ["N", 3, "H", "W"]), warn=False, input_shape=(1, 3, 20, 20))
    assert (work.layers[0].input_hw, work.layers[0].output_hw) == ((20, 20), (10, 10))
    work, _ = load_onnx(one_conv(tmp_path / "u.onnx", None), warn=False, input_shape=(1, 3, 8, 8))
    assert work.layers[0].output_hw == (4, 4)


def test_stale_symbolic_shapes_of_an_exporter_are_recomputed(tmp_path: Path) -> None:
    stale = [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 8, "A", "B"])]
    work, _ = load_onnx(one_conv(tmp_path / "v.onnx", ["N", 3, "H", "W"], stale), warn=False,
                        input_shape=(1, 3, 64, 64))
    assert work.layers[0].output_hw == (32, 32)


@pytest.mark.parametrize(("shape", "given", "message"), [
    ([1, 3, None, 32], None, r"input 'x': shape: dimension 2 \(height\) is unknown"),
    (["N", "C", 32, 32], None, r"dimension 1 \(channels\) is symbolic \('C'\)"),
    (None, None, "input 'x': no shape declared"),
    ([1, 3, 32], None, "must have 4 dimensions"),
    ([1, 3, 32, 32], (1, 3, 64, 64), r"dimension 2 \(height\) 64 disagrees with the model's static 32"),
    ([1, 3, "H", "W"], (2, 3, 64, 64), r"dimension 0 \(batch\) 2 disagrees with the model's static 1"),
    ([1, 3, "H", "W"], (1, 4, 64, 64), r"dimension 1 \(channels\) 4 disagrees with the model's static 3"),
    ([1, 3, "H", "W"], (1, 3, 64), "must have 4 dimensions"),
    (["N", 3, "H", "W", "D"], (1, 3, 64, 64), "the model declares 5 dimensions"),
    ([1, 3, "H", "W"], (1, 3, 0, 64), r"shape\[2\]: must be at least 1"),
    ([1, 3, "H", "W"], (1, 3, 10 ** 7, 64), r"shape\[2\]: must be at most"),
])
def test_input_shapes_name_the_file_the_input_and_the_dimension(tmp_path: Path, shape, given, message: str) -> None:
    path = one_conv(tmp_path / "m.onnx", shape)
    with pytest.raises(InputError, match=message) as caught:
        load_onnx(path, warn=False, input_shape=given)
    line = str(caught.value)
    if given is None:
        assert line.startswith(f"{path}: input 'x'") and "\n" not in line
    else:  # a shape the user gave is blamed on the option, naming the model it was for
        shown = "x".join(str(d) for d in given)
        assert line.startswith(f"--input-shape {shown} (for {path}: input 'x')") and "\n" not in line


def test_a_size_unknown_after_inference_is_refused_not_taken_as_1(tmp_path: Path) -> None:
    """Resize by computed scales: inference leaves the conv's input [?, ?, ?, ?]."""
    nodes = [helper.make_node("Relu", ["s0"], ["s"]), helper.make_node("Resize", ["x", "", "s"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["y"], name="conv1")]
    scales = numpy_helper.from_array(np.full(4, 2.0, dtype=np.float32), "s0")
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [_w("w", (8, 3, 3, 3)), scales])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "r.onnx"))
    with pytest.raises(InputError, match=r"node 1 \(Resize\): tensor 'r' shape \['\?', '\?', '\?', '\?'\] is not static"):
        load_onnx(tmp_path / "r.onnx", warn=False)


@pytest.mark.parametrize(("attrs", "message"), [
    ({"strides": [2]}, r"strides: must be 2 integers \(height, width\), got \[2\]"),
    ({"strides": [0, 1]}, r"strides\[0\]: must be at least 1"),
    ({"pads": [1, 1, 1]}, "pads: must be 4 integers"),
    ({"pads": [-1, 0, 0, 0]}, r"pads\[0\]: must be at least 0"),
    ({"dilations": [1, 1, 1]}, "dilations: must be 2 integers"),
    ({"dilations": [2 ** 21, 1]}, r"dilations\[0\]: must be at most"),
    ({"kernel_shape": [5, 5]}, r"kernel_shape: \[5, 5\] disagrees with the weight's kernel \[3, 3\]"),
    ({"group": 0}, "group: must be at least 1"),
    ({"group": 3}, r"group: the weight has 3 input channels per group; 3 group\(s\) make 9, not the input's 3 "),
    ({"auto_pad": "MIDDLE"}, "auto_pad: "),
    ({"auto_pad": "SAME_UPPER", "pads": [1, 1, 1, 1]}, "pads: given with auto_pad SAME_UPPER"),
    ({"strides": [1.5, 1.5]}, "strides"),
    ({"padding": [1, 1]}, "padding: unknown key"),
])
def test_conv_attributes_are_checked_naming_the_node(tmp_path: Path, attrs: dict, message: str) -> None:
    """Was: strides=[2] ended in a traceback (IndexError)."""
    path = one_conv(tmp_path / "a.onnx", [1, 3, 32, 32], **attrs)
    with pytest.raises(InputError, match=message) as caught:
        load_onnx(path, warn=False)
    assert str(caught.value).startswith(f"{path}: node conv1 (Conv): ") and "\n" not in str(caught.value)
    r = CliRunner().invoke(main, ["--onnx", str(path)])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


@pytest.mark.parametrize(("weight", "attrs", "message"), [
    ((8, 4, 3, 3), {}, r"group: the weight has 4 input channels per group; 1 group\(s\) make 4, not the input's 3"),
    ((8, 1, 3, 3), {}, r"group: the weight has 1 input channels per group; 1 group\(s\) make 1, not the input's 3"),
    ((8, 1, 3, 3), {"group": 3}, "group: 3 does not divide the weight's 8 filters"),
])
def test_the_weight_is_held_to_the_input_channels_with_group_at_its_default(
        tmp_path: Path, weight: tuple[int, ...], attrs: dict, message: str) -> None:
    """Was: a weight of 4 input channels on a 3-channel input was costed as 3 channels, exit 0. The rule was a
    field validator of ``group``, which pydantic runs only on a value the node gives, never on the default 1."""
    path = one_conv(tmp_path / "w.onnx", [1, 3, 32, 32], weight=weight, **attrs)
    with pytest.raises(InputError, match=message) as caught:
        load_onnx(path, warn=False)
    assert str(caught.value).startswith(f"{path}: node conv1 (Conv): ")
    r = CliRunner().invoke(main, ["--onnx", str(path)])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [f"Error: {caught.value}"]


def test_valid_attributes_keep_their_meaning(tmp_path: Path) -> None:
    work, _ = load_onnx(one_conv(tmp_path / "s.onnx", [1, 3, 32, 32], auto_pad="SAME_UPPER", strides=[2, 2],
                                 kernel_shape=[3, 3]), warn=False)
    assert work.layers[0].output_hw == (16, 16) and work.layers[0].kernel_hw == (3, 3)


@pytest.mark.parametrize(("args", "needle"), [
    (["--input-shape", "1x3xHx224"], "'H' is not a dimension"),
    (["--input-shape", "1x3x-2x224"], "is not a dimension"),
    (["--input-shape", "1x3x224x224", "--network", "resnet18"], "--input-shape is the shape of an --onnx model"),
])
def test_input_shape_option_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    onnx_args = [] if "--network" in args else ["--onnx", str(one_conv(tmp_path / "m.onnx", ["N", 3, "H", "W"]))]
    r = CliRunner().invoke(main, [*onnx_args, *args])
    assert r.exit_code != 0 and needle in r.output and "Traceback" not in r.output
    if "--network" not in args:  # a bad value is one line naming the option
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("Error: --input-shape: ")


# --------------------------------------------------------------------------------------------
# The graph a model gives is held to the network table's schema (found by a hostile review)


def _graph_model(path: Path, nodes: list, outputs: tuple[str, ...] = ("y",), inits: tuple = ()) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              [_w("w", (8, 3, 3, 3)), *inits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize(("nodes", "outputs", "message"), [
    ([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
      helper.make_node("Relu", ["c"], ["y"]), helper.make_node("Sigmoid", ["c"], ["y"])], ("y",), "already written"),
    ([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])], ("y", "zzz"),
     "graph output 'zzz' is written by no node"),
    ([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
      helper.make_node("Concat", ["c", "c"], ["y"], axis=0)], ("y",), "along the batch"),
    ([helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
      helper.make_node("If", ["c"], ["y"], then_branch=helper.make_graph([], "t", [], []),
                       else_branch=helper.make_graph([], "e", [], []))], ("y",), "control flow"),
])
def test_a_graph_the_table_schema_refuses_is_refused_from_onnx_too(tmp_path: Path, nodes, outputs,
                                                                    message: str) -> None:
    path = _graph_model(tmp_path / "m.onnx", nodes, outputs)
    with pytest.raises(InputError, match=message) as caught:
        load_onnx(path, warn=False)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_concat_along_the_width_moves_data_and_along_channels_moves_none(tmp_path: Path) -> None:
    for axis, kind in ((1, "concat"), (3, "copy"), (-1, "copy")):
        path = _graph_model(tmp_path / f"c{axis}.onnx", [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Concat", ["c", "c"], ["y"], axis=axis)])
        work, _ = load_onnx(path, warn=False)
        assert work.graph.ops[-1].kind == kind


def test_a_long_node_name_stays_a_short_line(tmp_path: Path) -> None:
    path = _graph_model(tmp_path / "n.onnx", [helper.make_node("Conv", ["x", "w"], ["y"], name="n" * 100_000,
                                                               strides=[0, 1])])
    with pytest.raises(InputError, match="strides") as caught:
        load_onnx(path, warn=False)
    assert len(str(caught.value)) < 400
