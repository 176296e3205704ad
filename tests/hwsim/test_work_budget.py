"""hwsim.work_budget: an estimate grows with the work counted, a refusal is one line, and the value it
prints for the lifting option lifts the cap."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.work_budget import Estimate, WorkRefused, duration, machine_memory, refuse_over_cap, size

counts = st.integers(min_value=0, max_value=10**15)
rates = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(counts, counts, rates, rates, st.integers(min_value=1, max_value=10**12))
def test_estimate_is_monotone_in_the_counts(a: int, b: int, seconds: float, n_bytes: float, cap: int) -> None:
    small, large = sorted((a, b))
    lo, hi = (Estimate.of("t", "points", n, seconds_per_unit=seconds, bytes_per_unit=n_bytes, cap=cap,
                          option="--max-points") for n in (small, large))
    assert lo.seconds <= hi.seconds and lo.bytes <= hi.bytes
    assert not (lo.over and not hi.over)  # more work is never let through where less was refused


@given(counts, rates, st.sampled_from(["units", "bytes"]), st.integers(min_value=1, max_value=10**12))
def test_refusal_is_one_line_and_its_value_lifts_the_cap(units: int, per_unit: float, capped: str, cap: int) -> None:
    estimate = Estimate.of("ksm-x", "points", units, seconds_per_unit=per_unit, bytes_per_unit=per_unit,
                           cap=cap, option="--max-x", capped=capped)  # type: ignore[arg-type]
    if not estimate.over:
        assert refuse_over_cap(estimate) is estimate and "over the cap" not in estimate.line()
        return
    with pytest.raises(WorkRefused) as caught:
        refuse_over_cap(estimate)
    line = str(caught.value)
    assert "\n" not in line and line.startswith("ksm-x: about ") and "over the cap of" in line
    lifted = float(re.search(r"lift it with --max-x (\S+)$", line).group(1))
    new_cap = lifted * 2**30 if capped == "bytes" else lifted
    assert not Estimate(**{**estimate.__dict__, "cap": new_cap}).over


def test_line_says_count_time_and_memory() -> None:
    e = Estimate.of("spec.yaml", "points", 4_000_000, seconds_per_unit=1 / 660, bytes_per_unit=5000,
                    cap=200_000, option="--max-points")
    assert e.line() == ("spec.yaml: about 4,000,000 points, ~1.7 h, ~18.6 GiB (over the cap of 200,000 points); "
                        "lift it with --max-points 4000000")


@pytest.mark.parametrize("seconds, text", [(5, "5 s"), (600, "10 min"), (7200, "2.0 h"), (86400 * 3, "3.0 days"),
                                           (86400 * 365 * 1000, "1e+03 years")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_size_and_machine_memory() -> None:
    assert size(512) == "512 B" and size(1.5 * 2**30) == "1.5 GiB" and size(2**50) == "1.0 PiB"
    assert machine_memory() > 2**20  # os.sysconf answers on the platforms the project runs on
