"""Tables, noise tests and the figure of a finished comparison (:mod:`ksm.compare.protocol`).

Everything is computed from the ``run.json`` files the comparison wrote: test top-1 as mean ± sample
standard deviation over seeds, Welch's t-test (unequal variances; scipy) to say when two variants
are within noise of each other, the chosen configurations, the training cost and the ablations.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim import catalogue, units
from hwsim.fileio.atomic import atomic_write, atomic_write_with
from hwsim.fileio.output_guard import OutputRefused, build_folder, check_no_alias, check_output_folder
from hwsim.fileio.bounded import read_json
from hwsim.workload.runcheck import read_record
from ksm.compare.protocol import COMMAND_JSON, PROTOCOL_JSON, VARIANTS
from ksm.methods.variants import contrasts

NOISE_P = 0.05  # two variants whose Welch p-value is at least this are "within noise"
SEPARATION_PP = 1.0  # a task on which all methods' means lie within this many points does not separate them
README_BEGIN = "<!-- comparison:begin -->"
README_END = "<!-- comparison:end -->"
REPORT_FILES = {"md": "comparison.md", "csv": "comparison.csv", "png": "comparison.png"}  # --report's files


def comparison_frame(folder: Path) -> pd.DataFrame:
    """One row per (task, variant, seed) finished under ``folder``; every ``run.json`` is read through its
    schema (:func:`hwsim.workload.runcheck.read_record`), so a damaged one is one line naming it."""
    rows = []
    for path in sorted(Path(folder).rglob("run.json")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        run = read_record(path.parent, ValueError)[1]  # bounded and validated; errors name the file
        sel = run.metrics.selection
        if not sel:
            continue
        _check_selection(path, run, sel)
        steps = [t for t in sel["trials"] if t.get("seconds_per_step")]
        rows.append({
            "task": run.task, "variant": sel["variant"], "role": sel["role"], "seed": sel["seed"],
            "top1": 100 * run.metrics.top1, "val_top1": 100 * sel["chosen"]["val_top1"],
            "lr_body": sel["chosen"]["lr_body"], "lr_head": sel["chosen"]["lr_head"],
            "epoch": sel["chosen"]["epoch"], "trials": len(sel["trials"]),
            "density": run.metrics.mask_density,
            "wall_seconds": run.train.wall_seconds,
            "seconds_per_step": float(np.mean([t["seconds_per_step"] for t in steps])) if steps else math.nan,
            "trial_seconds": float(np.mean([t.get("train_seconds", math.nan) for t in sel["trials"]])),
            "folder": str(path.parent)})
    if not rows:
        raise ValueError(f"{folder}: no finished comparison runs (run.json with a 'selection') found")
    return pd.DataFrame(rows)


def _check_selection(path: Path, run: Any, sel: dict[str, Any]) -> None:
    """A comparison run (``run``: its validated ``RunRecord``) has what the report reads, or one line says
    what is missing. The schema has checked the record's types and ranges; ``selection`` is free-form there, and
    ``metrics.top1`` and ``train.wall_seconds`` may be absent from a run that is not a comparison's."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"{path}: {what}")

    for key in ("variant", "role", "seed", "trials", "chosen"):
        need(key in sel, f"metrics.selection.{key}: missing key")
    need(isinstance(sel["trials"], list) and all(isinstance(t, dict) for t in sel["trials"]),
         "metrics.selection.trials: must be a list of objects")
    need(isinstance(sel["chosen"], dict) and all(k in sel["chosen"] for k in ("val_top1", "lr_body", "lr_head", "epoch")),
         "metrics.selection.chosen: must hold val_top1, lr_body, lr_head and epoch")
    need(run.metrics.top1 is not None, "metrics.top1: missing key")
    need(run.train.wall_seconds is not None, "train.wall_seconds: missing key")


def read_protocol(folder: Path) -> dict[str, Any]:
    path = Path(folder) / PROTOCOL_JSON
    if not path.exists():
        raise ValueError(f"{path}: missing; is {folder} a comparison folder (ksm-compare --out)?")
    protocol = read_json(path, ValueError)
    if not isinstance(protocol, dict) or not isinstance(protocol.get("name"), str):
        raise ValueError(f"{path}: not a comparison protocol (an object with a 'name')")
    return protocol


def _order(variants: list[str]) -> list[str]:
    known = list(VARIANTS)
    return sorted(variants, key=lambda v: (known.index(v) if v in known else len(known), v))


def suite_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, seed): the mean top-1 over the tasks (a seed missing a task gets none)."""
    tasks = frame["task"].nunique()
    grouped = frame.groupby(["variant", "seed"])["top1"]
    out = grouped.mean().to_frame("top1")
    out.loc[grouped.count() < tasks, "top1"] = math.nan
    return out.reset_index()


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value; with no spread in either sample, 1 if the means agree else 0."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if np.allclose(a, a[0]) and np.allclose(b, b[0]):
        return 1.0 if math.isclose(a.mean(), b.mean()) else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant samples: scipy warns, the p-value stands
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _samples(frame: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """{column (task or 'mean'): {variant: per-seed top-1}}."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for (task, variant), group in frame.groupby(["task", "variant"]):
        out.setdefault(task, {})[variant] = group.sort_values("seed")["top1"].to_numpy()
    for variant, group in suite_means(frame).groupby("variant"):
        values = group["top1"].to_numpy()
        if not np.isnan(values).any():
            out.setdefault("mean", {})[variant] = values
    return out


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """"mean ± std" of test top-1 (%) per variant (rows) and task (columns, then the suite mean).

    The best mean of each column is bold; ``≈`` marks variants within noise of it (Welch p ≥ 0.05).
    """
    samples = _samples(frame)
    tasks = list(dict.fromkeys(frame["task"]))
    columns = tasks + (["mean"] if "mean" in samples else [])
    table = pd.DataFrame(index=_order(list(frame["variant"].unique())), columns=columns, dtype=object)
    for column in columns:
        per = samples[column]
        best = max(per, key=lambda v: per[v].mean())
        for variant, values in per.items():
            cell = f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}"
            if variant == best:
                cell = f"**{cell}**"
            elif welch_p(values, per[best]) >= NOISE_P:
                cell = f"≈ {cell}"
            table.loc[variant, column] = cell
    table.index.name = "variant"
    return table.fillna("–")


def pair_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The contrasts the paper's claims rest on (each method's ``comparison_contrasts``): Δ mean (points),
    Welch p and the verdict, per column."""
    samples = _samples(frame)
    rows = []
    for a, b in contrasts():
        for column, per in samples.items():
            if a in per and b in per:
                delta = per[a].mean() - per[b].mean()
                p = welch_p(per[a], per[b])
                verdict = ("within noise" if not p < NOISE_P else f"{a} better" if delta > 0 else f"{b} better")
                rows.append({"A": a, "B": b, "task": column, "Δ A−B (points)": delta, "p (Welch)": p,
                             "verdict": verdict})
    return pd.DataFrame(rows)


def separation(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task: the spread of the methods' (not the ablations', not head-only's) mean top-1."""
    head_only = frame["variant"].map(lambda v: v in VARIANTS and VARIANTS[v].head_only).astype(bool)
    main = frame[(frame["role"] == "method") & ~head_only]
    means = main.groupby(["task", "variant"])["top1"].mean().unstack()
    spread = (means.max(axis=1) - means.min(axis=1)).to_frame("spread (points)")
    spread["separates the methods"] = spread["spread (points)"] >= SEPARATION_PP
    return spread.loc[list(dict.fromkeys(frame["task"]))]


def _rate(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}"


def choice_table(frame: pd.DataFrame) -> pd.DataFrame:
    """How often each (lr_body, lr_head) was chosen, the mean chosen epoch and the cost, per variant."""
    rows = []
    for variant, group in frame.groupby("variant"):
        picks = group.apply(lambda r: f"{_rate(r['lr_body'])}/{_rate(r['lr_head'])}", axis=1).value_counts()
        rows.append({"variant": variant, "chosen lr body/head (count)": ", ".join(f"{k} ×{n}" for k, n in picks.items()),
                     "epochs to selected checkpoint": group["epoch"].mean(),
                     "trials": int(group["trials"].max()),
                     "wall s / task": group["wall_seconds"].mean(),
                     "train s / trial": group["trial_seconds"].mean(),
                     "s / step": group["seconds_per_step"].mean(),
                     "final mask density": group["density"].mean() if group["density"].notna().any() else math.nan})
    return pd.DataFrame(rows).set_index("variant").loc[_order(list(frame["variant"].unique()))]


def soft_part_sentence(frame: pd.DataFrame) -> str:
    """What the data say about the soft part: KSM against its binary-only ablation (the variant without
    its soft part), suite mean."""
    samples = _samples(frame).get("mean", {})
    ablation = next((v for v in VARIANTS.values() if not v.soft), None)
    if ablation is None or ablation.method not in samples or ablation.name not in samples:
        return "The soft-part ablation was not run."
    a, b = samples[ablation.method], samples[ablation.name]
    delta, p = a.mean() - b.mean(), welch_p(a, b)
    if p < NOISE_P:
        verdict = ("the soft part adds accuracy" if delta > 0 else "the soft part costs accuracy")
    else:
        verdict = "the soft part's effect is within seed noise"
    return (f"KSM vs KSM without its soft part (kernel-wise binary only), suite mean: Δ = {delta:+.2f} points, "
            f"Welch p = {p:.3f} over {len(a)} seeds: {verdict}.")


def comparison_markdown(frame: pd.DataFrame, protocol: dict[str, Any], command: str) -> str:
    """The report: protocol, accuracy, contrasts, separation, ablations and cost."""
    grid = " × ".join(["lr body " + "/".join(f"{x:g}" for x in protocol["lr_body"]),
                       "lr head " + "/".join(f"{x:g}" for x in protocol["lr_head"])])
    seeds = sorted(frame["seed"].unique())
    lines = [
        f"# Comparison `{protocol['name']}`", "",
        f"Produced by `{command}`.", "",
        f"Protocol: {protocol['arch']} ({protocol['weights']}), {protocol['input_size']} px; "
        f"{protocol['val_fraction']:.0%} of each task's training split"
        + (f" (at most {protocol['max_val']} images)" if protocol.get("max_val") else "")
        + " held out once for validation "
        f"(seed {protocol['val_seed']}), then at most {protocol['max_train'] or 'all'} training images; "
        f"grid {grid} ({len(protocol['lr_body']) * len(protocol['lr_head'])} trials for every variant; "
        f"head-only has no body rate, so its trials collapse to the head rates); up to {protocol['epochs']} "
        f"epochs, the epoch chosen on validation; seeds {', '.join(map(str, seeds))}. "
        f"Test is read once per (task, variant, seed), for the chosen trial. PackNet and CPG choose greedily "
        f"task by task; their epochs are fixed by their prune/retrain schedules.", "",
        "## Test top-1 (%), mean ± std over seeds", "",
        f"**Bold**: the best mean of the column; ≈: within noise of it (Welch p ≥ {NOISE_P}).", "",
        units.markdown(accuracy_table(frame)), "",
        "## Does the suite separate the methods?", "",
        (f"Spread of the methods' mean top-1 per task (ablations and head-only left out); under "
         f"{SEPARATION_PP:g} point a task does not separate them."), "",
        units.markdown(separation(frame), floatfmt=".2f"), "",
        "## Contrasts", "",
        units.markdown(pair_table(frame), index=False, floatfmt=".3f"), "",
        "## Ablations and the soft part", "",
        soft_part_sentence(frame), "",
        "## Chosen configurations and training cost (same runs)", "",
        ("Wall seconds per task include every trial, the validation passes and the one test pass; train "
         "seconds per trial and seconds per step count training steps only (mean over the trials). "
         "Workers shared the machine, so compare ratios between rows rather than the seconds."), "",
        units.markdown(choice_table(frame), floatfmt=".3g"), "",
    ]
    return "\n".join(lines)


def variant_style(variant: str) -> catalogue.Style:
    """A variant is drawn in its method's colour and marker (hwsim's catalogue, as in the report's
    figures); an ablation's marker is left open."""
    known = VARIANTS.get(variant)
    if known is None:
        return catalogue.FALLBACK_STYLE
    own = catalogue.style(known.method)
    return replace(own, color=catalogue.shade(own.color, catalogue.variant_shade(variant[len(known.method):])),
                   filled=variant == known.method or (known.role == "method" and bool(known.options)))


def comparison_figure(frame: pd.DataFrame, path: Path) -> Path:
    """Mean test top-1 per variant, one panel per task, error bars one std over seeds.

    Points rather than bars, each panel on its own scale: the interesting differences are a few
    points near the top, which bars starting at 0 would hide.
    """
    import matplotlib
    from matplotlib.figure import Figure

    from hwsim.report.figures import STYLE

    tasks = list(dict.fromkeys(frame["task"]))
    variants = _order(list(frame["variant"].unique()))
    stats = frame.groupby(["task", "variant"])["top1"].agg(["mean", "std"])
    styles = {v: variant_style(v) for v in variants}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(2.3 * len(tasks) + 0.8, 3.6))
        axes = fig.subplots(1, len(tasks), squeeze=False)[0]
        for ax, task in zip(axes, tasks):  # one panel per task: each has its own scale
            for i, variant in enumerate(variants):
                if (task, variant) in stats.index:
                    mean, std = stats.loc[(task, variant)]
                    style = styles[variant]
                    ax.errorbar([i], [mean], yerr=[0 if np.isnan(std) else std], fmt=style.marker,
                                color=style.color, markerfacecolor=style.facecolor, capsize=2, markersize=5)
            ax.set_xticks(range(len(variants)), variants, rotation=70, ha="right")
            ax.grid(axis="x", visible=False)
            ax.set_title(task)
        axes[0].set_ylabel("test top-1 (%)")
        fig.suptitle("Test top-1 per task: mean ± std over seeds (chosen on validation)", fontsize=10)
        fig.supxlabel("variant", fontsize=9)
        fig.tight_layout()
        path = Path(path)
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return path


def producing_command(folder: Path, fallback: str) -> str:
    """The command that trained the comparison (``OUT/command.json``), else ``fallback``."""
    path = Path(folder) / COMMAND_JSON
    if not path.exists():
        return fallback
    saved = read_json(path, ValueError)  # bounded; errors name the file
    return str(saved.get("command") or fallback) if isinstance(saved, dict) else fallback


def write_report(folder: Path, report_dir: Path, command: str) -> dict[str, Path]:
    """``comparison.md``, ``comparison.csv`` (every run) and ``comparison.png`` under ``report_dir``, through the
    output guard: ``report_dir`` is new, empty or this project's, and other files in it are left alone."""
    command = producing_command(folder, command)
    frame = comparison_frame(folder)
    protocol = read_protocol(folder)
    names = REPORT_FILES
    with build_folder(report_dir, "ksm-compare", [folder]) as tmp:  # a folder of ours, published whole
        for key, text in (("md", comparison_markdown(frame, protocol, command)),
                          ("csv", frame.drop(columns="folder").to_csv(index=False))):
            atomic_write(tmp / names[key], text)
        comparison_figure(frame, tmp / names["png"])
    return {key: Path(report_dir) / name for key, name in names.items()}


def readme_block(folder: Path, command: str, report: Path) -> str:
    """The README's summary: command, accuracy table, the soft-part sentence and a link to the report."""
    frame, protocol, command = comparison_frame(folder), read_protocol(folder), producing_command(folder, command)
    return "\n".join([
        README_BEGIN,
        f"Produced by `{command}` (protocol `{protocol['name']}`; full report: [{report}]({report})).", "",
        units.markdown(accuracy_table(frame)), "",
        soft_part_sentence(frame),
        README_END])


def _readme_block(readme: Path, where: str) -> tuple[str, int, int]:
    """(the text of ``readme``, where its comparison block starts, where its end marker starts); one line
    naming ``where`` when it has no block."""
    try:
        text = Path(readme).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: not UTF-8 text ({exc.reason})") from None
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: no '{README_BEGIN}' … '{README_END}' block to replace")
    return text, start, end


def update_readme(readme: Path, block: str) -> None:
    """Replace the text between the comparison markers of ``readme`` (atomically)."""
    text, start, end = _readme_block(readme, str(readme))
    atomic_write(readme, text[:start] + block + text[end + len(README_END):])


def check_outputs(folder: Path, report_dir: Path, readme: Path | None) -> None:
    """Every output of ``ksm-compare`` checked before anything is trained or written, as the output guard will
    check it when it writes (one line naming the option and the file): ``--report`` is new, empty or this
    project's and neither is, holds nor lies inside the comparison folder ``folder``; ``--readme`` has the
    block to replace, lies outside ``folder`` (``--force`` deletes it) and is not one of the report's
    files."""
    try:
        check_no_alias([report_dir], [folder])
        check_output_folder(report_dir)
    except OutputRefused as exc:
        raise OutputRefused(f"--report {exc}") from None
    if readme is None:
        return
    _readme_block(readme, f"--readme {readme}")
    try:
        check_no_alias([readme], [folder])
        check_no_alias([Path(report_dir) / name for name in REPORT_FILES.values()], [readme])
    except OutputRefused as exc:
        raise OutputRefused(f"--readme {readme}: {exc}") from None
