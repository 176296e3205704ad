"""PackNet sequences: no forgetting (bit for bit), pruning and the task index, shared file, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ksm.network.backbones import BackboneSpec
from ksm.data.datasets import TaskData
from hwsim.fileio.atomic import sha256_file
from ksm.training.pipeline import RunSpec, load_run_model, load_sequence_task, run_sequence
from ksm.training.runfolder import SHARED, RunError, check_sequence
from ksm.methods.sequence import index_bits
from ksm.training.loop import TrainConfig, evaluate

FAST = TrainConfig(epochs=1, batch_size=32, lr_body=1e-3, lr_head=1e-3, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(backbone_file: Path, **options) -> RunSpec:
    return RunSpec(method="packnet", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)), train=FAST,
                   options={"prune_ratio": 0.5, "retrain_epochs": 1, **options})


def _outputs(folder: Path, probe: torch.Tensor) -> torch.Tensor:
    model, _, _ = load_sequence_task(folder)
    with torch.no_grad():
        return model(probe)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory, backbone_file: Path, two_task_sequence) -> dict:
    """Two tasks in one PackNet sequence; task 1's outputs and the shared file captured after task 1."""
    return two_task_sequence(_spec(backbone_file), tmp_path_factory.mktemp("packnet") / "packnet")


def test_earlier_task_bit_identical_after_later_task(sequence: dict) -> None:
    first = sequence["folder"] / next(iter(sequence["tasks"]))
    assert torch.equal(_outputs(first, sequence["probe"]), sequence["out1"])


def test_reloaded_tasks_reproduce_recorded_accuracy(sequence: dict) -> None:
    for record in sequence["records"]:
        model, method, loaded = load_run_model(sequence["folder"] / record["task"])  # the general loader delegates
        assert method.name == "packnet" and loaded["sequence"]["position"] == record["sequence"]["position"]
        assert evaluate(model, sequence["tasks"][record["task"]]) == record["metrics"]["top1"]


def test_task_index_pruning_and_frozen_earlier_weights(sequence: dict) -> None:
    before, after = sequence["shared1"], load_file(str(sequence["folder"] / SHARED))
    layers = [k[: -len(".weight")] for k in after if k.endswith(".weight")]
    assert layers and "classifier.1" not in layers
    for name in layers:
        idx1, idx2 = before[f"{name}.task"], after[f"{name}.task"]
        w1, w2 = before[f"{name}.weight"], after[f"{name}.weight"]
        assert idx1.dtype == torch.uint8 and set(idx2.unique().tolist()) <= {0, 1, 2}
        # task 1 keeps round(50%) of every layer (its kthvalue cut-off); freed weights are zero
        assert int((idx1 == 1).sum()) == round(0.5 * idx1.numel())
        assert torch.all(w1[idx1 == 0] == 0) and torch.all(w2[idx2 == 0] == 0)
        # task 2 took only free weights, and task 1's weights did not move, bit for bit
        assert torch.equal(idx2[idx1 == 1], idx1[idx1 == 1])
        assert torch.equal(w2[idx1 == 1], w1[idx1 == 1])
        assert int((idx2 == 2).sum()) == round(0.5 * int((idx1 == 0).sum()))


def test_run_folders_record_the_sequence_and_match_disk(sequence: dict) -> None:
    folder, records = sequence["folder"], sequence["records"]
    shared = load_file(str(folder / SHARED))
    names = list(sequence["tasks"])
    for position, record in enumerate(records, start=1):
        run = json.loads((folder / record["task"] / "run.json").read_text())
        seq = run["sequence"]
        assert seq["position"] == position and seq["tasks"] == names and seq["shared"] == f"../{SHARED}"
        assert seq["index_bits"] == index_bits(len(names)) == 2
        assert run["train"]["epochs_total"] == 2 and run["train"]["wall_seconds"] > 0
        assert [h["phase"] for h in run["metrics"]["history"]] == ["train", "retrain"]
        tensors = load_file(str(folder / record["task"] / "masks.safetensors"))
        assert set(run["tensors"].values()) == {"batchnorm", "head"}  # weights live once, in the shared file
        assert set(tensors) == set(run["tensors"])
        for name, counts in seq["weights"].items():
            idx = shared[f"{name}.task"]
            assert counts["own"] == int((idx == position).sum())
            assert counts["earlier"] == int(((idx >= 1) & (idx < position)).sum())
    assert records[-1]["sequence"]["shared_sha256"] == sha256_file(folder / SHARED)
    assert not list(folder.glob(".*"))  # no temporary files left


def test_resume_after_interruption_gives_the_same_sequence(sequence: dict, backbone_file: Path,
                                                           tmp_path: Path) -> None:
    tasks = sequence["tasks"]
    folder = tmp_path / "packnet"

    def stop(position: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sequence(_spec(backbone_file), list(tasks), tasks.__getitem__, folder, progress=False, on_task=stop)
    with pytest.raises(RunError, match="--resume"):
        run_sequence(_spec(backbone_file), list(tasks), tasks.__getitem__, folder, progress=False)
    with pytest.raises(RunError, match="other settings"):
        run_sequence(_spec(backbone_file, prune_ratio=0.25), list(tasks), tasks.__getitem__, folder,
                     resume=True, progress=False)
    with pytest.raises(RunError, match="same order"):
        run_sequence(_spec(backbone_file), list(tasks)[:1] + ["digits"], tasks.__getitem__, folder,
                     resume=True, progress=False)
    loaded: list[str] = []
    records = run_sequence(_spec(backbone_file), list(tasks), lambda t: loaded.append(t) or tasks[t], folder,
                           resume=True, progress=False)
    assert loaded == list(tasks)[1:]  # the finished task was not trained again
    assert sha256_file(folder / SHARED) == sha256_file(sequence["folder"] / SHARED)
    assert [r["metrics"]["top1"] for r in records] == [r["metrics"]["top1"] for r in sequence["records"]]


def test_changed_shared_weights_are_refused(sequence: dict, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import save_file

    copy = tmp_path / "seq"
    shutil.copytree(sequence["folder"], copy)
    shared = load_file(str(copy / SHARED))
    key = "features.0.0.weight"
    w, idx = shared[key], shared["features.0.0.task"]
    w[idx == 1] += 1.0  # tamper with task 1's weights
    save_file(shared, str(copy / SHARED))
    with pytest.raises(RunError, match="changed since it was trained"):
        load_sequence_task(copy / next(iter(sequence["tasks"])))
    (copy / SHARED).unlink()
    with pytest.raises(RunError, match="missing"):
        load_sequence_task(copy / next(iter(sequence["tasks"])))


def test_bad_input(backbone_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        check_sequence(tmp_path / "s", ["a", "a"], force=False, resume=False)
    with pytest.raises(ValueError, match="at least one"):
        check_sequence(tmp_path / "s", [], force=False, resume=False)
    with pytest.raises(ValueError, match="prune ratio"):
        from ksm.methods.registry import make_method

        make_method("packnet", "mobilenet_v2", options={"prune_ratio": 1.0})
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a folder"):
        check_sequence(tmp_path / "file", ["a"], force=False, resume=False)


def test_hooks_keep_frozen_weights_exact_under_adam(backbone_file: Path, small_task: TaskData) -> None:
    """Adam moves a weight with zero gradient once it has momentum: after_step must undo that."""
    from ksm.network.backbones import build_backbone
    from ksm.methods.registry import make_method
    from ksm.training.loop import train_task

    model, _ = build_backbone(BackboneSpec("mobilenet_v2", str(backbone_file)))
    backbone = {k: v.clone() for k, v in model.state_dict().items()}
    method = make_method("packnet", "mobilenet_v2")
    method.prepare(model)
    method.begin_task(model, 1)
    layer: nn.Conv2d = model.features[0][0]
    method.index["features.0.0"].view(-1)[::2] = 7  # pretend half the layer belongs to an earlier task
    before = layer.weight.detach().clone()
    train_task(model, method, backbone, small_task, FAST, progress=False)
    frozen = method.index["features.0.0"] == 7
    assert torch.equal(layer.weight[frozen], before[frozen])
    assert not torch.equal(layer.weight[~frozen], before[~frozen])


def test_cli_trains_packnet_and_cpg_sequences(tmp_path: Path, backbone_file: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from ksm.cli.ksm_train import main

    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    args = ["--task", "digits", "--method", "packnet", "--method", "cpg", "--weights", str(backbone_file),
            "--runs-dir", str(runs), "--epochs", "1", "--retrain-epochs", "0", "--prune-steps", "1",
            "--prune-epochs", "0", "--max-train", "40", "--input-size", "32", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for method in ("packnet", "cpg"):
        assert (runs / method / SHARED).exists() and (runs / method / "digits" / "run.json").exists()
    assert "| digits |" in result.output and "packnet" in result.output and "cpg" in result.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "--resume" in again.output
    assert CliRunner().invoke(main, [*args, "--resume"]).exit_code == 0
    bad = CliRunner().invoke(main, [*args[:-1], "--force", "--prune-ratio", "1.0"])
    assert bad.exit_code == 2 and "--prune-ratio" in bad.output
