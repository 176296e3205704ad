"""From a run spec and data to run folders, and back: one task, or a sequence of tasks on shared weights.

``run_task`` is what ``ksm-train`` calls once per (task, method) of the independent methods;
``run_sequence`` once per PackNet/CPG sequence. ``load_run_model`` rebuilds a task's network from
its run folder on a fresh backbone. The folders themselves are read and written by
:mod:`ksm.training.runfolder`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hwsim.catalogue import SOFT_PRECISIONS  # the report sweeps the same precisions
from ksm.network.backbones import BackboneSpec, build_backbone
from ksm.network.geometry import layer_records
from ksm.data.datasets import TaskData
from ksm.training.distributed import SINGLE, Context, barrier, convert_batchnorm
from ksm.methods.soft_masks import KernelSoftMask
from ksm.methods.base import MaskConfig, Method, maskable_layers
from ksm.methods.registry import make_method, method_class
from ksm.training.runfolder import (
    RUN_JSON,
    SHARED,
    RunError,
    check_backbone,
    check_output,
    close_sequence,
    drop_empty_partial,
    open_sequence,
    partial_dir,
    read_run,
    read_sequence_task,
    restore_sequence,
    run_record,
    write_pending_shared,
    write_run,
    write_sequence_task,
)
from ksm.methods.sequence import SequenceMethod, index_bits, raw_weight, task_weight, view_sha256
from ksm.training.loop import TrainConfig, evaluate, train_task
from ksm.training.train_log import LOGS, ScalarLog

@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run (or, for PackNet/CPG, one sequence) besides the data."""

    method: str = "ksm"
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    mask: MaskConfig | None = None  # None: the method's own (its class's default_mask), filled in on construction
    batchnorm: str | None = None  # None: the method's default
    soft: bool = True  # KSM only: False is the "binary kernel-wise mask" ablation
    options: dict[str, Any] = field(default_factory=dict)  # the method's own options (prune_ratio; LoRA's rank)

    def __post_init__(self) -> None:
        if self.mask is None:  # the spec, and so a checkpoint's and a sequence's settings, says the values used
            object.__setattr__(self, "mask", method_class(self.method).default_mask)

    def settings(self) -> dict[str, Any]:
        """What a resumed sequence must share with its finished part (``run.json`` ``sequence.settings``)."""
        return {"method": self.method, "backbone": asdict(self.backbone), "train": self.train.to_json(),
                "mask": asdict(self.mask), "batchnorm": self.batchnorm, "options": dict(sorted(self.options.items()))}


def make_spec(method: str, *, arch: str = "mobilenet_v2", weights: str = "IMAGENET1K_V1",
              mask: MaskConfig | None = None, batchnorm: str | None = None, soft: bool = True,
              options: dict[str, Any] | None = None, **train: Any) -> RunSpec:
    """The run spec from flat settings, as the command lines hold them; ``train``: :class:`TrainConfig`'s fields;
    ``mask``: None for the method's own."""
    return RunSpec(method=method, backbone=BackboneSpec(arch, weights), train=TrainConfig(**train), mask=mask,
                   batchnorm=batchnorm, soft=soft, options=dict(options or {}))


def pristine_state(model: nn.Module) -> dict[str, Tensor]:
    """A copy of the backbone's tensors, from which every task starts."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build(spec: RunSpec) -> tuple[nn.Module, Method, dict[str, Tensor], str | None]:
    """(model prepared for ``spec.method``, method, pristine backbone state, weights sha256)."""
    model, digest = build_backbone(spec.backbone)
    backbone = pristine_state(model)
    method = make_method(spec.method, spec.backbone.arch, batchnorm=spec.batchnorm, mask=spec.mask, soft=spec.soft,
                         options=spec.options)
    method.prepare(model)
    return model, method, backbone, digest


def train_settings(spec: RunSpec, method: Method, *, device: str, processes: int, amp: bool) -> dict[str, Any]:
    """``run.json`` ``train`` of an independent run: every setting that shaped it (the mask hyperparameters
    the method trained with, which its class may have set)."""
    return {**spec.train.to_json(), **_mask_settings(method.mask),
            "soft": spec.soft if method.traits.soft_part else None,
            "device": device, "processes": processes, "global_batch_size": spec.train.batch_size, "amp": amp}


def _mask_settings(mask: MaskConfig) -> dict[str, Any]:
    return {f"mask_{k}": v for k, v in asdict(mask).items()}


@torch.no_grad()
def soft_precision_sweep(model: nn.Module, data: TaskData, device: str = "cpu") -> dict[str, float]:
    """Test accuracy with KSM's soft part quantised to 0 (binary only), 2, 4, 8 and 16 bits."""
    masks = [m for m in model.modules() if isinstance(m, KernelSoftMask)]
    if not masks or not all(m.soft for m in masks):
        return {}
    out: dict[str, float] = {}
    try:
        for bits in SOFT_PRECISIONS:
            for m in masks:
                m.scale_bits = bits
            out[str(bits)] = evaluate(model, data, "test", device=device)
    finally:
        for m in masks:
            m.scale_bits = None
    return out


# ---------------------------------------------------------------------------------------------
# One task
# ---------------------------------------------------------------------------------------------
def run_task(spec: RunSpec, data: TaskData, out: Path, *, force: bool = False, resume: bool = False,
             device: str = "cpu", progress: bool = True, ctx: Context = SINGLE, amp: bool = False,
             on_epoch: Callable[[int], None] | None = None, log: Sequence[str] = (),
             config: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Train ``spec`` on ``data`` and write the run folder ``out``; return its ``run.json`` record.

    In a data-parallel job every rank trains; rank 0 alone writes, and the others return None.
    ``log``: the scalar logs to keep (``csv``, ``tensorboard``: :class:`ksm.training.train_log.ScalarLog`),
    written beside the checkpoint while the run trains and part of the finished run folder (``logs/``).
    ``config``: the command's resolved options (:func:`ksm.config_file.resolved_config`), written as the run
    folder's ``config.yaml``, which ``ksm-train --config`` reads back.
    """
    if ctx.main:
        check_output(out, force=force, resume=resume)
    began = time.perf_counter()
    model, method, backbone, digest = build(spec)
    if ctx.active:
        convert_batchnorm(model)
    partial = partial_dir(out)
    if ctx.main:
        partial.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    scalars = ScalarLog(partial, log) if log and ctx.main else None
    try:
        metrics = train_task(model, method, backbone, data, spec.train, checkpoint=partial / "checkpoint.pt",
                             resume=resume, device=device, progress=progress, ctx=ctx, amp=amp, on_epoch=on_epoch,
                             settings={"spec": asdict(spec), "dataset": data.describe(), "amp": amp}, began=began,
                             scalars=scalars)
    except BaseException:
        drop_empty_partial(out)
        raise
    finally:
        if scalars is not None:
            scalars.close()
    if not ctx.main:
        barrier(ctx)
        return None
    metrics["soft_precision"] = soft_precision_sweep(model, data, device)
    model.cpu()
    record = run_record(data, method, model, backbone=spec.backbone, digest=digest, metrics=metrics,
                        train=train_settings(spec, method, device=device, processes=ctx.world, amp=amp),
                        wall_seconds=time.perf_counter() - began + metrics.pop("earlier_wall_seconds", 0.0))
    write_run(out, record, method.state(model), force=force, logs=partial / LOGS if scalars is not None else None,
              config=config)
    barrier(ctx)
    return record


def load_run_model(folder: Path, *, weights: str | None = None) -> tuple[nn.Module, Method, dict[str, Any]]:
    """Rebuild a task's network from its run folder on a freshly loaded backbone.

    ``weights`` overrides where the backbone comes from (a .pth path); its sha256 must still match
    the one recorded in ``run.json``.
    """
    record, tensors = read_run(folder)  # run.json validated by its schema, tensors checked against it
    if record.get("sequence") is not None:  # PackNet, CPG: the weights live in the sequence's shared file
        model, method, record = load_sequence_task(folder, weights=weights)
    else:
        model, method = _load_single_task(folder, record, tensors, weights)
    check_record(folder, record, model, method)
    check_geometry(folder, record, model)
    return model, method, record


def _load_single_task(folder: Path, record: dict[str, Any], tensors: dict[str, Tensor],
                      weights: str | None) -> tuple[nn.Module, Method]:
    bb = record["backbone"]
    train = record.get("train", {})
    fields = {f.name for f in dataclasses.fields(MaskConfig)}
    mask = {k[5:]: v for k, v in train.items() if k.startswith("mask_") and k[5:] in fields}  # what it trained with
    spec = RunSpec(method=record["method"], backbone=BackboneSpec(bb["arch"], weights or bb.get("weights")),
                   batchnorm=record.get("batchnorm"), soft=bool(train.get("soft", True)),
                   mask=MaskConfig(**mask) if mask else None,
                   options=dict(record.get("method_options") or {}))
    model, method, _, digest = build(spec)
    check_backbone(Path(folder) / RUN_JSON, record, digest)
    try:
        method.load_state(model, tensors)
    except (KeyError, ValueError) as exc:
        raise RunError(f"{folder}/masks.safetensors: {exc}") from None
    return model.eval(), method


def check_record(folder: Path, record: dict[str, Any], model: nn.Module, method: Method) -> None:
    """Refuse a run whose run.json disagrees with its tensors (head size vs num_classes), so that nothing
    exported, packed or evaluated from it carries a wrong header. The record itself (types, ranges, the
    head's layer record against ``num_classes``) was validated by :func:`read_run`; a model is rebuilt only
    from a record that says its classes and input size."""
    dataset = record["dataset"]
    for key in ("num_classes", "input_size"):
        if dataset.get(key) is None:
            raise RunError(f"{folder}/run.json: dataset.{key}: missing key (needed to rebuild the task)")
    head = model.get_submodule(method.head)
    if head.out_features != dataset["num_classes"]:
        raise RunError(f"{folder}/run.json: dataset.num_classes is {dataset['num_classes']} but the stored head has "
                       f"{head.out_features} outputs; run.json and masks.safetensors do not belong together")


# What a ``layers`` record says of a layer, in the order a difference is reported (docs/run-folder.md).
GEOMETRY_FIELDS = ("name", "kind", "in_channels", "out_channels", "kernel", "stride", "padding", "groups", "bias",
                   "input_hw", "output_hw")


def check_geometry(folder: Path, record: dict[str, Any], model: nn.Module) -> None:
    """Refuse a run whose ``layers`` are not the rebuilt network's: names, kinds, channels, kernels, strides,
    paddings, groups, biases and feature-map sizes, traced (forward hooks, as when the run was written) at the
    recorded input size. ``hwsim`` costs the run by its ``layers`` and the task file's header is built from
    them, so a record that no longer describes the network is refused before anything is exported or packed,
    naming its first difference (``layers[i].<field>``)."""
    where = f"{folder}/{RUN_JSON}"
    rebuilt = layer_records(model, tuple(record["dataset"]["input_size"]))
    recorded = record["layers"]
    for i, (mine, real) in enumerate(zip(recorded, rebuilt)):
        for key in GEOMETRY_FIELDS:
            said = mine.get(key, False) if key == "bias" else mine[key]  # bias is optional, false by default
            if _plain(said) != _plain(real[key]):
                raise RunError(f"{where}: layers[{i}].{key}: {json.dumps(said)}, but the network rebuilt from this "
                               f"run has {json.dumps(real[key])} (layer {real['name']!r})")
    if len(recorded) != len(rebuilt):
        raise RunError(f"{where}: layers: {len(recorded)} conv/linear layers, but the network rebuilt from this "
                       f"run has {len(rebuilt)}")


def _plain(value: Any) -> Any:
    """A pair as a list of ints, so that ``[2.0, 2]`` (which the schema reads as ``[2, 2]``) compares equal."""
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------------------------------
# A sequence (PackNet, CPG)
# ---------------------------------------------------------------------------------------------
def make_sequence_method(spec: RunSpec) -> SequenceMethod:
    method = make_method(spec.method, spec.backbone.arch, batchnorm=spec.batchnorm, mask=spec.mask,
                         options=spec.options)
    if not isinstance(method, SequenceMethod):
        raise ValueError(  # noqa: TRY004 - a bad option value, reported like the others
            f"{spec.method!r} is not a sequence method (packnet, cpg)")
    return method


def run_sequence(spec: RunSpec, tasks: list[str], load: Callable[[str], TaskData], folder: Path, *,
                 force: bool = False, resume: bool = False, device: str = "cpu", progress: bool = True,
                 on_task: Callable[[int], None] | None = None,
                 learn: Callable[..., tuple[nn.Module, SequenceMethod, dict[str, Any]]] | None = None,
                 config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Learn ``tasks`` in order on one backbone; write ``folder/shared.safetensors`` and one run folder per task.

    Args:
        load: task name → :class:`TaskData` (called only for tasks still to train).
        resume: keep finished task folders and continue after the last one.
        on_task: called with the position just written (tests use it to simulate an interruption).
        learn: replaces ``method.learn`` for each task: ``(model, method, backbone, data, cfg) →
            (model, method, metrics)``; the comparison protocol uses it to choose each task's
            learning rates on validation. ``metrics["train"]``, if present, overrides the recorded
            training settings (the chosen rates).
        config: the command's resolved options, written as each task folder's ``config.yaml``.
    Returns: the ``run.json`` records of all tasks, in order.
    """
    folder = Path(folder)
    tasks = list(tasks)
    records = open_sequence(folder, tasks, force=force, resume=resume)
    model, digest = build_backbone(spec.backbone)
    backbone = pristine_state(model)
    method = make_sequence_method(spec)
    if records:
        shared = restore_sequence(folder, records[-1], tasks, spec.settings(), digest)
        model = method.restore_geometry(model, records[-1]) if hasattr(method, "restore_geometry") else model
        method.prepare(model)
        method.load_shared(model, shared)
    else:
        method.prepare(model)

    def train(model_: nn.Module, data: TaskData, cfg: TrainConfig) -> dict[str, Any]:
        return train_task(model_, method, backbone, data, cfg, device=device, progress=progress)

    for position in range(len(records) + 1, len(tasks) + 1):
        task = tasks[position - 1]
        data = load(task)
        began = time.perf_counter()
        method.begin_task(model, position)
        if learn is None:
            model, metrics = method.learn(model, backbone, data, spec.train, train)
        else:
            model, method, metrics = learn(model, method, backbone, data, spec.train)
        chosen = metrics.pop("train", {})
        model.cpu()
        wall = time.perf_counter() - began
        shared = method.shared_tensors(model)
        picks = method.picks(model)
        shapes = {name: tuple(raw_weight(layer).shape) for name, layer in maskable_layers(model, method.head)}
        counts = _weight_counts(method, shared, picks, shapes, position)
        used = sum(c["own"] + c["picked"] for c in counts.values())
        metrics["mask_density"] = used / max(sum(math.prod(s) for s in shapes.values()), 1)
        pending, shared_sha256 = write_pending_shared(folder, position, shared)
        record = run_record(
            data, method, model, backbone=spec.backbone, digest=digest, metrics=metrics,
            train={**spec.train.to_json(), **chosen, **method.options(), **_mask_settings(method.mask),
                   "device": device,
                   "epochs_total": len(metrics["history"])},
            wall_seconds=wall,
            sequence={"position": position, "tasks": tasks, "shared": f"../{SHARED}",
                      "shared_sha256": shared_sha256, "view_sha256": view_sha256(method, shared, position, picks, shapes),
                      "index_bits": index_bits(len(tasks)), "settings": spec.settings(), "weights": counts},
            **method.extra_record())
        if data.name != task:
            raise ValueError(f"task {task!r} loaded as {data.name!r}")
        records.append(write_sequence_task(folder, record, method.state(model), pending, config=config))
        if on_task is not None:
            on_task(position)
    close_sequence(folder)
    return records


def _weight_counts(method: SequenceMethod, shared: dict[str, Tensor], picks: dict[str, Tensor],
                   shapes: dict[str, tuple[int, ...]], position: int) -> dict[str, dict[str, int]]:
    """Per layer, whose weights task ``position`` leaves in the shared file (``run.json`` ``sequence.weights``)."""
    counts = {}
    for name in shapes:
        idx = shared[f"{name}.task"]
        earlier = (idx >= 1) & (idx < position)
        counts[name] = {"own": int((idx == position).sum()), "earlier": int(earlier.sum()),
                        "picked": int(picks[name].bool()[earlier].sum()) if name in picks else int(earlier.sum()),
                        "free": int((idx == 0).sum()), "grown": int(method.grown_weights().get(name, 0))}
    return counts


def load_sequence_task(folder: Path, *, weights: str | None = None) -> tuple[nn.Module, SequenceMethod, dict[str, Any]]:
    """Rebuild task ``folder`` of a sequence on a fresh backbone: a plain model holding exactly the
    weights the task uses (later tasks' and free weights zeroed, CPG pick masks applied)."""
    folder = Path(folder)
    record, tensors, path, shared = read_sequence_task(folder)
    bb = record["backbone"]
    model, digest = build_backbone(BackboneSpec(bb["arch"], weights or bb.get("weights")))
    check_backbone(folder / RUN_JSON, record, digest)
    train = record.get("train", {})
    options = {k: train[k] for k in ("prune_ratio",) if k in train}
    method = make_method(record["method"], bb["arch"], batchnorm=record.get("batchnorm"), options=options)
    assert isinstance(method, SequenceMethod)
    if hasattr(method, "restore_geometry"):
        model = method.restore_geometry(model, record)
    model.requires_grad_(False)
    try:
        method.load_state(model, tensors)
    except (KeyError, ValueError) as exc:
        raise RunError(f"{folder}/masks.safetensors: {exc}") from None
    position = int(record["sequence"]["position"])
    shapes: dict[str, tuple[int, ...]] = {}
    picks: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, layer in maskable_layers(model, method.head):
            if f"{name}.weight" not in shared:
                raise RunError(f"{path}: {name}.weight missing")
            shape = tuple(layer.weight.shape)
            if any(a > b for a, b in zip(shape, shared[f"{name}.weight"].shape)):
                raise RunError(f"{path}: {name}.weight {list(shared[f'{name}.weight'].shape)} is smaller than the "
                               f"task's layer {list(shape)}")
            shapes[name] = shape
            pick = tensors.get(f"{name}.pick")
            if pick is not None:
                picks[name] = pick
            w, _ = task_weight(method, shared, name, position, pick, shape)
            layer.weight.copy_(w)
    expected = record["sequence"].get("view_sha256")
    if expected and view_sha256(method, shared, position, picks, shapes) != expected:
        raise RunError(f"{path}: the weights task {record['task']!r} uses have changed since it was trained "
                       f"(view sha256 differs from run.json)")
    method.position = position
    return model.eval(), method, record
