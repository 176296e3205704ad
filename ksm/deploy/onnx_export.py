"""Deployable task models: fold a run's task into plain weights, export to ONNX, quantise to int8.

The cost model (``hwsim``) charges a profile's precisions (8-bit weights and activations on every
bundled profile) while training reports float32 accuracy. This module measures the accuracy the
int8 machine would really deliver, in two deployment forms that cost differently:

* **folded** — one int8 weight copy per task: the task's mask, BatchNorm and head are folded into
  ordinary conv weights (:meth:`ksm.methods.base.Method.fold`), the model is exported to ONNX and
  quantised with onnxruntime's static quantisation (QDQ; int8 weights per output channel,
  symmetric; uint8 activations per tensor; MinMax calibration on images drawn from the task's
  *training* split). No mask exists at run time.
* **on the fly** (mask methods only) — one shared int8 backbone, the task's mask applied per
  kernel as the weights stream into the array. The backbone weights W are quantised to int8 per
  output channel (symmetric, [-127, 127]) *before* the mask; KSM's soft scale is quantised to the
  profile's ``mask_scale_bits`` with :func:`ksm.methods.soft_masks.quantise_scale`; the effective weight is
  ``(binary + scale_q) ⊙ Q8(W)``, computed in torch. That product has up to 16 significant bits,
  but ``ksm-sim`` charges the on-the-fly form an 8-bit datapath (the profile's ``weights`` bits,
  plus one mask gate or multiply per weight). So the accuracy is **measured at the profile's weight
  precision**: the masked product is re-quantised per output channel to ``weights`` bits (8 on every
  bundled profile) before the MAC, in the ONNX QDQ graph, with the same uint8 activation
  quantisation and calibration as the folded form (recorded as ``metrics.int8.on_the_fly_weight_bits``).
  The task head is quantised to int8 per channel too. Task BatchNorm is folded into the conv by the
  exporter and so rides in the quantised weight. Writing the mask multiply as ONNX operators would
  measure the same numbers with a larger graph, so the product is formed in torch and said so here.

Accuracy is measured by onnxruntime on the quantised file with its QDQ nodes executed as written
(int8 rounding, exact accumulation: an accelerator with 32-bit partial sums). onnxruntime's fused
integer kernels on an AVX2-only x86 CPU saturate (see :func:`session`); their accuracy is recorded
too, as ``cpu_kernels_top1``, but it is a property of that CPU, not of the int8 model.

Library: onnxruntime's ``quantize_static`` (rather than torchao): it quantises the exact ONNX file
that is deployed, the accuracy is measured by the same runtime that would run it, and it needs
nothing beyond ``onnx`` + ``onnxruntime`` (the ``export`` extra), offline. torchao's int8 paths
target torch.compile / GPU inference and would leave the exported file unquantised.

The exporter is torch's TorchScript-based one (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which the project does not depend on. In eval mode it folds BatchNorm into the
preceding conv, as a deployment flow does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from hwsim import catalogue
from hwsim.fileio.atomic import UnsafeTarget, check_target
from ksm.data.datasets import TaskData
from ksm.files import sha256_file, temp_sibling
from ksm.methods.soft_masks import KernelSoftMask
from ksm.methods.base import Method, maskable_layers
from ksm.training.runfolder import RUN_JSON, RunError

INPUT_NAME, OUTPUT_NAME = "input", "logits"
OPSET = 17
DEFAULT_CALIBRATION = 256
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_TOLERANCE = 1e-3  # max |onnxruntime − torch| on logits, relative to max |torch logits| (float32 export)


class ExportError(RuntimeError):
    """An export whose result cannot be trusted (ONNX output differs from PyTorch, missing library)."""


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - the export extra is installed in the dev venv
        raise ExportError("onnxruntime is not installed; pip install 'ksm[export]'") from None
    return onnxruntime


def library_version() -> str:
    return f"onnxruntime {_ort().__version__}"


# ---------------------------------------------------------------------------------------------
# ONNX export and the onnxruntime check
# ---------------------------------------------------------------------------------------------
def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return temp_sibling(path)


def export_onnx(model: nn.Module, path: Path, example: Tensor) -> Path:
    """Write ``model`` (eval mode, float32) as an ONNX file with a dynamic batch axis; return ``path``."""
    path = Path(path)
    tmp = _atomic_target(path)
    model = model.eval().cpu()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example.cpu(),), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def session(path: Path, threads: int | None = None, *, integer_kernels: bool = True) -> Any:
    """An onnxruntime CPU inference session (no project code involved).

    ``integer_kernels=False`` stops onnxruntime from fusing a QDQ graph into its integer kernels
    (graph optimisation "basic"): each QuantizeLinear/DequantizeLinear then runs as written, which
    is int8 rounding with exact accumulation. That is the arithmetic of an accelerator with 32-bit
    partial sums, and what the accuracies recorded here measure. onnxruntime's own integer
    kernels on an x86 CPU without VNNI (AVX2 only, as on this project's machines) multiply
    uint8 × int8 with ``vpmaddubsw``, whose int16 intermediate saturates; per-channel weights make
    that worse (the onnxruntime quantisation docs name it), so their accuracy is a property of that
    CPU and is recorded separately as ``cpu_kernels_top1``.
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not integer_kernels:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_onnx(path: Path, model: nn.Module, x: Tensor, *, tolerance: float = DEFAULT_TOLERANCE,
               threads: int | None = None) -> float:
    """Run ``x`` through onnxruntime and PyTorch; return max |difference| relative to max |logits|.

    Raises ``ExportError`` when it exceeds ``tolerance``.
    """
    expected = model.eval()(x).numpy()
    got = session(path, threads).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f"{path}: onnxruntime output shape {got.shape} is not PyTorch's {expected.shape}")
    rel = float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-12))
    if not np.isfinite(rel) or rel > tolerance:
        raise ExportError(f"{path}: onnxruntime's logits differ from PyTorch's by {rel:.2e} of their range "
                          f"(tolerance {tolerance:.0e}); the export is not faithful")
    return rel


def onnx_accuracy(path: Path, data: TaskData, split: str = "test", batch_size: int = 128,
                  threads: int | None = None, *, integer_kernels: bool = False) -> float:
    """Top-1 accuracy (fraction) of an ONNX model on a split, run by onnxruntime (see :func:`session`
    for ``integer_kernels``; the default measures the int8 arithmetic itself)."""
    sess = session(path, threads, integer_kernels=integer_kernels)
    correct = total = 0
    for x, y in data.batches(split, batch_size, None):
        logits = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        correct += int((logits.argmax(1) == y.numpy()).sum())
        total += len(y)
    return correct / max(total, 1)


@torch.no_grad()
def predictions(path: Path, x: Tensor, threads: int | None = None, *, integer_kernels: bool = False) -> np.ndarray:
    return session(path, threads, integer_kernels=integer_kernels).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


# ---------------------------------------------------------------------------------------------
# Static int8 quantisation
# ---------------------------------------------------------------------------------------------
def calibration_batches(data: TaskData, images: int, batch_size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """``images`` training images (a seeded random draw), as float32 NCHW batches."""
    out: list[np.ndarray] = []
    taken = 0
    generator = torch.Generator().manual_seed(seed)
    for x, _ in data.batches("train", batch_size, generator):
        x = x[: images - taken]
        out.append(x.numpy().astype(np.float32))
        taken += len(x)
        if taken >= images:
            break
    if not out:
        raise ExportError(f"task {data.name!r}: no training images to calibrate with")
    return out


def _reader(batches: list[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

        def rewind(self) -> None:
            self._it = iter(batches)

    return Reader()


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs opset upgrades and pre-processing advice on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantise_static(float_path: Path, out_path: Path, batches: list[np.ndarray], *, weight_bits: int = 8,
                    calibration_method: str = "minmax") -> Path:
    """Static QDQ quantisation: weights per output channel (int8, or int16 for ``weight_bits=16``),
    activations uint8 per tensor, ranges from ``batches`` by ``calibration_method`` (MinMax by
    default; entropy and percentile clip outliers). Written atomically."""
    ort = _ort()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibration_method not in methods:
        raise ExportError(f"calibration method {calibration_method!r}: choose one of {', '.join(methods)}")
    if weight_bits not in (8, 16):
        raise ExportError(f"weight precision {weight_bits} bits: onnxruntime quantises weights to 8 or 16 bits")
    out_path = Path(out_path)
    tmp = _atomic_target(out_path)
    with tempfile.TemporaryDirectory(prefix="ksm-quant-") as work, _quiet():
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre))
        try:
            quantize_static(str(pre), str(tmp), _reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8 if weight_bits == 8 else QuantType.QInt16,
                            activation_type=QuantType.QUInt8,
                            calibrate_method=methods[calibration_method],
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
            os.replace(tmp, out_path)
        except Exception as exc:  # onnxruntime raises plain Exceptions with its own messages
            raise ExportError(f"{float_path}: {ort.__name__} static quantisation failed ({exc})") from exc
        finally:
            tmp.unlink(missing_ok=True)
    return out_path


# ---------------------------------------------------------------------------------------------
# The "shared int8 backbone + mask on the fly" form
# ---------------------------------------------------------------------------------------------
def quantise_per_channel(weight: Tensor, bits: int = 8) -> Tensor:
    """Symmetric per-output-channel fake quantisation to ``bits`` bits (levels ±(2^(bits−1) − 1))."""
    levels = (1 << (bits - 1)) - 1
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(1).clamp_min(1e-12) / levels
    q = torch.clamp(torch.round(flat / scale[:, None]), -levels, levels)
    return (q * scale[:, None]).reshape(weight.shape).to(weight.dtype)


@torch.no_grad()
def on_the_fly_model(model: nn.Module, method: Method, *, mask_scale_bits: int, weight_bits: int = 8) -> nn.Module:
    """Folded model whose weights are ``M_q ⊙ Q(W)``: shared backbone W quantised per channel before
    the mask, KSM's soft scale at ``mask_scale_bits``, the head quantised per channel.

    ``model`` is a task network from :func:`ksm.training.pipeline.load_run_model`; it is modified (its frozen
    backbone weights are replaced by their quantised values), so pass a fresh one.
    """
    if not catalogue.get(method.name).mask.learned:
        raise ValueError(f"method {method.name!r} has no mask to apply on the fly")
    for name, module in maskable_layers(model, method.head):
        if parametrize.is_parametrized(module, "weight"):
            original = module.parametrizations.weight.original
            original.copy_(quantise_per_channel(original, weight_bits))
        else:  # pragma: no cover - every maskable layer of a mask method is parametrised
            module.weight.copy_(quantise_per_channel(module.weight, weight_bits))
    masks = [m for m in model.modules() if isinstance(m, KernelSoftMask)]
    for m in masks:
        m.scale_bits = mask_scale_bits
    try:
        folded = method.fold(model)
    finally:
        for m in masks:
            m.scale_bits = None
    head = folded.get_submodule(method.head)
    head.weight.copy_(quantise_per_channel(head.weight, weight_bits))
    return folded.eval()


# ---------------------------------------------------------------------------------------------
# A run folder end to end
# ---------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What :func:`export_run` wrote and measured."""

    folder: Path
    record: dict[str, Any]
    onnx: Path
    onnx_rel_diff: float
    int8_onnx: Path | None = None
    on_the_fly_onnx: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    run_json_sha256: str = ""  # of run.json as it was when the measurement began


def task_data_for(record: dict[str, Any], data_root: Path | None = None) -> TaskData:
    """The run's task data, loaded as it was trained (name, input size, max_train)."""
    from ksm.data.datasets import load_task

    ds = record["dataset"]
    return load_task(ds["name"], data_root=data_root, input_size=int(ds["input_size"][0]),
                     max_train=ds.get("max_train"))


def export_run(folder: Path, onnx_path: Path, *, data: TaskData | None = None, int8: bool = False,
               calibration_images: int = DEFAULT_CALIBRATION, calibration_method: str = "minmax",
               mask_scale_bits: int = 8,
               profile: str | None = None, weights: str | None = None, data_root: Path | None = None,
               tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, threads: int | None = None,
               batch_size: int = 128) -> ExportResult:
    """Fold a run's task, export it to ``onnx_path`` and check it against PyTorch; with ``int8`` also
    write ``<stem>.int8.onnx`` (folded) and, for mask methods, ``<stem>.int8-onthefly.onnx``, and
    measure their test accuracy with onnxruntime. Returns the metrics for ``metrics.int8``.
    """
    from ksm.training.pipeline import load_run_model
    from ksm.training.loop import evaluate

    folder, onnx_path = Path(folder), Path(onnx_path)
    digest = _sha256(folder / RUN_JSON)
    model, method, record = load_run_model(folder, weights=weights)  # checks run.json against its tensors
    if data is None:
        data = task_data_for(record, data_root)
    if data.num_classes != record["dataset"]["num_classes"] or list(data.input_size) != record["dataset"]["input_size"]:
        raise RunError(f"{folder}/run.json: task {record['task']!r} was trained with "
                       f"{record['dataset']['num_classes']} classes at {record['dataset']['input_size']}, "
                       f"the data given has {data.num_classes} at {list(data.input_size)}")
    folded = method.fold(model)
    probe, _ = next(data.batches("test", 16, None))
    export_onnx(folded, onnx_path, probe[:1])
    try:
        rel = check_onnx(onnx_path, folded, probe, tolerance=tolerance, threads=threads)
    except BaseException:
        onnx_path.unlink(missing_ok=True)  # a file that failed its check is not left in place
        raise
    result = ExportResult(folder, record, onnx_path, rel, run_json_sha256=digest)
    if not int8:
        return result

    stem = onnx_path.with_suffix("")
    batches = calibration_batches(data, calibration_images, seed=seed)
    images = sum(len(b) for b in batches)
    result.int8_onnx = quantise_static(onnx_path, stem.with_name(stem.name + ".int8.onnx"), batches,
                                       calibration_method=calibration_method)
    float_onnx_top1 = onnx_accuracy(onnx_path, data, batch_size=batch_size, threads=threads)
    folded_top1 = onnx_accuracy(result.int8_onnx, data, batch_size=batch_size, threads=threads)
    cpu_top1 = onnx_accuracy(result.int8_onnx, data, batch_size=batch_size, threads=threads, integer_kernels=True)
    on_the_fly_top1 = on_the_fly_float = None
    datapath_bits = _profile_weight_bits(profile)
    if catalogue.get(method.name).mask.learned:
        fresh, _, _ = load_run_model(folder, weights=weights)
        otf = on_the_fly_model(fresh, method, mask_scale_bits=mask_scale_bits)
        on_the_fly_float = evaluate(otf, data, "test", batch_size=batch_size)  # int8 weights, float activations
        with tempfile.TemporaryDirectory(prefix="ksm-otf-") as work:
            otf_float = export_onnx(otf, Path(work) / "otf.onnx", probe[:1])
            result.on_the_fly_onnx = quantise_static(
                otf_float, stem.with_name(stem.name + ".int8-onthefly.onnx"), batches, weight_bits=datapath_bits,
                calibration_method=calibration_method)
        on_the_fly_top1 = onnx_accuracy(result.on_the_fly_onnx, data, batch_size=batch_size, threads=threads)
    result.metrics = {
        "top1": folded_top1,
        "precision": "int8",
        "weight_bits": 8,
        "activation_bits": 8,
        "form": "folded",
        "folded_top1": folded_top1,
        "on_the_fly_top1": on_the_fly_top1,
        "on_the_fly_weights_only_top1": on_the_fly_float,
        "on_the_fly_weight_bits": datapath_bits if catalogue.get(method.name).mask.learned else None,
        "cpu_kernels_top1": cpu_top1,
        "evaluation": "onnxruntime, QDQ graph run as written (int8 rounding, exact accumulation)",
        "float_top1": record["metrics"].get("top1"),
        "float_onnx_top1": float_onnx_top1,
        "mask_scale_bits": mask_scale_bits if method.name == "ksm" else None,
        "profile": profile,
        "weights": "int8 per output channel, symmetric",
        "activations": "uint8 per tensor, asymmetric",
        "calibration_images": images,
        "calibration_split": "train",
        "calibration_method": calibration_method,
        "calibration_seed": seed,
        "test_size": record["dataset"].get("test_size"),
        "library": library_version(),
        "onnx_opset": OPSET,
        "onnx_rel_diff": rel,
    }
    return result


def _profile_weight_bits(profile: str | None) -> int:
    """The weight precision of the datapath ``ksm-sim`` charges on ``profile`` (8 when none is named)."""
    if profile is None:
        return 8
    from hwsim.hardware.profile import load_profile

    bits = load_profile(profile).precision_bits.weights
    if bits not in (8, 16):
        raise ExportError(f"profile {profile}: {bits}-bit weights; onnxruntime quantises weights to 8 or 16 bits")
    return bits


def _sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError:
        return ""  # read_run names the missing file


def record_int8(folder: Path, metrics: dict[str, Any], *, expected_sha256: str | None = None) -> None:
    """Set ``metrics.int8`` in ``folder/run.json``, leaving every other key as it is.

    The new file is written beside the old one and renamed over it (atomic on POSIX). If run.json
    is not the one measured (``expected_sha256``, e.g. :attr:`ExportResult.run_json_sha256`) or
    changes while the new one is written, nothing is replaced and ``RunError`` says so.
    """
    import hashlib

    path = Path(folder) / RUN_JSON
    try:
        check_target(path)  # a symlinked run.json would be replaced by a regular file
    except UnsafeTarget as exc:
        raise RunError(str(exc)) from None
    try:
        before = path.read_bytes()
        record = json.loads(before.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: cannot be read back to record int8 metrics ({exc})") from None
    if expected_sha256 and hashlib.sha256(before).hexdigest() != expected_sha256:
        raise RunError(f"{path}: changed since it was measured (the run was re-written); not overwritten, "
                       f"run ksm-export again")
    if not isinstance(record.get("metrics"), dict):
        raise RunError(f"{path}: no 'metrics' object to add int8 results to")
    record["metrics"]["int8"] = metrics
    text = json.dumps(record, indent=1) + "\n"
    tmp = temp_sibling(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        if path.read_bytes() != before:
            raise RunError(f"{path}: changed while int8 metrics were measured; not overwritten (run again)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The float vs int8 table
# ---------------------------------------------------------------------------------------------
def int8_table(records: list[dict[str, Any]]) -> Any:
    """Test top-1 (%) per task (rows): for each method its float, int8 folded and (mask methods)
    int8 on-the-fly accuracy (:func:`ksm.compare.results.int8_frame`); a mean row when there are several tasks."""
    import pandas as pd

    from ksm.compare.results import int8_frame

    suffix = {"float32": "float", "int8 folded": "int8", "int8 on the fly": "int8 on-the-fly"}
    frame = int8_frame(records)
    rows = [{"task": row["task"], "column": f"{row['method']} {name}", "top1": row[column]}
            for _, row in frame.iterrows() for column, name in suffix.items() if pd.notna(row[column])]
    table = pd.DataFrame(rows).pivot_table(index="task", columns="column", values="top1", sort=False)
    if len(table) > 1:
        table.loc["mean"] = table.mean(numeric_only=True)
    table.columns.name = None
    return table
