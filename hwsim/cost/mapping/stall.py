"""ZigZag's stall model: memory-port stalls per data-transfer period (ZigZag 3.9.1, ``cost_model.py``).

Every transfer between two levels of an operand happens once per *period*: the product of the temporal
loops at and below the level it fills (after ZigZag's merge of irrelevant loops down to the level they
leave the tile in place for: ``TemporalMapping.innermost_stationary_loop_merge_down``). Within a period a
transfer may only use its *allowed memory-updating window* (MUW): the whole period where the level it
fills can double-buffer its tile (its effective tile, the tile over the relevant loops at the top of the
level, takes at most half the memory, counted with the other operands the memory holds:
``calc_double_buffer_flag``), else the period over the irrelevant loops at the top of that level (the
iterations during which the tile in place is not needed any more). A transfer needs
``ceil(bits per period / port width)`` cycles (*real* cycles); ``(real - allowed) x (periods - 1)`` is its
stall (+) or slack (-): the first period's transfer is on-loading, charged apart.

The transfers that use one physical port are combined (``combine_data_transfer_rate_per_physical_port``):
the stalls add up; the slack hides them only as far as the port is busy less than the union of the
transfers' windows (``__calc_mem_updating_window_union``: the windows start each period, periods are
nested products of loops). The layer stalls for its slowest port (ports work in parallel). Mei et al.,
"ZigZag: Enlarging Joint Architecture-Mapping Design Space Exploration for DNN Accelerators", IEEE
Transactions on Computers 70(8), 2021, section IV-C; the model is ZigZag 3.9.1's code (above), which
refines the paper's.

A profile chooses this model with ``latency_model: per_period``; the default, ``roofline``
(:func:`roofline`), charges each port its accesses over the whole layer against its bandwidth, and the
first tiles' loading apart.

Everything here works on floats and on numpy arrays alike (one candidate mapping per row): the
evaluator (:mod:`hwsim.cost.mapping.one_mapping`) and the batch scorer
(:mod:`hwsim.cost.mapping.batch_scorer`) call the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.hardware.profile import OPERANDS

# a transfer's real cycles are snapped to the integer below before rounding up when this close (counts of
# fractional unrollings leave 12.000000001)
_EPS = 1e-9


def real_cycles(bits, port_bits):
    """Cycles a port of ``port_bits`` per cycle needs to move ``bits`` (ZigZag rounds up per period)."""
    x = np.asarray(bits, dtype=float) / port_bits
    return np.ceil(x - _EPS * np.maximum(1.0, x))


@dataclass
class Ports:
    """The transfers each physical port serves: per port, lists of (real cycles, allowed cycles, period)
    per period, each a float or an array over candidate mappings (an inactive transfer: real = allowed = 0)."""

    total: object  # the temporal loops' product (cycles of compute)
    ports: dict[object, list[tuple[object, object, object]]] = field(default_factory=dict)

    def add(self, port: object, real, allowed, period) -> None:
        self.ports.setdefault(port, []).append((real, allowed, period))

    def stall(self):
        """The layer's stall: the slowest port's (0 where every port keeps up)."""
        out = 0.0
        for acts in self.ports.values():
            out = np.maximum(out, port_stall(acts, self.total))
        return out


def port_stall(acts: list[tuple[object, object, object]], total):
    """Stall (+) or slack (-) of one physical port serving the transfers ``acts`` (real, allowed, period per
    period) over ``total`` cycles of compute: ZigZag's sum of stalls plus the busy time the union of
    the windows cannot hold (``combine_data_transfer_rate_per_physical_port``)."""
    pos = neg = muw = 0.0
    for real, allowed, period in acts:
        count = np.floor(total / period + _EPS) - 1.0  # periods after the first (on-loading)
        s = (real - allowed) * count
        pos = pos + np.maximum(s, 0.0)
        neg = neg + np.minimum(s, 0.0)
        muw = muw + allowed * count
    if len(acts) == 1:
        return pos + neg
    union = window_union([x[1] for x in acts], [x[2] for x in acts], total)
    return pos + np.maximum(0.0, neg + muw - union)


def window_union(allowed: list, period: list, total):
    """Cycles covered by the union of the windows: transfer ``j`` may use the first ``allowed[j]`` cycles of
    each of its periods; periods are nested (each divides the next larger), as products of loop prefixes
    are. ZigZag's ``__calc_mem_updating_window_union`` (the union within the largest period times its
    count), computed in closed form: ``_covered(j, x)`` is the measure of [0, x) covered by the windows of
    the ``j + 1`` transfers of smallest period."""
    both = np.broadcast_arrays(*allowed, *period, total)
    a = np.asarray(both[:len(allowed)], dtype=float)
    p = np.asarray(both[len(allowed):-1], dtype=float)
    # a transfer that may use its whole period covers the whole run (ZigZag returns at once): the
    # closed form below only for the rows with none
    full = np.any((a >= p) & (a > 0), axis=0)
    tot = np.asarray(both[-1], dtype=float)
    if np.all(full):
        return tot if np.ndim(tot) else float(tot)
    if a.ndim == 2 and np.any(full):
        out = tot.copy()
        rest = np.nonzero(~full)[0]
        out[rest] = window_union(list(a[:, rest]), list(p[:, rest]), tot[rest])
        return out
    # an inactive transfer (allowed 0) covers nothing; give it the smallest period so it sorts first
    p = np.where(a > 0, p, 1.0)
    order = np.argsort(p, axis=0, kind="stable")
    p = np.take_along_axis(p, order, axis=0)
    a = np.take_along_axis(a, order, axis=0)
    a = np.minimum(a, p)
    full = [None] * len(p)  # covered measure of one whole period of transfer j (with those below)

    def covered(j: int, x):
        if j < 0:
            return np.zeros_like(x)
        q = np.floor(x / p[j] + _EPS)
        r = np.maximum(x - q * p[j], 0.0)
        return q * whole(j) + within(j, r)

    def within(j: int, y):
        w = np.minimum(y, a[j])
        return w + covered(j - 1, y) - covered(j - 1, w)

    def whole(j: int):
        if full[j] is None:
            full[j] = within(j, p[j])
        return full[j]

    top = len(p) - 1
    u = whole(top) * np.floor(total / p[top] + _EPS)
    return u if np.ndim(u) else float(u)


@dataclass
class Chain:
    """One operand's transfers, per on-chip level ``i`` of its chain (innermost first) and for the MAC
    array below level 0; each value a float or an array over candidate mappings.

    ``period[i]``: cycles between two fills of level ``i`` (the loops at and below it, irrelevant loops
    merged down); ``window[i]``: the period over the irrelevant loops at the top of level ``i`` (the
    window where level ``i`` cannot double-buffer); ``top_r[i]``: the relevant loops at the top of level
    ``i`` (its effective tile is its tile over them); ``tile[i]``: elements of one instance's tile (one
    PE's where per PE); ``bits[i]``: bits per element as level ``i`` holds and sends them; ``boost[i]``:
    instances of level ``i`` with distinct data one instance of level ``i + 1`` feeds (the PEs it
    multicasts to where a shared level feeds a per-PE one, else 1); ``mac_period``: the MAC cycles an
    element at the array stays (the irrelevant loops at the bottom, 1 for outputs); ``mac_boost``:
    distinct elements the array takes per cycle from one instance of level 0; ``back[i]`` (outputs):
    whether partial sums return into level ``i``; ``mac_back``: whether the MACs read partial sums back.
    """

    period: list
    window: list
    top_r: list
    tile: list
    bits: list
    boost: list
    mac_period: object
    mac_boost: object
    mac_bits: int = 8
    back: list | None = None
    mac_back: object = True


W, I, O = OPERANDS
_ZZ_ORDER = (O, W, I)  # ZigZag's layer operands, output first (its double-buffer check is in this order)


def transfer_stall(a, total, chains: dict[str, Chain], ps_bits: int, loading: bool = False):
    """The layer's stall cycles under ZigZag's per-period model (see the module docstring): the
    transfers of every operand (``chains``) on the ports of ``a``'s levels (an on-chip memory has a read
    port and a write port unless ``shared_port``, the outermost level one port for both);
    ``total``: the temporal loops' product; ``ps_bits``: partial-sum width. With ``loading``, also the
    on-loading and off-loading cycles (:func:`_loading`): ``(stall, onload, offload)``."""
    names = [o for o in _ZZ_ORDER if o in chains]
    # double buffering (calc_double_buffer_flag): effective tile bits over the memory's, summed over the
    # operands it holds
    util = {}
    for o in names:
        ch = a.chains[o]
        for i, t in enumerate(chains[o].tile):
            eff = np.floor(t * chains[o].bits[i] / chains[o].top_r[i] + _EPS)
            util[(ch[i].name, o)] = eff / (ch[i].size_bytes * 8)
    db = {}
    for lv, ops in a.alloc:
        shared = sum(util.get((lv.name, o), 0.0) for o in ops)
        for o in [x for x in names if x in ops]:
            u = util.get((lv.name, o))
            if u is None:
                continue
            half = shared <= 0.5
            rest = u <= 1 - shared
            db[(lv.name, o)] = half | rest
            shared = shared + np.where(~half & rest, u, 0.0)
    outer = a.chains[W][-1]
    acts: list[_Transfer] = []

    def port_of(lv, d: str):
        return (lv.name, "rw") if lv.shared_port or lv.name == outer.name else (lv.name, d)

    def bw(lv) -> float:
        return lv.bandwidth_bytes_per_cycle * 8.0

    def add(o: str, i: int, way: str, lv, bits, allowed, period, active=True) -> None:
        """A transfer of ``o`` at level ``i`` of its chain (ZigZag's directions: ``tl`` read out to the
        level below, ``fh`` written in from above, ``th`` read out to above, ``fl`` written in from below)."""
        port = port_of(lv, "r" if way in ("tl", "th") else "w")
        real = real_cycles(bits, bw(lv))
        if active is not True:
            real, allowed, bits = (np.where(active, x, 0.0) for x in (real, allowed, bits))
        acts.append(_Transfer(o, i, way, port, real, allowed, period, bits, bw(lv)))

    for o in names:
        ch, x = a.chains[o], chains[o]
        allowed = [np.where(db[(ch[i].name, o)], x.period[i], x.window[i]) for i in range(len(x.period))]
        if o == O:
            ps = ps_bits
            # the MACs write (and read back) partial sums in level 0 every cycle
            add(o, 0, "fl", ch[0], x.mac_boost * ps, 1.0, 1.0)
            add(o, 0, "tl", ch[0], x.mac_boost * ps, 1.0, 1.0, x.mac_back)
            for i in range(len(x.period)):
                p, al, back = x.period[i], allowed[i], x.back[i]
                add(o, i, "th", ch[i], x.tile[i] * x.bits[i], al, p)  # sent up
                add(o, i, "fh", ch[i], x.tile[i] * ps, al, p, back)  # partial sums back
                add(o, i + 1, "fl", ch[i + 1], x.tile[i] * x.boost[i] * x.bits[i], al, p)
                add(o, i + 1, "tl", ch[i + 1], x.tile[i] * x.boost[i] * ps, al, p, back)
        else:
            add(o, 0, "tl", ch[0], x.mac_boost * x.mac_bits, x.mac_period, x.mac_period)
            for i in range(len(x.period)):
                p, al = x.period[i], allowed[i]
                add(o, i, "fh", ch[i], x.tile[i] * x.bits[i], al, p)
                add(o, i + 1, "tl", ch[i + 1], x.tile[i] * x.boost[i] * x.bits[i], al, p)
    ports = Ports(total)
    for t in acts:
        ports.add(t.port, t.real, t.allowed, t.period)
    stall = np.maximum(ports.stall(), 0.0)
    if not loading:
        return stall
    onload, offload = _loading(a, total, stall, acts, {o: chains[o].tile[0] * chains[o].bits[0]
                                                      for o in names if chains[o].tile})
    return stall, onload, offload


@dataclass
class _Transfer:
    op: str
    level: int  # index in the operand's chain
    way: str  # tl, fh, th, fl (see transfer_stall)
    port: tuple
    real: object
    allowed: object
    period: object
    bits: object  # bits per period
    bw: float  # the port's bits per cycle


def _loading(a, total, stall, acts: list[_Transfer], first_bits: dict[str, object]):
    """ZigZag's on-loading and off-loading cycles (``calc_data_loading_latency``): the transfers that
    happen once (period count 1) load before the MACs start, shortened by the port's bandwidth left over
    during the compute (down to what the innermost level needs first: ``calc_loading_single_port_period_count_1``);
    the others load one period. Per operand, each link's loading takes the longer of its two ends; the
    links of one operand add up; the weights' and the inputs' overlap except where a port serves both
    (``calc_onloading_combined``); the outputs' off-loading adds up over the links (``calc_offloading_combined``)."""
    load: dict[tuple[str, int, str], object] = {}
    by_port: dict[tuple, list[_Transfer]] = {}
    for t in acts:
        if t.op == O and t.way in ("tl", "fh"):
            continue  # partial sums do not take part in on- or off-loading
        by_port.setdefault(t.port, []).append(t)
    span = total + stall
    for port, ts in by_port.items():
        once = [np.floor(total / t.period + _EPS) == 1 for t in ts]
        if not any(np.any(o1) for o1 in once):  # every transfer periodic: each loads one period
            for t in ts:
                load[(t.op, t.level, t.way)] = t.real
            continue
        req = 0.0
        for t, o1 in zip(ts, once):
            req = req + np.where(o1, 0.0, np.floor(t.bits / t.period + _EPS))
        bw = ts[0].bw
        left = np.maximum(0.0, (bw - req) / bw * span)
        # reduce the one-off transfers, the longest first (ZigZag's reduce_ordered), each down to the
        # cycles the innermost level's first tile needs
        c = [np.where(o1, t.real, -1.0) for t, o1 in zip(ts, once)]
        m = [real_cycles(first_bits.get(t.op, 0.0), bw) for t in ts]
        cs, ms = np.array(np.broadcast_arrays(*c, span), dtype=float)[:-1], \
            np.array(np.broadcast_arrays(*m, span), dtype=float)[:-1]
        order = np.argsort(-cs, axis=0, kind="stable")
        cs_o, ms_o = np.take_along_axis(cs, order, axis=0), np.take_along_axis(ms, order, axis=0)
        red = np.zeros_like(cs_o)
        for k in range(len(ts)):
            r = np.minimum(np.maximum(0.0, cs_o[k] - ms_o[k]), left)
            r = np.where(cs_o[k] >= 0, r, 0.0)
            red[k] = r
            left = left - r
        back = np.empty_like(red)
        np.put_along_axis(back, order, red, axis=0)
        for k, (t, o1) in enumerate(zip(ts, once)):
            load[(t.op, t.level, t.way)] = np.where(o1, t.real - back[k], t.real)
    both = {t.port for t in acts if t.op == W} & {t.port for t in acts if t.op == I}
    port = {(t.op, t.level, t.way): t.port in both for t in acts}
    part = {o: {"ind": 0.0, "half": 0.0, "shared": 0.0} for o in (W, I)}
    for o in (W, I):
        for i in range(len(a.chains[o]) - 1):
            k1, k2 = (o, i, "fh"), (o, i + 1, "tl")
            if k1 not in load or k2 not in load:
                continue
            longest = np.maximum(load[k1], load[k2])
            s1, s2 = port[k1], port[k2]
            if s1 and s2:
                part[o]["shared"] = part[o]["shared"] + longest
            elif not s1 and not s2:
                part[o]["ind"] = part[o]["ind"] + longest
            else:
                part[o]["half"] = longest  # (sic: ZigZag 3.9.1 keeps the last half-shared link's)
    p1, p2 = part[W], part[I]
    onload = np.minimum(p1["shared"] + np.maximum(p2["shared"] + p2["half"] + p2["ind"], p1["half"] + p1["ind"]),
                        p2["shared"] + np.maximum(p1["shared"] + p1["half"] + p1["ind"], p2["half"] + p2["ind"]))
    offload = 0.0
    for i in range(len(a.chains[O]) - 1):
        k1, k2 = (O, i, "th"), (O, i + 1, "fl")
        if k1 in load and k2 in load:
            offload = offload + np.maximum(load[k1], load[k2])
    return onload, offload


def roofline(a, r_lv: dict, w_lv: dict, temporal, bw_of, onload_bytes, offload_bytes):
    """The roofline stall model (``latency_model: roofline``): each level's accesses (words read ``r_lv`` and
    written ``w_lv`` per level name) over its port (``bw_of(level)``: words per cycle, all its instances;
    on-chip a read and a write port, the outermost level one for both) beyond the compute, the worst level
    counting; the first tiles' on-loading and the last outputs' off-loading (bytes) at the outermost level's
    bandwidth, which cannot overlap compute. Returns ``(stall, onload, offload)`` in cycles."""
    stall = 0.0
    outer = a.chains[W][-1]
    seen: set[str] = set()
    for o in OPERANDS:
        for lv in a.chains[o]:
            if lv.name in seen:
                continue
            seen.add(lv.name)
            r, w = r_lv.get(lv.name, 0.0), w_lv.get(lv.name, 0.0)
            if lv.name == outer.name:
                t = (r + w - (onload_bytes + offload_bytes) * 8 / lv.word_bits) / bw_of(lv)
            else:
                t = np.maximum(r, w) / bw_of(lv)
            stall = np.maximum(stall, t - temporal)
    dram_bw = outer.bandwidth_bytes_per_cycle
    return stall, onload_bytes / dram_bw, offload_bytes / dram_bw
