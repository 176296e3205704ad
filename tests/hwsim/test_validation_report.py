"""The validation report (``scripts/validation_report.py``, ``reports/validation/``) says what the agreement tests
say: every fixture case appears once, each ratio is predicted / reference, each verdict is the agreement test's
own pass or fail (its strict expected failures shown as misses with their reason), the Markdown tables are well
formed, and the committed report and README block are what the generator writes now, so a change of the cost
model that moves a number fails here until ``.venv/bin/python scripts/validation_report.py reports/validation``
is rerun.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "hwsim" / "fixtures"
REGENERATE = ".venv/bin/python scripts/validation_report.py reports/validation"


def _load_script():
    spec = importlib.util.spec_from_file_location("validation_report", ROOT / "scripts" / "validation_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["validation_report"] = module
    spec.loader.exec_module(module)
    return module


vr = _load_script()


@pytest.fixture(scope="module")
def points():
    return vr.collect()


def _of(points, source: str, case: str | None = None) -> list:
    return [p for p in points if p.source == source and (case is None or p.case == case)]


def passes(test: Callable, *args) -> bool:
    """Whether one agreement test passes when called directly (its asserts are the target)."""
    try:
        test(*args)
    except AssertionError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Every fixture case, once


def test_every_point_appears_once(points) -> None:
    keys = Counter((p.source, p.case, p.quantity) for p in points)
    assert [k for k, n in keys.items() if n > 1] == []
    assert {p.source for p in points} == {s.key for s in vr.SOURCES}


def test_every_zigzag_case_appears_with_each_quantity(points) -> None:
    cases = vr.test_module("test_agreement_zigzag").CASES  # the fixture files as the collection read them
    more = FIXTURES / "zigzag_cases_more.json"
    extra = vr.test_module("test_agreement_zigzag_more").CASES if more.exists() else []
    assert len(cases) == len(json.loads((FIXTURES / "zigzag_cases.json").read_text())["cases"])
    got = Counter(p.case for p in _of(points, "zigzag"))
    assert set(got) == {c["case"] for c in cases + extra}
    for c in cases:
        assert got[c["case"]] == 5, c["case"]  # three DRAM operands, energy, cycles
    for c in extra:
        assert got[c["case"]] == 6, c["case"]  # and the partial sums read back


def test_every_timeloop_entry_appears(points) -> None:
    g = vr.test_module("test_given_mapping")
    for case in g.CASES:
        entries = {f"{level} {o} {rw}" for level, o, rw, _, _ in g.compare(case)}
        mine = [p.quantity for p in _of(points, "timeloop", case)]
        assert set(mine) - {"compute cycles (exact)"} == entries, case
    conventions = {(p.case, p.quantity) for p in _of(points, "timeloop") if p.verdict == vr.CONVENTION}
    assert conventions == {(case, f"{level} {o} {rw}") for case, level, o, rw in g.CONVENTIONS}


def test_every_vela_coral_and_eyeriss_case_appears(points) -> None:
    v = vr.test_module("test_agreement_vela")
    layers = {p.case for p in _of(points, "vela") if p.panel == vr.VELA_LAYERS}
    assert layers == set(v.SINGLE_LAYERS)
    assert len(_of(points, "vela", "mobilenet_v2")) == 2  # the total and the per-layer median
    c = vr.test_module("test_agreement_coral")
    assert len(_of(points, "coral")) == len(c.RECORDS)
    e = vr.test_module("test_agreement_eyeriss")
    for layer in e.TABLE_V:
        assert sorted(p.quantity for p in _of(points, "eyeriss", layer.upper())) == [
            "DRAM traffic (B)", "active PEs", "latency"]


# ---------------------------------------------------------------------------------------------------------------
# Ratios and verdicts


def test_ratios_are_predicted_over_reference(points) -> None:
    for p in points:
        if p.reference is None:
            assert p.predicted is None and p.ratio == p.ratio_only
        elif p.reference == 0:
            assert p.ratio is None
        else:
            assert p.ratio == pytest.approx(p.predicted / p.reference, rel=1e-12)
        assert p.verdict in (vr.YES, vr.NO, vr.CONVENTION)
        assert (p.verdict == vr.CONVENTION) == (p.source == "timeloop" and p.note.startswith("counting convention"))


def _group_ok(pts) -> bool:
    assert pts, "no points for this test"
    return all(p.verdict != vr.NO for p in pts)


def test_zigzag_verdicts_are_the_tests(points) -> None:
    z = vr.test_module("test_agreement_zigzag")
    for case in z.CASES:
        mine = _of(points, "zigzag", case["case"])
        for test, panel in ((z.test_dram_bytes_per_operand, vr.ZZ_DRAM), (z.test_total_energy, vr.ZZ_ENERGY),
                            (z.test_cycles, vr.ZZ_CYCLES)):
            assert passes(test, case) == _group_ok([p for p in mine if p.panel == panel]), (case["case"], panel)
    if (FIXTURES / "zigzag_cases_more.json").exists():
        zm = vr.test_module("test_agreement_zigzag_more")
        for case in zm.CASES:
            mine = _of(points, "zigzag", case["case"])
            for what, panel in (("dram", vr.ZZ_DRAM), ("energy", vr.ZZ_ENERGY), ("cycles", vr.ZZ_CYCLES)):
                ok = zm.check(case, what) is None
                assert ok == _group_ok([p for p in mine if p.panel == panel]), (case["case"], what)


def test_timeloop_verdicts_are_the_tests(points) -> None:
    g = vr.test_module("test_given_mapping")
    for case in g.CASES:
        assert passes(g.test_timeloop_reference_access_counts, case) == _group_ok(_of(points, "timeloop", case)), case


def test_vela_verdicts_are_the_tests(points) -> None:
    v = vr.test_module("test_agreement_vela")
    ops = [p for p in _of(points, "vela") if p.panel == vr.VELA_OPS]
    for test, kinds in ((v.test_adds_cost_what_vela_charges, ("Add",)),
                        (v.test_windowed_max_pools_cost_what_vela_charges, ("MaxPool",)),
                        (v.test_global_pools_cost_what_vela_charges, ("AveragePool", "GlobalAveragePool"))):
        mine = [p for p in ops if p.quantity.split()[0] in kinds]
        assert passes(test) == _group_ok(mine), test.__name__
    for name in v.SINGLE_LAYERS:
        assert passes(v.test_single_layer_cycles_within_tolerance_of_vela, name) == _group_ok(_of(points, "vela", name))
    net = _of(points, "vela", "mobilenet_v2")
    assert passes(v.test_mobilenet_v2_total_cycles_within_tolerance_of_vela) == _group_ok(
        [p for p in net if p.quantity == "total cycles"])
    assert passes(v.test_mobilenet_v2_per_layer_median_within_tolerance_of_vela) == _group_ok(
        [p for p in net if p.quantity != "total cycles"])
    assert {p.band for p in _of(points, "vela")} == {vr.ratio_band(v.TOLERANCE)}


def test_coral_verdicts_are_the_tests(points) -> None:
    c = vr.test_module("test_agreement_coral")
    by_name = {p.case.rstrip(" †"): p for p in _of(points, "coral")}
    for network, rec in c.RECORDS.items():
        assert passes(c.test_whole_network_within_1_5x_of_coral, network) == _group_ok([by_name[rec["coral_name"]]])
        assert by_name[rec["coral_name"]].band == vr.ratio_band(c.WITHIN)


def test_eyeriss_verdicts_are_the_tests(points) -> None:
    from hwsim import Workload, load_network, load_profile, simulate

    e = vr.test_module("test_agreement_eyeriss")
    conv = Workload("alexnet-conv", tuple(layer for layer in load_network("alexnet").layers if layer.name in e.TABLE_V))
    zeros = getattr(e, "ZEROS", {})  # the test's own run: Table V's zeros, feature maps coded in DRAM
    result = simulate(conv, load_profile("eyeriss"), batch=4, **zeros)
    mine = _of(points, "eyeriss")
    for layer in e.TABLE_V:
        pts = [p for p in mine if p.case == layer.upper() and p.quantity != "active PEs"]
        assert passes(e.test_every_layer_within_1_5x, result, layer) == _group_ok(pts), layer
    assert passes(e.test_totals_within_20_percent, result) == _group_ok(
        [p for p in mine if p.case == "CONV1-5 total" and p.panel in (vr.EY_LATENCY, vr.EY_DRAM)])
    assert passes(e.test_active_pes_close_to_the_chip, result) == _group_ok(
        [p for p in mine if p.quantity == "active PEs"])
    if hasattr(e, "test_chip_power_within_1_5x"):
        gated = simulate(conv, load_profile("eyeriss"), batch=4, **zeros)
        assert passes(e.test_chip_power_within_1_5x, gated) == _group_ok([p for p in mine if p.panel == vr.EY_POWER])


def test_anchor_verdicts_are_the_tests(points) -> None:
    a = vr.test_module("test_agreement_anchors")
    mine = _of(points, "anchors")
    for name in ("zigzag_eyeriss_like", "zigzag_tpu_like"):
        pts = [p for p in mine if p.case.startswith(f"ZigZag {name[7:]} ") and p.panel == vr.AN_DRAM]
        assert passes(a.test_zigzag_dram_bytes_exact, name) == _group_ok(pts)
    assert passes(a.test_zigzag_tpu_compute_cycles) == _group_ok(
        [p for p in mine if p.case.startswith("ZigZag") and p.panel == vr.AN_CYCLES])
    assert passes(a.test_zigzag_energy_identities) == _group_ok([p for p in mine if p.panel == vr.AN_ENERGY])
    for dataflow in a.SCALESIM:
        pts = [p for p in mine if p.case.startswith(f"SCALE-Sim {dataflow.replace('_', '-')} ")]
        assert passes(a.test_scalesim_sram_reads_closed_forms, dataflow) == _group_ok(pts)


def test_expected_failures_are_misses_with_their_reason(points) -> None:
    """A strict xfail the tests list shows as a miss carrying the test's own reason, never hidden."""
    v = vr.test_module("test_agreement_vela")
    for name, reason in vr.xfail_reasons(v.test_single_layer_cycles_within_tolerance_of_vela).items():
        (p,) = _of(points, "vela", name)
        assert p.verdict == vr.NO and p.note == "expected failure in the tests: " + reason
    c = vr.test_module("test_agreement_coral")
    listed = vr.xfail_reasons(c.test_whole_network_within_1_5x_of_coral)
    assert set(listed) == set(c.TOO_FAST)
    for network in listed:
        (p,) = [p for p in _of(points, "coral") if p.case.rstrip(" †") == c.RECORDS[network]["coral_name"]]
        assert p.verdict == vr.NO and p.note.startswith("expected failure in the tests: ")
    assert all(p.verdict == vr.NO for p in points if p.note.startswith("expected failure"))


# ---------------------------------------------------------------------------------------------------------------
# The Markdown and the committed files


def _cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]


def _check_tables(text: str) -> int:
    """Every table: a header, a rule of ``---``/``--:``, rows of as many cells; returns the number of tables."""
    tables, lines = 0, text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            header, rule, *rows = block
            width = len(_cells(header))
            assert all(c in ("---", "--:") for c in _cells(rule)) and len(_cells(rule)) == width, rule
            for row in rows:
                assert len(_cells(row)) == width, row
            assert rows, header
            tables += 1
        i += 1
    return tables


def test_tables_are_well_formed(points) -> None:
    text = vr.report_text(points)
    assert _check_tables(text) == 1 + len(vr.SOURCES)
    assert text.index("## Verdict") < text.index("## " + vr.SOURCES[0].title)  # the verdict first
    for s in vr.SOURCES:
        assert f"![{s.title}: hwsim against reference]({s.figure})" in text
        t = vr.tally(_of(points, s.key))
        assert f"**{t.line}.**" in text
    assert _check_tables(vr.readme_block(points)) == 2
    footnotes = re.findall(r"^\[(\d+)\] ", text, flags=re.MULTILINE)
    assert footnotes and all(int(n) >= 1 for n in footnotes)


def test_markdown_table_refuses_a_ragged_row() -> None:
    with pytest.raises(ValueError, match="2 cells in a table of 3"):
        vr.md_table(("a", "b", "c"), [("1", "2")], "lll")
    assert vr.md_table(("a",), [("x|y",)], "l").splitlines()[-1] == "| x\\|y |"


def test_readme_block_is_what_the_generator_writes_now(points) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(vr.BEGIN) == 1 and text.count(vr.END) == 1
    assert vr.current_block(text) == vr.readme_block(points), f"README.md's validation table is stale: {REGENERATE}"


def test_committed_report_is_what_the_generator_writes_now(points) -> None:
    committed = (ROOT / "reports" / "validation" / "README.md").read_text(encoding="utf-8")
    assert committed == vr.report_text(points), f"reports/validation/README.md is stale: {REGENERATE}"
    for s in vr.SOURCES:
        assert (ROOT / "reports" / "validation" / s.figure).is_file()
    assert (ROOT / "reports" / "validation" / "overview.png").is_file()


def test_replace_block_touches_only_what_lies_between_the_markers() -> None:
    text = f"before\n{vr.BEGIN}\nold\n{vr.END}\nafter\n"
    assert vr.replace_block(text, "new") == f"before\n{vr.BEGIN}\nnew\n{vr.END}\nafter\n"
    for bad in ("no markers\n", f"{vr.END}\n{vr.BEGIN}\n", f"{vr.BEGIN}\n{vr.BEGIN}\n{vr.END}\n"):
        with pytest.raises(vr.click.ClickException, match="needs the markers"):
            vr.replace_block(bad, "x")


def test_written_through_the_output_guard(points, tmp_path: Path) -> None:
    from hwsim.fileio.output_guard import MARKER, OutputRefused

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{vr.BEGIN}\n{vr.END}\n\nkept\n", encoding="utf-8")
    out = tmp_path / "validation"
    vr.write(out, readme, points)
    assert (out / MARKER).is_file() and (out / "README.md").read_text(encoding="utf-8") == vr.report_text(points)
    assert sorted(p.name for p in out.glob("*.png")) == sorted([*(s.figure for s in vr.SOURCES), "overview.png"])
    assert all((out / s.figure).read_bytes().startswith(b"\x89PNG") for s in vr.SOURCES)
    assert readme.read_text(encoding="utf-8") == f"# x\n\n{vr.BEGIN}\n{vr.readme_block(points)}\n{vr.END}\n\nkept\n"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputRefused):
        vr.write(theirs, None, points)
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]
