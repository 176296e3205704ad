"""hwsim's ``eyeriss`` profile against the Eyeriss v1 chip.

Reference: Chen, Krishna, Emer, Sze, "Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep
Convolutional Neural Networks", IEEE JSSC 52(1), 2017, Table V: AlexNet CONV1-5, batch 4, 200 MHz core
clock, 16-bit fixed point, measured on the chip. Per layer: processing latency (ms), DRAM accesses (MB),
active PEs of 168.

Feature-map compression: the chip run-length codes every feature map in DRAM but the input image (§IV-B,
Fig. 8: ifmaps decoded on the way in, ofmaps coded on the way out; filters and psums dense) and gates zero
activations (§V-C). The profile's ``dram_compression`` does the same in the chip's format, for Table V's
ifmap zeros (the runs below are fed them, :data:`ZEROS`): a layer's ifmaps at its own zeros (CONV1's image
dense), its ofmaps at the zeros of the next layer's ifmaps (behind a pooling for CONV1-2, fewer zeros than
the map written: an upper bound of the coded size), CONV5's ofmaps dense (FC6's zeros are not in Table V).
Targets (issue 12): totals within 20 %, every layer within 1.5x. Chip power (issue 24): within 1.5x of Table V's 278 mW, with the profile's zero gating fed the
ifmap zeros of Table V.

DRAM agreement used to rest on mappings whose tiles overflowed the GLB (LOMA's common cut, costed as if they
fit); the search now keeps a mapping that fits every level wherever one exists (as ZigZag and Timeloop do).
With the profile's search parameters (``search:`` in hwsim/profiles/eyeriss.yaml: K split between the PE and
the buffers, as the chip's p/m mapping parameters split it, and the per-level candidates that reach the chip's
own CONV4-5 mappings, on the chip's PE sets of different filters as well) and the feature maps run-length
coded as the chip codes them, the totals and every layer agree.
"""

from __future__ import annotations

import dataclasses

import pytest

from hwsim import Workload, load_network, load_profile, simulate
from hwsim.cost.dram_compression import compression_factor
from hwsim.cost.layer_cost import output_elems

# Why the mappings that fit move more DRAM bytes than the chip. The chip's own row-stationary mappings (JSSC
# 2017, §IV: p = 16 filters in each PE's spad, the psums of m = 64 output channels for the whole channel
# reduction in the GLB, the images of a batch passing while a filter set stays), written as hwsim loops, move
# 5.60 / 5.05 / 3.92 / 2.61 MB dense at CONV2-5 (scripts/eyeriss_row_stationary.py). LOMA's default space
# (lpf_limit 6, the per-PE split for the psum spad's reduction alone) left K one loop and missed them; the
# profile's `search` section (lpf_limit 8, pe_split [outputs, inputs]: K split for the ifmap held in the PE)
# reached K split between the spad, the GLB and DRAM at CONV1-3, but CONV4-5's picks re-read filters per image
# (CONV4) or spilled psums (CONV5), 2.84x / 2.70x the chip's DRAM: the chip's mappings need 9 temporal loops
# (K split 16 | 4 | 3), more than LOMA's merged factors form, and CONV4's 13-column unrolling was not kept.
# The per-level candidates (`search.pe_block`: the spads' factors one innermost block, the rest permuted above
# it, as Timeloop's mapper tiles) reach them: CONV5's pick is the chip's mapping, CONV4's costs 3 % less
# (tests/hwsim/ test_eyeriss_chip_mapping.py), and both now agree (1.07x / 1.26x). CONV3's pick moved to the
# chip's 156-PE unrolling and split (p = 16, q = 4) but spilled psums to DRAM (2.01x the chip's): with every
# PE set on channels (rows FY x C, r = 4, t = 1) the chip's CONV3 mapping (m = 64 psums, whole C reduction in
# the GLB) does not fit the 108 KB GLB under this model's tiles. The per-level candidates also cost the chip's
# PE sets of different filters (JSSC 2017 §IV-A: r sets on channels, t on filters, pe_set_unrollings):
# CONV3's pick (rows FY3 x K4, t = 4) keeps the psums in the GLB, filters read once, ofmaps written once (6.04
# -> 2.93 MB, 0.98x), and CONV4-5's take the chip's r = 2, t = 2 (CONV4 2.25 -> 2.05 MB, fewer ifmap passes).
# The feature maps are coded as the chip codes them (§IV-B); the filters, which dominate CONV3-5's traffic,
# are not (nor by the chip).
DRAM_TOTAL = 0.89  # hwsim/chip total DRAM (1.28 before the per-level candidates, 1.11 before the PE sets)

TABLE_V = {  # layer: (latency ms, DRAM MB, active PEs)
    "conv1": (16.5, 5.0, 154),
    "conv2": (39.2, 4.0, 135),
    "conv3": (21.3, 3.0, 156),
    "conv4": (16.0, 2.1, 156),
    "conv5": (10.0, 1.3, 156),
}


# Ifmap zeros per layer, Table V's "zeros in ifmaps" column, agreeing with §IV-B's text ("almost 40% of ifmap
# values of CONV2 are zeros on average, and it goes up to around 75% at CONV5"); the first layer's input is the
# image. They feed the zero gating (power) and the run-length code of the ifmaps read from DRAM.
IFMAP_ZEROS = {"conv1": 0.0001, "conv2": 0.387, "conv3": 0.725, "conv4": 0.793, "conv5": 0.776}
# The zeros of the ofmaps CONV1 and CONV2 write: the next layer's ifmap zeros, taken behind the max pooling
# that hwsim's chain of CONV layers does not show (it cannot link them; CONV3 -> CONV4 -> CONV5 it links).
# Pooling a non-negative map only loses zeros, so these are lower bounds and the coded sizes upper bounds.
OFMAP_ZEROS = {"conv1": IFMAP_ZEROS["conv2"], "conv2": IFMAP_ZEROS["conv3"]}
ZEROS = {"input_sparsity": IFMAP_ZEROS, "output_sparsity": OFMAP_ZEROS}  # simulate's keywords for the runs


def conv_layers() -> Workload:
    net = load_network("alexnet")
    return Workload("alexnet-conv", tuple(layer for layer in net.layers if layer.name in TABLE_V))


@pytest.fixture(scope="module")
def result():
    return simulate(conv_layers(), load_profile("eyeriss"), batch=4, **ZEROS)


def dram_mb(cost) -> float:
    moved = sum(v for (lv, _), v in cost.read_bytes.items() if lv == "dram")
    return (moved + sum(v for (lv, _), v in cost.write_bytes.items() if lv == "dram")) / 1e6


def ratios(result) -> dict[str, tuple[float, float]]:
    clock = result.profile.clock_hz
    return {c.name: (c.cycles / clock * 1e3 / TABLE_V[c.name][0], dram_mb(c) / TABLE_V[c.name][1])
            for c in result.layers}


def test_alexnet_groups_as_in_the_original_network(result) -> None:
    assert [c.name for c in result.layers] == list(TABLE_V)
    assert result.macs == 4 * 665_784_864  # AlexNet CONV1-5 with groups (Krizhevsky 2012): 666 M MACs/image
    # with FC6-8: 724 M MACs, the figure of Sze et al., Proc. IEEE 2017, Table of DNN models
    whole = simulate(load_network("alexnet"), load_profile("eyeriss"))
    assert round(whole.macs / 1e6) == 724


def test_totals_within_20_percent(result) -> None:
    lat = result.latency_s * 1e3 / sum(v[0] for v in TABLE_V.values())
    dram = sum(dram_mb(c) for c in result.layers) / sum(v[1] for v in TABLE_V.values())
    assert 0.8 <= lat <= 1.2, f"total latency hwsim/chip {lat:.3f}; per layer {ratios(result)}"
    assert 0.8 <= dram <= 1.2, f"total DRAM hwsim/chip {dram:.3f}; per layer {ratios(result)}"


def test_the_stated_total_is_the_measured_one(result) -> None:
    """The comments quote the total; it must be today's, not an earlier model's."""
    total = sum(dram_mb(c) for c in result.layers) / sum(v[1] for v in TABLE_V.values())
    assert round(total, 2) == DRAM_TOTAL


@pytest.mark.parametrize("layer", list(TABLE_V))
def test_every_layer_within_1_5x(result, layer: str) -> None:
    lat, dram = ratios(result)[layer]
    assert 1 / 1.5 <= lat <= 1.5, f"{layer}: latency hwsim/chip {lat:.3f}"
    assert 1 / 1.5 <= dram <= 1.5, f"{layer}: DRAM hwsim/chip {dram:.3f}"


def test_active_pes_close_to_the_chip(result) -> None:
    """The mapping's average active PEs (utilisation x 168) against the chip's active PEs."""
    for c in result.layers:
        active = c.utilization * result.profile.array.pes
        assert abs(active - TABLE_V[c.name][2]) <= 0.25 * TABLE_V[c.name][2], (c.name, active)


# Chip power (issue 24). Table V's power column: 278 mW on CONV1-5 (also the abstract), measured at 1 V and
# 200 MHz, chip only (DRAM excluded), with the ifmap zeros above.
CHIP_POWER_MW = 278.0
# Why hwsim's chip power is below the chip's: the profile charges no clock network or control energy (JSSC 2017
# Fig. 16 gives their share only as a pie chart, no absolute figure), so on-chip energy is the spads', the GLB's,
# the array network's and the MACs' alone. It passed (193 mW, 0.69x) while the search's mappings re-read ifmaps
# from the spad for every filter; with K split between the PE and the buffers (the profile's `search` section, as
# the chip's p filters per PE) the ifmap spad's reads fall 7x at CONV2 and the on-chip energy with them (0.56x).
# The array level (ISCA 2016 Table IV, inter-PE 2x: `array.noc_energy_pj_per_byte`) charges 1.8 mJ of the 18 mJ
# on chip (0.56x -> 0.62x). The GLB's ifmap reads counted once per PE diagonal (space.input_overlap, as ZigZag
# and the chip's multicast) end CONV5's GLB-port stall (latency 1.44x -> 0.96x of Table V): 0.62x -> 0.64x.
# The per-level candidates (`search.pe_block`: the chip's p | m/p | M/m split at CONV3-5) keep ifmaps in the
# spad for the p filters there too: 0.64x -> 0.62x; on the chip's PE sets of different filters
# (best_mapping.pe_set_unrollings) CONV3-5's picks spend less on chip: 0.62x -> 0.61x.
POWER_MISS = 0.61  # hwsim/chip on-chip power, for the reason above
POWER_CAUSE = ("no clock network or control energy is charged (JSSC 2017 gives it only as a pie chart), and the "
               "searched mappings now keep ifmaps in the PE while p filters pass (the chip's row-stationary split), "
               "so the spads', the GLB's and the array network's energy alone is left")


@pytest.fixture(scope="module")
def gated(result):
    return result


def on_chip_mw(cost, clock: float) -> float:
    return sum(pj for (lv, _), pj in cost.energy_pj.items() if lv != "dram") * 1e-12 / (cost.cycles / clock) * 1e3


def chip_power_mw(gated) -> float:
    t = gated.to_dict(with_layers=False)["totals"]
    return t["energy_on_chip_j"] / t["latency_s"] * 1e3


def test_the_stated_power_miss_is_the_measured_one(gated) -> None:
    """The expected failure's reason quotes the ratio; it must be today's. The energies are the chip's node's."""
    assert round(chip_power_mw(gated) / CHIP_POWER_MW, 2) == POWER_MISS
    assert gated.to_dict(with_layers=False)["totals"]["energy_scale"] > 1  # 45 nm energies scaled to 65 nm


@pytest.mark.xfail(strict=True, reason=f"chip power {POWER_MISS}x the chip's: {POWER_CAUSE}")
def test_chip_power_within_1_5x(gated) -> None:
    """On-chip energy (every level but DRAM, the array's network, the MACs, clock and control) over the latency,
    against Table V."""
    power_mw = chip_power_mw(gated)
    assert 1 / 1.5 <= power_mw / CHIP_POWER_MW <= 1.5, f"chip power {power_mw:.0f} mW vs {CHIP_POWER_MW} mW"


def test_zero_gating_lowers_power_through_deeper_layers(gated) -> None:
    """The chip's power falls from CONV1 to CONV5 as data gating meets more zeros (§VI-A); so does hwsim's, and
    gating alone (the DRAM code dropped) never changes latency or DRAM traffic."""
    clock = gated.profile.clock_hz
    power = {c.name: on_chip_mw(c, clock) for c in gated.layers}
    assert power["conv5"] < power["conv1"], power
    plain = dataclasses.replace(load_profile("eyeriss"), dram_compression=None)
    alone = simulate(conv_layers(), plain, batch=4, input_sparsity=IFMAP_ZEROS)
    dense = simulate(conv_layers(), plain, batch=4)
    assert alone.cycles == pytest.approx(dense.cycles)
    assert [dram_mb(c) for c in alone.layers] == pytest.approx([dram_mb(c) for c in dense.layers])
    assert alone.energy_j < dense.energy_j


def test_feature_maps_coded_as_the_chip(result) -> None:
    """Against the same run with the code dropped (the same mappings: the search ranks dense traffic): CONV1's
    image read dense; every other layer's ifmaps read by the code's factor for Table V's zeros; the final
    ofmaps of CONV1-4 written coded (their dense share replaced by the coded size for the zeros of the map
    they become), CONV5's dense; filters and spilled psums untouched. Whatever mapping the search picks."""
    code = result.profile.dram_compression
    plain_profile = dataclasses.replace(result.profile, dram_compression=None)
    plain = simulate(conv_layers(), plain_profile, batch=4, **ZEROS)
    out_zeros = {**OFMAP_ZEROS, "conv3": IFMAP_ZEROS["conv4"], "conv4": IFMAP_ZEROS["conv5"]}
    layers = {layer.name: layer for layer in conv_layers().layers}
    ki, ko, kw = ("dram", "inputs"), ("dram", "outputs"), ("dram", "weights")
    for coded, dense in zip(result.layers, plain.layers):
        f = 1.0 if coded.name == "conv1" else compression_factor(code, IFMAP_ZEROS[coded.name], 16)
        assert coded.read_bytes[ki] == pytest.approx(dense.read_bytes[ki] * f), coded.name
        final = 4 * output_elems(layers[coded.name]) * 2
        fo = compression_factor(code, out_zeros[coded.name], 16) if coded.name in out_zeros else 1.0
        assert coded.write_bytes[ko] == pytest.approx(dense.write_bytes[ko] - final * (1 - fo)), coded.name
        assert coded.read_bytes.get(ko, 0.0) == dense.read_bytes.get(ko, 0.0)  # spilled psums
        assert coded.read_bytes[kw] == dense.read_bytes[kw]
        assert coded.dram_code_saved_bytes == pytest.approx((dram_mb(dense) - dram_mb(coded)) * 1e6)
        if coded.name != "conv5":  # fails without the ofmaps coded
            assert coded.write_bytes[ko] < dense.write_bytes[ko], coded.name
    assert coded.write_bytes[ko] == dense.write_bytes[ko]  # CONV5's ofmaps: their zeros are not given
    assert result.cycles <= plain.cycles * (1 + 1e-12)
    assert sum(dram_mb(c) for c in result.layers) < sum(dram_mb(c) for c in plain.layers)
