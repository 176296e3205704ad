"""Fixtures for the training side: a small real task, a random-init backbone file, and runs trained
from them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from ksm.data.datasets import TaskData, array_task, load_digits, resize_gray, stratified_split


@pytest.fixture(scope="session")
def backbone_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 state dict with random weights, saved as a local .pth (fast, no download)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mnv2_random.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def small_task() -> TaskData:
    """sklearn digits at 32×32: 120 training and 60 test images (real data, seconds to train)."""
    raw = load_digits()
    tr, _ = stratified_split(raw["y_train"], 120, 0)
    te, _ = stratified_split(raw["y_test"], 60, 0)
    arrays = {"x_train": resize_gray(raw["x_train"][tr], (32, 32)), "y_train": raw["y_train"][tr],
              "x_test": resize_gray(raw["x_test"][te], (32, 32)), "y_test": raw["y_test"][te]}
    return array_task("digits_small", arrays, (32, 32), "sklearn digits subset", num_classes=10)


@pytest.fixture(scope="session")
def other_task(small_task: TaskData) -> TaskData:
    """A second task on the same images: labels permuted, 5 classes."""
    raw = load_digits()
    tr, _ = stratified_split(raw["y_train"], 100, 1)
    te, _ = stratified_split(raw["y_test"], 40, 1)
    arrays = {"x_train": resize_gray(raw["x_train"][tr], (32, 32)), "y_train": raw["y_train"][tr] % 5,
              "x_test": resize_gray(raw["x_test"][te], (32, 32)), "y_test": raw["y_test"][te] % 5}
    return array_task("digits_mod5", arrays, (32, 32), "sklearn digits mod 5", num_classes=5)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny batches run faster on one thread, and leave the other core to the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def two_task_sequence(small_task: TaskData, other_task: TaskData) -> Callable[[Any, Path], dict]:
    """Train a PackNet/CPG spec on ``small_task`` then ``other_task`` into a folder; right after task 1,
    capture its outputs on a probe batch (``out1``) and the shared file (``shared1``)."""
    from safetensors.torch import load_file

    from ksm.training.pipeline import load_sequence_task, run_sequence
    from ksm.training.runfolder import SHARED

    def train(spec: Any, folder: Path) -> dict:
        tasks = {small_task.name: small_task, other_task.name: other_task}
        x, _ = next(small_task.batches("test", 16, None))
        seen: dict = {}

        def after(position: int) -> None:
            if position == 1:
                model, _, _ = load_sequence_task(folder / small_task.name)
                with torch.no_grad():
                    seen["out1"] = model(x)
                seen["shared1"] = load_file(str(folder / SHARED))

        records = run_sequence(spec, list(tasks), tasks.__getitem__, folder, progress=False, on_task=after)
        return {"folder": folder, "records": records, "tasks": tasks, "probe": x, **seen}

    return train


@pytest.fixture(scope="session")
def resumed_equals_straight() -> Callable[[Any, TaskData, Path], Path]:
    """Train ``spec`` straight into ``tmp/straight``; train it again into ``tmp/resumed``, interrupted after
    epoch 1 and resumed; assert both runs store identical tensors. Returns the resumed folder."""
    from ksm.training.pipeline import run_task
    from ksm.training.runfolder import partial_dir, read_run

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch: int) -> None:
        if epoch == 0:
            raise Interrupt

    def check(spec: Any, task: TaskData, tmp: Path) -> Path:
        straight, resumed = tmp / "straight", tmp / "resumed"
        run_task(spec, task, straight, progress=False)
        with pytest.raises(Interrupt):
            run_task(spec, task, resumed, progress=False, on_epoch=stop_after_first)
        assert not resumed.exists() and (partial_dir(resumed) / "checkpoint.pt").exists()
        run_task(spec, task, resumed, progress=False, resume=True)
        (_, a), (_, b) = read_run(straight), read_run(resumed)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
        return resumed

    return check


@pytest.fixture
def probe(small_task: TaskData) -> torch.Tensor:
    """A fixed batch of test images."""
    x, _ = next(small_task.batches("test", 16, None))
    return x



@pytest.fixture(scope="session")
def digits_run(backbone_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built-in-task run trained through ksm-train (seconds): what ksm-export can re-load data for."""
    from click.testing import CliRunner

    from ksm.cli.ksm_train import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("digits") / "digits"
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out), "--weights", str(backbone_file),
                                       "--epochs", "1", "--max-train", "40", "--input-size", "32", "--no-progress"])
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out
