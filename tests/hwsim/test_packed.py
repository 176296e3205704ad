"""The deployable task file read by hwsim without torch: bit streams, pricing, and refusal of other files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from hwsim.errors import InputError
from hwsim.cost.mask_cost import task_cost
from hwsim.workload.packed import header_bytes, load_packed, mask_bits, pack_codes, read_packed, unpack_codes
from hwsim.hardware.profile import load_profile

LAYERS = [
    {"name": "conv1", "kind": "conv", "in_channels": 3, "out_channels": 8, "kernel": [3, 3], "stride": [1, 1],
     "padding": [1, 1], "groups": 1, "bias": False, "input_hw": [16, 16], "output_hw": [16, 16]},
    {"name": "pw", "kind": "conv", "in_channels": 8, "out_channels": 16, "kernel": [1, 1], "stride": [1, 1],
     "padding": [0, 0], "groups": 1, "bias": False, "input_hw": [16, 16], "output_hw": [16, 16]},
    {"name": "fc", "kind": "linear", "in_channels": 16, "out_channels": 5, "kernel": [1, 1], "stride": [1, 1],
     "padding": [0, 0], "groups": 1, "bias": True, "input_hw": [1, 1], "output_hw": [1, 1]},
]


def _ksm_file(path: Path, scale_bits: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A KSM task file as ksm-export --pack writes it: masks [8, 3] and [16, 8], 2 BatchNorms, head."""
    rng = np.random.default_rng(seed)
    binaries = {"conv1": rng.integers(0, 2, (8, 3)), "pw": rng.integers(0, 2, (16, 8))}
    zeros = sum(int((b == 0).sum()) for b in binaries.values())
    arrays = {"mask.binary": pack_codes(np.concatenate([b.reshape(-1) for b in binaries.values()]), 1),
              "batchnorm.scale": np.ones(24, np.float16), "batchnorm.shift": np.zeros(24, np.float16),
              "head.weight": np.ones((5, 16), np.int8), "head.bias": np.zeros(5, np.float32)}
    if scale_bits:
        arrays["mask.scale"] = pack_codes(rng.integers(0, 1 << scale_bits, zeros), scale_bits)
    meta: dict[str, Any] = {"format": "ksm-task/1", "task": "t", "method": "ksm", "arch": "x", "weights": "w",
                            "backbone_sha256": "0" * 64, "scale_bits": scale_bits, "soft": True, "layers": LAYERS,
                            "masked": [["conv1", [8, 3, 3, 3]], ["pw", [16, 8, 1, 1]]],
                            "batchnorms": [["bn1", 8, 1e-5], ["bn2", 16, 1e-5]], "head": "fc", "top1": 0.5}
    save_file(arrays, str(path), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    return binaries


@pytest.mark.parametrize("scale_bits", [0, 3, 8])
def test_packed_ksm_task_is_priced_as_its_bytes(tmp_path: Path, scale_bits: int) -> None:
    path = tmp_path / "t.ksmtask"
    binaries = _ksm_file(path, scale_bits)
    work = load_packed(path)
    zeros = sum(int((b == 0).sum()) for b in binaries.values())
    assert [t.zeros for t in work.tensors if t.role == "binary"] == [int((b == 0).sum()) for b in binaries.values()]
    assert work.ksm_soft is (scale_bits > 0) and work.batchnorm == "task" and work.top1 == 0.5
    prof = load_profile("edge_npu")
    import dataclasses

    prof = dataclasses.replace(prof, precision_bits=dataclasses.replace(prof.precision_bits, mask_scale=scale_bits))
    cost = task_cost(work, prof)
    # by hand: 24 + 128 mask bits, K bits per zero, 24 channels x 2 x 16 bits, head 80 x 8 bits + 5 x 32 bits
    expected = (24 + 128 + zeros * scale_bits) / 8 + 24 * 2 * 2 + 80 + 20
    assert cost.task_specific_bytes == pytest.approx(expected)
    tensors = path.stat().st_size - header_bytes(path)
    assert 0 <= tensors - expected < 2


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


def test_other_files_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "masks.safetensors"
    save_file({"x": np.zeros(3, np.float32)}, str(plain), metadata={"format": "ksm-shared/1"})
    with pytest.raises(InputError, match="ksm-task/1"):
        load_packed(plain)
    junk = tmp_path / "junk.ksmtask"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="safetensors"):
        load_packed(junk)


def test_reader_leaves_torch_out(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtask"
    _ksm_file(path, 8)
    code = (f"import sys, hwsim.workload.packed\nhwsim.workload.packed.load_packed({str(path)!r})\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'ksm'))]\nassert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
