"""The LoRA-vs-KSM tables of docs/lora.md: accuracy and per-task storage, then energy and latency per profile.

    python scripts/lora_vs_ksm.py runs/* runs-lora/*

Reads finished run folders (the built-in suite's, from ``scripts/regenerate_default.sh``), costs every
run on every bundled profile in both modes with hwsim (as ``ksm-sim`` does), and prints two Markdown
tables: per method, test top-1 per task and its mean with the mean task-specific storage on the first
profile; and per profile, the mean energy and latency per inference folded and on the fly.
"""

from __future__ import annotations

import sys

import pandas as pd

from hwsim import units
from hwsim.hardware.profile import bundled_profiles, load_profile
from hwsim.workload.runs import expand_run_paths, load_runs
from hwsim.report.tables import cost_runs

METHODS = ("ksm", "lora r4", "lora r16")


def main(paths: list[str]) -> None:
    folders, _ = expand_run_paths(paths)
    runs = [r for r in load_runs(folders) if r.label in METHODS]
    profiles = [load_profile(name) for name in bundled_profiles()]
    costs = cost_runs(runs, profiles)
    ref = profiles[0]
    rows = []
    for label in METHODS:
        idx = [i for i, r in enumerate(runs) if r.label == label]
        row: dict[str, object] = {"method": label}
        for i in sorted(idx, key=lambda i: runs[i].task):
            row[runs[i].task] = 100 * (runs[i].top1 or float("nan"))
        row["mean"] = sum(100 * (runs[i].top1 or 0.0) for i in idx) / len(idx)
        tasks = [costs.get(i, ref, "folded").task for i in idx]
        row[f"task-specific on {ref.name} (KiB)"] = sum(t.task_specific_bytes for t in tasks) / len(idx) / 1024
        row["of which adapter / mask (KiB)"] = sum(t.mask_storage_bits for t in tasks) / 8 / len(idx) / 1024
        rows.append(row)
    print(units.markdown(pd.DataFrame(rows), index=False, floatfmt=".2f"), end="\n\n")
    rows = []
    for prof in profiles:
        row = {"profile": prof.name}
        for label, mode in [("ksm", "folded"), *((m, "on_the_fly") for m in METHODS)]:
            idx = [i for i, r in enumerate(runs) if r.label == label]
            res = [costs.get(i, prof, mode) for i in idx]
            name = "folded, any method" if mode == "folded" else f"{label} on the fly"
            row[f"{name}: µJ / ms"] = (f"{sum(r.energy_j for r in res) / len(res) * 1e6:.1f} / "
                                       f"{sum(r.latency_s for r in res) / len(res) * 1e3:.4g}")
        rows.append(row)
    print(units.markdown(pd.DataFrame(rows), index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
