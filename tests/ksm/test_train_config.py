"""ksm-train --config FILE.yaml: the file's keys are the options, the command line overrides it, a bad file is one
line naming the file and the key, and a run folder records the options it was made with (config.yaml)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import torch
import yaml
from click.core import ParameterSource
from click.testing import CliRunner

from ksm.cli.ksm_train import main
from ksm.config_file import CONFIG, ConfigError, read_config, resolved_config


def _parse(args: list[str]) -> click.Context:
    return main.make_context("ksm-train", args)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_keys_are_the_options_and_the_command_line_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, "task: [digits, animals]\nmethod: piggyback\nepochs: 3\nlr_mask: 1e-4\nsoft: false\n"
                            "input_size: 48\nlog: csv\nlora_rank: 4\n")
    ctx = _parse(["--config", str(path), "--epochs", "5", "--task", "mnist5k"])
    p = ctx.params
    assert p["tasks"] == ("mnist5k",)  # a repeatable option on the command line replaces the file's list
    assert p["methods"] == ("piggyback",) and p["epochs"] == 5 and p["lr_mask"] == 1e-4
    assert p["soft"] is False and p["input_size"] == 48 and p["log"] == ("csv",) and p["lora_rank"] == 4
    assert ctx.get_parameter_source("epochs") is ParameterSource.COMMANDLINE
    assert ctx.get_parameter_source("lr_mask") is ParameterSource.DEFAULT_MAP
    assert ctx.get_parameter_source("batch_size") is ParameterSource.DEFAULT


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    assert _parse(["--config", str(_write(tmp_path, "# nothing\n"))]).params == _parse([]).params


@pytest.mark.parametrize("text, message", [
    ("epochs: 3\nbogus: 1\n", "run.yaml: bogus: unknown key"),
    ("lr-mask: 0.01\n", "run.yaml: lr-mask: unknown key; write it lr_mask"),
    ("epochs: '3'\n", "run.yaml: epochs: Input should be a valid integer"),
    ("epochs: true\n", "run.yaml: epochs: Input should be a valid integer"),
    ("epochs: 0\n", "run.yaml: epochs: 0 is not in the range 1<=x<="),
    ("lr_mask: true\n", "run.yaml: lr_mask: must be a number"),
    ("lr_mask: .nan\n", "run.yaml: lr_mask: "),
    ("arch: alexnet\n", "run.yaml: arch: 'alexnet' is not one of"),
    ("log: [csv, wandb]\n", "run.yaml: log: 'wandb' is not a log; choose from csv, tensorboard"),
    ("task: [1]\n", "run.yaml: task[0]: Input should be a valid string"),
    ("soft: 1\n", "run.yaml: soft: Input should be a valid boolean"),
    ("config: other.yaml\n", "run.yaml: config: a config file cannot name another"),
    ("- epochs\n", "run.yaml: must be a mapping of option names to values"),
    ("epochs: 3\nepochs: 4\n", "run.yaml: malformed YAML"),
    ("epochs: [3\n", "run.yaml: malformed YAML"),
    # each option's own check (its type, choice, callback, its method's) runs when the file is read, so that
    # the line names the file and the key, not the option when the run is planned
    ("task: ['']\n", "run.yaml: task: '' is not a task name"),
    ("task: [digits, ../x]\n", "run.yaml: task: '../x' is not a task name"),
    ("method: lora\nlora_targets: bogus\n", "run.yaml: lora_targets: unknown target 'bogus'"),
    ("method: lora\nlora_targets: [all, bogus]\n", "run.yaml: lora_targets: unknown target 'bogus'"),
    ("method: []\n", "run.yaml: method: names no method"),
    ("task: [digits, null]\n", "run.yaml: task[1]: null is not a value"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    result = CliRunner().invoke(main, ["--config", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path.parent}/") and message in lines[0], result.output
    assert not (tmp_path / "runs").exists()


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nowhere.yaml")])
    assert result.exit_code == 1 and "nowhere.yaml: missing file" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_option_of_an_unchosen_method_in_the_file_is_refused(tmp_path: Path) -> None:
    """As on the command line: a LoRA rank beside --method ksm would be dropped without a word."""
    path = _write(tmp_path, "task: digits\nlora_rank: 4\n")
    result = CliRunner().invoke(main, ["--config", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--lora-rank is an option of lora" in result.output


def test_resolved_config_reads_back_as_the_same_options(tmp_path: Path) -> None:
    """What a run folder records (config.yaml) is a config file that gives the same options again."""
    ctx = _parse(["--task", "digits", "--method", "ksm", "--epochs", "3", "--runs-dir", str(tmp_path / "r"),
                  "--log", "csv", "--threshold", "0.01"])
    config = resolved_config(ctx.params, main.get_params(ctx))
    assert config["task"] == ["digits"] and config["runs_dir"] == str(tmp_path / "r") and config["epochs"] == 3
    assert "input_size" not in config  # None: the default by task, left to the default
    path = tmp_path / "back.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    again = _parse(["--config", str(path)])
    assert again.params == ctx.params


def test_read_config_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "batch_size: -1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: batch_size: -1 is not in the range"):
        read_config(path, main.get_params(click.Context(main)))


def test_a_run_folder_records_its_options(tmp_path: Path, backbone_file: Path, monkeypatch: pytest.MonkeyPatch,
                                          one_thread: None) -> None:
    """A tiny real run made from a config file and a command-line override: config.yaml in its folder holds
    both, and reading it back gives the run's options."""
    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path / "cache"))
    path = _write(tmp_path, f"task: digits\nweights: {backbone_file}\nepochs: 2\nmax_train: 32\ninput_size: 32\n"
                            "progress: false\n")
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--config", str(path), "--epochs", "1", "--runs-dir", str(runs)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((runs / "digits" / CONFIG).read_text(encoding="utf-8"))
    assert recorded["epochs"] == 1 and recorded["max_train"] == 32 and recorded["weights"] == str(backbone_file)
    assert recorded["task"] == ["digits"] and recorded["method"] == ["ksm"] and recorded["progress"] is False
    assert not any(key.startswith("lora") or key == "prune_ratio" for key in recorded)  # other methods' options
    assert recorded["threads"] == torch.get_num_threads()  # not given: torch's default, which moves the digits
    again = _parse(["--config", str(runs / "digits" / CONFIG)])
    assert again.params["epochs"] == 1 and again.params["weights"] == str(backbone_file)


def _keys() -> list[str]:
    from ksm.config_file import file_options

    return sorted(file_options(main.get_params(click.Context(main))))


@pytest.mark.parametrize("null", ["null", "~", ""])
@pytest.mark.parametrize("key", _keys())
def test_a_null_is_refused_for_every_key(tmp_path: Path, key: str, null: str) -> None:
    """YAML's null is no option's value: ``weights: null`` reached --weights as the text "None", which is
    random init (a ~10 % run without a word), and ``epochs: null`` died in click's int(None) with a traceback.
    For every key, one line naming the file and the key says to leave the key out for the default (and, where
    the option has one, its own spelling of none)."""
    path = _write(tmp_path, f"task: digits\n{key}: {null}\n" if key != "task" else f"task: {null}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "--runs-dir", str(tmp_path / "runs")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0] == (f"Error: {path}: {key}: null is not a value: leave the key out for the default"
                        + (", or write 'none' for a randomly initialised backbone" if key == "weights" else ""))
    assert not (tmp_path / "runs").exists()


def test_the_none_a_null_is_told_of_is_the_options_own(tmp_path: Path) -> None:
    """What the null refusal tells a user to write is what the option reads as none: --weights' 'none'
    (ksm.network.backbones builds the backbone without pretrained weights)."""
    from ksm.cli.ksm_train import NONE_SPELLINGS

    assert set(NONE_SPELLINGS) <= set(_keys())
    path = _write(tmp_path, "task: digits\nweights: none\n")
    assert _parse(["--config", str(path)]).params["weights"] == "none"
    assert "'none' for random init" in " ".join(CliRunner().invoke(main, ["--help"]).output.split())


def test_a_repeated_task_or_method_in_the_file_is_named_once(tmp_path: Path) -> None:
    """``task: [digits, digits]`` planned one run folder twice, then refused the second as another ksm-train
    writing it: a repeated task or method is kept once, in the order first named, as on the command line."""
    path = _write(tmp_path, "task: [digits, animals, digits]\nmethod: [piggyback, ksm, piggyback]\n")
    params = _parse(["--config", str(path)]).params
    assert params["tasks"] == ("digits", "animals") and params["methods"] == ("piggyback", "ksm")
    assert _parse(["--task", "digits", "--task", "digits"]).params["tasks"] == ("digits",)
