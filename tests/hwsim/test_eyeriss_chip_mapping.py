"""Eyeriss's own row-stationary mappings of AlexNet CONV4 and CONV5, costed by hwsim against the search's picks.

Why hwsim moved about 2.8x the chip's DRAM bytes at CONV4-5 (tests/hwsim/test_agreement_eyeriss.py): not the
energy model. The chip's mappings (Chen et al., IEEE JSSC 2017, §IV-A and Table IV: p = 16 filters per PE, q =
3 channels, m = 64 output channels' partial sums in the GLB, the n = 4 images of the batch passing while a
filter set stays, M/m passes from DRAM), written as hwsim loops with the p filters innermost as the chip
interleaves them (§IV-A, Fig. 10: an ifmap value read from the spad serves p MACs), cost less energy than
LOMA's picks under the profile's own energies (ISCA 2016 Table IV), and ZigZag 3.9.1 agrees. LOMA's space
cannot reach them: they need 9 temporal loops, and its factor merging (at most ``lpf_limit`` <= 8 loops, the
smallest factors of the dimension with the most merged first) never forms K = 16 | 4 | 3 with C = 3 | 16;
CONV4's 13-column unrolling is not among the 3 unrollings kept either (scripts/eyeriss_row_stationary.py). The
profile's per-level candidates (``search.pe_block``, best_mapping.pe_block_loops: the spads' factors as one
innermost block, the rest permuted above it, as Timeloop's mapper tiles per level) reach them: the search's
picks now cost no more than the chip's mappings.

Counts checked by hand below (ISCA 2016 §VI: an input costs a·EC(DRAM) + ab·EC(buffer) + abc·EC(array) +
abcd·EC(RF)).
"""

from __future__ import annotations

import pytest

from hwsim import load_network
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping import search
from hwsim.cost.mapping.best_mapping import kept_unrollings
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import OPERANDS, Spatial, arch, input_overlap
from hwsim.hardware.profile import load_design, load_profile

W, I, O = OPERANDS
SPATIAL = Spatial(rows=(("FY", 3), ("C", 4)), cols=(("OY", 13),))  # chip: FY3 x (r=2 channels, t=2 filter sets)
CUTS = {W: (4, 6), I: (3, 4), O: (3, 7)}  # spads: below OX; GLB: weights below C16, ifmaps below B4, psums below K


def chip_loops(layer: str, s_innermost: bool = False) -> tuple[tuple[str, int], ...]:
    """The chip's loops, innermost first: p filters, S, q channels in the PE; the ofmap row, m/p, n in the GLB;
    the rest of C in the GLB (psums of m channels stay); M/m and the groups from DRAM."""
    pe = (("FX", 3), ("C", 3), ("K", 16)) if s_innermost else (("K", 16), ("FX", 3), ("C", 3))
    return (*pe, ("OX", 13), ("K", 4), ("B", 4), ("C", 16), ("K", {"conv4": 3, "conv5": 2}[layer]), ("G", 2))


@pytest.fixture(scope="module")
def setup():
    profile = load_profile("eyeriss")
    shapes = {layer.name: shape_of(layer, 4) for layer in load_network("alexnet").layers}
    return profile, arch(profile), shapes


def dram(m) -> dict[str, float]:
    return {o: m.reads.get(("dram", o), 0.0) + m.writes.get(("dram", o), 0.0) for o in OPERANDS}


def test_input_overlap() -> None:
    """PEs one input read reaches across an unrolled output/kernel pair: 13 x 3 PEs read 15 rows."""
    assert input_overlap({"OY": 13, "FY": 3, "C": 4}, 1, 1) == pytest.approx(39 / 15)
    assert input_overlap({"OY": 13, "C": 4}, 1, 1) == 1.0  # no kernel rows unrolled: no overlap
    assert input_overlap({"FY": 11, "K": 14}, 4, 4) == 1.0
    assert input_overlap({"OY": 2, "FY": 11}, 4, 4) == pytest.approx(22 / 15)  # stride 4: 4 + 11 rows
    assert input_overlap({"OY": 5, "FY": 2}, 2, 2) == 1.0  # stride 2, 2 rows: no row shared
    assert input_overlap({"OX": 7, "FX": 3, "OY": 2, "FY": 2}, 1, 1) == pytest.approx(21 / 9 * 4 / 3)


def test_chip_counts_by_hand(setup) -> None:
    """CONV4 under the chip's mapping, each count derived from the mapping as the chip runs it."""
    profile, a, shapes = setup
    s = shapes["conv4"]
    m = evaluate(s, a, SPATIAL, chip_loops("conv4"), cuts=CUTS)
    assert m.overflow == ()
    macs = 4 * 2 * 192 * 192 * 13 * 13 * 9
    weights = 2 * 192 * 192 * 9
    ifmap = 4 * 2 * 192 * 15 * 15  # padded 15 x 15 planes, as ZigZag and Timeloop count the input
    assert m.reads[("dram", W)] == 2 * weights  # a = 1: every filter read once (n images pass in the GLB)
    assert m.reads[("dram", I)] == 2 * 3 * ifmap  # a = M/m = 3 passes of the ifmaps
    assert m.writes[("dram", O)] == 2 * 4 * 2 * 192 * 13 * 13  # ofmaps written once (psums stay in the GLB)
    assert m.writes[("filter_spad", W)] == 2 * weights * 4 * 13  # per image, into the 13 PEs of a row
    assert m.reads[("ifmap_spad", I)] == 2 * macs / 16  # one spad read serves the p = 16 filters
    fills = macs / 16  # each PE's ifmap spad: q x S = 9 values per ofmap pixel, used by 16 filters
    assert m.writes[("ifmap_spad", I)] == 2 * fills
    # the GLB reads each input row once for the PEs of a diagonal: 13 ofmap rows x 3 filter rows read 15 rows
    # (ZigZag 3.9.1 with this mapping on the exported profile counts the same 10,782,720 reads)
    assert m.reads[("glb_108KB", I)] == pytest.approx(2 * fills * 15 / 39)
    assert m.reads[("glb_108KB", I)] / 2 == pytest.approx(10_782_720)


@pytest.mark.parametrize(("layer", "ratio"), [("conv4", 0.916), ("conv5", 0.947)])
def test_chip_mapping_costs_less_than_lomas_picks(setup, layer: str, ratio: float) -> None:
    """Without the per-level candidates (``search.pe_block=0``: LOMA's merged factors alone) the chip's
    mapping beats the search's pick (8 % at CONV4, 5 % at CONV5), by DRAM: CONV4's pick re-reads every filter
    per image (B outside the weights' GLB tile), CONV5's spills psums (C4 above the outputs' GLB cut). The
    chip's mapping needs 9 loops, and CONV4's unrolling is not among the 3 kept."""
    profile, a, shapes = setup
    loma = load_design("eyeriss", ["search.pe_block=0"]).profile
    s = shapes[layer]
    chip = evaluate(s, a, SPATIAL, chip_loops(layer), cuts=CUTS)
    best = search(s, loma, "energy")
    assert chip.overflow == () and best.overflow == ()
    assert round(chip.energy / best.energy, 3) == ratio
    d_chip, d_best = dram(chip), dram(best)
    if layer == "conv4":
        assert d_best[W] == 4 * d_chip[W]  # the search's pick reads the filters once per image
        assert d_best[W] - d_chip[W] > sum(d_chip.values()) - d_chip[W]  # more than all the rest of the chip's
    else:
        assert d_best[O] > 6 * d_chip[O]  # psums spilled and read back
        assert d_best[W] == d_chip[W]
    assert len(chip.loops) == 9 > a.lpf_limit
    if layer == "conv4":  # 156 of 168 PEs: below the 3 unrollings kept (K on the 14 columns)
        assert SPATIAL not in [sp for sp, _ in kept_unrollings(s, a)]
    # with S innermost (as the chip's mapping was once written), the ifmap spad is read at every MAC: the
    # chip's mapping then looks dearer than the search's pick at CONV4
    s_first = evaluate(s, a, SPATIAL, chip_loops(layer, s_innermost=True), cuts=CUTS)
    assert s_first.reads[("ifmap_spad", I)] == 16 * chip.reads[("ifmap_spad", I)]
    if layer == "conv4":
        assert s_first.energy > best.energy


@pytest.mark.parametrize(("layer", "ratio"), [("conv4", 1.03), ("conv5", 1.0)])
def test_the_search_reaches_the_chip_mapping(setup, layer: str, ratio: float) -> None:
    """With the profile's per-level candidates (``search.pe_block``: the spads' factors one innermost block,
    the rest merged to 6 loops above it, on the unrollings of the 3 highest utilisations) the search's pick
    costs no more than the chip's mapping: at CONV5 it is the chip's (p = 16, q = 3, m = 64, n = 4: JSSC 2017,
    Table IV, C16 as two loops of 4), at CONV4 3 % cheaper (q = 4 channels per PE: the spad's 12 ifmap values
    full) on the chip's 156-PE unrolling; filters are read once per batch, as the chip reads them."""
    profile, a, shapes = setup
    s = shapes[layer]
    chip = evaluate(s, a, SPATIAL, chip_loops(layer), cuts=CUTS)
    best = search(s, profile, "energy")
    assert best.overflow == ()
    assert best.energy <= chip.energy * (1 + 1e-12)
    assert round(chip.energy / best.energy, 2) == ratio
    assert best.spatial == SPATIAL
    assert dram(best)[W] == dram(chip)[W]  # every filter read once for the 4 images
    assert best.loops[0] == ("K", 16) and [d for d, _ in best.loops].count("K") == 3  # K: p | m/p | M/m
