"""The ksm-sim command: happy paths, the JSON contract, and one-line errors that write nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim.ksm_sim import main
from hwsim.hardware.profile import bundled_profiles


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_has_an_example() -> None:
    for flag in ("-h", "--help"):
        r = invoke(flag)
        assert r.exit_code == 0
        assert "Examples:" in r.output and "ksm-sim --profile edge_npu --masks runs/cubs/" in r.output


def test_list_profiles() -> None:
    r = invoke("--list-profiles")
    assert r.exit_code == 0
    for name in bundled_profiles():
        assert name in r.output
    assert "peak (GMAC/s)" in r.output


def test_network_on_all_profiles() -> None:
    r = invoke("--network", "resnet18", "--profile", "all")
    assert r.exit_code == 0, r.output
    assert r.output.count("## resnet18 on") == len(bundled_profiles())
    assert "by memory level and operand" in r.output


def test_run_folder_with_json(run_folder, tmp_path: Path) -> None:
    a, b = run_folder("ksm", name="a"), run_folder("piggyback", name="b")
    out = tmp_path / "cost.json"
    r = invoke("--masks", str(a), "--masks", str(b), "-p", "edge_npu", "-p", "eyeriss", "--layers",
               "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "Per operator:" in r.output and "top-1 0.8000" in r.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "ksm-sim/1"
    assert len(doc["results"]) == 2 * 2 * 2  # runs x profiles x modes
    for res in doc["results"]:
        for key in ("profile", "source", "task", "method", "top1"):
            assert key in res
        t = res["totals"]
        for key in ("macs", "cycles", "latency_s", "energy_j", "mask_storage_bits", "task_specific_bytes"):
            assert isinstance(t[key], (int, float))
        assert set(t["dram_read_bytes"]) >= {"weights", "inputs", "masks"}
        assert "outputs" in t["dram_write_bytes"]
        for layer in res["layers"]:
            assert {"name", "macs", "cycles", "energy_j", "dram_read_bytes", "dram_write_bytes"} <= set(layer)
    assert {res["mode"] for res in doc["results"]} == {"folded", "on_the_fly"}


def test_network_json_has_null_task(tmp_path: Path) -> None:
    out = tmp_path / "n.json"
    r = invoke("--network", "mobilenet_v2", "--json", str(out))
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())["results"][0]
    assert res["task"] is None and res["method"] is None and res["top1"] is None
    assert res["totals"]["mask_storage_bits"] == 0


def test_network_with_method_states_density() -> None:
    r = invoke("--network", "resnet18", "--method", "ksm", "--mode", "on_the_fly", "--mask-density", "0.6")
    assert r.exit_code == 0, r.output
    assert "density assumed 0.6" in r.output


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: ["--profile", str(_yaml(p, "name: x\nclock_hz: [\n"))], "malformed YAML"),
        (lambda p: ["--profile", str(_yaml(p, "name: x\n"))], "missing key"),
        (lambda p: ["--profile", "nope"], "unknown profile"),
        (lambda p: ["--profile", str(_yaml(p, _bundled_text("edge_npu")
                                           + "search:\n  pe_split: [inputs]\n"))],
         "p.yaml: search: pe_split: inputs: no per_pe level holds it"),
        (lambda p: ["--masks", str(p / "absent")], "absent"),
        (lambda p: ["--network", "lenet"], "unknown network"),
        (lambda p: ["--topology", str(_yaml(p, "a,b\n1,2\n", "t.csv"))], "header column"),
    ],
)
def test_errors_are_one_line_and_write_nothing(tmp_path: Path, make, needle: str) -> None:
    out = tmp_path / "out.json"
    args = make(tmp_path)
    if "--network" not in args and "--masks" not in args and "--topology" not in args:
        args += ["--network", "resnet18"]
    r = invoke(*args, "--json", str(out))
    assert r.exit_code != 0
    assert needle in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()


def test_bad_mask_shape_names_file_and_key(run_folder, tensors_for, tmp_path: Path) -> None:
    import numpy as np

    tensors, roles = tensors_for("ksm")
    tensors["dw.binary"] = np.ones((8, 8), dtype=np.uint8)
    folder = run_folder("ksm", tensors=tensors, roles=roles)
    out = tmp_path / "out.json"
    r = invoke("--masks", str(folder), "--json", str(out))
    assert r.exit_code != 0 and "masks.safetensors" in r.output and "dw.binary" in r.output
    assert not out.exists()


def test_no_source_is_a_usage_error() -> None:
    r = invoke()
    assert r.exit_code == 2 and "--network" in r.output


def test_python_dash_m() -> None:
    r = subprocess.run([sys.executable, "-m", "hwsim", "--list-profiles"], check=False, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "edge_npu" in r.stdout


def test_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    if "ksm-sim" not in scripts:
        pytest.skip("the project is not installed (pip install -e .)")
    assert scripts["ksm-sim"] == "hwsim.ksm_sim:main"


def _bundled_text(name: str) -> str:
    from importlib import resources

    return (resources.files("hwsim") / "profiles" / f"{name}.yaml").read_text()


def _yaml(folder: Path, text: str, name: str = "p.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_glob_of_run_folders_skips_what_is_not_a_run(run_folder, tmp_path: Path) -> None:
    """``--masks runs/*`` also matches results.md and plain folders: those are skipped, with a line each."""
    a = run_folder("ksm", name="a")
    (tmp_path / "runs" / "results.md").write_text("| table |\n")
    (tmp_path / "runs" / "empty").mkdir()
    r = invoke("--masks", *sorted(str(p) for p in (tmp_path / "runs").iterdir()), "-p", "edge_npu", "--json",
               str(tmp_path / "c.json"))
    assert r.exit_code == 0, r.output
    assert "skipping" in r.output and "results.md: not a run folder" in r.output and "empty: not a run folder" in r.output
    doc = json.loads((tmp_path / "c.json").read_text())
    assert {res["source"] for res in doc["results"]} == {str(a)}


def test_batch_objective_and_steady_state_in_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = invoke("--network", "mobilenet_v2", "--profile", "edge_tpu", "--batch", "4", "--objective", "latency",
               "--steady-state", "--layers", "--json", str(out))
    assert r.exit_code == 0, r.output
    assert "latency per image" in r.output and "(batch of 4)" in r.output and "steady state" in r.output
    res = json.loads(out.read_text())["results"][0]
    assert res["batch"] == 4 and res["objective"] == "latency" and res["steady_state"] is True
    assert res["per_image"]["latency_per_image_s"] == pytest.approx(res["totals"]["latency_s"] / 4)
    layer = res["layers"][0]
    assert {"mapping", "energy_by_level_operand_j", "latency_breakdown_cycles"} <= set(layer)
    assert layer["mapping"]["spatial"]["rows"] and layer["mapping"]["temporal_innermost_first"]["weights"]


def test_bad_batch_is_one_line() -> None:
    r = invoke("--network", "resnet18", "--batch", "0")
    assert r.exit_code != 0
    assert "--batch" in r.output


@pytest.mark.parametrize("job, extra, named", [
    (["--report", "REPORT"], ["--layers"], "--layers"),
    (["--report", "REPORT"], ["--mode", "folded", "--method", "ksm"], "--method, --mode"),
    (["--report", "REPORT"], ["--json", "x.json"], "--json"),
    (["--list-profiles"], ["--batch", "4"], "--batch"),
    (["--network", "alexnet"], ["--title", "t"], "--title"),
    (["--list-profiles"], ["--report", "REPORT"], "--report"),
    (["--list-profiles"], ["RUNS"], "[RUN_FOLDER]..."),
    (["--masks", "RUNS"], ["--method", "piggyback"], "--method"),
    (["--masks", "RUNS"], ["--batchnorm", "frozen"], "--batchnorm"),
])
def test_an_option_the_job_does_not_read_is_refused(tmp_path, job, extra, named) -> None:
    """ksm-sim never ignores an option silently: the chosen job names what it would not use, in one line."""
    from click.testing import CliRunner

    from hwsim.ksm_sim import main

    names = {"REPORT": str(tmp_path / "r"), "RUNS": str(tmp_path / "runs")}
    args = [names.get(a, a) for a in job + extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    line = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert line == [line[0]] and f"does not use {named}" in line[0], result.output
    assert not (tmp_path / "r").exists()


def test_ksm_sim_json_does_not_replace_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "out.json").symlink_to(victim)
    result = CliRunner().invoke(main, ["--network", "mobilenet_v2", "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 1 and "is a symbolic link; not replaced" in result.output, result.output
    assert victim.read_text() == "keep" and (tmp_path / "out.json").is_symlink()


def test_a_method_on_a_network_is_charged_its_own_batchnorm_unless_told(tmp_path) -> None:
    """Piggyback trains with frozen BatchNorm, so it stores none per task; ksm-sim once charged every method
    task BatchNorm unless --batchnorm said otherwise. An explore spec without ``batchnorm`` agrees."""
    import json

    from click.testing import CliRunner

    from hwsim import catalogue
    from hwsim.explore.spec import load_spec

    def task_bytes(*extra: str) -> int:
        out = tmp_path / "c.json"
        result = CliRunner().invoke(main, ["--network", "alexnet", "--method", "piggyback", "--mode", "folded",
                                           "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        result = json.loads(out.read_text())["results"][0]
        assert result["batchnorm"] == ("frozen" if extra in ((), ("--batchnorm", "frozen")) else "task")
        return result["totals"]["task_specific_bytes_by_part"]["batchnorm"]

    assert catalogue.get("piggyback").batchnorm == "frozen"
    assert task_bytes() == task_bytes("--batchnorm", "frozen") == 0
    assert task_bytes("--batchnorm", "task") > 0
    spec = tmp_path / "s.yaml"
    spec.write_text("profiles: [edge_npu]\nworkloads: [{network: alexnet}]\nmethods: [piggyback, ksm]\n")
    works = {item.work.method: item.work.batchnorm for item in load_spec(spec).workloads}
    assert works == {"piggyback": "frozen", "ksm": "task"}


# --- The output guard at the command line (issue 26): each of these lost data and exited 0 ---------------------


def _refused_in_one_line(result, *names: str) -> None:
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output  # no traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and all(n in lines[0] for n in names), result.output


def _bytes_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["run.json", "masks.safetensors"])
def test_json_into_the_run_folder_read_is_refused(run_folder, target: str) -> None:
    run = run_folder()
    before = _bytes_of(run)
    _refused_in_one_line(invoke("--masks", str(run), "--json", str(run / target)), target, "input")
    assert _bytes_of(run) == before


def test_json_over_the_task_file_read_is_refused(tmp_path: Path) -> None:
    from tests.hwsim.test_packed import _ksm_file

    task = tmp_path / "t.ksmtask"
    _ksm_file(task, 4)
    before = task.read_bytes()
    _refused_in_one_line(invoke("--masks", str(task), "--json", str(task)), "t.ksmtask", "input")
    assert task.read_bytes() == before


def test_report_into_a_users_folder_is_refused(run_folder, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    (mine / "accuracy-vs-storage.png").write_bytes(b"my figure")
    (mine / "energy-edge_npu.png").write_bytes(b"my other figure")
    before = _bytes_of(mine)
    _refused_in_one_line(invoke("--masks", str(run_folder()), "--report", str(mine)), str(mine), "not written by")
    assert _bytes_of(mine) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine", "runs"]


def test_export_into_a_users_folder_is_refused(tmp_path: Path) -> None:
    zzd = tmp_path / "zzd"
    zzd.mkdir()
    (zzd / "README.md").write_text("my notes")
    _refused_in_one_line(invoke("--network", "resnet18", "--export", "zigzag", str(zzd)), str(zzd), "not written by")
    assert _bytes_of(zzd) == {"README.md": b"my notes"} and sorted(p.name for p in tmp_path.iterdir()) == ["zzd"]


def test_report_regenerates_its_own_folder_and_leaves_other_files(run_folder, tmp_path: Path) -> None:
    """A marked folder (the committed reports/default has one) is rewritten; a file beside the report stays."""
    out = tmp_path / "rep"
    run = run_folder()
    assert invoke("--masks", str(run), "--report", str(out)).exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = invoke("--masks", str(run), "--report", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "README.md").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_committed_output_folders_are_marked() -> None:
    """reports/default and reports/explore are regenerated in place: they carry the output guard's marker."""
    from hwsim.fileio.output_guard import read_marker

    root = Path(__file__).resolve().parents[2] / "reports"
    assert read_marker(root / "default")["README.md"] == "ksm-sim --report"
    assert read_marker(root / "default")["comparison.md"] == "ksm-compare"
    assert read_marker(root / "explore")["summary.md"] == "ksm-explore"


@pytest.mark.parametrize("args", [["--method", "ksm", "--network", ""], ["--network", "alexnet", "--profile", ""],
                                  ["--masks", ""], ["--topology", ""], ["--onnx", ""]], ids=" ".join)
def test_an_empty_path_is_refused_as_its_option_not_blamed_on_the_output(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        args: list[str]) -> None:
    """``--network '' --json out.json`` said ``out.json: lies inside the input .`` (``''`` is the working
    folder to a path); the empty value is refused as its own option, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    r = invoke(*args, "--json", "out.json")
    option = [a for a in args if a.startswith("--")][-1]
    assert r.exit_code == 2 and r.output.splitlines()[-1].startswith("Error: Invalid value for ")
    assert option in r.output.splitlines()[-1] and "is empty" in r.output and "out.json" not in r.output
    assert not any(tmp_path.iterdir())
