"""The fixed dataflows hwsim used before the mapping search, as references for the tests.

SCALE-Sim's closed forms for weight and output stationary (Samajdar et al., ISPASS 2020) and Eyeriss'
row stationary (Chen et al., ISCA 2016). Not part of the product: the search replaced them; the tests
check them on hand-derived cases and check that the search, where its unrolling is theirs, takes the
same compute cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.cost.mapping import Shape


@dataclass(frozen=True, slots=True)
class Mapping:
    """Compute cycles and the element traffic between the innermost shared buffer and the array.

    ``outputs`` counts output-element transfers up from the array (final plus spilled partial sums).
    """

    cycles: int
    weights: int
    inputs: int
    outputs: int


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def map_weight_stationary(d: Shape, rows: int, cols: int, input_footprint: int) -> Mapping:
    """Weight stationary on a systolic array (TPU-like; SCALE-Sim ``ws``).

    Rows unroll the im2col window (C*R*S), columns the output channels K; groups that leave rows and
    columns free are packed block-diagonally. Each weight is loaded once; every window element is
    streamed once per column fold; every output gets one partial sum per row fold
    (SCALE-Sim v2 closed forms, Samajdar et al., ISPASS 2020: ifmap reads = PQ * win * ceil(K/cols),
    filter reads = compulsory, ofmap writes = PQ * K * ceil(win/rows)).
    Cycles = ceil(G/u_g) * ceil(K/cols) * ceil(win/rows) * PQ (= MACs/1024 on a 32x32 array for
    ResNet-18 conv3_x: 112,896, as ZigZag 3.9.1 counts it on tpu_like).
    """
    u_win, u_k = min(d.win, rows), min(d.k, cols)
    u_g = max(1, min(d.g, rows // u_win, cols // u_k))
    f_win, f_k, f_g = _cdiv(d.win, u_win), _cdiv(d.k, u_k), _cdiv(d.g, u_g)
    return Mapping(cycles=f_g * f_k * f_win * d.px, weights=d.g * d.k * d.win,
                   inputs=d.g * d.px * d.win * f_k, outputs=d.g * d.k * d.px * f_win)


def map_output_stationary(d: Shape, rows: int, cols: int, input_footprint: int) -> Mapping:
    """Output stationary (SCALE-Sim ``os``, ShiDianNao-like).

    Rows unroll output pixels, columns output channels; each PE accumulates one output over the
    whole window, so outputs leave once. Every window element is streamed once per column fold, every
    weight once per row (pixel) fold: ifmap reads = PQ * win * ceil(K/cols), filter reads =
    K * win * ceil(PQ/rows) (SCALE-Sim v2 closed forms, Samajdar et al., ISPASS 2020). Groups use free columns.
    Cycles = ceil(G/u_g) * ceil(K/cols) * ceil(PQ/rows) * win.
    """
    u_px, u_k = min(d.px, rows), min(d.k, cols)
    u_g = max(1, min(d.g, cols // u_k))
    f_px, f_k, f_g = _cdiv(d.px, u_px), _cdiv(d.k, u_k), _cdiv(d.g, u_g)
    return Mapping(cycles=f_g * f_k * f_px * d.win, weights=d.g * d.k * d.win * f_px,
                   inputs=d.g * d.px * d.win * f_k, outputs=d.g * d.k * d.px)


def map_row_stationary(d: Shape, rows: int, cols: int, input_footprint: int, filters_per_pe: int = 1,
                       channels_per_pe: int = 1) -> Mapping:
    """Row stationary (Eyeriss v1; Chen et al., ISCA 2016).

    A PE set is R filter rows (array rows) by E output rows (array columns); spare rows take more
    input channels, spare columns more output channels, remaining room more groups. Each PE runs a
    1-D convolution (Q outputs x S taps) and, as in Eyeriss, interleaves ``p = filters_per_pe`` filters
    and ``q = channels_per_pe`` channels in its spads (sized from the profile's per-PE levels).
    Weights are reloaded once per output-row fold; inputs once per fold of the output channels
    (reuse across ``u_k * p`` filters); partial sums accumulate vertically and across ``q`` channels in
    the PE, and spill once per remaining fold of input channels and filter rows.
    Cycles = ceil(G/u_g) * ceil(K/u_k) * ceil(C/u_c) * ceil(R/u_r) * ceil(P/u_p) * Q * S.
    """
    u_fy = min(d.fy, rows)
    u_c = max(1, min(d.c, rows // u_fy))
    u_oy = min(d.oy, cols)
    u_k = max(1, min(d.k, cols // u_oy))
    u_g = max(1, min(d.g, (rows // (u_fy * u_c)) * (cols // (u_oy * u_k))))
    f_fy, f_c, f_oy, f_k, f_g = (_cdiv(d.fy, u_fy), _cdiv(d.c, u_c), _cdiv(d.oy, u_oy), _cdiv(d.k, u_k),
                                 _cdiv(d.g, u_g))
    p = max(1, min(filters_per_pe, f_k))
    q = max(1, min(channels_per_pe, f_c))
    out = d.g * d.k * d.px
    return Mapping(cycles=f_g * f_k * f_c * f_fy * f_oy * d.ox * d.fx, weights=d.g * d.k * d.win * f_oy,
                   inputs=input_footprint * _cdiv(f_k, p), outputs=out * _cdiv(f_c, q) * f_fy)

