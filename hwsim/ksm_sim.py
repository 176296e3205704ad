"""``ksm-sim``: the command line of hwsim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import pandas as pd
from click.core import ParameterSource

from hwsim import catalogue, units
from hwsim.command_line import CONTEXT_SETTINGS, OneLineCommand
from hwsim.report import tables
from hwsim.fileio.atomic import atomic_write
from hwsim.fileio.output_guard import (NameOrPath, PathOption, check_no_alias, check_output_folder,
                                        one_line_os_errors, raise_on_sigterm)
from hwsim.errors import InputError
from hwsim.workload.layers import Workload, bundled_networks, load_network, load_run
from hwsim.workload.topology import load_topology
from hwsim.cost.mask_cost import MODES
from hwsim.workload.packed import is_packed_task, load_packed
from hwsim.hardware.profile import load_designs
from hwsim.workload.runcheck import one_line_warnings
from hwsim.workload.runs import expand_run_paths
from hwsim.cost.simulate import SimResult, results_document

# Methods costable without a run (CPG needs the per-layer counts only its runs record).
METHOD_CHOICES = catalogue.costable_from_network()


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets nan through (every comparison with nan is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number")
    return value


def _workloads(masks: tuple[Path, ...], networks: tuple[str, ...], topologies: tuple[Path, ...],
               method: str | None, batchnorm: str | None, more: tuple[Workload, ...] = ()) -> list[Workload]:
    works = [load_packed(path) if path.is_file() else load_run(path) for path in masks]  # a ksm-export --pack file
    for item in [*map(load_network, networks), *map(load_topology, topologies), *more]:
        if method is not None:
            item = Workload(source=item.source, layers=item.layers, method=method,
                            batchnorm=catalogue.batchnorm_of(method, batchnorm))
        works.append(item)
    return works


def _onnx_workloads(paths: tuple[Path, ...], input_shape: str | None = None) -> tuple[Workload, ...]:
    """``--onnx`` files as workloads, at ``--input-shape`` if given; the operators each leaves uncosted go to
    stderr in one line."""
    if not paths:
        return ()
    from hwsim.workload.onnx_reader import load_onnx, parse_input_shape

    shape = parse_input_shape(input_shape) if input_shape is not None else None
    works = []
    for path in paths:
        work, skipped = load_onnx(path, warn=False, input_shape=shape)
        if skipped:
            listed = ", ".join(f"{n} {op}" for op, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
            click.echo(f"warning: {path}: no cost model for {listed}: costed as one vector operation per output "
                       "element", err=True)
        works.append(work)
    return tuple(works)


def profiles_frame() -> pd.DataFrame:
    """Headline numbers of every bundled profile (the report's table plus the memory levels)."""
    return tables.profiles_frame([d.profile for d in load_designs(["all"])], levels=True)


def _fmt(x: float) -> str:
    return f"{x:,.6g}" if isinstance(x, float) else f"{x:,}"


def operators_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-operator-kind frame in engineering units, for printing."""
    out = frame.copy()
    out["MACs"] = out["MACs"].map(lambda v: f"{v:,}")
    out["vector ops"] = out["vector ops"].map(lambda v: f"{v:,.0f}")
    out["cycles"] = out["cycles"].map(lambda v: f"{v:,.0f}")
    out["latency share"] = out["latency share"].map(lambda v: f"{v:.1%}")
    out["energy (J)"] = out["energy (J)"].map(units.energy)
    out["DRAM (B)"] = out["DRAM (B)"].map(units.nbytes)
    return out.rename(columns={"energy (J)": "energy", "DRAM (B)": "DRAM"})


def summary_text(result: SimResult, with_layers: bool) -> str:
    """The printed report of one result: headline, energy by level x operand, DRAM bytes, task cost."""
    d = result.to_dict(with_layers=False)
    t = d["totals"]
    title = f"## {d['source']} on {d['profile']}"
    if d["method"]:
        title += f" — task {d['task'] or '-'}, method {d['method']}, mode {d['mode']}"
        if d["top1"] is not None:
            title += f", top-1 {d['top1']:.4f} ({d['top1_precision']})"
    per = d["per_image"]
    batch = d["batch"]
    lb = t["latency_breakdown_cycles"]
    batch_note = f" (batch of {batch})" if batch > 1 else ""
    head = pd.DataFrame([
        ("batch", batch), ("mapping objective", d["objective"]),
        ("inference", "steady state (weights cached on chip)" if d["steady_state"] else "cold (from DRAM)"),
        (f"MACs{batch_note}", f"{t['macs']:,}"), ("compute cycles", f"{t['compute_cycles']:,}"),
        ("cycles: compute + stalls + on/off-loading + vector + weight wait + output stage",
         (f"{t['cycles']:,.0f} = {lb['compute']:,} + {lb['stall']:,.0f} + {lb['onload'] + lb['offload']:,.0f} + "
          f"{lb['vector']:,.0f} + {lb['weight_wait']:,.0f} + {lb['output']:,.0f}")),
        ("array utilisation", f"{t['utilization']:.3f}"),
        (f"latency{batch_note}", units.seconds(t["latency_s"])),
        ("latency per image", units.seconds(per["latency_per_image_s"])),
        (f"energy{batch_note}", units.energy(t["energy_j"])),
        ("energy per image", units.energy(per["energy_per_image_j"])),
        (f"on-chip power (all but `{result.profile.dram.name}`)",
         f"{t['energy_on_chip_j'] / t['latency_s'] * 1e3:.4g} mW" if t["latency_s"] else "-"),
        ("chip-level energy", t["chip_energy"]),
        (f"zero gating saved{batch_note}", units.energy(t["zero_gating_saved_j"])),
        *([(f"DRAM bytes the run-length code saved{batch_note}", units.nbytes(t["dram_code_saved_bytes"]))]
          if result.profile.dram_compression is not None else []),
        ("DRAM traffic per image", units.nbytes(per["dram_bytes_per_image"])),
        ("mask storage per task", units.nbytes(t["mask_storage_bits"] / 8)),
        ("task-specific bytes (masks + BatchNorm + head)", units.nbytes(t["task_specific_bytes"])),
        ("  of which masks / BatchNorm / head",
         " / ".join(units.nbytes(v) for v in t["task_specific_bytes_by_part"].values())),
        ("task switch: bytes read / written", (f"{units.nbytes(t['task_switch']['read_bytes'])} / "
                                             f"{units.nbytes(t['task_switch']['write_bytes'])}")),
        ("task switch: energy / latency", (f"{units.energy(t['task_switch']['energy_j'])} / "
                                          f"{units.seconds(t['task_switch']['latency_s'])}")),
    ], columns=["quantity", "value"])
    head["value"] = head["value"].map(lambda v: v if isinstance(v, str) else _fmt(v))
    parts = [title, "", units.markdown(head, index=False), ""]
    over = [c for c in result.layers if (c.mapping or {}).get("overflow")]
    if over:
        levels = ", ".join(sorted({lv for c in over for lv in c.mapping["overflow"]}))
        parts += [f"Note: the mappings of {len(over)} of {sum(c.macs > 0 for c in result.layers)} layers hold tiles "
                  f"that overflow {levels}; they are costed as if they fit (JSON: `mapping.overflow`).", ""]
    if d["assumed_mask_density"] is not None:
        parts += [f"KSM binary-mask density assumed {d['assumed_mask_density']} (no binary mask in the run).", ""]
    energy = result.energy_frame() * 1e6
    parts += [f"Energy (µJ{batch_note}) by memory level and operand:", "", units.markdown(energy, floatfmt=".4g"), ""]
    dram = result.profile.dram.name
    traffic = result.traffic_frame()
    traffic = traffic.rename(columns={"read (B)": "read (KiB)", "written (B)": "written (KiB)"})
    traffic[["read (KiB)", "written (KiB)"]] = traffic[["read (KiB)", "written (KiB)"]] / 1024
    parts += [f"KiB moved per level and operand{batch_note} (`{dram}` is the outermost level):", "",
              units.markdown(traffic, index=False, floatfmt=",.1f"), ""]
    ops = result.operators_frame()
    if len(ops) > 1 or (len(ops) and ops["operator"].iloc[0] not in ("conv", "linear")):
        res = d["residency"] or {}
        parts += [f"By operator kind{batch_note} ({'the network graph' if res.get('graph') == 'graph' else 'a chain of layers'}; "
                  f"non-MAC operators on {t['vector_unit']}; on-chip activation peak "
                  f"{units.nbytes(res.get('activation_peak_bytes', 0.0))}):", "",
                  units.markdown(operators_table(ops), index=False), ""]
    if with_layers:
        parts += [f"Per operator{batch_note}:", "", units.markdown(result.layers_table(), index=False), ""]
    return "\n".join(parts)


def overview_frame(results: list[SimResult]) -> pd.DataFrame:
    """One row per result, for the end of a multi-result run: where each workload costs what, side by side
    (per image, in engineering units), so ``--profile all`` ends with the comparison rather than the
    last profile's detail."""
    rows = []
    for r in results:
        d = r.to_dict(with_layers=False)
        per, t = d["per_image"], d["totals"]
        lb = t["latency_breakdown_cycles"]
        rows.append({"workload": Path(d["source"]).name or d["source"], "profile": d["profile"],
                     "method / mode": f"{d['method']} / {d['mode']}" if d["method"] else "-",
                     "latency / image": units.seconds(per["latency_per_image_s"]),
                     "energy / image": units.energy(per["energy_per_image_j"]),
                     "DRAM / image": units.nbytes(per["dram_bytes_per_image"]),
                     "utilisation": f"{t['utilization']:.2f}",
                     "cycles not computing": f"{1 - lb['compute'] / t['cycles']:.0%}" if t["cycles"] else "-",
                     "mask storage / task": units.nbytes(t["mask_storage_bits"] / 8)})
    return pd.DataFrame(rows)


def _write_json(path: Path, document: dict) -> None:
    """Write atomically: a temporary sibling renamed into place."""
    atomic_write(path, json.dumps(document, indent=1) + "\n")


def _input_paths(masks: tuple[Path, ...], networks: tuple[str, ...], topologies: tuple[Path, ...],
                 onnx_files: tuple[Path, ...], profiles: tuple[str, ...]) -> list[Path]:
    """Every file or folder the command reads (names of bundled networks and profiles are not paths)."""
    named = [Path(n) for n in (*networks, *profiles) if Path(n).exists()]
    return [*masks, *topologies, *onnx_files, *named]


def _check_outputs(inputs: list[Path], json_path: Path | None, export_dir: Path | None) -> None:
    """The output guard, before any work: no output is or lies inside an input; an export folder is ours."""
    check_no_alias([p for p in (json_path, export_dir) if p is not None], inputs)
    if export_dir is not None:
        check_output_folder(export_dir)


def _report(masks: tuple[Path, ...], networks: tuple[str, ...], topologies: tuple[Path, ...],
            profiles: tuple[str, ...], report_dir: Path, title: str | None, settings: tables.Settings) -> None:
    """``--report``: the runs' accuracy beside their cost on every profile, as Markdown + PNG."""
    from hwsim.report.sections import write_report  # local: matplotlib only for reports

    if networks or topologies:
        raise click.UsageError("--report reads run folders only (--masks); drop --network/--topology")
    if not masks:
        raise click.UsageError("--report needs run folders: --masks runs/* (written by ksm-train)")
    for path in expand_run_paths(masks)[1]:
        why = " (a packed task file has no accuracy: cost it without --report)" if is_packed_task(path) else ""
        click.echo(f"skipping {path}: not a run folder{why}", err=True)
    readme = write_report(masks, profiles, report_dir, title=title, settings=settings)
    click.echo(f"wrote {readme}")


def _given_mappings(path: Path | None, works: list[Workload], objective: str):  # noqa: ANN202 - a callable
    """``--mapping``: the file read and validated, its layer names checked against the workloads' layers; the
    run's ``objective`` picks between a ZigZag ordering's two cuts of a shared level, as the search would."""
    if path is None:
        return None
    from hwsim.cost.mapping.given_mapping import check_layer_names, mapping_source, read_mapping_file

    book = read_mapping_file(path)
    check_layer_names(book, str(path), {layer.name for work in works for layer in work.layers},
                      {op.name for work in works if work.graph is not None for op in work.graph.ops})
    return mapping_source(book, str(path), objective)


def _simulate_given(settings: tables.Settings, work: Workload, profile, mode: str | None, given) -> SimResult:  # noqa: ANN001
    """``settings.simulate`` with the ``--mapping`` file's mappings instead of the search for the layers it maps."""
    from hwsim.cost.simulate import simulate

    return simulate(work, profile, mode, tasks=settings.tasks, mask_density=settings.mask_density,
                    batch=settings.batch, objective=settings.objective, steady_state=settings.steady_state,
                    input_sparsity=settings.input_sparsity, mapping=given)


def _mapping_warnings(path: Path, results: list[SimResult]) -> None:
    """One stderr line per layer whose given tiles overflow a level, and one for the layers searched instead."""
    searched: set[str] = set()
    for r in results:
        for c in r.layers:
            m = c.mapping or {}
            if m.get("given") and m.get("overflow"):
                click.echo(f"warning: {path}: layer {c.name} on {r.profile.name}: the tiles overflow "
                           f"{', '.join(m['overflow'])} (costed as if they fit)", err=True)
            elif c.kind in ("conv", "linear") and not m.get("given"):
                searched.add(c.name)
    if searched:
        names = sorted(searched)
        click.echo(f"note: {path} has no mapping for {len(names)} layer(s) ({', '.join(names[:5])}"
                   f"{', ...' if len(names) > 5 else ''}): searched, as without --mapping", err=True)


# What each of ksm-sim's jobs does not read; an option given on the command line that the chosen job does
# not read is refused in one line rather than silently ignored.
_NOT_READ_BY = {
    "list_profiles": ("masks", "more_masks", "networks", "topologies", "method", "mode", "tasks", "mask_density",
                      "batchnorm", "batch", "objective", "steady_state", "input_sparsity", "with_layers",
                      "json_path", "title",
                      "onnx_files", "export_to", "sets", "profiles", "report_dir", "mapping_file"),
    "report_dir": ("method", "mode", "batchnorm", "with_layers", "json_path", "onnx_files", "export_to",
                   "mapping_file"),
    # run folders and task files name their own method and BatchNorm policy: --method/--batchnorm are for
    # --network/--topology/--onnx only
    "runs_only": ("title", "method", "batchnorm"),
    "": ("title",),
}
_JOB_NAMES = {"list_profiles": "--list-profiles", "report_dir": "--report",
              "runs_only": "costing run folders or task files", "": "costing without --report"}


def _option_name(param: click.Parameter) -> str:
    """How the user wrote it: ``--method`` for an option, ``RUN_FOLDER...`` for the trailing arguments."""
    if isinstance(param, click.Argument):
        return param.make_metavar(click.get_current_context())
    return max(param.opts, key=len)


def _job(ctx: click.Context) -> str:
    """Which job the command line asks for (a key of ``_NOT_READ_BY``)."""
    values = ctx.params
    if values["list_profiles"]:
        return "list_profiles"
    if values["report_dir"] is not None:
        return "report_dir"
    if not (values["networks"] or values["topologies"] or values["onnx_files"]):
        return "runs_only"
    return ""


def _refuse_unread(ctx: click.Context) -> None:
    """One line naming the options the chosen job would ignore."""
    job = _job(ctx)
    unread = [p for p in ctx.command.params if p.name in _NOT_READ_BY[job]
              and ctx.get_parameter_source(p.name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
    if unread:
        names = ", ".join(_option_name(p) for p in unread)
        raise click.UsageError(f"{_JOB_NAMES[job]} does not use {names}: drop {'it' if len(unread) == 1 else 'them'}")


@click.command(cls=OneLineCommand, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="ksm", prog_name="ksm-sim")
@click.option("-p", "--profile", "profiles", multiple=True, type=NameOrPath(), default=("edge_npu",),
              show_default=True,
              help="Accelerator profile: a bundled name, a .yaml path, or 'all'. Repeat for several.")
@click.option("-m", "--masks", "masks", multiple=True, type=PathOption(path_type=Path),
              help="Run folder written by ksm-train (run.json + masks.safetensors), or a deployable task file "
                   "written by ksm-export --pack. Repeat for several tasks, or list them after it (--masks runs/*).")
@click.option("-n", "--network", "networks", multiple=True, type=NameOrPath(),
              help=f"Bundled network to cost without a run ({', '.join(bundled_networks())}) or a "
                   "ksm-layers/1 .json file. Repeatable.")
@click.option("-t", "--topology", "topologies", multiple=True, type=PathOption(path_type=Path),
              help="SCALE-Sim topology CSV (Layer name, IFMAP Height, IFMAP Width, Filter Height, "
                   "Filter Width, Channels, Num Filter, Strides,). Repeatable.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default=None,
              help="Mask method to charge for --network/--topology (a run folder names its own). "
                   "Default: none, the plain network.")
@click.option("--mode", type=click.Choice([*MODES, "both"]), default="both", show_default=True,
              help="Mask application: folded into the weights at task switch, or on_the_fly as weights "
                   "stream in.")
@click.option("--tasks", type=click.IntRange(min=1), default=6, show_default=True,
              help="Tasks sharing the backbone (PackNet stores ceil(log2(tasks+1)) bits per weight).")
@click.option("--mask-density", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True, callback=_finite,
              help="KSM: fraction of binary-1 entries, assumed when no binary mask is stored.")
@click.option("--batchnorm", type=click.Choice(["task", "frozen"]), default=None,
              help="BatchNorm policy for --network/--topology with --method (default: the method's own, as "
                   "ksm-train trains it; a run folder names its own).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per inference: the batch is a loop of each layer's mapping, so weights are fetched "
                   "once per batch where the mapping allows. Totals are per batch; per-image figures beside.")
@click.option("--objective", type=click.Choice(["energy", "latency", "edp"]), default="energy", show_default=True,
              help="What each layer's mapping search (loop order, tiles, spatial unrolling) minimises.")
@click.option("--steady-state", is_flag=True,
              help="Cost one inference of a stream: weights and masks that fit on chip stay there across "
                   "inferences (default: cold, from DRAM).")
@click.option("--input-sparsity", type=click.FloatRange(0.0, 1.0), default=None, callback=_finite,
              help="Fraction of every layer's input activations that are zero (e.g. 0.5 after ReLU; default: "
                   "not given, none gated, feature maps dense). On a profile with zero_gating (eyeriss) their "
                   "MACs and weight reads are skipped and the saving is reported apart; on one with "
                   "dram_compression (eyeriss) the feature maps in DRAM but the input image are charged "
                   "run-length coded for it, as the chip codes them whatever their zeros (Chen et al., JSSC "
                   "2017, IV-B): at 0 they cost 4/3 of their dense bytes (the code's overhead), more than "
                   "without the option (dense); other profiles ignore it. Example: --input-sparsity 0.4")
@click.option("--layers", "with_layers", is_flag=True,
              help="Also print the per-layer table (latency split, energy by level, chosen mapping).")
@click.option("--json", "json_path", type=PathOption(path_type=Path, dir_okay=False),
              help="Write every result, machine-readable (ksm-sim/1, SI units), to this file.")
@click.option("--list-profiles", is_flag=True, help="List the bundled profiles with their headline numbers.")
@click.option("--report", "report_dir", type=PathOption(path_type=Path, file_okay=False),
              help="Write a Markdown report with PNG figures (accuracy vs storage, energy, task switch, "
                   "soft-mask precision) of the --masks runs on every --profile into this folder, costed "
                   "with the same --tasks, --mask-density, --batch, --objective, --steady-state and --set.")
@click.option("--title", default=None, help="Title of the --report (default: tasks x methods).")
@click.option("--onnx", "onnx_files", multiple=True, type=PathOption(path_type=Path, dir_okay=False),
              help="An ONNX CNN to cost (Conv, Gemm, MatMul; other operators listed in one warning). Repeatable.")
@click.option("--input-shape", metavar="NxCxHxW",
              help="The --onnx model's input shape, e.g. 1x3x224x224 (or 1,3,224,224): needed when the model "
                   "leaves its height, width or channels symbolic; must agree with the dimensions it fixes.")
@click.option("--export", "export_to", nargs=2,
              type=(click.Choice(["zigzag", "timeloop"]), PathOption(path_type=Path)),
              default=None, metavar="zigzag|timeloop DIR",
              help="Also write each workload and profile in ZigZag's or Timeloop's input format into DIR.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a profile field by its dotted path, validated like the YAML (repeatable): "
                   "--set array.rows=16 --set levels.sram_1MB.size_bytes=524288.")
@click.option("--mapping", "mapping_file", type=PathOption(path_type=Path, dir_okay=False),
              help="Cost the mapping in this YAML file instead of searching, as Timeloop's model does: "
                   "ZigZag's notation (spatial_mapping + temporal_mapping) or Timeloop's (a mapping: list), "
                   "per layer (layers: {NAME: ...}) or one default for every layer; a Timeloop map.yaml works as "
                   "it is. A mapping the profile cannot run is refused; tiles too large for a level are costed "
                   "and warned about. Layers it does not map are searched. See docs/mapping.md. "
                   "E.g. --mapping map.yaml")
@click.argument("more_masks", nargs=-1, type=PathOption(path_type=Path), metavar="[RUN_FOLDER]...")
@one_line_os_errors  # a full disk, ulimit -f, a read-only folder: one line naming the file
def main(profiles: tuple[str, ...], masks: tuple[Path, ...], networks: tuple[str, ...],
         topologies: tuple[Path, ...], method: str | None, mode: str, tasks: int, mask_density: float,
         batchnorm: str | None, batch: int, objective: str, steady_state: bool, input_sparsity: float | None,
         with_layers: bool, json_path: Path | None,
         list_profiles: bool, report_dir: Path | None, title: str | None, onnx_files: tuple[Path, ...],
         input_shape: str | None, export_to: tuple[str, Path] | None, sets: tuple[str, ...],
         more_masks: tuple[Path, ...], mapping_file: Path | None = None) -> None:
    """Analytical cost of (masked, multi-task) CNN inference on edge accelerator profiles.

    For every workload (a run folder, a bundled network, or a SCALE-Sim topology) on every profile it
    prints MACs, cycles, latency, energy by memory level and operand (weights, inputs,
    outputs/partial sums, masks, MAC), the bytes each level reads and writes, mask storage per task,
    the task-specific bytes (masks + BatchNorm + head) and the cost of switching to the task.
    Each layer's mapping (loop order, tiles per memory level, spatial unrolling) is searched for the
    --objective, and its access counts are closed forms; profiles cite their sources.

    \b
    Examples:
      ksm-sim --profile edge_npu --masks runs/cubs/
      ksm-sim --network resnet50 --profile eyeriss --method ksm --mode folded
      ksm-sim --topology layers.csv --profile all --layers --json cost.json
      ksm-sim --network resnet18 --profile eyeriss --batch 4 --objective latency
      ksm-sim --onnx model.onnx --input-shape 1x3x224x224 --profile edge_npu
      ksm-sim --topology conv.csv --profile arch.yaml --mapping map.yaml --layers
      ksm-sim --list-profiles
      ksm-sim --masks runs/* --profile all --report reports/default/
    """
    one_line_warnings()
    raise_on_sigterm()
    _refuse_unread(click.get_current_context())
    if input_shape is not None and not onnx_files:
        raise click.UsageError("--input-shape is the shape of an --onnx model: give --onnx too")
    masks = masks + more_masks  # run folders may also follow as arguments: --masks runs/* expands to several
    settings = tables.Settings(tasks=tasks, mask_density=mask_density, batch=batch, objective=objective,
                               steady_state=steady_state, sets=sets, input_sparsity=input_sparsity)
    try:
        if list_profiles:
            click.echo(units.markdown(profiles_frame(), index=False, floatfmt=".4g"))
            return
        if report_dir is not None:
            _report(masks, networks, topologies, profiles, report_dir, title, settings)
            return
        inputs = _input_paths(masks, networks, topologies, onnx_files, profiles) + ([mapping_file] if mapping_file
                                                                                     else [])
        _check_outputs(inputs, json_path, export_to[1] if export_to else None)
        onnx_works = _onnx_workloads(onnx_files, input_shape)
        if not (masks or networks or topologies or onnx_works):
            raise click.UsageError("give at least one of --masks, --network, --topology or --onnx "
                                   "(or --list-profiles)")
        designs = load_designs(profiles, sets)
        chosen = [d.profile for d in designs]
        by_profile = {id(d.profile): d for d in designs}
        if masks:  # runs/* may match results.md or a PackNet/CPG sequence folder: expand and skip as --report does
            folders, skipped = expand_run_paths(masks, packed=True)
            if not folders:
                raise InputError(f"--masks: {', '.join(map(str, skipped))}: not a run folder (run.json + "
                                 "masks.safetensors), a folder of runs, or a ksm-export --pack file")
            for path in skipped:
                click.echo(f"skipping {path}: not a run folder", err=True)
            masks = tuple(folders)
        works = _workloads(masks, networks, topologies, method, batchnorm, onnx_works)
        given = _given_mappings(mapping_file, works, objective)
        modes = list(MODES) if mode == "both" else [mode]
        results = []
        for work in works:
            for prof in chosen:
                for m in (modes if work.method is not None else [None]):
                    results.append(settings.simulate(work, prof, m) if given is None
                                   else _simulate_given(settings, work, prof, m, given))
        if export_to is not None:
            from hwsim.interop.tool_inputs import export_all

            export_to_dirs = export_all(export_to[0], works, chosen, export_to[1], by_profile, inputs, batch=batch,
                                        objective=objective, results=results)
        if json_path is not None:
            from hwsim.explore.point import add_area

            _write_json(json_path, add_area(results_document(results), results, by_profile))
    except (InputError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if mapping_file is not None:
        _mapping_warnings(mapping_file, results)
    for result in results:
        click.echo(summary_text(result, with_layers))
    if len(results) > 1:
        click.echo(f"## All {len(results)} results, per image\n\n{units.markdown(overview_frame(results), index=False)}\n")
    if json_path is not None:
        click.echo(f"wrote {json_path}")
    if export_to is not None:
        click.echo(f"wrote {export_to[0]} inputs into {', '.join(map(str, export_to_dirs))}")
