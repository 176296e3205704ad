"""The runs one ``ksm-train`` command asks for: plan them, lock their folders, train them, report the results.

Everything that can refuse the batch (an unwritable run folder, a sequence folder that cannot take the
tasks, a results file that could not be written, a folder another ``ksm-train`` holds) refuses it before the
first epoch, so a suite does not fail after hours of training; and a refused or failed batch leaves no empty
runs dir behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hwsim.fileio.output_guard import os_error_line

if TYPE_CHECKING:
    from ksm.data.datasets import TaskData
    from ksm.training.distributed import Context
    from ksm.training.train_options import Options


def train_batch(o: Options, names: list[str], methods: tuple[str, ...], sequences: list[str], device: str,
                ctx: Context) -> None:
    """Train every independent run of ``methods`` and every sequence of ``sequences`` on the tasks ``names``
    (reusing finished ones where asked), then print (rank 0) the results table."""
    from ksm.training.distributed import shutdown

    outputs = [o.run_folder(t, m) for t in names for m in methods] + [o.sequence_folder(m) for m in sequences]
    with remove_fresh_parents_on_error(outputs):  # a refused or failed run leaves no empty runs dir behind
        plan = plan_runs(o, names, methods)
        sequence_plan = plan_sequences(o, names, sequences)
        check_results_targets(o)
        locks = lock_outputs([f for *_, f, done in plan if not done] + [f for _, f in sequence_plan] if ctx.main else [])
        try:
            records = [r for method, folder in sequence_plan for r in train_sequence(o, method, folder, names, device)]
            records += train_runs(o, plan, device, ctx)
        except (FileNotFoundError, ValueError) as exc:
            shutdown()
            raise click.ClickException(f"[rank {ctx.rank}] {exc}" if ctx.active else str(exc)) from None
        finally:
            locks.close()
    shutdown()
    if ctx.main:
        report(o, records)


def plan_runs(o: Options, names: list[str], methods: tuple[str, ...]) -> list[tuple[str, str, Path, bool]]:
    """(task, method, folder, already finished) of every independent run; refuses unwritable folders up front."""
    from ksm.training.distributed import shutdown
    from ksm.training.runfolder import RUN_JSON, RunError, check_output

    plan = []
    for task in names:
        for method in methods:
            folder = o.run_folder(task, method)
            if o.skip_existing and (folder / RUN_JSON).exists():
                plan.append((task, method, folder, True))
                continue
            try:
                check_output(folder, force=o.force, resume=o.resume)
            except RunError as exc:
                shutdown()
                raise click.ClickException(str(exc)) from None
            plan.append((task, method, folder, False))
    return plan


@contextmanager
def remove_fresh_parents_on_error(outputs: list[Path]) -> Iterator[None]:
    """If the block fails, remove the output folders' parents that did not exist before it and are still empty."""
    fresh = sorted({p for out in outputs for p in [out.parent, *out.parent.parents] if not p.exists()},
                   key=lambda p: len(p.parts), reverse=True)
    try:
        yield
    except BaseException:
        for folder in fresh:
            try:
                folder.rmdir()  # only an empty folder
            except OSError:
                pass
        raise


def check_results_targets(o: Options) -> None:
    """Refuse up front a results file that could not be written after training (a folder, a symlink)."""
    from hwsim.fileio.atomic import check_target

    if o.out is None:
        try:
            for name in ("results.md", "results.csv"):
                check_target(o.runs_dir / name)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None


def lock_outputs(folders: list[Path]) -> ExitStack:
    """Lock every output folder (:func:`ksm.folder_lock.folder_lock`); a second ``ksm-train`` on one of them stops here."""
    from ksm.training.distributed import shutdown
    from ksm.folder_lock import folder_lock

    locks = ExitStack()
    try:
        for folder in folders:
            locks.enter_context(folder_lock(folder))
    except (ValueError, OSError) as exc:
        locks.close()
        shutdown()
        raise click.ClickException(os_error_line(exc) if isinstance(exc, OSError) else str(exc)) from None
    return locks


def plan_sequences(o: Options, names: list[str], sequences: list[str]) -> list[tuple[str, Path]]:
    """(method, folder) of every sequence; refuses folders that cannot take it up front."""
    from ksm.training.runfolder import RunError, check_sequence

    plan = []
    for method in sequences:
        folder = o.sequence_folder(method)
        try:
            check_sequence(folder, names, force=o.force, resume=o.resume or o.skip_existing)
        except (RunError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        plan.append((method, folder))
    return plan


def train_sequence(o: Options, method: str, folder: Path, names: list[str], device: str) -> list[dict[str, Any]]:
    """Learn the tasks in order with ``method`` (PackNet, CPG) into its sequence folder."""
    from ksm.training.pipeline import run_sequence

    records = run_sequence(o.spec(method), names, o.load, folder, force=o.force, resume=o.resume or o.skip_existing,
                           device=device, progress=o.progress, config=o.config)
    for r in records:
        click.echo(f"{folder / r['task']}: {r['task']} {method} top-1 {100 * r['metrics']['top1']:.2f}%, "
                   f"{r['train']['epochs_total']} epochs, {r['train']['wall_seconds']:.0f} s")
    return records


def train_runs(o: Options, plan: list[tuple[str, str, Path, bool]], device: str, ctx: Context) -> list[dict[str, Any]]:
    """Train (or reuse) every independent run of ``plan``; return the records rank 0 holds."""
    from ksm.training.pipeline import run_task
    from ksm.training.runfolder import read_run

    say = click.echo if ctx.main else (lambda *a, **k: None)
    records = []
    data_cache: dict[str, TaskData] = {}
    for task, method, folder, done in plan:
        if done:
            say(f"{folder}: finished run reused")
            records.append(read_run(folder)[0])
            continue
        if task not in data_cache:
            data_cache = {task: o.load(task)}
        record = run_task(o.spec(method), data_cache[task], folder, force=o.force, resume=o.resume, device=device,
                          progress=o.progress, ctx=ctx, amp=o.amp, log=o.log, config=o.config)
        if record is None:  # not rank 0
            continue
        records.append(record)
        density = record["metrics"]["mask_density"]
        click.echo(f"{folder}: {task} {method} top-1 {100 * record['metrics']['top1']:.2f}%"
                   + (f", mask density {density:.3f}" if density is not None else "")
                   + f", {record['train']['wall_seconds']:.0f} s")
    return records


def report(o: Options, records: list[dict[str, Any]]) -> None:
    """Print the results table; without ``--out``, also write it next to the runs."""
    from ksm.compare.results import results_table, write_results

    table = results_table(records)
    click.echo("\n" + table.to_markdown(floatfmt=".2f"))
    if o.out is None:
        write_results(table, o.runs_dir)
        click.echo(f"\nresults: {o.runs_dir / 'results.md'}")
