"""CPG sequences: pick masks, growth (recorded, wider geometry), compaction, and no forgetting, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ksm.network.backbones import BackboneSpec
from ksm.methods.registry import make_method
from ksm.training.pipeline import RunSpec, load_sequence_task
from ksm.training.runfolder import SHARED
from ksm.training.loop import TrainConfig, evaluate

FAST = TrainConfig(epochs=1, batch_size=32, lr_body=1e-3, lr_head=1e-3, seed=0)
OPTIONS = {"prune_ratio": 0.5, "prune_steps": 1, "prune_epochs": 1, "target_accuracy": 1.0, "grow_step": 0.25,
           "max_grow": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory, backbone_file: Path, two_task_sequence) -> dict:
    """Two CPG tasks; an unreachable target (100% training accuracy) makes each task grow once."""
    spec = RunSpec(method="cpg", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)), train=FAST,
                   options=OPTIONS)
    return two_task_sequence(spec, tmp_path_factory.mktemp("cpg") / "cpg")


def test_growth_is_recorded_and_layers_describe_the_grown_geometry(sequence: dict) -> None:
    r1, r2 = sequence["records"]
    assert r1["cpg"]["width_mult"] == 1.25 and r2["cpg"]["width_mult"] == 1.5
    assert r1["cpg"]["grow_steps"] == r2["cpg"]["grow_steps"] == 1
    w1 = {layer["name"]: layer for layer in r1["layers"]}
    w2 = {layer["name"]: layer for layer in r2["layers"]}
    assert w1["features.18.0"]["out_channels"] == 1600 and w2["features.18.0"]["out_channels"] == 1920
    assert all(w2[n]["out_channels"] >= w1[n]["out_channels"] for n in w1 if n != "classifier.1")
    assert any(w2[n]["groups"] > w1[n]["groups"] for n in w1 if w1[n]["groups"] > 1)  # depthwise grows too
    grown = {name: c["grown"] for name, c in r2["sequence"]["weights"].items()}
    assert sum(grown.values()) == r2["cpg"]["grown_weights"] > 0
    shared = load_file(str(sequence["folder"] / SHARED))
    # the grown weights belong to the task that grew
    for name, layer in w2.items():
        if name == "classifier.1":
            continue
        idx = shared[f"{name}.task"]
        old = w1[name]
        assert idx.shape[0] == layer["out_channels"]
        assert torch.all((idx[old["out_channels"]:] == 2) | (idx[old["out_channels"]:] == 0))


def test_earlier_task_bit_identical_after_pick_and_growth(sequence: dict) -> None:
    first = sequence["folder"] / next(iter(sequence["tasks"]))
    model, _, _ = load_sequence_task(first)
    with torch.no_grad():
        assert torch.equal(model(sequence["probe"]), sequence["out1"])
    # task 1's weights did not move, bit for bit, though the tensors grew around them
    before, after = sequence["shared1"], load_file(str(sequence["folder"] / SHARED))
    for key in before:
        if key.endswith(".task"):
            idx = before[key]
            cut = tuple(slice(0, n) for n in idx.shape)
            w_key = key[: -len(".task")] + ".weight"
            assert torch.equal(after[key][cut][idx == 1], idx[idx == 1])
            assert torch.equal(after[w_key][cut][idx == 1], before[w_key][idx == 1])


def test_reloaded_tasks_reproduce_recorded_accuracy(sequence: dict) -> None:
    for record in sequence["records"]:
        model, _, _ = load_sequence_task(sequence["folder"] / record["task"])
        assert evaluate(model, sequence["tasks"][record["task"]]) == record["metrics"]["top1"]


def test_pick_masks_and_storage_match_disk(sequence: dict) -> None:
    folder = sequence["folder"]
    shared = load_file(str(folder / SHARED))
    r1, r2 = (json.loads((folder / r["task"] / "run.json").read_text()) for r in sequence["records"])
    assert "pick" not in r1["tensors"].values()  # the first task has nothing to pick from
    picks = load_file(str(folder / r2["task"] / "masks.safetensors"))
    layers = {layer["name"]: layer for layer in r2["layers"]}
    for name, counts in r2["sequence"]["weights"].items():
        pick = picks[f"{name}.pick"]
        assert r2["tensors"][f"{name}.pick"] == "pick" and pick.dtype == torch.uint8
        shape = tuple(pick.shape)
        assert shape == tuple(shared[f"{name}.weight"].shape)
        assert shape[:2] == (layers[name]["out_channels"], layers[name]["in_channels"] // layers[name]["groups"])
        idx = shared[f"{name}.task"]
        earlier = idx == 1
        assert counts["earlier"] == int(earlier.sum()) and counts["own"] == int((idx == 2).sum())
        assert counts["picked"] == int(pick.bool()[earlier].sum())
        assert not pick.bool()[~earlier].any()  # the mask only covers earlier tasks' weights
    phases = [h["phase"] for h in r2["metrics"]["history"]]
    assert phases == ["pick", "pick", "compact 0.50"] and r2["train"]["epochs_total"] == 3


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="mobilenet_v2"):
        make_method("cpg", "resnet18", options={"target_accuracy": 0.9})
    with pytest.raises(ValueError, match="fraction"):
        make_method("cpg", "mobilenet_v2", options={"target_accuracy": 90})
    with pytest.raises(ValueError, match="grow step"):
        make_method("cpg", "mobilenet_v2", options={"grow_step": 0})
    make_method("cpg", "resnet18")  # no target, no growth: any backbone
