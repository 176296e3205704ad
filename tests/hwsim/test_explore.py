"""ksm-explore: spec validation, Pareto fronts, the sweep engines, resume, and agreement with ksm-sim."""

from __future__ import annotations

import functools
import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hwsim import load_network, load_run
from hwsim.ksm_sim import main as sim_main
from hwsim.explore.ksm_explore import explore, main
from hwsim.explore.pareto import pareto_mask
from hwsim.explore.point import Options, cost_point
from hwsim.explore.spec import load_spec
from hwsim.workload.layers import Workload
from hwsim.hardware.profile import load_design
from hwsim.cost.simulate import simulate

SMALL = """
name: small
profiles: [edge_npu]
axes:
  levels.sram_1MB.size_bytes: {log: [65536, 1048576], num: 3, integer: true}
  array: [{rows: 8, cols: 8}, {rows: 16, cols: 16}]
  precision_bits.mask_scale: [4, 8]
workloads:
  - runs: runs/*
  - network: {net}
methods: [ksm, finetune]
tasks: 8
objectives: [energy, latency, area]
"""


def write_spec(folder: Path, text: str, net: str = "layers.json") -> Path:
    path = folder / "spec.yaml"
    path.write_text(text.replace("{net}", net), encoding="utf-8")
    return path


@pytest.fixture
def small(tmp_path: Path, run_folder, layer_records) -> Path:
    run_folder("ksm", name="a", run_overrides={"metrics": {"top1": 0.8, "soft_precision": {"4": 0.7, "8": 0.79}}})
    (tmp_path / "layers.json").write_text(json.dumps({"format": "ksm-layers/1", "network": "toy",
                                                       "layers": layer_records}))
    return write_spec(tmp_path, SMALL)


# ---- Pareto --------------------------------------------------------------------------------


@pytest.mark.parametrize("values, expected", [
    ([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3]], [True, True, True, False, False]),
    ([[1, 1], [1, 1], [2, 0.5]], [True, True, True]),  # duplicates both kept
    ([[1, 1, 1], [0, 2, 2], [2, 0, 2], [2, 2, 0], [1, 1, 2], [1.5, 1.5, 1.5]],
     [True, True, True, True, False, False]),
    ([[5.0]], [True]),
    ([[1, np.nan], [2, 2]], [False, True]),
    ([[1, 2], [1, 3]], [True, False]),  # equal in one objective, worse in the other: dominated
])
def test_pareto_hand_made(values, expected) -> None:
    assert pareto_mask(np.array(values, dtype=float)).tolist() == expected


def test_pareto_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, size=(200, 3)).astype(float)
    brute = [not any((v[j] <= v[i]).all() and (v[j] < v[i]).any() for j in range(len(v))) for i in range(len(v))]
    assert pareto_mask(v).tolist() == brute


# ---- spec ----------------------------------------------------------------------------------


def test_ranges(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, """
profiles: edge_npu
axes:
  clock_hz: {linear: [5.0e8, 1.0e9], num: 3}
  levels.sram_1MB.size_bytes: {log: [65536, 4194304], num: 4, integer: true}
  array.rows: {linear: [8, 32], step: 8, integer: true}
  levels.l2: [absent, {like: sram_1MB, after: sram_1MB, size_bytes: 262144}]
workloads: [{network: resnet18}]
"""))
    values = {a.key: a.values for a in spec.axes}
    assert values["clock_hz"] == (5e8, 7.5e8, 1e9)
    assert values["levels.sram_1MB.size_bytes"] == (65536, 262144, 1048576, 4194304)
    assert values["array.rows"] == (8, 16, 24, 32)
    assert len(spec.designs) == 3 * 4 * 4 * 2
    names = {tuple(lv.name for lv in d.profile.levels) for _, d in spec.designs}
    assert ("dram", "sram_1MB", "l2", "ibuf_32KB", "acc_32KB") in names and len(names) == 2


@pytest.mark.parametrize("body, words", [
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nbogus: 1\n", ["bogus", "unknown key"]),
    ("profiles: edge_npu\naxes: {array.rows: []}\nworkloads: [{network: resnet18}]\n", ["axes.array.rows", "empty"]),
    ("profiles: edge_npu\naxes: {array.rows: {linear: [4, 2], step: 1}}\nworkloads: [{network: resnet18}]\n",
     ["axes.array.rows", "empty"]),
    ("profiles: edge_npu\naxes: {array.rows: [16, -1]}\nworkloads: [{network: resnet18}]\n",
     ["axes.array.rows: value -1: edge_npu.yaml", "array.rows"]),
    ("profiles: edge_npu\naxes: {array.rowz: [16]}\nworkloads: [{network: resnet18}]\n", ["rowz", "unknown key"]),
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nconstraints: {area: {min: 5, max: 1}}\n",
     ["constraints.area", "contradictory"]),
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nconstraints: {accuracy: {min: 0.5}}\n",
     ["constraints.accuracy", "no workload records"]),
    ("profiles: edge_npu\nworkloads: [{network: nosuchnet}]\n", ["workloads[0].network", "unknown network"]),
    ("profiles: edge_npu\nworkloads: [{onnx: missing.onnx}]\n", ["workloads[0].onnx", "missing file"]),
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nmethods: [magic]\n", ["methods", "magic"]),
    ("profiles: [nosuch]\nworkloads: [{network: resnet18}]\n", ["unknown profile"]),
    ("workloads: [{network: resnet18}]\n", ["profiles", "missing key"]),
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nobjectives: [speed]\n", ["objectives", "speed"]),
    # sizes that would cost gigabytes before any error: refused from the spec alone
    ("profiles: edge_npu\naxes: {clock_hz: {linear: [1.0e8, 1.0e9], num: 1000000000}}\n"
     "workloads: [{network: resnet18}]\n", ["axes.clock_hz.num", "must be at most 100000"]),
    ("profiles: edge_npu\naxes: {clock_hz: {linear: [1, 1.0e18], step: 1}}\nworkloads: [{network: resnet18}]\n",
     ["axes.clock_hz", "more than the 100000"]),
    ("profiles: edge_npu\naxes: {array.rows: {linear: [1, 2000], step: 1}, array.cols: {linear: [1, 2000], "
     "step: 1}}\nworkloads: [{network: resnet18}]\n", ["about 4,000,000 points", "over the cap of 200,000 points",
                                                   "lift it with --max-points 4000000"]),
    ("profiles: edge_npu\naxes: {array.rows: [16, 16, 32]}\nworkloads: [{network: resnet18}]\n",
     ["axes.array.rows", "16 is listed twice"]),
])
def test_bad_specs_one_line_nothing_written(tmp_path: Path, body: str, words: list[str]) -> None:
    path = write_spec(tmp_path, body)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [str(path), "-o", str(out), "-q"])
    assert r.exit_code != 0
    message = r.output.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    for word in words:
        assert word in message, message
    assert not out.exists()


# ---- the adapter -----------------------------------------------------------------------------


def test_layer_cache_equals_simulate(run_folder) -> None:
    design = load_design("eyeriss", ["array.rows=8"])
    r50 = load_network("resnet50")
    works = [r50, Workload(r50.source, r50.layers, method="ksm"), Workload(r50.source, r50.layers, method="packnet"),
             load_run(run_folder("ksm")), load_run(run_folder("piggyback", name="p"))]
    for work in works:
        for mode in ("folded", "on_the_fly"):
            cached = cost_point(design, work, Options(mode=mode, tasks=8), cache=True)
            plain = cost_point(design, work, Options(mode=mode, tasks=8), cache=False)
            assert cached == plain
            direct = simulate(work, design.profile, mode if work.method else None, tasks=8)
            assert cached["energy_j"] == direct.energy_j and cached["latency_s"] == direct.latency_s


# ---- sweeps ----------------------------------------------------------------------------------


def test_sweep_writes_everything_and_resumes(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = explore(small, out, workers=1, progress=False)
    frame = first["frame"]
    # 12 designs x (run: ksm x 2 modes + network: ksm x 2 modes + finetune x 1)
    assert len(frame) == 12 * 5 and first["stats"]["costed"] == 60
    for name in ("points.csv", "points.parquet", "front.csv", "front.png", "summary.md",
                 "sensitivity-array.png", "sensitivity-levels-sram_1MB-size_bytes.png",
                 "sensitivity-precision_bits-mask_scale.png"):
        assert (out / name).is_file(), name
    parquet = pd.read_parquet(out / "points.parquet")
    assert len(parquet) == 60 and {"energy_j", "latency_s", "area_mm2", "on_front", "accuracy"} <= set(parquet)
    assert (parquet["area_mm2"] > 0).all()
    run_rows = parquet[parquet["workload"] == "run:a"]
    assert set(run_rows["accuracy"]) == {0.7, 0.79}  # soft_precision at 4 and 8 bits
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[0] == "# small" and "ksm-explore" in summary
    assert "fine-tuned copies" in summary
    again = explore(small, out, workers=1, progress=False)
    assert again["stats"]["costed"] == 0 and again["stats"]["reused"] == 60
    pd.testing.assert_frame_equal(again["frame"], frame)
    # one more axis value: only the new designs are costed
    small.write_text(small.read_text().replace("[4, 8]", "[2, 4, 8]"))
    third = explore(small, out, workers=1, progress=False)
    assert third["stats"]["costed"] == 30 and third["stats"]["reused"] == 60


def test_constraints_and_fronts(small: Path, tmp_path: Path) -> None:
    small.write_text(small.read_text() + "constraints: {area: {max: 0.9}, accuracy: {min: 0.75}}\n")
    frame = explore(small, tmp_path / "o", workers=1, progress=False, figures=False)["frame"]
    assert (frame.loc[frame["feasible"], "area_mm2"] <= 0.9).all()
    assert not frame.loc[frame["on_front"] & ~frame["feasible"]].shape[0]
    ran = frame[frame["workload"] == "run:a"]
    assert not ran.loc[ran["accuracy"] < 0.75, "feasible"].any()


def test_point_equals_ksm_sim(small: Path, tmp_path: Path) -> None:
    frame = explore(small, tmp_path / "o", workers=1, progress=False, figures=False)["frame"]
    row = frame[(frame["workload"] == "run:a") & (frame["mode"] == "on_the_fly")].iloc[5]
    sets = [f"levels.sram_1MB.size_bytes={row['levels.sram_1MB.size_bytes']}", f"array={row['array']}",
            f"precision_bits.mask_scale={row['precision_bits.mask_scale']}"]
    out = tmp_path / "one.json"
    args = ["--masks", str(tmp_path / "runs" / "a"), "--mode", "on_the_fly", "--tasks", "8", "--json", str(out)]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(sim_main, args)
    assert r.exit_code == 0, r.output
    t = json.loads(out.read_text())["results"][0]["totals"]
    assert t["energy_j"] == row["energy_j"] and t["latency_s"] == row["latency_s"]
    assert t["area_mm2"] == row["area_mm2"] and t["task_specific_bytes"] == row["task_specific_bytes"]


def test_process_pool_equals_serial(small: Path, tmp_path: Path) -> None:
    serial = explore(small, tmp_path / "a", workers=1, progress=False, figures=False)["frame"]
    pooled = explore(small, tmp_path / "b", workers=2, progress=False, figures=False)["frame"]
    pd.testing.assert_frame_equal(serial, pooled)


def test_dask_local_cluster_of_two_workers(small: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        frame = explore(small, tmp_path / "d", scheduler=client, progress=False, figures=False)["frame"]
        assert len(client.scheduler_info()["workers"]) == 2
    serial = explore(small, tmp_path / "s", workers=1, progress=False, figures=False)["frame"]
    pd.testing.assert_frame_equal(frame, serial)


@pytest.mark.parametrize("body, words", [
    ("profiles: edge_npu\nworkloads: [{onnx: bad.onnx}]\n", ["workloads[0].onnx", "not a readable ONNX"]),
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nbatch: 4\n", ["batch"]),
    ("profiles: edge_npu\nworkloads: [{network: resnet18}]\nsteady_state: true\n", ["steady_state"]),
])
def test_more_bad_specs(tmp_path: Path, body: str, words: list[str]) -> None:
    import inspect

    if "batch" in body and "batch" in inspect.signature(simulate).parameters:
        pytest.skip("this cost model takes a batch")
    if "steady" in body and "steady_state" in inspect.signature(simulate).parameters:
        pytest.skip("this cost model takes steady_state")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 20)
    path = write_spec(tmp_path, body)
    r = CliRunner().invoke(main, [str(path), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code != 0 and r.output.startswith("Error: ") and r.output.strip().count("\n") == 0
    for word in words:
        assert word in r.output
    assert not (tmp_path / "out").exists()


def test_cli_scheduler_address(small: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        r = CliRunner().invoke(main, [str(small), "-o", str(tmp_path / "c"), "-q", "--no-figures",
                                      "--scheduler", cluster.scheduler_address])
    assert r.exit_code == 0, r.output
    assert "60 points (60 costed" in r.output
    assert "dask.distributed at inproc://" in (tmp_path / "c" / "summary.md").read_text()


def test_committed_example_spec_is_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "reports" / "explore"
    spec = load_spec(root / "spec.yaml")
    assert spec.tasks == 8 and {a.key for a in spec.axes} == {"levels.sram_1MB.size_bytes", "array",
                                                              "precision_bits.mask_scale"}
    assert {"ksm", "finetune"} <= set(spec.methods)
    summary = (root / "summary.md").read_text()
    assert "ksm-explore reports/explore/spec" in summary  # spec.yaml, or spec-runs.yaml once runs/ exist
    assert "stop paying" in summary or "never pay" in summary


def test_explore_refuses_a_users_folder_and_an_output_over_its_spec(tmp_path: Path) -> None:
    """The output guard (issue 26): -o into a folder of the user's replaced their summary.md; a spec written
    where an output goes is never overwritten."""
    spec = tmp_path / "s.yaml"
    spec.write_text("profiles: [edge_npu]\nworkloads: [{network: alexnet}]\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my summary")
    r = CliRunner().invoke(main, [str(spec), "-o", str(mine), "-q", "-j", "1", "--no-figures"])
    assert r.exit_code != 0 and "not written by this project" in r.output and len(r.output.splitlines()) == 1
    assert [p.name for p in mine.iterdir()] == ["summary.md"] and (mine / "summary.md").read_text() == "my summary"
    inside = tmp_path / "sw"
    inside.mkdir()
    (inside / "summary.md").write_text("profiles: [edge_npu]\nworkloads: [{network: alexnet}]\n")
    r = CliRunner().invoke(main, [str(inside / "summary.md"), "-o", str(inside), "-q", "-j", "1", "--no-figures"])
    assert r.exit_code != 0 and "is the input" in r.output, r.output


# ---- bounded work, said up front (issue 26, item 3) ------------------------------------------


def _refused_at_once(tmp_path: Path, body: str, *args: str) -> str:
    """Run ksm-explore on ``body``; assert it exits non-zero within seconds, in one line, writing nothing."""
    path = write_spec(tmp_path, body)
    out = tmp_path / "out"
    start = time.perf_counter()
    r = CliRunner().invoke(main, [str(path), "-o", str(out), "-q", *args])
    assert time.perf_counter() - start < 20, "the refusal came only after the work started"
    message = r.output.strip()
    assert r.exit_code != 0 and message.startswith("Error: ") and "\n" not in message, r.output
    assert not out.exists()
    return message


def test_sweep_of_a_million_designs_refused_at_once(tmp_path: Path) -> None:
    """10^6 designs printed nothing for minutes and held GBs: now counted from the axes' lengths."""
    body = ("profiles: edge_npu\naxes: {array.rows: {linear: [1, 1000], step: 1}, array.cols: {linear: [1, 1000], "
            "step: 1}}\nworkloads: [{network: resnet18}]\n")
    message = _refused_at_once(tmp_path, body)
    assert "about 1,000,000 points" in message and "lift it with --max-points 1000000" in message


def test_sweep_of_four_million_points_estimated_up_front(tmp_path: Path) -> None:
    """4·10^6 points (designs × workloads × modes) estimated ~5 h only after 2 minutes: now in one line, first."""
    body = ("profiles: edge_npu\naxes: {array.rows: {linear: [1, 1000], step: 1}, array.cols: {linear: [1, 1000], "
            "step: 1}}\nworkloads: [{network: resnet18}]\nmethods: [ksm, piggyback]\nmodes: [folded, on_the_fly]\n")
    message = _refused_at_once(tmp_path, body, "-j", "2")
    assert "about 4,000,000 points, ~1.7 h, ~18.6 GiB (over the cap of 200,000 points)" in message, message


def test_estimate_counts_every_point_the_sweep_plans(small: Path) -> None:
    """The count made before the designs are built is the plan's length (a network: ksm in both modes,
    finetune once; a run folder in both modes)."""
    from hwsim.explore import engine

    spec = load_spec(small)
    assert spec.estimate is not None and spec.estimate.units == len(engine.plan(spec)) == 12 * 5


def test_max_points_lifts_the_cap(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [str(small), "-o", str(out), "-q", "--max-points", "59"])
    assert r.exit_code != 0 and "lift it with --max-points 60" in r.output and not out.exists()
    r = CliRunner().invoke(main, [str(small), "-o", str(out), "-q", "-j", "1", "--no-figures", "--max-points", "60"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("key", ["batch", "tasks"])
def test_batch_1e15_refused_when_the_spec_is_read(tmp_path: Path, key: str) -> None:
    """``batch: 1e15`` failed with a traceback (an int64 overflow) after points.csv was written."""
    body = f"profiles: edge_npu\nworkloads: [{{network: alexnet}}]\n{key}: 1000000000000000\n"
    message = _refused_at_once(tmp_path, body, "-j", "1", "--no-figures")
    assert f"spec.yaml: {key}: must be at most" in message and "got 1000000000000000" in message, message


def test_unreachable_scheduler_is_one_line_and_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    """An unreachable --scheduler left an empty output folder; it is now one line after SCHEDULER_TIMEOUT_S
    (10 s; 2 s here), before the folder is made. Nothing listens on the port: it was bound, then closed."""
    from hwsim.explore import engine

    assert engine.SCHEDULER_TIMEOUT_S == 10
    monkeypatch.setattr(engine, "SCHEDULER_TIMEOUT_S", 2.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write_spec(tmp_path, "profiles: edge_npu\nworkloads: [{network: alexnet}]\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [str(path), "-o", str(out), "-q", "--scheduler", f"tcp://127.0.0.1:{port}"])
    message = r.output.strip()
    assert r.exit_code != 0 and "\n" not in message, r.output
    assert f"--scheduler tcp://127.0.0.1:{port}: no dask scheduler answered within 2 s" in message
    assert not out.exists()


# ---- the spec's schema and the sweep's reliability (issue 26) ----------------------------------


def _refusal(tmp_path: Path, body: str) -> str:
    """ksm-explore on ``body`` exits non-zero in one line and writes nothing."""
    path = write_spec(tmp_path, body)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [str(path), "-o", str(out), "-q", "-j", "1", "--no-figures"])
    message = r.output.strip()
    assert r.exit_code != 0 and message.startswith("Error: ") and "\n" not in message, r.output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    return message


@pytest.mark.parametrize("profiles, words", [
    ("[edge_npu, edge_npu]", ["profiles: edge_npu is listed twice"]),
    ("[edge_npu, edge_npu.yaml]", ["profiles: edge_npu and edge_npu.yaml would both label their rows 'edge_npu'"]),
])
def test_a_profile_listed_twice_is_refused(tmp_path: Path, profiles: str, words: list[str]) -> None:
    """The same profile listed twice doubled every point (two rows per point id); now refused, as an axis
    value listed twice is."""
    (tmp_path / "edge_npu.yaml").write_text((Path(__file__).parents[2] / "hwsim/profiles/edge_npu.yaml").read_text())
    message = _refusal(tmp_path, f"profiles: {profiles}\nworkloads: [{{network: alexnet}}]\n")
    for word in words:
        assert word in message, message


def test_a_method_that_needs_a_run_is_refused_on_a_network_as_ksm_sim_refuses_it(tmp_path: Path) -> None:
    """``methods: [cpg]`` on a network was priced without CPG's pick masks and growth, where
    ``ksm-sim --method cpg`` refuses it; both now ask the catalogue the same question."""
    from hwsim import catalogue
    from hwsim.ksm_sim import METHOD_CHOICES

    needs_run = [t.name for t in catalogue.methods() if t.mask.needs_run]
    assert "cpg" in needs_run and set(METHOD_CHOICES) == set(catalogue.costable_from_network())
    for method in needs_run:
        message = _refusal(tmp_path, f"profiles: edge_npu\nworkloads: [{{topology: t.csv}}]\nmethods: [ksm, {method}]\n")
        assert f"methods: {method} cannot be charged on a topology" in message, message
        assert method not in message.split("On a topology: ")[1]
        r = CliRunner().invoke(sim_main, ["--network", "alexnet", "--method", method])
        assert r.exit_code != 0 and method in r.output


def test_an_axis_value_that_makes_the_profile_invalid_is_named(tmp_path: Path) -> None:
    """The error blamed the whole first combination (``axes array.rows=16, precision_bits.mask_scale=0``);
    it names the axis and its value."""
    message = _refusal(tmp_path, "profiles: edge_npu\naxes: {array.rows: [16, 32], precision_bits.mask_scale: [4, 0]}\n"
                                 "workloads: [{network: alexnet}]\n")
    assert "spec.yaml: axes.precision_bits.mask_scale: value 0: edge_npu.yaml: precision_bits.mask_scale" in message
    assert "array.rows" not in message
    # an override path the profile does not have: the axis key
    message = _refusal(tmp_path, "profiles: edge_npu\naxes: {array.rows: [16], array.rowz: [8]}\n"
                                 "workloads: [{network: alexnet}]\n")
    assert "spec.yaml: axes.array.rowz: value 8: " in message and "rowz: unknown key" in message, message


def test_a_profile_file_error_names_the_file_not_an_axis_point(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "hwsim/profiles/edge_npu.yaml").read_text()
    bad = re_sub(r"(?m)^clock_hz: .*$", "clock_hz: -5", text)
    (tmp_path / "mine.yaml").write_text(bad)
    message = _refusal(tmp_path, "profiles: [mine.yaml]\naxes: {array.rows: [16, 32]}\n"
                                 "workloads: [{network: alexnet}]\n")
    assert "spec.yaml: profiles: " in message and "mine.yaml: clock_hz" in message, message
    assert "axes" not in message
    # the spec's own overrides are named as such
    message = _refusal(tmp_path, "profiles: [edge_npu]\nset: [clock_hz=-5]\naxes: {array.rows: [16, 32]}\n"
                                 "workloads: [{network: alexnet}]\n")
    assert "spec.yaml: set: " in message and "clock_hz" in message and "axes" not in message, message


def re_sub(pattern: str, repl: str, text: str) -> str:
    import re

    out, n = re.subn(pattern, repl, text)
    assert n == 1
    return out


@pytest.mark.parametrize("body, words", [
    ("profiles: edge_npu\nworkloads: [{network: alexnet, input_shape: [1, 3, 8, 8]}]\n",
     ["workloads[0]", "input_shape applies to an onnx workload"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet, topology: t.csv}]\n",
     ["workloads[0]", "give exactly one of network, topology, onnx, runs, not network and topology"]),
    ("profiles: edge_npu\nworkloads: [alexnet]\n", ["workloads[0]", "must be one of {network: ...}"]),
    ("profiles: edge_npu\nworkloads: [{onnx: m.onnx, input_shape: [1, 3, 0, 8]}]\n",
     ["workloads[0].input_shape[2]", "must be at least 1"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nmask_density: 1.5\n", ["mask_density", "at most 1"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\ntasks: 2.5\n", ["tasks"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nsteady_state: yes please\n", ["steady_state"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nmodes: [sideways]\n", ["modes[0]", "sideways"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nconstraints: {area: {max: 0}}\n",
     ["constraints.area.max", "greater than 0"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nconstraints: {speed: {max: 1}}\n",
     ["constraints.speed", "unknown key"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nconstraints: {energy: {max: 1.0e300}}\n",
     ["constraints.energy.max", "at most"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nconstraints: {accuracy: {min: 2}}\n",
     ["constraints.accuracy.min", "at most 1"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nconstraints: {latency: {}}\n",
     ["constraints.latency", "give min, max or both"]),
    ("profiles: edge_npu\naxes: {clock_hz: {log: [0, 1.0e9], num: 3}}\nworkloads: [{network: alexnet}]\n",
     ["axes.clock_hz", "both ends must be positive"]),
    ("profiles: edge_npu\naxes: {clock_hz: {linear: [1, 2], num: 3, step: 1}}\nworkloads: [{network: alexnet}]\n",
     ["axes.clock_hz", "num or step, not both"]),
    ("profiles: edge_npu\naxes: {clock_hz: {linear: [1, .nan], num: 3}}\nworkloads: [{network: alexnet}]\n",
     ["axes.clock_hz.linear[1]"]),
    ("profiles: edge_npu\naxes: {array.rows: {values: [8, 16], integer: true}}\nworkloads: [{network: alexnet}]\n",
     ["axes.array.rows", "integer belongs to a range"]),
    ("profiles: edge_npu\naxes: {clock_hz: 5}\nworkloads: [{network: alexnet}]\n",
     ["axes.clock_hz", "must be a list of values"]),
    ("profiles: edge_npu\naxes: {levels.l2: [absent, remove]}\nworkloads: [{network: alexnet}]\n",
     ["axes.levels.l2", "listed twice"]),
    ("profiles: edge_npu\naxes: {clock_hz: [1.0e9, 1000000000]}\nworkloads: [{network: alexnet}]\n",
     ["axes.clock_hz", "listed twice"]),
    ("profiles: edge_npu\naxes: {array..rows: [8]}\nworkloads: [{network: alexnet}]\n",
     ["axes: 'array..rows' is not a dotted profile path"]),
    ("profiles: edge_npu\nset: [clock_hz]\nworkloads: [{network: alexnet}]\n", ["set[0]", "KEY=VALUE"]),
    ("profiles: edge_npu\nworkloads: [{network: alexnet}]\nname: \"two\\nlines\"\n", ["name", "one line"]),
    ("- just\n- a list\n", ["must be a mapping"]),
])
def test_the_schema_names_the_key(tmp_path: Path, body: str, words: list[str]) -> None:
    message = _refusal(tmp_path, body)
    for word in words:
        assert word in message, message


def test_the_spec_page_is_generated_from_the_schema() -> None:
    """Every top-level key the loader reads is declared (and so documented) by the schema."""
    from hwsim.schemas.explore_spec import ExploreSpec
    from hwsim.schemas.reference import FORMATS, render

    keys = {f.alias or n for n, f in ExploreSpec.model_fields.items()}
    assert keys == {"name", "profiles", "set", "axes", "workloads", "methods", "modes", "tasks", "mask_density",
                    "batchnorm", "batch", "steady_state", "objectives", "constraints"}
    page = render(next(f for f in FORMATS if f.slug == "explore-spec"))
    assert all(f"| `{k}` |" in page for k in keys) and "## `AxisRange`" in page and "## `WorkloadEntry`" in page


def test_onnx_input_shape_reaches_the_reader(tmp_path: Path) -> None:
    """A model whose height and width are symbolic is costed at the spec's ``input_shape``; without it,
    refused naming the workload."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    spec = load_spec(write_spec(tmp_path, "profiles: edge_npu\nworkloads: [{onnx: m.onnx, input_shape: [1, 3, 20, 12]}]\n"))
    assert [layer.input_hw for layer in spec.workloads[0].work.layers] == [(20, 12)]
    message = _refusal(tmp_path, "profiles: edge_npu\nworkloads: [{onnx: m.onnx}]\n")
    assert "workloads[0].onnx" in message and "symbolic" in message, message


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failure_mid_sweep_leaves_no_half_folder(small: Path, tmp_path: Path, monkeypatch) -> None:
    """ksm-explore wrote its outputs file by file: a sweep that failed half way left a folder with a marker, a
    partial points.jsonl and no summary. The folder is now built under a temporary sibling and published whole."""
    from hwsim.explore import engine

    real, calls = engine.cost_chunk, []

    def failing(chunk, workloads=None):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("the cost model broke")
        return real(chunk, workloads)

    monkeypatch.setattr(engine, "cost_chunk", failing)
    monkeypatch.setattr(engine, "run_points", functools.partial(engine.run_points, chunk_size=8))  # 8 chunks
    out = tmp_path / "out"
    before = _hidden(tmp_path)
    with pytest.raises(ValueError, match="broke"):
        explore(small, out, workers=1, progress=False, figures=False)
    assert not out.exists() and _hidden(tmp_path) == before
    # over a finished sweep: the folder keeps its files, byte for byte
    monkeypatch.setattr(engine, "cost_chunk", real)
    explore(small, out, workers=1, progress=False, figures=False)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    small.write_text(small.read_text().replace("[4, 8]", "[2, 4, 8]"))
    calls.clear()
    monkeypatch.setattr(engine, "cost_chunk", failing)
    with pytest.raises(ValueError, match="broke"):
        explore(small, out, workers=1, progress=False, figures=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files and _hidden(tmp_path) == before


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: field 4 of /proc/PID/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_mid_sweep_leaves_no_folder_no_temporary_no_worker(tmp_path: Path) -> None:
    """SIGTERM while a process pool costs points: the command exits, the output folder never appears, its
    temporary sibling is removed and no worker process outlives it."""
    import os
    import signal
    import subprocess
    import sys

    spec = write_spec(tmp_path, "profiles: edge_npu\naxes: {array.rows: {linear: [4, 1000], step: 1}}\n"
                                "workloads: [{network: alexnet}]\nmethods: [ksm]\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "hwsim.explore", str(spec), "-o", str(out), "-q", "-j", "2",
                             "--no-figures"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    building = []
    while time.monotonic() < deadline and proc.poll() is None:
        building = [p for p in tmp_path.iterdir() if p.name.startswith(".out.") and (p / "points.jsonl").is_file()
                    and (p / "points.jsonl").stat().st_size > 0]
        if building:
            break
        time.sleep(0.05)
    assert building and proc.poll() is None, "the sweep finished before it could be stopped"
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and len(workers) == 2, (proc.returncode, err, workers)
    assert not out.exists() and _hidden(tmp_path) == [], _hidden(tmp_path)
    assert b"Traceback" not in err, err
    time.sleep(0.5)
    for pid in workers:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
        assert state in ("Z", "X"), f"worker {pid} outlived the command ({state})"


def test_a_scheduler_address_where_something_else_answers_is_one_line() -> None:
    """A server that answers with HTTP instead of dask's protocol made dask allocate exabytes (a hostile input):
    whatever fails while connecting is one line naming --scheduler."""
    import socket
    import threading

    from hwsim.errors import InputError
    from hwsim.explore.engine import connect

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 64)
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(InputError, match=rf"^--scheduler {address}: "):
            connect(address, timeout=3)
    finally:
        server.close()


def test_the_resume_key_changes_with_the_cost_models_source(tmp_path: Path, monkeypatch) -> None:
    """A sweep's saved points are keyed by a digest of the cost model's source (issue 25: a model change kept
    the points of the model before it): any edit to a costing module or bundled profile changes the key."""
    import shutil

    import hwsim
    from hwsim.cost import simulate as sim

    copy = tmp_path / "hwsim"
    shutil.copytree(Path(hwsim.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    fake = copy / "cost" / "simulate.py"
    monkeypatch.setattr(sim, "__file__", str(fake))
    before = sim._model_digest()
    assert before == sim.MODEL_VERSION.split("+")[1]  # the copy is the code that runs
    profile = copy / "profiles" / "edge_npu.yaml"
    profile.write_text(profile.read_text().replace("mac_energy_pj: 0.3", "mac_energy_pj: 0.31"))
    assert sim._model_digest() != before
