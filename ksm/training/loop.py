"""The one training loop that every method shares.

Adam with two parameter groups (masks/BatchNorm/weights at ``lr_body``, the head at ``lr_head``)
and a per-iteration cosine schedule, as in the code the KSM authors released with Yang et al., CVPR 2021
(``utils.step_lr_cos``); there the schedule is hard-coded to 30 epochs and starts one epoch late, here it
spans exactly the configured epochs. Cross-entropy only (the authors' code adds no sparsity term).
The test split is evaluated once, after the last epoch, and never feeds a choice. With
``select_split="val"`` (the comparison protocol, :mod:`ksm.compare.protocol`) the validation split is
evaluated after every epoch and the best epoch's task tensors are restored at the end (early-stopping
selection on validation, instead of the best-epoch-on-test choice of the peers' published code).
With task BatchNorm the running statistics are recomputed with the final task tensors before the
test split is read, and after every epoch before a ``select_split`` score (:mod:`ksm.training.calibrate`).

Each epoch ends with a checkpoint (task tensors, optimiser, RNG state, history) so that ``resume``
continues an interrupted run to the same result as an uninterrupted one: the data order of epoch
``e`` depends only on ``(seed, e)``. As in torchvision's reference scripts, :func:`train_task` is the
loop; one epoch (:func:`train_one_epoch`), the checkpoint, the selection (:class:`BestEpoch`) and
:func:`evaluate` are functions of their own.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from hwsim.fileio.atomic import atomic_write
from ksm.training.calibrate import recalibrate_batchnorm, warn_few_steps
from ksm.data.datasets import TaskData
from ksm.training.distributed import SINGLE, Context, all_sum, barrier, loss_share, wrap
from ksm.methods.base import Method
from ksm.checks import check_finite_loss, check_same_settings, settings_json
from ksm.training.train_log import epoch_line, log

if TYPE_CHECKING:
    from ksm.training.train_log import ScalarLog


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one task's training; recorded in ``run.json``."""

    epochs: int = 3
    batch_size: int = 32
    lr_body: float = 1e-3
    lr_head: float = 1e-3
    seed: int = 0
    recalibrate_bn: bool = True  # recompute task BatchNorm statistics after training (ksm.training.calibrate)

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


def make_optimizer(method: Method, model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with two groups: the method's body parameters at ``lr_body``, the head at ``lr_head``."""
    body, head = method.trainable(model)
    groups = [{"params": head, "lr": cfg.lr_head, "base_lr": cfg.lr_head}]
    if body:
        groups.insert(0, {"params": body, "lr": cfg.lr_body, "base_lr": cfg.lr_body})
    return torch.optim.Adam(groups)


@dataclass
class TrainedEpochs:
    """Where a task's training stands: the epochs done (their history rows) and the seconds they took."""

    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    wall_seconds: float = 0.0  # wall time of the earlier processes of a resumed run, up to their last checkpoint

    @property
    def next_epoch(self) -> int:
        return len(self.history)


def save_checkpoint(path: Path, done: TrainedEpochs, cfg: TrainConfig, method: Method, model: nn.Module,
                    optimizer: torch.optim.Optimizer, ctx: Context = SINGLE, settings: dict[str, Any] | None = None,
                    wall_seconds: float = 0.0) -> None:
    """Write what a resumed run needs to continue as if uninterrupted: task tensors, optimiser,
    every rank's RNG state, history. All ranks take part (to gather RNG states); rank 0 writes."""
    rng = [torch.get_rng_state()]
    if ctx.active:
        rng = [None] * ctx.world
        torch.distributed.all_gather_object(rng, torch.get_rng_state())
    if ctx.main:
        payload = {"epoch": done.next_epoch - 1, "config": cfg.to_json(), "history": done.history,
                   "seconds": done.seconds, "state": {k: v.cpu() for k, (v, _) in method.state(model).items()},
                   "optimizer": optimizer.state_dict(), "rng": rng, "settings": settings_json(settings),
                   "wall_seconds": wall_seconds}
        buffer = io.BytesIO()  # serialised in memory: torch's file writer loses a full disk's errno
        torch.save(payload, buffer)
        atomic_write(path, buffer.getvalue())
    barrier(ctx)


CHECKPOINT_KEYS = ("config", "history", "seconds", "state", "optimizer", "rng")
START_OVER = "delete it to start the task over, or rerun without --resume"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint :func:`save_checkpoint` wrote; a truncated, corrupt or foreign file is one ValueError
    naming it (``torch.load`` would raise a RuntimeError from deep in its zip reader)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails anywhere in torch's zip reader, unpickler
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt: "
                         f"{exc.__class__.__name__}); {START_OVER}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise ValueError(f"{path}: not a ksm checkpoint (no {missing[0]!r}); {START_OVER}")
    return saved


def restore_checkpoint(path: Path, cfg: TrainConfig, method: Method, model: nn.Module,
                       optimizer: torch.optim.Optimizer, ctx: Context = SINGLE,
                       settings: dict[str, Any] | None = None) -> TrainedEpochs:
    """Put the state :func:`save_checkpoint` wrote back on ``model``, ``optimizer`` and the RNG."""
    saved = read_checkpoint(path)
    if {"recalibrate_bn": cfg.recalibrate_bn, **saved["config"]} != cfg.to_json():  # older checkpoints lack it
        raise ValueError(f"{path}: was written with different settings {saved['config']}; "
                         f"rerun with the same options or without --resume")
    check_same_settings(path, saved.get("settings"), settings_json(settings))
    method.load_state(model, saved["state"])
    optimizer.load_state_dict(saved["optimizer"])
    rng = saved["rng"]
    torch.set_rng_state(rng[ctx.rank] if len(rng) == ctx.world else rng[0])
    return TrainedEpochs(saved["history"], saved["seconds"], float(saved.get("wall_seconds", 0.0)))


def train_one_epoch(net: nn.Module, model: nn.Module, method: Method, data: TaskData, cfg: TrainConfig,
                    optimizer: torch.optim.Optimizer, epoch: int, *, device: str = "cpu", ctx: Context = SINGLE,
                    amp: bool = False, progress: bool = True, scalars: ScalarLog | None = None) -> dict[str, Any]:
    """One pass over the training split (order fixed by ``(seed, epoch)``); return the epoch's history row.

    ``net`` is ``model`` as it runs (wrapped for data parallelism); the method's hooks see ``model``.
    ``scalars``: where each step's loss, top-1 and learning rates go (:class:`ksm.training.train_log.ScalarLog`).
    """
    began = time.perf_counter()
    steps_per_epoch = math.ceil(data.sizes["train"] / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    cuda = device.startswith("cuda")
    method.train_mode(model)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(data.batches("train", cfg.batch_size, generator, ctx.shard), total=steps_per_epoch,
               disable=None if progress and ctx.main else True,
               desc=f"{data.name} {method.name} epoch {epoch + 1}/{cfg.epochs}", leave=False)
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
        check_finite_loss(loss, ctx, f"{data.name} {method.name}: epoch {epoch + 1}, step {i + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss_share(loss, len(y), global_batch, ctx).backward()
        method.after_backward(model)
        optimizer.step()
        method.after_step(model)
        batch_loss, batch_correct = loss.item(), int((logits.argmax(1) == y).sum())
        loss_sum += batch_loss * len(y)
        correct += batch_correct
        seen += len(y)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        if scalars is not None:
            rates = {"lr_head": optimizer.param_groups[-1]["lr"],  # the head's group is always the last
                     "lr_body": optimizer.param_groups[0]["lr"] if len(optimizer.param_groups) > 1 else None}
            scalars.step(epoch * steps_per_epoch + i + 1, epoch + 1,
                         {"loss": batch_loss, "top1": batch_correct / len(y), **rates})
    loss_sum, correct, seen = all_sum(ctx, [loss_sum, correct, seen])
    return {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_top1": correct / max(seen, 1),
            "seconds": time.perf_counter() - began, "steps": steps_per_epoch}


@dataclass
class BestEpoch:
    """Early-stopping selection: the epoch that scored best on a split, and its task tensors."""

    split: str
    score: float = -math.inf
    epoch: int = 0
    state: dict[str, Tensor] = field(default_factory=dict)

    def update(self, model: nn.Module, method: Method, data: TaskData, row: dict[str, Any], device: str) -> None:
        """Score the epoch just trained (recorded in its history ``row``); keep it if it beats the best so far
        (the earliest epoch wins ties)."""
        score = evaluate(model, data, self.split, device=device)
        row[f"{self.split}_top1"] = score
        if score > self.score:
            self.score, self.epoch = score, row["epoch"]
            self.state = {k: v for k, (v, _) in method.state(model).items()}

    def restore(self, model: nn.Module, method: Method, epochs: int) -> dict[str, Any]:
        """Put the best epoch's task tensors back; return ``selected_epoch`` and ``select_top1``."""
        if not self.epoch:  # no epoch trained
            return {}
        if self.epoch != epochs:
            method.load_state(model, self.state)
        return {"selected_epoch": self.epoch, "select_top1": self.score}


def train_task(model: nn.Module, method: Method, backbone: dict[str, Tensor], data: TaskData,
               cfg: TrainConfig, *, checkpoint: Path | None = None, resume: bool = False,
               device: str = "cpu", progress: bool = True, ctx: Context = SINGLE, amp: bool = False,
               on_epoch: Callable[[int], None] | None = None, select_split: str | None = None,
               final_split: str | None = "test", settings: dict[str, Any] | None = None,
               began: float | None = None, scalars: ScalarLog | None = None) -> dict[str, Any]:
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
        settings: everything else that shapes the result (the whole run spec, the data); kept in the
            checkpoint, and a resume with any difference is refused, naming it.
        began: ``time.perf_counter()`` when this process started on the run (default: now); the
            checkpoint keeps the wall time of all processes so far.
        scalars: the run's scalar logs (``--log``; rank 0 only), written per step and per epoch.

    After every epoch rank 0 logs one line (:func:`ksm.training.train_log.epoch_line`) on the
    ``ksm.training`` logger: loss, training and validation top-1, images/s, elapsed time and ETA.

    Returns:
        ``top1`` (None on ranks other than 0, which alone evaluates, or without ``final_split``),
        ``history``, ``train_seconds`` and ``mask_density``; with ``select_split`` also
        ``selected_epoch`` and ``select_top1``; ``earlier_wall_seconds``: the wall time of the earlier
        processes of a resumed run.
    """
    began = time.perf_counter() if began is None else began
    if select_split is not None and (checkpoint is not None or ctx.active):
        raise ValueError("epoch selection runs in one process without checkpoints")
    torch.manual_seed(cfg.seed)
    method.reset(model, backbone, data.num_classes)
    model.to(device)
    if device.startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(method, model, cfg)
    calibrate = cfg.recalibrate_bn and method.batchnorm == "task"
    if ctx.main and not resume:
        warn_few_steps(data.name, math.ceil(data.sizes["train"] / cfg.batch_size), cfg.epochs)
    done = TrainedEpochs()
    if resume and checkpoint is not None and checkpoint.exists():
        done = restore_checkpoint(checkpoint, cfg, method, model, optimizer, ctx, settings)
    earlier_wall = done.wall_seconds
    net = wrap(model, ctx, device)
    best = BestEpoch(select_split) if select_split is not None else None
    steps_per_epoch = math.ceil(data.sizes["train"] / cfg.batch_size)
    scalars = scalars if ctx.main else None
    if scalars is not None:
        scalars.begin(done.next_epoch, steps_per_epoch)
    first, loop_began = done.next_epoch, time.perf_counter()

    for epoch in range(done.next_epoch, cfg.epochs):
        row = train_one_epoch(net, model, method, data, cfg, optimizer, epoch, device=device, ctx=ctx, amp=amp,
                              progress=progress, scalars=scalars)
        done.history.append(row)
        done.seconds += row["seconds"]
        if checkpoint is not None:
            save_checkpoint(checkpoint, done, cfg, method, model, optimizer, ctx, settings,
                            earlier_wall + time.perf_counter() - began)
        if best is not None:
            if calibrate:  # the score is read with statistics that match the epoch's masks
                recalibrate_batchnorm(model, data, batch_size=cfg.batch_size, device=device, seed=cfg.seed, ctx=ctx)
            best.update(model, method, data, row, device)
        if ctx.main:
            now = time.perf_counter()
            per_epoch = (now - loop_began) / (epoch + 1 - first)  # checkpoints and validation included
            images = data.sizes["train"]
            log.info(epoch_line(data.name, method.name, row, cfg.epochs, images=images,
                                elapsed=earlier_wall + now - began, eta=per_epoch * (cfg.epochs - epoch - 1)))
            if scalars is not None:
                scalars.epoch((epoch + 1) * steps_per_epoch, row, images / row["seconds"] if row["seconds"] else 0.0)
        if on_epoch is not None:
            on_epoch(epoch)

    selected = best.restore(model, method, cfg.epochs) if best is not None else {}
    if best is None and calibrate:
        recalibrate_batchnorm(model, data, batch_size=cfg.batch_size, device=device, seed=cfg.seed, ctx=ctx)
    top1 = evaluate(model, data, final_split, device=device) if ctx.main and final_split else None
    barrier(ctx)
    return {"top1": top1, "history": done.history, "train_seconds": done.seconds,
            "mask_density": method.mask_density(model), **selected,
            **({"earlier_wall_seconds": earlier_wall} if checkpoint is not None else {})}
