"""The results tables over run.json records."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ksm.compare.results import cost_table, find_runs, int8_table, method_label, results_table


def _record(task: str, method: str, top1: float, **train) -> dict:
    return {"task": task, "method": method, "batchnorm": {"ksm": "task"}.get(method, "frozen"),
            "metrics": {"top1": top1, "history": [{"seconds": 10.0, "steps": 20}, {"seconds": 12.0, "steps": 20}]},
            "train": {"lr_body": 1e-3, **train}}


def test_table_labels_order_and_mean() -> None:
    records = [_record("a", "piggyback", 0.5), _record("a", "ksm", 0.9), _record("b", "ksm", 0.7),
               {**_record("a", "piggyback", 0.6), "batchnorm": "task"}]
    table = results_table(records)
    assert list(table.columns) == ["ksm", "piggyback", "piggyback (BN task)"]
    assert table.loc["mean", "ksm"] == 80.0
    assert math.isnan(table.loc["mean", "piggyback"])  # missing task b: no mean rather than a biased one
    assert method_label(_record("a", "piggyback", 0.5, lr_body=1e-4)) == "piggyback (lr 0.0001)"
    assert method_label({**_record("a", "ksm", 0.5), "train": {"soft": False}}) == "ksm (binary only)"


def test_cost_table_and_int8(tmp_path: Path) -> None:
    records = [_record("a", "ksm", 0.9), _record("b", "ksm", 0.7)]
    records[0]["metrics"]["int8"] = {"top1": 0.88, "on_the_fly_top1": 0.89}
    cost = cost_table(records)
    assert cost.loc["ksm", "train s / task"] == 22.0 and cost.loc["ksm", "s / step"] == 22.0 / 40
    int8 = int8_table(records)
    assert int8.loc[("ksm", "a"), "int8 folded"] == 88.0 and len(int8) == 1
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text(json.dumps(records[0]))
    (tmp_path / ".r2.partial").mkdir()
    (tmp_path / ".r2.partial" / "run.json").write_text(json.dumps(records[1]))
    assert [r["task"] for r in find_runs(tmp_path)] == ["a"]
