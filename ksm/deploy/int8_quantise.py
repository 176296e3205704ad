"""Static int8 quantisation of an ONNX file with onnxruntime, calibrated on a task's training images.

The cost model (``hwsim``) charges a profile's precisions (8-bit weights and activations on every
bundled profile) while training reports float32 accuracy; quantising the exported file is how the
accuracy the int8 machine would deliver is measured. The form is onnxruntime's static quantisation
in QDQ format: weights per output channel, symmetric (int8; int16 for a 16-bit datapath),
activations uint8 per tensor, asymmetric, their ranges calibrated (MinMax by default) on images
drawn from the task's *training* split, never its test split.

Library: onnxruntime's ``quantize_static`` (rather than torchao): it quantises the exact ONNX file
that is deployed, the accuracy is measured by the same runtime that would run it, and it needs
nothing beyond ``onnx`` + ``onnxruntime`` (the ``export`` extra), offline. torchao's int8 paths
target torch.compile / GPU inference and would leave the exported file unquantised.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ksm.data.datasets import TaskData
from hwsim.fileio.atomic import atomic_write_with
from ksm.deploy.onnx_export import INPUT_NAME, ExportError, load_onnxruntime

DEFAULT_CALIBRATION = 256


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
    ort = load_onnxruntime()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if calibration_method not in methods:
        raise ExportError(f"calibration method {calibration_method!r}: choose one of {', '.join(methods)}")
    if weight_bits not in (8, 16):
        raise ExportError(f"weight precision {weight_bits} bits: onnxruntime quantises weights to 8 or 16 bits")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="ksm-quant-") as work, _quiet():
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre))

        def write(tmp: Path) -> None:
            quantize_static(str(pre), str(tmp), _reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8 if weight_bits == 8 else QuantType.QInt16,
                            activation_type=QuantType.QUInt8,
                            calibrate_method=methods[calibration_method],
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})

        try:
            atomic_write_with(out_path, write)
        except Exception as exc:  # onnxruntime raises plain Exceptions with its own messages
            raise ExportError(f"{float_path}: {ort.__name__} static quantisation failed ({exc})") from exc
    return out_path
