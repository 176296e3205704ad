"""The method catalogue: one label, one order, one style and one storage rule per method, for both packages."""

from __future__ import annotations

import pytest

from hwsim import catalogue
from hwsim.cost.mask_cost import STORAGE_RULES


def test_labels_name_what_differs_from_the_method_defaults() -> None:
    label = catalogue.run_label
    assert label({"method": "ksm", "batchnorm": "task", "train": {"soft": True, "lr_body": 1e-3}}) == "ksm"
    assert label({"method": "ksm", "batchnorm": "frozen"}) == "ksm (BN frozen)"
    assert label({"method": "ksm", "train": {"soft": False}}) == "ksm (binary only)"
    assert label({"method": "piggyback", "batchnorm": "task"}) == "piggyback (BN task)"
    assert label({"method": "piggyback", "batchnorm": "frozen", "train": {"lr_body": 1e-4}}) == "piggyback (lr 0.0001)"
    assert label({"method": "packnet", "batchnorm": "task"}) == "packnet"
    assert label({"method": "finetune", "train": {"soft": False}}) == "finetune"  # only KSM has a soft part
    # a rate chosen on validation belongs to the protocol, not to the method
    assert label({"method": "ksm", "train": {"lr_body": 1e-2}, "metrics": {"selection": {"seed": 0}}}) == "ksm"


def test_labels_sort_by_method_then_variant() -> None:
    labels = ["feature", "finetune (BN frozen)", "cpg", "piggyback (BN task)", "ksm (binary only)", "unknown",
              "finetune", "packnet", "piggyback", "ksm"]
    assert catalogue.sort_labels(labels) == [
        "ksm", "ksm (binary only)", "piggyback", "piggyback (BN task)", "packnet", "cpg", "finetune",
        "finetune (BN frozen)", "feature", "unknown"]


def test_every_method_has_its_own_colour_and_marker_and_variants_share_them() -> None:
    methods = catalogue.methods()
    assert len({t.color for t in methods}) == len({t.marker for t in methods}) == len(methods)
    own, variant = catalogue.style("piggyback"), catalogue.style("piggyback (BN task)")
    assert (own.color, own.marker) == (variant.color, variant.marker)
    assert own.filled and not variant.filled and variant.facecolor == "none"
    assert catalogue.style("nobody") == catalogue.FALLBACK_STYLE


def test_every_mask_kind_that_stores_something_has_a_storage_rule() -> None:
    kinds = {t.mask for t in catalogue.methods()}
    assert {k.name for k in kinds} - {catalogue.NONE.name} == set(STORAGE_RULES)


def test_register_and_unregister() -> None:
    toy = catalogue.MethodTraits("toy2", "test only", "task", catalogue.KERNEL, sequence=False, order=50,
                                 color="#000000", marker="*")
    catalogue.register(toy)
    try:
        assert catalogue.get("toy2") is toy and catalogue.names()[-1] == "toy2"
        with pytest.raises(ValueError, match="already"):
            catalogue.register(toy)
    finally:
        catalogue.unregister("toy2")
    with pytest.raises(KeyError, match="unknown method 'toy2'"):
        catalogue.get("toy2")
    with pytest.raises(ValueError, match="batchnorm"):
        catalogue.MethodTraits("bad", "", "per-task", catalogue.NONE, sequence=False, order=0, color="", marker="")
