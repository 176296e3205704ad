"""KSM's soft mask and Piggyback's binary mask, checked against hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from ksm.methods.soft_masks import ElementBinaryMask, KernelSoftMask, quantise_scale, soft_part


def _mask(values: list[list[float]], kh: int = 3) -> KernelSoftMask:
    real = torch.tensor(values)
    m = KernelSoftMask(torch.Size([*real.shape, kh, kh]))
    with torch.no_grad():
        m.mask.copy_(real)
    return m


def test_soft_mask_values_by_hand() -> None:
    m = _mask([[0.01, 0.001, -0.002], [0.004, 0.02, 0.0]])
    # Binary: 1 where m >= 5e-3. Soft part over the zero-binary entries {0.001, -0.002, 0.004, 0.0} and the
    # zeros that binary-1 entries leave: min = -0.002, max = 0.004, span 0.006; exact zeros stay zero.
    expected = torch.tensor([[1.0, 0.5 * 0.003 / 0.006, 0.0], [0.5, 1.0, 0.0]])
    assert torch.allclose(m.effective(), expected, atol=1e-6)
    binary, scale = m.deployable()
    assert binary.tolist() == [[1, 0, 0], [0, 1, 0]]
    assert torch.allclose(scale.float(), expected - binary.float(), atol=1e-3)


def test_binary_ablation_drops_soft_part() -> None:
    m = _mask([[0.01, 0.001], [0.004, 0.02]])
    m.soft = False
    assert m.effective().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_gradient_is_the_logistic_slope() -> None:
    m = _mask([[0.01, 0.001]])
    weight = torch.full((1, 2, 3, 3), 2.0)
    m(weight).sum().backward()
    slope = 1200 / 100
    for j, value in enumerate([0.01, 0.001]):
        s = 1 / (1 + math.exp(-slope * (value - 5e-3)))
        # d/dm of sum(W * M) = sum over the 9 taps of W (=2) times the logistic derivative.
        assert m.mask.grad[0, j].item() == pytest.approx(9 * 2.0 * slope * s * (1 - s), rel=1e-5)


def test_flat_soft_part_does_not_divide_by_zero() -> None:
    real = torch.full((2, 2), 0.001)
    binary = torch.zeros(2, 2)
    assert torch.equal(soft_part(real, binary), torch.zeros(2, 2))


def test_linear_weight_is_masked_elementwise() -> None:
    m = KernelSoftMask(torch.Size([3, 4]))
    assert m(torch.ones(3, 4)).shape == (3, 4)


def test_quantise_scale_levels() -> None:
    scale = torch.tensor([0.0, 0.1, 0.26, 0.5])
    assert torch.equal(quantise_scale(scale, 0), torch.zeros(4))
    # 2 bits: levels {0, 1/6, 2/6, 3/6}.
    assert torch.allclose(quantise_scale(scale, 2), torch.tensor([0.0, 1 / 6, 2 / 6, 0.5]))
    assert torch.allclose(quantise_scale(scale, 16), scale, atol=1e-3)
    assert quantise_scale(scale, None) is scale


def test_piggyback_identity_straight_through() -> None:
    m = ElementBinaryMask(torch.Size([2, 1, 1, 1]))
    with torch.no_grad():
        m.mask.copy_(torch.tensor([0.01, 0.004]).view(2, 1, 1, 1))
    out = m(torch.full((2, 1, 1, 1), 3.0))
    assert out.flatten().tolist() == [3.0, 0.0]
    out.sum().backward()
    assert m.mask.grad.flatten().tolist() == [3.0, 3.0]  # identity STE: dL/dm = dL/dM = W
