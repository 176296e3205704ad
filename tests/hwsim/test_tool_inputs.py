"""ksm-sim --export zigzag|timeloop: files checked against the formats' rules; opt-in run in ZigZag.

The structural checks restate the rules of zigzag-dse 3.9.1's validators (``zigzag/parser/
workload_validator.py``, ``accelerator_validator.py``: required keys, operator types, the equation and
dimension-relation patterns, operand/port/allocation patterns) and of Timeloop v0.4's CNN-layer problem
and architecture files (``!Container``/``!Component`` nodes, keep/bypass data spaces).
The opt-in test runs the files in ZigZag when ``zigzag`` is importable, or through the interpreter named
by ``KSM_ZIGZAG_PYTHON`` (a throwaway venv: ``pip install zigzag-dse==3.9.1 six``).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hwsim import Layer, Profile, Workload, load_network, load_profile
from hwsim.ksm_sim import main
from hwsim.cost.layer_cost import macs
from hwsim.interop.tool_inputs import write_timeloop, write_zigzag

EQUATION = r"^O(\[\w+\])+\s*\+?\s*=\s*\w(\[\w+\])+\s*[*+]\s*\w(\[(?:\w+)?\])+\s*$"
RELATION = r"^(\w+)\s*=\s*(?:(\w+)\s*\*\s*)?(\w+)\s*\+\s*(?:(\w+)\s*\*\s*)?(\w+)$"
OPERATORS = {"Max", "Conv", "Pooling", "Add", "Conv_downsample", "Gemm", "Pool", "MaxPool", "AveragePool",
             "GlobalAveragePool"}
R18_CONV3 = Layer("r18_conv3_3x3", "conv", 128, 128, (3, 3), (1, 1), (1, 1), 1, (28, 28), (28, 28))


def check_zigzag(folder: Path, work: Workload) -> None:
    layers = yaml.safe_load((folder / "workload.yaml").read_text())
    assert isinstance(layers, list) and len(layers) == len(work.layers)
    for entry, layer in zip(layers, work.layers):
        assert {"id", "operator_type", "equation", "loop_dims", "loop_sizes", "operand_precision"} <= set(entry)
        assert entry["operator_type"] in OPERATORS and re.match(EQUATION, entry["equation"])
        assert {"O", "O_final"} <= set(entry["operand_precision"])
        for rel in entry.get("dimension_relations", []):
            assert re.match(RELATION, rel), rel
        assert len(entry["loop_dims"]) == len(entry["loop_sizes"])
        assert all(isinstance(v, int) and v > 0 for v in entry["loop_sizes"])
        assert math.prod(entry["loop_sizes"]) == macs(layer)
        if "padding" in entry:
            assert len(entry["padding"]) == len(entry["pr_loop_dims"]) == len(entry["pr_loop_sizes"])
    acc = yaml.safe_load((folder / "accelerator.yaml").read_text())
    assert set(acc) == {"name", "memories", "operational_array"}
    held = set()
    for mem in acc["memories"].values():
        assert {"size", "r_cost", "w_cost", "area", "latency", "operands", "ports", "served_dimensions"} <= set(mem)
        assert isinstance(mem["size"], int) and isinstance(mem["latency"], int)
        assert all(re.match(r"^I[12]$|^O$", o) for o in mem["operands"])
        held |= set(mem["operands"])
        for port in mem["ports"]:
            assert re.match(r"^[r]?[w]?_port_\d+$", port["name"]) and port["type"] in ("read", "write", "read_write")
            assert isinstance(port["bandwidth_min"], int) and isinstance(port["bandwidth_max"], int)
            assert all(re.match(r"^(I[12]|O), (fh|tl|fl|th)$", a) for a in port["allocation"])
        assert all(re.match(r"^D\d$", d) for d in mem["served_dimensions"])
    assert held == {"I1", "I2", "O"}
    assert list(acc["memories"])[-1] == "dram" or set(list(acc["memories"].values())[-1]["operands"]) == held
    op = acc["operational_array"]
    assert op["dimensions"] == ["D1", "D2"] and len(op["sizes"]) == 2
    mapping = yaml.safe_load((folder / "mapping.yaml").read_text())
    assert mapping[0]["name"] == "default" and mapping[0]["memory_operand_links"] == {"O": "O", "W": "I2", "I": "I1"}
    for dim in ("D1", "D2"):
        assert all(re.match(r"^[A-Z]+, [0-9]+$", s) for s in mapping[0]["spatial_mapping"][dim])


def _components(tree: dict) -> list[dict]:
    """Every ``local`` component of a Timeloop tree-format architecture, outermost first."""
    out = list(tree.get("local", []))
    for sub in tree.get("subtree", []):
        out += _components(sub)
    return out


def check_timeloop(folder: Path, work: Workload, profile: Profile) -> None:
    arch = yaml.safe_load((folder / "arch.yaml").read_text())["architecture"]
    assert arch["version"] == 0.4
    parts = _components(arch)
    assert parts[0]["class"] == "DRAM" and parts[-1]["class"] == "intmac"
    names = {p["name"].split("[")[0] for p in parts}
    assert {lv.name for lv in profile.levels} <= names  # every level of the profile is a component
    ert = yaml.safe_load((folder / "ERT.yaml").read_text())
    assert ert  # the profile's energies, which Timeloop uses instead of its own
    problems = sorted((folder / "problems").glob("*.yaml"))
    assert len(problems) == len(work.layers) == len(list((folder / "mappings").glob("*.yaml")))
    for path, layer in zip(problems, work.layers):
        p = yaml.safe_load(path.read_text())["problem"]
        dims = p["shape"]["dimensions"]
        inst = p["instance"]
        assert math.prod(inst[d] for d in dims) == macs(layer)
        named = {name for ds in p["shape"]["data-spaces"] for proj in ds["projection"] for term in proj for name in term}
        assert named <= set(dims) | {c["name"] for c in p["shape"]["coefficients"]}
    assert yaml.safe_load((folder / "mapper.yaml").read_text())["mapper"]


@pytest.mark.parametrize("profile", ["edge_npu", "eyeriss", "zigzag_tpu_like"])
def test_exports_follow_the_formats(tmp_path: Path, profile: str) -> None:
    work, prof = load_network("mobilenet_v2"), load_profile(profile)
    write_zigzag(work, prof, tmp_path / "zz")
    check_zigzag(tmp_path / "zz", work)
    write_timeloop(work, prof, tmp_path / "tl")
    check_timeloop(tmp_path / "tl", work, prof)


def test_cli_export(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["-n", "resnet18", "-p", "edge_npu", "-p", "eyeriss", "--set", "array.rows=16",
                                  "--export", "zigzag", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    folders = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert folders == [".ksm-output.json", "index.csv", "resnet18-edge_npu", "resnet18-eyeriss"]  # + the guard's marker
    acc = yaml.safe_load((tmp_path / "x" / "resnet18-eyeriss" / "accelerator.yaml").read_text())
    assert acc["operational_array"]["sizes"][0] == 16  # --set reaches the export
    r = CliRunner().invoke(main, ["-n", "resnet18", "--export", "scalesim", str(tmp_path / "y")])
    assert r.exit_code != 0 and not (tmp_path / "y").exists()


RUN_ZIGZAG = textwrap.dedent("""
    import json, sys
    from zigzag.api import get_hardware_performance_zigzag
    energy, latency, *rest = get_hardware_performance_zigzag(sys.argv[1], sys.argv[2], sys.argv[3], opt="energy",
        dump_folder=sys.argv[4], lpf_limit=4, nb_spatial_mappings_generated=1)
    print(json.dumps({"energy": float(energy), "latency": float(latency)}))
""")


def test_zigzag_runs_the_exported_files(tmp_path: Path) -> None:
    """Opt-in: ZigZag reads the files and costs the ResNet-18 conv3_x layer: MAC energy = MACs x unit energy."""
    python = os.environ.get("KSM_ZIGZAG_PYTHON")
    if python is None:
        pytest.importorskip("zigzag")
        import sys

        python = sys.executable
    work, prof = Workload("r18", (R18_CONV3,)), load_profile("zigzag_tpu_like")
    folder = tmp_path / "zz"
    write_zigzag(work, prof, folder)
    script = tmp_path / "run.py"
    script.write_text(RUN_ZIGZAG)
    out = subprocess.run([python, str(script), str(folder / "workload.yaml"), str(folder / "accelerator.yaml"),
                          str(folder / "mapping.yaml"), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=600, check=False, env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["energy"] >= macs(R18_CONV3) * prof.array.mac_energy_pj
    assert result["latency"] >= macs(R18_CONV3) / prof.array.pes


@pytest.mark.parametrize("fmt", ["zigzag", "timeloop"])
def test_an_export_of_a_run_says_in_one_line_that_its_masks_are_left_out(tmp_path: Path, fmt: str) -> None:
    from dataclasses import replace

    from hwsim.interop.export_common import ExportWarning
    from hwsim.interop.tool_inputs import export

    work = replace(load_network("alexnet"), method="ksm")
    with pytest.warns(ExportWarning, match=f"masks are not exported to {'ZigZag' if fmt == 'zigzag' else 'Timeloop'}"):
        export(fmt, work, load_profile("edge_npu"), tmp_path / fmt)
    assert "masks are not exported" in (tmp_path / fmt / "README.md").read_text().lower()


TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
            "conv1, 8, 8, 3, 3, 4, {k}, 1,\n")


@pytest.mark.parametrize("fmt", ["zigzag", "timeloop"])
def test_export_folders_are_unique_and_indexed(run_folder, tmp_path: Path, fmt: str) -> None:
    """Two runs of one name from different folders, two topologies of one file name, and a profile whose
    ``name:`` is a bundled one's: each pair gets its own folder (``-2``, ``-3`` ... in order) and
    ``index.csv`` says which input each holds; nothing is overwritten or mixed."""
    import csv

    from hwsim.interop.tool_inputs import INDEX

    a, b = run_folder("ksm", name="a/digits"), run_folder("ksm", name="b/digits")
    for sub, k in (("x", 8), ("y", 16)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "a.csv").write_text(TOPOLOGY.format(k=k), encoding="utf-8")
    mine = tmp_path / "mine.yaml"  # named edge_npu, 16 rows
    bundled = Path(__file__).parents[2] / "hwsim" / "profiles" / "edge_npu.yaml"
    mine.write_text(bundled.read_text().replace("rows: 32 ", "rows: 16 "), encoding="utf-8")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["--masks", str(a), "--masks", str(b), "--topology", str(tmp_path / "x" / "a.csv"),
                                  "--topology", str(tmp_path / "y" / "a.csv"), "-p", "edge_npu", "-p", str(mine),
                                  "--export", fmt, str(out)])
    assert r.exit_code == 0, r.output
    with (out / INDEX).open(newline="", encoding="utf-8") as handle:
        index = list(csv.DictReader(handle))
    assert len(index) == 8 == len({row["folder"] for row in index})
    assert [row["folder"] for row in index] == [
        "digits-edge_npu", "digits-edge_npu-2", "digits-edge_npu-3", "digits-edge_npu-4",
        "a.csv-edge_npu", "a.csv-edge_npu-2", "a.csv-edge_npu-3", "a.csv-edge_npu-4"]
    assert [row["workload"] for row in index] == [str(a)] * 2 + [str(b)] * 2 + [
        str(tmp_path / "x" / "a.csv")] * 2 + [str(tmp_path / "y" / "a.csv")] * 2
    assert [row["profile_number"] for row in index] == ["1", "2"] * 4
    assert all(f"{out / row['folder']}" in r.output for row in index)  # the printed line names every folder
    for row in index:  # each folder holds its own pair: the profile's rows, the topology's K
        folder = out / row["folder"]
        rows = 32 if row["profile_number"] == "1" else 16
        if fmt == "zigzag":
            acc = yaml.safe_load((folder / "accelerator.yaml").read_text())
            assert acc["operational_array"]["sizes"][0] == rows
        else:
            assert len(list((folder / "problems").glob("*.yaml"))) == len(list((folder / "mappings").glob("*.yaml")))
        if row["folder"].startswith("a.csv"):
            k = 8 if "/x/" in row["workload"].replace("\\", "/") else 16
            if fmt == "zigzag":
                assert yaml.safe_load((folder / "workload.yaml").read_text())[0]["loop_sizes"][1] == k
            else:
                (problem,) = (folder / "problems").glob("*.yaml")
                assert yaml.safe_load(problem.read_text())["problem"]["instance"]["M"] == k
