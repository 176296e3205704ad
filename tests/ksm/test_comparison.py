"""The comparison's tables and verdicts, on made-up per-seed results (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.hwsim.conftest import write_run
from ksm.compare.comparison import (
    README_BEGIN,
    README_END,
    accuracy_table,
    choice_table,
    comparison_frame,
    pair_table,
    separation,
    soft_part_sentence,
    suite_means,
    update_readme,
    welch_p,
)


def _frame(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (task, variant), tops in values.items():
        for seed, top1 in enumerate(tops):
            rows.append({"task": task, "variant": variant, "role": "ablation" if "-" in variant else "method",
                         "seed": seed, "top1": top1, "val_top1": top1, "lr_body": 1e-3, "lr_head": 1e-2,
                         "epoch": 3, "trials": 4, "density": 0.7 if variant != "finetune" else None,
                         "wall_seconds": 10.0, "seconds_per_step": 0.2, "trial_seconds": 2.0,
                         "folder": "x"})
    return pd.DataFrame(rows)


FRAME = _frame({
    ("a", "ksm"): [90.0, 91.0, 89.0], ("a", "piggyback"): [80.0, 80.5, 79.5], ("a", "finetune"): [90.5, 89.5, 91.5],
    ("a", "ksm-binary"): [89.0, 91.0, 90.0],
    ("b", "ksm"): [99.0, 99.1, 98.9], ("b", "piggyback"): [98.9, 99.0, 99.1], ("b", "finetune"): [99.2, 99.0, 99.1],
    ("b", "ksm-binary"): [99.0, 98.8, 99.0],
})


def test_welch_p_separates_far_samples_and_keeps_close_ones() -> None:
    assert welch_p(np.array([90.0, 91, 89]), np.array([80.0, 80.5, 79.5])) < 0.01
    assert welch_p(np.array([90.0, 91, 89]), np.array([90.5, 89.5, 91.5])) > 0.5
    assert welch_p(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert welch_p(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == 0.0
    assert np.isnan(welch_p(np.array([1.0]), np.array([2.0, 3.0])))


def test_accuracy_table_marks_the_best_and_what_is_within_noise() -> None:
    table = accuracy_table(FRAME)
    assert list(table.columns) == ["a", "b", "mean"]
    assert table.loc["finetune", "a"].startswith("**90.50 ± 1.00")
    assert table.loc["ksm", "a"] == "≈ 90.00 ± 1.00"
    assert table.loc["piggyback", "a"] == "80.00 ± 0.50"  # far below the best: no mark
    assert table.loc["ksm", "b"].startswith("≈")
    assert list(table.index) == ["ksm", "piggyback", "finetune", "ksm-binary"]


def test_suite_mean_is_per_seed_and_needs_every_task() -> None:
    means = suite_means(FRAME).set_index(["variant", "seed"])["top1"]
    assert means["ksm", 0] == pytest.approx((90.0 + 99.0) / 2)
    partial = FRAME[~((FRAME["variant"] == "ksm") & (FRAME["task"] == "b") & (FRAME["seed"] == 2))]
    assert np.isnan(suite_means(partial).set_index(["variant", "seed"])["top1"]["ksm", 2])


def test_pairs_give_verdicts() -> None:
    pairs = pair_table(FRAME).set_index(["A", "B", "task"])
    assert pairs.loc[("ksm", "piggyback", "a"), "verdict"] == "ksm better"
    assert pairs.loc[("ksm", "piggyback", "a"), "Δ A−B (points)"] == pytest.approx(10.0)
    assert pairs.loc[("ksm", "finetune", "a"), "verdict"] == "within noise"
    assert ("ksm", "packnet", "a") not in pairs.index  # not run: no row


def test_separation_flags_a_ceiling_task() -> None:
    spread = separation(FRAME)
    assert bool(spread.loc["a", "separates the methods"]) is True
    assert bool(spread.loc["b", "separates the methods"]) is False
    assert spread.loc["b", "spread (points)"] == pytest.approx(0.1)


def test_soft_part_sentence_reports_noise() -> None:
    assert "within seed noise" in soft_part_sentence(FRAME)
    apart = _frame({("a", "ksm"): [95.0, 95.2, 94.8], ("a", "ksm-binary"): [90.0, 90.2, 89.8]})
    assert "the soft part adds accuracy" in soft_part_sentence(apart)
    assert soft_part_sentence(_frame({("a", "ksm"): [1.0, 2.0]})) == "The soft-part ablation was not run."


def test_choice_table_counts_the_choices() -> None:
    table = choice_table(FRAME)
    assert table.loc["ksm", "chosen lr body/head (count)"] == "0.001/0.01 ×6"
    assert table.loc["ksm", "trials"] == 4 and np.isnan(table.loc["finetune", "final mask density"])


def test_comparison_frame_reads_only_selected_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no finished comparison runs"):
        comparison_frame(tmp_path)
    selection = {"variant": "ksm", "role": "method", "seed": 0, "chosen": {"val_top1": 0.5, "lr_body": 1e-3,
                 "lr_head": 1e-3, "epoch": 2}, "trials": [{"seconds_per_step": 0.1, "train_seconds": 1.0},
                                                          {"seconds_per_step": 0.3, "train_seconds": 3.0}]}
    write_run(tmp_path / "seed0" / "a-ksm", run_overrides={
        "task": "a", "metrics": {"top1": 0.25, "selection": selection}, "train": {"seed": 0, "wall_seconds": 3.0}})
    (tmp_path / ".hidden" / "x").mkdir(parents=True)
    (tmp_path / ".hidden" / "x" / "run.json").write_text("{}")
    frame = comparison_frame(tmp_path)
    assert len(frame) == 1 and frame.loc[0, "top1"] == 25.0 and frame.loc[0, "seconds_per_step"] == pytest.approx(0.2)
    assert frame.loc[0, "trial_seconds"] == pytest.approx(2.0)


def test_update_readme_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold\n{README_END}\noutro\n")
    update_readme(readme, f"{README_BEGIN}\nnew table\n{README_END}")
    assert readme.read_text() == f"intro\n{README_BEGIN}\nnew table\n{README_END}\noutro\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="README.md: no '<!-- comparison:begin -->'"):
        update_readme(readme, "x")
    assert readme.read_text() == "no markers\n"
