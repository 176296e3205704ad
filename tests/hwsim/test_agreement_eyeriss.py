"""hwsim's ``eyeriss`` profile against the Eyeriss v1 chip.

Reference: Chen, Krishna, Emer, Sze, "Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep
Convolutional Neural Networks", IEEE JSSC 52(1), 2017, Table V: AlexNet CONV1-5, batch 4, 200 MHz core
clock, 16-bit fixed point, measured on the chip. Per layer: processing latency (ms), DRAM accesses (MB),
active PEs of 168.

Feature-map compression: the chip stores feature maps run-length compressed in DRAM and gates zero
activations; hwsim models dense feature maps in DRAM (no compression), so its DRAM traffic is an
upper bound of the chip's for the same mapping. Targets (issue 12): totals within 20 %, every layer
within 1.5x. Chip power (issue 24): within 1.5x of Table V's 278 mW, with the profile's zero gating fed the
ifmap zeros of Table V.

DRAM agreement used to rest on mappings whose tiles overflowed the GLB (LOMA's common cut, costed as if they
fit); the search now keeps a mapping that fits every level wherever one exists (as ZigZag and Timeloop do).
With the profile's search parameters (``search:`` in hwsim/profiles/eyeriss.yaml: K split between the PE and
the buffers, as the chip's p/m mapping parameters split it) CONV1-2 agree, CONV3-5 move 1.8-3.4x the chip's
DRAM bytes (strict expected failures below, with the cause).
"""

from __future__ import annotations

import pytest

from hwsim import Workload, load_network, load_profile, simulate

# Why the mappings that fit move more DRAM bytes than the chip. The chip's own row-stationary mappings (JSSC
# 2017, §IV: p = 16 filters in each PE's spad, the psums of m = 64 output channels for the whole channel
# reduction in the GLB, the images of a batch passing while a filter set stays), written as hwsim loops, move 5.60
# / 5.05 / 3.92 / 2.61 MB at CONV2-5 (scripts/eyeriss_row_stationary.py). LOMA's default space (lpf_limit 6, the
# per-PE split for the psum spad's reduction alone) left K one loop and missed them; the profile's `search` section
# (lpf_limit 8, pe_split [outputs, inputs]: K split for the ifmap held in the PE) reaches K split between the
# spad, the GLB and DRAM, and CONV1-2 now agree. At CONV3-5 the energy objective prefers mappings that re-read
# filters or spill psums over the chip's (which cost 8-21 % more energy here), and even the chip's mappings
# stay above Table V: hwsim keeps feature maps dense (and padded) in DRAM where the chip run-length codes them
# (§V-B): at CONV4-5 the chip moves less than a dense once-each lower bound.
DRAM_CAUSE = ("the energy objective prefers mappings that re-read filters per image or spill psums over the chip's "
              "row-stationary ones (m = 64 psum channels kept in the GLB), which cost 8-21 % more energy in this "
              "model and move 1.7-2.0x the chip's DRAM; the rest is feature maps kept dense where the chip run-length "
              "codes them")
DRAM_MISSES = {"conv3": 1.84, "conv4": 3.43, "conv5": 3.08}  # hwsim/chip DRAM, for the reasons
DRAM_MISS_TOTAL = 1.65

TABLE_V = {  # layer: (latency ms, DRAM MB, active PEs)
    "conv1": (16.5, 5.0, 154),
    "conv2": (39.2, 4.0, 135),
    "conv3": (21.3, 3.0, 156),
    "conv4": (16.0, 2.1, 156),
    "conv5": (10.0, 1.3, 156),
}


@pytest.fixture(scope="module")
def result():
    net = load_network("alexnet")
    conv = Workload("alexnet-conv", tuple(layer for layer in net.layers if layer.name in TABLE_V))
    return simulate(conv, load_profile("eyeriss"), batch=4)


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


@pytest.mark.xfail(strict=True, reason=f"total DRAM {DRAM_MISS_TOTAL}x the chip's: {DRAM_CAUSE}")
def test_totals_within_20_percent(result) -> None:
    lat = result.latency_s * 1e3 / sum(v[0] for v in TABLE_V.values())
    dram = sum(dram_mb(c) for c in result.layers) / sum(v[1] for v in TABLE_V.values())
    assert 0.8 <= lat <= 1.2, f"total latency hwsim/chip {lat:.3f}; per layer {ratios(result)}"
    assert 0.8 <= dram <= 1.2, f"total DRAM hwsim/chip {dram:.3f}; per layer {ratios(result)}"


def test_the_stated_misses_are_the_measured_ones(result) -> None:
    """The expected failures' reasons quote the ratios; they must be today's, not an earlier model's."""
    measured = ratios(result)
    assert {k: round(measured[k][1], 2) for k in DRAM_MISSES} == DRAM_MISSES
    total = sum(dram_mb(c) for c in result.layers) / sum(v[1] for v in TABLE_V.values())
    assert round(total, 2) == DRAM_MISS_TOTAL


@pytest.mark.parametrize("layer", [pytest.param(name, marks=pytest.mark.xfail(
    strict=True, reason=f"DRAM {DRAM_MISSES[name]}x the chip's: {DRAM_CAUSE}")) if name in DRAM_MISSES else name
    for name in TABLE_V])
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
# 200 MHz, chip only (DRAM excluded). Ifmap zeros per layer, Table V's "zeros in ifmaps" column, agreeing with
# §IV-B's text ("almost 40% of ifmap values of CONV2 are zeros on average, and it goes up to around 75% at
# CONV5"); the first layer's input is the image.
CHIP_POWER_MW = 278.0
# Why hwsim's chip power is below the chip's: the profile charges no clock network or control energy (JSSC 2017
# Fig. 16 gives their share only as a pie chart, no absolute figure), so on-chip energy is the spads', the GLB's
# and the MACs' alone. It passed (193 mW, 0.69x) while the search's mappings re-read ifmaps from the spad for
# every filter; with K split between the PE and the buffers (the profile's `search` section, as the chip's p
# filters per PE) the ifmap spad's reads fall 7x at CONV2 and the on-chip energy with them.
POWER_MISS = 0.56  # hwsim/chip on-chip power, for the reason above
POWER_CAUSE = ("no clock network or control energy is charged (JSSC 2017 gives it only as a pie chart), and the "
               "searched mappings now keep ifmaps in the PE while p filters pass (the chip's row-stationary split), "
               "so the spads' and GLB's energy alone is left")
IFMAP_ZEROS = {"conv1": 0.0001, "conv2": 0.387, "conv3": 0.725, "conv4": 0.793, "conv5": 0.776}


@pytest.fixture(scope="module")
def gated():
    net = load_network("alexnet")
    conv = Workload("alexnet-conv", tuple(layer for layer in net.layers if layer.name in TABLE_V))
    return simulate(conv, load_profile("eyeriss"), batch=4, input_sparsity=IFMAP_ZEROS)


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
    """On-chip energy (every level but DRAM, the MACs, clock and control) over the latency, against Table V."""
    power_mw = chip_power_mw(gated)
    assert 1 / 1.5 <= power_mw / CHIP_POWER_MW <= 1.5, f"chip power {power_mw:.0f} mW vs {CHIP_POWER_MW} mW"


def test_zero_gating_lowers_power_through_deeper_layers(gated) -> None:
    """The chip's power falls from CONV1 to CONV5 as data gating meets more zeros (§VI-A); so does hwsim's, and
    gating never changes latency or DRAM traffic."""
    clock = gated.profile.clock_hz
    power = {c.name: on_chip_mw(c, clock) for c in gated.layers}
    assert power["conv5"] < power["conv1"], power
    dense = simulate(Workload("alexnet-conv", tuple(layer for layer in load_network("alexnet").layers
                                                     if layer.name in TABLE_V)), load_profile("eyeriss"), batch=4)
    assert gated.cycles == pytest.approx(dense.cycles)
    assert [dram_mb(c) for c in gated.layers] == pytest.approx([dram_mb(c) for c in dense.layers])
    assert gated.energy_j < dense.energy_j
