"""CPG, Compacting-Picking-Growing (Hung et al., NeurIPS 2019), on the shared loop of ``ksm.training.loop``.

Mechanics as in the authors' code (``ivclab/CPG``, ``models/layers.py``; docs/bibliography.md [CPG]), per task ``t``:

- **pick**: a Piggyback-style real-valued mask (init ``--mask-init``, binarised at ``--threshold``
  with the identity straight-through estimator) over every weight of tasks ``1..t-1``, trained jointly
  with the free (released) weights, which the task owns. Earlier tasks' weights never change.
- **grow**: if the task's accuracy after picking falls short of ``--target-accuracy``, the network is
  widened (MobileNetV2's ``width_mult`` + ``--grow-step``; the new weights belong to task ``t``) and the
  pick phase restarts, at most ``--max-grow`` times. Earlier tasks keep their narrower geometry: the
  grown channels are invisible to them. The accuracy compared with the target is the last epoch's
  training accuracy (the authors use their validation split, which is the benchmark's test split;
  this project does no model selection on test).
- **compact**: gradual magnitude pruning of the task's own weights, in ``--prune-steps`` equal steps up to
  ``--prune-ratio`` per layer, each step followed by ``--prune-epochs`` of retraining at a tenth of the
  learning rate; pruned weights are zeroed and released for later tasks.

Schedules: the authors run up to 300 epochs of pick/fine-tune (plateau early stop), then up to 10
pruning steps of 20 epochs (sparsity +0.1 per step) and grow by +0.5 width and retrain when short of the
goal: hundreds of epochs per task. The defaults here (``--epochs`` for picking, 2 pruning steps of 1
epoch to 0.5, no target so no growth) are sized for a CPU; ``run.json`` records the epochs spent.
Differences: one optimiser (Adam, two groups, cosine) instead of SGD for weights + Adam for masks; the
compaction ratio is set, not chosen afterwards from the accuracy record; BatchNorm is task-specific as
in the authors' code; growth is implemented for MobileNetV2 only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ksm.checks import finite
from ksm.network.backbones import ARCHS, replace_head
from ksm.data.datasets import TaskData
from ksm.methods.soft_masks import _IdentitySTE
from ksm.methods.base import MaskConfig, maskable_layers
from ksm.methods.registry import register_method
from ksm.methods.sequence import PRUNE_RATIO, SequenceMethod, phase_history, raw_weight, scaled
from ksm.training.loop import TrainConfig

COMPACT_LR_FACTOR = 0.1


class PickMask(nn.Module):
    """W ⊙ (1 where the task owns or the weight is free, binarised pick mask over earlier tasks' weights)."""

    def __init__(self, shape: torch.Size, init: float, threshold: float) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.full(tuple(shape), float(init)))
        self.register_buffer("earlier", torch.zeros(tuple(shape), dtype=torch.bool))
        self.threshold = threshold

    def forward(self, weight: Tensor) -> Tensor:
        if not bool(self.earlier.any()):
            return weight
        pick = _IdentitySTE.apply(self.mask, self.threshold)
        return weight * torch.where(self.earlier, pick, torch.ones_like(pick))

    @torch.no_grad()
    def deployable(self) -> Tensor:
        return ((self.mask > self.threshold) & self.earlier).to(torch.uint8)


@torch.no_grad()
def widen(model: nn.Module, arch: str, width_mult: float, head: str) -> nn.Module:
    """A new MobileNetV2 at ``width_mult`` whose leading channels hold ``model``'s tensors.

    Conv weights, BatchNorm tensors and the classifier head are copied into the top-left corner of
    the wider tensors; the new entries keep torchvision's initialisation. ``model`` may carry
    parametrizations (their stored ``original`` weights are copied).
    """
    if arch != "mobilenet_v2":
        raise ValueError(f"CPG growth needs a width multiplier; implemented for mobilenet_v2, not {arch!r}")
    old_head = model.get_submodule(head)
    new = ARCHS[arch][0](weights=None, width_mult=width_mult)
    replace_head(new, arch, old_head.out_features)
    modules = dict(model.named_modules())
    for name, module in new.named_modules():
        if name not in modules or not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            continue
        source = modules[name]
        for key, target in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            value = raw_weight(source) if key == "weight" and parametrize.is_parametrized(source, "weight") \
                else getattr(source, key)
            if target.dim() == 0:
                target.copy_(value)
            else:
                target[tuple(slice(0, n) for n in value.shape)].copy_(value)
    return new


@register_method
class CPG(SequenceMethod):
    """Compact (gradual pruning), pick (a learned mask over earlier tasks' weights), grow (widen)."""

    name = "cpg"
    has_picks = True
    standard_variant, versus_subject = True, 7
    cli_options = (
        PRUNE_RATIO,
        click.Option(["--prune-steps"], type=click.IntRange(0), default=2, show_default=True,
                     help="cpg: gradual pruning steps up to --prune-ratio."),
        click.Option(["--prune-epochs"], type=click.IntRange(0), default=1, show_default=True,
                     help="cpg: epochs of retraining after each pruning step, at lr/10."),
        click.Option(["--target-accuracy"], type=finite(0, 1, min_open=True), default=None,
                     help="cpg: grow the network when a task's training accuracy stays below this fraction "
                          "(default: never)."),
        # Bounded so that a sequence of up to 31 tasks, each growing the most it may, stays within the width
        # multiplier run.json accepts (cpg.width_mult <= 1024): 1 + 4 * 8 * 31 = 993.
        click.Option(["--grow-step"], type=finite(0, 4, min_open=True), default=0.5, show_default=True,
                     help="cpg: width multiplier added per growth (mobilenet_v2), in (0, 4]."),
        click.Option(["--max-grow"], type=click.IntRange(0, 8), default=1, show_default=True,
                     help="cpg: growths per task at most."),
    )

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 prune_ratio: float = 0.5, prune_steps: int = 2, prune_epochs: int = 1,
                 target_accuracy: float | None = None, grow_step: float = 0.5, max_grow: int = 1) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=mask, prune_ratio=prune_ratio)
        if prune_steps < 0 or prune_epochs < 0 or max_grow < 0:
            raise ValueError("prune steps, prune epochs and max grow must be ≥ 0")
        if target_accuracy is not None and not 0.0 < target_accuracy <= 1.0:
            raise ValueError(f"target accuracy is a fraction in (0, 1], not {target_accuracy}")
        if grow_step <= 0:
            raise ValueError(f"grow step must be > 0, not {grow_step}")
        if target_accuracy is not None and max_grow and arch != "mobilenet_v2":
            raise ValueError(f"CPG growth (--target-accuracy) is implemented for mobilenet_v2, not {arch!r}")
        self.prune_steps, self.prune_epochs = prune_steps, prune_epochs
        self.target_accuracy, self.grow_step, self.max_grow = target_accuracy, grow_step, max_grow
        self.width_mult = 1.0
        self.grown: dict[str, int] = {}  # layer -> weight elements this task's growth added
        self.grow_steps = 0

    def options(self) -> dict[str, Any]:
        return {"prune_ratio": self.prune_ratio, "prune_steps": self.prune_steps, "prune_epochs": self.prune_epochs,
                "target_accuracy": self.target_accuracy, "grow_step": self.grow_step, "max_grow": self.max_grow}

    # -- the pick masks --------------------------------------------------------------------------
    def _picks(self, model: nn.Module):
        for name, layer in maskable_layers(model, self.head):
            if parametrize.is_parametrized(layer, "weight"):
                yield name, layer.parametrizations.weight[0]

    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        for _, layer in maskable_layers(model, self.head):
            if not parametrize.is_parametrized(layer, "weight"):
                parametrize.register_parametrization(
                    layer, "weight", PickMask(layer.weight.shape, self.mask.init, self.mask.threshold), unsafe=True)

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        super().reset(model, backbone, num_classes)
        if self.phase == "train":
            with torch.no_grad():
                for name, pick in self._picks(model):
                    pick.earlier.copy_((self.index[name] >= 1) & (self.index[name] < self.position))
                    pick.mask.fill_(self.mask.init)
                    pick.mask.requires_grad_(self.position > 1)

    def picks(self, model: nn.Module) -> dict[str, Tensor]:
        if self.position <= 1:
            return {}
        return {name: pick.deployable() for name, pick in self._picks(model)}

    @staticmethod
    def view_mask(idx: Tensor, position: int, pick: Tensor | None) -> Tensor:
        earlier = (idx >= 1) & (idx < position)
        picked = earlier if pick is None else earlier & pick.bool()
        return (idx == position) | picked

    # -- growth ----------------------------------------------------------------------------------
    def restore_geometry(self, model: nn.Module, record: dict[str, Any]) -> nn.Module:
        """The backbone at the width a finished task recorded (``run.json`` ``cpg.width_mult``)."""
        width = float(record.get("cpg", {}).get("width_mult", 1.0))
        self.width_mult = width
        if width == 1.0:
            return model
        return widen(model, self.arch, width, self.head)

    def grow(self, model: nn.Module) -> nn.Module:
        before = {name: raw_weight(layer).numel() for name, layer in maskable_layers(model, self.head)}
        wider = widen(model, self.arch, self.width_mult + self.grow_step, self.head)
        self.width_mult += self.grow_step
        self.grow_steps += 1
        for name, layer in maskable_layers(wider, self.head):
            old = self.index[name]
            idx = torch.full(layer.weight.shape, self.position, dtype=torch.uint8)
            idx[tuple(slice(0, n) for n in old.shape)] = old
            self.index[name] = idx
            self.grown[name] = self.grown.get(name, 0) + layer.weight.numel() - before[name]
        self.prepare(wider)
        return wider

    def learn(self, model: nn.Module, backbone: dict[str, Tensor], data: TaskData, cfg: TrainConfig,
              train: Callable[..., dict[str, Any]]) -> tuple[nn.Module, dict[str, Any]]:
        self.grown, self.grow_steps = {}, 0
        history: list[dict[str, Any]] = []
        seconds = 0.0
        while True:
            self.phase = "train"
            metrics = train(model, data, cfg)
            history += phase_history(metrics, "pick" if self.position > 1 else "train")
            seconds += metrics["train_seconds"]
            reached = metrics["history"][-1]["train_top1"] if metrics["history"] else 0.0
            if self.target_accuracy is None or reached >= self.target_accuracy or self.grow_steps >= self.max_grow:
                break
            model = self.grow(model)
        before_compact = metrics["top1"]
        start = self.own_counts()
        for step in range(1, self.prune_steps + 1):
            ratio = self.prune_ratio * step / self.prune_steps
            self.prune(model, {name: round((1.0 - ratio) * n) for name, n in start.items()})
            if self.prune_epochs:
                self.phase = "compact"
                metrics = train(model, data, scaled(cfg, self.prune_epochs, COMPACT_LR_FACTOR))
                history += phase_history(metrics, f"compact {ratio:.2f}")
                seconds += metrics["train_seconds"]
        if self.prune_steps and not self.prune_epochs:
            from ksm.training.loop import evaluate

            metrics = {**metrics, "top1": evaluate(model, data, self.eval_split, device=next(model.parameters()).device.type)}
        return model, {"top1": metrics["top1"], "history": history, "train_seconds": seconds,
                       "top1_before_compact": before_compact}

    def extra_record(self) -> dict[str, Any]:
        return {"cpg": {"width_mult": self.width_mult, "grow_steps": self.grow_steps,
                        "grown_weights": sum(self.grown.values()), "target_accuracy": self.target_accuracy}}

    def grown_weights(self) -> dict[str, int]:
        return dict(self.grown)
