"""LoRA per task: PEFT's arithmetic, a frozen backbone, one-line errors, run folders, resume and export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from ksm.network.backbones import BackboneSpec
from hwsim.fileio.atomic import sha256_file as sha256_of
from ksm.data.datasets import TaskData
from ksm.methods.lora_adapters import PEFT_PREFIX, LoraBranch, branches, peft_config, to_peft
from ksm.training.pipeline import RunSpec, build, load_run_model, run_task
from ksm.training.runfolder import read_run
from ksm.training.loop import TrainConfig, evaluate, train_task

FAST = TrainConfig(epochs=1, batch_size=32, lr_body=1e-2, lr_head=1e-3, seed=0)


def _spec(backbone_file: Path, train: TrainConfig = FAST, **options) -> RunSpec:
    return RunSpec(method="lora", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)), train=train,
                   options={"rank": 2, **options})


def test_branch_is_pefts_conv2d_lora_and_folds_exactly() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, stride=2, padding=1, bias=False)
    branch = LoraBranch(conv, rank=3, alpha=6.0, dropout=0.0)
    assert branch.lora_A.shape == (3, 6, 3, 3) and branch.lora_B.shape == (5, 3, 1, 1)  # PEFT's shapes
    assert branch.scaling == 2.0 and not branch.lora_B.any()  # B = 0: the task starts at the backbone
    nn.init.normal_(branch.lora_B)
    x = torch.randn(2, 6, 9, 9)
    merged = nn.functional.conv2d(x, conv.weight + branch.delta_weight(), None, 2, 1)
    assert torch.allclose(conv(x) + branch(x), merged, atol=1e-5)
    # PEFT's get_delta_weight for a k x k conv: conv2d(A.permute(1,0,2,3), B).permute(1,0,2,3) * scaling
    peft = nn.functional.conv2d(branch.lora_A.permute(1, 0, 2, 3), branch.lora_B).permute(1, 0, 2, 3) * 2.0
    assert torch.allclose(branch.delta_weight(), peft, atol=1e-6)


@pytest.mark.parametrize("options,message", [
    ({"rank": 0}, "rank must be a whole number ≥ 1"),
    ({"rank": 17}, "LoRA rank 17 is larger than layer features.1.conv.1 allows (min(out 16, in·kh·kw 32) = 16)"),
    ({"targets": ["attention"]}, "unknown LoRA target 'attention'; choose from all, pointwise, kxk, linear"),
    ({"targets": ["linear"]}, "--lora-targets linear: no layer of mobilenet_v2 to adapt"),
])
def test_bad_options_are_refused(backbone_file: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build(_spec(backbone_file, **options))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_adapters_skip_depthwise_and_backbone_stays_bit_identical(backbone_file: Path, small_task: TaskData) -> None:
    digest = sha256_of(backbone_file)
    model, method, backbone, _ = build(_spec(backbone_file))
    adapted = dict(branches(model))
    assert "features.0.0" in adapted and "features.1.conv.1" in adapted  # the stem (3x3) and a 1x1 conv
    assert "features.1.conv.0.0" not in adapted  # depthwise: left out
    assert all(model.get_submodule(n).groups == 1 for n in adapted)
    train_task(model, method, backbone, small_task, FAST, progress=False)
    assert any(b.lora_B.abs().sum() > 0 for b in adapted.values()), "training moved no adapter"
    pristine = torch.load(backbone_file, weights_only=True)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not name.startswith("classifier"):
            assert torch.equal(module.weight, pristine[f"{name}.weight"]), name
    assert sha256_of(backbone_file) == digest


def test_run_folder_records_the_adapter_and_reloads(backbone_file: Path, small_task: TaskData, tmp_path: Path,
                                                    probe: torch.Tensor) -> None:
    out = tmp_path / "digits-lora-r2"
    record = run_task(_spec(backbone_file, alpha=4.0), small_task, out, progress=False)
    meta, tensors = read_run(out)
    assert meta["method_options"] == {"rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["all"]}
    assert meta["lora"]["rank"] == 2 and meta["lora"]["scaling"] == 2.0
    assert "features.1.conv.0.0" in meta["lora"]["left_out"]
    a, b = tensors["features.0.0.lora_A.weight"], tensors["features.0.0.lora_B.weight"]
    assert a.shape == (2, 3, 3, 3) and b.shape == (32, 2, 1, 1)
    assert meta["tensors"]["features.0.0.lora_A.weight"] == "lora_A"
    assert meta["lora"]["parameters"] == sum(t.numel() for k, t in tensors.items() if ".lora_" in k)
    # PEFT's adapter format: the same tensors under base_model.model.<layer>.lora_{A,B}.weight
    peft = to_peft(tensors)
    assert peft[PEFT_PREFIX + "features.0.0.lora_A.weight"] is a and len(peft) == 2 * len(meta["lora"]["layers"])
    assert peft_config(meta)["r"] == 2 and peft_config(meta)["lora_alpha"] == 4.0
    model, method, _ = load_run_model(out)
    assert method.rank == 2 and evaluate(model, small_task) == record["metrics"]["top1"]
    folded = method.fold(model)
    assert type(folded) is torchvision.models.MobileNetV2 and not any(isinstance(m, LoraBranch) for m in folded.modules())
    with torch.no_grad():
        live, plain = model.eval()(probe), folded(probe)
    assert ((live - plain).norm() / live.norm()).item() < 1e-4  # float32 rounding through ~50 layers, as ksm-export allows


def test_resume_reaches_the_uninterrupted_result(backbone_file: Path, small_task: TaskData, tmp_path: Path,
                                                 resumed_equals_straight: Callable[..., Path]) -> None:
    spec = _spec(backbone_file, TrainConfig(epochs=2, batch_size=32, lr_body=1e-2, seed=3), dropout=0.1)
    resumed_equals_straight(spec, small_task, tmp_path)


@pytest.mark.parametrize("args,message", [
    (["--lora-rank", "0"], "Invalid value for '--lora-rank': 0 is not in the range 1<=x<=1048576"),
    (["--lora-rank", "64"], "LoRA rank 64 is larger than layer features.0.0 allows"),
    (["--lora-targets", "pointwise,qkv"], "Invalid value for '--lora-targets': unknown target 'qkv'"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path: Path, backbone_file: Path, args: list[str], message: str) -> None:
    from ksm.cli.ksm_train import main

    result = CliRunner().invoke(main, ["--task", "digits", "--method", "lora", *args, "--weights", str(backbone_file),
                                       "--input-size", "32", "--max-train", "40", "--runs-dir", str(tmp_path / "runs"),
                                       "--no-progress"])
    assert result.exit_code != 0
    assert message in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_to_cost_and_export(tmp_path: Path, backbone_file: Path) -> None:
    """ksm-train --method lora, then ksm-sim charges the adapter and ksm-export folds it into plain convs."""
    from hwsim.ksm_sim import main as sim_main
    from ksm.cli.ksm_train import main as train_main
    from ksm.cli.ksm_export import main as export_main

    runs = tmp_path / "runs"
    result = CliRunner().invoke(train_main, [
        "--task", "digits", "--method", "lora", "--lora-rank", "4", "--lora-targets", "pointwise",
        "--weights", str(backbone_file), "--input-size", "32", "--max-train", "40", "--epochs", "1",
        "--runs-dir", str(runs), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    folder = runs / "digits-lora-r4"
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert "features.0.0" not in record["lora"]["layers"]  # the 3x3 stem is not pointwise
    assert "lora r4 |" in (runs / "results.md").read_text(encoding="utf-8").splitlines()[0]

    out = tmp_path / "cost.json"
    result = CliRunner().invoke(sim_main, ["--masks", str(folder), "--json", str(out)])
    assert result.exit_code == 0, result.output
    by_mode = {r["mode"]: r for r in json.loads(out.read_text(encoding="utf-8"))["results"]}
    layers = {r["name"]: r for r in record["layers"]}
    params = sum(4 * (layers[n]["in_channels"] + layers[n]["out_channels"]) for n in record["lora"]["layers"])
    assert by_mode["folded"]["totals"]["mask_storage_bits"] == params * 8  # edge_npu: 8-bit weights
    assert by_mode["on_the_fly"]["totals"]["macs"] == by_mode["folded"]["totals"]["macs"] + sum(
        4 * (layers[n]["in_channels"] + layers[n]["out_channels"]) * layers[n]["output_hw"][0]
        * layers[n]["output_hw"][1] for n in record["lora"]["layers"])

    onnx = tmp_path / "lora.onnx"
    result = CliRunner().invoke(export_main, [str(folder), "--onnx", str(onnx)])
    assert result.exit_code == 0, result.output
    assert onnx.is_file() and "onnxruntime matches PyTorch" in result.output
