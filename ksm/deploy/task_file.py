"""The deployable task file: pack a finished run into the form ``ksm-sim`` prices, and load it back.

The run folder keeps the training form (float32 real mask, uint8 binary, float16 scale for every
kernel, float32 BatchNorm: about 14.5 MiB per KSM task on MobileNetV2). A device stores far less:
the binary mask at one bit per entry, KSM's soft scale (Yang et al., CVPR 2021, Eq. 4-5: A is
non-zero only where the binary mask is 0) at K bits only where the bit is 0, BatchNorm folded into
a per-channel scale and shift (Ioffe & Szegedy 2015, §3.1), and the head. :func:`pack_task` writes
exactly that (format ``ksm-task/1``, described in :mod:`hwsim.workload.packed`, whose torch-free reader
``ksm-sim`` uses), so the size on disk minus the safetensors header is the task's
``task_specific_bytes`` for the profile (:func:`hwsim.cost.mask_cost.task_cost`) up to rounding each bit
stream to whole bytes. :func:`load_task` puts a file back onto the frozen backbone as a plain
torchvision model.

Sequence methods (PackNet, CPG) keep their shared weights and task-index map once for all tasks
(the sequence's ``shared.safetensors``); their task file holds what each task adds: BatchNorm, the
head and, for CPG, the pick mask and the weights its growth added.

What a method stores per task is its class's: :func:`pack_task` writes the header, BatchNorm and the
head, and the method's ``pack_task`` the rest through a :class:`TaskWriter`; :func:`load_task` reads
them back through a :class:`TaskReader` and the class's ``load_task``. A class that does not say how
to pack its mask kind is refused in one line rather than written as a head-only file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from safetensors.numpy import save
from torch import Tensor, nn

from hwsim.fileio.atomic import atomic_write
from hwsim.workload.packed import (FLOAT_DTYPES, FORMAT, MAX_SCALE_BITS, check_header, encode_header, pack_codes,
                                   read_packed)
from ksm.deploy.channel_quantiser import per_channel_codes
from ksm.methods.base import batchnorms
from ksm.methods.registry import method_class
from ksm.methods.soft_masks import scale_codes, scale_values
from ksm.training.runfolder import RunError


class DeployError(RuntimeError):
    """A task file that cannot be written or does not fit the backbone it is loaded onto."""


@dataclass(frozen=True)
class Precisions:
    """The profile's widths that the task file stores at (bits)."""

    weights: int = 8
    psums: int = 32
    batchnorm: int = 16


# ---------------------------------------------------------------------------------------------
# Numbers at a width
# ---------------------------------------------------------------------------------------------
def _float_at(x: Tensor, bits: int, what: str) -> np.ndarray:
    if bits not in FLOAT_DTYPES:
        raise DeployError(f"{what}: {bits}-bit storage is not supported (16 or 32)")
    return x.detach().cpu().numpy().astype(FLOAT_DTYPES[bits])


def _weights_at(x: Tensor, bits: int) -> tuple[np.ndarray, list[float] | None]:
    """(stored array, per-output-channel scales or None): symmetric int8 per channel at 8 bits
    (the quantiser of the int8 export, :func:`ksm.deploy.channel_quantiser.per_channel_codes`), else float16/32."""
    if bits != 8:
        return _float_at(x, bits, "weights"), None
    codes, scale = per_channel_codes(x.detach().cpu().float(), bits)
    return codes.to(torch.int8).reshape(x.shape).numpy(), scale.tolist()


def _weights_from(stored: np.ndarray, scales: list[float] | None) -> Tensor:
    x = torch.from_numpy(np.asarray(stored).astype(np.float32))
    if scales is None:
        return x
    return x * torch.tensor(scales, dtype=torch.float32).view(-1, *([1] * (x.dim() - 1)))


@dataclass
class TaskWriter:
    """What a method's ``pack_task`` (:meth:`ksm.methods.base.Method.pack_task`) adds to the task file:
    its arrays, header entries, masked layers and quantisation scales, at the profile's precisions."""

    folder: Path  # the run folder being packed
    record: dict[str, Any]  # its run.json
    precisions: Precisions
    scale_bits: int  # KSM's soft-scale width K asked for
    meta: dict[str, Any]  # the header; a method adds its own keys
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    masked: list[list[Any]] = field(default_factory=list)  # the header's "masked": [layer, shape, ...] in order
    quant: dict[str, list[float]] = field(default_factory=dict)  # the header's "quant_scales"

    def weights(self, key: str, x: Tensor, scale_key: str) -> None:
        """``x`` at the profile's weight precision: int8 codes (per-channel scales under ``scale_key``) or floats."""
        self.arrays[key], scales = _weights_at(x, self.precisions.weights)
        if scales is not None:
            self.quant[scale_key] = scales

    def floats(self, key: str, x: Tensor, bits: int, what: str) -> None:
        """``x`` as float16/32 (``bits``)."""
        self.arrays[key] = _float_at(x, bits, what)

    def codes(self, key: str, values: np.ndarray, bits: int) -> None:
        """Unsigned codes of ``bits`` bits each as one MSB-first bit stream."""
        self.arrays[key] = pack_codes(values, bits)

    def refuse(self, message: str) -> NoReturn:
        raise DeployError(message)


@dataclass(frozen=True)
class TaskReader:
    """A packed task file as a method's ``load_task`` (:meth:`ksm.methods.base.Method.load_task`) reads it."""

    path: Path
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    shared: Path | None  # a sequence's shared weights file (PackNet, CPG)

    def weights(self, key: str, scale_key: str) -> Tensor:
        """The float weights stored under ``key`` (int8 codes times their scales under ``scale_key``)."""
        return _weights_from(self.arrays[key], self.meta.get("quant_scales", {}).get(scale_key))

    def floats(self, key: str) -> Tensor:
        return torch.from_numpy(self.arrays[key].astype(np.float32))

    def refuse(self, message: str) -> NoReturn:
        raise DeployError(message)


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------
def _fold_batchnorm(model: nn.Module) -> tuple[list[list[Any]], Tensor, Tensor]:
    names, scales, shifts = [], [], []
    for name, bn in batchnorms(model):
        s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        scales.append(s)
        shifts.append(bn.bias.detach() - bn.running_mean * s)
        names.append([name, int(s.numel()), float(bn.eps)])
    return names, torch.cat(scales) if scales else torch.zeros(0), torch.cat(shifts) if shifts else torch.zeros(0)


def pack_task(folder: Path, out: Path, *, scale_bits: int | None = None, profile: str = "edge_npu",
              weights: str | None = None) -> dict[str, Any]:
    """Write ``folder``'s task as one deployable file ``out`` (atomically); return its header.

    Args:
        scale_bits: KSM's soft-scale width K (0-16); None takes the profile's ``mask_scale`` bits.
        profile: hwsim profile whose precisions (weights, psums, batchnorm) the file stores at.
        weights: backbone weights file to use instead of the recorded one (its sha256 must match).
    """
    from hwsim.hardware.profile import load_profile
    from ksm.training.pipeline import load_run_model

    folder, out = Path(folder), Path(out)
    if not (folder / "run.json").exists():
        partial = folder.parent / f".{folder.name}.partial"
        hint = f"; an interrupted run is in {partial} (finish it with ksm-train --resume)" if partial.exists() else ""
        raise RunError(f"{folder}/run.json: missing (not a finished run folder){hint}")
    prof = load_profile(profile)
    bits = prof.precision_bits.mask_scale if scale_bits is None else scale_bits
    if not 0 <= bits <= MAX_SCALE_BITS:
        raise DeployError(f"--scale-bits {bits}: must be in 0..{MAX_SCALE_BITS}")
    prec = Precisions(prof.precision_bits.weights, prof.precision_bits.psums, prof.precision_bits.batchnorm)
    try:
        model, method, record = load_run_model(folder, weights=weights)
    except ValueError as exc:  # a weights file that is not the backbone
        raise RunError(str(exc)) from None
    meta: dict[str, Any] = {"format": FORMAT, "task": record["task"], "method": record["method"],
                            "arch": record["backbone"]["arch"], "weights": record["backbone"]["weights"],
                            "backbone_sha256": record["backbone"].get("sha256"), "scale_bits": 0,
                            "profile": prof.name, "precisions": prec.__dict__, "layers": record["layers"],
                            "num_classes": record["dataset"]["num_classes"],
                            "input_size": record["dataset"].get("input_size"), "dataset": record["dataset"]["name"]}
    task = TaskWriter(folder, record, prec, bits, meta)
    method.pack_task(model, task)  # the method's own tensors; refuses a mask kind it cannot pack
    meta.setdefault("top1", record["metrics"]["top1"])
    meta["masked"] = task.masked
    bn_names: list[list[Any]] = []
    if record.get("batchnorm", method.batchnorm) == "task":
        bn_names, s, t = _fold_batchnorm(model)
        task.floats("batchnorm.scale", s, prec.batchnorm, "batchnorm")
        task.floats("batchnorm.shift", t, prec.batchnorm, "batchnorm")
    meta["batchnorms"] = bn_names
    head = model.get_submodule(method.head)
    meta["head"] = method.head
    task.weights("head.weight", head.weight, "head")
    task.floats("head.bias", head.bias, prec.psums, "head bias")
    meta["quant_scales"] = task.quant
    _write_atomic(out, task.arrays, meta)
    return meta


def _write_atomic(out: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Check the header as ``ksm-sim`` will read it (:func:`hwsim.workload.packed.check_header`: its schema,
    against these tensors), then write the file whole through the one atomic writer: a reader never sees half a
    file, and a full disk or a file-size limit is one line naming the file."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    check_header(meta, arrays, f"{out}: not written, its header would be refused", DeployError)
    data = save(arrays, metadata=encode_header(meta))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"{out.parent}: cannot create folder ({exc.strerror})") from None
    atomic_write(out, data)  # a failed write is an OSError naming the file (the commands print it in one line)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def load_task(path: Path, *, weights: str | None = None, shared: Path | None = None
              ) -> tuple[nn.Module, dict[str, Any]]:
    """(plain torchvision model in eval mode, header) of a packed task file on its backbone.

    The backbone is built from the header's ``arch`` and ``weights`` (or ``weights`` given here) and
    refused unless its sha256 is the one the file names. Mask methods get ``W_t = (M_b + A_K) ⊙ W``;
    folded BatchNorm becomes ``weight = scale, bias = shift, mean 0, var 1 − eps``. PackNet and CPG
    tasks need their sequence's ``shared`` file (weights and task-index map, stored once): task ``t``
    uses the weights whose owner is in ``1..t`` (PackNet), or ``t`` and the earlier ones its pick mask
    keeps (CPG), as :func:`ksm.methods.sequence.load_sequence_task` does.
    """
    from ksm.network.backbones import ARCHS, BackboneSpec, build_backbone, classifier_path, replace_head

    path = Path(path)
    meta, arrays = read_packed(path)
    arch = meta["arch"]
    if arch not in ARCHS:
        raise DeployError(f"{path}: unknown backbone arch {arch!r}")
    model, digest = build_backbone(BackboneSpec(arch, weights or meta["weights"]))
    if meta.get("backbone_sha256") and digest != meta["backbone_sha256"]:
        raise DeployError(f"{path}: made for backbone sha256 {meta['backbone_sha256'][:12]}…, but the weights "
                          f"loaded are {(digest or 'random init')[:12]}…; load it onto its own backbone")
    try:
        cls = method_class(meta["method"])
    except ValueError as exc:  # a method this installation does not train
        raise DeployError(f"{path}: {exc}") from None
    head = classifier_path(arch)
    replace_head(model, arch, int(meta["num_classes"]))
    task = TaskReader(path, meta, arrays, None if shared is None else Path(shared))
    cls.load_task(model, task)  # the method's own tensors; refuses a mask kind it cannot load
    if meta["batchnorms"]:
        s, t = task.floats("batchnorm.scale"), task.floats("batchnorm.shift")
        start = 0
        for name, channels, eps in meta["batchnorms"]:
            bn = model.get_submodule(name)
            bn.weight.copy_(s[start:start + channels])
            bn.bias.copy_(t[start:start + channels])
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - eps)
            start += channels
    module = model.get_submodule(head)
    module.weight.copy_(task.weights("head.weight", "head"))
    module.bias.copy_(task.floats("head.bias"))
    return model.eval(), meta


def file_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk, of the safetensors header, and of the tensors (what ``ksm-sim`` prices)."""
    from hwsim.workload.packed import header_bytes

    total = Path(path).stat().st_size
    header = header_bytes(Path(path))
    return {"file": total, "header": header, "tensors": total - header}


__all__ = ["DeployError", "file_sizes", "load_task", "pack_task", "scale_codes", "scale_values"]
