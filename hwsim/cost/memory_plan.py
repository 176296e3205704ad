"""Which activation tensors stay on chip: tensor liveness over a graph and a capacity planner.

The graph's operators run one after another in its stated order (:class:`~hwsim.workload.graph.Graph`). A
tensor is **live** from the step of the operator that writes it to the step of its last reader, as TFLite's
arena planner allocates a tensor at its first producer and frees it after its last consumer
(``tensorflow/lite/arena_planner.cc``). Tensors that share bytes (a concatenation's inputs and its output, a
split's outputs and its input, a reshape, an activation fused into its producer: see
:func:`hwsim.cost.operator_cost.executions`) are one **buffer**, live for the union of their lives.

The on-chip memory that may hold activations is the outermost shared level holding both inputs and outputs
(:func:`activation_level`). At each step the running operator stages its whole working set there (every
input and output it touches; a conv's input by the footprint its window reads, padding included, or the whole
buffer when that is larger), as a layer-by-layer accelerator stages its input and output halves. A buffer
stays on chip when, at every step of its life, the working set of the operator running plus every buffer
alive across that step (itself included when the operator does not touch it) fits the level's capacity; a
buffer that does not fit is **spilled** to off-chip memory for its whole life: its producer writes it there
and every reader reads it from there. The buffers alive across a step are all counted, whether they stay or
not, so no buffer's place depends on another's: the plan is conservative (a planner trading one buffer
against another could keep more), its decisions do not depend on an order, and more on-chip memory never
spills a tensor that fitted (a greedy first-fit, the other choice, can: a long-lived tensor that starts to fit
crowds out two others). Capacity only is checked, no offsets (a compiler that compacts its arena, as Vela's
tensor allocators search to do, reaches this bound; fragmentation can only spill more).
The network's input and output tensors, and tensors that no operator of the graph writes or reads (a chain's
gaps), live off chip.

On a chain (each layer reading the one before), a layer's output stays on chip when the producing and the
consuming layer's working sets both fit, the rule hwsim applied before graphs; it differs from that rule only
in staging the consumer's input by the footprint its window reads (the earlier rule took the tensor's size
there, and the footprint at the producer), and in counting a tensor larger than a strided window's footprint
(a 1x1 stride-2 shortcut's input) whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwsim.cost.layer_cost import input_elems, output_elems
from hwsim.hardware.profile import MemoryLevel, Profile
from hwsim.workload.graph import Graph, host_written
from hwsim.workload.layers import Layer


def activation_level(profile: Profile) -> MemoryLevel | None:
    """The outermost shared on-chip memory that holds both inputs and outputs, if any."""
    for level in profile.levels[1:]:
        if not level.per_pe and {"inputs", "outputs"} <= set(level.operands):
            return level
    return None


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """Where every tensor of a graph lives, and the on-chip occupancy the plan reaches.

    ``level_of`` maps each tensor to its memory level; ``buffer_of`` each tensor to its buffer (the name of
    the buffer's first tensor); ``on_chip`` lists the buffers kept on chip; ``peak_bytes`` is the largest
    occupancy of the activation level over the steps (working set plus kept buffers), what the weights kept
    across inferences must leave free.
    """

    level_of: Mapping[str, MemoryLevel]
    buffer_of: Mapping[str, str]
    on_chip: tuple[str, ...]
    spilled: tuple[str, ...]
    peak_bytes: float
    occupancy: tuple[float, ...]


def where(tensors: Sequence[str], level_of: Mapping[str, MemoryLevel]) -> str:
    """The levels ``tensors`` live in, each once, in order (``sram_8MB`` or ``host+sram_8MB``): what the
    per-operator output says about an operator's inputs and outputs."""
    return "+".join(dict.fromkeys(level_of[t].name for t in tensors))


class _Buffers:
    """Union-find over tensor names: tensors sharing bytes."""

    def __init__(self, names: Sequence[str]) -> None:
        self.parent = {n: n for n in names}

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def join(self, names: Sequence[str]) -> None:
        roots = [self.find(n) for n in names]
        for r in roots[1:]:
            if r != roots[0]:
                self.parent[r] = roots[0]


def _alive(lo: np.ndarray, hi: np.ndarray, sizes: np.ndarray, steps: int) -> np.ndarray:
    """Per step, the bytes of the buffers alive at it (each alive from step ``lo`` to ``hi`` inclusive)."""
    diff = np.zeros(steps + 1)
    np.add.at(diff, lo, sizes)
    np.add.at(diff, hi + 1, -sizes)
    return np.cumsum(diff)[:steps]


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(values[lo[i]:hi[i] + 1])`` for every i, by a sparse table (n log n, not n x lifetime)."""
    table = [values]
    width = 1
    while 2 * width <= len(values):
        prev = table[-1]
        table.append(np.maximum(prev[:-width], prev[width:]))
        width *= 2
    span = hi - lo + 1
    level = np.floor(np.log2(span)).astype(np.int64)
    out = np.empty(len(lo))
    for k in np.unique(level):
        pick = level == k
        row = table[k]
        out[pick] = np.maximum(row[lo[pick]], row[hi[pick] - (1 << k) + 1])
    return out


def plan_memory(graph: Graph, executions: Sequence[str], layers: Mapping[str, Layer], profile: Profile,
                batch: int = 1) -> MemoryPlan:
    """Place every tensor of ``graph`` on chip or off chip (see the module docstring).

    ``executions`` says how each operator runs (:func:`hwsim.cost.operator_cost.executions`); ``layers`` maps a
    layer's name to its :class:`~hwsim.workload.layers.Layer` (a conv's staged input is its window's footprint).
    The plan depends on the profile only through the activation level's size and the activation precisions: it
    is kept with the graph for the next design that shares them (a sweep over arrays plans once).
    """
    act = activation_level(profile)
    pb = profile.precision_bits
    key = ("plan", tuple(executions), None if act is None else (act.name, act.size_bytes), profile.dram.name,
           pb.inputs, pb.outputs, batch, tuple(layers.get(op.layer) for op in graph.ops if op.layer))
    plan = graph.memo.get(key)
    if plan is None:
        plan = _plan(graph, executions, layers, profile, batch)
        if len(graph.memo) > 256:  # a sweep of many sizes: keep the memo bounded
            graph.memo.clear()
        graph.memo[key] = plan
    return plan


def _plan(graph: Graph, executions: Sequence[str], layers: Mapping[str, Layer], profile: Profile,
          batch: int) -> MemoryPlan:
    """:func:`plan_memory` without the memo."""
    pb = profile.precision_bits
    names = list(graph.tensors)
    buffers = _Buffers(names)
    for op, how in zip(graph.ops, executions):
        if how in ("alias", "fused"):
            buffers.join([*op.inputs, *op.outputs])
    root = {t: buffers.find(t) for t in names}

    def nbytes(t: str, bits: int) -> float:
        return graph.elems(t) * bits / 8 * batch

    size: dict[str, float] = {}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    pinned: set[str] = set()
    host = host_written(graph)
    for t in names:
        b = root[t]
        size[b] = max(size.get(b, 0.0), nbytes(t, pb.outputs))
        if t in host or t in graph.outputs or t not in graph.producer or t not in graph.consumers:
            pinned.add(b)  # enters or leaves the network, or crosses a gap of a chain: off chip
    steps = len(graph.ops)
    staged: list[dict[str, float]] = [{} for _ in range(steps)]  # per step: buffer -> bytes the operator touches
    for i, (op, how) in enumerate(zip(graph.ops, executions)):
        for t in op.outputs:
            first[root[t]] = min(first.get(root[t], i), i)
        for t in op.inputs:
            last[root[t]] = max(last.get(root[t], i), i)
        if how not in ("mac", "vector"):
            continue
        layer = layers.get(op.layer) if how == "mac" and op.layer else None
        for t in dict.fromkeys(op.inputs):
            need = input_elems(layer) * pb.inputs / 8 * batch if layer is not None else nbytes(t, pb.inputs)
            staged[i][root[t]] = staged[i].get(root[t], 0.0) + need
        for t in dict.fromkeys(op.outputs):
            need = output_elems(layer) * pb.outputs / 8 * batch if layer is not None else nbytes(t, pb.outputs)
            staged[i][root[t]] = staged[i].get(root[t], 0.0) + need
    placeable = [b for b in size if b not in pinned and b in first and b in last]
    lo = np.array([first[b] for b in placeable], dtype=np.int64)
    hi = np.array([last[b] for b in placeable], dtype=np.int64)
    whole = np.array([size[b] for b in placeable], dtype=float)
    # the working set of each step, every buffer the operator touches counted whole (it may stay on chip), and
    # the buffers alive across the step that it does not touch, each counted as if it stayed
    working = np.array([sum(max(v, size[b]) if b not in pinned else v for b, v in staged[t].items())
                        for t in range(steps)], dtype=float)
    touched = np.array([sum(size[b] for b in staged[t] if b not in pinned) for t in range(steps)], dtype=float)
    crossing = _alive(lo, hi, whole, steps) - touched
    act = activation_level(profile)
    dram = profile.dram
    if act is not None and placeable:
        fits = _range_max(working + crossing, lo, hi) <= act.size_bytes
    else:
        fits = np.zeros(len(placeable), dtype=bool)
    order = sorted(range(len(placeable)), key=lambda i: (first[placeable[i]], placeable[i]))
    on_chip = [placeable[i] for i in order if fits[i]]
    spilled = [placeable[i] for i in order if not fits[i]]
    kept = set(on_chip)
    level_of = {t: act if root[t] in kept else dram for t in names}
    here = np.array([sum(max(v, size[b]) if b in kept else v for b, v in staged[t].items()) for t in range(steps)],
                    dtype=float)
    held = _alive(lo[fits], hi[fits], whole[fits], steps) - np.array(
        [sum(size[b] for b in staged[t] if b in kept) for t in range(steps)], dtype=float)
    occupancy = tuple(float(x) for x in here + held)
    return MemoryPlan(level_of=level_of, buffer_of=root, on_chip=tuple(on_chip), spilled=tuple(spilled),
                      peak_bytes=max(occupancy, default=0.0), occupancy=occupancy)
