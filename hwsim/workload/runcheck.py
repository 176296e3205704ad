"""A run folder's ``run.json`` read through its schema, and its tensors checked against it (torch-free).

Both packages read a run back through here (``hwsim`` to cost it, ``ksm`` to resume, export or pack it), so
they accept and refuse the same folders. :func:`read_record` reads ``run.json`` bounded and validates it
with :class:`~hwsim.schemas.run_record.RunRecord` (types, ranges, cross-field rules) before any tensor is
opened; :func:`check_record` is the same check on a record about to be written.

``run.json`` ``files`` holds the sha256 of each tensor file it describes (``masks.safetensors``);
a copied-in or edited file is refused, naming the file and the key. Where ``run.json`` meets the tensor
file, :func:`check_tensors` holds them together: ``tensors`` names exactly the stored tensors (a stored
tensor it leaves out would be priced at an assumed density, or exported without its role), and each
tensor has its layer's shape. A binary mask must hold only 0 and 1 and agree with the real-valued mask it
was derived from: ``binary == (mask >= threshold)`` (``>`` for piggyback), with the threshold of
``train.mask_threshold`` (:func:`check_binaries`).

Runs written before the hash was recorded carry no ``files``: they are read unchecked, and a warning
says so once per process (docs/run-folder.md).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import catalogue
from hwsim.fileio import bounded
from hwsim.fileio.atomic import sha256_file
from hwsim.schemas.validation import validate
from hwsim.schemas.run_record import MASKS, LayerRecord, RunRecord

RUN_JSON = "run.json"
TENSOR_FILES = (MASKS,)


class UncheckedRunWarning(UserWarning):
    """A run folder without ``files`` sha256 (written by an older ksm): its tensors are read unchecked."""


_warned = False


def one_line_warnings() -> None:
    """Show every warning this project raises (:class:`UncheckedRunWarning`, an export that leaves the masks
    out, ...: a category defined in ``hwsim`` or ``ksm``) as one ``warning: ...`` line on stderr (the CLIs
    call this); Python's default adds the source file, line and code line, which mean nothing to a user."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, UncheckedRunWarning) or category.__module__.split(".")[0] in ("hwsim", "ksm"):
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        else:
            default(message, category, filename, lineno, file, line)

    if getattr(warnings.showwarning, "__name__", "") != "show":
        warnings.showwarning = show


def check_record(data: Any, where: str, error: type[Exception]) -> RunRecord:
    """``data`` (a decoded or about-to-be-written ``run.json``) checked against :class:`RunRecord`; the first
    problem is one ``error`` line naming ``where`` and the field."""
    return validate(RunRecord, data, where, error)


def read_record(folder: Path, error: type[Exception]) -> tuple[dict[str, Any], RunRecord]:
    """``folder/run.json`` read (bounded: size, depth, integer digits) and validated: (the decoded object,
    the validated record). Nothing else of the folder is opened."""
    path = Path(folder) / RUN_JSON
    bounded.check_file(path, error)
    data = bounded.read_json(path, error)
    if not isinstance(data, dict):
        raise error(f"{path}: top level must be a JSON object")
    return data, check_record(data, str(path), error)


def check_files(folder: Path, record: RunRecord, error: type[Exception]) -> None:
    """Refuse a tensor file whose sha256 is not the one ``run.json`` ``files`` records (the schema has checked
    that ``files`` names every tensor file with a well-formed sha256)."""
    global _warned
    run_path = folder / RUN_JSON
    if record.files is None:
        if not _warned:
            _warned = True
            warnings.warn(f"{run_path}: no files sha256 (written by an older ksm); its tensors are read unchecked "
                          f"(this warning is shown once)", UncheckedRunWarning, stacklevel=3)
        return
    for name in TENSOR_FILES:
        expected = record.files[name].sha256
        path = folder / name
        bounded.check_file(path, error)
        if sha256_file(path) != expected:
            raise error(f"{path}: sha256 differs from run.json files.{name}.sha256 ({expected[:12]}…); the file "
                        f"is not the one this run wrote")


def check_binary(key: str, binary: np.ndarray, real: np.ndarray | None, method: str, threshold: float | None,
                 where: str, error: type[Exception]) -> None:
    """A binary mask holds only 0/1 and equals its real-valued mask thresholded (``method`` and ``threshold``
    come from a validated record: a catalogue method, a finite threshold or None)."""
    if binary.size and not np.isin(binary, (0, 1)).all():
        raise error(f"{where}: {key}: a binary mask must hold only 0 and 1")
    if real is None or threshold is None:
        return
    if real.shape != binary.shape:
        raise error(f"{where}: {key}: shape {list(binary.shape)} differs from its real-valued mask {list(real.shape)}")
    traits = catalogue.get(method)
    expected = real > threshold if traits.strict_threshold else real >= threshold
    if not np.array_equal(binary.astype(bool), expected):
        raise error(f"{where}: {key}: disagrees with its real-valued mask at threshold {threshold} "
                    f"({int((binary.astype(bool) != expected).sum())} entries)")


# ---------------------------------------------------------------------------------------------
# The tensors against run.json

MASK_ROLES = ("mask", "binary", "scale")
Shape = tuple[int | None, ...]  # None: any length on that axis (a LoRA adapter's rank)


def layer_of(key: str, role: str) -> tuple[str, str]:
    """(layer name, suffix) of a tensor key: ``conv1.mask`` -> (``conv1``, ``mask``); LoRA's
    ``conv1.lora_A.weight`` -> (``conv1``, ``lora_A.weight``)."""
    if role in ("lora_A", "lora_B"):
        return key.removesuffix(f".{role}.weight"), f"{role}.weight"
    base, _, suffix = key.rpartition(".")
    return base, suffix


def weight_shape(layer: LayerRecord) -> tuple[int, ...]:
    """The layer's weight tensor as PyTorch stores it."""
    if layer.kind == "linear":
        return (layer.out_channels, layer.in_channels)
    return (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel)


def expected_shape(layer: LayerRecord, role: str, suffix: str, kernel_wise: bool) -> Shape | None:
    """The shape a tensor of ``role`` must have for ``layer`` (None: any shape)."""
    weight = weight_shape(layer)
    if role in MASK_ROLES:  # one entry per kernel (KSM) or per weight
        return weight[:2] if kernel_wise else weight
    if role in ("weight", "head"):
        return weight if suffix == "weight" else (layer.out_channels,)
    if role == "pick":  # CPG: one bit per weight of the layer at the task's (grown) geometry
        return weight
    if role == "lora_A":  # [rank, in/groups, kh, kw] (linear: [rank, in])
        return (None, *weight[1:])
    if role == "lora_B":  # [out, rank, 1, 1] (linear: [out, rank])
        return (layer.out_channels, None, *(1,) * (len(weight) - 2))
    return None


def _fits(shape: tuple[int, ...], expected: Shape) -> bool:
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))


def check_tensors(record: RunRecord, stored: Mapping[str, tuple[int, ...]], where: str,
                  error: type[Exception]) -> None:
    """The stored tensors (key -> shape) against ``run.json`` ``tensors`` and ``layers``: the same keys both
    ways, and each tensor of its layer's shape (a batchnorm tensor 1-D). ``where`` names the tensor file.

    A stored tensor that ``tensors`` leaves out is refused, not ignored: ``hwsim`` would price the layer at
    an assumed density, and ``ksm`` would load or export it without knowing its role."""
    undeclared = [key for key in stored if key not in record.tensors]
    if undeclared:
        raise error(f"{where}: {undeclared[0]}: stored but not named in run.json tensors (every stored tensor "
                    f"is declared with its role)")
    layers = {layer.name: (i, layer) for i, layer in enumerate(record.layers)}
    kernel_wise = catalogue.get(record.method).mask.kernel_wise
    for key, role in record.tensors.items():
        if key not in stored:
            raise error(f"{where}: {key}: missing tensor (named in run.json tensors)")
        shape = tuple(stored[key])
        if role == "batchnorm":
            if len(shape) != 1:
                raise error(f"{where}: {key}: batchnorm tensors must be 1-D, got {list(shape)}")
            continue
        base, suffix = layer_of(key, role)
        i, layer = layers[base]  # the schema checked that a layer role names a layer
        expected = expected_shape(layer, role, suffix, kernel_wise)
        if expected is not None and not _fits(shape, expected):
            want = ["r" if e is None else e for e in expected]
            raise error(f"{where}: {key}: shape {list(shape)} disagrees with layer {base!r} (run.json layers[{i}]: "
                        f"expected {want} for role {role!r})")


def check_binaries(record: RunRecord, get: Callable[[str], np.ndarray], where: str,
                   error: type[Exception]) -> dict[str, int]:
    """Every binary mask of the run (``get(key)`` loads a tensor as numpy) checked by :func:`check_binary`
    against its real-valued mask; returns each binary mask's count of zeros (what ``hwsim`` prices)."""
    zeros: dict[str, int] = {}
    for key, role in record.tensors.items():
        if role != "binary":
            continue
        binary = get(key)
        real_key = f"{layer_of(key, role)[0]}.mask"
        real = get(real_key) if record.tensors.get(real_key) == "mask" else None
        check_binary(key, binary, real, record.method, record.train.mask_threshold, where, error)
        zeros[key] = int(np.count_nonzero(binary == 0))
    return zeros
