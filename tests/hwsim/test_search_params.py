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

import pytest

from hwsim import InputError, load_network, load_profile
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping.best_mapping import kept_unrollings, pinned_loops, search, search_key
from hwsim.cost.mapping.loop_orders import LPF_LIMIT, flat_loops
from hwsim.cost.mapping.space import DIMS, Spatial, arch, folds
from hwsim.hardware.profile import SearchParams, load_design

LOMA_DEFAULTS = ["search.lpf_limit=6", "search.spatial_keep=3", "search.pe_split=[outputs]"]


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
