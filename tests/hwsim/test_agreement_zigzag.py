"""hwsim (``--objective energy``) against ZigZag 3.9.1 (opt="energy") on single layers.

The reference numbers are data: ``fixtures/zigzag_cases.json``, written by
``fixtures/make_zigzag_fixtures.py`` (run it in a venv with ``zigzag-dse==3.9.1 six``). Targets (issue 12):
DRAM bytes per operand within 1 %, total energy within 10 %, cycles within 25 %. Where hwsim's search
finds a mapping that moves fewer DRAM bytes than ZigZag's LOMA (lpf_limit 6 merges loop factors, so
some tilings are out of its reach), hwsim may be lower; the message shows both mappings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim import Layer, Workload, load_profile, simulate

CASES = json.loads((Path(__file__).parent / "fixtures" / "zigzag_cases.json").read_text())["cases"]
IDS = [c["case"] for c in CASES]

# cases where hwsim misses a target, with the reason (strict xfail: it fails as soon as the case passes)
KNOWN: dict[tuple[str, str], str] = {}


def layer_of(case: dict) -> Layer:
    s = case["shape"]
    iy, ix = (s["OY"] - 1) * s["stride"] + s["FY"] - 2 * s["pad"], (s["OX"] - 1) * s["stride"] + s["FX"] - 2 * s["pad"]
    kind = "linear" if s["OY"] == s["OX"] == s["FY"] == s["FX"] == 1 else "conv"
    if kind == "linear":
        return Layer(case["layer"], "linear", s["C"], s["K"], (1, 1))
    return Layer(case["layer"], "conv", s["C"], s["K"], (s["FY"], s["FX"]), (s["stride"],) * 2, (s["pad"],) * 2,
                 s["groups"], (iy, ix), (s["OY"], s["OX"]))


def run(case: dict):
    return simulate(Workload(case["layer"], (layer_of(case),)), load_profile("zigzag_" + case["arch"]),
                    objective="energy")


def zigzag_dram(case: dict) -> dict[str, float]:
    wa = case["complete"]["outputs"]["memory"]["word_accesses"]
    return {"weights": wa["W"][-1]["rd_out_to_low"] * 8, "inputs": wa["I"][-1]["rd_out_to_low"] * 8,
            "outputs": wa["O"][-1]["wr_in_by_low"] * 8}  # 64-bit DRAM words


def _xfail(case: str, what: str):
    reason = KNOWN.get((case, what))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


def _params(what: str):
    return [pytest.param(c, id=c["case"], marks=_xfail(c["case"], what)) for c in CASES]


def _mappings(case: dict, r) -> str:
    return (f"\n  zigzag: spatial {case['spatial_mapping']}\n          temporal {case['temporal_mapping']}"
            f"\n  hwsim:  {r.layers[0].mapping}")


@pytest.mark.parametrize("case", _params("dram"))
def test_dram_bytes_per_operand(case: dict) -> None:
    r = run(case)
    reads, writes = r.traffic("dram")
    got = {"weights": reads["weights"], "inputs": reads["inputs"], "outputs": writes["outputs"]}
    for o, ref in zigzag_dram(case).items():
        assert got[o] <= ref * 1.01, f"{o}: hwsim {got[o]:.0f} B vs ZigZag {ref:.0f} B" + _mappings(case, r)
        if got[o] < ref * 0.99:  # hwsim's search found a tiling ZigZag's LOMA could not: must be cheaper overall
            assert r.energy_j * 1e12 < case["energy_total"], _mappings(case, r)


@pytest.mark.parametrize("case", _params("energy"))
def test_total_energy(case: dict) -> None:
    r = run(case)
    ratio = r.energy_j * 1e12 / case["energy_total"]
    cheaper_dram = sum(r.traffic("dram")[0].values()) < 0.99 * (zigzag_dram(case)["weights"] + zigzag_dram(case)["inputs"])
    lo = 0.0 if cheaper_dram else 0.9
    assert lo <= ratio <= 1.1, f"energy hwsim/ZigZag = {ratio:.3f}" + _mappings(case, r)


@pytest.mark.parametrize("case", _params("cycles"))
def test_cycles(case: dict) -> None:
    r = run(case)
    ratio = r.cycles / case["latency_total_cycles"]
    assert 0.75 <= ratio <= 1.25, (f"cycles hwsim/ZigZag = {ratio:.3f} (hwsim compute {r.compute_cycles}, "
                                   f"ZigZag ideal {case['ideal_temporal_cycle']:.0f})" + _mappings(case, r))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compute_cycles_equal(case: dict) -> None:
    """Same spatial unrolling, same fold counts: the ideal temporal cycles agree exactly."""
    r = run(case)
    if r.layers[0].mapping["spatial"] == {"rows": [], "cols": []}:
        pytest.skip("no unrolling")
    assert r.compute_cycles <= case["ideal_temporal_cycle"], _mappings(case, r)


def test_live_zigzag_agrees_on_dram() -> None:
    """Opt-in: rerun one case in ZigZag when it is importable (pip install zigzag-dse==3.9.1 six)."""
    pytest.importorskip("zigzag")
    import importlib.util
    import sys
    import tempfile

    spec = importlib.util.spec_from_file_location("mk", Path(__file__).parent / "fixtures" / "make_zigzag_fixtures.py")
    mk = importlib.util.module_from_spec(spec)
    sys.modules["mk"] = mk
    spec.loader.exec_module(mk)
    with tempfile.TemporaryDirectory() as tmp:
        live = mk.run_case("r18_conv3_3x3", "tpu_like", Path(tmp))
    r = run(live)
    reads, writes = r.traffic("dram")
    ref = zigzag_dram(live)
    assert reads["weights"] == pytest.approx(ref["weights"], rel=0.01)
    assert reads["inputs"] == pytest.approx(ref["inputs"], rel=0.01)
    assert writes["outputs"] == pytest.approx(ref["outputs"], rel=0.01)


def test_vectorised_scores_equal_scalar_evaluation() -> None:
    """The search scores loop orders with numpy; the winner is rebuilt by evaluate(): both must agree."""
    import numpy as np

    from hwsim.cost.layer_cost import shape_of
    from hwsim.cost.mapping import search
    from hwsim.cost.mapping.one_mapping import evaluate
    from hwsim.cost.mapping.space import DIMS, arch
    from tests.hwsim.reference_orders import loop_orders, score_orders

    for case in CASES[:6]:
        profile = load_profile("zigzag_" + case["arch"])
        shape = shape_of(layer_of(case))
        best = search(shape, profile)
        flat = tuple((DIMS.index(d), f) for d, f in sorted(best.loops))
        dims_idx, facs = loop_orders(flat)
        pick = np.linspace(0, len(dims_idx) - 1, 12).astype(int)
        e, cyc = score_orders(shape, arch(profile), best.spatial, dims_idx[pick], facs[pick])
        for k, row in enumerate(pick):
            loops = tuple((DIMS[int(d)], int(f)) for d, f in zip(dims_idx[row], facs[row]))
            m = evaluate(shape, arch(profile), best.spatial, loops)
            assert e[k] == pytest.approx(m.energy, rel=1e-9), loops
            assert cyc[k] == pytest.approx(m.cycles, rel=1e-9), loops
