"""The deployable task file (ksm.deploy.task_file): its size is what ksm-sim prices, and it loads back to the
recorded accuracy on the real pretrained MobileNetV2."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hwsim.workload.layers import load_run
from hwsim.cost.mask_cost import task_cost
from hwsim.workload.packed import load_packed, pack_codes, read_packed, unpack_codes
from hwsim.hardware.profile import load_profile
from ksm.network.backbones import BackboneSpec
from ksm.data.datasets import TaskData, array_task, load_digits, resize_gray, stratified_split
from ksm.deploy.task_file import DeployError, file_sizes, load_task, pack_task, scale_codes, scale_values
from ksm.cli.ksm_export import main as export_main
from ksm.methods.registry import method_class
from ksm.methods.soft_masks import quantise_scale
from ksm.training.pipeline import RunSpec, load_sequence_task, run_sequence, run_task
from ksm.training.loop import TrainConfig, evaluate

PRETRAINED = BackboneSpec("mobilenet_v2", "IMAGENET1K_V1")
EPOCHS = {"ksm": 4, "piggyback": 2, "finetune": 2, "feature": 1, "lora": 6}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits(n_test: int, seed: int, modulo: int = 10) -> TaskData:
    raw = load_digits()
    tr, _ = stratified_split(raw["y_train"], 120, seed)
    te, _ = stratified_split(raw["y_test"], n_test, seed)
    arrays = {"x_train": resize_gray(raw["x_train"][tr], (32, 32)), "y_train": raw["y_train"][tr] % modulo,
              "x_test": resize_gray(raw["x_test"][te], (32, 32)), "y_test": raw["y_test"][te] % modulo}
    return array_task(f"digits_mod{modulo}", arrays, (32, 32), "sklearn digits", num_classes=modulo)


@pytest.fixture(scope="module")
def digits() -> TaskData:
    return _digits(100, 0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, digits: TaskData) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method, epochs in EPOCHS.items():
        options = {"rank": 4} if method == "lora" else {}
        spec = RunSpec(method=method, backbone=PRETRAINED, train=TrainConfig(epochs=epochs, batch_size=32),
                       options=options)
        run_task(spec, digits, root / method, progress=False)
        out[method] = root / method
    return out


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tasks = {"digits_mod10": _digits(60, 0), "digits_mod5": _digits(60, 1, 5)}
    fast = TrainConfig(epochs=1, batch_size=32)
    options = {"packnet": {"prune_ratio": 0.5, "retrain_epochs": 1},
               "cpg": {"prune_ratio": 0.5, "prune_steps": 1, "prune_epochs": 1}}
    out = {}
    for method, opts in options.items():
        folder = tmp_path_factory.mktemp(method)
        run_sequence(RunSpec(method=method, backbone=PRETRAINED, train=fast, options=opts), list(tasks),
                     tasks.__getitem__, folder, progress=False)
        out[method] = folder
    return out


def _profile_with(bits: int | None):
    prof = load_profile("edge_npu")
    if bits is None:
        return prof
    return dataclasses.replace(prof, precision_bits=dataclasses.replace(prof.precision_bits, mask_scale=bits))


def _check_size(path: Path, folder: Path, bits: int | None) -> None:
    """Tensor bytes = what ksm-sim prices from the packed file and from the run folder (each bit
    stream rounds up to whole bytes: under 1 byte per stream); the rest is the header."""
    prof = _profile_with(bits)
    sizes = file_sizes(path)
    from_file = task_cost(load_packed(path), prof).task_specific_bytes
    from_run = task_cost(load_run(folder), prof).task_specific_bytes
    assert from_file == pytest.approx(from_run)
    # and both are costed on the same graph: the backbone's, derived at the run's size
    assert load_packed(path).graph is not None and load_packed(path).graph == load_run(folder).graph
    assert 0 <= sizes["tensors"] - from_file < 2, (sizes, from_file)
    assert sizes["file"] - from_file < sizes["header"] + 2


def test_bit_streams_round_trip() -> None:
    rng = np.random.default_rng(0)
    for bits in (1, 3, 8, 13, 16):
        codes = rng.integers(0, 1 << bits, 1001)
        stream = pack_codes(codes, bits)
        assert stream.size == -(-1001 * bits // 8)
        assert np.array_equal(unpack_codes(stream, bits, 1001), codes)


def test_scale_codes_are_quantise_scale() -> None:
    scale = torch.rand(500) * 0.5
    for bits in (1, 2, 4, 8, 15, 16):
        assert torch.equal(scale_values(scale_codes(scale, bits), bits), quantise_scale(scale, bits)), bits


@pytest.mark.parametrize("method", list(EPOCHS))
def test_size_is_the_priced_size_and_accuracy_is_recorded(runs: dict[str, Path], digits: TaskData, method: str,
                                                          tmp_path: Path) -> None:
    path = tmp_path / f"{method}.ksmtask"
    meta = pack_task(runs[method], path)
    _check_size(path, runs[method], None)
    header, arrays = read_packed(path)
    assert header["arch"] == "mobilenet_v2" and header["backbone_sha256"] == meta["backbone_sha256"]
    assert header["method"] == method and header["format"] == "ksm-task/1"
    if method == "ksm":
        assert header["scale_bits"] == 8 and arrays["mask.scale"].size > 0  # some kernels are off
    model, _ = load_task(path)
    # int8 head and 16-bit folded BatchNorm: within one test image of the recorded accuracy; LoRA also
    # stores both low-rank factors at int8 (two roundings per adapted layer): within two on this
    # barely trained toy (the built-in suite's digits-lora-r4 run reproduces its 92.48 % exactly)
    images = 2 if method == "lora" else 1
    assert abs(evaluate(model, digits) - meta["top1"]) <= images / 100 + 1e-9


@pytest.mark.parametrize("bits", [0, 2, 4, 16])
def test_ksm_scale_bits_sweep(runs: dict[str, Path], digits: TaskData, bits: int, tmp_path: Path) -> None:
    path = tmp_path / f"ksm{bits}.ksmtask"
    meta = pack_task(runs["ksm"], path, scale_bits=bits)
    record = json.loads((runs["ksm"] / "run.json").read_text())
    assert meta["top1"] == record["metrics"]["soft_precision"][str(bits)]
    _check_size(path, runs["ksm"], bits)
    model, _ = load_task(path)
    assert abs(evaluate(model, digits) - meta["top1"]) <= 1 / 100 + 1e-9


@pytest.mark.parametrize("method", ["packnet", "cpg"])
def test_sequence_tasks(sequences: dict[str, Path], method: str, tmp_path: Path) -> None:
    folder = sequences[method] / "digits_mod5"
    path = tmp_path / f"{method}.ksmtask"
    pack_task(folder, path)
    _check_size(path, folder, None)
    if method == "cpg":
        assert read_packed(path)[1]["pick.bits"].size > 0
    model, _ = load_task(path, shared=sequences[method] / "shared.safetensors")
    reference, _, _ = load_sequence_task(folder)
    for name, module in reference.named_modules():  # the same weights as the run folder gives
        if isinstance(module, torch.nn.Conv2d):
            assert torch.equal(module.weight, model.get_submodule(name).weight), name
    with pytest.raises(DeployError, match="shared"):
        load_task(path)


def test_packnet_index_map_is_not_charged_per_task(sequences: dict[str, Path]) -> None:
    cost = task_cost(load_run(sequences["packnet"] / "digits_mod5"), load_profile("edge_npu"))
    assert cost.task_specific_bytes == cost.batchnorm_bytes + cost.head_bytes
    assert sum(cost.shared_bits.values()) > 0


def test_wrong_backbone_is_refused(runs: dict[str, Path], backbone_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "ksm.ksmtask"
    pack_task(runs["ksm"], path)
    with pytest.raises(DeployError, match="sha256"):
        load_task(path, weights=str(backbone_file))


def _pack_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(export_main, list(args))
    return result.exit_code, result.output


def test_cli_packs_and_ksm_sim_reads_it(runs: dict[str, Path], tmp_path: Path) -> None:
    from hwsim.ksm_sim import main as sim_main

    path = tmp_path / "deploy" / "ksm.ksmtask"
    code, out = _pack_cli(str(runs["ksm"]), "--pack", str(path), "--scale-bits", "8")
    assert code == 0, out
    assert "bytes of tensors" in out
    renamed = tmp_path / "deploy" / "ksm-task.safetensors"  # known by its header, not only by its suffix
    renamed.write_bytes(path.read_bytes())
    for given in (path, renamed):
        result = CliRunner().invoke(sim_main, ["--masks", str(given), "--json", str(tmp_path / "sim.json")])
        assert result.exit_code == 0 and "skipping" not in result.output, result.output
        costed = json.loads((tmp_path / "sim.json").read_text())["results"]
        assert costed and all(r["method"] == "ksm" and r["source"].endswith(given.name) for r in costed), costed


@pytest.mark.parametrize("case", ["unfinished", "bits", "unwritable", "hash"])
def test_bad_input_is_one_line_and_writes_nothing(runs: dict[str, Path], backbone_file: Path, tmp_path: Path,
                                                  case: str) -> None:
    run, target, extra = runs["ksm"], tmp_path / "out.ksmtask", []
    if case == "unfinished":
        run = tmp_path / "half"
        (tmp_path / ".half.partial").mkdir()
    elif case == "bits":
        extra = ["--scale-bits", "17"]
    elif case == "unwritable":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "out.ksmtask"
    else:
        extra = ["--weights", str(backbone_file)]
    code, out = _pack_cli(str(run), "--pack", str(target), *extra)
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert not target.exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert {"unfinished": "--resume", "bits": "0..16", "unwritable": "file", "hash": "sha256"}[case] in out


def test_packed_file_never_appears_half_written(runs: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    real = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:  # the disk fills half way through the file
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    target = tmp_path / "t.ksmtask"
    with pytest.raises(OSError) as caught:
        pack_task(runs["ksm"], target)
    monkeypatch.undo()
    assert caught.value.errno == 28 and caught.value.filename == str(target)
    assert os.listdir(tmp_path) == []


def test_a_file_size_limit_is_one_line_naming_the_file(runs: dict[str, Path], tmp_path: Path) -> None:
    """``ulimit -f``: the write fails with EFBIG (SIGXFSZ ignored, as a shell's ulimit leaves a Python process
    able to); ksm-export says so in one line naming the file, and leaves nothing behind."""
    target = tmp_path / "out" / "t.ksmtask"
    limit = 4096  # below any MobileNetV2 task file (the head alone is 12 KiB)
    code = textwrap.dedent(f"""
        import resource, signal
        from ksm.cli.ksm_export import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        main([{str(runs["ksm"])!r}, "--pack", {str(target)!r}])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"Error: {target}: File too large", result.stderr
    assert "Traceback" not in result.stderr and list((tmp_path / "out").iterdir()) == []


def test_a_header_that_would_be_refused_is_not_written(runs: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer checks its header with the reader's schema: a method whose pack_task lists a layer twice is
    stopped before a file exists, rather than caught by ksm-sim later."""
    cls = method_class("ksm")
    original = cls.pack_task

    def twice(self, model, out) -> None:
        original(self, model, out)
        out.masked.append(out.masked[0])

    monkeypatch.setattr(cls, "pack_task", twice)
    target = tmp_path / "t.ksmtask"
    with pytest.raises(DeployError, match=r"t\.ksmtask: not written, its header would be refused: masked\[\d+\]: "
                                          r"'features\.0\.0' is listed twice"):
        pack_task(runs["ksm"], target)
    assert os.listdir(tmp_path) == []


def test_a_tampered_file_is_refused_by_load_task(runs: dict[str, Path], tmp_path: Path) -> None:
    """load_task reads through the same schema as ksm-sim: a file whose mask stream was cut is one line."""
    from safetensors.numpy import save_file

    from hwsim.errors import InputError
    from hwsim.schemas.task_header import encode_header

    path = tmp_path / "ksm.ksmtask"
    pack_task(runs["ksm"], path)
    header, arrays = read_packed(path)
    arrays["mask.binary"] = arrays["mask.binary"][: arrays["mask.binary"].size // 2]
    save_file(arrays, str(path), metadata=encode_header(header))
    with pytest.raises(InputError, match=r"ksm\.ksmtask: tensor mask\.binary: \d+ bytes, but masked"):
        load_task(path)
