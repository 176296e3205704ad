"""hwsim against ZigZag 3.9.1 on layers beyond ``test_agreement_zigzag.py``'s 18 cases.

Batch 2 and 4, ``opt="latency"`` (against ``simulate(..., objective="latency")``), modified architectures (a
halved buffer, a larger array: the ZigZag yaml edited, the hwsim profile changed by the ``--set`` overrides the
case records), asymmetric kernels, large activations, depthwise, strided and fully connected layers.

The reference numbers are data: ``fixtures/zigzag_cases_more.json``, written by ``fixtures/make_zigzag_more.py``
(see ``fixtures/README-zigzag.md``). Targets (issue 24): DRAM bytes per operand within 1 %, total energy within
10 %, cycles within 25 %. Where hwsim's search finds a mapping that moves fewer DRAM bytes than ZigZag's LOMA
(lpf_limit 6 merges loop factors, so some tilings are out of its reach), hwsim may be lower if it is better on
the case's objective; the message shows both mappings.

Run as a script for the table of ratios (hwsim / ZigZag)::

    .venv/bin/python tests/hwsim/test_agreement_zigzag_more.py
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import pytest

if __name__ == "__main__":  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hwsim import Layer, Workload, simulate  # noqa: E402
from hwsim.cost.mapping import best_mapping, clear_caches  # noqa: E402
from hwsim.cost.mapping.space import Spatial  # noqa: E402
from hwsim.hardware.profile import load_design  # noqa: E402

CASES = json.loads((Path(__file__).parent / "fixtures" / "zigzag_cases_more.json").read_text())["cases"]
OPERANDS = ("weights", "inputs", "outputs")

# cases where hwsim misses a target today, with the cause (strict xfail: it fails as soon as the case passes).
# Diagnosed by costing ZigZag's own mapping (its loop order and memory allocation) in hwsim
# (hwsim.cost.mapping.one_mapping.evaluate with cuts=) beside hwsim's searched one.
KNOWN: dict[tuple[str, str], str] = {
    ("eyeriss_like/dw_3x3_s2", "dram"):
        "ZigZag's input count of an uneven unrolling: ZigZag unrolls OX 6 ways (28 in 5 folds, printed 5.6) with "
        "the 5 folds above sram_1M, and LayerNode.calc_tensor_dim (zigzag/workload/layer_node.py) truncates the "
        "5.6 to 5 outputs, 2 x (5 - 1) + 3 = 11 input columns per fold: 5 x 11 = 55 of the 57 the stride-2 "
        "window touches (144 x 57 x 55 B). hwsim reads the 57 x 57 padded map once (1.036x) on every unrolling, "
        "ZigZag's OX 6 included (its search now costs OY and OX at every divisor, as ZigZag's generator)",
}


def layer_of(case: dict) -> Layer:
    s = case["shape"]
    py, px = s["pad"]
    if s["OY"] == s["OX"] == s["FY"] == s["FX"] == 1 and s["groups"] == 1:
        return Layer(case["layer"], "linear", s["C"], s["K"], (1, 1))
    iy, ix = (s["OY"] - 1) * s["stride"] + s["FY"] - 2 * py, (s["OX"] - 1) * s["stride"] + s["FX"] - 2 * px
    return Layer(case["layer"], "conv", s["C"], s["K"], (s["FY"], s["FX"]), (s["stride"],) * 2, (py, px),
                 s["groups"], (iy, ix), (s["OY"], s["OX"]))


@functools.lru_cache(maxsize=None)
def _profile(arch: str, sets: tuple[str, ...]):
    return load_design("zigzag_" + arch, list(sets)).profile


def run(case: dict):
    return simulate(Workload(case["layer"], (layer_of(case),)), _profile(case["arch"], tuple(case["sets"])),
                    objective=case["opt"], batch=case["batch"])


def hwsim_dram(r) -> dict[str, float]:
    reads, writes = r.traffic("dram")
    return {"weights": reads["weights"], "inputs": reads["inputs"], "outputs": writes["outputs"],
            "psums_read": reads["outputs"]}


def better_on_objective(case: dict, r) -> bool:
    """Whether hwsim's mapping beats ZigZag's on what both searches minimise."""
    if case["opt"] == "latency":
        return r.cycles < case["latency_total_cycles"]
    return r.energy_j * 1e12 < case["energy_total"]


def _mappings(case: dict, r) -> str:
    return (f"\n  zigzag: spatial {case['spatial_mapping']}\n          temporal {case['temporal_mapping']}"
            f"\n  hwsim:  {r.layers[0].mapping}")


def check(case: dict, what: str, r=None) -> str | None:
    """None when hwsim meets the target ``what`` (dram, energy, cycles) on ``case``, else why not."""
    r = run(case) if r is None else r
    ref = case["dram_bytes"]
    got = hwsim_dram(r)
    if what == "dram":
        for o in (*OPERANDS, "psums_read"):
            if got[o] > ref[o] * 1.01 + 1:
                return f"{o}: hwsim {got[o]:.0f} B vs ZigZag {ref[o]:.0f} B" + _mappings(case, r)
            if got[o] < ref[o] * 0.99 - 1 and not better_on_objective(case, r):
                return (f"{o}: hwsim {got[o]:.0f} B vs ZigZag {ref[o]:.0f} B, but no better on {case['opt']}"
                        + _mappings(case, r))
        return None
    if what == "energy":
        ratio = r.energy_j * 1e12 / case["energy_total"]
        cheaper_dram = got["weights"] + got["inputs"] < 0.99 * (ref["weights"] + ref["inputs"])
        lo = 0.0 if cheaper_dram else 0.9
        ok = lo <= ratio <= 1.1
        return None if ok else f"energy hwsim/ZigZag = {ratio:.3f}" + _mappings(case, r)
    ratio = r.cycles / case["latency_total_cycles"]
    return None if 0.75 <= ratio <= 1.25 else (f"cycles hwsim/ZigZag = {ratio:.3f} (hwsim compute {r.compute_cycles}, ZigZag ideal "
                            f"{case['ideal_temporal_cycle']:.0f})" + _mappings(case, r))


def _params(what: str):
    def marks(cid: str):
        reason = KNOWN.get((cid, what))
        return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return [pytest.param(c, id=c["case"], marks=marks(c["case"])) for c in CASES]


def test_cases_cover_the_issue() -> None:
    """At least 40 cases: batch 2 and 4, the latency objective, both modified architectures."""
    assert len(CASES) >= 40
    assert {2, 4} <= {c["batch"] for c in CASES}
    assert any(c["opt"] == "latency" for c in CASES)
    assert {"sram_half", "array_x2"} <= {c["variant"] for c in CASES}
    assert len({c["case"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params("dram"))
def test_dram_bytes_per_operand(case: dict) -> None:
    why = check(case, "dram")
    assert why is None, why


@pytest.mark.parametrize("case", _params("energy"))
def test_total_energy(case: dict) -> None:
    why = check(case, "energy")
    assert why is None, why


@pytest.mark.parametrize("case", _params("cycles"))
def test_cycles(case: dict) -> None:
    why = check(case, "cycles")
    assert why is None, why


def zigzag_spatial(case: dict, profile) -> Spatial:
    """ZigZag's chosen unrolling of a depthwise case as hwsim's ``Spatial`` (D1's G on the columns, D2's
    dimension on the rows). ZigZag prints uneven ways as their average (OX 5.6: 28 in 5 folds); its generator
    unrolls a divisor of min(size, lanes), so the ways are the largest such divisor leaving that many folds."""
    found = dict.fromkeys(re.findall(r"\((\w+), ([\d.]+)\)", case["spatial_mapping"]))
    size = {"G": case["shape"]["groups"], "OY": case["shape"]["OY"], "OX": case["shape"]["OX"]}
    axes: dict[str, tuple[tuple[str, int], ...]] = {"rows": (), "cols": ()}
    for d, avg in found:
        axis, lanes = ("cols", profile.array.cols) if d == "G" else ("rows", profile.array.rows)
        folds = round(size[d] / float(avg))
        top = min(size[d], lanes)
        ways = max(v for v in range(1, top + 1) if top % v == 0 and -(-size[d] // v) == folds)
        axes[axis] += ((d, ways),)
    return Spatial(**axes)


_DEPTHWISE = [pytest.param(c, id=c["case"]) for c in CASES if c["shape"]["groups"] > 1]


@pytest.mark.parametrize("case", _DEPTHWISE)
def test_depthwise_search_is_no_worse_than_zigzags_unrolling(case: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """ZigZag's generator costs several unrollings of a depthwise layer's free axis (OY or OX, full or divided
    ways) and keeps the best; the ``zigzag_*`` profiles list them (``spatial.alternatives``), so hwsim's pick
    costs no more, in hwsim's own model and on the case's objective, than hwsim's cost of ZigZag's pick."""
    profile = _profile(case["arch"], tuple(case["sets"]))
    key = (lambda r: r.cycles) if case["opt"] == "latency" else (lambda r: r.energy_j)
    clear_caches()
    searched = run(case)
    forced = zigzag_spatial(case, profile)
    monkeypatch.setattr(best_mapping, "spatial_options", lambda shape, a: [forced])
    clear_caches()
    try:
        theirs = run(case)
    finally:
        monkeypatch.undo()
        clear_caches()
    assert key(searched) <= key(theirs) * (1 + 1e-9), (
        f"hwsim's pick {searched.layers[0].mapping['spatial']} costs {key(searched):.6g}, ZigZag's unrolling "
        f"{forced} {key(theirs):.6g} in hwsim")


def table() -> list[dict]:
    """One row per case: hwsim/ZigZag per DRAM operand, energy and cycles, and which targets it misses."""
    rows = []
    for case in CASES:
        r = run(case)
        got, ref = hwsim_dram(r), case["dram_bytes"]
        row = {"case": case["case"]}
        for o in (*OPERANDS, "psums_read"):
            row[o] = got[o] / ref[o] if ref[o] else (1.0 if not got[o] else float("inf"))
        row["energy"] = r.energy_j * 1e12 / case["energy_total"]
        row["cycles"] = r.cycles / case["latency_total_cycles"]
        row["misses"] = [w for w in ("dram", "energy", "cycles") if check(case, w, r) is not None]
        row["known"] = [w for w in ("dram", "energy", "cycles") if (case["case"], w) in KNOWN]
        rows.append(row)
    return rows


def main() -> int:
    rows = table()
    print(f"{'case':48s} {'W dram':>7s} {'I dram':>7s} {'O dram':>7s} {'psum rd':>7s} {'energy':>7s} "
          f"{'cycles':>7s}  misses")
    for row in rows:
        tag = ",".join(row["misses"]) or "-"
        if row["misses"] and set(row["misses"]) == set(row["known"]):
            tag += " (known)"
        elif row["misses"] or row["known"]:
            tag += f" (KNOWN lists {','.join(row['known']) or 'none'})"
        print(f"{row['case']:48s} {row['weights']:7.3f} {row['inputs']:7.3f} {row['outputs']:7.3f} "
              f"{row['psums_read']:7.3f} {row['energy']:7.3f} {row['cycles']:7.3f}  {tag}")
    ok = sum(not row["misses"] for row in rows)
    print(f"{ok} of {len(rows)} cases meet every target; "
          f"{sum(bool(row['misses']) for row in rows)} miss at least one")
    unexpected = [row["case"] for row in rows if set(row["misses"]) != set(row["known"])]
    if unexpected:
        print("not as KNOWN says:", ", ".join(unexpected))
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
