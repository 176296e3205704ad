"""``ksm-train``: learn task masks on a frozen pretrained backbone and write run folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from hwsim import catalogue
from ksm.registry import MethodChoice

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
ARCH_NAMES = ("mobilenet_v2", "resnet18", "resnet50", "vgg16", "vgg16_bn")


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
    """``<task>`` for KSM with its defaults, ``<task>-<method>[-<tag>][-bn<policy>][-binary]`` otherwise
    (``tag``: :func:`hwsim.catalogue.option_tag`, e.g. ``r4`` for LoRA at rank 4)."""
    name = task if method == "ksm" else f"{task}-{method}"
    if tag:
        name += f"-{tag}"
    if batchnorm is not None:
        name += f"-bn{batchnorm}"
    if method == "ksm" and not soft:
        name += "-binary"
    return name


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Task to learn (repeatable). Built in: fashion_mnist, animals, mnist5k, digits. With "
                   "--data-root: any folder under it, e.g. cubs_cropped, stanford_cars, flowers, wikiart, sketches.")
@click.option("--suite", type=click.Choice(["default"]), default=None,
              help="Shorthand for all four built-in tasks.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder with the paper's benchmark in Piggyback's layout DIR/<task>/{train,test}/<class>/*.jpg.")
@click.option("--method", "methods", multiple=True, type=MethodChoice(), default=("ksm",),
              show_default=True, help="ksm (kernel-wise soft mask), piggyback (element-wise binary mask), "
                                      "finetune (all weights), feature (head only), packnet and cpg (the tasks "
                                      "in order on shared weights, into RUNS_DIR/<method>/). Repeatable.")
@click.option("--arch", type=click.Choice(ARCH_NAMES), default="mobilenet_v2", show_default=True,
              help="torchvision backbone.")
@click.option("--weights", default="IMAGENET1K_V1", show_default=True,
              help="torchvision weights name (read from $TORCH_HOME/hub/checkpoints), a local .pth state dict, "
                   "or 'none' for random init.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (only with one task and one method). Default: RUNS_DIR/<task> for ksm, "
                   "RUNS_DIR/<task>-<method> for the others.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where run folders and the results table go.")
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True, help="Epochs per task.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Images per step.")
@click.option("--lr-mask", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate of masks and BatchNorm (finetune: of all weights).")
@click.option("--lr-head", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate of the classifier head.")
@click.option("--input-size", type=click.IntRange(16), default=None,
              help="Image side in pixels. Default 64 for the built-in tasks (MobileNetV2 keeps a 2×2 map "
                   "before pooling; 32 px is 2× faster and loses accuracy), 224 with --data-root.")
@click.option("--batchnorm", type=click.Choice(["task", "frozen"]), default=None,
              help="BatchNorm policy. Default: task for ksm/finetune (authors' code), frozen for piggyback/feature.")
@click.option("--soft/--no-soft", default=True, show_default=True,
              help="KSM's soft part; --no-soft is the kernel-wise binary ablation.")
@click.option("--mask-init", type=float, default=1e-2, show_default=True, help="Initial real mask value.")
@click.option("--threshold", type=float, default=5e-3, show_default=True, help="Binarisation threshold τ.")
@click.option("--beta", type=float, default=1200.0, show_default=True, help="KSM logistic scale β.")
@click.option("--temperature", type=float, default=100.0, show_default=True, help="KSM softmax temperature T.")
@click.option("--max-train", type=click.IntRange(0), default=3000, show_default=True,
              help="Built-in tasks: use at most N training images per task (class-balanced, fixed seed; "
                   "0 = all). Keeps the default job under 20 minutes on 2 CPU cores; ignored with --data-root.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of head init, data order, dropout.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch (per process).")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="Data-parallel processes on this machine: relaunches the command under torchrun "
                   "(DistributedDataParallel; gloo on CPU, nccl with --device cuda, one GPU per process). "
                   "For several machines call torchrun yourself: torchrun --nnodes 2 --nproc_per_node 4 "
                   "--rdzv_backend c10d --rdzv_endpoint HOST:29500 -m ksm ...")
@click.option("--amp/--no-amp", default=False, show_default=True,
              help="bfloat16 autocast on CUDA (channels_last is always used on CUDA); not available on CPU.")
@click.option("--force", is_flag=True, help="Overwrite finished runs.")
@click.option("--resume", is_flag=True, help="Continue interrupted runs from their last epoch checkpoint.")
@click.option("--skip-existing", is_flag=True, help="Reuse finished runs instead of refusing (suites).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show tqdm progress bars.")
@click.option("--prune-ratio", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="packnet/cpg: fraction of each task's weights pruned per layer (freed for later tasks).")
@click.option("--retrain-epochs", type=click.IntRange(0), default=1, show_default=True,
              help="packnet: epochs retraining the kept weights after pruning, at lr/10.")
@click.option("--prune-steps", type=click.IntRange(0), default=2, show_default=True,
              help="cpg: gradual pruning steps up to --prune-ratio.")
@click.option("--prune-epochs", type=click.IntRange(0), default=1, show_default=True,
              help="cpg: epochs of retraining after each pruning step, at lr/10.")
@click.option("--target-accuracy", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="cpg: grow the network when a task's training accuracy stays below this fraction (default: never).")
@click.option("--grow-step", type=click.FloatRange(0, min_open=True), default=0.5, show_default=True,
              help="cpg: width multiplier added per growth (mobilenet_v2).")
@click.option("--max-grow", type=click.IntRange(0), default=1, show_default=True, help="cpg: growths per task at most.")
@click.option("--lora-rank", type=click.IntRange(1), default=8, show_default=True,
              help="lora: rank r of every adapter (at most min(out, in·kh·kw) of each adapted layer).")
@click.option("--lora-alpha", type=click.FloatRange(0, min_open=True), default=8.0, show_default=True,
              help="lora: alpha; the update is scaled by alpha/r (PEFT's default; Hu et al. keep alpha fixed "
                   "across ranks so that the learning rate need not be retuned).")
@click.option("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="lora: dropout on the input of A.")
@click.option("--lora-targets", "lora_targets", multiple=True, default=("all",), show_default=True,
              metavar="all|pointwise|kxk|linear",
              help="lora: which layers get adapters (repeatable or comma-separated); depthwise convs never do.")
def main(tasks: tuple[str, ...], suite: str | None, data_root: Path | None, methods: tuple[str, ...], arch: str,
         weights: str, out: Path | None, runs_dir: Path, epochs: int, batch_size: int, lr_mask: float,
         lr_head: float, input_size: int | None, batchnorm: str | None, soft: bool, mask_init: float,
         threshold: float, beta: float, temperature: float, max_train: int | None, seed: int, device: str, threads: int | None,
         nproc: int, amp: bool, force: bool, resume: bool, skip_existing: bool, progress: bool,
         prune_ratio: float = 0.5, retrain_epochs: int = 1, prune_steps: int = 2, prune_epochs: int = 1,
         target_accuracy: float | None = None, grow_step: float = 0.5, max_grow: int = 1, lora_rank: int = 8,
         lora_alpha: float = 8.0, lora_dropout: float = 0.0, lora_targets: tuple[str, ...] = ("all",)
         ) -> None:
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
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(relaunch_with_torchrun(nproc))
    if amp and not device.startswith("cuda"):
        raise click.UsageError("--amp needs --device cuda")
    import torch

    from ksm.backbones import BackboneSpec
    from ksm.data import DEFAULT_SUITE, load_task
    from ksm.distributed import from_environment, shutdown
    from ksm.methods import MaskConfig
    from ksm.pipeline import RunSpec, run_task
    from ksm.results import results_table, write_results
    from ksm.runfolder import RUN_JSON, RunError, check_output, read_run
    from ksm.train import TrainConfig

    targets = tuple(dict.fromkeys(t.strip() for item in lora_targets for t in item.split(",") if t.strip()))
    method_options: dict[str, dict[str, object]] = {
        "lora": {"rank": lora_rank, "alpha": lora_alpha, "dropout": lora_dropout, "targets": targets}}
    if "lora" in methods:
        from ksm.lora import TARGETS

        unknown = [t for t in targets if t not in TARGETS] or ([] if targets else [""])
        if unknown:
            raise click.BadParameter(f"unknown target {unknown[0]!r}; choose from {', '.join(TARGETS)}",
                                     param_hint="'--lora-targets'")
    names = list(tasks) + (list(DEFAULT_SUITE) if suite == "default" else [])
    if not names:
        raise click.UsageError("name a --task or --suite default")
    methods = tuple(dict.fromkeys(methods))
    sequences = [m for m in methods if catalogue.get(m).sequence]  # one folder RUNS_DIR/<method>/ for all tasks
    methods = tuple(m for m in methods if not catalogue.get(m).sequence)
    if out is not None and sequences and (methods or len(sequences) != 1):
        raise click.UsageError("with packnet/cpg, --out names the sequence folder of exactly one method")
    if sequences and nproc > 1:
        raise click.UsageError("packnet/cpg sequences train in one process; drop --nproc")
    if out is not None and methods and len(names) * len(methods) != 1:
        raise click.UsageError("--out takes exactly one task and one method; use --runs-dir for several")
    if threads:
        torch.set_num_threads(threads)
    size = input_size or (224 if data_root else 64)
    ctx = from_environment(device)
    if ctx.active and device.startswith("cuda"):
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(device)
    say = click.echo if ctx.main else (lambda *a, **k: None)

    plan = []
    for task in names:
        for method in methods:
            folder = out or runs_dir / run_folder_name(task, method, batchnorm, soft,
                                                       catalogue.option_tag(method, method_options.get(method)))
            if skip_existing and (folder / RUN_JSON).exists():
                plan.append((task, method, folder, True))
                continue
            try:
                check_output(folder, force=force, resume=resume)
            except RunError as exc:
                shutdown()
                raise click.ClickException(str(exc)) from None
            plan.append((task, method, folder, False))

    records = []
    seq_plan = []
    for method in sequences:
        from ksm.sequence import check_sequence

        folder = out or runs_dir / (method + (f"-bn{batchnorm}" if batchnorm else ""))
        try:
            check_sequence(folder, names, force=force, resume=resume or skip_existing)
        except (RunError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        seq_plan.append((method, folder))
    limit = None if data_root or not max_train else max_train
    try:
        for method, folder in seq_plan:
            from ksm.sequence import SequenceSpec, run_sequence

            options = ({"prune_ratio": prune_ratio, "retrain_epochs": retrain_epochs} if method == "packnet" else
                       {"prune_ratio": prune_ratio, "prune_steps": prune_steps, "prune_epochs": prune_epochs,
                        "target_accuracy": target_accuracy, "grow_step": grow_step, "max_grow": max_grow})
            sspec = SequenceSpec(method=method, backbone=BackboneSpec(arch, weights),
                                 train=TrainConfig(epochs=epochs, batch_size=batch_size, lr_body=lr_mask,
                                                   lr_head=lr_head, seed=seed),
                                 mask=MaskConfig(init=mask_init, threshold=threshold, beta=beta, temperature=temperature),
                                 batchnorm=batchnorm, options=options)
            done = len(records)
            records += run_sequence(sspec, names, lambda t: load_task(t, data_root=data_root, input_size=size,
                                                                      max_train=limit),
                                    folder, force=force, resume=resume or skip_existing, device=device,
                                    progress=progress)
            for r in records[done:]:
                click.echo(f"{folder / r['task']}: {r['task']} {method} top-1 {100 * r['metrics']['top1']:.2f}%, "
                           f"{r['train']['epochs_total']} epochs, {r['train']['wall_seconds']:.0f} s")
        data_cache = {}
        for task, method, folder, done in plan:
            if done:
                say(f"{folder}: finished run reused")
                records.append(read_run(folder)[0])
                continue
            if task not in data_cache:
                data_cache = {task: load_task(task, data_root=data_root, input_size=size,
                                             max_train=None if data_root or not max_train else max_train)}
            spec = RunSpec(method=method, backbone=BackboneSpec(arch, weights),
                           train=TrainConfig(epochs=epochs, batch_size=batch_size, lr_body=lr_mask,
                                             lr_head=lr_head, seed=seed),
                           mask=MaskConfig(init=mask_init, threshold=threshold, beta=beta, temperature=temperature),
                           batchnorm=batchnorm, soft=soft, options=method_options.get(method, {}))
            record = run_task(spec, data_cache[task], folder, force=force, resume=resume, device=device,
                              progress=progress, ctx=ctx, amp=amp)
            if record is None:  # not rank 0
                continue
            records.append(record)
            density = record["metrics"]["mask_density"]
            click.echo(f"{folder}: {task} {method} top-1 {100 * record['metrics']['top1']:.2f}%"
                       + (f", mask density {density:.3f}" if density is not None else "")
                       + f", {record['train']['wall_seconds']:.0f} s")
    except (FileNotFoundError, ValueError) as exc:
        shutdown()
        raise click.ClickException(f"[rank {ctx.rank}] {exc}" if ctx.active else str(exc)) from None
    shutdown()
    if not ctx.main:
        return
    table = results_table(records)
    click.echo("\n" + table.to_markdown(floatfmt=".2f"))
    if out is None:
        write_results(table, runs_dir)
        click.echo(f"\nresults: {runs_dir / 'results.md'}")
