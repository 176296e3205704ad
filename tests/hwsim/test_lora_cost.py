"""LoRA's costs counted by hand on small layers: storage, the branch's MACs and bytes, both modes."""

from __future__ import annotations

import pytest

from hwsim import catalogue
from hwsim.cost import lora_cost as lora
from hwsim.cost.layer_cost import layer_cost, macs, weight_elems
from hwsim.errors import InputError
from hwsim.workload.layers import Layer, TensorInfo, Workload
from hwsim.cost.mask_cost import task_cost
from hwsim.hardware.profile import load_profile
from hwsim.cost.simulate import simulate

# 3x3 conv, 4 -> 6 channels, 8x8 -> 8x8 (padding 1); a 1x1 conv 6 -> 10 on 8x8; a head 10 -> 3
CONV = Layer("c1", "conv", 4, 6, (3, 3), (1, 1), (1, 1), 1, (8, 8), (8, 8))
POINT = Layer("c2", "conv", 6, 10, (1, 1), (1, 1), (0, 0), 1, (8, 8), (8, 8))
HEAD = Layer("fc", "linear", 10, 3, (1, 1))


def _work(rank: int = 2) -> Workload:
    tensors = (TensorInfo("c1.lora_A.weight", "lora_A", (rank, 4, 3, 3)),
               TensorInfo("c1.lora_B.weight", "lora_B", (6, rank, 1, 1)),
               TensorInfo("c2.lora_A.weight", "lora_A", (rank, 6, 1, 1)),
               TensorInfo("c2.lora_B.weight", "lora_B", (10, rank, 1, 1)),
               TensorInfo("fc.weight", "head", (3, 10)), TensorInfo("fc.bias", "head", (3,)))
    return Workload("toy", (CONV, POINT, HEAD), task="t", method="lora", batchnorm="frozen", tensors=tensors)


def test_counts_by_hand() -> None:
    # A: 2 x 4 x 3 x 3 = 72, B: 6 x 2 = 12 -> 84 weights = 2 * (4*9 + 6)
    assert lora.adapter_params(CONV, 2) == 84
    assert lora.adapter_bits(CONV, 2, 8) == 672
    assert lora.adapter_params(POINT, 2) == 2 * (6 + 10) == 32
    # extra MACs: A 64 px * 2 * 36 = 4608, B 64 * 6 * 2 = 768 -> 5376
    assert lora.extra_macs(CONV, 2) == 4608 + 768 == 5376
    assert lora.intermediate_elems(CONV, 2) == 128  # 2 channels x 8 x 8
    assert lora.adapter_bits(CONV, 2, 16) == 2 * 672  # at the profile's weight precision
    a, b = lora.branch_layers(CONV, 2)
    assert (a.in_channels, a.out_channels, a.kernel_hw, a.padding_hw, a.output_hw) == (4, 2, (3, 3), (1, 1), (8, 8))
    assert (b.in_channels, b.out_channels, b.kernel_hw, b.input_hw) == (2, 6, (1, 1), (8, 8))
    assert macs(a) + macs(b) == lora.extra_macs(CONV, 2)
    assert weight_elems(a) + weight_elems(b) == lora.adapter_params(CONV, 2)


def test_storage_rule_through_the_catalogue() -> None:
    profile = load_profile("edge_npu")  # 8-bit weights, 0.3 pJ per MAC
    assert catalogue.get("lora").mask is catalogue.LOW_RANK
    tc = task_cost(_work(), profile, "on_the_fly")
    assert tc.mask_bits == {"c1": 672.0, "c2": 256.0}  # (84 + 32) weights x 8 bits
    assert tc.on_the_fly == {}  # no bits streamed with the weights: the branch is costed as layers
    folded = task_cost(_work(), profile, "folded")
    w = weight_elems(CONV) + weight_elems(POINT)  # 216 + 60 = 276
    assert folded.switch_ops == 2 * w  # rank MACs per weight to merge B A into W
    assert folded.switch_energy_pj - task_cost(_work(), profile, "on_the_fly").switch_energy_pj > 0
    assert folded.switch_write_bytes == w  # the task's full weight copy, 8-bit
    assert folded.switch_read_bytes == tc.head_bytes + (672 + 256) / 8 + w


def test_on_the_fly_adds_the_branch_layers_and_folded_costs_the_backbone() -> None:
    profile = load_profile("edge_npu")
    work = _work(rank=2)
    live, folded = simulate(work, profile, "on_the_fly"), simulate(work, profile, "folded")
    plain = simulate(Workload("toy", work.layers), profile)
    assert folded.macs == plain.macs == macs(CONV) + macs(POINT) + macs(HEAD)
    assert live.macs - folded.macs == lora.extra_macs(CONV, 2) + lora.extra_macs(POINT, 2)
    names = [c.name for c in live.layers]
    assert names[3:] == ["c1.lora_A", "c1.lora_B", "c2.lora_A", "c2.lora_B"]
    extra = live.layers[3:]
    a, b = lora.branch_layers(CONV, 2)
    # fused with the layer: A's inputs are the layer's (not fetched again), B adds into its partial sums
    unfused_a, unfused_b = layer_cost(a, profile), layer_cost(b, profile)
    assert not any(op == "inputs" for _, op in extra[0].read_bytes) and any(
        op == "inputs" for _, op in unfused_a.read_bytes)
    assert not any(op == "outputs" for _, op in extra[1].write_bytes)
    assert extra[0].read_bytes[("dram", "weights")] == unfused_a.read_bytes[("dram", "weights")] == 72
    # the intermediate 2 x 8 x 8 activations: written by A, read by B (8-bit outputs and inputs)
    assert extra[0].write_bytes[("dram", "outputs")] == lora.intermediate_elems(CONV, 2) == 128
    assert extra[1].read_bytes[("dram", "inputs")] == 128
    assert extra[0].energy_pj[("mac", "mac")] == macs(a) * profile.array.mac_energy_pj
    assert sum(sum(c.energy_pj.values()) for c in extra[:2]) < sum(unfused_a.energy_pj.values()) + sum(
        unfused_b.energy_pj.values())
    assert live.energy_j > folded.energy_j and live.latency_s >= folded.latency_s
    # the branch's weights come from DRAM once each (they fit on chip): 84 + 32 bytes at 8 bits
    dram_w = sum(c.read_bytes.get(("dram", "weights"), 0.0) for c in extra)
    assert dram_w == 84 + 32


def test_bad_adapter_tensors_are_named() -> None:
    work = _work()
    bad = Workload("toy", work.layers, method="lora",
                   tensors=(TensorInfo("c1.lora_A.weight", "lora_A", (2, 5, 3, 3)),))
    with pytest.raises(InputError, match=r"c1.lora_A.weight: shape \[2, 5, 3, 3\] is not \[rank, 4, 3, 3\]"):
        lora.ranks(bad)
    stray = Workload("toy", work.layers, method="lora", tensors=(TensorInfo("c9.lora_A.weight", "lora_A", (2,)),))
    with pytest.raises(InputError, match="c9.lora_A.weight: a lora_A tensor must be named"):
        lora.ranks(stray)
    grouped = Layer("dw", "conv", 4, 4, (3, 3), (1, 1), (1, 1), 4, (8, 8), (8, 8))
    with pytest.raises(InputError, match="grouped convs"):
        lora.branch_layers(grouped, 2)
