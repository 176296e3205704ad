"""ZigZag input files for one workload on one profile (``ksm-sim --export zigzag``).

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

The folder also gets a ``README.md`` with the command that runs the files in ZigZag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwsim.hardware.area import area_breakdown
from hwsim.cost.layer_cost import macs
from hwsim.interop.export_common import SPATIAL, ZIGZAG_OPERAND, _dump, _safe
from hwsim.workload.layers import Layer, Workload
from hwsim.hardware.profile import Profile


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
