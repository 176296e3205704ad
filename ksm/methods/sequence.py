"""Methods that learn tasks one after another on shared weights (PackNet, CPG).

Unlike the mask methods, which leave the backbone untouched, PackNet and CPG *change* the shared
weights: task ``t`` owns some weights of every conv/linear layer, later tasks may use (PackNet) or
pick from (CPG) them but never change them. A per-weight uint8 **task index** records the owner
(0 = free, ``t`` = task at position ``t`` of the sequence, 1-based), as in PackNet's code.

Every training phase of every task goes through :func:`ksm.training.loop.train_task`: the method's
``after_backward`` hook zeroes the gradients of weights the current phase may not change and
``after_step`` puts those weights back bit for bit (Adam moves a weight whose gradient is zero
once it has momentum), so earlier tasks' weights and pruned (zeroed) weights never move.

:func:`ksm.training.pipeline.run_sequence` drives a method of this family through the tasks and writes the
sequence folder (:mod:`ksm.training.runfolder`); resumption is at task granularity. Biases of backbone
conv/linear layers are frozen (PackNet's default; MobileNetV2 and ResNet convs have none).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hwsim.workload.packed import unpack_codes
from ksm.checks import finite
from ksm.data.datasets import TaskData
from ksm.methods.base import BN_TENSORS, MaskConfig, Method, batchnorms, maskable_layers
from ksm.network.backbones import replace_head
from ksm.training.loop import TrainConfig
from ksm.training.runfolder import RunError, read_run

if TYPE_CHECKING:
    from ksm.deploy.task_file import TaskReader, TaskWriter

# One option object for both sequence methods, so that ksm-train lists it once
PRUNE_RATIO = click.Option(["--prune-ratio"], type=finite(0, 1, max_open=True), default=0.5, show_default=True,
                           help="packnet/cpg: fraction of each task's weights pruned per layer (freed for later tasks).")


def raw_weight(layer: nn.Module) -> Tensor:
    """The stored weight of a layer (under a parametrization: its ``original``)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def index_bits(tasks: int) -> int:
    """Bits of the per-weight task index for ``tasks`` tasks: ``ceil(log2(tasks + 1))`` (0 = free)."""
    return max(1, math.ceil(math.log2(tasks + 1)))


def _slices(shape: torch.Size | tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in shape)


class SequenceMethod(Method):
    """Shared trainable weights with a per-weight task index; subclasses add pruning schedules.

    Phases (``self.phase``): ``"train"`` starts a task (``reset`` restores BatchNorm from the
    backbone and makes a new head); any other phase continues the task (``reset`` keeps them).
    In every phase only the weights owned by the current task move.
    """

    default_batchnorm = "task"
    sequential = True
    has_picks = False  # CPG: a task keeps a pick mask over the earlier tasks' weights (stored in its task file)
    cli_section = "PackNet and CPG"
    eval_split = "test"  # where ``learn`` measures the task when no training phase ends it; "val" during selection

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 prune_ratio: float = 0.5) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=mask)
        if not 0.0 <= prune_ratio < 1.0:
            raise ValueError(f"prune ratio must be in [0, 1), not {prune_ratio}")
        self.prune_ratio = prune_ratio
        self.index: dict[str, Tensor] = {}
        self.position = 0
        self.phase = "train"
        self._movable: dict[str, Tensor] = {}
        self._fixed: dict[str, Tensor] = {}

    # -- set-up --------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        for name, layer in maskable_layers(model, self.head):
            idx = self.index.get(name)
            if idx is None or idx.shape != raw_weight(layer).shape:
                self.index[name] = torch.zeros(raw_weight(layer).shape, dtype=torch.uint8)

    def begin_task(self, model: nn.Module, position: int) -> None:
        """Give every free weight to the task at ``position`` (PackNet's ``make_finetuning_mask``)."""
        self.position, self.phase = position, "train"
        for idx in self.index.values():
            idx[idx == 0] = position

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        if self.phase == "train":
            with torch.no_grad():  # BatchNorm from the backbone; channels a growth added start at identity
                for name, bn in batchnorms(model):
                    for key, fill in zip(BN_TENSORS, (1.0, 0.0, 0.0, 1.0)):
                        target, source = getattr(bn, key), backbone[f"{name}.{key}"]
                        target.fill_(fill)
                        target[: source.shape[0]].copy_(source)
            replace_head(model, self.arch, num_classes)
            for _, bn in batchnorms(model):
                bn.requires_grad_(self.batchnorm == "task")
        self._movable, self._fixed = {}, {}
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            weight.requires_grad_(True)
            self._movable[name] = self.index[name] == self.position
            self._fixed[name] = weight.detach().clone()

    # -- hooks of the one training loop --------------------------------------------------------
    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            if weight.grad is not None:
                weight.grad.mul_(self._movable[name])

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            weight.copy_(torch.where(self._movable[name], weight, self._fixed[name]))

    # -- pruning -------------------------------------------------------------------------------
    @torch.no_grad()
    def prune(self, model: nn.Module, keep: dict[str, int]) -> None:
        """Keep the ``keep[layer]`` largest-magnitude weights of the current task in each layer; the
        rest are zeroed and freed (index 0) for later tasks. Ties break by position (stable sort)."""
        for name, layer in maskable_layers(model, self.head):
            weight, idx = raw_weight(layer), self.index[name]
            own = (idx == self.position).flatten().nonzero().squeeze(1)
            drop = own.numel() - keep[name]
            if drop <= 0:
                continue
            order = torch.sort(weight.detach().flatten()[own].abs(), stable=True).indices
            gone = own[order[:drop]]
            weight.view(-1)[gone] = 0.0
            idx.view(-1)[gone] = 0
            self._fixed[name] = weight.detach().clone()
            self._movable[name] = idx == self.position

    def own_counts(self) -> dict[str, int]:
        return {name: int((idx == self.position).sum()) for name, idx in self.index.items()}

    # -- what a task uses ----------------------------------------------------------------------
    @staticmethod
    def view_mask(idx: Tensor, position: int, pick: Tensor | None) -> Tensor:
        """Boolean mask of the weights that task ``position`` uses, given the layer's task index."""
        return (idx >= 1) & (idx <= position)

    def picks(self, model: nn.Module) -> dict[str, Tensor]:
        """Per-layer uint8 pick masks of the current task (CPG only)."""
        return {}

    # -- task state ----------------------------------------------------------------------------
    def state(self, model: nn.Module) -> dict[str, tuple[Tensor, str]]:
        out = super().state(model)
        for name, pick in self.picks(model).items():
            out[f"{name}.pick"] = (pick, "pick")
        return out

    def shared_tensors(self, model: nn.Module) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, layer in maskable_layers(model, self.head):
            out[f"{name}.weight"] = raw_weight(layer).detach().clone().contiguous()
            out[f"{name}.task"] = self.index[name].clone().contiguous()
        return out

    @torch.no_grad()
    def load_shared(self, model: nn.Module, shared: dict[str, Tensor]) -> None:
        """Put the shared weights and task index (as written by :meth:`shared_tensors`) on ``model``."""
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            weight.copy_(shared[f"{name}.weight"])
            self.index[name] = shared[f"{name}.task"].clone()

    def mask_density(self, model: nn.Module) -> float | None:
        return None

    @torch.no_grad()
    def fold(self, model: nn.Module) -> nn.Module:
        """Models from :func:`ksm.training.pipeline.load_sequence_task` already hold the task's weights: a plain copy."""
        if any(parametrize.is_parametrized(m, "weight") for _, m in maskable_layers(model, self.head)):
            raise ValueError("fold a model loaded with ksm.training.pipeline.load_sequence_task")
        return copy.deepcopy(model).eval()

    # -- one task --------------------------------------------------------------------------------
    def learn(self, model: nn.Module, backbone: dict[str, Tensor], data: TaskData, cfg: TrainConfig,
              train: Callable[..., dict[str, Any]]) -> tuple[nn.Module, dict[str, Any]]:
        """Train the current task through ``train`` (``train_task`` with the device and progress bound);
        return (the model, possibly replaced by a wider one, and the metrics)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Method hyperparameters recorded in ``run.json`` ``train``."""
        return {"prune_ratio": self.prune_ratio}

    def extra_record(self) -> dict[str, Any]:
        return {}

    def grown_weights(self) -> dict[str, int]:
        """Per layer, the weight elements the current task's growth added (CPG)."""
        return {}

    # -- the deployable task file ------------------------------------------------------------------
    def pack_task(self, model: nn.Module, out: TaskWriter) -> None:
        """The task-index map is the sequence's (stored once); the task adds BatchNorm and the head, and
        with pick masks (CPG) one bit per weight of an earlier task."""
        folder, record = out.folder, out.record
        seq = record["sequence"]
        _, tensors = read_run(folder)
        weights_by_layer = seq.get("weights", {})
        picks = []
        for layer, counts in weights_by_layer.items():
            if counts.get("grown", 0):
                out.refuse(f"{folder}: CPG task grew {layer}; packing the weights a growth added is not "
                           f"supported yet (train without --target-accuracy, or deploy the run folder)")
            if not self.has_picks or not counts.get("earlier", 0):
                continue
            pick = tensors.get(f"{layer}.pick")
            if pick is None:
                raise RunError(f"{folder}/masks.safetensors: {layer}.pick missing (CPG task after the first)")
            owner = _shared_task_map(folder, record, layer, tuple(pick.shape)).reshape(-1)
            earlier = (owner >= 1) & (owner < int(seq["position"]))
            if int(earlier.sum()) != int(counts["earlier"]):
                raise RunError(f"{folder}: {layer}: the shared file's task map no longer matches this task "
                               f"({int(earlier.sum())} earlier weights, run.json says {counts['earlier']})")
            picks.append(pick.reshape(-1)[earlier].numpy())
        if picks:
            out.codes("pick.bits", np.concatenate(picks), 1)
        out.meta["sequence"] = {"position": seq["position"], "tasks": len(seq["tasks"]),
                                "index_bits": seq.get("index_bits"), "shared_sha256": seq.get("shared_sha256"),
                                "view_sha256": seq.get("view_sha256"),
                                "weights": [[n, int(c.get("earlier", 0)), int(c.get("grown", 0))]
                                            for n, c in weights_by_layer.items()]}

    @classmethod
    def load_task(cls, model: nn.Module, task: TaskReader) -> None:
        """Task ``t`` uses the shared weights :meth:`view_mask` keeps: owners ``1..t`` (PackNet), or ``t`` and
        the earlier ones its pick mask keeps (CPG), as :func:`ksm.training.pipeline.load_sequence_task` does."""
        from safetensors.torch import load_file

        shared = task.shared
        if shared is None:
            task.refuse(f"{task.path}: a {cls.name} task loads with its sequence's shared weights: "
                        f"load_task(path, shared=SEQUENCE/shared.safetensors)")
        try:
            stored = load_file(str(shared))
        except (OSError, Exception) as exc:  # noqa: BLE001 - any unreadable file
            task.refuse(f"{shared}: not a readable shared weights file ({exc.__class__.__name__})")
        seq = task.meta["sequence"]
        position = int(seq["position"])
        counts = [(name, earlier) for name, earlier, _ in seq["weights"]]
        total = sum(e for _, e in counts) if cls.has_picks else 0
        picks = task.arrays.get("pick.bits", np.zeros(0, np.uint8))
        pick_flat = torch.from_numpy(unpack_codes(picks, 1, total).astype(bool)) if total else None
        start = 0
        for name, earlier_count in counts:
            module = model.get_submodule(name)
            if f"{name}.weight" not in stored or f"{name}.task" not in stored:
                task.refuse(f"{shared}: {name}.weight or {name}.task missing")
            crop = _slices(module.weight.shape)
            weight, owner = stored[f"{name}.weight"][crop], stored[f"{name}.task"][crop].long()
            if weight.shape != module.weight.shape:
                task.refuse(f"{shared}: {name}.weight {list(weight.shape)} is smaller than the layer")
            chosen = torch.zeros(owner.numel(), dtype=torch.bool)  # the earlier tasks' weights it picks
            if cls.has_picks and earlier_count:
                earlier = (owner >= 1) & (owner < position)
                if pick_flat is None or int(earlier.sum()) != earlier_count:
                    task.refuse(f"{shared}: {name}: the task map does not match the task file "
                                f"({int(earlier.sum())} earlier weights, the file has {earlier_count})")
                chosen[earlier.reshape(-1)] = pick_flat[start:start + earlier_count]
                start += earlier_count
            module.weight.copy_(weight * cls.view_mask(owner, position, chosen.view_as(owner)))


# --------------------------------------------------------------------------------------------
# What a task computes with


def view_sha256(method: SequenceMethod, shared: dict[str, Tensor], position: int,
                picks: dict[str, Tensor], shapes: dict[str, tuple[int, ...]]) -> str:
    """sha256 of the weights task ``position`` uses (its geometry, zeros elsewhere): unchanged by later tasks."""
    h = hashlib.sha256()
    for name in sorted(shapes):
        w, idx = task_weight(method, shared, name, position, picks.get(name), shapes[name])
        h.update(name.encode())
        h.update(w.numpy().tobytes())
        h.update(idx.numpy().tobytes())
    return h.hexdigest()


def task_weight(method: SequenceMethod, shared: dict[str, Tensor], name: str, position: int,
                pick: Tensor | None, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(the weight task ``position`` computes with, its task index), cut to the task's geometry."""
    cut = _slices(shape)
    w, idx = shared[f"{name}.weight"][cut], shared[f"{name}.task"][cut]
    seen = torch.where((idx >= 1) & (idx <= position), idx, torch.zeros_like(idx))
    return torch.where(method.view_mask(idx, position, pick), w, torch.zeros_like(w)), seen


def _shared_task_map(folder: Path, record: dict[str, Any], layer: str, shape: tuple[int, ...]) -> Tensor:
    from safetensors import safe_open

    path = folder / record["sequence"]["shared"]
    with safe_open(str(path), framework="pt") as handle:
        task = handle.get_tensor(f"{layer}.task")
    return task[_slices(shape)]


def phase_history(metrics: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [{**h, "phase": phase} for h in metrics["history"]]


def scaled(cfg: TrainConfig, epochs: int, lr_factor: float) -> TrainConfig:
    return replace(cfg, epochs=epochs, lr_body=cfg.lr_body * lr_factor, lr_head=cfg.lr_head * lr_factor)
