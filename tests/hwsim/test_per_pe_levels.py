"""Several per-PE levels for one operand (issue 24, item 1): a register under a scratchpad, both inside every PE.

The profile here gives weights a 2-entry register under a 64-entry scratchpad and outputs one accumulator
under an 8-entry partial-sum scratchpad, all four per PE; inputs have one per-PE register under a shared
buffer. Between two levels of one PE each PE moves its own data (no multicast, no reduction); a shared level
multicasts to (or reduces from) the per-PE level below it. Timeloop's exercise 04, whose PEs each hold a
buffer above a register file, is checked against its reference counts in test_given_mapping.py.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsim import Layer
from hwsim.cost.layer_cost import shape_of
from hwsim.cost.mapping import clear_caches, search
from hwsim.cost.mapping.best_mapping import kept_unrollings, pinned_loops
from hwsim.cost.mapping.loop_orders import flat_loops, order_tables, pattern
from hwsim.cost.mapping.one_mapping import MappingCost, evaluate, objective_key
from hwsim.cost.mapping.space import DIMS, RELEVANT, arch, folds, spatial_options
from hwsim.errors import InputError
from hwsim.hardware.profile import Profile, load_profile

W, I, O = "weights", "inputs", "outputs"


def _level(name: str, size: float, bits: int, pj: float, bw: float, operands: list[str], per_pe: bool = False) -> dict:
    out = {"name": name, "size_bytes": size, "word_bits": bits, "read_energy_pj": pj, "write_energy_pj": pj,
           "bandwidth_bytes_per_cycle": bw, "operands": operands}
    if per_pe:
        out["per_pe"] = True
    return out


def raw_profile(w_spad: bool = True, o_spad: bool = True, spad_pj: float | None = None) -> dict:
    """A small weight-stationary array, 8 x 8 PEs; energies of the order of ZigZag's example memories.
    ``w_spad``/``o_spad``: whether weights/outputs have their second per-PE level; ``spad_pj``: those
    levels' access energy (default: their own)."""
    levels = [
        _level("dram", 1e9, 64, 700.0, 8, [W, I, O]),
        _level("glb_64KB", 65536, 64, 26.0, 32, [I, O]),
    ]
    if w_spad:  # 64 weights per PE
        levels.append(_level("w_spad", 64, 8, 0.5 if spad_pj is None else spad_pj, 2, [W], per_pe=True))
    if o_spad:  # 8 partial sums per PE
        levels.append(_level("o_spad", 16, 16, 0.3 if spad_pj is None else spad_pj, 4, [O], per_pe=True))
    levels += [
        _level("w_reg", 2, 8, 0.03, 1, [W], per_pe=True),  # two weights
        _level("i_reg", 2, 8, 0.03, 1, [I], per_pe=True),
        # accumulators: partial sums accumulate here, the innermost level holding outputs
        _level("o_acc", 2, 16, 0.03, 4, [O], per_pe=True),
    ]
    return {
        "name": "two_per_pe", "description": "test: two per-PE levels for weights and for outputs",
        "clock_hz": 1.0e9, "dataflow": "weight_stationary",
        "array": {"rows": 8, "cols": 8, "mac_energy_pj": 0.1},
        "precision_bits": {"weights": 8, "inputs": 8, "psums": 16, "outputs": 16, "mask_scale": 8, "batchnorm": 8},
        "mask_op_energy_pj": {"gate": 0.0, "multiply": 0.0},
        "levels": levels,
    }


def profile_of(tmp_path: Path, raw: dict, name: str = "p.yaml") -> Profile:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_profile(path)


LAYERS = [
    Layer("c3", "conv", 32, 64, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14)),
    Layer("pw", "conv", 64, 32, (1, 1), (1, 1), (0, 0), 1, (28, 28), (28, 28)),
    Layer("s2", "conv", 16, 32, (3, 3), (2, 2), (1, 1), 1, (28, 28), (14, 14)),
    Layer("dw", "conv", 32, 32, (3, 3), (1, 1), (1, 1), 32, (14, 14), (14, 14)),
    Layer("fc", "linear", 256, 100, (1, 1)),
]


# --------------------------------------------------------------------------------------------
# The profile file


def test_profile_accepts_several_per_pe_levels_innermost(tmp_path: Path) -> None:
    p = profile_of(tmp_path, raw_profile())
    assert [lv.name for lv in p.chain(W)] == ["dram", "w_spad", "w_reg"]
    assert [lv.name for lv in p.chain(O)] == ["dram", "glb_64KB", "o_spad", "o_acc"]
    a = arch(p)
    order = [lv.name for lv, _ in a.alloc]
    # per-PE levels first, each after every level below it in some operand's chain (LOMA's order)
    assert order.index("w_reg") < order.index("w_spad") < order.index("glb_64KB")
    assert order.index("o_acc") < order.index("o_spad") < order.index("glb_64KB")
    assert all(lv.per_pe for lv, _ in a.alloc[:-1]) and not a.alloc[-1][0].per_pe


def test_profile_refuses_a_per_pe_level_above_a_shared_one(tmp_path: Path) -> None:
    raw = raw_profile()
    raw["levels"][1]["per_pe"] = True  # the buffer per PE too: three per-PE levels for outputs, all innermost
    assert len([lv for lv in profile_of(tmp_path, raw).chain(O) if lv.per_pe]) == 3
    raw = raw_profile()
    raw["levels"].append(_level("o_shared", 4096, 64, 5.0, 16, [O]))  # a shared level below per-PE ones
    with pytest.raises(InputError) as info:
        profile_of(tmp_path, raw)
    message = str(info.value)
    assert "\n" not in message
    assert ("levels: outputs: per_pe levels must be the innermost holding it, but per_pe 'o_spad' is above the "
            "shared 'o_shared'") in message


# --------------------------------------------------------------------------------------------
# Access counts: every element read from a level was written into the one below it


def _true_ways(shape, m: MappingCost) -> dict[str, float]:
    fold = dict.fromkeys(DIMS, 1)
    for d, f in m.loops:
        fold[d] *= f
    return {d: shape.size(d) / fold[d] for d in m.spatial.ways()}


def _mc(shape, m: MappingCost, o: str) -> float:
    return math.prod(u for d, u in _true_ways(shape, m).items() if d not in RELEVANT[o])


@pytest.mark.parametrize("layer", LAYERS, ids=[la.name for la in LAYERS])
def test_access_counts_conserve(tmp_path: Path, layer: Layer) -> None:
    """Per PE, between two per-PE levels: the scratchpad's reads are the register's writes (weights), and the
    partial sums the accumulator sends up are what the scratchpad receives, and back; at a shared parent the
    same with the multicast (weights, inputs) or the reduction across PEs (outputs) of the unrolling."""
    p = profile_of(tmp_path, raw_profile())
    shape = shape_of(layer)
    m = search(shape, p)
    el = {o: b / 8 for o, b in {W: 8, I: 8, O: 16}.items()}  # bytes per element (psums and outputs alike)

    def r(lv: str, o: str) -> float:
        return m.reads.get((lv, o), 0.0) / el[o]

    def w(lv: str, o: str) -> float:
        return m.writes.get((lv, o), 0.0) / el[o]

    macs = shape.macs
    # weights: dram -> w_spad (per PE, multicast over the unrolled dims weights do not depend on) -> w_reg (its PE)
    assert r("w_spad", W) == pytest.approx(w("w_reg", W), rel=1e-12)
    assert r("dram", W) * _mc(shape, m, W) == pytest.approx(w("w_spad", W), rel=1e-12)
    # inputs: dram -> glb (shared) -> i_reg (per PE)
    assert r("glb_64KB", I) * _mc(shape, m, I) == pytest.approx(w("i_reg", I), rel=1e-12)
    assert r("dram", I) == pytest.approx(w("glb_64KB", I), rel=1e-12)
    # outputs: the MACs read-modify-write o_acc once per MAC; what else it reads goes up to o_spad, what else it
    # is written comes back down from o_spad; o_spad's traffic with glb is reduced across the PEs sharing outputs
    up_acc, back_acc = r("o_acc", O) - macs, w("o_acc", O) - macs
    up_spad, back_spad = r("o_spad", O) - back_acc, w("o_spad", O) - up_acc
    assert up_acc >= back_acc >= 0 and up_spad >= back_spad >= 0
    mc = _mc(shape, m, O)
    n_out = shape.b * shape.g * shape.k * shape.oy * shape.ox
    assert up_spad - back_spad == pytest.approx(n_out * mc, rel=1e-12)  # every PE's part of every output leaves once
    glb_from_below = up_spad / mc  # reduced on the way up
    glb_to_below = back_spad / mc
    up_glb = r("glb_64KB", O) - glb_to_below
    assert w("glb_64KB", O) - glb_from_below == pytest.approx(r("dram", O), rel=1e-12, abs=1e-9)
    assert up_glb == pytest.approx(w("dram", O), rel=1e-12)


# --------------------------------------------------------------------------------------------
# A second per-PE level never beneficial: what holds


@pytest.mark.parametrize("layer", LAYERS, ids=[la.name for la in LAYERS])
def test_a_free_second_level_never_costs_more(tmp_path: Path, layer: Layer) -> None:
    """Levels are not bypassed in this model: every element of an operand passes through every level of its
    chain (a level that takes no loops still has each element written into it and read out of it). So a
    second per-PE level costs its pass-through traffic, and what holds is this: a scratchpad whose accesses
    cost nothing never makes the searched energy higher (it passes data through for free, or holds loops that
    save traffic above it); and with its own access energy, the layer costs at least that of the profile
    without it less what the free scratchpad saved (it can only add its own accesses)."""
    shape = shape_of(layer)
    clear_caches()
    without = search(shape, profile_of(tmp_path, raw_profile(w_spad=False, o_spad=False), "a.yaml"))
    free = search(shape, profile_of(tmp_path, raw_profile(spad_pj=0.0), "b.yaml"))
    paid = search(shape, profile_of(tmp_path, raw_profile(), "c.yaml"))
    assert free.energy <= without.energy * (1 + 1e-12)
    assert paid.energy >= free.energy * (1 - 1e-12)


# --------------------------------------------------------------------------------------------
# The search scores what evaluate() costs

# evaluate() (the reference) and the search's batch scorer count the traffic between two per-PE levels alike
# (no multicast between them; each PE's part of an output leaves once).


def test_batch_scorer_is_evaluate_on_random_orders(tmp_path: Path) -> None:
    """score_batch's energy and cycles of random loop orders are evaluate()'s (the reference), on a profile with
    two per-PE levels for weights and for outputs."""
    from hwsim.cost.mapping.batch_scorer import score_batch
    from tests.hwsim.reference_orders import loop_orders

    p = profile_of(tmp_path, raw_profile())
    a = arch(p)
    rng = random.Random(24)
    checked = 0
    for layer in LAYERS:
        shape = shape_of(layer)
        for sp in spatial_options(shape, a)[:2]:
            flat = flat_loops(folds(shape, sp))
            if not flat:
                continue
            energy, cycles = score_batch(a, [(shape, sp, flat, order_tables(pattern(flat)))])
            dims_idx, facs = loop_orders(flat)
            assert len(energy) == len(dims_idx)
            for row in rng.sample(range(len(energy)), min(40, len(energy))):
                loops = tuple((DIMS[d], int(f)) for d, f in zip(dims_idx[row], facs[row]))
                m = evaluate(shape, a, sp, loops)
                assert energy[row] == pytest.approx(m.energy, rel=1e-9), (layer.name, sp, loops)
                assert cycles[row] == pytest.approx(m.cycles, rel=1e-9), (layer.name, sp, loops)
                checked += 1
    assert checked > 100


@pytest.mark.parametrize("layer", LAYERS[:3], ids=[la.name for la in LAYERS[:3]])
def test_search_finds_the_brute_force_optimum(tmp_path: Path, layer: Layer) -> None:
    """The search's winner costs the least of every order of every kept unrolling that fits every level (of all
    of them where none fits), each costed by evaluate()."""
    clear_caches()
    p = profile_of(tmp_path, raw_profile())
    a = arch(p)
    shape = shape_of(layer)
    options = [sp for sp, _ in kept_unrollings(shape, a)]
    best = (True, np.inf)  # a mapping that fits every level first (one_mapping.preferred), then the least key
    for sp in options:
        flat = flat_loops(folds(shape, sp))
        pinned = pinned_loops(a, folds(shape, sp), flat)  # the per-PE-sized loops kept whole, where they fit
        for f in (flat,) if pinned is None else (flat, pinned):
            for order in set(itertools.permutations(f)):
                m = evaluate(shape, a, sp, tuple((DIMS[d], x) for d, x in order))
                k = (bool(m.overflow), objective_key(m.energy, m.cycles, "energy"))
                if f is flat or not k[0]:
                    best = min(best, k)
    got = search(shape, p)
    assert (bool(got.overflow), objective_key(got.energy, got.cycles, "energy")) == best


# --------------------------------------------------------------------------------------------
# A per-PE level moves a tile in whole words per transfer (ZigZag 3.9.1's _calc_memory_access)


def test_a_per_pe_tile_moves_in_whole_words_per_transfer(tmp_path: Path) -> None:
    """One PE, a linear layer of 2 x 14 MACs under the loops K 7, K 2, C 2 (innermost first); a per-PE output
    register with a 24-bit port holds the inner 7 partial sums of 16 bits. ZigZag 3.9.1 counts
    ``ceil(elements per period x precision / port bits)`` words per period (zigzag/cost_model/cost_model.py,
    ``_calc_memory_access``): each of the 4 tiles of 7 psums going up to DRAM takes ceil(112 / 24) = 5 words
    (20 reads, not 28) and each of the 2 coming back 5 (10 writes, not 14); the MACs read and write the
    register once per MAC, one word per psum (28 + 28). rf: 48 reads x 1 pJ + 38 writes x 2 pJ."""
    raw = raw_profile()
    raw["array"] = {"rows": 1, "cols": 1, "mac_energy_pj": 0.0}
    rf = _level("rf_14B", 14, 24, 1.0, 3, [O], per_pe=True)
    rf["write_energy_pj"] = 2.0
    raw["levels"] = [_level("dram", 1e9, 64, 0.0, 8, [W, I, O]), rf]
    raw["precision_bits"]["outputs"] = 16
    p = profile_of(tmp_path, raw)
    shape = shape_of(Layer("fc", "linear", 2, 14, (1, 1)))
    a = arch(p)
    sp = spatial_options(shape, a)[0]
    assert all(w == 1 for w in sp.ways().values())
    loops = (("K", 7), ("K", 2), ("C", 2))
    m = evaluate(shape, a, sp, loops, cuts={W: (), I: (), O: (1,)})
    assert m.reads[("rf_14B", O)] == pytest.approx((28 + 28) * 2)  # bytes: elements x 16 bits, as before
    assert m.writes[("rf_14B", O)] == pytest.approx((28 + 14) * 2)
    assert m.energy_pj[("rf_14B", O)] == pytest.approx(48 * 1.0 + 38 * 2.0)
    # the search's batch scorer counts the same words
    from tests.hwsim.reference_orders import score_orders
    orders = np.array([[DIMS.index(d) for d, _ in loops]])
    factors = np.array([[float(f) for _, f in loops]])
    e, _ = score_orders(shape, a, sp, orders, factors)
    assert e[0] == pytest.approx(sum(m.energy_pj.values()), rel=1e-12)
