"""Mask parametrizations: how a task's mask turns the frozen weight W into the task weight W_t.

Both are ``torch.nn.utils.parametrize`` modules on a conv's ``weight``, so the backbone's module
tree and state-dict names are unchanged and folding is ``remove_parametrizations``.

KSM (Yang et al., CVPR 2021, Fig. 3 and Eqs. 4-8, mechanics as in the authors' ``GroupWiseConv2d``;
the Piggyback-derived code base that prints "Performing KSM masking", ``modnets/layers.py``;
docs/bibliography.md [KSM]):

* one real value ``M_r`` per (out, in/groups) kernel, broadcast over the kh×kw taps;
* binary part ``M_b = 1[sigmoid(β(M_r - τ)/T) ≥ 0.5] = 1[M_r ≥ τ]`` in the forward pass; the backward
  pass uses the gradient of the logistic ``sigmoid(β(M_r - τ)/T)`` (the paper's "logistic + softmax"
  trick: a two-class softmax over logits (z, 0)/T is exactly this sigmoid), with β=1200, T=100;
* soft part ``A = 0.5 · minmax(M_r ⊙ (1 - M_b))``: min and max over the whole layer tensor with its
  zeros, only the non-zero entries normalised, detached (no gradient through A);
* ``M = M_b + A`` and ``W_t = M ⊙ W``.

Piggyback (Mallya et al., ECCV 2018): element-wise real mask of the weight's shape, binarised at
``M_r > τ`` with the identity straight-through estimator.

``_KernelSoftMaskFn`` is KSM's reference in plain ATen operations; on the CPU ``KernelSoftMask``
runs ``ksm.methods.fused_mask``, which computes the same bits in three compiled passes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from ksm.methods import fused_mask

DEFAULT_INIT = 1e-2  # both papers' mask_scale: every entry starts "on"
DEFAULT_THRESHOLD = 5e-3


def _soft_mask(real: Tensor, on: Tensor, soft: bool, scale_bits: int | None) -> Tensor:
    """M = M_b + A from the real mask and its binary part, without a host synchronisation.

    Arithmetic on 0/1 floats rather than ``masked_fill_``/``torch.where`` with scalars: on the CPU
    those run several times slower than a vectorised multiply-add, and they were half of the mask's
    cost in a training step (torch.profiler). Every select is exact (x·1, x·0, x + 0). This is the
    reference: on the CPU ``ksm.methods.fused_mask`` computes the same bits in fewer passes over the mask.
    """
    if not soft or scale_bits == 0:
        return on.to(real.dtype)
    if scale_bits is not None:  # evaluation at a given scale precision
        return quantise_scale(soft_part(real, on), scale_bits).masked_fill_(on.bool(), 1.0)
    on_f = on if on.dtype == real.dtype else on.to(real.dtype)
    a, scaled = _minmax_scaled(real.detach(), on_f)
    nonzero = torch.ne(a, 0, out=torch.empty_like(a))  # a float 0/1 straight from the comparison
    return torch.addcmul(on_f, nonzero, scaled)  # 1 where on, 0 where M_r is exactly 0


def _minmax_scaled(real: Tensor, on_f: Tensor) -> tuple[Tensor, Tensor]:
    """(a = M_r ⊙ (1 − M_b), 0.5 · (a − min a) / (max a − min a)), the range kept on the device."""
    a = torch.addcmul(real, real, on_f, value=-1)  # M_r − M_r·M_b: exactly 0 where M_b = 1
    low, high = torch.aminmax(a)
    span = high - low
    factor = torch.where(span > 0, 0.5 / span, torch.zeros_like(span))  # 0-d: 0.5/span, or 0 when flat
    return a, torch.addcmul(-low * factor, a, factor)


class _KernelSoftMaskFn(torch.autograd.Function):
    """W ⊙ (M_b + A) in one autograd node: hard threshold (+ soft part) forward, logistic gradient backward.

    The mask has as many entries as a 1×1 conv has weights (most of MobileNetV2 and ResNet-50), so
    its element-wise passes are a real part of a step. One node for mask *and* product means no
    separate broadcast-multiply node and no logistic in the forward pass: the backward pass
    evaluates it once, fused by ``sigmoid_backward``, from the saved real mask. ``weight`` is the
    frozen backbone weight; its gradient is computed only if some caller asks for it.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, real: Tensor, threshold: float, slope: float, soft: bool,  # type: ignore[override]
                scale_bits: int | None) -> Tensor:
        on = torch.ge(real, threshold, out=torch.empty_like(real))  # M_b as 0/1 floats, one pass
        mask = _soft_mask(real, on, soft, scale_bits)
        ctx.save_for_backward(weight, real, mask if ctx.needs_input_grad[0] else None)
        ctx.threshold, ctx.slope = threshold, slope
        return weight * over_taps(mask, weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        weight, real, mask = ctx.saved_tensors
        grad_weight = grad_real = None
        if ctx.needs_input_grad[1]:
            # d/dm sigmoid(slope·(m−τ)) = slope·σ(1−σ), one fused pass.
            grad_mask = kernel_grad(grad, weight, real.shape)
            logistic = torch.add(real, -ctx.threshold).mul_(ctx.slope).sigmoid_()
            grad_real = torch.ops.aten.sigmoid_backward(grad_mask, logistic).mul_(ctx.slope)
        if ctx.needs_input_grad[0]:
            grad_weight = grad * over_taps(mask, weight)
        return grad_weight, grad_real, None, None, None, None


def over_taps(mask: Tensor, weight: Tensor) -> Tensor:
    """A kernel-wise mask [out, in/groups] as a view that broadcasts over each kernel's kh×kw taps."""
    return mask.view(*mask.shape, *([1] * (weight.dim() - 2)))


def kernel_grad(grad: Tensor, weight: Tensor, mask_shape: torch.Size) -> Tensor:
    """dL/dM of a kernel-wise mask from dL/dW_t: (dL/dW_t ⊙ W) summed over each kernel's taps."""
    grad_mask = grad * weight
    if math.prod(weight.shape[2:]) > 1:
        return grad_mask.flatten(2).sum(2)
    return grad_mask.view(mask_shape)


class _IdentitySTE(torch.autograd.Function):
    """Hard threshold forward, identity gradient backward (Piggyback's binariser)."""

    @staticmethod
    def forward(ctx, real: Tensor, threshold: float) -> Tensor:  # type: ignore[override]
        return (real > threshold).to(real.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def soft_part(real: Tensor, binary: Tensor) -> Tensor:
    """KSM's scaling tensor A = 0.5 · minmax(M_r ⊙ (1 − M_b)), detached.

    Min and max run over the whole layer, zeros included (as the authors' code does); entries whose
    product is exactly zero stay zero. A layer where the range is zero (all products equal) gets
    A = 0 instead of a division by zero. The range stays on the device (no ``float(high - low)``),
    so a GPU is not stalled once per layer.
    """
    a, scaled = _minmax_scaled(real.detach(), binary.to(real.dtype))
    return scaled.mul_((a != 0).to(real.dtype))


def quantise_scale(scale: Tensor, bits: int | None) -> Tensor:
    """Uniform quantisation of the soft part (range [0, 0.5]) to ``bits`` bits; None keeps it as is.

    0 bits drops the soft part (binary mask only); 16 bits is float16, the stored deployable form.
    Used to measure how many bits an accelerator must give the mask's scale.
    """
    if bits is None:
        return scale
    if bits == 0:
        return torch.zeros_like(scale)
    if bits >= 16:
        return scale.to(torch.float16).to(scale.dtype)
    levels = (1 << bits) - 1
    return torch.round(scale * (levels / 0.5)) * (0.5 / levels)


def scale_codes(scale: Tensor, bits: int) -> np.ndarray:
    """KSM soft scale A in [0, 0.5] → ``bits``-bit codes (16 bits: the float16 bit pattern), as the
    deployable task file stores them (:mod:`ksm.deploy.task_file`)."""
    if bits >= 16:
        return scale.to(torch.float16).numpy().view(np.uint16).astype(np.int64)
    levels = (1 << bits) - 1
    return torch.round(scale * (levels / 0.5)).clamp(0, levels).to(torch.int64).numpy()


def scale_values(codes: np.ndarray, bits: int) -> Tensor:
    """The inverse of :func:`scale_codes`, equal to :func:`quantise_scale` of the scale."""
    if bits >= 16:
        return torch.from_numpy(codes.astype(np.uint16).view(np.float16).astype(np.float32))
    levels = (1 << bits) - 1
    return torch.from_numpy(codes.astype(np.float32)) * (0.5 / levels)


class KernelSoftMask(nn.Module):
    """KSM's kernel-wise soft mask over one conv weight [out, in/groups, kh, kw]."""

    def __init__(self, weight_shape: torch.Size, *, init: float = DEFAULT_INIT,
                 threshold: float = DEFAULT_THRESHOLD, beta: float = 1200.0, temperature: float = 100.0,
                 soft: bool = True) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.full(tuple(weight_shape[:2]), float(init)))
        self.threshold, self.slope, self.soft = threshold, beta / temperature, soft
        self.scale_bits: int | None = None  # evaluation only: quantise the soft part

    def effective(self) -> Tensor:
        """The mask M = M_b + A that multiplies each kernel, shape [out, in/groups] (its gradient is
        the logistic's)."""
        ones = torch.ones(self.mask.shape, dtype=self.mask.dtype, device=self.mask.device)
        return _KernelSoftMaskFn.apply(ones, self.mask, self.threshold, self.slope, self.soft, self.scale_bits)

    def forward(self, weight: Tensor) -> Tensor:
        if self.scale_bits is None and fused_mask.applies(weight, self.mask):  # same bits, fewer passes
            fused = fused_mask.FusedKernelSoftMaskFn
            return fused.apply(weight, self.mask, self.threshold, self.slope, self.soft)
        return _KernelSoftMaskFn.apply(weight, self.mask, self.threshold, self.slope, self.soft, self.scale_bits)

    @torch.no_grad()
    def deployable(self) -> tuple[Tensor, Tensor]:
        """(binary uint8, scale float16): the form a device stores; scale is 0 where binary is 1."""
        binary = (self.mask >= self.threshold).to(self.mask.dtype)
        scale = soft_part(self.mask, binary) if self.soft else torch.zeros_like(binary)
        return binary.to(torch.uint8), scale.to(torch.float16)


class ElementBinaryMask(nn.Module):
    """Piggyback's element-wise binary mask, same shape as the weight."""

    def __init__(self, weight_shape: torch.Size, *, init: float = DEFAULT_INIT,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.full(tuple(weight_shape), float(init)))
        self.threshold = threshold

    def effective(self) -> Tensor:
        return _IdentitySTE.apply(self.mask, self.threshold)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.effective()

    @torch.no_grad()
    def deployable(self) -> tuple[Tensor, Tensor | None]:
        return (self.mask > self.threshold).to(torch.uint8), None
