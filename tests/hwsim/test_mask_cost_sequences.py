"""PackNet and CPG runs in hwsim: task-index bits from the run, CPG pick masks and grown weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from hwsim.cost.layer_cost import weight_elems
from hwsim.errors import InputError
from hwsim.workload.layers import load_run
from hwsim.cost.mask_cost import packnet_bits_per_weight, task_cost
from hwsim.hardware.profile import load_profile
from hwsim.cost.simulate import simulate


def _layers(width: int) -> list[dict[str, Any]]:
    """conv (3→w), depthwise (w), head (w→5): a backbone at width ``width``."""
    return [
        {"name": "conv1", "kind": "conv", "in_channels": 3, "out_channels": width, "kernel": [3, 3], "stride": [1, 1],
         "padding": [1, 1], "groups": 1, "bias": False, "input_hw": [16, 16], "output_hw": [16, 16]},
        {"name": "dw", "kind": "conv", "in_channels": width, "out_channels": width, "kernel": [3, 3],
         "stride": [2, 2], "padding": [1, 1], "groups": width, "bias": False, "input_hw": [16, 16],
         "output_hw": [8, 8]},
        {"name": "fc", "kind": "linear", "in_channels": width, "out_channels": 5, "kernel": [1, 1], "stride": [1, 1],
         "padding": [0, 0], "groups": 1, "bias": True, "input_hw": [1, 1], "output_hw": [1, 1]},
    ]


def _shape(rec: dict[str, Any]) -> tuple[int, ...]:
    if rec["kind"] == "linear":
        return (rec["out_channels"], rec["in_channels"])
    return (rec["out_channels"], rec["in_channels"] // rec["groups"], *rec["kernel"])


def _write(folder: Path, method: str, position: int, tasks: list[str], width: int, shared_index: dict[str, np.ndarray],
           grown: dict[str, int] | None = None, pick_shape: dict[str, tuple[int, ...]] | None = None) -> Path:
    """A run folder as ksm.methods.sequence writes it: BatchNorm, head, CPG picks; counts from the shared index."""
    layers = _layers(width)
    tensors: dict[str, np.ndarray] = {}
    roles: dict[str, str] = {}
    counts = {}
    rng = np.random.default_rng(position)
    for rec in layers[:-1]:
        name = rec["name"]
        cut = tuple(slice(0, n) for n in _shape(rec))
        idx = shared_index[name][cut]
        earlier = (idx >= 1) & (idx < position)
        counts[name] = {"own": int((idx == position).sum()), "earlier": int(earlier.sum()),
                        "free": int((idx == 0).sum()), "grown": (grown or {}).get(name, 0)}
        if method == "cpg" and position > 1:
            pick = ((rng.random(idx.shape) < 0.5) & earlier).astype(np.uint8)
            if pick_shape and name in pick_shape:
                pick = np.zeros(pick_shape[name], dtype=np.uint8)
            tensors[f"{name}.pick"], roles[f"{name}.pick"] = pick, "pick"
            counts[name]["picked"] = int(pick.astype(bool)[earlier].sum()) if pick.shape == idx.shape else 0
        for part in ("weight", "bias", "running_mean", "running_var"):
            key = f"{name}_bn.{part}"
            tensors[key], roles[key] = np.ones(rec["out_channels"], dtype=np.float32), "batchnorm"
    tensors["fc.weight"], roles["fc.weight"] = np.zeros(_shape(layers[-1]), dtype=np.float32), "head"
    tensors["fc.bias"], roles["fc.bias"] = np.zeros(5, dtype=np.float32), "head"
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "masks.safetensors"))
    run = {"format": "ksm-run/1", "task": tasks[position - 1], "method": method, "batchnorm": "task",
           "backbone": {"arch": "tiny"}, "dataset": {"name": tasks[position - 1]}, "metrics": {"top1": 0.5},
           "layers": layers, "tensors": roles,
           "sequence": {"position": position, "tasks": tasks, "shared": "../shared.safetensors",
                        "index_bits": packnet_bits_per_weight(len(tasks)), "weights": counts}}
    if method == "cpg":
        run["cpg"] = {"width_mult": width / 8, "grow_steps": int(bool(grown)),
                      "grown_weights": sum((grown or {}).values())}
    (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture
def profile():
    return load_profile("edge_npu")


def _index(width: int, owners: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {rec["name"]: rng.choice(owners, size=_shape(rec)).astype(np.uint8) for rec in _layers(width)[:-1]}


def test_packnet_index_bits_come_from_the_run(tmp_path: Path, profile) -> None:
    tasks = ["a", "b", "c", "d"]  # 4 tasks: ceil(log2(5)) = 3 bits per weight
    run = load_run(_write(tmp_path / "b", "packnet", 2, tasks, 8, _index(8, [0, 1, 2])))
    assert run.sequence_tasks == 4
    for asked in (1, 6, 200):  # the tasks argument is overridden by the run's sequence
        tc = task_cost(run, profile, "on_the_fly", tasks=asked)
        for layer in run.layers[:-1]:
            assert tc.mask_bits[layer.name] == 0  # the index map is stored once, not per task
            assert tc.shared_bits[layer.name] == 3 * weight_elems(layer)
            assert tc.on_the_fly[layer.name].bits == 3 * weight_elems(layer)  # but fetched with every weight
        assert tc.grown_bits == {}
        assert tc.mask_storage_bits == 0
        assert tc.task_specific_bytes == tc.batchnorm_bytes + tc.head_bytes


def test_packnet_index_width_grows_with_the_sequence() -> None:
    assert [packnet_bits_per_weight(t) for t in (1, 2, 3, 4, 7, 8, 255)] == [1, 2, 2, 3, 3, 4, 8]


def test_cpg_charges_pick_masks_and_grown_weights(tmp_path: Path, profile) -> None:
    tasks = ["a", "b"]
    narrow_index = _index(8, [0, 1])
    wide_index = {}
    grown = {}
    for rec in _layers(12)[:-1]:  # task 2 grew 8 → 12 channels; the new weights are its own (index 2)
        idx = np.full(_shape(rec), 2, dtype=np.uint8)
        old = narrow_index[rec["name"]]
        idx[tuple(slice(0, n) for n in old.shape)] = np.where(old == 0, 2, old)
        wide_index[rec["name"]] = idx
        grown[rec["name"]] = idx.size - old.size
    first = load_run(_write(tmp_path / "a", "cpg", 1, tasks, 8, narrow_index))
    second = load_run(_write(tmp_path / "b", "cpg", 2, tasks, 12, wide_index, grown))
    bits = packnet_bits_per_weight(2)
    t1 = task_cost(first, profile, "on_the_fly")
    for layer in first.layers[:-1]:
        assert t1.mask_bits[layer.name] == 0  # nothing to pick from, nothing grown; the index map is shared
        assert t1.shared_bits[layer.name] == bits * weight_elems(layer)
    t2 = task_cost(second, profile, "on_the_fly")
    wbits = profile.precision_bits.weights
    for layer in second.layers[:-1]:
        earlier = int((wide_index[layer.name] == 1).sum())
        assert earlier > 0 and grown[layer.name] > 0
        index_and_pick = bits * weight_elems(layer) + earlier
        assert t2.mask_bits[layer.name] == earlier + grown[layer.name] * wbits
        assert t2.grown_bits[layer.name] == grown[layer.name] * wbits
        assert t2.on_the_fly[layer.name].bits == index_and_pick  # grown weights travel as weights, not masks
    assert t2.task_specific_bytes > t1.task_specific_bytes
    # the wider geometry costs extra MACs and weight traffic
    s1, s2 = simulate(first, profile, "on_the_fly"), simulate(second, profile, "on_the_fly")
    assert s2.macs > s1.macs
    assert s2.traffic("dram")[0]["weights"] > s1.traffic("dram")[0]["weights"]
    folded = task_cost(second, profile, "folded")
    w_bytes = sum(weight_elems(layer) for layer in second.layers[:-1]) * wbits / 8
    mask_bytes = (folded.mask_storage_bits - sum(folded.grown_bits.values()) + sum(folded.shared_bits.values())) / 8
    assert folded.switch_read_bytes == pytest.approx(folded.batchnorm_bytes + folded.head_bytes + mask_bytes + w_bytes)


def test_bad_sequence_records(tmp_path: Path) -> None:
    tasks = ["a", "b"]
    folder = _write(tmp_path / "b", "cpg", 2, tasks, 8, _index(8, [0, 1, 2]))
    run = json.loads((folder / "run.json").read_text())

    def broken(edit) -> str:
        bad = json.loads(json.dumps(run))
        edit(bad)
        (folder / "run.json").write_text(json.dumps(bad))
        with pytest.raises(InputError) as info:
            load_run(folder)
        return str(info.value)

    assert "sequence.weights.nope" in broken(lambda r: r["sequence"]["weights"].update(nope={"earlier": 1}))
    assert "sequence.weights.conv1.earlier" in broken(
        lambda r: r["sequence"]["weights"]["conv1"].update(earlier=math.prod(_shape(_layers(8)[0])) + 1))
    assert "sequence.position" in broken(lambda r: r["sequence"].update(position=3))
    assert "sequence.tasks" in broken(lambda r: r["sequence"].update(tasks=[]))
    (folder / "run.json").write_text(json.dumps(run))
    load_run(folder)
    bad = tmp_path / "c"
    _write(bad, "cpg", 2, tasks, 8, _index(8, [0, 1, 2]), pick_shape={"conv1": (8, 3)})
    with pytest.raises(InputError, match="conv1.pick"):
        load_run(bad)
