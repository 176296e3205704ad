"""``ksm-explore SPEC.yaml``: a design-space sweep of hwsim profiles (see :mod:`hwsim.explore.spec`)."""

from __future__ import annotations

import os
import shlex
import sys
import time
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import Any

import click

from hwsim.errors import InputError
from hwsim.command_line import CONTEXT_SETTINGS, OneLineCommand
from hwsim.explore.spec import MAX_POINTS, Spec
from hwsim.fileio.output_guard import (PathOption, build_folder, check_no_alias, is_marked, one_line_os_errors,
                                        raise_on_sigterm)
from hwsim.workload.runcheck import one_line_warnings

TOOL = "ksm-explore"  # the writer named in the output folder's marker


def explore(spec_path: Path, out: Path | None = None, workers: int = 0, scheduler: Any = None,
            progress: bool = True, figures: bool = True, command: str | None = None,
            max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Run a sweep and write its outputs; returns ``{"out", "frame", "stats"}``. Library entry point.

    A sweep past ``max_points`` and a ``scheduler`` address that does not answer are refused in one line
    before anything is written (:mod:`hwsim.work_budget`)."""
    from hwsim.explore import engine
    from hwsim.explore.spec import load_spec

    # every error is raised here, before anything is written
    spec = load_spec(spec_path, max_points=max_points, cores=workers or os.cpu_count() or 1)
    if progress and spec.estimate is not None:
        click.echo(spec.estimate.line(), err=True)
    for note in spec.notes:
        click.echo(f"warning: {note}", err=True)
    client = engine.connect(scheduler) if isinstance(scheduler, str) else None
    try:
        return _explore(spec, spec_path, out, workers, scheduler, client, progress, figures, command)
    finally:
        if client is not None:
            client.close()


def _explore(spec: Spec, spec_path: Path, out: Path | None, workers: int, scheduler: Any, client: Any,
             progress: bool, figures: bool, command: str | None) -> dict[str, Any]:
    """The sweep once its spec is read and its scheduler (``client``, when given as an address) answers.

    The output folder is built whole under a temporary sibling and published at the end
    (:func:`hwsim.fileio.output_guard.build_folder`): a failure or SIGTERM mid-sweep leaves the folder as it
    was (or absent) and no temporary behind. Rows an earlier, finished sweep into the same folder costed
    (its ``points.jsonl``) are reused."""
    from hwsim.explore import engine, outputs

    out = Path(out) if out is not None else spec_path.parent / f"explore-{outputs.slug(spec.name)}"
    points = engine.plan(spec)
    names = ["points.jsonl", "points.csv", "points.parquet", "front.csv", "summary.md", "masks-vs-copies.csv"]
    if figures:
        names += ["front.png", *(f"sensitivity-{outputs.slug(axis.key)}.png" for axis in spec.axes)]
    sources = [Path(item.work.source) for item in spec.workloads] + [Path(p) for p in spec.profiles]
    # per file, not the folder: a spec (and its network) may sit in its own output folder (reports/explore)
    check_no_alias([out / name for name in names], [spec_path, *(p for p in sources if p.exists())])
    cached = engine.read_cache(out / "points.jsonl") if is_marked(out) else {}
    with build_folder(out, TOOL) as tmp:
        cache_path = tmp / "points.jsonl"
        engine.write_cache(cache_path, cached.values())
        todo = [p for p in points if p.point_id not in cached]
        start = time.perf_counter()
        rows = engine.run_points(spec, todo, workers=workers, scheduler=client or scheduler, progress=progress,
                                 on_rows=lambda part: engine.append_cache(cache_path, part))
        seconds = time.perf_counter() - start
        by_id = {**cached, **{r["point_id"]: r for r in rows}}
        frame = outputs.points_frame(spec, points, by_id)
        stats = {"costed": len(todo), "reused": len(points) - len(todo), "seconds": seconds,
                 "rate": len(todo) / seconds if seconds > 0 and todo else 0.0,
                 "engine": _engine_name(workers, scheduler)}
        outputs.write_tables(frame, tmp)
        written: list[Path] = []
        if figures:
            written.append(outputs.figure_front(frame, spec, tmp / "front.png"))
            for axis in spec.axes:
                written.append(outputs.figure_sensitivity(frame, spec, axis.key,
                                                          tmp / f"sensitivity-{outputs.slug(axis.key)}.png"))
        command = command or "ksm-explore " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        outputs.write_summary(frame, spec, tmp, command, written, stats)
    return {"out": out, "frame": frame, "stats": stats, "spec": spec}


def _engine_name(workers: int, scheduler: Any) -> str:
    if scheduler is not None:
        return f"dask.distributed at {scheduler if isinstance(scheduler, str) else 'a local cluster'}"
    n = workers or os.cpu_count() or 1
    return "in process" if n <= 1 else f"process pool of {n}"


@click.command(cls=OneLineCommand, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="ksm", prog_name="ksm-explore")
@click.argument("spec_path", type=PathOption(path_type=Path, dir_okay=False), metavar="SPEC.yaml")
@click.option("-o", "--out", type=PathOption(path_type=Path, file_okay=False),
              help="Output folder (default: explore-<name> beside the spec). Rerunning into it resumes.")
@click.option("-j", "--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes of the local pool; 0 = every core, 1 = no pool.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run on a dask.distributed cluster (tcp://host:8786) instead of the local pool; one that does "
                   "not answer within 10 s is refused.")
@click.option("--max-points", type=click.IntRange(min=1), default=MAX_POINTS, show_default=True,
              help="Refuse a sweep of more points than this (counted before anything is built; the estimate "
                   "of its time and memory is printed).")
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@one_line_os_errors
def main(spec_path: Path, out: Path | None, workers: int, scheduler: str | None, max_points: int,
         no_figures: bool, quiet: bool) -> None:
    """Sweep accelerator and mask parameters; write every point, the Pareto front, figures and a summary.

    SPEC.yaml names base profiles, parameter axes (dotted profile paths as for ksm-sim --set: lists,
    {linear: [a, b], num: N}, {log: [a, b], num: N}, a level inserted or removed), workloads (bundled
    networks, topology CSVs, ONNX files, run folders), methods, modes, tasks, batch, objectives and
    constraints. It writes points.csv and points.parquet (one row per point, area beside energy and
    latency), front.csv, front.png, one sensitivity-<axis>.png per axis and summary.md.

    \b
    Examples:
      ksm-explore reports/explore/spec.yaml -o reports/explore
      ksm-explore sweep.yaml --workers 2
      ksm-explore sweep.yaml --scheduler tcp://10.0.0.5:8786
    """
    one_line_warnings()
    raise_on_sigterm()
    from hwsim.explore import outputs

    if not outputs.parquet_available():  # said before the sweep, not discovered after it
        click.echo(f"note: {outputs.PARQUET_MISSING}", err=True)
    try:
        result = explore(spec_path, out, workers, scheduler, progress=not quiet, figures=not no_figures,
                         max_points=max_points)
    except (InputError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except BrokenExecutor as exc:  # a worker killed from outside (out of memory): nothing was published
        raise click.ClickException(f"a worker process of the pool died ({exc}); try fewer --workers") from None
    s = result["stats"]
    click.echo(f"{len(result['frame']):,} points ({s['costed']:,} costed at {s['rate']:.0f} points/s, "
               f"{s['reused']:,} reused); {int(result['frame']['on_front'].sum()):,} on the fronts; "
               f"wrote {result['out'] / 'summary.md'}")


if __name__ == "__main__":
    main()
