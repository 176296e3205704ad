"""simulate's fast path (one search per network, layers costed from its results, cheap copies) gives the
same numbers, bit for bit, as costing each layer on its own with layer_cost (issue 12's speed work)."""

from __future__ import annotations

import itertools
import json

import pytest

from hwsim import Workload, load_network, load_profile, simulate
from hwsim.cost.layer_cost import layer_cost
from hwsim.cost.mapping import clear_caches
from hwsim.cost.mapping.loop_orders import limit_factors, primes
from hwsim.cost.memory_plan import plan_memory
from hwsim.cost.operator_cost import executions, operator_cost
from hwsim.cost.residency import apply_residency
from hwsim.cost.simulate import layer_profiles
from hwsim.workload.graph import chain_graph

PROFILES = ["edge_npu", "eyeriss", "edge_tpu", "ethos_u55", "zigzag_eyeriss_like", "zigzag_tpu_like"]


def _doc(costs) -> str:
    return json.dumps([[c.name, c.macs, c.compute_cycles, c.cycles, c.utilization, c.bound, c.stall_cycles,
                        c.onload_cycles, c.offload_cycles, c.mask_ops, c.vector_cycles, c.vector_ops, c.inputs_at,
                        c.outputs_at, list(c.read_bytes.items()),
                        list(c.write_bytes.items()), list(c.energy_pj.items()), c.mapping] for c in costs],
                      default=repr)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("network,batch,steady", [("resnet50", 1, False), ("mobilenet_v2", 2, True),
                                                  ("alexnet", 4, False)])
def test_simulate_equals_layer_by_layer(network: str, profile: str, batch: int, steady: bool) -> None:
    net = load_network(network)  # resnet50 and mobilenet_v2 with their graphs; alexnet a chain
    work = Workload(net.source, net.layers, method="ksm", graph=net.graph)
    prof = load_profile(profile)
    clear_caches()
    fast = simulate(work, prof, "on_the_fly", batch=batch, steady_state=steady)
    clear_caches()  # each layer searched alone, from a cold cache
    live = fast.task.on_the_fly
    graph = net.graph or chain_graph(net.layers)
    how = executions(graph)
    by_name = {la.name: la for la in work.layers}
    plan = plan_memory(graph, how, by_name, prof, batch)
    by_layer = layer_profiles(graph, prof)  # ethos_u55: only the layer reading the image in IFM blocks
    slow = tuple(layer_cost(by_name[op.layer], by_layer[op.layer], live.get(op.layer), batch) if h == "mac"
                 else operator_cost(op, graph, prof, plan.level_of, batch)
                 for op, h in zip(graph.ops, how) if h in ("mac", "vector"))
    slow, residency = apply_residency(slow, graph, how, plan, by_name, prof, batch, steady,
                                      {name: load.bits for name, load in live.items()})
    assert _doc(fast.layers) == _doc(slow)
    assert fast.residency == residency


def _limit_factors_reference(factors: dict[str, list[int]], limit: int) -> dict[str, list[int]]:
    """ZigZag 3.9.1's LomaEngine.limit_lpfs written plainly (recounting the loops at every merge): the two
    smallest factors of the dimension with the most factors (the first such in the given order)."""
    out = {d: sorted(v) for d, v in factors.items()}
    while sum(len(v) for v in out.values()) > limit:
        most = max(len(v) for v in out.values())
        if most < 2:
            break
        d = next(k for k in out if len(out[k]) == most)
        v = out[d]
        out[d] = sorted([v[0] * v[1], *v[2:]])
    return out


def test_limit_factors_equals_reference() -> None:
    sizes = [1, 2, 3, 4, 6, 7, 8, 12, 14, 16, 28, 32, 56, 64, 96, 112, 128, 224, 512, 1000]
    for fold in itertools.product(sizes[::3], sizes[1::3], sizes[2::4]):
        factors = {d: primes(f) for d, f in zip(("K", "C", "OY"), fold) if f > 1}
        for limit in (2, 4, 6):
            assert limit_factors(factors, limit) == _limit_factors_reference(factors, limit)
