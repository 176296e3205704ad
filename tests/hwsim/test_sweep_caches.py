"""What a sweep shares between its points changes no number (issue 24's speed work).

The mapping search is cached by what it reads of a profile (``best_mapping.search_key``), so designs that
differ only elsewhere (a mask-scale precision) share one search; a chain graph is built once per layer tuple,
so its memory plans are kept across designs. Each point costed after its neighbours (warm caches) must equal
the same point costed alone from cold caches, every number of its ``ksm-sim/1`` record.
"""

from __future__ import annotations

import json

import pytest

from hwsim import Workload, load_network, simulate
from hwsim.cost.mapping import best_mapping, clear_caches
from hwsim.hardware.profile import load_design
from hwsim.workload.graph import chain_graph

VARIANTS = [  # edge_npu as a sweep varies it: precisions the search never reads, and a level size it does
    ["precision_bits.mask_scale=1"], ["precision_bits.mask_scale=16"], ["levels.sram_1MB.size_bytes=65536"],
    ["levels.sram_1MB.size_bytes=65536", "precision_bits.mask_scale=2"], ["array.rows=8", "array.cols=12"],
    ["array.rows=8", "array.cols=12", "precision_bits.mask_scale=4"]]


def _record(result) -> str:
    return json.dumps(result.to_dict(True), sort_keys=True, default=repr)


def test_search_key_reads_what_the_search_reads() -> None:
    p = [load_design("edge_npu", s).profile for s in VARIANTS]
    assert best_mapping.search_key(p[0]) == best_mapping.search_key(p[1])  # mask-scale bits only
    assert best_mapping.search_key(p[2]) == best_mapping.search_key(p[3])
    assert best_mapping.search_key(p[4]) == best_mapping.search_key(p[5])
    assert len({best_mapping.search_key(x) for x in (p[0], p[2], p[4])}) == 3  # a level size, the array


@pytest.mark.parametrize("network", ["resnet18", "alexnet"])  # with its graph; a chain
def test_warm_sweep_equals_every_point_cold(network: str, monkeypatch: pytest.MonkeyPatch) -> None:
    net = load_network(network)
    work = Workload(net.source, net.layers, method="ksm", graph=net.graph)
    profiles = [load_design("edge_npu", s).profile for s in VARIANTS]
    searched = []
    block = best_mapping._search_block
    monkeypatch.setattr(best_mapping, "_search_block", lambda new, *a: (searched.append(len(new)), block(new, *a)))
    clear_caches()
    warm = [_record(simulate(work, p, mode)) for p in profiles for mode in ("folded", "on_the_fly")]
    assert len(searched) == 3  # one search per distinct search key, not per design
    cold = []
    for p in profiles:
        for mode in ("folded", "on_the_fly"):
            clear_caches()
            cold.append(_record(simulate(work, p, mode)))
    assert warm == cold


def test_chain_graph_built_once_per_layer_tuple() -> None:
    layers = load_network("alexnet").layers
    assert isinstance(layers, tuple)
    assert chain_graph(layers) is chain_graph(layers)
    assert chain_graph(list(layers)) == chain_graph(layers)  # a list (mutable) is not cached, built equal


def test_chunks_keep_a_search_group_together(tmp_path) -> None:
    """ksm-explore sends the points of designs sharing a search to one worker: no group split across chunks,
    whatever the axis order (the precision outermost here), and every point once."""
    from hwsim.explore import engine
    from hwsim.explore.spec import load_spec

    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("name: t\nprofiles: [edge_npu]\naxes:\n  precision_bits.mask_scale: [1, 4, 16]\n"
                         "  array.rows: [4, 8, 16, 32, 64]\n  array.cols: [8, 16]\n"
                         "workloads: [{network: alexnet}]\nmethods: [ksm]\nmodes: [folded, on_the_fly]\n",
                         encoding="utf-8")
    spec = load_spec(spec_file)
    todo = engine.plan(spec)
    group = engine._search_groups(spec)
    assert len(set(group)) == 10 and len(todo) == 60
    chunks = list(engine._chunks(spec, engine._grouped(todo, group), 8, group))
    design_of = {p.point_id: p.design for p in todo}
    where = {}
    for i, chunk in enumerate(chunks):
        for pid, *_ in chunk:
            where.setdefault(group[design_of[pid]], set()).add(i)
    assert all(len(v) == 1 for v in where.values())
    assert sorted(pid for c in chunks for pid, *_ in c) == sorted(p.point_id for p in todo)
