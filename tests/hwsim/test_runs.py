"""Reading run folders (docs/run-folder.md) with json + safetensors.numpy, and charging their task cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_a_ksm_run_without_its_binary_masks_is_refused_not_priced_at_an_assumed_density(run_folder,
                                                                                       tensors_for) -> None:
    """KSM stores a binary mask for every task (docs/run-folder.md): a run without one is refused, never priced
    at the density ``--mask-density`` assumes."""
    tensors, roles = tensors_for("ksm")
    for key in [k for k in tensors if k.endswith((".binary", ".scale"))]:
        del tensors[key], roles[key]
    _refused(run_folder("ksm", tensors=tensors, roles=roles), r"tensors: no 'binary' tensor, which method 'ksm'")


def test_assumed_density_for_a_network_without_a_run(layer_records) -> None:
    from hwsim.workload.layers import Workload, layers_from_records

    work = Workload(source="toy", layers=layers_from_records(layer_records, "toy"), method="ksm")
    r = simulate(work, load_profile("edge_npu"), mask_density=0.75)
    assert r.task.assumed_density == 0.75
    conv1, dw = work.layers[:2]
    assert r.task.mask_storage_bits == pytest.approx(sum(kernel_mask_entries(x) * (1 + 0.25 * 8) for x in (conv1, dw)))


# --------------------------------------------------------------------------------------------
# run.json where it meets masks.safetensors: one rule each, the same in ksm (tests/ksm/test_runfolder.py)


def _rewrite(folder, edit) -> None:
    run = json.loads((folder / "run.json").read_text())
    edit(run)
    (folder / "run.json").write_text(json.dumps(run))


@pytest.mark.parametrize(("key", "says"), [
    ("dw.binary", r"masks\.safetensors: dw\.binary: stored but not named in run\.json tensors"),
    ("conv1.scale", r"masks\.safetensors: conv1\.scale: stored but not named in run\.json tensors"),
    ("conv1_bn.running_var", r"masks\.safetensors: conv1_bn\.running_var: stored but not named in run\.json"),
    ("fc.bias", r"run\.json: layers\[2\]\.bias: true, but tensors holds no 'fc\.bias'"),  # the record alone
])
def test_a_stored_tensor_that_tensors_leaves_out_is_refused(run_folder, key, says) -> None:
    """``tensors`` names exactly the stored tensors: one left out would be priced at an assumed density (a
    binary mask) or not at all (a bias), exit 0."""
    folder = run_folder("ksm")
    _rewrite(folder, lambda run: run["tensors"].pop(key))
    with pytest.raises(InputError, match=says) as info:
        load_run(folder)
    assert str(info.value).startswith(str(folder)) and "\n" not in str(info.value)


METHODS = ("ksm", "piggyback", "packnet", "cpg", "finetune", "feature", "lora")


@pytest.mark.parametrize("written", ["ksm", "piggyback", "finetune", "feature"])
@pytest.mark.parametrize("claimed", METHODS)
def test_a_swapped_method_is_refused(run_folder, written, claimed) -> None:
    """A run's tensors are its method's (its mask kind's roles, ``sequence`` for the sequence methods): a
    ``method`` swapped for any other is refused in one line, never costed as the other method."""
    batchnorm = "frozen" if written == "feature" else "task"
    folder = run_folder(written, batchnorm=batchnorm)
    if claimed == written:
        assert load_run(folder).method == written
        return
    _rewrite(folder, lambda run: run.update(method=claimed))
    with pytest.raises(InputError) as info:
        load_run(folder)
    line = str(info.value)
    assert "\n" not in line and line.startswith(str(folder)), line
    assert any(word in line for word in ("tensors", "sequence", "shape")), line


@pytest.mark.parametrize(("method", "key", "role", "says"), [
    ("ksm", "conv1.weight", "weight", r"tensors\.conv1\.weight: method 'ksm' stores no 'weight' tensor"),
    ("finetune", "conv1.mask", "mask", r"tensors\.conv1\.mask: method 'finetune' stores no 'mask' tensor"),
    ("feature", "conv1.pick", "pick", r"tensors\.conv1\.pick: method 'feature' stores no 'pick' tensor"),
])
def test_a_role_the_method_does_not_store_is_refused(run_folder, tensors_for, method, key, role, says) -> None:
    tensors, roles = tensors_for(method)
    tensors[key], roles[key] = np.zeros((8, 3, 3, 3), dtype=np.float32), role
    _refused(run_folder(method, tensors=tensors, roles=roles), says)


def test_batchnorm_tensors_of_a_frozen_batchnorm_run_are_refused(run_folder, tensors_for) -> None:
    tensors, roles = tensors_for("ksm", batchnorm="task")
    _refused(run_folder("ksm", batchnorm="frozen", tensors=tensors, roles=roles),
             r"tensors\.conv1_bn\.weight: a 'batchnorm' tensor, but batchnorm is 'frozen'")


def test_sequence_is_given_exactly_for_the_sequence_methods(run_folder) -> None:
    sequence = {"tasks": ["toy"], "position": 1, "shared": "../shared.safetensors"}
    _refused(run_folder("ksm", run_overrides={"sequence": sequence}),
             r"sequence: method 'ksm' does not learn its tasks in a sequence \(only packnet, cpg do\)")
    _refused(run_folder("packnet", name="p"), r"sequence: missing key \(method 'packnet' learns")
    assert load_run(run_folder("packnet", name="q", run_overrides={"sequence": sequence})).sequence_tasks == 1


def test_a_bias_is_stored_exactly_when_its_layer_has_one(run_folder, tensors_for, layer_records) -> None:
    layer_records[2]["bias"] = False  # the head's bias is stored: the record must say it has one
    _refused(run_folder("ksm", run_overrides={"layers": layer_records}),
             r"layers\[2\]\.bias: false, but tensors holds 'fc\.bias'")
    tensors, roles = tensors_for("ksm")
    del tensors["fc.bias"], roles["fc.bias"]
    _refused(run_folder("ksm", name="b", tensors=tensors, roles=roles),
             r"layers\[2\]\.bias: true, but tensors holds no 'fc\.bias'")


def _lora_tensors(tensors_for, a_shape: tuple[int, ...]) -> tuple[dict, dict]:
    tensors, roles = tensors_for("lora")
    tensors["conv1.lora_A.weight"], roles["conv1.lora_A.weight"] = np.zeros(a_shape, np.float32), "lora_A"
    tensors["conv1.lora_B.weight"], roles["conv1.lora_B.weight"] = np.zeros((8, 2, 1, 1), np.float32), "lora_B"
    return tensors, roles


def test_lora_adapters_have_their_layer_s_shape(run_folder, tensors_for) -> None:
    tensors, roles = _lora_tensors(tensors_for, (2, 3, 3, 3))
    work = load_run(run_folder("lora", tensors=tensors, roles=roles))
    assert {t.key: t.shape for t in work.tensors}["conv1.lora_A.weight"] == (2, 3, 3, 3)
    tensors, roles = _lora_tensors(tensors_for, (2, 6, 3, 3))  # in_channels doubled
    with pytest.raises(InputError, match=r"conv1\.lora_A\.weight: shape \[2, 6, 3, 3\] disagrees with layer "
                                         r"'conv1' \(run\.json layers\[0\]: expected \['r', 3, 3, 3\]"):
        load_run(run_folder("lora", name="b", tensors=tensors, roles=roles))


# --------------------------------------------------------------------------------------------
# run.json through its schema (hwsim.schemas.run_record): one line naming the file and the field


def _refused(folder, match: str) -> str:
    with pytest.raises(InputError, match=match) as info:
        load_run(folder)
    line = str(info.value)
    assert line.startswith(str(folder / "run.json")) and "\n" not in line
    return line


@pytest.mark.parametrize(("overrides", "says"), [
    ({"method": "sparse"}, r"method: unknown method \(known: ksm"),
    ({"batchnorm": "shared"}, "batchnorm: "),
    ({"backbone": {"arch": "toy", "weigths": "x"}}, r"backbone\.weigths: unknown key"),
    ({"backbone": {"arch": "toy", "sha256": "ABC"}}, r"backbone\.sha256: must be a sha256"),
    ({"dataset": {"name": "toy", "num_classes": 7}}, r"dataset\.num_classes is 7 but the stored head has 5"),
    ({"dataset": {"name": "toy", "input_size": [32, 32]}}, r"dataset\.input_size: \[32, 32\] is not the first layer"),
    ({"dataset": {"name": "toy", "input_size": [16, 1e9]}}, r"dataset\.input_size\[1\]: must be at most 16384"),
    ({"train": {"mask_threshold": "0.5"}}, r"train\.mask_threshold: "),
    ({"train": {"soft": 1}}, r"train\.soft: "),
    ({"metrics": {"soft_precision": {"eight": 0.5}}}, r"metrics\.soft_precision\.eight"),
    ({"metrics": {"int8": {"top1": 0.5, "top5": 0.9}}}, r"metrics\.int8\.top5: unknown key"),
    ({"files": {"masks.safetensors": {"sha256": "00"}}}, r"files\.masks\.safetensors\.sha256: must be a sha256"),
    ({"files": {}}, r"files\.masks\.safetensors: missing key"),
    ({"sequence": {"tasks": ["a", "a"], "position": 1, "shared": "../shared.safetensors"}}, r"sequence\.tasks: "
                                                                                          "task 'a' appears twice"),
    ({"sequence": {"tasks": ["a"], "position": 1, "shared": "/etc/passwd"}}, r"sequence\.shared: "),
    ({"sequence": {"tasks": ["a", "b"], "position": 1, "shared": "../shared.safetensors", "index_bits": 1}},
     r"sequence\.index_bits: 2 tasks need 2 bits"),
    ({"lora": {"rank": 4, "alpha": 8.0, "scaling": 4.0, "dropout": 0.0, "targets": ["all"], "layers": {"conv1": 4}}},
     r"lora\.scaling: is not alpha / rank = 2"),
    ({"lora": {"rank": 4, "alpha": 8.0, "scaling": 2.0, "dropout": 0.0, "targets": ["all"], "layers": {"ghost": 4}}},
     r"lora\.layers: 'ghost' is not a layer"),
])
def test_run_json_fields_are_checked_by_the_schema(run_folder, overrides, says) -> None:
    _refused(run_folder("ksm", run_overrides=overrides), says)


@pytest.mark.parametrize(("key", "role", "says"), [
    ("conv1.weights", "weight", r"tensors\.conv1\.weights: a 'weight' tensor is named <layer>\.weight or <layer>\.bias"),
    ("conv1.lora_A", "lora_A", r"tensors\.conv1\.lora_A: a 'lora_A' tensor is named <layer>\.lora_A\.weight"),
    ("ghost.lora_B.weight", "lora_B", r"tensors\.ghost\.lora_B\.weight: no layer 'ghost' in layers"),
    ("conv1_bn.gamma", "batchnorm", r"tensors\.conv1_bn\.gamma: a batchnorm tensor ends in"),
    ("conv1.mask", "masks", r"tensors\.conv1\.mask: "),
])
def test_tensor_keys_name_their_layers(run_folder, tensors_for, key, role, says) -> None:
    tensors, roles = tensors_for("ksm")
    tensors[key], roles[key] = np.zeros(1, dtype=np.float32), role
    _refused(run_folder("ksm", tensors=tensors, roles=roles), says)


def test_unknown_top_level_keys_are_kept_and_known_ones_typed(run_folder) -> None:
    from hwsim.workload.layers import load_run_record

    folder = run_folder("ksm", run_overrides={
        "format": "ksm-run/1.2", "notes": {"anything": [1, "x"]},
        "metrics": {"top1": 1, "mask_density": 0.5, "top1_before_prune": 0.7, "soft_precision": {"0": 0.25, "8": 0.5},
                    "int8": {"top1": 0.75, "on_the_fly_top1": 0.5}},
        "train": {"mask_init": 1, "soft": False, "lr_body": 1e-3, "anything_else": "kept"}})
    work, record = load_run_record(folder)
    assert work.top1 == 1.0 and isinstance(work.top1, float) and work.mask_density == 0.5
    assert work.top1_int8 == 0.75 and work.top1_int8_on_the_fly == 0.5 and work.ksm_soft is False
    assert record.train.mask_init == 1.0 and isinstance(record.train.mask_init, float) and record.train.model_extra == {"anything_else": "kept"}
    assert record.model_extra["notes"] == {"anything": [1, "x"]} and record.metrics.model_extra["top1_before_prune"] == 0.7


def test_run_readers_take_the_validated_record(run_folder) -> None:
    from hwsim.workload.runs import load_runs

    (run,) = load_runs([run_folder("piggyback", run_overrides={
        "batchnorm": "task", "backbone": {"arch": "toy", "weights": "w", "sha256": "ab" * 32},
        "metrics": {"top1": 0.5, "soft_precision": {"8": 0.5, "0": 0.25}, "int8": {"top1": 0.45}}})])
    assert run.top1 == 0.5 and run.int8_top1 == 0.45 and run.soft_precision == {0: 0.25, 8: 0.5}
    assert run.backbone == ("toy", "w", "ab" * 32) and run.label == "piggyback (BN task)"


def test_a_sequence_counts_more_than_its_earlier_picks_is_refused(run_folder) -> None:
    seq = {"tasks": ["a", "toy"], "position": 2, "shared": "../shared.safetensors", "index_bits": 2,
           "weights": {"conv1": {"own": 1, "earlier": 2, "picked": 3, "free": 0, "grown": 0}}}
    _refused(run_folder("ksm", run_overrides={"sequence": seq}), r"sequence\.weights\.conv1\.picked: more than the 2")


# --------------------------------------------------------------------------------------------
# Network tables (ksm-layers/1) through the same layer schema


def test_every_bundled_network_reads_through_the_schema() -> None:
    from hwsim.workload.layers import bundled_networks, load_network

    for name in bundled_networks():
        work = load_network(name)
        assert work.source == name and work.layers and work.head is not None


@pytest.mark.parametrize(("edit", "says"), [
    (lambda t: t.update(format="ksm-layers/2"), r"format: unknown format"),
    (lambda t: t["layers"][1].update(groups=3), r"layers\[1\]\.groups: does not divide"),
    (lambda t: t["layers"][1].update(dilation=[2, 2]), r"layers\[1\]\.dilation: unknown key"),
    (lambda t: t["layers"].append(dict(t["layers"][0])), r"layers\[3\]\.name: 'conv1' is used twice"),
    (lambda t: t.update(input_hw=[8, 8]), r"input_hw: \[8, 8\] is not the first layer's input_hw \[16, 16\]"),
    (lambda t: t.update(layers=[]), r"layers: "),
])
def test_a_bad_network_table_is_one_line_naming_the_field(tmp_path, layer_records, edit, says) -> None:
    from hwsim.workload.layers import load_network

    table = {"format": "ksm-layers/1", "network": "toy", "input_hw": [16, 16], "layers": layer_records,
             "notes": "kept"}
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(table))
    assert [layer.name for layer in load_network(path).layers] == ["conv1", "dw", "fc"]
    edit(table)
    path.write_text(json.dumps(table))
    with pytest.raises(InputError, match=says) as info:
        load_network(path)
    assert str(info.value).startswith(f"{path}: ")


# --------------------------------------------------------------------------------------------
# One rule for a layer's geometry, whichever reader builds it


@given(hw=st.integers(1, 64), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), off=st.integers(-2, 2))
def test_output_size_rule_is_the_convolution_formula(hw: int, k: int, s: int, p: int, off: int) -> None:
    from hwsim.workload.layers import Layer

    out = (hw + 2 * p - k) // s + 1
    if out < 1 or out + off < 1:
        return
    if off == 0:
        layer = Layer("c", "conv", 4, 8, (k, k), (s, s), (p, p), 1, (hw, hw), (out, out))
        assert layer.output_hw == (out, out)
    else:
        with pytest.raises(InputError, match=rf"layer 'c': output_hw: disagrees .*expected \[{out}, {out}\]"):
            Layer("c", "conv", 4, 8, (k, k), (s, s), (p, p), 1, (hw, hw), (out + off, out))


def test_a_linear_layer_has_no_kernel() -> None:
    from hwsim.workload.layers import Layer

    with pytest.raises(InputError, match="a linear layer has kernel"):
        Layer("fc", "linear", 8, 5, (1, 1), (2, 2))
