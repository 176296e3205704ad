"""The fair comparison protocol: same grid, same trials, same seeds, selection on validation only.

Why: on this backbone the learning rate and the BatchNorm policy move accuracy more than the
method's name does (the README's default table: frozen-BatchNorm Piggyback at lr 1e-3 collapses to
chance, at 1e-4 it barely moves its mask), and the peers' published code picks the
best epoch on the test split. So every variant here gets

* the same training data: each task's training split is split once (fixed ``val_seed``, recorded)
  into train and validation; ``max_train`` then limits the training part;
* the same learning-rate grid (masks/BatchNorm/weights × head) and so the same number of trials;
* the epoch chosen on validation (the best epoch's task tensors are restored, :func:`ksm.training.loop.train_task`);
* the same seeds; and the test split read once per (task, variant, seed), for the chosen trial only.

During selection the task's test split is hidden (:func:`without_test`): reading it raises. The
trials, the choice and the split are written into each run's ``run.json`` under ``selection``.

PackNet and CPG learn the tasks in order on shared weights, so their choice is greedy: each task's
trials start from the state the earlier tasks' chosen trials left, and the best on validation is
kept before the next task starts. Their epochs are fixed by their prune/retrain schedules.
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hwsim.fileio.atomic import atomic_write
from hwsim.fileio.bounded import read_json
from hwsim.fileio.output_guard import MARKER, OutputRefused, check_no_alias, check_output_folder, write_marker
from hwsim.workload.runcheck import RUN_JSON, read_record
from ksm.data.datasets import DEFAULT_SUITE, TaskData
from ksm.methods.variants import Variant, variants

SELECTION_RULE = ("highest validation top-1; ties go to the earlier trial in grid order and the earlier epoch")
PROTOCOL_JSON = "protocol.json"
COMMAND_JSON = "command.json"


class LockedSplitError(RuntimeError):
    """The test split was asked for while a configuration was still being chosen."""


class _Variants(Mapping[str, Variant]):
    """Every registered method's comparison variants by name (:func:`ksm.methods.variants.variants`), read
    when asked, so that a method registered after this module was imported is compared too."""

    def __getitem__(self, name: str) -> Variant:
        return variants()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(variants())

    def __len__(self) -> int:
        return len(variants())


VARIANTS: Mapping[str, Variant] = _Variants()
# What a protocol runs unless told: the variants of the published comparison (``Variant.standard``).
# Others (LoRA at two ranks, a new method) are asked for by name (``ksm-compare --variant lora-r4 ...``),
# so that adding them did not change the standard protocol's record and so did not invalidate finished
# comparisons (``unit_done``).
DEFAULT_VARIANTS = tuple(name for name, v in VARIANTS.items() if v.standard)


@dataclass(frozen=True)
class Protocol:
    """One comparison: which tasks and variants, the grid, the seeds and the data budget."""

    name: str
    lr_body: tuple[float, ...]
    lr_head: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int
    max_train: int  # training images per task after the validation hold-out; 0 = all
    val_fraction: float
    input_size: int
    max_val: int = 0  # at most this many validation images (class-balanced); 0 = the whole held-out fraction
    tasks: tuple[str, ...] = DEFAULT_SUITE
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    batch_size: int = 32
    arch: str = "mobilenet_v2"
    weights: str = "IMAGENET1K_V1"
    val_seed: int = 0

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
        if not self.lr_body or not self.lr_head or not self.seeds or not self.tasks or not self.variants:
            raise ValueError("a protocol needs at least one learning rate of each kind, seed, task and variant")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), not {self.val_fraction}")

    def grid(self) -> list[tuple[float, float]]:
        """Every (lr_body, lr_head) pair, in the order ties are broken."""
        return list(itertools.product(self.lr_body, self.lr_head))

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


PROTOCOLS: dict[str, Protocol] = {
    # CI-sized: the whole comparison end to end in a few minutes on 2 cores; numbers are not meaningful.
    "smoke": Protocol("smoke", lr_body=(1e-3, 1e-4), lr_head=(1e-3,), seeds=(0, 1, 2), epochs=2, max_train=48,
                      val_fraction=0.2, input_size=32, max_val=100),
    # The README's headline: about an hour on 2 CPU cores (2 workers).
    "standard": Protocol("standard", lr_body=(1e-3, 1e-4), lr_head=(1e-3, 1e-2), seeds=(0, 1, 2), epochs=3,
                         max_train=500, val_fraction=0.2, input_size=32, max_val=500),
    # For a GPU or a long night: every training image, 64 px, a finer grid, 5 seeds.
    "long": Protocol("long", lr_body=(3e-3, 1e-3, 3e-4, 1e-4), lr_head=(1e-2, 1e-3), seeds=(0, 1, 2, 3, 4),
                     epochs=5, max_train=0, val_fraction=0.2, input_size=64),
}


def without_test(data: TaskData) -> TaskData:
    """The same task with its test split locked: asking for it raises :class:`LockedSplitError`."""
    inner = data.batches

    def batches(split: str, batch_size: int, generator: Any, shard: tuple[int, int] = (0, 1)) -> Any:
        if split == "test":
            raise LockedSplitError(f"{data.name}: the test split was read during model selection")
        return inner(split, batch_size, generator, shard)

    return replace(data, batches=batches)


def trial_grid(protocol: Protocol, variant: Variant) -> list[tuple[float | None, float]]:
    """The protocol's grid as this variant can use it: head-only training has no body rate, so its
    trials differing only in ``lr_body`` would be identical runs and are done once (recorded)."""
    if variant.head_only:
        return [(None, lr_head) for lr_head in protocol.lr_head]
    return list(protocol.grid())


def load_protocol_task(protocol: Protocol, task: str) -> TaskData:
    """The task with its validation split held out of the training split (fixed seed)."""
    from ksm.data.datasets import suite_task

    return suite_task(task, (protocol.input_size, protocol.input_size), protocol.max_train or None,
                      val_fraction=protocol.val_fraction, max_val=protocol.max_val, val_seed=protocol.val_seed)


def variant_spec(protocol: Protocol, variant: Variant, seed: int, **rates: float) -> Any:
    """The run spec of one trial (``rates``: ``lr_body``, ``lr_head``; a sequence takes the defaults and
    chooses its rates per task, :func:`sequence_selector`), with the method's own mask hyperparameters (its
    class's ``default_mask``, as ksm-train's defaults)."""
    from ksm.training.pipeline import make_spec

    return make_spec(variant.method, arch=protocol.arch, weights=protocol.weights, batchnorm=variant.batchnorm,
                     soft=variant.soft, options=dict(variant.options), epochs=protocol.epochs,
                     batch_size=protocol.batch_size, seed=seed, **rates)


def _trial_record(lr_body: float | None, lr_head: float, metrics: dict[str, Any], val_top1: float,
                  epoch: int) -> dict[str, Any]:
    history = metrics["history"]
    seconds = sum(h["seconds"] for h in history)
    steps = sum(h.get("steps", 0) for h in history)
    return {"lr_body": lr_body, "lr_head": lr_head, "val_top1": val_top1, "selected_epoch": epoch,
            "val_by_epoch": [h["val_top1"] for h in history if "val_top1" in h],
            "train_seconds": seconds, "steps": steps, "seconds_per_step": seconds / steps if steps else None}


def _selection(protocol: Protocol, variant: Variant, seed: int, data: TaskData, trials: list[dict[str, Any]],
               chosen: int) -> dict[str, Any]:
    best = trials[chosen]
    return {"protocol": protocol.to_json(), "variant": variant.name, "role": variant.role, "seed": seed,
            "split": {"train_size": data.sizes["train"], "val_size": data.sizes["val"],
                      "val_seed": protocol.val_seed, "val_fraction": protocol.val_fraction,
                      "max_val": protocol.max_val,
                      "held_out_of": "the task's training split"},
            "grid": [list(p) for p in protocol.grid()],
            "trials": trials, "rule": SELECTION_RULE,
            "chosen": {"trial": chosen, "lr_body": best["lr_body"], "lr_head": best["lr_head"],
                       "epoch": best["selected_epoch"], "val_top1": best["val_top1"]},
            "test_reads": 1}


def select_task(protocol: Protocol, variant: Variant, data: TaskData, seed: int, *, device: str = "cpu",
                progress: bool = False) -> tuple[Any, Any, Any, str | None, dict[str, Any]]:
    """Train every trial on ``data`` with its test split locked; keep the best on validation.

    Returns (model, method, spec, backbone sha256, metrics with ``selection``) of the chosen trial;
    the test split has not been read.
    """
    from ksm.training.pipeline import build
    from ksm.training.loop import train_task

    hidden = without_test(data)
    trials: list[dict[str, Any]] = []
    best: tuple[float, Any, Any, Any, Any, dict[str, Any]] | None = None
    for lr_body, lr_head in trial_grid(protocol, variant):
        spec = variant_spec(protocol, variant, seed, lr_body=lr_body if lr_body is not None else protocol.lr_body[0],
                            lr_head=lr_head)
        model, method, backbone, digest = build(spec)
        metrics = train_task(model, method, backbone, hidden, spec.train, device=device, progress=progress,
                             select_split="val", final_split=None)
        trials.append(_trial_record(lr_body, lr_head, metrics, metrics["select_top1"], metrics["selected_epoch"]))
        if best is None or metrics["select_top1"] > best[0]:
            best = (metrics["select_top1"], model, method, spec, digest, metrics)
            chosen = len(trials) - 1
    assert best is not None
    val, model, method, spec, digest, metrics = best
    metrics = {**metrics, "val_top1": val, "selection": _selection(protocol, variant, seed, data, trials, chosen)}
    return model, method, spec, digest, metrics


def run_unit(protocol: Protocol, variant: Variant, task: str, seed: int, out: Path, *, device: str = "cpu",
             progress: bool = False) -> dict[str, Any]:
    """One (task, variant, seed): select on validation, test the chosen trial once, write ``out``."""
    from ksm.training.pipeline import train_settings
    from ksm.training.runfolder import run_record, write_run
    from ksm.training.loop import evaluate

    began = time.perf_counter()
    data = load_protocol_task(protocol, task)
    model, method, spec, digest, metrics = select_task(protocol, variant, data, seed, device=device,
                                                       progress=progress)
    metrics["top1"] = evaluate(model, data, "test", device=device)
    model.cpu()
    train = train_settings(spec, method, device=device, processes=1, amp=False)
    if variant.head_only:
        train["lr_body"] = None
    record = run_record(data, method, model, backbone=spec.backbone, digest=digest, metrics=metrics, train=train,
                        wall_seconds=time.perf_counter() - began)
    write_run(out, record, method.state(model), force=True)
    return record


def sequence_selector(protocol: Protocol, variant: Variant, seed: int, *, device: str = "cpu",
                      progress: bool = False) -> Callable[..., Any]:
    """A ``learn`` hook for :func:`ksm.training.pipeline.run_sequence` that chooses each task's rates on validation."""
    from ksm.training.loop import evaluate, train_task

    def learn(model: Any, method: Any, backbone: dict[str, Any], data: TaskData, cfg: Any) -> tuple[Any, Any, dict]:
        hidden = without_test(data)
        trials: list[dict[str, Any]] = []
        best: tuple[float, Any, Any, dict[str, Any]] | None = None
        for lr_body, lr_head in trial_grid(protocol, variant):
            trial_model, trial_method = copy.deepcopy((model, method))
            trial_method.eval_split = "val"

            def train(model_: Any, data_: TaskData, cfg_: Any, _method: Any = trial_method) -> dict[str, Any]:
                return train_task(model_, _method, backbone, data_, cfg_, device=device, progress=progress,
                                  final_split="val")

            trial_cfg = replace(cfg, lr_body=lr_body, lr_head=lr_head)
            trial_model, metrics = trial_method.learn(trial_model, backbone, hidden, trial_cfg, train)
            val = metrics["top1"]
            trials.append(_trial_record(lr_body, lr_head, metrics, val, len(metrics["history"])))
            if best is None or val > best[0]:
                best = (val, trial_model, trial_method, metrics)
                chosen = len(trials) - 1
        assert best is not None
        val, model, method, metrics = best
        method.eval_split = "test"
        metrics = {**metrics, "val_top1": val, "top1": evaluate(model, data, "test", device=device),
                   "selection": _selection(protocol, variant, seed, data, trials, chosen),
                   "train": {"lr_body": trials[chosen]["lr_body"], "lr_head": trials[chosen]["lr_head"]}}
        metrics.pop("top1_before_prune", None)
        metrics.pop("top1_before_compact", None)  # measured on validation here, not on test
        return model, method, metrics

    return learn


def run_sequence_unit(protocol: Protocol, variant: Variant, seed: int, folder: Path, *, device: str = "cpu",
                      progress: bool = False) -> list[dict[str, Any]]:
    """One (sequence variant, seed): all tasks in order, each chosen on validation, into ``folder``."""
    from ksm.training.pipeline import run_sequence

    return run_sequence(variant_spec(protocol, variant, seed), list(protocol.tasks),
                        lambda t: load_protocol_task(protocol, t), folder, force=True, device=device, progress=progress,
                        learn=sequence_selector(protocol, variant, seed, device=device, progress=progress))


# ---------------------------------------------------------------------------------------------
# The whole comparison
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One piece of work: a (task, variant, seed) run folder, or a whole (sequence variant, seed)."""

    variant: str
    seed: int
    task: str | None = None  # None: a sequence over all tasks
    folders: tuple[str, ...] = field(default_factory=tuple)


def unit_folder(out: Path, variant: Variant, seed: int, task: str | None) -> Path:
    """``OUT/seed<k>/<task>-<variant>/``; sequences ``OUT/seed<k>/<variant>/`` with a folder per task."""
    base = Path(out) / f"seed{seed}"
    return base / variant.name if task is None else base / f"{task}-{variant.name}"


def plan_units(protocol: Protocol, out: Path) -> list[Unit]:
    """Every unit of the comparison; sequences first (the longest), then task by task."""
    units = []
    for name in protocol.variants:
        variant = VARIANTS[name]
        if variant.sequence:
            for seed in protocol.seeds:
                folder = unit_folder(out, variant, seed, None)
                units.append(Unit(name, seed, None, tuple(str(folder / t) for t in protocol.tasks)))
    for task in protocol.tasks:
        for seed in protocol.seeds:
            for name in protocol.variants:
                variant = VARIANTS[name]
                if not variant.sequence:
                    units.append(Unit(name, seed, task, (str(unit_folder(out, variant, seed, task)),)))
    return units


def unit_done(unit: Unit, protocol: Protocol) -> bool:
    """Whether every run folder of ``unit`` is finished under this same protocol; its ``run.json`` is read
    through the schema (:func:`hwsim.workload.runcheck.read_record`): a damaged one is one line naming it."""
    for folder in unit.folders:
        if not (Path(folder) / RUN_JSON).exists():
            return False
        selection = read_record(Path(folder), ValueError)[1].metrics.selection or {}
        if selection.get("protocol") != protocol.to_json():
            return False
    return True


def execute_unit(protocol: Protocol, unit: Unit, out: str, device: str = "cpu", threads: int | None = None,
                 progress: bool = False) -> Unit:
    """Run one unit (in this process or a worker)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    variant = VARIANTS[unit.variant]
    if unit.task is None:
        run_sequence_unit(protocol, variant, unit.seed, unit_folder(Path(out), variant, unit.seed, None),
                          device=device, progress=progress)
    else:
        run_unit(protocol, variant, unit.task, unit.seed, Path(unit.folders[0]), device=device, progress=progress)
    return unit


def check_comparison_folder(protocol: Protocol, out: Path, *, force: bool, resume: bool) -> None:
    """Refuse to mix protocols in one folder or to overwrite a finished comparison unless asked."""
    path = Path(out) / PROTOCOL_JSON
    if not path.exists():
        check_output_folder(out)
        if Path(out).is_dir() and any(p.name != MARKER for p in Path(out).iterdir()):
            raise OutputRefused(f"{out}: folder is not empty and is not a comparison (no {PROTOCOL_JSON}); its "
                                "files are never replaced, --force or not (choose another --out)")
        return
    if force:  # the folder is deleted: it must not hold the working folder (``--out .``)
        check_no_alias([out], [Path.cwd()])
    saved = read_json(path, ValueError)  # bounded; errors name the file
    if force:
        return
    if saved != protocol.to_json():
        name = saved.get("name") if isinstance(saved, dict) else None
        raise ValueError(f"{path}: a comparison with another protocol ({name!r}) is there; "
                         f"use another --out or --force")
    if not resume:
        raise ValueError(f"{out}: a comparison is already there; continue it with --resume or start over with --force")


def run_comparison(protocol: Protocol, out: Path, *, workers: int = 1, threads: int | None = None,
                   device: str = "cpu", force: bool = False, resume: bool = False,
                   progress: bool = True, command: str | None = None) -> list[Unit]:
    """Run every unit not yet finished, ``workers`` at a time; return the units run now.

    ``command`` (the command line that started it) is kept in ``OUT/command.json`` for the report.
    """
    out = Path(out)
    check_comparison_folder(protocol, out, force=force, resume=resume)
    if force and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, "ksm-compare", [PROTOCOL_JSON])
    atomic_write(out / PROTOCOL_JSON, json.dumps(protocol.to_json(), indent=2) + "\n")
    if command and not (out / COMMAND_JSON).exists():
        atomic_write(out / COMMAND_JSON, json.dumps({"command": command, "workers": workers, "threads": threads,
                                                          "device": device}, indent=2) + "\n")
    todo = [u for u in plan_units(protocol, out) if not unit_done(u, protocol)]
    bar = tqdm(total=len(todo), desc=f"comparison {protocol.name}", disable=None if progress else True)
    if workers <= 1:
        for unit in todo:
            bar.set_postfix_str(f"{unit.variant} seed {unit.seed} {unit.task or 'sequence'}")
            execute_unit(protocol, unit, str(out), device, threads)
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(execute_unit, protocol, u, str(out), device, threads) for u in todo]
            for future in as_completed(futures):
                unit = future.result()
                bar.set_postfix_str(f"{unit.variant} seed {unit.seed} {unit.task or 'sequence'}")
                bar.update()
    bar.close()
    return todo
