"""What users touch in hwsim's output (issue 25): Markdown tables no cell can break, engineering units on
figure axes, labels kept apart, ``--version``, the summary across profiles, and a sweep without pyarrow."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import units
from hwsim.explore import outputs
from hwsim.explore.ksm_explore import main as explore_main
from hwsim.ksm_sim import main as sim_main
from hwsim.report import axes_style

cells = st.text(alphabet=st.sampled_from("ab|\\ -x\n\r\u2028\u202e"), max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(cells, cells), min_size=1, max_size=4), st.tuples(cells, cells))
def test_no_cell_text_splits_a_markdown_row(rows: list[tuple[str, str]], names: tuple[str, str]) -> None:
    names = (names[0] + "0", names[1] + "1")  # distinct column names
    text = units.markdown(pd.DataFrame(rows, columns=list(names)), index=False)
    assert len(text.splitlines()) == len(rows) + 2 and "\u202e" not in text  # header, rule, one line a row
    for line in text.splitlines():
        unescaped = re.findall(r"(?<!\\)\|", line.replace("\\\\", ""))
        assert len(unescaped) == 3, line  # | a | b |


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(1e-14, 1e12), min_size=1, max_size=20), st.sampled_from(["J", "s", "B"]))
def test_engineering_units_put_the_median_between_1_and_1000(values: list[float], unit: str) -> None:
    factor, label = axes_style.engineering(values, unit)
    scaled = sorted(v * factor for v in values)
    median = (scaled[(len(scaled) - 1) // 2] + scaled[len(scaled) // 2]) / 2
    assert label.endswith(unit if unit != "B" else "B")
    if unit == "B":
        assert median < 1024 or label == "GiB"
        assert median >= 1 or label == "B"
    else:
        assert median < 1000 or label == unit  # nothing above the base unit
        assert median >= 1 or label == "p" + unit


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12), st.floats(0.001, 0.08))
def test_spread_labels_keep_their_order_and_their_distance(positions: list[float], gap: float) -> None:
    placed = axes_style.spread(positions, gap, 0.0, 1.0)
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    ys = [placed[i] for i in order]
    assert all(b - a >= gap - 1e-9 for a, b in zip(ys, ys[1:]))
    if gap * (len(positions) - 1) <= 1.0:
        assert min(placed) >= -1e-9 and max(placed) <= 1 + 1e-9


def test_swept_axis_values_sort_by_size_and_read_in_units() -> None:
    arrays = ['{"cols":64,"rows":16}', '{"cols":8,"rows":8}', '{"cols":32,"rows":32}', '{"cols":16,"rows":16}']
    assert [outputs._tick_label("array", a) for a in outputs._order(arrays)] == ["8×8", "16×16", "16×64", "32×32"]
    sizes = ["1048576", "262144", "33554432"]
    assert [outputs._tick_label("levels.sram.size_bytes", v) for v in outputs._order(sizes)] == [
        "256 KiB", "1 MiB", "32 MiB"]


def test_several_profiles_end_with_one_table_across_them() -> None:
    result = CliRunner().invoke(sim_main, ["--network", "alexnet", "--profile", "edge_npu", "--profile", "eyeriss"])
    assert result.exit_code == 0, result.output
    tail = result.output.split("## All 2 results, per image")[1]
    rows = [line for line in tail.splitlines() if line.startswith("| alexnet")]
    assert [row.split("|")[2].strip() for row in rows] == ["edge_npu", "eyeriss"]
    one = CliRunner().invoke(sim_main, ["--network", "alexnet"])
    assert "## All" not in one.output  # one result: its own table says it all


SMALL_SPEC = """name: small
profiles: [edge_npu]
axes:
  levels.sram_1MB.size_bytes: [262144, 1048576]
workloads:
  - network: alexnet
methods: [ksm, finetune]
modes: [folded]
tasks: 2
objectives: [energy, latency]
"""


def test_a_sweep_without_pyarrow_writes_csv_and_says_which_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(outputs, "parquet_available", lambda: False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SMALL_SPEC)
    result = CliRunner().invoke(explore_main, [str(spec), "-o", str(tmp_path / "out"), "-q", "-j", "1", "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "pip install 'ksm[explore]'" in result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "points.csv" in written and "points.parquet" not in written
    assert "no Parquet" in (tmp_path / "out" / "summary.md").read_text()
