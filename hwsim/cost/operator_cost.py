"""What a non-MAC operator costs, and how each operator of a graph is executed.

Every operator of a :class:`~hwsim.workload.graph.Graph` is executed one of four ways (:func:`execution`):

- ``mac``: a conv or linear layer, costed on the MAC array by :func:`hwsim.cost.layer_cost.cost_of_mapping`;
- ``alias``: concatenation, split and reshapes move no data: producers write into slices of the concatenated
  buffer and consumers read slices of a split one (as Vela writes a concatenation's inputs straight into its
  output, "ConcatSliceWrite", and TFLite's reshape shares its input's buffer);
- ``fused``: an activation or an unfused BatchNorm whose input has no other reader and is written by an
  operator with an output stage (a layer, an element-wise operator) is applied there, on the way out, for
  free (the per-channel requantisation of an int8 output stage: TFLite's fused activations, Vela's fused
  activation functions, the Edge TPU compiler's fused ReLU/ReLU6);
- ``vector``: everything else runs on the profile's vector unit (:class:`~hwsim.hardware.profile.VectorUnit`),
  :func:`operator_cost`, reading each input from the memory level it lives in and writing its output to the
  level the memory plan (:mod:`hwsim.cost.memory_plan`) chose. A profile without a vector unit runs them on the
  MAC array, one operation per PE per cycle at the MAC's energy, and says so
  (:attr:`~hwsim.hardware.profile.Profile.vector`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hwsim.cost.layer_cost import LayerCost, chip_level
from hwsim.cost.memory_plan import where
from hwsim.cost.pool_engine import global_pool_cycles, pool_cycles
from hwsim.hardware.profile import MemoryLevel, Profile
from hwsim.workload.graph import ALIAS_KINDS, FUSABLE_KINDS, MAC_KINDS, Graph, Op

OUTPUT_STAGE = ("mac", "vector", "fused")  # executions that end in an output stage an activation can join


def executions(graph: Graph) -> tuple[str, ...]:
    """How each operator runs: ``mac``, ``alias``, ``fused`` or ``vector`` (see the module docstring)."""
    if "executions" not in graph.memo:
        graph.memo["executions"] = _executions(graph)
    return graph.memo["executions"]


def _executions(graph: Graph) -> tuple[str, ...]:
    out: list[str] = []
    for op in graph.ops:
        if op.kind in MAC_KINDS:
            out.append("mac")
        elif op.kind in ALIAS_KINDS:
            out.append("alias")
        elif op.kind in FUSABLE_KINDS and _fusable(graph, op, out):
            out.append("fused")
        else:
            out.append("vector")
    return tuple(out)


def _fusable(graph: Graph, op: Op, done: list[str]) -> bool:
    """An activation joins its producer's output stage when it has one input, read by nothing else."""
    if len(op.inputs) != 1 or len(op.outputs) != 1:
        return False
    (x,) = op.inputs
    producer = graph.producer.get(x)
    return (producer is not None and done[producer] in OUTPUT_STAGE and len(graph.consumers.get(x, ())) == 1
            and len(graph.ops[producer].outputs) == 1)


def operations(op: Op, graph: Graph) -> int:
    """Vector operations of one operator per inference (:data:`hwsim.workload.graph.KINDS` says which count)."""
    out = sum(graph.elems(t) for t in op.outputs)
    if op.kind == "elementwise":
        return out * max(1, len(op.inputs) - 1)
    if op.kind == "pool":
        return out * op.window[0] * op.window[1]
    if op.kind == "global_pool":
        return sum(graph.elems(t) for t in op.inputs)
    if op.kind == "softmax":
        return 3 * out
    return out


def pool_engine_cycles(op: Op, graph: Graph, profile: Profile) -> float | None:
    """One image's cycles of a pooling operator where the profile runs pooling on the MAC engine's
    micro-blocks (``vector_unit.pooling``, :mod:`hwsim.cost.pool_engine`); None for any other operator or
    profile (its operations at the unit's rate)."""
    unit, ws = profile.vector, profile.weight_sets
    if unit.pooling is None or ws is None or op.kind not in ("pool", "global_pool"):
        return None
    ins, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if op.kind == "pool":
        return pool_cycles(*_chw(out), op.window, ws, unit.pooling) if len(out) >= 3 else None
    if len(ins) < 3 or graph.elems(op.outputs[0]) != ins[-3]:
        return None  # not a spatial reduction of a (C, H, W) map: at the unit's rate
    c, iy, ix = _chw(ins)
    if op.onnx in MEAN_OPS:
        return global_pool_cycles(c, iy, ix, ws, unit.pooling)
    return pool_cycles(c, 1, 1, (iy, ix), ws, unit.pooling)  # a maximum: a window the input's size


MEAN_OPS = ("GlobalAveragePool", "ReduceMean", "ReduceSum")  # what a TFLite MEAN or SUM would be


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = shape[-3:]
    return c, h, w


def _accesses(nbytes: float, level: MemoryLevel) -> float:
    return nbytes * 8 / level.word_bits


def operator_cost(op: Op, graph: Graph, profile: Profile, level_of: Mapping[str, MemoryLevel],
                  batch: int = 1) -> LayerCost:
    """Traffic, energy and latency of one operator on the vector unit (for the whole batch).

    It reads every input tensor once from the level ``level_of`` names and writes every output once to its
    level; its latency is the larger of its operations at the unit's rate and each level's traffic at that
    level's bandwidth (a roofline: the unit streams, so compute and memory overlap). ``level_of`` maps every
    tensor of the operator to its memory level.
    """
    unit = profile.vector
    pb = profile.precision_bits
    n = operations(op, graph) * batch
    reads: dict[tuple[str, str], float] = {}
    writes: dict[tuple[str, str], float] = {}
    for t in op.inputs:
        key = (level_of[t].name, "inputs")
        reads[key] = reads.get(key, 0.0) + graph.elems(t) * pb.inputs / 8 * batch
    for t in op.outputs:
        key = (level_of[t].name, "outputs")
        writes[key] = writes.get(key, 0.0) + graph.elems(t) * pb.outputs / 8 * batch
    levels = {lv.name: lv for lv in profile.levels}
    energy: dict[tuple[str, str], float] = {}
    for (name, operand), b in reads.items():
        energy[(name, operand)] = energy.get((name, operand), 0.0) + _accesses(b, levels[name]) * levels[name].read_energy_pj
    for (name, operand), b in writes.items():
        energy[(name, operand)] = energy.get((name, operand), 0.0) + _accesses(b, levels[name]) * levels[name].write_energy_pj
    energy[("vector", "vector")] = n * unit.energy_pj_per_op
    engine = pool_engine_cycles(op, graph, profile)
    compute = math.ceil(n / unit.rate(op.kind)) if engine is None else math.ceil(engine * batch)
    memory, bound = 0.0, "compute"
    for name, level in levels.items():
        r = sum(b for (lv, _), b in reads.items() if lv == name)
        w = sum(b for (lv, _), b in writes.items() if lv == name)
        if not r and not w:
            continue
        bw = level.bandwidth_bytes_per_cycle
        t = (r + w) / bw if level is profile.dram else max(r, w) / bw  # DRAM: one shared port
        if t > max(memory, compute):
            bound = name
        memory = max(memory, t)
    stall = max(0.0, memory - compute)
    cycles = compute + stall
    cost = LayerCost(name=op.name, kind=op.kind, macs=0, compute_cycles=0, cycles=cycles, utilization=0.0,
                     bound=bound, read_bytes=reads, write_bytes=writes, energy_pj=energy, mask_ops=0.0,
                     stall_cycles=stall, vector_cycles=float(compute), vector_ops=float(n), batch=batch,
                     inputs_at=where(op.inputs, level_of), outputs_at=where(op.outputs, level_of))
    return chip_level(cost, profile)  # leakage, clock and control for its cycles (its own rate bounds its outputs)
