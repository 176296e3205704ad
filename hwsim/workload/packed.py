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
cost model, like every anchor it follows, prices weights and masks, not their scale factors. Its schema,
and the rules that hold it to the tensors, are :class:`hwsim.schemas.task_header.TaskHeader`; a file is
read through it (:func:`read_packed`) before anything is priced or loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import catalogue
from hwsim.errors import InputError
from hwsim.fileio.bounded import check_file
from hwsim.schemas.validation import validate
from hwsim.schemas.run_record import LayerRecord
from hwsim.schemas.task_header import FLOAT_BITS, FORMAT, MAX_SCALE_BITS, TaskHeader, decode_header, encode_header
from hwsim.workload.layers import Layer, TensorInfo, Workload, backbone_graph

FLOAT_DTYPES = {bits: getattr(np, name) for bits, name in FLOAT_BITS.items()}
__all__ = ["FLOAT_DTYPES", "FORMAT", "MAX_SCALE_BITS", "PACKED_TENSORS", "check_header", "encode_header",
           "header_bytes", "is_packed_task", "load_packed", "mask_bits", "pack_codes", "read_packed", "read_task",
           "unpack_codes"]


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


def _is_our_format(fmt: Any) -> bool:
    return isinstance(fmt, str) and fmt.split(".")[0] == FORMAT


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


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(raw metadata, tensors) of a safetensors file; anything unreadable is one line naming the file."""
    from safetensors import safe_open

    check_file(path, InputError)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            raw = handle.metadata() or {}
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # a handle, not a dict
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - SafetensorError, or a dtype numpy has no type for
        raise InputError(f"{path}: not a readable safetensors file ({str(exc)[:120]})") from None
    return raw, arrays


def check_header(meta: Mapping[str, Any], arrays: Mapping[str, Any], where: str,
                 error: type[Exception] = InputError) -> TaskHeader:
    """``meta`` (decoded values) checked against :class:`~hwsim.schemas.task_header.TaskHeader` and the tensors
    ``arrays``: what :func:`read_task` checks of a file, and what a writer checks before writing one."""
    return validate(TaskHeader, meta, where, error=error, context={"arrays": arrays})


def read_task(path: str | Path) -> tuple[TaskHeader, dict[str, Any], dict[str, np.ndarray]]:
    """(validated header, the same as the file's plain values (:meth:`TaskHeader.to_meta`), tensors) of a
    packed task file.

    The header is checked against :class:`~hwsim.schemas.task_header.TaskHeader` and against the tensors it
    describes before anything uses them; the first problem is one :class:`InputError` line naming the file
    and the field (or the tensor)."""
    path = Path(path)
    raw, arrays = _read_file(path)
    fmt = raw.get("format", "")
    if not _is_our_format(fmt):
        raise InputError(f"{path}: format {fmt!r} is not {FORMAT!r} (a ksm-export --pack file)")
    meta = decode_header(raw, str(path), InputError)
    header = check_header(meta, arrays, str(path))
    return header, header.to_meta(), arrays


def read_packed(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header with its values decoded, arrays) of a packed task file, both checked (:func:`read_task`)."""
    _, meta, arrays = read_task(path)
    return meta, arrays


def _masks(kernel_wise: bool, masked: list[tuple[str, list[int]]], stream: np.ndarray) -> dict[str, np.ndarray]:
    layers = [(name, list(shape[:2]) if kernel_wise else list(shape)) for name, shape in masked]
    total = sum(math.prod(shape) for _, shape in layers)
    flat = unpack_codes(stream, 1, total).astype(np.uint8)
    out, start = {}, 0
    for name, shape in layers:
        n = math.prod(shape)
        out[name] = flat[start:start + n].reshape(shape)
        start += n
    return out


def mask_bits(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each masked layer's binary mask (uint8 0/1): ``[out, in/groups]`` for a kernel-wise mask kind (KSM),
    else the weight's shape. ``meta`` is a header :func:`read_packed` returned (already checked)."""
    kernel_wise = catalogue.get(meta["method"]).mask.kernel_wise
    return _masks(kernel_wise, [(entry[0], entry[1]) for entry in meta.get("masked", [])],
                  arrays.get("mask.binary", np.zeros(0, np.uint8)))


def _header_masks(header: TaskHeader, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return _masks(header.traits.mask.kernel_wise, [(m.layer, m.shape) for m in header.masked],
                  arrays["mask.binary"])


def _learned_mask(header: TaskHeader, arrays: Mapping[str, np.ndarray]) -> list[TensorInfo]:
    """Kernel- and element-wise masks: the binary bits, and a soft part's scale where it was stored."""
    infos = [TensorInfo(f"{name}.binary", "binary", tuple(binary.shape), int(binary.size - binary.sum()))
             for name, binary in _header_masks(header, arrays).items()]
    if header.traits.soft_part and header.scale_bits > 0:
        infos += [TensorInfo(f"{m.layer}.scale", "scale", tuple(m.shape[:2])) for m in header.masked]
    return infos


def _weight_copy(header: TaskHeader, arrays: Mapping[str, np.ndarray]) -> list[TensorInfo]:
    return [TensorInfo(f"{m.layer}.weight", "weight", tuple(m.shape)) for m in header.masked]


def _adapters(header: TaskHeader, arrays: Mapping[str, np.ndarray]) -> list[TensorInfo]:
    """hwsim.cost.lora_cost reads the adapters' ranks from these."""
    return [TensorInfo(f"{m.layer}.{part}.weight", part, tuple(shape)) for m in header.masked
            for part, shape in (("lora_A", m.shape), ("lora_B", m.b_shape or []))]


def _nothing(header: TaskHeader, arrays: Mapping[str, np.ndarray]) -> list[TensorInfo]:
    """Sequence methods (their maps are the sequence's, counted from ``sequence.weights``) and head only."""
    return []


# What a packed file stores per mask kind (hwsim.catalogue.MaskKind.name), as the tensors of a run folder
# would name them; a kind missing here is refused (its file could not be priced like its run).
PACKED_TENSORS: dict[str, Callable[[TaskHeader, Mapping[str, np.ndarray]], list[TensorInfo]]] = {
    catalogue.KERNEL.name: _learned_mask,
    catalogue.ELEMENT.name: _learned_mask,
    catalogue.TASK_INDEX.name: _nothing,
    catalogue.TASK_INDEX_PICK.name: _nothing,
    catalogue.COPY.name: _weight_copy,
    catalogue.LOW_RANK.name: _adapters,
    catalogue.NONE.name: _nothing,
}


def _layer(record: LayerRecord) -> Layer:
    return Layer(name=record.name, kind=record.kind, in_channels=record.in_channels,
                 out_channels=record.out_channels, kernel_hw=tuple(record.kernel), stride_hw=tuple(record.stride),
                 padding_hw=tuple(record.padding), groups=record.groups, input_hw=tuple(record.input_hw),
                 output_hw=tuple(record.output_hw), bias=record.bias)


def load_packed(path: str | Path) -> Workload:
    """A packed task file as a ``ksm-sim`` workload: its layers, method, BatchNorm policy and the
    stored tensors (binary zeros counted from the bit stream), so it is priced like its run."""
    header, _, arrays = read_task(path)  # the header's method has a packed form (TaskHeader's rule)
    infos = PACKED_TENSORS[header.traits.mask.name](header, arrays)
    infos += [TensorInfo(f"{b.name}.weight", "batchnorm", (b.channels,)) for b in header.batchnorms]
    infos += [TensorInfo(f"{header.head}.weight", "head", tuple(arrays["head.weight"].shape)),
              TensorInfo(f"{header.head}.bias", "head", tuple(arrays["head.bias"].shape))]
    binaries = [t for t in infos if t.role == "binary"]
    entries = sum(math.prod(t.shape) for t in binaries)
    density = 1 - sum(t.zeros or 0 for t in binaries) / entries if entries else None
    seq = header.sequence
    layers = tuple(_layer(r) for r in header.layers)
    return Workload(source=str(path), layers=layers, task=header.task,
                    method=header.method, top1=header.top1, batchnorm="task" if header.batchnorms else "frozen",
                    mask_density=density, tensors=tuple(infos), sequence_tasks=seq.tasks if seq else None,
                    sequence_weights=tuple((c.layer, c.earlier, c.grown) for c in seq.weights) if seq else (),
                    ksm_soft=header.scale_bits > 0,  # TaskHeader: only with soft true, for a soft method
                    graph=backbone_graph(header.arch, layers))  # the graph its run is costed on
