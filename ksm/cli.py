"""``ksm-train``: learn task masks on a frozen pretrained backbone and write run folders."""

from __future__ import annotations

from pathlib import Path

import click

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
METHOD_NAMES = ("ksm", "piggyback", "finetune", "feature")
ARCH_NAMES = ("mobilenet_v2", "resnet18", "resnet50", "vgg16", "vgg16_bn")


def run_folder_name(task: str, method: str, batchnorm: str | None, soft: bool) -> str:
    """``<task>`` for KSM with its defaults, ``<task>-<method>[-bn<policy>][-binary]`` otherwise."""
    name = task if method == "ksm" else f"{task}-{method}"
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
@click.option("--method", "methods", multiple=True, type=click.Choice(METHOD_NAMES), default=("ksm",),
              show_default=True, help="ksm (kernel-wise soft mask), piggyback (element-wise binary mask), "
                                      "finetune (all weights), feature (head only). Repeatable.")
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
@click.option("--epochs", type=click.IntRange(1), default=3, show_default=True, help="Epochs per task.")
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
@click.option("--max-train", type=click.IntRange(10), default=None,
              help="Use at most N training images per built-in task (class-balanced), for quick checks.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of head init, data order, dropout.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for torch.")
@click.option("--force", is_flag=True, help="Overwrite finished runs.")
@click.option("--resume", is_flag=True, help="Continue interrupted runs from their last epoch checkpoint.")
@click.option("--skip-existing", is_flag=True, help="Reuse finished runs instead of refusing (suites).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show tqdm progress bars.")
def main(tasks: tuple[str, ...], suite: str | None, data_root: Path | None, methods: tuple[str, ...], arch: str,
         weights: str, out: Path | None, runs_dir: Path, epochs: int, batch_size: int, lr_mask: float,
         lr_head: float, input_size: int | None, batchnorm: str | None, soft: bool, mask_init: float,
         threshold: float, beta: float, temperature: float, max_train: int | None, seed: int, device: str, threads: int | None,
         force: bool, resume: bool, skip_existing: bool, progress: bool) -> None:
    """Learn per-task masks on a frozen pretrained backbone; one run folder per (task, method).

    \b
    Examples:
      ksm-train --suite default                       # KSM on the four built-in tasks
      ksm-train --suite default --method piggyback --method finetune --method feature
      ksm-train --task cubs_cropped --data-root ~/data --arch resnet50 --out runs/cubs
    """
    import torch

    from ksm.backbones import BackboneSpec
    from ksm.data import DEFAULT_SUITE, load_task
    from ksm.methods import MaskConfig
    from ksm.pipeline import RunSpec, run_task
    from ksm.report import results_table, write_results
    from ksm.runfolder import RUN_JSON, RunError, check_output, read_run
    from ksm.train import TrainConfig

    names = list(tasks) + (list(DEFAULT_SUITE) if suite == "default" else [])
    if not names:
        raise click.UsageError("name a --task or --suite default")
    methods = tuple(dict.fromkeys(methods))
    if out is not None and len(names) * len(methods) != 1:
        raise click.UsageError("--out takes exactly one task and one method; use --runs-dir for several")
    if threads:
        torch.set_num_threads(threads)
    size = input_size or (224 if data_root else 64)

    plan = []
    for task in names:
        for method in methods:
            folder = out or runs_dir / run_folder_name(task, method, batchnorm, soft)
            if skip_existing and (folder / RUN_JSON).exists():
                plan.append((task, method, folder, True))
                continue
            try:
                check_output(folder, force=force, resume=resume)
            except RunError as exc:
                raise click.ClickException(str(exc)) from None
            plan.append((task, method, folder, False))

    records = []
    try:
        data_cache = {}
        for task, method, folder, done in plan:
            if done:
                click.echo(f"{folder}: finished run reused")
                records.append(read_run(folder)[0])
                continue
            if task not in data_cache:
                data_cache = {task: load_task(task, data_root=data_root, input_size=size, max_train=max_train)}
            spec = RunSpec(method=method, backbone=BackboneSpec(arch, weights),
                           train=TrainConfig(epochs=epochs, batch_size=batch_size, lr_body=lr_mask,
                                             lr_head=lr_head, seed=seed),
                           mask=MaskConfig(init=mask_init, threshold=threshold, beta=beta, temperature=temperature),
                           batchnorm=batchnorm, soft=soft)
            record = run_task(spec, data_cache[task], folder, force=force, resume=resume, device=device,
                              progress=progress)
            records.append(record)
            density = record["metrics"]["mask_density"]
            click.echo(f"{folder}: {task} {method} top-1 {100 * record['metrics']['top1']:.2f}%"
                       + (f", mask density {density:.3f}" if density is not None else "")
                       + f", {record['train']['wall_seconds']:.0f} s")
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    table = results_table(records)
    click.echo("\n" + table.to_markdown(floatfmt=".2f"))
    if out is None:
        write_results(table, runs_dir)
        click.echo(f"\nresults: {runs_dir / 'results.md'}")
