"""The deployable task file (``ksm-task/1``), read without torch: what ``ksm-export --pack`` writes.

One safetensors file (readable with ``safetensors.numpy``) per task, holding exactly the bits that
:func:`hwsim.cost.mask_cost.task_cost` prices as the task's ``task_specific_bytes``, so that the size on disk
minus the safetensors header is the priced size (up to the rounding of each bit stream to whole
bytes). Tensors:

======================  ==========================================================================
``mask.binary``         uint8: one bit per mask entry of every masked layer, layers in execution
                        order, entries in row-major order, most significant bit first
                        (``numpy.packbits``). KSM: one entry per kernel ``[out, in/groups]``;
                        Piggyback: one per weight.
``mask.scale``          uint8: KSM's soft scale of every entry whose bit is 0, in the same order,
                        ``scale_bits`` bits each, MSB first. 1-15 bits: the uniform code
                        ``round(A * (2^K - 1) / 0.5)`` (:func:`ksm.methods.soft_masks.quantise_scale`); 16 bits:
                        the float16 bit pattern. Absent for K = 0.
``weight.<layer>``      fine-tuning: the task's weights at the profile's weight precision (int8
                        codes with one scale per output channel in the header, or float16/32).
``pick.bits``           CPG: the pick mask, one bit per weight of an earlier task, layer order.
``grown.<layer>``       CPG: weights the task's growth added, at the profile's weight precision.
``batchnorm.scale``     task BatchNorm folded to ``y = scale * x + shift`` (Ioffe & Szegedy 2015,
``batchnorm.shift``     inference form), every BatchNorm's channels concatenated, at the profile's
                        ``batchnorm`` bits (float16 or float32).
``head.weight``         the classifier at the profile's ``weights`` bits (int8 codes + per-row
``head.bias``           scales in the header, or float16/32); the bias at ``psums`` bits.
======================  ==========================================================================

The header (safetensors ``__metadata__``, strings) names the format, the backbone (``arch``,
``weights``, ``backbone_sha256``), ``method``, ``task``, ``scale_bits``, the profile and its
precisions, the run's ``layers`` records, the masked layers and BatchNorms in order, quantisation
scales, and the accuracy recorded for these precisions. Quantisation scales live in the header: the
cost model, like every anchor it follows, prices weights and masks, not their scale factors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import catalogue
from hwsim.errors import InputError
from hwsim.workload.layers import Layer, TensorInfo, Workload, layers_from_records

FORMAT = "ksm-task/1"
FLOAT_DTYPES = {16: np.float16, 32: np.float32}


def pack_codes(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integer codes, ``bits`` each, as one MSB-first bit stream of ``ceil(n * bits / 8)`` bytes."""
    values = np.asarray(values).reshape(-1).astype(np.uint64)
    if bits == 0 or values.size == 0:
        return np.zeros(0, np.uint8)
    if bits == 1:
        return np.packbits(values.astype(np.uint8))
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    return np.packbits(((values[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).reshape(-1))


def unpack_codes(stream: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`: ``count`` codes of ``bits`` bits (int64)."""
    if bits == 0 or count == 0:
        return np.zeros(count, np.int64)
    flat = np.unpackbits(np.asarray(stream, np.uint8), count=count * bits)
    if flat.size < count * bits:
        raise InputError(f"bit stream holds {flat.size} bits, {count * bits} expected")
    if bits == 1:
        return flat.astype(np.int64)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return flat.reshape(count, bits).astype(np.int64) @ weights


def header_bytes(path: Path) -> int:
    """Bytes of the safetensors header: the 8-byte length plus the JSON it announces."""
    with open(path, "rb") as handle:
        return 8 + int.from_bytes(handle.read(8), "little")


def _is_our_format(fmt: str) -> bool:
    return fmt.split(".")[0] == FORMAT


def is_packed_task(path: Path) -> bool:
    """Whether ``path`` is a file that announces itself as a packed task: a ``.ksmtask`` name, or a
    safetensors file whose metadata names this format (only its header is read)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return False
    if path.suffix == ".ksmtask":
        return True
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return _is_our_format((handle.metadata() or {}).get("format", ""))
    except (SafetensorError, OSError):
        return False


def read_packed(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header with its JSON values decoded, arrays) of a packed task file; refuses other formats."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: missing file")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
            names = handle.keys()  # a safe_open handle, not a dict
            arrays = {key: handle.get_tensor(key) for key in names}
    except SafetensorError as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None
    fmt = raw.get("format", "")
    if not _is_our_format(fmt):
        raise InputError(f"{path}: format {fmt!r} is not {FORMAT!r} (a ksm-export --pack file)")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta, arrays


def _traits(meta: dict[str, Any]) -> catalogue.MethodTraits:
    """The catalogue row of the file's method; one line refuses a method the catalogue does not know."""
    traits = catalogue.find(meta["method"])
    if traits is None:
        raise InputError(f"method {meta['method']!r}: unknown (known: {', '.join(catalogue.names())})")
    return traits


def mask_bits(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each masked layer's binary mask (uint8 0/1): ``[out, in/groups]`` for a kernel-wise mask kind (KSM),
    else the weight's shape."""
    kernel_wise, out = _traits(meta).mask.kernel_wise, {}
    layers = [(name, shape[:2] if kernel_wise else shape) for name, shape in meta.get("masked", [])]
    total = sum(int(math.prod(shape)) for _, shape in layers)
    flat = unpack_codes(arrays.get("mask.binary", np.zeros(0, np.uint8)), 1, total).astype(np.uint8)
    start = 0
    for name, shape in layers:
        n = int(math.prod(shape))
        out[name] = flat[start:start + n].reshape(shape)
        start += n
    return out


def _learned_mask(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[TensorInfo]:
    """Kernel- and element-wise masks: the binary bits, and a soft part's scale where it was stored."""
    infos = [TensorInfo(f"{name}.binary", "binary", tuple(binary.shape), int(binary.size - binary.sum()))
             for name, binary in mask_bits(meta, arrays).items()]
    if _traits(meta).soft_part and int(meta.get("scale_bits", 0)) > 0:
        infos += [TensorInfo(f"{name}.scale", "scale", tuple(shape[:2])) for name, shape in meta["masked"]]
    return infos


def _weight_copy(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[TensorInfo]:
    return [TensorInfo(f"{name}.weight", "weight", tuple(shape)) for name, shape in meta["masked"]]


def _adapters(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[TensorInfo]:
    """hwsim.cost.lora_cost reads the adapters' ranks from these."""
    return [TensorInfo(f"{name}.{part}.weight", part, tuple(shape)) for name, a_shape, b_shape in meta["masked"]
            for part, shape in (("lora_A", a_shape), ("lora_B", b_shape))]


def _nothing(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[TensorInfo]:
    """Sequence methods (their maps are the sequence's, counted from ``sequence.weights``) and head only."""
    return []


# What a packed file stores per mask kind (hwsim.catalogue.MaskKind.name), as the tensors of a run folder
# would name them; a kind missing here is refused (its file could not be priced like its run).
PACKED_TENSORS: dict[str, Callable[[dict[str, Any], dict[str, np.ndarray]], list[TensorInfo]]] = {
    catalogue.KERNEL.name: _learned_mask,
    catalogue.ELEMENT.name: _learned_mask,
    catalogue.TASK_INDEX.name: _nothing,
    catalogue.TASK_INDEX_PICK.name: _nothing,
    catalogue.COPY.name: _weight_copy,
    catalogue.LOW_RANK.name: _adapters,
    catalogue.NONE.name: _nothing,
}


def load_packed(path: str | Path) -> Workload:
    """A packed task file as a ``ksm-sim`` workload: its layers, method, BatchNorm policy and the
    stored tensors (binary zeros counted from the bit stream), so it is priced like its run."""
    path = Path(path)
    meta, arrays = read_packed(path)
    for key in ("method", "task", "layers", "masked", "batchnorms", "head"):
        if key not in meta:
            raise InputError(f"{path}: header key {key!r} missing")
    method = meta["method"]
    try:
        traits = _traits(meta)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if traits.mask.name not in PACKED_TENSORS:
        raise InputError(f"{path}: method {method!r}: mask kind {traits.mask.name!r} has no packed form in "
                         f"hwsim.workload.packed (known kinds: {', '.join(PACKED_TENSORS)})")
    layers: tuple[Layer, ...] = layers_from_records(meta["layers"], str(path))
    infos = PACKED_TENSORS[traits.mask.name](meta, arrays)
    infos += [TensorInfo(f"{name}.weight", "batchnorm", (int(c),)) for name, c, _ in meta["batchnorms"]]
    head = meta["head"]
    infos += [TensorInfo(f"{head}.weight", "head", tuple(arrays["head.weight"].shape)),
              TensorInfo(f"{head}.bias", "head", tuple(arrays["head.bias"].shape))]
    binaries = [t for t in infos if t.role == "binary"]
    density = (1 - sum(t.zeros or 0 for t in binaries) / sum(math.prod(t.shape) for t in binaries)
               if binaries else None)
    seq = meta.get("sequence") or {}
    top1 = meta.get("top1")
    return Workload(source=str(path), layers=layers, task=str(meta["task"]), method=method,
                    top1=float(top1) if isinstance(top1, (int, float)) else None,
                    batchnorm="task" if meta["batchnorms"] else "frozen", mask_density=density,
                    tensors=tuple(infos), sequence_tasks=seq.get("tasks"),
                    sequence_weights=tuple((n, int(e), int(g)) for n, e, g in seq.get("weights", [])),
                    ksm_soft=traits.soft_part and int(meta.get("scale_bits", 0)) > 0 and bool(meta.get("soft", True)))
