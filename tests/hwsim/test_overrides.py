"""--set overrides: dotted paths on the raw YAML, validated exactly like a profile file."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hwsim.ksm_sim import main
from hwsim.errors import InputError
from hwsim.hardware.overrides import apply_overrides
from hwsim.hardware.profile import load_design, read_raw_profile


def test_set_fields_and_levels() -> None:
    d = load_design("edge_npu", ["array.rows=16", "levels.sram_1MB.size_bytes=524288",
                                 "precision_bits.mask_scale=4", "clock_hz=1.0e9"])
    p = d.profile
    assert p.array.rows == 16 and p.array.cols == 32
    assert p.levels[1].size_bytes == 524288 and p.precision_bits.mask_scale == 4 and p.clock_hz == 1e9


def test_raw_is_not_mutated() -> None:
    raw, _ = read_raw_profile("edge_npu")
    out = apply_overrides(raw, ["array.rows=8"])
    assert raw["array"]["rows"] == 32 and out["array"]["rows"] == 8


def test_insert_and_remove_levels() -> None:
    p = load_design("edge_npu", ["levels.l2={like: sram_1MB, after: sram_1MB, size_bytes: 262144}"]).profile
    assert [lv.name for lv in p.levels] == ["dram", "sram_1MB", "l2", "ibuf_32KB", "acc_32KB"]
    assert p.levels[2].read_energy_pj == p.levels[1].read_energy_pj and p.levels[2].size_bytes == 262144
    p = load_design("edge_npu", ["levels.sram_1MB=~"]).profile
    assert [lv.name for lv in p.levels] == ["dram", "ibuf_32KB", "acc_32KB"]


def test_merge_a_mapping() -> None:
    p = load_design("edge_npu", ["array={rows: 16, cols: 64}"]).profile
    assert (p.array.rows, p.array.cols, p.array.mac_energy_pj) == (16, 64, 0.3)


@pytest.mark.parametrize("item, words", [
    ("array.rowz=3", ["--set array.rowz", "unknown key"]),
    ("array.rows=0", ["--set array.rows", "positive integer"]),
    ("levels.nope.size_bytes=1", ["--set levels.nope.size_bytes", "no level 'nope'"]),
    ("levels.dram=~", ["outermost"]),
    ("dataflow=diagonal", ["--set dataflow", "must be one of"]),
    ("nosuch.key=1", ["unknown key nosuch"]),
    ("array.rows", ["KEY=VALUE"]),
    ("technology_nm=-3", ["technology_nm", "positive"]),
    ("area.sram_efficiency=2", ["area.sram_efficiency"]),
])
def test_errors_name_the_key(item: str, words: list[str]) -> None:
    with pytest.raises(InputError) as err:
        load_design("edge_npu", [item])
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_cli_set_and_area_in_json(tmp_path) -> None:
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["-n", "resnet18", "--set", "array.rows=16", "--json", str(out)])
    assert r.exit_code == 0, r.output
    import json

    t = json.loads(out.read_text())["results"][0]["totals"]
    assert t["area_mm2"] > 0 and t["area"]["mac_array_mm2"] > 0
    bad = CliRunner().invoke(main, ["-n", "resnet18", "--set", "array.rows=x", "--json", str(tmp_path / "x.json")])
    assert bad.exit_code != 0 and "--set array.rows" in bad.output
    assert not (tmp_path / "x.json").exists()
