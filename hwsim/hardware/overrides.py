"""Profile overrides by dotted path (``--set array.rows=16``), applied to the raw YAML mapping.

An override edits the decoded YAML *before* validation, so an overridden profile is checked by exactly
the code that checks a profile file (:func:`hwsim.hardware.profile.profile_from_dict`), and an error names the
``--set`` that caused it.

Paths:

- ``array.rows=16``, ``precision_bits.mask_scale=4``, ``clock_hz=1e9``: a key of a mapping. The key must
  exist in the profile, or be one the validation accepts (it refuses unknown keys, naming them).
- ``levels.sram_1MB.size_bytes=524288``: ``levels`` is a list; its items are addressed by ``name``
  (or by position, ``levels.1.size_bytes``).
- ``levels.sram_1MB=~`` (YAML null) removes a level.
- ``levels.l2={like: sram_1MB, after: sram_1MB, size_bytes: 262144}`` inserts a level: ``like`` copies
  the fields of an existing level, ``after``/``before`` place it (default: innermost, last).
- A mapping assigned to an existing mapping is merged into it (``array={rows: 16, cols: 64}``).

Values are parsed as YAML scalars or flow collections (``16``, ``1e9``, ``true``, ``[weights, inputs]``),
by the same bounded reader as a profile file (:func:`hwsim.fileio.bounded.parse_yaml`: an alias bomb in a
value is refused before it is expanded).

A mapping the schema declares but the profile lacks (:class:`hwsim.schemas.profile_file.ProfileFile`:
``area``, ``area.levels``, ``spatial``) is created on the way: ``--set area.mac_um2=600`` works on a profile
without ``area``. Loading and validating is :func:`hwsim.hardware.profile.load_design`'s job.
"""

from __future__ import annotations

import copy
import typing
from typing import Any

from pydantic import BaseModel

from hwsim.errors import InputError
from hwsim.fileio.bounded import parse_yaml
from hwsim.schemas.profile_file import ProfileFile

_REMOVE = (None, "absent", "remove")


def parse_set(item: str) -> tuple[str, Any]:
    """``"array.rows=16"`` -> ``("array.rows", 16)``; the value is read as YAML, bounded as a profile is."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise InputError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY (e.g. array.rows=16)")
    return key, (parse_yaml(text, f"--set {key}", InputError) if text.strip() else None)


def _mapping_model(annotation: Any) -> Any:
    """The model (or ``dict``) a field's type declares as a mapping, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is dict:
        return dict
    if typing.get_origin(annotation) is list:
        return None  # levels: a list, addressed by name
    return next((m for m in map(_mapping_model, typing.get_args(annotation)) if m is not None), None)


def declared_mapping(parts: list[str]) -> bool:
    """Whether the profile schema declares the dotted path ``parts`` (outside ``levels``) as a mapping, so an
    override may create it where the profile has none (``area``, ``area.levels``, ``spatial``)."""
    model: Any = ProfileFile
    for part in parts:
        if model is dict:
            return False  # a key inside a free mapping (area.levels.NAME) holds a value
        if model is None or part not in model.model_fields:
            return False
        model = _mapping_model(model.model_fields[part].annotation)
    return model is not None


def _level_index(levels: list[Any], part: str, key: str) -> int | None:
    for i, level in enumerate(levels):
        if isinstance(level, dict) and level.get("name") == part:
            return i
    if part.lstrip("-").isdigit() and -len(levels) <= int(part) < len(levels):
        return int(part) % len(levels)
    return None


def _level_names(levels: list[Any]) -> str:
    return ", ".join(str(lv.get("name")) for lv in levels if isinstance(lv, dict))


def _merge(target: dict[str, Any], value: dict[str, Any]) -> None:
    for k, v in value.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


def _set_level(levels: list[Any], name: str, value: Any, key: str, strict: bool = True) -> None:
    """Remove (null), merge into (mapping, existing) or insert (mapping, new name) a level."""
    i = _level_index(levels, name, key)
    if value in _REMOVE:
        if i is None and not strict:
            return
        if i is None:
            raise InputError(f"--set {key}: no level {name!r} to remove (levels: {_level_names(levels)})")
        if i == 0:
            raise InputError(f"--set {key}: the outermost level (DRAM) cannot be removed")
        del levels[i]
        return
    if not isinstance(value, dict):
        raise InputError(f"--set {key}: a level must be set to a mapping of its fields or to ~ (remove), "
                         f"got {value!r}")
    value = dict(value)
    like, after, before = value.pop("like", None), value.pop("after", None), value.pop("before", None)
    if i is not None:
        if like is not None or after is not None or before is not None:
            raise InputError(f"--set {key}: like/after/before only apply to a new level")
        _merge(levels[i], value)
        return
    new: dict[str, Any] = {}
    if like is not None:
        j = _level_index(levels, str(like), key)
        if j is None:
            raise InputError(f"--set {key}.like: no level {like!r} (levels: {_level_names(levels)})")
        new = copy.deepcopy(levels[j])
    new.update(copy.deepcopy(value))
    new["name"] = name
    if after is not None and before is not None:
        raise InputError(f"--set {key}: give after or before, not both")
    at = len(levels)
    anchor = after if after is not None else before
    if anchor is not None:
        j = _level_index(levels, str(anchor), key)
        if j is None:
            raise InputError(f"--set {key}.{'after' if after is not None else 'before'}: no level {anchor!r} "
                             f"(levels: {_level_names(levels)})")
        at = j + 1 if after is not None else j
        if at == 0:
            raise InputError(f"--set {key}.before: nothing may sit outside the outermost level (DRAM)")
    levels.insert(at, new)


def apply_override(raw: dict[str, Any], key: str, value: Any, strict: bool = True) -> None:
    """Apply one dotted-path override to ``raw`` in place (errors name ``--set KEY``).

    ``strict=False`` (sweep axes) lets "remove level X" be a no-op where X is absent."""
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[:depth + 1])
        if isinstance(node, list) and parts[:depth] != ["levels"]:  # operands, spatial.rows: values
            raise InputError(f"--set {key}: {'.'.join(parts[:depth])} is a list; set it whole "
                             f"({'.'.join(parts[:depth])}=[...])")
        if isinstance(node, list):  # the levels, addressed by name or position
            if last:
                _set_level(node, part, value, key, strict)
                return
            i = _level_index(node, part, key)
            if i is None:
                raise InputError(f"--set {key}: no level {part!r} at {here} (levels: {_level_names(node)})")
            node = node[i]
            continue
        if not isinstance(node, dict):
            raise InputError(f"--set {key}: {'.'.join(parts[:depth])} is a value, not a mapping")
        if last:
            if depth == 0 and part == "levels" and not isinstance(value, list):
                raise InputError(f"--set {key}: levels must be a list (or address one level: levels.NAME)")
            if isinstance(value, dict) and isinstance(node.get(part), dict):
                _merge(node[part], value)
            else:
                node[part] = copy.deepcopy(value)
            return
        if node.get(part) is None and declared_mapping(parts[:depth + 1]):
            node[part] = {}  # an optional section the profile lacks (or holds as null)
        if part not in node:
            known = ", ".join(map(str, node))
            if not known:  # an optional section the profile lacks: its keys cannot be addressed one by one
                section = ".".join(parts[:depth])
                raise InputError(f"--set {key}: the profile has no {section}; set it whole "
                                 f"(--set '{section}={{...}}')")
            raise InputError(f"--set {key}: unknown key {here} (known here: {known})")
        node = node[part]


def apply_overrides(raw: dict[str, Any], sets: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``raw`` with every ``KEY=VALUE`` of ``sets`` applied in order."""
    out = copy.deepcopy(raw)
    for item in sets:
        key, value = parse_set(item)
        apply_override(out, key, value)
    return out


def apply_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with ``{dotted key: decoded value}`` applied (the sweep's axes)."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        apply_override(out, key, value, strict=False)
    return out
