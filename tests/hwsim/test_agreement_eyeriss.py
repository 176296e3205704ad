"""hwsim's ``eyeriss`` profile against the Eyeriss v1 chip.

Reference: Chen, Krishna, Emer, Sze, "Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep
Convolutional Neural Networks", IEEE JSSC 52(1), 2017, Table V: AlexNet CONV1-5, batch 4, 200 MHz core
clock, 16-bit fixed point, measured on the chip. Per layer: processing latency (ms), DRAM accesses (MB),
active PEs of 168.

Feature-map compression: the chip run-length codes the feature maps it moves to and from DRAM (§V-B) and
gates zero activations (§V-C). The profile's ``dram_compression`` codes the ifmaps read from DRAM in the
chip's format, for Table V's ifmap zeros (the runs below are fed them); the ofmaps written stay dense (their
zeros are not given per layer), so hwsim's DRAM traffic is an upper bound of the chip's for the same mapping
there. Targets (issue 12): totals within 20 %, every layer
within 1.5x. Chip power (issue 24): within 1.5x of Table V's 278 mW, with the profile's zero gating fed the
ifmap zeros of Table V.

DRAM agreement used to rest on mappings whose tiles overflowed the GLB (LOMA's common cut, costed as if they
fit); the search now keeps a mapping that fits every level wherever one exists (as ZigZag and Timeloop do),
and CONV2-5 move 2.9-3.4x the chip's DRAM bytes with the ifmaps coded (2.9-3.6x dense; strict expected
failures below, with the cause).
"""

from __future__ import annotations

import dataclasses

import pytest

from hwsim import Workload, load_network, load_profile, simulate
from hwsim.cost.dram_compression import compression_factor

# Why the mappings that fit move more DRAM bytes than the chip. The chip's own row-stationary mappings (JSSC
# 2017, §IV: p = 16 filters in each PE's spad, the psums of m = 64 output channels for the whole channel
# reduction in the GLB, the images of a batch passing while a filter set stays), written as hwsim loops, fit the
# 108 KB GLB, cost -11 % (CONV2) to +8 % (CONV4) of the search's picks' energy, and move 5.60 / 5.05 / 3.92 /
# 2.61 MB at CONV2-5 (scripts/eyeriss_row_stationary.py). The search cannot reach them: LOMA's factor merging (lpf_limit 6)
# leaves each dimension one loop (K 384 is never split into spad x GLB x DRAM factors), and CONV2's and CONV4's
# OY-on-columns unrollings rank below the 3 kept by utilisation. The least DRAM the
# search's space reaches (DRAM energy weighted 10^4, same script) is 1.78x the chip's in total. Even the chip's mappings stay above Table V at CONV3-5:
# hwsim keeps feature maps dense (and padded) in DRAM where the chip run-length codes them (§V-B): at CONV4-5
# the chip moves less than a dense once-each lower bound.
DRAM_CAUSE = ("the search cannot reach the chip's row-stationary mappings: LOMA's factor merging leaves K one loop "
              "(never split between spad, GLB and DRAM) and the OY-on-columns unrollings rank below the 3 kept, so "
              "psums spill (CONV2) or filters are re-read per image (CONV3-5); those mappings fit, cost about as "
              "much energy and move 1.4-2.0x the chip's DRAM; the rest is feature maps kept dense where the chip run-length "
              "codes them")
DRAM_MISSES = {"conv2": 2.95, "conv3": 3.62, "conv4": 3.10, "conv5": 3.52}  # hwsim/chip DRAM, for the reasons
DRAM_MISS_TOTAL = 2.56

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


def conv_layers() -> Workload:
    net = load_network("alexnet")
    return Workload("alexnet-conv", tuple(layer for layer in net.layers if layer.name in TABLE_V))


@pytest.fixture(scope="module")
def result():
    return simulate(conv_layers(), load_profile("eyeriss"), batch=4, input_sparsity=IFMAP_ZEROS)


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
# 200 MHz, chip only (DRAM excluded), with the ifmap zeros above.
CHIP_POWER_MW = 278.0


@pytest.fixture(scope="module")
def gated(result):
    return result


def on_chip_mw(cost, clock: float) -> float:
    return sum(pj for (lv, _), pj in cost.energy_pj.items() if lv != "dram") * 1e-12 / (cost.cycles / clock) * 1e3


def test_chip_power_within_1_5x(gated) -> None:
    """On-chip energy (every level but DRAM, the MACs, clock and control) over the latency, against Table V."""
    t = gated.to_dict(with_layers=False)["totals"]
    power_mw = t["energy_on_chip_j"] / t["latency_s"] * 1e3
    assert 1 / 1.5 <= power_mw / CHIP_POWER_MW <= 1.5, f"chip power {power_mw:.0f} mW vs {CHIP_POWER_MW} mW"
    assert t["energy_scale"] > 1  # the 45 nm energies were scaled to the chip's 65 nm


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


def test_ifmap_code_as_the_chip(result) -> None:
    """The ifmaps read from DRAM, run-length coded (§V-B), shrink with Table V's zeros from CONV2 on and grow by
    the format's overhead (21.3 bits a 16-bit value) on CONV1's zero-free image; weights and outputs stay."""
    plain = simulate(conv_layers(), dataclasses.replace(load_profile("eyeriss"), dram_compression=None), batch=4,
                     input_sparsity=IFMAP_ZEROS)
    for coded, dense in zip(result.layers, plain.layers):
        f = compression_factor(result.profile.dram_compression, IFMAP_ZEROS[coded.name], 16)
        assert coded.read_bytes[("dram", "inputs")] == pytest.approx(dense.read_bytes[("dram", "inputs")] * f)
        assert coded.write_bytes == dense.write_bytes
        assert coded.read_bytes[("dram", "weights")] == dense.read_bytes[("dram", "weights")]
    assert compression_factor(result.profile.dram_compression, IFMAP_ZEROS["conv1"], 16) > 1.33
    assert sum(dram_mb(c) for c in result.layers) < sum(dram_mb(c) for c in plain.layers)
