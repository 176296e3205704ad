"""``ksm-compare`` end to end: the whole default comparison under the CI-sized ``smoke`` protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hwsim.fileio.output_guard import write_marker
from ksm.cli.ksm_compare import main
from ksm.compare.comparison import README_BEGIN, README_END
from ksm.compare.protocol import PROTOCOLS
from tests.hwsim.conftest import write_run


def comparison_run(folder: Path, selection: dict[str, Any], **metrics: Any) -> Path:
    """A run folder as a comparison writes it: a valid run.json with ``metrics.selection`` and the wall time."""
    write_run(folder, run_overrides={"train": {"seed": 0, "wall_seconds": 1.0},
                                     "metrics": {"top1": 0.5, "selection": selection, **metrics}})
    return folder


def test_compare_refuses_tasks_outside_the_suite(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--task", "cubs", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--task cubs: the comparison runs on the built-in tasks" in result.output
    assert not (tmp_path / "c").exists()


def test_report_only_names_a_folder_that_is_not_a_comparison(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    result = CliRunner().invoke(main, ["--report-only", "--out", str(tmp_path / "c"), "--report", str(tmp_path / "r")])
    assert result.exit_code == 1 and f"{tmp_path / 'c'}: no finished comparison runs" in result.output


def test_compare_help_gives_examples() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "ksm-compare --protocol smoke" in result.output and "--workers" in result.output


@pytest.mark.slow
def test_smoke_comparison_runs_the_whole_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every (task, variant, seed) of the default suite under one grid; the report and README follow.

    Every task and variant of the smoke protocol, its grid and epochs, but two seeds (the fewest Welch's
    test needs) and a smaller data budget (one batch a step, 40 validation images): what is checked
    does not depend on the sizes, and it needs about 60 % of the CPU time of the shipped smoke protocol.
    """
    from dataclasses import replace

    protocol = replace(PROTOCOLS["smoke"], seeds=(0, 1), max_train=32, max_val=40)
    monkeypatch.setitem(PROTOCOLS, "smoke", protocol)  # the CLI looks it up by name; workers get the object
    out, report, readme = tmp_path / "cmp", tmp_path / "report", tmp_path / "README.md"
    readme.write_text(f"# x\n{README_BEGIN}\nold\n{README_END}\n")
    args = ["--protocol", "smoke", "--out", str(out), "--report", str(report), "--readme", str(readme),
            "--workers", "2", "--threads", "1", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output

    records = [json.loads(p.read_text()) for p in out.rglob("run.json")]
    units = len(protocol.tasks) * len(protocol.variants) * len(protocol.seeds)
    assert len(records) == units == 72
    seen = {(r["task"], r["metrics"]["selection"]["variant"], r["metrics"]["selection"]["seed"]) for r in records}
    assert len(seen) == units
    for r in records:
        sel = r["metrics"]["selection"]
        assert sel["grid"] == [list(g) for g in protocol.grid()] and sel["test_reads"] == 1
        assert len(sel["trials"]) == (len(protocol.lr_head) if sel["variant"] == "feature" else len(protocol.grid()))
        assert sel["split"]["val_size"] > 0 and r["dataset"]["val_seed"] == protocol.val_seed
        assert r["metrics"]["selection"]["protocol"] == protocol.to_json()
        assert sel["split"]["train_size"] == protocol.max_train
        assert 0.0 <= r["metrics"]["top1"] <= 1.0

    text = (report / "comparison.md").read_text()
    for name in protocol.variants:  # the LoRA variants run only when asked for by name
        assert f"| {name} " in text
    assert "ksm-compare --protocol smoke" in text and "Welch" in text
    assert (report / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((report / "comparison.csv").read_text().splitlines()) == units + 1
    block = readme.read_text()
    assert "old" not in block and "| ksm " in block and block.startswith("# x\n" + README_BEGIN)

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "continue it with --resume" in again.output
    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_report_only_defaults_to_a_folder_named_after_the_protocol(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A smoke comparison's report never lands in reports/default, where the headline lives."""
    monkeypatch.chdir(tmp_path)
    out = Path("cmp")
    run = out / "seed0" / "digits-ksm"
    run.mkdir(parents=True)
    (out / "protocol.json").write_text(json.dumps(PROTOCOLS["smoke"].to_json()))
    selection = {"variant": "ksm", "role": "method", "seed": 0, "trials": [{"seconds_per_step": 0.1}],
                 "chosen": {"val_top1": 0.5, "lr_body": 1e-3, "lr_head": 1e-3, "epoch": 1}}
    comparison_run(run, selection)
    result = CliRunner().invoke(main, ["--report-only", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Path("reports/compare-smoke/comparison.md").exists() and not Path("reports/default").exists()


@pytest.mark.parametrize("out", [".", "mine"])
def test_force_never_deletes_a_folder_that_is_not_a_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               out: str) -> None:
    """The output guard (issue 26): ``--out . --force`` emptied the working folder, ``--force`` on any other folder
    deleted its files; both are refused in one line, nothing touched."""
    import ksm.compare.protocol

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ksm.compare.protocol, "plan_units", lambda *a, **k: [])  # never train, even if not refused
    Path(out).mkdir(exist_ok=True)
    (Path(out) / "thesis.tex").write_text("years of work")
    (tmp_path / "notes.md").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, ["--protocol", "smoke", "--out", out, "--force"])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert len(result.output.strip().splitlines()) == 1 and "never replaced" in result.output, result.output
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (Path(out) / "thesis.tex").read_text() == "years of work"


# ---- bounded work, said up front (issue 26, item 3) ------------------------------------------


def test_seeds_1000000000_is_refused_before_any_work(tmp_path: Path) -> None:
    """``--seeds 1000000000`` built a tuple of a billion seeds (a traceback or an unbounded run); now the
    training epochs are counted first and refused in one line with the option that lifts the cap."""
    out = tmp_path / "c"
    result = CliRunner().invoke(main, ["--seeds", "1000000000", "--out", str(out), "--report", str(tmp_path / "r")])
    line = result.output.strip()
    assert result.exit_code == 1 and "\n" not in line, result.output
    assert line.startswith("Error: ksm-compare: about 408,000,000,000 training epochs, ~") and \
        line.endswith("(over the cap of 20,000 training epochs); lift it with --max-training-epochs 408000000000")
    assert not out.exists() and not (tmp_path / "r").exists()


def test_every_protocol_with_every_variant_stays_under_the_cap() -> None:
    from dataclasses import replace

    from ksm.cli.ksm_compare import comparison_estimate
    from ksm.compare.protocol import VARIANTS

    for protocol in PROTOCOLS.values():
        every = replace(protocol, variants=tuple(VARIANTS))
        assert not comparison_estimate(every, len(every.seeds), workers=1).over
    standard = comparison_estimate(PROTOCOLS["standard"], 3, workers=2)
    assert standard.units == 1224 and round(standard.seconds / 60) == 37  # docs/comparison.md: 37 minutes


def test_max_training_epochs_refuses_and_names_the_count(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--protocol", "smoke", "--max-training-epochs", "10", "--out",
                                       str(tmp_path / "c")])
    assert result.exit_code == 1 and "lift it with --max-training-epochs 408" in result.output
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("option", ["--workers", "--threads"])
def test_process_counts_are_bounded(tmp_path: Path, option: str) -> None:
    result = CliRunner().invoke(main, [option, "1000000000", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "1<=x<=256" in result.output and not (tmp_path / "c").exists()


# ---- every output checked before anything is trained or written -------------------------------------------


@pytest.mark.parametrize(("args", "says"), [
    (["--report", "mine"], "--report mine: folder is not empty and was not written by this project"),
    (["--report", "."], "--report .: holds the input cmp"),
    (["--report", "cmp"], "--report cmp: is the input cmp"),
    (["--report", "cmp/rep"], "--report cmp/rep: lies inside the input cmp"),
    (["--report", "notes.md"], "--report notes.md: exists and is not a folder"),
    (["--readme", "notes.md"], "--readme notes.md: no '<!-- comparison:begin -->'"),
    (["--readme", "rep/comparison.md"], "--readme rep/comparison.md: rep/comparison.md: is the input"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_report_and_readme_are_refused_before_the_comparison_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    args: list[str], says: str) -> None:
    """Each was refused only after the whole comparison had trained (here an empty plan: the comparison folder
    appeared, then the error); now one line naming the option and the file, and nothing written."""
    import ksm.compare.protocol

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ksm.compare.protocol, "plan_units", lambda *a, **k: [])  # never train, even if not refused
    Path("notes.md").write_text("the user's notes")
    Path("mine").mkdir()
    Path("mine/thesis.tex").write_text("years of work")
    Path("rep").mkdir()
    Path("rep/comparison.md").write_text(f"{README_BEGIN}\n{README_END}\n")  # a block, but the report's own file
    write_marker(Path("rep"), "ksm-compare", ["comparison.md"])  # a report folder of ours
    before = {str(p): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    base = ["--protocol", "smoke", "--no-progress", "--out", "cmp"] + ([] if "--report" in args else ["--report", "rep"])
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {says}"), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert {str(p): p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


def test_a_damaged_comparison_run_is_refused_naming_its_file_and_field(tmp_path: Path) -> None:
    """The report read run.json with its own checks (``task`` a string, ``top1`` a fraction); it now reads it
    through the run.json schema, so ``metrics.top1: 7`` is refused like any reader refuses it."""
    from ksm.compare.comparison import comparison_frame

    selection = {"variant": "ksm", "role": "method", "seed": 0, "trials": [{"seconds_per_step": 0.1, "train_seconds": 1}],
                 "chosen": {"val_top1": 0.5, "lr_body": 1e-3, "lr_head": 1e-3, "epoch": 1}}
    run = comparison_run(tmp_path / "seed0" / "digits-ksm", selection)
    assert len(comparison_frame(tmp_path)) == 1
    record = json.loads((run / "run.json").read_text())
    record["metrics"]["top1"] = 7
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"digits-ksm/run\.json: metrics\.top1: .*got 7"):
        comparison_frame(tmp_path)
