"""The method catalogue: one label, one order, one style and one storage rule per method, for both packages."""

from __future__ import annotations

import pytest

from hwsim import catalogue
from hwsim.cost.mask_cost import STORAGE_RULES
from hwsim.workload.packed import PACKED_TENSORS


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
    assert own.marker == variant.marker and own.color == next(t.color for t in methods if t.name == "piggyback")
    assert own.filled and not variant.filled and variant.facecolor == "none"
    assert catalogue.style("nobody") == catalogue.FALLBACK_STYLE


def _hue_lightness(color: str) -> tuple[float, float]:
    import colorsys

    h, l, _s = colorsys.rgb_to_hls(*(int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)))
    return h, l


@pytest.mark.parametrize("method", [t.name for t in catalogue.methods()])
def test_variants_keep_their_methods_hue_and_differ_in_lightness_from_it_and_each_other(method: str) -> None:
    labels = [method, f"{method} (binary only)", f"{method} (BN frozen)", f"{method} (lr 0.01)", f"{method} r16"]
    colours = [catalogue.style(label).color for label in labels]
    assert len(set(colours)) == len(colours), colours  # one figure can tell them apart
    hue = _hue_lightness(colours[0])[0]
    for colour in colours[1:]:
        h, _l = _hue_lightness(colour)
        assert min(abs(h - hue), 1 - abs(h - hue)) < 0.02, (colour, colours[0])  # still the method's colour
    assert [catalogue.style(label).color for label in labels] == colours  # stable


def test_every_mask_kind_has_a_storage_rule_and_a_packed_form() -> None:
    kinds = {t.mask.name for t in catalogue.methods()}
    assert kinds == set(STORAGE_RULES) == set(PACKED_TENSORS)
    assert [n for n, rule in STORAGE_RULES.items() if rule is None] == [catalogue.NONE.name]  # head only


def test_the_subject_and_the_copy_reference_come_from_the_rows() -> None:
    assert catalogue.subject() == "ksm" and catalogue.full_copy() == "finetune"
    assert catalogue.get("ksm").mask.kernel_wise and not catalogue.get("piggyback").mask.kernel_wise
    assert catalogue.get("piggyback").strict_threshold and not catalogue.get("ksm").strict_threshold
    second = catalogue.MethodTraits("toy3", "test only", "task", catalogue.KERNEL, sequence=False, order=51,
                                    color="#000001", marker="*", subject=True)
    with pytest.raises(ValueError, match="already the catalogue's subject"):
        catalogue.register(second)
    assert catalogue.find("toy3") is None


def test_an_unknown_mask_kind_is_refused_in_one_line(tmp_path) -> None:
    """A row whose mask kind hwsim has no rule for is refused where it would be priced or read,
    never costed as if it stored nothing."""
    from hwsim.cost.mask_cost import task_cost
    from hwsim.errors import InputError
    from hwsim.hardware.profile import load_profile
    from hwsim.workload.layers import Layer, Workload
    from hwsim.workload.packed import load_packed

    blob = catalogue.MaskKind("blob", applied=True, learned=True)
    catalogue.register(catalogue.MethodTraits("toy4", "test only", "task", blob, sequence=False, order=52,
                                              color="#000002", marker="*"))
    try:
        layer = Layer(name="fc", kind="linear", in_channels=4, out_channels=2, kernel_hw=(1, 1))
        with pytest.raises(InputError, match="mask kind 'blob' has no storage rule") as err:
            task_cost(Workload(source="x", layers=(layer,), method="toy4"), load_profile("edge_npu"))
        assert "\n" not in str(err.value)
        import numpy as np
        from safetensors.numpy import save_file

        path = tmp_path / "toy4.ksmtask"
        save_file({"head.weight": np.zeros((2, 4), np.float32)}, str(path),
                  metadata={"format": "ksm-task/1", "method": "toy4", "task": "t", "layers": "[]", "masked": "[]",
                            "batchnorms": "[]", "head": "fc"})
        with pytest.raises(InputError, match="mask kind 'blob' has no packed form"):
            load_packed(path)
    finally:
        catalogue.unregister("toy4")


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


@pytest.mark.parametrize("color", ["#1F77B4", "#7f7f7f"])
def test_a_colour_is_one_method_s(color: str) -> None:
    """Every figure tells methods apart by colour: a row may not take a colour another row (or the colour of
    unknown methods) already has."""
    row = catalogue.MethodTraits("toycolour", "a toy", "task", catalogue.KERNEL, sequence=False, order=99,
                                 color=color, marker="*")
    with pytest.raises(ValueError, match="colour"):
        catalogue.register(row)
    assert catalogue.find("toycolour") is None


def test_every_mask_kind_declares_what_its_methods_store() -> None:
    """The tensor roles a kind stores are declared on the kind (run.json is refused where its roles are not its
    method's; tests/ksm/test_runfolder.py holds each class's state to them)."""
    stores = {t.name: set(t.mask.roles) for t in catalogue.methods()}
    assert stores == {"ksm": {"mask", "binary", "scale"}, "piggyback": {"mask", "binary"}, "packnet": set(),
                      "cpg": {"pick"}, "finetune": {"weight"}, "feature": set(), "lora": {"lora_A", "lora_B"}}
    # a KSM run trained without its soft part stores no scale, CPG's first task no pick
    assert "scale" not in catalogue.KERNEL.required and not catalogue.TASK_INDEX_PICK.required
    with pytest.raises(ValueError, match="required roles"):
        catalogue.MaskKind("bad", applied=True, learned=True, roles=("mask",), required=("binary",))
