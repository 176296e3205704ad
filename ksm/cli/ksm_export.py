"""``ksm-export``: a run's task as a deployable ONNX model, float and int8, with its real accuracy."""

from __future__ import annotations

from pathlib import Path

import click

from hwsim.fileio.atomic import UnsafeTarget, atomic_write, check_target
from hwsim.fileio.output_guard import (NameOrPath, OutputRefused, PathOption, check_no_alias, one_line_os_errors,
                                        raise_on_sigterm)
from hwsim.workload.runcheck import one_line_warnings
from ksm.cli.ksm_train import CONTEXT_SETTINGS, needs_torch
from ksm.checks import finite, os_error_line


def export_name(folder: Path) -> str:
    """``<task>`` for a plain run, ``<sequence>-<task>`` for a PackNet/CPG task (their tasks share names)."""
    folder = folder.resolve()
    return f"{folder.parent.name}-{folder.name}" if (folder.parent / "shared.safetensors").exists() else folder.name


def check_outputs(outputs: list[Path], runs: list[Path] | tuple[Path, ...], weights: str | None, profile: str,
                  data_root: Path | None = None) -> None:
    """The output guard, before any work: no output is, or lies inside, anything the command reads: a run
    folder, its sequence's shared tensors, the backbone weights each run loads (``--weights`` or the ones its
    run.json records), a ``--profile`` file or ``--data-root``; one line otherwise."""
    from ksm.deploy.run_export import run_inputs

    inputs = [p for run in runs for p in run_inputs(run, weights)]
    inputs += [Path(profile)] if Path(profile).is_file() else []  # else a bundled profile's name
    inputs += [data_root] if data_root is not None else []
    try:
        check_no_alias(outputs, inputs)
    except OutputRefused as exc:
        raise click.ClickException(str(exc)) from None


@click.command(cls=needs_torch("ksm-export"), context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="ksm", prog_name="ksm-export")
@click.argument("runs", nargs=-1, required=True, type=PathOption(path_type=Path))
@click.option("--onnx", "onnx_path", type=PathOption(dir_okay=False, path_type=Path), default=None,
              help="Float ONNX file to write (one run only). The int8 files go beside it as "
                   "NAME.int8.onnx and NAME.int8-onthefly.onnx. Default: OUT_DIR/<run folder name>.onnx.")
@click.option("--out-dir", type=PathOption(file_okay=False, path_type=Path), default=Path("exports"),
              show_default=True, help="Where the ONNX files go when --onnx is not given.")
@click.option("--int8", is_flag=True,
              help="Also quantise to int8 (onnxruntime static QDQ, per-channel weights), measure the test "
                   "accuracy of the folded and the on-the-fly form, and record it in run.json (metrics.int8).")
@click.option("--calibration", "calibration_images", type=click.IntRange(1), default=256, show_default=True,
              help="Training images used to calibrate the activation ranges.")
@click.option("--calibration-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="How activation ranges are set from the calibration images.")
@click.option("--profile", type=NameOrPath(), default="edge_npu", show_default=True,
              help="hwsim profile (name or .yaml) whose mask_scale precision the on-the-fly form uses.")
@click.option("--mask-scale-bits", type=click.IntRange(0, 16), default=None,
              help="Override the profile's mask_scale precision (bits of KSM's soft scale).")
@click.option("--record/--no-record", default=True, show_default=True,
              help="With --int8: write metrics.int8 into each run.json (atomically; other keys untouched).")
@click.option("--skip-existing", is_flag=True,
              help="With --int8: reuse runs whose run.json already holds metrics.int8 (for --table).")
@click.option("--table", is_flag=True, help="Print the float vs int8 accuracy table of the given runs.")
@click.option("--table-file", type=PathOption(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as Markdown to this file.")
@click.option("--data-root", type=PathOption(path_type=Path), default=None,
              help="Folder of the benchmark tasks (as for ksm-train), for runs not on the built-in suite.")
@click.option("--weights", type=NameOrPath(), default=None,
              help="Backbone weights (.pth) to use instead of the recorded ones; the sha256 must still match.")
@click.option("--tolerance", type=finite(0, min_open=True), default=1e-3, show_default=True,
              help="Largest |onnxruntime − PyTorch| on the float logits, relative to their largest magnitude.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration draw.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch and onnxruntime.")
@click.option("--pack", "pack_path", type=PathOption(dir_okay=False, path_type=Path), default=None,
              help="Write the deployable task file (one safetensors file: bit-packed mask, soft scale at "
                   "--scale-bits only where the bit is 0, folded BatchNorm, head) instead of ONNX; its size "
                   "is what ksm-sim prices for --profile. One run only.")
@click.option("--scale-bits", type=int, default=None,
              help="With --pack: bits of KSM's soft scale, 0-16 (default: the profile's mask_scale).")
@one_line_os_errors  # a full disk, ulimit -f, a read-only folder: one line naming the file
def main(runs: tuple[Path, ...], onnx_path: Path | None, out_dir: Path, int8: bool, calibration_images: int,
         calibration_method: str,
         profile: str, mask_scale_bits: int | None, record: bool, skip_existing: bool, table: bool,
         table_file: Path | None, data_root: Path | None, weights: str | None, tolerance: float, seed: int,
         threads: int | None, pack_path: Path | None = None, scale_bits: int | None = None) -> None:
    """Fold a run's task (mask, task BatchNorm, head) into plain weights, export it to ONNX, check
    onnxruntime against PyTorch, and with --int8 quantise it and measure the accuracy int8 delivers.

    \b
    Examples:
      ksm-export runs/cubs --onnx cubs.onnx                # float ONNX, checked against PyTorch
      ksm-export runs/cubs --onnx cubs.onnx --int8         # + cubs.int8.onnx, accuracy into run.json
      ksm-export runs/* --int8 --table                     # float vs int8 table of every finished run
      ksm-export runs/* --int8 --table --skip-existing     # reuse what run.json already records
      ksm-export runs/cubs --pack cubs.ksmtask --scale-bits 4   # deployable task file, 4-bit scale
    """
    one_line_warnings()
    raise_on_sigterm()
    import torch

    if pack_path is not None:
        _pack(runs, pack_path, scale_bits, profile, weights)
        return
    if scale_bits is not None:
        raise click.UsageError("--scale-bits goes with --pack (for ONNX use --mask-scale-bits)")

    from hwsim.errors import InputError
    from hwsim.hardware.profile import load_profile
    from ksm.deploy.int8_results import int8_table, record_int8
    from ksm.deploy.onnx_export import ExportError
    from ksm.deploy.run_export import export_run
    from ksm.training.runfolder import MASKS, RUN_JSON, RunError, read_run

    # One path is taken as given (and refused with a reason if it is no run); of several (a shell
    # glob such as runs/*), files and folders holding neither run file are passed over with a note.
    folders = [p for p in runs if len(runs) == 1 or (p / RUN_JSON).exists() or (p / MASKS).exists()]
    for p in runs:
        if p not in folders:
            click.echo(f"{p}: not a run folder, skipped", err=True)
    if not folders:
        raise click.UsageError("none of the paths given is a run folder")
    if onnx_path is not None and len(folders) != 1:
        raise click.UsageError("--onnx takes exactly one run; use --out-dir for several")
    targets = {f: onnx_path or out_dir / f"{export_name(f)}.onnx" for f in folders}
    onnx_files = [f for t in targets.values() for f in (t, t.with_name(t.stem + ".int8.onnx"),
                                                         t.with_name(t.stem + ".int8-onthefly.onnx"))]
    check_outputs([*onnx_files, *([table_file] if table_file else [])], folders, weights, profile, data_root)
    if threads:
        torch.set_num_threads(threads)
    try:
        prof = load_profile(profile)
    except (InputError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    bits = prof.precision_bits.mask_scale if mask_scale_bits is None else mask_scale_bits
    try:  # outputs that would be refused after the work are refused before it
        for path in ([table_file] if table_file else []) + (
                [f / RUN_JSON for f in folders] if int8 and record else []):
            check_target(path)
    except UnsafeTarget as exc:
        raise click.ClickException(str(exc)) from None
    if int8 and (prof.precision_bits.weights != 8 or prof.precision_bits.inputs != 8):
        click.echo(f"note: profile {prof.name} states {prof.precision_bits.weights}-bit weights and "
                   f"{prof.precision_bits.inputs}-bit activations; --int8 measures 8-bit", err=True)

    records, failed = [], []
    for folder in folders:
        try:
            if int8 and skip_existing and (folder / RUN_JSON).exists():
                existing = read_run(folder)[0]
                if existing.get("metrics", {}).get("int8"):
                    click.echo(f"{folder}: int8 metrics already recorded, reused")
                    records.append(existing)
                    continue
            result = export_run(folder, targets[folder], int8=int8, calibration_images=calibration_images,
                                calibration_method=calibration_method,
                                mask_scale_bits=bits, profile=prof.name, weights=weights, data_root=data_root,
                                tolerance=tolerance, seed=seed, threads=threads)
        except (RunError, ExportError, OSError, ValueError) as exc:
            line = os_error_line(exc) if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) else str(exc)
            if len(folders) == 1:
                raise click.ClickException(line) from None
            click.echo(f"Error: {line}", err=True)  # the other runs go on; the exit status says it failed
            failed.append(folder)
            continue
        click.echo(f"{folder}: {result.onnx} (onnxruntime matches PyTorch to {result.onnx_rel_diff:.1e})")
        rec = result.record
        if int8:
            m = result.metrics
            line = (f"{folder}: {rec['task']} {rec['method']} top-1 float {100 * m['float_top1']:.2f}% "
                    f"(onnx {100 * m['float_onnx_top1']:.2f}%), int8 folded {100 * m['folded_top1']:.2f}%")
            if m["on_the_fly_top1"] is not None:
                line += f", int8 on-the-fly (mask scale {bits} bits) {100 * m['on_the_fly_top1']:.2f}%"
            click.echo(line + f"; {result.int8_onnx}")
            if record:
                try:
                    record_int8(folder, m, expected_sha256=result.run_json_sha256)
                except (RunError, OSError) as exc:
                    line = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
                    click.echo(f"Error: {line}; run.json not changed", err=True)
                    failed.append(folder)
            rec = {**rec, "metrics": {**rec["metrics"], "int8": m}}
        records.append(rec)

    if (table or table_file) and records:
        frame = int8_table(records)
        text = frame.to_markdown(floatfmt=".2f")
        note = (f"Test top-1 (%). float: PyTorch float32. int8: onnxruntime {_lib(records)} static QDQ "
                f"quantisation, int8 per-channel weights, uint8 activations, {calibration_images} training "
                f"images for calibration; folded = one int8 copy per task; on-the-fly = shared int8 backbone "
                f"x mask, mask scale at {bits} bits. Command: ksm-export RUNS... --int8 --table")
        if table:
            click.echo("\n" + text + "\n\n" + note)
        if table_file:
            try:
                table_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(table_file, text + "\n\n" + note + "\n")
            except (OSError, ValueError) as exc:
                raise click.ClickException(os_error_line(exc) if isinstance(exc, OSError) else str(exc)) from None
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(folders)} runs failed: {', '.join(map(str, failed))}")


def _pack(runs: tuple[Path, ...], out: Path, scale_bits: int | None, profile: str, weights: str | None) -> None:
    """``--pack``: one run to one deployable task file; every failure is one line, nothing half-written."""
    from hwsim.errors import InputError
    from ksm.deploy.task_file import MAX_SCALE_BITS, DeployError, file_sizes, pack_task
    from ksm.training.runfolder import RunError

    if len(runs) != 1:
        raise click.UsageError("--pack takes exactly one run")
    if scale_bits is not None and not 0 <= scale_bits <= MAX_SCALE_BITS:
        raise click.ClickException(f"--scale-bits {scale_bits}: must be in 0..{MAX_SCALE_BITS}")
    check_outputs([out], runs, weights, profile)
    try:
        meta = pack_task(runs[0], out, scale_bits=scale_bits, profile=profile, weights=weights)
    except (RunError, DeployError, InputError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    sizes = file_sizes(out)
    click.echo(f"{runs[0]}: {out} ({meta['method']}, scale {meta['scale_bits']} bits, profile {meta['profile']}): "
               f"{sizes['tensors']} bytes of tensors + {sizes['header']} bytes of header")


def _lib(records: list[dict]) -> str:
    versions = {r["metrics"].get("int8", {}).get("library", "") for r in records} - {""}
    return ", ".join(sorted(v.split(" ", 1)[-1] for v in versions)) or "(version not recorded)"
