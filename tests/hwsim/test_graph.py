"""Workloads as graphs: the graph record's rules, how each operator runs, a graph at another input size, names."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import pytest

from hwsim import InputError, Layer, Workload, load_network, load_profile, simulate
from hwsim.cost.operator_cost import executions, operations
from hwsim.workload.graph import Graph, Op, at_layers, chain_graph
from hwsim.workload.layers import backbone_graph, load_network as load_table
from hwsim.workload.onnx_reader import module_name


def bundled(name: str) -> dict:
    return json.loads((resources.files("hwsim") / "networks" / f"{name}.json").read_text(encoding="utf-8"))


def write(tmp_path: Path, table: dict) -> Path:
    path = tmp_path / "net.json"
    path.write_text(json.dumps(table), encoding="utf-8")
    return path


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda g: g["ops"].reverse(), "reads .* before any operator writes it"),
    (lambda g: g["ops"][1]["outputs"].__setitem__(0, g["ops"][0]["outputs"][0]), "already written"),
    (lambda g: g["ops"][1].__setitem__("name", g["ops"][0]["name"]), "listed twice"),
    (lambda g: g["tensors"].pop(g["ops"][0]["outputs"][0]), "no shape for"),
    (lambda g: g["tensors"].__setitem__("ghost", [1]), "neither a graph input nor written"),
    (lambda g: g["outputs"].__setitem__(0, "nowhere"), "outputs: 'nowhere' is written by no operator"),
    (lambda g: g["ops"][0].__setitem__("kind", "warp"), "kind"),
    (lambda g: g["ops"][0].__setitem__("inputs", ["image", g["ops"][0]["inputs"][0]]), "reads one tensor"),
    (lambda g: g["tensors"].__setitem__(g["ops"][0]["outputs"][0], [63, 112, 112]), r"its input is \[63, 112"),
    (lambda g: g["tensors"].__setitem__(g["ops"][0]["outputs"][0], [64, 111, 112]), r"its input is \[64, 111"),
    (lambda g: g["tensors"].__setitem__(g["ops"][3]["outputs"][0], [64, 28, 28]), r"its window gives \[64, 56, 56\]"),
    (lambda g: g["tensors"].__setitem__("relu/Relu:out", [1048576, 1048576]), r"writes \[1048576, 1048576\], its input is"),
    (lambda g: g["tensors"].__setitem__("image", [3, 0, 224]), "must be at least 1"),
    (lambda g: g["ops"].append({**g["ops"][0], "name": "extra", "layer": g["ops"][0]["name"], "outputs": ["x2"]}) or
     g["tensors"].__setitem__("x2", [64, 112, 112]), "second operator"),
])
def test_a_graph_that_cannot_run_in_order_is_refused_in_one_line(tmp_path: Path, mutate, message: str) -> None:
    table = bundled("resnet18")
    mutate(table["graph"])
    with pytest.raises(InputError, match=message) as caught:
        load_table(write(tmp_path, table))
    assert str(caught.value).startswith(str(tmp_path / "net.json")) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("out_channels", 63, "tensors of 3 -> 64 channels, the layer has 3 -> 63"),
    ("output_hw", [111, 112], None),  # the layer record's own geometry rule refuses it first
])
def test_a_layer_and_its_operator_agree(tmp_path: Path, field: str, value, message: str | None) -> None:
    table = bundled("resnet18")
    table["layers"][0][field] = value
    with pytest.raises(InputError, match=message or field):
        load_table(write(tmp_path, table))


def test_a_layer_with_no_operator_is_refused(tmp_path: Path) -> None:
    table = bundled("resnet18")
    table["graph"]["ops"] = [op for op in table["graph"]["ops"] if op["name"] != "fc"]
    table["graph"]["outputs"] = ["flatten/Flatten:out"] if "flatten/Flatten:out" in table["graph"]["tensors"] \
        else [table["graph"]["ops"][-1]["outputs"][0]]
    table["graph"]["tensors"].pop("fc:out")
    with pytest.raises(InputError, match="layer 'fc' is no operator of the graph"):
        load_table(write(tmp_path, table))


def test_a_table_without_a_graph_is_a_chain(tmp_path: Path) -> None:
    table = bundled("resnet18")
    del table["graph"]
    work = load_table(write(tmp_path, table))
    assert work.graph is None
    assert simulate(work, load_profile("edge_npu")).residency["graph"] == "chain"


def test_bundled_graphs_run_their_non_mac_operators() -> None:
    """ResNet-18: 8 residual adds, a max pool and a global pool on the vector unit; BatchNorm and ReLU fused."""
    work = load_network("resnet18")
    how = dict(zip((op.name for op in work.graph.ops), executions(work.graph)))
    kinds = {}
    for op in work.graph.ops:
        kinds.setdefault((op.kind, how[op.name]), 0)
        kinds[(op.kind, how[op.name])] += 1
    assert kinds[("elementwise", "vector")] == 8 and kinds[("pool", "vector")] == 1
    assert kinds[("batchnorm", "fused")] == 20 and kinds[("activation", "fused")] == 17
    assert kinds[("reshape", "alias")] == 1 and kinds[("global_pool", "vector")] == 1


def test_an_activation_with_two_readers_is_not_fused() -> None:
    a = Layer("a", "conv", 8, 8, (1, 1), input_hw=(4, 4), output_hw=(4, 4))
    b = Layer("b", "conv", 8, 8, (1, 1), input_hw=(4, 4), output_hw=(4, 4))
    ops = (Op("a", "conv", ("x",), ("y",), layer="a"), Op("relu", "activation", ("y",), ("r",)),
           Op("b", "conv", ("y",), ("z",), layer="b"), Op("add", "elementwise", ("r", "z"), ("o",)))
    shape = (8, 4, 4)
    graph = Graph(ops=ops, tensors=dict.fromkeys(("x", "y", "r", "z", "o"), shape), inputs=("x",), outputs=("o",))
    assert executions(graph) == ("mac", "vector", "mac", "vector")
    assert operations(ops[1], graph) == 128 and operations(ops[3], graph) == 128
    result = simulate(Workload("g", (a, b), graph=graph), load_profile("edge_npu"))
    assert [c.kind for c in result.layers] == ["conv", "activation", "conv", "elementwise"]
    assert result.layers[1].vector_ops == 128


def test_pool_and_softmax_operations() -> None:
    pool = Op("p", "pool", ("x",), ("y",), window=(3, 3), stride=(2, 2))
    soft = Op("s", "softmax", ("y",), ("z",))
    graph = Graph(ops=(pool, soft), tensors={"x": (4, 9, 9), "y": (4, 4, 4), "z": (4, 4, 4)}, inputs=("x",),
                  outputs=("z",))
    assert operations(pool, graph) == 4 * 4 * 4 * 9 and operations(soft, graph) == 3 * 64


def test_a_run_at_another_size_gets_its_backbone_graph() -> None:
    """MobileNetV2 traced at 224 px, costed at 64 px: every tensor derived again from the run's layers."""
    torchvision = pytest.importorskip("torchvision")
    from hwsim.workload.layers import layers_from_records
    from ksm.network.geometry import layer_records

    layers = layers_from_records(layer_records(torchvision.models.mobilenet_v2(num_classes=5), (64, 64)), "run")
    graph = backbone_graph("mobilenet_v2", layers)
    assert graph is not None
    assert graph.tensors[graph.inputs[0]] == (3, 64, 64)
    last_conv = [op for op in graph.ops if op.kind == "conv"][-1]
    assert graph.tensors[last_conv.outputs[0]] == (1280, 2, 2)
    assert backbone_graph("densenet121", layers) is None  # no bundled network is that backbone


def test_at_layers_refuses_a_graph_that_does_not_hold() -> None:
    graph = load_network("resnet18").graph
    layers = load_network("resnet18").layers
    assert at_layers(graph, layers, (3, 224, 224)).tensors == graph.tensors  # its own size: the same tensors
    assert at_layers(graph, layers, (3, 112, 112)) is None  # 224-px layers on a 112-px image


def test_chain_graph_links_only_layers_that_feed() -> None:
    a = Layer("a", "conv", 3, 8, (3, 3), (1, 1), (1, 1), 1, (8, 8), (8, 8))
    b = Layer("b", "conv", 8, 8, (3, 3), (1, 1), (1, 1), 1, (8, 8), (8, 8))
    c = Layer("c", "conv", 8, 8, (3, 3), (2, 2), (1, 1), 1, (4, 4), (2, 2))  # after a pooling the list does not show
    graph = chain_graph((a, b, c))
    assert [op.inputs for op in graph.ops] == [("a:in",), ("a:out",), ("c:in",)]
    assert graph.inputs == ("a:in",) and set(graph.outputs) == {"b:out", "c:out"}


@pytest.mark.parametrize(("node", "module"), [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/features/features.1/conv/conv.0/conv.0.0/Conv", "features.1.conv.0.0"),
    ("/layer1/layer1.0/Add", "layer1.0"),
    ("/Add", ""),
    ("conv7", "conv7"),
])
def test_module_name(node: str, module: str) -> None:
    assert module_name(node) == module


def test_graph_record_round_trips(tmp_path: Path) -> None:
    table = bundled("mobilenet_v2")
    again = copy.deepcopy(table)
    again["graph"] = load_table(write(tmp_path, table)).graph.record()
    assert again == table


# A chain with a gap: dw96 does not follow stem (a pooling the list does not show made its input, 112 -> 56).
GAP = Workload("gap", (Layer("stem", "conv", 3, 96, (3, 3), (2, 2), (1, 1), 1, (224, 224), (112, 112)),
                       Layer("dw96", "conv", 96, 96, (3, 3), (1, 1), (1, 1), 96, (56, 56), (56, 56)),
                       Layer("pw", "conv", 96, 24, (1, 1), (1, 1), (0, 0), 1, (56, 56), (56, 56))))


def test_one_rule_says_what_the_host_writes() -> None:
    """The tensors the host writes are the graph's inputs (``host_written``), and every rule that treats the
    network's input apart asks it. A chain's gap, a tensor no layer of the list writes that is not the
    graph's input, is where the two old rules disagreed: the IFM-block layout (``layer_profiles``) took it as
    the host's NHWC and read it in Vela's 16-deep depthwise blocks (2x its bytes of port time), the DRAM code
    (``coded_maps``) as a map the network made. It is the latter (a pooling the list does not show made it):
    Vela stores it NHCWB16, Eyeriss codes it (JSSC 2017, §IV-B)."""
    from hwsim.cost.dram_compression import coded_maps
    from hwsim.cost.mapping.bursts import made_feature_maps
    from hwsim.cost.simulate import layer_profiles
    from hwsim.workload.graph import host_written

    graph = chain_graph(GAP.layers)
    assert "dw96:in" not in graph.producer and "dw96:in" not in graph.inputs  # the gap
    assert host_written(graph) == {"stem:in"}
    ethos = load_profile("ethos_u55")
    made = made_feature_maps(ethos)
    assert made != ethos
    assert layer_profiles(graph, ethos) == {"stem": ethos, "dw96": made, "pw": made}
    zeros = dict.fromkeys(("stem", "dw96", "pw"), 0.5)
    coded = coded_maps(graph, {0: "stem", 1: "dw96", 2: "pw"}, zeros, {}, lambda tensors: False)
    assert [coded[n].inputs for n in ("stem", "dw96", "pw")] == [None, 0.5, 0.5]
    # the cost: the gap's depthwise layer is costed as one reading a map the network made
    assert simulate(GAP, ethos).layers[1].cycles == simulate(GAP, made).layers[1].cycles
    # a graph read from a model or a table has no such tensor (GraphRecord's rule): there the rules agree
    net = load_network("mobilenet_v2").graph
    unwritten = {t for op in net.ops for t in op.inputs if t not in net.producer}
    assert unwritten == set(host_written(net)) == set(net.inputs)
