"""Chip-level energy and the output stage (issue 24): properties that hold on any profile and layer.

- the output stage only ever adds cycles, never energy it does not state;
- more input sparsity never adds energy under zero gating, and changes neither latency nor traffic (with
  feature maps run-length coded in DRAM on top, it raises neither);
- the node scaling (Stillmaker & Baas 2017, :mod:`hwsim.hardware.node_scaling`) is the identity at the same
  node and supply, monotone in the node, and reproduces the paper's worked example;
- every energy breakdown sums to the total.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import Layer, Workload, simulate
from hwsim.errors import InputError
from hwsim.hardware import node_scaling
from hwsim.hardware.node_scaling import MAX_NM, MIN_NM, energy_factor, energy_scale
from hwsim.hardware.profile import design_from_raw, read_raw_profile

PROFILES = ("edge_npu", "eyeriss", "zigzag_tpu_like")


def _profile(name: str, **keys):
    raw, where = read_raw_profile(name)
    raw = copy.deepcopy(raw)
    raw.update(keys)
    return design_from_raw(raw, where).profile


layers = st.builds(
    lambda c, k, hw, kern, stride: Layer("l", "conv", c, k, (kern, kern), (stride, stride), (kern // 2, kern // 2),
                                         1, (hw, hw), ((hw + 2 * (kern // 2) - kern) // stride + 1,) * 2),
    st.sampled_from([3, 16, 64]), st.sampled_from([8, 32, 64]), st.sampled_from([7, 14]),
    st.sampled_from([1, 3]), st.sampled_from([1, 2]))


def _run(layer: Layer, profile, **kw):
    return simulate(Workload("w", (layer,)), profile, **kw)


@settings(max_examples=8, deadline=None)
@given(layer=layers, name=st.sampled_from(PROFILES), rate=st.sampled_from([0.5, 4.0, 64.0, 1e6]),
       pj=st.sampled_from([0.0, 0.3]))
def test_output_stage_only_adds_cycles(layer, name, rate, pj) -> None:
    base = _run(layer, _profile(name))
    staged = _run(layer, _profile(name, output_stage={"outputs_per_cycle": rate, "energy_pj_per_output": pj}))
    lb = staged.to_dict()["totals"]["latency_breakdown_cycles"]
    assert staged.cycles >= base.cycles - 1e-9
    assert staged.cycles == pytest.approx(base.cycles + lb["output"])
    outputs = layer.out_channels * layer.output_hw[0] * layer.output_hw[1]
    assert staged.cycles >= outputs / rate - 1e-9  # the stage bounds the layer
    per_output = staged.profile.output_stage.energy_pj_per_output  # scaled to the node with the rest
    assert per_output == pytest.approx(pj * (staged.profile.chip_energy.energy_scale
                                             if staged.profile.chip_energy else 1.0))
    assert staged.energy_j == pytest.approx(base.energy_j + outputs * per_output * 1e-12)


@settings(max_examples=8, deadline=None)
@given(layer=layers, lo=st.floats(0, 1), hi=st.floats(0, 1))
def test_more_sparsity_never_adds_energy(layer, lo, hi) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    # Eyeriss's feature maps run-length coded in DRAM: more zeros, fewer bytes, never slower. A 1x1 layer
    # before makes the layer's input a feature map (the image is never coded); its output is given zeros
    hw = layer.input_hw
    pre = Layer("pre", "conv", 3, layer.in_channels, (1, 1), (1, 1), (0, 0), 1, hw, hw)
    coded = _profile("eyeriss")

    def two(z: float):
        return simulate(Workload("w", (pre, layer)), coded, input_sparsity=z, output_sparsity={"l": z})

    a, b = two(lo), two(hi)
    assert a.layers[1].dram_code_saved_bytes != 0.0  # the code applies to the layer's maps
    assert b.energy_j <= a.energy_j * (1 + 1e-12)
    assert b.cycles <= a.cycles * (1 + 1e-12)
    moved = [sum(sum(side.values()) for side in r.traffic("dram")) for r in (a, b)]
    assert moved[1] <= moved[0] * (1 + 1e-12)
    p = _profile("eyeriss", dram_compression=None)  # zero gating alone
    a, b = _run(layer, p, input_sparsity=lo), _run(layer, p, input_sparsity=hi)
    assert b.energy_j <= a.energy_j * (1 + 1e-12)
    assert b.cycles == a.cycles
    assert b.traffic("dram") == a.traffic("dram")
    saved = b.to_dict()["totals"]["zero_gating_saved_j"]
    dense = _run(layer, p)
    assert dense.energy_j == pytest.approx(b.energy_j + saved)
    # a profile without zero gating ignores the sparsity
    plain = _profile("edge_npu")
    assert _run(layer, plain, input_sparsity=hi).energy_j == _run(layer, plain).energy_j


@given(node=st.floats(MIN_NM, MAX_NM), vdd=st.floats(0.9, 1.2), device=st.sampled_from(["hp", "lp"]))
def test_node_scaling_identity_at_the_same_node(node, vdd, device) -> None:
    assert energy_scale(node, vdd, node, vdd, device) == 1.0
    assert energy_factor(node, vdd, device) > 0


@given(a=st.floats(MIN_NM, MAX_NM), b=st.floats(MIN_NM, MAX_NM), vdd=st.floats(0.9, 1.2),
       device=st.sampled_from(["hp", "lp"]))
def test_node_scaling_monotone_in_the_node(a, b, vdd, device) -> None:
    small, large = min(a, b), max(a, b)
    assert energy_factor(small, vdd, device) <= energy_factor(large, vdd, device) * (1 + 1e-12)
    assert energy_scale(large, vdd, small, vdd, device) <= 1 + 1e-12


def test_node_scaling_reproduces_the_papers_example() -> None:
    """Stillmaker & Baas 2017, §4.2.1 (Eqs. 12-14 as corrected): 1 pJ/op at 65 nm, 1.3 V is 0.1755 pJ/op at
    32 nm (hp), 0.9 V."""
    assert energy_factor(32, 0.9, "hp") == pytest.approx(0.4571, abs=1e-4)
    assert energy_factor(65, 1.3) == pytest.approx(2.604, abs=1e-3)
    assert energy_scale(65, 1.3, 32, 0.9, "hp") == pytest.approx(0.1755, abs=1e-4)


def test_scaling_happens_once_in_the_profile_and_dram_only_when_asked() -> None:
    raw, where = read_raw_profile("eyeriss")
    plain = copy.deepcopy(raw)
    plain.pop("chip_energy")
    scaled, given_ = design_from_raw(raw, where).profile, design_from_raw(plain, where).profile
    k = scaled.chip_energy.energy_scale
    assert k == pytest.approx(energy_scale(45, 0.9, 65, 1.0, "hp"))
    assert scaled.array.mac_energy_pj == pytest.approx(given_.array.mac_energy_pj * k)
    assert scaled.levels[1].read_energy_pj == pytest.approx(given_.levels[1].read_energy_pj * k)
    assert scaled.dram.read_energy_pj == pytest.approx(given_.dram.read_energy_pj * k)  # scale_outermost
    raw["chip_energy"] = {**raw["chip_energy"], "scale_outermost": False}
    assert design_from_raw(raw, where).profile.dram.read_energy_pj == given_.dram.read_energy_pj


@settings(max_examples=6, deadline=None)
@given(layer=layers, clock=st.sampled_from([0.0, 5.0, 300.0]), control=st.sampled_from([0.0, 40.0]),
       sparsity=st.floats(0, 1))
def test_breakdown_sums_to_total(layer, clock, control, sparsity) -> None:
    p = _profile("eyeriss", chip_energy={"clock_pj_per_cycle": clock, "control_pj_per_cycle": control},
                 output_stage={"outputs_per_cycle": 8.0, "energy_pj_per_output": 0.5}, static_power_w=0.01)
    r = _run(layer, p, input_sparsity=sparsity)
    t = r.to_dict()["totals"]
    assert sum(t["energy_by_operand_j"].values()) == pytest.approx(t["energy_j"])
    assert sum(t["energy_by_level_j"].values()) == pytest.approx(t["energy_j"])
    assert r.energy_frame().loc["total", "total"] == pytest.approx(t["energy_j"])
    by = r.energy_by()
    assert by.get(("clock", "clock"), 0.0) == pytest.approx(clock * r.cycles * 1e-12)
    assert by.get(("control", "control"), 0.0) == pytest.approx(control * r.cycles * 1e-12)
    assert by[("static", "static")] == pytest.approx(0.01 * r.latency_s)


def test_chip_energy_keys_are_validated() -> None:
    raw, where = read_raw_profile("eyeriss")
    bad = copy.deepcopy(raw)
    del bad["chip_energy"]["vdd_v"]
    with pytest.raises(InputError, match="chip_energy.*come together"):
        design_from_raw(bad, where)
    bad = copy.deepcopy(raw)
    bad["technology_nm"] = 3.0
    with pytest.raises(InputError, match="chip_energy.*outside the scaling fits"):
        design_from_raw(bad, where)
    bad = copy.deepcopy(raw)
    bad["output_stage"] = {"outputs_per_cycle": 0}
    with pytest.raises(InputError, match="output_stage.outputs_per_cycle"):
        design_from_raw(bad, where)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(node_scaling.TABLE["hp"])), st.floats(0.3, 2.0), st.floats(0.3, 2.0),
       st.sampled_from(node_scaling.DEVICES))
def test_a_higher_supply_never_costs_less_energy_or_is_refused(node: float, v1: float, v2: float, device: str) -> None:
    """Energy per operation rises with the supply at one node; a supply where a fit would say otherwise (below
    its vertex: 0.3 V at 65 nm once gave 1.4x the energy of 0.6 V) is refused, not extrapolated."""
    lo, hi = sorted((v1, v2))
    try:
        a, b = node_scaling.energy_factor(node, lo, device), node_scaling.energy_factor(node, hi, device)
    except ValueError:
        return
    assert b >= a * (1 - 1e-12)
