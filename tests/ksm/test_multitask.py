"""Multi-task semantics: a frozen backbone, isolated tasks, folding, and run folders that reload."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import parametrize

from ksm.network.backbones import BackboneSpec
from ksm.data.datasets import TaskData
from hwsim.fileio.atomic import sha256_file
from ksm.training.pipeline import RunSpec, build, load_run_model, run_task
from ksm.training.runfolder import partial_dir, read_run
from ksm.training.loop import TrainConfig, evaluate, train_task

FAST = TrainConfig(epochs=1, batch_size=32, lr_body=1e-3, lr_head=1e-3, seed=0)


def _spec(backbone_file: Path, method: str = "ksm", **kw) -> RunSpec:
    return RunSpec(method=method, backbone=BackboneSpec("mobilenet_v2", str(backbone_file)), train=FAST, **kw)


def _frozen_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone conv/linear weights as the masked model holds them."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            out[f"{name}.weight"] = module.parametrizations.weight.original.detach().clone()
    return out


@pytest.mark.parametrize("method", ["ksm", "piggyback", "feature"])
def test_backbone_is_bit_identical_after_training(backbone_file: Path, small_task: TaskData, method: str) -> None:
    digest = sha256_file(backbone_file)
    model, m, backbone, _ = build(_spec(backbone_file, method))
    train_task(model, m, backbone, small_task, FAST, progress=False)
    assert sha256_file(backbone_file) == digest
    pristine = torch.load(backbone_file, weights_only=True)
    held = _frozen_tensors(model)
    if method == "feature":
        held = {k: v for k, v in model.state_dict().items() if k in pristine and not k.startswith("classifier")}
    assert held, "no frozen tensors found"
    for key, value in held.items():
        assert torch.equal(value, pristine[key]), key
    if m.batchnorm == "frozen":
        assert torch.equal(model.features[1].conv[0][1].running_mean, pristine["features.1.conv.0.1.running_mean"])


@pytest.mark.parametrize("method", ["ksm", "piggyback", "finetune"])
def test_task_a_unchanged_after_training_task_b(backbone_file: Path, small_task: TaskData, other_task: TaskData,
                                               probe: torch.Tensor, method: str) -> None:
    model, m, backbone, _ = build(_spec(backbone_file, method))
    train_task(model, m, backbone, small_task, FAST, progress=False)
    state_a = {k: v for k, (v, _) in m.state(model).items()}
    out_a = model.eval()(probe)
    train_task(model, m, backbone, other_task, FAST, progress=False)
    assert model.eval()(probe).shape[1] == 5
    m.load_state(model, state_a)
    assert torch.equal(model.eval()(probe), out_a)


@pytest.mark.parametrize("method", ["ksm", "piggyback"])
def test_folding_matches_masked_forward(backbone_file: Path, small_task: TaskData, probe: torch.Tensor,
                                        method: str) -> None:
    # Task BatchNorm keeps a randomly initialised backbone's activations (and the mask gradients) at
    # a usable scale; a large learning rate lets 4 Adam steps push some entries below the threshold.
    model, m, backbone, _ = build(_spec(backbone_file, method, batchnorm="task"))
    train_task(model, m, backbone, small_task, TrainConfig(epochs=1, lr_body=5e-3), progress=False)
    density = m.mask_density(model)
    assert density is not None and density < 1.0, "training switched no mask entry off"
    folded = m.fold(model)
    assert type(folded) is torchvision.models.MobileNetV2
    assert not any(parametrize.is_parametrized(x) for x in folded.modules())
    assert all(type(x) is nn.Conv2d for x in folded.modules() if isinstance(x, nn.Conv2d))
    with torch.no_grad():
        masked, plain = model.eval()(probe), folded(probe)
    assert ((masked - plain).norm() / masked.norm()).item() < 1e-5


def test_run_folder_reloads_to_the_recorded_accuracy(backbone_file: Path, small_task: TaskData,
                                                     tmp_path: Path, probe: torch.Tensor) -> None:
    out = tmp_path / "runs" / "digits"
    record = run_task(_spec(backbone_file), small_task, out, progress=False)
    assert not partial_dir(out).exists()
    meta, tensors = read_run(out)
    assert meta["format"] == "ksm-run/1" and meta["backbone"]["sha256"] == sha256_file(backbone_file)
    assert meta["layers"][0]["name"] == "features.0.0" and meta["layers"][-1]["out_channels"] == 10
    first = meta["layers"][0]
    assert tensors["features.0.0.mask"].shape == (first["out_channels"], first["in_channels"] // first["groups"])
    assert tensors["features.0.0.binary"].dtype == torch.uint8
    assert tensors["features.0.0.scale"].dtype == torch.float16
    assert set(meta["metrics"]["soft_precision"]) == {"0", "2", "4", "8", "16"}
    model, _, _ = load_run_model(out)
    assert evaluate(model, small_task) == record["metrics"]["top1"]


def test_resume_reaches_the_uninterrupted_result(backbone_file: Path, small_task: TaskData, tmp_path: Path,
                                                 resumed_equals_straight: Callable[..., Path]) -> None:
    spec = RunSpec(method="ksm", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)),
                   train=TrainConfig(epochs=2, batch_size=32, seed=3))
    resumed = resumed_equals_straight(spec, small_task, tmp_path)
    history = json.loads((resumed / "run.json").read_text())["metrics"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
