"""The "shared int8 backbone, mask on the fly" deployment form of a mask method, as a plain model.

``ksm-sim`` prices two deployment forms of a mask task: *folded* (one int8 weight copy per task) and
*on the fly* (one shared int8 backbone, the task's mask applied per kernel as the weights stream into
the array). Their accuracies differ because the quantisation happens at different places; this
module builds the on-the-fly one so that it can be exported and measured like the folded one.

The backbone weights W are quantised per output channel (:mod:`ksm.deploy.channel_quantiser`,
symmetric, [-127, 127]) *before* the mask; KSM's soft scale is quantised to the profile's
``mask_scale_bits`` with :func:`ksm.methods.soft_masks.quantise_scale`; the effective weight is
``(binary + scale_q) ⊙ Q8(W)``, computed in torch. The task head is quantised per channel too, and
task BatchNorm is folded into the conv by the exporter, so it rides in the quantised weight. That
product has up to 16 significant bits, while ``ksm-sim`` charges the form an 8-bit datapath (the
profile's ``weights`` bits, plus one mask gate or multiply per weight), so :mod:`ksm.deploy.run_export`
re-quantises it to ``weights`` bits in the ONNX QDQ graph before measuring. Writing the mask
multiply as ONNX operators would measure the same numbers with a larger graph, so the product is
formed here in torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from hwsim import catalogue
from ksm.deploy.channel_quantiser import quantise_per_channel
from ksm.methods.base import Method, maskable_layers
from ksm.methods.soft_masks import KernelSoftMask


@torch.no_grad()
def on_the_fly_model(model: nn.Module, method: Method, *, mask_scale_bits: int, weight_bits: int = 8) -> nn.Module:
    """Folded model whose weights are ``M_q ⊙ Q(W)``: shared backbone W quantised per channel before
    the mask, KSM's soft scale at ``mask_scale_bits``, the head quantised per channel.

    ``model`` is a task network from :func:`ksm.training.pipeline.load_run_model`; it is modified (its frozen
    backbone weights are replaced by their quantised values), so pass a fresh one.
    """
    if not catalogue.get(method.name).mask.learned:
        raise ValueError(f"method {method.name!r} has no mask to apply on the fly")
    for _, module in maskable_layers(model, method.head):
        if parametrize.is_parametrized(module, "weight"):
            original = module.parametrizations.weight.original
            original.copy_(quantise_per_channel(original, weight_bits))
        else:  # pragma: no cover - every maskable layer of a mask method is parametrised
            module.weight.copy_(quantise_per_channel(module.weight, weight_bits))
    masks = [m for m in model.modules() if isinstance(m, KernelSoftMask)]
    for m in masks:
        m.scale_bits = mask_scale_bits
    try:
        folded = method.fold(model)
    finally:
        for m in masks:
            m.scale_bits = None
    head = folded.get_submodule(method.head)
    head.weight.copy_(quantise_per_channel(head.weight, weight_bits))
    return folded.eval()
