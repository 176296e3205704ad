"""The area model: published anchors reproduced, node scaling, memories by capacity and port, overrides."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim.hardware.area
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
    with pytest.raises(InputError, match="area: levels.nope: no such level"):
        load_design("edge_npu", ["area={levels: {nope: 1}}"])
    with pytest.raises(InputError, match="technology_nm"):
        load_design("edge_npu", ["technology_nm=abc"])


def test_the_documented_area_keys_are_accepted() -> None:
    """The key block of the area model's docstring is a valid part of a profile, read as documented."""
    doc = hwsim.hardware.area.__doc__ or ""
    block = doc.split("dataclass", 1)[1].split("::", 1)[1]
    keys = yaml.safe_load("\n".join(line[4:] for line in block.splitlines()))
    d = load_design("edge_npu", [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                                 for key, value in keys.items()])
    assert d.extras == keys and set(keys["area"]) == {
        "mac_um2", "sram_bitcell_um2", "sram_efficiency", "sram_port_bit_um2", "register_bit_um2", "other_mm2",
        "levels"}
    assert area_breakdown(d.profile, d.extras)["levels_mm2"]["sram_1MB"] == 3.1


@pytest.mark.parametrize(("item", "says"), [
    ("technology_nm=1e300", "technology_nm: must be at most 1000"),  # once an OverflowError (node squared)
    ("technology_nm=1e-320", "technology_nm: is below 1e-300"),
    ("area.sram_efficiency=0", "area.sram_efficiency: must be at least 0.01"),  # area is divided by it
    ("area.mac_um2=1e308", "area.mac_um2: must be at most 1e+11"),
    ("area.levels.sram_1MB=-1", "area.levels.sram_1MB: must be at least 0"),
    ("area.levels.dram=1", "area: levels.dram: the outermost level is off-chip"),
    ("area.levels={sram_1MB: x}", "area.levels.sram_1MB: "),
])
def test_area_keys_are_refused_out_of_range(item: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        load_design("edge_npu", [item])
    assert says in str(info.value) and "\n" not in str(info.value)


NUMBER = st.one_of(st.sampled_from([0, 1e-320, 1e-299, 0.01, 1, 45, 1e300, 1e308]),
                   st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10 ** 20), 10 ** 20))
AREA_KEYS = ("technology_nm", "mac_um2", "sram_bitcell_um2", "sram_efficiency", "sram_port_bit_um2",
             "register_bit_um2", "other_mm2", "levels")


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(AREA_KEYS), value=NUMBER, big=st.booleans())
def test_every_accepted_area_is_finite(key: str, value: object, big: bool) -> None:
    """Whatever number one area key holds (the others at an end of their ranges), the profile is refused with
    one line or has a finite area: ``technology_nm: 1e300`` once raised OverflowError."""
    from hwsim.hardware.profile import design_from_raw, read_raw_profile
    from hwsim.schemas import profile_file as s

    area = {"mac_um2": s.MAX_UM2 if big else 0, "sram_bitcell_um2": s.MAX_UM2 if big else 0,
            "sram_efficiency": s.MIN_SRAM_EFFICIENCY if big else 1, "sram_port_bit_um2": s.MAX_UM2 if big else 0,
            "register_bit_um2": s.MAX_UM2 if big else 0, "other_mm2": s.MAX_MM2 if big else 0,
            "levels": {"sram_1MB": value if key == "levels" else (s.MAX_MM2 if big else 0)}}
    raw, where = read_raw_profile("edge_npu")
    raw = {**raw, "technology_nm": s.MAX_NODE_NM if big else s.MIN_NODE_NM, "area": area}
    if key == "technology_nm":
        raw["technology_nm"] = value
    elif key != "levels":
        area[key] = value
    try:
        d = design_from_raw(raw, where)
    except InputError as exc:
        assert str(exc).startswith(f"{where}: ") and "\n" not in str(exc)
        return
    levels = area_breakdown(d.profile, d.extras, mask_units=True)["levels_mm2"]
    assert all(math.isfinite(v) for v in levels.values())
    assert math.isfinite(area_mm2(d.profile, d.extras, mask_units=True))
