"""What a method is: what it adds to the frozen backbone, what it trains and what it stores per task.

A method is a small object. ``prepare`` freezes the backbone and attaches the method's masks once;
``reset`` starts a new task from the pristine backbone (masks at their init, BatchNorm from the
backbone, a fresh head); ``state`` returns the task-specific tensors with their run-folder roles
(docs/run-folder.md); ``load_state`` puts a task's tensors back. Switching tasks on one model is
``load_state``: nothing else of the backbone changes.

Everything else that differs between methods is the class's too, so that a new method is its class
plus its catalogue row (:mod:`hwsim.catalogue`): its mask hyperparameters (``default_mask``), its
``ksm-train`` options (``cli_options``, ``options_from_cli``), how it packs and loads its deployable
task file (``pack_task``, ``load_task``, :mod:`ksm.deploy.task_file`), and its ``ksm-compare`` variants and contrasts
(``comparison_variants``, ``comparison_contrasts``, :mod:`ksm.methods.variants`).

This module holds what the methods share: :class:`Method`, :class:`MaskedMethod` (a learned mask on
every conv and linear weight), :class:`MaskConfig` and the walks over the layers a method touches.
Each built-in method is a module of its own: :mod:`~ksm.methods.kernel_soft_mask` (KSM),
:mod:`~ksm.methods.piggyback`, :mod:`~ksm.methods.packnet`, :mod:`~ksm.methods.cpg`,
:mod:`~ksm.methods.finetune`, :mod:`~ksm.methods.head_only` and :mod:`~ksm.methods.lora_adapters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import click
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hwsim import catalogue
from hwsim.workload.packed import mask_bits, unpack_codes
from ksm.methods.soft_masks import DEFAULT_INIT, DEFAULT_THRESHOLD, scale_codes, scale_values, soft_part
from ksm.methods.variants import Contrast, Variant
from ksm.network.backbones import ARCHS, classifier_path, replace_head

if TYPE_CHECKING:
    from ksm.deploy.task_file import TaskReader, TaskWriter

BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class MaskConfig:
    """Mask hyperparameters; the defaults are the authors' code values (``modnets/layers.py``; docs/bibliography.md [KSM], [Piggyback])."""

    init: float = DEFAULT_INIT
    threshold: float = DEFAULT_THRESHOLD
    beta: float = 1200.0
    temperature: float = 100.0


def maskable_layers(model: nn.Module, head: str) -> Iterator[tuple[str, nn.Module]]:
    """Every conv and linear layer of the backbone, the task head excluded."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and name != head:
            yield name, module


def batchnorms(model: nn.Module) -> Iterator[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    """Every BatchNorm layer: a method keeps them frozen or stores them per task (its ``batchnorm``)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            yield name, module


class Method:
    """Base: a frozen backbone with a new head; subclasses add masks or unfreeze weights."""

    name = "base"
    default_batchnorm = "frozen"
    trains_body = True  # False: only the head learns, so the body learning rate changes nothing (head only)
    cli_section = ""  # the ksm-train --help section that lists cli_options
    cli_options: tuple[click.Option, ...] = ()  # its own ksm-train options (an option two methods share: one object)
    standard_variant = False  # its default variant is in the published comparison (else asked for by name)
    versus_subject: int | None = None  # its default variant against KSM's: this row of the report's contrasts
    # the mask hyperparameters it trains with unless told otherwise (ksm-train's mask options, a comparison
    # variant); run.json records ``self.mask``, what it actually trained with
    default_mask: MaskConfig = MaskConfig()

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None) -> None:
        self.arch, self.head = arch, classifier_path(arch)
        self.batchnorm = batchnorm or self.default_batchnorm
        if self.batchnorm not in ("task", "frozen"):
            raise ValueError(f"batchnorm must be 'task' or 'frozen', not {self.batchnorm!r}")
        self.mask = self.default_mask if mask is None else mask

    # -- set-up --------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> None:
        """Freeze every backbone tensor, then attach this method's masks (once per model)."""
        model.requires_grad_(False)

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        """Start a new task: backbone tensors restored, masks re-initialised, a new head."""
        with torch.no_grad():
            for name, bn in batchnorms(model):
                for key in BN_TENSORS:
                    getattr(bn, key).copy_(backbone[f"{name}.{key}"])
        replace_head(model, self.arch, num_classes)
        for _, bn in batchnorms(model):
            bn.requires_grad_(self.batchnorm == "task")

    # -- training ------------------------------------------------------------------------------
    def trainable(self, model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone-side parameters: masks, BatchNorm, weights; head parameters)."""
        head = list(model.get_submodule(self.head).parameters())
        ids = {id(p) for p in head}
        body = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return body, head

    def after_backward(self, model: nn.Module) -> None:
        """Hook between ``backward`` and the optimiser step (PackNet zeroes gradients of older tasks' weights)."""

    def after_step(self, model: nn.Module) -> None:
        """Hook after the optimiser step (e.g. re-apply a pruning mask)."""

    def train_mode(self, model: nn.Module) -> None:
        """``model.train()``, with frozen BatchNorm kept in eval mode (running statistics untouched)."""
        model.train()
        if self.batchnorm == "frozen":
            for _, bn in batchnorms(model):
                bn.eval()

    # -- task state ----------------------------------------------------------------------------
    def state(self, model: nn.Module) -> dict[str, tuple[Tensor, str]]:
        """Task-specific tensors keyed as in masks.safetensors, each with its role."""
        out: dict[str, tuple[Tensor, str]] = {}
        if self.batchnorm == "task":
            for name, bn in batchnorms(model):
                for key in BN_TENSORS:
                    out[f"{name}.{key}"] = (getattr(bn, key).detach().clone(), "batchnorm")
        head = model.get_submodule(self.head)
        out[f"{self.head}.weight"] = (head.weight.detach().clone(), "head")
        out[f"{self.head}.bias"] = (head.bias.detach().clone(), "head")
        return out

    def load_state(self, model: nn.Module, tensors: dict[str, Tensor]) -> None:
        """Put a task's tensors (as written by :meth:`state`) onto a prepared model."""
        weight = tensors[f"{self.head}.weight"]
        if model.get_submodule(self.head).weight.shape != weight.shape:
            replace_head(model, self.arch, weight.shape[0])
        targets = self._targets(model)
        with torch.no_grad():
            for key, value in tensors.items():
                if key in targets:
                    target = targets[key]
                    if target.shape != value.shape:
                        raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
                    target.copy_(value)

    def _targets(self, model: nn.Module) -> dict[str, Tensor]:
        """Where each state key lives in the model."""
        out: dict[str, Tensor] = {}
        for name, bn in batchnorms(model):
            for key in BN_TENSORS:
                out[f"{name}.{key}"] = getattr(bn, key)
        head = model.get_submodule(self.head)
        out[f"{self.head}.weight"], out[f"{self.head}.bias"] = head.weight, head.bias
        return out

    def mask_density(self, model: nn.Module) -> float | None:
        return None

    @property
    def traits(self) -> catalogue.MethodTraits:
        """This method's torch-free row in the catalogue."""
        return catalogue.get(self.name)

    # -- what ksm-train, ksm-export --pack and ksm-compare ask of a method ------------------------
    @classmethod
    def options_from_cli(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` from ksm-train's parsed ``values`` (its ``cli_options``,
        by parameter name); a bad value raises ``click.BadParameter`` naming the option."""
        return {option.name: values[option.name] for option in cls.cli_options if option.name}

    @classmethod
    def comparison_variants(cls) -> tuple[Variant, ...]:
        """The variants ``ksm-compare`` can run of this method: by default the method with its defaults."""
        return (Variant(cls.name, cls.name, standard=cls.standard_variant),)

    @classmethod
    def comparison_contrasts(cls) -> tuple[Contrast, ...]:
        """The differences of its variants that the comparison report tests: by default, with
        ``versus_subject``, its default variant against the subject's (KSM's)."""
        return () if cls.versus_subject is None else (Contrast.with_subject(cls.name, cls.versus_subject),)

    def pack_task(self, model: nn.Module, out: TaskWriter) -> None:
        """Write what this method stores per task besides BatchNorm and the head (:mod:`ksm.deploy.task_file`).

        The base class stores nothing, which is right for a method whose mask kind stores nothing (head
        only); any other kind is refused, so that no task is silently packed without its mask.
        """
        _stores_nothing(self.name, type(self), out.refuse)

    @classmethod
    def load_task(cls, model: nn.Module, task: TaskReader) -> None:
        """Put what :meth:`pack_task` stored onto the backbone ``model`` (BatchNorm and the head are done after)."""
        _stores_nothing(cls.name, cls, task.refuse)

    def options(self) -> dict[str, Any]:
        """The method's own options, recorded as ``run.json`` ``method_options`` to rebuild it."""
        return {}

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """Extra top-level ``run.json`` keys this method records about its task (e.g. LoRA's ``lora``)."""
        return {}

    @torch.no_grad()
    def fold(self, model: nn.Module) -> nn.Module:
        """A new, ordinary torchvision model whose weights are the task's W_t = M ⊙ W.

        Built fresh rather than deep-copied: parametrize's injected class is shared between a
        module and its deep copy, so removing the parametrization from a copy breaks the original.
        """
        folded = ARCHS[self.arch][0](weights=None)
        replace_head(folded, self.arch, model.get_submodule(self.head).out_features)
        state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
        for name, module in maskable_layers(model, self.head):
            state[f"{name}.weight"] = module.weight.detach().clone()
        folded.load_state_dict(state)
        return folded.eval()


def _stores_nothing(name: str, cls: type, refuse: Any) -> None:
    kind = catalogue.get(name).mask
    if kind != catalogue.NONE:
        refuse(f"method {name!r}: its class {cls.__qualname__} does not say how to pack or load its "
               f"{kind.name!r} mask (define pack_task and load_task)")


class MaskedMethod(Method):
    """A frozen backbone whose conv/linear weights are multiplied by a learned per-task mask.

    The base of KSM and Piggyback, and of any method that differs from them only in its mask: a subclass
    gives ``_new_mask``, the parametrization of one weight (a module with a real ``mask`` tensor and
    ``deployable() -> (binary, scale or None)``, as in :mod:`ksm.methods.soft_masks`), and, if its mask
    has a soft part to store beside the bits, ``_soft``. Preparing, resetting, the task state, the mask
    density and packing and loading the task file are then this class's.
    """

    def _new_mask(self, weight: Tensor) -> nn.Module:
        """The mask parametrization of ``weight``, at the start of a task."""
        raise NotImplementedError

    def _masks(self, model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        for name, module in maskable_layers(model, self.head):
            if parametrize.is_parametrized(module, "weight"):
                yield name, module.parametrizations.weight[0]

    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        for _, module in list(maskable_layers(model, self.head)):
            if not parametrize.is_parametrized(module, "weight"):
                parametrize.register_parametrization(module, "weight", self._new_mask(module.weight),
                                                     unsafe=True)

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        super().reset(model, backbone, num_classes)
        with torch.no_grad():
            for _, mask in self._masks(model):
                mask.mask.fill_(self.mask.init)

    def state(self, model: nn.Module) -> dict[str, tuple[Tensor, str]]:
        out = super().state(model)
        for name, mask in self._masks(model):
            out[f"{name}.mask"] = (mask.mask.detach().clone(), "mask")
            binary, scale = mask.deployable()
            out[f"{name}.binary"] = (binary, "binary")
            if scale is not None:
                out[f"{name}.scale"] = (scale, "scale")
        return out

    def _targets(self, model: nn.Module) -> dict[str, Tensor]:
        out = super()._targets(model)
        for name, mask in self._masks(model):
            out[f"{name}.mask"] = mask.mask
        return out

    @torch.no_grad()
    def mask_density(self, model: nn.Module) -> float | None:
        ones = total = 0
        for _, mask in self._masks(model):
            binary, _ = mask.deployable()
            ones += int(binary.sum())
            total += binary.numel()
        return ones / total if total else None

    def _soft(self, model: nn.Module) -> bool:
        """Whether the task's masks have a soft part to store beside the bits (KSM trained with it)."""
        return False

    def pack_task(self, model: nn.Module, out: TaskWriter) -> None:
        """One bit per mask entry; a soft part's scale at ``out.scale_bits`` bits where the bit is 0 (the
        scale is 0 where it is 1, KSM Eq. 4-5); the accuracy measured at that scale width if it was swept."""
        soft = self._soft(model)
        binaries, codes = [], []
        for layer, mask in self._masks(model):
            binary, _ = mask.deployable()
            out.masked.append([layer, list(mask.mask.shape)])
            binaries.append(binary.reshape(-1).numpy())
            if soft and out.scale_bits > 0:
                scale = soft_part(mask.mask.detach(), binary.bool())
                codes.append(scale_codes(scale[binary == 0], out.scale_bits))
        out.codes("mask.binary", np.concatenate(binaries), 1)
        if codes:
            out.codes("mask.scale", np.concatenate(codes), out.scale_bits)
            out.meta["scale_bits"] = out.scale_bits
        out.meta["soft"] = soft
        key = str(out.scale_bits if soft else 0)
        swept = out.record["metrics"].get("soft_precision") or {}  # only a soft KSM run sweeps
        out.meta["top1"] = swept.get(key, out.record["metrics"]["top1"])
        out.meta["top1_measured_at"] = f"soft scale {key} bits" if key in swept else "float"

    @classmethod
    def load_task(cls, model: nn.Module, task: TaskReader) -> None:
        """``W_t = (M_b + A_K) ⊙ W``: the bits, and the soft scale where the bit is 0."""
        meta, arrays = task.meta, task.arrays
        bits = int(meta.get("scale_bits", 0))
        binaries = mask_bits(meta, arrays)
        zeros = sum(int((b == 0).sum()) for b in binaries.values())
        codes = unpack_codes(arrays["mask.scale"], bits, zeros) if bits and "mask.scale" in arrays else None
        start = 0
        for layer, _ in meta["masked"]:
            module = model.get_submodule(layer)
            binary = torch.from_numpy(binaries[layer].astype(np.float32))
            mask = binary.clone()
            if codes is not None:
                off = binary == 0
                n = int(off.sum())
                mask[off] = scale_values(codes[start:start + n], bits)
                start += n
            if tuple(mask.shape) != tuple(module.weight.shape[:mask.dim()]):
                task.refuse(f"{layer}: mask {list(mask.shape)} does not fit the weight {list(module.weight.shape)}")
            module.weight.mul_(mask.view(*mask.shape, *([1] * (module.weight.dim() - mask.dim()))))
