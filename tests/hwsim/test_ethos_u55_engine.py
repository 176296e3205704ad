"""Ethos-U55's MAC engine as Vela 5.2.0 models it, in the ``ethos_u55`` profile: three mechanisms, each checked
against Vela's own numbers and shown to be what moves the layers it concerns into tolerance.

- The OFM micro-block (2x2 pixels x 8 output channels) as a spatial alternative, costed instead of 32 columns of
  output channels where fewer output channels leave columns idle (``spatial.alternatives`` with ``cols_block``).
- The weight sets' passes: per set, the larger of its 32-cycle load (``cyclesWb``) and 4 cycles per micro-block,
  a floor on the MAC time (``weight_sets``, :mod:`hwsim.cost.weight_sets`).
- The kernel stepped 4 taps at a time by a depthwise or part-kernel layer, so a MAC lane's 4 weights hold a step
  (:func:`hwsim.cost.weight_sets.kernel_steps`).

Vela's numbers come from ``fixtures/vela/fresh`` and ``fixtures/vela/sram_only_1ghz`` (their READMEs give the
commands); "U55P" is ``ethosu/regor/architecture/ethosu55/ethos_u55_performance.cpp`` of Vela 5.2.0.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from hwsim import load_profile, simulate
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping import best_mapping
from hwsim.cost.weight_sets import kernel_steps, part_kernel, weight_set_cycles
from hwsim.errors import InputError
from hwsim.hardware.profile import profile_from_dict
from hwsim.workload.onnx_reader import load_onnx

VELA = Path(__file__).parent / "fixtures" / "vela"
FRESH, FITTED = VELA / "fresh", VELA / "sram_only_1ghz"
TOLERANCE = 1.5


def _fixture(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))


def _ratio(name: str, profile=None) -> float:
    rec = _fixture(FRESH, name)
    work, _ = load_onnx(FRESH / rec["onnx"]["file"], warn=False)
    result = simulate(work, profile or load_profile("ethos_u55"))
    return sum(c.cycles for c in result.layers) / rec["total_cycles"]


def _single_conv_shape(folder: Path, name: str):
    rec = _fixture(folder, name)
    work, _ = load_onnx(folder / rec["onnx"]["file"], warn=False)
    (layer,) = work.layers
    return rec, shape_of(layer)


def _vela_ops(folder: Path):
    for path in sorted(folder.glob("*.json")):
        for op in json.loads(path.read_text(encoding="utf-8"))["operators"]:
            if op.get("type") in ("Conv2D", "DepthwiseConv2D") and "block" in op:
                yield path.stem, op


def test_part_kernel_is_vela_choice_for_every_convolution_it_compiled() -> None:
    """ChooseKernelMethod ported: for every Conv2D Vela compiled in both fixture sets (MobileNetV2's included),
    hwsim's rule names the traversal Vela's block config reports."""
    from hwsim.cost.mapping.space import Shape

    ws = load_profile("ethos_u55").weight_sets
    seen = set()
    for folder in (FRESH, FITTED):
        for name, op in _vela_ops(folder):
            if op["type"] != "Conv2D":
                continue
            (fy, fx), c = op["kernel"]["size_hw"], op["inputs"][0][3]
            # a group of a grouped convolution (Vela runs one convolution per group, G x fewer channels each)
            c //= math.isqrt(math.prod(op["output"][1:]) * c * fy * fx // op["macs"])
            shape = Shape(b=1, g=1, k=op["output"][3], c=c, oy=1, ox=1, fy=fy, fx=fx)
            want = op["block"]["traversal"] == "PartKernel"
            assert part_kernel(shape, ws) == want, (name, op["id"], c, fy, fx)
            seen.add(want)
    assert seen == {True, False}


@pytest.mark.parametrize("name, low, high", [
    ("fc_512to10", 1.0, 1.04),            # 32 sets x cyclesWb 32 = 1,024; Vela 1,056 with its delay cycles
    ("conv3x3_8to8_40", 1.0, 1.17),       # part-kernel: 3 steps x 400 micro-blocks x 4 = 4,800; Vela's 5,600 =
                                          # 4 OFM blocks x 1,200 + one block of output-unit time (U55P L438)
    ("conv7x7s2_3to32_160", 1.0, 1.01),   # part-kernel: 13 steps x 4 depths x 1,600 micro-blocks x 4
    ("dw5x5_120_28", 1.0, 1.01),          # depthwise: 7 steps x 15 depths x 196 micro-blocks x 4
    ("conv1x1_320to1280_7", 1.0, 1.06),   # depth-first: 10 slices x 160 depths x 16 micro-blocks x 4
])
def test_weight_set_floor_is_vela_mac_time_for_one_ofm_block(name: str, low: float, high: float) -> None:
    """The floor is Vela's MAC time (U55P EstimateMacCyclesPerBlock) with one OFM block over the whole output;
    Vela's ``mac_cycles`` add its blocks' partial micro-blocks and delay cycles and one block's output-unit time
    (``totalMacCycles = macCyclesPerBlock x blocks + aoCyclesPerBlock``, U55P L438), so never less."""
    rec, shape = _single_conv_shape(FRESH, name)
    (op,) = rec["operators"]
    floor = weight_set_cycles(shape, load_profile("ethos_u55").weight_sets)
    assert low <= op["mac_cycles"] / floor <= high, (op["mac_cycles"], floor)


def test_without_the_weight_set_floor_the_classifier_misses() -> None:
    """fc_512to10: 64 compute cycles and 5 KB of weights are 708 cycles without the floor (0.52 of Vela); with
    it, 1,024 MAC cycles: within tolerance."""
    p = load_profile("ethos_u55")
    assert 1 / TOLERANCE <= _ratio("fc_512to10") <= TOLERANCE
    assert _ratio("fc_512to10", dataclasses.replace(p, weight_sets=None)) < 1 / TOLERANCE


def test_without_the_micro_block_columns_few_output_channels_miss() -> None:
    """conv3x3_8to8_40: 8 output channels on 32 columns of output channels fill a quarter of the engine (2.47x
    Vela); on the 2x2x8 micro-block, all of it."""
    p = load_profile("ethos_u55")
    plain = dataclasses.replace(p, spatial=dataclasses.replace(p.spatial, alternatives=()))
    assert 1 / TOLERANCE <= _ratio("conv3x3_8to8_40") <= TOLERANCE
    assert _ratio("conv3x3_8to8_40", plain) > TOLERANCE


def test_the_micro_block_is_costed_only_where_output_channels_leave_columns_idle() -> None:
    """With 32 output channels or more (64; 40, whose second fold is part-empty) the profile's own columns stay;
    with 8 the block replaces them."""
    from hwsim.cost.mapping.space import arch, spatial_options

    a = arch(load_profile("ethos_u55"))
    for folder, name in ((FITTED, "conv3x3_64to64_56"), (FRESH, "conv3x3_40to40_17")):
        _, wide = _single_conv_shape(folder, name)
        assert all(sp.cols == (("K", 32),) for sp in spatial_options(wide, a)), name
    _, narrow = _single_conv_shape(FRESH, "conv3x3_8to8_40")
    assert [sp.cols for sp in spatial_options(narrow, a)] == [(("K", 8), ("OX", 2), ("OY", 2))]


@pytest.mark.parametrize("name", ["conv7x7s2_3to32_160", "dw5x5s2_72_56"])
def test_without_kernel_steps_large_kernels_miss(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 7x7 stem (part-kernel, 3 channels) and the stride-2 5x5 depthwise layer: without the steps a lane's 4
    weights hold no kernel row of 7 or 5 taps, so partial sums leave it every tap or weights are read per MAC
    (1.89x, 2.26x Vela); stepped 4 taps at a time, as Vela's engine does, both are within tolerance."""
    assert 1 / TOLERANCE <= _ratio(name) <= TOLERANCE
    best_mapping.clear_caches()
    monkeypatch.setattr(best_mapping, "kernel_steps", lambda shape, ws: shape)
    try:
        assert _ratio(name) > TOLERANCE
    finally:
        best_mapping.clear_caches()


def test_kernel_steps_keep_small_kernels_and_depth_first_layers() -> None:
    """Only a depthwise or part-kernel layer with a kernel axis longer than a step is stepped; its input footprint
    stays the layer's."""
    ws = load_profile("ethos_u55").weight_sets
    _, dw5 = _single_conv_shape(FRESH, "dw5x5_120_28")
    stepped = kernel_steps(dw5, ws)
    assert (stepped.fy, stepped.fx) == (7, 4) and (stepped.iy, stepped.ix) == (dw5.iy, dw5.ix)
    for folder, name in ((FITTED, "dw3x3_32_112"), (FITTED, "conv5x5_64to64_28"), (FRESH, "conv3x3_8to8_40")):
        _, shape = _single_conv_shape(folder, name)
        assert kernel_steps(shape, ws) == shape, name


def test_a_stepped_layer_reports_its_true_macs() -> None:
    """The steps pad the kernel (25 taps as 28) for the engine's time; the layer's MACs stay its own, and its
    utilisation shows the padding."""
    rec, shape = _single_conv_shape(FRESH, "dw5x5_120_28")
    work, _ = load_onnx(FRESH / rec["onnx"]["file"], warn=False)
    (layer,) = simulate(work, load_profile("ethos_u55")).layers
    assert layer.macs == shape.macs == rec["operators"][0]["macs"]
    assert layer.compute_cycles * 32 >= layer.macs * 28 / 25


def _raw_profile() -> dict:
    from hwsim.hardware.profile import read_raw_profile

    return read_raw_profile("ethos_u55")[0]


def test_profile_refuses_a_block_that_does_not_name_the_columns() -> None:
    raw = _raw_profile()
    raw["spatial"]["alternatives"][0]["cols_block"] = {"K": 8, "OX": 2}
    with pytest.raises(InputError, match="cols_block must name exactly"):
        profile_from_dict(raw, "u55.yaml")


def test_profile_refuses_a_weight_set_of_no_cycles() -> None:
    raw = _raw_profile()
    raw["weight_sets"]["cycles"] = 0
    with pytest.raises(InputError, match="weight_sets"):
        profile_from_dict(raw, "u55.yaml")
