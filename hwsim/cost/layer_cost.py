"""The per-layer cost model: layer sizes and :func:`layer_cost`.

Notation (Timeloop/ZigZag): G groups; per group K output channels, C input channels; output P x Q
(OY x OX); kernel R x S (FY x FX); the reduction window of one output is ``win = C*R*S``.

:func:`layer_cost` costs a layer under the mapping that :func:`hwsim.cost.mapping.search` finds (spatial
unrolling, loop order and tiles per memory level, LOMA-style; access counts in closed form, see
:mod:`hwsim.cost.mapping`), adds the masks that travel with the weights, static power, and returns traffic
per (level, operand), energy, and latency split into compute, stalls and on/off-loading.

Conventions a reader must know:

- Inputs are counted as the window's **footprint**, padding included where the window touches it
  (``(P-1)*min(stride, R) + R`` rows), as ZigZag counts the padded ifmap (30 x 30 x 128 = 115,200 B for
  ResNet-18 conv3_x in ZigZag 3.9.1).
- Partial sums live at ``psums`` bits on chip; final outputs move at ``outputs`` bits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hwsim.workload.layers import Layer
from hwsim.cost.dram_compression import DENSE, CodedMaps, compressed_bytes, compression_factor
from hwsim.cost.mapping import MappingCost, Shape, notation, search
from hwsim.cost.weight_sets import weight_set_cycles
from hwsim.hardware.profile import OPERANDS, MemoryLevel, Profile

W, I, O = OPERANDS  # "weights", "inputs", "outputs"

# --------------------------------------------------------------------------------------------
# Workload sizes


def macs(layer: Layer) -> int:
    """Multiply-accumulates: out_channels * (in_channels / groups) * kh * kw * P * Q.

    The count torchvision reports as GFLOPS for its models (conv and linear MACs; ZigZag 3.9.1 counts
    128*128*28*28*9 = 115,605,504 for ResNet-18 conv3_x).
    """
    return weight_elems(layer) * layer.output_hw[0] * layer.output_hw[1]


def weight_elems(layer: Layer) -> int:
    """Weights: out_channels * (in_channels / groups) * kh * kw (bias not counted)."""
    return layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel_hw[0] * layer.kernel_hw[1]


def output_elems(layer: Layer) -> int:
    """Output activations: out_channels * P * Q."""
    return layer.out_channels * layer.output_hw[0] * layer.output_hw[1]


def input_elems(layer: Layer) -> int:
    """Input footprint: the ifmap elements the sliding window touches, padding included.

    Per axis ``(P-1)*min(stride, kernel) + kernel``, capped at the padded input size: 30 x 30 x 128 =
    115,200 for ResNet-18 conv3_x (ZigZag 3.9.1's padded-ifmap count). With stride
    larger than the kernel (a 1x1 stride-2 shortcut) only the touched rows and columns count.
    """
    touched = 1
    for axis in (0, 1):
        p, k, s = layer.output_hw[axis], layer.kernel_hw[axis], layer.stride_hw[axis]
        padded = layer.input_hw[axis] + 2 * layer.padding_hw[axis]
        touched *= min((p - 1) * min(s, k) + k, padded)
    return layer.in_channels * touched


def kernel_mask_entries(layer: Layer) -> int:
    """Kernel-wise mask entries (KSM): one per (output channel, input channel of its group)."""
    return layer.out_channels * (layer.in_channels // layer.groups)


def element_mask_entries(layer: Layer) -> int:
    """Element-wise mask entries (Piggyback, PackNet): one per weight, = kernel entries * kh * kw."""
    return weight_elems(layer)


# --------------------------------------------------------------------------------------------
# One layer


@dataclass(frozen=True, slots=True)
class MaskLoad:
    """Per-inference mask work of one layer (on-the-fly mode): bits stored, and op energy per weight."""

    bits: float
    op_pj_per_weight: float


@dataclass(frozen=True, slots=True)
class LayerCost:
    """The cost of one operator (a layer, or a non-MAC operator of a graph) for the whole batch on one profile.
    Bytes, cycles, picojoules. ``cycles`` = compute + stall + onload + offload + vector + weight wait + output cycles.

    Chip-level energy (:func:`chip_level`) sits under pseudo-levels beside the memory levels:
    ``("static", "static")`` leakage, ``("clock", "clock")`` and ``("control", "control")`` per cycle,
    ``("output_stage", "output_stage")`` per output; ``gated_pj`` is what zero gating saved (already taken off
    the MAC and the innermost weight level, reported apart, not part of the sum)."""

    name: str
    kind: str
    macs: int
    compute_cycles: int
    cycles: float
    utilization: float
    bound: str  # "compute" or the name of the level whose bandwidth stalls the layer
    read_bytes: dict[tuple[str, str], float]  # (level, operand) -> bytes read from that level
    write_bytes: dict[tuple[str, str], float]
    energy_pj: dict[tuple[str, str], float]  # (level, operand) -> pJ; plus ("mac", "mac"), ("mask_ops", "masks")
    mask_ops: float
    stall_cycles: float = 0.0
    onload_cycles: float = 0.0
    offload_cycles: float = 0.0
    mapping: dict | None = None  # the chosen mapping in ZigZag/Timeloop notation (shared by same-shape layers: read-only)
    batch: int = 1
    vector_cycles: float = 0.0  # a non-MAC operator's cycles on the vector unit (hwsim.cost.operator_cost)
    vector_ops: float = 0.0  # its operations
    inputs_at: str = ""  # the memory level(s) its input tensors lived in (hwsim.cost.memory_plan)
    outputs_at: str = ""  # the level its output tensor was written to
    output_stage_cycles: float = 0.0  # outputs / the output stage's rate (a MAC layer on a profile with one)
    output_cycles: float = 0.0  # the cycles the output stage adds beyond compute + stall (the stage bounds)
    weight_set_cycles: float = 0.0  # the MAC time the weight sets' loads allow at least (profile's weight_sets)
    weight_wait_cycles: float = 0.0  # the cycles that floor adds beyond compute + stall (the MACs wait for weights)
    gated_pj: float = 0.0  # energy zero gating saved (MACs on zero inputs and their weight reads)
    dram_code_saved_bytes: float = 0.0  # DRAM bytes the run-length code of feature maps saved (< 0: it added)


def shape_of(layer: Layer, batch: int = 1) -> Shape:
    """A layer's loop bounds, per group K and C (a linear layer is a 1x1 conv on a 1x1 map), with the
    input footprint the window touches, padding included: what the mapping search works on."""
    g = layer.groups
    (oy, ox), (fy, fx), (sy, sx) = layer.output_hw, layer.kernel_hw, layer.stride_hw
    (hy, hx), (py, px) = layer.input_hw, layer.padding_hw
    return Shape(b=batch, g=g, k=layer.out_channels // g, c=layer.in_channels // g, oy=oy, ox=ox, fy=fy, fx=fx,
                 sy=sy, sx=sx, iy=min((oy - 1) * min(sy, fy) + fy, hy + 2 * py),
                 ix=min((ox - 1) * min(sx, fx) + fx, hx + 2 * px))


def _words(nbytes: float, level: MemoryLevel, bits: int) -> float:
    """Accesses of ``level`` needed to move ``nbytes`` of ``bits``-wide elements.

    Shared buffers pack elements into port-wide words (ZigZag counts port-width words: 115,200 B in
    64-bit words = 14,400 DRAM accesses in ZigZag 3.9.1); a per-PE register file moves one
    element per access, or several accesses when the element is wider than the port.
    """
    if level.per_pe:
        return nbytes * 8 / bits * math.ceil(bits / level.word_bits)
    return nbytes * 8 / level.word_bits


def layer_cost(layer: Layer, profile: Profile, mask: MaskLoad | None = None, batch: int = 1,
               objective: str = "energy", input_sparsity: float = 0.0, coded: CodedMaps = DENSE) -> LayerCost:
    """Traffic per level and operand, energy and latency of one layer under its best mapping.

    The mapping (spatial unrolling, loop order, tiles per level) is the one :func:`hwsim.cost.mapping.search`
    finds for ``objective``; its access counts are closed forms (see :mod:`hwsim.cost.mapping`). Masks travel
    with the weights: every weight element moved between two levels above the array carries
    ``mask.bits / weights`` bits of mask (Sparseloop's metadata model, Wu et al., MICRO 2021), and each
    weight entering the array costs one mask operation.

    Args:
        layer: the layer.
        profile: the accelerator.
        mask: on-the-fly mask work for this layer, or None.
        batch: images per inference (the batch is a loop of the mapping).
        objective: energy, latency or edp.
        input_sparsity: the fraction of the layer's input activations that are zero; on a profile with
            ``zero_gating`` their MACs are skipped (:func:`cost_of_mapping`).
        coded: on a profile with ``dram_compression``, the zeros of the feature maps read from and written
            to DRAM that are run-length coded (default: none, both dense).
    """
    shape = shape_of(layer, batch)
    m = search(shape, profile, objective)
    return cost_of_mapping(layer, shape, m, profile, mask, batch, input_sparsity, coded)


def cost_of_mapping(layer: Layer, shape: Shape, m: MappingCost, profile: Profile, mask: MaskLoad | None = None,
                    batch: int = 1, input_sparsity: float = 0.0, coded: CodedMaps = DENSE) -> LayerCost:
    """:func:`layer_cost` of ``layer`` (loop bounds ``shape = shape_of(layer, batch)``) under the mapping
    ``m`` that :func:`hwsim.cost.mapping.search` chose for it (what :func:`hwsim.simulate` calls after one
    search over the whole network).

    Zero gating (a profile's ``zero_gating``): a MAC whose input activation is zero is skipped, its MAC energy
    and its read of the innermost weight level saved; the input's own read stays (it is how the zero is
    found). This is Eyeriss's data gating: "If a zero ifmap value is detected from the zero buffer, the gating
    logic will disable the read of the filter spad and prevent the MAC datapath from switching" (Chen et al.,
    JSSC 2017, §V-C). Zeros are taken as spread evenly over the MACs, so a fraction ``input_sparsity`` of both
    is saved; the latency is unchanged (the chip still spends the cycle), and the mapping search does not see
    the saving (it scales the MAC and one level's reads alike under every mapping of the layer).

    DRAM compression (a profile's ``dram_compression``): the feature maps ``coded`` names (the inputs read from
    DRAM, the final outputs written to it) are charged at their expected run-length coded size for their zeros,
    after the search (:func:`_code_dram_maps`)."""
    if not 0.0 <= input_sparsity <= 1.0:
        raise ValueError(f"input_sparsity must be in [0, 1], got {input_sparsity}")
    read = dict(m.reads)
    write = dict(m.writes)
    energy = dict(m.energy_pj)
    mask_ops = 0.0
    if mask is not None and mask.bits > 0:
        per_weight = mask.bits / weight_elems(layer)  # mask bits per weight element
        wbits = profile.precision_bits.weights
        chain = profile.chain(W)
        for level in chain:
            if level.per_pe:
                continue
            r = m.reads.get((level.name, W), 0.0) * 8 / wbits  # weight elements read from the level
            w = m.writes.get((level.name, W), 0.0) * 8 / wbits
            key = (level.name, "masks")
            read[key] = r * per_weight / 8
            write[key] = w * per_weight / 8
            energy[key] = (_words(read[key], level, 1) * level.read_energy_pj
                           + _words(write[key], level, 1) * level.write_energy_pj)
        shared = [lv for lv in chain if not lv.per_pe]
        mask_ops = m.reads.get((shared[-1].name, W), 0.0) * 8 / wbits  # weights entering the array
        energy[("mask_ops", "masks")] = mask_ops * mask.op_pj_per_weight
        stall, bound = _stall_with_masks(m, profile, shared, read, write)
    else:
        stall, bound = m.stall_cycles, m.bound
    cycles = m.compute_cycles + stall + m.onload_cycles + m.offload_cycles
    gated = 0.0
    if profile.zero_gating and input_sparsity > 0:
        inner = profile.chain(W)[-1]  # the weight level the MAC reads
        key = (inner.name, W)
        w_read = (_words(m.reads.get(key, 0.0), inner, profile.precision_bits.weights) * inner.read_energy_pj
                  * input_sparsity)
        mac = energy[("mac", "mac")] * input_sparsity
        energy[("mac", "mac")] -= mac
        energy[key] = energy.get(key, 0.0) - w_read
        gated = mac + w_read
    saved = 0.0
    if profile.dram_compression is not None and coded != DENSE:  # feature maps at their run-length coded size
        stall, bound, saved = _code_dram_maps(m, profile, batch * output_elems(layer), read, write, energy,
                                              coded, stall, bound)
        cycles = m.compute_cycles + stall + m.onload_cycles + m.offload_cycles
    stage = profile.output_stage
    out_cycles = 0.0
    if stage is not None:  # requantisation, activation, write-back of every final output
        outputs = batch * output_elems(layer)
        out_cycles = float(math.ceil(outputs / stage.outputs_per_cycle))
        if stage.energy_pj_per_output > 0:
            energy[("output_stage", "output_stage")] = outputs * stage.energy_pj_per_output
    ws_cycles = 0.0 if profile.weight_sets is None else weight_set_cycles(shape, profile.weight_sets)
    n_macs = shape.macs  # = macs(layer) * batch
    util = m.compute_cycles and n_macs / (m.compute_cycles * profile.array.pes)
    cost = LayerCost(name=layer.name, kind=layer.kind, macs=n_macs, compute_cycles=m.compute_cycles,
                     cycles=cycles, utilization=float(util), bound=bound, read_bytes=read, write_bytes=write,
                     energy_pj=energy, mask_ops=mask_ops, stall_cycles=stall, onload_cycles=m.onload_cycles,
                     offload_cycles=m.offload_cycles, mapping=_mapping_of(m, profile), batch=batch,
                     output_stage_cycles=out_cycles, gated_pj=gated, dram_code_saved_bytes=saved,
                     weight_set_cycles=ws_cycles)
    return chip_level(cost, profile)


def needs_chip_level(profile: Profile) -> bool:
    """Whether :func:`chip_level` changes anything on ``profile`` (else a cost is final as it is)."""
    return (profile.static_power_w > 0 or profile.chip_energy is not None or profile.output_stage is not None
            or profile.weight_sets is not None)


def chip_level(cost: LayerCost, profile: Profile) -> LayerCost:
    """``cost`` with its latency and per-cycle energies made final: what :func:`cost_of_mapping` and
    :func:`hwsim.cost.operator_cost.operator_cost` end with, and what :func:`hwsim.simulate` applies again once
    the memory plan has moved traffic on chip (which changes stalls and on/off-loading).

    - The output stage bounds the layer as the MACs do (Vela takes an Ethos-U layer's time as the larger of its
      MAC and output cycles): it adds ``output_cycles = max(0, output_stage_cycles - (compute + stall))``.
    - The weight sets' loads bound the MAC time (Vela's ``cyclesWb``, :mod:`hwsim.cost.weight_sets`): they add
      ``weight_wait_cycles = max(0, weight_set_cycles - (compute + stall))``, before the output stage's share.
    - ``cycles`` = compute + vector + stall + onload + offload + weight wait + output.
    - Per cycle of that latency: leakage (``static_power_w``, at the clock), the clock network and control
      (``chip_energy``), each under its own pseudo-level. Idempotent.
    """
    if not needs_chip_level(profile):
        return cost
    busy = cost.compute_cycles + cost.stall_cycles
    wait = max(0.0, cost.weight_set_cycles - busy)
    output = max(0.0, cost.output_stage_cycles - busy - wait) if cost.output_stage_cycles else 0.0
    cycles = (cost.compute_cycles + cost.vector_cycles + cost.stall_cycles + cost.onload_cycles
              + cost.offload_cycles + wait + output)
    energy = dict(cost.energy_pj)
    if profile.static_power_w > 0:  # leakage for the layer's latency, reported apart
        energy[("static", "static")] = profile.static_power_w * cycles / profile.clock_hz * 1e12
    chip = profile.chip_energy
    if chip is not None:
        for name, pj in (("clock", chip.clock_pj_per_cycle), ("control", chip.control_pj_per_cycle)):
            if pj > 0:
                energy[(name, name)] = pj * cycles
    return dataclasses.replace(cost, cycles=cycles, output_cycles=output, weight_wait_cycles=wait,
                               energy_pj=energy)


def _mapping_of(m: MappingCost, profile: Profile) -> dict:
    """The mapping as the output shows it: ZigZag/Timeloop notation, whether it was given (``--mapping``; the
    caller says so), and the levels whose tiles it overflows (costed as if they fit: said, not hidden)."""
    return {**notation(m, profile), "given": False, "overflow": list(m.overflow)}


def _code_dram_maps(m: MappingCost, profile: Profile, outputs: int, read: dict[tuple[str, str], float],
                    write: dict[tuple[str, str], float], energy: dict[tuple[str, str], float],
                    coded: CodedMaps, stall: float, bound: str) -> tuple[float, str, float]:
    """Charge the feature maps that ``coded`` names at their expected run-length coded size in DRAM (a
    profile's ``dram_compression``, :mod:`hwsim.cost.dram_compression`), in place on ``read``, ``write`` and
    ``energy``; returns the port stall with the coded bytes on the DRAM link and the bytes saved.

    - Inputs (``coded.inputs`` zeros): every read of the inputs from DRAM, re-reads included, moves the coded
      stream (a re-read tile is read as it is stored).
    - Outputs (``coded.outputs`` zeros): only the ``outputs`` final values written to DRAM are coded, as the
      chip's RLC encoder codes the ofmaps on their way out (Chen et al., JSSC 2017, §IV-B); partial sums that
      spill to DRAM and come back stay dense (they have no ReLU zeros; the chip never spills them). Their
      share of the DRAM writes is the ``outputs`` values at the width the mapping wrote them (the partial-sum
      width where partial sums spill, as :mod:`hwsim.cost.mapping.one_mapping` counts them).
    - The mapping search ranked the dense traffic: the chosen mapping is the dense optimum, an approximation of
      the coded one (the code scales the feature maps of every mapping of the layer alike, not the weights).
    - Latency: the coded bytes are what crosses the DRAM link. Where the DRAM port bounded the layer, its stall
      is recomputed from the bytes (all operands over the bandwidth, less the on/off-loading charged apart, as
      the mapping's roofline does), floored at the shared on-chip levels' own port time; the first tiles'
      on- and off-loading keep their dense size (per-PE levels are left out of the floor). Where another level
      bounded it, the stall stays unless the coded link now takes longer (a code larger than the dense maps).
    """
    code = profile.dram_compression
    if code is None:
        return stall, bound, 0.0
    dram = profile.dram
    pb = profile.precision_bits
    before = sum(v for (name, _), v in read.items() if name == dram.name)
    before += sum(v for (name, _), v in write.items() if name == dram.name)
    key_i, key_o = (dram.name, I), (dram.name, O)
    dense_in = read.get(key_i, 0.0)
    if coded.inputs is not None and dense_in > 0.0:
        read[key_i] = dense_in * compression_factor(code, coded.inputs, pb.inputs)
        less = _words(dense_in - read[key_i], dram, pb.inputs) * dram.read_energy_pj
        energy[key_i] = energy.get(key_i, 0.0) - less
    written = write.get(key_o, 0.0)
    if coded.outputs is not None and written > 0.0:
        width = pb.psums if read.get(key_o, 0.0) > 0.0 else pb.outputs  # psums spill: all written at their width
        share = outputs * width / 8  # the final outputs' dense bytes among the writes
        final = min(written, share)
        write[key_o] = written - final + compressed_bytes(code, outputs, coded.outputs) * final / share
        less = _words(written - write[key_o], dram, pb.outputs) * dram.write_energy_pj
        energy[key_o] = energy.get(key_o, 0.0) - less
    moved = sum(v for (name, _), v in read.items() if name == dram.name)
    moved += sum(v for (name, _), v in write.items() if name == dram.name)
    saved = before - moved
    busy = float(m.compute_cycles)
    t = moved / dram.bandwidth_bytes_per_cycle - m.onload_cycles - m.offload_cycles
    if bound != dram.name:  # another level bounds the layer: the link only counts where it now takes longer
        return ((t - busy, dram.name) if t - busy > stall else (stall, bound)) + (saved,)
    stall, bound = 0.0, "compute"
    if t - busy > stall:
        stall, bound = t - busy, dram.name
    for level in profile.levels[1:]:
        if level.per_pe:
            continue
        r = sum(v for (name, _), v in read.items() if name == level.name)
        w = sum(v for (name, _), v in write.items() if name == level.name)
        t = max(r, w) / level.bandwidth_bytes_per_cycle
        if t - busy > stall:
            stall, bound = t - busy, level.name
    return stall, bound, saved


def _stall_with_masks(m: MappingCost, profile: Profile, levels: list[MemoryLevel],
                      read: dict[tuple[str, str], float], write: dict[tuple[str, str], float]) -> tuple[float, str]:
    """The mapping's port stall once the mask bits that travel with the weights are added.

    The same port model as :mod:`hwsim.cost.mapping` (DRAM one shared port, less the on/off-loading charged
    apart; an on-chip memory a read port and a write port), counted in bytes rather than port words,
    so it is a lower bound of the stall; the mapping's own stall (without masks) is never lowered.
    """
    stall, bound = m.stall_cycles, m.bound
    dram = profile.dram.name
    for level in levels:
        r = sum(v for (name, _), v in read.items() if name == level.name)
        w = sum(v for (name, _), v in write.items() if name == level.name)
        bw = level.bandwidth_bytes_per_cycle
        if level.name == dram:
            t = (r + w) / bw - m.onload_cycles - m.offload_cycles
        else:
            t = max(r, w) / bw
        if t - m.compute_cycles > stall:
            stall, bound = t - m.compute_cycles, level.name
    return stall, bound
