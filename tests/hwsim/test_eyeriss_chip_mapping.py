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
from hwsim.cost.mapping.best_mapping import block_unrollings, kept_unrollings
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import DIMS, OPERANDS, Spatial, arch, input_overlap, sizes
from hwsim.cost.mapping.tiles import tile_elements, window
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


@pytest.mark.parametrize(("layer", "ratio"), [("conv4", 1.06), ("conv5", 1.06)])
def test_the_search_reaches_the_chip_mapping(setup, layer: str, ratio: float) -> None:
    """With the profile's per-level candidates (``search.pe_block``: the spads' factors one innermost block,
    the rest merged to 6 loops above it, on the unrollings of the 3 highest utilisations and the PE sets of
    different filters, best_mapping.pe_set_unrollings) the search's pick costs no more than the chip's
    mapping:
    on the chip's own PE sets (rows FY3 x C2 x K2: r = 2 channels, t = 2 filter sets, JSSC 2017 §IV-A) with
    the chip's DRAM traffic, 6 % cheaper (q = 4 channels per PE: the spad's 12 ifmap values full; the n = 4
    images inside m/p). (It was 3 % cheaper at CONV4 and the chip's mapping at CONV5 on rows FY3 x C4.)"""
    profile, a, shapes = setup
    s = shapes[layer]
    chip = evaluate(s, a, SPATIAL, chip_loops(layer), cuts=CUTS)
    best = search(s, profile, "energy")
    assert best.overflow == ()
    assert best.energy <= chip.energy * (1 + 1e-12)
    assert round(chip.energy / best.energy, 2) == ratio
    assert best.spatial == Spatial(rows=(("FY", 3), ("C", 2), ("K", 2)), cols=(("OY", 13),))
    assert dram(best) == dram(chip)  # every filter read once for the 4 images, M/m ifmap passes, ofmaps once
    assert best.loops[0] == ("K", 16) and [d for d, _ in best.loops].count("K") == 3  # K: p | m/p | M/m


def glb_bytes(shape, a, m) -> dict[str, float]:
    """Bytes of each operand's tile in the 108 KB GLB under ``m``'s cuts (a shared level: the loops below the
    cut times the spatial ways, each bound capped at the layer's size), at the widths the GLB holds them."""
    ways, size, out = m.spatial.ways(), sizes(shape), {}
    for o in OPERANDS:
        names = [lv.name for lv in a.chains[o]]
        if "glb_108KB" not in names:
            continue
        cum = dict.fromkeys(DIMS, 1)
        for d, f in m.loops[:m.cuts[o][names.index("glb_108KB")]]:
            cum[d] *= f
        b = {d: float(min(cum[d] * ways.get(d, 1), size[d])) for d in DIMS}
        out[o] = tile_elements(o, b, window(shape)) * a.ebytes[o]
    return out


CONV3_LOOPS = (("K", 16), ("FX", 3), ("C", 4), ("OX", 13), ("K", 4), ("B", 4), ("C", 16), ("K", 6))


def test_chip_conv3_mapping_overflows_the_glb_by_its_filter_tile(setup) -> None:
    """Why the chip's CONV3 mapping (scripts/eyeriss_row_stationary.py: p = 16, q = 4, m = 64, n = 4,
    C = 4 x 4 x 16, K = 16 | 4 | 6) overflows the 108 KB GLB in hwsim although the chip runs CONV3 in it.
    GLB tiles: the psums of m = 64 channels for the 4 images (4 x 64 x 13 x 13 at 16 bits) 86,528 bytes; the
    ifmaps of a pass 7,200 (16 channels of the padded 15 x 15 plane, one image: B4 lies above the inputs'
    cut); the filters of the pass 18,432 (64 filters x 16 channels x 3 x 3, held while the 4 images pass: B4
    lies between K4 and C16). 112,160 bytes, 1,568 over 110,592. The 16 channels a pass are what hwsim's
    unrolling forces: the row_stationary rows unroll FY and C only (hwsim.cost.mapping.space), so the 4 PE
    sets of 3 x 13 all take channels (r = 4, t = 1). With PE sets of different filters on the rows instead
    (t, JSSC 2017 §IV-A) the same loops fit and move the same DRAM. LOMA's kept unrollings have no K on the
    rows (at most two dimensions an axis, FY and C); the per-level candidates cost both
    (best_mapping.pe_set_unrollings), and the search's pick (rows FY3 x K4) moves the chip's DRAM and costs no
    more than either (it spilled psums, 7x the chip's psum traffic, before)."""
    profile, a, shapes = setup
    s = shapes["conv3"]
    rs = Spatial(rows=(("FY", 3), ("C", 4)), cols=(("OY", 13),))
    chip = evaluate(s, a, rs, CONV3_LOOPS, cuts={W: (4, 6), I: (3, 4), O: (3, 7)})
    g = glb_bytes(s, a, chip)
    assert g == {W: 64 * 16 * 9 * 2, I: 16 * 15 * 15 * 2, O: 4 * 64 * 13 * 13 * 2}
    assert sum(g.values()) == 112_160 > profile.levels[1].size_bytes == 110_592
    assert chip.overflow == ("glb_108KB",)
    # a small margin: the filter tile is 11x it, and the ifmaps' padded border alone (15 x 15 counted, as
    # ZigZag and Timeloop count the input; the unpadded plane is 13 x 13) exceeds it too
    over = sum(g.values()) - 110_592
    assert g[W] > 11 * over and 16 * (15 * 15 - 13 * 13) * 2 == 1_792 > over == 1_568
    # filters bypassing the GLB (Timeloop's Eyeriss examples keep only inputs and outputs there): the tiles
    # fit, but the filter spad is then refilled from DRAM for each of the 4 images (B4 above its cut)
    bypass = arch(load_design("eyeriss", ["levels.glb_108KB.operands=[inputs,outputs]"]).profile)
    spad = evaluate(s, bypass, rs, CONV3_LOOPS)
    assert spad.overflow == () and dram(spad)[W] == 4 * dram(chip)[W] and spad.energy > chip.energy
    # t = 2 (rows FY3 x C2 x K2: 8 channels of 32 filters a pass, as Table IV reads at CONV4) and t = 4
    # (rows FY3 x K4), the rest of K and C in the same levels: their tiles fit, DRAM as the chip's mapping
    t2 = Spatial(rows=(("FY", 3), ("C", 2), ("K", 2)), cols=(("OY", 13),))
    fit2 = evaluate(s, a, t2, (("K", 16), ("FX", 3), ("C", 4), ("OX", 13), ("K", 2), ("B", 4), ("C", 32),
                               ("K", 6)))
    g2 = glb_bytes(s, a, fit2)  # LOMA's cuts: the filters of 64 x 8 channels, the 4 images' 8 channels
    assert fit2.overflow == () and g2 == {W: 64 * 8 * 9 * 2, I: 4 * 8 * 15 * 15 * 2, O: 4 * 64 * 13 * 13 * 2}
    assert sum(g2.values()) == 110_144
    t4 = Spatial(rows=(("FY", 3), ("K", 4)), cols=(("OY", 13),))
    fit4 = evaluate(s, a, t4, (("K", 16), ("FX", 3), ("C", 4), ("OX", 13), ("B", 4), ("C", 64), ("K", 6)))
    assert fit4.overflow == ()
    assert sum(glb_bytes(s, a, fit4).values()) == 64 * 4 * 9 * 2 + 4 * 4 * 15 * 15 * 2 + 86_528
    best = search(s, profile, "energy")
    for fit in (fit2, fit4):
        assert dram(fit) == dram(chip)  # filters once, ifmaps M/m = 6 times, ofmaps written once
        assert best.energy <= fit.energy
    assert best.overflow == () and dram(best) == dram(chip)  # no psum spilled
    assert best.spatial == t4
    assert not any("K" in dict(sp.rows) for sp, _ in kept_unrollings(s, a))  # LOMA's: FY and C only
    assert {t2, t4} <= {sp for sp, _ in block_unrollings(s, a)}
