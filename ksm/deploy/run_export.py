"""A run folder end to end: fold its task, export and check it, and with ``--int8`` measure both int8 forms.

Training reports float32 accuracy; ``ksm-sim`` prices int8 machines. This is where the two meet: a
run's task is exported in the two deployment forms that cost differently, and the test accuracy each
delivers at int8 is measured and returned as the ``metrics.int8`` record
(:func:`ksm.deploy.int8_results.record_int8` writes it into run.json):

* **folded** — one int8 weight copy per task: the task's mask, BatchNorm and head are folded into
  ordinary conv weights (:meth:`ksm.methods.base.Method.fold`), exported (:mod:`ksm.deploy.onnx_export`)
  and quantised statically (:mod:`ksm.deploy.int8_quantise`). No mask exists at run time.
* **on the fly** (mask methods only) — the shared int8 backbone times the task's mask
  (:mod:`ksm.deploy.on_the_fly`), re-quantised per output channel to the profile's ``weights`` bits
  (8 on every bundled profile) in the ONNX QDQ graph, with the same activation quantisation and
  calibration as the folded form (recorded as ``on_the_fly_weight_bits``).

Accuracy is measured by onnxruntime on the quantised file with its QDQ nodes executed as written
(int8 rounding, exact accumulation: an accelerator with 32-bit partial sums). onnxruntime's fused
integer kernels on an AVX2-only x86 CPU saturate (see :func:`ksm.deploy.onnx_export.session`); their
accuracy is recorded too, as ``cpu_kernels_top1``, but it is a property of that CPU, not of the int8 model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim import catalogue
from hwsim.fileio.atomic import sha256_file
from ksm.data.datasets import TaskData
from ksm.deploy.int8_quantise import DEFAULT_CALIBRATION, calibration_batches, quantise_static
from ksm.deploy.on_the_fly import on_the_fly_model
from ksm.deploy.onnx_export import (DEFAULT_TOLERANCE, OPSET, ExportError, check_onnx, export_onnx,
                                    library_version, onnx_accuracy)
from ksm.training.runfolder import RUN_JSON, RunError


@dataclass(frozen=True)
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


def run_inputs(folder: Path, weights: str | None = None) -> list[Path]:
    """Every file or folder that exporting or packing ``folder`` reads, for the output guard
    (:func:`hwsim.fileio.output_guard.check_no_alias`): the run folder, its sequence's shared tensors, and
    the backbone weights it loads (``weights``, else the ones ``run.json`` records): a ``.pth`` file, or for a
    torchvision weights name the cache folder torchvision reads it from. A ``run.json`` that cannot be read
    adds no backbone: reading the run refuses it, before anything is written."""
    from hwsim.workload.runcheck import read_record

    folder = Path(folder)
    found = [folder]
    if (folder.parent / "shared.safetensors").exists():
        found.append(folder.parent / "shared.safetensors")
    if weights is None:
        try:
            weights = read_record(folder, RunError)[1].backbone.weights
        except (RunError, OSError):
            return found
    backbone = _weights_path(weights)
    return found + ([backbone] if backbone is not None else [])


def _weights_path(weights: str | None) -> Path | None:
    """Where the backbone of ``weights`` is read from, as :func:`ksm.network.backbones.build_backbone` reads
    it: a local file (a ``.pth``/``.pt`` path or any existing path), nothing for ``none``, else (a torchvision
    weights name) torchvision's cache folder."""
    from ksm.network.backbones import hub_checkpoint_dir

    if weights is None or weights.lower() == "none":
        return None
    path = Path(weights).expanduser()
    if path.suffix in {".pth", ".pt"} or path.exists():
        return path
    return hub_checkpoint_dir()


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
    if not int8:
        return ExportResult(folder, record, onnx_path, rel, run_json_sha256=digest)

    stem = onnx_path.with_suffix("")
    batches = calibration_batches(data, calibration_images, seed=seed)
    images = sum(len(b) for b in batches)
    int8_onnx = quantise_static(onnx_path, stem.with_name(stem.name + ".int8.onnx"), batches,
                                calibration_method=calibration_method)
    float_onnx_top1 = onnx_accuracy(onnx_path, data, batch_size=batch_size, threads=threads)
    folded_top1 = onnx_accuracy(int8_onnx, data, batch_size=batch_size, threads=threads)
    cpu_top1 = onnx_accuracy(int8_onnx, data, batch_size=batch_size, threads=threads, integer_kernels=True)
    on_the_fly_onnx = on_the_fly_top1 = on_the_fly_float = None
    datapath_bits = _profile_weight_bits(profile)
    if catalogue.get(method.name).mask.learned:
        fresh, _, _ = load_run_model(folder, weights=weights)
        otf = on_the_fly_model(fresh, method, mask_scale_bits=mask_scale_bits)
        on_the_fly_float = evaluate(otf, data, "test", batch_size=batch_size)  # int8 weights, float activations
        with tempfile.TemporaryDirectory(prefix="ksm-otf-") as work:
            otf_float = export_onnx(otf, Path(work) / "otf.onnx", probe[:1])
            on_the_fly_onnx = quantise_static(
                otf_float, stem.with_name(stem.name + ".int8-onthefly.onnx"), batches, weight_bits=datapath_bits,
                calibration_method=calibration_method)
        on_the_fly_top1 = onnx_accuracy(on_the_fly_onnx, data, batch_size=batch_size, threads=threads)
    metrics = {
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
        "mask_scale_bits": mask_scale_bits if method.traits.soft_part else None,
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
    return ExportResult(folder, record, onnx_path, rel, int8_onnx=int8_onnx, on_the_fly_onnx=on_the_fly_onnx,
                        metrics=metrics, run_json_sha256=digest)


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
