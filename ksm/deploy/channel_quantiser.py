"""Symmetric per-output-channel weight quantisation, written once for both deployment forms.

The on-the-fly int8 model (:mod:`ksm.deploy.on_the_fly`) quantises the shared backbone and the head
with it, and the packed task file (:mod:`ksm.deploy.task_file`) stores 8-bit weights as its codes and
scales, so the weights a task file carries are exactly those whose accuracy the int8 export measures.
The rule is onnxruntime's per-channel QDQ weight rule (``WeightSymmetric``): one scale per output
channel, max |w| of the channel over the largest level, levels ±(2^(bits−1) − 1), zero point 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def per_channel_codes(weight: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """(codes, scales): ``weight`` as integer-valued codes in [−(2^(bits−1) − 1), 2^(bits−1) − 1],
    shaped ``(out_channels, -1)`` and kept in ``weight``'s dtype (the caller picks the integer type),
    and one scale per output channel, so that ``codes * scales[:, None]`` is the quantised weight."""
    levels = (1 << (bits - 1)) - 1
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(1).clamp_min(1e-12) / levels
    return torch.clamp(torch.round(flat / scale[:, None]), -levels, levels), scale


def quantise_per_channel(weight: Tensor, bits: int = 8) -> Tensor:
    """``weight`` fake-quantised per output channel to ``bits`` bits (the values the codes stand for)."""
    codes, scale = per_channel_codes(weight, bits)
    return (codes * scale[:, None]).reshape(weight.shape).to(weight.dtype)
