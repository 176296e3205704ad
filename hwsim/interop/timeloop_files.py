"""Timeloop input files for one workload on one profile (``ksm-sim --export timeloop``).

``write_timeloop(work, profile, folder)`` writes what ``timeloop-model`` (Timeloop v3.0.3, NVlabs/timeloop)
reads itself, without the Python front end: the architecture in the tree format Timeloop's C++ parses
(``subtree``/``local``, version 0.4), with hwsim's energies as an Accelergy energy reference table, and per
layer the problem and the mapping ``ksm-sim`` chose:

- ``arch.yaml``: DRAM, then the shared on-chip levels, then ``PE[0..n-1]`` (``meshX`` = the array's
  columns) with its per-PE levels and an ``intmac``; each buffer's ``width`` is its port (``word_bits``),
  ``datawidth`` the element it holds (partial sums for an outputs-only on-chip level), ``block-size`` their
  ratio, ``read_bandwidth``/``write_bandwidth`` in elements per cycle; network and address-generation
  energies are 0 (hwsim counts neither);
- ``ERT.yaml``: Accelergy's energy reference table (format 0.3) with the profile's numbers: ``read`` and
  ``write`` (Timeloop's fills and updates) in pJ per access of the port's width, ``mac_random`` per MAC.
  Timeloop reads it in place of its own estimates: its energies are the profile's;
- ``problems/<layer>.yaml``: a grouped CNN layer (``G C M R S N P Q``; R, P on the width with Wstride, S, Q
  on the height; C and M per group); a layer whose mapping is on the engine's kernel steps (``kernel_steps``:
  ``weight_sets``) is that loop nest, S the steps and R the taps per step, its mapping marked ``approximate``
  (Timeloop's input footprint then follows the taps, not the layer's);
- ``mappings/<layer>.yaml``: the mapping ksm-sim costs the layer with (:func:`hwsim.cost.mapping.search`,
  its ``notation``): the spatial unrolling at the innermost shared level (columns on X, rows on Y; an
  uneven unrolling as Timeloop's residual factor, ``C=10,4``), the temporal loops at the level whose tile
  they belong to, keep/bypass per level as the profile says. A level's loops of one dimension are merged
  into one Timeloop loop (Timeloop has one loop per dimension and level); where that changes the order,
  or the loop split cannot be written, the mapping file says so in its header (``approximate``);
- ``archs/<layer>.yaml`` only where the mapping needs two per-PE (or two shared) levels holding different
  operands in the other order than ``arch.yaml`` (Timeloop's hierarchy is a chain);
- ``mapper.yaml`` and ``constraints.yaml``: for ``timeloop-mapper`` (random-pruned search, the profile's
  keep/bypass and dataflow as constraints);
- ``run.sh`` (one ``timeloop-model`` command per layer) and ``README.md``.
"""

from __future__ import annotations

import warnings

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hwsim.cost.layer_cost import macs, shape_of
from hwsim.cost.mapping import notation, search
from hwsim.cost.mapping.space import RELEVANT
from hwsim.hardware.profile import OPERANDS, MemoryLevel, Profile
from hwsim.interop.export_common import (TIMELOOP_DIMS, TIMELOOP_SPACE, TIMELOOP_SPATIAL, ExportWarning, _dump, _safe,
                                         masks_left_out)
from hwsim.workload.layers import Layer, Workload

MASKS_LEFT_OUT = masks_left_out("Timeloop")

VERSION = "Timeloop v3.0.3 (NVlabs/timeloop), tree architecture format 0.4, Accelergy ERT 0.3"
# hwsim's loop dimension -> Timeloop's CNN-layer dimension (R and P on the width, S and Q on the height)
DIM = {"B": "N", "G": "G", "K": "M", "C": "C", "OY": "Q", "OX": "P", "FY": "S", "FX": "R"}


def registers(profile: Profile) -> list[MemoryLevel]:
    """The word a MAC holds while the innermost loops leave its weight or input unchanged (hwsim and ZigZag's
    ``access_same_data_considered_as_no_access``): a one-element register per PE, no energy, for each of
    weights and inputs whose innermost level's port is at least one element wide. Timeloop's MACs hold
    nothing; without these it would re-read that level once per MAC."""
    pb = profile.precision_bits
    out = []
    for o, bits in (("weights", pb.weights), ("inputs", pb.inputs)):
        if profile.chain(o)[-1].word_bits >= bits:
            out.append(MemoryLevel(name=f"mac_{o}_reg", size_bytes=bits / 8, word_bits=bits, read_energy_pj=0.0,
                                   write_energy_pj=0.0, bandwidth_bytes_per_cycle=bits / 8, operands=(o,),
                                   per_pe=True))
    return out


def _name(text: str) -> str:
    """A Timeloop component name: letters, digits and underscores (the ERT keys split on dots)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def timeloop_problem(layer: Layer, batch: int = 1, steps: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Timeloop CNN-layer problem with a group dimension G (C and M per group), as Timeloop v3.0.3 reads it.

    ``steps``: the ``kernel_steps`` of the layer's mapping (its FY and FX are the engine's kernel steps,
    :func:`hwsim.cost.weight_sets.kernel_steps`): the problem is then that loop nest, S the steps and R the
    taps per step, so that the mapping's factors are the problem's (Timeloop derives the input footprint from
    them, ``(P - 1) x stride + R``, which is not the layer's: :func:`kernel_steps_note`)."""
    g = layer.groups
    (oy, ox), (fy, fx), (sy, sx) = layer.output_hw, layer.kernel_hw, layer.stride_hw
    if steps is not None:
        fy, fx = int(steps["fy_steps"]), int(steps["fx_taps_per_step"])
    # a 1-wide kernel with a stride touches every stride-th input row only: as ksm-sim counts the inputs the
    # window touches, the problem is the stride-1 layer on those rows (Timeloop would span the skipped rows)
    sy, sx = (1 if fy == 1 else sy), (1 if fx == 1 else sx)
    return {"problem": {
        "shape": {
            "name": "grouped_CNN_layer",
            "dimensions": list(TIMELOOP_DIMS),
            "coefficients": [{"name": "Wstride", "default": 1}, {"name": "Hstride", "default": 1},
                             {"name": "Wdilation", "default": 1}, {"name": "Hdilation", "default": 1}],
            "data-spaces": [
                {"name": "Weights", "projection": [[["G"]], [["C"]], [["M"]], [["R"]], [["S"]]]},
                {"name": "Inputs", "projection": [[["N"]], [["G"]], [["C"]], [["R", "Wdilation"], ["P", "Wstride"]],
                                                  [["S", "Hdilation"], ["Q", "Hstride"]]]},
                {"name": "Outputs", "projection": [[["N"]], [["G"]], [["M"]], [["Q"]], [["P"]]], "read-write": True},
            ]},
        "instance": {"G": g, "C": layer.in_channels // g, "M": layer.out_channels // g, "R": fx, "S": fy, "N": batch,
                     "P": ox, "Q": oy, "Wstride": sx, "Hstride": sy},
    }}


def kernel_steps_note(layer: Layer, steps: Mapping[str, Any]) -> str:
    """The ``# approximate`` line of a layer written as the engine's kernel steps (:func:`timeloop_problem`)."""
    (oy, ox), (sy, sx) = layer.output_hw, layer.stride_hw
    iy, ix = (oy - 1) * sy + int(steps["fy_steps"]), (ox - 1) * sx + int(steps["fx_taps_per_step"])
    shape = shape_of(layer)
    return (f"the {steps['kernel_fy_fx'][0]}x{steps['kernel_fy_fx'][1]} kernel as the engine steps it, S "
            f"{steps['fy_steps']} steps x R {steps['fx_taps_per_step']} taps ({steps['padded_taps']} padded), as "
            f"ksm-sim maps it; Timeloop's input footprint is then {iy}x{ix}, ksm-sim's the layer's "
            f"{shape.iy}x{shape.ix}")


def element_bits(profile: Profile, level: MemoryLevel) -> int:
    """The element a level holds, Timeloop's ``datawidth``: partial sums in an on-chip level that holds
    outputs only, else the widest of the weights and inputs it holds (final outputs at DRAM)."""
    pb = profile.precision_bits
    if level is not profile.dram and tuple(level.operands) == ("outputs",):
        return pb.psums
    bits = {"weights": pb.weights, "inputs": pb.inputs, "outputs": pb.outputs}
    return max(bits[o] for o in level.operands)


def _buffer(profile: Profile, level: MemoryLevel, cls: str, mesh_x: int | None = None) -> dict[str, Any]:
    bits = element_bits(profile, level)
    width = max(int(level.word_bits), bits)
    block = max(1, width // bits)
    width = block * bits  # Timeloop needs width = block-size x datawidth
    per_cycle = level.bandwidth_bytes_per_cycle * 8 / bits
    attrs: dict[str, Any] = {"width": width, "datawidth": bits, "block-size": block}
    if level is not profile.dram:
        attrs["depth"] = max(1, int(level.size_bytes * 8 // width))
    else:
        attrs["type"] = "LPDDR4"
    attrs.update({"read_bandwidth": round(per_cycle, 6), "write_bandwidth": round(per_cycle, 6),
                  "addr-gen-energy": 0.0, "wire-energy": 0.0, "router-energy": 0.0})
    if mesh_x is not None:
        attrs["meshX"] = mesh_x
    return {"name": _name(level.name), "class": cls, "attributes": attrs}


def timeloop_arch(profile: Profile, extras: dict[str, Any] | None = None,
                  order: Sequence[MemoryLevel] | None = None) -> dict[str, Any]:
    """The profile as a Timeloop v3.0.3 tree architecture. ``order``: the on-chip levels innermost first
    (default: the profile's, innermost last in its list)."""
    node = float((extras or {}).get("technology_nm", 45))
    levels = list(order) if order is not None else [*registers(profile), *list(profile.levels[1:])[::-1]]
    shared = [lv for lv in levels if not lv.per_pe][::-1]  # outermost first, as Timeloop's local lists
    per_pe = [lv for lv in levels if lv.per_pe][::-1]
    pes, cols = profile.array.pes, profile.array.cols
    pb = profile.precision_bits
    pe = {"name": f"PE[0..{pes - 1}]",
          "local": [*(_buffer(profile, lv, "regfile", cols) for lv in per_pe),
                    {"name": "mac", "class": "intmac",
                     "attributes": {"datawidth": pb.weights, "meshX": cols}}]}
    chip = {"name": _name(profile.name), "attributes": {"technology": f"{node:g}nm"},
            "local": [_buffer(profile, lv, "SRAM") for lv in shared], "subtree": [pe]}
    if not chip["local"]:
        del chip["local"]
    system = {"name": "system", "local": [_buffer(profile, profile.dram, "DRAM")], "subtree": [chip]}
    return {"architecture": {"version": 0.4, "subtree": [system]}}


def timeloop_ert(profile: Profile) -> dict[str, Any]:
    """Accelergy's energy reference table (0.3) with the profile's energies: per access of a level's port,
    per MAC. Timeloop maps ``read`` to its reads and ``write`` to fills and updates."""
    tables = []
    pes = profile.array.pes
    for level in [*profile.levels, *registers(profile)]:
        where = (f"system.{_name(profile.name)}.PE[0..{pes - 1}]" if level.per_pe
                 else "system" if level is profile.dram else f"system.{_name(profile.name)}")
        tables.append({"name": f"{where}.{_name(level.name)}", "actions": [
            {"name": "read", "arguments": None, "energy": float(level.read_energy_pj)},
            {"name": "write", "arguments": None, "energy": float(level.write_energy_pj)},
            {"name": "idle", "arguments": None, "energy": 0.0}]})
    tables.append({"name": f"system.{_name(profile.name)}.PE[0..{pes - 1}].mac", "actions": [
        {"name": "mac_random", "arguments": None, "energy": float(profile.array.mac_energy_pj)},
        {"name": "mac_gated", "arguments": None, "energy": 0.0},
        {"name": "mac_skipped", "arguments": None, "energy": 0.0}]})
    return {"ERT": {"version": 0.3, "tables": tables}}


# --------------------------------------------------------------------------------------------
# The chosen mapping in Timeloop's notation


def _loops_and_cuts(mapping: Mapping[str, Any], profile: Profile) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """From hwsim's notation (``temporal_innermost_first``: operand -> level -> loops): the temporal loops
    innermost first and, per on-chip level, how many of them its tile spans."""
    temporal = mapping["temporal_innermost_first"]
    loops: list[tuple[str, int]] | None = None
    cuts: dict[str, set[int]] = {}
    for o in OPERANDS:
        flat: list[tuple[str, int]] = []
        for level in profile.chain(o)[::-1]:
            flat += [(str(d), int(f)) for d, f in temporal[o].get(level.name, [])]
            if level is not profile.dram:
                cuts.setdefault(level.name, set()).add(len(flat))
        if loops is None:
            loops = flat
        elif flat != loops:
            raise ValueError(f"mapping: the operands' loop nests differ ({o})")
    loops = loops or []
    out = {name: max(c) for name, c in cuts.items()}
    for reg in registers(profile):  # the innermost loops that leave the register's operand unchanged
        (o,) = reg.operands
        held = 0
        while held < len(loops) and loops[held][0] not in RELEVANT[o]:
            held += 1
        out[reg.name] = held
    return loops, out


def _operand_cuts(mapping: Mapping[str, Any], profile: Profile, level: MemoryLevel) -> dict[str, int]:
    """Per operand held by ``level``: how many loops (innermost first) its tile there spans."""
    temporal = mapping["temporal_innermost_first"]
    out = {}
    for o in level.operands:
        n = 0
        for lv in profile.chain(o)[::-1]:
            n += len(temporal[o].get(lv.name, []))
            if lv.name == level.name:
                out[o] = n
                break
    return out


def level_order(profile: Profile, cuts: Mapping[str, int]) -> list[MemoryLevel]:
    """On-chip levels innermost first for a mapping: per-PE levels inside shared ones, each group by the
    number of loops its tile spans (ties: the profile's order, inner first)."""
    on_chip = [*profile.levels[1:], *registers(profile)]
    index = {lv.name: i for i, lv in enumerate([profile.dram, *on_chip])}
    return sorted(on_chip, key=lambda lv: (not lv.per_pe, cuts[lv.name], -index[lv.name]))


def _directive(target: str, kind: str, loops: Sequence[tuple[str, int, int]], split: int | None = None) -> dict[str, Any]:
    """``loops``: (Timeloop dimension, factor, residual), innermost first; unnamed dimensions are 1."""
    named = [d for d, _, _ in loops]
    words = [f"{d}={f}" if r == f else f"{d}={f},{r}" for d, f, r in loops]
    words += [f"{d}=1" for d in TIMELOOP_DIMS if d not in named]
    out = {"target": target, "type": kind, "factors": " ".join(words),
           "permutation": "".join(named + [d for d in TIMELOOP_DIMS if d not in named])}
    if split is not None:
        out["split"] = split
    return out


def timeloop_mapping(layer: Layer, profile: Profile, mapping: Mapping[str, Any],
                     batch: int = 1) -> tuple[dict[str, Any], list[MemoryLevel], list[str]]:
    """hwsim's mapping of ``layer`` (its notation) as a Timeloop mapping; the on-chip levels innermost first
    in the order it needs; notes where Timeloop's notation cannot say the same."""
    notes: list[str] = []
    loops, cuts = _loops_and_cuts(mapping, profile)
    for lv in profile.levels[1:]:
        per_operand = {o: c for o, c in _operand_cuts(mapping, profile, lv).items()}
        if len(set(per_operand.values())) > 1:
            notes.append(f"{lv.name}: ksm-sim's tiles span {per_operand} loops per operand; Timeloop's one loop "
                         f"nest gives every operand {max(per_operand.values())}")
    shared_cut = min([cuts[lv.name] for lv in profile.levels[1:] if not lv.per_pe], default=len(loops))
    for reg in registers(profile):  # a per-PE register lies inside every shared level
        (o,) = reg.operands
        limit = min([shared_cut, *(cuts[lv.name] for lv in profile.chain(o)[1:])])
        if cuts[reg.name] > limit:
            notes.append(f"the MAC holds its {o} over {cuts[reg.name]} innermost loops in ksm-sim, over {limit} here "
                         "(a shared level's tile spans fewer)")
            cuts = {**cuts, reg.name: limit}
    order = level_order(profile, cuts)
    for inner, outer in zip(order, order[1:]):
        if cuts[inner.name] > cuts[outer.name]:
            notes.append(f"{inner.name} spans {cuts[inner.name]} loops, {outer.name} above it {cuts[outer.name]}: "
                         f"the loops between are given to {outer.name}")
            cuts = {**cuts, outer.name: cuts[inner.name]}
    size = dict(zip(("B", "G", "K", "C", "OY", "OX", "FY", "FX"), (
        batch, layer.groups, layer.out_channels // layer.groups, layer.in_channels // layer.groups,
        *layer.output_hw, *layer.kernel_hw)))
    # spatial: hwsim's columns on Timeloop's X axis, rows on Y; uneven ways as a residual
    spatial = mapping["spatial"]
    fanout = next((lv for lv in order if not lv.per_pe), profile.dram)
    level_loops: dict[str, list[tuple[str, int]]] = {}
    lo = 0
    for lv in [*order, profile.dram]:
        hi = cuts.get(lv.name, len(loops))
        level_loops[lv.name] = list(loops[lo:hi])
        lo = hi
    sp_loops: list[tuple[str, int, int]] = []
    for axis in ("cols", "rows"):
        for d, u in spatial[axis]:
            d, u = str(d), int(u)
            folds = -(-size[d] // u)
            rest = size[d] - (folds - 1) * u
            if rest != u:  # uneven: Timeloop's residual factor needs every loop of d above the array
                moved = [x for lv in order if lv.per_pe for x in level_loops[lv.name] if x[0] == d]
                if moved:
                    notes.append(f"{d}'s uneven unrolling ({u} ways, last {rest}): its loops below the array "
                                 f"{moved} go to {fanout.name}")
                    for lv in order:
                        if lv.per_pe:
                            level_loops[lv.name] = [x for x in level_loops[lv.name] if x[0] != d]
                    level_loops[fanout.name] = moved + level_loops[fanout.name]
            sp_loops.append((DIM[d], u, rest))
    n_cols = len(spatial["cols"])
    directives: list[dict[str, Any]] = []
    for lv in [*order, profile.dram]:
        merged: dict[str, int] = {}
        seen: list[str] = []
        for d, f in level_loops[lv.name]:
            if d in merged and seen[-1] != d:
                notes.append(f"{lv.name}: the loops of {d} are not adjacent ({level_loops[lv.name]}): merged")
            merged[d] = merged.get(d, 1) * f
            if d not in seen:
                seen.append(d)
        if lv is fanout:
            directives.append(_directive(_name(lv.name), "spatial", sp_loops, split=n_cols))
        directives.append(_directive(_name(lv.name), "temporal", [(DIM[d], merged[d], merged[d]) for d in seen]))
        keep = [TIMELOOP_SPACE[o] for o in OPERANDS if o in lv.operands]
        directives.append({"target": _name(lv.name), "type": "bypass", "keep": keep,
                           "bypass": [TIMELOOP_SPACE[o] for o in OPERANDS if o not in lv.operands]})
    return {"mapping": directives}, order, notes


MAPPER = {"mapper": {"optimization-metrics": ["energy", "delay"], "live-status": False, "num-threads": 2,
                     "timeout": 10000, "victory-condition": 100, "algorithm": "random-pruned",
                     "max-permutations-per-if-visit": 16}}


def timeloop_constraints(profile: Profile) -> dict[str, Any]:
    """The profile's keep/bypass per level and its dataflow's unrolling, as ``timeloop-mapper`` constraints."""
    targets = [{"target": _name(lv.name), "type": "bypass", "keep": [TIMELOOP_SPACE[o] for o in lv.operands],
                "bypass": [v for k, v in TIMELOOP_SPACE.items() if k not in lv.operands]} for lv in [*profile.levels, *registers(profile)]]
    d_rows, d_cols = TIMELOOP_SPATIAL[profile.dataflow]
    shared = [lv for lv in profile.levels[1:] if not lv.per_pe]
    fanout = shared[-1] if shared else profile.dram
    others = [d for d in TIMELOOP_DIMS if d not in (d_rows, d_cols)]
    targets.append({"target": _name(fanout.name), "type": "spatial", "factors": " ".join(f"{d}=1" for d in others),
                    "permutation": d_cols + d_rows + "".join(others), "split": 1})
    return {"mapspace_constraints": {"targets": targets}}


def _yaml(path: Path, data: Any, header: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=110),
                    encoding="utf-8")
    return path


def write_timeloop(work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None,
                   *, batch: int = 1, objective: str = "energy",
                   mappings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Path]:
    """Write ``arch.yaml``, ``ERT.yaml``, ``problems/``, ``mappings/`` (and ``archs/`` where needed),
    ``mapper.yaml``, ``constraints.yaml``, ``run.sh`` and ``README.md`` into ``folder``.

    ``mappings``: layer name -> the mapping ksm-sim used (a ``LayerCost.mapping`` notation); a layer not
    in it gets the one :func:`hwsim.cost.mapping.search` chooses for ``batch`` and ``objective`` (what
    :func:`hwsim.simulate` costs it with).
    """
    folder = Path(folder)
    head = f"# written by ksm-sim --export timeloop: {profile.name} ({VERSION})\n"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [_yaml(folder / "arch.yaml", timeloop_arch(profile, extras), head),
             _yaml(folder / "ERT.yaml", timeloop_ert(profile), head + "# energies in pJ: the profile's, per access "
                                                                   "of the level's port width; per MAC\n"),
             _dump(folder / "mapper.yaml", MAPPER, head),
             _dump(folder / "constraints.yaml", timeloop_constraints(profile), head)]
    lines = ["#!/bin/sh", "# timeloop-model on every layer with the mapping ksm-sim chose (Timeloop v3.0.3)",
             'cd "$(dirname "$0")"', "failed=0"]
    approximate = []
    names: set[str] = set()
    for i, layer in enumerate(work.layers):
        name = _safe(f"{i:03d}_{layer.name}")
        names.add(name)
        chosen = (mappings or {}).get(layer.name)
        if chosen is None:
            chosen = notation(search(shape_of(layer, batch), profile, objective), profile)
        tl_map, order, notes = timeloop_mapping(layer, profile, chosen, batch)
        steps = chosen.get("kernel_steps")
        if steps is not None:
            notes = [*notes, kernel_steps_note(layer, steps)]
        paths.append(_yaml(folder / "problems" / f"{name}.yaml", timeloop_problem(layer, batch, steps),
                           f"# {layer.name}: {macs(layer) * batch:,} MACs\n"))
        note = "".join(f"# approximate: {n}\n" for n in notes)
        paths.append(_yaml(folder / "mappings" / f"{name}.yaml", tl_map,
                           f"# {layer.name}: the mapping ksm-sim costs it with (objective {objective})\n{note}"))
        arch = "arch.yaml"
        if [lv.name for lv in order] != [*(r.name for r in registers(profile)),
                                         *(lv.name for lv in profile.levels[1:][::-1])]:
            arch = f"archs/{name}.yaml"
            paths.append(_yaml(folder / arch, timeloop_arch(profile, extras, order),
                               head + f"# {layer.name}: levels in the order its mapping needs\n"))
        if notes:
            approximate.append(layer.name)
        lines.append(f"mkdir -p out/{name} && timeloop-model {arch} ERT.yaml problems/{name}.yaml "
                     f"mappings/{name}.yaml -o out/{name} > out/{name}/log.txt 2>&1 || "
                     f"{{ failed=$((failed + 1)); echo \"{name}: $(grep -m1 ERROR out/{name}/log.txt)\" >&2; }}")
    lines.append('[ "$failed" = 0 ] || { echo "timeloop-model refused $failed layer(s)" >&2; exit 1; }')
    run = folder / "run.sh"
    run.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run.chmod(0o755)
    readme = folder / "README.md"
    readme.write_text(
        f"# {work.source} on {profile.name}, for Timeloop\n\n"
        f"Files for {VERSION}: `timeloop-model` reads them as they are (no Python front end).\n\n"
        "```sh\nsh run.sh   # per layer: timeloop-model arch.yaml ERT.yaml problems/L.yaml mappings/L.yaml -o out/L\n"
        "timeloop-mapper arch.yaml ERT.yaml problems/000_*.yaml constraints.yaml mapper.yaml   # Timeloop's own search\n```\n\n"
        f"{len(work.layers)} layers. `mappings/` holds the mapping ksm-sim costs each layer with; `ERT.yaml` sets "
        "Timeloop's energies to the profile's (pJ per access of each level's port, per MAC), so Timeloop's "
        "`timeloop-model.stats.txt` can be set beside `ksm-sim --json`."
        + (f" Written approximately (see the mapping's header): {', '.join(approximate)}." if approximate else "")
        + (f"\n\n**{MASKS_LEFT_OUT[0].upper()}{MASKS_LEFT_OUT[1:]}.**" if work.method is not None else "")
        + "\n", encoding="utf-8")
    if work.method is not None:  # a run's masks: said once, as the ZigZag export does
        warnings.warn(ExportWarning(f"{work.source}: {MASKS_LEFT_OUT} ({work.method})"), stacklevel=2)
    return [*paths, run, readme]
