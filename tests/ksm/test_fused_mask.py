"""The fused CPU mask gives KSM's reference mask bit for bit, forward and backward, and steps aside
where it cannot."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ksm.methods import fused_mask
from ksm.methods.soft_masks import DEFAULT_THRESHOLD, KernelSoftMask, _KernelSoftMaskFn

pytestmark = pytest.mark.skipif(fused_mask.numba is None, reason="numba is not installed")


def _run(fn, weight: torch.Tensor, values: torch.Tensor, grad_out: torch.Tensor, soft: bool,
         *extra) -> tuple[torch.Tensor, torch.Tensor]:
    real = values.clone().requires_grad_()
    out = fn.apply(weight, real, DEFAULT_THRESHOLD, 12.0, soft, *extra)
    out.backward(grad_out)
    return out.detach(), real.grad


@settings(max_examples=60, deadline=None)
@given(out=st.integers(1, 70), inp=st.integers(1, 40), k=st.sampled_from([1, 3]), soft=st.booleans(),
       spread=st.sampled_from([1e-4, 1e-2, 1.0]), zeros=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
def test_fused_equals_reference_bit_for_bit(out: int, inp: int, k: int, soft: bool, spread: float, zeros: int,
                                            seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(out, inp, generator=g) * spread + DEFAULT_THRESHOLD
    flat = values.view(-1)
    flat[torch.randint(0, flat.numel(), (zeros,), generator=g)] = 0.0  # exact zeros stay out of the soft part
    flat[0] = DEFAULT_THRESHOLD  # exactly at the threshold: on
    weight = torch.randn(out, inp, k, k, generator=g)
    grad_out = torch.randn(weight.shape, generator=g)
    ref = _run(_KernelSoftMaskFn, weight, values, grad_out, soft, None)
    fused = _run(fused_mask.FusedKernelSoftMaskFn, weight, values, grad_out, soft)
    for a, b in zip(ref, fused):
        assert fused_mask._same_bits(a, b), (a - b).abs().max()


@pytest.mark.parametrize("fill", [0.01, -0.01, DEFAULT_THRESHOLD])
def test_uniform_layers_match(fill: float) -> None:
    """All on, all off (a flat range: no division by zero), all at the threshold."""
    weight, grad_out = torch.randn(6, 4, 1, 1), torch.randn(6, 4, 1, 1)
    values = torch.full((6, 4), fill)
    for a, b in zip(_run(_KernelSoftMaskFn, weight, values, grad_out, True, None),
                    _run(fused_mask.FusedKernelSoftMaskFn, weight, values, grad_out, True)):
        assert fused_mask._same_bits(a, b)


def test_same_bits_tells_signed_zeros_apart() -> None:
    assert not fused_mask._same_bits(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert torch.equal(torch.tensor([0.0]), torch.tensor([-0.0]))  # why torch.equal is not enough


def _layer() -> tuple[KernelSoftMask, torch.Tensor]:
    mask = KernelSoftMask(torch.Size([8, 4, 1, 1]))
    with torch.no_grad():
        mask.mask.copy_(torch.randn(8, 4) * 0.01 + DEFAULT_THRESHOLD)
    return mask, torch.randn(8, 4, 1, 1)


def _path(module: KernelSoftMask, weight: torch.Tensor) -> str:
    """Which autograd node computed the masked weight."""
    return type(module(weight).grad_fn).__name__


def test_kernel_soft_mask_takes_the_fused_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    module, weight = _layer()
    assert _path(module, weight).startswith("FusedKernelSoftMaskFn")
    monkeypatch.setenv("KSM_FUSED_MASK", "0")
    assert _path(module, weight).startswith("_KernelSoftMaskFn")


def test_reference_path_where_fused_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    module, weight = _layer()
    assert _path(module, weight.double().float().requires_grad_()).startswith("_KernelSoftMaskFn")
    assert _path(module, weight.transpose(0, 1).contiguous().transpose(0, 1)).startswith(
        "_KernelSoftMaskFn")  # not contiguous
    module.scale_bits = 4  # evaluation at a scale precision: the reference quantises
    assert _path(module, weight).startswith("_KernelSoftMaskFn")


def test_a_fused_path_that_disagrees_is_refused_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    right = fused_mask.FusedKernelSoftMaskFn

    class Wrong(right):
        @staticmethod
        def forward(ctx, weight, real, threshold, slope, soft):  # type: ignore[override]
            return right.forward(ctx, weight, real, threshold * 1.5, slope, soft)

    monkeypatch.setattr(fused_mask, "FusedKernelSoftMaskFn", Wrong)
    fused_mask.reproduces_reference.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="does not reproduce the reference"):
            assert not fused_mask.reproduces_reference()
        module, weight = _layer()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # cached: no second warning
            assert _path(module, weight).startswith("_KernelSoftMaskFn")
    finally:
        fused_mask.reproduces_reference.cache_clear()


def test_compiles_without_a_writable_cache_folder() -> None:
    """A read-only install (no folder numba can cache in) compiles in memory instead of failing."""
    script = ("import numba.core.caching as c; c.CacheImpl._locator_classes = []\n"
              "from ksm.methods import fused_mask as f\n"
              "assert type(f._off_range._cache).__name__ == 'NullCache'\n"
              "print(f.reproduces_reference())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_first_use_may_come_from_an_evaluation(context) -> None:
    """The once-per-process check trains its probe layers even when the first mask is evaluated."""
    fused_mask.reproduces_reference.cache_clear()
    try:
        module, weight = _layer()
        with context():
            out = module(weight)
        assert fused_mask.reproduces_reference()
        assert not out.requires_grad
    finally:
        fused_mask.reproduces_reference.cache_clear()
