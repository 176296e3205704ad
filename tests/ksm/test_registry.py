"""Adding a method is one class and one catalogue row: a toy method with an option of its own, defined
here and nowhere else, goes through ksm-train (and its resume), ksm-sim, the report, ksm-export --pack,
load_task and ksm-compare like a built-in one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from click.testing import CliRunner

from hwsim import catalogue
from hwsim.catalogue import MethodTraits
from ksm.methods import registry
from ksm.methods.base import MaskConfig, Method
from ksm.methods.piggyback import Piggyback
from ksm.methods.registry import (
    MethodChoice,
    make_method,
    method_class,
    method_names,
    register_method,
    unregister_method,
)
from ksm.methods.variants import Contrast, Variant

# a Piggyback-style element-wise mask that starts at its own value; its binary is ``real > threshold``
TOY = MethodTraits("toy", "an element-wise binary mask with its own start", "frozen", catalogue.ELEMENT,
                   sequence=False, order=99, color="#17becf", marker="*", strict_threshold=True,
                   tag_options=(("toy_init", "i"),))


class Toy(Piggyback):
    """The toy's class: one option (``--toy-init``, validated by its click type), two comparison variants
    and one contrast; how it packs, loads and is priced comes from its base class and its mask kind."""

    name = "toy"
    cli_section = "Toy"
    cli_options = (click.Option(["--toy-init"], type=click.FloatRange(0, 1, min_open=True), default=0.01,
                                show_default=True, help="toy: the real mask's value at the start of a task."),)

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 toy_init: float = 0.01) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=replace(mask or self.default_mask, init=toy_init))
        self.toy_init = toy_init

    def options(self) -> dict[str, Any]:
        return {"toy_init": self.toy_init}

    @classmethod
    def comparison_variants(cls) -> tuple[Variant, ...]:
        return (Variant("toy", "toy"), Variant("toy-i2", "toy", options=(("toy_init", 0.02),)))

    @classmethod
    def comparison_contrasts(cls) -> tuple[Contrast, ...]:
        return (Contrast("toy", "piggyback"), Contrast("toy-i2", "toy"))


@pytest.fixture
def toy_method() -> Iterator[type[Piggyback]]:
    """Registers ``toy`` in the catalogue and the registry, then removes it."""
    catalogue.register(TOY)
    try:
        yield register_method(Toy)
    finally:
        unregister_method("toy")
        catalogue.unregister("toy")


def test_builtin_methods_are_registered_with_the_catalogue_defaults() -> None:
    assert method_names() == catalogue.names() == ("ksm", "piggyback", "packnet", "cpg", "finetune", "feature",
                                                   "lora")
    for name in method_names():
        assert method_class(name).default_batchnorm == catalogue.get(name).batchnorm
        assert make_method(name, "mobilenet_v2").batchnorm == catalogue.get(name).batchnorm
    assert make_method("ksm", "mobilenet_v2", soft=False).soft is False
    assert make_method("lora", "mobilenet_v2", options={"rank": 4}).rank == 4  # a method that takes options
    with pytest.raises(ValueError, match="unknown method 'dora'"):
        make_method("dora", "mobilenet_v2")


def test_registration_refuses_what_the_catalogue_does_not_say(toy_method: type[Piggyback]) -> None:
    with pytest.raises(KeyError, match="unknown method 'nameless'"):
        @register_method
        class Nameless(Piggyback):
            name = "nameless"
    with pytest.raises(ValueError, match="default_batchnorm 'task' differs"):
        @register_method
        class WrongDefault(Piggyback):
            name = "toy"
            default_batchnorm = "task"
    with pytest.raises(ValueError, match="already trained by"):
        @register_method
        class Twice(Piggyback):
            name = "toy"
    with pytest.raises(ValueError, match="already in the catalogue"):
        catalogue.register(TOY)


def test_every_public_module_of_the_package_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A method's module is found because it is in ``ksm.methods``, not because a list names it; a private
    module is not imported; the display order is the catalogue's."""
    import sys

    import ksm.methods

    (tmp_path / "toy_found.py").write_text("from ksm.methods.piggyback import Piggyback\n"
                                           "from ksm.methods.registry import register_method\n\n\n"
                                           "@register_method\nclass Found(Piggyback):\n    name = 'toy'\n",
                                           encoding="utf-8")
    (tmp_path / "_private.py").write_text("raise ImportError('a private module was imported')\n", encoding="utf-8")
    monkeypatch.setattr(ksm.methods, "__path__", [*ksm.methods.__path__, str(tmp_path)])
    registry._discover.cache_clear()
    catalogue.register(TOY)
    try:
        assert method_class("toy").__name__ == "Found"
        assert method_names() == catalogue.names() and method_names()[-1] == "toy"
    finally:
        unregister_method("toy")
        catalogue.unregister("toy")
        sys.modules.pop("ksm.methods.toy_found", None)
        registry._discover.cache_clear()


def test_method_choices_are_the_trainable_methods_read_live(tmp_path: Path) -> None:
    """A catalogue row without a class is no ``--method`` choice (one line, not a traceback from
    ``method_class``); a class registered after the command was built is one."""
    from ksm.cli.ksm_train import main as train_main

    catalogue.register(TOY)
    try:
        assert "toy" not in MethodChoice().choices
        result = CliRunner().invoke(train_main, ["--task", "digits", "--method", "toy", "--weights", "none",
                                                 "--runs-dir", str(tmp_path / "runs")])
        assert result.exit_code == 2 and "Invalid value for '--method'" in result.output, result.output
        register_method(Toy)
        assert "toy" in MethodChoice().choices
    finally:
        unregister_method("toy")
        catalogue.unregister("toy")


def test_the_options_a_class_declares_reach_it(toy_method: type[Piggyback]) -> None:
    """No flag to forget (Toy declares ``cli_options`` and nothing else): its options are passed to it, and a
    class that takes no such option refuses it rather than dropping it."""
    assert make_method("toy", "mobilenet_v2", options={"toy_init": 0.02}).toy_init == 0.02
    with pytest.raises(TypeError, match="rank"):
        make_method("ksm", "mobilenet_v2", options={"rank": 4})


class Stricter(Piggyback):
    """A method with mask defaults of its own: binarised at 9e-3 rather than the built-ins' 5e-3."""

    name = "toy"
    default_mask = MaskConfig(threshold=9e-3)


def test_a_method_trains_with_and_records_its_own_mask_defaults(tmp_path: Path, backbone_file: Path,
                                                                 one_thread: None) -> None:
    from hwsim.workload.layers import load_run
    from ksm.cli.ksm_train import main as train_main
    from ksm.compare.protocol import PROTOCOLS, variant_spec
    from ksm.training.runfolder import read_run

    catalogue.register(TOY)
    register_method(Stricter)
    try:
        assert variant_spec(PROTOCOLS["smoke"], Variant("toy", "toy"), 0).mask == Stricter.default_mask  # ksm-compare
        assert "the method's own, 0.005; toy: 0.009." in " ".join(_invoke(train_main, ["--help"]).split())
        folder = tmp_path / "toy"
        _invoke(train_main, ["--task", "digits", "--method", "toy", "--weights", str(backbone_file),
                             "--out", str(folder), "--input-size", "32", "--max-train", "40", "--epochs", "1",
                             "--mask-init", "7e-3", "--no-progress"])
        record, tensors = read_run(folder)
        assert record["train"]["mask_threshold"] == 9e-3 and record["train"]["mask_init"] == 7e-3  # given: it wins
        reals = {key[:-len(".mask")]: value for key, value in tensors.items() if key.endswith(".mask")}
        assert any(((real > 5e-3) & (real <= 9e-3)).any() for real in reals.values())  # 5e-3 would binarise otherwise
        assert all(torch.equal(tensors[f"{layer}.binary"].bool(), real > 9e-3) for layer, real in reals.items())
        load_run(folder)  # hwsim checks every binary mask against its real mask at run.json's threshold
    finally:
        unregister_method("toy")
        catalogue.unregister("toy")


def _invoke(command: click.Command, args: list[str]) -> str:
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 0, result.output
    return result.output


def _sim(folder: Path, out: Path) -> dict[str, Any]:
    """ksm-sim's one result for a run folder or a packed file (folded, the reference profile)."""
    from hwsim.ksm_sim import main as sim_main

    _invoke(sim_main, ["--masks", str(folder), "--mode", "folded", "--json", str(out)])
    (res,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    return res


def test_toy_method_end_to_end(toy_method: type[Piggyback], tmp_path: Path, backbone_file: Path,
                               small_task: Any, resumed_equals_straight: Callable[..., Path],
                               one_thread: None) -> None:
    from hwsim.report.sections import write_report
    from ksm.cli.ksm_export import main as export_main
    from ksm.cli.ksm_train import main as train_main
    from ksm.deploy.task_file import file_sizes, load_task
    from ksm.network.backbones import BackboneSpec, build_backbone
    from ksm.training.loop import TrainConfig
    from ksm.training.pipeline import RunSpec
    from ksm.training.runfolder import read_run

    # ksm-train: the new name is a --method choice, its option is on the command line and in --help, a bad
    # value is one line; the run folder is named with the option's tag (catalogue tag_options)
    runs = tmp_path / "runs"
    common = ["--task", "digits", "--method", "toy", "--weights", str(backbone_file), "--input-size", "32",
              "--max-train", "40", "--epochs", "1", "--runs-dir", str(runs), "--no-progress", "--threads", "1"]
    help_text = " ".join(_invoke(train_main, ["--help"]).split())
    assert "--toy-init" in help_text and "frozen for piggyback, feature, toy)" in help_text  # --batchnorm's default
    wrong = CliRunner().invoke(train_main, [*common[:2], "--toy-init", "0.02", "--runs-dir", str(runs)])
    assert wrong.exit_code == 2 and "--toy-init is an option of toy, which is not among --method" in wrong.output
    refused = CliRunner().invoke(train_main, [*common, "--toy-init", "2"])
    assert refused.exit_code == 2 and "Invalid value for '--toy-init'" in refused.output and not runs.exists()
    _invoke(train_main, [*common, "--toy-init", "0.02"])
    folder = runs / "digits-toy-i0.02"
    record, tensors = read_run(folder)
    assert record["method"] == "toy" and record["batchnorm"] == "frozen"
    assert record["method_options"] == {"toy_init": 0.02}
    assert record["train"]["mask_init"] == 0.02  # what it trained with (its option), not the class default
    assert "toy i0.02 |" in (runs / "results.md").read_text(encoding="utf-8").splitlines()[0]  # ksm's table

    # resume: interrupted after an epoch and resumed, the toy (with its option) stores what a straight run does
    spec = RunSpec(method="toy", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)),
                   train=TrainConfig(epochs=2, batch_size=40), options={"toy_init": 0.02})
    resumed = resumed_equals_straight(spec, small_task, tmp_path / "resume")
    assert read_run(resumed)[0]["method_options"] == {"toy_init": 0.02}

    # ksm-sim: costed through the catalogue's mask kind (the element rule: one bit per weight)
    res = _sim(folder, tmp_path / "cost.json")
    assert res["method"] == "toy"
    weights = {r["name"]: r for r in record["layers"]}
    expected_bits = 0
    for key in (k for k in record["tensors"] if k.endswith(".binary")):
        layer = weights[key.rpartition(".")[0]]
        expected_bits += (layer["out_channels"] * layer["in_channels"] // layer["groups"]
                          * layer["kernel"][0] * layer["kernel"][1])
    assert res["totals"]["mask_storage_bits"] == expected_bits > 0

    # the report: a row labelled with the new name and its option's tag
    readme = write_report([folder], ["edge_npu"], tmp_path / "report", command="ksm-sim ...")
    text = readme.read_text(encoding="utf-8")
    assert any(line.startswith("| digits ") and "| toy i0.02 " in line for line in text.splitlines())
    assert "- `digits-toy-i0.02`: task `digits`, method `toy i0.02`" in text

    # ksm-export --pack: its class packs it (inherited); the tensors are the bytes ksm-sim charges for the task
    packed = tmp_path / "toy.ksmtask"
    _invoke(export_main, [str(folder), "--pack", str(packed)])
    from_file = _sim(packed, tmp_path / "cost-packed.json")["totals"]["task_specific_bytes"]
    assert from_file == res["totals"]["task_specific_bytes"]
    assert 0 <= file_sizes(packed)["tensors"] - from_file < 2  # the bit stream rounds up to whole bytes

    # load_task: the backbone's weights gated by the trained bits, exactly
    model, meta = load_task(packed)
    assert meta["method"] == "toy" and meta["masked"]
    backbone, _ = build_backbone(BackboneSpec("mobilenet_v2", str(backbone_file)))
    for layer, _ in meta["masked"]:
        expected = backbone.get_submodule(layer).weight * tensors[f"{layer}.binary"].float()
        assert torch.equal(model.get_submodule(layer).weight, expected), layer

    # export: the learned mask is folded into an ONNX model that onnxruntime checks against PyTorch
    onnx = tmp_path / "toy.onnx"
    assert "onnxruntime matches PyTorch" in _invoke(export_main, [str(folder), "--onnx", str(onnx)])


def test_toy_method_is_compared_by_name(toy_method: type[Piggyback], tmp_path: Path, backbone_file: Path,
                                        monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    import ksm.compare.protocol as protocol_module
    from ksm.cli.ksm_compare import main as compare_main
    from ksm.data.datasets import array_task, hold_out, load_digits, resize_gray, stratified_split

    raw = load_digits()
    tr, _ = stratified_split(raw["y_train"], 60, 0)
    te, _ = stratified_split(raw["y_test"], 30, 0)
    arrays = hold_out({"x_train": resize_gray(raw["x_train"][tr], (32, 32)), "y_train": raw["y_train"][tr],
                       "x_test": resize_gray(raw["x_test"][te], (32, 32)), "y_test": raw["y_test"][te]}, 20, seed=0)
    task = array_task("digits_val", arrays, (32, 32), "sklearn digits with a validation split", num_classes=10)
    tiny = replace(protocol_module.PROTOCOLS["smoke"], lr_body=(1e-2,), lr_head=(1e-2,), seeds=(0,), epochs=1,
                   tasks=("digits",), weights=str(backbone_file))
    monkeypatch.setitem(protocol_module.PROTOCOLS, "smoke", tiny)
    monkeypatch.setattr(protocol_module, "load_protocol_task", lambda protocol, name: task)

    assert "toy" not in protocol_module.DEFAULT_VARIANTS  # asked for by name: no standard record changes
    help_text = " ".join(_invoke(compare_main, ["--help"]).split())
    assert "Asked for by name only: lora-r4, lora-r16, toy, toy-i2," in help_text
    out, report = tmp_path / "cmp", tmp_path / "cmp-report"
    _invoke(compare_main, ["--protocol", "smoke", "--out", str(out), "--report", str(report), "--variant", "toy",
                           "--variant", "toy-i2", "--variant", "piggyback", "--no-progress"])
    record = json.loads((out / "seed0" / "digits-toy-i2" / "run.json").read_text(encoding="utf-8"))
    assert record["method"] == "toy" and record["method_options"] == {"toy_init": 0.02}
    text = (report / "comparison.md").read_text(encoding="utf-8")
    rows = [" ".join(line.split()) for line in text.splitlines()]
    assert any(row.startswith("| toy-i2 |") for row in rows)  # the accuracy table
    assert any(row.startswith("| toy | piggyback | digits_val |") for row in rows)  # its contrasts
    assert any(row.startswith("| toy-i2 | toy | digits_val |") for row in rows)


def test_a_class_that_cannot_pack_its_mask_is_refused(toy_method: type[Piggyback]) -> None:
    """A method whose mask kind stores something but whose class says nothing about packing is refused in
    one line, instead of being written as a head-only file that ksm-sim would charge for a whole mask."""
    from ksm.deploy.task_file import DeployError, Precisions, TaskReader, TaskWriter

    class Bare(Method):
        name = "toy"
        default_batchnorm = "frozen"

    unregister_method("toy")
    register_method(Bare)
    writer = TaskWriter(Path("run"), {}, Precisions(), 0, {})
    with pytest.raises(DeployError, match="does not say how to pack or load its 'element' mask"):
        Bare("mobilenet_v2").pack_task(torch.nn.Identity(), writer)
    with pytest.raises(DeployError, match="does not say how to pack or load"):
        Bare.load_task(torch.nn.Identity(), TaskReader(Path("toy.ksmtask"), {}, {}, None))
    assert writer.arrays == {} and writer.masked == []


def test_the_toy_method_does_not_outlive_its_test() -> None:  # runs after the tests above (file order)
    assert "toy" not in catalogue.names()
    with pytest.raises(ValueError, match="unknown method 'toy'"):
        method_class("toy")
