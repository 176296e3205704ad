"""KSM's mask on the CPU in three fused passes, bit for bit the result of the reference in ``ksm.methods.soft_masks``.

Why: KSM's mask is element-wise work the size of a 1×1 conv's weight, and the reference
(``ksm.methods.soft_masks._KernelSoftMaskFn``, plain ATen operations) makes about a dozen passes over it per
conv and step: threshold, select, min-max, rescale, select, product, then shift, scale, logistic
and its derivative in the backward pass. On MobileNetV2 at 64 px those passes made a KSM step
1.06× a Piggyback step with the same BatchNorm policy (``benchmarks/step_ratio.py``). Here
the same arithmetic runs in loops compiled by numba:

1. forward, one read of ``M_r``: the range (min, max) of ``M_r ⊙ (1 − M_b)``;
2. forward, one more read: ``M = M_b + A`` times the weight (for 1×1 kernels the product itself),
   and the logistic's argument ``β/T · (M_r − τ)``; the logistic is then ATen's ``sigmoid_``;
3. backward, one pass: ``dL/dM · σ(1 − σ) · β/T``, with ``dL/dM = dL/dW_t · W`` in the same pass for
   1×1 kernels.

Bit for bit: each element goes through the same IEEE float32 operations, in the same order, as
in the reference: ATen's ``addcmul`` is contracted to a fused multiply-add on x86 builds with
AVX2/AVX-512, so the rescale here is an explicit ``fma``, and the logistic is ATen's own kernel
(its vectorised ``exp`` is not reproducible elsewhere). Min and max do not depend on the order
they are taken in, so the range loop may be vectorised freely (a NaN in the mask would be skipped
here and propagated there; training has diverged by then either way). The first use checks the claim on
probe layers against the reference; where it fails (another CPU, another ATen build), or where
numba is missing, the reference runs instead, with one warning. ``KSM_FUSED_MASK=0`` in the
environment turns the fused path off.
"""

from __future__ import annotations

import math
import os
import warnings
from functools import cache

import numpy as np
import torch
from torch import Tensor

from ksm.methods import soft_masks as masks  # the reference; it imports this module, so its names are read at call time

try:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # the reference path needs none of this
    numba = None


def _njit(**options):
    """numba.njit with the on-disk cache where a cache folder can be written, without it elsewhere."""
    def decorate(fn):
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:  # no writable cache location: compile once per process instead
            return numba.njit(nogil=True, **options)(fn)
    return decorate


if numba is not None:
    @intrinsic
    def _fma(typingctx, a, b, c):
        """float32 a·b + c rounded once (LLVM's fma): what ATen's vectorised addcmul computes."""
        signature = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, sig, args):
            return builder.fma(*args)
        return signature, codegen

    def _float_intrinsic(name: str):
        """An LLVM float32 intrinsic of two arguments as a numba function (``llvm.minnum.f32``, ...)."""
        @intrinsic
        def call(typingctx, a, b):
            def codegen(context, builder, sig, args):
                f32 = args[0].type
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32]),
                                                    f"llvm.{name}.f32")
                return builder.call(fn, args)
            return types.float32(types.float32, types.float32), codegen
        return call

    _min, _max = _float_intrinsic("minnum"), _float_intrinsic("maxnum")

    @_njit(fastmath=True)  # selects and min/max only, no rounding: fast-math just lets LLVM vectorise
    def _off_range(real, threshold):
        """(min, max) of M_r ⊙ (1 − M_b): entries at or above the threshold count as 0."""
        low, high, zero = np.float32(np.inf), np.float32(-np.inf), np.float32(0.0)
        for i in range(real.size):
            a = zero if real[i] >= threshold else real[i]
            low, high = _min(low, a), _max(high, a)
        return low, high

    @_njit()
    def _masked(real, weight, out, logit, threshold, factor, shift, slope, soft):
        """out = weight · (M_b + A), one mask entry per weight entry; logit = slope · (M_r − τ)."""
        one, zero = np.float32(1.0), np.float32(0.0)
        for i in range(real.size):
            x = real[i]
            scaled = _fma(x, factor, shift) if soft else zero  # 0.5·(a − min)/(max − min)
            out[i] = weight[i] * (one if x >= threshold else (scaled if x != zero else zero))
            logit[i] = (x - threshold) * slope

    @_njit()
    def _logistic_grad(grad_mask, logistic, slope):
        """grad_mask ← dL/dM · (1 − σ) · σ · slope, in place (ATen's sigmoid_backward, then × slope)."""
        one = np.float32(1.0)
        for i in range(grad_mask.size):
            grad_mask[i] = grad_mask[i] * (one - logistic[i]) * logistic[i] * slope

    @_njit()
    def _masked_grad(grad, weight, logistic, out, slope):
        """out = (grad · weight) · (1 − σ) · σ · slope: dL/dM_r of a 1×1 kernel's mask in one pass."""
        one = np.float32(1.0)
        for i in range(out.size):
            grad_mask = grad[i] * weight[i]
            out[i] = grad_mask * (one - logistic[i]) * logistic[i] * slope


def _range_factor(low: np.float32, high: np.float32) -> tuple[np.float32, np.float32]:
    """(factor, shift) with A = a·factor + shift, as the reference's 0-d tensors compute them:
    factor = (1/span)·0.5 (``0.5 / span`` on a tensor is a reciprocal, then a product), 0 when flat."""
    span = np.float32(high - low)
    factor = np.float32(np.float32(1.0) / span) * np.float32(0.5) if span > 0 else np.float32(0.0)
    return factor, np.float32(-low * factor)


class FusedKernelSoftMaskFn(torch.autograd.Function):
    """``ksm.methods.soft_masks._KernelSoftMaskFn`` for a frozen float32 weight on the CPU, in three passes."""

    @staticmethod
    def forward(ctx, weight: Tensor, real: Tensor, threshold: float, slope: float,  # type: ignore[override]
                soft: bool) -> Tensor:
        flat = real.detach().reshape(-1).numpy()
        tau = np.float32(threshold)
        factor, shift = _range_factor(*_off_range(flat, tau)) if soft else (np.float32(0.0), np.float32(0.0))
        logit = torch.empty_like(real)
        taps = math.prod(weight.shape[2:])
        if taps == 1:  # the product itself in the same pass
            out = torch.empty_like(weight)
            _masked(flat, weight.detach().reshape(-1).numpy(), out.view(-1).numpy(), logit.view(-1).numpy(),
                    tau, factor, shift, np.float32(slope), soft)
        else:  # one mask entry per kernel of `taps` weights: the mask here, the broadcast product in ATen
            mask = torch.empty_like(real)
            _masked(flat, np.ones_like(flat), mask.view(-1).numpy(), logit.view(-1).numpy(),
                    tau, factor, shift, np.float32(slope), soft)
            out = weight * masks.over_taps(mask, weight)
        ctx.save_for_backward(weight, logit.sigmoid_())
        ctx.slope = slope
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        weight, logistic = ctx.saved_tensors
        slope = np.float32(ctx.slope)
        if math.prod(weight.shape[2:]) == 1 and grad.is_contiguous():
            grad_real = torch.empty_like(logistic)
            _masked_grad(grad.view(-1).numpy(), weight.view(-1).numpy(), logistic.view(-1).numpy(),
                         grad_real.view(-1).numpy(), slope)
            return None, grad_real, None, None, None
        # k×k kernels: the sum over taps stays ATen's, whose order it fixes
        grad_mask = masks.kernel_grad(grad, weight, logistic.shape).contiguous()
        _logistic_grad(grad_mask.view(-1).numpy(), logistic.view(-1).numpy(), slope)
        return None, grad_mask, None, None, None


def wanted() -> bool:
    """Whether the environment allows the fused path (``KSM_FUSED_MASK=0`` turns it off)."""
    return numba is not None and os.environ.get("KSM_FUSED_MASK", "1") != "0"


def applies(weight: Tensor, real: Tensor) -> bool:
    """Whether this layer can take the fused path: float32 CPU tensors, contiguous, a frozen weight."""
    return (real.device.type == "cpu" and weight.device.type == "cpu" and real.dtype == torch.float32
            and weight.dtype == torch.float32 and real.is_contiguous() and weight.is_contiguous()
            and not weight.requires_grad and wanted() and reproduces_reference())


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Equal as bit patterns (tells 0.0 from -0.0, which ``torch.equal`` does not)."""
    bits = [t.contiguous().view(torch.int32) for t in (a, b)]
    return a.shape == b.shape and torch.equal(*bits)


@cache
def reproduces_reference() -> bool:
    """Run once per process: the fused path against the reference, bit for bit, on probe layers."""
    with torch.inference_mode(False), torch.enable_grad():  # the first call may come from an evaluation
        return _probe_layers_agree()


def _probe_layers_agree() -> bool:
    """Fused and reference on probe layers: 1×1 and 3×3 kernels, lengths off the vector width,
    entries at, above and below the threshold, exact zeros, a layer all on and one all off, with
    and without the soft part."""
    generator = torch.Generator().manual_seed(0)
    layers = []
    for out, inp, k in ((37, 23, 1), (19, 1, 3), (5, 7, 1), (64, 48, 1)):
        real = torch.randn(out, inp, generator=generator) * 0.01 + masks.DEFAULT_THRESHOLD
        real.view(-1)[:3] = torch.tensor([masks.DEFAULT_THRESHOLD, 0.0, -0.0])
        layers.append((torch.randn(out, inp, k, k, generator=generator), real))
    layers.append((torch.randn(9, 3, 1, 1, generator=generator), torch.full((9, 3), 0.01)))  # all on
    layers.append((torch.randn(9, 3, 1, 1, generator=generator), torch.full((9, 3), -0.01)))  # all off, flat
    for soft in (True, False):
        for weight, values in layers:
            grad_out = torch.randn(weight.shape, generator=generator)
            results = []
            for fn, extra in ((masks._KernelSoftMaskFn, (None,)), (FusedKernelSoftMaskFn, ())):
                real = values.clone().requires_grad_()
                out = fn.apply(weight, real, masks.DEFAULT_THRESHOLD, 12.0, soft, *extra)
                out.backward(grad_out)
                results.append((out.detach(), real.grad))
            (ref_out, ref_grad), (out, grad) = results
            if not (_same_bits(ref_out, out) and _same_bits(ref_grad, grad)):
                warnings.warn("ksm: the fused CPU mask does not reproduce the reference bit for bit on this "
                              "machine; using the reference (slower)", RuntimeWarning, stacklevel=2)
                return False
    return True
