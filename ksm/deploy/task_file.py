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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import Tensor, nn

from hwsim.workload.packed import FLOAT_DTYPES, FORMAT, pack_codes, read_packed, unpack_codes
from ksm.files import write_atomic
from ksm.methods.soft_masks import KernelSoftMask, soft_part
from ksm.methods.base import batchnorms, maskable_layers
from ksm.training.runfolder import RunError

MAX_SCALE_BITS = 16


class DeployError(RuntimeError):
    """A task file that cannot be written or does not fit the backbone it is loaded onto."""


@dataclass(frozen=True)
class Precisions:
    """The profile's widths that the task file stores at (bits)."""

    weights: int = 8
    psums: int = 32
    batchnorm: int = 16

    @classmethod
    def of_profile(cls, name: str) -> Precisions:
        from hwsim.hardware.profile import load_profile

        pb = load_profile(name).precision_bits
        return cls(weights=pb.weights, psums=pb.psums, batchnorm=pb.batchnorm)


# ---------------------------------------------------------------------------------------------
# Numbers at a width
# ---------------------------------------------------------------------------------------------
def _float_at(x: Tensor, bits: int, what: str) -> np.ndarray:
    if bits not in FLOAT_DTYPES:
        raise DeployError(f"{what}: {bits}-bit storage is not supported (16 or 32)")
    return x.detach().cpu().numpy().astype(FLOAT_DTYPES[bits])


def _weights_at(x: Tensor, bits: int) -> tuple[np.ndarray, list[float] | None]:
    """(stored array, per-output-channel scales or None): symmetric int8 per channel at 8 bits
    (the quantiser of the int8 export, :func:`ksm.deploy.onnx_export.quantise_per_channel`), else float16/32."""
    if bits != 8:
        return _float_at(x, bits, "weights"), None
    flat = x.detach().cpu().float().reshape(x.shape[0], -1)
    scale = flat.abs().amax(1).clamp_min(1e-12) / 127
    codes = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes.reshape(x.shape).numpy(), scale.tolist()


def _weights_from(stored: np.ndarray, scales: list[float] | None) -> Tensor:
    x = torch.from_numpy(np.asarray(stored).astype(np.float32))
    if scales is None:
        return x
    return x * torch.tensor(scales, dtype=torch.float32).view(-1, *([1] * (x.dim() - 1)))


def scale_codes(scale: Tensor, bits: int) -> np.ndarray:
    """KSM soft scale A in [0, 0.5] → ``bits``-bit codes (16 bits: the float16 bit pattern)."""
    if bits >= 16:
        return scale.to(torch.float16).numpy().view(np.uint16).astype(np.int64)
    levels = (1 << bits) - 1
    return torch.round(scale * (levels / 0.5)).clamp(0, levels).to(torch.int64).numpy()


def scale_values(codes: np.ndarray, bits: int) -> Tensor:
    """The inverse of :func:`scale_codes`, equal to :func:`ksm.methods.soft_masks.quantise_scale` of the scale."""
    if bits >= 16:
        return torch.from_numpy(codes.astype(np.uint16).view(np.float16).astype(np.float32))
    levels = (1 << bits) - 1
    return torch.from_numpy(codes.astype(np.float32)) * (0.5 / levels)


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
    name = record["method"]
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "task": record["task"], "method": name,
                            "arch": record["backbone"]["arch"], "weights": record["backbone"]["weights"],
                            "backbone_sha256": record["backbone"].get("sha256"), "scale_bits": 0,
                            "profile": prof.name, "precisions": prec.__dict__, "layers": record["layers"],
                            "num_classes": record["dataset"]["num_classes"],
                            "input_size": record["dataset"].get("input_size"), "dataset": record["dataset"]["name"]}
    masked: list[list[Any]] = []
    quant: dict[str, list[float]] = {}
    if name in ("ksm", "piggyback"):
        binaries, codes = [], []
        soft = name == "ksm" and all(m.soft for _, m in method._masks(model))
        for layer, mask in method._masks(model):
            binary, _ = mask.deployable()
            masked.append([layer, list(mask.mask.shape)])
            binaries.append(binary.reshape(-1).numpy())
            if soft and bits > 0:
                assert isinstance(mask, KernelSoftMask)
                scale = soft_part(mask.mask.detach(), binary.bool())
                codes.append(scale_codes(scale[binary == 0], bits))
        arrays["mask.binary"] = pack_codes(np.concatenate(binaries), 1)
        if codes:
            arrays["mask.scale"] = pack_codes(np.concatenate(codes), bits)
            meta["scale_bits"] = bits
        meta["soft"] = soft
        key = str(bits if soft else 0)
        swept = record["metrics"].get("soft_precision") or {}
        meta["top1"] = swept.get(key, record["metrics"]["top1"]) if name == "ksm" else record["metrics"]["top1"]
        meta["top1_measured_at"] = f"soft scale {key} bits" if name == "ksm" and key in swept else "float"
    elif name == "finetune":
        for layer, module in maskable_layers(model, method.head):
            stored, scales = _weights_at(module.weight, prec.weights)
            arrays[f"weight.{layer}"] = stored
            masked.append([layer, list(module.weight.shape)])
            if scales is not None:
                quant[layer] = scales
            if module.bias is not None:
                arrays[f"bias.{layer}"] = _float_at(module.bias, prec.psums, "bias")
        meta["top1"] = record["metrics"]["top1"]
    elif name in ("packnet", "cpg"):
        _pack_sequence_task(folder, record, arrays, meta)
        meta["top1"] = record["metrics"]["top1"]
    elif name == "lora":  # A and B of every adapter at the weight precision, per-channel scales in the header
        from ksm.methods.lora_adapters import branches

        for layer, branch in branches(model):
            for part in ("lora_A", "lora_B"):
                stored, scales = _weights_at(getattr(branch, part).detach(), prec.weights)
                arrays[f"{part}.{layer}"] = stored
                if scales is not None:
                    quant[f"{part}.{layer}"] = scales
            masked.append([layer, list(branch.lora_A.shape), list(branch.lora_B.shape)])
        meta["scaling"] = record["lora"]["scaling"]
        meta["top1"] = record["metrics"]["top1"]
    else:  # feature: the head (and BatchNorm if it was trained)
        meta["top1"] = record["metrics"]["top1"]
    meta["masked"] = masked
    bn_names: list[list[Any]] = []
    if record.get("batchnorm", method.batchnorm) == "task":
        bn_names, s, t = _fold_batchnorm(model)
        arrays["batchnorm.scale"] = _float_at(s, prec.batchnorm, "batchnorm")
        arrays["batchnorm.shift"] = _float_at(t, prec.batchnorm, "batchnorm")
    meta["batchnorms"] = bn_names
    head = model.get_submodule(method.head)
    meta["head"] = method.head
    arrays["head.weight"], head_scales = _weights_at(head.weight, prec.weights)
    if head_scales is not None:
        quant["head"] = head_scales
    arrays["head.bias"] = _float_at(head.bias, prec.psums, "head bias")
    meta["quant_scales"] = quant
    _write_atomic(out, arrays, meta)
    return meta


def _pack_sequence_task(folder: Path, record: dict[str, Any], arrays: dict[str, np.ndarray],
                        meta: dict[str, Any]) -> None:
    """PackNet/CPG: the index map is the sequence's (stored once); the task adds CPG's pick bits and grown weights."""
    from ksm.training.runfolder import read_run

    seq = record["sequence"]
    _, tensors = read_run(folder)
    weights_by_layer = seq.get("weights", {})
    picks = []
    for layer, counts in weights_by_layer.items():
        if counts.get("grown", 0):
            raise DeployError(f"{folder}: CPG task grew {layer}; packing the weights a growth added is not "
                              f"supported yet (train without --target-accuracy, or deploy the run folder)")
        if record["method"] != "cpg" or not counts.get("earlier", 0):
            continue
        pick = tensors.get(f"{layer}.pick")
        if pick is None:
            raise RunError(f"{folder}/masks.safetensors: {layer}.pick missing (CPG task after the first)")
        owner = _shared_task_map(folder, record, layer, tuple(pick.shape)).reshape(-1)
        earlier = (owner >= 1) & (owner < int(seq["position"]))
        if int(earlier.sum()) != int(counts["earlier"]):
            raise RunError(f"{folder}: {layer}: the shared file's task map no longer matches this task "
                           f"({int(earlier.sum())} earlier weights, run.json says {counts['earlier']})")
        picks.append(pick.reshape(-1)[earlier].numpy())
    if picks:
        arrays["pick.bits"] = pack_codes(np.concatenate(picks), 1)
    meta["sequence"] = {"position": seq["position"], "tasks": len(seq["tasks"]), "index_bits": seq.get("index_bits"),
                        "shared_sha256": seq.get("shared_sha256"), "view_sha256": seq.get("view_sha256"),
                        "weights": [[n, int(c.get("earlier", 0)), int(c.get("grown", 0))]
                                    for n, c in weights_by_layer.items()]}


def _shared_task_map(folder: Path, record: dict[str, Any], layer: str, shape: tuple[int, ...]) -> Tensor:
    from safetensors import safe_open

    path = folder / record["sequence"]["shared"]
    with safe_open(str(path), framework="pt") as handle:
        task = handle.get_tensor(f"{layer}.task")
    return task[tuple(slice(0, n) for n in shape)]


def _write_atomic(out: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Temp file in the target's folder, then ``os.replace``: a reader never sees half a file."""
    header = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in meta.items()}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeployError(f"{out.parent}: cannot create folder ({exc.strerror})") from None
    try:
        write_atomic(out, lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                                                metadata=header))
    except OSError as exc:
        raise DeployError(f"{out}: cannot write ({exc.strerror or exc})") from None


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
    method = meta["method"]
    if method in ("packnet", "cpg") and shared is None:
        raise DeployError(f"{path}: a {method} task loads with its sequence's shared weights: "
                          f"load_task(path, shared=SEQUENCE/shared.safetensors)")
    head = classifier_path(arch)
    replace_head(model, arch, int(meta["num_classes"]))
    quant = meta.get("quant_scales", {})
    if method in ("ksm", "piggyback"):
        _apply_masks(model, meta, arrays)
    elif method in ("packnet", "cpg"):
        _apply_shared(model, meta, arrays, Path(shared))  # type: ignore[arg-type]
    elif method == "lora":  # folded: W + scaling · B A (PEFT's merge)
        for layer, a_shape, b_shape in meta["masked"]:
            module = model.get_submodule(layer)
            a = _weights_from(arrays[f"lora_A.{layer}"], quant.get(f"lora_A.{layer}")).reshape(a_shape)
            b = _weights_from(arrays[f"lora_B.{layer}"], quant.get(f"lora_B.{layer}")).reshape(b_shape)
            delta = (b.flatten(1) @ a.flatten(1)) * float(meta["scaling"])
            module.weight.add_(delta.view(b_shape[0], *a_shape[1:]))
    elif method == "finetune":
        for layer, _ in meta["masked"]:
            module = model.get_submodule(layer)
            module.weight.copy_(_weights_from(arrays[f"weight.{layer}"], quant.get(layer)))
            if f"bias.{layer}" in arrays:
                module.bias.copy_(torch.from_numpy(arrays[f"bias.{layer}"].astype(np.float32)))
    if meta["batchnorms"]:
        s = torch.from_numpy(arrays["batchnorm.scale"].astype(np.float32))
        t = torch.from_numpy(arrays["batchnorm.shift"].astype(np.float32))
        start = 0
        for name, channels, eps in meta["batchnorms"]:
            bn = model.get_submodule(name)
            bn.weight.copy_(s[start:start + channels])
            bn.bias.copy_(t[start:start + channels])
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - eps)
            start += channels
    module = model.get_submodule(head)
    module.weight.copy_(_weights_from(arrays["head.weight"], quant.get("head")))
    module.bias.copy_(torch.from_numpy(arrays["head.bias"].astype(np.float32)))
    return model.eval(), meta


def _apply_masks(model: nn.Module, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    from hwsim.workload.packed import mask_bits

    bits = int(meta.get("scale_bits", 0))
    binaries = mask_bits(meta, arrays)
    zeros = sum(int((b == 0).sum()) for b in binaries.values())
    codes = unpack_codes(arrays["mask.scale"], bits, zeros) if bits and "mask.scale" in arrays else None
    start = 0
    for layer, shape in meta["masked"]:
        module = model.get_submodule(layer)
        binary = torch.from_numpy(binaries[layer].astype(np.float32))
        mask = binary.clone()
        if codes is not None:
            off = binary == 0
            n = int(off.sum())
            mask[off] = scale_values(codes[start:start + n], bits)
            start += n
        if tuple(mask.shape) != tuple(module.weight.shape[:mask.dim()]):
            raise DeployError(f"{layer}: mask {list(mask.shape)} does not fit the weight {list(module.weight.shape)}")
        module.weight.mul_(mask.view(*mask.shape, *([1] * (module.weight.dim() - mask.dim()))))


def _apply_shared(model: nn.Module, meta: dict[str, Any], arrays: dict[str, np.ndarray], shared: Path) -> None:
    from safetensors.torch import load_file

    try:
        stored = load_file(str(shared))
    except (OSError, Exception) as exc:  # noqa: BLE001 - any unreadable file
        raise DeployError(f"{shared}: not a readable shared weights file ({exc.__class__.__name__})") from None
    seq = meta["sequence"]
    position = int(seq["position"])
    counts = [(name, earlier) for name, earlier, _ in seq["weights"]]
    picks = arrays.get("pick.bits", np.zeros(0, np.uint8))
    total = sum(e for _, e in counts) if meta["method"] == "cpg" else 0
    pick_flat = torch.from_numpy(unpack_codes(picks, 1, total).astype(bool)) if total else None
    start = 0
    for name, earlier_count in counts:
        module = model.get_submodule(name)
        if f"{name}.weight" not in stored or f"{name}.task" not in stored:
            raise DeployError(f"{shared}: {name}.weight or {name}.task missing")
        crop = tuple(slice(0, n) for n in module.weight.shape)
        weight, owner = stored[f"{name}.weight"][crop], stored[f"{name}.task"][crop].long()
        if weight.shape != module.weight.shape:
            raise DeployError(f"{shared}: {name}.weight {list(weight.shape)} is smaller than the layer")
        if meta["method"] == "packnet":
            keep = (owner >= 1) & (owner <= position)
        else:
            earlier = (owner >= 1) & (owner < position)
            keep = owner == position
            if earlier_count:
                if pick_flat is None or int(earlier.sum()) != earlier_count:
                    raise DeployError(f"{shared}: {name}: the task map does not match the task file "
                                      f"({int(earlier.sum())} earlier weights, the file has {earlier_count})")
                chosen = torch.zeros(earlier.numel(), dtype=torch.bool)
                chosen[earlier.reshape(-1)] = pick_flat[start:start + earlier_count]
                start += earlier_count
                keep = keep | chosen.view_as(keep)
        module.weight.copy_(weight * keep)


def file_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk, of the safetensors header, and of the tensors (what ``ksm-sim`` prices)."""
    from hwsim.workload.packed import header_bytes

    total = Path(path).stat().st_size
    header = header_bytes(Path(path))
    return {"file": total, "header": header, "tensors": total - header}


__all__ = ["DeployError", "file_sizes", "load_task", "pack_task", "scale_codes", "scale_values"]
