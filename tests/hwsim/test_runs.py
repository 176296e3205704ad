"""Reading run folders (docs/run-folder.md) with json + safetensors.numpy, and charging their task cost."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwsim import InputError, load_profile, load_run, simulate
from hwsim.cost.layer_cost import kernel_mask_entries, weight_elems


def test_ksm_run_is_read_and_charged(run_folder) -> None:
    work = load_run(run_folder("ksm"))
    assert work.task == "toy" and work.method == "ksm" and work.top1 == 0.8 and work.batchnorm == "task"
    assert [layer.name for layer in work.layers] == ["conv1", "dw", "fc"]
    zeros = {t.key: t.zeros for t in work.tensors if t.role == "binary"}
    assert set(zeros) == {"conv1.binary", "dw.binary"}
    p = load_profile("edge_npu")
    r = simulate(work, p, "on_the_fly")
    conv1, dw = work.layers[0], work.layers[1]
    expected = (kernel_mask_entries(conv1) + zeros["conv1.binary"] * 8
                + kernel_mask_entries(dw) + zeros["dw.binary"] * 8)
    assert r.task.mask_storage_bits == expected
    assert r.task.assumed_density is None  # counted from the stored binary masks
    # folded BatchNorm: scale + shift per channel at 16 bits, for conv1 and dw (8 channels each)
    assert r.task.batchnorm_bytes == 16 * 2 * 2
    fc = work.layers[2]
    assert r.task.head_bytes == weight_elems(fc) * 1 + fc.out_channels * 4
    assert r.task.task_specific_bytes == expected / 8 + 64 + r.task.head_bytes


def test_piggyback_and_finetune_and_feature(run_folder) -> None:
    p = load_profile("eyeriss")
    pig = simulate(load_run(run_folder("piggyback", name="pig")), p)
    assert pig.task.mask_storage_bits == 8 * 3 * 9 + 8 * 1 * 9
    ft = simulate(load_run(run_folder("finetune", name="ft")), p)
    assert ft.task.mask_storage_bits == (8 * 3 * 9 + 8 * 9) * 16
    feat = simulate(load_run(run_folder("feature", name="feat", batchnorm="frozen")), p)
    assert feat.task.mask_storage_bits == 0 and feat.task.batchnorm_bytes == 0
    assert feat.task.task_specific_bytes == feat.task.head_bytes > 0


def test_missing_files(run_folder, tmp_path) -> None:
    folder = run_folder("ksm")
    (folder / "masks.safetensors").unlink()
    with pytest.raises(InputError, match=r"masks\.safetensors: missing file"):
        load_run(folder)
    with pytest.raises(InputError, match="missing"):
        load_run(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"run\.json: missing file"):
        load_run(empty)


@pytest.mark.parametrize("version", ["ksm-run/2", "ksm-run/0.9", "other/1", "ksm-run", 3])
def test_unknown_format_version(run_folder, version) -> None:
    with pytest.raises(InputError, match="format"):
        load_run(run_folder("ksm", run_overrides={"format": version}))


def test_minor_version_is_accepted(run_folder) -> None:
    assert load_run(run_folder("ksm", run_overrides={"format": "ksm-run/1.3"})).method == "ksm"


@pytest.mark.parametrize("key", ["task", "method", "layers", "tensors"])
def test_missing_run_key(run_folder, key) -> None:
    folder = run_folder("ksm")
    run = json.loads((folder / "run.json").read_text())
    del run[key]
    (folder / "run.json").write_text(json.dumps(run))
    with pytest.raises(InputError) as info:
        load_run(folder)
    assert "run.json" in str(info.value) and key in str(info.value)


def test_mask_shape_disagrees_with_layer(run_folder, tensors_for) -> None:
    tensors, roles = tensors_for("ksm")
    tensors["conv1.binary"] = np.ones((8, 4), dtype=np.uint8)  # conv1 has in/groups = 3
    with pytest.raises(InputError) as info:
        load_run(run_folder("ksm", tensors=tensors, roles=roles))
    message = str(info.value)
    assert "masks.safetensors" in message and "conv1.binary" in message and "[8, 3]" in message


def test_piggyback_mask_must_have_weight_shape(run_folder, tensors_for) -> None:
    tensors, roles = tensors_for("piggyback")
    tensors["dw.mask"] = np.ones((8, 1), dtype=np.float32)  # KSM shape given to a piggyback run
    with pytest.raises(InputError, match=r"dw\.mask: shape \[8, 1\]"):
        load_run(run_folder("piggyback", tensors=tensors, roles=roles))


def test_tensor_named_but_not_stored(run_folder, tensors_for) -> None:
    tensors, roles = tensors_for("ksm")
    del tensors["dw.scale"]
    with pytest.raises(InputError, match=r"dw\.scale: missing tensor"):
        load_run(run_folder("ksm", tensors=tensors, roles=roles))


def test_mask_for_unknown_layer(run_folder, tensors_for) -> None:
    tensors, roles = tensors_for("ksm")
    tensors["ghost.binary"] = np.ones((2, 2), dtype=np.uint8)
    roles["ghost.binary"] = "binary"
    with pytest.raises(InputError, match="ghost"):
        load_run(run_folder("ksm", tensors=tensors, roles=roles))


def test_bad_layer_record(run_folder, layer_records) -> None:
    layer_records[1]["output_hw"] = [9, 9]
    with pytest.raises(InputError, match=r"layers\[1\]\.output_hw"):
        load_run(run_folder("ksm", run_overrides={"layers": layer_records}))
    del layer_records[1]["groups"]
    with pytest.raises(InputError, match=r"layers\[1\]\.groups: missing key"):
        load_run(run_folder("ksm", name="b", run_overrides={"layers": layer_records}))


def test_corrupt_files(run_folder) -> None:
    folder = run_folder("ksm")
    (folder / "masks.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="masks.safetensors"):
        load_run(folder)
    (folder / "run.json").write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_run(folder)


def test_assumed_density_when_no_binary(run_folder, tensors_for) -> None:
    tensors, roles = tensors_for("ksm")
    for key in [k for k in tensors if k.endswith((".binary", ".scale"))]:
        del tensors[key], roles[key]
    work = load_run(run_folder("ksm", tensors=tensors, roles=roles))
    r = simulate(work, load_profile("edge_npu"), mask_density=0.75)
    assert r.task.assumed_density == 0.75
    conv1, dw = work.layers[:2]
    assert r.task.mask_storage_bits == pytest.approx(sum(kernel_mask_entries(x) * (1 + 0.25 * 8) for x in (conv1, dw)))
