"""The accuracy table that ``ksm-train`` prints and saves beside the run folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd


def method_label(record: dict[str, Any]) -> str:
    """e.g. ``ksm``, ``piggyback (BN task)``, ``ksm (binary only)``."""
    label = record["method"]
    defaults = {"ksm": "task", "finetune": "task", "piggyback": "frozen", "feature": "frozen"}
    if record.get("batchnorm") and record["batchnorm"] != defaults.get(label, record["batchnorm"]):
        label += f" (BN {record['batchnorm']})"
    if record["method"] == "ksm" and record.get("train", {}).get("soft") is False:
        label += " (binary only)"
    return label


def results_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Test top-1 (%) per task (rows) and method (columns), with a mean row."""
    rows = [{"task": r["task"], "method": method_label(r), "top1": 100 * r["metrics"]["top1"]} for r in records]
    table = pd.DataFrame(rows).pivot_table(index="task", columns="method", values="top1", sort=False)
    if len(table) > 1:
        table.loc["mean"] = table.mean(numeric_only=True)
    table.columns.name = None
    return table


def write_results(table: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.md", table.to_markdown(floatfmt=".2f") + "\n"), ("results.csv", table.to_csv())):
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
