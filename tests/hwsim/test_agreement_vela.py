"""Non-MAC operators against a vendor estimator: Arm's Vela on the Ethos-U55-256 (issue 23, item 3).

Vela 5.2.0 (``ethos-u-vela``) compiled three int8 TFLite models (MobileNetV2, a ResNet-50 bottleneck block with a
max and an average pool, an inception block whose four branches are concatenated) and reported each operator's
cycles; ``scripts/vela_reference.py`` made the fixtures (``fixtures/vela/README.md`` gives the command and
versions), with ONNX exports of the same networks, shape for shape, that ``ksm-sim`` reads.

What this checks is the operator accounting: which operators are fused or are views (Vela fuses the ReLU into the
ADD and writes a concatenation's inputs straight into its slices), how many operations each costs, and where it
is bound. The ``ethos_u55`` profile's vector rates come from Vela's own architecture constants (0.75 output cycles
per ADD element; pooling on the MAC engine at max(4, taps) x 4 cycles per 2x2x8 micro-block of the output at int8,
a global average pool as Vela's depthwise convolution of unit weights), not from these outputs.

Issue 24 (below): nine single MAC layers and MobileNetV2, compiled by Vela with the Sram_Only memory mode at the
profile's 1 GHz (``fixtures/vela/sram_only_1ghz``), against the re-derived ``ethos_u55`` profile: each layer's
and the network's total cycles, and MobileNetV2's per-layer median, within 1.5x. A layer that misses is a strict
xfail naming the cause; the profile's numbers come from Vela's architecture model, not from these outputs.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from hwsim import load_profile, simulate
from hwsim.hardware.profile import Profile
from hwsim.workload.onnx_reader import load_onnx, operator_name

FIXTURES = Path(__file__).parent / "fixtures" / "vela"
NETWORKS = ("mobilenet_v2", "resnet_block", "inception_block")


def pairs(network: str, profile: Profile | None = None) -> list[tuple[str, str, float, float]]:
    """(ONNX operator, our operator's name, ksm-sim cycles, Vela cycles) for every non-MAC operator Vela and the
    ONNX export share; Vela's cycles are summed over the NPU operators it lowered one TFLite operator to."""
    fixture = json.loads((FIXTURES / f"{network}.json").read_text(encoding="utf-8"))
    vela: dict[int, float] = {}
    for op in fixture["operators"]:
        if op.get("fused_into") is None:
            vela[op["tflite_index"]] = vela.get(op["tflite_index"], 0.0) + op["cycles"]
    work, _ = load_onnx(FIXTURES / f"{network}.onnx", warn=False)
    ours = {c.name: c.cycles for c in simulate(work, profile or load_profile("ethos_u55")).layers}
    out = []
    for match in fixture["onnx"]["matches"]:
        if match["onnx_op"] in ("Conv", "Gemm"):
            continue
        name = operator_name(match["onnx_node"], match["onnx_op"])
        out.append((match["onnx_op"], name, ours.get(name, 0.0), vela.get(match["tflite_index"], 0.0)))
    return out


def test_adds_cost_what_vela_charges() -> None:
    """Every ADD (eleven: ten of MobileNetV2, one of the ResNet block, its ReLU fused in both) within 1.5x: at
    0.75 cycles per element both are compute-bound. MobileNetV2's first ADD (24 channels) is the one Vela charges
    more: its NPU rounds channels up to 16 (24 -> 32), which a per-element rate does not see."""
    adds = [p for n in NETWORKS for p in pairs(n) if p[0] == "Add"]
    assert len(adds) == 11
    for op, name, ours, vela in adds:
        assert 1 / 1.5 <= ours / vela <= 1.5, (name, ours, vela)
    assert sum(1 for *_, ours, vela in adds if abs(ours / vela - 1) < 0.01) == 10


def test_windowed_max_pools_cost_what_vela_charges() -> None:
    pools = [p for n in NETWORKS for p in pairs(n) if p[0] == "MaxPool"]
    assert len(pools) == 2  # 3x3 stride 2 (ResNet block), 3x3 stride 1 (inception branch)
    for op, name, ours, vela in pools:
        assert 1 / 1.5 <= ours / vela <= 1.5, (name, ours, vela)


def test_a_concatenation_moves_nothing_in_either() -> None:
    """Vela 5.2.0 has its producers write into slices of the output and drops the copy; so does the memory plan."""
    fixture = json.loads((FIXTURES / "inception_block.json").read_text(encoding="utf-8"))
    assert not [op for op in fixture["operators"] if op["tflite_type"] == "CONCATENATION" and op["cycles"]]
    work, _ = load_onnx(FIXTURES / "inception_block.onnx", warn=False)
    result = simulate(work, load_profile("ethos_u55"))
    assert result.residency["operators"]["alias"] == {"concat": 1}
    assert not [c for c in result.layers if c.kind == "concat"]


def test_global_pools_cost_what_vela_charges() -> None:
    """The 28x28 average pool and MobileNetV2's global average pool (Vela: a 7x7 depthwise convolution of unit
    weights and a MUL) within 1.5x. At a flat 8 taps per cycle they were 0.22 and 0.11 of Vela's cycles: a 1x1
    output keeps one pixel of each 2x2 micro-block busy (vector_unit.pooling, hwsim.cost.pool_engine)."""
    pools = [p for n in NETWORKS for p in pairs(n) if p[0] in ("AveragePool", "GlobalAveragePool")]
    assert len(pools) == 2
    for op, name, ours, vela in pools:
        assert 1 / 1.5 <= ours / vela <= 1.5, (name, ours, vela)


def _regor_mac_cycles(op: dict, read_latency: int) -> tuple[int, float]:
    """Vela 5.2.0's MAC cycles of a pooling or depthwise operator recomputed from its record, int8 on the
    256-MAC Ethos-U55 (Regor ``ethos_u55_performance.cpp``: ``EstimateMacCyclesPerBlock`` L252-370 per OFM block,
    2x2x8 micro-blocks, 8x8 sub-kernels; ``EstimateMacOpCycles`` L380-384 fractional blocks, L386-399 the output
    unit's block, L432 the MAC total): (the record's ``mac`` cycles, their micro-block passes alone, without the
    output unit's block and the pipeline delays)."""
    (_, h, w, c), (_, bh, bw, bc) = op["output"], op["block"]["ofm"]
    bh, bw, bc = min(h, bh), min(w, bw), min(c, bc)
    ub_h, ub_w, ub_d = -(-bh // 2), -(-bw // 2), -(-bc // 8)
    kh, kw = op["kernel"]["size_hw"]
    subs = [min(8, kh - y) * min(8, kw - x) for x in range(0, kw, 8) for y in range(0, kh, 8)]
    passes = delay = 0
    for e in subs:
        steps = 1 if op["type"] != "DepthwiseConv2D" else -(-e // 4)
        if op["type"] == "DepthwiseConv2D":
            passes += max(32, 4 * ub_h * ub_w) * steps * ub_d
        else:
            passes += max(4, e) * ub_h * ub_w * ub_d * 4
        if ub_h * ub_w == 1:
            delay += 2 * steps if ub_d == 1 else 2 * (steps - 1) * ub_d if steps > 1 else 0
    blocks = (-(-h // 2) * -(-w // 2) * -(-c // 8)) / (ub_h * ub_w * ub_d)
    ao = math.ceil({"MaxPool": 0.125}.get(op["type"], 0.25) * bh * bw * bc)
    if op["type"] == "DepthwiseConv2D":
        ao = max(ao, 10 * bc * read_latency / 256)
    return int((passes + delay) * blocks + ao), passes * blocks


def test_vela_pools_on_the_mac_engine_recomputed_by_hand() -> None:
    """Vela's MAC cycles of both max pools, the 28x28 average pool and the MEAN's depthwise convolution,
    recomputed from the records' shapes, blocks and kernels, are the fixtures' ``mac`` cycles; hwsim's pooling
    engine charges exactly their micro-block passes (whatever OFM block Vela chose), and misses only the output
    unit's one block and the depthwise layer's pipeline delays (2 cycles per kernel step after the first, per
    micro-block depth, where a block holds one pixel: 3,840 of its 70,560)."""
    from hwsim.cost.operator_cost import pool_engine_cycles

    profile = load_profile("ethos_u55")
    seen = []
    for network in NETWORKS:
        fixture = json.loads((FIXTURES / f"{network}.json").read_text(encoding="utf-8"))
        latency = fixture["memories"]["Sram"]["read_latency_cycles"]
        work, _ = load_onnx(FIXTURES / f"{network}.onnx", warn=False)
        ops = {op.name: op for op in work.graph.ops}
        for match in fixture["onnx"]["matches"]:
            if match["onnx_op"] not in ("MaxPool", "AveragePool", "GlobalAveragePool"):
                continue
            (op,) = [o for o in fixture["operators"] if o["tflite_index"] == match["tflite_index"]
                     and o["type"] in ("MaxPool", "AvgPool", "DepthwiseConv2D")]
            mac, passes = _regor_mac_cycles(op, latency)
            assert mac == op["cycles_by"]["mac"], (op["name"], mac, op["cycles_by"]["mac"])
            ours = pool_engine_cycles(ops[operator_name(match["onnx_node"], match["onnx_op"])], work.graph, profile)
            assert ours == pytest.approx(passes), (op["name"], ours, passes)
            seen.append(op["type"])
    assert sorted(seen) == ["AvgPool", "DepthwiseConv2D", "MaxPool", "MaxPool"]


def test_a_flat_pooling_rate_misses_the_global_pools() -> None:
    """Without the pooling engine (pooling at a flat 8 window taps per cycle, the profile's rate before it) both
    global pools fall below 1/1.5 of Vela's cycles while the max pools, whose outputs fill the micro-blocks,
    stay where they are."""
    import dataclasses

    profile = load_profile("ethos_u55")
    flat = dataclasses.replace(profile, vector_unit=dataclasses.replace(
        profile.vector, pooling=None, by_kind=(*profile.vector.by_kind, ("global_pool", 8.0), ("pool", 8.0))))
    with_engine = {name: ours for n in NETWORKS for op, name, ours, vela in pairs(n)}
    without = {name: (op, ours, vela) for n in NETWORKS for op, name, ours, vela in pairs(n, flat)}
    for name, (op, ours, vela) in without.items():
        if op in ("AveragePool", "GlobalAveragePool"):
            assert ours / vela < 1 / 1.5 and with_engine[name] / vela > 1 / 1.5, (name, ours, with_engine[name])
        elif op == "MaxPool":
            assert ours == pytest.approx(with_engine[name]), name




# ---------------------------------------------------------------------------------------------------------------
# Issue 24: MAC layers and MobileNetV2 against Vela, Sram_Only at the profile's 1 GHz (fixtures/vela/sram_only_1ghz)
# ---------------------------------------------------------------------------------------------------------------

LAYER_FIXTURES = FIXTURES / "sram_only_1ghz"
TOLERANCE = 1.5

# Why a layer misses, found by comparing the two sides' traffic and mappings (fixtures/vela/README.md, "Single
# layers"); none does now. Both sides charge a transfer shorter than the SRAM's 32-byte burst as a whole burst
# (Vela: ethos_u55_performance.cpp EstimateMemoryTransfer; hwsim: system_sram's burst_bytes,
# hwsim.cost.mapping.bursts), and both write the OFM 16 channels at a time. The layers fixed by the burst
# model
# (conv1x1_32to192_28 0.63 -> 0.72, dw3x3_32_112 0.54 -> 0.75), by the search's per-PE loops
# (conv1x1_256to64_56 1.62 -> 1.04, conv5x5_64to64_28 2.03 -> 1.28: a C loop of 4 kept whole,
# best_mapping.pinned_loops) and by the IFM block's depth, which sets the runs Vela reads an NHWC input in
# (system_sram's input_block_depth: conv3x3s2_3to32_224 0.60 -> 0.89, an 8-deep block on 3 channels, 8-byte
# runs; dw3x3s2_96_112 0.63 -> 1.09 and dw3x3_32_112 0.75 -> 1.05, 16-deep depthwise blocks, 16-byte runs)
# now pass.
LAYER_MISSES: dict[str, str] = {}
SINGLE_LAYERS = tuple(sorted(p.stem for p in LAYER_FIXTURES.glob("*.json") if p.stem != "mobilenet_v2"))


def _vela_by_tflite_op(fixture: dict) -> dict[int, int]:
    """Vela's cycles per TFLite operator: the NPU operators it lowered one TFLite operator to, fused ones aside."""
    out: dict[int, int] = {}
    for op in fixture["operators"]:
        if "fused_into" not in op:
            out[op["tflite_index"]] = out.get(op["tflite_index"], 0) + op["cycles"]
    return out


def layer_ratio(name: str) -> float:
    """ksm-sim's cycles over Vela's for one single-layer fixture (its ONNX twin on the ``ethos_u55`` profile)."""
    fixture = json.loads((LAYER_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    work, _ = load_onnx(LAYER_FIXTURES / fixture["onnx"]["file"], warn=False)
    ours = sum(c.cycles for c in simulate(work, load_profile("ethos_u55")).layers)
    return ours / fixture["total_cycles"]


def mobilenet_ratios() -> tuple[float, list[tuple[str, float]]]:
    """MobileNetV2: (total ratio, [(layer, ratio)] for every Conv and the classifier). The ONNX side is the
    torchvision export (``../mobilenet_v2.onnx``), layer for layer the shapes of the Keras model Vela compiled."""
    from hwsim.workload.onnx_reader import module_name

    fixture = json.loads((LAYER_FIXTURES / "mobilenet_v2.json").read_text(encoding="utf-8"))
    work, _ = load_onnx(LAYER_FIXTURES / fixture["onnx"]["file"], warn=False)
    result = simulate(work, load_profile("ethos_u55"))
    ours = {c.name: c.cycles for c in result.layers}
    vela = _vela_by_tflite_op(fixture)
    per_layer = []
    for match in fixture["onnx"]["matches"]:
        if match["onnx_op"] in ("Conv", "Gemm"):
            name = module_name(match["onnx_node"])
            per_layer.append((name, ours[name] / vela[match["tflite_index"]]))
    return sum(ours.values()) / fixture["total_cycles"], per_layer


def test_the_layer_fixtures_are_what_the_readme_says() -> None:
    assert len(SINGLE_LAYERS) == 9 and set(LAYER_MISSES) <= set(SINGLE_LAYERS)
    for name in (*SINGLE_LAYERS, "mobilenet_v2"):
        fixture = json.loads((LAYER_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        assert fixture["core_clock_hz"] == load_profile("ethos_u55").clock_hz == 1e9
        assert (fixture["accelerator"], fixture["memory_mode"]) == ("ethos-u55-256", "Sram_Only")
        assert fixture["memories"]["Sram"]["bytes_per_cycle"] == 8.0
        assert fixture["total_cycles"] == sum(op.get("cycles", 0) for op in fixture["operators"])


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=LAYER_MISSES[n])) if n in LAYER_MISSES else n
    for n in SINGLE_LAYERS])
def test_single_layer_cycles_within_tolerance_of_vela(name: str) -> None:
    ratio = layer_ratio(name)
    assert 1 / TOLERANCE <= ratio <= TOLERANCE, (name, round(ratio, 2))


def _vela_ifm_bytes(op: dict) -> int:
    """Vela 5.2.0's SRAM bytes for an NHWC IFM read, recomputed from the fixture's shapes and blocks: per OFM
    block (a depthwise layer's blocks span every channel) the IFM block's rows x columns x every channel
    (``ethos_u55_performance.cpp`` ``EstimateElementAccess`` L612-626), read in runs of the IFM block's depth
    unless that is the tensor's depth and charged bytes x 32 / run (``EstimateMemoryTransfer`` L183-193,
    L206-209)."""
    (_, h, w, c), (_, oh, ow, k) = op["inputs"][0], op["output"]
    (_, ih, iw, depth), (_, bh, bw, bk) = op["block"]["ifm"], op["block"]["ofm"]
    blocks = -(-oh // bh) * -(-ow // bw) * (1 if op["type"] == "DepthwiseConv2D" else -(-k // bk))
    elements = min(ih, h) * min(iw, w) * c * blocks
    run = iw * c if depth == c else depth
    return elements * 32 // min(32, run)


@pytest.mark.parametrize("name, run", [("conv3x3s2_3to32_224", 8), ("dw3x3s2_96_112", 16)])
def test_vela_reads_an_nhwc_input_in_runs_of_its_ifm_block_depth(name: str, run: int) -> None:
    """The two layers that missed are SRAM-bound in Vela, and their IFM reads are what hwsim did not charge:
    recomputed by hand, Vela's bytes are the input's elements (with its blocks' halo) x 32 / the block depth,
    4x for 3 channels in 8-deep blocks, 2x for a depthwise layer's 16-deep blocks; with the weights, scales
    and the 16-byte OFM runs (2x) that is Vela's total at 8 bytes per cycle. The profile's input_block_depth
    gives the same runs."""
    from hwsim.cost.layer_cost import shape_of
    from hwsim.cost.mapping.bursts import input_block_run
    from hwsim.cost.mapping.space import sizes

    fixture = json.loads((LAYER_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    (op,) = fixture["operators"]
    assert op["block"]["ifm"][3] == run and op["inputs"][0][3] != run
    assert _vela_ifm_bytes(op) == op["bytes"]["SramFeatureMap_read"]
    ofm_bytes = 2 * math.prod(op["output"])  # NHWC writes in 16-byte runs: 2x
    assert op["bytes"]["SramFeatureMap_write"] == ofm_bytes
    sram = _vela_ifm_bytes(op) + ofm_bytes + op["bytes"]["SramWeights_read"] + op["bytes"]["SramScales_read"]
    assert sram // 8 == op["sram_access_cycles"] == fixture["total_cycles"]

    work, _ = load_onnx(LAYER_FIXTURES / fixture["onnx"]["file"], warn=False)
    level = load_profile("ethos_u55").levels[0]
    assert input_block_run(level.input_block_depth, sizes(shape_of(work.layers[0])), 10 ** 6) == run


def test_the_ifm_block_runs_close_the_two_misses() -> None:
    """Without system_sram's input_block_depth (every input costed as the network's own feature maps) the stem
    and the stride-2 depthwise layer fell below 1/1.5 of Vela's cycles (0.60, 0.63). Since the profile's
    weight_sets floor (the stem's MAC time with Vela's part-kernel steps: tests/hwsim/test_ethos_u55_engine.py)
    the stem without the IFM block runs is 0.68, just inside; the runs still add over a fifth of its cycles,
    and the depthwise layer still misses without them."""
    from hwsim.cost.mapping.bursts import made_feature_maps

    plain = made_feature_maps(load_profile("ethos_u55"))
    assert plain.levels[0].input_block_depth is None
    for name, most in (("conv3x3s2_3to32_224", 0.8), ("dw3x3s2_96_112", 0.6)):
        fixture = json.loads((LAYER_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        work, _ = load_onnx(LAYER_FIXTURES / fixture["onnx"]["file"], warn=False)
        without = sum(c.cycles for c in simulate(work, plain).layers) / fixture["total_cycles"]
        with_runs = layer_ratio(name)
        assert without < most * with_runs and 1 / TOLERANCE <= with_runs <= TOLERANCE, (name, without, with_runs)
    assert without < 1 / TOLERANCE


def test_only_the_network_input_is_read_in_ifm_blocks() -> None:
    """Vela stores the feature maps a network makes in 16-channel bricks (NHCWB16), whose reads have no block
    runs: MobileNetV2's first depthwise layer (112x112x32) costs Vela 1.56x less than the same layer alone on
    an NHWC input. hwsim reads only the network's input in blocks, and shows the same gap."""
    from hwsim.workload.onnx_reader import module_name

    net = json.loads((LAYER_FIXTURES / "mobilenet_v2.json").read_text(encoding="utf-8"))
    single = json.loads((LAYER_FIXTURES / "dw3x3_32_112.json").read_text(encoding="utf-8"))
    (dw_net,) = [op for op in net["operators"] if op["tflite_index"] == 1 and "fused_into" not in op]
    assert dw_net["inputs"] == single["operators"][0]["inputs"] and dw_net["formats"]["ifm"] == "NHCWB16"
    assert single["operators"][0]["formats"]["ifm"] == "NHWC"
    assert single["total_cycles"] / dw_net["cycles"] > 1.5

    work, _ = load_onnx(LAYER_FIXTURES / net["onnx"]["file"], warn=False)
    in_net = {c.name: c.cycles for c in simulate(work, load_profile("ethos_u55")).layers}
    name = module_name(next(m["onnx_node"] for m in net["onnx"]["matches"] if m["tflite_index"] == 1))
    alone = layer_ratio("dw3x3_32_112") * single["total_cycles"]
    assert alone / in_net[name] > 1.3, (name, alone, in_net[name])


def test_mobilenet_v2_total_cycles_within_tolerance_of_vela() -> None:
    total, _ = mobilenet_ratios()
    assert 1 / TOLERANCE <= total <= TOLERANCE, round(total, 2)


def test_mobilenet_v2_per_layer_median_within_tolerance_of_vela() -> None:
    _, per_layer = mobilenet_ratios()
    assert len(per_layer) == 53  # 52 convolutions and the classifier
    median = statistics.median(r for _, r in per_layer)
    assert 1 / TOLERANCE <= median <= TOLERANCE, round(median, 2)


if __name__ == "__main__":
    for network in NETWORKS:
        for op, name, ours, vela in pairs(network):
            print(f"| {network} | {op} | {name} | {ours:,.0f} | {vela:,.0f} | {ours / vela if vela else float('nan'):.2f} |")
    for name in SINGLE_LAYERS:
        print(f"| {name} | {layer_ratio(name):.2f} |")
    total, per_layer = mobilenet_ratios()
    print(f"| mobilenet_v2 total | {total:.2f} | per-layer median | {statistics.median(r for _, r in per_layer):.2f} |")
