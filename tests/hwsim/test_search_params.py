"""A profile's ``search`` section: the mapping search's own parameters (LOMA's ``lpf_limit``, the unrollings kept,
the per-PE split candidate's operands), validated, part of the search's key, and with defaults that leave every
other profile's search unchanged.

The ``eyeriss`` profile sets them so that the search reaches the chip's row-stationary split of the output
channels (Chen et al., IEEE JSSC 2017, §IV-A: p filters per PE, the psums of m channels in the GLB, M/m passes
from DRAM), which LOMA's default space (6 merged loops, the per-PE split for the reduction dimensions alone)
never produces.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hwsim import InputError, load_network, load_profile
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping.best_mapping import (_key_of, block_unrollings, kept_unrollings, pe_block_loops,
                                            pe_set_unrollings, pinned_loops, search, search_key)
from hwsim.cost.mapping.loop_orders import LPF_LIMIT, block_order_tables, flat_loops, pattern
from hwsim.cost.mapping.space import DIMS, Spatial, arch, folds, spatial_options
from hwsim.hardware.profile import SearchParams, load_design

LOMA_DEFAULTS = ["search.lpf_limit=6", "search.spatial_keep=3", "search.pe_split=[outputs]",
                 "search.pe_block=0"]


def conv(name: str, batch: int = 4):
    return shape_of(next(layer for layer in load_network("alexnet").layers if layer.name == name), batch)


def dram_bytes(m) -> float:
    return sum(v for (lv, _), v in (*m.reads.items(), *m.writes.items()) if lv == "dram")


@pytest.mark.parametrize("key, value, message", [
    ("lpf_limit", "9", "search.lpf_limit: must be at most 8"),
    ("lpf_limit", "0", "search.lpf_limit: must be at least 1"),
    ("spatial_keep", "0", "search.spatial_keep: must be at least 1"),
    ("pe_split", "[inputs, inputs]", "search.pe_split: each operand may be listed once"),
    ("pe_split", "[psums]", r"search.pe_split\[0\]: Input should be 'weights', 'inputs' or 'outputs'"),
    ("lpf", "7", "search.lpf: unknown key"),
    ("pe_block", "8", "search.pe_block: must be at most 7"),
    ("pe_block", "-1", "search.pe_block: must be at least 0"),
    ("pe_block", "6", "search: pe_block: 6: no level is per_pe, so there is no per-PE block to tile"),
])
def test_search_keys_are_validated(key: str, value: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_design("edge_npu", [f"search.{key}={value}"])


def test_the_defaults_written_out_change_nothing() -> None:
    """A profile without ``search`` and one giving the defaults (ZigZag 3.9.1's lpf_limit 6 and 3 unrollings, the
    outputs' split) are one search: same key, so same cached mapping for every shape. (zigzag_tpu_like: a
    ``pe_split`` given needs a per-PE level for its operands, which edge_npu lacks.)"""
    plain = load_profile("zigzag_tpu_like")
    spelled = load_design("zigzag_tpu_like", LOMA_DEFAULTS).profile
    assert plain.search == spelled.search == SearchParams()
    assert SearchParams().lpf_limit == LPF_LIMIT == 6 and SearchParams().spatial_keep == 3
    assert search_key(plain) == search_key(spelled)
    assert search_key(load_design("zigzag_tpu_like", ["search.lpf_limit=7"]).profile) != search_key(plain)


def test_lpf_limit_and_spatial_keep_widen_the_space() -> None:
    left = (4, 1, 192, 48, 1, 13, 1, 3)  # CONV4's folds (per group) under FY3 x C4 rows, OY13 columns: 16 primes
    assert len(flat_loops(left)) == 6 and len(flat_loops(left, (), 8)) == 8
    s = conv("conv3")
    a = arch(load_profile("edge_npu"))
    wide = arch(load_design("edge_npu", ["search.spatial_keep=5"]).profile)
    assert len(kept_unrollings(s, wide)) > len(kept_unrollings(s, a)) >= 3


def test_the_inputs_split_pins_k_for_a_per_pe_level() -> None:
    """With ``inputs`` in ``pe_split``, K (the dimension inputs do not depend on) gets a loop the psum spad can
    hold (24 psums: 16 of CONV2's 128 filters per group); with the default, K stays one merged loop."""
    s = conv("conv2")
    sp = Spatial(rows=(("C", 12),), cols=(("OY", 14),))
    left = folds(s, sp)
    plain = arch(load_design("eyeriss", LOMA_DEFAULTS).profile)
    flat = flat_loops(left)
    k = DIMS.index("K")
    assert [f for d, f in flat if d == k] == [128]
    assert pinned_loops(plain, left, flat) is None
    split = dataclasses.replace(plain, pe_split=("outputs", "inputs"))
    pinned = pinned_loops(split, left, flat)
    assert pinned is not None and sorted(f for d, f in pinned if d == k) == [8, 16]


def test_eyeriss_search_splits_k_between_the_pe_and_dram() -> None:
    """The eyeriss profile's search section: CONV2's mapping keeps part of K in the PE's spads and iterates the
    rest above them (the chip's p and M/m), and moves less DRAM than LOMA's default space's pick."""
    s = conv("conv2")
    chip = search(s, load_profile("eyeriss"))
    loma = search(s, load_design("eyeriss", LOMA_DEFAULTS).profile)
    below = chip.cuts["outputs"][0]  # loops held by the psum spad
    assert any(d == "K" for d, _ in chip.loops[:below]) and any(d == "K" for d, _ in chip.loops[below:])
    assert not chip.overflow
    assert dram_bytes(chip) < 0.5 * dram_bytes(loma)
    assert chip.energy < loma.energy


def test_pe_block_tiles_the_pe_level_and_permutes_the_rest_above_it() -> None:
    """``search.pe_block``: per unrolling, candidates whose per-PE loops (every tiling of FX, C and K that
    fits the spads, K the largest) stay one innermost block, the rest merged to at most ``pe_block`` loops
    above it, the groups outermost. At CONV5 under the chip's unrolling one of them is the chip's own split of
    K, 16 | 4 | 2 (JSSC 2017, Table IV), which LOMA's merged factors never form."""
    s = conv("conv5")
    a = arch(load_profile("eyeriss"))
    assert a.pe_block == 6 and arch(load_profile("edge_npu")).pe_block == 0
    sp = Spatial(rows=(("FY", 3), ("C", 4)), cols=(("OY", 13),))
    left = folds(s, sp)
    cands = pe_block_loops(a, s, left)
    blocks = {tuple((DIMS[d], f) for d, f in flat[:n]) for flat, n, _ in cands}
    assert (("FX", 3), ("C", 3), ("K", 16)) in blocks and (("FX", 3), ("C", 4), ("K", 16)) in blocks
    for flat, n, top in cands:
        assert flat[-1] == (DIMS.index("G"), 2) and top == 1
        assert len(flat) - n - top <= a.pe_block
        k = [f for d, f in flat if d == DIMS.index("K")]
        assert math.prod(k) == left[DIMS.index("K")]
    chip = next(flat for flat, n, _ in cands
                if [(DIMS[d], f) for d, f in flat[:n]] == [("FX", 3), ("C", 3), ("K", 16)])
    assert sorted(f for d, f in chip if d == DIMS.index("K")) == [2, 4, 16]
    # LOMA's merge at the profile's lpf_limit 8: K in two loops, 8 | 16
    assert sorted(f for d, f in flat_loops(left, (), a.lpf_limit) if d == DIMS.index("K")) == [8, 16]
    # the block's orders: 3! inside, the other loops' orders above it, the groups last
    t = block_order_tables(pattern(chip), 3, 1)
    assert (t.loop[:, :3] < 3).all() and (t.loop[:, -1] == len(chip) - 1).all()
    assert len({tuple(r) for r in t.loop}) == len(t.loop) == 6 * 720 // 2  # C4 twice: interchangeable
    assert t.prefix.dtype == np.uint16  # 10 loops: subsets past a byte


def test_pe_block_unrollings_count_distinct_utilisations() -> None:
    """The per-level candidates cost every unrolling of the ``spatial_keep`` highest distinct utilisations: at
    CONV4 the 3 kept (4 tied at 98 %) leave out the row-stationary PE set (FY3 x C4 rows, OY13 columns: 156
    PEs, JSSC 2017, Table V), which the per-level candidates reach."""
    s = conv("conv4")
    a = arch(load_profile("eyeriss"))
    sp = Spatial(rows=(("FY", 3), ("C", 4)), cols=(("OY", 13),))
    assert sp not in [u for u, _ in kept_unrollings(s, a)]
    assert sp in [u for u, _ in block_unrollings(s, a)]
    assert {u for u, _ in kept_unrollings(s, a)} <= {u for u, _ in block_unrollings(s, a)}


def test_pe_block_costs_the_row_stationary_pe_sets() -> None:
    """On a row_stationary profile the per-level candidates also cost the PE sets of different filters
    (rows FY x C^r x K^t, r·t sets filling the rows: JSSC 2017, §IV-A), beside the column unrollings without
    K; LOMA's kept unrollings never put K on the rows, and other dataflows get none."""
    a = arch(load_profile("eyeriss"))
    assert a.pe_sets and not arch(load_profile("edge_npu")).pe_sets
    s = conv("conv4")  # FY = 3 on 12 rows: 4 sets, t = 2 (r = 2) or t = 4 (r = 1); t = 3 leaves 3 rows idle
    sets = pe_set_unrollings(s, a, spatial_options(s, a))
    assert {sp.rows for sp in sets} == {(("FY", 3), ("C", 2), ("K", 2)), (("FY", 3), ("K", 4))}
    assert all("K" not in dict(sp.cols) for sp in sets)
    costed = {sp for sp, _ in block_unrollings(s, a)}
    t2, t4 = (("FY", 3), ("C", 2), ("K", 2)), (("FY", 3), ("K", 4))
    assert {Spatial(rows=r, cols=(("OY", 13),)) for r in (t2, t4)} <= costed  # 156 PEs, as the chip
    low = Spatial(rows=t2, cols=(("G", 2),))  # 24 PEs: below the utilisations costed
    assert low in sets and low not in costed
    assert not any("K" in dict(sp.rows) for sp, _ in kept_unrollings(s, a))
    assert pe_set_unrollings(conv("conv1"), a, spatial_options(conv("conv1"), a)) == []  # FY = 11: one set


def test_pe_block_never_does_worse_than_without() -> None:
    """The per-level candidates are scored beside LOMA's: the pick is never dearer under the objective."""
    with_block = load_profile("eyeriss")
    without = load_design("eyeriss", ["search.pe_block=0"]).profile
    for layer in load_network("alexnet").layers:
        s = shape_of(layer, 4)
        for objective in ("energy", "latency"):
            new, old = search(s, with_block, objective), search(s, without, objective)
            assert _key_of(new, objective) <= _key_of(old, objective) * (1 + 1e-9), (layer.name, objective)
            assert not new.overflow


def test_block_orders_score_as_the_reference_scorer() -> None:
    """The batch scorer on the per-level candidates' orders (10 loops: subsets as 16-bit masks, the block
    innermost, the groups outermost) gives exactly the reference per-order scorer's numbers."""
    from hwsim.cost.mapping.batch_scorer import score_batch
    from tests.hwsim.reference_orders import score_orders

    a = arch(load_profile("eyeriss"))
    s = conv("conv5")
    sp = Spatial(rows=(("FY", 3), ("C", 4)), cols=(("OY", 13),))
    cands = pe_block_loops(a, s, folds(s, sp))
    items = [(s, sp, flat, block_order_tables(pattern(flat), n, top)) for flat, n, top in cands[:3]]
    assert max(len(flat) for _, _, flat, _ in items) > 8
    energy, cycles = score_batch(a, items)
    lo = 0
    for shape, sp, flat, t in items:
        dims = np.array([[flat[i][0] for i in row] for row in t.loop])
        facs = np.array([[flat[i][1] for i in row] for row in t.loop], dtype=float)
        e, c = score_orders(shape, a, sp, dims, facs)
        np.testing.assert_array_equal(energy[lo:lo + len(e)], e)
        np.testing.assert_array_equal(cycles[lo:lo + len(e)], c)
        lo += len(e)
    assert lo == len(energy)
