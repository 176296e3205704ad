"""Accelerator profiles: frozen dataclasses loaded from YAML, validated, units in the field names.

A profile file looks like this (every number should carry its source in a comment)::

    name: edge_npu
    description: one line
    clock_hz: 9.33e8
    dataflow: weight_stationary        # weight_stationary | output_stationary | row_stationary
    array: {rows: 32, cols: 32, mac_energy_pj: 0.23}
    precision_bits: {weights: 8, inputs: 8, psums: 32, outputs: 8, mask_scale: 8, batchnorm: 16}
    mask_op_energy_pj: {gate: 0.03, multiply: 0.2}
    levels:                            # outermost (DRAM) first
      - name: dram
        size_bytes: 4.0e9
        word_bits: 64                  # one access moves this many bits
        read_energy_pj: 512            # per access (word)
        write_energy_pj: 512
        bandwidth_bytes_per_cycle: 18
        operands: [weights, inputs, outputs]
        per_pe: false                  # optional; true = one instance inside every PE

Two optional keys beside these, ``technology_nm`` and ``area``, are the area model's
(:mod:`hwsim.hardware.area`). Unknown keys, missing keys and non-positive sizes are refused with one line
naming the file and key.

There is one loader: :func:`read_raw_profile` reads the YAML, :mod:`hwsim.hardware.overrides` applies
``--set``, :func:`design_from_raw` validates (area keys included), and :func:`load_design` chains the three.
``ksm-sim`` (its tables, ``--list-profiles`` and ``--report``), :func:`load_profile` and ``ksm-explore`` (which
applies its axis values between reading and validating) all go through it, so a key one accepts, all accept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from hwsim.errors import InputError
from hwsim.fileio.bounded import MAX_YAML_BYTES, check_file, check_size, parse_yaml, yaml_number
from hwsim.hardware.area import EXTRA_KEYS, check_extras
from hwsim.hardware.overrides import apply_overrides, parse_set

OPERANDS = ("weights", "inputs", "outputs")
DATAFLOWS = ("weight_stationary", "output_stationary", "row_stationary")


@dataclass(frozen=True, slots=True)
class MemoryLevel:
    """One memory level. Energies are per access of ``word_bits`` bits; bandwidth is per instance."""

    name: str
    size_bytes: float
    word_bits: int
    read_energy_pj: float
    write_energy_pj: float
    bandwidth_bytes_per_cycle: float
    operands: tuple[str, ...]
    per_pe: bool = False


@dataclass(frozen=True, slots=True)
class Array:
    """The MAC array: ``rows`` x ``cols`` processing elements, one MAC per PE per cycle."""

    rows: int
    cols: int
    mac_energy_pj: float

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True, slots=True)
class Precision:
    """Operand widths in bits. ``psums`` is the accumulator width; ``outputs`` the final activation width."""

    weights: int
    inputs: int
    psums: int
    outputs: int
    mask_scale: int
    batchnorm: int


@dataclass(frozen=True, slots=True)
class MaskOpEnergy:
    """Energy of applying one mask element to one weight: a gate (binary) or a multiply (soft scale)."""

    gate: float
    multiply: float


SPATIAL_DIMS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX")


@dataclass(frozen=True, slots=True)
class SpatialAxes:
    """Loop dimensions the array's rows and columns may unroll (the mapping search picks one per axis)."""

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    search: bool = True  # False: each axis unrolls the first listed dimension larger than 1


@dataclass(frozen=True, slots=True)
class Profile:
    """An accelerator: clock, MAC array, dataflow, precisions and memory levels (outermost first)."""

    name: str
    description: str
    clock_hz: float
    dataflow: str
    array: Array
    precision_bits: Precision
    mask_op_energy_pj: MaskOpEnergy
    levels: tuple[MemoryLevel, ...]
    spatial: SpatialAxes | None = None  # None: the dataflow's default unrollings
    static_power_w: float = 0.0  # leakage and clock tree, charged x latency

    @property
    def dram(self) -> MemoryLevel:
        """The outermost level (off-chip memory, or the system memory of a microcontroller NPU)."""
        return self.levels[0]

    def chain(self, operand: str) -> tuple[MemoryLevel, ...]:
        """The levels that hold ``operand``, outermost first."""
        return tuple(level for level in self.levels if operand in level.operands)

    @property
    def peak_macs_per_s(self) -> float:
        return self.array.pes * self.clock_hz

    @property
    def on_chip_bytes(self) -> float:
        return sum(level.size_bytes * (self.array.pes if level.per_pe else 1) for level in self.levels[1:])


# --------------------------------------------------------------------------------------------
# Loading and validation


def _take(raw: Any, cls: type, where: str, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check that ``raw`` is a mapping whose keys are exactly the fields of ``cls`` (defaults optional),
    plus the optional keys ``also``."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a mapping, got {type(raw).__name__}")
    names = [f.name for f in fields(cls)] + list(also)
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(names)})")
    for f in fields(cls):
        if f.name not in raw and f.default is MISSING:
            raise InputError(f"{where}.{f.name}: missing key")
    return dict(raw)


def _positive(value: Any, where: str, integer: bool = False) -> Any:
    value = yaml_number(value)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise InputError(f"{where}: must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


MAX_BITS = 64  # float64 is the widest datapath word any profile could mean; beyond it is a typo


def _bits(value: Any, where: str) -> int:
    bits = _positive(value, where, True)
    if bits > MAX_BITS:
        raise InputError(f"{where}: {bits} bits, more than the {MAX_BITS} a datapath word can have")
    return bits


def _non_negative(value: Any, where: str) -> float:
    value = yaml_number(value)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise InputError(f"{where}: must be a non-negative number, got {value!r}")
    return float(value)


def profile_from_dict(raw: Any, where: str) -> Profile:
    """Validate a decoded YAML mapping and build the :class:`Profile`; ``where`` names the file.

    The area model's keys (``technology_nm``, ``area``) are validated here too, though the profile does not
    hold them (:class:`Design` does)."""
    top = _take(raw, Profile, where, also=EXTRA_KEYS)
    name = top["name"]
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: must be a non-empty string")
    if not isinstance(top["description"], str):
        raise InputError(f"{where}.description: must be a string")
    if top["dataflow"] not in DATAFLOWS:
        raise InputError(f"{where}.dataflow: must be one of {', '.join(DATAFLOWS)}, got {top['dataflow']!r}")
    a = _take(top["array"], Array, f"{where}.array")
    array = Array(rows=_positive(a["rows"], f"{where}.array.rows", True),
                  cols=_positive(a["cols"], f"{where}.array.cols", True),
                  mac_energy_pj=_non_negative(a["mac_energy_pj"], f"{where}.array.mac_energy_pj"))
    p = _take(top["precision_bits"], Precision, f"{where}.precision_bits")
    precision = Precision(**{k: _bits(v, f"{where}.precision_bits.{k}") for k, v in p.items()})
    m = _take(top["mask_op_energy_pj"], MaskOpEnergy, f"{where}.mask_op_energy_pj")
    mask_ops = MaskOpEnergy(**{k: _non_negative(v, f"{where}.mask_op_energy_pj.{k}") for k, v in m.items()})
    raw_levels = top["levels"]
    if not isinstance(raw_levels, list) or not raw_levels:
        raise InputError(f"{where}.levels: must be a non-empty list, outermost (DRAM) first")
    levels = []
    for i, item in enumerate(raw_levels):
        here = f"{where}.levels[{i}]"
        lv = _take(item, MemoryLevel, here)
        operands = lv["operands"]
        if not isinstance(operands, list) or not operands or any(o not in OPERANDS for o in operands):
            raise InputError(f"{here}.operands: must be a non-empty list drawn from {', '.join(OPERANDS)}, "
                             f"got {operands!r}")
        per_pe = lv.get("per_pe", False)
        if not isinstance(per_pe, bool):
            raise InputError(f"{here}.per_pe: must be true or false, got {per_pe!r}")
        if not isinstance(lv["name"], str) or not lv["name"]:
            raise InputError(f"{here}.name: must be a non-empty string")
        levels.append(MemoryLevel(
            name=lv["name"],
            size_bytes=_positive(lv["size_bytes"], f"{here}.size_bytes"),
            word_bits=_positive(lv["word_bits"], f"{here}.word_bits", True),
            read_energy_pj=_non_negative(lv["read_energy_pj"], f"{here}.read_energy_pj"),
            write_energy_pj=_non_negative(lv["write_energy_pj"], f"{here}.write_energy_pj"),
            bandwidth_bytes_per_cycle=_positive(lv["bandwidth_bytes_per_cycle"],
                                                f"{here}.bandwidth_bytes_per_cycle"),
            operands=tuple(operands), per_pe=per_pe))
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        raise InputError(f"{where}.levels: level names must be unique, got {names}")
    if levels[0].per_pe or set(levels[0].operands) != set(OPERANDS):
        raise InputError(f"{where}.levels[0]: the outermost level (DRAM) must hold weights, inputs and "
                         f"outputs and not be per_pe")
    for operand in OPERANDS:
        chain = [lv for lv in levels if operand in lv.operands]
        flags = [lv.per_pe for lv in chain]
        if flags.count(True) > 1 or (True in flags and flags[-1] is not True):
            raise InputError(f"{where}.levels: {operand}: at most one per_pe level, and it must be innermost")
    spatial = None
    if top.get("spatial") is not None:
        s = _take(top["spatial"], SpatialAxes, f"{where}.spatial")
        axes = {}
        for axis in ("rows", "cols"):
            dims = s[axis]
            if not isinstance(dims, list) or not dims or any(d not in SPATIAL_DIMS for d in dims):
                raise InputError(f"{where}.spatial.{axis}: must be a non-empty list drawn from "
                                 f"{', '.join(SPATIAL_DIMS)}, got {dims!r}")
            axes[axis] = tuple(dims)
        search = s.get("search", True)
        if not isinstance(search, bool):
            raise InputError(f"{where}.spatial.search: must be true or false, got {search!r}")
        spatial = SpatialAxes(**axes, search=search)
    static = _non_negative(top.get("static_power_w", 0.0), f"{where}.static_power_w")
    profile = Profile(name=name, description=top["description"],
                      clock_hz=_positive(top["clock_hz"], f"{where}.clock_hz"), dataflow=top["dataflow"],
                      array=array, precision_bits=precision, mask_op_energy_pj=mask_ops, levels=tuple(levels),
                      spatial=spatial, static_power_w=static)
    check_extras(extras_of(top), profile, where)
    return profile


def extras_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The area model's keys of a profile mapping (:data:`hwsim.hardware.area.EXTRA_KEYS`)."""
    return {k: raw[k] for k in EXTRA_KEYS if k in raw}


PROFILES = resources.files("hwsim") / "profiles"  # the bundled profiles, one <name>.yaml each


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped in ``hwsim/profiles``."""
    return sorted(p.name[:-5] for p in PROFILES.iterdir() if p.name.endswith(".yaml"))


def load_yaml(text: str, where: str) -> Any:
    """Decode YAML ``text``, bounded (aliases, nodes, depth, integers, duplicate keys: ``hwsim.fileio.bounded``);
    any problem becomes a one-line :class:`InputError` naming ``where``."""
    return parse_yaml(text, where, InputError)


def read_raw_profile(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The decoded YAML mapping of a bundled profile (by name) or a profile file (by path), and the name
    errors use; not yet validated (overrides apply to it first)."""
    text_name = str(name_or_path)
    if text_name.endswith((".yaml", ".yml")) or Path(text_name).is_file():
        path = Path(text_name)
        check_file(path, InputError)
        check_size(path, MAX_YAML_BYTES, InputError)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
        where = str(path)
    else:
        resource = PROFILES / f"{text_name}.yaml"
        if not resource.is_file():
            raise InputError(f"--profile: unknown profile {text_name!r} "
                             f"(bundled: {', '.join(bundled_profiles())}; or give a .yaml path)")
        text, where = resource.read_text(encoding="utf-8"), f"{text_name}.yaml"
    raw = load_yaml(text, where)
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a mapping, got {type(raw).__name__}")
    return raw, where


@dataclass(frozen=True)
class Design:
    """A validated profile plus the raw mapping it came from and the area keys beside it."""

    profile: Profile
    raw: dict[str, Any] = field(compare=False)
    extras: dict[str, Any] = field(compare=False)
    where: str = ""


def design_from_raw(raw: dict[str, Any], where: str, blame: str | None = None) -> Design:
    """Validate ``raw`` as a profile file is validated, area keys included. ``blame`` prefixes errors
    (``--set ...``, a sweep's axis values)."""
    try:
        profile = profile_from_dict(raw, where)
    except InputError as exc:
        raise InputError(f"{blame}: {exc}" if blame else str(exc)) from None
    return Design(profile=profile, raw=raw, extras=extras_of(raw), where=where)


def load_design(name_or_path: str | Path, sets: Sequence[str] = ()) -> Design:
    """The one profile loader: read a bundled profile or a YAML file, apply ``--set`` overrides
    (:mod:`hwsim.hardware.overrides`), validate."""
    raw, where = read_raw_profile(name_or_path)
    if not sets:
        return design_from_raw(raw, where)
    blame = f"--set {', '.join(parse_set(s)[0] for s in sets)}"
    return design_from_raw(apply_overrides(raw, sets), where, blame)


def load_designs(names: Sequence[str | Path], sets: Sequence[str] = ()) -> list[Design]:
    """:func:`load_design` of every profile named (``all``: every bundled one), each once, in order."""
    wanted: list[str | Path] = []
    for name in names:
        wanted.extend(bundled_profiles() if name == "all" else [name])
    return [load_design(name, sets) for name in dict.fromkeys(wanted)]


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a bundled profile by name (``edge_npu``) or a YAML file by path (:func:`load_design`)."""
    return load_design(name_or_path).profile
