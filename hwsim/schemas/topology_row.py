"""One row of a SCALE-Sim topology CSV: a convolution layer by its sizes.

The reader (:func:`hwsim.workload.topology.load_topology`) maps each row's cells to the header's column
names and validates the row here; the cells arrive as text, and :func:`~hwsim.schemas.validation.Whole` takes
``"8"`` (or ``"8.0"``) as the integer 8 and refuses ``"8.5"``, ``"nan"`` or ``"x"``. An error names the
file, the line and the column: ``layers.csv: line 3: Filter Height: 5 is larger than IFMAP Height 3, got 5``.

The cross-field rules are checked by validators of the later column (not a model validator), so that the
error names that column rather than the whole row.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from hwsim.fileio.bounded import MAX_INT_DIGITS, MAX_SIZE
from hwsim.schemas.validation import Record, Whole

# SCALE-Sim's own names of the columns, in the order the file must give them; ``Groups`` is this project's
# optional ninth column (grouped and depthwise convolutions).
COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
           "Num Filter", "Strides")
GROUPS = "Groups"
MAX_NAME = 256  # names key the layers in results and exported mappings; no network needs longer ones


def _filled(value: Any) -> Any:
    """An empty cell is refused as empty, not as "not an integer"; a cell of digits is that integer, its
    length bounded (a 400-digit size is refused as such, not read as a float's infinity)."""
    if value == "":
        raise ValueError("empty")
    if isinstance(value, str) and value.lstrip("+-").isdigit():
        digits = len(value.lstrip("+-"))
        if digits > MAX_INT_DIGITS:
            raise ValueError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
        return int(value)
    return value


def _optional(value: Any) -> Any:
    """An empty ``Groups`` cell means the default (see the field)."""
    return None if value == "" else value


def Size(description: str) -> Any:  # noqa: N802 - a type
    """A size in ``1..MAX_SIZE`` (pixels, channels, filters, a stride): 2**20 bounds every size, no CNN has
    a million channels, and a typo of 1e12 must be refused before the cost model multiplies it."""
    return Annotated[Whole(text=True, ge=1, le=MAX_SIZE, description=description), BeforeValidator(_filled)]


class TopologyRow(Record):
    """One row of a SCALE-Sim topology CSV (``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter
    Width, Channels, Num Filter, Strides,`` and an optional ``Groups``): one convolution. As in SCALE-Sim, the
    IFMAP sizes already include any padding, and the output is ``(IFMAP - Filter) // Strides + 1`` on each
    axis. The header row names the columns (case-insensitive, in this order); a trailing comma is allowed."""

    RULES: ClassVar[tuple[str, ...]] = (
        "`Filter Height` is at most `IFMAP Height`, and `Filter Width` at most `IFMAP Width`.",
        "`Groups` divides `Channels` and `Num Filter`.",
        "A `Layer name` is used once in the file (names key the layers in results and exported mappings).",
    )

    name: Annotated[str, BeforeValidator(_filled)] = Field(
        alias="Layer name", min_length=1, max_length=MAX_NAME,
        description="the layer's name, unique in the file; without a `Groups` column, a name containing `DP` "
                    "is depthwise (one group per channel), as in SCALE-Sim")
    ifmap_height: Size("input feature map height in pixels, padding included") = Field(alias="IFMAP Height")
    ifmap_width: Size("input feature map width in pixels, padding included") = Field(alias="IFMAP Width")
    filter_height: Size("kernel height in pixels") = Field(alias="Filter Height")
    filter_width: Size("kernel width in pixels") = Field(alias="Filter Width")
    channels: Size("input channels") = Field(alias="Channels")
    num_filter: Size("output channels (filters)") = Field(alias="Num Filter")
    strides: Size("stride in pixels, both axes") = Field(alias="Strides")
    groups: Annotated[Whole(text=True) | None, BeforeValidator(_filled), BeforeValidator(_optional)] = Field(
        default=None, alias=GROUPS, ge=1, le=MAX_SIZE,
        description="channel groups (1: dense; Channels: depthwise); empty or absent: 1, or depthwise for a "
                    "`DP` name")

    @field_validator("name")
    @classmethod
    def _unique(cls, name: str, info: ValidationInfo) -> str:
        seen = (info.context or {}).get("names", ())
        if name in seen:
            raise ValueError("is used twice (names key the layers in the results and in exported mappings)")
        return name

    @field_validator("filter_height", "filter_width")
    @classmethod
    def _fits(cls, size: int, info: ValidationInfo) -> int:
        axis = "Height" if info.field_name == "filter_height" else "Width"
        ifmap = info.data.get(f"ifmap_{axis.lower()}")
        if ifmap is not None and size > ifmap:
            raise ValueError(f"{size} is larger than IFMAP {axis} {ifmap}")
        return size

    @field_validator("groups")
    @classmethod
    def _divides(cls, groups: int | None, info: ValidationInfo) -> int | None:
        channels, filters = info.data.get("channels"), info.data.get("num_filter")
        if groups is not None and channels is not None and filters is not None and (channels % groups
                                                                                   or filters % groups):
            raise ValueError(f"{groups} does not divide Channels {channels} and Num Filter {filters}")
        return groups

    def layer_groups(self) -> int:
        """The groups the layer has: the column's, else SCALE-Sim's rule (a ``DP`` name whose filters are a
        multiple of its channels is depthwise), else 1."""
        if self.groups is not None:
            return self.groups
        return self.channels if "DP" in self.name and self.num_filter % self.channels == 0 else 1
