"""What every schema shares: strict records, finite numbers in physical ranges, one-line errors.

Every file format either package reads (``run.json``, the packed task header, profiles, sweep specs,
topology rows, an ONNX model's input shapes) is declared once, as a pydantic v2 model in
:mod:`hwsim.schemas`, and read through :func:`validate`: types, finite numbers, physical ranges and the
cross-field rules are checked before any work starts, and the first problem becomes one
:class:`~hwsim.errors.InputError` line naming the file and the field (``edge_npu.yaml: levels[1].size_bytes:
...``). The same models generate the reference pages in ``docs/reference/`` (:mod:`hwsim.schemas.reference`),
so the documentation cannot drift from what is checked.

Why pydantic rather than JSON Schema: one declaration gives the check, the typed value and the
documentation, and cross-field rules (a mask's length against its layer's shape) are plain Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from hwsim.errors import InputError
from hwsim.fileio.bounded import short, text_number


class Record(BaseModel):
    """A record of a file: unknown keys refused, no coercion between types (``"8"`` is not 8, ``true`` is
    not 1), no NaN or infinity anywhere, immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False,
                              hide_input_in_errors=True)


class OpenRecord(Record):
    """A record whose unlisted keys are kept as they are (a ``run.json``'s free-form notes), but whose listed
    keys are checked like :class:`Record`'s."""

    model_config = ConfigDict(extra="allow")


def _number(value: Any) -> Any:
    """A bool is never a number, and a positive or negative number below 1e-300 is an underflow, never a
    physical quantity (a divisor of 1e-320 turns a table into ``inf``)."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float) and value != 0 and abs(value) < 1e-300:
        raise ValueError("is below 1e-300 (an underflow, not a physical quantity)")
    return value


def _whole(value: Any) -> Any:
    """An integer written as a float (``2.0``) is the integer; ``2.5`` stays refused."""
    value = _number(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 63:
        return int(value)
    return value


def Real(ge: float | None = None, gt: float | None = None, le: float | None = None,  # noqa: N802 - a type
         lt: float | None = None, description: str = "") -> Any:
    """A finite real number in a stated range (the range is the field's physical one, so a typo of 1e308 is
    refused instead of turning a table into ``inf``)."""
    return Annotated[float, BeforeValidator(_number),
                     Field(ge=ge, gt=gt, le=le, lt=lt, allow_inf_nan=False,
                           description=description or None)]


def _text_whole(value: Any) -> Any:
    """An integer written as text (a CSV cell): the integer it means."""
    return _whole(text_number(value))


def Whole(ge: int | None = None, le: int | None = None, description: str = "",  # noqa: N802
          text: bool = False) -> Any:
    """An integer in a stated range; a float holding an integer (``8.0``, YAML's ``1e3``) is that integer.
    ``text``: a field of a CSV, where every cell is text."""
    return Annotated[int, BeforeValidator(_text_whole if text else _whole),
                     Field(ge=ge, le=le, description=description or None)]


Fraction = Real(ge=0, le=1, description="a fraction in [0, 1]")


def location(loc: tuple[int | str, ...]) -> str:
    """``("levels", 1, "size_bytes")`` -> ``levels[1].size_bytes``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("function-after", "function-before", "function-wrap", "function-plain"):
            out += f".{part}" if out else str(part)
    return out


_BOUNDS = {"greater_than": "must be greater than {gt}", "greater_than_equal": "must be at least {ge}",
           "less_than": "must be less than {lt}", "less_than_equal": "must be at most {le}",
           "extra_forbidden": "unknown key", "missing": "missing key"}


def _bound(value: Any) -> str:
    """A range's end as a reader writes it: ``1048576``, ``1e+15``, ``0.5``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e7:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def first_problem(exc: ValidationError) -> str:
    """The first error of a pydantic ``ValidationError`` as ``field: message, got value``."""
    error = exc.errors(include_url=False)[0]
    where = location(tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p)))
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _BOUNDS:
        try:
            message = _BOUNDS[kind].format(**{k: _bound(v) for k, v in (error.get("ctx") or {}).items()})
        except (KeyError, ValueError, TypeError):
            pass
    # a cross-field rule (a model validator) gets the whole record as its input: its message says what is wrong
    whole = isinstance(error.get("input"), (dict, BaseModel))
    got = "" if kind in ("missing", "extra_forbidden") or "input" not in error or whole \
        else f", got {short(error['input'])}"
    return f"{where}: {message}{got}" if where else f"{message}{got}"


def as_tuple(value: Any) -> Any:
    """JSON and YAML have no tuples: a list is the tuple it means (strict mode refuses a list for a tuple)."""
    return tuple(value) if isinstance(value, list) else value


def first_repeat(items: Sequence[Any]) -> int | None:
    """The index of the first item equal to an earlier one, or None: the one "listed once" rule of every
    schema (names, operands, dimensions, axis values; unhashable items, a mapping, compared by ``==``)."""
    seen: set[Any] = set()
    unhashable: list[Any] = []
    for i, item in enumerate(items):
        try:
            if item in seen:
                return i
            seen.add(item)
        except TypeError:
            if item in unhashable:
                return i
            unhashable.append(item)
    return None


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, where: str, error: type[Exception] = InputError,
             context: dict[str, Any] | None = None) -> M:
    """``data`` (decoded JSON/YAML) checked against ``model``; the first problem is one line of ``error``
    naming ``where`` (the file) and the field. ``context`` reaches the model's cross-field validators
    (``info.context``), e.g. the tensors a header describes."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:  # a key quoted from the file may hold a line break: the line stays one line
        problem = first_problem(exc).replace("\r", "\\r").replace("\n", "\\n")
        raise error(f"{where}: {problem}") from None
    except RecursionError:
        raise error(f"{where}: nested too deeply") from None
