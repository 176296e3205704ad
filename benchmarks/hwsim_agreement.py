"""Print how hwsim agrees with ZigZag 3.9.1 and with the Eyeriss v1 chip (the tables of docs/hwsim.md).

Usage: python benchmarks/hwsim_agreement.py
ZigZag's numbers come from tests/hwsim/fixtures/zigzag_cases.json (regenerate with
tests/hwsim/fixtures/make_zigzag_fixtures.py); the chip's from Chen et al., IEEE JSSC 2017, Table V.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "hwsim"))

from test_agreement_eyeriss import CHIP_POWER_MW, IFMAP_ZEROS, TABLE_V, ZEROS
from test_agreement_zigzag import layer_of, zigzag_dram

from hwsim import Workload, load_network, load_profile, simulate


def zigzag_frame() -> pd.DataFrame:
    cases = json.loads((ROOT / "tests/hwsim/fixtures/zigzag_cases.json").read_text())["cases"]
    rows = []
    for case in cases:
        r = simulate(Workload(case["layer"], (layer_of(case),)), load_profile("zigzag_" + case["arch"]))
        reads, writes = r.traffic("dram")
        ref = zigzag_dram(case)
        rows.append({"case": case["case"],
                     "DRAM W": reads["weights"] / ref["weights"], "DRAM I": reads["inputs"] / ref["inputs"],
                     "DRAM O": writes["outputs"] / ref["outputs"],
                     "energy": r.energy_j * 1e12 / case["energy_total"],
                     "cycles": r.cycles / case["latency_total_cycles"]})
    return pd.DataFrame(rows)


def eyeriss_frame() -> pd.DataFrame:
    """AlexNet CONV1-5 at batch 4 against Table V: DRAM with the feature maps run-length coded for Table V's zeros
    (as the agreement test and the chip), and dense beside it."""
    net = load_network("alexnet")
    work = Workload("alexnet-conv", tuple(la for la in net.layers if la.name in TABLE_V))
    r = simulate(work, load_profile("eyeriss"), batch=4, **ZEROS)
    dense = {c.name: c for c in simulate(work, load_profile("eyeriss"), batch=4).layers}

    def dram(c) -> float:
        return (sum(v for (lv, _), v in c.read_bytes.items() if lv == "dram")
                + sum(v for (lv, _), v in c.write_bytes.items() if lv == "dram"))

    rows = []
    for c in r.layers:
        ms, mb, pes = TABLE_V[c.name]
        rows.append({"layer": c.name, "latency (ms)": c.cycles / r.profile.clock_hz * 1e3, "chip (ms)": ms,
                     "DRAM coded (MB)": dram(c) / 1e6, "DRAM dense (MB)": dram(dense[c.name]) / 1e6,
                     "chip (MB)": mb, "active PEs": c.utilization * r.profile.array.pes, "chip PEs": pes})
    frame = pd.DataFrame(rows)
    total = {k: frame[k].sum() for k in ("latency (ms)", "chip (ms)", "DRAM coded (MB)", "DRAM dense (MB)",
                                         "chip (MB)")}
    return pd.concat([frame, pd.DataFrame([{"layer": "total", **total}])], ignore_index=True)


def eyeriss_power() -> pd.DataFrame:
    """On-chip power of AlexNet CONV1-5 (every level but DRAM, the array's network, MACs, clock, control over the
    latency) against Table V's 278 mW: with Table V's ifmap zeros gated or dense, Horowitz's 45 nm read as hp
    or lp."""
    from hwsim.hardware.profile import load_design

    net = load_network("alexnet")
    work = Workload("alexnet-conv", tuple(la for la in net.layers if la.name in TABLE_V))
    rows = []
    for device in ("hp", "lp"):
        profile = load_design("eyeriss", [f"chip_energy.device={device}"]).profile
        for gated in (True, False):
            t = simulate(work, profile, batch=4, input_sparsity=IFMAP_ZEROS if gated else 0.0).to_dict(
                with_layers=False)["totals"]
            mw = t["energy_on_chip_j"] / t["latency_s"] * 1e3
            rows.append({"device": device, "ifmap zeros": "gated" if gated else "dense", "power (mW)": mw,
                         "chip (mW)": CHIP_POWER_MW, "ratio": mw / CHIP_POWER_MW, "energy scale": t["energy_scale"]})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    z = zigzag_frame()
    print(z.to_markdown(index=False, floatfmt=".3f"))
    print()
    print("min / max over cases:", {k: (round(float(z[k].min()), 3), round(float(z[k].max()), 3)) for k in z.columns[1:]})
    print()
    print(eyeriss_frame().to_markdown(index=False, floatfmt=".3g"))
    print()
    print(eyeriss_power().to_markdown(index=False, floatfmt=".3g"))
