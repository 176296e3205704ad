"""What every command (ksm-train, ksm-compare, ksm-export, ksm-sim) promises about bad input, as one table:
one line, a non-zero exit, no traceback, and nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hwsim.errors import InputError
from hwsim.explore.ksm_explore import main as explore
from hwsim.fileio.output_guard import NameOrPath, PathOption
from hwsim.ksm_sim import main as sim
from hwsim.schemas.run_record import Dataset, Lora, Train
from hwsim.schemas.validation import validate
from ksm.cli.ksm_compare import main as compare
from ksm.cli.ksm_export import main as export
from ksm.cli.ksm_train import main
from tests.hwsim.conftest import write_run


def _sequence_with_empty_shared(run: Path, tmp: Path) -> Path:
    """A KSM run made into a PackNet sequence's task (its head and BatchNorm kept) whose shared file is empty."""
    from safetensors.numpy import load_file, save_file

    from hwsim.fileio.atomic import sha256_file

    folder = shutil.copytree(run, tmp / "packnet" / "digits")
    record = json.loads((folder / "run.json").read_text())
    record["tensors"] = {k: role for k, role in record["tensors"].items() if role in ("head", "batchnorm")}
    kept = {k: v for k, v in load_file(str(folder / "masks.safetensors")).items() if k in record["tensors"]}
    save_file(kept, str(folder / "masks.safetensors"))
    record["files"]["masks.safetensors"]["sha256"] = sha256_file(folder / "masks.safetensors")
    record["method"] = "packnet"  # a sequence method: its record names the shared file
    record["sequence"] = {"position": 1, "tasks": ["digits"], "shared": "../shared.safetensors"}
    (folder / "run.json").write_text(json.dumps(record))
    (tmp / "packnet" / "shared.safetensors").write_bytes(b"")
    return folder


BAD_INPUTS = [  # (command, arguments with {tmp}/{run}, the one line expected)
    ("train", ["--task", "digits", "--device", "bogus"], "is not a torch device"),
    ("train", ["--task", "digits", "--device", "cuda:7"], "CUDA device"),
    ("train", ["--task", "digits", "--runs-dir", "{tmp}/r", "--max-train", "20"], "results.md: is a folder"),
    ("train", ["--task", "../escape"], "is not a task name"),
    ("train", ["--task", "digits", "--lr-mask", "nan"], "is not a finite number"),
    ("train", ["--task", "digits", "--mask-init", "1e308"], "Invalid value for '--mask-init'"),  # float32 overflow
    ("train", ["--task", "digits", "--beta", "1e300"], "Invalid value for '--beta'"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/afile"], "exists and is not a folder"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/c", "--device", "bogus"], "is not a torch device"),
    ("compare", ["--protocol", "smoke", "--out", "{tmp}/c", "--variant", "ksm"], "at least two variants"),
    ("export", ["{run}", "--onnx", "{tmp}/afile/x.onnx"], "afile"),
    ("export", ["{tmp}/packnet/digits", "--onnx", "{tmp}/p.onnx"], "shared.safetensors: not a readable safetensors"),
    ("export", ["{run}", "--table-file", "{tmp}/d", "--int8"], "is a directory"),
    ("sim", ["--network", "mobilenet_v2", "--json", "{tmp}/d"], "is a directory"),
    ("sim", ["--masks", "{tmp}/d"], "not a run folder"),  # nothing to cost is not a success
    ("sim", ["--network", "mobilenet_v2", "--profile", "{tmp}/p.yaml"], "is a folder, not a file"),
    ("export", ["{run}", "--int8", "--table-file", "{tmp}/link", "--out-dir", "{tmp}/ex"], "symbolic link"),
    ("export", ["{tmp}/linked", "--int8", "--out-dir", "{tmp}/ex"], "linked/run.json: is a symbolic link"),
    ("export", ["{tmp}/negative", "--pack", "{tmp}/n.ksmtask"], "dataset.num_classes: must be at least 1"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp1", "--report", "{tmp}/rep"], "metrics.selection.role: missing key"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp2", "--report", "{tmp}/rep"], "top level must be a JSON object"),
    ("compare", ["--report-only", "--out", "{tmp}/cmp3", "--report", "{tmp}/rep"], "cmp3/x/run.json: format: missing"),
]


@pytest.mark.parametrize(("command", "args", "message"), BAD_INPUTS)
def test_bad_input_per_command(digits_run: Path, tmp_path: Path, command: str, args: list[str], message: str) -> None:
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "d").mkdir()
    (tmp_path / "r" / "results.md").mkdir(parents=True)
    (tmp_path / "p.yaml").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "afile")
    write_run(tmp_path / "cmp1" / "x", run_overrides={"metrics": {"selection": {"variant": "ksm"}}})
    for name, text in (("cmp2", "[1, 2]"), ("cmp3", '{"task": "digits", "metrics": {"selection": {"variant": "ksm"}}}')):
        (tmp_path / name / "x").mkdir(parents=True)
        (tmp_path / name / "x" / "run.json").write_text(text)
    _sequence_with_empty_shared(digits_run, tmp_path)
    linked = shutil.copytree(digits_run, tmp_path / "linked")  # run.json a symlink to a file elsewhere
    (tmp_path / "elsewhere.json").write_bytes((linked / "run.json").read_bytes())
    (linked / "run.json").unlink()
    (linked / "run.json").symlink_to(tmp_path / "elsewhere.json")
    negative = shutil.copytree(digits_run, tmp_path / "negative")
    record = json.loads((negative / "run.json").read_text())
    record["dataset"]["num_classes"] = -10
    (negative / "run.json").write_text(json.dumps(record))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    run_before = {p.name: p.read_bytes() for p in digits_run.iterdir()}
    cli = {"train": main, "compare": compare, "export": export, "sim": sim}[command]
    extra = ["--weights", "none"] if command == "train" else []
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path, run=digits_run) for a in args] + extra)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    assert {p.name: p.read_bytes() for p in digits_run.iterdir()} == run_before


# ---- every path option refuses '' as itself --------------------------------------------------------------

COMMANDS = {"ksm-train": main, "ksm-sim": sim, "ksm-explore": explore, "ksm-export": export, "ksm-compare": compare}
NAMES_OR_PATHS = {("ksm-sim", "profiles"), ("ksm-sim", "networks"), ("ksm-export", "profile"),
                  ("ksm-export", "weights"), ("ksm-train", "weights")}  # a bundled name or a file


def _params(command: str) -> list[click.Parameter]:
    cli = COMMANDS[command]
    # ksm-train's include every method's own options; the command's own settings, as click caches the help
    # option (-h) it makes from the first context it is asked with
    return cli.get_params(click.Context(cli, **cli.context_settings))


def _types(param: click.Parameter) -> list[click.ParamType]:
    return list(param.type.types) if isinstance(param.type, click.Tuple) else [param.type]


PATH_PARAMS = [(command, p.name) for command in COMMANDS for p in _params(command)
               if any(isinstance(t, (PathOption, NameOrPath)) for t in _types(p))]


def test_every_path_parameter_is_typed_to_refuse_an_empty_value() -> None:
    """No command has a plain ``click.Path`` (which takes ``''`` as the working folder), and the options that
    take a bundled name or a file are :class:`NameOrPath`."""
    for command in COMMANDS:
        for param in _params(command):
            plain = [t for t in _types(param) if isinstance(t, click.Path) and not isinstance(t, PathOption)]
            assert not plain, f"{command} {param.name}: a click.Path that accepts ''"
    for command, name in NAMES_OR_PATHS:
        (param,) = [p for p in _params(command) if p.name == name]
        assert isinstance(param.type, NameOrPath), f"{command} {name}"
    assert len(PATH_PARAMS) >= 25  # every command's paths are found


@pytest.mark.parametrize(("command", "name"), PATH_PARAMS, ids=lambda v: str(v))
def test_an_empty_path_is_refused_as_its_own_option(command: str, name: str) -> None:
    """``ksm-sim --network '' --json out.json`` blamed the output (``out.json: lies inside the input .``):
    ``''`` is refused as the option it was given to, while the command line is read, before any work."""
    (param,) = [p for p in _params(command) if p.name == name]
    value = [t.choices[0] if isinstance(t, click.Choice) else "" for t in _types(param)]
    args = value if isinstance(param, click.Argument) else [param.opts[0], *value]
    cli = COMMANDS[command]
    with pytest.raises(click.BadParameter) as caught:
        cli.make_context(command, list(args))  # (click consumes the list it parses)
    assert caught.value.param is not None and caught.value.param.name == name
    assert "is empty" in caught.value.format_message()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "is empty" in result.output.splitlines()[-1]


# ---- ksm-train's options are bounded as run.json bounds what it records -----------------------------------

LORA = {"rank": 1, "alpha": 1.0, "dropout": 0.0, "targets": ["all"], "layers": {}}
RECORDED = {  # ksm-train option -> the run.json record that holds its value: (model, field, the rest of it)
    "lr_mask": (Train, "lr_body", {}), "lr_head": (Train, "lr_head", {}), "epochs": (Train, "epochs", {}),
    "batch_size": (Train, "batch_size", {}), "seed": (Train, "seed", {}),
    "mask_init": (Train, "mask_init", {}), "threshold": (Train, "mask_threshold", {}),
    "beta": (Train, "mask_beta", {}), "temperature": (Train, "mask_temperature", {}),
    "prune_ratio": (Train, "prune_ratio", {}),
    "max_train": (Dataset, "max_train", {"name": "t"}), "input_size": (Dataset, "input_size", {"name": "t"}),
    "lora_rank": (Lora, "rank", LORA), "lora_alpha": (Lora, "alpha", LORA), "lora_dropout": (Lora, "dropout", LORA),
}


def _recorded(model: type, field: str, rest: dict, value: float) -> dict:
    """The record of ``field`` = ``value`` as ksm writes it (an input side twice; LoRA's scaling alpha / rank)."""
    data = {**rest, field: [value, value] if field == "input_size" else value}
    if model is Lora:
        data["scaling"] = data["alpha"] / data["rank"]
    return data


def _probes(kind: click.ParamType) -> list[float]:
    """The values that test a numeric option's range: its ends (or ±1e308 when open-ended), around zero, an
    underflow."""
    low, high = getattr(kind, "min", None), getattr(kind, "max", None)
    ends = [-1e308 if low is None else low, 1e308 if high is None else high]
    if isinstance(kind, click.IntRange):
        return [int(v) for v in ends] + [-1, 0, 1, 10 ** 30]
    return ends + [-1.0, 0.0, 1e-300, 1e-310, -1e-310, 5e-7, 1.0]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_train_option_accepts_only_what_run_json_records(name: str) -> None:
    """``--lora-alpha 1e7`` trained, then its run.json was refused (``lora.alpha: must be at most 1e6``) and
    the run lost; so were ``--lr-mask 1e4``, ``--threshold 1e-310`` and ``--seed 10**15`` (the epoch's data
    order seeded past 64 bits). Every value an option takes is one its run.json field accepts."""
    (param,) = [p for p in _params("ksm-train") if p.name == name]
    model, field, rest = RECORDED[name]
    for probe in _probes(param.type):
        try:
            value = param.type.convert(str(probe), param, None)
        except click.BadParameter:
            continue
        validate(model, _recorded(model, field, rest, value), f"--{name} {probe!r}", InputError)


def test_lora_alpha_and_rank_at_their_ends_make_a_scaling_run_json_accepts() -> None:
    params = {p.name: p for p in _params("ksm-train")}
    rank, alpha = params["lora_rank"].type, params["lora_alpha"].type
    for r, a in ((rank.max, alpha.min), (rank.min, alpha.max)):
        validate(Lora, _recorded(Lora, "rank", {**LORA, "alpha": a}, r), f"rank {r}, alpha {a}", InputError)
    with pytest.raises(click.BadParameter, match="1e6|1000000"):
        alpha.convert("1e7", params["lora_alpha"], None)
