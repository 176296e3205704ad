"""BatchNorm recalibration: running statistics that describe the trained task network.

During training, task-specific BatchNorm normalises with each batch's own statistics, while its
running statistics (used at test time) follow an exponential average with momentum 0.1 that starts
from ImageNet's. After a few dozen optimiser steps on a small task they describe neither ImageNet
nor the task: a 200-image photo folder trained two epochs scored 96 % on its training split and
chance on its test split. Recomputing the statistics after training with the final masks and
weights, one pass over the training split in train mode without gradients and with a cumulative
(equal-weight) average, is the standard remedy (Ioffe & Szegedy 2015, §3.1: the inference
statistics are population averages over the training data; ``torch.optim.swa_utils.update_bn`` does
the same for averaged weights).

Only BatchNorm layers change; dropout and every other module stay in eval mode, and the global RNG
is left as it was (augmenting data loaders draw from a forked RNG), so a resumed run still ends on
the same tensors as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ksm.data.datasets import TaskData
from ksm.training.distributed import SINGLE, Context

log = logging.getLogger("ksm")

MIN_STEPS = 50
"""Fewer optimiser steps than this per task draws a warning. The failed photo folder had 10 steps. With
BatchNorm recalibrated after training, the default job's smallest task, digits (1,437 training images,
45 steps an epoch at batch 32), scores 99.72 % test top-1 after its 90 steps of 2 epochs (README's table,
``--threads 1``) and 98.33 % after 45 steps (``--epochs 1``, the same settings otherwise): the default
job (at least 90 steps a task) is well trained and draws no warning, one epoch of digits (45) draws one."""


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: TaskData, *, batch_size: int = 32, split: str = "train",
                          device: str = "cpu", seed: int = 0, ctx: Context = SINGLE) -> int:
    """Recompute every BatchNorm's running mean and variance over ``split``; return the batches used.

    The data are shuffled by a generator seeded with ``seed``: batches in stored order would be sorted
    by class in an image folder, and their averaged within-batch variance would leave out the
    between-class variance that the training batches saw. In a data-parallel job each rank reads
    its slice of every global batch and ``SyncBatchNorm`` combines them, so every rank ends with the
    statistics of the whole batch. A trailing batch of one image is skipped, as in training.
    """
    layers = _batchnorms(model)
    if not layers:
        return 0
    was_training = {m: m.training for m in model.modules()}
    momenta = [bn.momentum for bn in layers]
    model.eval()
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
        bn.train()
    used = 0
    cuda = str(device).startswith("cuda")
    try:
        with torch.random.fork_rng(devices=[torch.device(device)] if cuda else []):
            torch.manual_seed(seed)
            order = torch.Generator().manual_seed(seed)
            for start, (x, _) in zip(range(0, data.sizes[split], batch_size),
                                     data.batches(split, batch_size, order, ctx.shard)):
                if min(batch_size, data.sizes[split] - start) == 1:
                    continue
                x = x.to(device)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                model(x)
                used += 1
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        for module, mode in was_training.items():
            module.train(mode)
    return used


_warned: set[str] = set()


def warn_few_steps(task: str, steps_per_epoch: int, epochs: int, minimum: int = MIN_STEPS) -> str | None:
    """Log one line when a task gets fewer than ``minimum`` optimiser steps, suggesting ``--epochs``.

    Each distinct line is logged once per process: a comparison trains the same task many times
    (every trial of every seed) and would otherwise repeat it dozens of times."""
    steps = steps_per_epoch * epochs
    if steps >= minimum:
        return None
    suggest = math.ceil(minimum / max(steps_per_epoch, 1))
    line = (f"{task}: only {steps} optimiser steps ({steps_per_epoch} per epoch x {epochs}); masks and BatchNorm "
            f"need at least {minimum}: try --epochs {suggest}")
    if line not in _warned:
        _warned.add(line)
        log.warning(line)
    return line
