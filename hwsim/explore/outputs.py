"""What a sweep writes: the tidy table (CSV + Parquet), the Pareto front, figures, a Markdown summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim import catalogue, units
from hwsim.explore.pareto import pareto_mask
from hwsim.explore.spec import QUANTITIES, UNITS, Spec
from hwsim.fileio.atomic import atomic_write_with


def points_frame(spec: Spec, points: list[Any], rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per point, in plan order: axis labels, workload, method, options, results, feasibility, front."""
    records = []
    for p in points:
        labels, _design = spec.designs[p.design]
        item = spec.workloads[p.workload]
        # "network" groups what is compared across methods: the network, or for run folders the task
        network = item.work.source if item.work.task is None else f"task {item.work.task}"
        record = {**labels, "workload": item.key, "network": network, "task": item.work.task,
                  "method": item.work.method or "none", "variant": item.variant, "tasks": p.options.tasks, "batch": p.options.batch,
                  "steady_state": p.options.steady_state}
        record.update(rows[p.point_id])
        record["mode"] = record.get("mode") or "-"
        records.append(record)
    frame = pd.DataFrame(records)
    frame["feasible"] = feasible(frame, spec.constraints)
    frame["on_front"] = front_flags(frame, spec.objective_columns)
    return frame


def feasible(frame: pd.DataFrame, constraints: dict[str, tuple[float | None, float | None]]) -> pd.Series:
    """Rows meeting every constraint (a constraint on accuracy fails where accuracy is unknown)."""
    ok = pd.Series(True, index=frame.index)
    for name, (lo, hi) in constraints.items():
        col = pd.to_numeric(frame[QUANTITIES[name]], errors="coerce")
        if lo is not None:
            ok &= col >= lo
        if hi is not None:
            ok &= col <= hi
    return ok


def front_flags(frame: pd.DataFrame, objectives: list[str], by: str = "workload") -> pd.Series:
    """Non-dominated feasible rows within each ``by`` group (a network with one method, or one run)."""
    flags = pd.Series(False, index=frame.index)
    for _key, group in frame[frame["feasible"]].groupby(by, sort=False):
        values = group[objectives].to_numpy(dtype=float)
        flags.loc[group.index] = pareto_mask(values)
    return flags


PARQUET_MISSING = ("points.parquet is not written: Parquet needs pyarrow (pip install 'ksm[explore]'); "
                   "points.csv holds the same table")


def parquet_available() -> bool:
    """Whether pyarrow (the ``explore`` extra) is importable: without it the sweep writes CSV only."""
    return importlib.util.find_spec("pyarrow") is not None


def write_tables(frame: pd.DataFrame, out: Path) -> list[Path]:
    """``points.csv``, ``front.csv`` and, where pyarrow is installed, ``points.parquet``."""
    paths = [out / "points.csv", out / "front.csv"]
    atomic_write_with(paths[0], lambda p: frame.to_csv(p, index=False))
    atomic_write_with(paths[1], lambda p: frame[frame["on_front"]].to_csv(p, index=False))
    if parquet_available():
        paths.append(out / "points.parquet")
        atomic_write_with(paths[2], lambda p: frame.to_parquet(p, index=False, engine="pyarrow"))
    return paths


# --------------------------------------------------------------------------------------------
# Figures

# The SI unit of each quantity a figure may plot (hwsim.report.axes_style.engineering picks the prefix).
BASE_UNITS = {"energy_j": "J", "latency_s": "s", "area_mm2": "mm²", "edp_js": "J·s", "task_specific_bytes": "B",
              "accuracy": ""}
WHAT = {"energy_j": "energy per inference", "latency_s": "latency per inference", "area_mm2": "area",
        "edp_js": "energy-delay product", "task_specific_bytes": "task-specific storage", "accuracy": "top-1 accuracy"}


def _scale(col: str, values: pd.Series) -> str:
    return "log" if col != "accuracy" and values.max() > 20 * max(values.min(), 1e-300) else "linear"


def _quantity_axis(ax: Any, which: str, col: str, values: pd.Series, prefix: str = "") -> float:
    """Label and scale one axis for a quantity column in engineering units; returns the factor to plot with."""
    from hwsim.report import axes_style

    factor, unit = axes_style.engineering(values.dropna().tolist(), BASE_UNITS.get(col, ""))
    text = f"{prefix}{WHAT.get(col, col)}" + (f" ({unit})" if unit else "")
    scale = _scale(col, values.dropna()) if values.notna().any() and values.min() > 0 else "linear"
    (ax.set_xlabel if which == "x" else ax.set_ylabel)(text + (", log scale" if scale == "log" else ""))
    (ax.set_xscale if which == "x" else ax.set_yscale)(scale)
    return factor


def _variants(frame: pd.DataFrame) -> list[str]:
    """The method variants in the catalogue's display order."""
    return catalogue.sort_labels(list(dict.fromkeys(frame["variant"])))


def figure_front(frame: pd.DataFrame, spec: Spec, path: Path) -> Path:
    """Front scatter: every pair of objectives; dominated or infeasible points grey, each workload's front in
    its method's colour and marker (:func:`hwsim.catalogue.style`), the legend beside the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from hwsim.report import axes_style

    cols = spec.objective_columns
    pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]] or [(cols[0], "accuracy")]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.4 * len(pairs) + 2.2, 4.0), squeeze=False,
                             layout="constrained")
    variants = _variants(frame)
    styles = {v: catalogue.style(v) for v in variants}
    for ax, (x, y) in zip(axes[0], pairs):
        fx = _quantity_axis(ax, "x", x, frame[x])
        fy = _quantity_axis(ax, "y", y, frame[y])
        rest = frame[~frame["on_front"]]
        ax.scatter(rest[x] * fx, rest[y] * fy, s=5, c="0.8", zorder=1, linewidths=0)
        for i, v in enumerate(variants):  # later variants drawn smaller on top, so coinciding fronts stay visible
            front = frame[frame["on_front"] & (frame["variant"] == v)]
            st = styles[v]
            ax.scatter(front[x] * fx, front[y] * fy, s=max(46 - 3 * i, 12), marker=st.marker, zorder=2 + i,
                       facecolors=st.facecolor, edgecolors=st.color, linewidths=0.9)
        for axis, col in ((ax.xaxis, x), (ax.yaxis, y)):
            axes_style.plain_ticks(axis, log=axis.get_scale() == "log")
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker=styles[v].marker, markerfacecolor=styles[v].facecolor,
                      markeredgecolor=styles[v].color, color=styles[v].color, label=v) for v in variants]
    handles.append(Line2D([], [], linestyle="", marker="o", markersize=4, color="0.8", label="dominated or infeasible"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
               title="front of each workload" if len(set(frame["workload"])) > len(variants) else None,
               title_fontsize=8)
    fig.suptitle(f"{spec.name}\nPareto front per workload ({', '.join(spec.objectives)} minimised)", fontsize=10)
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=120, format=path.suffix[1:]))
    plt.close(fig)
    return path


def _axis_value(text: str) -> tuple[tuple[float, ...], str]:
    """Sort key and readable label of one value of a swept axis (as stored in the table: numbers, or JSON)."""
    import json

    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, bool) or value is None:
        return (1.0,), str(value)
    if isinstance(value, (int, float)):
        return (float(value),), f"{value:g}"
    if isinstance(value, dict) and {"rows", "cols"} <= set(value):
        rows, cols = value["rows"], value["cols"]
        return (float(rows) * float(cols), float(rows)), f"{rows}×{cols}"
    if isinstance(value, dict):
        return (float(len(value)),), ", ".join(f"{k}={v}" for k, v in value.items())
    return (0.0,), str(value)


def _tick_label(axis: str, text: str) -> str:
    """A tick label in the axis's unit: bytes as KiB/MiB, arrays as rows×cols, else the value."""
    key, label = _axis_value(text)
    if axis.rsplit(".", 1)[-1].endswith("_bytes") and len(key) == 1:
        return units.nbytes(key[0], digits=3)
    return _short(label)


def _order(labels: list[str]) -> list[str]:
    return sorted(labels, key=lambda text: (_axis_value(text)[0], text))


def figure_sensitivity(frame: pd.DataFrame, spec: Spec, axis: str, path: Path) -> Path:
    """One axis: each objective's best (minimum over the other axes) per method variant and mode, against
    the axis value. Where a variant has several workloads (tasks), the line is their median and the band
    their range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from hwsim.report import axes_style

    cols = spec.objective_columns
    fig, axes = plt.subplots(1, len(cols), figsize=(3.9 * len(cols) + 2.2, 3.7), squeeze=False,
                             layout="constrained")
    ticks = _order(list(dict.fromkeys(frame[axis].astype(str))))
    pos = {t: i for i, t in enumerate(ticks)}
    variants = _variants(frame)
    modes = list(dict.fromkeys(frame["mode"]))
    dashes = {m: ("--" if m == "on_the_fly" else "-") for m in modes}
    for ax, col in zip(axes[0], cols):
        factor = _quantity_axis(ax, "y", col, frame[col], prefix="best ")
        for v in variants:
            st = catalogue.style(v)
            for mode in modes:
                rows = frame[(frame["variant"] == v) & (frame["mode"] == mode)]
                if rows.empty:
                    continue
                best = rows.groupby([rows[axis].astype(str), "workload"])[col].min().unstack("workload")
                best = best.reindex([t for t in ticks if t in best.index]) * factor
                xs = [pos[t] for t in best.index]
                ax.plot(xs, best.median(axis=1), color=st.color, marker=st.marker, markerfacecolor=st.facecolor,
                        ms=4, linestyle=dashes[mode], linewidth=1.3)
                if best.shape[1] > 1:
                    ax.fill_between(xs, best.min(axis=1), best.max(axis=1), color=st.color, alpha=0.12, linewidth=0)
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels([_tick_label(axis, t) for t in ticks], rotation=30 if len(ticks) > 6 else 0,
                           ha="right" if len(ticks) > 6 else "center", fontsize=7.5)
        ax.set_xlabel(_axis_title(axis))
        axes_style.plain_ticks(ax.yaxis, log=ax.get_yscale() == "log")
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=catalogue.style(v).color, marker=catalogue.style(v).marker,
                      markerfacecolor=catalogue.style(v).facecolor, ms=4, label=v) for v in variants]
    if len(modes) > 1:
        handles += [Line2D([], [], color="0.3", linestyle=dashes[m], label=f"mode: {m}") for m in modes]
    several = frame.groupby("variant")["workload"].nunique().max() > 1
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
               title="median over tasks,\nband: their range" if several else None, title_fontsize=8)
    fig.suptitle(f"{spec.name}\nsensitivity to {_axis_title(axis)} (best over the other axes)", fontsize=10)
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=120, format=path.suffix[1:]))
    plt.close(fig)
    return path


def _axis_title(axis: str) -> str:
    """``levels.sram_1MB.size_bytes`` -> ``sram_1MB size``; ``array`` -> ``array (rows×cols PEs)``."""
    parts = axis.split(".")
    leaf = parts[-1]
    if axis == "array":
        return "array (rows×cols PEs)"
    if parts[0] == "levels" and len(parts) == 3:
        return f"{parts[1]} {leaf.removesuffix('_bytes').replace('_', ' ')}" + ("" if leaf.endswith("_bytes") else _unit_of(axis))
    if parts[0] == "precision_bits":
        return f"{leaf.replace('_', ' ')} precision (bits)"
    return f"{axis}{_unit_of(axis)}"


def _unit_of(axis: str) -> str:
    leaf = axis.rsplit(".", 1)[-1]
    for suffix, unit in (("_bytes", "B"), ("_hz", "Hz"), ("_pj", "pJ"), ("_bits", "bits"), ("_cycle", "B/cycle")):
        if leaf.endswith(suffix):
            return f" ({unit})"
    if axis.startswith("precision_bits."):
        return " (bits)"
    if leaf in ("rows", "cols"):
        return " (PEs)"
    return ""


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:22] + "…"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")


# --------------------------------------------------------------------------------------------
# Summary


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


SCALE_AXIS = "precision_bits.mask_scale"


def masks_vs_copies(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame | None:
    """KSM masks against fine-tuned copies on each design, ``tasks`` tasks deployed.

    Per design (axis values) and network, in folded mode (the mask folded into the weights at a task
    switch, so one inference costs the backbone either way):

    - ``system_bytes``: what the deployment stores: the shared backbone plus ``tasks`` x KSM's
      task-specific bytes, against ``tasks`` fine-tuned copies (each a task's whole network);
    - ``fits``: whether that fits the design's on-chip memory (``on_chip_bytes``);
    - ``switch_energy_j``: the energy of switching to a task (KSM: read backbone and mask, write the
      task's weights; fine-tuning: read the task's copy).

    Returns the per-design comparison (:func:`answer_table` and :func:`_lead` say it in a table and a
    sentence); None without both methods.
    """
    masks, copies = catalogue.subject(), catalogue.full_copy()
    if masks is None or copies is None or not {masks, copies} <= set(frame["method"]):
        return None
    axes = [a.key for a in spec.axes]
    keys = ["profile", *axes, "network"]
    rows = frame[frame["mode"].isin(["folded", "-"])]
    ksm = rows[rows["method"] == masks].drop_duplicates([*keys, "workload"])
    ft = rows[rows["method"] == copies].drop_duplicates(keys)
    both = ksm.merge(ft, on=keys, suffixes=("_ksm", "_ft"), sort=False)
    if both.empty:
        return None
    t = spec.tasks
    # the backbone's own weights = the fine-tuned copy of the masked layers (finetune's mask_storage_bits)
    backbone = both["mask_storage_bits_ft"] / 8
    out = both[keys].copy()
    out["variant"] = both["variant_ksm"]
    several = both.groupby(keys)["workload_ksm"].transform("nunique") > 1  # e.g. soft and binary-only KSM runs
    out["network"] = both["network"].where(~several, both["network"] + " (" + both["workload_ksm"] + ")")
    out = out.assign(
        on_chip_bytes=both["on_chip_bytes_ksm"],
        ksm_system_bytes=backbone + t * both["task_specific_bytes_ksm"],
        finetune_system_bytes=t * both["task_specific_bytes_ft"],
        ksm_switch_energy_j=both["switch_energy_j_ksm"],
        finetune_switch_energy_j=both["switch_energy_j_ft"],
        ksm_energy_j=both["energy_j_ksm"] + both["switch_energy_j_ksm"],
        finetune_energy_j=both["energy_j_ft"] + both["switch_energy_j_ft"],
    )
    out["ksm_fits"] = out["ksm_system_bytes"] <= out["on_chip_bytes"]
    out["finetune_fits"] = out["finetune_system_bytes"] <= out["on_chip_bytes"]
    # masks pay where only KSM's deployment fits on chip, or where a switch costs less with masks
    out["masks_pay"] = (out["ksm_fits"] & ~out["finetune_fits"]) | (
        out["ksm_energy_j"] < out["finetune_energy_j"])
    return out


def _engineering_frame(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``frame`` with each quantity column in one engineering unit (the unit in its header)."""
    from hwsim.report import axes_style

    out = frame.copy()
    for col in cols:
        if col in out.columns and col in BASE_UNITS and BASE_UNITS[col]:
            factor, unit = axes_style.engineering(out[col].dropna().tolist(), BASE_UNITS[col])
            out[col] = out[col] * factor
            out = out.rename(columns={col: f"{WHAT[col]} ({unit})"})
    return out


def best_per_variant(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """One row per method variant and mode: how many workloads (tasks) it has, and the lowest of each
    objective over the feasible designs (the median over its workloads; each objective's lowest is usually a
    different design: the front holds the trade-offs)."""
    cols = spec.objective_columns
    ok = frame[frame["feasible"]]
    lowest = ok.groupby(["variant", "mode", "workload"], sort=False)[cols].min().groupby(["variant", "mode"]).median()
    count = frame.groupby(["variant", "mode"])["workload"].nunique()
    table = lowest.join(count.rename("workloads")).reset_index()
    table = table.iloc[sorted(range(len(table)), key=lambda i: (catalogue.label_rank(table["variant"].iloc[i]),
                                                                table["mode"].iloc[i]))]
    table = _engineering_frame(table[["variant", "mode", "workloads", *cols]], cols)
    return table.rename(columns={c: f"lowest {c}" for c in table.columns if "(" in c})


def answer_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`masks_vs_copies` per KSM variant (and mask-scale precision), over its workloads: the on-chip
    memory at which the masks pay and at which they stop, in MiB."""
    by = ["variant", *([SCALE_AXIS] if SCALE_AXIS in table.columns else [])]
    rows = []
    mib = 2.0**20

    def span(values: pd.Series, scale: float = mib) -> str:
        lo, hi = values.min() / scale, values.max() / scale
        return f"{lo:.3g}" if f"{lo:.3g}" == f"{hi:.3g}" else f"{lo:.3g}-{hi:.3g}"

    for key, g in table.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        paying = g[g["masks_pay"]]
        per_task = paying.groupby("network")["on_chip_bytes"]
        fit = g[g["finetune_fits"]]
        row = {"KSM variant": key[0], **({"mask scale (bits)": key[1]} if len(key) > 1 else {}),
               "workloads": g["network"].nunique(),
               "KSM deployment (MiB)": span(g["ksm_system_bytes"]),
               "copies (MiB)": span(g["finetune_system_bytes"]),
               "masks pay from (MiB)": span(per_task.min()) if len(paying) else "never",
               "up to (MiB)": span(per_task.max()) if len(paying) else "-",
               "stop paying at (MiB)": span(fit.groupby("network")["on_chip_bytes"].min()) if len(fit) else "not swept",
               "copy switch / KSM switch energy": (span(fit["finetune_switch_energy_j"] / fit["ksm_switch_energy_j"], 1.0)
                                                   if len(fit) else "-")}
        rows.append(row)
    return pd.DataFrame(rows)


def _lead(table: pd.DataFrame, tasks: int) -> str:
    """The answer in one sentence, over every KSM workload of :func:`masks_vs_copies`."""
    mib = 2.0**20
    paying = table[table["masks_pay"]]
    fit = table[table["finetune_fits"]]
    if paying.empty:
        return f"KSM's masks never pay against {tasks} fine-tuned copies on this sweep."
    text = (f"KSM's {tasks}-task deployments pay against {tasks} fine-tuned copies at on-chip memory from "
            f"{paying['on_chip_bytes'].min() / mib:.3g} MiB up to {paying['on_chip_bytes'].max() / mib:.3g} MiB")
    if len(fit):
        text += (f", and stop paying from {fit['on_chip_bytes'].min() / mib:.3g} MiB, where the copies "
                 f"({fit['finetune_system_bytes'].min() / mib:.3g} MiB) fit and a switch to a copy costs "
                 f"{(fit['finetune_switch_energy_j'] / fit['ksm_switch_energy_j']).median():.2g}x KSM's energy.")
    else:
        text += "; on this sweep they never stop paying (no swept size holds the copies)."
    return text


def write_summary(frame: pd.DataFrame, spec: Spec, out: Path, command: str, figures: list[Path],
                  stats: dict[str, Any]) -> Path:
    """``summary.md``: the answer first (where KSM's masks pay against fine-tuned copies, when the sweep has
    both), then the lowest cost per workload, the sweep and how to regenerate it, and the figures. Every
    point is in ``points.csv``, every front in ``front.csv``, the per-design comparison in
    ``masks-vs-copies.csv``."""
    lines = [f"# {spec.name}", ""]
    compare = masks_vs_copies(frame, spec)
    if compare is not None:
        table = compare
        answer = answer_table(table)
        lines += ["## Answer", "", _lead(table, spec.tasks), "", units.markdown(answer, index=False), "",
                  (f"(Per design, folded mode: the deployment stores the backbone plus {spec.tasks} tasks' masks, "
                   f"BatchNorm and heads, or {spec.tasks} whole fine-tuned networks. Masks *pay* where KSM's "
                   "deployment fits in on-chip memory and the copies do not, or where a task switch plus an "
                   "inference costs less energy with masks. A switch is priced cold; the inference "
                   + ("in steady state." if spec.steady_state else "cold.")
                   + " Every design and workload: `masks-vs-copies.csv`.)"), ""]
        atomic_write_with(out / "masks-vs-copies.csv", lambda p: table.to_csv(p, index=False))
    lines += ["## Lowest cost per method", "",
              ("Lowest of each objective over the feasible designs, median over each variant's workloads "
               "(usually a different design for each objective: the front holds the trade-offs; `front.csv` "
               "lists them per workload)."), ""]
    best = best_per_variant(frame, spec)
    for c in best.columns:
        best[c] = best[c].map(_fmt)
    lines += [units.markdown(best, index=False), ""]
    sweep = (f"Spec: `{spec.path.name}`. {len(frame):,} points: {len(spec.designs):,} designs "
             f"({' x '.join(f'{len(a.values)} {a.key}' for a in spec.axes) or 'no axes'} on "
             f"{', '.join(spec.profiles)}) x {len(spec.workloads)} workloads x modes; "
             f"{spec.tasks} tasks, batch {spec.batch}, {'steady state' if spec.steady_state else 'cold'}.")
    speed = (f"Costed {stats['costed']:,} points in {stats['seconds']:.1f} s ({stats['rate']:.0f} points/s, "
             f"{stats['engine']}); {stats['reused']:,} reused from an earlier run.")
    lines += ["## The sweep", "", "Regenerate with:", "", "```", command, "```", "", sweep, "", speed, ""]
    lines += [f"Warning: {note}" for note in spec.notes] + ([""] if spec.notes else [])
    lines += [f"Objectives (minimised): {', '.join(f'{o} ({UNITS[QUANTITIES[o]]})' for o in spec.objectives)}."]
    if spec.constraints:
        parts = []
        for name, (lo, hi) in spec.constraints.items():
            parts.append(" and ".join(x for x in ((f"{name} ≥ {lo:g}" if lo is not None else ""),
                                                   (f"{name} ≤ {hi:g}" if hi is not None else "")) if x))
        lines += [(f"Constraints: {'; '.join(parts)}: {int(frame['feasible'].sum()):,} of {len(frame):,} "
                   f"points feasible.")]
    lines += ["", ("Energy and latency are hwsim's analytical estimates per inference; area is "
                   "`hwsim.hardware.area` (MAC array and on-chip memories at the profile's technology node; "
                   "off-chip memory excluded)."), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures]
        lines += [""]
    table_files = "`points.csv` / `points.parquet`" if parquet_available() else "`points.csv` (no Parquet: pyarrow missing)"
    lines += [f"Files: {table_files} (every point), `front.csv` (the fronts), `points.jsonl` (resume cache)"
              + (", `masks-vs-copies.csv`." if compare is not None else "."), ""]
    path = out / "summary.md"
    atomic_write_with(path, lambda p: p.write_text("\n".join(lines), encoding="utf-8"))
    return path
