"""Hostile-user regressions (session 5): what ``ksm-sim --json`` writes is what ``--mapping`` takes back.

``--json`` records a layer without a MAC loop nest (an element-wise add, a global pool) with ``mapping: null``;
the whole record's mappings given back (``layers: {NAME: mapping}``, docs/mapping.md) were refused on that null
(and, once it was taken, on the operator's name: only MAC layers were known names)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from hwsim.ksm_sim import main

ARGS = ["--network", "mobilenet_v2", "--profile", "ethos_u55"]


def _cost(tmp_path: Path, name: str, extra: list[str]) -> tuple[int, str, list[dict]]:
    out = tmp_path / f"{name}.json"
    res = CliRunner().invoke(main, [*ARGS, "--json", str(out), *extra])
    layers = json.loads(out.read_text())["results"][0]["layers"] if res.exit_code == 0 else []
    return res.exit_code, res.output, layers


def test_every_mapping_of_the_json_record_given_back_costs_the_same(tmp_path: Path) -> None:
    """All of ``--json``'s layers, the null mappings of the adds and the pool included, given back."""
    code, output, searched = _cost(tmp_path, "searched", [])
    assert code == 0, output
    assert any(c["mapping"] is None for c in searched)  # the adds and the global pool
    book = tmp_path / "all.yaml"
    book.write_text(yaml.safe_dump({"layers": {c["name"]: c["mapping"] for c in searched}}))
    code, output, given = _cost(tmp_path, "given", ["--mapping", str(book)])
    assert code == 0, output
    assert [c["name"] for c in given] == [c["name"] for c in searched]
    for a, b in zip(searched, given):
        assert (b["energy_j"], b["cycles"]) == (a["energy_j"], a["cycles"]), a["name"]
        if a["mapping"] is not None:
            assert b["mapping"]["given"] is True, a["name"]


def test_a_null_entry_is_searched(tmp_path: Path) -> None:
    """``layers: {conv: null}`` costs that layer as without ``--mapping`` (searched, not given)."""
    code, output, searched = _cost(tmp_path, "searched", [])
    first, second = [c for c in searched if c["mapping"] is not None][:2]
    book = tmp_path / "null.yaml"
    book.write_text(yaml.safe_dump({"layers": {first["name"]: None, second["name"]: second["mapping"]}}))
    code, output, given = _cost(tmp_path, "given", ["--mapping", str(book)])
    assert code == 0, output
    by_name = {c["name"]: c for c in given}
    assert by_name[first["name"]]["mapping"]["given"] is False
    assert by_name[second["name"]]["mapping"]["given"] is True
    assert by_name[first["name"]]["energy_j"] == first["energy_j"]


def test_a_mapping_for_an_operator_without_loops_is_refused_in_one_line(tmp_path: Path) -> None:
    """A real mapping named for an add would be silently ignored: refused, naming the file and the operator."""
    code, output, searched = _cost(tmp_path, "searched", [])
    add = next(c for c in searched if c["mapping"] is None)
    conv = next(c for c in searched if c["mapping"] is not None)
    book = tmp_path / "add.yaml"
    book.write_text(yaml.safe_dump({"layers": {add["name"]: conv["mapping"]}}))
    res = CliRunner().invoke(main, [*ARGS, "--mapping", str(book)])
    assert res.exit_code != 0
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(book) in lines[0] and add["name"] in lines[0], res.output
    assert "no MAC loop nest" in lines[0] and "Traceback" not in res.output
