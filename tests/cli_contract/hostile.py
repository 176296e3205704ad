"""Hypothesis strategies that turn a valid input into a hostile one, and say whether a reader must refuse it.

Each strategy starts from a valid document (a bundled profile, a run's ``run.json``, a packed task's header,
an explore spec, a topology CSV) and changes one thing: a value to a non-finite, huge, tiny, negative or
wrongly typed one, a key deleted or added, a list entry dropped or repeated, a layer renamed or reshaped, the
method swapped, the file truncated or given bytes that are not UTF-8. The result is a :class:`Hostile`: the
bytes, the change in words, and ``refuse``: True where the change makes the input invalid under its
documented format (``docs/reference/``), so that an exit 0 is a silent wrong result. Where a change may
leave the input valid (a truncated YAML file that lost a comment, a size within range), ``refuse`` is False
and the contract asks only for a correct result or one clean error line.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

KeyPath = tuple[Any, ...]  # keys and indices from a document's root to one of its nodes

# Values a number of a file format is never: every field is finite and in a physical range, and a count is
# never 2**70, an underflow, a string, a bool or a container.
NOT_A_NUMBER: tuple[Any, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    1e-320,
    -1,
    -0.5,
    2**70,
    "abc",
    "",
    None,
    True,
    [],
    {},
    "NaN",
)
# Values that may or may not be in a field's range: the contract asks for a correct result or a clean refusal.
MAYBE_A_NUMBER: tuple[Any, ...] = (0, 1, 2.0, 2.5, 7, 1e9, "1.0e9")
NOT_A_STRING: tuple[Any, ...] = (math.nan, 5, None, True, [], {"a": 1})
ANY_STRING: tuple[Any, ...] = ("", "abc", "x" * 300, "../../etc/passwd", "ksm", "edge_npu")
EXTRA_KEY = "zz_extra"


@dataclass(frozen=True)
class Hostile:
    """A hostile input: the file's bytes (or an option's value), what was changed, whether it must be
    refused."""

    data: Any
    what: str
    refuse: bool


# ---- documents as trees --------------------------------------------------------------------------------


def nodes(doc: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    """Every node below the root, with its path, parents before children."""
    found: list[tuple[KeyPath, Any]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        found.append(((*path, key), value))
        found += nodes(value, (*path, key))
    return found


def at(doc: Any, path: KeyPath) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def spelled(path: KeyPath) -> str:
    """``("levels", 1, "size_bytes")`` -> ``levels[1].size_bytes`` (as the readers name a field)."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "<root>"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


@dataclass(frozen=True)
class Change:
    """One change to a document: ``op`` (set, delete, extra, repeat), where, and the new value for ``set``."""

    op: str
    path: KeyPath
    value: Any = None

    def apply(self, doc: Any) -> Any:
        doc = copy.deepcopy(doc)
        parent, key = at(doc, self.path[:-1]), self.path[-1] if self.path else None
        if self.op == "set":
            parent[key] = copy.deepcopy(self.value)
        elif self.op == "delete":
            del parent[key]
        elif self.op == "extra":
            at(doc, self.path)[EXTRA_KEY] = 1
        elif self.op == "repeat":
            parent.insert(key + 1, copy.deepcopy(parent[key]))
        return doc

    def words(self) -> str:
        where = spelled(self.path)
        return {
            "set": f"{where} = {short(self.value)}",
            "delete": f"{where} deleted",
            "extra": f"{where}.{EXTRA_KEY} added",
            "repeat": f"{where} repeated",
        }[self.op]


Judge = Callable[[Change, Any], bool]  # (change, the value it replaced) -> must the result be refused


def number_refused(old: Any, new: Any) -> bool:
    """Whether ``new`` in place of the number ``old`` is never valid: not a finite number in a physical range
    (a bool, a container, None, text that is no number, NaN, infinity, 1e308, an underflow, a negative number,
    2**70), or a fraction where a whole number was. Text that is a number (YAML reads ``1.0e9`` as text) is
    judged as that number."""
    if isinstance(new, str):
        try:
            new = float(new)
        except ValueError:
            return True
    if isinstance(new, bool) or not isinstance(new, (int, float)):
        return True
    if not math.isfinite(new) or abs(new) >= min(1e308, 2**63) or 0 < abs(new) < 1e-300 or new < 0:
        return True
    return isinstance(old, int) and not float(new).is_integer()


@st.composite
def changes(draw: st.DrawFn, doc: Any, judge: Judge) -> tuple[Any, str, bool]:
    """One generic change to ``doc``: (the changed document, the change in words, must it be refused)."""
    every = nodes(doc)
    op = draw(st.sampled_from(("set", "set", "set", "delete", "extra", "repeat")))
    if op == "extra":
        dicts = [((), doc)] * isinstance(doc, dict) + [(p, v) for p, v in every if isinstance(v, dict)]
        path, old = draw(st.sampled_from(dicts))
        change = Change("extra", path)
    elif op == "repeat" and any(isinstance(p[-1], int) for p, _ in every):
        path, old = draw(st.sampled_from([(p, v) for p, v in every if isinstance(p[-1], int)]))
        change = Change("repeat", path)
    elif op == "delete":
        path, old = draw(st.sampled_from(every))
        change = Change("delete", path)
    else:
        path, old = draw(st.sampled_from(every))
        pool = (
            NOT_A_NUMBER + MAYBE_A_NUMBER
            if is_number(old)
            else NOT_A_STRING + ANY_STRING
            if isinstance(old, str)
            else NOT_A_NUMBER + ANY_STRING
        )
        change = Change("set", path, draw(st.sampled_from(pool)))
    return change.apply(doc), change.words(), judge(change, old)


def as_yaml(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")


def as_json(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8")


@st.composite
def yaml_files(draw: st.DrawFn, doc: Any, marker: bytes, judge: Judge, damaged_one_in: int) -> Hostile:
    """A YAML file of ``doc``: damaged bytes (:func:`damaged`) about once in ``damaged_one_in`` draws, else one
    change of its values or keys that ``judge`` says is refused or not (:func:`changes`)."""
    if draw(st.integers(0, damaged_one_in - 1)) == 0:
        return draw(damaged(as_yaml(doc), marker, truncation_refused=False))
    changed, what, refuse = draw(changes(doc, judge))
    return Hostile(as_yaml(changed), what, refuse)


@st.composite
def damaged(draw: st.DrawFn, valid: bytes, marker: bytes, truncation_refused: bool) -> Hostile:
    """The valid file's bytes cut short, or with bytes that are not UTF-8 in the value ``marker``."""
    if draw(st.booleans()):
        keep = draw(st.integers(0, len(valid) - 1))
        return Hostile(valid[:keep], f"truncated to {keep} of {len(valid)} bytes", truncation_refused)
    assert marker in valid, marker
    return Hostile(
        valid.replace(marker, marker[:1] + b"\xff\xfe" + marker[1:], 1),
        f"bytes 0xff 0xfe inside {marker.decode()!r}",
        True,
    )


# ---- profiles (YAML) -----------------------------------------------------------------------------------

# Every key of a bundled profile is required by the profile format except these (defaults documented).
PROFILE_OPTIONAL = {"per_pe", "spatial", "static_power_w", "technology_nm", "area", "description"}
PROFILE_WORDS = {
    "dataflow": ("weight_stationary", "output_stationary", "row_stationary"),
    "operands": ("weights", "inputs", "outputs"),
}


def profile_judge(change: Change, old: Any) -> bool:
    """A profile is a closed record: an unknown key, a missing required key, or a value of the wrong kind or
    outside its physical range is refused."""
    key = next((k for k in reversed(change.path) if isinstance(k, str)), "")
    if change.op == "extra":
        return True
    if change.op == "delete":
        return isinstance(change.path[-1], str) and change.path[-1] not in PROFILE_OPTIONAL
    if change.op == "repeat":
        return change.path[0] == "levels" and len(change.path) == 2  # two levels of one name
    new = change.value
    if is_number(old):
        return number_refused(old, new)
    if isinstance(old, str):
        if not isinstance(new, str):
            return not (is_number(new) and key in ("name", "description"))
        return key in PROFILE_WORDS and new not in PROFILE_WORDS[key] or (key == "name" and new == "")
    return not isinstance(new, type(old)) or (isinstance(new, (list, dict)) and not new)


# ---- run.json ------------------------------------------------------------------------------------------

RUN_REQUIRED = {"format", "method", "layers", "tensors"}
# What must agree with masks.safetensors (and ksm's backbone): any other value there is refused.
RUN_AGREES = ("layers", "tensors", "format", "method", "batchnorm", "files")
METHOD_SWAPS = ("piggyback", "finetune", "packnet", "cpg", "lora", "magic", "")


def run_judge(change: Change, old: Any) -> bool:
    """``run.json``: the top level is open (a newer writer's keys are kept), a layer record is closed, the
    declared fields are checked, and the layers, tensors' roles and method must agree with the tensors."""
    path, new = change.path, change.value
    top = path[0] if path else ""
    if change.op == "extra":
        return top == "layers" and len(path) == 2
    if change.op == "repeat":
        return top == "layers"  # a layer twice, or a pair of three
    if change.op == "delete":
        if len(path) == 1:
            return top in RUN_REQUIRED
        return top in ("layers", "tensors") and path[-1] != "bias"
    if top in RUN_AGREES:
        return new != old
    if path in (("metrics", "top1"), ("metrics", "mask_density")):
        return new is not None and not (is_number(new) and 0 <= new <= 1)
    if path in (("metrics",), ("dataset",)):
        return not isinstance(new, dict)
    if path == ("dataset", "num_classes") or path[:2] == ("dataset", "input_size") and len(path) == 3:
        return number_refused(old, new)
    if path == ("task",):
        return not isinstance(new, str) and new is not None
    return False


# ksm reads more of run.json than hwsim: the mask hyperparameters it folds with, and the backbone it loads.
EXPORT_CHECKED = {
    ("train", "mask_threshold"),
    ("train", "mask_beta"),
    ("train", "mask_temperature"),
    ("train", "mask_init"),
}


def export_judge(change: Change, old: Any) -> bool:
    """``run.json`` as ``ksm-export`` reads it: :func:`run_judge`, the mask hyperparameters (finite numbers)
    and the backbone (its architecture and checksum must name the weights)."""
    path, new = change.path, change.value
    if change.op == "set" and path in EXPORT_CHECKED:
        return number_refused(old, new)
    if change.op == "set" and path in (("backbone", "arch"), ("backbone", "sha256"), ("train", "soft")):
        return new != old
    if change.op == "delete" and path in (
        ("backbone",),
        ("backbone", "arch"),
        ("dataset",),
        ("dataset", "input_size"),
        ("dataset", "num_classes"),
    ):
        return True
    return run_judge(change, old)


@st.composite
def run_changes(draw: st.DrawFn, doc: dict[str, Any], judge: Judge = run_judge) -> tuple[Any, str, bool]:
    """A change to ``run.json``: generic, or a layer renamed or reshaped, or the method swapped."""
    kind = draw(st.sampled_from(("generic", "generic", "rename", "reshape", "method")))
    layers = doc["layers"]
    if kind == "rename":
        i = draw(st.integers(0, len(layers) - 1))
        change = Change("set", ("layers", i, "name"), layers[i]["name"] + "_renamed")
        return change.apply(doc), f"layer {layers[i]['name']!r} renamed", True
    if kind == "reshape":
        i = draw(st.integers(0, len(layers) - 1))
        key = draw(st.sampled_from(("in_channels", "out_channels", "kernel")))
        new = [k + 2 for k in layers[i][key]] if key == "kernel" else layers[i][key] * 2
        change = Change("set", ("layers", i, key), new)
        return change.apply(doc), f"layer {layers[i]['name']!r} {key} {layers[i][key]} -> {new}", True
    if kind == "method":
        new = draw(st.sampled_from([m for m in METHOD_SWAPS if m != doc["method"]]))
        return Change("set", ("method",), new).apply(doc), f"method {doc['method']!r} -> {new!r}", True
    return draw(changes(doc, judge))


# ---- packed task header (.ksmtask) ---------------------------------------------------------------------

TASK_REQUIRED = {"format", "method", "task", "layers", "masked", "batchnorms", "head", "scale_bits"}
# What must agree with the tensors the file holds (their number, shapes and dtypes): any other value is
# refused.
TASK_AGREES = (
    "format",
    "method",
    "layers",
    "masked",
    "batchnorms",
    "head",
    "scale_bits",
    "num_classes",
    "precisions",
    "quant_scales",
)


def task_judge(change: Change, old: Any) -> bool:
    """The header of a packed task must agree with its tensors: any other method, layer, masked layer or
    shape, BatchNorm, head, class count, precision or scale width is refused, and every value out of its
    range. The names (task, arch, weights, dataset, profile, ...) are stored as text, so any value of them is
    text, and keys this judge does not know (a newer header's) are left to the result's check."""
    path, new = change.path, change.value
    top = path[0] if path else ""
    if change.op == "extra":
        return top == "layers" and len(path) == 2  # a layer record is closed
    if change.op == "delete":
        return (top in TASK_REQUIRED and len(path) == 1) or (
            top in TASK_AGREES and len(path) > 1 and path[-1] != "bias"
        )
    if change.op == "repeat":
        return top in TASK_AGREES
    if (len(path) == 3 and top == "batchnorms" and path[2] == 2) or (
        top == "quant_scales" and is_number(old)
    ):
        return number_refused(old, new) or new == 0  # a BatchNorm's eps, a quantisation scale: positive
    if len(path) == 3 and top == "batchnorms" and path[2] == 0:  # a BatchNorm's name is not priced
        return not isinstance(new, str) or not new
    if top in TASK_AGREES:
        return new != old
    if top == "input_size":
        return number_refused(old, new) if is_number(old) else not isinstance(new, list)
    if top == "top1":
        return new is not None and not (is_number(new) and 0 <= new <= 1)
    if top == "soft":
        return not isinstance(new, bool) and new not in (0, 1)
    return False


@st.composite
def task_changes(draw: st.DrawFn, meta: dict[str, Any]) -> tuple[Any, str, bool]:
    """A change to a packed task's header: generic, or a masked layer dropped, renamed, repeated or halved, or
    the method swapped."""
    kind = draw(st.sampled_from(("generic", "generic", "masked", "method")))
    if kind == "masked":
        i = draw(st.integers(0, len(meta["masked"]) - 1))
        name, shape = meta["masked"][i]
        how = draw(st.sampled_from(("drop", "rename", "repeat", "halve")))
        doc = copy.deepcopy(meta)
        if how == "drop":
            del doc["masked"][i]
        elif how == "rename":
            doc["masked"][i][0] = name + "_renamed"
        elif how == "repeat":
            doc["masked"].insert(i, copy.deepcopy(doc["masked"][i]))
        else:
            doc["masked"][i][1] = [max(1, shape[0] // 2), *shape[1:]]
        return doc, f"masked layer {name!r}: {how}", True
    if kind == "method":
        new = draw(st.sampled_from([m for m in METHOD_SWAPS if m != meta["method"]]))
        return Change("set", ("method",), new).apply(meta), f"method {meta['method']!r} -> {new!r}", True
    return draw(changes(meta, task_judge))


# ---- explore spec --------------------------------------------------------------------------------------

SPEC_WORDS = {
    "objectives": ("energy", "latency", "area", "edp", "storage"),
    "modes": ("folded", "on_the_fly"),
    "methods": ("ksm", "piggyback", "finetune", "packnet", "feature"),
}
SPEC_MAY_BE_EMPTY = ("axes", "methods", "modes", "objectives")


def spec_judge(change: Change, old: Any) -> bool:
    """An explore spec is a closed record: unknown keys, missing required keys, out-of-range counts and
    unknown names are refused. A value listed twice is left to the result's check (refused, or costed
    once)."""
    path, new = change.path, change.value
    top = path[0] if path else ""
    if change.op == "extra":
        return True  # at the top, in a workload, or an axis named zz_extra
    if change.op == "repeat":
        return False
    if change.op == "delete":
        return path in (("profiles",), ("workloads",), ("profiles", 0)) or (
            top == "workloads" and len(path) == 3
        )
    if top == "name":
        return isinstance(new, (list, dict))
    if is_number(old):
        return number_refused(old, new) or (is_number(new) and new < 1)
    if isinstance(old, str):
        return new not in SPEC_WORDS[top] if top in SPEC_WORDS else new != old
    if isinstance(new, type(old)):
        return not new and top not in SPEC_MAY_BE_EMPTY
    return not (top == "profiles" and new == "edge_npu")


# ---- topology CSV --------------------------------------------------------------------------------------

TOPOLOGY_HEADER = [
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
]
TOPOLOGY_ROWS = [
    ["c1", "18", "18", "3", "3", "16", "32", "1"],
    ["c2", "16", "16", "3", "3", "32", "16", "2"],
    ["c3", "7", "7", "1", "1", "16", "8", "1"],
]
CELLS_REFUSED = ("nan", "inf", "-1", "0", "1e308", "1e-320", "abc", "", "2.5", "99999999999999999999", "0x10")
CELLS_MAYBE = ("3.0", " 4 ", "1")


def topology_text(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join(", ".join(r) + "," for r in [header, *rows]) + "\n").encode("utf-8")


@st.composite
def topology_changes(draw: st.DrawFn) -> Hostile:
    """A topology CSV with one cell, row or header changed, or its bytes damaged."""
    header, rows = list(TOPOLOGY_HEADER), [list(r) for r in TOPOLOGY_ROWS]
    kind = draw(st.sampled_from(("cell", "cell", "cell", "row", "header", "bytes")))
    if kind == "bytes":
        return draw(damaged(topology_text(header, rows), b"c2", truncation_refused=False))
    if kind == "header":
        i = draw(st.integers(0, len(header) - 1))
        how = draw(st.sampled_from(("drop", "rename")))
        if how == "drop":
            del header[i]
        else:
            header[i] = header[i] + "s"
        return Hostile(topology_text(header, rows), f"header column {TOPOLOGY_HEADER[i]!r}: {how}", True)
    if kind == "row":
        i = draw(st.integers(0, len(rows) - 1))
        how = draw(st.sampled_from(("repeat", "drop", "short", "long")))
        if how == "repeat":
            rows.insert(i, list(rows[i]))
        elif how == "drop":
            del rows[i]
        elif how == "short":
            rows[i] = rows[i][:-2]
        else:
            rows[i] = [*rows[i], "5", "6"]
        return Hostile(topology_text(header, rows), f"row {i + 1}: {how}", how != "drop")
    i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(header) - 1))
    if j == 0:
        value = draw(st.sampled_from(("", "c1" if i else "c2", "x" * 300, "a,b")))
        refuse = value in ("", "x" * 300, "c1" if i else "c2") or value == "a,b"
    else:
        value = draw(st.sampled_from(CELLS_REFUSED + CELLS_MAYBE))
        refuse = value in CELLS_REFUSED
    rows[i][j] = value
    return Hostile(topology_text(header, rows), f"row {i + 1} {header[j]!r} = {value!r}", refuse)


# ---- option values -------------------------------------------------------------------------------------

COUNT_REFUSED = ("0", "-1", "nan", "inf", "1e308", "abc", "", "1.5", "0x10")
COUNT_MAYBE = ("1", "2", "99999999999999999999", "1000000000")
FRACTION_REFUSED = ("nan", "inf", "-inf", "-0.1", "1.5", "abc", "", "1e308")
FRACTION_MAYBE = ("0", "1", "1e-320", "0.25")


@st.composite
def option_values(draw: st.DrawFn, kind: str) -> Hostile:
    """A value for an option of ``kind``: ``count`` (a whole number from 1), ``fraction`` (0..1)."""
    refused, maybe = {"count": (COUNT_REFUSED, COUNT_MAYBE), "fraction": (FRACTION_REFUSED, FRACTION_MAYBE)}[
        kind
    ]
    value = draw(st.sampled_from(refused + maybe))
    return Hostile(value, f"{kind} {value!r}", value in refused)


PROFILE_SETS = (
    "clock_hz",
    "array.rows",
    "array.cols",
    "array.mac_energy_pj",
    "precision_bits.weights",
    "precision_bits.mask_scale",
    "levels.sram_1MB.size_bytes",
    "levels.dram.bandwidth_bytes_per_cycle",
    "levels.ibuf_32KB.word_bits",
    "mask_op_energy_pj.gate",
)
SET_REFUSED = (
    "nan",
    "inf",
    "-inf",
    "-1",
    "1e308",
    "1e-320",
    "abc",
    "",
    "[1, 2]",
    "{a: 1}",
    "2.5e99999",
    "true",
    "*alias",
)
SET_MAYBE = ("0", "1", "2.5", "1.0e9", "64")


@st.composite
def set_overrides(draw: st.DrawFn) -> Hostile:
    """``--set KEY=VALUE``: a profile field to a hostile value, or an unknown key, or no ``=``."""
    kind = draw(st.sampled_from(("value", "value", "value", "key", "form")))
    if kind == "key":
        key = draw(
            st.sampled_from(
                (
                    "array.bogus",
                    "levels.nosuch.size_bytes",
                    "levels",
                    "",
                    "array..rows",
                    "levels.99.size_bytes",
                )
            )
        )
        return Hostile(f"{key}=16", f"--set key {key!r}", True)
    if kind == "form":
        value = draw(st.sampled_from(("clock_hz", "=1", "clock_hz==1", "clock_hz= ")))
        return Hostile(value, f"--set {value!r}", True)
    key, value = draw(st.sampled_from(PROFILE_SETS)), draw(st.sampled_from(SET_REFUSED + SET_MAYBE))
    refuse = value in SET_REFUSED or (
        value == "2.5" and key.split(".")[-1] in ("rows", "cols", "weights", "mask_scale", "word_bits")
    )
    if value == "0" and key.split(".")[-1] in (
        "rows",
        "cols",
        "weights",
        "word_bits",
        "size_bytes",
        "clock_hz",
        "bandwidth_bytes_per_cycle",
    ):
        refuse = True
    return Hostile(f"{key}={value}", f"--set {key}={value}", refuse)
