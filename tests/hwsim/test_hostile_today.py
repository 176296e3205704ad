"""Hostile input to the profile keys and options of this release (an independent reviewer's cases): what was
accepted silently or refused with a confusing message, now refused in one clear line."""

from __future__ import annotations

import copy
import math

import pytest

from hwsim import load_network, load_profile, simulate
from hwsim.errors import InputError
from hwsim.hardware.profile import design_from_raw, read_raw_profile
from hwsim.workload.layers import Layer, Workload

CHAIN = Workload("two", (Layer("l1", "conv", 16, 16, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14)),
                         Layer("l2", "conv", 16, 16, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14))))


def _raw(name: str) -> dict:
    return read_raw_profile(name)[0]


@pytest.mark.parametrize("profile", ["edge_npu", "eyeriss"])
@pytest.mark.parametrize("kw, message", [
    ({"output_sparsity": 5.0}, r"output_sparsity must be a number in \[0, 1\], got 5.0"),
    ({"output_sparsity": {"nope": 0.5}}, "output_sparsity names layers the workload does not have: nope"),
    ({"input_sparsity": -0.1}, r"input_sparsity must be a number in \[0, 1\], got -0.1"),
    ({"input_sparsity": math.nan}, r"input_sparsity must be a number in \[0, 1\], got nan"),
    ({"input_sparsity": True}, r"input_sparsity must be a number in \[0, 1\], got True"),
    ({"input_sparsity": "0.5"}, r"input_sparsity must be a number in \[0, 1\], got '0.5'"),
    ({"input_sparsity": [0.5]}, r"input_sparsity must be a number in \[0, 1\], got \[0.5\]"),
    ({"input_sparsity": {"l1": None}}, r"input_sparsity must be in \[0, 1\]: l1=None"),
    ({"output_sparsity": {"l2": "half"}}, r"output_sparsity must be in \[0, 1\]: l2='half'"),
])
def test_bad_zero_fractions_are_refused_on_every_profile(profile: str, kw: dict, message: str) -> None:
    """A profile without ``dram_compression`` took any ``output_sparsity`` (5.0, unknown layers) silently; a
    scalar out of range listed every layer of the network; a bool was taken as 1.0, a string as its number, and
    None or a list raised a TypeError. Now one line, whatever the profile."""
    with pytest.raises(ValueError, match=message) as err:
        simulate(CHAIN, load_profile(profile), **kw)
    assert "\n" not in str(err.value) and "l1=" not in str(err.value).replace("l1=None", "")


def test_good_zero_fractions_still_cost() -> None:
    """Numpy and integer fractions pass, and an ignored output sparsity changes nothing on a dense profile."""
    import numpy as np
    p = load_profile("edge_npu")
    dense = simulate(CHAIN, p)
    assert simulate(CHAIN, p, output_sparsity=np.float64(0.5), input_sparsity={"l2": 1}).energy_j == dense.energy_j
    coded = load_profile("eyeriss")
    a = simulate(CHAIN, coded, input_sparsity=np.float32(0.5), output_sparsity={"l2": 0})
    b = simulate(CHAIN, coded, input_sparsity=0.5, output_sparsity={"l2": 0.0})
    assert a.energy_j == pytest.approx(b.energy_j)


def test_cols_block_wider_than_the_array_is_refused() -> None:
    """A ``cols_block`` of 64 x 2 x 2 = 256 ways on Ethos-U55's 32 columns was accepted and silently dropped
    for every layer it would fill; now refused, naming the key and the array's columns."""
    raw = _raw("ethos_u55")
    raw["spatial"]["alternatives"][0]["cols_block"] = {"K": 64, "OX": 2, "OY": 2}
    with pytest.raises(InputError, match=r"f\.yaml: spatial: alternatives\[0\]\.cols_block: its ways multiply to "
                                         r"256, more than the array's 32 columns \(array.cols\)"):
        design_from_raw(raw, "f.yaml")
    fits = copy.deepcopy(_raw("ethos_u55"))
    fits["spatial"]["alternatives"][0]["cols_block"] = {"K": 8, "OX": 2, "OY": 2}  # 32: the whole array
    assert design_from_raw(fits, "f.yaml").profile.array.cols == 32


@pytest.mark.parametrize("search", [{"lpf_limit": 1}, {"spatial_keep": 64}, {"pe_split": []},
                                    {"pe_split": ["weights", "inputs", "outputs"]}])
def test_search_extremes_cost_finite(search: dict) -> None:
    """The search's parameters at their ends give a finite, positive cost with no overflowing tile."""
    raw = _raw("eyeriss")
    raw["search"] = search
    r = simulate(load_network("alexnet"), design_from_raw(raw, "f.yaml").profile, mode=None)
    assert math.isfinite(r.energy_j) and r.energy_j > 0 and math.isfinite(r.cycles) and r.cycles > 0
    assert not any(c.mapping and c.mapping.get("overflow") for c in r.layers)


def test_more_zeros_never_more_dram_bytes() -> None:
    """On eyeriss (run-length coded DRAM, zero gating) DRAM bytes and energy fall as the zeros rise, up to all
    zeros, and no coded byte count is negative."""
    p, w = load_profile("eyeriss"), load_network("resnet18")
    last = (math.inf, math.inf)
    for z in (0.0, 0.3, 0.7, 0.999999, 1.0):
        r = simulate(w, p, mode=None, input_sparsity=z, output_sparsity=z)
        read, written = r.traffic("dram")
        now = (sum(read.values()) + sum(written.values()), r.energy_j)
        assert min(list(read.values()) + list(written.values())) >= 0
        assert now[0] <= last[0] and now[1] <= last[1], (z, now, last)
        last = now


@pytest.mark.parametrize("axes", [["cols"], ["rows"], ["rows", "cols"]])
def test_divisors_with_a_cols_block_are_refused(axes: list[str]) -> None:
    """A block alternative's ``divisors`` were accepted and never read (the block and its rows unroll as they
    are: the same cycles and energy with or without them); now refused."""
    raw = _raw("ethos_u55")
    raw["spatial"]["alternatives"][0]["divisors"] = axes
    with pytest.raises(InputError, match=r"f\.yaml: spatial\.alternatives\[0\]\.cols_block: divisors is not used "
                                         r"with cols_block"):
        design_from_raw(raw, "f.yaml")
