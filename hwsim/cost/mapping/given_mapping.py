"""A given mapping (``ksm-sim --mapping FILE``): cost it, as Timeloop's model does, instead of searching.

:func:`read_mapping_file` reads and validates the file (:class:`hwsim.schemas.mapping_file.MappingFile`);
:func:`resolve` turns one entry, a layer's loop bounds and a profile into what
:func:`hwsim.cost.mapping.one_mapping.evaluate` takes: the spatial unrolling, the temporal loops innermost
first, and per operand the number of loops below each of its levels (``cuts``); :func:`given_cost` costs it.

What the profile cannot run is refused in one line naming the file and the layer: factors that do not
multiply to the layer's dimensions (a dimension's temporal factors must multiply to
``ceil(size / spatial ways)``, as the search's own uneven unrolling does), a level the profile does not have, an
operand kept in a level that does not serve it (or bypassing a level that does), an unrolling wider than
the array. A dimension the mapping never names runs whole at the outermost level (the batch of ``--batch``,
say). Tiles that do not fit their level are costed all the same and named in ``MappingCost.overflow``
(Timeloop's model also evaluates a mapping its mapper would reject). On a profile whose engine steps the kernel
(``weight_sets``), a mapping may be on the engine's kernel steps, as the search's are, or on the layer's kernel
(:func:`given_cost`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hwsim.cost.mapping.best_mapping import engine_kernel, engine_shape
from hwsim.cost.mapping.one_mapping import MappingCost, evaluate
from hwsim.cost.mapping.space import DIMS, RELEVANT, Shape, Spatial, arch, sizes
from hwsim.errors import InputError
from hwsim.fileio.bounded import MAX_YAML_BYTES, parse_yaml, read_text, short
from hwsim.hardware.profile import OPERANDS, MemoryLevel, Profile
from hwsim.schemas.mapping_file import (MAC_REGISTERS, SHAPE, TIMELOOP_DIMS, TIMELOOP_SPACES, ZIGZAG_OPERANDS,
                                        MappingEntry, MappingFile)
from hwsim.schemas.validation import validate

Loops = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    """An entry made concrete for one layer on one profile: what ``evaluate`` takes."""

    spatial: Spatial
    loops: Loops  # innermost first
    # operand -> loops below each of its on-chip levels, innermost first; None: allocated as the search
    # allocates (LOMA, ZigZag's temporal_ordering)
    cuts: dict[str, tuple[int, ...]] | None


def read_mapping_file(path: str | Path) -> MappingFile:
    """The mapping file at ``path`` (YAML; JSON where it ends in ``.json``), validated; a problem is one line
    naming the file."""
    path = Path(path)
    where = str(path)
    text = read_text(path, MAX_YAML_BYTES, InputError)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
        except RecursionError:
            raise InputError(f"{where}: malformed JSON: nested too deeply") from None
    else:
        data = parse_yaml(text, where, InputError)
    if not isinstance(data, (dict, list)):
        what = "empty" if data is None else f"a {type(data).__name__}, {short(data)}"
        raise InputError(f"{where}: {what}: a mapping file {SHAPE}")
    return validate(MappingFile, data, where)


def resolve(entry: MappingEntry, shape: Shape, profile: Profile, bounds: str = "the layer") -> Resolved:
    """``entry`` for a layer of loop bounds ``shape`` on ``profile``; a :class:`ValueError` says what does not
    fit (the caller prefixes the file and the layer; ``bounds`` names whose the bounds are)."""
    residual: dict[str, tuple[int, int]] = {}
    if entry.mapping is not None:
        rows, cols, loops, cuts, residual = _timeloop(entry, profile)
    else:
        rows, cols, loops, cuts = _zigzag(entry, profile)
    spatial = Spatial(rows=rows, cols=cols)
    for axis, loops_on, n in (("rows", rows, profile.array.rows), ("columns", cols, profile.array.cols)):
        ways = math.prod(u for _, u in loops_on)
        if ways > n:
            raise ValueError(f"unrolls {' x '.join(f'{d} {u}' for d, u in loops_on)} = {ways} ways on the array's "
                             f"{axis}; it has {n}")
    size = sizes(shape)
    ways = spatial.ways()
    temporal = dict.fromkeys(DIMS, 1)
    named = {d for d, _ in loops} | set(ways)
    for d, f in loops:
        temporal[d] *= f
    extra = []
    for d in DIMS:
        if ways.get(d, 1) > size[d]:
            raise ValueError(f"unrolls {d} {ways[d]} ways; {bounds} has {d}={size[d]}")
        need = -(-size[d] // ways.get(d, 1))
        if d in residual:  # Timeloop's "C=10,4": the last fold as the layer leaves it
            (u, r), last = residual[d], size[d] - (need - 1) * ways[d]
            if ways[d] != u or r != last:
                raise ValueError(f"{d}: the residual factor {u},{r} says the last of {u} ways holds {r}; unrolled "
                                 f"{ways[d]} ways on {bounds}'s {d}={size[d]}, the last fold holds {last} "
                                 f"(write {d}={ways[d]},{last})")
        if d not in named:
            if need > 1:
                extra.append((d, need))  # never named: the whole dimension at the outermost level
        elif temporal[d] != need:
            factors = [str(f) for e, f in loops if e == d]
            spread = f"{' x '.join(factors)} = {temporal[d]}" if len(factors) > 1 else str(temporal[d])
            rule = (f"{bounds}'s {d}={size[d]} on {ways[d]} ways unrolled needs ceil({size[d]}/{ways[d]}) = {need}"
                    if d in ways else f"{bounds} has {d}={size[d]}, so they must multiply to {need}")
            raise ValueError(f"{d}: the temporal factors multiply to {spread}; {rule}")
    return Resolved(spatial=spatial, loops=(*loops, *extra), cuts=cuts)


def given_cost(entry: MappingEntry, shape: Shape, profile: Profile, objective: str = "energy") -> MappingCost:
    """The cost of ``entry`` for a layer of loop bounds ``shape`` on ``profile`` (no search of the loops; a
    ZigZag ``temporal_ordering`` is allocated to the levels as the search allocates, ``objective`` choosing
    between its two ways of cutting a shared level).

    Where the profile's engine steps the layer's kernel (``weight_sets``: a depthwise or part-kernel layer whose
    kernel row is longer than a step, :func:`hwsim.cost.weight_sets.kernel_steps`), the search maps the
    engine's loop nest, FY the kernel steps and FX the taps per step, and its record says so
    (``kernel_steps``). A mapping whose bounds are those steps is costed on them, as the search costs it (a
    searched mapping given back costs what the search found); one whose bounds are the layer's kernel is
    costed on the kernel, as on a profile without steps; one that fits neither is refused naming both."""
    a = arch(profile)
    steps = engine_kernel(shape, a)
    if steps is None:
        r = resolve(entry, shape, profile)
        return evaluate(shape, a, r.spatial, r.loops, cuts=r.cuts, objective=objective)
    engine = engine_shape(shape, a)
    try:
        r = resolve(entry, engine, profile, bounds="the stepped kernel")
    except ValueError as on_steps:
        try:
            r = resolve(entry, shape, profile)
        except ValueError as on_kernel:
            if str(on_kernel).replace("the layer", "the stepped kernel") == str(on_steps):
                raise  # not a matter of the kernel's bounds: one reason
            raise ValueError(f"{on_kernel}; nor does it map {profile.name}'s kernel steps (the {steps.kernel[0]}x"
                             f"{steps.kernel[1]} kernel as FY {steps.steps} steps of FX {steps.taps} taps, what "
                             f"ksm-sim's search maps): {on_steps}") from None
        return evaluate(shape, a, r.spatial, r.loops, cuts=r.cuts, objective=objective)
    m = evaluate(engine, a, r.spatial, r.loops, cuts=r.cuts, objective=objective)
    return dataclasses.replace(m, kernel_steps=steps)


def mapping_source(book: MappingFile, where: str, objective: str = "energy"
                   ) -> Callable[[str, Shape, Profile], MappingCost | None]:
    """What :func:`hwsim.cost.simulate.simulate` takes as ``mapping``: layer name, loop bounds, profile -> the
    cost of the file's mapping for the layer (None: the file maps it not, search it), ``objective`` the run's
    (:func:`given_cost`). Errors name ``where`` and the layer."""
    cache: dict[tuple[str, Shape, Profile], MappingCost] = {}

    def cost(layer: str, shape: Shape, profile: Profile) -> MappingCost | None:
        found = book.entry(layer)
        if found is None:
            return None
        entry, key = found
        hit = cache.get((key, shape, profile))
        if hit is None:
            try:
                hit = given_cost(entry, shape, profile, objective)
            except ValueError as exc:
                raise InputError(f"{where}: {_name(key)} (layer {_name(layer)}) on {profile.name}: {exc}") from None
            cache[(key, shape, profile)] = hit
        return hit

    return cost


def check_layer_names(book: MappingFile, where: str, names: set[str], loopless: set[str] = frozenset()) -> None:
    """Refuse a ``layers`` key that names no layer of the workloads (a typo would silently search). ``loopless``:
    the workloads' operators without a MAC loop nest (element-wise, pooling), which ``--json`` records with a
    null mapping: null is taken back for them, a mapping refused (it would be silently ignored)."""
    for name, entry in (book.layers or {}).items():
        if name in loopless and name not in names:
            if entry is not None:
                raise InputError(f"{where}: layers.{_name(name)}: this operator has no MAC loop nest to map "
                                 "(give it null, as --json writes it, or leave it out)")
            continue
        if name not in names:
            known = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise InputError(f"{where}: layers.{_name(name)}: no such layer in the workloads (layers: {known})")


def _name(text: str) -> str:
    """A name from a file as it is when it is short and printable, else quoted and cut (``short``)."""
    return text if len(text) <= 80 and text.isprintable() else short(text)


# --------------------------------------------------------------------------------------------
# ZigZag notation


def _dims_of(loops: Loops) -> Loops:
    return tuple((d, int(f)) for d, f in loops if f > 1)


def _zigzag(entry: MappingEntry, profile: Profile) -> tuple[Loops, Loops, Loops, dict[str, tuple[int, ...]] | None]:
    sp = entry.spatial_mapping or {}
    rows, cols = _dims_of(sp.get("D1", ())), _dims_of(sp.get("D2", ()))
    if entry.temporal_ordering is not None:  # ZigZag's mapping file: the levels allocated as the search does
        return rows, cols, _dims_of(entry.temporal_ordering), None
    assert entry.temporal_mapping is not None
    nests: dict[str, tuple[Loops, tuple[int, ...]]] = {}
    for key, levels in entry.temporal_mapping.items():
        o = ZIGZAG_OPERANDS[key]
        chain = profile.chain(o)[::-1]  # innermost first, DRAM last
        names = [lv.name for lv in chain]
        if isinstance(levels, dict):
            for name in levels:
                _check_level(profile, name, o, f"temporal_mapping.{key}")
            per_level = [tuple(levels.get(name, ())) for name in names]
        else:
            if len(levels) != len(chain):
                raise ValueError(f"temporal_mapping.{key}: {len(levels)} levels; the profile has {len(chain)} "
                                 f"serving {o} ({', '.join(names)}, innermost first)")
            per_level = [tuple(x) for x in levels]
        flat: list[tuple[str, int]] = []
        cuts = []
        for level_loops in per_level:
            flat += _dims_of(level_loops)
            cuts.append(len(flat))
        nests[o] = (tuple(flat), tuple(cuts[:-1]))
    order = nests[OPERANDS[0]][0]
    for o in OPERANDS[1:]:
        if nests[o][0] != order:
            raise ValueError(f"the operands' loop orders differ ({OPERANDS[0]}: {_show(order)}; {o}: "
                             f"{_show(nests[o][0])}): one loop nest, split differently per operand")
    return rows, cols, order, {o: nests[o][1] for o in OPERANDS}


def _show(loops: Loops) -> str:
    return " ".join(f"{d}{f}" for d, f in loops) or "none"


def _check_level(profile: Profile, name: str, operand: str, where: str) -> None:
    level = next((lv for lv in profile.levels if lv.name == name), None)
    if level is None:
        raise ValueError(f"{where}: level {short(name)}: the profile has no such level "
                         f"({', '.join(lv.name for lv in profile.levels)})")
    if operand not in level.operands:
        raise ValueError(f"{where}: level {name} holds {operand}, but the profile's {name} does not serve it "
                         f"(it holds {', '.join(level.operands)})")


# --------------------------------------------------------------------------------------------
# Timeloop notation


def _timeloop(entry: MappingEntry, profile: Profile) -> tuple[Loops, Loops, Loops, dict[str, tuple[int, ...]],
                                                                dict[str, tuple[int, int]]]:
    """Timeloop's directives: rows, columns, the temporal loops innermost first, the cuts, and the residual
    factors of the spatial ones (hwsim dimension -> (ways, last fold)).

    The levels' order is the file's: its temporal directives innermost first or outermost first (which, the
    levels that share an operand say), so that two levels holding different operands (an input buffer and
    an accumulator) nest as the file has them; a level the file does not name keeps its place in the
    profile. ``mac_weights_reg`` and ``mac_inputs_reg`` (the one-element registers ksm-sim's Timeloop export
    adds per PE) are the MAC's own hold, which hwsim models without a level: their loops, each leaving the
    register's operand unchanged, are the innermost loops."""
    assert entry.mapping is not None
    levels = {lv.name: lv for lv in profile.levels}
    safe = {}  # the export's component names (letters, digits, underscores) -> the profile's level
    for lv in profile.levels:
        safe.setdefault(re.sub(r"[^A-Za-z0-9_]", "_", lv.name), []).append(lv.name)
    temporal: dict[str, Loops] = {}
    named: list[str] = []
    rows: list[tuple[str, int]] = []
    cols: list[tuple[str, int]] = []
    residual: dict[str, tuple[int, int]] = {}

    def level_of(target: str) -> str | None:
        if target in levels:
            return target
        if len(safe.get(target, ())) == 1:
            return safe[target][0]
        return target if target in MAC_REGISTERS else None

    for i, d in enumerate(entry.mapping):
        where = f"mapping[{i}] (target {short(d.target)})"
        target = level_of(d.target)
        if d.type == "temporal":
            if target is None and all(f == 1 for _, f, _ in d.factors or ()):
                continue  # timeloop-mapper writes a loop of 1s at each spatial container: nothing to place
            if target is None:
                raise ValueError(f"{where}: the profile has no such level ({', '.join(levels)}; or "
                                 f"{', '.join(MAC_REGISTERS)}, the MAC's registers of ksm-sim's export)")
            if target in temporal:
                raise ValueError(f"{where}: a second temporal directive for the level")
            temporal[target] = _ordered(d.factors or (), d.permutation)
            named.append(target)
        elif d.type == "spatial":  # hwsim has one array: every spatial factor unrolls on it
            ordered = _ordered(d.factors or (), d.permutation, keep_ones=True)
            split = len(ordered) if d.split is None else d.split  # an index into the permutation
            cols += [x for x in ordered[:split] if x[1] > 1]  # Timeloop's X: meshX, the columns
            rows += [x for x in ordered[split:] if x[1] > 1]  # Y: meshY, the rows
            for dim, f, r in d.factors or ():
                if r != f:
                    if TIMELOOP_DIMS[dim] in residual:
                        raise ValueError(f"{where}: a second residual factor for {dim}")
                    residual[TIMELOOP_DIMS[dim]] = (f, r)
        else:
            for space in d.keep or ():
                o = TIMELOOP_SPACES[space]
                if target in MAC_REGISTERS and target not in levels:
                    if o != MAC_REGISTERS[target]:
                        raise ValueError(f"{where}: keep: {target} holds {MAC_REGISTERS[target]} only")
                    continue
                _check_level(profile, target or d.target, o, f"{where}: keep")
            for space in d.bypass or ():
                o = TIMELOOP_SPACES[space]
                if target in levels and o in levels[target].operands:
                    raise ValueError(f"{where}: bypasses {space}, but the profile's {target} holds {o} "
                                     f"(describe a profile whose {target} does not list {o})")
    order = _level_order(profile, [n for n in named if n in levels])
    held: list[tuple[str, int]] = []
    for reg in (n for n in _registers_inner_first(profile, named) if n in temporal):
        held += temporal[reg]
        o = MAC_REGISTERS[reg]
        changing = sorted({dim for dim, _ in held if dim in RELEVANT[o]})
        if changing:
            raise ValueError(f"{reg} holds one {o[:-1]} at the MAC: its loops (and those of the registers inside "
                             f"it) must leave {o} unchanged, but {', '.join(changing)} changes them")
    loops: list[tuple[str, int]] = list(held)
    below: dict[str, int] = {}
    for lv in order:  # innermost first
        loops += temporal.get(lv.name, ())
        below[lv.name] = len(loops)
    cuts = {o: tuple(below[lv.name] for lv in profile.chain(o)[::-1][:-1]) for o in OPERANDS}
    return tuple(rows), tuple(cols), tuple(loops), cuts, residual


def _registers_inner_first(profile: Profile, named: list[str]) -> list[str]:
    """The MAC registers the file names, innermost first (the file's direction, as :func:`_level_order`)."""
    regs = [n for n in named if n in MAC_REGISTERS and n not in {lv.name for lv in profile.levels}]
    on_chip = [n for n in named if n not in regs]
    outermost_first = bool(on_chip) and _outermost_first(profile, on_chip)
    return regs[::-1] if outermost_first else regs


def _outermost_first(profile: Profile, named: list[str]) -> bool | None:
    """Whether the file lists its levels outermost first: every two it names that serve one operand are in
    the profile's order, or every two in the reverse; None where no two share an operand."""
    rank = {lv.name: i for i, lv in enumerate(profile.levels)}  # outermost (DRAM) first
    votes = set()
    by_name = {lv.name: lv for lv in profile.levels}
    for i, a in enumerate(named):
        for b in named[i + 1:]:
            if set(by_name[a].operands) & set(by_name[b].operands):
                votes.add(rank[a] < rank[b])
    if len(votes) > 1:
        raise ValueError(f"the temporal directives ({', '.join(named)}) are neither innermost first nor outermost "
                         "first along the profile's levels")
    return votes.pop() if votes else None


def _level_order(profile: Profile, named: list[str]) -> list[MemoryLevel]:
    """Every level innermost first (DRAM last): the named ones in the file's order, each other one after the
    level that precedes it in the profile's order (innermost first)."""
    base = [lv.name for lv in reversed(profile.levels)]
    first = _outermost_first(profile, named)
    order = list(named[::-1] if first else named) if first is not None else [n for n in base if n in named]
    for k, name in enumerate(base):
        if name not in order:
            before = next((base[j] for j in range(k - 1, -1, -1) if base[j] in order), None)
            order.insert(0 if before is None else order.index(before) + 1, name)
    by_name = {lv.name: lv for lv in profile.levels}
    at = {n: i for i, n in enumerate(order)}
    for o in OPERANDS:
        chain = [lv.name for lv in profile.chain(o)[::-1]]
        for inner, outer in zip(chain, chain[1:]):
            if at[inner] > at[outer]:
                raise ValueError(f"the file's levels nest {outer} inside {inner}; the profile's {o} go "
                                 f"{' -> '.join(chain)} (innermost first)")
    return [by_name[n] for n in order]


def _ordered(factors: tuple[tuple[str, int, int], ...], permutation: tuple[str, ...] | None,
             keep_ones: bool = False) -> Loops:
    """Timeloop's factors in permutation order (innermost first), in hwsim's dimension names."""
    f = {d: x for d, x, _ in factors}
    order = list(permutation or ()) + [d for d, _, _ in factors if d not in (permutation or ())]
    return tuple((TIMELOOP_DIMS[d], int(f.get(d, 1))) for d in order if keep_ones or f.get(d, 1) > 1)
