"""The mapping model against ZigZag 3.9.1's, defect by defect (issue 24, "ZigZag beyond the 18 fixtures"):
each test fails on the model before its fix."""

from __future__ import annotations

import dataclasses

import pytest

from hwsim import Layer, load_profile
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping import search
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import arch

CONV3 = Layer("c3", "conv", 128, 128, (3, 3), (1, 1), (1, 1), 1, (112, 112), (112, 112))


@pytest.mark.parametrize("profile", ["zigzag_tpu_like", "zigzag_eyeriss_like", "edge_npu", "eyeriss"])
def test_given_cuts_reproduce_the_search_and_report_overflow(profile: str) -> None:
    """``evaluate(cuts=...)`` with the search's own allocation is the search's mapping, number for number;
    an allocation that puts every loop in every on-chip level names the levels it overflows."""
    p = load_profile(profile)
    a = arch(p)
    shape = shape_of(CONV3)
    m = search(shape, p)
    given = evaluate(shape, a, m.spatial, m.loops, cuts=m.cuts)
    assert given == m
    everything = {o: (len(m.loops),) * len(c) for o, c in m.cuts.items()}
    over = evaluate(shape, a, m.spatial, m.loops, cuts=everything)
    assert over.overflow and set(over.overflow) <= {lv.name for lv in p.levels[1:]}
    # with DRAM's own (trivial) cut appended, the same allocation
    with_dram = {o: (*c, len(m.loops)) for o, c in m.cuts.items()}
    assert evaluate(shape, a, m.spatial, m.loops, cuts=with_dram) == m
    with pytest.raises(ValueError, match="cuts"):
        evaluate(shape, a, m.spatial, m.loops, cuts={**m.cuts, "weights": (len(m.loops) + 1,) * 9})
    assert dataclasses.replace(m, overflow=()).overflow == ()


def _resized(profile: str, level: str, size_bytes: float):
    p = load_profile(profile)
    levels = tuple(dataclasses.replace(lv, size_bytes=size_bytes) if lv.name == level else lv for lv in p.levels)
    return dataclasses.replace(p, levels=levels)


def test_final_outputs_are_sized_at_the_output_width() -> None:
    """A 1x1 conv whose 32 input channels are all unrolled on the array: no loop is left to reduce over, so
    the shared SRAM above the per-PE accumulators only ever holds final (8-bit) outputs. At 8 bits the whole
    layer's inputs (8 KB) and outputs (16 KB) fit a 24 KB SRAM together, and each is moved to or from DRAM
    once; sized at the 16-bit partial-sum width (the defect) they did not fit."""
    p = _resized("zigzag_tpu_like", "sram_2MB", 8192 + 16384)
    layer = Layer("pw", "conv", 32, 64, (1, 1), (1, 1), (0, 0), 1, (16, 16), (16, 16))
    m = search(shape_of(layer), p)
    assert m.overflow == ()
    assert m.cuts["inputs"][-1] == len(m.loops) and m.cuts["outputs"][-1] == len(m.loops), m.notation(p)
    assert m.reads[("dram", "inputs")] == 32 * 16 * 16  # compulsory: every input byte read once


# ZigZag 3.9.1 (zigzag-dse, opt="energy", lpf_limit 6) on its tpu_like architecture, spatial mapping D1 K32,
# D2 C32, workload written by tests/hwsim/fixtures/make_zigzag_fixtures.py with
# LAYERS["c3_128_112"] = (128, 128, 112, 112, 3, 3, 1, 1, 1): total energy and DRAM input bytes (rd_out_to_low
# of I's top level, 64-bit words x 8). Its mapping: I holds every loop in sram_2MB, O all but K.
ZIGZAG_C3_112 = {"energy_pj": 738881302.592, "dram_inputs": 1663488, "dram_outputs": 1605632}


def test_a_shared_memory_cuts_each_operand_where_it_fits() -> None:
    """A 3x3 128->128 conv on a 112x112 map on zigzag_tpu_like, whose 2 MB SRAM holds inputs and outputs:
    ZigZag's allocator (find_best_loop_combination) gives each operand its own loops there, so the
    inputs are read from DRAM once. One common cut for both (the defect) re-read them 4x (energy 1.65x)."""
    from hwsim import Workload, simulate

    r = simulate(Workload("c3", (CONV3,)), load_profile("zigzag_tpu_like"))
    reads, writes = r.traffic("dram")
    assert reads["inputs"] == pytest.approx(ZIGZAG_C3_112["dram_inputs"], rel=0.01)
    assert writes["outputs"] == pytest.approx(ZIGZAG_C3_112["dram_outputs"], rel=0.01)
    assert r.energy_j * 1e12 == pytest.approx(ZIGZAG_C3_112["energy_pj"], rel=0.02)


def test_the_lpf_limit_merges_within_the_dimension_with_most_factors() -> None:
    """ZigZag 3.9.1's LomaEngine.limit_lpfs: the two smallest factors of the dimension with the most factors
    (OY's 3 x 3 -> 9), not the smallest product overall (K's 2 x 2 -> 4)."""
    from hwsim.cost.mapping.loop_orders import limit_factors

    assert limit_factors({"K": [2, 2], "OY": [3, 3, 3]}, 4) == {"K": [2, 2], "OY": [3, 9]}
    # ties: the first dimension in DIMS order (ZigZag's max over the workload's dimensions)
    assert limit_factors({"K": [2, 2], "OY": [2, 2]}, 3) == {"K": [4], "OY": [2, 2]}
    assert limit_factors({"K": [5], "OY": [7]}, 1) == {"K": [5], "OY": [7]}  # nothing left to merge
