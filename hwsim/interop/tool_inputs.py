"""Take a design point into the detailed tools: ZigZag and Timeloop input files (``ksm-sim --export``).

``write_zigzag(work, profile, folder)`` writes, in the YAML input formats of zigzag-dse 3.9.1:

- ``workload.yaml``: one entry per layer (``Conv``: ``O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]``
  with strides, padding and the padded input size; ``Gemm`` for linear layers), each layer on its own
  (``operand_source`` = itself: hwsim's layer list has no graph);
- ``accelerator.yaml``: the profile's levels as ``memories`` (innermost first; weights -> ``I2``, inputs ->
  ``I1``, outputs -> ``O``; a ``per_pe`` level serves no array dimension, a shared one both), with
  ``r_cost``/``w_cost`` in pJ per access of the port's full width (``bandwidth_max``, the level's bytes per
  cycle: the profile's energy per bit times that width), and the MAC array as ``operational_array``;
- ``mapping.yaml``: the spatial unrolling of the profile's dataflow (weight stationary: C over rows, K over
  columns; output stationary: OX over rows, K over columns; row stationary: FY over rows, OY over columns)
  and the operand links.

``write_timeloop(work, profile, folder)`` writes Timeloop/Accelergy v0.4 YAML:

- ``arch.yaml``: ``!Container``/``!Component`` nodes, DRAM then the shared buffers then a PE container
  (``meshX`` columns x ``meshY`` rows) with its per-PE buffers and an ``intmac``; each buffer keeps the
  data spaces the profile lets it hold and bypasses the others (the mapping constraints), and the PE
  container's ``spatial`` constraint fixes the dataflow's unrolling;
- ``problems/<layer>.yaml``: one CNN-layer problem per layer (dimensions G, C, M, R, S, N, P, Q; strides;
  C and M per group);
- ``mapper.yaml``: a mapper configuration (random-pruned search minimising energy, then delay).

Each folder also gets a ``README.md`` with the command that runs the files in the tool. Energies of
Timeloop come from Accelergy's tables at the ``technology`` given (the profile's ``technology_nm``, 45 nm
by default); hwsim's per-access energies are written beside them as attributes for reference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hwsim.hardware.area import area_breakdown
from hwsim.cost.layer_cost import macs
from hwsim.fileio.output_guard import build_folder
from hwsim.workload.layers import Layer, Workload
from hwsim.hardware.profile import Profile

ZIGZAG_OPERAND = {"weights": "I2", "inputs": "I1", "outputs": "O"}
TIMELOOP_SPACE = {"weights": "Weights", "inputs": "Inputs", "outputs": "Outputs"}
SPATIAL = {"weight_stationary": ("C", "K"), "output_stationary": ("OX", "K"), "row_stationary": ("FY", "OY")}
TIMELOOP_SPATIAL = {"weight_stationary": ("C", "M"), "output_stationary": ("P", "M"), "row_stationary": ("R", "Q")}
FORMATS = ("zigzag", "timeloop")
TIMELOOP_DIMS = ("G", "C", "M", "R", "S", "N", "P", "Q")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _dump(path: Path, data: Any, header: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)
    path.write_text(header + text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# ZigZag


def zigzag_layer(layer: Layer, index: int, profile: Profile) -> dict[str, Any]:
    """One ZigZag workload entry (zigzag-dse 3.9.1 ``WorkloadValidator`` schema)."""
    pb = profile.precision_bits
    precision = {"W": pb.weights, "I": pb.inputs, "O": pb.psums, "O_final": pb.outputs}
    g = layer.groups
    k, c = layer.out_channels // g, layer.in_channels // g
    if layer.kind == "linear":
        rows = layer.output_hw[0] * layer.output_hw[1]
        return {"id": index, "name": layer.name, "operator_type": "Gemm",
                "equation": "O[b][k]+=W[k][c]*I[b][c]", "loop_dims": ["B", "K", "C"],
                "loop_sizes": [rows, layer.out_channels, layer.in_channels],
                "operand_precision": precision, "operand_source": {"I": index, "W": index}}
    (ih, iw), (oh, ow) = layer.input_hw, layer.output_hw
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_hw, layer.stride_hw, layer.padding_hw
    return {"id": index, "name": layer.name, "operator_type": "Conv",
            "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
            "dimension_relations": [f"ix={sw}*ox+1*fx", f"iy={sh}*oy+1*fy"],
            "loop_dims": ["B", "K", "G", "OX", "OY", "C", "FX", "FY"],
            "loop_sizes": [1, k, g, ow, oh, c, kw, kh],
            "operand_precision": precision, "operand_source": {"I": index, "W": index},
            "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [iw, ih],
            "padding": [[pw, pw], [ph, ph]]}


def zigzag_accelerator(profile: Profile, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile as a ZigZag accelerator (zigzag-dse 3.9.1 ``AcceleratorValidator`` schema)."""
    area = area_breakdown(profile, extras)
    memories: dict[str, Any] = {}
    for level in reversed(profile.levels):  # ZigZag lists the innermost memory first
        outer = level is profile.levels[0]
        operands = [ZIGZAG_OPERAND[o] for o in level.operands]
        width = max(int(level.word_bits), round(level.bandwidth_bytes_per_cycle * 8))
        per_bit_r, per_bit_w = level.read_energy_pj / level.word_bits, level.write_energy_pj / level.word_bits
        reads = [f"{op}, tl" for op in operands] + (["O, th"] if "O" in operands else [])
        writes = [f"{op}, fh" for op in operands] + (["O, fl"] if "O" in operands else [])
        if outer:
            both = [f"{op}, {d}" for op in operands for d in (("fh", "tl", "fl", "th") if op == "O" else ("fh", "tl"))]
            ports = [{"name": "rw_port_1", "type": "read_write", "bandwidth_min": int(level.word_bits),
                      "bandwidth_max": width, "allocation": both}]
        else:
            ports = [{"name": "r_port_1", "type": "read", "bandwidth_min": int(level.word_bits),
                      "bandwidth_max": width, "allocation": reads},
                     {"name": "w_port_1", "type": "write", "bandwidth_min": int(level.word_bits),
                      "bandwidth_max": width, "allocation": writes}]
        instances = profile.array.pes if level.per_pe else 1
        memories[level.name] = {
            "size": round(level.size_bytes * 8),
            "r_cost": round(per_bit_r * width, 6),
            "w_cost": round(per_bit_w * width, 6),
            "area": round(area["levels_mm2"].get(level.name, 0.0) / instances, 9),
            "latency": 1,
            "operands": operands,
            "ports": ports,
            "served_dimensions": [] if level.per_pe else ["D1", "D2"],
        }
    mac_mm2 = area["mac_array_mm2"] / profile.array.pes
    return {"name": _safe(profile.name), "memories": memories,
            "operational_array": {"unit_energy": float(profile.array.mac_energy_pj), "unit_area": round(mac_mm2, 9),
                                  "dimensions": ["D1", "D2"], "sizes": [profile.array.rows, profile.array.cols]}}


def zigzag_mapping(profile: Profile) -> list[dict[str, Any]]:
    """The dataflow's spatial unrolling as a ZigZag mapping (``default`` applies to every layer)."""
    d1, d2 = SPATIAL[profile.dataflow]
    return [{"name": "default",
             "spatial_mapping": {"D1": [f"{d1}, {profile.array.rows}"], "D2": [f"{d2}, {profile.array.cols}"]},
             "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}]


def write_zigzag(work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None) -> list[Path]:
    """Write ``workload.yaml``, ``accelerator.yaml``, ``mapping.yaml`` and ``README.md`` into ``folder``."""
    folder = Path(folder)
    head = f"# written by ksm-sim --export zigzag: {work.source} on {profile.name} (zigzag-dse 3.9.1 format)\n"
    paths = [
        _dump(folder / "workload.yaml", [zigzag_layer(layer, i, profile) for i, layer in enumerate(work.layers)],
              head),
        _dump(folder / "accelerator.yaml", zigzag_accelerator(profile, extras),
              head + "# r_cost/w_cost: pJ per access of bandwidth_max bits (the profile's pJ per bit x width)\n"),
        _dump(folder / "mapping.yaml", zigzag_mapping(profile), head),
    ]
    readme = folder / "README.md"
    readme.write_text(
        f"# {work.source} on {profile.name}, for ZigZag\n\n"
        "```sh\npip install zigzag-dse==3.9.1 six\npython -c \"from zigzag.api import get_hardware_performance_zigzag as z; "
        "print(z('workload.yaml', 'accelerator.yaml', 'mapping.yaml', opt='energy', dump_folder='out')[:2])\"\n```\n\n"
        f"{len(work.layers)} layers, {sum(macs(layer) for layer in work.layers):,} MACs. Layers are independent "
        "(no inter-layer fusion); every memory's costs are hwsim's (pJ per access of the port width).\n",
        encoding="utf-8")
    return [*paths, readme]


# --------------------------------------------------------------------------------------------
# Timeloop (v0.4)


class _Tagged(dict):
    """A mapping written with a YAML tag (``!Component``)."""

    tag = ""


class _Component(_Tagged):
    tag = "!Component"


class _Container(_Tagged):
    tag = "!Container"


class _Parallel(_Tagged):
    tag = "!Parallel"


class _Dumper(yaml.SafeDumper):
    pass


for _cls in (_Component, _Container, _Parallel):
    _Dumper.add_representer(_cls, lambda d, data: d.represent_mapping(data.tag, dict(data)))


def timeloop_problem(layer: Layer) -> dict[str, Any]:
    """A Timeloop v0.4 CNN-layer problem with a group dimension G (C and M per group)."""
    g = layer.groups
    (p, q), (r, s) = layer.output_hw, layer.kernel_hw
    return {"problem": {
        "version": 0.4,
        "shape": {
            "name": "grouped_CNN_layer",
            "dimensions": list(TIMELOOP_DIMS),
            "coefficients": [{"name": "Wstride", "default": 1}, {"name": "Hstride", "default": 1},
                             {"name": "Wdilation", "default": 1}, {"name": "Hdilation", "default": 1}],
            "data_spaces": [
                {"name": "Weights", "projection": [[["G"]], [["C"]], [["M"]], [["R"]], [["S"]]]},
                {"name": "Inputs", "projection": [[["N"]], [["G"]], [["C"]], [["R", "Wdilation"], ["P", "Wstride"]],
                                                  [["S", "Hdilation"], ["Q", "Hstride"]]]},
                {"name": "Outputs", "projection": [[["N"]], [["G"]], [["M"]], [["Q"]], [["P"]]], "read_write": True},
            ]},
        "instance": {"G": g, "C": layer.in_channels // g, "M": layer.out_channels // g, "R": r, "S": s, "N": 1,
                     "P": p, "Q": q, "Hstride": layer.stride_hw[0], "Wstride": layer.stride_hw[1]},
    }}


def _keep(level_operands: tuple[str, ...]) -> dict[str, Any]:
    keep = [TIMELOOP_SPACE[o] for o in level_operands]
    bypass = [v for k, v in TIMELOOP_SPACE.items() if k not in level_operands]
    return {"dataspace": {"keep": keep, "bypass": bypass}}


def timeloop_arch(profile: Profile, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile as a Timeloop/Accelergy v0.4 architecture, with keep/bypass and spatial constraints."""
    pb = profile.precision_bits
    node = float((extras or {}).get("technology_nm", 45))
    dram = profile.dram
    nodes: list[Any] = [
        _Container(name="system"),
        _Component(name=dram.name, **{"class": "DRAM"},
                   attributes={"type": "LPDDR4", "width": int(dram.word_bits), "datawidth": pb.weights,
                               "read_energy_pj": dram.read_energy_pj, "write_energy_pj": dram.write_energy_pj},
                   constraints=_keep(dram.operands)),
        _Container(name=_safe(profile.name), attributes={"technology": f"{node:g}nm"}),
    ]

    def buffer(level: Any, cls: str) -> _Component:
        words_per_cycle = level.bandwidth_bytes_per_cycle * 8 / level.word_bits
        return _Component(name=level.name, **{"class": cls}, attributes={
            "depth": max(1, int(level.size_bytes * 8 // level.word_bits)), "width": int(level.word_bits),
            "datawidth": pb.weights, "read_bandwidth": round(words_per_cycle, 6),
            "write_bandwidth": round(words_per_cycle, 6),
            "read_energy_pj": level.read_energy_pj, "write_energy_pj": level.write_energy_pj},
            constraints=_keep(level.operands))

    for level in profile.levels[1:]:
        if not level.per_pe:
            nodes.append(buffer(level, "smartbuffer_SRAM"))
    d_rows, d_cols = TIMELOOP_SPATIAL[profile.dataflow]

    def only(dim: str) -> str:  # every other dimension unrolls by 1: the dataflow's dimension alone is spatial
        return " ".join(f"{d}=1" for d in TIMELOOP_DIMS if d != dim)

    nodes.append(_Container(name="PE_column", spatial={"meshX": profile.array.cols},
                            constraints={"spatial": {"factors": only(d_cols), "permutation": d_cols}}))
    nodes.append(_Container(name="PE", spatial={"meshY": profile.array.rows},
                            constraints={"spatial": {"factors": only(d_rows), "permutation": d_rows}}))
    per_pe = [buffer(level, "smartbuffer_RF") for level in profile.levels[1:] if level.per_pe]
    if len(per_pe) > 1:
        nodes.append(_Parallel(nodes=per_pe))
    else:
        nodes.extend(per_pe)
    nodes.append(_Component(name="mac", **{"class": "intmac"},
                            attributes={"multiplier_width": pb.weights, "adder_width": pb.psums,
                                        "energy_pj": profile.array.mac_energy_pj}))
    return {"architecture": {"version": 0.4, "nodes": nodes}}


MAPPER = {"mapper": {"version": 0.4, "optimization_metrics": ["energy", "delay"], "live_status": False,
                     "num_threads": 4, "timeout": 10000, "victory_condition": 100, "algorithm": "random_pruned",
                     "max_permutations_per_if_visit": 16}}


def write_timeloop(work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None) -> list[Path]:
    """Write ``arch.yaml``, ``mapper.yaml``, ``problems/<layer>.yaml`` and ``README.md`` into ``folder``."""
    folder = Path(folder)
    head = f"# written by ksm-sim --export timeloop: {profile.name} (Timeloop/Accelergy v0.4 format)\n"
    folder.mkdir(parents=True, exist_ok=True)
    arch = folder / "arch.yaml"
    arch.write_text(head + yaml.dump(timeloop_arch(profile, extras), Dumper=_Dumper, sort_keys=False,
                                     default_flow_style=False, width=110), encoding="utf-8")
    paths = [arch, _dump(folder / "mapper.yaml", MAPPER, head)]
    convs = [layer for layer in work.layers]
    names: set[str] = set()
    for i, layer in enumerate(convs):
        name = _safe(f"{i:03d}_{layer.name}")
        names.add(name)
        paths.append(_dump(folder / "problems" / f"{name}.yaml", timeloop_problem(layer),
                           f"# {layer.name}: {macs(layer):,} MACs\n"))
    readme = folder / "README.md"
    readme.write_text(
        f"# {work.source} on {profile.name}, for Timeloop (v0.4)\n\n"
        "```sh\nfor p in problems/*.yaml; do timeloop-mapper arch.yaml \"$p\" mapper.yaml -o \"out/$(basename \"$p\" .yaml)\"; done\n```\n\n"
        f"{len(convs)} problems. The spatial constraints of the PE containers fix the {profile.dataflow} unrolling; "
        "every buffer keeps only the data spaces the profile gives it. Accelergy estimates energies at the "
        "container's technology; hwsim's per-access energies are written as `read_energy_pj`/`write_energy_pj` "
        "attributes for comparison.\n", encoding="utf-8")
    return [*paths, readme]


def export(fmt: str, work: Workload, profile: Profile, folder: str | Path, extras: dict[str, Any] | None = None) -> list[Path]:
    """Write ``fmt`` (``zigzag`` or ``timeloop``) files for one workload on one profile."""
    if fmt == "zigzag":
        return write_zigzag(work, profile, folder, extras)
    if fmt == "timeloop":
        return write_timeloop(work, profile, folder, extras)
    raise ValueError(f"--export: unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def export_all(fmt: str, works: list[Workload], profiles: list[Profile], folder: str | Path,
               designs: dict[int, Any] | None = None, inputs: Sequence[str | Path] = ()) -> list[Path]:
    """Export every workload on every profile: into ``folder`` itself for one pair, else into
    ``folder/<workload>-<profile>/``. Returns the folders written.

    ``folder`` goes through the output guard (:func:`hwsim.fileio.output_guard.build_folder`): new, empty or
    made by this project, holding none of ``inputs``, built under a temporary sibling and published whole.
    """
    folder = Path(folder)
    pairs = [(w, p) for w in works for p in profiles]
    out = []
    with build_folder(folder, f"ksm-sim --export {fmt}", inputs) as tmp:
        for work, profile in pairs:
            design = (designs or {}).get(id(profile))
            name = None if len(pairs) == 1 else _safe(f"{Path(work.source).name}-{profile.name}")
            export(fmt, work, profile, tmp / name if name else tmp, design.extras if design is not None else None)
            out.append(folder / name if name else folder)
    return out
