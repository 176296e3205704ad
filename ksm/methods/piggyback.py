"""Piggyback: an element-wise binary mask on every conv and linear weight, the method KSM builds on.

Arun Mallya, Dillon Davis, Svetlana Lazebnik, *Piggyback: Adapting a Single Network to Multiple Tasks
by Learning to Mask Weights*, ECCV 2018, arXiv:1801.06519 (docs/bibliography.md [Piggyback]). One real
value per weight, binarised with the identity straight-through estimator (the mask itself:
:class:`ksm.methods.soft_masks.ElementBinaryMask`); BatchNorm frozen, as published. Its comparison
variant with task BatchNorm compares the masks alone against KSM.
"""

from __future__ import annotations

from torch import Tensor, nn

from ksm.methods.base import MaskedMethod
from ksm.methods.registry import register_method
from ksm.methods.soft_masks import ElementBinaryMask
from ksm.methods.variants import Contrast, Variant


@register_method
class Piggyback(MaskedMethod):
    """Element-wise binary mask with the identity straight-through estimator (Mallya et al., 2018)."""

    name = "piggyback"
    default_batchnorm = "frozen"

    def _new_mask(self, weight: Tensor) -> nn.Module:
        return ElementBinaryMask(weight.shape, init=self.mask.init, threshold=self.mask.threshold)

    @classmethod
    def comparison_variants(cls) -> tuple[Variant, ...]:
        return (Variant("piggyback", "piggyback", standard=True),
                Variant("piggyback-bntask", "piggyback", batchnorm="task", role="ablation", standard=True))

    @classmethod
    def comparison_contrasts(cls) -> tuple[Contrast, ...]:
        return (Contrast.with_subject("piggyback", 0), Contrast.with_subject("piggyback-bntask", 1),
                Contrast("piggyback-bntask", "piggyback", 5))
