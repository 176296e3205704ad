"""The committed results are what the landed code produces: one run of the README's default table,
re-derived from nothing with the settings of ``scripts/regenerate_default.sh`` (one torch thread, seed
0), and its row of ``reports/default/README.md``. If the code moves a result, this fails until the
tables are regenerated with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hwsim import load_profile
from hwsim.workload.runs import load_runs
from hwsim.report.tables import accuracy_storage_frame, cost_runs
from ksm.network.backbones import BackboneSpec, build_backbone
from ksm.cli.ksm_train import main as train_main

ROOT = Path(__file__).resolve().parents[2]


def _table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|:")]


def _readme_top1(task: str, method: str) -> str:
    """The cell of the README's default accuracy table (between "Test top-1 (%):" and "What this says")."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Results on the built-in suite", 1)[1].split("Test top-1 (%):", 1)[1]
    rows = _table_rows(block.split("**What this says.**", 1)[0])
    header = rows[0]
    return next(row for row in rows[1:] if row[0] == task)[header.index(method)]


def _report_row(task: str, method: str) -> dict[str, str]:
    """The (task, method) row of section 1 of reports/default/README.md."""
    report = (ROOT / "reports" / "default" / "README.md").read_text(encoding="utf-8")
    section = report.split("## 1. Accuracy, storage and cost per task and method", 1)[1].split("**", 1)[0]
    rows = _table_rows(section)
    header = rows[0]
    return dict(zip(header, next(r for r in rows[1:] if r[0] == task and r[1] == method)))


def _number(cell: str) -> float:
    return float(re.sub(r"[,\s]", "", cell))


def _pretrained() -> bool:
    try:
        build_backbone(BackboneSpec("mobilenet_v2", "IMAGENET1K_V1"))
    except Exception:  # noqa: BLE001 - weights not installed offline: nothing to re-derive from
        return False
    return True


@pytest.mark.slow
def test_default_table_run_is_rederived(tmp_path: Path) -> None:
    if not _pretrained():
        pytest.skip("the ImageNet MobileNetV2 weights are not installed (bash setup.sh places them)")
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(train_main, [
            "--task", "digits", "--method", "ksm", "--epochs", "2", "--max-train", "3000", "--threads", "1",
            "--no-progress", "--out", str(tmp_path / "digits")])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "digits" / "run.json").read_text(encoding="utf-8"))
    top1 = 100 * record["metrics"]["top1"]
    assert f"{top1:.2f}" == _readme_top1("digits", "ksm"), "README's default table is stale: regenerate it"

    row = _report_row("digits", "ksm")
    costs = cost_runs(load_runs([tmp_path / "digits"]), [load_profile("edge_npu")])
    ours = accuracy_storage_frame(costs).iloc[0]
    assert f"{ours['top-1 (%)']:.2f}" == row["top-1 (%)"]
    for column in ("masks (KiB)", "task-specific (KiB)"):  # printed to 4 significant digits
        assert ours[column] == pytest.approx(_number(row[column]), rel=6e-4), column
