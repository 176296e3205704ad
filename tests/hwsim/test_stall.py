"""ZigZag 3.9.1's per-period stall and loading model (:mod:`hwsim.cost.mapping.stall`).

Hand-worked port combinations, the window union against a brute force, and whole mappings against
ZigZag's own numbers: on ZigZag's mapping of two fixture cases (``fixtures/zigzag_cases_more.json``)
hwsim's evaluator gives ZigZag's latency to the cycle (stall, on-loading and off-loading apart).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from hwsim import load_profile
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import Shape, Spatial, arch
from hwsim.cost.mapping.stall import port_stall, real_cycles, window_union

CASES = {c["case"]: c for c in json.loads((Path(__file__).parent / "fixtures" / "zigzag_cases_more.json")
                                          .read_text())["cases"]}


def _brute_union(allowed: list[int], period: list[int], total: int) -> int:
    """ZigZag's own way: mark the first ``allowed`` cycles of every period within the largest one."""
    top = max(period)
    used = np.zeros(top, dtype=bool)
    for a, p in zip(allowed, period):
        for start in range(0, top, p):
            used[start:start + a] = True
    return int(used.sum()) * (total // top)


def test_window_union_by_hand() -> None:
    # periods 2 and 6 over 12 cycles: windows [0,1) of every 2 and [0,3) of every 6 -> 0,2,4 | 1 | 6,8,10 | 7 = 8
    assert window_union([1, 3], [2, 6], 12) == 8
    # a transfer that may use its whole period covers everything
    assert window_union([1, 5], [1, 60], 120) == 120


def test_window_union_matches_the_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(500):
        period, p = [], 1
        for _ in range(rng.randint(1, 5)):
            p *= rng.choice([1, 2, 3, 5])
            period.append(p)
        rng.shuffle(period)
        allowed = [rng.randint(1, q) for q in period]
        total = max(period) * rng.randint(1, 4)
        assert window_union(allowed, period, total) == _brute_union(allowed, period, total), (allowed, period)


def test_window_union_row_by_row() -> None:
    got = window_union([np.array([1.0, 2.0]), np.array([3.0, 3.0])], [np.array([2.0, 4.0]), np.array([6.0, 8.0])],
                       np.array([12.0, 16.0]))
    assert list(got) == [_brute_union([1, 3], [2, 6], 12), _brute_union([2, 3], [4, 8], 16)]


def test_port_stall_by_hand() -> None:
    """eyeriss_like's sram_8KB (one read-write port) on ZigZag's mapping of r18_conv3_3x3 at batch 2: partial
    sums to and from rf_16B, 3 cycles in each 6-cycle period, and the 240-psum tile to and from sram_1M, 30
    cycles in each 60; over 1,552,320 cycles of compute. Slack (3 - 6) x 258,719 twice and (30 - 60) x 25,871
    twice: -3,104,574; windows 6 x 258,719 x 2 + 60 x 25,871 x 2 = 6,209,148; their union is the whole run
    (the 6-cycle transfers may use all their period): stall = -3,104,574 + 6,209,148 - 1,552,320 =
    1,552,254 cycles, ZigZag 3.9.1's stall_slack_comb for that port."""
    acts = [(3.0, 6.0, 6.0), (30.0, 60.0, 60.0), (3.0, 6.0, 6.0), (30.0, 60.0, 60.0)]
    assert port_stall(acts, 1_552_320.0) == 1_552_254
    # a single transfer: (real - allowed) x (periods - 1), slack negative
    assert port_stall([(2.0, 6.0, 6.0)], 60.0) == -36
    assert port_stall([(8.0, 6.0, 6.0)], 60.0) == 18


def test_real_cycles_round_up_per_period() -> None:
    assert real_cycles(3840, 128) == 30 and real_cycles(3841, 128) == 31 and real_cycles(448, 128) == 4


_EYERISS = load_profile("zigzag_eyeriss_like")


@pytest.mark.parametrize(("case", "shape", "spatial", "loops", "cuts"), [
    # ZigZag: O [[B2, FY3], [K10], [OY28, OX28, C11, FX3], []], W [[.. OX28], [C11], [FX3]], I [[.. OY28], [..], []]
    ("eyeriss_like/r18_conv3_3x3@b2", Shape(2, 1, 128, 128, 28, 28, 3, 3, 1, 1, 30, 30),
     Spatial(rows=(("C", 12),), cols=(("K", 14),)),
     (("B", 2), ("FY", 3), ("K", 10), ("OY", 28), ("OX", 28), ("C", 11), ("FX", 3)),
     {"weights": (5, 6), "inputs": (4, 7), "outputs": (2, 3, 7)}),
    # ZigZag: O [[OX5, FX3, FY3], [B2], [G7], [OY56]], W [[all], [], []], I [[OX5, FX3, FY3, B2], [G7, OY56], []]
    ("eyeriss_like/dw_3x3@b2", Shape(2, 96, 1, 1, 56, 56, 3, 3, 1, 1, 58, 58),
     Spatial(rows=(("OX", 12),), cols=(("G", 14),)),
     (("OX", 5), ("FX", 3), ("FY", 3), ("B", 2), ("G", 7), ("OY", 56)),
     {"weights": (6, 6), "inputs": (4, 6), "outputs": (3, 4, 5)}),
])
def test_zigzags_mapping_gives_zigzags_latency(case, shape, spatial, loops, cuts) -> None:
    """Costed on ZigZag's own mapping (spatial unrolling, loop order, memory allocation), hwsim's cycles are
    ZigZag 3.9.1's: compute, stall, on-loading (1.55M-cycle sram_8KB stall; 75k cycles of on-loading that
    the DRAM port's spare bandwidth cannot hide) and off-loading."""
    ref = CASES[case]
    m = evaluate(shape, arch(_EYERISS), spatial, loops, cuts=cuts)
    assert m.compute_cycles == ref["ideal_temporal_cycle"]
    assert m.onload_cycles == ref["data_onloading_cycle"]
    assert m.offload_cycles == ref["data_offloading_cycle"]
    assert m.cycles == ref["latency_total_cycles"]


def test_profiles_choose_the_model() -> None:
    """``latency_model``: ZigZag's per-period model for the ZigZag mirrors, the roofline by default (the
    profiles checked against Vela, Eyeriss and the Coral, and edge_npu, the sweeps' profile)."""
    assert arch(_EYERISS).per_period and arch(load_profile("zigzag_tpu_like")).per_period
    assert not any(arch(load_profile(p)).per_period for p in ("ethos_u55", "eyeriss", "edge_npu", "edge_tpu"))
    sram = {lv.name: lv for lv in _EYERISS.levels}
    assert sram["sram_8KB"].shared_port and sram["sram_1M"].shared_port and not sram["sram_64KB"].shared_port
