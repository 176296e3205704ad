"""A mapping on a profile whose engine steps the kernel (``weight_sets``, ``ethos_u55``) is a mapping of the
engine's loop nest: the search maps a depthwise or part-kernel layer whose kernel row is longer than a step on
FY = kernel steps, FX = taps per step (:func:`hwsim.cost.weight_sets.kernel_steps`), and so do what reads or
writes its mapping: the record says so (``kernel_steps``), ``ksm-sim --mapping`` takes it back at the searched
cost (and still takes a mapping of the layer's own kernel), and the ZigZag and Timeloop exports write the layer
as that loop nest, so that their workload's bounds are their mapping's.

The layers are Vela fixtures (``fixtures/vela/fresh``: their README gives the command): a 5x5 depthwise layer
(7 steps of 4 taps) and a 7x7 stride-2 stem on 3 channels (part-kernel: 13 steps of 4 taps).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping.best_mapping import engine_shape
from hwsim.cost.mapping.given_mapping import given_cost
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import Spatial, arch
from hwsim.hardware.profile import load_profile
from hwsim.ksm_sim import main
from hwsim.schemas.mapping_file import MappingEntry
from hwsim.workload.onnx_reader import load_onnx

FRESH = Path(__file__).parent / "fixtures" / "vela" / "fresh"
# layer -> (the layer's FY, FX), (the engine's steps, taps per step)
LAYERS = {"dw5x5_120_28": ((5, 5), (7, 4)), "conv7x7s2_3to32_160": ((7, 7), (13, 4))}


def _layer(name: str):
    work, _ = load_onnx(FRESH / f"{name}.onnx", warn=False)
    (layer,) = work.layers
    return layer


def _run(args: list[str]) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output


def _bound(mapping_loops: list[tuple[str, int]], spatial: list[tuple[str, int]], dim: str) -> int:
    """The bound a mapping gives ``dim``: its temporal factors times its unrolling."""
    return math.prod(f for d, f in [*mapping_loops, *spatial] if d == dim)


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_searched_mapping_on_kernel_steps_read_back_costs_the_same(tmp_path: Path, name: str) -> None:
    """The mapping ``ksm-sim --json`` writes for the layer says its FY/FX are kernel steps, and given back through
    ``--mapping`` it is taken and costs exactly what the search found."""
    (fy, fx), (steps, taps) = LAYERS[name]
    onnx, out, back = str(FRESH / f"{name}.onnx"), tmp_path / "searched.json", tmp_path / "given.json"
    _run(["--onnx", onnx, "-p", "ethos_u55", "--json", str(out)])
    (searched,) = json.loads(out.read_text())["results"][0]["layers"]
    record = searched["mapping"]
    assert record["kernel_steps"] == {"kernel_fy_fx": [fy, fx], "fy_steps": steps, "fx_taps_per_step": taps,
                                      "padded_taps": steps * taps - fy * fx}
    loops = [tuple(x) for lv in record["temporal_innermost_first"]["weights"].values() for x in lv]
    spatial = [tuple(x) for x in record["spatial"]["rows"] + record["spatial"]["cols"]]
    assert (_bound(loops, spatial, "FY"), _bound(loops, spatial, "FX")) == (steps, taps)
    book = tmp_path / "map.json"
    book.write_text(json.dumps({"layers": {searched["name"]: record}}), encoding="utf-8")
    _run(["--onnx", onnx, "-p", "ethos_u55", "--json", str(back), "--mapping", str(book)])
    (given,) = json.loads(back.read_text())["results"][0]["layers"]
    assert given["mapping"]["given"] is True and given["mapping"]["kernel_steps"] == record["kernel_steps"]
    assert given["energy_j"] == pytest.approx(searched["energy_j"], rel=1e-12)
    assert given["cycles"] == pytest.approx(searched["cycles"], rel=1e-12)


def _entry(fy: int, fx: int, g_ways: int = 32) -> MappingEntry:
    """A ZigZag ordering of the 5x5 depthwise layer (120 channels on 32 columns, 28x28 outputs)."""
    return MappingEntry.model_validate({"spatial_mapping": {"D2": [["G", g_ways]]},
                                        "temporal_ordering": [["FX", fx], ["FY", fy], ["OY", 28], ["OX", 28],
                                                              ["G", 4]]})


def test_a_mapping_on_the_steps_or_on_the_kernel_is_taken_each_on_its_bounds() -> None:
    """One given mapping on the engine's steps (FY 7, FX 4) costs what the search's evaluation of those loops costs;
    one on the layer's kernel (FY 5, FX 5) is still taken, costed on the kernel as on a profile without steps."""
    profile = load_profile("ethos_u55")
    a = arch(profile)
    shape = shape_of(_layer("dw5x5_120_28"))
    sp = Spatial(rows=(), cols=(("G", 32),))
    loops = (("FX", 4), ("FY", 7), ("OY", 28), ("OX", 28), ("G", 4))
    on_steps = given_cost(_entry(7, 4), shape, profile)
    engine = evaluate(engine_shape(shape, a), a, sp, loops)
    assert on_steps.kernel_steps is not None and on_steps.kernel_steps.steps == 7
    assert on_steps.energy == pytest.approx(engine.energy, rel=1e-12)
    assert on_steps.cycles == pytest.approx(engine.cycles, rel=1e-12)
    on_kernel = given_cost(_entry(5, 5), shape, profile)
    true = evaluate(shape, a, sp, (("FX", 5), ("FY", 5), ("OY", 28), ("OX", 28), ("G", 4)))
    assert on_kernel.kernel_steps is None and "kernel_steps" not in on_kernel.notation(profile)
    assert on_kernel.energy == pytest.approx(true.energy, rel=1e-12)
    assert on_kernel.cycles == pytest.approx(true.cycles, rel=1e-12)


def test_a_mapping_on_neither_is_refused_naming_both(tmp_path: Path) -> None:
    onnx = str(FRESH / "dw5x5_120_28.onnx")
    book = tmp_path / "map.yaml"
    book.write_text(yaml.safe_dump(_entry(6, 5).model_dump(exclude_none=True)), encoding="utf-8")
    res = CliRunner().invoke(main, ["--onnx", onnx, "-p", "ethos_u55", "--mapping", str(book)])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "the layer has FY=5, so they must multiply to 5" in res.output
    assert "FY 7 steps of FX 4 taps" in res.output and "the stepped kernel has FY=7" in res.output
    # a mistake that is not the kernel's bounds is said once
    book.write_text(yaml.safe_dump(_entry(7, 4, g_ways=64).model_dump(exclude_none=True)), encoding="utf-8")
    res = CliRunner().invoke(main, ["--onnx", onnx, "-p", "ethos_u55", "--mapping", str(book)])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "steps" not in res.output, res.output


@pytest.mark.parametrize("name", list(LAYERS))
def test_the_zigzag_export_writes_the_engines_loop_nest(tmp_path: Path, name: str) -> None:
    """The workload entry's FY/FX are the mapping's (the steps and the taps per step) and its input footprint the
    layer's; the header says so; the mapping file given back costs what ksm-sim chose."""
    (fy, fx), (steps, taps) = LAYERS[name]
    onnx = str(FRESH / f"{name}.onnx")
    _run(["--onnx", onnx, "-p", "ethos_u55", "--export", "zigzag", str(tmp_path / "zz"),
          "--json", str(tmp_path / "a.json")])
    folder = tmp_path / "zz"
    text = (folder / "workload.yaml").read_text()
    (entry,) = yaml.safe_load(text)
    size = dict(zip(entry["loop_dims"], entry["loop_sizes"]))
    (mapping,) = [e for e in yaml.safe_load((folder / "mapping.yaml").read_text()) if e["name"] == name]
    loops = [tuple(x) for x in mapping["temporal_ordering"]]
    spatial = [(d, int(u)) for ax in mapping["spatial_mapping"].values() for d, u in (s.split(", ") for s in ax)]
    for dim, want in (("FY", steps), ("FX", taps)):
        assert size[dim] == want == _bound(loops, spatial, dim), dim
    shape = shape_of(_layer(name))
    assert entry["pr_loop_sizes"] == [shape.ix, shape.iy]
    assert f"its {fy}x{fx} kernel as ethos_u55's engine steps it, FY {steps} steps x FX {taps} taps" in text
    (searched,) = json.loads((tmp_path / "a.json").read_text())["results"][0]["layers"]
    _run(["--onnx", onnx, "-p", "ethos_u55", "--json", str(tmp_path / "b.json"), "--mapping",
          str(folder / "mapping.yaml")])
    (given,) = json.loads((tmp_path / "b.json").read_text())["results"][0]["layers"]
    assert given["mapping"]["given"] is True
    assert given["energy_j"] == pytest.approx(searched["energy_j"], rel=1e-12)


def test_the_timeloop_export_writes_the_engines_loop_nest(tmp_path: Path) -> None:
    """The problem's S and R are the mapping's (timeloop-model refuses factors that do not multiply to the
    problem's), and the mapping's header says the input footprint is Timeloop's, not the layer's."""
    onnx = str(FRESH / "dw5x5_120_28.onnx")
    _run(["--onnx", onnx, "-p", "ethos_u55", "--export", "timeloop", str(tmp_path / "tl")])
    (problem,) = (tmp_path / "tl" / "problems").glob("*.yaml")
    (mapping,) = (tmp_path / "tl" / "mappings").glob("*.yaml")
    instance = yaml.safe_load(problem.read_text())["problem"]["instance"]
    assert (instance["S"], instance["R"]) == (7, 4)
    factors = {"R": 1, "S": 1}
    for d in yaml.safe_load(mapping.read_text())["mapping"]:
        for word in (d.get("factors") or "").split():
            dim, f = word.split("=")
            if dim in factors:
                factors[dim] *= int(f.split(",")[0])
    assert factors == {"R": 4, "S": 7}
    assert "# approximate: the 5x5 kernel as the engine steps it, S 7 steps x R 4 taps" in mapping.read_text()
