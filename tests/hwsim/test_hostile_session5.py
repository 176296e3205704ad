"""Hostile-user regressions (session 5): what ``ksm-sim --json`` writes is what ``--mapping`` takes back; a
per-PE block too wide to score (``search.pe_block`` with a ``pe_split`` of outputs and weights) is refused.

``--json`` records a layer without a MAC loop nest (an element-wise add, a global pool) with ``mapping: null``;
the whole record's mappings given back (``layers: {NAME: mapping}``, docs/mapping.md) were refused on that null
(and, once it was taken, on the operator's name: only MAC layers were known names)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from hwsim.cost.mapping.space import DIMS, RELEVANT
from hwsim.ksm_sim import main
from hwsim.schemas.profile_file import MAX_PE_BLOCK_DIMS, PE_SPLIT_DIMS

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


def test_a_per_pe_block_of_more_than_four_dimensions_is_refused_in_one_line() -> None:
    """``pe_block`` with ``pe_split`` [inputs, weights, outputs] tiled 7 dimensions in the block, each tiling's
    7! orders times the 6! above it: AlexNet at batch 4 ran past two minutes. Refused at load, naming the key."""
    for split in ("[inputs,weights,outputs]", "[outputs,weights]"):
        res = CliRunner().invoke(main, ["--network", "alexnet", "--profile", "eyeriss",
                                        "--set", f"search.pe_split={split}"])
        assert res.exit_code == 1, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and "pe_block" in lines[0] and "eyeriss.yaml" in lines[0], res.output
    # four dimensions (the inputs' K and the weights' B, OY, OX) and pe_block 0 are allowed
    for extra in (["--set", "search.pe_split=[inputs,weights]"],
                  ["--set", "search.pe_block=0", "--set", "search.pe_split=[inputs,weights,outputs]"]):
        res = CliRunner().invoke(main, ["--network", "alexnet", "--profile", "eyeriss", *extra])
        assert res.exit_code == 0, res.output


def test_the_block_dimensions_are_those_the_operand_does_not_depend_on() -> None:
    for operand, dims in PE_SPLIT_DIMS.items():
        assert set(dims) == set(DIMS) - RELEVANT[operand] - {"G"}, operand
    assert len({d for dims in (PE_SPLIT_DIMS["outputs"], PE_SPLIT_DIMS["inputs"]) for d in dims}) \
        == MAX_PE_BLOCK_DIMS  # eyeriss's own block: FX, FY, C and K


def test_a_given_mapping_is_costed_under_the_runs_objective(tmp_path: Path, monkeypatch) -> None:
    """``--mapping`` costed every given mapping under the energy objective, whatever ``--objective`` said
    (a ZigZag ordering's shared level is cut the way the objective prefers: given_cost)."""
    import hwsim.cost.mapping.given_mapping as given_mapping

    seen: list[str] = []
    real = given_mapping.given_cost

    def spy(entry, shape, profile, objective="energy"):  # noqa: ANN001, ANN202 - records the objective
        seen.append(objective)
        return real(entry, shape, profile, objective)

    monkeypatch.setattr(given_mapping, "given_cost", spy)
    run = ["--network", "mobilenet_v2", "--profile", "zigzag_tpu_like", "--objective", "latency"]
    res = CliRunner().invoke(main, [*run, "--export", "zigzag", str(tmp_path / "zz")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, [*run, "--mapping", str(tmp_path / "zz" / "mapping.yaml")])
    assert res.exit_code == 0, res.output
    assert seen and set(seen) == {"latency"}
