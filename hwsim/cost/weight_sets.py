"""The MAC engine's passes: a floor on a layer's MAC time from the weight sets it loads and the micro-blocks
each set is used for.

Ethos-U55 loads the weights of one kernel step (one tap for a 32-channel IFM slice, or 4 taps for 8 channels)
for one OFM micro-block depth (8 output channels) into its MAC engine as a set, and passes it over every
micro-block (2x2 pixels) of the OFM block, 4 cycles per micro-block whatever part of the set's channels or taps
the layer fills; loading a set takes 32 cycles, so a block of few micro-blocks waits for its weights. Vela
5.2.0 charges each set ``max(cyclesWb, 4 x micro-blocks)`` cycles, ``cyclesWb = 32 x micro-block depth / 8``
(Regor ``ethosu/regor/architecture/ethosu55/ethos_u55_performance.cpp`` ``EstimateMacCyclesPerBlock``:
``cyclesWb`` L269; per traversal L295-312; x IFM slices L363-366). hwsim's own compute cycles count MACs over
lanes; this module gives the engine's granularity: the padding of a set's channels and taps, and the 32-cycle
load.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from hwsim.hardware.profile import WeightSets

if TYPE_CHECKING:  # the mapping package imports this module: no import of it at run time
    from hwsim.cost.mapping.space import Shape


def _up(n: int, granule: int) -> int:
    return -(-n // granule) * granule


def is_depthwise(shape: Shape) -> bool:
    return shape.g > 1 and shape.c == 1


def part_kernel(shape: Shape, ws: WeightSets) -> bool:
    """Whether the engine runs a dense layer part-kernel first (``taps_per_step`` taps x
    ``part_kernel_input_channels`` channels per set) rather than depth first (one tap x ``input_channels``):
    Vela 5.2.0's rule (Regor ``ethos_u55.cpp`` ``ChooseKernelMethod`` L299-314, int8): part-kernel for an IFM
    of at most 8 channels, else whichever fills its granules better, part-kernel on a tie."""
    if is_depthwise(shape):
        return False
    c, taps = shape.c, shape.fy * shape.fx
    if c <= ws.part_kernel_input_channels:
        return True
    depth = c / _up(c, ws.input_channels)
    part = c / _up(c, ws.part_kernel_input_channels) * taps / _up(taps, ws.taps_per_step)
    return part >= depth


def kernel_steps(shape: Shape, ws: WeightSets) -> Shape:
    """``shape`` with its kernel as the engine traverses it, where it steps through the kernel
    ``taps_per_step`` taps at a time (a depthwise or part-kernel layer) and a kernel row or column is longer than
    a step: ``ceil(FY x FX / taps_per_step)`` steps (FY) of ``taps_per_step`` taps (FX), the input footprint
    kept. Vela flattens the kernel into steps of 4 taps, the last padded (U55P L295-299, L306-312:
    ``DivRoundUp(subKernelElements, 4)``): a MAC lane holds the 4 weights of a step and accumulates over them
    (4 cycles per micro-block), so a 5x5 kernel is 7 steps, a 7x7 one 13. Where both kernel axes fit a step
    (3x3), hwsim's lanes hold a kernel row as they are and the steps' padding is charged by
    :func:`weight_set_cycles`; Vela's 8x8 sub-kernel split (U55P ``s_SubkernelLimits``) is not modelled."""
    taps = shape.fy * shape.fx
    if max(shape.fy, shape.fx) <= ws.taps_per_step or not (is_depthwise(shape) or part_kernel(shape, ws)):
        return shape
    return dataclasses.replace(shape, fy=-(-taps // ws.taps_per_step), fx=ws.taps_per_step,
                               iy=shape.iy or (shape.oy - 1) * shape.sy + shape.fy,
                               ix=shape.ix or (shape.ox - 1) * shape.sx + shape.fx)


@dataclasses.dataclass(frozen=True, slots=True)
class KernelSteps:
    """A mapping's FY and FX where they are the engine's kernel steps (:func:`kernel_steps`), not the layer's
    kernel: ``steps`` loops of FY, each of ``taps`` taps (FX), over a ``kernel`` of FY x FX taps, the last step
    padded. A mapping carries it so that its loop bounds are read as what they are (the mapping's record,
    ``ksm-sim --mapping`` reading it back, the ZigZag export's workload)."""

    kernel: tuple[int, int]  # the layer's FY, FX
    steps: int  # the mapping's FY
    taps: int  # the mapping's FX: taps per step

    def record(self) -> dict[str, object]:
        """What a mapping's record says of it (``LayerCost.mapping["kernel_steps"]``)."""
        return {"kernel_fy_fx": list(self.kernel), "fy_steps": self.steps, "fx_taps_per_step": self.taps,
                "padded_taps": self.steps * self.taps - self.kernel[0] * self.kernel[1]}


def stepped(shape: Shape, ws: WeightSets | None) -> KernelSteps | None:
    """How :func:`kernel_steps` changes ``shape``'s kernel bounds on an engine with weight sets ``ws`` (None: it
    keeps them, or there is no such engine)."""
    if ws is None:
        return None
    s = kernel_steps(shape, ws)
    return None if (s.fy, s.fx) == (shape.fy, shape.fx) else KernelSteps((shape.fy, shape.fx), s.fy, s.fx)


def weight_sets(shape: Shape, ws: WeightSets) -> dict[str, int]:
    """Weight sets the MAC engine loads per image, per traversal, with the OFM block spanning the whole output
    (the fewest Vela's blocks can load: it loads them again per OFM block, which hwsim's mapping does not fix).

    - ``depthwise`` (one input channel per group): ``ceil(taps / taps_per_step)`` kernel steps per
      ``output_channels`` channels (U55P L295-299: ``DivRoundUp(subKernelElements, 4)`` x micro-block depths).
    - ``depth_first``: one set per tap per ``input_channels`` slice of the IFM (U55P L301-304
      ``numKernelSteps = subKernelElements``, L363-366 x ``DivRoundUp(ifm depth, IFM block depth 32)``).
    - ``part_kernel``: ``taps_per_step`` taps per set per ``part_kernel_input_channels`` channels (U55P
      L306-312: ``DivRoundUp(subKernelElements, 4)`` x ``DivRoundUp(ifmBlock depth, 8)``).
    Dense layers' sets are per group and per ``output_channels`` output channels (the micro-block depth)."""
    taps = shape.fy * shape.fx
    steps = math.ceil(taps / ws.taps_per_step)
    if is_depthwise(shape):
        return {"depthwise": shape.b * steps * math.ceil(shape.g / ws.output_channels)}
    per_k = shape.b * shape.g * math.ceil(shape.k / ws.output_channels)
    return {"depth_first": per_k * taps * math.ceil(shape.c / ws.input_channels),
            "part_kernel": per_k * steps * math.ceil(shape.c / ws.part_kernel_input_channels)}


def pixel_blocks(oy: int, ox: int, ws: WeightSets) -> int:
    """The micro-blocks (``micro_block`` pixels each) covering an ``oy`` x ``ox`` output plane."""
    return math.ceil(oy / ws.micro_block[0]) * math.ceil(ox / ws.micro_block[1])


def weight_set_cycles(shape: Shape, ws: WeightSets) -> float:
    """The least MAC time the engine's passes allow: per set, the larger of its load (``cycles``) and its pass
    over the output's micro-blocks (``micro_block_cycles`` each), for the traversal Vela picks
    (:func:`part_kernel`)."""
    per_set = max(ws.cycles, ws.micro_block_cycles * pixel_blocks(shape.oy, shape.ox, ws))
    sets = weight_sets(shape, ws)
    n = sets.get("depthwise") or sets["part_kernel" if part_kernel(shape, ws) else "depth_first"]
    return float(n * per_set)
