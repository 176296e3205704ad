"""The deployable task file read by hwsim without torch: bit streams, pricing, its header held to its
tensors, and refusal of other files."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from hwsim import catalogue
from hwsim.cost.mask_cost import task_cost
from hwsim.errors import InputError
from hwsim.hardware.profile import load_profile
from hwsim.schemas.task_header import KINDS, decode_header, encode_header
from hwsim.workload.packed import (PACKED_TENSORS, header_bytes, load_packed, mask_bits, pack_codes, read_packed,
                                   unpack_codes)

LAYERS = [
    {"name": "conv1", "kind": "conv", "in_channels": 3, "out_channels": 8, "kernel": [3, 3], "stride": [1, 1],
     "padding": [1, 1], "groups": 1, "bias": False, "input_hw": [16, 16], "output_hw": [16, 16]},
    {"name": "pw", "kind": "conv", "in_channels": 8, "out_channels": 16, "kernel": [1, 1], "stride": [1, 1],
     "padding": [0, 0], "groups": 1, "bias": False, "input_hw": [16, 16], "output_hw": [16, 16]},
    {"name": "fc", "kind": "linear", "in_channels": 16, "out_channels": 5, "kernel": [1, 1], "stride": [1, 1],
     "padding": [0, 0], "groups": 1, "bias": True, "input_hw": [1, 1], "output_hw": [1, 1]},
]
WEIGHTS = {"conv1": (8, 3, 3, 3), "pw": (16, 8, 1, 1)}

Task = tuple[dict[str, Any], dict[str, np.ndarray]]


def _common(method: str) -> Task:
    """The header keys and tensors every method's file has: backbone, profile, BatchNorm, int8 head."""
    header: dict[str, Any] = {
        "format": "ksm-task/1", "task": "t", "method": method, "arch": "mobilenet_v2", "weights": "w",
        "backbone_sha256": "0" * 64, "scale_bits": 0, "profile": "edge_npu",
        "precisions": {"weights": 8, "psums": 32, "batchnorm": 16}, "layers": copy.deepcopy(LAYERS),
        "num_classes": 5, "input_size": [16, 16], "dataset": "digits", "top1": 0.5, "masked": [],
        "batchnorms": [["bn1", 8, 1e-5], ["bn2", 16, 1e-5]], "head": "fc", "quant_scales": {"head": [0.01] * 5}}
    arrays = {"batchnorm.scale": np.ones(24, np.float16), "batchnorm.shift": np.zeros(24, np.float16),
              "head.weight": np.ones((5, 16), np.int8), "head.bias": np.zeros(5, np.float32)}
    return header, arrays


def ksm_task(scale_bits: int, seed: int = 0, method: str = "ksm") -> tuple[Task, dict[str, np.ndarray]]:
    """A KSM task as ksm-export --pack writes it: kernel masks [8, 3] and [16, 8], 2 BatchNorms, head."""
    rng = np.random.default_rng(seed)
    header, arrays = _common(method)
    binaries = {"conv1": rng.integers(0, 2, (8, 3)), "pw": rng.integers(0, 2, (16, 8))}
    zeros = sum(int((b == 0).sum()) for b in binaries.values())
    arrays["mask.binary"] = pack_codes(np.concatenate([b.reshape(-1) for b in binaries.values()]), 1)
    if scale_bits:
        arrays["mask.scale"] = pack_codes(rng.integers(0, 1 << scale_bits, zeros), scale_bits)
    header |= {"scale_bits": scale_bits, "soft": True, "top1_measured_at": "float",
               "masked": [["conv1", [8, 3]], ["pw", [16, 8]]]}
    return (header, arrays), binaries


def piggyback_task() -> Task:
    header, arrays = _common("piggyback")
    header |= {"soft": False, "masked": [[name, list(shape)] for name, shape in WEIGHTS.items()]}
    arrays["mask.binary"] = pack_codes(np.ones(sum(int(np.prod(s)) for s in WEIGHTS.values()), np.uint8), 1)
    return header, arrays


def finetune_task() -> Task:
    header, arrays = _common("finetune")
    header["masked"] = [[name, list(shape)] for name, shape in WEIGHTS.items()]
    for name, shape in WEIGHTS.items():
        arrays[f"weight.{name}"] = np.ones(shape, np.int8)
        header["quant_scales"][name] = [0.02] * shape[0]
    return header, arrays


def lora_task(rank: int = 2) -> Task:
    header, arrays = _common("lora")
    header |= {"masked": [["pw", [rank, 8, 1, 1], [16, rank, 1, 1]]], "scaling": 2.0}
    arrays |= {"lora_A.pw": np.ones((rank, 8, 1, 1), np.int8), "lora_B.pw": np.ones((16, rank, 1, 1), np.int8)}
    header["quant_scales"] |= {"lora_A.pw": [0.1] * rank, "lora_B.pw": [0.1] * 16}
    return header, arrays


def sequence_task(method: str, earlier: int = 0) -> Task:
    header, arrays = _common(method)
    header["sequence"] = {"position": 2, "tasks": 2, "index_bits": 2, "shared_sha256": "1" * 64,
                          "view_sha256": "2" * 64, "weights": [["conv1", earlier, 0], ["pw", 0, 0]]}
    if earlier:
        arrays["pick.bits"] = pack_codes(np.ones(earlier, np.uint8), 1)
    return header, arrays


def feature_task() -> Task:
    return _common("feature")


def write(path: Path, task: Task) -> Path:
    header, arrays = task
    save_file(arrays, str(path), metadata=encode_header(header))
    return path


def _ksm_file(path: Path, scale_bits: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a KSM task file (see :func:`ksm_task`); return its binary masks."""
    task, binaries = ksm_task(scale_bits, seed)
    write(path, task)
    return binaries


def refused(path: Path, *says: str) -> str:
    """The one line load_packed refuses ``path`` with: it names the file and says each of ``says``."""
    with pytest.raises(InputError) as caught:
        load_packed(path)
    line = str(caught.value)
    assert line.startswith(f"{path}: ") and "\n" not in line and len(line) < 600, line
    for part in says:
        assert part in line, line
    return line


# --------------------------------------------------------------------------------------------------------
# Bit streams and pricing
@pytest.mark.parametrize("scale_bits", [0, 3, 8])
def test_packed_ksm_task_is_priced_as_its_bytes(tmp_path: Path, scale_bits: int) -> None:
    path = tmp_path / "t.ksmtask"
    binaries = _ksm_file(path, scale_bits)
    work = load_packed(path)
    zeros = sum(int((b == 0).sum()) for b in binaries.values())
    zeros_per_layer = [int((b == 0).sum()) for b in binaries.values()]
    assert [t.zeros for t in work.tensors if t.role == "binary"] == zeros_per_layer
    assert work.ksm_soft is (scale_bits > 0) and work.batchnorm == "task" and work.top1 == 0.5
    prof = load_profile("edge_npu")
    bits = dataclasses.replace(prof.precision_bits, mask_scale=scale_bits)
    prof = dataclasses.replace(prof, precision_bits=bits)
    cost = task_cost(work, prof)
    # by hand: 24 + 128 mask bits, K bits per zero, 24 channels x 2 x 16 bits, head 80 x 8 bits + 5 x 32 bits
    expected = (24 + 128 + zeros * scale_bits) / 8 + 24 * 2 * 2 + 80 + 20
    assert cost.task_specific_bytes == pytest.approx(expected)
    tensors = path.stat().st_size - header_bytes(path)
    assert 0 <= tensors - expected < 2


@pytest.mark.parametrize("make", [piggyback_task, finetune_task, lora_task, feature_task,
                                  lambda: sequence_task("packnet"), lambda: sequence_task("cpg", 9)],
                         ids=["piggyback", "finetune", "lora", "feature", "packnet", "cpg"])
def test_every_method_s_file_is_read_and_priced_as_its_tensors(tmp_path: Path, make: Callable[[], Task]) -> None:
    header, arrays = make()
    path = write(tmp_path / "t.ksmtask", (header, arrays))
    work = load_packed(path)
    assert work.method == header["method"] and [layer.name for layer in work.layers] == ["conv1", "pw", "fc"]
    cost = task_cost(work, load_profile("edge_npu"))  # edge_npu stores what the headers say: 8/32/16 bits
    stored = sum(a.nbytes for a in arrays.values())
    assert 0 <= stored - cost.task_specific_bytes < 2, (stored, cost.task_specific_bytes)


def test_mask_bits_come_back_per_layer(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtask"
    binaries = _ksm_file(path, 4, seed=3)
    got = mask_bits(*read_packed(path))
    assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in binaries.items()}


def test_codes_round_trip_at_every_width() -> None:
    rng = np.random.default_rng(1)
    for bits in range(1, 17):
        codes = rng.integers(0, 1 << bits, 77)
        assert np.array_equal(unpack_codes(pack_codes(codes, bits), bits, 77), codes)


def test_every_mask_kind_has_a_schema_and_a_reader() -> None:
    assert set(KINDS) == set(PACKED_TENSORS) == {t.mask.name for t in catalogue.methods()}


def test_names_stay_text_and_values_stay_json() -> None:
    """A task called ``123`` or ``null`` is a name, not a number or nothing; other values round-trip."""
    (header, _), _ = ksm_task(4)
    header |= {"task": "123", "dataset": "null", "backbone_sha256": None}
    raw = encode_header(header)
    assert raw["task"] == "123" and raw["backbone_sha256"] == "null" and raw["scale_bits"] == "4"
    assert decode_header(raw, "t.ksmtask", InputError) == header


def test_other_files_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "masks.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(plain), metadata={"format": "ksm-shared/1"})
    with pytest.raises(InputError, match="ksm-task/1"):
        load_packed(plain)
    junk = tmp_path / "junk.ksmtask"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="safetensors"):
        load_packed(junk)
    (tmp_path / "folder.ksmtask").mkdir()
    refused(tmp_path / "folder.ksmtask", "is a folder")


def test_reader_leaves_torch_out(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtask"
    _ksm_file(path, 8)
    code = (f"import sys, hwsim.workload.packed\nhwsim.workload.packed.load_packed({str(path)!r})\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'ksm'))]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------------------
# A header that disagrees with its tensors, or with itself, is refused before pricing: one line, file and field
def _ksm(scale_bits: int = 4) -> Task:
    return ksm_task(scale_bits)[0]


def _edit(task: Task, change: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> Task:
    header, arrays = copy.deepcopy(task[0]), dict(task[1])
    change(header, arrays)
    return header, arrays


@pytest.mark.parametrize("method", [m for m in catalogue.names() if m != "ksm"])
def test_method_swapped_to_another_method(tmp_path: Path, method: str) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h.update(method=method)))
    line = refused(path)
    assert any(key in line for key in ("masked[0]", "scale_bits", "soft", "sequence", "scaling")), line


def test_piggyback_file_relabelled_ksm(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(piggyback_task(), lambda h, a: h.update(method="ksm")))
    refused(path, "masked[0]: [8, 3, 3, 3] does not fit layer 'conv1'", "[8, 3]")


def test_unknown_method(tmp_path: Path) -> None:
    refused(write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h.update(method="ksm2"))),
            "method: not a method of the catalogue")


def test_masks_removed(tmp_path: Path) -> None:
    def drop(h: dict, a: dict) -> None:
        del a["mask.binary"], a["mask.scale"]
    refused(write(tmp_path / "t.ksmtask", _edit(_ksm(), drop)), "tensor mask.binary: missing", "masked")


def test_masks_halved(tmp_path: Path) -> None:
    halve = lambda h, a: a.update({"mask.binary": a["mask.binary"][:9]})  # noqa: E731
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), halve))
    refused(path, "tensor mask.binary: 9 bytes", "152 mask entries", "implies 19")


@pytest.mark.parametrize("delta", [-1, 1])
def test_soft_scale_stream_of_the_wrong_length(tmp_path: Path, delta: int) -> None:
    def resize(h: dict, a: dict) -> None:
        a["mask.scale"] = np.zeros(a["mask.scale"].size + delta, np.uint8)
    refused(write(tmp_path / "t.ksmtask", _edit(_ksm(), resize)), "tensor mask.scale:", "zero bits of mask.binary")


def test_soft_scale_without_scale_bits(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(4), lambda h, a: h.update(scale_bits=0)))
    refused(path, "tensor 'mask.scale': not accounted for by the header")


def test_layer_renamed(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["layers"][1].update(name="pw2")))
    refused(path, "masked[1]: 'pw' is not a layer of layers")


def test_layer_dropped(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["layers"].pop(0)))
    refused(path, "masked[0]: 'conv1' is not a layer of layers")


def test_layer_duplicated(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["layers"].insert(1, h["layers"][0])))
    refused(path, "layers[1].name: 'conv1' is used twice")


def test_layer_left_unmasked(tmp_path: Path) -> None:
    """KSM masks every layer but the head: a file that drops a layer's mask (and its bits) is refused."""
    def drop(h: dict, a: dict) -> None:
        h["masked"].pop(0)
        a["mask.binary"] = pack_codes(np.ones(128, np.uint8), 1)
    refused(write(tmp_path / "t.ksmtask", _edit(_ksm(0), drop)), "masked: layer 'conv1' of layers is not masked")


def test_masked_names_a_layer_not_in_layers(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["masked"].append(["ghost", [4, 4]])))
    refused(path, "masked[2]: 'ghost' is not a layer of layers")


def test_masked_twice_or_the_head(tmp_path: Path) -> None:
    twice = write(tmp_path / "a.ksmtask", _edit(_ksm(), lambda h, a: h["masked"].append(["pw", [16, 8]])))
    refused(twice, "masked[2]: 'pw' is listed twice")
    head = write(tmp_path / "b.ksmtask", _edit(_ksm(), lambda h, a: h["masked"].append(["fc", [5, 16]])))
    refused(head, "masked[2]: 'fc' is the head")


def test_top1_is_a_fraction(tmp_path: Path) -> None:
    refused(write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h.update(top1=7))), "top1: must be at most 1")


def test_negative_scale_bits(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h.update(scale_bits=-3)))
    refused(path, "scale_bits: must be at least 0, got -3")


def test_nan_scale_bits_names_the_field(tmp_path: Path) -> None:
    header, arrays = _ksm()
    raw = encode_header(header) | {"scale_bits": "NaN"}
    path = tmp_path / "t.ksmtask"
    save_file(arrays, str(path), metadata=raw)
    refused(path, "scale_bits: ", "nan")


def test_missing_head_tensor(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: a.pop("head.weight")))
    refused(path, "tensor head.weight: missing", "head 'fc'")


def test_head_of_the_wrong_shape_or_type(tmp_path: Path) -> None:
    narrow = lambda h, a: a.update({"head.weight": np.ones((5, 8), np.int8)})  # noqa: E731
    shape = write(tmp_path / "a.ksmtask", _edit(_ksm(), narrow))
    refused(shape, "tensor head.weight: shape [5, 8], but head 'fc' implies [5, 16]")
    half = lambda h, a: a.update({"head.bias": np.zeros(5, np.float16)})  # noqa: E731
    floats = write(tmp_path / "b.ksmtask", _edit(_ksm(), half))
    refused(floats, "tensor head.bias: float16", "implies float32")


def test_huge_masked_shape_is_bounded(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["masked"][0].__setitem__(1, [2 ** 62, 3])))
    refused(path, "masked[0].shape[0]: must be at most 1048576, got 4611686018427387904")


def test_a_tensor_the_header_does_not_account_for(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: a.update(extra=np.zeros(100, np.uint8))))
    refused(path, "tensor 'extra': not accounted for by the header")


def test_head_that_is_not_the_classifier(tmp_path: Path) -> None:
    refused(write(tmp_path / "a.ksmtask", _edit(_ksm(), lambda h, a: h.update(head="pw"))),
            "head: 'pw' is not the classifier")
    refused(write(tmp_path / "b.ksmtask", _edit(_ksm(), lambda h, a: h.update(num_classes=10))),
            "num_classes: 10, but head 'fc' has 5 outputs")


def test_quantisation_scales_match_the_int8_tensors(tmp_path: Path) -> None:
    missing = write(tmp_path / "a.ksmtask", _edit(finetune_task(), lambda h, a: h["quant_scales"].pop("pw")))
    refused(missing, "quant_scales.pw: missing")
    short = write(tmp_path / "b.ksmtask", _edit(_ksm(), lambda h, a: h["quant_scales"].update(head=[0.1])))
    refused(short, "quant_scales.head: 1 scales for 5 rows")


def test_finetune_copy_must_be_there(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(finetune_task(), lambda h, a: a.pop("weight.pw")))
    refused(path, "tensor weight.pw: missing", "masked 'pw'")


def test_lora_adapter_shapes(tmp_path: Path) -> None:
    wrong_b = lambda h, a: h["masked"][0].__setitem__(2, [16, 3, 1, 1])  # noqa: E731
    rank = write(tmp_path / "a.ksmtask", _edit(lora_task(), wrong_b))
    refused(rank, "masked[0]: [2, 8, 1, 1] and [16, 3, 1, 1] does not fit layer 'pw'")
    big = write(tmp_path / "b.ksmtask", lora_task(rank=9))
    refused(big, "masked[0]: rank 9 is not in 1..8")


def test_cpg_pick_stream_length(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(sequence_task("cpg", 9),
                                               lambda h, a: a.update({"pick.bits": np.zeros(1, np.uint8)})))
    refused(path, "tensor pick.bits: 1 bytes", "implies 2")
    ghost = write(tmp_path / "b.ksmtask", _edit(sequence_task("packnet"),
                                                lambda h, a: h["sequence"]["weights"].append(["ghost", 0, 0])))
    refused(ghost, "sequence.weights[2]: 'ghost' is not a layer of layers")


def test_unknown_header_key_and_bad_json(tmp_path: Path) -> None:
    refused(write(tmp_path / "a.ksmtask", _edit(_ksm(), lambda h, a: h.update(colour="red"))),
            "colour: unknown key")
    header, arrays = _ksm()
    path = tmp_path / "b.ksmtask"
    save_file(arrays, str(path), metadata=encode_header(header) | {"layers": "[{"})
    refused(path, "layers: not valid JSON")


def test_precisions_are_the_ones_a_file_can_hold(tmp_path: Path) -> None:
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["precisions"].update(weights=4)))
    refused(path, "precisions.weights: ")


@pytest.mark.parametrize("make", [lambda: _ksm(), piggyback_task, finetune_task, lora_task, feature_task,
                                  lambda: sequence_task("cpg", 9)],
                         ids=["ksm", "piggyback", "finetune", "lora", "feature", "cpg"])
def test_the_header_read_back_is_the_header_written(tmp_path: Path, make: Callable[[], Task]) -> None:
    header, arrays = make()
    meta, read = read_packed(write(tmp_path / "t.ksmtask", (header, arrays)))
    assert meta == header and set(read) == set(arrays)


def test_the_header_read_back_holds_the_checked_values(tmp_path: Path) -> None:
    """A size written ``8.0`` is read as the 8 it was checked as; a size written as text ``"8"`` is refused
    (JSON has numbers: no coercion from strings), never passed on as text a reader multiplies."""
    path = write(tmp_path / "t.ksmtask", _edit(_ksm(), lambda h, a: h["masked"][0].__setitem__(1, [8.0, 3.0])))
    meta, _ = read_packed(path)
    assert meta["masked"][0] == ["conv1", [8, 3]] and isinstance(meta["masked"][0][1][0], int)
    text = write(tmp_path / "s.ksmtask", _edit(_ksm(), lambda h, a: h["masked"][0].__setitem__(1, ["8", 3])))
    with pytest.raises(InputError, match=r"masked\[0\]"):
        read_packed(text)
