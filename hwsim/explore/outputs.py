"""What a sweep writes: the tidy table (CSV + Parquet), the Pareto front, figures, a Markdown summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim import catalogue
from hwsim.explore.pareto import pareto_mask
from hwsim.explore.spec import QUANTITIES, UNITS, Spec
from hwsim.fileio.atomic import atomic_write_with

LABELS = {"energy_j": "energy per inference (J)", "latency_s": "latency per inference (s)",
          "area_mm2": "area (mm²)", "edp_js": "energy-delay product (J·s)",
          "task_specific_bytes": "task-specific storage (B)", "accuracy": "top-1 accuracy"}


def points_frame(spec: Spec, points: list[Any], rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per point, in plan order: axis labels, workload, method, options, results, feasibility, front."""
    records = []
    for p in points:
        labels, _design = spec.designs[p.design]
        item = spec.workloads[p.workload]
        # "network" groups what is compared across methods: the network, or for run folders the task
        network = item.work.source if item.work.task is None else f"task {item.work.task}"
        record = {**labels, "workload": item.key, "network": network, "task": item.work.task,
                  "method": item.work.method or "none", "tasks": p.options.tasks, "batch": p.options.batch,
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


def write_tables(frame: pd.DataFrame, out: Path) -> list[Path]:
    """``points.csv``, ``points.parquet`` (pyarrow) and ``front.csv``."""
    paths = [out / "points.csv", out / "points.parquet", out / "front.csv"]
    atomic_write_with(paths[0], lambda p: frame.to_csv(p, index=False))
    atomic_write_with(paths[1], lambda p: frame.to_parquet(p, index=False, engine="pyarrow"))
    atomic_write_with(paths[2], lambda p: frame[frame["on_front"]].to_csv(p, index=False))
    return paths


# --------------------------------------------------------------------------------------------
# Figures


def _scale(col: str, values: pd.Series) -> str:
    return "log" if col != "accuracy" and values.max() > 20 * max(values.min(), 1e-300) else "linear"


def figure_front(frame: pd.DataFrame, spec: Spec, path: Path) -> Path:
    """Front scatter: every pair of objectives; dominated or infeasible points grey, the front coloured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = spec.objective_columns
    pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1:]] or [(cols[0], "accuracy")]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.4), squeeze=False)
    groups = list(dict.fromkeys(frame["workload"]))
    colours = plt.get_cmap("tab10")
    for ax, (x, y) in zip(axes[0], pairs):
        rest = frame[~frame["on_front"]]
        ax.scatter(rest[x], rest[y], s=6, c="0.78", label="dominated or infeasible", zorder=1)
        for i, g in enumerate(groups):  # later groups drawn smaller on top, so coinciding fronts stay visible
            front = frame[frame["on_front"] & (frame["workload"] == g)]
            ax.scatter(front[x], front[y], s=max(70 - 14 * i, 10), color=colours(i % 10), label=f"front: {g}",
                       zorder=2 + i, marker="osD^vP*X"[i % 8], edgecolors="black", linewidths=0.3)
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel(LABELS.get(y, y))
        for col, setter, which in ((x, ax.set_xscale, "x"), (y, ax.set_yscale, "y")):
            scale = _scale(col, frame[col].dropna()) if frame[col].notna().any() and frame[col].min() > 0 else "linear"
            setter(scale)
            if scale == "linear":
                ax.ticklabel_format(axis=which, style="sci", scilimits=(-2, 3), useMathText=True)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{spec.name}: Pareto front per workload ({', '.join(spec.objectives)} minimised)")
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=120, format=path.suffix[1:]))
    plt.close(fig)
    return path


def _order(labels: list[str]) -> list[str]:
    def key(text: str) -> tuple[int, float, str]:
        try:
            return (0, float(text), text)
        except ValueError:
            return (1, 0.0, text)

    return sorted(labels, key=key)


def figure_sensitivity(frame: pd.DataFrame, spec: Spec, axis: str, path: Path) -> Path:
    """One axis: each objective's best (minimum) over the other axes, per workload and mode, vs the axis value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = spec.objective_columns
    fig, axes = plt.subplots(1, len(cols), figsize=(4.6 * len(cols), 3.9), squeeze=False)
    ticks = _order(list(dict.fromkeys(frame[axis].astype(str))))
    pos = {t: i for i, t in enumerate(ticks)}
    for ax, col in zip(axes[0], cols):
        for i, ((workload, mode), group) in enumerate(frame.groupby(["workload", "mode"], sort=False)):
            best = group.groupby(group[axis].astype(str))[col].min()
            xs = [pos[t] for t in ticks if t in best.index]
            label = workload if mode == "-" else f"{workload} ({mode})"
            ax.plot(xs, [best[t] for t in ticks if t in best.index], marker="osD^vP*X"[i % 8], ms=4,
                    linestyle="--" if mode == "on_the_fly" else "-", label=label)
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels([_short(t) for t in ticks], rotation=35, ha="right", fontsize=7)
        ax.set_xlabel(f"{axis}{_unit_of(axis)}")
        ax.set_ylabel(f"best {LABELS.get(col, col)}")
        scale = _scale(col, frame[col].dropna()) if frame[col].min() > 0 else "linear"
        ax.set_yscale(scale)
        if scale == "linear":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{spec.name}: sensitivity to {axis} (minimum over the other axes)")
    fig.tight_layout()
    atomic_write_with(path, lambda p: fig.savefig(p, dpi=120, format=path.suffix[1:]))
    plt.close(fig)
    return path


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


def masks_vs_copies(frame: pd.DataFrame, spec: Spec) -> tuple[pd.DataFrame, str] | None:
    """KSM masks against fine-tuned copies on each design, ``tasks`` tasks deployed.

    Per design (axis values) and network, in folded mode (the mask folded into the weights at a task
    switch, so one inference costs the backbone either way):

    - ``system_bytes``: what the deployment stores: the shared backbone plus ``tasks`` x KSM's
      task-specific bytes, against ``tasks`` fine-tuned copies (each a task's whole network);
    - ``fits``: whether that fits the design's on-chip memory (``on_chip_bytes``);
    - ``switch_energy_j``: the energy of switching to a task (KSM: read backbone and mask, write the
      task's weights; fine-tuning: read the task's copy).

    Returns the per-design comparison and one sentence; None without both methods.
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
    sentences = []
    by = ["network", *([SCALE_AXIS] if SCALE_AXIS in out.columns else [])]
    for key, g in out.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        network = key[0] + (f", {key[1]}-bit mask scale" if len(key) > 1 else "")
        g = g.sort_values("on_chip_bytes")
        paying = g[g["masks_pay"]]
        ft_fit = g[g["finetune_fits"]]
        first_ft = ft_fit["on_chip_bytes"].min() if len(ft_fit) else None
        if paying.empty:
            sentences.append(f"- **{network}**: KSM's masks never pay against {t} fine-tuned copies on this "
                             f"sweep (a switch with fine-tuned copies always costs less energy, and wherever "
                             f"KSM's deployment fits on chip so do the copies).")
            continue
        stop = g[(g["on_chip_bytes"] > paying["on_chip_bytes"].max())]
        where_pay = ", ".join(f"{b / 2**20:.3g}" for b in sorted(set(paying["on_chip_bytes"])))
        text = (f"- **{network}**: KSM's masks pay at on-chip memory of {where_pay} MiB (KSM's {t}-task "
                f"deployment, {g['ksm_system_bytes'].iloc[0] / 2**20:.3g} MiB, fits on chip while {t} fine-tuned "
                f"copies, {g['finetune_system_bytes'].iloc[0] / 2**20:.3g} MiB, do not)")
        if first_ft is not None:
            text += (f"; they **stop paying at {first_ft / 2**20:.3g} MiB** of on-chip memory (the first swept size "
                     f"at or above the copies' {g['finetune_system_bytes'].iloc[0] / 2**20:.3g} MiB), where all {t} "
                     f"fine-tuned copies fit and a switch costs "
                     f"{g['finetune_switch_energy_j'].iloc[0] / g['ksm_switch_energy_j'].iloc[0]:.2g}x KSM's "
                     f"energy.")
        elif not stop.empty:
            text += f"; they stop paying above {stop['on_chip_bytes'].min() / 2**20:.3g} MiB."
        else:
            text += "; on this sweep they never stop paying (no swept size holds the fine-tuned copies)."
        sentences.append(text)
    return out, "\n".join(sentences)


def write_summary(frame: pd.DataFrame, spec: Spec, out: Path, command: str, figures: list[Path],
                  stats: dict[str, Any]) -> Path:
    """``summary.md``: the command, the sweep, the front per workload, figures, and masks vs copies."""
    cols = spec.objective_columns
    lines = [f"# {spec.name}", "", "Regenerate with:", "", "```", command, "```", ""]
    sweep = (f"Spec: `{spec.path.name}`. {len(frame):,} points: {len(spec.designs):,} designs "
             f"({' x '.join(f'{len(a.values)} {a.key}' for a in spec.axes) or 'no axes'} on "
             f"{', '.join(spec.profiles)}) x {len(spec.workloads)} workloads x modes; "
             f"{spec.tasks} tasks, batch {spec.batch}, {'steady state' if spec.steady_state else 'cold'}.")
    speed = (f"Costed {stats['costed']:,} points in {stats['seconds']:.1f} s ({stats['rate']:.0f} points/s, "
             f"{stats['engine']}); {stats['reused']:,} reused from an earlier run.")
    lines += [sweep, "", speed, ""]
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
    axes = [a.key for a in spec.axes]
    show = ["profile", *axes, "mode", *cols, "accuracy", "task_specific_bytes"]
    show = list(dict.fromkeys(c for c in show if c in frame.columns))
    lines += ["## Pareto front per workload", ""]
    for workload, group in frame.groupby("workload", sort=False):
        front = group[group["on_front"]].sort_values(cols)
        lines += [f"### {workload}", "", (f"{len(front)} of {len(group)} points on the front"
                                            f"{' (feasible ones only)' if spec.constraints else ''}."), ""]
        if len(front):
            table = front[show].head(15).copy()
            for c in table.columns:
                table[c] = table[c].map(_fmt)
            lines += [table.to_markdown(index=False), ""]
            if len(front) > 15:
                lines += [f"({len(front) - 15} more in `front.csv`.)", ""]
    compare = masks_vs_copies(frame, spec)
    if compare is not None:
        table, sentence = compare
        lines += [f"## KSM masks against {spec.tasks} fine-tuned copies", "",
                  ("Per design, folded mode (a task's mask is folded into the weights at a task switch). The "
                  f"deployment stores the backbone plus {spec.tasks} tasks' masks, BatchNorm and heads (KSM) "
                  f"or {spec.tasks} whole fine-tuned networks; energy is one inference plus one task switch. "
                  "Masks *pay* on a design where KSM's deployment fits in on-chip memory and the fine-tuned "
                  "copies do not (every task then runs without fetching task data from DRAM), or where a "
                  "switch plus an inference costs less energy with masks. A task switch is priced cold (the "
                  "task's data read from DRAM); the inference is priced "
                  + ("in steady state (weights and masks that fit on chip stay there)." if spec.steady_state
                     else "cold (from DRAM).")),
                  "", sentence, ""]
        by = ["network", *([SCALE_AXIS] if SCALE_AXIS in table.columns else [])]
        small = table.drop_duplicates([*by, "on_chip_bytes"]).sort_values([*by, "on_chip_bytes"])
        small = small[[*by, "on_chip_bytes", "ksm_system_bytes", "finetune_system_bytes", "ksm_fits",
                       "finetune_fits", "ksm_switch_energy_j", "finetune_switch_energy_j", "masks_pay"]]
        for c in small.columns:
            small[c] = small[c].map(_fmt)
        lines += [small.to_markdown(index=False), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in figures]
        lines += [""]
    lines += [("Files: `points.csv` / `points.parquet` (every point), `front.csv` (the fronts), "
               "`points.jsonl` (resume cache)."), ""]
    path = out / "summary.md"
    atomic_write_with(path, lambda p: p.write_text("\n".join(lines), encoding="utf-8"))
    return path
