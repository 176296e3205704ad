"""Timeloop input files for one workload on one profile (``ksm-sim --export timeloop``).

``write_timeloop(work, profile, folder)`` writes Timeloop/Accelergy v0.4 YAML:

- ``arch.yaml``: ``!Container``/``!Component`` nodes, DRAM then the shared buffers then a PE container
  (``meshX`` columns x ``meshY`` rows) with its per-PE buffers and an ``intmac``; each buffer keeps the
  data spaces the profile lets it hold and bypasses the others (the mapping constraints), and the PE
  container's ``spatial`` constraint fixes the dataflow's unrolling;
- ``problems/<layer>.yaml``: one CNN-layer problem per layer (dimensions G, C, M, R, S, N, P, Q; strides;
  C and M per group);
- ``mapper.yaml``: a mapper configuration (random-pruned search minimising energy, then delay).

The folder also gets a ``README.md`` with the command that runs the files in the tool. Energies of
Timeloop come from Accelergy's tables at the ``technology`` given (the profile's ``technology_nm``, 45 nm
by default); hwsim's per-access energies are written beside them as attributes for reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hwsim.cost.layer_cost import macs
from hwsim.interop.export_common import TIMELOOP_DIMS, TIMELOOP_SPACE, TIMELOOP_SPATIAL, _dump, _safe
from hwsim.workload.layers import Layer, Workload
from hwsim.hardware.profile import Profile


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
