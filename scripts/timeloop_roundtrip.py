"""Round trip of ``ksm-sim --export timeloop`` through Timeloop itself: export, run ``timeloop-model``, compare.

For each case (one layer on one profile; :data:`CASES`) the script writes the export with the mapping ksm-sim
chose, runs the folder's ``run.sh`` (``timeloop-model arch.yaml ERT.yaml problem mapping``), reads Timeloop's
``timeloop-model.stats.txt`` and sets it beside ksm-sim's counts for the same mapping: per level and data
space, elements read and written (Timeloop: reads; fills + updates; totals over the utilised instances)
and energy in pJ. ``--fixture DIR`` keeps Timeloop's numbers (``timeloop_results.json``) and the stats files
for the test, which needs no Timeloop (``tests/hwsim/test_timeloop_export.py``). From the repository root::

    .venv/bin/python scripts/timeloop_roundtrip.py --timeloop /path/to/timeloop --work /tmp/tl-roundtrip \\
        --fixture tests/hwsim/fixtures/timeloop_export

``--timeloop`` is Timeloop's source folder after ``scons`` (``build/timeloop-model`` and ``lib/``); the
fixture's README says how it was built. Without ``--timeloop`` the script only writes the exports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hwsim.cost.layer_cost import shape_of  # noqa: E402
from hwsim.cost.mapping import search  # noqa: E402
from hwsim.cost.mapping.one_mapping import evaluate  # noqa: E402
from hwsim.cost.mapping.space import RELEVANT, arch  # noqa: E402
from hwsim.hardware.profile import Profile, load_profile  # noqa: E402
from hwsim.interop.export_common import TIMELOOP_SPACE  # noqa: E402
from hwsim.interop.timeloop_files import write_timeloop  # noqa: E402
from hwsim.workload.layers import Layer, Workload  # noqa: E402

# name -> (profile, layer): a conv on each of two profiles, a depthwise conv, a linear layer
CASES: dict[str, tuple[str, Layer]] = {
    "conv_tpu_like": ("zigzag_tpu_like", Layer("conv3x3", "conv", 64, 64, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14))),
    "conv_edge_npu": ("edge_npu", Layer("conv3x3", "conv", 128, 128, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14))),
    "depthwise_tpu_like": ("zigzag_tpu_like", Layer("dw3x3", "conv", 64, 64, (3, 3), (1, 1), (1, 1), 64, (28, 28),
                                                    (28, 28))),
    "linear_edge_npu": ("edge_npu", Layer("fc", "linear", 512, 256, (1, 1))),
    # an uneven unrolling (C = 64 on 10 rows: Timeloop's residual factor C=10,4) and a halo refetched per tile
    "conv_edge_npu_uneven": ("edge_npu", Layer("conv3x3", "conv", 64, 128, (3, 3), (1, 1), (1, 1), 1, (28, 28),
                                               (28, 28))),
}
SPACE_OPERAND = {v: k for k, v in TIMELOOP_SPACE.items()}


def ksm_counts(layer: Layer, profile: Profile) -> dict[str, Any]:
    """ksm-sim's chosen mapping of ``layer``: elements read and written per (level, operand), energy (pJ).

    Elements: the mapping re-costed with every precision at 8 bits and its memory allocation given (the same
    loops and tiles), so that bytes are elements; energy: the mapping as ksm-sim costs it.
    """
    shape = shape_of(layer)
    m = search(shape, profile)
    pb8 = dataclasses.replace(profile.precision_bits, weights=8, inputs=8, psums=8, outputs=8)
    e = evaluate(shape, arch(dataclasses.replace(profile, precision_bits=pb8)), m.spatial, m.loops, cuts=m.cuts)
    levels = {}
    for (level, o), pj in m.energy_pj.items():
        if level == "mac":
            continue
        levels[f"{level}/{o}"] = {"reads": e.reads.get((level, o), 0.0), "writes": e.writes.get((level, o), 0.0),
                                  "energy_pj": pj}
    return {"levels": levels, "spatial": {"rows": [list(x) for x in m.spatial.rows],
                                          "cols": [list(x) for x in m.spatial.cols]}, "mac_energy_pj": m.energy_pj[("mac", "mac")], "energy_pj": m.energy,
            "compute_cycles": m.compute_cycles, "macs": shape.macs}


_NUM = r"([-+]?\d[0-9.eE+-]*|[-+]?(?:inf|nan))"


def read_stats(path: Path) -> dict[str, Any]:
    """Per (level, data space) reads, fills, updates (totals over the utilised instances) and energy (pJ),
    the MACs' energy and the total from Timeloop v3.0.3's ``timeloop-model.stats.txt``."""
    text = path.read_text()
    out: dict[str, Any] = {"levels": {}}
    level = space = None
    cur: dict[str, float] = {}

    def close() -> None:
        if level and space and cur:
            inst = cur.get("Utilized instances (average)", cur.get("Utilized instances (max)", 1.0))
            get = lambda *keys: next((cur[k] for k in keys if k in cur), 0.0)  # noqa: E731
            out["levels"][f"{level}/{SPACE_OPERAND[space]}"] = {
                "reads": get("Actual scalar reads (per-instance)", "Scalar reads (per-instance)") * inst,
                "fills": get("Actual scalar fills (per-instance)", "Scalar fills (per-instance)") * inst,
                "updates": get("Actual scalar updates (per-instance)", "Scalar updates (per-instance)") * inst,
                "energy_pj": get("Energy (total)"),
                "reduction_energy_pj": get("Temporal Reduction Energy (total)"),
                "instances": inst}

    for line in text.splitlines():
        m = re.match(r"^=== (.+) ===$", line.strip())
        if m:
            close()
            level, space, cur = m.group(1), None, {}
            continue
        if line[:1].strip() and level:  # an unindented line ends a level (the networks follow, unnamed by ===)
            close()
            level = space = None
        m = re.match(r"^\s+(Weights|Inputs|Outputs):\s*$", line)
        if m and level:
            close()
            space, cur = m.group(1), {}
            continue
        m = re.match(r"^\s+([A-Za-z][^:]*?)\s*:\s*" + _NUM + r"(\s*pJ)?\s*$", line)
        if m and space:
            cur[m.group(1).strip()] = float(m.group(2))
        m = re.match(r"^Computes = (\d+)$", line.strip())
        if m:
            close()
            level = space = None
            out["computes"] = int(m.group(1))
        m = re.match(r"^Energy: " + _NUM + " uJ$", line.strip())
        if m:
            out["energy_pj"] = float(m.group(1)) * 1e6
        m = re.match(r"^Cycles: (\d+)$", line.strip())
        if m:
            out["cycles"] = int(m.group(1))
        m = re.match(r"^(\S+)\s*= " + _NUM + "$", line.strip())
        if m and "computes" in out:
            out.setdefault("fj_per_compute", {})[m.group(1)] = float(m.group(2))
    close()
    fj = out.get("fj_per_compute", {})
    out["mac_energy_pj"] = fj.get("mac", 0.0) * out.get("computes", 0) / 1000
    if "Total" in fj:  # the summary's "Energy: 7.52 uJ" has three digits; fJ/Compute x computes has more
        out["energy_pj"] = fj["Total"] * out["computes"] / 1000
    return out


def conventions(profile: Profile, ksm: dict[str, Any], tl: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per outputs level: the reads (and their pJ) ksm-sim counts and Timeloop v3.0.3 does not.

    ksm-sim (as ZigZag) reads the innermost accumulator at every MAC, the first time too, and reads every
    output a level sends up to its parent; Timeloop starts an accumulation from zero without reading and
    charges the parent's update only. Drained elements = the parent's updates (times the PEs reduced into
    one when a per-PE level drains into a shared one); the innermost level reads as many first values.
    Only where no partial sums come back (no fills), as in every case here.
    """
    pb = profile.precision_bits
    chain = profile.chain("outputs")[::-1]
    mc = math.prod(u for d, u in (*ksm["spatial"]["rows"], *ksm["spatial"]["cols"]) if d not in RELEVANT["outputs"])
    out = {}
    for i, lv in enumerate(chain[:-1]):
        here, parent = tl["levels"].get(f"{lv.name}/outputs"), tl["levels"].get(f"{chain[i + 1].name}/outputs")
        if here is None or parent is None or here["fills"] > 0:
            continue
        drain = parent["updates"] * (mc if lv.per_pe and not chain[i + 1].per_pe else 1)
        first = drain if i == 0 else 0.0

        def words(n: float, bits: int) -> float:
            return n * math.ceil(bits / lv.word_bits) if lv.per_pe else n * bits / lv.word_bits
        out[f"{lv.name}/outputs"] = (drain + first, (words(drain, pb.outputs) + words(first, pb.psums))
                                     * lv.read_energy_pj)
    return out


def compare(ksm: dict[str, Any], tl: dict[str, Any], extra: dict[str, tuple[float, float]] | None = None
            ) -> list[dict[str, Any]]:
    """One row per (level, operand): ksm-sim's and Timeloop's reads, writes (fills + updates) and energy;
    ``extra`` (:func:`conventions`) added to Timeloop's reads and energy in ``tl_reads_conv``/``tl_pj_conv``."""
    rows = []
    for key, k in ksm["levels"].items():
        t = tl["levels"].get(key)
        if t is None:
            continue
        er, ep = (extra or {}).get(key, (0.0, 0.0))
        rows.append({"level": key, "ksm_reads": k["reads"], "tl_reads": t["reads"], "tl_reads_conv": t["reads"] + er,
                     "ksm_writes": k["writes"], "tl_writes": t["fills"] + t["updates"], "ksm_pj": k["energy_pj"],
                     "tl_pj": t["energy_pj"], "tl_pj_conv": t["energy_pj"] + ep})
    rows.append({"level": "mac", "ksm_reads": ksm["macs"], "tl_reads": tl.get("computes", 0),
                 "tl_reads_conv": tl.get("computes", 0), "ksm_writes": 0, "tl_writes": 0,
                 "ksm_pj": ksm["mac_energy_pj"], "tl_pj": tl["mac_energy_pj"], "tl_pj_conv": tl["mac_energy_pj"]})
    total = tl.get("energy_pj", 0.0) + sum(ep for _, ep in (extra or {}).values())
    rows.append({"level": "total", "ksm_reads": None, "tl_reads": None, "tl_reads_conv": None, "ksm_writes": None,
                 "tl_writes": None, "ksm_pj": ksm["energy_pj"], "tl_pj": tl.get("energy_pj", 0.0), "tl_pj_conv": total})
    return rows


def _rel(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    if a == b:
        return "0"
    return f"{(b - a) / a * 100:+.2f} %" if a else "inf"


def table(name: str, rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`compare`'s rows (Timeloop's reads and energy with the conventions added)."""
    head = (f"### {name}\n\n| level/operand | reads ksm-sim | reads Timeloop | + conventions | Δ | writes ksm-sim "
            "| writes Timeloop | Δ | pJ ksm-sim | pJ Timeloop | + conventions | Δ |\n"
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
    fmt = lambda x: "" if x is None else f"{x:,.0f}"  # noqa: E731
    body = "".join(f"| {r['level']} | {fmt(r['ksm_reads'])} | {fmt(r['tl_reads'])} | {fmt(r['tl_reads_conv'])} "
                   f"| {_rel(r['ksm_reads'], r['tl_reads_conv'])} | {fmt(r['ksm_writes'])} | {fmt(r['tl_writes'])} "
                   f"| {_rel(r['ksm_writes'], r['tl_writes'])} | {fmt(r['ksm_pj'])} | {fmt(r['tl_pj'])} "
                   f"| {fmt(r['tl_pj_conv'])} | {_rel(r['ksm_pj'], r['tl_pj_conv'])} |\n" for r in rows)
    return head + body


def timeloop_commit(timeloop: Path) -> str:
    """The commit of a Timeloop checkout, or what its folder records."""
    try:
        return subprocess.run(["git", "-C", str(timeloop), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        stamp = timeloop / "COMMIT"
        return stamp.read_text().strip() if stamp.exists() else "unknown"


@click.command()
@click.option("--timeloop", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Timeloop's built source folder (build/timeloop-model, lib/), e.g. ~/timeloop.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the exports and Timeloop's outputs, e.g. /tmp/tl-roundtrip.")
@click.option("--fixture", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write Timeloop's numbers and stats here, e.g. tests/hwsim/fixtures/timeloop_export.")
def main(timeloop: Path | None, work: Path, fixture: Path | None) -> None:
    """Export each case, run it in Timeloop, print the per-level comparison."""
    results: dict[str, Any] = {"timeloop": VERSION_NOTE, "cases": {}}
    report = []
    for name, (profile_name, layer) in CASES.items():
        profile = load_profile(profile_name)
        folder = work / name
        write_timeloop(Workload(source=name, layers=(layer,)), profile, folder)
        if timeloop is None:
            click.echo(f"wrote {folder}")
            continue
        env = dict(os.environ)
        env["PATH"] = f"{timeloop / 'build'}{os.pathsep}{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = f"{timeloop / 'lib'}{os.pathsep}{env.get('LD_LIBRARY_PATH', '')}"
        subprocess.run(["sh", str(folder / "run.sh")], check=True, env=env)
        stats = next((folder / "out").glob("*/timeloop-model.stats.txt"))
        tl = read_stats(stats)
        ksm = ksm_counts(layer, profile)
        rows = compare(ksm, tl, conventions(profile, ksm, tl))
        report.append(table(f"{name}: {layer.name} on {profile_name}", rows))
        results["cases"][name] = {"profile": profile_name, "layer": layer.record(), "timeloop": tl, "ksm_sim": ksm}
        if fixture is not None:
            (fixture / "stats").mkdir(parents=True, exist_ok=True)
            (fixture / "stats" / f"{name}.stats.txt").write_text(stats.read_text())
    if timeloop is not None:
        results["timeloop_commit"] = timeloop_commit(timeloop)
        click.echo("\n".join(report))
        if fixture is not None:
            (fixture / "timeloop_results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            click.echo(f"wrote {fixture / 'timeloop_results.json'}")


VERSION_NOTE = "timeloop-model v3.0.3 (NVlabs/timeloop tag v3.0.3), built without ISL"

if __name__ == "__main__":
    main()
