"""``ksm-train``: learn task masks on a frozen pretrained backbone and write run folders."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hwsim import catalogue
from ksm.methods.registry import MethodChoice, method_class, method_cli_options
from ksm.checks import device_option, finite

if TYPE_CHECKING:
    from ksm.data.datasets import TaskData
    from ksm.training.distributed import Context
    from ksm.training.pipeline import RunSpec

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
ARCH_NAMES = ("mobilenet_v2", "resnet18", "resnet50", "vgg16", "vgg16_bn")
SECTIONS: dict[str, tuple[str, ...]] = {  # --help's sections, each with its options in order
    "Tasks and methods": ("tasks", "suite", "data_root", "methods"),
    "Backbone and data": ("arch", "weights", "input_size", "max_train"),
    "Training": ("epochs", "batch_size", "lr_mask", "lr_head", "seed"),
    "Masks and BatchNorm": ("batchnorm", "soft", "recalibrate_bn", "mask_init", "threshold", "beta", "temperature"),
    "Output": ("out", "runs_dir", "force", "resume", "skip_existing", "progress"),
    "Hardware": ("device", "threads", "nproc", "amp"),
}
METHODS_AFTER = "Masks and BatchNorm"  # the methods' own sections (their cli_options) follow this one


def help_sections() -> list[tuple[str, tuple[str, ...]]]:
    """``--help``'s sections in order: ksm-train's own, with each registered method's options after
    :data:`METHODS_AFTER` (:func:`ksm.methods.registry.method_cli_options`)."""
    own = list(SECTIONS.items())
    at = list(SECTIONS).index(METHODS_AFTER) + 1
    methods = [(title, tuple(str(o.name) for o in options)) for title, options in method_cli_options()]
    return own[:at] + methods + own[at:]


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch_with_torchrun(nproc: int) -> int:
    """Run this same command under ``torchrun --standalone --nproc_per_node N`` and return its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "ksm", *_without_nproc(sys.argv[1:])]
    return subprocess.call(command)


def run_folder_name(task: str, method: str, batchnorm: str | None, soft: bool, tag: str = "") -> str:
    """``<task>`` for the catalogue's subject (KSM) with its defaults, ``<task>-<method>[-<tag>][-bn<policy>]
    [-binary]`` otherwise (``tag``: :func:`hwsim.catalogue.option_tag`, e.g. ``r4`` for LoRA at rank 4;
    ``-binary``: a method with a soft part trained without it)."""
    traits = catalogue.get(method)
    name = task if traits.subject else f"{task}-{method}"
    if tag:
        name += f"-{tag}"
    if batchnorm is not None:
        name += f"-bn{batchnorm}"
    if traits.soft_part and not soft:
        name += "-binary"
    return name


class SectionedCommand(click.Command):
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


class MethodOption(click.Option):
    """``--method``, whose help lists the catalogue's methods when it is shown (a plug-in's too)."""

    @property
    def help(self) -> str:  # type: ignore[override]
        listed = ", ".join(f"{t.name} ({t.description})" for t in catalogue.methods())
        return (f"{listed}. Methods that learn the tasks in order on shared weights train into "
                f"RUNS_DIR/<method>/. Repeatable.")

    @help.setter
    def help(self, value: object) -> None:  # click's __init__ assigns the static text: keep composing it
        pass


@dataclass(frozen=True)
class Options:
    """``ksm-train``'s command line, by section, and what it turns into: task names, data, run specs."""

    # Tasks and methods
    tasks: tuple[str, ...]
    suite: str | None
    data_root: Path | None
    methods: tuple[str, ...]
    # Backbone and data
    arch: str
    weights: str
    input_size: int | None
    max_train: int
    # Training
    epochs: int
    batch_size: int
    lr_mask: float
    lr_head: float
    seed: int
    # Masks and BatchNorm
    batchnorm: str | None
    soft: bool
    recalibrate_bn: bool
    mask_init: float
    threshold: float
    beta: float
    temperature: float
    # Output
    out: Path | None
    runs_dir: Path
    force: bool
    resume: bool
    skip_existing: bool
    progress: bool
    # Hardware
    device: str
    threads: int | None
    nproc: int
    amp: bool
    # the methods' own options (their classes' cli_options), by parameter name
    method_values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, values: dict[str, Any]) -> Options:
        """The parsed command line: ksm-train's own options as fields, every method's own in ``method_values``."""
        own = {f.name for f in fields(cls)} - {"method_values"}
        return cls(**{k: v for k, v in values.items() if k in own},
                   method_values={k: v for k, v in values.items() if k not in own})

    def task_names(self) -> list[str]:
        from ksm.data.datasets import DEFAULT_SUITE
        from ksm.checks import task_name

        names = [task_name(t) for t in self.tasks] + (list(DEFAULT_SUITE) if self.suite == "default" else [])
        if not names:
            raise click.UsageError("name a --task or --suite default")
        return names

    def load(self, task: str) -> TaskData:
        """The task's data at the run's input size (built-in tasks limited to ``--max-train`` images)."""
        from ksm.data.datasets import load_task

        return load_task(task, data_root=self.data_root, input_size=self.input_size or (224 if self.data_root else 64),
                         max_train=None if self.data_root or not self.max_train else self.max_train)

    def spec(self, method: str) -> RunSpec:
        """The run spec of ``method`` (a sequence method's spec covers the whole sequence)."""
        from ksm.methods.base import MaskConfig
        from ksm.training.pipeline import make_spec

        return make_spec(method, arch=self.arch, weights=self.weights, epochs=self.epochs, batch_size=self.batch_size,
                         lr_body=self.lr_mask, lr_head=self.lr_head, seed=self.seed,
                         recalibrate_bn=self.recalibrate_bn,
                         mask=MaskConfig(init=self.mask_init, threshold=self.threshold, beta=self.beta,
                                         temperature=self.temperature),
                         batchnorm=self.batchnorm, soft=self.soft,
                         options=self.method_options(method))

    def method_options(self, method: str) -> dict[str, Any]:
        """The keyword arguments ``method`` takes from the command line (its class's ``options_from_cli``)."""
        return method_class(method).options_from_cli(self.method_values)

    def run_folder(self, task: str, method: str) -> Path:
        tag = catalogue.option_tag(method, self.method_options(method))
        return self.out or self.runs_dir / run_folder_name(task, method, self.batchnorm, self.soft, tag)

    def sequence_folder(self, method: str) -> Path:
        return self.out or self.runs_dir / (method + (f"-bn{self.batchnorm}" if self.batchnorm else ""))


@click.command(cls=SectionedCommand, context_settings=CONTEXT_SETTINGS)
# Tasks and methods
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Task to learn (repeatable). Built in: fashion_mnist, animals, mnist5k, digits. With "
                   "--data-root: any folder under it, e.g. cubs_cropped, stanford_cars, flowers, wikiart, sketches.")
@click.option("--suite", type=click.Choice(["default"]), default=None,
              help="Shorthand for all four built-in tasks.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder with the paper's benchmark in Piggyback's layout DIR/<task>/{train,test}/<class>/*.jpg.")
@click.option("--method", "methods", multiple=True, type=MethodChoice(), default=("ksm",),
              show_default=True, cls=MethodOption)
# Backbone and data
@click.option("--arch", type=click.Choice(ARCH_NAMES), default="mobilenet_v2", show_default=True,
              help="torchvision backbone.")
@click.option("--weights", default="IMAGENET1K_V1", show_default=True,
              help="torchvision weights name (read from $TORCH_HOME/hub/checkpoints), a local .pth state dict, "
                   "or 'none' for random init.")
@click.option("--input-size", type=click.IntRange(16), default=None,
              help="Image side in pixels. Default 64 for the built-in tasks (MobileNetV2 keeps a 2×2 map "
                   "before pooling; 32 px is 2× faster and loses accuracy), 224 with --data-root.")
@click.option("--max-train", type=click.IntRange(0), default=3000, show_default=True,
              help="Built-in tasks: use at most N training images per task (class-balanced, fixed seed; "
                   "0 = all). Keeps the default job under 20 minutes on 2 CPU cores; ignored with --data-root.")
# Training
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True, help="Epochs per task.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Images per step.")
@click.option("--lr-mask", type=finite(0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate of masks and BatchNorm (finetune: of all weights).")
@click.option("--lr-head", type=finite(0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate of the classifier head.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of head init, data order, dropout.")
# Masks and BatchNorm
@click.option("--batchnorm", type=click.Choice(["task", "frozen"]), default=None,
              help="BatchNorm policy. Default: task for ksm/finetune (authors' code), frozen for piggyback/feature.")
@click.option("--soft/--no-soft", default=True, show_default=True,
              help="KSM's soft part; --no-soft is the kernel-wise binary ablation.")
@click.option("--recalibrate-bn/--no-recalibrate-bn", default=True, show_default=True,
              help="Recompute task BatchNorm statistics over the training split after training (ksm.training.calibrate).")
@click.option("--mask-init", type=finite(), default=1e-2, show_default=True, help="Initial real mask value.")
@click.option("--threshold", type=finite(), default=5e-3, show_default=True, help="Binarisation threshold τ.")
@click.option("--beta", type=finite(), default=1200.0, show_default=True, help="KSM logistic scale β.")
@click.option("--temperature", type=finite(), default=100.0, show_default=True, help="KSM softmax temperature T.")
# Output
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (only with one task and one method). Default: RUNS_DIR/<task> for ksm, "
                   "RUNS_DIR/<task>-<method> for the others.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where run folders and the results table go.")
@click.option("--force", is_flag=True, help="Overwrite finished runs.")
@click.option("--resume", is_flag=True, help="Continue interrupted runs from their last epoch checkpoint.")
@click.option("--skip-existing", is_flag=True, help="Reuse finished runs instead of refusing (suites).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show tqdm progress bars.")
# Hardware
@click.option("--device", default="cpu", show_default=True, callback=device_option, help="torch device, e.g. cpu or cuda.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch (per process).")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="Data-parallel processes on this machine: relaunches the command under torchrun "
                   "(DistributedDataParallel; gloo on CPU, nccl with --device cuda, one GPU per process). "
                   "For several machines call torchrun yourself: torchrun --nnodes 2 --nproc_per_node 4 "
                   "--rdzv_backend c10d --rdzv_endpoint HOST:29500 -m ksm ...")
@click.option("--amp/--no-amp", default=False, show_default=True,
              help="bfloat16 autocast on CUDA (channels_last is always used on CUDA); not available on CPU.")
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
    """
    o = Options.of(values)
    if o.nproc > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(relaunch_with_torchrun(o.nproc))
    if o.amp and not o.device.startswith("cuda"):
        raise click.UsageError("--amp needs --device cuda")
    import torch

    from ksm.training.distributed import from_environment, shutdown

    names = o.task_names()
    methods = tuple(dict.fromkeys(o.methods))
    for method in methods:  # each method checks its own options before anything is trained
        o.method_options(method)
    sequences = [m for m in methods if catalogue.get(m).sequence]  # one folder RUNS_DIR/<method>/ for all tasks
    methods = tuple(m for m in methods if not catalogue.get(m).sequence)
    if o.out is not None and sequences and (methods or len(sequences) != 1):
        raise click.UsageError("with packnet/cpg, --out names the sequence folder of exactly one method")
    if sequences and o.nproc > 1:
        raise click.UsageError("packnet/cpg sequences train in one process; drop --nproc")
    if o.out is not None and methods and len(names) * len(methods) != 1:
        raise click.UsageError("--out takes exactly one task and one method; use --runs-dir for several")
    if o.threads:
        torch.set_num_threads(o.threads)
    ctx = from_environment(o.device)
    device = o.device
    if ctx.active and device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(device)

    outputs = [o.run_folder(t, m) for t in names for m in methods] + [o.sequence_folder(m) for m in sequences]
    with remove_fresh_parents_on_error(outputs):  # a refused or failed run leaves no empty runs dir behind
        plan = plan_runs(o, names, methods)
        sequence_plan = plan_sequences(o, names, sequences)
        check_results_targets(o)
        locks = lock_outputs([f for *_, f, done in plan if not done] + [f for _, f in sequence_plan] if ctx.main else [])
        try:
            records = [r for method, folder in sequence_plan for r in train_sequence(o, method, folder, names, device)]
            records += train_runs(o, plan, device, ctx)
        except (FileNotFoundError, ValueError) as exc:
            shutdown()
            raise click.ClickException(f"[rank {ctx.rank}] {exc}" if ctx.active else str(exc)) from None
        finally:
            locks.close()
    shutdown()
    if ctx.main:
        report(o, records)


def plan_runs(o: Options, names: list[str], methods: tuple[str, ...]) -> list[tuple[str, str, Path, bool]]:
    """(task, method, folder, already finished) of every independent run; refuses unwritable folders up front."""
    from ksm.training.distributed import shutdown
    from ksm.training.runfolder import RUN_JSON, RunError, check_output

    plan = []
    for task in names:
        for method in methods:
            folder = o.run_folder(task, method)
            if o.skip_existing and (folder / RUN_JSON).exists():
                plan.append((task, method, folder, True))
                continue
            try:
                check_output(folder, force=o.force, resume=o.resume)
            except RunError as exc:
                shutdown()
                raise click.ClickException(str(exc)) from None
            plan.append((task, method, folder, False))
    return plan


@contextmanager
def remove_fresh_parents_on_error(outputs: list[Path]) -> Iterator[None]:
    """If the block fails, remove the output folders' parents that did not exist before it and are still empty."""
    fresh = sorted({p for out in outputs for p in [out.parent, *out.parent.parents] if not p.exists()},
                   key=lambda p: len(p.parts), reverse=True)
    try:
        yield
    except BaseException:
        for folder in fresh:
            try:
                folder.rmdir()  # only an empty folder
            except OSError:
                pass
        raise


def check_results_targets(o: Options) -> None:
    """Refuse up front a results file that could not be written after training (a folder, a symlink)."""
    from hwsim.fileio.atomic import check_target

    if o.out is None:
        try:
            for name in ("results.md", "results.csv"):
                check_target(o.runs_dir / name)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None


def lock_outputs(folders: list[Path]) -> ExitStack:
    """Lock every output folder (:func:`ksm.folder_lock.folder_lock`); a second ``ksm-train`` on one of them stops here."""
    from ksm.training.distributed import shutdown
    from ksm.folder_lock import folder_lock

    locks = ExitStack()
    try:
        for folder in folders:
            locks.enter_context(folder_lock(folder))
    except (ValueError, OSError) as exc:
        locks.close()
        shutdown()
        raise click.ClickException(str(exc)) from None
    return locks


def plan_sequences(o: Options, names: list[str], sequences: list[str]) -> list[tuple[str, Path]]:
    """(method, folder) of every sequence; refuses folders that cannot take it up front."""
    from ksm.training.runfolder import RunError, check_sequence

    plan = []
    for method in sequences:
        folder = o.sequence_folder(method)
        try:
            check_sequence(folder, names, force=o.force, resume=o.resume or o.skip_existing)
        except (RunError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        plan.append((method, folder))
    return plan


def train_sequence(o: Options, method: str, folder: Path, names: list[str], device: str) -> list[dict[str, Any]]:
    """Learn the tasks in order with ``method`` (PackNet, CPG) into its sequence folder."""
    from ksm.training.pipeline import run_sequence

    records = run_sequence(o.spec(method), names, o.load, folder, force=o.force, resume=o.resume or o.skip_existing,
                           device=device, progress=o.progress)
    for r in records:
        click.echo(f"{folder / r['task']}: {r['task']} {method} top-1 {100 * r['metrics']['top1']:.2f}%, "
                   f"{r['train']['epochs_total']} epochs, {r['train']['wall_seconds']:.0f} s")
    return records


def train_runs(o: Options, plan: list[tuple[str, str, Path, bool]], device: str, ctx: Context) -> list[dict[str, Any]]:
    """Train (or reuse) every independent run of ``plan``; return the records rank 0 holds."""
    from ksm.training.pipeline import run_task
    from ksm.training.runfolder import read_run

    say = click.echo if ctx.main else (lambda *a, **k: None)
    records = []
    data_cache: dict[str, TaskData] = {}
    for task, method, folder, done in plan:
        if done:
            say(f"{folder}: finished run reused")
            records.append(read_run(folder)[0])
            continue
        if task not in data_cache:
            data_cache = {task: o.load(task)}
        record = run_task(o.spec(method), data_cache[task], folder, force=o.force, resume=o.resume, device=device,
                          progress=o.progress, ctx=ctx, amp=o.amp)
        if record is None:  # not rank 0
            continue
        records.append(record)
        density = record["metrics"]["mask_density"]
        click.echo(f"{folder}: {task} {method} top-1 {100 * record['metrics']['top1']:.2f}%"
                   + (f", mask density {density:.3f}" if density is not None else "")
                   + f", {record['train']['wall_seconds']:.0f} s")
    return records


def report(o: Options, records: list[dict[str, Any]]) -> None:
    """Print the results table; without ``--out``, also write it next to the runs."""
    from ksm.compare.results import results_table, write_results

    table = results_table(records)
    click.echo("\n" + table.to_markdown(floatfmt=".2f"))
    if o.out is None:
        write_results(table, o.runs_dir)
        click.echo(f"\nresults: {o.runs_dir / 'results.md'}")
