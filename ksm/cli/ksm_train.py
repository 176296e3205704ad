"""``ksm-train``: learn task masks on a frozen pretrained backbone and write run folders.

This module is the command: its options, their ``--help`` sections (a method's own options come from
its class, :func:`ksm.methods.registry.method_cli_options`) and the checks between options. The parsed
values are an :class:`~ksm.training.train_options.Options`; :mod:`ksm.training.batch_of_runs` plans,
locks and trains the runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from hwsim import catalogue
from hwsim.fileio.output_guard import (NameOrPath, OutputRefused, PathOption, check_no_alias, one_line_os_errors,
                                        raise_on_sigterm)
from hwsim.command_line import CONTEXT_SETTINGS, OneLineCommand
from hwsim.work_budget import WorkRefused, refuse_over_cap
from hwsim.schemas.run_record import MASK_BOUND
from ksm.methods.registry import MethodChoice, method_class, method_cli_options, method_names, option_owners
from ksm.checks import device_option, finite
from ksm.training.train_options import Options

ARCH_NAMES = ("mobilenet_v2", "resnet18", "resnet50", "vgg16", "vgg16_bn")
MAX_PROCESSES = 256  # --nproc, --threads (and ksm-compare's --workers): more on one machine is a typo
# The options run.json records are bounded as its schema (hwsim/schemas/run_record.py) bounds the value
# recorded, so that a run never trains for hours and is then refused when its record is written
# (tests/ksm/test_cli.py holds each option to its field).
MAX_LEARNING_RATE = 1e3  # train.lr_body, train.lr_head
MAX_COUNT = 10 ** 12  # train.epochs, train.batch_size, dataset.max_train
MAX_IMAGE_SIDE = 16384  # dataset.input_size, pixels
# train.seed: torch seeds each epoch's data order with seed * 100003 + epoch, which must fit in 64 bits
MAX_SEED = 2 ** 32 - 1
SECTIONS: dict[str, tuple[str, ...]] = {  # --help's sections, each with its options in order
    "Tasks and methods": ("config", "tasks", "suite", "data_root", "methods"),
    "Backbone and data": ("arch", "weights", "input_size", "max_train"),
    "Training": ("epochs", "batch_size", "lr_mask", "lr_head", "seed"),
    "Masks and BatchNorm": ("batchnorm", "soft", "recalibrate_bn", "mask_init", "threshold", "beta", "temperature"),
    "Output": ("out", "runs_dir", "force", "resume", "skip_existing", "progress", "log"),
    "Hardware": ("device", "threads", "nproc", "amp", "max_memory"),
    "About": ("version",),
}
METHODS_AFTER = "Masks and BatchNorm"  # the methods' own sections (their cli_options) follow this one


def help_sections() -> list[tuple[str, tuple[str, ...]]]:
    """``--help``'s sections in order: ksm-train's own, with each registered method's options after
    :data:`METHODS_AFTER` (:func:`ksm.methods.registry.method_cli_options`)."""
    own = list(SECTIONS.items())
    at = list(SECTIONS).index(METHODS_AFTER) + 1
    methods = [(title, tuple(str(o.name) for o in options)) for title, options in method_cli_options()]
    return own[:at] + methods + own[at:]


TORCH_EXTRAS = {"ksm-train": "train", "ksm-compare": "train", "ksm-export": "train,export"}


def missing_torch() -> str | None:
    """The first of torch and torchvision that cannot be imported here, or None (no import: a spec lookup)."""
    for name in ("torch", "torchvision"):
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # a stub in sys.modules, a blocked import
            return name
    return None


def exit_without_torch(command: str) -> None:
    """End ``command`` in one line naming the extra to install when PyTorch is not installed (a torch-free
    ``pip install .`` has only the cost model: ksm-sim, ksm-explore). ``--version`` still answers."""
    missing = missing_torch()
    if missing is None or "--version" in sys.argv[1:]:
        return
    click.echo(f"Error: {command} needs PyTorch ({missing} is not installed): pip install "
               f"'ksm[{TORCH_EXTRAS[command]}]'", err=True)
    sys.exit(1)


class TorchCommand(OneLineCommand):
    """A command that needs PyTorch: without it, it ends in one line naming the extra to install
    (:func:`exit_without_torch`) before it parses anything. ``command``: its name in :data:`TORCH_EXTRAS`."""

    command = "ksm-train"

    def main(self, *args: Any, **kwargs: Any) -> Any:
        exit_without_torch(self.command)
        return super().main(*args, **kwargs)


def needs_torch(command: str) -> type[TorchCommand]:
    """The click command class of ``command`` (``ksm-compare``, ``ksm-export``): :class:`TorchCommand`."""
    return type(f"TorchCommand[{command}]", (TorchCommand,), {"command": command})


class SectionedCommand(TorchCommand):
    """A command with every registered method's own options, whose ``--help`` lists its options under the
    titles of :func:`help_sections`."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        """The declared options, the methods' own (read now: a method registered later adds its), then help."""
        params = super().get_params(ctx)
        extra = [o for _, options in method_cli_options() for o in options]
        return [*self.params, *extra, *params[len(self.params):]]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx)}
        width = min(max(len(r[0]) for r in records.values() if r), 30)  # one help column for every section
        for title, names in [*help_sections(), ("Other options", tuple(records))]:
            rows = [records.pop(name) for name in names if records.get(name)]
            if rows:
                with formatter.section(title):
                    formatter.write_dl([(term.ljust(width), text) for term, text in rows])


class LiveHelp(click.Option):
    """An option whose help is composed when it is shown, from the methods registered then and their
    catalogue rows, so that it names a method added later (a plug-in's too) and never goes stale."""

    def __init__(self, *args: Any, compose: Callable[[], str], **kwargs: Any) -> None:
        self._compose = compose
        super().__init__(*args, **kwargs)

    @property
    def help(self) -> str:  # type: ignore[override]
        return self._compose()

    @help.setter
    def help(self, value: object) -> None:  # click's __init__ assigns the static text: keep composing it
        pass


def methods_with(trait: Callable[[catalogue.MethodTraits], bool]) -> str:
    """The trainable methods whose catalogue row has ``trait``, as a list for ``--help``."""
    return ", ".join(n for n in method_names() if trait(catalogue.get(n)))


def _method_help() -> str:
    listed = ", ".join(f"{n} ({catalogue.get(n).description})" for n in method_names())
    return (f"{listed}. Methods that learn the tasks in order on shared weights "
            f"({methods_with(lambda t: t.sequence)}) train into RUNS_DIR/<method>/. Repeatable.")


def _batchnorm_help() -> str:
    policies = [(p, methods_with(lambda t, p=p: t.batchnorm == p)) for p in ("task", "frozen")]
    return "BatchNorm policy. Default: the method's own (" + "; ".join(f"{p} for {n}" for p, n in policies if n) + ")."


def _mask_help(text: str, field: str) -> Callable[[], str]:
    """``--help`` of a mask option: the default is the method's own (its class's ``default_mask``), shown as
    the value most methods share and the methods that differ."""
    def compose() -> str:
        values = {n: getattr(method_class(n).default_mask, field) for n in method_names()}
        common = max(set(values.values()), key=list(values.values()).count)
        others = "".join(f"; {n}: {v:g}" for n, v in values.items() if v != common)
        return f"{text} Default: the method's own, {common:g}{others}."
    return compose


def _soft_help() -> str:
    return (f"The soft part of a mask that has one ({methods_with(lambda t: t.soft_part)}); --no-soft trains the "
            "binary part alone (the binary ablation).")


def _out_help() -> str:
    return ("Run folder (only with one task and one method). Default: RUNS_DIR/<task> for the project's subject "
            f"({catalogue.subject()}), RUNS_DIR/<task>-<method> for the others; for a sequence method "
            f"({methods_with(lambda t: t.sequence)}) its sequence folder, default RUNS_DIR/<method>.")


# The mask options every masked method reads, and which methods read them (by their catalogue row).
_MASK_OPTION_READERS: dict[str, Callable[[catalogue.MethodTraits], bool]] = {
    "mask_init": lambda t: t.mask.learned, "threshold": lambda t: t.mask.learned,
    "beta": lambda t: t.soft_part, "temperature": lambda t: t.soft_part, "soft": lambda t: t.soft_part,
}


def option_readers() -> dict[str, tuple[str, ...]]:
    """The methods that read each method-specific option (by parameter name): a method's own options
    (:func:`ksm.methods.registry.option_owners`) and the mask options; an option not listed is everyone's."""
    owners_of = {str(option.name): owners for option, owners in option_owners().items()}
    return owners_of | {name: tuple(n for n in method_names() if reads(catalogue.get(n)))
                        for name, reads in _MASK_OPTION_READERS.items()}


def refuse_unchosen_options(ctx: click.Context, methods: Sequence[str]) -> None:
    """An option given on the command line or in ``--config`` must be read by a chosen method: ``--method ksm
    --lora-rank 8`` would otherwise train plain KSM and drop the rank without a word, ``--method finetune
    --threshold 0.1`` record a threshold no mask used."""
    given = [p for p in ctx.command.get_params(ctx)
             if ctx.get_parameter_source(str(p.name)) in (ParameterSource.COMMANDLINE, ParameterSource.DEFAULT_MAP)]
    owners_of = option_readers()
    for param in given:
        owners = owners_of.get(str(param.name))
        if owners is not None and not set(owners) & set(methods):
            name = max(param.opts, key=len) if param.name != "soft" else "--soft/--no-soft"
            raise click.UsageError(f"{name} is an option of {' and '.join(owners) or 'no trainable method'}, which "
                                   f"{'is' if len(owners) == 1 else 'are'} not among --method")


# An option's own spelling of "none", which a config file's null is pointed to (ksm.config_file.refuse_nulls):
# ``weights: null`` would otherwise reach --weights as the text "None", a randomly initialised backbone.
NONE_SPELLINGS = {"weights": "'none' for a randomly initialised backbone"}


def method_option_checks() -> dict[str, Callable[[Any], object]]:
    """Each method option's own check beyond its click type, by parameter name: its methods'
    ``options_from_cli`` on the value, their other options at their defaults (``--lora-targets bogus`` is
    LoRA's to refuse), so that ``--config`` refuses a bad value naming the key, not when the run is planned."""
    def check(option: click.Option, owners: tuple[str, ...]) -> Callable[[Any], object]:
        def run(value: Any) -> object:
            for name in owners:
                cls = method_class(name)
                cls.options_from_cli({**{str(o.name): o.default for o in cls.cli_options}, str(option.name): value})
            return value
        return run
    return {str(option.name): check(option, owners) for option, owners in option_owners().items()}


def config_option(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``--config FILE``: the file's options become the command's defaults (:mod:`ksm.config_file`), so that an
    option on the command line overrides it; a problem (a null, a bad value by the option's own check, a
    method's) is one line naming the file and the key."""
    if value is None:
        return None
    from ksm.config_file import ConfigError, read_config

    try:
        given = read_config(value, ctx.command.get_params(ctx), ctx, nones=NONE_SPELLINGS,
                            checks=method_option_checks())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.default_map = {**(ctx.default_map or {}), **given}
    return value


def task_option(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    """``--task``: each name one folder name under ``--runs-dir`` (:func:`ksm.checks.task_name`), refused up
    front; a task named twice is trained once (in the order first named), not locked against itself."""
    from ksm.checks import task_name

    return tuple(dict.fromkeys(task_name(t) for t in value))


def method_option(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    """``--method``: a method named twice is trained once (in the order first named); none at all (a config
    file's ``method: []``) would train nothing, and is refused."""
    if not value:
        raise click.BadParameter("names no method; leave it out for the default (ksm), or name one")
    return tuple(dict.fromkeys(value))


def log_option(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> tuple[str, ...]:
    """``--log``: the scalar logs asked for (repeatable, or comma-separated), refused up front when unknown or
    when TensorBoard's package is missing (before hours of training)."""
    from ksm.training.train_log import BACKENDS, TENSORBOARD_EXTRA, backends

    try:
        kinds = backends(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if "tensorboard" in kinds and importlib.util.find_spec("tensorboard") is None:
        raise click.ClickException(f"--log tensorboard needs the tensorboard package, which is not installed: "
                                   f"{TENSORBOARD_EXTRA}")
    assert set(kinds) <= set(BACKENDS)
    return kinds


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="ksm", prog_name="ksm-train")
# Tasks and methods
@click.option("--config", type=PathOption(dir_okay=False, path_type=Path), default=None, metavar="FILE.yaml",
              is_eager=True, expose_value=False, callback=config_option,
              help="Read options from a YAML file whose keys are the long option names with underscores "
                   "(lr_mask: 0.001, task: [digits, animals], soft: false); options on the command line "
                   "override it. Each run folder records the options it was made with in config.yaml.")
@click.option("--task", "tasks", multiple=True, metavar="NAME", callback=task_option,
              help="Task to learn (repeatable; a task named twice is trained once). Built in: fashion_mnist, animals, mnist5k, digits. With "
                   "--data-root: any folder under it, e.g. cubs_cropped, stanford_cars, flowers, wikiart, sketches.")
@click.option("--suite", type=click.Choice(["default"]), default=None,
              help="Shorthand for all four built-in tasks.")
@click.option("--data-root", type=PathOption(path_type=Path), default=None,
              help="Folder with the paper's benchmark in Piggyback's layout DIR/<task>/{train,test}/<class>/*.jpg.")
@click.option("--method", "methods", multiple=True, type=MethodChoice(), default=("ksm",),
              show_default=True, cls=LiveHelp, compose=_method_help, callback=method_option)
# Backbone and data
@click.option("--arch", type=click.Choice(ARCH_NAMES), default="mobilenet_v2", show_default=True,
              help="torchvision backbone.")
@click.option("--weights", type=NameOrPath(), default="IMAGENET1K_V1", show_default=True,
              help="torchvision weights name (read from $TORCH_HOME/hub/checkpoints), a local .pth state dict, "
                   "or 'none' for random init.")
@click.option("--input-size", type=click.IntRange(16, MAX_IMAGE_SIDE), default=None,
              help="Image side in pixels. Default 64 for the built-in tasks (MobileNetV2 keeps a 2×2 map "
                   "before pooling; 32 px is 2× faster and loses accuracy), 224 with --data-root.")
@click.option("--max-train", type=click.IntRange(0, MAX_COUNT), default=3000, show_default=True,
              help="Built-in tasks: use at most N training images per task (class-balanced, fixed seed; "
                   "0 = all). Keeps the default job under 20 minutes on 2 CPU cores; ignored with --data-root.")
# Training
@click.option("--epochs", type=click.IntRange(1, MAX_COUNT), default=2, show_default=True,
              help="Epochs per task.")
@click.option("--batch-size", type=click.IntRange(1, MAX_COUNT), default=32, show_default=True,
              help="Images per step.")
@click.option("--lr-mask", type=finite(0, MAX_LEARNING_RATE, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate of what the method trains besides the head (masks, BatchNorm, weights).")
@click.option("--lr-head", type=finite(0, MAX_LEARNING_RATE, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate of the classifier head.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed of head init, data order, dropout.")
# Masks and BatchNorm
@click.option("--batchnorm", type=click.Choice(["task", "frozen"]), default=None, cls=LiveHelp,
              compose=_batchnorm_help)
@click.option("--soft/--no-soft", default=True, show_default=True, cls=LiveHelp, compose=_soft_help)
@click.option("--recalibrate-bn/--no-recalibrate-bn", default=True, show_default=True,
              help="Recompute task BatchNorm statistics over the training split after training (ksm.training.calibrate).")
@click.option("--mask-init", type=finite(-MASK_BOUND, MASK_BOUND), default=None, cls=LiveHelp,
              compose=_mask_help("Initial real mask value.", "init"))
@click.option("--threshold", type=finite(-MASK_BOUND, MASK_BOUND), default=None, cls=LiveHelp,
              compose=_mask_help("Binarisation threshold τ.", "threshold"))
@click.option("--beta", type=finite(0, MASK_BOUND, min_open=True), default=None, cls=LiveHelp,
              compose=_mask_help("Logistic scale β of a soft part.", "beta"))
@click.option("--temperature", type=finite(0, MASK_BOUND, min_open=True), default=None, cls=LiveHelp,
              compose=_mask_help("Temperature T of a soft part's sigmoid σ(β(m−τ)/T) (its slope is β/T).", "temperature"))
# Output
@click.option("--out", type=PathOption(path_type=Path), default=None, cls=LiveHelp, compose=_out_help)
@click.option("--runs-dir", type=PathOption(path_type=Path), default=Path("runs"), show_default=True,
              help="Where run folders and the results table go.")
@click.option("--force", is_flag=True, help="Overwrite finished runs.")
@click.option("--resume", is_flag=True, help="Continue interrupted runs from their last epoch checkpoint.")
@click.option("--skip-existing", is_flag=True, help="Reuse finished runs instead of refusing (suites).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show tqdm progress bars (in a terminal only). One line per epoch (loss, train/val top-1, "
                   "images/s, elapsed, ETA) goes to stderr either way, so a redirected job logs its progress.")
@click.option("--log", multiple=True, metavar="csv|tensorboard", callback=log_option,
              help="Also write scalars per step and per epoch into the run folder's logs/: csv (steps.csv, "
                   "epochs.csv) or tensorboard (logs/tensorboard/; needs pip install 'ksm[tensorboard]'). "
                   "Repeatable or comma-separated, e.g. --log csv,tensorboard.")
# Hardware
@click.option("--device", default="cpu", show_default=True, callback=device_option, help="torch device, e.g. cpu or cuda.")
@click.option("--threads", type=click.IntRange(1, MAX_PROCESSES), default=None,
              help="CPU threads for torch (per process).")
@click.option("--nproc", type=click.IntRange(1, MAX_PROCESSES), default=1, show_default=True,
              help="Data-parallel processes on this machine: relaunches the command under torchrun "
                   "(DistributedDataParallel; gloo on CPU, nccl with --device cuda, one GPU per process). "
                   "For several machines call torchrun yourself: torchrun --nnodes 2 --nproc_per_node 4 "
                   "--rdzv_backend c10d --rdzv_endpoint HOST:29500 -m ksm ...")
@click.option("--amp/--no-amp", default=False, show_default=True,
              help="bfloat16 autocast on CUDA (channels_last is always used on CUDA); not available on CPU.")
@click.option("--max-memory", type=finite(0, min_open=True), default=None, metavar="GIB",
              help="Refuse a training step estimated to hold more memory than this (activations at --input-size "
                   "× --batch-size, a built-in task's images). Default: 80% of this machine's memory.")
@one_line_os_errors  # a full disk, ulimit -f, a read-only folder: one line naming the file
def main(**values: Any) -> None:
    """Learn per-task masks on a frozen pretrained backbone; one run folder per (task, method).

    \b
    Examples:
      ksm-train --suite default                       # KSM on the four built-in tasks
      ksm-train --suite default --method piggyback --method finetune --method feature
      ksm-train --task cubs_cropped --data-root ~/data --arch resnet50 --out runs/cubs
      ksm-train --suite default --method packnet --method cpg   # sequences: runs/packnet/, runs/cpg/
      ksm-train --suite default --nproc 2                 # 2 data-parallel processes (torchrun)
      ksm-train --suite default --method lora --lora-rank 4   # LoRA adapters -> runs/<task>-lora-r4/
      ksm-train --config run.yaml --epochs 3 --log csv        # options from a file; the command line wins
    """
    raise_on_sigterm()  # temporaries are removed on SIGTERM as on Ctrl-C
    from ksm.config_file import resolved_config
    from ksm.training.train_log import log_to_stderr

    command = click.get_current_context()
    o = Options.of(values)
    try:
        refuse_over_cap(o.memory_estimate())  # before torch, the data or a relaunch
    except WorkRefused as exc:
        raise click.ClickException(str(exc)) from None
    if o.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from ksm.training.distributed import relaunch_with_torchrun

        sys.exit(relaunch_with_torchrun(o.nproc))
    if o.amp and not o.device.startswith("cuda"):
        raise click.UsageError("--amp needs --device cuda")
    import torch

    from ksm.training.batch_of_runs import train_batch
    from ksm.training.distributed import from_environment

    names = o.task_names()
    methods = tuple(dict.fromkeys(o.methods))
    refuse_unchosen_options(command, methods)
    readers = option_readers()  # recorded: the options of the chosen methods, which --config reads back as they are
    o = replace(o, config=resolved_config({k: v for k, v in values.items()
                                           if set(readers.get(k, methods)) & set(methods)},
                                          command.command.get_params(command)))
    for method in methods:  # each method checks its own options before anything is trained
        o.method_options(method)
    sequences = [m for m in methods if catalogue.get(m).sequence]  # one folder RUNS_DIR/<method>/ for all tasks
    methods = tuple(m for m in methods if not catalogue.get(m).sequence)
    if o.out is not None and sequences and (methods or len(sequences) != 1):
        raise click.UsageError(f"with a sequence method ({', '.join(sequences)}), --out names the sequence folder "
                               "of exactly one method")
    if sequences and o.log:
        raise click.UsageError(f"--log is written for independent runs only, not for sequence methods "
                               f"({', '.join(sequences)})")
    if sequences and o.nproc > 1:
        raise click.UsageError(f"sequence methods ({', '.join(sequences)}) train in one process; drop --nproc")
    if o.out is not None and methods and len(names) * len(methods) != 1:
        raise click.UsageError("--out takes exactly one task and one method; use --runs-dir for several")
    refuse_outputs_over_inputs(o, names, methods, sequences)
    log_to_stderr()  # the epoch lines and the training warnings, one line each, whether or not it is a terminal
    if o.threads:
        torch.set_num_threads(o.threads)
    # the thread count moves the last digits (float sums split differently): config.yaml says the one used
    o = replace(o, config={**o.config, "threads": torch.get_num_threads()})
    ctx = from_environment(o.device)
    device = o.device
    if ctx.active and device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(device)

    train_batch(o, names, methods, sequences, device, ctx)


def refuse_outputs_over_inputs(o: Options, names: list[str], methods: tuple[str, ...], sequences: list[str]) -> None:
    """The output guard, before any work: no run folder, sequence folder or results file is, lies inside or holds
    ``--data-root`` or a ``--weights`` file (``--force`` would replace it); one line otherwise."""
    outputs = [o.run_folder(t, m) for t in names for m in methods] + [o.sequence_folder(m) for m in sequences]
    if o.out is None:
        outputs += [o.runs_dir / "results.md", o.runs_dir / "results.csv"]
    inputs = [p for p in (o.data_root, Path(o.weights)) if p is not None and os.path.lexists(p)]
    try:
        check_no_alias(outputs, inputs)
    except OutputRefused as exc:
        raise click.ClickException(str(exc)) from None
