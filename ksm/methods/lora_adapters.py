"""LoRA per task: a low-rank update of every targeted conv/linear layer of the frozen backbone.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022 (arXiv:2106.09685):
the task's weight is ``W + (alpha / r) · B A`` with the backbone's ``W`` frozen, ``A`` (r × in)
initialised at random and ``B`` (out × r) at zero, so the task starts exactly at the backbone.
For a k×k convolution this module follows Hugging Face PEFT's ``lora.Conv2d`` (peft 0.21.2,
``peft/tuners/lora/layer.py``): ``A`` is a conv with the layer's kernel, stride and padding from
``in`` to ``r`` channels (weight ``r × in × kh × kw``), ``B`` a 1×1 conv from ``r`` to ``out``
channels (weight ``out × r × 1 × 1``); the branch adds ``scaling · B(A(dropout(x)))`` to the
layer's output, with ``scaling = alpha / r`` and dropout on the input of ``A`` only; ``A`` is
initialised as PEFT does (``kaiming_uniform_(a=√5)``), ``B`` with zeros. Folded, the branch is the
weight ``W + scaling · (B.flatten(1) @ A.flatten(1)).view(W.shape)``: exactly what PEFT's
``get_delta_weight`` computes for a conv (and ``merge_and_unload`` writes).

**Why not PEFT itself** (measured here, 2026-12-01, on this project's shared 2-core CPU machine):
``pip install peft`` (0.21.2) on top of the project's torch brings peft and 22 packages it pulls in
(transformers 5.24 alone 85 MB, plus accelerate, huggingface_hub, hf_xet, tokenizers, pydantic,
rich, typer, httpx, …), 194 MB, for about 150 lines of arithmetic on ``nn.Conv2d`` that this project
needs. It buys no speed: a training step of MobileNetV2 at 64 px, batch 32, rank 8, one thread,
timed interleaved with PEFT's ``lora.Conv2d`` on the same 35 convs (``benchmarks/lora_peft_step.py``),
took 2.67 s here and 3.05 s with PEFT in one run, 3.37 s and 3.16 s in a second (medians of 8
steps; the machine was shared, so: equal within noise), and the two compute identical features from
the same adapter. PEFT wraps each targeted layer in a ``LoraLayer`` whose ``base_layer`` child
renames the module (``features.0.0`` becomes ``…features.0.0.base_layer``), which every reader of a
run's ``layers`` would have to undo, and it does not merge grouped convs (``groups > 1`` raises
``NotImplementedError``; training needs the rank divisible by the groups). So: a small
implementation, with PEFT's arithmetic, initialisation and key names.

**Key names (PEFT's format).** ``masks.safetensors`` stores, per adapted layer ``<layer>``,
``<layer>.lora_A.weight`` (role ``lora_A``) and ``<layer>.lora_B.weight`` (role ``lora_B``), shaped
as PEFT's. PEFT's ``adapter_model.safetensors`` names the same tensors
``base_model.model.<layer>.lora_A.weight`` / ``.lora_B.weight`` (the adapter name removed), with
``r``, ``lora_alpha``, ``lora_dropout`` and ``target_modules`` in ``adapter_config.json``:
:func:`to_peft` and :func:`peft_config` give both; ``peft.set_peft_model_state_dict`` loads
:func:`to_peft`'s tensors into a PEFT model of the same torchvision backbone and reproduces this
module's features exactly (``benchmarks/lora_peft_step.py`` checks it). The task's head and
BatchNorm are PEFT's ``modules_to_save`` (their keys are the run's own, under the same prefix).

**Depthwise convs are left out.** A depthwise conv (``groups == in_channels``; 17 of MobileNetV2's
52 convs, 2.9 % of its conv weights) has one input channel per group: a rank per group is
meaningless (at most 1 × 3 × 3 = 9 numbers per channel, and PEFT needs the rank to be a multiple
of the groups), and a per-channel diagonal update would be a different method. They keep the
backbone's weights; the task BatchNorm after them is trained, as for every method with task
BatchNorm. Other grouped convs are left out for the same reason. ``run.json`` lists the adapted and
the left-out layers under ``lora``.

**Targets** (``--lora-targets``, repeatable): ``all`` (every ungrouped conv and every linear layer
of the backbone, the head excluded), ``pointwise`` (1×1 convs), ``kxk`` (convs with a larger
kernel), ``linear``. A rank must fit every adapted layer: at most ``min(out, in·kh·kw)`` (beyond it
``B A`` cannot gain rank); a larger one is refused with the first layer that cannot take it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwsim.fileio.bounded import MAX_SIZE
from ksm.network.backbones import ARCHS, replace_head
from ksm.checks import finite
from ksm.methods.base import MaskConfig, Method, maskable_layers
from ksm.methods.registry import register_method
from ksm.methods.variants import Contrast, Variant

if TYPE_CHECKING:
    from ksm.deploy.task_file import TaskReader, TaskWriter

TARGETS = ("all", "pointwise", "kxk", "linear")
PEFT_PREFIX = "base_model.model."  # PEFT's key prefix in adapter_model.safetensors
ROLE_A, ROLE_B = "lora_A", "lora_B"


def _kinds(module: nn.Module) -> set[str]:
    """The target kinds a layer belongs to (empty for grouped convs: left out)."""
    if isinstance(module, nn.Linear):
        return {"all", "linear"}
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return {"all", "pointwise" if tuple(module.kernel_size) == (1, 1) else "kxk"}
    return set()


def max_rank(module: nn.Module) -> int:
    """The largest useful rank of a layer's update: ``min(out, in/groups · kh · kw)``."""
    weight = module.weight
    return min(weight.shape[0], math.prod(weight.shape[1:]))


class LoraBranch(nn.Module):
    """The low-rank branch of one layer: ``scaling · B(A(dropout(x)))`` (PEFT's ``lora.Conv2d``/``Linear``).

    Not an ``nn.Conv2d`` itself (it computes with ``F.conv2d``), so the backbone's layer list, its
    geometry and every other method see the same layers with and without adapters.
    """

    def __init__(self, layer: nn.Module, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.rank, self.scaling = rank, alpha / rank
        self.conv = isinstance(layer, nn.Conv2d)
        w = layer.weight
        if self.conv:
            self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
            self.lora_A = nn.Parameter(w.new_empty(rank, *w.shape[1:]))
            self.lora_B = nn.Parameter(w.new_zeros(w.shape[0], rank, 1, 1))
        else:
            self.lora_A = nn.Parameter(w.new_empty(rank, w.shape[1]))
            self.lora_B = nn.Parameter(w.new_zeros(w.shape[0], rank))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """PEFT's default init: A Kaiming-uniform (a = √5, as ``nn.Conv2d``/``nn.Linear``), B zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B.zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(x)
        if self.conv:
            return F.conv2d(F.conv2d(x, self.lora_A, None, self.stride, self.padding, self.dilation),
                            self.lora_B) * self.scaling
        return F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def delta_weight(self) -> Tensor:
        """The folded update ``scaling · B A`` in the layer's weight shape (PEFT's ``get_delta_weight``)."""
        a, b = self.lora_A.flatten(1), self.lora_B.flatten(1)
        return ((b @ a) * self.scaling).view(self.lora_B.shape[0], *self.lora_A.shape[1:])


def _add_branch(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    """Forward hook of an adapted layer: its output plus its branch's."""
    return output + module.lora(inputs[0])


def branches(model: nn.Module) -> list[tuple[str, LoraBranch]]:
    """(layer name, branch) of every adapted layer, in module order."""
    return [(name[: -len(".lora")], m) for name, m in model.named_modules() if isinstance(m, LoraBranch)]


def to_peft(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """A run's LoRA tensors under PEFT's ``adapter_model.safetensors`` names (others dropped)."""
    return {PEFT_PREFIX + k: v for k, v in tensors.items() if k.endswith((".lora_A.weight", ".lora_B.weight"))}


def peft_config(record: dict[str, Any]) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for a run's adapter (``LoraConfig`` fields)."""
    lora = record["lora"]
    return {"peft_type": "LORA", "r": lora["rank"], "lora_alpha": lora["alpha"], "lora_dropout": lora["dropout"],
            "target_modules": sorted(lora["layers"]), "bias": "none", "init_lora_weights": True,
            "use_rslora": False, "fan_in_fan_out": False}


@register_method
class LoRA(Method):
    """Low-rank adapters (Hu et al., 2022) per task on the frozen backbone, with task BatchNorm and head."""

    name = "lora"
    default_batchnorm = "task"
    cli_section = "LoRA"
    cli_options = (
        # bounded as run.json's lora record bounds them (hwsim/schemas/run_record.py): rank a size, alpha and
        # alpha/rank at most 1e6; below an alpha of 1e-6 the update is nothing
        click.Option(["--lora-rank"], type=click.IntRange(1, MAX_SIZE), default=8, show_default=True,
                     help="lora: rank r of every adapter (at most min(out, in·kh·kw) of each adapted layer)."),
        click.Option(["--lora-alpha"], type=finite(1e-6, 1e6), default=8.0, show_default=True,
                     help="lora: alpha; the update is scaled by alpha/r (PEFT's default; Hu et al. keep alpha "
                          "fixed across ranks so that the learning rate need not be retuned)."),
        click.Option(["--lora-dropout"], type=finite(0, 1, max_open=True), default=0.0, show_default=True,
                     help="lora: dropout on the input of A."),
        click.Option(["--lora-targets", "lora_targets"], multiple=True, default=("all",), show_default=True,
                     metavar="all|pointwise|kxk|linear",
                     help="lora: which layers get adapters (repeatable or comma-separated); depthwise convs never do."),
    )

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 rank: int = 8, alpha: float | None = 8.0, dropout: float = 0.0,
                 targets: tuple[str, ...] | list[str] = ("all",)) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=mask)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"LoRA rank must be a whole number ≥ 1, not {rank!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), not {dropout!r}")
        targets = tuple(dict.fromkeys(targets))
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets:
            raise ValueError(f"unknown LoRA target {unknown[0] if unknown else ''!r}; choose from {', '.join(TARGETS)}")
        self.rank, self.alpha = rank, float(alpha if alpha is not None else rank)
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, not {alpha!r}")
        self.dropout, self.targets = float(dropout), targets

    def options(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets)}

    @classmethod
    def options_from_cli(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``--lora-*`` as ``rank``, ``alpha``, ``dropout`` and ``targets`` (comma-separated or repeated)."""
        targets = tuple(dict.fromkeys(t.strip() for item in values["lora_targets"] for t in item.split(",")
                                      if t.strip()))
        unknown = [t for t in targets if t not in TARGETS] or ([] if targets else [""])
        if unknown:
            raise click.BadParameter(f"unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}",
                                     param_hint="'--lora-targets'")
        return {"rank": values["lora_rank"], "alpha": values["lora_alpha"], "dropout": values["lora_dropout"],
                "targets": targets}

    @classmethod
    def comparison_variants(cls) -> tuple[Variant, ...]:
        """Two ranks, alpha fixed at 8 (PEFT's default; Hu et al. keep alpha across ranks)."""
        return (Variant("lora-r4", "lora", options=(("rank", 4), ("alpha", 8.0))),
                Variant("lora-r16", "lora", options=(("rank", 16), ("alpha", 8.0))))

    @classmethod
    def comparison_contrasts(cls) -> tuple[Contrast, ...]:
        return (Contrast.with_subject("lora-r4", 9), Contrast.with_subject("lora-r16", 10),
                Contrast("lora-r4", "lora-r16", 11))

    def pack_task(self, model: nn.Module, out: TaskWriter) -> None:
        """A and B of every adapter at the weight precision (per-channel scales in the header), and the scaling."""
        for layer, branch in branches(model):
            for part in ("lora_A", "lora_B"):
                out.weights(f"{part}.{layer}", getattr(branch, part).detach(), f"{part}.{layer}")
            out.masked.append([layer, list(branch.lora_A.shape), list(branch.lora_B.shape)])
        out.meta["scaling"] = out.record["lora"]["scaling"]

    @classmethod
    def load_task(cls, model: nn.Module, task: TaskReader) -> None:
        """Folded: ``W + scaling · B A`` (PEFT's merge)."""
        for layer, a_shape, b_shape in task.meta["masked"]:
            module = model.get_submodule(layer)
            a = task.weights(f"lora_A.{layer}", f"lora_A.{layer}").reshape(a_shape)
            b = task.weights(f"lora_B.{layer}", f"lora_B.{layer}").reshape(b_shape)
            delta = (b.flatten(1) @ a.flatten(1)) * float(task.meta["scaling"])
            module.weight.add_(delta.view(b_shape[0], *a_shape[1:]))

    def _selected(self, model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[str]]:
        chosen, left_out = [], []
        for name, module in maskable_layers(model, self.head):
            kinds = _kinds(module)
            if kinds & set(self.targets):
                chosen.append((name, module))
            elif not kinds:
                left_out.append(name)
        return chosen, left_out

    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        chosen, _ = self._selected(model)
        if not chosen:
            raise ValueError(f"--lora-targets {','.join(self.targets)}: no layer of {self.arch} to adapt")
        for name, module in chosen:
            if self.rank > max_rank(module):
                w = module.weight
                raise ValueError(f"LoRA rank {self.rank} is larger than layer {name} allows "
                                 f"(min(out {w.shape[0]}, in·kh·kw {math.prod(w.shape[1:])}) = {max_rank(module)}); "
                                 f"use --lora-rank {max_rank(module)} or less, or other --lora-targets")
        for _, module in chosen:
            if not isinstance(getattr(module, "lora", None), LoraBranch):
                module.lora = LoraBranch(module, self.rank, self.alpha, self.dropout)
                module.register_forward_hook(_add_branch)

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        super().reset(model, backbone, num_classes)
        for _, branch in branches(model):
            branch.reset()
            branch.requires_grad_(True)

    def state(self, model: nn.Module) -> dict[str, tuple[Tensor, str]]:
        out = super().state(model)
        for name, branch in branches(model):
            out[f"{name}.lora_A.weight"] = (branch.lora_A.detach().clone(), ROLE_A)
            out[f"{name}.lora_B.weight"] = (branch.lora_B.detach().clone(), ROLE_B)
        return out

    def _targets(self, model: nn.Module) -> dict[str, Tensor]:
        out = super()._targets(model)
        for name, branch in branches(model):
            out[f"{name}.lora_A.weight"], out[f"{name}.lora_B.weight"] = branch.lora_A, branch.lora_B
        return out

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """``run.json``'s ``lora``: the settings, every adapted layer with its rank, the layers left out."""
        chosen, left_out = self._selected(model)
        params = sum(b.lora_A.numel() + b.lora_B.numel() for _, b in branches(model))
        return {"lora": {"rank": self.rank, "alpha": self.alpha, "scaling": self.alpha / self.rank,
                         "dropout": self.dropout, "targets": list(self.targets),
                         "layers": {name: self.rank for name, _ in chosen}, "left_out": left_out,
                         "left_out_why": "grouped (depthwise) convs: a rank per one-channel group is meaningless",
                         "parameters": params, "key_format": "PEFT: prefix 'base_model.model.' for "
                                                             "adapter_model.safetensors"}}

    @torch.no_grad()
    def fold(self, model: nn.Module) -> nn.Module:
        """A plain torchvision model whose adapted layers hold ``W + scaling · B A`` (PEFT's merge)."""
        folded = ARCHS[self.arch][0](weights=None)
        replace_head(folded, self.arch, model.get_submodule(self.head).out_features)
        state = {k: v for k, v in model.state_dict().items() if ".lora." not in k}
        for name, branch in branches(model):
            state[f"{name}.weight"] = state[f"{name}.weight"] + branch.delta_weight()
        folded.load_state_dict(state)
        return folded.eval()
