"""The schema layer: strict records, finite numbers in physical ranges, one-line errors naming the field,
and reference pages that match the schemas."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.errors import InputError
from hwsim.schemas import reference
from hwsim.schemas.validation import Fraction, Real, Record, Whole, validate

ROOT = Path(__file__).resolve().parents[2]


class Level(Record):
    """A toy record (a memory level) for the base's behaviour."""

    size_bytes: Real(gt=0, le=1e15)
    ports: Whole(ge=1, le=64) = 1
    share: Fraction = 0.5


class Chip(Record):
    levels: list[Level]


def _error(data: object) -> str:
    with pytest.raises(InputError) as info:
        validate(Chip, data, "chip.yaml")
    return str(info.value)


def test_valid_record_is_typed() -> None:
    chip = validate(Chip, {"levels": [{"size_bytes": 1.0e9, "ports": 2.0}]}, "chip.yaml")
    assert chip.levels[0].size_bytes == 1e9 and chip.levels[0].ports == 2 and isinstance(chip.levels[0].ports, int)


@pytest.mark.parametrize(("value", "says"), [
    (1e308, "levels[0].size_bytes: must be at most 1e+15"),
    (1e-320, "levels[0].size_bytes: is below 1e-300"),
    (float("nan"), "levels[0].size_bytes: "),
    (float("inf"), "levels[0].size_bytes: "),
    (True, "levels[0].size_bytes: must be a number"),
    (-1, "levels[0].size_bytes: must be greater than 0"),
    ([1], "levels[0].size_bytes: "),
])
def test_bad_number_is_one_line_naming_the_field(value: object, says: str) -> None:
    line = _error({"levels": [{"size_bytes": value}]})
    assert line.startswith("chip.yaml: ") and says in line and "\n" not in line


def test_unknown_and_missing_keys_are_named() -> None:
    assert _error({"levels": [{"size_bytes": 1, "prots": 2}]}) == "chip.yaml: levels[0].prots: unknown key"
    assert _error({"levels": [{}]}) == "chip.yaml: levels[0].size_bytes: missing key"


def test_no_coercion_between_types() -> None:
    assert "levels[0].size_bytes" in _error({"levels": [{"size_bytes": "1.0e9"}]})
    assert "levels[0].share" in _error({"levels": [{"size_bytes": 1, "share": "0.5"}]})
    assert "levels[0].ports" in _error({"levels": [{"size_bytes": 1, "ports": 2.5}]})


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_accepted_real_is_finite_and_in_range(value: float) -> None:
    try:
        chip = validate(Chip, {"levels": [{"size_bytes": value}]}, "chip.yaml")
    except InputError as exc:
        assert str(exc).startswith("chip.yaml: levels[0].size_bytes: ")
    else:
        size = chip.levels[0].size_bytes
        assert math.isfinite(size) and 1e-300 <= size <= 1e15


def test_every_format_has_a_schema_that_renders() -> None:
    for fmt in reference.FORMATS:
        page = reference.render(fmt)
        assert page.startswith(f"# {fmt.title}") and "| key | type |" in page


def test_reference_pages_match_the_schemas() -> None:
    differ = reference.write_pages(ROOT / "docs" / "reference", check=True)
    assert not differ, f"docs/reference out of date: {differ}; run python -m hwsim.schemas.reference docs/reference"
