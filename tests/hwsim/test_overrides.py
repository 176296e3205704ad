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
    ("array.rows=0", ["--set array.rows", "edge_npu.yaml: array.rows: must be at least 1, got 0"]),
    ("array.rows=1e308", ["--set array.rows", "array.rows: "]),
    ("clock_hz=1e-320", ["--set clock_hz", "clock_hz: is below 1e-300"]),
    ("clock_hz=1e308", ["--set clock_hz", "clock_hz: must be at most 1e+11"]),
    ("static_power_w=.nan", ["--set static_power_w", "static_power_w: "]),
    ("levels.sram_1MB.read_energy_pj=.inf", ["--set levels.sram_1MB.read_energy_pj",
                                             "levels[1].read_energy_pj: "]),
    ("levels.dram.size_bytes=1e308", ["levels[0].size_bytes: must be at most 1e+15"]),
    ("levels.nope.size_bytes=1", ["--set levels.nope.size_bytes", "no level 'nope'"]),
    ("levels.dram=~", ["outermost"]),
    ("dataflow=diagonal", ["--set dataflow", "Input should be 'weight_stationary'"]),
    ("nosuch.key=1", ["unknown key nosuch"]),
    ("array.rows", ["KEY=VALUE"]),
    ("technology_nm=-3", ["technology_nm", "must be at least 1"]),
    ("technology_nm=1e300", ["--set technology_nm", "technology_nm: must be at most 1000"]),
    ("area.sram_efficiency=2", ["area.sram_efficiency"]),
    ("area.levels.dram=1", ["area: levels.dram: the outermost level is off-chip"]),
    ("spatial.rows=[K]", ["--set spatial.rows", "spatial.cols: missing key"]),
    ("array.rows=[1", ["--set array.rows: malformed YAML"]),
    ("levels.sram_1MB.operands.0=inputs", ["--set levels.sram_1MB.operands.0",
                                           "operands is a list; set it whole"]),
    ("spatial.alternatives.0.layers=dense", ["--set spatial.alternatives.0.layers",
                                             "the profile has no spatial; set it whole"]),
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


def test_an_absent_optional_section_is_created() -> None:
    """``area``, ``area.levels`` and ``spatial`` are declared by the schema: an override may create them on a
    profile that has none (before, ``--set area.levels.X=...`` was refused as an unknown key)."""
    d = load_design("edge_npu", ["area.levels.sram_1MB=2.5", "spatial={rows: [K], cols: [C]}"])
    assert d.extras == {"area": {"levels": {"sram_1MB": 2.5}}}
    assert d.profile.spatial is not None and d.profile.spatial.rows == ("K",) and d.profile.spatial.search


def _bomb(depth: int) -> str:
    """``area={levels: {sram_1MB: [...]}}``, its list holding 9**depth ones through ``depth`` aliases."""
    lists = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lists += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return "area={levels: {sram_1MB: [" + ", ".join(lists) + "]}}"


BOMB = _bomb(9)


def test_an_alias_bomb_in_a_value_is_refused_before_expansion(tmp_path) -> None:
    """A --set value is read by the bounded YAML reader a profile file is read by. Read by the plain loader,
    this value of 500 characters holds 9**9 numbers, and the one-line error that echoes it (``got [[1, ...``)
    printed them all first: ``_bomb(7)`` took a second, ``_bomb(9)`` hung."""
    import time

    began = time.perf_counter()
    with pytest.raises(InputError) as err:
        load_design("edge_npu", [BOMB])
    assert str(err.value).startswith("--set area: malformed YAML") and "alias" in str(err.value)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["-n", "resnet18", "--set", BOMB, "--json", str(out)])
    assert r.exit_code != 0 and "--set area" in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists() and time.perf_counter() - began < 5


def test_a_tiny_or_huge_number_fails_the_command_before_any_output(tmp_path) -> None:
    """``--set clock_hz=1e-320`` once printed inf/NaN and wrote a NaN literal into --json."""
    out = tmp_path / "r.json"
    for item in ("clock_hz=1e-320", "levels.dram.bandwidth_bytes_per_cycle=1e-320", "array.cols=1e308"):
        r = CliRunner().invoke(main, ["-n", "resnet18", "--set", item, "--json", str(out)])
        assert r.exit_code != 0 and f"--set {item.split('=')[0]}" in r.output, r.output
        assert "Traceback" not in r.output and not out.exists()
