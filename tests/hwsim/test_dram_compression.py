"""Run-length coded feature maps in DRAM (a profile's ``dram_compression``; Eyeriss v1's format, Chen et al.,
JSSC 2017, §V-B): the expected coded size, the profile key, and its effect on one layer's cost."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import Layer, load_profile
from hwsim.cost.dram_compression import (
    RunLengthCode, compressed_bits_per_value, compressed_bytes, compression_factor, pairs_per_value,
)
from hwsim.cost.layer_cost import cost_of_mapping, layer_cost, shape_of
from hwsim.cost.mapping import search
from hwsim.errors import InputError
from hwsim.hardware.profile import bundled_profiles, profile_from_dict, read_raw_profile

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


@pytest.mark.parametrize("z", [0.0, 0.4, 0.8])
def test_inputs_read_from_dram_coded(z: float) -> None:
    """Eyeriss: only the inputs read from DRAM change, by the code's factor, bytes and energy alike; the
    latency never grows."""
    coded = load_profile("eyeriss")
    dense = dataclasses.replace(coded, dram_compression=None)
    a = layer_cost(LAYER, dense, batch=4, input_sparsity=z)
    b = layer_cost(LAYER, coded, batch=4, input_sparsity=z)
    key = ("dram", "inputs")
    f = compression_factor(EYERISS, z, coded.precision_bits.inputs)
    assert b.read_bytes[key] == pytest.approx(a.read_bytes[key] * f)
    assert b.energy_pj[key] == pytest.approx(a.energy_pj[key] * f)
    assert {k: v for k, v in b.read_bytes.items() if k != key} == {k: v for k, v in a.read_bytes.items() if k != key}
    assert b.write_bytes == a.write_bytes
    assert (b.cycles <= a.cycles) if f <= 1 else (b.cycles >= a.cycles)
