"""Pooling on a MAC engine's OFM micro-blocks: what an average, maximum or global pool costs where the profile
runs them there (``vector_unit.pooling``) rather than at a rate per operation.

Ethos-U55 pools on its MAC engine, one OFM micro-block (2x2 pixels x 8 channels) at a time: Vela 5.2.0 charges
each micro-block ``max(4, taps) x ifmBits / 2`` cycles per 8x8 sub-kernel of the window, 4 per tap at int8
(Regor ``ethosu/regor/architecture/ethosu55/ethos_u55_performance.cpp`` ``EstimateMacCyclesPerBlock``
L286-294; sub-kernel limits ``s_SubkernelLimits`` L30-39). The OFM block Vela picks does not change the sum:
``EstimateMacOpCycles`` (L380-384, L415) multiplies one block's cycles by the fraction of blocks
``micro-blocks of the OFM / micro-blocks of a block``, so the MAC time is the output's micro-blocks x the
cycles of one; a 1x1 output keeps one pixel of a 2x2 micro-block busy, which a rate per tap does not see.

A global average pool is, in a TFLite model, a MEAN, which Vela lowers to a depthwise convolution of unit
weights over the whole input and a rescaling MUL (Regor ``ethosu/regor/compiler/tflite_graph_optimiser.cpp``
``ConvertMeanOps`` L1847-2042, ``MakeDepthwiseMeanOp`` L267-319); that convolution is costed as any
depthwise layer, by its weight sets (:func:`hwsim.cost.weight_sets.weight_set_cycles`). A global maximum is
costed as one window the input's size (Vela splits a TFLite REDUCE_MAX per axis, ``ConvertReduceMinMaxAnyAll``
L1275-1331; not checked against it). Not charged: the output unit's block, the first and last blocks' memory
latency, the depthwise pipeline delays and the MEAN's rescaling MUL.
"""

from __future__ import annotations

import math

from hwsim.cost.weight_sets import pixel_blocks, weight_set_cycles
from hwsim.hardware.profile import Pooling, WeightSets


def sub_kernels(fy: int, fx: int, limit: tuple[int, int]) -> list[int]:
    """Taps of each sub-kernel a ``fy`` x ``fx`` window is cut into, at most ``limit`` (rows, columns) each
    (U55P L276-281: the window in steps of the sub-kernel limit along both axes, the last one shorter)."""
    rows = [min(limit[0], fy - y) for y in range(0, fy, limit[0])]
    cols = [min(limit[1], fx - x) for x in range(0, fx, limit[1])]
    return [r * c for r in rows for c in cols]


def micro_blocks(channels: int, oy: int, ox: int, ws: WeightSets) -> int:
    """OFM micro-blocks of one image's output: ``micro_block`` pixels x ``output_channels`` channels each."""
    return pixel_blocks(oy, ox, ws) * math.ceil(channels / ws.output_channels)


def pool_cycles(channels: int, oy: int, ox: int, window: tuple[int, int], ws: WeightSets, pool: Pooling) -> float:
    """MAC-engine cycles of one image's windowed pool (average or maximum): per output micro-block,
    ``tap_cycles`` x the larger of ``min_taps`` and each sub-kernel's taps (U55P L286-294)."""
    taps = sum(max(pool.min_taps, t) for t in sub_kernels(window[0], window[1], pool.sub_kernel))
    return float(micro_blocks(channels, oy, ox, ws) * taps * pool.tap_cycles)


def global_pool_cycles(channels: int, iy: int, ix: int, ws: WeightSets, pool: Pooling) -> float:
    """MAC-engine cycles of one image's global average pool over a ``channels`` x ``iy`` x ``ix`` input:
    as a depthwise convolution of unit weights with the input's size as its kernel (Vela's MEAN), or as a pool
    whose window is the input, as ``pool.global_pool`` says."""
    if pool.global_pool == "pool":
        return pool_cycles(channels, 1, 1, (iy, ix), ws, pool)
    from hwsim.cost.mapping.space import Shape  # the mapping package imports weight_sets: no cycle at import

    return weight_set_cycles(Shape(b=1, g=channels, k=1, c=1, oy=1, ox=1, fy=iy, fx=ix), ws)
