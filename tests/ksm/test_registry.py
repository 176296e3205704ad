"""Adding a method is one class and one catalogue row: a toy method goes from ksm-train to the report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim import catalogue
from hwsim.catalogue import MethodTraits
from ksm.methods.base import Piggyback, make_method
from ksm.methods.registry import method_class, method_names, register_method, unregister_method

TOY = MethodTraits("toy", "a renamed element-wise binary mask", "frozen", catalogue.ELEMENT, sequence=False,
                   order=99, color="#17becf", marker="*")


@pytest.fixture
def toy_method() -> Iterator[type[Piggyback]]:
    """Registers ``toy`` (Piggyback under another name) in the catalogue and the registry, then removes it."""
    catalogue.register(TOY)
    try:
        @register_method
        class Toy(Piggyback):
            name = "toy"

        yield Toy
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


def test_toy_method_end_to_end(toy_method: type[Piggyback], tmp_path: Path, backbone_file: Path) -> None:
    from hwsim.ksm_sim import main as sim_main
    from hwsim.report.sections import write_report
    from ksm.cli.ksm_train import main as train_main
    from ksm.cli.ksm_export import main as export_main

    # ksm-train: the new name is a --method choice; its folder follows the naming of other methods
    runs = tmp_path / "runs"
    result = CliRunner().invoke(train_main, [
        "--task", "digits", "--method", "toy", "--weights", str(backbone_file), "--input-size", "32",
        "--max-train", "40", "--epochs", "1", "--runs-dir", str(runs), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    folder = runs / "digits-toy"
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert record["method"] == "toy" and record["batchnorm"] == "frozen"
    assert "toy |" in (runs / "results.md").read_text(encoding="utf-8").splitlines()[0]  # ksm's table names it

    # ksm-sim: costed through the catalogue's mask kind (Piggyback's rule: one bit per weight)
    out = tmp_path / "cost.json"
    result = CliRunner().invoke(sim_main, ["--masks", str(folder), "--mode", "folded", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    (res,) = doc["results"]
    assert res["method"] == "toy"
    masked = [name for name in record["tensors"] if name.endswith(".binary")]
    weights = {r["name"]: r for r in record["layers"]}
    expected_bits = sum(weights[k.rpartition(".")[0]]["out_channels"]
                        * weights[k.rpartition(".")[0]]["in_channels"] // weights[k.rpartition(".")[0]]["groups"]
                        * weights[k.rpartition(".")[0]]["kernel"][0] * weights[k.rpartition(".")[0]]["kernel"][1]
                        for k in masked)
    assert res["totals"]["mask_storage_bits"] == expected_bits > 0

    # the report: a row labelled with the new name, drawn in its catalogue colour
    readme = write_report([folder], ["edge_npu"], tmp_path / "report", command="ksm-sim ...")
    text = readme.read_text(encoding="utf-8")
    assert any(line.startswith("| digits ") and "| toy " in line for line in text.splitlines())
    assert "- `digits-toy`: task `digits`, method `toy`" in text

    # export: the learned mask is folded into an ONNX model that onnxruntime checks against PyTorch
    onnx = tmp_path / "toy.onnx"
    result = CliRunner().invoke(export_main, [str(folder), "--onnx", str(onnx)])
    assert result.exit_code == 0, result.output
    assert onnx.is_file() and "onnxruntime matches PyTorch" in result.output


def test_the_toy_method_does_not_outlive_its_test() -> None:  # runs after the tests above (file order)
    assert "toy" not in catalogue.names()
    with pytest.raises(ValueError, match="unknown method 'toy'"):
        method_class("toy")
