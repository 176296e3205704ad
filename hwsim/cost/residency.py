"""On-chip residency across layers and across inferences, and how many tasks fit on chip.

Each layer is costed alone by :func:`hwsim.cost.layer_cost.layer_cost`: its inputs come from DRAM and its outputs
go back. Two effects cross layer boundaries, and this module applies them to the per-layer costs:

- **Activations between layers** (always): when a layer's output feeds the next layer (same channels
  and map size) and the layer's input and output fit together in the outermost on-chip memory that
  holds both activations (two ping-pong halves, as a layer-by-layer accelerator keeps them), the output
  is written to that memory instead of DRAM and the next layer reads it from there. Inter-layer reuse
  as ZigZag's ``exploit_data_locality`` stage does it (Mei et al., IEEE TC 2021; Stream, Symons et al.).
- **Weights across inferences** (``steady_state``): one inference in a stream of many. The weights (and
  the task's masks, which travel with them) of the layers that fit in the outermost on-chip memory that
  holds weights stay there, in execution order until the room left beside the largest activation
  working set is used up, as the Edge TPU compiler caches a model's parameters in its 8 MB SRAM and
  streams the rest (coral.ai, "Edge TPU Compiler: parameter data caching"). Their DRAM reads become
  reads of that memory; the one-time load is amortised over the stream. Cold (the default) starts from DRAM.

:func:`tasks_on_chip_frame` says how many tasks' task-specific data fit on chip beside the backbone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import pandas as pd

from hwsim.cost.layer_cost import LayerCost, input_elems, output_elems, weight_elems
from hwsim.workload.layers import Layer
from hwsim.hardware.profile import MemoryLevel, Profile


def activation_level(profile: Profile) -> MemoryLevel | None:
    """The outermost shared on-chip memory that holds both inputs and outputs, if any."""
    for level in profile.levels[1:]:
        if not level.per_pe and {"inputs", "outputs"} <= set(level.operands):
            return level
    return None


def weight_level(profile: Profile) -> MemoryLevel | None:
    """The outermost shared on-chip memory that holds weights, if any."""
    for level in profile.levels[1:]:
        if not level.per_pe and "weights" in level.operands:
            return level
    return None


def _activation_bytes(layer: Layer, profile: Profile, batch: int) -> tuple[float, float]:
    pb = profile.precision_bits
    return batch * input_elems(layer) * pb.inputs / 8, batch * output_elems(layer) * pb.outputs / 8


def _feeds(a: Layer, b: Layer) -> bool:
    """Whether ``b`` reads ``a``'s output (same channels and map size; the workload keeps no graph)."""
    return a.out_channels == b.in_channels and tuple(a.output_hw) == tuple(b.input_hw)


_COST_FIELDS = tuple(f.name for f in dataclasses.fields(LayerCost))


def _replace(cost: LayerCost, **changes: object) -> LayerCost:
    """``dataclasses.replace`` for a LayerCost (no ``__post_init__``, no init-only fields), without its
    per-call field introspection: the same object, field for field."""
    new = object.__new__(LayerCost)
    for name in _COST_FIELDS:
        object.__setattr__(new, name, changes[name] if name in changes else getattr(cost, name))
    return new


def _move(cost: LayerCost, operand: str, dram: MemoryLevel, to: MemoryLevel, reads: bool, writes: bool,
          saved: str | None) -> LayerCost:
    """Serve ``operand``'s DRAM reads and/or writes of one layer from ``to`` instead (bytes and energy);
    ``saved`` names the latency part ("onload" or "offload") that no longer waits for DRAM."""
    src, dst = (dram.name, operand), (to.name, operand)
    r = cost.read_bytes.get(src, 0.0) if reads else 0.0
    w = cost.write_bytes.get(src, 0.0) if writes else 0.0
    if r == 0.0 and w == 0.0:
        return cost
    rb, wb, en = dict(cost.read_bytes), dict(cost.write_bytes), dict(cost.energy_pj)
    rb[src] = rb.get(src, 0.0) - r
    wb[src] = wb.get(src, 0.0) - w
    rb[dst] = rb.get(dst, 0.0) + r
    wb[dst] = wb.get(dst, 0.0) + w
    en[src] = en.get(src, 0.0) - (r * 8 / dram.word_bits * dram.read_energy_pj
                                  + w * 8 / dram.word_bits * dram.write_energy_pj)
    en[dst] = en.get(dst, 0.0) + r * 8 / to.word_bits * to.read_energy_pj + w * 8 / to.word_bits * to.write_energy_pj
    onload, offload, cut = cost.onload_cycles, cost.offload_cycles, 0.0
    if saved == "onload":
        cut, onload = onload, 0.0
    elif saved == "offload":
        cut, offload = offload, 0.0
    elif saved:
        raise KeyError(f"{saved}_cycles")
    return _replace(cost, read_bytes=rb, write_bytes=wb, energy_pj=en, cycles=cost.cycles - cut, onload_cycles=onload,
                    offload_cycles=offload)


def apply_residency(costs: Sequence[LayerCost], layers: Sequence[Layer], profile: Profile, batch: int = 1,
                    steady_state: bool = False, mask_bits: dict[str, float] | None = None
                    ) -> tuple[tuple[LayerCost, ...], dict[str, object]]:
    """The per-layer costs with inter-layer (and, in steady state, inter-inference) residency applied.

    Returns the new costs and a summary: which layers' outputs stayed on chip, and the bytes of weights
    (and masks) resident across inferences.
    """
    out = list(costs)
    dram = profile.dram
    act = activation_level(profile)
    kept: list[str] = []
    acts = [_activation_bytes(la, profile, batch) for la in layers]  # (input, output) bytes per layer
    if act is not None:
        for i in range(len(layers) - 1):
            a, b = layers[i], layers[i + 1]
            in_b, out_b = acts[i]
            if not _feeds(a, b) or in_b + out_b > act.size_bytes:
                continue
            nxt_out = acts[i + 1][1]
            if out_b + nxt_out > act.size_bytes:  # the next layer needs it beside its own output
                continue
            out[i] = _move(out[i], "outputs", dram, act, reads=True, writes=True, saved="offload")
            out[i + 1] = _move(out[i + 1], "inputs", dram, act, reads=True, writes=False, saved=None)
            kept.append(a.name)
    resident_weights = 0.0
    cached: list[str] = []
    wl = weight_level(profile)
    if steady_state and wl is not None:
        pb = profile.precision_bits
        room = wl.size_bytes - max((sum(x) for x in acts), default=0.0)
        mask_bits = mask_bits or {}
        for i, layer in enumerate(layers):
            need = weight_elems(layer) * pb.weights / 8 + mask_bits.get(layer.name, 0.0) / 8
            if resident_weights + need > room:
                break
            resident_weights += need
            cached.append(layer.name)
            for operand in ("weights", "masks"):
                out[i] = _move(out[i], operand, dram, wl, reads=True, writes=False, saved=None)
            if i == 0 or layers[i - 1].name in kept:  # its inputs are on chip too: nothing to wait for
                out[i] = _replace(out[i], cycles=out[i].cycles - out[i].onload_cycles, onload_cycles=0.0)
    return tuple(out), {"outputs_kept_on_chip": kept, "weights_cached_layers": cached,
                        "weights_cached_bytes": resident_weights}


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
