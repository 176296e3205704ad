"""Silicon area of an accelerator profile: MAC array, on-chip memories, mask units (mm²).

A first-order model from published per-component areas, scaled by technology node. Off-chip memory
(the outermost level, DRAM or a microcontroller's system memory) has no area here.

Components, at 45 nm (the node of the anchors), then scaled by ``(technology_nm / 45)²``:

- **MAC (one PE).** An integer multiplier of ``weights`` × ``inputs`` bits, an adder of ``psums`` bits,
  and flip-flops for the two operands and the accumulator.
  Multiplier and adder areas interpolate (log-log) between Horowitz's 45 nm figures:
  8-bit add 36 µm², 16-bit add 67 µm², 32-bit add 137 µm², 8-bit multiply 282 µm², 32-bit multiply
  3,495 µm² (M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
  Fig. 1.1.9). A ``w`` × ``i``-bit multiplier is taken as a square one of ``sqrt(w·i)`` bits.
- **Flip-flops** (register files, pipeline and accumulator registers): 4.522 µm² per bit, the DFF_X1
  cell of the NanGate 45 nm Open Cell Library (FreePDK45). Read multiplexing is not charged.
- **SRAM.** Capacity × 0.346 µm² per bit (the 45 nm 6T high-density bitcell of K. Mistry et al.,
  "A 45nm logic technology with high-k+metal gate transistors, strained silicon, 9 Cu interconnect
  layers, 193nm dry patterning, and 100% Pb-free packaging", IEDM 2007), divided by an array
  efficiency of 0.7 (**assumed**; CACTI 6.5 reports 50–80 % for megabyte-class arrays, N. Muralimanohar,
  R. Balasubramonian, N. P. Jouppi, HP Labs HPL-2009-85), plus 20 µm² per bit of port width for
  sense amplifiers, write drivers and column multiplexing (**assumed**). The port width is the larger of
  the level's ``word_bits`` and its bandwidth in bits per cycle.
  A level that is ``per_pe`` or smaller than 1 KiB is a register file (flip-flops), as in Eyeriss's spads
  and Accelergy's ``smartbuffer_RF``.
- **Mask units** (only when masks are applied on the fly): one ``mask_scale`` × ``weights``-bit
  multiplier per array row, where weights enter the array (**assumed** placement).
- **Technology scaling.** Ideal (Dennard) scaling of area with the square of the feature size
  (R. H. Dennard et al., "Design of ion-implanted MOSFET's with very small physical dimensions",
  IEEE JSSC 9(5), 1974). Below about 28 nm SRAM scales worse than logic (A. Stillmaker, B. Baas,
  "Scaling equations for the accurate prediction of CMOS device performance from 180 nm to 7 nm",
  Integration 58, 2017); give ``area:`` constants measured at the node to override.

Profile keys read here (beside, not inside, the profile dataclass; declared, with their ranges and rules, in
:class:`hwsim.schemas.profile_file.ProfileFile` and checked when the profile is loaded, so the values reaching
:func:`area_breakdown` are finite numbers in range and ``area.levels`` names on-chip levels of the profile)::

    technology_nm: 45           # optional; default 45 (the node of the energy anchors)
    area:                       # optional; every key optional, values at the profile's node
      mac_um2: 600              # one PE's MAC
      sram_bitcell_um2: 0.346
      sram_efficiency: 0.7
      sram_port_bit_um2: 20
      register_bit_um2: 4.522
      other_mm2: 0.5            # anything else (control, NoC), added as is
      levels: {sram_1MB: 3.1}   # a level's area per instance, mm², instead of the model
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwsim.hardware.profile import Profile

REFERENCE_NM = 45.0
# Horowitz, ISSCC 2014, Fig. 1.1.9, 45 nm (µm²)
ADD_UM2 = {8: 36.0, 16: 67.0, 32: 137.0}
MULT_UM2 = {8: 282.0, 32: 3495.0}
DFF_UM2 = 4.522  # NanGate 45 nm Open Cell Library, DFF_X1
SRAM_BITCELL_UM2 = 0.346  # Mistry et al., IEDM 2007 (Intel 45 nm 6T cell)
SRAM_EFFICIENCY = 0.7  # assumed array efficiency (CACTI 6.5 range 0.5-0.8)
SRAM_PORT_BIT_UM2 = 20.0  # assumed periphery per bit of port width
REGISTER_FILE_BELOW_BYTES = 1024


def _loglog(table: dict[int, float], bits: float) -> float:
    """Interpolate (and extrapolate) ``table`` (bits -> µm²) linearly in log-log space."""
    xs = sorted(table)
    if bits <= xs[0]:
        lo, hi = xs[0], xs[1]
    elif bits >= xs[-1]:
        lo, hi = xs[-2], xs[-1]
    else:
        hi = next(x for x in xs if x >= bits)
        lo = xs[xs.index(hi) - 1]
        if hi == bits:
            return table[hi]
    slope = math.log(table[hi] / table[lo]) / math.log(hi / lo)
    return table[lo] * (bits / lo) ** slope


def adder_um2(bits: float) -> float:
    """Integer adder area at 45 nm (Horowitz 2014 anchors, log-log interpolation)."""
    return _loglog(ADD_UM2, bits)


def multiplier_um2(a_bits: float, b_bits: float) -> float:
    """Integer ``a`` × ``b``-bit multiplier at 45 nm, as a square multiplier of ``sqrt(a·b)`` bits."""
    return _loglog(MULT_UM2, math.sqrt(a_bits * b_bits))


def area_breakdown(profile: Profile, extras: dict[str, Any] | None = None,
                   mask_units: bool = False) -> dict[str, Any]:
    """Area of the accelerator in mm²: ``{"total_mm2", "mac_array_mm2", "levels_mm2": {name: mm2},
    "mask_units_mm2", "other_mm2", "technology_nm"}`` (levels summed over their instances).

    Args:
        profile: the accelerator.
        extras: the profile's ``technology_nm`` and ``area`` keys (see the module docstring).
        mask_units: add the on-the-fly mask multipliers (one per array row).
    """
    extras = extras or {}
    node = float(extras.get("technology_nm", REFERENCE_NM))
    scale = (node / REFERENCE_NM) ** 2
    over = extras.get("area") or {}
    pb = profile.precision_bits

    def given(key: str, default_45nm: float) -> float:
        return float(over[key]) if key in over else default_45nm * scale  # overrides are at the node

    reg_bit = given("register_bit_um2", DFF_UM2)
    mac = (float(over["mac_um2"]) if "mac_um2" in over else
           (multiplier_um2(pb.weights, pb.inputs) + adder_um2(pb.psums)) * scale
           + (pb.weights + pb.inputs + pb.psums) * reg_bit)
    mac_array = mac * profile.array.pes * 1e-6
    cell, eff = given("sram_bitcell_um2", SRAM_BITCELL_UM2), float(over.get("sram_efficiency", SRAM_EFFICIENCY))
    port_bit = given("sram_port_bit_um2", SRAM_PORT_BIT_UM2)
    fixed = over.get("levels") or {}
    levels: dict[str, float] = {}
    for level in profile.levels[1:]:
        instances = profile.array.pes if level.per_pe else 1
        if level.name in fixed:
            each = float(fixed[level.name])
        elif level.per_pe or level.size_bytes < REGISTER_FILE_BELOW_BYTES:
            each = level.size_bytes * 8 * reg_bit * 1e-6
        else:
            port = max(level.word_bits, level.bandwidth_bytes_per_cycle * 8)
            each = (level.size_bytes * 8 * cell / eff + port * port_bit) * 1e-6
        levels[level.name] = each * instances
    units = (profile.array.rows * multiplier_um2(pb.mask_scale, pb.weights) * scale * 1e-6) if mask_units else 0.0
    other = float(over.get("other_mm2", 0.0))
    total = mac_array + sum(levels.values()) + units + other
    return {"total_mm2": total, "mac_array_mm2": mac_array, "levels_mm2": levels, "mask_units_mm2": units,
            "other_mm2": other, "technology_nm": node}


def area_mm2(profile: Profile, extras: dict[str, Any] | None = None, mask_units: bool = False) -> float:
    """Total area in mm² (see :func:`area_breakdown`)."""
    return area_breakdown(profile, extras, mask_units)["total_mm2"]
