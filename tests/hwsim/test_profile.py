"""Profiles: every bundled YAML loads and validates; bad files fail with one line naming file and key."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from hwsim import InputError, bundled_profiles, load_profile
from hwsim.fileio.bounded import parse_yaml
from hwsim.hardware.profile import OPERANDS, profile_from_dict

BUNDLED = ["edge_npu", "edge_tpu", "ethos_u55", "eyeriss", "zigzag_eyeriss_like", "zigzag_tpu_like"]


def test_all_issue_profiles_are_bundled() -> None:
    assert set(BUNDLED) <= set(bundled_profiles())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_profile_is_valid(name: str) -> None:
    p = load_profile(name)
    assert p.name == name
    assert p.clock_hz > 0 and p.array.pes > 0
    assert set(p.dram.operands) == set(OPERANDS)
    for operand in OPERANDS:
        assert p.chain(operand)[0] is p.dram


@pytest.mark.parametrize("name", BUNDLED)
def test_every_number_has_a_source_comment(name: str) -> None:
    """Each line that sets a number carries a comment (its source, or 'assumed')."""
    from importlib import resources

    text = (resources.files("hwsim") / "profiles" / f"{name}.yaml").read_text()
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if code.strip().lstrip("- ").startswith(("name:", "description:")):
            continue
        if ":" in code and any(ch.isdigit() for ch in code.split(":", 1)[1]):
            assert "#" in line, f"{name}.yaml: no source comment on {line.strip()!r}"


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _raw(name: str = "zigzag_tpu_like") -> dict:
    from importlib import resources

    return parse_yaml((resources.files("hwsim") / "profiles" / f"{name}.yaml").read_text(), "profile", ValueError)


def test_profile_by_path_equals_bundled(tmp_path: Path) -> None:
    assert load_profile(_write(tmp_path, _raw())) == load_profile("zigzag_tpu_like")


def test_exponent_without_sign_is_a_number(tmp_path: Path) -> None:
    raw = _raw()
    text = yaml.safe_dump(raw).replace("clock_hz: 1000000000.0", "clock_hz: 1.0e9")
    assert "1.0e9" in text  # PyYAML reads this as a string; the loader accepts it
    assert load_profile(_write(tmp_path, text)).clock_hz == 1e9


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda r: r.update(colour="red"), "colour: unknown key"),
        (lambda r: r.pop("clock_hz"), "clock_hz: missing key"),
        (lambda r: r["array"].pop("rows"), "array.rows: missing key"),
        (lambda r: r["array"].update(rows=0), "array.rows: must be at least 1, got 0"),
        (lambda r: r["array"].update(rows=2.5), "array.rows: "),
        (lambda r: r["array"].update(rows="eight"), "array.rows: "),
        (lambda r: r["array"].update(rows=True), "array.rows: must be a number"),
        (lambda r: r["levels"][1].update(size_bytes=-5), "levels[1].size_bytes: must be at least 1, got -5"),
        (lambda r: r["levels"][1].update(bandwidth_bytes_per_cycle=0), "levels[1].bandwidth_bytes_per_cycle"),
        (lambda r: r["levels"][1].update(sizes=3), "levels[1].sizes: unknown key"),
        (lambda r: r["levels"][1].pop("word_bits"), "levels[1].word_bits: missing key"),
        (lambda r: r["levels"][1].update(operands=["weights", "psums"]), "levels[1].operands"),
        (lambda r: r["precision_bits"].update(weights=0), "precision_bits.weights"),
        (lambda r: r.update(dataflow="magic"), "dataflow: Input should be 'weight_stationary'"),
        (lambda r: r["levels"].reverse(), "levels: the outermost level (levels[0], 'rf_2B') must hold"),
        (lambda r: r["levels"][2].update(name="sram_2MB"), "levels: level names must be unique: levels[2]"),
        (lambda r: r["levels"][1].update(per_pe=True) or r["levels"][3].update(per_pe=False),
         "levels: outputs: per_pe levels must be the innermost holding it, but per_pe 'sram_2MB' is above the "
         "shared 'rf_2B'"),
        (lambda r: r["levels"][1].update(operands=["inputs", "inputs"]), "levels[1].operands: each operand"),
        (lambda r: r.update(levels=[]), "levels: "),
        (lambda r: r["spatial"].update(cols=["K", "K"]), "spatial.cols: each dimension may be listed once"),
        (lambda r: r["spatial"]["alternatives"][0].update(rows=["OX", "OX"]),
         "spatial.alternatives[0].rows: each dimension may be listed once"),
        (lambda r: r["spatial"]["alternatives"][1].update(layers="grouped"), "spatial.alternatives[1].layers"),
        (lambda r: r["spatial"]["alternatives"][0].update(divisors=["diagonal"]), "spatial.alternatives[0].divisors"),
        (lambda r: r["spatial"]["alternatives"][0].update(divisors=["rows", "rows"]),
         "spatial.alternatives[0].divisors: each axis may be listed once"),
        (lambda r: r["levels"][0].update(shared_port=True), "levels: the outermost level (levels[0], 'dram') always"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][1].update(burst_bytes=1.5),
         "levels[1].burst_bytes: "),
        (lambda r: r.update(latency_model="roofline") or r["levels"][1].update(burst_bytes=2 ** 40),
         "levels[1].burst_bytes: a burst of 1099511627776 bytes is larger than the level"),
        (lambda r: r["levels"][1].update(max_run_elements={"inputs": 4}),
         "levels[1].max_run_elements: runs only matter with burst_bytes"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][-1].update(burst_bytes=2,
                                                                                max_run_elements={"weights": 1}),
         ".max_run_elements: weights: not held by this level"),
        (lambda r: r["levels"][1].update(burst_bytes=32), "latency_model: burst_bytes (levels "),
        (lambda r: r["levels"][1].update(input_block_depth={"granule": 8, "max": 32, "depthwise_max": 16}),
         "levels[1].input_block_depth: input blocks only matter with burst_bytes"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][-1].update(
            burst_bytes=2, input_block_depth={"granule": 8, "max": 32, "depthwise_max": 16}),
         ".input_block_depth: the level does not hold inputs"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][1].update(
            burst_bytes=32, input_block_depth={"granule": 8, "max": 4, "depthwise_max": 16}),
         "levels[1].input_block_depth.max: 4 is shallower than the granule (8)"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][1].update(
            burst_bytes=32, input_block_depth={"granule": 8, "max": 32}),
         "levels[1].input_block_depth.depthwise_max"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][1].update(
            burst_bytes=32, input_block_depth={"granule": 8, "max": 20, "depthwise_max": 16}),
         "levels[1].input_block_depth.max: not a multiple of the granule (8): a block is whole granules, "
         "got 20"),
        (lambda r: r.update(latency_model="roofline") or r["levels"][1].update(
            burst_bytes=32, input_block_depth={"granule": 8, "max": 32, "depthwise_max": 12}),
         "levels[1].input_block_depth.depthwise_max: not a multiple of the granule (8): a block is whole "
         "granules, got 12"),
        (lambda r: r.update(search={"pe_split": ["outputs", "inputs"]}),
         "search: pe_split: inputs: no per_pe level holds it, so the split would do nothing (per_pe levels "
         "hold: weights, outputs)"),
        (lambda r: [lv.update(per_pe=False) for lv in r["levels"]]
         and r.update(search={"pe_split": ["outputs"]}),
         "search: pe_split: outputs: no per_pe level holds it"),
        (lambda r: r.update(name=""), "name: "),
        (lambda r: r.update(area={"levels": {"dram": 1}}), "area: levels.dram: the outermost level is off"),
        (lambda r: r.update(area={"mac": 1}), "area.mac: unknown key"),
    ],
)
def test_bad_profile_names_file_and_key(tmp_path: Path, mutate, key: str) -> None:
    raw = _raw()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(InputError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message and key in message
    assert "\n" not in message


def test_the_default_pe_split_is_quiet_without_a_per_pe_level(tmp_path: Path) -> None:
    """Only a `pe_split` the file gives is checked against the per-PE levels: edge_npu has none, and its
    search section without `pe_split` (the default `[outputs]`, a no-op there) loads; naming outputs does
    not."""
    raw = _raw("edge_npu")
    assert not any(lv.get("per_pe") for lv in raw["levels"])
    raw["search"] = {"lpf_limit": 7}
    assert load_profile(_write(tmp_path, raw)).search.pe_split == ("outputs",)
    raw["search"]["pe_split"] = ["outputs"]
    with pytest.raises(InputError, match=r"p\.yaml: search: pe_split: outputs: no per_pe level holds it.*"
                                         r"\(per_pe levels hold: none\)"):
        load_profile(_write(tmp_path, raw))
    raw["search"]["pe_split"] = []
    assert load_profile(_write(tmp_path, raw)).search.pe_split == ()


def test_malformed_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\nlevels: [unclosed\n")
    with pytest.raises(InputError, match="malformed YAML"):
        load_profile(path)


def test_unknown_bundled_name() -> None:
    with pytest.raises(InputError, match="unknown profile 'nope'"):
        load_profile("nope")


def test_static_power_is_charged_times_latency_and_reported_apart() -> None:
    import dataclasses

    from hwsim import Layer, Workload, simulate

    layer = Layer("c", "conv", 64, 64, (3, 3), (1, 1), (1, 1), 1, (28, 28), (28, 28))
    p = load_profile("edge_npu")
    base = simulate(Workload("x", (layer,)), p)
    hot = simulate(Workload("x", (layer,)), dataclasses.replace(p, static_power_w=0.5))
    static = hot.energy_by()[("static", "static")]
    assert static == pytest.approx(0.5 * hot.latency_s)
    assert hot.energy_j == pytest.approx(base.energy_j + static)
    assert hot.to_dict()["totals"]["energy_by_operand_j"]["static"] == pytest.approx(static)


def test_profile_spatial_and_static_power_keys_are_validated(tmp_path) -> None:

    raw = parse_yaml((Path(__file__).parents[2] / "hwsim" / "profiles" / "zigzag_tpu_like.yaml").read_text(), "profile", ValueError)
    raw["spatial"]["rows"] = ["Q"]
    with pytest.raises(InputError, match="spatial.rows"):
        profile_from_dict(raw, "x.yaml")
    raw["spatial"]["rows"] = ["C"]
    raw["static_power_w"] = -1
    with pytest.raises(InputError, match="static_power_w"):
        profile_from_dict(raw, "x.yaml")


@pytest.fixture
def bundled_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Factory: the bundled profiles, with ``extra`` YAML appended to ``edge_npu.yaml``, as the bundled set."""
    import shutil
    from importlib import resources

    import hwsim.hardware.profile

    def make(extra: str) -> Path:
        folder = tmp_path / "profiles"
        shutil.copytree(Path(str(resources.files("hwsim") / "profiles")), folder, dirs_exist_ok=True)
        with open(folder / "edge_npu.yaml", "a", encoding="utf-8") as handle:
            handle.write(f"\n{extra}\n")
        monkeypatch.setattr(hwsim.hardware.profile, "PROFILES", folder)
        return folder

    return make


def _every_loader(tmp_path: Path, run: Path) -> dict[str, object]:
    """Load ``edge_npu`` through each way in: the library, --list-profiles, --report, an explore spec.
    Each value is None when it loaded, else the one-line error."""
    from click.testing import CliRunner

    from hwsim.explore.spec import load_spec
    from hwsim.ksm_sim import main

    out: dict[str, object] = {}
    try:
        load_profile("edge_npu")
        out["load_profile"] = None
    except InputError as exc:
        out["load_profile"] = str(exc)
    for name, args in (("--list-profiles", ["--list-profiles"]),
                       ("--report", ["--masks", str(run), "--report", str(tmp_path / "report")])):
        result = CliRunner().invoke(main, args)
        out[name] = None if result.exit_code == 0 else result.output.strip()
    spec = tmp_path / "spec.yaml"
    spec.write_text("profiles: [edge_npu]\nworkloads: [{network: resnet18}]\n")
    try:
        load_spec(spec)
        out["spec"] = None
    except InputError as exc:
        out["spec"] = str(exc)
    return out


def test_one_loader_takes_technology_nm_everywhere(bundled_with, run_folder, tmp_path: Path) -> None:
    """``technology_nm:`` (documented in hwsim.hardware.area) loads through every way in, as the explore
    loader always took it; before, load_profile, --list-profiles and --report refused it."""
    bundled_with("technology_nm: 28  # a node, for the area model")
    assert _every_loader(tmp_path, run_folder()) == dict.fromkeys(["load_profile", "--list-profiles", "--report",
                                                                    "spec"])
    from hwsim.hardware.profile import load_design

    assert load_design("edge_npu").extras == {"technology_nm": 28}


def test_one_loader_refuses_an_unknown_key_everywhere_naming_it(bundled_with, run_folder, tmp_path: Path) -> None:
    bundled_with("voltage_v: 0.8")
    for way, error in _every_loader(tmp_path, run_folder()).items():
        assert error is not None and "edge_npu.yaml: voltage_v: unknown key" in str(error), (way, error)
        assert "\n" not in str(error), (way, error)


def test_every_key_reads_a_number_the_same_way(tmp_path: Path) -> None:
    """YAML 1.1 reads ``2.8e1`` (no exponent sign) as a string; the loader takes it as the number it means for
    every key alike: the area keys once refused the spelling that the clock accepted."""
    from hwsim.hardware.area import area_breakdown
    from hwsim.hardware.profile import load_design

    text = (resources.files("hwsim") / "profiles" / "edge_npu.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(re.sub(r"(?m)^clock_hz:.*$", "clock_hz: 9.33e8", text).rstrip() + "\ntechnology_nm: 2.8e1\n")
    design = load_design(str(path))
    assert design.profile.clock_hz == pytest.approx(9.33e8)
    assert area_breakdown(design.profile, design.extras)["technology_nm"] == pytest.approx(28.0)


def _numbers(node: object, path: str = "") -> list[str]:
    """The dotted paths (``levels[1].size_bytes``) of every number in a decoded profile."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _numbers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _numbers(v, f"{path}[{i}]")]
    number = isinstance(node, (int, float, str)) and not isinstance(node, bool) and _is_number(node)
    return [path] if number else []


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def _put(raw: dict, path: str, value: object) -> None:
    keys = re.findall(r"[^.\[\]]+", path)
    node: object = raw
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value  # type: ignore[index]


def test_every_number_has_a_physical_range() -> None:
    """1e-320 and 1e308 in any number of a profile (the area keys included) once gave ``inf`` and ``NaN`` in
    the tables, a ``NaN`` literal in --json, or an OverflowError (``rows: 1e308``); each is now one line
    naming the key, as are NaN and infinity."""
    import copy

    base = _raw("edge_npu")
    base.update(technology_nm=28, static_power_w=0.5,
                area={"mac_um2": 600, "sram_bitcell_um2": 0.3, "sram_efficiency": 0.7,
                      "sram_port_bit_um2": 20, "register_bit_um2": 4.5, "other_mm2": 0.5,
                      "levels": {"sram_1MB": 3.1}})
    paths = _numbers(base)
    assert len(paths) > 40 and {"area.levels.sram_1MB", "levels[3].bandwidth_bytes_per_cycle"} <= set(paths)
    profile_from_dict(base, "p.yaml")
    for path in paths:
        for value in (1e-320, -1e-320, 1e308, -1e308, float("nan"), float("inf"), "1.0e400", 10 ** 25):
            raw = copy.deepcopy(base)
            _put(raw, path, value)
            with pytest.raises(InputError) as info:
                profile_from_dict(raw, "p.yaml")
            assert str(info.value).startswith(f"p.yaml: {path}: "), (path, value, str(info.value))


ZERO_TO_MAX = (0.0, 1e-299, 1e-9, 1e9)
PRECISIONS = ("weights", "inputs", "psums", "outputs", "mask_scale", "batchnorm")


def _extreme_profile(low: bool, energy: float) -> dict:
    """A profile with every number at one end of its range (and every energy ``energy``)."""
    from hwsim.schemas import profile_file as s

    def level(name: str, operands: list[str], per_pe: bool = False) -> dict:
        return {"name": name, "size_bytes": 1 if low else s.MAX_SIZE_BYTES,
                "word_bits": 1 if low else s.MAX_WORD_BITS, "read_energy_pj": energy,
                "write_energy_pj": energy, "operands": operands, "per_pe": per_pe,
                "bandwidth_bytes_per_cycle": s.MIN_BANDWIDTH if low else s.MAX_BANDWIDTH}

    side, bits = (1, 1) if low else (s.MAX_ARRAY_SIDE, s.MAX_PRECISION_BITS)
    raw = {"name": "extreme", "description": "every number at one end of its range",
           "clock_hz": s.MIN_CLOCK_HZ if low else s.MAX_CLOCK_HZ, "dataflow": "weight_stationary",
           "array": {"rows": side, "cols": side, "mac_energy_pj": energy},
           "precision_bits": dict.fromkeys(PRECISIONS, bits),
           "mask_op_energy_pj": {"gate": energy, "multiply": energy},
           "levels": [level("dram", list(OPERANDS)), level("sram", list(OPERANDS)),
                      level("rf", ["weights"], True)],
           "static_power_w": 0 if low else s.MAX_STATIC_POWER_W,
           "technology_nm": s.MIN_NODE_NM if low else s.MAX_NODE_NM}
    if not low:
        raw["area"] = {"mac_um2": s.MAX_UM2, "sram_bitcell_um2": s.MAX_UM2, "sram_port_bit_um2": s.MAX_UM2,
                       "sram_efficiency": s.MIN_SRAM_EFFICIENCY, "register_bit_um2": s.MAX_UM2,
                       "other_mm2": s.MAX_MM2}
    return raw


@pytest.mark.parametrize("low", [True, False])
@pytest.mark.parametrize("energy", ZERO_TO_MAX)
def test_a_profile_at_its_bounds_gives_finite_tables_and_json(tmp_path: Path, low: bool,
                                                               energy: float) -> None:
    """The ranges are chosen so that every product and quotient of the cost and area models stays finite: a
    profile with every number at an end of its range prints no inf/nan and writes strict JSON."""
    import json

    from click.testing import CliRunner

    from hwsim.ksm_sim import main

    profile = _write(tmp_path, _extreme_profile(low, energy))
    topology = tmp_path / "t.csv"
    topology.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                        "Num Filter, Strides,\nc1, 8, 8, 3, 3, 3, 8, 1,\n")
    out = tmp_path / "cost.json"
    result = CliRunner().invoke(main, ["-p", str(profile), "-t", str(topology), "--method", "ksm", "--layers",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert not re.search(r"\b(inf|nan)\b", result.output, re.IGNORECASE)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in --json")

    document = json.loads(out.read_text(), parse_constant=refuse)
    assert document["results"][0]["totals"]["area_mm2"] > 0


@pytest.mark.parametrize(("line", "field"), [("clock_hz: '9.33e8'", "clock_hz"),
                                             ("clock_hz: \"1e9\"", "clock_hz")])
def test_a_quoted_number_is_text_and_refused(tmp_path: Path, line: str, field: str) -> None:
    """YAML numbers are resolved as YAML 1.2 does (``1.0e9`` unquoted is a number), so a quoted one is text,
    which the schema refuses rather than guessing that it meant a number."""
    text = (resources.files("hwsim") / "profiles" / "edge_npu.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(line if ln.startswith("clock_hz:") else ln for ln in text.splitlines()))
    with pytest.raises(InputError, match=rf"p.yaml: {field}: Input should be a valid number"):
        load_profile(path)
    path.write_text(text.replace("clock_hz:", "clock_hz: 1.0e9 #", 1))
    assert load_profile(path).clock_hz == 1e9


@pytest.mark.parametrize(("unit", "message"), [
    ({"ops_per_cycle": 1e-300, "energy_pj_per_op": 0.1}, "vector_unit.ops_per_cycle: must be at least 0.001"),
    ({"ops_per_cycle": 8, "energy_pj_per_op": 0.1, "ops_per_cycle_by_kind": {"pool": 0}}, "must be at least 0.001"),
    ({"ops_per_cycle": 8, "energy_pj_per_op": 0.1, "ops_per_cycle_by_kind": {"conv": 8}}, "ops_per_cycle_by_kind"),
    ({"ops_per_cycle": "8", "energy_pj_per_op": 0.1}, "vector_unit.ops_per_cycle"),
])
def test_a_vector_unit_is_a_real_unit(unit: dict, message: str) -> None:
    """A rate of 1e-300 operations per cycle once turned a latency into inf (a hostile review's finding)."""
    from hwsim.hardware.profile import design_from_raw, read_raw_profile

    raw, _ = read_raw_profile("edge_npu")
    with pytest.raises(InputError, match=message):
        design_from_raw({**raw, "vector_unit": unit}, "p.yaml")


def test_a_profile_without_a_vector_unit_says_it_uses_the_mac_array() -> None:
    p = load_profile("edge_tpu")
    assert p.vector_unit is None and p.vector.assumed and p.vector.ops_per_cycle == p.array.pes
    assert "the MAC array" in p.vector.describe()
    u55 = load_profile("ethos_u55").vector
    assert not u55.assumed and u55.rate("elementwise") == pytest.approx(1.3333)
    assert u55.pooling is not None and u55.pooling.tap_cycles == 4 and "MAC engine" in u55.describe()


def test_pooling_on_the_mac_engine_needs_its_micro_blocks_and_one_cost() -> None:
    """vector_unit.pooling counts weight_sets' micro-blocks, so a profile without them is refused; a pooling rate
    beside it would be ignored, so that is refused too."""
    from hwsim.hardware.profile import design_from_raw, read_raw_profile

    raw, _ = read_raw_profile("ethos_u55")
    with pytest.raises(InputError, match="weight_sets: .*give weight_sets too"):
        design_from_raw({k: v for k, v in raw.items() if k != "weight_sets"}, "p.yaml")
    unit = {**raw["vector_unit"], "ops_per_cycle_by_kind": {"global_pool": 8}}
    with pytest.raises(InputError, match="ops_per_cycle_by_kind.global_pool is not used when pooling is given"):
        design_from_raw({**raw, "vector_unit": unit}, "p.yaml")
    unit = {**raw["vector_unit"], "pooling": {**raw["vector_unit"]["pooling"], "global_pool": "mean"}}
    with pytest.raises(InputError, match="global_pool"):
        design_from_raw({**raw, "vector_unit": unit}, "p.yaml")
