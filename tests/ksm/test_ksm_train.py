"""ksm-train as a user meets it: help, one-line errors, nothing half-written, a real tiny run."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from click.testing import CliRunner

from ksm.cli.ksm_train import main


def _invoke(args: list[str]) -> "CliRunner.invoke":
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _params() -> list:
    """ksm-train's options with every registered method's own (the command reads them when it runs)."""
    import click

    ctx = click.Context(main)
    return [p for p in main.get_params(ctx) if p is not main.get_help_option(ctx)]


def test_help_explains_every_option_with_an_example() -> None:
    result = _invoke(["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "ksm-train --suite default" in result.output
    for option in _params():
        assert option.help, f"--{option.name} has no help"
    assert "--lora-rank" in result.output and "--prune-ratio" in result.output  # the methods' own options
    assert "piggyback (element-wise binary mask)" in " ".join(result.output.split())  # --method: the catalogue


def test_help_sections_hold_every_option_once() -> None:
    from ksm.cli.ksm_train import help_sections

    sections = help_sections()
    listed = [name for _, names in sections for name in names]
    assert sorted(listed) == sorted(p.name for p in _params())
    output = _invoke(["--help"]).output
    assert all(f"{title}:" in output for title, _ in sections)
    assert [t for t, _ in sections].index("PackNet and CPG") == [t for t, _ in sections].index("LoRA") - 1


def test_help_names_the_methods_from_their_rows() -> None:
    """What --help says of methods comes from the registry and the catalogue (a new method is listed where its
    row puts it): the BatchNorm defaults, the methods with a soft part, the subject and the sequence methods."""
    output = " ".join(_invoke(["--help"]).output.split())
    assert ("Default: the method's own (task for ksm, packnet, cpg, finetune, lora; frozen for piggyback, feature)."
            in output)
    assert "The soft part of a mask that has one (ksm);" in output
    assert "RUNS_DIR/<task> for the project's subject (ksm)" in output and "sequence method (packnet, cpg)" in output
    assert "Binarisation threshold τ. Default: the method's own, 0.005." in output  # the built-ins' default


def test_console_scripts_are_installed() -> None:
    names = {e.name for e in entry_points(group="console_scripts")}
    assert {"ksm-train", "ksm-sim"} <= names


@pytest.mark.parametrize("args,message", [
    (["--task", "cifar10"], "unknown task 'cifar10'"),
    (["--task", "flowers", "--data-root", "/nonexistent/data"], "Piggyback layout"),
    (["--task", "digits", "--method", "dora"], "Invalid value for '--method'"),
    (["--task", "digits", "--arch", "alexnet"], "Invalid value for '--arch'"),
    (["--task", "digits", "--method", "ksm", "--lora-rank", "8"],
     "--lora-rank is an option of lora, which is not among --method"),
    (["--task", "digits", "--method", "finetune", "--threshold", "0.1"],
     "--threshold is an option of ksm and piggyback, which are not among --method"),
    (["--task", "digits", "--method", "piggyback", "--no-soft"],
     "--soft/--no-soft is an option of ksm, which is not among --method"),
    (["--task", "digits", "--method", "piggyback", "--beta", "100"],
     "--beta is an option of ksm, which is not among --method"),
    (["--task", "digits", "--method", "ksm", "--temperature", "0"], "Invalid value for '--temperature'"),
    (["--task", "digits", "--prune-ratio", "0.3"],
     "--prune-ratio is an option of packnet and cpg, which are not among --method"),
    (["--task", "digits", "--method", "cpg", "--method", "ksm", "--out", "never-written"],
     "with a sequence method (cpg), --out names the sequence folder"),
    ([], "name a --task or --suite default"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, [*args, "--runs-dir", str(tmp_path / "runs"), "--weights", "none"])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_wrong_weights_file_is_refused_before_writing(tmp_path: Path) -> None:
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"junk")
    out = tmp_path / "runs" / "digits"
    result = CliRunner().invoke(main, ["--task", "digits", "--weights", str(bad), "--out", str(out),
                                       "--max-train", "20", "--input-size", "32"])
    assert result.exit_code == 1 and "w.pth: not a readable torch state dict" in result.output
    assert not out.exists()


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    out.mkdir()
    (out / "run.json").write_text('{"format": "ksm-run/1"}')
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out)])
    assert result.exit_code == 1 and "--force" in result.output
    assert (out / "run.json").read_text() == '{"format": "ksm-run/1"}'


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(locked / "run")])
    assert result.exit_code == 1 and "not writable" in result.output


def test_output_under_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(blocker / "run")])
    assert result.exit_code == 1 and "cannot create the output folder" in result.output


def test_tiny_run_end_to_end(tmp_path: Path, backbone_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    args = ["--task", "digits", "--method", "ksm", "--method", "feature", "--weights", str(backbone_file),
            "--runs-dir", str(runs), "--epochs", "1", "--max-train", "64", "--input-size", "32", "--no-progress"]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert (runs / "digits" / "run.json").exists() and (runs / "digits-feature" / "masks.safetensors").exists()
    record = json.loads((runs / "digits" / "run.json").read_text())
    assert record["train"]["epochs"] == 1 and record["dataset"]["train_size"] == 64
    train = {k: v for k, v in record["train"].items() if k not in ("versions", "wall_seconds")}
    assert train == {  # as before the mask options defaulted to the method's own: the built-ins' values unchanged
        "amp": False, "batch_size": 32, "device": "cpu", "epochs": 1, "global_batch_size": 32, "lr_body": 0.001,
        "lr_head": 0.001, "mask_beta": 1200.0, "mask_init": 0.01, "mask_temperature": 100.0, "mask_threshold": 0.005,
        "processes": 1, "recalibrate_bn": True, "seed": 0, "soft": True}
    assert "| digits |" in result.output and (runs / "results.md").exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already there" in again.output
    reused = _invoke([*args, "--skip-existing"])
    assert reused.exit_code == 0 and "finished run reused" in reused.output


@pytest.mark.parametrize("contents", [{"notes.txt": "mine"}, {"run.json": "{}"},
                                      {"run.json": '{"format": "other/1"}'}, {"run.json": "[1]"}])
def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path: Path, contents: dict[str, str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in contents.items():
        (out / name).write_text(text)
    result = CliRunner().invoke(main, ["--task", "digits", "--out", str(out), "--force", "--weights", "none"])
    assert result.exit_code == 1 and "not a ksm-train run" in result.output
    assert "--force" not in result.output and "Traceback" not in result.output
    assert {p.name: p.read_text() for p in out.iterdir()} == contents


# ---- bounded work, said up front (issue 26, item 3) ------------------------------------------


def _options(args: list[str]):
    from ksm.training.train_options import Options

    return Options.of(main.make_context("ksm-train", args).params)


def test_input_size_100000_is_refused_before_any_work(tmp_path: Path) -> None:
    """``--input-size 100000`` died with a traceback: now beyond the option's range (the largest ``run.json``
    records), and a size within it that would not fit in memory is refused by the estimate, in one line."""
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--suite", "default", "--input-size", "100000", "--runs-dir", str(runs)])
    assert result.exit_code == 2 and "Invalid value for '--input-size': 100000 is not in the range" in result.output
    result = CliRunner().invoke(main, ["--suite", "default", "--input-size", "16384", "--runs-dir", str(runs)])
    line = result.output.strip()
    assert result.exit_code == 1 and "\n" not in line, result.output
    assert line.startswith("Error: ksm-train: about 32 images a step at 16384×16384 px, ~") and \
        "lift it with --max-memory " in line
    assert not runs.exists()


def test_max_memory_lifts_the_cap_and_defaults_stay_under_it() -> None:
    refused = _options(["--suite", "default", "--max-memory", "0.1"]).memory_estimate()
    assert refused.over
    needed = refused.line().rsplit(" ", 1)[1]
    assert not _options(["--suite", "default", "--max-memory", needed]).memory_estimate().over
    # the default job and the README's --data-root runs stay far under any machine's 80 %
    assert _options(["--suite", "default"]).memory_estimate().bytes < 0.5 * 2**30
    assert _options(["--task", "t", "--data-root", "d", "--arch", "resnet50"]).memory_estimate().bytes < 6 * 2**30


@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet18", "resnet50", "vgg16", "vgg16_bn"])
def test_activation_constants_are_hwsims_layer_tables(arch: str) -> None:
    """ACTIVATIONS_PER_PIXEL: every conv and linear output of the backbone over its input's pixels, rounded up,
    from the layer tables hwsim bundles (vgg16_bn's convolutions are vgg16's)."""
    from ksm.training.train_options import ACTIVATIONS_PER_PIXEL

    table = json.loads((Path(__file__).resolve().parents[2] / "hwsim" / "networks" /
                        f"{arch.removesuffix('_bn')}.json").read_text())
    h, w = table["input_hw"]
    outputs = sum(lay["out_channels"] * lay["output_hw"][0] * lay["output_hw"][1] for lay in table["layers"])
    per_pixel = outputs / (h * w)
    assert per_pixel <= ACTIVATIONS_PER_PIXEL[arch] < per_pixel + 0.1


@pytest.mark.parametrize("option", ["--nproc", "--threads"])
def test_process_counts_are_bounded(tmp_path: Path, option: str) -> None:
    result = CliRunner().invoke(main, ["--suite", "default", option, "1000000000", "--runs-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "1<=x<=256" in result.output and not (tmp_path / "r").exists()


# ---- a task or method named twice is trained once ----------------------------------------------


@pytest.mark.parametrize("args, tasks, methods", [
    (["--task", "digits", "--task", "digits"], ["digits"], ("ksm",)),
    (["--task", "animals", "--task", "digits", "--task", "animals"], ["animals", "digits"], ("ksm",)),
    (["--task", "mnist5k", "--suite", "default"], ["mnist5k", "fashion_mnist", "animals", "digits"], ("ksm",)),
    (["--task", "digits", "--method", "feature", "--method", "ksm", "--method", "feature"], ["digits"],
     ("feature", "ksm")),
])
def test_a_repeated_task_or_method_is_trained_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   args: list[str], tasks: list[str],
                                                   methods: tuple[str, ...]) -> None:
    """``--task digits --task digits`` planned two runs into one folder, and the second was refused as a lock
    conflict with the first ("another ksm-train is writing this folder"): now each is planned once, in the order
    first named, as is a task the suite names again (the suite: fashion_mnist, animals, mnist5k, digits)."""
    import ksm.training.batch_of_runs

    planned: list[tuple[list[str], tuple[str, ...]]] = []
    monkeypatch.setattr(ksm.training.batch_of_runs, "train_batch",
                        lambda o, names, methods, sequences, *rest: planned.append((names, methods)))
    result = CliRunner().invoke(main, [*args, "--weights", "none", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert planned == [(tasks, methods)]
