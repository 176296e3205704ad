"""``ksm-sim --export zigzag`` reproduces ``ksm-sim`` in ZigZag 3.9.1: the written files, and ZigZag's results.

The files are checked for what makes ZigZag count as ``ksm-sim`` does (port widths and granules, energies per
access, precisions, each layer's mapping as ZigZag's complete ``temporal_ordering``). ZigZag's own results
are data: ``fixtures/zigzag_export/zigzag_results.json``, written by ``scripts/zigzag_roundtrip.py`` (which
exports with ``ksm-sim`` and runs ZigZag in a throwaway venv); CI needs no ZigZag. Targets (issue 25):
energy within 2 %, cycles within 5 %, per layer. Where the two models differ (not the export), the case is
a strict xfail naming the difference (``docs/interop.md``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path

import pytest
import yaml

from hwsim import Layer, Workload, load_network, load_profile
from hwsim.cost.layer_cost import layer_cost
from hwsim.interop.zigzag_files import (GRANULE_BITS, MASKS_NOT_EXPORTED, ZigzagExportWarning, exported_cycles,
                                        exported_energy_pj, write_zigzag)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "zigzag_export" / "zigzag_results.json"
CASES = json.loads(FIXTURE.read_text())["cases"]
_spec = importlib.util.spec_from_file_location("zigzag_roundtrip", ROOT / "scripts" / "zigzag_roundtrip.py")
roundtrip = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(roundtrip)  # type: ignore[union-attr]

ENERGY_TOL, CYCLES_TOL = 0.02, 0.05
# (case, layer, "energy" | "cycles") -> the modelling difference behind it (strict: passes -> remove the entry)
ONLOAD_SUM = ("on-loading: ksm-sim takes the larger of the first weight and input tiles; ZigZag adds them when "
              "they come through the same DRAM and SRAM ports, and adds the off-loading of every level in series")
PERIOD_STALL = ("DRAM stall: ZigZag loads each weight tile within one period of the loop above it; ksm-sim "
                "counts the DRAM traffic after the first tile against the whole compute time")
KNOWN = {
    ("edge_npu/depthwise", "dw_3x3", "energy"): (
        "outputs whose reduction is all spatial (FX x FY on the rows): ksm-sim reads every partial sum back once "
        "and keeps it at 32-bit psum width in acc_32KB (sizing the tile at that width too); ZigZag writes each "
        "output once at its 8-bit final width and fits a larger tile"),
    ("edge_npu/depthwise", "dw_3x3", "cycles"): "the different acc_32KB tile (see energy) moves the ibuf stall",
    ("edge_npu/resnet18", "layer3.0.downsample.0", "cycles"): ONLOAD_SUM,
    ("edge_npu/resnet18", "layer4.0.downsample.0", "cycles"): ONLOAD_SUM,
    ("edge_npu/resnet18", "layer4.0.conv2", "cycles"): PERIOD_STALL,
    ("edge_npu/resnet18", "layer4.1.conv1", "cycles"): PERIOD_STALL,
    ("edge_npu/resnet18", "layer4.1.conv2", "cycles"): PERIOD_STALL,
}


def workload_of(case: dict) -> Workload:
    what = case["workload"]
    if what in roundtrip.LAYERS:
        t = roundtrip.layer_table(what)["layers"][0]
        return Workload(what, (Layer(t["name"], t["kind"], t["in_channels"], t["out_channels"], tuple(t["kernel"]),
                                     tuple(t["stride"]), tuple(t["padding"]), t["groups"], tuple(t["input_hw"]),
                                     tuple(t["output_hw"])),))
    return load_network(what)


def export(tmp_path: Path, work: Workload, profile_name: str) -> tuple[list, dict, dict]:
    write_zigzag(work, load_profile(profile_name), tmp_path)
    return tuple(yaml.safe_load((tmp_path / f).read_text())  # type: ignore[return-value]
                 for f in ("workload.yaml", "accelerator.yaml", "mapping.yaml"))


# --------------------------------------------------------------------------------------------
# the files


@pytest.mark.parametrize("profile_name", ["edge_npu", "zigzag_tpu_like", "eyeriss"])
def test_ports_energies_and_precisions(tmp_path: Path, profile_name: str) -> None:
    """bandwidth_max = the level's bits per cycle; bandwidth_min = 8 bits on a shared memory (ZigZag rounds
    nothing away from ksm-sim's per-bit count; 2048 made tpu_like's SRAM cost 30.6 uJ instead of 19.8) and
    the word on a per-PE one; r_cost = the profile's energy per word x the words in bandwidth_max."""
    prof = load_profile(profile_name)
    layers, acc, _ = export(tmp_path, load_network("resnet18"), profile_name)
    levels = {lv.name: lv for lv in prof.levels}
    assert list(acc["memories"]) == [lv.name for lv in reversed(prof.levels)]  # no extra memory, innermost first
    for name, mem in acc["memories"].items():
        lv = levels[name]
        width = round(lv.bandwidth_bytes_per_cycle * 8)
        granule = lv.word_bits if lv.per_pe else GRANULE_BITS
        assert mem["served_dimensions"] == ([] if lv.per_pe else ["D1", "D2"])
        assert len(mem["ports"]) == (1 if lv is prof.levels[0] else 2)
        for port in mem["ports"]:
            assert port["bandwidth_min"] == granule and port["bandwidth_max"] == max(width, granule), (name, port)
        top = mem["ports"][0]["bandwidth_max"]
        assert mem["r_cost"] == pytest.approx(lv.read_energy_pj * top / lv.word_bits, rel=1e-8)
        assert mem["w_cost"] == pytest.approx(lv.write_energy_pj * top / lv.word_bits, rel=1e-8)
        assert mem["size"] == round(lv.size_bytes * 8)
    pb = prof.precision_bits
    for entry in layers:
        assert entry["operand_precision"] == {"W": pb.weights, "I": pb.inputs, "O": pb.psums, "O_final": pb.outputs}


def test_mapping_is_ksm_sims_and_complete(tmp_path: Path) -> None:
    """Each layer's entry is the mapping ksm-sim costs it with, and a complete ordering for ZigZag (the
    factors of every dimension multiply to ceil(size / spatial ways), else ZigZag ignores it and searches)."""
    work, prof = load_network("resnet18"), load_profile("edge_npu")
    layers, _, mapping = export(tmp_path, work, "edge_npu")
    by_name = {m["name"]: m for m in mapping}
    assert mapping[0]["name"] == "default"
    for layer, entry in zip(work.layers, layers):
        m = by_name[entry["name"]]
        chosen = layer_cost(layer, prof).mapping
        assert m["spatial_mapping"]["D1"] == [f"{d}, {u}" for d, u in chosen["spatial"]["rows"]]
        assert m["spatial_mapping"]["D2"] == [f"{d}, {u}" for d, u in chosen["spatial"]["cols"]]
        loops = [list(x) for x in next(iter(chosen["temporal_innermost_first"].values())).values()]
        assert m["temporal_ordering"] == [x for level in loops for x in level]
        sizes = dict(zip(entry["loop_dims"], entry["loop_sizes"]))
        ways: dict[str, int] = {}
        for s in m["spatial_mapping"]["D1"] + m["spatial_mapping"]["D2"]:
            d, u = s.split(", ")
            ways[d] = ways.get(d, 1) * int(u)
        temporal: dict[str, int] = {}
        for d, f in m["temporal_ordering"]:
            temporal[d] = temporal.get(d, 1) * f
        wanted = {d: -(-n // ways.get(d, 1)) for d, n in sizes.items()}
        assert {d: f for d, f in temporal.items() if f > 1} == {d: f for d, f in wanted.items() if f > 1}, layer.name


def test_masks_are_not_exported_and_say_so(tmp_path: Path) -> None:
    work = Workload("runs/cubs", load_network("resnet18").layers, task="cubs", method="ksm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_zigzag(work, load_profile("edge_npu"), tmp_path)
    lines = [str(w.message) for w in caught if issubclass(w.category, ZigzagExportWarning)]
    assert len(lines) == 1 and MASKS_NOT_EXPORTED in lines[0] and "\n" not in lines[0]
    assert "masks are not exported" in (tmp_path / "README.md").read_text().lower()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_zigzag(load_network("resnet18"), load_profile("edge_npu"), tmp_path / "plain")  # no method: silent


def test_fixture_command_is_recorded() -> None:
    readme = (FIXTURE.parent / "README.md").read_text()
    assert "scripts/zigzag_roundtrip.py" in readme and "zigzag-dse==3.9.1" in readme


# --------------------------------------------------------------------------------------------
# ZigZag's results (fixture) against ksm-sim's


def _params(what: str):
    out = []
    for case in CASES:
        for row in case["layers"]:
            reason = KNOWN.get((case["case"], row["name"], what))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(case, row, id=f"{case['case']}:{row['name']}", marks=marks))
    return out


def _ksm_sim(case: dict, row: dict, tmp_path: Path):
    work, prof = workload_of(case), load_profile(case["profile"])
    layer = next(layer for layer in work.layers if layer.name == row["name"])
    _, _, mapping = export(tmp_path, Workload(work.source, (layer,)), case["profile"])
    exported = {k: mapping[1][k] for k in ("spatial_mapping", "temporal_ordering")}
    assert exported == row["exported_mapping"], (
        f"{row['name']}: ksm-sim now maps this layer differently from the fixture's run; rerun "
        f"scripts/zigzag_roundtrip.py --case {case['case']} (docs/interop.md)")
    return layer_cost(layer, prof), prof


@pytest.mark.parametrize(("case", "row"), _params("energy"))
def test_energy_within_2_percent(case: dict, row: dict, tmp_path: Path) -> None:
    cost, prof = _ksm_sim(case, row, tmp_path)
    ratio = row["energy_pj"] / exported_energy_pj(cost, prof)
    assert abs(ratio - 1) <= ENERGY_TOL, f"energy ZigZag/ksm-sim = {ratio:.4f}"


@pytest.mark.parametrize(("case", "row"), _params("cycles"))
def test_cycles_within_5_percent(case: dict, row: dict, tmp_path: Path) -> None:
    cost, _ = _ksm_sim(case, row, tmp_path)
    ratio = row["cycles"] / exported_cycles(cost)
    assert abs(ratio - 1) <= CYCLES_TOL, (f"cycles ZigZag/ksm-sim = {ratio:.4f} (ZigZag stall {row['stall_cycles']:.0f}, "
                                          f"onload {row['onload_cycles']:.0f}, offload {row['offload_cycles']:.0f}; "
                                          f"ksm-sim {cost.stall_cycles:.0f}, {cost.onload_cycles:.0f}, "
                                          f"{cost.offload_cycles:.0f})")


def test_resnet18_totals() -> None:
    """The whole network on edge_npu, layers costed alone: ZigZag's total within 2 % (energy) and 5 % (cycles)."""
    case = next(c for c in CASES if c["case"] == "edge_npu/resnet18")
    prof = load_profile("edge_npu")
    costs = [layer_cost(layer, prof) for layer in load_network("resnet18").layers]
    energy = math.fsum(exported_energy_pj(c, prof) for c in costs)
    cycles = math.fsum(exported_cycles(c) for c in costs)
    assert abs(case["zigzag_energy_pj"] / energy - 1) <= ENERGY_TOL
    assert abs(case["zigzag_cycles"] / cycles - 1) <= CYCLES_TOL


def table() -> list[str]:
    """docs/interop.md's table: per case, ZigZag's and ksm-sim's energy (uJ) and cycles, and their ratios."""
    out = ["| case | ZigZag (uJ) | ksm-sim (uJ) | energy ratio | ZigZag cycles | ksm-sim cycles | cycle ratio |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for case in CASES:
        prof, work = load_profile(case["profile"]), workload_of(case)
        names = {row["name"] for row in case["layers"]}
        costs = [layer_cost(layer, prof) for layer in work.layers if layer.name in names]
        energy = math.fsum(exported_energy_pj(c, prof) for c in costs)
        cycles = math.fsum(exported_cycles(c) for c in costs)
        zz_e, zz_c = math.fsum(r["energy_pj"] for r in case["layers"]), math.fsum(r["cycles"] for r in case["layers"])
        out.append(f"| `{case['case']}` ({len(costs)} layer{'s' if len(costs) > 1 else ''}) | {zz_e / 1e6:,.2f} | "
                   f"{energy / 1e6:,.2f} | {zz_e / energy:.4f} | {zz_c:,.0f} | {cycles:,.0f} | {zz_c / cycles:.4f} |")
    return out


if __name__ == "__main__":
    print("\n".join(table()))
