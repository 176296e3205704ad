"""Run the cost model over a workload and assemble the results (plain dicts, pandas tables, JSON).

``simulate`` is the library entry point; it touches no files. Units are SI base units in everything
it returns (bytes, seconds, joules), with cycles and MACs as counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim import catalogue, units
from hwsim.cost import lora_cost as lora
from hwsim.cost.dram_compression import DENSE, coded_maps
from hwsim.cost.layer_cost import LayerCost, chip_level, cost_of_mapping, needs_chip_level, shape_of
from hwsim.workload.layers import Workload
from hwsim.cost.mapping import MappingCost, Shape, search_many
from hwsim.cost.mapping.bursts import made_feature_maps
from hwsim.cost.mapping.one_mapping import OBJECTIVES, objective_key
from hwsim.cost.mask_cost import TaskCost, task_cost
from hwsim.hardware.profile import OPERANDS, Profile
from hwsim.cost.memory_plan import plan_memory
from hwsim.cost.operator_cost import executions, operator_cost
from hwsim.cost.residency import apply_residency, kept_on_chip
from hwsim.workload.graph import Graph, chain_graph, host_written

FORMAT = "ksm-sim/1"


def _model_digest() -> str:
    """sha256 (16 hex digits) of the cost model's source: every module of ``hwsim.cost``, ``hwsim.hardware`` and
    ``hwsim.workload``, and the bundled profiles and networks. A sweep's saved points are keyed by it
    (:mod:`hwsim.explore.engine`), so any change to how the same inputs are costed (a formula, a profile's
    number) makes them be costed again, whether or not someone remembers to bump :data:`MODEL_VERSION`."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for pattern in ("cost/**/*.py", "hardware/*.py", "workload/*.py", "profiles/*.yaml", "networks/*.json"):
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# Changes whenever the same inputs would cost differently, so that a sweep's saved points are not reused
# across models (hwsim.explore.engine): a name for the model's generation ("graph-2": per-operand cuts, output
# stage, chip energy) and the digest of its source, which changes with any edit.
MODEL_VERSION = f"graph-2+{_model_digest()}"
PJ = 1e-12
# what the energy is spent on: the operands' traffic, then the pseudo-levels (hwsim.cost.layer_cost.LayerCost)
ENERGY_OPERANDS = (*OPERANDS, "masks", "mac", "vector", "output_stage", "clock", "control", "static")


def _traffic(costs: Iterable[LayerCost], level: str) -> tuple[dict[str, float], dict[str, float]]:
    """Bytes the layers ``costs`` read from and write to ``level``, per operand (weights, inputs, outputs, masks)."""
    reads = dict.fromkeys((*OPERANDS, "masks"), 0.0)
    writes = dict.fromkeys((*OPERANDS, "masks"), 0.0)
    for c in costs:
        for (lv, operand), v in c.read_bytes.items():
            if lv == level:
                reads[operand] += v
        for (lv, operand), v in c.write_bytes.items():
            if lv == level:
                writes[operand] += v
    return reads, writes


@dataclass(frozen=True, slots=True)
class SimResult:
    """One workload on one profile in one mask-application mode."""

    profile: Profile
    work: Workload
    mode: str | None
    task: TaskCost
    layers: tuple[LayerCost, ...]
    batch: int = 1
    objective: str = "energy"
    steady_state: bool = False
    residency: dict | None = None  # which outputs stayed on chip, which weights are cached

    # ---- totals -------------------------------------------------------------------------
    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.layers)

    @property
    def compute_cycles(self) -> int:
        return sum(c.compute_cycles for c in self.layers)

    @property
    def cycles(self) -> float:
        return sum(c.cycles for c in self.layers)

    @property
    def latency_s(self) -> float:
        return self.cycles / self.profile.clock_hz

    def energy_by(self) -> dict[tuple[str, str], float]:
        """(level, operand) -> joules, summed over layers (``mac``/``mask_ops`` are pseudo-levels)."""
        total: dict[tuple[str, str], float] = {}
        for c in self.layers:
            for key, pj in c.energy_pj.items():
                total[key] = total.get(key, 0.0) + pj * PJ
        return total

    @property
    def energy_j(self) -> float:
        return sum(self.energy_by().values())

    def traffic(self, level: str) -> tuple[dict[str, float], dict[str, float]]:
        """Bytes read from and written to ``level``, per operand (weights, inputs, outputs, masks)."""
        return _traffic(self.layers, level)

    # ---- output -------------------------------------------------------------------------
    def to_dict(self, with_layers: bool = True) -> dict[str, Any]:
        """The ``ksm-sim/1`` result record (SI base units)."""
        dram = self.profile.dram.name
        reads, writes = self.traffic(dram)
        by = self.energy_by()
        by_level: dict[str, float] = {}
        by_operand = dict.fromkeys(ENERGY_OPERANDS, 0.0)
        for (level, operand), j in by.items():
            by_level[level] = by_level.get(level, 0.0) + j
            by_operand[operand] += j
        levels = {}
        for level in self.profile.levels:
            r, w = self.traffic(level.name)
            levels[level.name] = {"read_bytes": r, "write_bytes": w,
                                  "energy_j": {o: by.get((level.name, o), 0.0) for o in (*OPERANDS, "masks")}}
        t = self.task
        totals = {
            "macs": self.macs,
            "compute_cycles": self.compute_cycles,
            "cycles": self.cycles,
            "latency_s": self.latency_s,
            "utilization": self.macs / (self.compute_cycles * self.profile.array.pes),
            "energy_j": sum(by.values()),
            "energy_by_level_j": by_level,
            "energy_by_operand_j": by_operand,
            "dram_read_bytes": {"weights": reads["weights"], "inputs": reads["inputs"], "masks": reads["masks"],
                                "outputs": reads["outputs"]},
            "dram_write_bytes": {"outputs": writes["outputs"], "weights": writes["weights"],
                                 "inputs": writes["inputs"], "masks": writes["masks"]},
            "levels": levels,
            "energy_on_chip_j": sum(j for (level, _), j in by.items() if level != dram),
            "zero_gating_saved_j": sum(c.gated_pj for c in self.layers) * PJ,
            "dram_code_saved_bytes": sum(c.dram_code_saved_bytes for c in self.layers),
            "chip_energy": (self.profile.chip_energy.describe() if self.profile.chip_energy is not None
                            else "no clock or control energy; per-access energies as given"),
            "energy_scale": (self.profile.chip_energy.energy_scale if self.profile.chip_energy is not None
                             else 1.0),
            "latency_breakdown_cycles": {
                "compute": self.compute_cycles,
                "stall": sum(c.stall_cycles for c in self.layers),
                "onload": sum(c.onload_cycles for c in self.layers),
                "offload": sum(c.offload_cycles for c in self.layers),
                "vector": sum(c.vector_cycles for c in self.layers),
                "weight_wait": sum(c.weight_wait_cycles for c in self.layers),
                "output": sum(c.output_cycles for c in self.layers)},
            "vector_ops": sum(c.vector_ops for c in self.layers),
            "vector_unit": self.profile.vector.describe(),
            "mask_storage_bits": t.mask_storage_bits,
            "mask_ops": sum(c.mask_ops for c in self.layers),
            "task_specific_bytes": t.task_specific_bytes,
            "task_specific_bytes_by_part": {"masks": t.mask_storage_bits / 8, "batchnorm": t.batchnorm_bytes,
                                            "head": t.head_bytes},
            "task_switch": {"read_bytes": t.switch_read_bytes, "write_bytes": t.switch_write_bytes,
                            "mask_ops": t.switch_ops, "energy_j": t.switch_energy_pj * PJ,
                            "latency_s": t.switch_cycles / self.profile.clock_hz},
        }
        per_image = {"latency_per_image_s": self.latency_s / self.batch,
                     "energy_per_image_j": totals["energy_j"] / self.batch,
                     "dram_bytes_per_image": (sum(reads.values()) + sum(writes.values())) / self.batch}
        out: dict[str, Any] = {
            "profile": self.profile.name,
            "batch": self.batch,
            "objective": self.objective,
            "steady_state": self.steady_state,
            "source": self.work.source,
            "task": self.work.task,
            "method": self.work.method,
            **dict(zip(("top1", "top1_precision"), self.matching_top1())),
            "top1_float32": self.work.top1,
            "mode": self.mode,
            "batchnorm": self.work.batchnorm if self.work.method else None,
            "assumed_mask_density": t.assumed_density,
            "totals": totals,
            "per_image": per_image,
            "residency": self.residency,
        }
        if with_layers:
            out["layers"] = [self._layer_dict(c) for c in self.layers]
        return out

    def matching_top1(self) -> tuple[float | None, str | None]:
        """The accuracy of the machine this profile describes, and which one it is.

        A profile with 8-bit (or narrower) weights and activations runs the int8 model: the folded
        int8 model's accuracy in ``folded`` mode, the shared int8 backbone with the mask applied on the
        fly in ``on_the_fly`` mode (both measured by ``ksm-export --int8``). Otherwise, or when no
        int8 accuracy was measured, the float32 accuracy of training.
        """
        w = self.work
        pb = self.profile.precision_bits
        if pb.weights <= 8 and pb.inputs <= 8:
            int8 = w.top1_int8_on_the_fly if self.mode == "on_the_fly" else w.top1_int8
            if int8 is None and self.mode == "on_the_fly" and w.method and not catalogue.get(w.method).mask.applied:
                int8 = w.top1_int8  # no mask to apply (a copy, or the head only): the on-the-fly model is the folded one
            if int8 is not None:
                return int8, "int8"
        return (w.top1, "float32") if w.top1 is not None else (None, None)

    def _layer_dict(self, c: LayerCost) -> dict[str, Any]:
        reads, writes = _traffic((c,), self.profile.dram.name)
        by_level: dict[str, dict[str, float]] = {}
        for (lv, o), pj in c.energy_pj.items():
            by_level.setdefault(lv, {})[o] = pj * PJ
        return {"name": c.name, "kind": c.kind, "macs": c.macs, "compute_cycles": c.compute_cycles,
                "cycles": c.cycles, "utilization": c.utilization, "bound": c.bound, "vector_ops": c.vector_ops,
                "inputs_at": c.inputs_at, "outputs_at": c.outputs_at,
                "latency_breakdown_cycles": {"compute": c.compute_cycles, "stall": c.stall_cycles,
                                             "onload": c.onload_cycles, "offload": c.offload_cycles,
                                             "vector": c.vector_cycles, "weight_wait": c.weight_wait_cycles,
                                             "output": c.output_cycles},
                "zero_gating_saved_j": c.gated_pj * PJ,
                "dram_code_saved_bytes": c.dram_code_saved_bytes,
                "energy_by_level_operand_j": by_level, "mapping": c.mapping,
                "energy_j": sum(c.energy_pj.values()) * PJ, "mask_storage_bits": self.task.mask_bits.get(c.name, 0.0),
                "dram_read_bytes": reads, "dram_write_bytes": writes}

    def layers_frame(self) -> pd.DataFrame:
        """One row per layer: MACs, cycles, utilisation, energy, DRAM bytes per operand, what bounds it."""
        rows = []
        for d in (self._layer_dict(c) for c in self.layers):
            rows.append({"layer": d["name"], "operator": d["kind"], "inputs at": d["inputs_at"],
                         "outputs at": d["outputs_at"], "MACs": d["macs"], "vector ops": d["vector_ops"],
                         "cycles": d["cycles"],
                         "util": d["utilization"], "bound": d["bound"], "energy (J)": d["energy_j"],
                         "DRAM rd W (B)": d["dram_read_bytes"]["weights"],
                         "DRAM rd I (B)": d["dram_read_bytes"]["inputs"],
                         "DRAM rd mask (B)": d["dram_read_bytes"]["masks"],
                         "DRAM wr O (B)": d["dram_write_bytes"]["outputs"],
                         "mask bits": d["mask_storage_bits"]})
        return pd.DataFrame(rows)

    def layers_table(self) -> pd.DataFrame:
        """The per-operator table printed by ``--layers``, in engineering units: the operator kind and the
        memory levels its input and output tensors lived in, latency split (compute, stalls, on/off-loading,
        vector unit), energy by level and operand, DRAM traffic, and the chosen mapping
        (spatial unrolling; loops per level of the outermost operand chain, innermost first)."""
        clock = self.profile.clock_hz
        rows = []
        for c in self.layers:
            by_level: dict[str, float] = {}
            for (lv, o), pj in c.energy_pj.items():
                by_level[lv] = by_level.get(lv, 0.0) + pj * PJ
            dram = self.profile.dram.name
            moved = sum(v for (lv, _), v in c.read_bytes.items() if lv == dram)
            moved += sum(v for (lv, _), v in c.write_bytes.items() if lv == dram)
            m = c.mapping or {}
            sp = m.get("spatial", {})
            spatial = " x ".join(f"{d}{u}" for axis in ("rows", "cols") for d, u in sp.get(axis, []))
            top = (m.get("temporal_innermost_first") or {}).get("weights", {})
            temporal = "; ".join(f"{lv}: " + " ".join(f"{d}{f}" for d, f in loops) for lv, loops in top.items()
                                  if loops)
            rows.append({"layer": c.name, "operator": c.kind,
                         "tensors (in -> out)": f"{c.inputs_at or '-'} -> {c.outputs_at or '-'}",
                         "MACs": f"{c.macs:,}", "vector ops": f"{c.vector_ops:,.0f}", "util": f"{c.utilization:.2f}",
                         "latency": units.seconds(c.cycles / clock),
                         "compute / stall / on+off-load / vector (cycles)": (
                             f"{c.compute_cycles:,} / {c.stall_cycles:,.0f} / {c.onload_cycles + c.offload_cycles:,.0f}"
                             f" / {c.vector_cycles:,.0f}"),
                         "bound": c.bound, "energy": units.energy(sum(by_level.values())),
                         "energy by level": ", ".join(f"{lv} {units.energy(j)}" for lv, j in by_level.items() if j),
                         "DRAM": units.nbytes(moved), "spatial": spatial, "weights' loops (innermost first)": temporal})
        return pd.DataFrame(rows)

    def operators_frame(self) -> pd.DataFrame:
        """One row per operator kind (conv, linear, elementwise, pool, concat ...): how many, how each runs
        (on the MAC array, the vector unit, fused into a producer's output stage, or a view that moves no
        data), MACs and vector operations, cycles and their share of the latency, energy, bytes moved to and
        from the outermost level, and how many of the kind's outputs stayed on chip."""
        dram = self.profile.dram.name
        counts = (self.residency or {}).get("operators", {})
        rows: dict[str, dict[str, Any]] = {}
        for how, kinds in counts.items():
            for kind, n in kinds.items():
                row = rows.setdefault(kind, _operator_row(kind))
                row["operators"] += n
                row["runs on"] = "+".join(dict.fromkeys([*filter(None, row["runs on"].split("+")), how]))
        total = self.cycles or 1.0
        for c in self.layers:
            row = rows.setdefault(c.kind, _operator_row(c.kind))
            row["MACs"] += c.macs
            row["vector ops"] += c.vector_ops
            row["cycles"] += c.cycles
            row["energy (J)"] += sum(c.energy_pj.values()) * PJ
            row["DRAM (B)"] += (sum(v for (lv, _), v in c.read_bytes.items() if lv == dram)
                                + sum(v for (lv, _), v in c.write_bytes.items() if lv == dram))
            row["outputs on chip"] += bool(c.outputs_at) and dram not in c.outputs_at.split("+")
        frame = pd.DataFrame(list(rows.values()), columns=list(_operator_row("").keys()))
        frame["latency share"] = frame["cycles"] / total
        return frame.sort_values("cycles", ascending=False, kind="stable").reset_index(drop=True)

    def energy_frame(self) -> pd.DataFrame:
        """Energy (J) by memory level (rows) and operand (columns), with totals."""
        by = self.energy_by()
        names = [lv.name for lv in self.profile.levels]
        frame = pd.DataFrame(0.0, index=[*names, "noc", "mac", "vector", "mask_ops", "output_stage", "clock",
                                         "control", "static"], columns=list(ENERGY_OPERANDS))
        for (level, operand), j in by.items():
            frame.loc[level, operand] += j
        frame = frame.loc[(frame != 0).any(axis=1)]
        frame["total"] = frame.sum(axis=1)
        frame.loc["total"] = frame.sum(axis=0)
        frame.index.name = "level"
        return frame

    def traffic_frame(self) -> pd.DataFrame:
        """Bytes read and written per level and operand."""
        rows = []
        for level in self.profile.levels:
            r, w = self.traffic(level.name)
            for o in (*OPERANDS, "masks"):
                if r[o] or w[o]:
                    rows.append({"level": level.name, "operand": o, "read (B)": r[o], "written (B)": w[o]})
        return pd.DataFrame(rows)


def _operator_row(kind: str) -> dict[str, Any]:
    return {"operator": kind, "operators": 0, "runs on": "", "MACs": 0, "vector ops": 0.0, "cycles": 0.0,
            "latency share": 0.0, "energy (J)": 0.0, "DRAM (B)": 0.0, "outputs on chip": 0}


def layer_profiles(graph: Graph, profile: Profile) -> dict[str, Profile]:
    """The profile each layer of ``graph`` is costed under: ``profile`` for a layer that reads a tensor the
    host writes (:func:`~hwsim.workload.graph.host_written`: the network's input), as the host stored it
    (NHWC); :func:`~hwsim.cost.mapping.bursts.made_feature_maps` of it for a layer that reads a feature map
    the network made (a chain's gap included: a pooling or branch the layer list does not show made it),
    which the engine stores in its own layout (no IFM-block runs: :mod:`hwsim.cost.mapping.bursts`). The same
    profile for every layer where no level has ``input_block_depth``."""
    made = made_feature_maps(profile)
    host = host_written(graph)
    return {op.layer: profile if any(t in host for t in op.inputs) else made
            for op in graph.ops if op.layer}


def simulate(work: Workload, profile: Profile, mode: str | None = "on_the_fly", tasks: int = 6,
             mask_density: float = 0.5, batch: int = 1, objective: str = "energy",
             steady_state: bool = False, input_sparsity: float | Mapping[str, float] | None = None,
             mapping: Callable[[str, Shape, Profile], MappingCost | None] | None = None,
             output_sparsity: float | Mapping[str, float] | None = None) -> SimResult:
    """Cost every operator of ``work`` on ``profile``: its graph (:mod:`hwsim.workload.graph`; a chain of its
    layers when it has none), each layer on the MAC array under its searched mapping, each non-MAC operator on
    the vector unit (:mod:`hwsim.cost.operator_cost`), with the memory plan's on-chip tensors
    (:mod:`hwsim.cost.memory_plan`).

    Args:
        work: layers (and, from a run, the task's method and stored masks).
        profile: the accelerator.
        mode: ``folded`` or ``on_the_fly`` mask application; ignored (None) when the workload has no method.
        tasks: tasks sharing the backbone (PackNet index width).
        mask_density: KSM fraction of binary-1 entries assumed when the run does not give it.
        batch: images per inference; totals and layers are for the whole batch (``per_image`` beside).
        objective: what the per-layer mapping search minimises: energy, latency or edp. Where the memory plan
            moves a layer's traffic on chip, latency and edp cost the other objectives' mappings too and the
            layer keeps the one ``objective`` prefers once moved (its search sees every tensor in DRAM).
        steady_state: cost one inference of a stream: weights (and masks) that fit on chip stay there
            across inferences (see :mod:`hwsim.cost.residency`); False starts cold, from DRAM. The tensors the
            memory plan keeps on chip stay there either way.
        input_sparsity: the fraction of input activations that are zero, one for every layer or per layer name
            (layers not named, or None: not given, 0 for the gating); on a profile with ``zero_gating`` the MACs
            on them are skipped (:func:`hwsim.cost.layer_cost.cost_of_mapping`), and on one with
            ``dram_compression`` the feature maps in DRAM are run-length coded for them: a layer's inputs
            (but the network's input image) at its own, its outputs at those of the layers that read them
            (:func:`hwsim.cost.dram_compression.coded_maps`); a map whose zeros are not given moves dense.
            Elsewhere it changes nothing.
        mapping: given mappings instead of the search (``ksm-sim --mapping``,
            :func:`hwsim.cost.mapping.given_mapping.mapping_source`): layer name, loop bounds, profile -> the
            cost of its given mapping, or None to search it; a given layer's ``mapping`` notes ``given`` and the
            levels its tiles ``overflow``.
        output_sparsity: on a profile with ``dram_compression``, the fraction of zeros of the outputs a layer
            writes to DRAM, one for every layer or per layer name, instead of its readers' input sparsity (the
            map written before a pooling the workload does not show, or the network's last output).

    Example:
        >>> from hwsim import load_network, load_profile, simulate
        >>> r = simulate(load_network("resnet18"), load_profile("edge_npu"))
        >>> round(r.macs / 1e9, 3)
        1.814
    """
    mode = (mode or "on_the_fly") if work.method is not None else None
    tc = task_cost(work, profile, mode or "on_the_fly", tasks, mask_density)
    live = tc.on_the_fly
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    graph = work.graph if work.graph is not None else chain_graph(work.layers)
    how = executions(graph)
    layers = {layer.name: layer for layer in work.layers}
    # the zeros are checked before the search, on every profile (one that ignores them refuses bad ones too)
    sparsity = _per_layer("input_sparsity", input_sparsity, layers)
    out_sparsity = _per_layer("output_sparsity", output_sparsity, layers)
    plan = plan_memory(graph, how, layers, profile, batch)
    mac = [layers[op.layer] for op, h in zip(graph.ops, how) if h == "mac"]
    shapes = [shape_of(layer, batch) for layer in mac]
    profile_of = layer_profiles(graph, profile)
    given = {} if mapping is None else {
        layer.name: m for layer, s in zip(mac, shapes)
        if (m := mapping(layer.name, s, profile_of[layer.name])) is not None}
    searched_layers = [layer for layer in mac if layer.name not in given]
    searched = [s for s, layer in zip(shapes, mac) if layer.name not in given]

    def search_all(goal: str) -> list[MappingCost]:
        """The searched layers' mappings under ``goal``: one numpy pass for the network's new shapes per
        profile they are costed under."""
        out: list[MappingCost | None] = [None] * len(searched)
        for p in dict.fromkeys(profile_of[layer.name] for layer in searched_layers):
            at = [j for j, layer in enumerate(searched_layers) if profile_of[layer.name] is p]
            for j, m in zip(at, search_many([searched[j] for j in at], p, goal)):
                out[j] = m
        return out

    found = search_all(objective)
    shape_of_layer = dict(zip((layer.name for layer in mac), shapes))
    coded = {}
    if profile.dram_compression is not None:  # which feature maps move run-length coded, with what zeros
        mac_ops = {i: op.layer for i, (op, h) in enumerate(zip(graph.ops, how)) if h == "mac"}
        coded = coded_maps(graph, mac_ops, sparsity, out_sparsity, kept_on_chip(plan, profile))

    def costed(chosen: list[MappingCost]) -> list[LayerCost]:
        """The costed operators (graph order), the searched layers with the mappings ``chosen`` (in order)."""
        picks = iter(chosen)
        out: list[LayerCost] = []
        for op, h in zip(graph.ops, how):
            if h == "mac":
                layer = layers[op.layer]
                m = given.get(layer.name) or next(picks)
                cost = cost_of_mapping(layer, shape_of_layer[layer.name], m, profile_of[layer.name],
                                       live.get(layer.name), batch, sparsity.get(layer.name, 0.0),
                                       coded.get(layer.name, DENSE))
                if layer.name in given:
                    cost = dataclasses.replace(cost, mapping={**(cost.mapping or {}), "given": True})
                out.append(cost)
            elif h == "vector":
                out.append(operator_cost(op, graph, profile, plan.level_of, batch))
        return out

    masks_streamed = {name: load.bits for name, load in live.items()}
    first = costed(found)
    costs, residency = apply_residency(first, graph, how, plan, layers, profile, batch, steady_state, masks_streamed)
    # The search costs a layer as if its tensors came from and went to DRAM; the memory plan then serves some of
    # them on chip (apply_residency), which shortens stalls and on/off-loading by amounts that depend on the
    # mapping: the search's winner may then be beaten, under the objective, by another objective's winner (a
    # mapping that stalled on DRAM in isolation but uses the array better). Where the plan moved a searched
    # layer's traffic, the other objectives' winners are costed the same way too and each layer keeps the
    # mapping its objective prefers once moved (the search's own on ties), so no objective's result is beaten
    # under it by another's. Energy skips it: moving a tensor on chip takes the same bytes off DRAM whichever
    # mapping reads it once, and no energy winner was beaten once moved (4 networks on the 6 bundled profiles,
    # cold and steady state; tests/hwsim/test_objectives.py checks every objective), while the other two
    # searches would cost the default run 3.8x its time
    searched_at = [j for j, c in enumerate(first) if c.mapping is not None and not c.mapping.get("given")
                   and c.name in shape_of_layer] if objective in RECHOSEN else []
    if any(first[j].cycles != costs[j].cycles or first[j].energy_pj != costs[j].energy_pj for j in searched_at):
        costs = list(costs)
        keys = {j: _final_key(costs[j], profile, objective) for j in searched_at}
        for other in OBJECTIVES:
            if other == objective:
                continue
            alt = search_all(other)
            if all(x is y for x, y in zip(alt, found)):
                continue
            moved, _ = apply_residency(costed(alt), graph, how, plan, layers, profile, batch, steady_state,
                                       masks_streamed)
            for j in searched_at:
                k = _final_key(moved[j], profile, objective)
                if k < keys[j]:
                    costs[j], keys[j] = moved[j], k
        costs = tuple(costs)
    # ---- LoRA on the fly (hwsim.cost.lora_cost): each adapter's low-rank branch, fused with its layer, costed as two
    # more layers (A, B) after the network's own. The one place LoRA's extra MACs, weight traffic and
    # intermediate activations enter the cost.
    if mode == "on_the_fly" and catalogue.get(work.method).mask.branch:
        costs += lora.branch_costs(work, profile, batch, objective)
    if needs_chip_level(profile):  # the plan moved traffic on chip: latencies, and what is charged per cycle, anew
        costs = tuple(chip_level(c, profile) for c in costs)
    return SimResult(profile=profile, work=work, mode=mode, task=tc, layers=costs, batch=batch, objective=objective,
                     steady_state=steady_state, residency=residency)


def _per_layer(what: str, value: float | Mapping[str, float] | None,
               layers: Mapping[str, object]) -> dict[str, float]:
    """A fraction given for every layer, per layer name, or not at all (None), as a dict by layer name; a value
    that is not a number in [0, 1] (a bool, a string, None, NaN) is refused in one line naming ``what``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        if not _is_fraction(value):
            raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
        return dict.fromkeys(layers, float(value))
    out = dict(value)
    unknown = sorted(set(out) - set(layers))
    if unknown:
        raise ValueError(f"{what} names layers the workload does not have: {', '.join(unknown)}")
    bad = sorted(k for k, v in out.items() if not _is_fraction(v))
    if bad:
        raise ValueError(f"{what} must be in [0, 1]: {', '.join(f'{k}={out[k]!r}' for k in bad)}")
    return {k: float(v) for k, v in out.items()}


def _is_fraction(v: object) -> bool:
    """A real number (not a bool) in [0, 1]; NaN is not."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0


RECHOSEN = ("latency", "edp")  # the objectives whose layers are chosen again once the memory plan moved traffic


def _final_key(cost: LayerCost, profile: Profile, objective: str) -> tuple[bool, float]:
    """What a layer's mapping is chosen by once the memory plan moved its traffic: a mapping whose tiles fit
    first (as the search), then the objective on the layer's final cycles and energy."""
    c = chip_level(cost, profile)
    return bool((c.mapping or {}).get("overflow")), float(objective_key(sum(c.energy_pj.values()), c.cycles,
                                                                       objective))


def results_document(results: list[SimResult], with_layers: bool = True) -> dict[str, Any]:
    """The ``--json`` document: ``{"format": "ksm-sim/1", "results": [...]}``."""
    return {"format": FORMAT, "results": [r.to_dict(with_layers) for r in results]}
