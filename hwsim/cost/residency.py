"""On-chip residency across layers and across inferences, and how many tasks fit on chip.

Each layer is costed alone by :func:`hwsim.cost.layer_cost.layer_cost`: its inputs come from DRAM and its outputs
go back. Two effects cross layer boundaries, and this module applies them to the per-layer costs:

- **Activations between operators** (always): the memory plan (:mod:`hwsim.cost.memory_plan`) keeps on chip
  every tensor that fits beside the working sets of the operators running while it is alive; a layer whose
  output (or input) the plan kept there writes (reads) that memory instead of DRAM. Inter-layer reuse as
  ZigZag's ``exploit_data_locality`` stage does it on a chain (Mei et al., IEEE TC 2021; Stream, Symons et
  al.), over the whole graph.
- **Weights across inferences** (``steady_state``): one inference in a stream of many. The weights (and
  the task's masks, which travel with them) of the layers that fit in the outermost on-chip memory that
  holds weights stay there, in execution order until the room left beside the memory plan's peak
  (activations staged and kept on chip) is used up, as the Edge TPU compiler caches a model's parameters in
  its 8 MB SRAM and streams the rest (coral.ai, "Edge TPU Compiler: parameter data caching"). Their DRAM reads become
  reads of that memory; the one-time load is amortised over the stream. Cold (the default) starts from DRAM.

:func:`tasks_on_chip_frame` says how many tasks' task-specific data fit on chip beside the backbone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd

from hwsim.cost.layer_cost import LayerCost, input_elems, output_elems, weight_elems
from hwsim.cost.memory_plan import MemoryPlan, activation_level, where
from hwsim.hardware.profile import MemoryLevel, Profile
from hwsim.workload.graph import Graph, host_written
from hwsim.workload.layers import Layer


def weight_level(profile: Profile) -> MemoryLevel | None:
    """The outermost shared on-chip memory that holds weights, if any."""
    for level in profile.levels[1:]:
        if not level.per_pe and "weights" in level.operands:
            return level
    return None


def _activation_bytes(layer: Layer, profile: Profile, batch: int) -> tuple[float, float]:
    pb = profile.precision_bits
    return batch * input_elems(layer) * pb.inputs / 8, batch * output_elems(layer) * pb.outputs / 8


_COST_FIELDS = tuple(f.name for f in dataclasses.fields(LayerCost))


def _replace(cost: LayerCost, **changes: object) -> LayerCost:
    """``dataclasses.replace`` for a LayerCost (no ``__post_init__``, no init-only fields), without its
    per-call field introspection: the same object, field for field."""
    new = object.__new__(LayerCost)
    for name in _COST_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(cost, name))
    return new


def _moved(cost: LayerCost, moves: Sequence[tuple[str, MemoryLevel, bool, bool]], dram: MemoryLevel,
           saved: Sequence[str], **changes: object) -> LayerCost:
    """One layer's cost with each ``(operand, level, reads, writes)`` of ``moves`` served from ``level`` instead
    of DRAM (bytes and energy), the latency parts named in ``saved`` ("onload", "offload") no longer waiting
    for DRAM, the port stall recomputed once for the levels involved (:func:`_port_stall`), and ``changes``."""
    rb, wb, en = dict(cost.read_bytes), dict(cost.write_bytes), dict(cost.energy_pj)
    touched = {dram.name: dram}
    for operand, to, reads, writes in moves:
        src, dst = (dram.name, operand), (to.name, operand)
        r = rb.get(src, 0.0) if reads else 0.0
        w = wb.get(src, 0.0) if writes else 0.0
        if r == 0.0 and w == 0.0:
            continue
        touched[to.name] = to
        rb[src] = rb.get(src, 0.0) - r
        wb[src] = wb.get(src, 0.0) - w
        rb[dst] = rb.get(dst, 0.0) + r
        wb[dst] = wb.get(dst, 0.0) + w
        en[src] = en.get(src, 0.0) - (r * 8 / dram.word_bits * dram.read_energy_pj
                                      + w * 8 / dram.word_bits * dram.write_energy_pj)
        en[dst] = en.get(dst, 0.0) + r * 8 / to.word_bits * to.read_energy_pj + w * 8 / to.word_bits * to.write_energy_pj
    onload = 0.0 if "onload" in saved else cost.onload_cycles
    offload = 0.0 if "offload" in saved else cost.offload_cycles
    if len(touched) == 1:  # nothing moved
        return _replace(cost, onload_cycles=onload, offload_cycles=offload,
                        cycles=cost.cycles - (cost.onload_cycles - onload) - (cost.offload_cycles - offload),
                        **changes)
    # the first tiles' on-loading stays out of the port's overlapped time even when it no longer waits (the
    # inputs were on chip, or the next image came in during the previous inference)
    stall, bound = _port_stall(cost, rb, wb, cost.onload_cycles, offload, tuple(touched.values()))
    cycles = cost.compute_cycles + cost.vector_cycles + stall + onload + offload
    return _replace(cost, read_bytes=rb, write_bytes=wb, energy_pj=en, onload_cycles=onload, offload_cycles=offload,
                    cycles=cycles, stall_cycles=stall, bound=bound, **changes)


def _port_stall(cost: LayerCost, rb: dict[tuple[str, str], float], wb: dict[tuple[str, str], float],
                onload: float, offload: float, moved: tuple[MemoryLevel, ...]) -> tuple[float, str]:
    """The layer's port stall once traffic moved between DRAM (``moved[0]``) and the shared levels after it: the
    time each of them needs for its bytes (the mapping's port model, :mod:`hwsim.cost.mapping.one_mapping`:
    DRAM one port less the on/off-loading charged apart, an on-chip memory a read and a write port) beyond the
    compute. A stall set by another level (a register file) is kept; one set by a level the traffic left is
    recomputed, so a layer whose tensors all stayed on chip no longer waits for off-chip memory."""
    names = {lv.name for lv in moved}
    stall, bound = (0.0, "compute") if cost.bound in names else (cost.stall_cycles, cost.bound)
    busy = cost.compute_cycles + cost.vector_cycles
    r_by: dict[str, float] = {}
    w_by: dict[str, float] = {}
    for (name, _), v in rb.items():
        r_by[name] = r_by.get(name, 0.0) + v
    for (name, _), v in wb.items():
        w_by[name] = w_by.get(name, 0.0) + v
    for lv in moved:
        r, w = r_by.get(lv.name, 0.0), w_by.get(lv.name, 0.0)
        bw = lv.bandwidth_bytes_per_cycle
        t = (r + w) / bw - onload - offload if lv is moved[0] else max(r, w) / bw
        if t - busy > stall:
            stall, bound = t - busy, lv.name
    return stall, bound


def kept_on_chip(plan: MemoryPlan, profile: Profile) -> Callable[[Sequence[str]], bool]:
    """Whether the memory plan keeps every one of some tensors (at least one) at ``profile``'s activation level:
    compared by level name, as a plan is shared by designs with equal levels."""
    act = activation_level(profile)

    def on_chip(tensors: Sequence[str]) -> bool:
        return bool(tensors) and act is not None and all(plan.level_of[t].name == act.name for t in tensors)

    return on_chip


def apply_residency(costs: Sequence[LayerCost], graph: Graph, executions: Sequence[str], plan: MemoryPlan,
                    layers: Mapping[str, Layer], profile: Profile, batch: int = 1, steady_state: bool = False,
                    mask_bits: dict[str, float] | None = None) -> tuple[tuple[LayerCost, ...], dict[str, object]]:
    """The costs of the graph's costed operators (``mac`` and ``vector``, in graph order) with the memory plan
    (:func:`hwsim.cost.memory_plan.plan_memory`) and, in steady state, the weights kept across inferences applied.

    A layer (costed as if every tensor came from and went to off-chip memory) has the traffic of an input or
    output that the plan kept on chip served by the activation level instead; a vector operator was costed
    where its tensors live already. Returns the new costs and a summary: which operators' outputs stayed on
    chip, the plan's peak, the weights (and masks) resident across inferences.
    """
    out = list(costs)
    dram = profile.dram
    act = activation_level(profile)
    level_of = plan.level_of
    costed = [i for i, how in enumerate(executions) if how in ("mac", "vector")]
    on_chip = kept_on_chip(plan, profile)
    host = host_written(graph)  # the next image, fetched while this one runs

    kept = [graph.ops[i].name for i in costed if on_chip(graph.ops[i].outputs)]
    resident_weights = 0.0
    cached: set[str] = set()
    wl = weight_level(profile)
    if steady_state and wl is not None:  # weights (and masks) in execution order while they fit the room
        pb = profile.precision_bits
        room = wl.size_bytes - plan.peak_bytes
        mask_bits = mask_bits or {}
        for i in costed:
            if executions[i] != "mac":
                continue
            layer = layers[graph.ops[i].layer]
            need = weight_elems(layer) * pb.weights / 8 + mask_bits.get(layer.name, 0.0) / 8
            if resident_weights + need > room:
                break
            resident_weights += need
            cached.add(layer.name)
    for j, i in enumerate(costed):
        op = graph.ops[i]
        if executions[i] != "mac":
            continue
        moves: list[tuple[str, MemoryLevel, bool, bool]] = []
        saved: list[str] = []
        if on_chip(op.outputs):
            moves.append(("outputs", act, True, True))
            saved.append("offload")
        if on_chip(op.inputs):
            moves.append(("inputs", act, True, False))
        if op.layer in cached:
            moves += [("weights", wl, True, False), ("masks", wl, True, False)]
            if all(t in host or on_chip((t,)) for t in op.inputs):
                saved.append("onload")  # inputs on chip (or the next image, fetched meanwhile): no wait
        out[j] = _moved(out[j], moves, dram, saved, inputs_at=where(op.inputs, level_of),
                        outputs_at=where(op.outputs, level_of))
    cached_names = [graph.ops[i].layer for i in costed if executions[i] == "mac" and graph.ops[i].layer in cached]
    counts: dict[str, dict[str, int]] = {}
    for op, how in zip(graph.ops, executions):
        counts.setdefault(how, {})
        counts[how][op.kind] = counts[how].get(op.kind, 0) + 1
    return tuple(out), {"outputs_kept_on_chip": kept, "weights_cached_layers": cached_names,
                        "weights_cached_bytes": resident_weights, "graph": "chain" if graph.chain else "graph",
                        "activation_peak_bytes": plan.peak_bytes, "buffers_on_chip": len(plan.on_chip),
                        "buffers_spilled": len(plan.spilled), "operators": counts}


def backbone_weight_bytes(layers: Iterable[Layer], profile: Profile) -> float:
    """Shared backbone weights at the profile's weight precision."""
    return sum(weight_elems(la) for la in layers) * profile.precision_bits.weights / 8


def tasks_that_fit(task_bytes: float, layers: Sequence[Layer], profile: Profile, batch: int = 1) -> int:
    """How many tasks' task-specific data (masks + BatchNorm + head) fit in the outermost on-chip memory
    holding weights beside the backbone's weights and the largest activation working set (0 when the
    backbone itself does not fit; a large number stands for "all" when a task adds nothing)."""
    wl = weight_level(profile)
    if wl is None:
        return 0
    act = max((sum(_activation_bytes(la, profile, batch)) for la in layers), default=0.0)
    room = wl.size_bytes - act - backbone_weight_bytes(layers, profile)
    if room < 0:
        return 0
    if task_bytes <= 0:
        return 10**9
    return math.floor(room / task_bytes)


def tasks_on_chip_frame(results: Iterable[object]) -> pd.DataFrame:
    """One row per (method, profile) of :class:`hwsim.cost.simulate.SimResult`\\ s: on-chip bytes, backbone bytes,
    task-specific bytes per task, and how many tasks' task-specific data fit beside the backbone."""
    rows = []
    seen = set()
    for r in results:
        key = (r.work.method, r.profile.name, r.mode)
        if key in seen:
            continue
        seen.add(key)
        wl = weight_level(r.profile)
        per_task = r.task.task_specific_bytes
        rows.append({"method": r.work.method or "-", "profile": r.profile.name, "mode": r.mode or "-",
                     "on-chip weight memory (B)": wl.size_bytes if wl else 0.0,
                     "backbone weights (B)": backbone_weight_bytes(r.work.layers, r.profile),
                     "task-specific (B/task)": per_task,
                     "tasks that fit": tasks_that_fit(per_task, r.work.layers, r.profile, r.batch)})
    return pd.DataFrame(rows)
