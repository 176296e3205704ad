"""PackNet (Mallya & Lazebnik, CVPR 2018): iterative magnitude pruning packs tasks into one network.

Mechanics as in the authors' code (``arunmallya/packnet``, ``src/prune.py``; docs/bibliography.md [PackNet]):

1. the free weights (task index 0) are given to the new task; only they are trained, every weight of an
   earlier task keeps its value (gradient zeroed, value restored after each step);
2. per conv/linear layer, ``prune_ratio`` of the task's weights with the smallest magnitude are zeroed
   and freed (index 0) for later tasks (the authors' per-layer ``kthvalue`` cut-off);
3. the kept weights are retrained with the pruned ones held at zero;
4. task ``t`` computes with the weights whose index is in ``1..t``.

Schedules: the authors train 20 epochs (SGD, lr 1e-3, ×0.1 every 10) and retrain 10 epochs at lr 1e-4.
Here both phases run in the one training loop (Adam, cosine, ``ksm.training.loop``): ``--epochs`` for training
and ``--retrain-epochs`` (default 1) at a tenth of the learning rate for retraining; the defaults are
sized for a CPU. Choices where this differs from the authors' set-up: the pretrained backbone is not
itself a task (all weights start free, so task 1 fine-tunes the whole network from ImageNet; the
authors pre-prune the ImageNet model and count it as task 1); pruned weights restart from zero for the
next task (as in the authors' code); BatchNorm is task-specific by default (their ``--train_bn``;
``--batchnorm frozen`` gives their default); conv/linear biases stay frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from torch import Tensor, nn

from ksm.data.datasets import TaskData
from ksm.methods.base import MaskConfig
from ksm.methods.registry import register_method
from ksm.methods.sequence import PRUNE_RATIO, SequenceMethod, phase_history, scaled
from ksm.training.loop import TrainConfig

RETRAIN_LR_FACTOR = 0.1  # authors: 1e-3 for training, 1e-4 for retraining


@register_method
class PackNet(SequenceMethod):
    """One network, a uint8 task index per weight; task t uses the weights of tasks ≤ t."""

    name = "packnet"
    standard_variant, versus_subject = True, 6
    cli_options = (PRUNE_RATIO,
                   click.Option(["--retrain-epochs"], type=click.IntRange(0), default=1, show_default=True,
                                help="packnet: epochs retraining the kept weights after pruning, at lr/10."))

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 prune_ratio: float = 0.5, retrain_epochs: int = 1) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=mask, prune_ratio=prune_ratio)
        if retrain_epochs < 0:
            raise ValueError(f"retrain epochs must be ≥ 0, not {retrain_epochs}")
        self.retrain_epochs = retrain_epochs

    def options(self) -> dict[str, Any]:
        return {"prune_ratio": self.prune_ratio, "retrain_epochs": self.retrain_epochs}

    def learn(self, model: nn.Module, backbone: dict[str, Tensor], data: TaskData, cfg: TrainConfig,
              train: Callable[..., dict[str, Any]]) -> tuple[nn.Module, dict[str, Any]]:
        self.phase = "train"
        first = train(model, data, cfg)
        history = phase_history(first, "train")
        keep = {name: round((1.0 - self.prune_ratio) * n) for name, n in self.own_counts().items()}
        self.prune(model, keep)
        metrics = first
        if self.retrain_epochs:
            self.phase = "retrain"
            metrics = train(model, data, scaled(cfg, self.retrain_epochs, RETRAIN_LR_FACTOR))
            history += phase_history(metrics, "retrain")
        else:
            from ksm.training.loop import evaluate

            metrics = {**first, "top1": evaluate(model, data, self.eval_split, device=next(model.parameters()).device.type)}
        return model, {"top1": metrics["top1"], "history": history,
                       "train_seconds": first["train_seconds"] + (metrics["train_seconds"] if self.retrain_epochs else 0.0),
                       "top1_before_prune": first["top1"]}
