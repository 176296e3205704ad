"""Print each benchmark's median relative to a reference case of the same group, from pytest-benchmark JSON.

Usage: python benchmarks/ratios.py .benchmarks/train.json [--reference finetune]
"""

from __future__ import annotations

import json
import sys

import pandas as pd


def ratios(path: str, reference: str = "finetune") -> pd.DataFrame:
    data = json.load(open(path, encoding="utf-8"))
    rows = []
    for bench in data["benchmarks"]:
        params = bench.get("params") or {}
        rows.append({"group": bench["group"], "arch": params.get("arch", ""), "method": params.get("method", ""),
                     "median_ms": 1000 * bench["stats"]["median"]})
    frame = pd.DataFrame(rows)
    steps = frame[frame["method"] != ""].copy()
    ref = steps[steps["method"] == reference].set_index("arch")["median_ms"]
    steps[f"vs {reference}"] = steps.apply(lambda r: r["median_ms"] / ref[r["arch"]], axis=1)
    machine = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "")
    print(f"machine: {machine}; run at {data.get('datetime', '')}")
    return steps.sort_values(["arch", "method"])


if __name__ == "__main__":
    ref = sys.argv[sys.argv.index("--reference") + 1] if "--reference" in sys.argv else "finetune"
    print(ratios(sys.argv[1], ref).to_markdown(index=False, floatfmt=".2f"))
