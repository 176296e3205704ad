"""BatchNorm recalibration (ksm.training.calibrate): a small image folder no longer collapses to chance."""

from __future__ import annotations

import math

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ksm.network.backbones import BackboneSpec
from ksm.training.calibrate import MIN_STEPS, recalibrate_batchnorm, warn_few_steps
from ksm.data.datasets import TaskData, array_task, folder_task
from ksm.training.pipeline import RunSpec, build, run_task
from ksm.training.loop import TrainConfig, evaluate, train_task


def _stripes_folder(root: Path, n_train: int = 40, n_test: int = 30, size: int = 48) -> Path:
    """Two classes of faint stripes (horizontal / vertical, ±1.5 grey levels on a random grey), in
    Piggyback's layout. Their pixel statistics are far from ImageNet's, so BatchNorm running
    statistics that are still partly ImageNet's after 20 steps normalise them badly."""
    rng = np.random.default_rng(0)
    t = np.arange(size)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, cls in enumerate(("horizontal", "vertical")):
            folder = root / "stripes_cropped" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                wave = (np.sin(2 * np.pi * t / rng.integers(4, 9) + rng.uniform(0, 6.3)) > 0).astype(np.float32)
                on = np.repeat(wave[:, None], size, 1) if c == 0 else np.repeat(wave[None, :], size, 0)
                base = rng.uniform(96, 160, 3)
                rgb = base + 1.5 * (2 * on[..., None] - 1) + rng.normal(0, 2, (size, size, 3))
                Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def stripes(tmp_path_factory: pytest.TempPathFactory) -> TaskData:
    root = _stripes_folder(tmp_path_factory.mktemp("stripes"))
    return folder_task(root, "stripes_cropped", input_size=64, workers=0)


def test_small_folder_collapses_without_recalibration_and_not_with_it(stripes: TaskData, tmp_path: Path) -> None:
    """The real pretrained MobileNetV2, KSM, 2 epochs of 10 steps: chance without, >85 % with."""
    top1 = {}
    for recalibrate in (False, True):
        spec = RunSpec(method="ksm", backbone=BackboneSpec("mobilenet_v2", "IMAGENET1K_V1"),
                       train=TrainConfig(epochs=2, batch_size=8, recalibrate_bn=recalibrate))
        out = tmp_path / str(recalibrate)
        record = run_task(spec, stripes, out, progress=False)
        assert json.loads((out / "run.json").read_text())["train"]["recalibrate_bn"] is recalibrate
        assert record["metrics"]["history"][-1]["train_top1"] > 0.85  # it learnt the training split
        top1[recalibrate] = record["metrics"]["top1"]
    assert top1[False] <= 0.6, top1  # 60 test images, 2 classes: chance
    assert top1[True] >= 0.85, top1


def test_recalibration_matches_population_statistics(small_task: TaskData, backbone_file: Path) -> None:
    """The first BatchNorm's running mean/var equal the mean of per-batch statistics of its input."""
    model, method, backbone, _ = build(RunSpec(method="ksm", backbone=BackboneSpec("mobilenet_v2", str(backbone_file))))
    method.reset(model, backbone, small_task.num_classes)
    model.eval()
    conv, bn = model.features[0][0], model.features[0][1]
    rng_before = torch.get_rng_state()
    used = recalibrate_batchnorm(model, small_task, batch_size=40, seed=1)
    assert used == 3 and torch.equal(torch.get_rng_state(), rng_before)
    assert not model.training and bn.momentum == 0.1  # modes and momentum restored
    means, variances = [], []
    with torch.no_grad():
        for x, _ in small_task.batches("train", 40, torch.Generator().manual_seed(1)):
            y = conv(x)
            means.append(y.mean((0, 2, 3)))
            variances.append(y.var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, torch.stack(variances).mean(0), rtol=1e-4, atol=1e-5)


def test_frozen_batchnorm_is_not_recalibrated(small_task: TaskData, backbone_file: Path) -> None:
    spec = RunSpec(method="piggyback", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)),
                   train=TrainConfig(epochs=1, batch_size=40))
    model, method, backbone, _ = build(spec)
    train_task(model, method, backbone, small_task, spec.train, progress=False)
    for name, value in model.state_dict().items():
        if "running" in name:
            assert torch.equal(value, backbone[name]), name


def test_epoch_chosen_on_validation_is_scored_calibrated(backbone_file: Path) -> None:
    """With ``select_split`` each epoch is recalibrated before its validation score, so the stored
    (best) epoch's statistics are its own: re-evaluating it gives the recorded score."""
    from ksm.data.datasets import load_digits, resize_gray, stratified_split

    raw = load_digits()
    tr, _ = stratified_split(raw["y_train"], 100, 0)
    va, _ = stratified_split(raw["y_test"], 40, 0)
    arrays = {"x_train": resize_gray(raw["x_train"][tr], (32, 32)), "y_train": raw["y_train"][tr],
              "x_val": resize_gray(raw["x_test"][va], (32, 32)), "y_val": raw["y_test"][va],
              "x_test": resize_gray(raw["x_test"][va], (32, 32)), "y_test": raw["y_test"][va]}
    data = array_task("digits_val", arrays, (32, 32), "sklearn digits", num_classes=10)
    spec = RunSpec(method="ksm", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)),
                   train=TrainConfig(epochs=2, batch_size=25))
    model, method, backbone, _ = build(spec)
    result = train_task(model, method, backbone, data, spec.train, progress=False, select_split="val",
                        final_split=None)
    assert evaluate(model, data, "val") == result["select_top1"]
    bn = model.features[0][1]
    assert int(bn.num_batches_tracked) == 4  # a cumulative average over the 4 training batches


def test_few_steps_warn_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ksm"):
        assert warn_few_steps("flowers", 5, 2) is not None
        assert warn_few_steps("flowers", MIN_STEPS, 1) is None
        assert warn_few_steps("flowers", 5, 2) is not None  # the same line again: not logged twice
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and f"--epochs {math.ceil(MIN_STEPS / 5)}" in record.getMessage()
