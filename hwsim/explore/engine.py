"""Cost every point of a sweep: serially, over a process pool, or on a dask.distributed cluster.

Points are grouped into chunks by design, so a worker reuses per-layer costs across the workloads,
methods and modes of one design (see :func:`hwsim.explore.point.cost_point`). Finished chunks are
appended to ``points.jsonl`` in the folder being built as they arrive; the folder is published whole at the
end (:mod:`hwsim.explore.ksm_explore`), so a sweep run again into it, say with more axis values, recomputes
only the points it has not costed (the resume key digests the design's full profile mapping, the workload,
the options and the cost model's version, :data:`hwsim.cost.simulate.MODEL_VERSION`, so a point costed by an
older model is costed again). A sweep that fails or is stopped leaves nothing: its pool's pending chunks are cancelled.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim import catalogue
from hwsim.cost.mapping.best_mapping import search_key
from hwsim.cost.simulate import MODEL_VERSION
from hwsim.errors import InputError
from hwsim.explore.point import Options, cost_point
from hwsim.explore.spec import Spec, WorkloadItem, design_hash, point_modes
from hwsim.hardware.profile import Design

CHUNK_POINTS = 64
SCHEDULER_TIMEOUT_S = 10.0  # a dask scheduler that has not answered by then is reported, not waited for


@dataclass(frozen=True)
class Point:
    """One point to cost: a design, a workload (by index), options, and its labels for the table."""

    point_id: str
    design: int
    workload: int
    options: Options


def _workload_digest(item: WorkloadItem) -> str:
    return hashlib.sha1(repr(item.work).encode()).hexdigest()[:16]


def plan(spec: Spec) -> list[Point]:
    """Every point of the sweep in a stable order (design, workload, mode)."""
    digests = [_workload_digest(item) for item in spec.workloads]
    points = []
    for d, (_labels, design) in enumerate(spec.designs):
        dh = design_hash(design)
        for w, item in enumerate(spec.workloads):
            for mode in point_modes(spec.modes, item.work.method):
                options = Options(mode=mode, tasks=spec.tasks, mask_density=spec.mask_density,
                                  batch=spec.batch, steady_state=spec.steady_state)
                key = json.dumps([MODEL_VERSION, dh, item.key, digests[w], options.as_dict()], sort_keys=True)
                points.append(Point(hashlib.sha1(key.encode()).hexdigest()[:20], d, w, options))
    return points


# --------------------------------------------------------------------------------------------
# Workers

_WORKLOADS: list[WorkloadItem] = []


def _init_worker(workloads: list[WorkloadItem]) -> None:
    global _WORKLOADS
    _WORKLOADS = workloads
    # the command's SIGTERM handler (raise SystemExit) is inherited by a forked worker, whose loop would catch
    # it and take the next chunk: a worker is ended by SIGTERM, as the parent's clean-up expects (_stop)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _row(point_id: str, design: Design, item: WorkloadItem, options: Options) -> dict[str, Any]:
    row = {"point_id": point_id, **cost_point(design, item.work, options)}
    bits = design.profile.precision_bits.mask_scale
    traits = catalogue.find(item.work.method)
    if item.soft_precision and traits is not None and traits.soft_part:  # measured top-1 with the scale at these bits
        row["accuracy"] = item.soft_precision.get(bits)
    else:
        row["accuracy"] = row["top1"]
    return row


def cost_chunk(chunk: list[tuple[str, Design, int, Options]],
               workloads: list[WorkloadItem] | None = None) -> list[dict[str, Any]]:
    """Cost a list of (point id, design, workload index, options); the unit of work sent to a worker."""
    works = workloads if workloads is not None else _WORKLOADS
    return [_row(pid, design, works[w], options) for pid, design, w, options in chunk]


def _chunks(spec: Spec, todo: list[Point], size: int,
            group: list[int] | None = None) -> Iterator[list[tuple[str, Design, int, Options]]]:
    """``todo`` in chunks of about ``size`` points, the points of designs that share a mapping search kept
    in one chunk (:func:`_search_groups`): a chunk ends at the first group boundary after ``size`` points
    (at ``4 * size`` whatever the groups)."""
    chunk: list[tuple[str, Design, int, Options]] = []
    group = _search_groups(spec) if group is None else group
    for i, p in enumerate(todo):  # plan order keeps one design's points together
        chunk.append((p.point_id, _slim(spec.designs[p.design][1]), p.workload, p.options))
        last = i + 1 == len(todo)
        if not last and (len(chunk) >= 4 * size
                         or (len(chunk) >= size and group[todo[i + 1].design] != group[p.design])):
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _search_groups(spec: Spec) -> list[int]:
    """Per design, a group number: designs whose profiles the mapping search reads alike
    (:func:`hwsim.cost.mapping.best_mapping.search_key`: they differ only in, say, a mask-scale precision)
    share a group, and a worker costing them together searches each layer shape once."""
    seen: dict[Any, int] = {}
    out = []
    for d, (_labels, design) in enumerate(spec.designs):
        try:
            key = search_key(design.profile)
        except Exception:  # noqa: BLE001 - a profile the search refuses: its points fail in the worker, as before
            key = ("design", d)
        out.append(seen.setdefault(key, len(seen)))
    return out


def _grouped(todo: list[Point], group: list[int]) -> list[Point]:
    """``todo`` with the points of each search group together (``group``: :func:`_search_groups`), in the
    order each group first appears (stable: a sweep whose inner axes are the ones the search ignores is
    unchanged)."""
    return sorted(todo, key=lambda p: group[p.design])


def _slim(design: Design) -> Design:
    """The design without its raw mapping (workers need the profile and the area keys only)."""
    return Design(profile=design.profile, raw={}, extras=design.extras, where=design.where)


# --------------------------------------------------------------------------------------------
# Running


def run_points(spec: Spec, todo: list[Point], workers: int = 0, scheduler: str | None = None,
               on_rows: Callable[[list[dict[str, Any]]], None] | None = None, progress: bool = True,
               chunk_size: int = CHUNK_POINTS) -> list[dict[str, Any]]:
    """Cost ``todo`` and return the rows (any order). ``on_rows`` sees every finished chunk.

    Args:
        workers: processes of the local pool; 0 = every core (``os.cpu_count()``), 1 = in this process.
        scheduler: a dask.distributed scheduler address (``tcp://host:8786``), or a
            ``distributed.Client`` / ``LocalCluster``; overrides ``workers``.
    """
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(todo), unit="pt", disable=not progress, desc="ksm-explore", mininterval=0.5)

    def done(part: list[dict[str, Any]]) -> None:
        rows.extend(part)
        if on_rows is not None:
            on_rows(part)
        bar.update(len(part))

    group = _search_groups(spec)
    chunks = list(_chunks(spec, _grouped(todo, group), chunk_size, group))
    try:
        if scheduler is not None:
            _run_dask(spec, chunks, scheduler, done)
        else:
            n = workers or os.cpu_count() or 1
            n = min(n, max(1, len(chunks)))
            if n <= 1:
                for chunk in chunks:
                    done(cost_chunk(chunk, spec.workloads))
            else:
                _run_pool(spec, chunks, n, done)
    finally:
        bar.close()
    return rows


def _run_pool(spec: Spec, chunks: list[Any], n: int, done: Callable[[list[dict[str, Any]]], None]) -> None:
    """The chunks on a pool of ``n`` processes; on any failure (SIGTERM's ``SystemExit`` included) the chunks
    not started are cancelled and the workers joined, so none outlives the command."""
    pool = ProcessPoolExecutor(max_workers=n, initializer=_init_worker, initargs=(spec.workloads,))
    try:
        futures = [pool.submit(cost_chunk, chunk) for chunk in chunks]
        for future in as_completed(futures):
            done(future.result())
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the chunks not started and end the workers now (they write nothing), then join them: a stopped
    sweep does not wait for the chunks already queued."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)  # the pool sees its workers gone and joins its thread


def connect(address: str, timeout: float | None = None) -> Any:
    """A ``distributed.Client`` on the scheduler at ``address``; one that does not answer within ``timeout``
    seconds (default :data:`SCHEDULER_TIMEOUT_S`; nothing listening, a wrong host) is a one-line
    :class:`InputError`, raised before any output."""
    from distributed import Client

    timeout = SCHEDULER_TIMEOUT_S if timeout is None else timeout
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]  # dask's messages run long
        raise InputError(f"--scheduler {address}: no dask scheduler answered within {timeout:g} s ({reason})") from None
    except Exception as exc:  # noqa: BLE001 - something else answered (an HTTP server): dask fails in any way
        raise InputError(f"--scheduler {address}: what answered is not a dask scheduler "
                         f"({type(exc).__name__})") from None


def _run_dask(spec: Spec, chunks: list[Any], scheduler: Any, done: Callable[[list[dict[str, Any]]], None]) -> None:
    from distributed import Client
    from distributed import as_completed as dask_completed

    own = isinstance(scheduler, str)
    client = connect(scheduler) if own else (scheduler if isinstance(scheduler, Client) else Client(scheduler))
    try:
        [workloads] = client.scatter([spec.workloads], broadcast=True)
        futures = [client.submit(cost_chunk, chunk, workloads, pure=False) for chunk in chunks]
        try:
            for future in dask_completed(futures):
                done(future.result())
        except BaseException:
            client.cancel(futures)  # a cluster the caller keeps runs nothing more of this sweep
            raise
    finally:
        if own or not isinstance(scheduler, Client):
            client.close()


# --------------------------------------------------------------------------------------------
# Resume cache


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Rows already costed (``points.jsonl``), by point id; a torn last line is ignored."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "point_id" in row:
                out[row["point_id"]] = row
    return out


def write_cache(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Start ``points.jsonl`` in the folder being built with the rows an earlier sweep costed."""
    path.write_text("", encoding="utf-8")
    append_cache(path, list(rows))


def append_cache(path: Path, rows: list[dict[str, Any]]) -> None:
    """Add finished rows to ``points.jsonl``, one JSON line each."""
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=_jsonable) + "\n")
        handle.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
