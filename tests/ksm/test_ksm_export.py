"""ksm-export: fold → ONNX → onnxruntime check → int8 (folded and on the fly) → run.json.

Training MobileNetV2 even for one epoch costs tens of seconds on two busy cores, so the run folder
here is written by the real ``run_task`` with its training loop replaced by a stand-in that gives
the task random KSM masks (about half the kernels below the threshold, so the soft part matters),
BatchNorm statistics from the task's images and a head fitted on the frozen features. The
"int8 within a bound of float" claim is tested on a small CNN that is trained for real.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn import functional as F

import ksm.training.pipeline
from ksm.network.backbones import BackboneSpec
from ksm.data.datasets import TaskData
from ksm.deploy.channel_quantiser import quantise_per_channel
from ksm.deploy.int8_quantise import calibration_batches, quantise_static
from ksm.deploy.int8_results import int8_table, record_int8
from ksm.deploy.on_the_fly import on_the_fly_model
from ksm.deploy.onnx_export import INPUT_NAME, OUTPUT_NAME, ExportError, check_onnx, export_onnx, onnx_accuracy, session
from ksm.deploy.run_export import export_run
from ksm.cli.ksm_export import main
from ksm.methods.soft_masks import quantise_scale
from ksm.methods.base import batchnorms, maskable_layers
from ksm.training.pipeline import RunSpec, load_run_model, run_task
from ksm.training.runfolder import MASKS, RUN_JSON, RunError, read_run
from ksm.training.loop import TrainConfig, evaluate

INT8_BOUND = 0.05  # |int8 − float| test top-1 on the trained small CNN (3 of 60 test images)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """Small tensors on shared cores: one torch thread is many times faster than two contending."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# A small CNN trained for real: the export and int8 claims without the backbone's cost
# ---------------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.classifier = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@pytest.fixture(scope="module")
def trained_cnn(small_task: TaskData) -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        model.train()
        for x, y in small_task.batches("train", 40, gen):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def predictions(path: Path, x: torch.Tensor) -> np.ndarray:
    """Logits of an ONNX model run by onnxruntime with its QDQ nodes as written."""
    return session(path, integer_kernels=False).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


def test_round_trip_matches_pytorch_with_any_batch(tmp_path: Path, trained_cnn: SmallCNN, probe: torch.Tensor) -> None:
    path = export_onnx(trained_cnn, tmp_path / "cnn.onnx", probe[:1])
    onnx.checker.check_model(onnx.load(str(path)))
    assert check_onnx(path, trained_cnn, probe[:5]) < 1e-5  # a batch size other than the traced one
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind


def test_check_refuses_an_export_that_differs(tmp_path: Path, trained_cnn: SmallCNN, probe: torch.Tensor) -> None:
    path = export_onnx(trained_cnn, tmp_path / "cnn.onnx", probe[:1])
    other = SmallCNN()
    other.load_state_dict(trained_cnn.state_dict())
    with torch.no_grad():
        other.classifier.bias.add_(0.5)
    with pytest.raises(ExportError, match="differ from PyTorch"):
        check_onnx(path, other.eval(), probe)


def test_int8_is_per_channel_and_within_bound_of_float(tmp_path: Path, trained_cnn: SmallCNN,
                                                       small_task: TaskData, probe: torch.Tensor) -> None:
    float_path = export_onnx(trained_cnn, tmp_path / "cnn.onnx", probe[:1])
    int8_path = quantise_static(float_path, tmp_path / "cnn.int8.onnx", calibration_batches(small_task, 64))
    graph = onnx.load(str(int8_path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 3  # every conv (BatchNorm folded in by the exporter)
    scales = {t.name: t for t in graph.initializer}
    per_channel = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in
                   {w.name for w in int8_weights}]
    assert all(len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1 for n in per_channel)

    float_top1 = evaluate(trained_cnn, small_task)
    assert float_top1 >= 0.6  # a task on which the bound means something
    assert onnx_accuracy(float_path, small_task) == pytest.approx(float_top1)
    int8_top1 = onnx_accuracy(int8_path, small_task)
    assert abs(int8_top1 - float_top1) <= INT8_BOUND
    x, _ = next(small_task.batches("test", 60, None))
    agree = (predictions(int8_path, x).argmax(1) == trained_cnn(x).argmax(1).numpy()).mean()
    assert agree >= 0.9
    assert int8_top1 != 1 / 10  # not collapsed to one class


def test_calibration_draws_training_images_reproducibly(small_task: TaskData) -> None:
    a, b = calibration_batches(small_task, 50, seed=3), calibration_batches(small_task, 50, seed=3)
    assert sum(len(x) for x in a) == 50 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sum(len(x) for x in calibration_batches(small_task, 10_000)) == small_task.sizes["train"]


# ---------------------------------------------------------------------------------------------
# A KSM run folder on MobileNetV2 (random backbone, stand-in training)
# ---------------------------------------------------------------------------------------------
def _stand_in_training(model: nn.Module, method: Any, backbone: dict, data: TaskData, cfg: TrainConfig,
                       **_: Any) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    method.reset(model, backbone, data.num_classes)
    with torch.no_grad():
        for _, mask in method._masks(model):
            mask.mask.uniform_(0.0, 0.01)  # threshold 5e-3: about half binary, half soft
        for _, bn in batchnorms(model):
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
        model.train()
        for x, _ in data.batches("train", 60, None):
            model(x)
        for _, bn in batchnorms(model):
            bn.momentum = 0.1
        model.eval()
        feats, labels = [], []
        for x, y in data.batches("train", 60, None):
            feats.append(F.adaptive_avg_pool2d(model.features(x), 1).flatten(1))
            labels.append(y)
    feats, labels = torch.cat(feats), torch.cat(labels)
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    z = torch.cat([(feats - mean) / std, torch.ones(len(feats), 1)], 1)
    target = F.one_hot(labels, data.num_classes).float()
    solution = torch.linalg.solve(z.T @ z + 10.0 * torch.eye(z.shape[1]), z.T @ target)  # ridge head
    weight, bias = solution[:-1].T / std, solution[-1]
    with torch.no_grad():  # the standardisation folded into the head
        head = model.get_submodule(method.head)
        head.weight.copy_(weight)
        head.bias.copy_(bias - weight @ mean)
    top1 = evaluate(model, data)
    return {"top1": top1, "history": [], "mask_density": method.mask_density(model)}


@pytest.fixture(scope="module")
def ksm_run(tmp_path_factory: pytest.TempPathFactory, backbone_file: Path, small_task: TaskData) -> Path:
    out = tmp_path_factory.mktemp("runs") / "digits_small"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ksm.training.pipeline, "train_task", _stand_in_training)
        mp.setattr(ksm.training.pipeline, "soft_precision_sweep", lambda *a, **k: {})
        run_task(RunSpec(backbone=BackboneSpec("mobilenet_v2", str(backbone_file)), train=TrainConfig(epochs=1)),
                 small_task, out, progress=False)
    return out


@pytest.fixture(scope="module")
def ksm_export(ksm_run: Path, small_task: TaskData, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_run(ksm_run, out, data=small_task, int8=True, calibration_images=64, mask_scale_bits=8,
                      profile="edge_npu", threads=1)


def test_run_exports_float_and_both_int8_forms(ksm_export: Any, ksm_run: Path) -> None:
    m = ksm_export.metrics
    record = read_run(ksm_run)[0]
    assert ksm_export.onnx_rel_diff < 1e-4
    assert ksm_export.onnx.exists() and ksm_export.int8_onnx.name == "digits.int8.onnx"
    assert ksm_export.on_the_fly_onnx.name == "digits.int8-onthefly.onnx"
    assert m["float_top1"] == record["metrics"]["top1"]
    assert m["float_onnx_top1"] == pytest.approx(m["float_top1"], abs=1 / 60)
    assert m["precision"] == "int8" and m["calibration_images"] == 64 and m["mask_scale_bits"] == 8
    assert m["library"].startswith("onnxruntime ") and m["top1"] == m["folded_top1"]
    # a random-init backbone gives near-chance accuracy: the int8 bound is tested on the small CNN
    assert all(0 <= m[k] <= 1 for k in ("folded_top1", "on_the_fly_top1", "cpu_kernels_top1"))


def test_on_the_fly_weights_are_mask_times_int8_backbone(ksm_run: Path) -> None:
    model, method, _ = load_run_model(ksm_run)
    tensors = read_run(ksm_run)[1]
    backbone = {name: layer.parametrizations.weight.original.clone()
                for name, layer in maskable_layers(model, method.head)}
    folded = on_the_fly_model(model, method, mask_scale_bits=4)
    name = "features.2.conv.1.0"  # a depthwise conv
    binary, scale = tensors[f"{name}.binary"].float(), tensors[f"{name}.scale"].float()
    mask = binary + quantise_scale(scale, 4)
    expected = quantise_per_channel(backbone[name]) * mask[:, :, None, None]
    assert torch.allclose(folded.get_submodule(name).weight, expected, atol=1e-3 * float(expected.abs().max()))
    assert 0 < float(scale.gt(0).float().mean()) < 1  # the soft part is really exercised
    q8 = quantise_per_channel(backbone[name]).flatten(1)
    assert max(len(torch.unique(row)) for row in q8) <= 255  # int8 levels per output channel
    head = folded.get_submodule(method.head).weight
    assert torch.equal(head, quantise_per_channel(head))  # the head is int8 too


def test_record_int8_changes_only_metrics_int8(tmp_path: Path, ksm_run: Path, ksm_export: Any) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(ksm_run, folder)
    before = json.loads((folder / RUN_JSON).read_text())
    record_int8(folder, ksm_export.metrics, expected_sha256=ksm_export.run_json_sha256)
    after = json.loads((folder / RUN_JSON).read_text())
    assert after["metrics"].pop("int8") == json.loads(json.dumps(ksm_export.metrics))
    assert after == before
    assert sorted(p.name for p in folder.iterdir()) == [MASKS, RUN_JSON]  # no temp file left
    read_run(folder)  # still a valid run folder
    with pytest.raises(RunError, match="changed since it was measured"):  # now run.json holds int8
        record_int8(folder, ksm_export.metrics, expected_sha256=ksm_export.run_json_sha256)
    table = int8_table([read_run(folder)[0]])
    assert list(table.columns) == ["ksm float", "ksm int8", "ksm int8 on-the-fly"]


def test_corrupt_and_mismatched_runs_are_refused(tmp_path: Path, ksm_run: Path, small_task: TaskData) -> None:
    missing = tmp_path / "empty"
    missing.mkdir()
    with pytest.raises(RunError, match="run.json: missing"):
        export_run(missing, tmp_path / "x.onnx", data=small_task)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(ksm_run, corrupt)
    (corrupt / MASKS).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(RunError, match="masks.safetensors"):
        export_run(corrupt, tmp_path / "x.onnx", data=small_task)

    mismatched = tmp_path / "mismatched"
    shutil.copytree(ksm_run, mismatched)
    record = json.loads((mismatched / RUN_JSON).read_text())
    record["dataset"]["num_classes"] = 5
    (mismatched / RUN_JSON).write_text(json.dumps(record))
    with pytest.raises(RunError, match="num_classes is 5 but the stored head has 10"):
        export_run(mismatched, tmp_path / "x.onnx", data=small_task)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_exports_checks_and_prints_the_table(tmp_path: Path, ksm_run: Path, ksm_export: Any,
                                                 small_task: TaskData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ksm.deploy.run_export.task_data_for", lambda record, data_root=None: small_task)
    folder = tmp_path / "digits_small"
    shutil.copytree(ksm_run, folder)
    record_int8(folder, ksm_export.metrics)
    (tmp_path / "results.md").write_text("not a run")
    runner = CliRunner()
    result = runner.invoke(main, [str(folder), str(tmp_path / "results.md"), "--int8", "--skip-existing",
                                  "--table", "--out-dir", str(tmp_path / "exports")])
    assert result.exit_code == 0, result.output
    assert "int8 metrics already recorded, reused" in result.output
    assert "results.md: not a run folder, skipped" in result.output
    assert "| digits_small |" in result.output and "ksm int8 on-the-fly" in result.output

    result = runner.invoke(main, [str(folder), "--onnx", str(tmp_path / "d.onnx")])  # float only
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.onnx").exists() and "onnxruntime matches PyTorch" in result.output

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / MASKS).write_bytes(b"broken")
    result = runner.invoke(main, [str(broken), "--onnx", str(tmp_path / "e.onnx")])
    assert result.exit_code == 1 and "Error:" in result.output and "masks.safetensors" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "e.onnx").exists()

    # of several runs, a broken one is named, the others still make the table, and the exit status is 1
    result = runner.invoke(main, [str(folder), str(broken), "--int8", "--skip-existing", "--table"])
    assert result.exit_code == 1 and "| digits_small |" in result.output
    assert "1 of 2 runs failed" in result.output and "broken/masks.safetensors" in result.output


def test_sequence_tasks_export_under_distinct_names(tmp_path: Path) -> None:
    from ksm.cli.ksm_export import export_name

    (tmp_path / "cpg" / "digits").mkdir(parents=True)
    (tmp_path / "cpg" / "shared.safetensors").write_bytes(b"")
    (tmp_path / "digits").mkdir()
    assert export_name(tmp_path / "cpg" / "digits") == "cpg-digits"
    assert export_name(tmp_path / "digits") == "digits"


def test_a_failed_export_check_leaves_no_onnx(digits_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError):
        export_run(digits_run, tmp_path / "x.onnx", tolerance=1e-30)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args", [
    ["--pack", "{run}/masks.safetensors"], ["--pack", "{run}/run.json"], ["--onnx", "{run}/run.json"],
    ["--table", "--table-file", "{run}/run.json", "--out-dir", "{tmp}/exports"],
], ids=["pack-over-masks", "pack-over-run-json", "onnx-over-run-json", "table-file-over-run-json"])
def test_an_output_inside_the_run_read_is_refused(digits_run: Path, tmp_path: Path, args: list[str]) -> None:
    """The output guard (issue 26): each of these overwrote the run it read and exited 0."""
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = CliRunner().invoke(main, [str(run), *(a.format(run=run, tmp=tmp_path) for a in args)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "lies inside the input" in lines[0] and str(run) in lines[0], result.output
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert not (tmp_path / "exports").exists()


# ---------------------------------------------------------------------------------------------
# run.json against the run it describes: refused before any export or pack, naming run.json's field
# ---------------------------------------------------------------------------------------------
def _export_edited(digits_run: Path, tmp_path: Path, change: Any, command: str) -> tuple[Any, Path, Path]:
    """``ksm-export RUN --pack/--onnx OUT`` on a copy of the run whose run.json ``change`` edited."""
    run = tmp_path / "digits"
    shutil.copytree(digits_run, run)
    record = json.loads((run / RUN_JSON).read_text())
    change(record)
    (run / RUN_JSON).write_text(json.dumps(record))
    out = tmp_path / ("t.ksmtask" if command == "--pack" else "e.onnx")
    return CliRunner().invoke(main, [str(run), command, str(out)]), run, out


def _refused_naming(result: Any, run: Path, out: Path, says: str, file: str = RUN_JSON) -> str:
    """One error line naming the run's ``file`` and matching ``says``; nothing written, no temporary left."""
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert line.startswith(f"Error: {run / file}: "), line
    assert re.search(says, line), line
    assert "Traceback" not in result.output and not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name not in ("digits",)]  # no temporary left
    return line


@pytest.mark.parametrize("command", ["--pack", "--onnx"])
@pytest.mark.parametrize(("method", "says"), [
    ("finetune", r"tensors\..*\.mask: method 'finetune' stores no 'mask' tensor"),  # was packed as finetune
    ("packnet", r"tensors\..*\.mask: method 'packnet' stores no 'mask' tensor"),  # was KeyError: 'sequence'
    ("cpg", r"tensors\..*\.mask: method 'cpg' stores no 'mask' tensor"),
    ("piggyback", r"tensors\..*\.scale: method 'piggyback' stores no 'scale' tensor"),
    ("feature", r"tensors\..*\.mask: method 'feature' stores no 'mask' tensor"),
    ("lora", r"tensors\..*\.mask: method 'lora' stores no 'mask' tensor"),
])
def test_export_refuses_a_run_json_whose_method_is_not_its_tensors(digits_run: Path, tmp_path: Path, method: str,
                                                                   says: str, command: str) -> None:
    """A method's mask kind declares the roles it stores (hwsim.catalogue.MaskKind.roles): a swapped ``method``
    is refused by the record's schema, naming run.json, before a model is built."""
    result, run, out = _export_edited(digits_run, tmp_path, lambda r: r.update(method=method), command)
    _refused_naming(result, run, out, says)


def test_export_refuses_a_sequence_record_on_a_method_without_one(digits_run: Path, tmp_path: Path) -> None:
    sequence = {"tasks": ["digits"], "position": 1, "shared": "../shared.safetensors"}
    result, run, out = _export_edited(digits_run, tmp_path, lambda r: r.update(sequence=sequence), "--pack")
    _refused_naming(result, run, out, r"sequence: method 'ksm' does not learn its tasks in a sequence")


def _first(record: dict[str, Any], **fields: Any) -> int:
    """The index of the first layer (after the stem) whose record has ``fields``."""
    layers = record["layers"]
    return next(i for i in range(1, len(layers)) if all(layers[i][k] == v for k, v in fields.items()))


def _restride(record: dict[str, Any]) -> None:
    """A 1x1 conv's stride doubled, its output size changed to match: self-consistent, and no tensor shows it."""
    layer = record["layers"][_first(record, kind="conv", kernel=[1, 1], stride=[1, 1])]
    layer["stride"] = [2, 2]
    layer["output_hw"] = [(n - 1) // 2 + 1 for n in layer["input_hw"]]


def _bias(record: dict[str, Any]) -> None:
    record["layers"][_first(record, kind="conv")]["bias"] = True


def _out_channels(record: dict[str, Any]) -> None:
    record["layers"][1]["out_channels"] *= 2  # a depthwise conv: its groups still divide


@pytest.mark.parametrize("command", ["--pack", "--onnx"])
@pytest.mark.parametrize(("change", "file", "says"), [
    (_restride, RUN_JSON, r"layers\[\d+\]\.stride: \[2, 2\], but the network rebuilt from this run has \[1, 1\]"),
    (_bias, RUN_JSON, r"layers\[1\]\.bias: true, but the network rebuilt from this run has false"),
    # the stored mask shows it first (the tensor check runs before the model is rebuilt): both files named
    (_out_channels, MASKS, r"features\.1\.conv\.0\.0\.mask: shape \[32, 1\] disagrees with layer "
                           r"'features\.1\.conv\.0\.0' \(run\.json layers\[1\]: expected \[64, 1\]"),
], ids=["stride", "bias", "out_channels"])
def test_export_refuses_layers_that_are_not_the_backbone_s(digits_run: Path, tmp_path: Path, change: Any,
                                                           file: str, says: str, command: str) -> None:
    """``layers`` is compared with the tensors and with the rebuilt backbone's geometry at the recorded input
    size (names, kinds, channels, kernel, stride, padding, groups, bias, sizes) before any export or pack: the
    ONNX export of a doubled out_channels was written, and ``--pack`` blamed its own output file."""
    result, run, out = _export_edited(digits_run, tmp_path, change, command)
    _refused_naming(result, run, out, says, file)


def test_check_geometry_names_the_first_difference(digits_run: Path) -> None:
    from ksm.training.pipeline import check_geometry

    model, _, record = load_run_model(digits_run)
    check_geometry(digits_run, record, model)  # the run as written agrees with its network
    for key, value in (("name", "renamed"), ("kind", "linear"), ("in_channels", 7), ("kernel", [5, 5]),
                       ("padding", [3, 3]), ("groups", 2), ("input_hw", [9, 9]), ("output_hw", [9, 9])):
        edited = json.loads(json.dumps(record))
        edited["layers"][2][key] = value
        with pytest.raises(RunError, match=rf"run\.json: layers\[2\]\.{key}: {re.escape(json.dumps(value))}, "
                                           rf"but the network rebuilt from this run has "):
            check_geometry(digits_run, edited, model)
    shorter = {**record, "layers": record["layers"][:-1]}
    with pytest.raises(RunError, match=rf"layers: {len(record['layers']) - 1} conv/linear layers, but the network "
                                       rf"rebuilt from this run has {len(record['layers'])}"):
        check_geometry(digits_run, shorter, model)


# ---------------------------------------------------------------------------------------------
# the output guard: everything a run's export reads is an input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["--pack", "--onnx"])
@pytest.mark.parametrize("target", ["recorded backbone", "--weights", "--profile"])
def test_nothing_the_export_reads_is_its_output(digits_run: Path, backbone_file: Path, tmp_path: Path,
                                                command: str, target: str) -> None:
    """``ksm-export RUN --pack W`` (and ``--onnx W``), W the backbone run.json names, replaced the weights with
    the task file and exited 0: the backbone a run loads (recorded, or given by ``--weights``) and a
    ``--profile`` file are inputs of the output guard, refused in one line, untouched."""
    run = shutil.copytree(digits_run, tmp_path / "digits")
    victim = tmp_path / ("p.yaml" if target == "--profile" else "weights.pth")
    extra: list[str] = []
    if target == "--profile":
        shutil.copyfile(Path(__file__).resolve().parents[2] / "hwsim" / "profiles" / "edge_npu.yaml", victim)
        extra = ["--profile", str(victim)]
    else:
        shutil.copyfile(backbone_file, victim)
        extra = ["--weights", str(victim)] if target == "--weights" else []
        record = json.loads((run / RUN_JSON).read_text())
        record["backbone"]["weights"] = str(victim if target == "recorded backbone" else backbone_file)
        (run / RUN_JSON).write_text(json.dumps(record))
    before = victim.read_bytes()
    result = CliRunner().invoke(main, [str(run), command, str(victim), *extra])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip().splitlines() == [f"Error: {victim}: is the input {victim}; it is never "
                                                  "overwritten (choose another output)"]
    assert victim.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["digits", victim.name])  # nothing else written
