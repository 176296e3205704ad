"""One design point: the single adapter between the sweep and hwsim's cost model.

Everything the sweep knows about costing a point goes through :func:`cost_point`; it calls
:func:`hwsim.cost.simulate.simulate` once and flattens the result into one row. When the cost model changes
(a mapping search, batching, steady state), only this function needs re-pointing.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from hwsim import catalogue
from hwsim.hardware.area import area_breakdown
from hwsim.errors import InputError
from hwsim.workload.layers import Workload
from hwsim.hardware.profile import Design
from hwsim.cost.simulate import PJ, SimResult, simulate


@dataclass(frozen=True, slots=True)
class Options:
    """How a point is run: mask application mode, tasks sharing the backbone, batch, cold/steady state."""

    mode: str | None = "on_the_fly"
    tasks: int = 6
    mask_density: float = 0.5
    batch: int = 1
    steady_state: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_options(options: Options, where: str = "") -> None:
    """Refuse, before any work, options this cost model cannot honour (batch, steady state)."""
    try:
        _simulate_kwargs(options)
    except InputError as exc:
        raise InputError(f"{where}{exc}") from None


@lru_cache(maxsize=1)
def _simulate_params() -> Any:
    """``simulate``'s parameters, read once (``inspect.signature`` costs more than a cached point)."""
    return inspect.signature(simulate).parameters


def _simulate_kwargs(options: Options) -> dict[str, Any]:
    """``simulate``'s keyword arguments; batch and steady state only where this cost model takes them."""
    params = _simulate_params()
    kwargs: dict[str, Any] = {"tasks": options.tasks, "mask_density": options.mask_density}
    for name, value, default in (("batch", options.batch, 1), ("steady_state", options.steady_state, False)):
        if name in params:
            kwargs[name] = value
        elif value != default:
            raise InputError(f"{name}: this hwsim's cost model has no {name} (simulate() takes "
                             f"{', '.join(params)}); use {name}: {default!r}")
    return kwargs


# Per-layer cache: (layer geometry, profile, mask load) -> LayerCost. A sweep costs the same layer shape
# on the same design many times (ResNet-50: 54 layers, 24 shapes; folded mode: every method shares the
# backbone's layer costs). Used only while ``simulate`` has the signature it was written against: a
# cost model with more options (batch, steady state, a mapping search) falls back to ``simulate``.
_SIMULATE_PARAMS = ("work", "profile", "mode", "tasks", "mask_density")
_LAYER_CACHE: dict[Any, Any] = {}
_LAYER_CACHE_MAX = 4096  # profiles


def _cacheable() -> bool:
    return tuple(_simulate_params()) == _SIMULATE_PARAMS


def _signatures(work: Workload) -> tuple[Any, ...]:
    """Per layer, its geometry without the name (the cache key's layer part), computed once per workload."""
    hit = _SIGNATURES.get(id(work))
    if hit is not None and hit[0] is work:
        return hit[1]
    sigs = tuple((lay.kind, lay.in_channels, lay.out_channels, lay.kernel_hw, lay.stride_hw, lay.padding_hw,
                  lay.groups, lay.input_hw, lay.output_hw, lay.bias) for lay in work.layers)
    if len(_SIGNATURES) > 256:
        _SIGNATURES.clear()
    _SIGNATURES[id(work)] = (work, sigs)
    return sigs


_SIGNATURES: dict[int, tuple[Workload, tuple[Any, ...]]] = {}


def _simulate_cached(work: Workload, profile: Any, mode: str | None, tasks: int, mask_density: float,
                     names: bool = True) -> SimResult:
    """``hwsim.cost.simulate.simulate`` with per-layer memoisation (same body; tested equal to ``simulate``).

    ``names=False`` lets a cached layer cost keep the name of the first layer of its shape (the totals
    do not read names; only per-layer tables do).
    """
    from dataclasses import replace

    from hwsim.cost.layer_cost import layer_cost
    from hwsim.cost.mask_cost import task_cost

    mode = (mode or "on_the_fly") if work.method is not None else None
    tc = task_cost(work, profile, mode or "on_the_fly", tasks, mask_density)
    live = tc.on_the_fly
    per_profile = _LAYER_CACHE.get(profile)
    if per_profile is None:
        if len(_LAYER_CACHE) > _LAYER_CACHE_MAX:
            _LAYER_CACHE.clear()
        per_profile = _LAYER_CACHE[profile] = {}
    costs = []
    for layer, sig in zip(work.layers, _signatures(work)):
        load = live.get(layer.name) if live else None
        key = (sig, load)
        cost = per_profile.get(key)
        if cost is None:
            cost = per_profile[key] = layer_cost(layer, profile, load)
        costs.append(replace(cost, name=layer.name) if names and cost.name != layer.name else cost)
    return SimResult(profile=profile, work=work, mode=mode, task=tc, layers=tuple(costs))


def run_point(design: Design, work: Workload, options: Options, cache: bool = True,
              names: bool = True) -> SimResult:
    """``simulate`` for one point (the same call ``ksm-sim`` makes), per-layer cached when possible."""
    mode = options.mode if work.method is not None else None
    kwargs = _simulate_kwargs(options)
    if cache and _cacheable():
        return _simulate_cached(work, design.profile, mode, names=names, **kwargs)
    return simulate(work, design.profile, mode, **kwargs)


def uses_mask_units(work: Workload, mode: str | None) -> bool:
    """Whether the design needs on-the-fly mask-scale multipliers for this workload (KSM's soft scale;
    the binary masks of the other methods gate weights, whose AND gates the area model neglects)."""
    traits = catalogue.find(work.method)
    return traits is not None and traits.soft_part and mode == "on_the_fly"


def point_area(design: Design, work: Workload, mode: str | None) -> dict[str, Any]:
    """The area breakdown of the design this point runs on (see :mod:`hwsim.hardware.area`)."""
    return area_breakdown(design.profile, design.extras, uses_mask_units(work, mode))


def cost_point(design: Design, work: Workload, options: Options, cache: bool = True) -> dict[str, Any]:
    """Cost one point and return one flat row (SI units: J, s, bytes, mm²).

    The numbers are those of the ``ksm-sim/1`` record (``SimResult.to_dict``), read from the result's
    properties so that the per-level tables are not built for every point.
    """
    result = run_point(design, work, options, cache, names=False)
    profile, task = design.profile, result.task
    energy_j, latency_s = result.energy_j, result.latency_s
    reads, writes = result.traffic(profile.dram.name)
    top1, precision = result.matching_top1()
    area = point_area(design, work, result.mode)
    row: dict[str, Any] = {
        "mode": result.mode,
        "energy_j": energy_j,
        "latency_s": latency_s,
        "area_mm2": area["total_mm2"],
        "edp_js": energy_j * latency_s,
        "macs": result.macs,
        "cycles": result.cycles,
        "utilization": result.macs / (result.compute_cycles * profile.array.pes),
        "dram_read_bytes": sum(reads.values()),
        "dram_write_bytes": sum(writes.values()),
        "mask_storage_bits": task.mask_storage_bits,
        "task_specific_bytes": task.task_specific_bytes,
        "switch_energy_j": task.switch_energy_pj * PJ,
        "switch_latency_s": task.switch_cycles / profile.clock_hz,
        "top1": top1,
        "top1_precision": precision,
        "on_chip_bytes": profile.on_chip_bytes,
        "area_mac_array_mm2": area["mac_array_mm2"],
        "area_memories_mm2": sum(area["levels_mm2"].values()),
        "area_mask_units_mm2": area["mask_units_mm2"],
    }
    for key in ("static_power_w", "static_energy_j"):  # issue-12 cost models may report these
        value = getattr(result, key, None)
        if isinstance(value, (int, float)):
            row[key] = float(value)
    return row


def add_area(document: dict[str, Any], results: list[SimResult], designs: dict[int, Design]) -> dict[str, Any]:
    """Add ``totals.area_mm2`` (and ``totals.area``, the breakdown) to a ``ksm-sim/1`` document.

    ``designs`` maps ``id(result.profile)`` to its :class:`~hwsim.hardware.profile.Design` (area keys); a
    profile missing from it is priced with the default area constants at 45 nm.
    """
    for record, result in zip(document["results"], results):
        design = designs.get(id(result.profile))
        extras = design.extras if design is not None else {}
        area = area_breakdown(result.profile, extras, uses_mask_units(result.work, result.mode))
        record["totals"]["area_mm2"] = area["total_mm2"]
        record["totals"]["area"] = area
    return document
