"""Tables over finished runs: accuracy per task and method, training cost, int8 accuracy.

``ksm-train`` prints the accuracy table of what it just trained; ``python -m ksm.compare.results DIR ...``
prints the tables of every finished run found under the given folders (the README's tables).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim import units
from hwsim.catalogue import label_rank, run_label
from hwsim.fileio.atomic import atomic_write

method_label = run_label  # hwsim's catalogue names a run for both packages


def find_runs(*folders: Path) -> list[dict[str, Any]]:
    """The ``run.json`` of every finished run under the folders (unfinished ``.partial`` ones skipped)."""
    records = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("run.json")):
            if not any(part.startswith(".") for part in path.relative_to(folder).parts):
                records.append(json.loads(path.read_text(encoding="utf-8")))
    return records


def cost_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Training cost per method, from the same runs: seconds per task, epochs, seconds per step."""
    rows = []
    for r in records:
        history = r["metrics"].get("history", [])
        seconds = sum(h["seconds"] for h in history)
        steps = sum(h.get("steps", 0) for h in history)
        rows.append({"method": method_label(r), "train s / task": seconds,
                     "epochs / task": r["train"].get("epochs_total", len(history)),
                     "s / step": seconds / steps if steps else float("nan")})
    table = pd.DataFrame(rows).groupby("method").mean()
    return table.loc[sorted(table.index, key=label_rank)]


INT8_COLUMNS = ("float32", "int8 folded", "int8 on the fly")


def int8_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: task, method label and the top-1 (%) of its float32 model, its int8 folded
    model (``metrics.int8.top1``) and its int8 on-the-fly model; NaN where ``ksm-export`` did not measure."""
    def pct(value: Any) -> float:
        return float("nan") if value is None else 100 * value

    rows = []
    for r in records:
        q = r.get("metrics", {}).get("int8") or {}
        rows.append({"task": r["task"], "method": method_label(r), "float32": pct(r["metrics"]["top1"]),
                     "int8 folded": pct(q.get("top1")), "int8 on the fly": pct(q.get("on_the_fly_top1"))})
    return pd.DataFrame(rows, columns=["task", "method", *INT8_COLUMNS])


def int8_table(records: list[dict[str, Any]]) -> pd.DataFrame | None:
    """Float vs int8 (onnxruntime) top-1 (%) of the runs that ``ksm-export --int8`` measured, by (method, task)."""
    table = int8_frame(records).dropna(subset=["int8 folded"])
    if table.empty:
        return None
    table["order"] = table["method"].map(label_rank)
    return table.sort_values(["order", "task"]).drop(columns="order").set_index(["method", "task"])


def results_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Test top-1 (%) per task (rows) and method (columns), with a mean row."""
    rows = [{"task": r["task"], "method": method_label(r), "top1": 100 * r["metrics"]["top1"]} for r in records]
    table = pd.DataFrame(rows).pivot_table(index="task", columns="method", values="top1", sort=False)
    table = table[sorted(table.columns, key=label_rank)]
    if len(table) > 1:
        table.loc["mean"] = table.mean(numeric_only=True, skipna=False)  # a method missing a task has no mean
    table.columns.name = None
    return table


def write_results(table: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.md", units.markdown(table, floatfmt=".2f") + "\n"), ("results.csv", table.to_csv())):
        atomic_write(folder / name, text)


def main(argv: list[str]) -> None:
    records = find_runs(*(Path(a) for a in argv or ["runs"]))
    if not records:
        raise SystemExit(f"no finished runs under {' '.join(argv or ['runs'])}")
    print("Test top-1 (%):\n")
    print(units.markdown(results_table(records), floatfmt=".2f"))
    print("\nTraining cost (mean over tasks):\n")
    print(units.markdown(cost_table(records), floatfmt=".2f"))
    int8 = int8_table(records)
    if int8 is not None:
        print("\nfloat32 vs int8 test top-1 (%), mean over the tasks measured (count in brackets):\n")
        summary = int8.groupby(level="method", sort=False).mean()
        summary.index = [f"{m} ({n})" for m, n in int8.groupby(level="method", sort=False).size().items()]
        print(units.markdown(summary, floatfmt=".2f"))


if __name__ == "__main__":
    main(sys.argv[1:])
