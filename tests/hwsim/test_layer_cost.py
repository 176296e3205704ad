"""The per-layer formulas on hand-derived cases, and MAC counts of the bundled networks vs torchvision."""

from __future__ import annotations

import math

import pytest

from hwsim import Layer, load_network, load_profile, simulate
from hwsim.cost.layer_cost import (
    element_mask_entries,
    input_elems,
    kernel_mask_entries,
    macs,
    output_elems,
    shape_of,
    weight_elems,
)
from hwsim.cost.mapping import search
from hwsim.errors import InputError
from tests.hwsim.reference_dataflows import map_output_stationary, map_row_stationary, map_weight_stationary


def conv(cin, cout, k, hw, stride=1, pad=0, groups=1, name="c") -> Layer:
    out = (hw + 2 * pad - k) // stride + 1
    return Layer(name, "conv", cin, cout, (k, k), (stride, stride), (pad, pad), groups, (hw, hw), (out, out))


def test_pointwise_conv() -> None:
    layer = conv(16, 32, 1, 8)
    assert macs(layer) == 16 * 32 * 8 * 8
    assert weight_elems(layer) == 512
    assert input_elems(layer) == 16 * 8 * 8
    assert output_elems(layer) == 32 * 64


def test_depthwise_conv() -> None:
    layer = conv(32, 32, 3, 10, pad=1, groups=32)
    assert macs(layer) == 32 * 9 * 10 * 10  # one input channel per output channel
    assert weight_elems(layer) == 32 * 9
    assert kernel_mask_entries(layer) == 32  # [out, in/groups] = [32, 1]
    assert input_elems(layer) == 32 * 12 * 12  # padded footprint


def test_stride_two_footprint() -> None:
    # 3x3 stride 2 pad 1 on 16x16 -> 8x8; the window touches (8-1)*2+3 = 17 of the 18 padded rows
    assert input_elems(conv(4, 4, 3, 16, stride=2, pad=1)) == 4 * 17 * 17
    # 1x1 stride 2: only the 8 touched rows/cols of 16 count
    assert input_elems(conv(4, 4, 1, 16, stride=2)) == 4 * 8 * 8


def test_linear_layer() -> None:
    fc = Layer("fc", "linear", 2048, 1000, (1, 1))
    assert macs(fc) == 2048 * 1000 == weight_elems(fc)
    assert kernel_mask_entries(fc) == element_mask_entries(fc)


def test_layer_rejects_inconsistent_geometry() -> None:
    with pytest.raises(InputError, match="output_hw"):
        Layer("bad", "conv", 3, 8, (3, 3), (1, 1), (1, 1), 1, (16, 16), (15, 15))
    with pytest.raises(InputError, match="groups"):
        Layer("bad", "conv", 6, 8, (3, 3), (1, 1), (1, 1), 4, (16, 16), (16, 16))


def test_weight_stationary_mapping_hand_derived() -> None:
    d = shape_of(conv(16, 32, 3, 18))  # 16x16 output, window 144
    m = map_weight_stationary(d, 8, 8, 0)
    assert m.cycles == math.ceil(144 / 8) * math.ceil(32 / 8) * 256
    assert m.weights == 32 * 144 and m.outputs == 32 * 256 * 18


def test_depthwise_packs_groups_diagonally() -> None:
    d = shape_of(conv(64, 64, 3, 10, pad=1, groups=64))
    m = map_weight_stationary(d, 32, 32, 0)
    # window 9 per group: 32 // 9 = 3 groups at once on rows, cols allow 32 -> 3 groups per fold
    assert m.cycles == math.ceil(64 / 3) * 100
    o = map_output_stationary(d, 32, 32, 0)
    assert o.cycles == math.ceil(64 / 32) * math.ceil(100 / 32) * 9


def test_row_stationary_cycles() -> None:
    d = shape_of(conv(8, 16, 3, 16, pad=1))  # P = Q = 16, R = S = 3
    m = map_row_stationary(d, 12, 14, 8 * 18 * 18)
    # rows: R=3 then C: 12 // 3 = 4 channels; cols: 14 output rows, K: 14 // 14 = 1
    assert m.cycles == 16 * math.ceil(8 / 4) * 1 * math.ceil(16 / 14) * 16 * 3


AGREE = [  # (profile, closed form, layers whose unrolling the closed form and the search share)
    *[(p, map_weight_stationary, [conv(64, 64, 3, 56, pad=1), conv(128, 128, 3, 28, pad=1),
                                  conv(256, 512, 1, 14), conv(512, 512, 3, 7, pad=1),
                                  Layer("fc", "linear", 512, 1024, (1, 1))])
      for p in ("edge_npu", "zigzag_tpu_like", "edge_tpu")],
    ("ethos_u55", map_output_stationary, [conv(32, 64, 3, 32, pad=1), conv(64, 128, 1, 16)]),
]


@pytest.mark.parametrize(("profile", "closed_form", "layers"), AGREE, ids=[p for p, _, _ in AGREE])
def test_search_takes_the_closed_form_cycles_where_the_unrollings_agree(profile, closed_form, layers) -> None:
    """Where the fixed dataflow's unrolling fills the array evenly (weight stationary: C a multiple of
    the rows, K of the columns; output stationary: OX of the rows, K of the columns), the search under
    ``latency`` finds the same compute cycles as the closed form (MACs / PEs: the array is full)."""
    p = load_profile(profile)
    for layer in layers:
        shape = shape_of(layer)
        expected = closed_form(shape, p.array.rows, p.array.cols, 0).cycles
        assert expected == macs(layer) // p.array.pes
        assert search(shape, p, "latency").compute_cycles == expected, layer


# torchvision's published operation counts (GFLOPS column of the model docs: ResNet-50 4.09,
# ResNet-18 1.81, MobileNetV2 0.30, VGG-16(-BN) 15.47), as quoted in the issue.
PUBLISHED_GMACS = {"resnet50": 4.089, "resnet18": 1.814, "mobilenet_v2": 0.301, "vgg16": 15.47}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_bundled_network_macs_match_torchvision(name: str) -> None:
    work = load_network(name)
    total = sum(macs(layer) for layer in work.layers)
    assert total / 1e9 == pytest.approx(PUBLISHED_GMACS[name], rel=0.005)
    assert work.layers[-1].kind == "linear" and work.layers[-1].out_channels == 1000


@pytest.mark.parametrize("profile", ["edge_npu", "eyeriss", "edge_tpu", "ethos_u55"])
def test_latency_at_least_compute_bound(profile: str) -> None:
    p = load_profile(profile)
    r = simulate(load_network("resnet18"), p)
    assert r.compute_cycles >= r.macs / p.array.pes
    assert r.cycles >= r.compute_cycles
    assert r.latency_s == pytest.approx(r.cycles / p.clock_hz)


def test_masks_streamed_with_the_weights_stall_a_bandwidth_bound_layer() -> None:
    """On the fly, mask bits ride the weights' ports: a layer that is already DRAM-bound (a classifier,
    every weight read once) gets slower by about the mask's share of its traffic; a mask never speeds
    a layer up."""
    from hwsim.cost.layer_cost import MaskLoad, layer_cost, weight_elems
    from hwsim.workload.layers import Layer
    from hwsim.hardware.profile import load_profile

    profile = load_profile("edge_npu")
    fc = Layer("classifier", "linear", 1280, 1000, (1, 1), (1, 1), (0, 0), 1, (1, 1), (1, 1))
    plain = layer_cost(fc, profile)
    masked = layer_cost(fc, profile, MaskLoad(bits=8.0 * weight_elems(fc), op_pj_per_weight=0.01))
    # 8 mask bits per 8-bit weight: twice the DRAM bytes of a layer whose time is its weights' loading
    assert masked.cycles > plain.cycles * 1.4 and masked.bound == profile.dram.name
    conv = Layer("c", "conv", 64, 64, (3, 3), (1, 1), (1, 1), 1, (56, 56), (56, 56))
    tiny = layer_cost(conv, profile, MaskLoad(bits=1.0, op_pj_per_weight=0.01))
    assert tiny.cycles >= layer_cost(conv, profile).cycles
