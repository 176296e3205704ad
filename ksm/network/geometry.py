"""Per-layer geometry of a network, the workload description that :mod:`hwsim` costs.

One dummy forward pass with hooks on every ``nn.Conv2d`` and ``nn.Linear`` records, in execution
order, exactly the fields of the ``layers`` records of ``run.json`` (docs/run-folder.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _pair(value: int | tuple[int, ...] | str) -> list[int]:
    if isinstance(value, str):  # padding="same"/"valid" is not used by torchvision CNNs
        raise ValueError(f"string padding {value!r} is not supported")
    if isinstance(value, int):
        return [value, value]
    return [int(v) for v in value]


def layer_records(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> list[dict[str, Any]]:
    """Return one record per conv/linear layer of ``model`` for an input of size ``input_hw``.

    Layers that a forward pass does not reach are omitted; a layer called twice is recorded twice.
    """
    names = {module: name for name, module in model.named_modules()}
    records: list[dict[str, Any]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            records.append(
                {
                    "name": names[module],
                    "kind": "conv",
                    "in_channels": module.in_channels,
                    "out_channels": module.out_channels,
                    "kernel": _pair(module.kernel_size),
                    "stride": _pair(module.stride),
                    "padding": _pair(module.padding),
                    "groups": module.groups,
                    "bias": module.bias is not None,
                    "input_hw": [int(x.shape[-2]), int(x.shape[-1])],
                    "output_hw": [int(output.shape[-2]), int(output.shape[-1])],
                }
            )
        else:
            records.append(
                {
                    "name": names[module],
                    "kind": "linear",
                    "in_channels": module.in_features,
                    "out_channels": module.out_features,
                    "kernel": [1, 1],
                    "stride": [1, 1],
                    "padding": [0, 0],
                    "groups": 1,
                    "bias": module.bias is not None,
                    "input_hw": [1, 1],
                    "output_hw": [1, 1],
                }
            )

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *input_hw))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return records
