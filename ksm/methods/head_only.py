"""Head only: the frozen backbone as a feature extractor, the cheap lower reference.

Only a new classifier head learns per task, so the method is :class:`ksm.methods.base.Method` as it
stands: its task file holds the head (and BatchNorm, if asked to train it per task) and nothing else.
"""

from __future__ import annotations

from ksm.methods.base import Method
from ksm.methods.registry import register_method


@register_method
class Feature(Method):
    """Head only: the frozen backbone as a feature extractor (cheap lower reference)."""

    name = "feature"
    trains_body = False
    standard_variant, versus_subject = True, 8
