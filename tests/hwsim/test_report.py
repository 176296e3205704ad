"""The accuracy-vs-cost report (``ksm-sim --report``): golden Markdown, valid PNGs, bad input.

Run folders are written by the test (conftest's ``write_run``, json + safetensors.numpy, no torch).
Regenerate the golden file after an intended change with ``KSM_UPDATE_GOLDEN=1 pytest tests/hwsim``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwsim.ksm_sim import main
from hwsim.cost.layer_cost import kernel_mask_entries
from hwsim.errors import InputError
from hwsim.hardware.profile import load_profile
from hwsim.report.tables import binary_only_frame
from hwsim.report.sections import (
    cost_runs,
    crossings,
    expand_run_paths,
    load_runs,
    regen_command,
    soft_precision_frame,
    system_storage_frame,
    write_report,
)


def _conftest():  # the run-folder writer of this folder's conftest, usable at module scope
    import importlib.util

    spec = importlib.util.spec_from_file_location("_hwsim_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _conftest()
LAYERS, write_run, make_tensors = _helpers.LAYERS, _helpers.write_run, _helpers.make_tensors

GOLDEN = Path(__file__).parent / "golden" / "report_tiny.md"
COMMAND = "ksm-sim --masks runs/* --profile edge_npu --report report"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_suite(root: Path) -> list[Path]:
    """Two tasks x (ksm, piggyback, finetune), a binary-only KSM run, and a feature run that recorded
    no accuracy; only ``toy_a``'s KSM run measured the soft-precision sweep and int8 accuracy."""
    folders = []
    for t, task in enumerate(("toy_a", "toy_b")):
        for method, top1 in (("ksm", 0.81), ("piggyback", 0.79), ("finetune", 0.84)):
            bn = "frozen" if method == "piggyback" else "task"
            metrics: dict = {"top1": top1 - 0.02 * t, "history": [], "mask_density": None, "soft_precision": {}}
            if method == "ksm" and task == "toy_a":
                metrics["soft_precision"] = {"0": 0.7, "2": 0.775, "4": 0.8, "8": 0.81, "16": 0.81}
                metrics["int8"] = {"top1": 0.805}
            name = task if method == "ksm" else f"{task}-{method}"
            folders.append(write_run(root / name, method=method, batchnorm=bn, run_overrides={
                "task": task, "metrics": metrics, "train": {"seed": 0, "soft": True if method == "ksm" else None}}))
    tensors, roles = make_tensors("ksm")  # binary-only KSM: its scale is all zero (ksm-train stores it so)
    tensors.update({k: np.zeros_like(v) for k, v in tensors.items() if k.endswith(".scale")})
    folders.append(write_run(root / "toy_a-binary", method="ksm", tensors=tensors, roles=roles, run_overrides={
        "task": "toy_a", "metrics": {"top1": 0.72, "mask_density": None}, "train": {"seed": 0, "soft": False}}))
    folders.append(write_run(root / "toy_b-feature", method="feature", batchnorm="frozen", run_overrides={
        "task": "toy_b", "metrics": {"history": []}}))
    (root / "results.md").write_text("| ksm-train's table |\n", encoding="utf-8")
    return folders


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("suite")
    folders = make_suite(root / "runs")
    readme = write_report([*folders, root / "runs" / "results.md"], ["edge_npu"], root / "report", command=COMMAND)
    return readme, folders


def test_report_matches_golden_markdown(report: tuple[Path, list[Path]]) -> None:
    text = report[0].read_text(encoding="utf-8")
    if os.environ.get("KSM_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_report_states_its_command_first(report: tuple[Path, list[Path]]) -> None:
    lines = report[0].read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ")
    assert COMMAND in lines[:8]


def test_every_linked_png_exists_is_valid_and_not_blank(report: tuple[Path, list[Path]]) -> None:
    import matplotlib.image

    readme = report[0]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme.read_text(encoding="utf-8"))
    assert {"accuracy-vs-storage.png", "energy-edge_npu.png", "system-storage.png", "layer-masks.png",
            "soft-precision.png"} <= set(links)
    for link in set(links):
        assert not Path(link).is_absolute() and "/" not in link, link  # relative, beside README.md
        path = readme.parent / link
        assert path.is_file(), link
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE, link
        assert 5_000 < len(data) < 150_000, (link, len(data))
        pixels = matplotlib.image.imread(path)[..., :3]
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400, (link, pixels.shape)
        assert float(np.std(pixels)) > 0.05, f"{link} looks blank"
        assert (pixels.reshape(-1, 3) < 0.5).any(axis=1).mean() > 0.005, f"{link} has almost no ink"
    assert sorted(p.name for p in readme.parent.glob("*.png")) == sorted(set(links))


def test_missing_accuracy_is_n_a_not_zero(report: tuple[Path, list[Path]]) -> None:
    text = report[0].read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| toy_b  | feature"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "n/a" and cells[3] == "n/a"  # top-1 and int8 top-1
    headline = next(line for line in text.splitlines() if line.startswith("| feature"))
    assert "n/a" in headline and " 0.00 " not in headline


def test_int8_accuracy_shown_when_recorded(report: tuple[Path, list[Path]]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert "int8 top-1 (%)" in text and "80.50" in text


def test_soft_precision_storage_is_binary_bits_plus_b_bits_per_soft_entry(tmp_path: Path) -> None:
    runs = load_runs([write_run(tmp_path / "a", method="ksm", run_overrides={
        "metrics": {"top1": 0.8, "soft_precision": {"0": 0.5, "4": 0.7}}})])
    costs = cost_runs(runs, [load_profile("edge_npu")])
    frame = soft_precision_frame(costs).set_index("bits")
    zeros = sum(t.zeros for t in runs[0].work.tensors if t.role == "binary")
    from hwsim.workload.layers import layer_from_record
    entries = sum(kernel_mask_entries(layer_from_record(r, "t")) for r in LAYERS[:-1])
    assert list(frame.index) == [0, 2, 4, 8, 16]
    for bits in frame.index:
        assert frame.loc[bits, "masks (KiB)"] * 1024 * 8 == pytest.approx(entries + bits * zeros)
    assert frame.loc[4, "top-1 (%)"] == pytest.approx(70.0)
    assert np.isnan(frame.loc[2, "top-1 (%)"])  # not measured: missing, not zero


def test_binary_only_ksm_stores_one_bit_per_kernel_entry(report: tuple[Path, list[Path]],
                                                         tmp_path: Path) -> None:
    from hwsim.workload.layers import layer_from_record

    runs = {r.folder.name: r for r in load_runs(report[1])}
    costs = cost_runs([runs["toy_a-binary"], runs["toy_a"]], [load_profile("edge_npu")])
    entries = sum(kernel_mask_entries(layer_from_record(r, "t")) for r in LAYERS[:-1])
    assert costs.get(0, "edge_npu", "folded").task.mask_storage_bits == entries
    assert costs.get(1, "edge_npu", "folded").task.mask_storage_bits > entries  # soft KSM keeps its scale
    tensors, roles = make_tensors("ksm")  # a KSM run that stores no scale at all is binary-only too
    tensors = {k: v for k, v in tensors.items() if not k.endswith(".scale")}
    roles = {k: v for k, v in roles.items() if not k.endswith(".scale")}
    bare = load_runs([write_run(tmp_path / "bare", tensors=tensors, roles=roles)])
    bare_costs = cost_runs(bare, [load_profile("edge_npu")])
    assert bare_costs.get(0, "edge_npu", "folded").task.mask_storage_bits == entries


def test_finetune_overtakes_mask_methods_as_tasks_grow(report: tuple[Path, list[Path]]) -> None:
    costs = cost_runs(load_runs(report[1]), [load_profile("edge_npu")])
    system = system_storage_frame(costs, max_tasks=10)
    assert (system.diff().dropna() > 0).all().all()  # every task adds storage
    cross = crossings(system)
    assert cross["ksm"] is not None and system.loc[cross["ksm"], "finetune"] > system.loc[cross["ksm"], "ksm"]


def test_empty_run_set_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run folders"):
        load_runs([])
    (tmp_path / "results.md").write_text("x")
    result = CliRunner().invoke(main, ["--masks", str(tmp_path / "results.md"), "--report", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "no run folders" in result.output


def test_mixed_backbones_are_refused_clearly(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", run_overrides={"task": "a"})
    b = write_run(tmp_path / "b", run_overrides={
        "task": "b", "backbone": {"arch": "resnet18", "weights": "IMAGENET1K_V1", "sha256": "ab" * 32}})
    with pytest.raises(InputError, match="different backbones") as info:
        load_runs([a, b])
    assert "toy" in str(info.value) and "resnet18" in str(info.value)


def test_duplicate_task_and_method_is_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b")
    with pytest.raises(InputError, match="two runs for task 'toy', method 'ksm'"):
        load_runs([a, b])


def test_cli_report_takes_a_shell_glob_and_skips_files(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "toy", method="ksm")
    write_run(runs / "toy-piggyback", method="piggyback", batchnorm="frozen")
    (runs / "results.csv").write_text("x")
    (runs / "packnet").mkdir()  # an empty folder the glob also matches
    globbed = sorted(str(p) for p in runs.iterdir())  # what the shell makes of --masks runs/*
    out = tmp_path / "rep"
    result = CliRunner().invoke(main, ["--masks", *globbed, "--profile", "edge_npu", "--report", str(out),
                                       "--title", "Toy report"])
    assert result.exit_code == 0, result.output
    text = (out / "README.md").read_text(encoding="utf-8")
    assert text.startswith("# Toy report\n")
    assert f"ksm-sim --masks {runs}/* --profile edge_npu --report {out}" in text
    assert "Skipped (not run folders): `runs/packnet`, `runs/results.csv`" in text  # folder named: no two look alike


def test_cli_report_refuses_networks(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--network", "resnet18", "--report", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--report reads run folders only" in result.output


def test_folder_of_runs_expands_and_regen_command_uses_a_glob(tmp_path: Path) -> None:
    write_run(tmp_path / "runs" / "a")
    write_run(tmp_path / "runs" / "b")
    folders, skipped = expand_run_paths([tmp_path / "runs"])
    assert [f.name for f in folders] == ["a", "b"] and skipped == []
    cmd = regen_command([tmp_path / "runs" / "a", tmp_path / "runs" / "b"], ["all"], "reports/x")
    assert cmd == f"ksm-sim --masks {tmp_path}/runs/* --profile all --report reports/x"
    assert "--masks" in regen_command([tmp_path / "runs" / "a"], ["edge_npu"], "r")


def test_report_module_leaves_torch_out() -> None:
    code = ("import sys, hwsim.report.sections, hwsim.report.figures\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'ksm'))]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_report_without_accuracies_or_ksm_still_renders(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "toy-piggyback", method="piggyback", batchnorm="frozen",
                    run_overrides={"metrics": {}})
    readme = write_report([run], ["edge_npu"], tmp_path / "rep")
    text = readme.read_text(encoding="utf-8")
    assert "No KSM run was given" in text and "No soft KSM run was given" in text
    row = next(line for line in text.splitlines() if line.startswith("| toy    | piggyback"))
    assert row.split("|")[3].strip() == "n/a"
    assert "soft-precision.png" not in text and not (tmp_path / "rep" / "soft-precision.png").exists()


def test_packnet_system_storage_keeps_one_index_map_for_all_tasks(tmp_path: Path) -> None:
    from hwsim.cost.layer_cost import weight_elems
    from hwsim.workload.layers import layer_from_record

    sequence = {"tasks": ["toy"], "position": 1, "shared": "../shared.safetensors"}  # packnet learns in a sequence
    runs = load_runs([write_run(tmp_path / "p", method="packnet", run_overrides={"sequence": sequence})])
    costs = cost_runs(runs, [load_profile("edge_npu")])
    system = system_storage_frame(costs, max_tasks=4)["packnet"] * 1024 * 1024
    task = costs.get(0, "edge_npu", "folded").task
    per_task = task.batchnorm_bytes + task.head_bytes
    weights = sum(weight_elems(layer_from_record(r, "t")) for r in LAYERS[:-1])  # 8-bit backbone = bytes
    for t, bits in ((1, 1), (2, 2), (3, 2), (4, 3)):  # ceil(log2(T + 1)) bits per weight
        assert system[t] == pytest.approx(weights + weights * bits / 8 + t * per_task)


def test_a_runs_folder_expands_into_sequence_tasks(tmp_path: Path) -> None:
    from hwsim.report.sections import expand_run_paths

    write = write_run
    write(tmp_path / "runs" / "digits")
    write(tmp_path / "runs" / "packnet" / "digits", method="packnet")
    (tmp_path / "runs" / "packnet" / "shared.safetensors").write_bytes(b"")
    (tmp_path / "runs" / "results.md").write_text("x")
    folders, skipped = expand_run_paths([tmp_path / "runs"])
    assert folders == [tmp_path / "runs" / "digits", tmp_path / "runs" / "packnet" / "digits"]
    assert skipped == []


def test_figure_files_come_from_the_sections(tmp_path: Path) -> None:
    from hwsim.fileio.output_guard import write_marker
    from hwsim.report.sections import REPORT_TOOL, SECTIONS, Figure, Part, Section, build_report, figure_patterns

    assert set(figure_patterns()) == {"accuracy-vs-storage.png", "energy-*.png", "system-storage.png",
                                      "layer-masks.png", "soft-precision.png"}
    out = tmp_path / "rep"
    out.mkdir()
    (out / "energy-dropped_profile.png").write_bytes(b"old")  # a figure of an earlier report: removed
    (out / "mine.png").write_bytes(b"mine")  # not a report figure: kept
    write_marker(out, REPORT_TOOL, ["energy-dropped_profile.png"])  # the earlier report's folder
    run = write_run(tmp_path / "runs" / "toy", method="ksm")
    write_report([run], ["edge_npu"], out)
    assert not (out / "energy-dropped_profile.png").exists() and (out / "mine.png").exists()

    costs = cost_runs(load_runs([run]), [load_profile("edge_npu")])
    sneaky = Section(lambda r: Part(["x"], [Figure("undeclared.png", lambda path: path)]))
    with pytest.raises(ValueError, match="undeclared.png"):
        build_report(costs, tmp_path, "cmd", sections=[*SECTIONS, sneaky])


@pytest.mark.parametrize(("option", "applied"), [
    (["--batch", "4"], lambda call: call.get("batch") == 4),
    (["--objective", "latency"], lambda call: call.get("objective") == "latency"),
    (["--steady-state"], lambda call: call.get("steady_state") is True),
    (["--set", "array.mac_energy_pj=1.0"], lambda call: call["profile"].array.mac_energy_pj == 1.0),
])
def test_cli_report_costs_with_the_options_of_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        option: list[str], applied) -> None:
    """--report once ignored --batch, --objective, --steady-state and --set: it now costs every run as the
    printed table does, says so, and puts the option in its regenerate command."""
    import hwsim.report.tables

    calls: list[dict] = []
    simulate = hwsim.report.tables.simulate

    def spy(work, profile, mode, **options):
        calls.append({"profile": profile, **options})
        return simulate(work, profile, mode, **options)

    monkeypatch.setattr(hwsim.report.tables, "simulate", spy)
    run = write_run(tmp_path / "runs" / "toy", method="ksm")
    out = tmp_path / "rep"
    result = CliRunner().invoke(main, ["--masks", str(run), "--report", str(out), *option])
    assert result.exit_code == 0, result.output
    assert calls and all(applied(call) for call in calls)
    text = (out / "README.md").read_text(encoding="utf-8")
    flags = " ".join(option)
    assert f"Costed with `{flags}`" in text
    assert f"ksm-sim --masks {run} --profile edge_npu {flags} --report {out}" in text
    table = CliRunner().invoke(main, ["--masks", str(run), "--mode", "on_the_fly", "--json", str(tmp_path / "c.json"),
                                      *option])
    assert table.exit_code == 0, table.output
    energy_uj = json.loads((tmp_path / "c.json").read_text())["results"][0]["totals"]["energy_j"] * 1e6
    lines = text.splitlines()
    caption = next(i for i, line in enumerate(lines) if line.startswith("**Energy per inference (µJ), mask applied"))
    row = next(line for line in lines[caption:] if line.startswith("| toy"))
    assert float(row.split("|")[3]) == pytest.approx(energy_uj, rel=1e-3)  # the table's number, 4 digits


def test_cli_report_refuses_a_bad_set_in_one_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "toy", method="ksm")
    result = CliRunner().invoke(main, ["--masks", str(run), "--report", str(tmp_path / "rep"),
                                       "--set", "array.rowz=16"])
    assert result.exit_code == 1 and "--set array.rowz" in result.output and "unknown key" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()


def test_soft_runs_are_told_by_how_they_trained_not_by_their_label(tmp_path: Path) -> None:
    """A soft run whose label carries more than the method (another learning rate) is still a soft run, and
    two soft runs of one task each get their own column in section 6 (the pivot once failed on them)."""
    soft = {"metrics": {"top1": 0.8, "soft_precision": {"0": 0.5, "4": 0.7}}}
    folders = [write_run(tmp_path / "runs" / "toy", run_overrides=soft),
               write_run(tmp_path / "runs" / "toy-lr", run_overrides=soft | {"train": {"seed": 0, "lr_body": 1e-4}})]
    runs = load_runs(folders)
    assert runs[1].label != runs[1].method  # "ksm (lr 0.0001)"
    costs = cost_runs(runs, [load_profile("edge_npu")])
    assert set(soft_precision_frame(costs)["task"]) == {f"toy / {runs[0].label}", f"toy / {runs[1].label}"}
    assert binary_only_frame(costs).empty
    readme = write_report(folders, ("edge_npu",), tmp_path / "report")
    text = readme.read_text(encoding="utf-8")
    assert f"toy / {runs[1].label} top-1 (%)" in text
