"""Burst granules: a transfer shorter than a memory's minimum burst costs a whole burst of port time.

A memory level may give ``burst_bytes``: the shortest transfer its port makes (an AXI burst on a system
SRAM). Moving a tile between that level and the one below it (or above it) is a sequence of contiguous
runs; a run of ``L`` bytes costs ``max(L, burst_bytes)`` bytes of the port's time, so the port time of the
transfer is its bytes times :func:`port_factor` ``= max(1, burst_bytes / L)``. This is Arm Vela 5.2.0's
memory-transfer charge (``ethosu/regor/architecture/ethosu55/ethos_u55_performance.cpp``,
``EstimateMemoryTransfer`` L159-211: ``bytes * MaxBurstLength / min(MaxBurstLength, burstLen)``; the legacy
core's ``ethosu/vela/npu_performance.py`` ``_estimate_memory_transfer_efficiency`` L196-224), with the
SRAM's burst of 32 bytes (``ethosu/config_files/Arm/vela.ini``, ``Sram_burst_length=32``). Vela uses the
burst-weighted bytes for the memory's cycles only (``update_summary_cycles`` scales the bandwidth it
reports by nothing: ``bws`` raw, ``scaled_bws`` for cycles, L616-617) and has no energy model; here, too,
the burst charges port time only: an SRAM does not spend read energy on the beats of a burst nobody asked
for, so the energy stays per word moved.

The run of a tile (:func:`run_elements`) is what hwsim knows of the layout: feature maps are NHWC (channels
innermost, then columns, then rows), so a tile's run is its channel extent (``C x G`` of inputs, ``K x G``
of outputs, groups being channels of a depthwise layer) unless it holds every channel, in which case the run
continues across its columns, and across its rows where it also holds every column. Weights are laid out
in the order the engine reads them (Vela encodes them into one stream per OFM-depth slice; a compiler for
any of hwsim's arrays would do the same), so a weight tile is one run. The approximations: a tile is taken
as aligned (a run that starts mid-burst is not charged twice), the batch dimension is never joined into a
run, and a run longer than the burst is charged at its bytes (Vela's rule; an AXI INCR burst may be longer
than the minimum). A level's ``max_run_elements`` caps the run of an operand the engine moves through it in
shorter pieces whatever its tile (Ethos-U55's output unit writes at most 16 channels per transfer: Vela's
``burstLen = min(64 * 8, 16 * elementBits * cores, depth * elementBits)`` for NHWC writes, L202).

A level's ``input_block_depth`` (:func:`input_block_run`) says how the engine reads an NHWC input through it:
in blocks whose depth is the layer's input channels rounded up to a granule and capped (another cap for a
depthwise layer); a block whose depth is not the tensor's whole depth is read in runs of that depth, whatever
the tile. This is Vela 5.2.0's IFM read: ``burstLen = elementBits * block.Depth()`` unless the tensor's depth
equals the block's (``EstimateMemoryTransfer`` L183-193), with the IFM block depth ``RoundAway(min(depth, 32),
ifmUBlock.Depth() = 8)`` of a convolution and the OFM block depth (16 from ``OFMSplitDepth``) of a depthwise
layer (``ethosu/regor/architecture/ethosu55/ethos_u55.cpp`` ``ArchEthosU55::FindBlockConfig`` L354, L381,
L432-440, L458-461, L480-484). A 3-channel input read in 8-deep blocks is charged as 8-byte runs (4x its
bytes); a 96-channel depthwise input read 16 channels at a time as 16-byte runs (2x). The blocks apply to a
tensor stored NHWC, which :func:`hwsim.simulate` takes to be the network's input (the image the host writes,
:func:`hwsim.workload.graph.host_written`);
the feature maps the network makes are stored in the engine's own layout (Vela's 16-channel bricks, NHCWB16,
read in runs of ``16 x block width`` bytes, ``EstimateMemoryTransfer`` L164-179:
``ethosu/regor/compiler/scheduler.cpp`` ``UpdateSchedulerTensor`` L449-452 makes every feature map NHCWB16
that need not be linear), so a layer that reads one is costed under :func:`made_feature_maps` of the profile.

Every function here works on floats and on numpy arrays alike (``minimum``/``where`` as in
:func:`hwsim.cost.mapping.tiles.tile_elements`): one place for the scalar evaluator
(:mod:`hwsim.cost.mapping.one_mapping`) and the vectorised scorer (:mod:`hwsim.cost.mapping.batch_scorer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from hwsim.cost.mapping.space import OPERANDS
from hwsim.cost.mapping.tiles import Window, _pick
from hwsim.hardware.profile import InputBlockDepth, MemoryLevel, Profile

W, I, O = OPERANDS


def run_elements(o: str, b: Mapping[str, object], full: Mapping[str, object], w: Window, minimum: Callable = min,
                 where: Callable = _pick):
    """Contiguous elements of one run of operand ``o``'s tile with loop bounds ``b`` (NHWC feature maps,
    weights in read order; see the module's docstring); ``full``: the layer's bounds (``sizes(shape)``)."""
    if o == W:
        return b["G"] * b["K"] * b["C"] * b["FY"] * b["FX"]
    if o == O:
        ch, full_ch = b["K"] * b["G"], full["K"] * full["G"]
        cols, full_cols, rows = b["OX"], full["OX"], b["OY"]
    else:
        ch, full_ch = b["C"] * b["G"], full["C"] * full["G"]
        oy, fy, ox, fx = b["OY"], b["FY"], b["OX"], b["FX"]
        rows = where((fy < w.fy) | (oy < w.oy), (oy - 1) * minimum(w.sy, fy) + fy, w.rows)
        cols = where((fx < w.fx) | (ox < w.ox), (ox - 1) * minimum(w.sx, fx) + fx, w.cols)
        full_cols = w.cols
    return where(ch < full_ch, ch, where(cols < full_cols, ch * cols, ch * cols * rows))


def input_block_run(blocks: InputBlockDepth, full: Mapping[str, object], run, minimum: Callable = min,
                    where: Callable = _pick):
    """The run (elements) of an input read in the engine's IFM blocks (module docstring): ``run`` (the tile's,
    :func:`run_elements`) capped at the block depth, which is the layer's input channels ``C x G`` rounded up
    to ``blocks.granule`` and capped at ``blocks.max`` (``blocks.depthwise_max`` where ``C`` is 1 per group of
    several, a depthwise layer); unchanged where the block is exactly the tensor's depth (the row joins)."""
    ch = full["C"] * full["G"]
    g = blocks.granule
    depthwise = (full["C"] == 1) & (full["G"] > 1)
    depth = minimum(-(-ch // g) * g, where(depthwise, blocks.depthwise_max, blocks.max))
    return where(depth == ch, run, minimum(run, depth))


def port_factor(lv: MemoryLevel, o: str, run, bits, minimum: Callable = min, maximum: Callable = max,
                full: Mapping[str, object] | None = None, where: Callable = _pick):
    """Port time per byte of ``o`` moved through ``lv`` in runs of ``run`` elements of ``bits`` each:
    ``max(1, burst_bytes / run bytes)``, the run first capped by the level's ``max_run_elements`` for ``o``
    and, for inputs of a layer with bounds ``full`` (``C``, ``G``), by its ``input_block_depth``
    (:func:`input_block_run`); exactly 1.0 where the level gives no burst (pass ``np.minimum``/``np.maximum``/
    ``np.where`` for arrays)."""
    if not lv.burst_bytes:
        return 1.0
    cap = dict(lv.max_run_elements).get(o)
    if cap is not None:
        run = minimum(run, cap)
    if o == I and lv.input_block_depth is not None and full is not None:
        run = input_block_run(lv.input_block_depth, full, run, minimum, where)
    return maximum(1.0, lv.burst_bytes / (run * bits / 8))


def made_feature_maps(profile: Profile) -> Profile:
    """``profile`` for a layer whose input is a feature map the network made: without any level's
    ``input_block_depth`` (the engine stores those in its own layout; module docstring); ``profile`` itself
    where no level has one."""
    if all(lv.input_block_depth is None for lv in profile.levels):
        return profile
    return dataclasses.replace(profile, levels=tuple(dataclasses.replace(lv, input_block_depth=None)
                                                     for lv in profile.levels))
