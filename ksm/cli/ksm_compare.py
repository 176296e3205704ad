"""``ksm-compare``: the fair comparison of every method on the default suite, with its report."""

from __future__ import annotations

import os
import shlex
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click

from hwsim.fileio.output_guard import PathOption, one_line_os_errors, raise_on_sigterm
from hwsim.work_budget import Estimate, WorkRefused, refuse_over_cap
from hwsim.workload.runcheck import one_line_warnings
from ksm.cli.ksm_train import CONTEXT_SETTINGS, MAX_PROCESSES, LiveHelp, needs_torch
from ksm.methods.registry import LiveChoice
from ksm.checks import device_option

if TYPE_CHECKING:
    from ksm.compare.protocol import Protocol


def _protocols() -> ModuleType:
    """:mod:`ksm.compare.protocol` (torch), imported when an option is parsed or shown: without torch the
    command ends in one line naming the extra to install (:func:`ksm.cli.ksm_train.needs_torch`)."""
    from ksm.compare import protocol

    return protocol

# The work of a comparison is counted in training epochs (units × trials × epochs) and held to a cap that
# --max-training-epochs lifts: the long protocol with every variant is 8,200, --seeds 1000000000 would be
# 4·10^11. Its time is estimated at the standard protocol's measured rate, 37 minutes for its 1,224 training
# epochs with --workers 2 on 2 CPU cores (docs/comparison.md), so 3.6 s a training epoch a worker, at 500
# training images of 32 px a task, scaled by the pixels and images asked for (all images counted as 500).
MAX_TRAINING_EPOCHS = 20_000
SECONDS_PER_TRAINING_EPOCH = 3.6


def _command() -> str:
    """This invocation as a command line: the options given on it, in the order ``--help`` lists them."""
    ctx = click.get_current_context()
    words = ["ksm-compare"]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if param.is_flag and not param.secondary_opts:
            words.append(param.opts[0])
        elif param.is_flag:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            for item in value if param.multiple else (value,):
                words += [param.opts[0], shlex.quote(str(item))]
    return " ".join(words)


def comparison_estimate(protocol: Protocol, seeds: int, workers: int, cap: int = MAX_TRAINING_EPOCHS) -> Estimate:
    """The training epochs of ``protocol`` run with ``seeds`` seeds (counted, not built: ``--seeds 10**9``
    is refused before a tuple of a billion seeds exists) and their time on ``workers``."""
    from ksm.compare.protocol import VARIANTS, trial_grid

    per_seed = sum(len(protocol.tasks) * len(trial_grid(protocol, VARIANTS[v])) * protocol.epochs
                   for v in protocol.variants)
    scale = (protocol.input_size / 32) ** 2 * (protocol.max_train / 500 if protocol.max_train else 1)
    return Estimate.of("ksm-compare", "training epochs", seeds * per_seed,
                       seconds_per_unit=SECONDS_PER_TRAINING_EPOCH * scale / workers, cap=cap,
                       option="--max-training-epochs")


def _variant_help() -> str:
    """``--variant``'s help, from the variants registered when it is shown (a new method's too)."""
    by_name = [name for name, v in _protocols().VARIANTS.items() if not v.standard]
    return ("Only these variants (repeatable; default: the published comparison's, ablations included). "
            + (f"Asked for by name only: {', '.join(by_name)}, e.g. --variant {by_name[0]} beside the others."
               if by_name else ""))


@click.command(cls=needs_torch("ksm-compare"), context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="ksm", prog_name="ksm-compare")
@click.option("--protocol", "protocol_name", type=LiveChoice(lambda: tuple(_protocols().PROTOCOLS)), default="standard",
              show_default=True,
              help="smoke: CI-sized, checks the machinery (numbers not meaningful); standard: the README's "
                   "headline, about an hour on 2 CPU cores with --workers 2; long: all training images, 64 px, "
                   "8 trials, 5 seeds (for a GPU).")
@click.option("--out", type=PathOption(path_type=Path), default=None,
              help="Comparison folder (run folders per seed). Default: runs-compare/<protocol>.")
@click.option("--report", "report_dir", type=PathOption(path_type=Path), default=None,
              help="Where comparison.md, comparison.csv and comparison.png go. Default: reports/default for "
                   "the standard protocol, reports/compare-<protocol> for the others.")
@click.option("--readme", type=PathOption(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Also replace the <!-- comparison:begin/end --> block of this Markdown file with the table.")
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Only these built-in tasks (repeatable; default: the whole default suite).")
@click.option("--variant", "variants", multiple=True, type=LiveChoice(lambda: tuple(_protocols().VARIANTS)), cls=LiveHelp,
              compose=_variant_help)
@click.option("--seeds", type=click.IntRange(1), default=None, help="Number of seeds (0..N-1) instead of the protocol's.")
@click.option("--max-training-epochs", type=click.IntRange(1), default=MAX_TRAINING_EPOCHS, show_default=True,
              help="Refuse a comparison of more training epochs (variants × tasks × seeds × trials × epochs) "
                   "than this; the count and its time are estimated before anything starts.")
@click.option("--workers", type=click.IntRange(1, MAX_PROCESSES), default=1, show_default=True,
              help="Units trained in parallel processes; on CPU use it with --threads 1.")
@click.option("--threads", type=click.IntRange(1, MAX_PROCESSES), default=None, help="torch CPU threads per worker.")
@click.option("--device", default="cpu", show_default=True, callback=device_option, help="torch device, e.g. cpu or cuda.")
@click.option("--resume", is_flag=True, help="Continue an interrupted comparison (finished units are kept).")
@click.option("--force", is_flag=True, help="Delete the comparison folder and start over.")
@click.option("--report-only", is_flag=True, help="Only rebuild the report from the finished runs under --out.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a tqdm progress bar.")
@one_line_os_errors  # a full disk, ulimit -f, a read-only folder: one line naming the file
def main(protocol_name: str, out: Path | None, report_dir: Path | None, readme: Path | None, tasks: tuple[str, ...],
         variants: tuple[str, ...], seeds: int | None, max_training_epochs: int, workers: int, threads: int | None,
         device: str, resume: bool, force: bool, report_only: bool, progress: bool) -> None:
    """Compare the methods (their published variants, ablations included) fairly.

    Each task's training split is split once into train and validation (fixed seed). Every variant
    gets the same learning-rate grid and seeds; the rates and the epoch are chosen on validation only,
    and the test split is read once, for the chosen trial. The report gives test top-1 as mean ± std
    over seeds, says which differences are within noise (Welch's t-test), and puts the ablations and
    the training cost beside it.

    \b
    Examples:
      ksm-compare --workers 2 --threads 1 --readme README.md     # the README's table (~1 h, 2 cores)
      ksm-compare --protocol smoke --out /tmp/cmp --report /tmp/cmp-report
      ksm-compare --protocol long --device cuda                    # all images, 64 px, 5 seeds
      ksm-compare --report-only --out runs-compare/standard      # rebuild the report
    """
    one_line_warnings()
    raise_on_sigterm()
    from ksm.compare.comparison import check_outputs, read_protocol, readme_block, update_readme, write_report
    from ksm.data.datasets import DEFAULT_SUITE
    from ksm.compare.protocol import PROTOCOLS, check_comparison_folder, run_comparison

    protocol = PROTOCOLS[protocol_name]
    changes: dict[str, object] = {}
    if tasks:
        unknown = [t for t in tasks if t not in DEFAULT_SUITE]
        if unknown:
            raise click.UsageError(f"--task {unknown[0]}: the comparison runs on the built-in tasks "
                                   f"({', '.join(DEFAULT_SUITE)})")
        changes["tasks"] = tuple(dict.fromkeys(tasks))
    if variants:
        changes["variants"] = tuple(dict.fromkeys(variants))
        if len(changes["variants"]) < 2:
            raise click.UsageError("--variant: name at least two variants to compare (or none for all)")
    protocol = replace(protocol, **changes)
    if not report_only:
        try:
            refuse_over_cap(comparison_estimate(protocol, seeds or len(protocol.seeds), workers, max_training_epochs))
        except WorkRefused as exc:
            raise click.ClickException(str(exc)) from None
    if seeds:
        protocol = replace(protocol, seeds=tuple(range(seeds)))
    out = out or Path("runs-compare") / protocol.name
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out}: exists and is not a folder")
    try:  # every output is checked before anything is trained or written, --out first
        if not report_only:
            check_comparison_folder(protocol, out, force=force, resume=resume)
        if report_dir is None:  # named after the protocol the folder is (--report-only: was) run with
            name = read_protocol(out)["name"] if report_only else protocol.name
            report_dir = Path("reports") / ("default" if name == "standard" else f"compare-{name}")
        check_outputs(out, report_dir, readme)
        if not report_only:
            run_comparison(protocol, out, workers=workers, threads=threads, device=device, force=force,
                           resume=resume, progress=progress, command=_command())
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        paths = write_report(out, report_dir, _command())
        if readme is not None:
            update_readme(readme, readme_block(out, _command(), Path(os.path.relpath(paths["md"], readme.parent))))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(Path(paths["md"]).read_text(encoding="utf-8"))
    click.echo(f"report: {paths['md']}, {paths['csv']}, {paths['png']}")


if __name__ == "__main__":
    main()
