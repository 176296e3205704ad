"""Burst granules (a memory level's ``burst_bytes``) and the per-PE loops the search keeps whole (issue 24).

- A run of a tile shorter than a level's minimum burst costs a whole burst of that level's port time (Vela 5.2.0,
  ``ethos_u55_performance.cpp`` ``EstimateMemoryTransfer``), not energy; the scalar evaluator and the batch scorer
  charge it alike; a profile without a burst keeps its numbers.
- LOMA's factor limit merges 32 input-channel folds into one loop of 32, which no per-PE register can hold; the
  search also scores the loops with the factor a per-PE level holds kept whole, so the Ethos-U55's MAC lanes can
  keep the channel accumulation in place (``best_mapping.pinned_loops``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwsim import Layer, load_profile
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping import clear_caches, search
from hwsim.cost.mapping.batch_scorer import score_batch
from hwsim.cost.mapping.best_mapping import pinned_loops
from hwsim.cost.mapping.bursts import input_block_run, made_feature_maps, port_factor, run_elements
from hwsim.cost.mapping.loop_orders import flat_loops, limit_factors, order_tables, pattern
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import DIMS, arch, folds, sizes, spatial_options
from hwsim.cost.mapping.tiles import window
from hwsim.hardware.profile import InputBlockDepth, MemoryLevel, Profile

DW = Layer("dw", "conv", 32, 32, (3, 3), (1, 1), (1, 1), 32, (112, 112), (112, 112))
STEM = Layer("stem", "conv", 3, 32, (3, 3), (2, 2), (1, 1), 1, (224, 224), (112, 112))
PW = Layer("pw", "conv", 256, 64, (1, 1), (1, 1), (0, 0), 1, (56, 56), (56, 56))
C5 = Layer("c5", "conv", 64, 64, (5, 5), (1, 1), (2, 2), 1, (28, 28), (28, 28))


def _no_burst(p: Profile) -> Profile:
    """``p`` with every level's burst removed (what the profile was before it had one)."""
    return dataclasses.replace(p, levels=tuple(dataclasses.replace(lv, burst_bytes=0.0, max_run_elements=())
                                               for lv in p.levels))


def test_a_run_shorter_than_the_burst_costs_a_whole_burst() -> None:
    sram = MemoryLevel("s", 1e9, 64, 1.0, 1.0, 8.0, ("inputs", "outputs"), burst_bytes=32,
                       max_run_elements=(("outputs", 16),))
    assert port_factor(sram, "inputs", 16, 8) == 2.0  # 16 int8 channels: half a burst
    assert port_factor(sram, "inputs", 8, 8) == 4.0
    assert port_factor(sram, "inputs", 64, 8) == 1.0  # longer runs at their bytes (Vela's rule)
    assert port_factor(sram, "outputs", 192, 8) == 2.0  # written 16 channels at a time
    assert port_factor(sram, "outputs", 192, 32) == 1.0  # 16 partial sums are 64 bytes
    np.testing.assert_array_equal(port_factor(sram, "inputs", np.array([4.0, 32.0]), 8, np.minimum, np.maximum),
                                  [8.0, 1.0])
    assert port_factor(dataclasses.replace(sram, burst_bytes=0.0), "inputs", 1, 8) == 1.0


def test_an_nhwc_input_is_read_in_runs_of_the_ifm_block_depth() -> None:
    """Vela 5.2.0 on the Ethos-U55: the IFM block is the input's channels rounded up to 8, at most 32 (16 for
    a depthwise layer); a block shallower than the tensor is read in runs of its depth, whatever the tile."""
    blocks = InputBlockDepth(granule=8, max=32, depthwise_max=16)
    conv = {"C": 3, "G": 1}
    assert input_block_run(blocks, conv, 3 * 34) == 8  # 3 channels in 8-deep blocks: 8-byte runs
    assert input_block_run(blocks, {"C": 32, "G": 1}, 32 * 34) == 32 * 34  # the block is the tensor: joins
    assert input_block_run(blocks, {"C": 24, "G": 1}, 24 * 34) == 24 * 34  # 24 rounds to 24: still the tensor
    assert input_block_run(blocks, {"C": 64, "G": 1}, 64 * 34) == 32  # 32-byte runs: a whole burst
    assert input_block_run(blocks, {"C": 64, "G": 1}, 16) == 16  # a tile shallower than the block stays
    assert input_block_run(blocks, {"C": 1, "G": 96}, 32) == 16  # depthwise: 16-deep blocks
    assert input_block_run(blocks, {"C": 1, "G": 8}, 8 * 34) == 8 * 34  # a depthwise block of every channel
    np.testing.assert_array_equal(
        input_block_run(blocks, {"C": np.array([3.0, 32.0, 1.0]), "G": np.array([1.0, 1.0, 96.0])},
                        np.array([102.0, 1088.0, 32.0]), np.minimum, np.where), [8.0, 1088.0, 16.0])
    sram = MemoryLevel("s", 1e9, 64, 1.0, 1.0, 8.0, ("inputs", "outputs"), burst_bytes=32,
                       input_block_depth=blocks)
    assert port_factor(sram, "inputs", 3 * 34, 8, full=conv) == 4.0  # Vela's 4x on a 3-channel input
    assert port_factor(sram, "inputs", 3 * 34, 8) == 1.0  # no layer given: the tile's run
    assert port_factor(sram, "outputs", 3 * 34, 8, full=conv) == 1.0  # outputs are not read in IFM blocks
    np.testing.assert_array_equal(
        port_factor(sram, "inputs", np.array([96.0, 96.0]), 8, np.minimum, np.maximum,
                    {"C": np.array([1.0, 96.0]), "G": np.array([96.0, 1.0])}, np.where), [2.0, 1.0])


def test_feature_maps_the_network_made_are_read_without_ifm_blocks() -> None:
    p = load_profile("ethos_u55")
    assert p.levels[0].input_block_depth == InputBlockDepth(granule=8, max=32, depthwise_max=16)
    q = made_feature_maps(p)
    assert all(lv.input_block_depth is None for lv in q.levels)
    assert dataclasses.replace(q, levels=p.levels) == p
    for name in ("edge_npu", "eyeriss", "zigzag_tpu_like"):  # profiles without the key: the same object
        other = load_profile(name)
        assert made_feature_maps(other) is other
    shape = shape_of(STEM)
    m = search(shape, p)
    plain = evaluate(shape, arch(q), m.spatial, m.loops, cuts=m.cuts)
    assert m.cycles > 1.2 * plain.cycles and m.energy == plain.energy  # port time, not energy


def test_the_run_of_an_nhwc_tile() -> None:
    shape = shape_of(Layer("c", "conv", 64, 64, (3, 3), (1, 1), (1, 1), 1, (56, 56), (56, 56)))
    full, w = sizes(shape), window(shape)
    b = dict(full)
    assert run_elements("inputs", {**b, "C": 16, "OY": 4, "OX": 8}, full, w) == 16  # part of the channels
    assert run_elements("inputs", {**b, "OY": 4, "OX": 8}, full, w) == 64 * 10  # every channel: along the row
    assert run_elements("inputs", {**b, "OY": 4}, full, w) == 64 * 58 * 6  # whole rows: the rows join
    assert run_elements("outputs", {**b, "K": 32, "OX": 8}, full, w) == 32
    assert run_elements("weights", {**b, "K": 2, "C": 4}, full, w) == 2 * 4 * 9  # weights in read order


@pytest.mark.parametrize("layer", [DW, STEM], ids=["dw", "stem"])
def test_a_burst_costs_port_time_not_energy(layer: Layer) -> None:
    p = load_profile("ethos_u55")
    assert p.levels[0].burst_bytes == 32
    shape, a, plain = shape_of(layer), arch(p), arch(_no_burst(p))
    m = search(shape, p)
    with_burst = evaluate(shape, a, m.spatial, m.loops, cuts=m.cuts)
    without = evaluate(shape, plain, m.spatial, m.loops, cuts=m.cuts)
    assert with_burst.energy == without.energy and with_burst.reads == without.reads
    assert with_burst.cycles > 1.1 * without.cycles  # outputs written 16 channels at a time: 2x their SRAM time


def test_a_profile_without_a_burst_keeps_its_numbers() -> None:
    p = load_profile("ethos_u55")
    q = _no_burst(p)
    shape = shape_of(DW)
    m = search(shape, q)
    again = evaluate(shape, arch(dataclasses.replace(q, name="other")), m.spatial, m.loops, cuts=m.cuts)
    assert (again.cycles, again.energy) == (m.cycles, m.energy)


def test_the_batch_scorer_charges_bursts_as_evaluate_does() -> None:
    p = load_profile("ethos_u55")
    a = arch(p)
    items = []
    for layer in (DW, STEM, C5):
        shape = shape_of(layer)
        for sp in spatial_options(shape, a)[:2]:
            flat = flat_loops(folds(shape, sp))
            items.append((shape, sp, flat, order_tables(pattern(flat))))
    energy, cycles = score_batch(a, items)
    lo, charged = 0, 0
    for shape, sp, flat, t in items:
        for k in range(0, len(t.loop), 37):  # a sample of the orders
            loops = tuple((DIMS[flat[i][0]], flat[i][1]) for i in t.loop[k])
            m = evaluate(shape, a, sp, loops)
            assert cycles[lo + k] == pytest.approx(m.cycles, rel=1e-9), (shape, sp, loops)
            assert energy[lo + k] == pytest.approx(m.energy, rel=1e-9), (shape, sp, loops)
            plain = evaluate(shape, arch(_no_burst(p)), sp, loops, cuts=m.cuts)
            charged += m.cycles > plain.cycles * (1 + 1e-9)
        lo += len(t.loop)
    assert charged > 20  # the sample does cross the burst


def test_limit_factors_keeps_a_pinned_factor_whole() -> None:
    free = limit_factors({"K": [2], "C": [2] * 5, "OY": [2, 2, 2, 7], "OX": [2, 2, 2, 7]}, 6)
    assert free["C"] == [32]  # LOMA: the channel folds merged into one loop
    kept = limit_factors({"K": [2], "C": [2] * 3, "OY": [2, 2, 2, 7], "OX": [2, 2, 2, 7]}, 6, {"C": 4})
    assert kept["C"] == [4, 8] and sum(map(len, kept.values())) == 6


@pytest.mark.parametrize("layer", [PW, C5], ids=["conv1x1_256to64_56", "conv5x5_64to64_28"])
def test_the_mac_lanes_keep_the_channel_accumulation(layer: Layer) -> None:
    """Ethos-U55: 4 weights per lane, one 32-bit accumulator; the search reaches the mapping with a C loop of 4
    under both (32 channels over 8 lanes accumulated in place), as Vela's engine does."""
    clear_caches()
    p = load_profile("ethos_u55")
    a, shape = arch(p), shape_of(layer)
    sp = spatial_options(shape, a)[0]
    assert pinned_loops(a, folds(shape, sp), flat_loops(folds(shape, sp))) is not None
    m = search(shape, p)
    acc = m.notation(p)["temporal_innermost_first"]["outputs"]["mce_acc"]
    assert ["C", 4] in acc, m.notation(p)
    assert m.bound != "shram"
