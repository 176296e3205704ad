"""A second independent check of the ``ethos_u55`` profile: Vela on layers of networks deployed on Ethos-U55.

The profile was re-derived and checked against the layers of ``fixtures/vela/sram_only_1ghz``;
``fixtures/vela/fresh`` was a first set it was not fitted to. The fifteen models of ``fixtures/vela/fresh2``
(``scripts/vela_fresh2_layers.py``; the README beside them gives the commands and versions) are a second such
set, disjoint from both, taken from networks people run on Ethos-U55: DS-CNN keyword spotting (the 10x4
stride-2 stem on the 49x10 MFCC map, a depthwise-separable block at 25x5x64, a 256->12 classifier),
MobileNetV1 0.25 at 96x96 (visual wake words: the 3->8 stride-2 stem, a stride-2 depthwise layer, a
depthwise + pointwise block at 24x24, a 1x1 at 6x6), ResNet-8 (a 3x3 16->16 layer, the 1x1 stride-2 shortcut),
EfficientNet-Lite0 (5x5 depthwise on 240 channels, the 240->40 projection), MobileNetV3 (a stride-2 depthwise
layer at 112x112, the 960->1280 head) and a 3x3 16->32 layer at 48x48. Same method as the other two sets:
int8 TFLite from Keras with random weights, Vela 5.2.0 for ethos-u55-256, Ethos_U55_High_End_Embedded at the
profile's 1 GHz, memory mode Sram_Only.

Each model's total cycles must be within 1.5x of Vela's. A model that misses is a strict xfail whose reason
opens with the ratio measured when it was written ('N.NNx') and gives the cause found in Vela 5.2.0's sources
(Regor, ``ethosu/regor/architecture/ethosu55/ethos_u55_performance.cpp``, "U55P" below) and in hwsim's
mapping. When the model changes, rerun ``.venv/bin/python -m tests.hwsim.test_agreement_vela_fresh2`` (it prints the
table) and update MISSES: restate a moved ratio, drop a case that now passes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hwsim import load_profile
from tests.hwsim.vela_fixture_set import VelaFixtureSet

FRESH2 = Path(__file__).parent / "fixtures" / "vela" / "fresh2"
OTHER_SETS = tuple(Path(__file__).parent / "fixtures" / "vela" / d for d in ("sram_only_1ghz", "fresh"))
TOLERANCE = 1.5
SET = VelaFixtureSet(FRESH2)
CASES = SET.cases

# Measured at main 339c152 (the profile as tuned on the fitted set), three misses: effnetlite_dw5x5_240_28 4.31,
# kws_fc_256to12 0.59, resnet8_conv1x1s2_16to32_32 0.57. The mechanisms of Vela's MAC engine built after these
# fixtures were made, without looking at them (weight sets, kernel steps, the OFM micro-block: see
# test_agreement_vela_fresh.py), and the search's lpf_limit 7 take the first two to 1.06 and 0.79
# (test_the_engine_mechanisms_close_two_misses_they_were_not_built_on); one miss remains.
MISSES: dict[str, str] = {
    "resnet8_conv1x1s2_16to32_32": (
        "0.57x Vela: both SRAM-bound, Vela on 3x hwsim's bytes. Vela fetches whole IFM blocks, and a 1x1 "
        "stride-2 OFM block's IFM block spans every input pixel (U55P MeasureElementAccess L618-629: IFM "
        "block area x IFM depth per OFM block), so it reads all 16,384 B of the input, not the 4,096 B used; "
        "it charges NHWC writes of OFM blocks deeper than 16 channels at 16-byte bursts of the SRAM's 32 "
        "(U55P EstimateMemoryTransfer L196-202: 16,384 B for 8,192); and it refetches the encoded weights "
        "and scales per OFM block (L636, 4 x 976 B). 36,672 B at 8 B/cycle = 4,584 cycles; hwsim moves "
        "12,800 B (2,624 cycles)"
    ),
}


fixture, simulated, ratio = SET.fixture, SET.simulated, SET.ratio


def _op_keys(folder: Path) -> set[str]:
    return {
        json.dumps([op["type"], op["inputs"], op["output"]])
        for p in folder.glob("*.json")
        for op in json.loads(p.read_text())["model"]["tflite_ops"]
    }


def test_the_fresh2_fixtures_are_what_the_readme_says() -> None:
    assert len(CASES) == 15 and set(MISSES) <= set(CASES)
    readme = (FRESH2 / "README.md").read_text(encoding="utf-8")
    earlier = set().union(*(_op_keys(d) for d in OTHER_SETS))
    assert len(earlier) > 20
    for name in CASES:
        rec = fixture(name)
        assert f"| {name} |" in readme and rec["model"]["source"] in readme
        assert rec["core_clock_hz"] == load_profile("ethos_u55").clock_hz == 1e9
        assert (rec["accelerator"], rec["memory_mode"]) == ("ethos-u55-256", "Sram_Only")
        assert rec["tool"] == "ethos-u-vela 5.2.0" and rec["versions"]["tensorflow-cpu"] == "2.21.0"
        assert rec["command"] in readme.replace(" \\\n    ", " ").replace("NAME", name)
        assert rec["total_cycles"] == sum(op.get("cycles", 0) for op in rec["operators"]) > 0
        assert all(op["type"] != "CPU" for op in rec["operators"])
        assert (FRESH2 / rec["onnx"]["file"]).is_file()
        # No layer of this set is a layer of the fitted or the first fresh set (same operator, input, output).
        assert not _op_keys(FRESH2).intersection(earlier) and not {
            json.dumps([op["type"], op["inputs"], op["output"]]) for op in rec["model"]["tflite_ops"]
        } & earlier


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=MISSES[n])) if n in MISSES else n
        for n in CASES
    ],
)
def test_fresh2_layer_cycles_within_tolerance_of_vela(name: str) -> None:
    r = ratio(name)
    assert 1 / TOLERANCE <= r <= TOLERANCE, (name, round(r, 2))


def test_the_stated_misses_are_the_measured_ones() -> None:
    """Each expected failure's reason opens with the ratio measured when it was written; a change to the model
    that moves a miss must restate it (or drop the mark, when the case comes within tolerance)."""
    stated, measured = SET.stated_and_measured(MISSES)
    assert measured == stated


def test_vela_reads_the_whole_input_of_a_strided_1x1_convolution() -> None:
    """The cause stated for resnet8_conv1x1s2_16to32_32: Vela's SRAM bytes are every input pixel, twice the
    output and the weights per OFM block, and its cycles are those bytes at 8 B/cycle; hwsim reads the quarter
    of the input the layer uses."""
    rec, result = simulated("resnet8_conv1x1s2_16to32_32")
    (op,) = rec["operators"]
    b = op["bytes"]
    assert b["SramFeatureMap_read"] == math.prod(op["inputs"][0]) == 16384
    assert b["SramFeatureMap_write"] == 2 * math.prod(op["output"])
    assert sum(b.values()) // 8 == op["sram_access_cycles"] == op["cycles"]
    assert result.layers[0].read_bytes[("system_sram", "inputs")] == 16384 // 4


def test_the_engine_mechanisms_close_two_misses_they_were_not_built_on() -> None:
    """The EfficientNet-Lite 5x5 depthwise layer read a weight from system SRAM per MAC before the kernel steps
    (4.31x Vela); stepped 4 taps at a time its weights are read under 5 % of the MACs (Vela: under 2 %). The
    keyword-spotting classifier was 0.59x before the weight sets' 32-cycle floor. Both now within tolerance."""
    rec, result = simulated("effnetlite_dw5x5_240_28")
    (op,) = rec["operators"]
    layer = result.layers[0]
    assert op["bytes"]["SramWeights_read"] < 0.02 * op["macs"]
    assert layer.read_bytes[("system_sram", "weights")] < 0.05 * layer.macs == 0.05 * op["macs"]
    for name in ("effnetlite_dw5x5_240_28", "kws_fc_256to12"):
        assert 1 / TOLERANCE <= ratio(name) <= TOLERANCE, name


def test_vela_charges_the_kws_classifier_32_cycles_per_weight_set() -> None:
    """The cause stated for kws_fc_256to12: 8 IFM slices of 32 channels x 2 micro-block depths, each at Vela's
    floor of 32 cycles (cyclesWb)."""
    (op,) = fixture("kws_fc_256to12")["operators"]
    slices = math.ceil(op["inputs"][0][3] / op["block"]["ifm"][3])
    depths = math.ceil(op["output"][3] / 8)
    assert slices * depths * 32 == 512 <= op["mac_cycles"] < 512 + 32


if __name__ == "__main__":
    print("| model | Vela cycles | hwsim cycles | hwsim / Vela |\n| --- | ---: | ---: | ---: |")
    for n in CASES:
        rec, result = simulated(n)
        ours = sum(c.cycles for c in result.layers)
        print(f"| {n} | {rec['total_cycles']:,} | {ours:,.0f} | {ours / rec['total_cycles']:.2f} |")
