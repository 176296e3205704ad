"""Bounded readers for the files hwsim is given: JSON, YAML profiles, topology CSVs (issue 16).

A small hostile file must not cost gigabytes or end in a traceback. Every reader checks the file's
size before parsing; JSON and YAML refuse nesting deeper than :data:`MAX_DEPTH` and integers longer
than :data:`MAX_INT_DIGITS` digits; YAML refuses more than :data:`MAX_ALIASES` aliases (an alias bomb
is refused before it is expanded anywhere), more than :data:`MAX_NODES` nodes, and duplicate keys
(no silent last-wins); the topology CSV is read row by row and refused beyond :data:`MAX_ROWS` rows,
so memory stays flat whatever the file holds. Errors are one line; echoed values are cut to
:data:`ECHO` characters.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MAX_JSON_BYTES = 64 << 20  # run.json of the largest backbone is well under 1 MiB
MAX_YAML_BYTES = 1 << 20
MAX_CSV_BYTES = 16 << 20
MAX_ROWS = 100_000  # a topology has one row per layer; real networks have < 1000
MAX_SIZE = 1 << 20  # a topology size (pixels, channels, filters, stride)
MAX_DEPTH = 64
MAX_INT_DIGITS = 30
MAX_ALIASES = 256
MAX_NODES = 100_000  # after alias expansion
ECHO = 60


def short(value: Any) -> str:
    """``repr(value)`` cut to :data:`ECHO` characters."""
    text = repr(value)
    return text if len(text) <= ECHO else text[:ECHO - 1] + "…"


def text_number(value: Any) -> Any:
    """A number written as text (a CSV cell, ``"1e3"``) as the number it means; anything else is returned as it
    is, for the caller's own check to refuse. YAML needs no such help: :class:`BoundedLoader` resolves numbers
    as YAML 1.2 does."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def is_fraction(value: Any) -> bool:
    """A recorded accuracy or density: a real number in [0, 1] (not a bool, NaN, Infinity or string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file a reader may open, in a few words (None when it is one): missing, a
    folder, a link that loops or leads nowhere, or a device, pipe or socket (``/dev/zero`` is no file to read)."""
    path = Path(path)
    try:
        if path.is_file():
            return None
        if path.is_dir():
            return "is a folder, not a file"
        if path.is_symlink():
            return "a symbolic link that loops or leads nowhere"
        if path.exists():
            return "not a regular file (a device, pipe or socket)"
    except OSError as exc:  # a loop of links, a name too long
        return f"cannot be read ({exc.strerror or exc.__class__.__name__})"
    return "missing file"


def check_file(path: Path, error: type[Exception]) -> None:
    """Refuse a path that is not a regular file (:func:`not_a_file`), saying why in one line."""
    why = not_a_file(path)
    if why is not None:
        raise error(f"{path}: {why}")


def check_size(path: Path, limit: int, error: type[Exception]) -> None:
    """Refuse a file larger than ``limit`` bytes before reading it."""
    size = path.stat().st_size
    if size > limit:
        raise error(f"{path}: {size} bytes, more than the {limit} this reader accepts")


def read_text(path: Path, limit: int, error: type[Exception]) -> str:
    """A text file's UTF-8 content, refusing a missing file, a folder, a file over ``limit`` bytes or bytes
    that are not UTF-8, in one line naming ``path``."""
    check_file(path, error)
    check_size(path, limit, error)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:  # a file the kernel will not read (/proc/self/pagemap): name it
        raise error(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def _bounded_int(text: str) -> int:
    digits = text.lstrip("+-").replace("_", "")
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _depth(value: Any, error: type[Exception], where: str) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object without repeated keys: ``{"method": "ksm", "method": "finetune"}`` is refused
    rather than resolved last-wins (two readers could take different ones)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {short(key)}")
        out[key] = value
    return out


def parse_json(text: str, where: str, error: type[Exception]) -> Any:
    """``json.loads`` with bounded integers and depth; any failure is ``error`` naming ``where``."""
    try:
        data = json.loads(text, parse_int=_bounded_int, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise error(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:
        raise error(f"{where}: not valid JSON ({str(exc)[:ECHO]})") from None
    _depth(data, error, where)
    return data


def read_json(path: Path, error: type[Exception], limit: int = MAX_JSON_BYTES) -> Any:
    """Read a bounded JSON file (see :func:`parse_json`)."""
    check_size(path, limit, error)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid JSON (not UTF-8: {exc.reason})") from None
    return parse_json(text, str(path), error)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with caps on aliases, nodes, depth and integer size, and no duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = self._nodes = self._depth = 0
        self._sizes: dict[int, int] = {}

    def _expanded(self, node: Any) -> int:
        """How many nodes ``node`` stands for once every alias inside it is expanded (memoised)."""
        size = self._sizes.get(id(node))
        if size is None:
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
            size = 1 + sum(self._expanded(child) for child in children)
            self._sizes[id(node)] = size
        return size

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
            anchor = self.peek_event().anchor
            if anchor in self.anchors:
                self._nodes += self._expanded(self.anchors[anchor])
                if self._nodes > MAX_NODES:
                    raise yaml.YAMLError(f"aliases expand to more than {MAX_NODES} nodes (an alias bomb?)")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES} nodes")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class refuses it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)} (each key may appear once)", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        digits = str(node.value).lstrip("+-").replace("_", "")
        if len(digits) > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})", node.start_mark)
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
# YAML 1.2's floats: PyYAML resolves YAML 1.1, where ``1.0e9`` and ``1e9`` (no exponent sign) are strings. With
# this resolver an unquoted number is a number and a quoted one ('9.33e8') stays a string, which a schema
# refuses rather than guesses (YAML 1.2.2, 10.3.2 "Tag Resolution", the core schema's float pattern).
BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))


def parse_yaml(text: str, where: str, error: type[Exception]) -> Any:
    """Parse YAML with :class:`BoundedLoader`; any failure is one line of ``error`` naming ``where``."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{where}: {len(text)} characters, more than the {MAX_YAML_BYTES} a profile may have")
    try:
        return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader subclass
    except RecursionError:
        raise error(f"{where}: malformed YAML: nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: malformed YAML{at}: {' '.join(str(problem).split())[:200]}") from None


def csv_rows(path: Path, error: type[Exception], max_rows: int = MAX_ROWS,
             limit: int = MAX_CSV_BYTES) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of each non-empty row, streamed; refuses a file over ``limit``
    bytes or with more than ``max_rows`` rows, a line that is not UTF-8, or a malformed CSV line."""
    check_size(path, limit, error)
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
        reader = csv.reader(handle)
        count = 0
        try:
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                count += 1
                if count > max_rows:
                    raise error(f"{path}: more than {max_rows} rows")
                yield reader.line_num, [cell.strip() for cell in row]
        except UnicodeDecodeError as exc:
            raise error(f"{path}: not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise error(f"{path}: line {reader.line_num}: malformed CSV ({str(exc)[:ECHO]})") from None
