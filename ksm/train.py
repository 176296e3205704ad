"""The one training loop that every method shares.

Adam with two parameter groups (masks/BatchNorm/weights at ``lr_body``, the head at ``lr_head``)
and a per-iteration cosine schedule, as in the KSM authors' code (``utils.step_lr_cos``,
ksm-paper.md §1.3); there the schedule is hard-coded to 30 epochs and starts one epoch late, here it
spans exactly the configured epochs. Cross-entropy only (the authors' code adds no sparsity term).
The test split is evaluated once, after the last epoch, and never feeds a choice. With
``select_split="val"`` (the comparison protocol, :mod:`ksm.protocol`) the validation split is
evaluated after every epoch and the best epoch's task tensors are restored at the end (early-stopping
selection on validation, instead of the best-epoch-on-test choice of the peers' published code).
With task BatchNorm the running statistics are recomputed with the final task tensors before the
test split is read, and after every epoch before a ``select_split`` score (:mod:`ksm.calibrate`).

Each epoch ends with a checkpoint (task tensors, optimiser, RNG state, history) so that ``resume``
continues an interrupted run to the same result as an uninterrupted one: the data order of epoch
``e`` depends only on ``(seed, e)``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ksm.calibrate import recalibrate_batchnorm, warn_few_steps
from ksm.data import TaskData
from ksm.distributed import SINGLE, Context, all_sum, barrier, loss_share, wrap
from ksm.methods import Method


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one task's training; recorded in ``run.json``."""

    epochs: int = 3
    batch_size: int = 32
    lr_body: float = 1e-3
    lr_head: float = 1e-3
    seed: int = 0
    recalibrate_bn: bool = True  # recompute task BatchNorm statistics after training (ksm.calibrate)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cosine_factor(step: int, total: int) -> float:
    """0.5·(1 + cos(π·step/total)): 1 at the first step, → 0 at the last."""
    return 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))


@torch.no_grad()
def evaluate(model: nn.Module, data: TaskData, split: str = "test", batch_size: int = 256,
             device: str = "cpu") -> float:
    """Top-1 accuracy (fraction) on a split."""
    model.eval()
    correct = total = 0
    for x, y in data.batches(split, batch_size, None):
        logits = model(x.to(device))
        correct += int((logits.argmax(1).cpu() == y).sum())
        total += len(y)
    return correct / max(total, 1)


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train_task(model: nn.Module, method: Method, backbone: dict[str, Tensor], data: TaskData,
               cfg: TrainConfig, *, checkpoint: Path | None = None, resume: bool = False,
               device: str = "cpu", progress: bool = True, ctx: Context = SINGLE, amp: bool = False,
               on_epoch: Callable[[int], None] | None = None, select_split: str | None = None,
               final_split: str | None = "test") -> dict[str, Any]:
    """Train one task on ``model`` (already ``method.prepare``-d) and return its metrics.

    Args:
        backbone: the pristine backbone state dict, from which each task starts.
        checkpoint: file written after every epoch; with ``resume`` an existing one is continued.
        ctx: this process's rank in a data-parallel job; ``cfg.batch_size`` is the global batch.
        amp: bfloat16 autocast (CUDA only).
        on_epoch: called with the epoch index after its checkpoint is written (tests use it to
            simulate an interruption).
        select_split: evaluate this split after every epoch and end on the epoch that scored best
            on it (earliest on ties); single process, no checkpoint.
        final_split: the split ``top1`` is measured on at the end; None measures nothing.

    Returns:
        ``top1`` (None on ranks other than 0, which alone evaluates, or without ``final_split``),
        ``history``, ``train_seconds`` and ``mask_density``; with ``select_split`` also
        ``selected_epoch`` and ``select_top1``.
    """
    if select_split is not None and (checkpoint is not None or ctx.active):
        raise ValueError("epoch selection runs in one process without checkpoints")
    torch.manual_seed(cfg.seed)
    method.reset(model, backbone, data.num_classes)
    model.to(device)
    cuda = device.startswith("cuda")
    if cuda:
        model.to(memory_format=torch.channels_last)
    body, head = method.trainable(model)
    groups = [{"params": head, "lr": cfg.lr_head, "base_lr": cfg.lr_head}]
    if body:
        groups.insert(0, {"params": body, "lr": cfg.lr_body, "base_lr": cfg.lr_body})
    optimizer = torch.optim.Adam(groups)
    steps_per_epoch = math.ceil(data.sizes["train"] / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    history: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    calibrate = cfg.recalibrate_bn and method.batchnorm == "task"
    if ctx.main and not resume:
        warn_few_steps(data.name, steps_per_epoch, cfg.epochs)

    if resume and checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if {"recalibrate_bn": cfg.recalibrate_bn, **saved["config"]} != cfg.to_json():
            raise ValueError(f"{checkpoint}: was written with different settings {saved['config']}; "
                             f"rerun with the same options or without --resume")
        method.load_state(model, saved["state"])
        optimizer.load_state_dict(saved["optimizer"])
        rng = saved["rng"]
        torch.set_rng_state(rng[ctx.rank] if len(rng) == ctx.world else rng[0])
        history, start_epoch, elapsed = saved["history"], saved["epoch"] + 1, saved["seconds"]

    net = wrap(model, ctx, device)
    show = progress and ctx.main
    best: tuple[float, int, dict[str, Tensor]] | None = None

    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        method.train_mode(model)
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(data.batches("train", cfg.batch_size, generator, ctx.shard), total=steps_per_epoch,
                   disable=None if show else True, desc=f"{data.name} {method.name} epoch {epoch + 1}/{cfg.epochs}",
                   leave=False)
        for i, (x, y) in enumerate(bar):
            factor = cosine_factor(epoch * steps_per_epoch + i, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            global_batch = min(cfg.batch_size, data.sizes["train"] - i * cfg.batch_size)
            if global_batch == 1:  # a trailing single image: BatchNorm in train mode cannot normalise it
                continue
            x, y = x.to(device), y.to(device)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and cuda):
                logits = net(x)
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss_share(loss, len(y), global_batch, ctx).backward()
            method.after_backward(model)
            optimizer.step()
            method.after_step(model)
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        loss_sum, correct, seen = all_sum(ctx, [loss_sum, correct, seen])
        seconds = time.perf_counter() - began
        elapsed += seconds
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
                        "seconds": seconds, "steps": steps_per_epoch})
        if checkpoint is not None:
            rng = [torch.get_rng_state()]
            if ctx.active:
                rng = [None] * ctx.world
                torch.distributed.all_gather_object(rng, torch.get_rng_state())
            if ctx.main:
                _save_checkpoint(checkpoint, {
                    "epoch": epoch, "config": cfg.to_json(), "history": history, "seconds": elapsed,
                    "state": {k: v.cpu() for k, (v, _) in method.state(model).items()},
                    "optimizer": optimizer.state_dict(), "rng": rng})
            barrier(ctx)
        if select_split is not None:
            if calibrate:
                recalibrate_batchnorm(model, data, batch_size=cfg.batch_size, device=device, seed=cfg.seed, ctx=ctx)
            score = evaluate(model, data, select_split, device=device)
            history[-1][f"{select_split}_top1"] = score
            if best is None or score > best[0]:
                best = (score, epoch + 1, {k: v for k, (v, _) in method.state(model).items()})
        if on_epoch is not None:
            on_epoch(epoch)

    selected: dict[str, Any] = {}
    if best is not None:
        if best[1] != cfg.epochs:
            method.load_state(model, best[2])
        selected = {"selected_epoch": best[1], "select_top1": best[0]}
    elif calibrate:
        recalibrate_batchnorm(model, data, batch_size=cfg.batch_size, device=device, seed=cfg.seed, ctx=ctx)
    top1 = evaluate(model, data, final_split, device=device) if ctx.main and final_split else None
    barrier(ctx)
    return {"top1": top1, "history": history, "train_seconds": elapsed,
            "mask_density": method.mask_density(model), **selected}
