"""Energy per operation from one CMOS node and supply to another: Stillmaker & Baas's fitted scaling.

Source: A. Stillmaker and B. Baas, "Scaling equations for the accurate prediction of CMOS device performance
from 180 nm to 7 nm", Integration, the VLSI Journal 58 (2017) 74-81, doi:10.1016/j.vlsi.2017.02.002. Their
energy per operation at node ``n`` and supply ``V`` is a second-order polynomial fitted to HSPICE simulations with
the Predictive Technology Model and ITRS device models,

    EnergyFactor_n(V) = a_n V^2 + b_n V + c_n,

with the coefficients of their Table 5 (one fit per node for 180-65 nm; high-performance ``hp`` and
low-power ``lp`` devices for 45 nm and below). An energy ``E`` given at ``(n0, V0)`` is
``E * EnergyFactor_n1(V1) / EnergyFactor_n0(V0)`` at ``(n1, V1)``: the paper's worked example (§4.2.1,
Eqs. 12-14, as corrected by the authors' corrigendum) scales 1 pJ/op from 65 nm at 1.3 V to 32 nm (hp) at
0.9 V: 0.4571 / 2.604 x 1 pJ = 0.1755 pJ.

Nodes between two of the table's are interpolated here (not in the paper) linearly in log(node) and
log(factor), which keeps the factor monotone in the node at a given supply. The 180 nm fit is linear and
crosses zero near 0.73 V: supplies where a fit is not positive are refused, and so are supplies below a
quadratic fit's vertex, where it would have energy fall as the supply rises (the fits are made over each
node's working supplies; below the vertex a fit is outside them).
"""

from __future__ import annotations

import math

SOURCE = ("Stillmaker & Baas, Integration 58 (2017), Table 5: EnergyFactor(V) = a V^2 + b V + c per node "
          "(log-log interpolation between nodes)")

# node (nm) -> {device: (a, b, c)}; 180-65 nm have one fit, used for either device
_BULK = {180.0: (0.0, 24.64, -17.98), 130.0: (7.171, -6.709, 2.904), 90.0: (4.762, -4.781, 2.092),
         65.0: (3.755, -4.398, 1.975)}
_HP = {45.0: (1.018, -0.3107, 0.1539), 32.0: (0.8367, -0.4341, 0.1701), 20.0: (0.373, -0.1582, 0.04104),
       16.0: (0.2958, -0.1241, 0.03024), 14.0: (0.2363, -0.09675, 0.02239), 10.0: (0.2068, -0.09311, 0.02375),
       7.0: (0.1776, -0.09097, 0.02447)}
_LP = {45.0: (1.103, -0.362, 0.2767), 32.0: (0.9559, -0.7823, 0.471), 20.0: (0.2632, -0.14, 0.06841),
       16.0: (0.2139, -0.1187, 0.05639), 14.0: (0.1556, -0.06472, 0.03066), 10.0: (0.1261, -0.0518, 0.02769),
       7.0: (0.09365, -0.03409, 0.02043)}
TABLE = {"hp": {**_BULK, **_HP}, "lp": {**_BULK, **_LP}}
DEVICES = tuple(TABLE)
MIN_NM, MAX_NM = 7.0, 180.0  # the range the paper fits


def _at(coeffs: tuple[float, float, float], vdd: float) -> float:
    a, b, c = coeffs
    return a * vdd * vdd + b * vdd + c


def energy_factor(node_nm: float, vdd_v: float, device: str = "hp") -> float:
    """Stillmaker & Baas's ``EnergyFactor`` at ``node_nm`` (7-180 nm) and supply ``vdd_v``; ``device``
    ``hp`` or ``lp`` (45 nm and below). Raises ValueError outside the fits (a node outside 7-180 nm, a supply
    where a fit is not positive)."""
    if device not in TABLE:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if not MIN_NM <= node_nm <= MAX_NM:
        raise ValueError(f"node {node_nm:g} nm is outside the scaling fits ({MIN_NM:g}-{MAX_NM:g} nm)")
    table = TABLE[device]
    nodes = sorted(table)
    hi = next(n for n in nodes if n >= node_nm)
    lo = max(n for n in nodes if n <= node_nm)
    f_lo, f_hi = _at(table[lo], vdd_v), _at(table[hi], vdd_v)
    if f_lo <= 0 or f_hi <= 0:
        bad = lo if f_lo <= 0 else hi
        raise ValueError(f"{vdd_v:g} V is outside the {bad:g} nm energy fit (its energy factor is not positive)")
    for node in (lo, hi):  # a fit used below its vertex would have energy fall as the supply rises: unphysical
        a, b, _c = table[node]
        if 2 * a * vdd_v + b <= 0:
            raise ValueError(f"{vdd_v:g} V is below the {node:g} nm energy fit's range (there its energy would "
                             f"fall as the supply rises; the fit holds above {-b / (2 * a):.2g} V)")
    if lo == hi:
        return f_lo
    t = (math.log(node_nm) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp(math.log(f_lo) + t * (math.log(f_hi) - math.log(f_lo)))


def energy_scale(from_nm: float, from_vdd_v: float, to_nm: float, to_vdd_v: float, device: str = "hp") -> float:
    """The factor that takes an energy per operation given at ``(from_nm, from_vdd_v)`` to ``(to_nm, to_vdd_v)``:
    ``energy_factor(to) / energy_factor(from)``; exactly 1 for the same node and supply."""
    if from_nm == to_nm and from_vdd_v == to_vdd_v:
        return 1.0
    return energy_factor(to_nm, to_vdd_v, device) / energy_factor(from_nm, from_vdd_v, device)
