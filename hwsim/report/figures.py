"""The report's figures: one matplotlib figure per PNG, drawn with the object-oriented API.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot, so no global figure
state and no backend to choose) and styled inside ``matplotlib.rc_context``, so importing or calling
this module never changes anyone else's plots. Each function takes the table that ``hwsim.report.sections``
builds and writes one PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hwsim import catalogue
from hwsim.report import axes_style
from hwsim.catalogue import Style
from hwsim.fileio.atomic import atomic_write

DPI = 110
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
         "savefig.facecolor": "white"}
OUTLIER_PP = 30.0  # accuracy-vs-storage: runs this far below a task's best are pinned to the axis
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")  # per task (methods: hwsim.catalogue.style)
# Pale-to-strong hues for the stacked energy bars: one colour per memory level / operand.
LEVEL_COLORS = ("#08306b", "#2171b5", "#6baed6", "#c6dbef", "#9e9ac8", "#54278f")  # outermost level darkest


def level_colors(n: int) -> list[str]:
    """``n`` distinct colours for memory levels, outermost first: :data:`LEVEL_COLORS` while they last, then
    evenly spaced hues of matplotlib's ``viridis`` (a profile with 7 or more levels: no colour drawn twice)."""
    if n <= len(LEVEL_COLORS):
        return list(LEVEL_COLORS[:n])
    cmap = matplotlib.colormaps["viridis"]
    return [matplotlib.colors.to_hex(cmap(i / max(n - 1, 1))) for i in range(n)]
OPERAND_COLORS = {"weights": "#228833", "inputs": "#ccbb44", "outputs": "#66ccee", "masks": "#ee6677"}
FIXED_COLORS = {"MAC": "#777777", "mask ops": "#aa3377"}  # the same quantity in both panels
LINESTYLES = ("-", "--", "-.", ":")  # system storage: lines that overlap stay apart


def _save(fig: Figure, path: Path) -> Path:
    """Render, then store as a 128-colour palette PNG: a third of the size, no visible change for line art."""
    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    buffer.seek(0)
    out = io.BytesIO()
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            out, format="PNG", optimize=True)
    return atomic_write(path, out.getvalue())


def _number(x: float) -> str:
    """A bar-end label: ``1,234``, ``12.3``, ``0.0123``."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(storage, accuracy) points that no other point beats on both: smaller storage and higher accuracy."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def _scatter_style(style: Style) -> dict[str, object]:
    """A method's own runs: filled, black edge; its variants (another BatchNorm, no soft part): open."""
    if style.filled:
        return {"color": style.color, "edgecolor": "black", "linewidth": 0.4}
    return {"facecolor": "none", "edgecolor": style.color, "linewidth": 1.2}


def accuracy_vs_storage(table: pd.DataFrame, styles: Mapping[str, Style], path: Path) -> Path:
    """Figure 2: one panel per task; x = task-specific storage (KiB, log), y = top-1 (%); Pareto front.
    ``styles``: each method label's colour and marker, in legend order."""
    data = table.dropna(subset=["top-1 (%)"])
    tasks = list(dict.fromkeys(table["task"]))
    cols = min(len(tasks), 2)
    rows = math.ceil(len(tasks) / cols)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.2 * cols, 3.2 * rows + 0.5), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()  # one storage scale for all tasks
        for ax, task in zip(axes, tasks):
            sub = data[data["task"] == task]
            # Keep the axis on the competitive runs: a run far below the task's best (e.g. one stuck at
            # chance) is pinned to the bottom edge with its value written beside it.
            floor = sub["top-1 (%)"].max() - OUTLIER_PP if len(sub) else 0.0
            kept = sub[sub["top-1 (%)"] >= floor]
            bottom = max(0.0, kept["top-1 (%)"].min() - 0.08 * max(np.ptp(kept["top-1 (%)"]), 5.0)) if len(kept) else 0
            for _, row in sub.iterrows():
                low = row["top-1 (%)"] < floor
                y = bottom if low else row["top-1 (%)"]
                style = styles[row["method"]]
                ax.scatter(row["task-specific (KiB)"], y, s=36, marker=style.marker, zorder=3, clip_on=False,
                           **_scatter_style(style))
                if low:
                    ax.annotate(f"{row['top-1 (%)']:.1f}% (off scale)", (row["task-specific (KiB)"], y),
                                xytext=(6, 4), textcoords="offset points", fontsize=7, color="0.3")
            if len(sub) > len(kept):
                ax.set_ylim(bottom=bottom)
            front = pareto_front(list(zip(sub["task-specific (KiB)"], sub["top-1 (%)"])))
            if len(front) > 1:
                xs, ys = zip(*front)
                ax.step(xs, ys, where="post", color="0.35", linewidth=1, linestyle="--", zorder=2)
            elif not front:
                ax.text(0.5, 0.5, "no accuracy recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_xscale("log")
            ax.set_title(task)
            ax.set_xlabel("task-specific storage (KiB, log scale)")
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_ylabel("test top-1 (%)")
        for ax in axes[len(tasks):]:
            ax.set_visible(False)
        handles = [matplotlib.lines.Line2D([], [], color=st.color, marker=st.marker, linestyle="",
                                           markerfacecolor=st.facecolor,
                                           markeredgecolor="black" if st.filled else st.color,
                                           markeredgewidth=0.4 if st.filled else 1.2, label=m)
                   for m, st in styles.items()]
        handles.append(matplotlib.lines.Line2D([], [], color="0.35", linestyle="--", label="Pareto front"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
        fig.suptitle("Accuracy vs per-task storage (up and left is better)")
        return _save(fig, path)


def energy_split(parts: pd.DataFrame, profile: str, path: Path) -> Path:
    """Figure 3: stacked bars of energy per inference (µJ) per method, by memory level and by operand."""
    methods = list(parts.index)
    groups = set(parts.columns.get_level_values(0))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.5, 1.9 + 0.42 * max(len(methods), 2)), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, group, title in zip(axes, ("level", "operand"), ("by memory level", "by operand")):
            sub = parts[group] if group in groups else pd.DataFrame(index=methods)
            left = pd.Series(0.0, index=methods)
            levels = [c for c in sub.columns if c not in FIXED_COLORS]
            shades = level_colors(len(levels))
            for col in sub.columns:
                color = FIXED_COLORS.get(col) or (OPERAND_COLORS.get(col) if group == "operand" else
                                                  shades[levels.index(col)])
                ax.barh(methods, sub[col], left=left, color=color, label=col, edgecolor="white", linewidth=0.5)
                left = left + sub[col]
            for y, total in enumerate(left):
                ax.text(total, y, f" {_number(total)}", va="center", ha="left", fontsize=7.5)
            ax.set_xlim(0, left.max() * 1.16 if left.max() > 0 else 1)
            ax.set_title(title)
            ax.set_xlabel("energy per inference (µJ)")
            ax.grid(axis="y", visible=False)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16 - 0.3 / max(len(methods), 2)),
                      ncols=min(len(sub.columns), 4), frameon=False)
        axes[0].invert_yaxis()
        fig.suptitle(f"Energy per inference on {profile} (mask applied on the fly; mean over each method's tasks)")
        return _save(fig, path)


def system_storage(system: pd.DataFrame, styles: Mapping[str, Style], path: Path,
                   crossings: dict[str, int | None] | None = None) -> Path:
    """Figure 4: whole-system storage vs number of tasks (``system`` in MiB), one line per method
    (colour and marker from ``styles``); ``crossings`` (method -> first T at which fine-tuning stores
    more) are marked."""
    scale, unit = (1.0, "MiB") if system.to_numpy().max() >= 1 else (1024.0, "KiB")
    data = system * scale
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.2, 4.2), layout="constrained")
        ax = fig.subplots()
        for i, method in enumerate(data.columns):
            style = styles[method]
            ax.plot(data.index, data[method], color=style.color, marker=style.marker, markerfacecolor=style.facecolor,
                    markersize=3.5, linewidth=1.5, linestyle=LINESTYLES[i % len(LINESTYLES)], label=method)
        overtakes = {m: t for m, t in (crossings or {}).items() if t is not None and t > 1}  # was below first
        copies = catalogue.full_copy()
        for method, t in overtakes.items():
            if copies in data.columns:
                ax.plot([t], [data.loc[t, copies]], marker="o", markersize=9, markerfacecolor="none",
                        markeredgecolor="black", linestyle="")
        ax.set_xlabel("number of tasks sharing the backbone")
        ax.set_ylabel(f"total storage ({unit}, log scale)")
        ax.set_xlim(0.5, data.index.max() + 0.5)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_yscale("log")  # methods an order of magnitude apart share the axis without hiding the low ones
        axes_style.plain_ticks(ax.yaxis, log=True)
        last = data.index.max()
        axes_style.label_line_ends(ax, [(last, float(data.loc[last, m]), m, styles[m].color) for m in data.columns],
                                   log_y=True)
        if overtakes and copies in data.columns:
            ax.plot([], [], marker="o", markersize=9, markerfacecolor="none", markeredgecolor="black",
                    linestyle="", label="fine-tuning overtakes")
            ax.legend(handles=ax.get_lines()[-1:], frameon=False, loc="upper left")
        ax.set_title("Storage of the whole system: shared backbone + T x task-specific")
        return _save(fig, path)


def layer_masks(layers: pd.DataFrame, run: str, profile: str, path: Path, top: int = 15) -> Path:
    """Figure 5: per-layer mask storage (KiB) and mask bytes fetched per inference, largest layers first."""
    frame = layers.sort_values("mask (KiB)", ascending=False)
    if len(frame) > top:
        rest = frame.iloc[top:]
        frame = pd.concat([frame.iloc[:top], pd.DataFrame([{
            "layer": f"other {len(rest)} layers", "mask (KiB)": rest["mask (KiB)"].sum(),
            "mask traffic (KiB/inference)": rest["mask traffic (KiB/inference)"].sum()}])], ignore_index=True)
    names = list(frame["layer"])
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 1.6 + 0.24 * max(len(names), 4)), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, col, color, xlabel in (
                (axes[0], "mask (KiB)", "#4477aa", "stored mask per task (KiB)"),
                (axes[1], "mask traffic (KiB/inference)", "#ee6677",
                 f"mask bytes read from off-chip memory\nper inference on {profile} (KiB)")):
            ax.barh(names, frame[col], color=color)
            ax.set_xlabel(xlabel)
            ax.grid(axis="y", visible=False)
        axes[0].invert_yaxis()
        axes[0].set_ylabel("layer (largest masks first)")
        fig.suptitle(f"Per-layer mask cost: {run}")
        return _save(fig, path)


def soft_precision(soft: pd.DataFrame, binary: pd.DataFrame, path: Path) -> Path:
    """Figure 6: top-1 (%) and mask storage (KiB) vs the bits of KSM's soft part, one line per task."""
    bits = sorted(set(soft["bits"]))
    pos = {b: i for i, b in enumerate(bits)}
    tasks = list(dict.fromkeys(soft["task"]))
    palette = matplotlib.colormaps["tab10"].colors
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 3.8), layout="constrained")
        acc_ax, size_ax = fig.subplots(1, 2)
        for i, task in enumerate(tasks):
            sub = soft[soft["task"] == task].sort_values("bits")
            color = palette[i % len(palette)]
            x = [pos[b] for b in sub["bits"]]
            acc_ax.plot(x, sub["top-1 (%)"], color=color, marker=MARKERS[i % len(MARKERS)], label=task)
            size_ax.plot(x, sub["masks (KiB)"], color=color, marker=MARKERS[i % len(MARKERS)], label=task)
            trained = binary[binary["task"] == task].dropna(subset=["top-1 (%)"])
            if len(trained) and 0 in pos:
                acc_ax.scatter([pos[0]] * len(trained), trained["top-1 (%)"], s=48, facecolor="none",
                               edgecolor=color, linewidth=1.4, zorder=4)
        labels = [("0\n(binary)" if b == 0 else str(b)) for b in bits]
        for ax in (acc_ax, size_ax):
            ax.set_xticks(range(len(bits)), labels)
            ax.set_xlabel("bits of the soft mask scale")
        acc_ax.set_ylabel("test top-1 (%)")
        acc_ax.set_title("Accuracy with the soft part quantised")
        size_ax.set_ylabel("mask storage per task (KiB)")
        size_ax.set_ylim(bottom=0)
        size_ax.set_title("What that precision costs to store")
        handles, names = acc_ax.get_legend_handles_labels()
        if len(binary.dropna(subset=["top-1 (%)"])):
            handles.append(matplotlib.lines.Line2D([], [], marker="o", markerfacecolor="none",
                                                   markeredgecolor="0.3", linestyle=""))
            names.append("KSM trained binary-only")
        fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 5), frameon=False)
        fig.suptitle("KSM: how many bits the soft mask needs")
        return _save(fig, path)
