"""Fine-tuning: every weight of the backbone trained and stored per task, the storage-heavy upper reference.

Each task keeps a whole copy of the network's conv and linear weights (and its BatchNorm), so its
accuracy is the mark a mask method is measured against and its storage the cost a mask avoids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ksm.methods.base import Method, maskable_layers
from ksm.methods.registry import register_method

if TYPE_CHECKING:
    from ksm.deploy.task_file import TaskReader, TaskWriter


@register_method
class FineTune(Method):
    """Every weight trained per task (the storage-heavy upper reference)."""

    name = "finetune"
    default_batchnorm = "task"
    standard_variant, versus_subject = True, 2

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        super().reset(model, backbone, num_classes)
        with torch.no_grad():
            for name, layer in maskable_layers(model, self.head):
                layer.weight.copy_(backbone[f"{name}.weight"])
                layer.weight.requires_grad_(True)
                if layer.bias is not None:
                    layer.bias.copy_(backbone[f"{name}.bias"])
                    layer.bias.requires_grad_(True)

    def state(self, model: nn.Module) -> dict[str, tuple[Tensor, str]]:
        out = super().state(model)
        for name, layer in maskable_layers(model, self.head):
            out[f"{name}.weight"] = (layer.weight.detach().clone(), "weight")
            if layer.bias is not None:
                out[f"{name}.bias"] = (layer.bias.detach().clone(), "weight")
        return out

    def _targets(self, model: nn.Module) -> dict[str, Tensor]:
        out = super()._targets(model)
        for name, layer in maskable_layers(model, self.head):
            out[f"{name}.weight"] = layer.weight
            if layer.bias is not None:
                out[f"{name}.bias"] = layer.bias
        return out

    def pack_task(self, model: nn.Module, out: TaskWriter) -> None:
        """The task's own weights at the profile's weight precision, biases at the psum precision."""
        for layer, module in maskable_layers(model, self.head):
            out.weights(f"weight.{layer}", module.weight, layer)
            out.masked.append([layer, list(module.weight.shape)])
            if module.bias is not None:
                out.floats(f"bias.{layer}", module.bias, out.precisions.psums, "bias")

    @classmethod
    def load_task(cls, model: nn.Module, task: TaskReader) -> None:
        for layer, _ in task.meta["masked"]:
            module = model.get_submodule(layer)
            module.weight.copy_(task.weights(f"weight.{layer}", layer))
            if f"bias.{layer}" in task.arrays:
                module.bias.copy_(task.floats(f"bias.{layer}"))
