"""The array's network energy (a profile's ``array.noc_energy_pj_per_byte``, the ``noc`` energy entry).

Chen, Emer, Sze, "Eyeriss: A Spatial Architecture for Energy-Efficient Dataflow for Convolutional Neural
Networks", ISCA 2016, §VI and Table IV: data moved across the PE array (a word delivered into a PE, a
partial sum passed PE to PE) costs EC(array) = 2x a 16-bit MAC. hwsim charges each PE's copy of a weight or
input filled into its per-PE level from a shared one, and ``(multicast - 1)`` partial-sum passes per output
sent up from the PEs (:func:`hwsim.cost.mapping.space.noc_boundaries`).
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim import InputError, Layer, Workload, load_profile, simulate
from hwsim.cost.mapping.batch_scorer import score_batch
from hwsim.cost.mapping.loop_orders import flat_loops, order_tables, pattern
from hwsim.cost.mapping.one_mapping import evaluate
from hwsim.cost.mapping.space import DIMS, Shape, Spatial, arch, folds
from hwsim.hardware.profile import profile_from_dict

W, I, O = "weights", "inputs", "outputs"
NOC_PJ = 0.5  # pJ per byte in the tiny profile


def _level(name: str, size: float, bits: int, pj: float, operands: list[str], per_pe: bool = False) -> dict:
    return {"name": name, "size_bytes": size, "word_bits": bits, "read_energy_pj": pj, "write_energy_pj": pj,
            "bandwidth_bytes_per_cycle": 8, "operands": operands, **({"per_pe": True} if per_pe else {})}


def tiny(noc: float | None = NOC_PJ) -> dict:
    """A 2 x 2 array, a shared buffer over a spad per operand in every PE; 8-bit weights, inputs and outputs,
    32-bit partial sums (the passes between PEs move partial sums)."""
    raw = {
        "name": "tiny_noc", "description": "test: the array's network energy",
        "clock_hz": 1.0e9, "dataflow": "weight_stationary",
        "array": {"rows": 2, "cols": 2, "mac_energy_pj": 0.1},
        "precision_bits": {"weights": 8, "inputs": 8, "psums": 32, "outputs": 8, "mask_scale": 8,
                           "batchnorm": 8},
        "mask_op_energy_pj": {"gate": 0.0, "multiply": 0.0},
        "levels": [_level("dram", 1e9, 64, 100.0, [W, I, O]), _level("glb", 4096, 64, 6.0, [W, I, O]),
                   _level("w_spad", 64, 8, 1.0, [W], True), _level("i_spad", 64, 8, 1.0, [I], True),
                   _level("o_spad", 64, 32, 1.0, [O], True)],
    }
    if noc is not None:
        raw["array"]["noc_energy_pj_per_byte"] = noc
    return raw


def test_profile_refuses_a_negative_noc_energy_naming_the_key() -> None:
    raw = tiny(-0.1)
    with pytest.raises(InputError) as info:
        profile_from_dict(raw, "tiny.yaml")
    assert "array.noc_energy_pj_per_byte" in str(info.value) and "\n" not in str(info.value)


def test_profile_refuses_a_noc_energy_nothing_would_charge_and_a_level_named_noc() -> None:
    raw = tiny()
    raw["levels"] = raw["levels"][:2]  # no per-PE level: no transfer crosses the array's network
    with pytest.raises(InputError, match="noc_energy_pj_per_byte .*no level is per_pe"):
        profile_from_dict(raw, "tiny.yaml")
    raw["array"]["noc_energy_pj_per_byte"] = 0.0
    assert profile_from_dict(raw, "tiny.yaml").array.noc_energy_pj_per_byte == 0.0  # 0: nothing to ignore
    raw = tiny()
    raw["levels"][1]["name"] = "noc"
    with pytest.raises(InputError, match="no level may be named 'noc'"):
        profile_from_dict(raw, "tiny.yaml")


def test_absent_key_charges_nothing() -> None:
    p = profile_from_dict(tiny(None), "tiny.yaml")
    assert p.array.noc_energy_pj_per_byte == 0.0 and arch(p).noc_pj == 0.0
    m = evaluate(Shape(b=1, g=1, k=4, c=2, oy=1, ox=1, fy=1, fx=1), arch(p),
                 Spatial(rows=(("C", 2),), cols=(("K", 2),)), (("K", 2),))
    assert not any(lv == "noc" for lv, _ in m.energy_pj)


def test_hand_counted_noc_energy_of_a_tiny_layer() -> None:
    """1x1 convolution, C = 2 on the rows, K = 4 on the columns in two folds (8 MACs, 4 outputs):
    - weights: each of the 8 goes to one PE: 8 PE-words x 1 byte;
    - inputs: each of the 2 goes to the 2 PEs of its row (multicast over K), held there across the K fold:
      4 PE-words x 1 byte;
    - outputs: each of the 4 is reduced over the 2 PEs of its column: one 32-bit pass each, 4 x 4 bytes.
    Every other charge is the same as without the network's energy."""
    shape = Shape(b=1, g=1, k=4, c=2, oy=1, ox=1, fy=1, fx=1)
    sp, loops = Spatial(rows=(("C", 2),), cols=(("K", 2),)), (("K", 2),)
    with_noc = evaluate(shape, arch(profile_from_dict(tiny(), "tiny.yaml")), sp, loops)
    without = evaluate(shape, arch(profile_from_dict(tiny(None), "tiny.yaml")), sp, loops)
    noc = {o: e for (lv, o), e in with_noc.energy_pj.items() if lv == "noc"}
    assert noc == pytest.approx({W: 8 * 1 * NOC_PJ, I: 4 * 1 * NOC_PJ, O: 4 * 4 * NOC_PJ})
    assert {k: v for k, v in with_noc.energy_pj.items() if k[0] != "noc"} == without.energy_pj
    assert with_noc.energy == pytest.approx(without.energy + 28 * NOC_PJ)
    assert with_noc.cycles == without.cycles  # the network costs energy, not time


def test_batch_scorer_agrees_with_evaluate_with_the_network_priced() -> None:
    """Every loop order of a layer on the tiny profile: score_batch's energy is evaluate's (which the search's
    winner is rebuilt by), the network's share included; and it differs from the unpriced profile's."""
    shape = Shape(b=2, g=1, k=8, c=4, oy=4, ox=4, fy=3, fx=3, iy=6, ix=6)
    sp = Spatial(rows=(("C", 2),), cols=(("K", 2),))
    flat = flat_loops(folds(shape, sp))
    t = order_tables(pattern(flat))
    for raw, priced in ((tiny(), True), (tiny(None), False)):
        a = arch(profile_from_dict(raw, "tiny.yaml"))
        energy, cycles = score_batch(a, [(shape, sp, flat, t)])
        assert len(energy) == len(t.loop) > 100
        one = [evaluate(shape, a, sp, tuple((DIMS[flat[i][0]], flat[i][1]) for i in row)) for row in t.loop]
        np.testing.assert_allclose(energy, [m.energy for m in one], rtol=1e-9)
        np.testing.assert_allclose(cycles, [m.cycles for m in one], rtol=1e-9)
        assert all((sum(v for (lv, _), v in m.energy_pj.items() if lv == "noc") > 0) == priced for m in one)


def test_simulate_shows_the_network_as_its_own_on_chip_entry() -> None:
    p = profile_from_dict(tiny(), "tiny.yaml")
    plain = profile_from_dict(tiny(None), "tiny.yaml")
    layer = Workload("x", (Layer("c", "conv", 8, 16, (3, 3), (1, 1), (1, 1), 1, (8, 8), (8, 8)),))
    r = simulate(layer, p, batch=2)
    totals = r.to_dict(with_layers=False)["totals"]
    by_level = totals["energy_by_level_j"]
    assert by_level["noc"] > 0
    assert totals["energy_on_chip_j"] == pytest.approx(sum(j for lv, j in by_level.items() if lv != "dram"))
    assert r.energy_frame().loc["noc", "total"] == pytest.approx(by_level["noc"])
    unpriced = simulate(layer, plain, batch=2).to_dict(with_layers=False)["totals"]
    assert "noc" not in unpriced["energy_by_level_j"]


def test_eyeriss_prices_its_network_at_twice_the_mac() -> None:
    """ISCA 2016 Table IV: PE array 2x a MAC per 16-bit word, scaled to the chip's node like the MAC."""
    p = load_profile("eyeriss")
    assert p.chip_energy is not None and p.chip_energy.energy_scale > 1
    assert p.array.noc_energy_pj_per_byte * 2 == pytest.approx(2 * p.array.mac_energy_pj)  # 2 bytes a word
