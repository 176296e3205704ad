"""A folded task model as an ONNX file, checked against PyTorch by onnxruntime.

A deployed model is only as good as its export: the file is run by onnxruntime on the same inputs as
the PyTorch model and refused when their logits differ (:func:`check_onnx`), and accuracies are
measured by the runtime that would deploy it (:func:`onnx_accuracy`), not by torch. onnxruntime
needs nothing beyond ``onnx`` + ``onnxruntime`` (the ``export`` extra) and works offline.

The exporter is torch's TorchScript-based one (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which the project does not depend on. In eval mode it folds BatchNorm into the
preceding conv, as a deployment flow does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hwsim.fileio.atomic import atomic_write_with
from ksm.data.datasets import TaskData

INPUT_NAME, OUTPUT_NAME = "input", "logits"
OPSET = 17
DEFAULT_TOLERANCE = 1e-3  # max |onnxruntime − torch| on logits, relative to max |torch logits| (float32 export)


class ExportError(RuntimeError):
    """An export whose result cannot be trusted (ONNX output differs from PyTorch, missing library)."""


def load_onnxruntime() -> Any:
    """The ``onnxruntime`` module, imported on first use so that ``ksm`` runs without the export extra."""
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - the export extra is installed in the dev venv
        raise ExportError("onnxruntime is not installed; pip install 'ksm[export]'") from None
    return onnxruntime


def library_version() -> str:
    """The runtime that measured an accuracy, as recorded beside it (``metrics.int8.library``)."""
    return f"onnxruntime {load_onnxruntime().__version__}"


def export_onnx(model: nn.Module, path: Path, example: Tensor) -> Path:
    """Write ``model`` (eval mode, float32) as an ONNX file with a dynamic batch axis; return ``path``."""
    model = model.eval().cpu()

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example.cpu(),), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)

    return atomic_write_with(Path(path), write)


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
    ort = load_onnxruntime()
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
