"""Data-parallel training with PyTorch's own engine: torchrun + DistributedDataParallel.

``torchrun --nproc_per_node N -m ksm ...`` (or ``ksm-train --nproc N``) starts N copies of the
same command; each finds its rank in the environment torchrun sets, joins the process group (gloo
on CPU, nccl on CUDA) and trains on its slice of every global batch. Only the trainable tensors
(masks, BatchNorm, head; all weights for fine-tuning) carry gradients, so only they are
all-reduced. Rank 0 alone writes checkpoints and the run folder.

Task-specific BatchNorm would otherwise normalise each rank's slice by its own statistics, and the
result would depend on the number of processes; :class:`CrossRankBatchNorm2d` computes them over the
whole global batch (``nn.SyncBatchNorm`` does the same but refuses CPU tensors).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn


@dataclass(frozen=True)
class Context:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world


SINGLE = Context()


def from_environment(device: str) -> Context:
    """Join the process group that torchrun describes in the environment; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _without_nproc(argv: list[str]) -> list[str]:
    """The copies' command line: ``argv`` less ``--nproc N`` / ``--nproc=N`` (torchrun sets their number)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch_with_torchrun(nproc: int) -> int:
    """Run this same command under ``torchrun --standalone --nproc_per_node N`` and return its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ksm", *_without_nproc(sys.argv[1:])]
    return subprocess.call(command)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.active:
        dist.barrier()


def all_sum(ctx: Context, values: list[float]) -> list[float]:
    """Sum a few Python numbers over all ranks."""
    if not ctx.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics span every rank's slice of the batch (autograd-aware)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])
        total = dist_fn.all_reduce(local)
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            return (x - mean[None, :, None, None]) * (scale * self.weight)[None, :, None, None] + self.bias[None, :, None, None]
        return (x - mean[None, :, None, None]) * scale[None, :, None, None]


def convert_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for :class:`CrossRankBatchNorm2d` in place (same tensors, same names)."""
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = CrossRankBatchNorm2d
    return model


def wrap(model: nn.Module, ctx: Context, device: str) -> nn.Module:
    """DistributedDataParallel over the trainable tensors (a no-op for a single process)."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(device).index] if device.startswith("cuda") else None
    # Buffers (BatchNorm running statistics) agree on every rank by construction: no broadcast.
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def loss_share(local_mean: Tensor, local: int, global_batch: int, ctx: Context) -> Tensor:
    """A rank's mean loss rescaled so that DDP's gradient average equals the global batch mean.

    DDP averages gradients over ranks; slices of unequal size (the last batch) would otherwise be
    over- or under-weighted.
    """
    return local_mean * (local * ctx.world / max(global_batch, 1))
