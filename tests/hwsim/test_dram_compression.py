"""Run-length coded feature maps in DRAM (a profile's ``dram_compression``; Eyeriss v1's format, Chen et al.,
JSSC 2017, §IV-B): the expected coded size, the profile key, and its effect on one layer's cost."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import Layer, Workload, load_profile, simulate
from hwsim.cost.dram_compression import (
    CodedMaps, RunLengthCode, coded_maps, compressed_bits_per_value, compressed_bytes, compression_factor,
    pairs_per_value,
)
from hwsim.cost.layer_cost import cost_of_mapping, layer_cost, output_elems, shape_of
from hwsim.cost.mapping import search
from hwsim.errors import InputError
from hwsim.hardware.profile import Profile, bundled_profiles, profile_from_dict, read_raw_profile
from hwsim.workload.graph import Graph, Op

EYERISS = RunLengthCode(run_bits=5, level_bits=16, word_bits=64)

codes = st.builds(lambda r, lvl, extra: RunLengthCode(r, lvl, (r + lvl) * extra[0] + extra[1]),
                  st.integers(1, 12), st.integers(1, 32), st.tuples(st.integers(1, 4), st.integers(0, 8)))
fractions = st.floats(0.0, 1.0, allow_nan=False)


def test_eyeriss_format() -> None:
    """Three 21-bit pairs and a flag bit in 64 bits: 64/3 bits a value without zeros."""
    assert EYERISS.pairs_per_word == 3
    assert compressed_bits_per_value(EYERISS, 0.0) == pytest.approx(64 / 3)
    assert compression_factor(EYERISS, 0.0, 16) == pytest.approx(4 / 3)
    assert compressed_bits_per_value(EYERISS, 1.0) == pytest.approx(64 / 3 / 32)  # one pair per 32 zeros
    # the truncated geometric by hand at z = 1/2: 1 / (1 + 1/2 + ... + 1/2**31)
    assert pairs_per_value(0.5, 5) == pytest.approx(1 / sum(0.5 ** k for k in range(32)))


@settings(max_examples=200, deadline=None)
@given(codes, fractions, st.floats(0, 1e9))
def test_never_above_dense_with_the_format_overhead(code: RunLengthCode, z: float, n: float) -> None:
    """At most one pair a value: never above the zero-free size; equal to it at z = 0."""
    dense_coded = n * code.word_bits / code.pairs_per_word / 8
    assert compressed_bytes(code, n, z) <= dense_coded * (1 + 1e-12)
    assert compressed_bytes(code, n, 0.0) == pytest.approx(dense_coded)
    assert compressed_bytes(code, n, z) >= 0.0


@settings(max_examples=200, deadline=None)
@given(codes, fractions, fractions)
def test_monotone_in_the_zeros(code: RunLengthCode, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert compressed_bits_per_value(code, hi) <= compressed_bits_per_value(code, lo) * (1 + 1e-12)


@settings(max_examples=100, deadline=None)
@given(codes, fractions)
def test_a_pair_covers_at_most_one_longest_run(code: RunLengthCode, z: float) -> None:
    assert pairs_per_value(z, code.run_bits) >= 1 / 2 ** code.run_bits * (1 - 1e-12)


def test_bad_arguments_refused() -> None:
    with pytest.raises(ValueError):
        compression_factor(EYERISS, 1.5, 16)
    with pytest.raises(ValueError):
        RunLengthCode(5, 16, 20)
    with pytest.raises(ValueError):
        compressed_bytes(EYERISS, -1, 0.5)


def _eyeriss_dict() -> dict:
    return read_raw_profile("eyeriss")[0]


def test_profile_key_read() -> None:
    assert load_profile("eyeriss").dram_compression == EYERISS
    assert load_profile("edge_tpu").dram_compression is None


@pytest.mark.parametrize("change, words", [
    ({"word_bits": 16}, "holds no"),
    ({"level_bits": 8}, "narrower than precision_bits.inputs"),
    ({"format": "zip"}, "dram_compression"),
])
def test_profile_key_refusals(change: dict, words: str) -> None:
    d = _eyeriss_dict()
    d["dram_compression"] = {**d["dram_compression"], **change}
    with pytest.raises(InputError, match=words):
        profile_from_dict(d, "eyeriss.yaml")


def test_per_period_refused() -> None:
    d = {**_eyeriss_dict(), "latency_model": "per_period"}
    with pytest.raises(InputError, match="roofline only"):
        profile_from_dict(d, "eyeriss.yaml")


LAYER = Layer(name="c", kind="conv", in_channels=96, out_channels=256, kernel_hw=(5, 5), input_hw=(27, 27),
              output_hw=(27, 27), stride_hw=(1, 1), padding_hw=(2, 2), groups=2)


@pytest.mark.parametrize("name", bundled_profiles())
def test_a_profile_without_the_key_keeps_its_numbers(name: str) -> None:
    """Without ``dram_compression`` the mapping's bytes and stall are the cost's, whatever the input sparsity
    (the code path is not taken); with the key dropped, Eyeriss's too."""
    profiles = [load_profile(name)]
    if profiles[0].dram_compression is not None:
        profiles = [dataclasses.replace(profiles[0], dram_compression=None)]
    for profile in profiles:
        shape = shape_of(LAYER, 4)
        m = search(shape, profile)
        for z in (0.0, 0.6):
            cost = cost_of_mapping(LAYER, shape, m, profile, batch=4, input_sparsity=z)
            assert cost.read_bytes == m.reads and cost.write_bytes == m.writes
            assert cost.stall_cycles == m.stall_cycles and cost.bound == m.bound
            assert cost.energy_pj[(profile.dram.name, "inputs")] == m.energy_pj[(profile.dram.name, "inputs")]


@pytest.mark.parametrize("zi, zo", [(0.0, None), (0.4, None), (0.8, None), (None, 0.0), (None, 0.7),
                                    (0.5, 0.9)])
def test_feature_maps_in_dram_coded(zi: float | None, zo: float | None) -> None:
    """Eyeriss: the inputs read from DRAM change by the code's factor, the outputs written by the final outputs'
    coded size (their dense share replaced), bytes and energy alike; weights stay; the bytes saved are
    reported; the latency never grows where the code shrinks the maps."""
    coded = load_profile("eyeriss")
    dense = dataclasses.replace(coded, dram_compression=None)
    a = layer_cost(LAYER, dense, batch=4, input_sparsity=zi or 0.0)
    b = layer_cost(LAYER, coded, batch=4, input_sparsity=zi or 0.0, coded=CodedMaps(inputs=zi, outputs=zo))
    ki, ko, kw = ("dram", "inputs"), ("dram", "outputs"), ("dram", "weights")
    fi = 1.0 if zi is None else compression_factor(EYERISS, zi, 16)
    assert b.read_bytes[ki] == pytest.approx(a.read_bytes[ki] * fi)
    assert b.energy_pj[ki] == pytest.approx(a.energy_pj[ki] * fi)
    final = 4 * output_elems(LAYER) * 2  # 16-bit final outputs (Eyeriss's psums are 16-bit too), written once
    assert a.write_bytes[ko] >= final  # and partial sums spilled, where the mapping spills them (never coded)
    fo = 1.0 if zo is None else compression_factor(EYERISS, zo, 16)
    assert b.write_bytes[ko] == pytest.approx(a.write_bytes[ko] - final * (1 - fo))
    assert b.read_bytes.get(ko, 0.0) == a.read_bytes.get(ko, 0.0)
    assert b.energy_pj[ko] == pytest.approx(a.energy_pj[ko] * (b.write_bytes[ko] + b.read_bytes.get(ko, 0.0))
                                            / (a.write_bytes[ko] + a.read_bytes.get(ko, 0.0)))
    assert b.read_bytes[kw] == a.read_bytes[kw] and b.energy_pj[kw] == a.energy_pj[kw]
    assert b.dram_code_saved_bytes == pytest.approx(_moved(a) - _moved(b))
    assert (b.cycles <= a.cycles) if fi <= 1 and fo <= 1 else (b.cycles >= a.cycles)


def test_nothing_coded_by_default() -> None:
    """A layer costed without ``coded`` moves its maps dense on Eyeriss too (whatever its input sparsity)."""
    coded = load_profile("eyeriss")
    dense = dataclasses.replace(coded, dram_compression=None)
    a = layer_cost(LAYER, dense, batch=4, input_sparsity=0.6)
    b = layer_cost(LAYER, coded, batch=4, input_sparsity=0.6)
    assert (a.read_bytes, a.write_bytes, a.cycles) == (b.read_bytes, b.write_bytes, b.cycles)
    assert b.dram_code_saved_bytes == 0.0


def _moved(cost) -> float:
    """DRAM bytes read and written by one layer."""
    return sum(v for (lv, _), v in (*cost.read_bytes.items(), *cost.write_bytes.items()) if lv == "dram")


def _slow_dram(profile: Profile, bandwidth: float) -> Profile:
    dram = dataclasses.replace(profile.levels[0], bandwidth_bytes_per_cycle=bandwidth)
    return dataclasses.replace(profile, levels=(dram, *profile.levels[1:]))


def test_a_dram_bound_layer_is_faster_coded() -> None:
    """Where the DRAM link bounds the layer, the coded bytes set its stall (the roofline over the coded
    traffic): the latency falls with the bytes, and the energy saved is the bytes saved at DRAM's energy."""
    coded = _slow_dram(load_profile("eyeriss"), 0.05)
    dense = dataclasses.replace(coded, dram_compression=None)
    shape = shape_of(LAYER, 4)
    m = search(shape, dense)
    a = cost_of_mapping(LAYER, shape, m, dense, batch=4)
    b = cost_of_mapping(LAYER, shape, m, coded, batch=4, coded=CodedMaps(inputs=0.7, outputs=0.7))
    assert a.bound == "dram" and b.bound == "dram"
    dram = coded.dram
    assert b.stall_cycles == pytest.approx(_moved(b) / dram.bandwidth_bytes_per_cycle - m.onload_cycles
                                           - m.offload_cycles - m.compute_cycles)
    assert b.cycles < a.cycles
    assert a.cycles - b.cycles == pytest.approx((_moved(a) - _moved(b)) / dram.bandwidth_bytes_per_cycle)
    assert dram.read_energy_pj == dram.write_energy_pj  # one access energy: the saving is bytes x it
    saved_pj = sum(a.energy_pj[("dram", o)] - b.energy_pj[("dram", o)] for o in ("inputs", "outputs"))
    assert saved_pj == pytest.approx((_moved(a) - _moved(b)) * 8 / dram.word_bits * dram.read_energy_pj)
    assert b.dram_code_saved_bytes == pytest.approx(_moved(a) - _moved(b))


def _graph() -> Graph:
    """image -> a -> maxpool -> b -> Add(b, c) -> d; a -> c; d's output leaves the network."""
    ops = (Op("a", "conv", ("image",), ("a:out",), layer="a"),
           Op("pool", "pool", ("a:out",), ("p:out",)),
           Op("b", "conv", ("p:out",), ("b:out",), layer="b"),
           Op("c", "conv", ("a:out",), ("c:out",), layer="c"),
           Op("add", "elementwise", ("b:out", "c:out"), ("s:out",)),
           Op("d", "conv", ("s:out",), ("d:out",), layer="d"))
    tensors = dict.fromkeys(("image", "a:out", "p:out", "b:out", "c:out", "s:out", "d:out"), (8, 4, 4))
    return Graph(ops=ops, tensors=tensors, inputs=("image",), outputs=("d:out",))


MACS = {0: "a", 2: "b", 3: "c", 5: "d"}


def test_which_maps_are_coded() -> None:
    """The image is never coded; a map's zeros are its readers' (through a pooling), the largest where several
    read it; an Add between, or no reader, leaves it dense; an explicit output sparsity wins; a map the
    memory plan keeps on chip is not coded."""
    zeros = {"a": 0.1, "b": 0.4, "c": 0.6, "d": 0.8}
    got = coded_maps(_graph(), MACS, zeros, {}, lambda tensors: False)
    assert got["a"] == CodedMaps(inputs=None, outputs=0.6)  # image dense; b (behind the pool) 0.4, c 0.6
    assert got["b"] == CodedMaps(inputs=0.4, outputs=None)  # an Add before d: d's zeros are not b's
    assert got["d"] == CodedMaps(inputs=0.8, outputs=None)  # the network's output: no reader
    assert coded_maps(_graph(), MACS, {"b": 0.4}, {}, lambda t: False)["a"] == CodedMaps(None, 0.4)
    assert coded_maps(_graph(), MACS, {}, {}, lambda t: False) == dict.fromkeys("abcd", CodedMaps())
    assert coded_maps(_graph(), MACS, zeros, {"a": 0.9, "d": 0.2}, lambda t: False)["a"].outputs == 0.9
    assert coded_maps(_graph(), MACS, zeros, {"d": 0.2}, lambda t: False)["d"].outputs == 0.2
    kept = coded_maps(_graph(), MACS, zeros, {}, lambda tensors: "a:out" in tensors)
    assert kept["a"].outputs is None and kept["c"].inputs is None and kept["b"].inputs == 0.4


CHAIN = Workload("two", (
    Layer("l1", "conv", 64, 96, (3, 3), (1, 1), (1, 1), 1, (27, 27), (27, 27)),
    Layer("l2", "conv", 96, 128, (3, 3), (1, 1), (1, 1), 1, (27, 27), (27, 27))))


def _dram(r) -> list[float]:
    return [sum(v for (lv, _), v in (*c.read_bytes.items(), *c.write_bytes.items()) if lv == "dram")
            for c in r.layers]


def test_simulate_codes_what_the_run_gives() -> None:
    """A run without zeros moves every map dense (as a profile without the code); with the second layer's input
    zeros, the first layer's output map is coded for them (the chain links them), the image never; the
    bytes saved are in the record."""
    coded = load_profile("eyeriss")
    dense = dataclasses.replace(coded, dram_compression=None)
    assert _dram(simulate(CHAIN, coded, batch=2)) == _dram(simulate(CHAIN, dense, batch=2))
    z = {"l1": 0.5, "l2": 0.6}
    a = simulate(CHAIN, dense, batch=2, input_sparsity=z)
    b = simulate(CHAIN, coded, batch=2, input_sparsity=z)
    l1a, l1b = a.layers[0], b.layers[0]
    assert l1b.read_bytes[("dram", "inputs")] == l1a.read_bytes[("dram", "inputs")]  # the image
    assert l1b.write_bytes[("dram", "outputs")] < l1a.write_bytes[("dram", "outputs")]  # read by l2, coded
    assert l1b.dram_code_saved_bytes > 0
    assert b.layers[1].write_bytes[("dram", "outputs")] == a.layers[1].write_bytes[("dram", "outputs")]
    t = b.to_dict()["totals"]
    assert t["dram_code_saved_bytes"] == pytest.approx(sum(_dram(a)) - sum(_dram(b)))
    assert b.to_dict()["layers"][0]["dram_code_saved_bytes"] == l1b.dram_code_saved_bytes
    # an explicit output sparsity: the last layer's output is coded too
    c = simulate(CHAIN, coded, batch=2, input_sparsity=z, output_sparsity={"l2": 0.5})
    assert c.layers[1].write_bytes[("dram", "outputs")] < b.layers[1].write_bytes[("dram", "outputs")]
    with pytest.raises(ValueError, match="output_sparsity names"):
        simulate(CHAIN, coded, output_sparsity={"nope": 0.5})
    with pytest.raises(ValueError, match=r"output_sparsity must be in \[0, 1\]"):
        simulate(CHAIN, coded, output_sparsity={"l1": 1.5})


def test_coding_with_a_bursty_or_single_ported_level_is_refused() -> None:
    """The coded layer's stall is recounted from bytes over each port's width, which knows neither bursts nor a
    single read-write port: such a profile is refused in one line naming the key and the level."""
    from hwsim.errors import InputError
    from hwsim.hardware.profile import load_design

    code = "dram_compression={format: rlc, run_bits: 5, level_bits: 16, word_bits: 64}"
    with pytest.raises(InputError, match=r"burst_bytes \(level 'system_sram'\)"):
        load_design("ethos_u55", [code])
    with pytest.raises(InputError, match=r"shared_port \(level 'glb_108KB'\)"):
        load_design("eyeriss", ["levels.glb_108KB.shared_port=true"])


def test_zero_zeros_declared_are_coded_at_the_format_overhead() -> None:
    """Eyeriss codes every feature map but the image whatever its zeros (JSSC 2017, §IV-B), so a sparsity of
    0 given is coded too: the maps between the layers cost 4/3 of dense (64/3 bits per 16-bit value), more
    than a run without the option (dense, zeros unknown); the image stays dense. Stated where a user sees it:
    the ``--input-sparsity`` help and docs/hwsim.md."""
    coded = load_profile("eyeriss")
    plain = simulate(CHAIN, coded, batch=2)
    zero = simulate(CHAIN, coded, batch=2, input_sparsity=0.0)
    o, i = ("dram", "outputs"), ("dram", "inputs")
    assert zero.layers[0].read_bytes[i] == plain.layers[0].read_bytes[i]  # the image
    final = output_elems(CHAIN.layers[0]) * 2 * coded.precision_bits.outputs / 8  # l1's map, batch 2
    # l1's final map coded at 4/3; its partial sums spilled to DRAM (written and read back) stay dense
    assert zero.layers[0].write_bytes[o] - plain.layers[0].write_bytes[o] == pytest.approx(final / 3)
    assert zero.layers[0].read_bytes[o] == plain.layers[0].read_bytes[o]
    assert zero.layers[1].read_bytes[i] == pytest.approx(plain.layers[1].read_bytes[i] * 4 / 3)
    assert zero.layers[1].write_bytes[o] == plain.layers[1].write_bytes[o]  # nothing reads it: dense
    assert zero.to_dict()["totals"]["dram_code_saved_bytes"] < 0
    from click.testing import CliRunner

    from hwsim.ksm_sim import main

    words = " ".join(CliRunner().invoke(main, ["--help"]).output.split())
    assert "at 0 they cost 4/3 of their dense bytes" in words
    docs = (Path(__file__).parents[2] / "docs" / "hwsim.md").read_text()
    assert "4/3 of their dense bytes" in " ".join(docs.split())
