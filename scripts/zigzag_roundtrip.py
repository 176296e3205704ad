"""Round trip ``ksm-sim --export zigzag`` through ZigZag and write the fixture the CI test compares with.

For every case it exports the workload with ``ksm-sim --export zigzag`` (the CLI), runs the three files in
ZigZag 3.9.1 (``get_hardware_performance_zigzag``, opt="energy"; each layer's mapping is the one in
``mapping.yaml``, so ZigZag searches nothing), and writes per layer ZigZag's energy, latency and their
parts, with the mapping that was exported, into ``tests/hwsim/fixtures/zigzag_export/zigzag_results.json``.
It prints the ratios ZigZag / ksm-sim per layer and in total. CI never needs ZigZag: the test
``tests/hwsim/test_zigzag_export.py`` compares ``ksm-sim``'s numbers with the fixture.

ZigZag goes into a throwaway venv, never the project's::

    python3 -m venv /tmp/zz && /tmp/zz/bin/pip install zigzag-dse==3.9.1 six
    .venv/bin/python scripts/zigzag_roundtrip.py --zigzag-python /tmp/zz/bin/python

``--case NAME`` (repeatable) redoes some cases and keeps the others in the fixture.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "hwsim" / "fixtures" / "zigzag_export" / "zigzag_results.json"

# single layers as ksm-layers/1 tables: (name, kind, C, K, kernel, stride, padding, groups, input_hw, output_hw)
LAYERS = {
    "r18_conv3_3x3": ("conv", 128, 128, 3, 1, 1, 1, 28, 28),
    "dw_3x3": ("conv", 96, 96, 3, 1, 1, 96, 56, 56),
    "fc_512_1000": ("linear", 512, 1000, 1, 1, 0, 1, 1, 1),
}
# case -> (profile, bundled network or one of LAYERS)
CASES = {
    "tpu_like/conv": ("zigzag_tpu_like", "r18_conv3_3x3"),
    "tpu_like/depthwise": ("zigzag_tpu_like", "dw_3x3"),
    "tpu_like/linear": ("zigzag_tpu_like", "fc_512_1000"),
    "edge_npu/conv": ("edge_npu", "r18_conv3_3x3"),
    "edge_npu/depthwise": ("edge_npu", "dw_3x3"),
    "edge_npu/linear": ("edge_npu", "fc_512_1000"),
    "edge_npu/resnet18": ("edge_npu", "resnet18"),
}

RUNNER = '''
import json, logging, sys
logging.disable(logging.WARNING)
from zigzag.api import get_hardware_performance_zigzag
folder, dump = sys.argv[1], sys.argv[2]
energy, latency, cmes = get_hardware_performance_zigzag(folder + "/workload.yaml", folder + "/accelerator.yaml",
    folder + "/mapping.yaml", opt="energy", dump_folder=dump, loma_show_progress_bar=False)
layers = []
for cme, _ in cmes[0][1]:
    layers.append({"name": cme.layer.name, "energy_pj": float(cme.energy_total), "cycles": float(cme.latency_total2),
                   "mac_energy_pj": float(cme.mac_energy), "ideal_temporal_cycles": float(cme.ideal_temporal_cycle),
                   "stall_cycles": float(cme.stall_slack_comb), "onload_cycles": float(cme.data_onloading_cycle),
                   "offload_cycles": float(cme.data_offloading_cycle),
                   "memory_energy_pj": {str(op): [float(x) for x in v] for op, v in cme.mem_energy_breakdown.items()},
                   "spatial_mapping": str(cme.spatial_mapping), "temporal_mapping": str(cme.temporal_mapping)})
print(json.dumps({"energy_pj": float(energy), "cycles": float(latency), "layers": layers}))
'''


def layer_table(name: str) -> dict:
    kind, c, k, f, s, p, g, hw_in, hw_out = LAYERS[name]
    return {"format": "ksm-layers/1", "network": name, "input_hw": [hw_in, hw_in],
            "layers": [{"name": name, "kind": kind, "in_channels": c, "out_channels": k, "kernel": [f, f],
                        "stride": [s, s], "padding": [p, p], "groups": g, "input_hw": [hw_in, hw_in],
                        "output_hw": [hw_out, hw_out], "bias": False}]}


def zigzag_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('zigzag-dse'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def run_case(case: str, python: str, work: Path) -> dict:
    from hwsim import load_network, load_profile
    from hwsim.cost.layer_cost import layer_cost
    from hwsim.interop.zigzag_files import exported_cycles, exported_energy_pj

    profile_name, what = CASES[case]
    network = what
    if what in LAYERS:
        network = str(work / f"{what}.json")
        Path(network).write_text(json.dumps(layer_table(what)))
    folder = work / "export"
    # the command as the fixture records it (a single layer's table is written by layer_table)
    command = ["ksm-sim", "--network", f"{what}.json" if what in LAYERS else what, "--profile", profile_name,
               "--export", "zigzag", "export"]
    subprocess.run([str(Path(sys.executable).parent / "ksm-sim"), "--network", network, "--profile", profile_name,
                    "--export", "zigzag", str(folder)], check=True, capture_output=True, text=True)
    runner = work / "run_zigzag.py"
    runner.write_text(RUNNER)
    t0 = time.perf_counter()
    out = subprocess.run([python, str(runner), str(folder), str(work / "out")], capture_output=True, text=True,
                         check=False, env={"PATH": "/usr/bin:/bin"})
    if out.returncode:
        raise click.ClickException(f"{case}: ZigZag failed: {out.stderr.strip().splitlines()[-1:]}")
    zz = json.loads(out.stdout.strip().splitlines()[-1])
    wall = time.perf_counter() - t0
    import yaml

    mapping = {m["name"]: m for m in yaml.safe_load((folder / "mapping.yaml").read_text())}
    profile, work_ = load_profile(profile_name), load_network(network)
    rows = []
    for layer, z in zip(work_.layers, zz["layers"]):
        cost = layer_cost(layer, profile)
        e, cyc = exported_energy_pj(cost, profile), exported_cycles(cost)
        m = mapping[z["name"]]
        rows.append({**z, "exported_mapping": {"spatial_mapping": m["spatial_mapping"],
                                               "temporal_ordering": m["temporal_ordering"]},
                     "ksm_sim_when_made": {"energy_pj": e, "cycles": cyc}})
        print(f"{case:20s} {layer.name:24s} energy {z['energy_pj'] / e:.4f}  cycles {z['cycles'] / cyc:.4f}")
    te = math.fsum(r["ksm_sim_when_made"]["energy_pj"] for r in rows)
    tc = math.fsum(r["ksm_sim_when_made"]["cycles"] for r in rows)
    print(f"{case:20s} {'total':24s} energy {zz['energy_pj'] / te:.4f}  cycles {zz['cycles'] / tc:.4f}  "
          f"(ZigZag {wall:.1f} s)")
    return {"case": case, "profile": profile_name, "workload": what, "export_command": " ".join(command),
            "zigzag_energy_pj": zz["energy_pj"], "zigzag_cycles": zz["cycles"], "layers": rows}


@click.command()
@click.option("--zigzag-python", required=True, metavar="PYTHON",
              help="Interpreter of a venv with zigzag-dse 3.9.1 and six, e.g. /tmp/zz/bin/python.")
@click.option("--case", "cases", multiple=True, type=click.Choice(sorted(CASES)),
              help="Redo only this case (repeatable); the others stay in the fixture. Default: all.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=FIXTURE, show_default=True,
              help="The fixture to write.")
def main(zigzag_python: str, cases: tuple[str, ...], out: Path) -> None:
    """Export with ksm-sim, run ZigZag on the files, write the fixture and print ZigZag / ksm-sim ratios."""
    version = zigzag_version(zigzag_python)
    if version != "3.9.1":
        raise click.ClickException(f"--zigzag-python has zigzag-dse {version}; the fixture is for 3.9.1")
    old = json.loads(out.read_text())["cases"] if out.is_file() else []
    results = {c["case"]: c for c in old}
    for case in cases or tuple(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            results[case] = run_case(case, zigzag_python, Path(tmp))
    doc = {"tool": "zigzag-dse 3.9.1", "opt": "energy",
           "command": "python scripts/zigzag_roundtrip.py --zigzag-python PYTHON",
           "cases": [results[c] for c in CASES if c in results]}
    from hwsim.fileio.atomic import atomic_write

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps(doc, indent=1) + "\n")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
