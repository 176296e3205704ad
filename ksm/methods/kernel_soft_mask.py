"""KSM, the method this project studies: a kernel-wise soft mask on every conv and linear weight.

Li Yang, Zhezhi He, Junshan Zhang, Deliang Fan, *KSM: Fast Multiple Task Adaption via Kernel-wise
Soft Mask Learning*, CVPR 2021, arXiv:2009.05668 (docs/bibliography.md [KSM]). One real value per
kernel, binarised, plus a soft part where the bit is 0 (the mask itself:
:class:`ksm.methods.soft_masks.KernelSoftMask`); BatchNorm is per task by default, as in the authors'
code. Its comparison variants are its two ablations: without the soft part (binary only) and with
the backbone's BatchNorm frozen.
"""

from __future__ import annotations

from torch import Tensor, nn

from ksm.methods.base import MaskConfig, MaskedMethod
from ksm.methods.registry import register_method
from ksm.methods.soft_masks import KernelSoftMask
from ksm.methods.variants import Contrast, Variant


@register_method
class KSM(MaskedMethod):
    """Kernel-wise Soft Mask (Yang et al., CVPR 2021) with task-specific BatchNorm (authors' default)."""

    name = "ksm"
    default_batchnorm = "task"

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 soft: bool = True) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=mask)
        self.soft = soft

    def _new_mask(self, weight: Tensor) -> nn.Module:
        m = self.mask
        return KernelSoftMask(weight.shape, init=m.init, threshold=m.threshold, beta=m.beta,
                              temperature=m.temperature, soft=self.soft)

    def _soft(self, model: nn.Module) -> bool:
        return all(m.soft for _, m in self._masks(model))

    @classmethod
    def comparison_variants(cls) -> tuple[Variant, ...]:
        return (Variant("ksm", "ksm", standard=True),
                Variant("ksm-binary", "ksm", soft=False, role="ablation", standard=True),
                Variant("ksm-bnfrozen", "ksm", batchnorm="frozen", role="ablation", standard=True))

    @classmethod
    def comparison_contrasts(cls) -> tuple[Contrast, ...]:
        return (Contrast("ksm", "ksm-binary", 3), Contrast("ksm", "ksm-bnfrozen", 4))
