"""The area model: published anchors reproduced, node scaling, memories by capacity and port, overrides."""

from __future__ import annotations

import pytest

from hwsim.hardware.area import (
    ADD_UM2,
    DFF_UM2,
    MULT_UM2,
    adder_um2,
    area_breakdown,
    area_mm2,
    multiplier_um2,
)
from hwsim.errors import InputError
from hwsim.hardware.profile import bundled_profiles, load_design


def test_horowitz_anchors_reproduced() -> None:
    for bits, um2 in ADD_UM2.items():
        assert adder_um2(bits) == pytest.approx(um2)
    for bits, um2 in MULT_UM2.items():
        assert multiplier_um2(bits, bits) == pytest.approx(um2)
    assert adder_um2(8) < adder_um2(12) < adder_um2(16)
    assert multiplier_um2(8, 8) < multiplier_um2(16, 16) < multiplier_um2(32, 32)
    assert multiplier_um2(8, 32) == pytest.approx(multiplier_um2(16, 16))


def test_every_bundled_profile_has_a_plausible_area() -> None:
    for name in bundled_profiles():
        d = load_design(name)
        a = area_breakdown(d.profile, d.extras)
        assert 0.05 < a["total_mm2"] < 500, (name, a)
        assert a["total_mm2"] == pytest.approx(a["mac_array_mm2"] + sum(a["levels_mm2"].values()))
        assert d.profile.dram.name not in a["levels_mm2"]  # off-chip


def test_scaling_and_memories() -> None:
    base = load_design("edge_npu")
    a45 = area_mm2(base.profile, base.extras)
    d22 = load_design("edge_npu", ["technology_nm=22.5"])
    assert area_mm2(d22.profile, d22.extras) == pytest.approx(a45 / 4)
    small = load_design("edge_npu", ["levels.sram_1MB.size_bytes=524288"])
    big = load_design("edge_npu", ["levels.sram_1MB.size_bytes=2097152"])
    s, b = (area_breakdown(x.profile, x.extras)["levels_mm2"]["sram_1MB"] for x in (small, big))
    assert b > 2 * s * 0.99 and b < 4 * s
    wide = load_design("edge_npu", ["levels.sram_1MB.bandwidth_bytes_per_cycle=256"])
    assert area_breakdown(wide.profile)["levels_mm2"]["sram_1MB"] > area_breakdown(base.profile)["levels_mm2"]["sram_1MB"]
    eyeriss = load_design("eyeriss")  # per-PE spads: flip-flop register files, one per PE
    spad = next(lv for lv in eyeriss.profile.levels if lv.per_pe)
    got = area_breakdown(eyeriss.profile)["levels_mm2"][spad.name]
    assert got == pytest.approx(spad.size_bytes * 8 * DFF_UM2 * 1e-6 * eyeriss.profile.array.pes)
    rows = area_breakdown(base.profile, mask_units=True)["mask_units_mm2"]
    assert rows == pytest.approx(32 * multiplier_um2(8, 8) * 1e-6)


def test_area_overrides() -> None:
    d = load_design("edge_npu", ["area={mac_um2: 1000, levels: {sram_1MB: 2.5}, other_mm2: 0.5}"])
    a = area_breakdown(d.profile, d.extras)
    assert a["mac_array_mm2"] == pytest.approx(1024 * 1000e-6)
    assert a["levels_mm2"]["sram_1MB"] == 2.5 and a["other_mm2"] == 0.5
    with pytest.raises(InputError, match="area.levels.nope"):
        load_design("edge_npu", ["area={levels: {nope: 1}}"])
    with pytest.raises(InputError, match="technology_nm"):
        load_design("edge_npu", ["technology_nm=abc"])
