"""What every command (ksm-train, ksm-compare, ksm-export, ksm-sim) promises about bad input, as one table:
one line, a non-zero exit, no traceback, and nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim.ksm_sim import main as sim
from ksm.cli.ksm_compare import main as compare
from ksm.cli.ksm_export import main as export
from ksm.cli.ksm_train import main


def _sequence_with_empty_shared(run: Path, tmp: Path) -> Path:
    folder = shutil.copytree(run, tmp / "packnet" / "digits")
    record = json.loads((folder / "run.json").read_text())
    record["sequence"] = {"position": 1, "tasks": ["digits"], "shared": "../shared.safetensors"}
    (folder / "run.json").write_text(json.dumps(record))
    (tmp / "packnet" / "shared.safetensors").write_bytes(b"")
    return folder


BAD_INPUTS = [  # (command, arguments with {tmp}/{run}, the one line expected)
    ("train", ["--task", "digits", "--device", "bogus"], "is not a torch device"),
    ("train", ["--task", "digits", "--device", "cuda:7"], "CUDA device"),
    ("train", ["--task", "digits", "--runs-dir", "{tmp}/r", "--max-train", "20"], "results.md: is a folder"),
    ("train", ["--task", "../escape"], "is not a task name"),
    ("train", ["--task", "digits", "--lr-mask", "nan"], "is not a finite number"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/afile"], "exists and is not a folder"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/c", "--device", "bogus"], "is not a torch device"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/c", "--variant", "ksm"], "at least two variants"),
    ("export", ["{run}", "--onnx", "{tmp}/afile/x.onnx"], "afile"),
    ("export", ["{tmp}/packnet/digits", "--onnx", "{tmp}/p.onnx"], "shared.safetensors: not a readable safetensors"),
    ("export", ["{run}", "--table-file", "{tmp}/d", "--int8"], "is a directory"),
    ("sim", ["--network", "mobilenet_v2", "--json", "{tmp}/d"], "is a directory"),
    ("sim", ["--masks", "{tmp}/d"], "not a run folder"),  # nothing to cost is not a success
    ("sim", ["--network", "mobilenet_v2", "--profile", "{tmp}/p.yaml"], "is a folder, not a file"),
    ("export", ["{run}", "--int8", "--table-file", "{tmp}/link", "--out-dir", "{tmp}/ex"], "symbolic link"),
    ("export", ["{tmp}/linked", "--int8", "--out-dir", "{tmp}/ex"], "linked/run.json: is a symbolic link"),
    ("export", ["{tmp}/negative", "--pack", "{tmp}/n.ksmtask"], "dataset.num_classes -10 is not a positive integer"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp1", "--report", "{tmp}/rep"], "metrics.selection.role: missing key"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp2", "--report", "{tmp}/rep"], "no finished comparison runs"),
]


@pytest.mark.parametrize(("command", "args", "message"), BAD_INPUTS)
def test_bad_input_per_command(digits_run: Path, tmp_path: Path, command: str, args: list[str], message: str) -> None:
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "d").mkdir()
    (tmp_path / "r" / "results.md").mkdir(parents=True)
    (tmp_path / "p.yaml").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "afile")
    for name, text in (("cmp1", '{"task": "digits", "metrics": {"selection": {"variant": "ksm"}}}'), ("cmp2", "[1, 2]")):
        (tmp_path / name / "x").mkdir(parents=True)
        (tmp_path / name / "x" / "run.json").write_text(text)
    _sequence_with_empty_shared(digits_run, tmp_path)
    linked = shutil.copytree(digits_run, tmp_path / "linked")  # run.json a symlink to a file elsewhere
    (tmp_path / "elsewhere.json").write_bytes((linked / "run.json").read_bytes())
    (linked / "run.json").unlink()
    (linked / "run.json").symlink_to(tmp_path / "elsewhere.json")
    negative = shutil.copytree(digits_run, tmp_path / "negative")
    record = json.loads((negative / "run.json").read_text())
    record["dataset"]["num_classes"] = -10
    (negative / "run.json").write_text(json.dumps(record))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    run_before = {p.name: p.read_bytes() for p in digits_run.iterdir()}
    cli = {"train": main, "compare": compare, "export": export, "sim": sim}[command]
    extra = ["--weights", "none"] if command == "train" else []
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path, run=digits_run) for a in args] + extra)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    assert {p.name: p.read_bytes() for p in digits_run.iterdir()} == run_before
