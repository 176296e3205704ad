"""One task end to end: data + backbone + method → trained task tensors → run folder; and back.

``run_task`` is what ``ksm-train`` calls once per (task, method); ``load_run_model`` rebuilds a
task's network from its run folder on a fresh backbone.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from torch import Tensor, nn

import ksm
from hwsim.catalogue import SOFT_PRECISIONS  # the report sweeps the same precisions
from ksm.backbones import BackboneSpec, build_backbone
from ksm.data import TaskData
from ksm.distributed import SINGLE, Context, barrier, convert_batchnorm
from ksm.geometry import layer_records
from ksm.masks import KernelSoftMask
from ksm.methods import MaskConfig, Method, make_method
from ksm.runfolder import RunError, check_output, partial_dir, read_run, write_run
from ksm.train import TrainConfig, evaluate, train_task

@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run besides the data."""

    method: str = "ksm"
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    batchnorm: str | None = None  # None: the method's default
    soft: bool = True  # KSM only: False is the "binary kernel-wise mask" ablation
    options: dict[str, Any] = field(default_factory=dict)  # the method's own options (LoRA: rank, alpha, ...)


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


def run_task(spec: RunSpec, data: TaskData, out: Path, *, force: bool = False, resume: bool = False,
             device: str = "cpu", progress: bool = True, ctx: Context = SINGLE, amp: bool = False,
             on_epoch: Callable[[int], None] | None = None) -> dict[str, Any] | None:
    """Train ``spec`` on ``data`` and write the run folder ``out``; return its ``run.json`` record.

    In a data-parallel job every rank trains; rank 0 alone writes, and the others return None.
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
    metrics = train_task(model, method, backbone, data, spec.train, checkpoint=partial / "checkpoint.pt",
                         resume=resume, device=device, progress=progress, ctx=ctx, amp=amp, on_epoch=on_epoch)
    if not ctx.main:
        barrier(ctx)
        return None
    metrics["soft_precision"] = soft_precision_sweep(model, data, device)
    model.cpu()
    record = run_record(spec, data, method, model, digest, metrics, device=device, processes=ctx.world, amp=amp,
                        wall_seconds=time.perf_counter() - began)
    write_run(out, record, method.state(model), force=force)
    barrier(ctx)
    return record


def run_record(spec: RunSpec, data: TaskData, method: Method, model: nn.Module, digest: str | None,
               metrics: dict[str, Any], *, device: str, processes: int, amp: bool, wall_seconds: float
               ) -> dict[str, Any]:
    """The ``run.json`` record of a trained task (docs/run-folder.md)."""
    options = method.options()
    return {
        "task": data.name,
        "method": method.name,
        **({"method_options": options} if options else {}),
        "backbone": {"arch": spec.backbone.arch, "weights": spec.backbone.weights, "sha256": digest},
        "batchnorm": method.batchnorm,
        "dataset": data.describe(),
        "metrics": metrics,
        "train": {**spec.train.to_json(), **{f"mask_{k}": v for k, v in asdict(spec.mask).items()},
                  "soft": spec.soft if method.name == "ksm" else None, "device": device,
                  "processes": processes, "global_batch_size": spec.train.batch_size, "amp": amp,
                  "wall_seconds": wall_seconds,
                  "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                               "ksm": ksm.__version__, "python": platform.python_version()}},
        "layers": layer_records(model, data.input_size),
        **method.describe(model),
    }


def load_run_model(folder: Path, *, weights: str | None = None) -> tuple[nn.Module, Method, dict[str, Any]]:
    """Rebuild a task's network from its run folder on a freshly loaded backbone.

    ``weights`` overrides where the backbone comes from (a .pth path); its sha256 must still match
    the one recorded in ``run.json``.
    """
    record, tensors = read_run(folder)
    if "sequence" in record:  # PackNet, CPG: the weights live in the sequence's shared file
        from ksm.sequence import load_sequence_task

        return load_sequence_task(folder, weights=weights)
    bb = record["backbone"]
    train = record.get("train", {})
    spec = RunSpec(method=record["method"], backbone=BackboneSpec(bb["arch"], weights or bb["weights"]),
                   batchnorm=record.get("batchnorm"), soft=bool(train.get("soft", True)),
                   mask=MaskConfig(**{k[5:]: v for k, v in train.items() if k.startswith("mask_")}),
                   options=dict(record.get("method_options") or {}))
    model, method, _, digest = build(spec)
    if bb.get("sha256") and digest != bb["sha256"]:
        raise RunError(f"{folder}/run.json: backbone sha256 {bb['sha256'][:12]}… does not match the weights "
                       f"loaded now ({(digest or 'none')[:12]}…)")
    try:
        method.load_state(model, tensors)
    except (KeyError, ValueError) as exc:
        raise RunError(f"{folder}/masks.safetensors: {exc}") from None
    return model.eval(), method, record
