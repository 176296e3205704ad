"""On-chip residency across layers (always) and across inferences (--steady-state); tasks that fit."""

from __future__ import annotations

import pytest

from hwsim import Layer, Workload, load_network, load_profile, simulate
from hwsim.cost.layer_cost import layer_cost
from hwsim.cost.memory_plan import plan_memory
from hwsim.cost.operator_cost import executions
from hwsim.cost.residency import apply_residency, tasks_on_chip_frame, tasks_that_fit, weight_level
from hwsim.workload.graph import chain_graph

A = Layer("a", "conv", 16, 32, (3, 3), (1, 1), (1, 1), 1, (28, 28), (28, 28))
B = Layer("b", "conv", 32, 32, (3, 3), (1, 1), (1, 1), 1, (28, 28), (28, 28))


def dram(cost, operand: str) -> tuple[float, float]:
    return cost.read_bytes.get(("dram", operand), 0.0), cost.write_bytes.get(("dram", operand), 0.0)


def test_output_that_fits_stays_on_chip_for_the_next_layer() -> None:
    p = load_profile("edge_npu")
    r = simulate(Workload("ab", (A, B)), p)
    assert r.residency["outputs_kept_on_chip"] == ["a"]
    assert dram(r.layers[0], "outputs") == (0.0, 0.0)  # a's output never leaves the chip
    assert dram(r.layers[1], "inputs")[0] == 0.0  # b reads it on chip
    assert dram(r.layers[1], "outputs")[1] > 0  # the last output still goes to DRAM
    alone = [simulate(Workload("x", (la,)), p) for la in (A, B)]
    assert r.energy_j < sum(x.energy_j for x in alone)
    # bytes are conserved: what DRAM no longer serves, the on-chip memory does
    moved = r.layers[0].write_bytes[("sram_1MB", "outputs")] - alone[0].layers[0].write_bytes[("sram_1MB", "outputs")]
    assert moved == pytest.approx(alone[0].layers[0].write_bytes[("dram", "outputs")])


def test_output_too_large_goes_to_dram() -> None:
    big_a = Layer("a", "conv", 64, 256, (3, 3), (1, 1), (1, 1), 1, (112, 112), (112, 112))
    big_b = Layer("b", "conv", 256, 64, (1, 1), (1, 1), (0, 0), 1, (112, 112), (112, 112))
    r = simulate(Workload("ab", (big_a, big_b)), load_profile("edge_npu"))  # 3 MB of activations, 1 MB SRAM
    assert r.residency["outputs_kept_on_chip"] == []
    assert dram(r.layers[0], "outputs")[1] > 0


def test_steady_state_keeps_the_edge_tpu_model_on_chip() -> None:
    """MobileNetV2's 3.5 MB of int8 weights fit the Edge TPU's 8 MB SRAM: a stream of inferences reads
    no weights from the host (coral.ai: models that fit are cached on chip)."""
    net, p = load_network("mobilenet_v2"), load_profile("edge_tpu")
    cold, warm = simulate(net, p), simulate(net, p, steady_state=True)
    assert len(warm.residency["weights_cached_layers"]) == len(net.layers)
    assert warm.traffic("host")[0]["weights"] == 0.0
    assert cold.traffic("host")[0]["weights"] > 3e6
    assert warm.latency_s < cold.latency_s / 2
    assert warm.energy_j < cold.energy_j


def test_steady_state_changes_nothing_when_weights_do_not_fit() -> None:
    net, p = load_network("resnet50"), load_profile("edge_npu")  # 25 MB of weights, 1 MB SRAM
    cold, warm = simulate(net, p), simulate(net, p, steady_state=True)
    assert warm.traffic("dram")[0]["weights"] <= cold.traffic("dram")[0]["weights"]
    assert warm.residency["weights_cached_bytes"] <= weight_level(p).size_bytes


def test_tasks_that_fit_counts_room_beside_backbone_and_activations() -> None:
    p = load_profile("edge_tpu")  # 8 MiB SRAM
    layers = (A, B)
    backbone = (16 * 32 * 9 + 32 * 32 * 9)  # int8 weights
    act = 30 * 30 * 32 + 28 * 28 * 32  # the larger in (padded footprint) + out working set: layer b
    room = 8 * 2**20 - backbone - act
    assert tasks_that_fit(1000.0, layers, p) == room // 1000
    assert tasks_that_fit(0.0, layers, p) == 10**9
    assert tasks_that_fit(1000.0, load_network("resnet50").layers, load_profile("edge_npu")) == 0


def test_tasks_on_chip_frame_one_row_per_method_and_profile() -> None:
    net = load_network("mobilenet_v2")  # 3.5 MB of int8 weights beside the Edge TPU's 8 MB
    results = []
    for method in ("ksm", "piggyback", "finetune"):
        work = Workload(net.source, net.layers, method=method, batchnorm="task")
        results.append(simulate(work, load_profile("edge_tpu"), "on_the_fly"))
    frame = tasks_on_chip_frame(results)
    assert list(frame["method"]) == ["ksm", "piggyback", "finetune"]
    fits = dict(zip(frame["method"], frame["tasks that fit"]))
    # MobileNetV2 is mostly 1x1 convs: KSM's kernel-wise entries (1 bit + 8-bit soft scale where the bit is 0)
    # cost more than Piggyback's 1 bit per weight; a fine-tuned copy (3.5 MB) leaves no room for a second
    assert fits == {"ksm": 1, "piggyback": 2, "finetune": 0}
    order = frame.sort_values("task-specific (B/task)")
    assert list(order["tasks that fit"]) == sorted(order["tasks that fit"], reverse=True)


def test_apply_residency_moves_nothing_when_nothing_fits() -> None:
    p = load_profile("ethos_u55")
    graph = chain_graph((A, B))
    how = executions(graph)
    plan = plan_memory(graph, how, {"a": A, "b": B}, p)  # 39 KB of activations > the 32 KB internal buffer
    assert plan.on_chip == () and {lv.name for lv in plan.level_of.values()} == {p.dram.name}
    costs = tuple(layer_cost(la, p) for la in (A, B))
    again, info = apply_residency(costs, graph, how, plan, {"a": A, "b": B}, p)
    assert [(c.read_bytes, c.write_bytes, c.energy_pj, c.cycles) for c in again] == \
        [(c.read_bytes, c.write_bytes, c.energy_pj, c.cycles) for c in costs]
    assert [(c.inputs_at, c.outputs_at) for c in again] == [("system_sram", "system_sram")] * 2
    assert info["outputs_kept_on_chip"] == [] and info["weights_cached_layers"] == []
    assert info["weights_cached_bytes"] == 0.0 and info["graph"] == "chain" and info["buffers_on_chip"] == 0
