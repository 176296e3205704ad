"""What a task costs beyond the shared backbone: mask storage, task-specific bytes, mask application.

A method is priced by its mask kind in ``hwsim.catalogue``: :data:`STORAGE_RULES` maps each kind
to one rule, which calls the formula below, so a new method of a known kind needs no code here.

Storage per task, by method (bits; no anchor models per-task masks, so these are derived here, with
Sparseloop's bitmask metadata (1 bit per element, Wu et al., MICRO 2022) as precedent):

- ``ksm``: a kernel-wise binary mask, 1 bit per (output channel, input channel of its group), plus the
  soft scale at ``mask_scale`` bits for every entry whose binary bit is 0 (the scale is 0 where the bit
  is 1, so only those entries are kept; the bitmap already gives their positions).
- ``piggyback``: 1 bit per weight element.
- ``packnet``: nothing per task beyond BatchNorm and head. Its map of ``ceil(log2(tasks + 1))`` bits
  per weight element (the index of the task that owns the weight, 0 = free) is stored **once** for
  all tasks (Mallya & Lazebnik 2018, §3: one mask of task indices); ``TaskCost.shared_bits`` holds
  it, and the on-the-fly and folded costs still fetch it with the weights.
- ``cpg``: the task's **pick mask**, 1 bit per weight of an earlier task
  (``sequence.weights.<layer>.earlier`` of the run), plus the weights the task's **growth** added
  (``sequence.weights.<layer>.grown``) at ``weights`` bits; the task-index map is shared as for
  PackNet. The grown layers' extra MACs and traffic need no charge here: the run's ``layers``
  already describe the wider geometry.

For ``packnet`` and ``cpg`` runs the number of tasks is read from the run (``sequence.tasks``), not
taken from the ``tasks`` argument.
- ``finetune``: a full copy of the masked layers' weights at ``weights`` bits.
- ``feature``: no mask.
- ``lora``: the adapter, ``rank * (in/groups * kh * kw + out)`` weights per adapted layer at ``weights``
  bits (:mod:`hwsim.cost.lora_cost`). On the fly it applies no mask to the weights: its low-rank branch is
  costed as two more layers fused with it (:func:`hwsim.cost.lora_cost.branch_costs`, added in :func:`hwsim.cost.simulate.simulate`); folded, the switch reads W and the adapter,
  spends ``rank`` MACs per weight on ``W + (alpha/r) B A`` and writes the task's full weight copy.

Plus, for every method, the classifier head (weights at ``weights`` bits, bias at ``psums`` bits)
and, with ``batchnorm: task``, BatchNorm **in folded form**: a scale and a shift per channel at
``batchnorm`` bits (the four stored tensors fold into these two at deployment).

Application modes:

- ``folded``: at a task switch, read the backbone weights and the mask from DRAM, write the task's
  weights back once; inference then costs exactly the backbone.
- ``on_the_fly``: the mask bits travel with every weight fetch (same refetch factor as the weights at
  every level) and one gate (binary) or multiply (soft scale) is spent per weight entering the array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hwsim import catalogue
from hwsim.cost import lora_cost as lora
from hwsim.errors import InputError
from hwsim.cost.layer_cost import MaskLoad, element_mask_entries, kernel_mask_entries, weight_elems
from hwsim.workload.layers import Layer, Workload
from hwsim.hardware.profile import MaskOpEnergy, Precision, Profile

MODES = ("folded", "on_the_fly")


def ksm_mask_bits(layer: Layer, zeros: float, scale_bits: int) -> float:
    """KSM storage: ``out * in/groups`` binary bits + ``scale_bits`` per zero entry of the binary mask."""
    return kernel_mask_entries(layer) + zeros * scale_bits


def piggyback_mask_bits(layer: Layer) -> int:
    """Piggyback storage: one bit per weight element (Mallya et al., 2018)."""
    return element_mask_entries(layer)


def packnet_bits_per_weight(tasks: int) -> int:
    """PackNet storage per weight: the owning task's index, ``ceil(log2(tasks + 1))`` bits (0 = free)."""
    return max(1, math.ceil(math.log2(tasks + 1)))


def packnet_mask_bits(layer: Layer, tasks: int) -> int:
    """PackNet storage of one layer: weights * ``ceil(log2(tasks + 1))`` bits."""
    return element_mask_entries(layer) * packnet_bits_per_weight(tasks)


def cpg_mask_bits(layer: Layer, tasks: int, earlier: int) -> int:
    """CPG storage of one layer (growth aside): the task index of every weight plus a 1-bit pick
    mask over the ``earlier`` weights owned by earlier tasks."""
    return packnet_mask_bits(layer, tasks) + earlier


def finetune_bits(layer: Layer, weight_bits: int, bias_bits: int = 0) -> int:
    """Fine-tuning storage: a full copy of the layer's weights, and of its bias where it has one (stored, like
    the head's bias, at the accumulator width ``bias_bits``, the precision the int32 bias of an int8 layer has
    in the integer-only scheme of [Jacob18], §2.4)."""
    return weight_elems(layer) * weight_bits + (layer.out_channels * bias_bits if layer.bias else 0)


@dataclass(frozen=True, slots=True)
class LayerMask:
    """One layer's per-task mask: stored bits (growth aside), energy to apply it per weight, grown bits."""

    bits: float
    op_pj: float
    grown_bits: float = 0.0
    assumed_density: float | None = None  # KSM: the density assumed for lack of a stored binary mask
    shared_bits: float = 0.0  # PackNet/CPG: the task-index map, stored once for all tasks, read with each weight


@dataclass(frozen=True, slots=True)
class MaskContext:
    """What a storage rule may read besides the layer: the run's facts and the profile's precisions."""

    precision: Precision
    ops: MaskOpEnergy
    tasks: int
    soft: bool
    density: float
    zeros: Mapping[str, float]  # layer -> zero entries of the stored binary mask
    sequence: Mapping[str, tuple[int, int]]  # layer -> (weights of earlier tasks, weights grown)
    ranks: Mapping[str, int] = field(default_factory=dict)  # LoRA: layer -> adapter rank
    mac_pj: float = 0.0  # energy of one MAC of the array (LoRA's merge at a task switch)


def kernel_rule(layer: Layer, ctx: MaskContext) -> LayerMask:
    """KSM (:func:`ksm_mask_bits`): the soft entries are multiplied, the rest gated."""
    zeros = ctx.zeros.get(layer.name)
    assumed = None
    if zeros is None:
        zeros = (1.0 - ctx.density) * kernel_mask_entries(layer)
        assumed = ctx.density
    soft_entries = zeros if ctx.soft else 0.0
    soft = soft_entries / kernel_mask_entries(layer)
    return LayerMask(ksm_mask_bits(layer, soft_entries, ctx.precision.mask_scale),
                     (1.0 - soft) * ctx.ops.gate + soft * ctx.ops.multiply, assumed_density=assumed)


def element_rule(layer: Layer, ctx: MaskContext) -> LayerMask:
    """Piggyback (:func:`piggyback_mask_bits`)."""
    return LayerMask(piggyback_mask_bits(layer), ctx.ops.gate)


def task_index_rule(layer: Layer, ctx: MaskContext) -> LayerMask:
    """PackNet (:func:`packnet_mask_bits`): nothing of its own per task; the task-index map is stored
    once for all tasks (``shared_bits``) and fetched with the weights on the fly."""
    return LayerMask(0, ctx.ops.gate, shared_bits=float(packnet_mask_bits(layer, ctx.tasks)))


def task_index_pick_rule(layer: Layer, ctx: MaskContext) -> LayerMask:
    """CPG (:func:`cpg_mask_bits`), plus the weights its growth added at ``weights`` bits."""
    earlier, added = ctx.sequence.get(layer.name, (0, 0))
    return LayerMask(earlier, ctx.ops.gate,  # the task's own pick mask; the index map is shared
                     grown_bits=float(added * ctx.precision.weights) if added else 0.0,
                     shared_bits=float(packnet_mask_bits(layer, ctx.tasks)))


def copy_rule(layer: Layer, ctx: MaskContext) -> LayerMask:
    """Fine-tuning (:func:`finetune_bits`): nothing to apply, the copy replaces the weights."""
    return LayerMask(finetune_bits(layer, ctx.precision.weights, ctx.precision.psums), 0.0)


def low_rank_rule(layer: Layer, ctx: MaskContext) -> LayerMask:
    """LoRA (:func:`hwsim.cost.lora_cost.adapter_bits`); ``op_pj``: merging it, ``rank`` MACs per weight."""
    rank = ctx.ranks.get(layer.name, 0)
    return LayerMask(float(lora.adapter_bits(layer, rank, ctx.precision.weights)), rank * ctx.mac_pj)


StorageRule = Callable[[Layer, MaskContext], LayerMask]
# One rule per mask kind of the catalogue (hwsim.catalogue.MaskKind.name); None: the kind stores no mask
# (head only). A kind missing here is refused (:func:`storage_rule`), never priced as if it stored nothing.
STORAGE_RULES: dict[str, StorageRule | None] = {
    catalogue.KERNEL.name: kernel_rule,
    catalogue.ELEMENT.name: element_rule,
    catalogue.TASK_INDEX.name: task_index_rule,
    catalogue.TASK_INDEX_PICK.name: task_index_pick_rule,
    catalogue.COPY.name: copy_rule,
    catalogue.LOW_RANK.name: low_rank_rule,
    catalogue.NONE.name: None,
}


def storage_rule(method: str) -> StorageRule | None:
    """The storage rule of ``method``'s mask kind; one line refuses a kind this module has no rule for."""
    kind = catalogue.get(method).mask
    if kind.name not in STORAGE_RULES:
        raise InputError(f"method {method!r}: mask kind {kind.name!r} has no storage rule in hwsim.cost.mask_cost "
                         f"(known kinds: {', '.join(STORAGE_RULES)})")
    return STORAGE_RULES[kind.name]


@dataclass(frozen=True, slots=True)
class TaskCost:
    """Task-specific storage, per-layer mask work, and the cost of switching to the task."""

    method: str | None
    mode: str | None
    mask_bits: dict[str, float]  # layer -> stored mask bits (the task's copy, for finetune)
    batchnorm_bytes: float
    head_bytes: float
    on_the_fly: dict[str, MaskLoad]  # layer -> per-inference mask work (empty when folded)
    switch_read_bytes: float
    switch_write_bytes: float
    switch_ops: float
    switch_energy_pj: float
    switch_cycles: float
    assumed_density: float | None
    grown_bits: dict[str, float] = field(default_factory=dict)  # cpg: of ``mask_bits``, the grown weights
    shared_bits: dict[str, float] = field(default_factory=dict)  # packnet/cpg: the task-index map, stored once

    @property
    def mask_storage_bits(self) -> float:
        return sum(self.mask_bits.values())

    @property
    def task_specific_bytes(self) -> float:
        return self.mask_storage_bits / 8 + self.batchnorm_bytes + self.head_bytes


def _masked_layers(work: Workload, kind: catalogue.MaskKind) -> list[Layer]:
    """Layers whose weights get a per-task mask (or copy): those a run stores a mask for, else every
    layer except the classifier head."""
    if kind.branch:  # LoRA: the layers with an adapter
        named = set(lora.ranks(work))
        return [layer for layer in work.layers if layer.name in named]
    roles = {"mask", "binary"} if kind.learned else {"weight"}
    named = {t.key.rpartition(".")[0] for t in work.tensors if t.role in roles}
    head = work.head
    if named:
        return [layer for layer in work.layers if layer.name in named]
    return [layer for layer in work.layers if layer is not head]


def task_cost(work: Workload, profile: Profile, mode: str = "on_the_fly", tasks: int = 6,
              mask_density: float = 0.5) -> TaskCost:
    """Storage and application cost of the workload's task on a profile.

    Args:
        work: the layers and, from a run, method, BatchNorm policy and stored tensors.
        profile: gives the precisions and the DRAM energy and bandwidth used for the switch.
        mode: ``folded`` or ``on_the_fly``.
        tasks: number of tasks sharing the backbone (PackNet's index width).
        mask_density: fraction of KSM binary-1 entries assumed when the run does not store the binary
            mask (and ``metrics.mask_density`` is absent), or when costing a network with no run.
    """
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    pb, ops = profile.precision_bits, profile.mask_op_energy_pj
    method = work.method
    if method is None:
        return TaskCost(None, None, {}, 0.0, 0.0, {}, 0.0, 0.0, 0.0, 0.0, 0.0, None)
    traits = catalogue.get(method)
    kind = traits.mask
    rule = storage_rule(method)
    masked = _masked_layers(work, kind) if rule is not None else []
    ctx = MaskContext(precision=pb, ops=ops,
                      tasks=work.sequence_tasks if traits.sequence and work.sequence_tasks else tasks,
                      soft=work.ksm_soft,
                      density=work.mask_density if work.mask_density is not None else mask_density,
                      zeros={t.key.rpartition(".")[0]: t.zeros for t in work.tensors if t.role == "binary"},
                      sequence={name: (earlier, added) for name, earlier, added in work.sequence_weights},
                      ranks=lora.ranks(work) if kind.branch else {}, mac_pj=profile.array.mac_energy_pj)
    assumed = None
    bits: dict[str, float] = {}
    live: dict[str, MaskLoad] = {}
    grown: dict[str, float] = {}
    shared: dict[str, float] = {}
    for layer in masked:
        lm = rule(layer, ctx)  # type: ignore[misc]  # masked is empty without a rule
        if lm.assumed_density is not None:
            assumed = lm.assumed_density
        if lm.grown_bits:
            grown[layer.name] = lm.grown_bits
        if lm.shared_bits:
            shared[layer.name] = lm.shared_bits
        bits[layer.name] = float(lm.bits) + lm.grown_bits
        if kind.applied and mode == "on_the_fly" and not kind.branch:  # a branch is costed as layers (sim)
            live[layer.name] = MaskLoad(bits=float(lm.bits) + lm.shared_bits, op_pj_per_weight=lm.op_pj)

    if work.batchnorm == "task":
        stored = [t for t in work.tensors if t.role == "batchnorm" and t.key.endswith(".weight")]
        channels = (sum(t.shape[0] for t in stored) if stored
                    else sum(layer.out_channels for layer in work.layers if layer.kind == "conv"))
        bn_bytes = channels * 2 * pb.batchnorm / 8
    else:
        bn_bytes = 0.0
    head = work.head
    head_bytes = 0.0
    if head is not None:
        head_bytes = weight_elems(head) * pb.weights / 8 + head.out_channels * pb.psums / 8

    # switch: load the task-specific tensors; folded mask methods also read W + mask and write W_task
    dram = profile.dram
    # grown weights travel with the weights; folding a PackNet/CPG task reads the shared index map
    mask_bytes = (sum(bits.values()) - sum(grown.values()) + sum(shared.values())) / 8
    read_b = bn_bytes + head_bytes
    write_b = 0.0
    n_ops = 0.0
    op_pj = 0.0
    if kind.applied and mode == "folded":
        w_bytes = sum(weight_elems(layer) for layer in masked) * pb.weights / 8
        read_b += mask_bytes + w_bytes
        write_b += w_bytes
        if kind.branch:  # LoRA's merge W + (alpha/r) B A: rank MACs per weight
            merge = {layer.name: ctx.ranks.get(layer.name, 0) for layer in masked}
            n_ops = float(sum(weight_elems(layer) * merge[layer.name] for layer in masked))
            op_pj = n_ops * ctx.mac_pj
        else:
            n_ops = float(sum(weight_elems(layer) for layer in masked))
            op_pj = sum(weight_elems(layer) * live_op for layer, live_op in
                        ((layer, _op_for(kind, bits[layer.name], layer, pb.mask_scale, ops)) for layer in masked))
    elif kind == catalogue.COPY:
        read_b += mask_bytes  # the task's own weights are loaded in place of the backbone's
    energy = (read_b * 8 / dram.word_bits * dram.read_energy_pj
              + write_b * 8 / dram.word_bits * dram.write_energy_pj + op_pj)
    cycles = (read_b + write_b) / dram.bandwidth_bytes_per_cycle
    return TaskCost(method=method, mode=mode, mask_bits=bits, batchnorm_bytes=bn_bytes, head_bytes=head_bytes,
                    on_the_fly=live, switch_read_bytes=read_b, switch_write_bytes=write_b, switch_ops=n_ops,
                    switch_energy_pj=energy, switch_cycles=cycles, assumed_density=assumed, grown_bits=grown,
                    shared_bits=shared)


def _op_for(kind: catalogue.MaskKind, layer_bits: float, layer: Layer, scale_bits: int,
            ops: MaskOpEnergy) -> float:
    """Energy of applying the mask to one weight: KSM multiplies the soft entries and gates the rest."""
    if kind != catalogue.KERNEL:
        return ops.gate
    entries = kernel_mask_entries(layer)
    soft = (layer_bits - entries) / scale_bits / entries  # fraction of zero (soft) entries
    return (1.0 - soft) * ops.gate + soft * ops.multiply
