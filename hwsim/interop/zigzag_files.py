"""ZigZag input files for one workload on one profile (``ksm-sim --export zigzag``).

``write_zigzag(work, profile, folder)`` writes, in the YAML input formats of zigzag-dse 3.9.1, files that
ZigZag costs as ``ksm-sim`` does (energy within 2 %, cycles within 5 %: ``docs/interop.md``,
``scripts/zigzag_roundtrip.py``):

- ``workload.yaml``: one entry per MAC layer (``Conv``: ``O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]``
  with strides, padding and the input size; ``Gemm`` for linear layers), each layer on its own
  (``operand_source`` = itself: ZigZag sees no graph, so inter-layer reuse is not exported); operand
  precisions are the profile's (``W``, ``I``, ``O`` = partial sums, ``O_final`` = outputs); a layer whose
  mapping is on the engine's kernel steps (``kernel_steps``: ``weight_sets``) is written as that loop nest,
  FY the steps and FX the taps per step, its input footprint the layer's (a comment line says so);
- ``accelerator.yaml``: the profile's levels as ``memories`` (innermost first; weights -> ``I2``, inputs ->
  ``I1``, outputs -> ``O``; a ``per_pe`` level serves no array dimension, a shared one both) and the MAC
  array as ``operational_array`` (D1 = rows, D2 = columns). Ports (:func:`ports`): ``bandwidth_max`` is the
  level's bits per cycle (ZigZag's latency reads it), ``r_cost``/``w_cost`` the energy of one access of that
  width; ``bandwidth_min`` is the granule ZigZag rounds each transfer up to, set so that it rounds nothing
  away from ``ksm-sim``'s count (8 bits on a shared memory, which ``ksm-sim`` charges per bit moved; the
  word on a per-PE one, which it charges per access). No register is added at the MAC: given
  ``ksm-sim``'s loop order, ZigZag keeps the innermost loops that leave weights (inputs) unchanged at the
  MAC level (its ``mapping_dic_stationary``) and reads the innermost memory once for them, as ``ksm-sim``
  does; a register level would only change ZigZag's on-loading (``docs/interop.md``);
- ``mapping.yaml``: per layer, the mapping ``ksm-sim`` chose (:func:`hwsim.cost.mapping.search`, the one
  in its ``--layers`` and JSON ``mapping``): the spatial unrolling (rows on D1, columns on D2) and every
  temporal loop innermost first as ``temporal_ordering``. ZigZag 3.9.1 takes a complete ordering as is and
  allocates it to the memories bottom-up (its ``MemoryAllocator``, LOMA's rule, which ``ksm-sim`` uses too);
  its mapping format has no field for the allocation itself. A ``default`` entry (the dataflow's spatial
  unrolling) serves a layer added by hand.

The folder also gets a ``README.md`` with the command that runs the files in ZigZag. Masks of a KSM run
(``--masks``) are not exported (:data:`MASKS_NOT_EXPORTED`): a warning says so and the README repeats it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwsim.cost.layer_cost import macs, shape_of
from hwsim.cost.mapping import search
from hwsim.hardware.area import area_breakdown
from hwsim.hardware.profile import MemoryLevel, Profile
from hwsim.interop.export_common import SPATIAL, ZIGZAG_OPERAND, ExportWarning, _dump, _safe, masks_left_out
from hwsim.workload.layers import Layer, Workload

GRANULE_BITS = 8  # ZigZag's bandwidth_min on a shared memory: every precision of the profiles is a multiple
LINKS = {"O": "O", "W": "I2", "I": "I1"}  # memory_operand_links: layer operand -> memory operand
MASKS_NOT_EXPORTED = masks_left_out("ZigZag")


class ZigzagExportWarning(ExportWarning):
    """Something ``ksm-sim`` costs that the ZigZag files leave out (the masks of a run)."""


# --------------------------------------------------------------------------------------------
# workload


def zigzag_layer(layer: Layer, index: int, profile: Profile, name: str | None = None, batch: int = 1,
                 steps: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One ZigZag workload entry (zigzag-dse 3.9.1 ``WorkloadValidator`` schema).

    ``steps``: the ``kernel_steps`` of the layer's mapping (its FY and FX are the engine's kernel steps:
    :func:`hwsim.cost.weight_sets.kernel_steps`), whose loop nest the entry then is, as ksm-sim costs it:
    FY the steps, FX the taps per step (the last step's padded taps counted as MACs, as the engine spends
    them), the input footprint (``pr_loop_sizes``) the layer's own, which ZigZag clips every input tile to
    (``LayerNode.calc_tensor_dim``), so that the mapping's bounds are the workload's."""
    pb = profile.precision_bits
    precision = {"W": pb.weights, "I": pb.inputs, "O": pb.psums, "O_final": pb.outputs}
    g = layer.groups
    k, c = layer.out_channels // g, layer.in_channels // g
    name = layer.name if name is None else name
    if layer.kind == "linear":
        (oy, ox) = layer.output_hw
        if oy * ox == 1:
            return {"id": index, "name": name, "operator_type": "Gemm",
                    "equation": "O[b][k]+=W[k][c]*I[b][c]", "loop_dims": ["B", "K", "C"],
                    "loop_sizes": [batch, layer.out_channels, layer.in_channels],
                    "operand_precision": precision, "operand_source": {"I": index, "W": index}}
        return {"id": index, "name": name, "operator_type": "Gemm",
                "equation": "O[b][k][oy][ox]+=W[k][c]*I[b][c][oy][ox]", "loop_dims": ["B", "K", "C", "OY", "OX"],
                "loop_sizes": [batch, layer.out_channels, layer.in_channels, oy, ox],
                "operand_precision": precision, "operand_source": {"I": index, "W": index}}
    (oh, ow) = layer.output_hw
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_hw, layer.stride_hw, layer.padding_hw
    shape = shape_of(layer)  # the input footprint ksm-sim counts: padding included where the window touches it
    ih, iw = shape.iy, shape.ix
    if steps is not None:  # the engine's loop nest: the mapping's FY and FX
        if [kh, kw] != list(steps["kernel_fy_fx"]):
            raise ValueError(f"{layer.name}: the mapping's kernel_steps are of a {steps['kernel_fy_fx']} kernel; "
                             f"the layer's is {[kh, kw]}")
        kh, kw = int(steps["fy_steps"]), int(steps["fx_taps_per_step"])
    return {"id": index, "name": name, "operator_type": "Conv",
            "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
            "dimension_relations": [f"ix={sw}*ox+1*fx", f"iy={sh}*oy+1*fy"],
            "loop_dims": ["B", "K", "G", "OX", "OY", "C", "FX", "FY"],
            "loop_sizes": [batch, k, g, ow, oh, c, kw, kh],
            "operand_precision": precision, "operand_source": {"I": index, "W": index},
            "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [iw, ih],
            "padding": [[pw, pw], [ph, ph]]}


def layer_names(work: Workload) -> list[str]:
    """The ZigZag names of ``work``'s layers: their own, made unique (a mapping entry is found by name)."""
    out: list[str] = []
    taken = {"default", "Conv", "Gemm"}
    for i, layer in enumerate(work.layers):
        name = layer.name if layer.name not in taken else f"{layer.name}_{i}"
        taken.add(name)
        out.append(name)
    return out


# --------------------------------------------------------------------------------------------
# accelerator


def _operand_bits(profile: Profile, operand: str) -> tuple[int, ...]:
    pb = profile.precision_bits
    return {"weights": (pb.weights,), "inputs": (pb.inputs,), "outputs": (pb.psums, pb.outputs)}[operand]


def ports(level: MemoryLevel, operands: list[str], outermost: bool) -> tuple[list[dict[str, Any]], float]:
    """The level's ports and the energy scale: ``(ports, accesses of bandwidth_max per access of the level)``.

    ZigZag counts ``ceil(bits per transfer / bandwidth_min) * bandwidth_min / bandwidth_max`` accesses, each
    costing ``r_cost`` (``w_cost``); ``ksm-sim`` charges a shared memory per bit moved (bits / ``word_bits``
    accesses) and a per-PE memory per access of its word. ``bandwidth_max`` = the level's bits per cycle;
    ``bandwidth_min`` = 8 bits on a shared memory (no rounding), the word on a per-PE one (one access per
    word moved). DRAM has one read-write port, on-chip memories a read and a write port unless the profile
    gives them one (``shared_port``), as ``ksm-sim``'s port model has them.
    """
    width = max(1, round(level.bandwidth_bytes_per_cycle * 8))
    granule = int(level.word_bits) if level.per_pe else GRANULE_BITS
    width = max(width, granule)
    reads = [f"{op}, tl" for op in operands] + (["O, th"] if "O" in operands else [])
    writes = [f"{op}, fh" for op in operands] + (["O, fl"] if "O" in operands else [])
    if outermost or level.shared_port:
        both = [f"{op}, {d}" for op in operands for d in (("fh", "tl", "fl", "th") if op == "O" else ("fh", "tl"))]
        return [{"name": "rw_port_1", "type": "read_write", "bandwidth_min": granule, "bandwidth_max": width,
                 "allocation": both}], width / level.word_bits
    return [{"name": "r_port_1", "type": "read", "bandwidth_min": granule, "bandwidth_max": width,
             "allocation": reads},
            {"name": "w_port_1", "type": "write", "bandwidth_min": granule, "bandwidth_max": width,
             "allocation": writes}], width / level.word_bits


def zigzag_accelerator(profile: Profile, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile as a ZigZag accelerator (zigzag-dse 3.9.1 ``AcceleratorValidator`` schema)."""
    area = area_breakdown(profile, extras)
    memories: dict[str, Any] = {}
    for level in reversed(profile.levels):  # ZigZag lists the innermost memory first
        operands = [ZIGZAG_OPERAND[o] for o in level.operands]
        port_list, scale = ports(level, operands, level is profile.levels[0])
        instances = profile.array.pes if level.per_pe else 1
        memories[level.name] = {
            "size": round(level.size_bytes * 8),
            "r_cost": round(level.read_energy_pj * scale, 9),
            "w_cost": round(level.write_energy_pj * scale, 9),
            "area": round(area["levels_mm2"].get(level.name, 0.0) / instances, 9),
            "latency": 1,
            "operands": operands,
            "ports": port_list,
            "served_dimensions": [] if level.per_pe else ["D1", "D2"],
        }
    mac_mm2 = area["mac_array_mm2"] / profile.array.pes
    return {"name": _safe(profile.name), "memories": memories,
            "operational_array": {"unit_energy": float(profile.array.mac_energy_pj), "unit_area": round(mac_mm2, 9),
                                  "dimensions": ["D1", "D2"], "sizes": [profile.array.rows, profile.array.cols]}}


# --------------------------------------------------------------------------------------------
# mapping


def chosen_mapping(layer: Layer, profile: Profile, objective: str = "energy", batch: int = 1) -> dict[str, Any]:
    """The mapping ``ksm-sim`` costs ``layer`` with (its search's choice, in ``LayerCost.mapping`` notation)."""
    return search(shape_of(layer, batch), profile, objective).notation(profile)


def temporal_loops(notation: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Every temporal loop of a mapping in ``LayerCost.mapping`` notation, innermost first (any operand's
    levels, innermost first, hold them all)."""
    levels = next(iter(notation["temporal_innermost_first"].values()))
    return [(str(d), int(f)) for loops in levels.values() for d, f in loops]


def _zigzag_dim(dim: str, layer: Layer) -> str:
    """hwsim's loop dimension as the layer's ZigZag entry names it (a linear layer's batch is B)."""
    if layer.kind == "linear" and dim == "G":
        raise ValueError(f"{layer.name}: a linear layer has no group dimension")
    return dim


def layer_mapping(name: str, layer: Layer, notation: Mapping[str, Any], profile: Profile) -> dict[str, Any]:
    """One ZigZag mapping entry: ``ksm-sim``'s spatial unrolling (rows on D1, columns on D2) and its temporal
    loops innermost first. An axis with no unrolling gets ``C, 1`` so that ZigZag generates none."""
    sp = notation["spatial"]
    spatial = {}
    for axis, key in (("D1", "rows"), ("D2", "cols")):
        spatial[axis] = [f"{_zigzag_dim(d, layer)}, {int(u)}" for d, u in sp[key]] or ["C, 1"]
    return {"name": name, "spatial_mapping": spatial,
            "temporal_ordering": [[_zigzag_dim(d, layer), f] for d, f in temporal_loops(notation)],
            "memory_operand_links": dict(LINKS)}


def zigzag_mapping(profile: Profile, entries: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The ZigZag mapping file: a ``default`` entry (the dataflow's spatial unrolling, ZigZag's search for the
    rest) and the per-layer ``entries`` (:func:`layer_mapping`)."""
    d1, d2 = SPATIAL[profile.dataflow]
    default = {"name": "default",
               "spatial_mapping": {"D1": [f"{d1}, {profile.array.rows}"], "D2": [f"{d2}, {profile.array.cols}"]},
               "memory_operand_links": dict(LINKS)}
    return [default, *(entries or [])]


# --------------------------------------------------------------------------------------------
# the folder


def write_zigzag(work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None, *,
                 objective: str = "energy", batch: int = 1,
                 mappings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Path]:
    """Write ``workload.yaml``, ``accelerator.yaml``, ``mapping.yaml`` and ``README.md`` into ``folder``.

    ``mappings``: the mapping of each layer by name, in ``LayerCost.mapping`` notation (a ``simulate``
    result's ``layers``); a layer without one gets the mapping ``ksm-sim``'s search chooses for
    ``objective`` and ``batch`` (the same one ``simulate`` costs it with). A workload with a method (the masks
    of a run) warns once (:class:`ZigzagExportWarning`): the masks are not exported.
    """
    folder = Path(folder)
    head = f"# written by ksm-sim --export zigzag: {work.source} on {profile.name} (zigzag-dse 3.9.1 format)\n"
    names = layer_names(work)
    layers = []
    entries = []
    stepped = []
    for i, (layer, name) in enumerate(zip(work.layers, names)):
        notation = (mappings or {}).get(layer.name) or chosen_mapping(layer, profile, objective, batch)
        steps = notation.get("kernel_steps")
        layers.append(zigzag_layer(layer, i, profile, name, batch, steps))
        entries.append(layer_mapping(name, layer, notation, profile))
        if steps is not None:
            stepped.append(f"{name}: its {steps['kernel_fy_fx'][0]}x{steps['kernel_fy_fx'][1]} kernel as "
                           f"{profile.name}'s engine steps it, FY {steps['fy_steps']} steps x FX "
                           f"{steps['fx_taps_per_step']} taps ({steps['padded_taps']} padded), the input footprint "
                           "kept")
    masked = work.method is not None
    if masked:
        warnings.warn(ZigzagExportWarning(f"{work.source}: {MASKS_NOT_EXPORTED} ({work.method})"), stacklevel=2)
    paths = [
        _dump(folder / "workload.yaml", layers, head + "".join(f"# {x}\n" for x in stepped)),
        _dump(folder / "accelerator.yaml", zigzag_accelerator(profile, extras),
              head + "# r_cost/w_cost: pJ per access of bandwidth_max bits (the profile's energy per bit x width)\n"),
        _dump(folder / "mapping.yaml", zigzag_mapping(profile, entries),
              head + f"# per layer: the mapping ksm-sim chose (objective {objective}, batch {batch}); "
                     "temporal_ordering innermost first\n"),
    ]
    readme = folder / "README.md"
    n_macs = sum(macs(layer) for layer in work.layers) * batch
    readme.write_text(
        f"# {work.source} on {profile.name}, for ZigZag\n\n"
        "```sh\npip install zigzag-dse==3.9.1 six\npython -c \"from zigzag.api import get_hardware_performance_zigzag as z; "
        "print(z('workload.yaml', 'accelerator.yaml', 'mapping.yaml', opt='energy', dump_folder='out')[:2])\"\n```\n\n"
        f"{len(work.layers)} layers, {n_macs:,} MACs, each with the mapping ksm-sim chose (objective {objective}, "
        f"batch {batch}). Layers are independent (no inter-layer reuse: ksm-sim's memory plan, which keeps "
        "tensors on chip between layers, is not exported, nor are non-MAC operators). Every memory's costs are "
        "hwsim's (pJ per access of the port width).\n"
        + (f"\nLayers written as the MAC engine runs them (the kernel in steps of taps, as ksm-sim maps and costs "
           f"them): {'; '.join(stepped)}.\n" if stepped else "") + (f"\n**{MASKS_NOT_EXPORTED[0].upper()}{MASKS_NOT_EXPORTED[1:]}.**\n" if masked else ""),
        encoding="utf-8")
    return [*paths, readme]


def exported_energy_keys(profile: Profile) -> frozenset[str]:
    """The ``LayerCost.energy_pj`` levels the ZigZag files cost: the memory levels and the MACs (not masks,
    the array's network ``noc``, which ZigZag 3.9.1's accelerator format has no cost for, static, clock,
    control, output stage or vector operators)."""
    return frozenset([*(level.name for level in profile.levels), "mac"])


def exported_cycles(cost: Any) -> float:
    """The cycles of a ``LayerCost`` that ZigZag's latency covers: compute + stall + on- and off-loading."""
    return float(cost.compute_cycles + cost.stall_cycles + cost.onload_cycles + cost.offload_cycles)


def exported_energy_pj(cost: Any, profile: Profile) -> float:
    """The energy of a ``LayerCost`` that the ZigZag files cost (:func:`exported_energy_keys`), in pJ."""
    keys = exported_energy_keys(profile)
    return math.fsum(v for (lv, operand), v in cost.energy_pj.items() if lv in keys and operand != "masks")
