"""Layer records and the three readers that produce them.

A network is a tuple of frozen :class:`Layer` records (conv or linear), in execution order. They come
from one of three places:

- a run folder written by ``ksm-train`` (``run.json`` + ``masks.safetensors``, see
  ``docs/run-folder.md``), read by :func:`load_run` with ``json`` and ``safetensors.numpy``;
- a bundled network table ``hwsim/networks/<name>.json`` (``"format": "ksm-layers/1"``), read by
  :func:`load_network`;
- a SCALE-Sim topology CSV (``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width,
  Channels, Num Filter, Strides,`` and an optional ``Groups``), read by :func:`load_topology`.

Every reader fails with a :class:`InputError` whose one-line message names the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hwsim import catalogue
from hwsim.errors import InputError
from hwsim.fileio import bounded as safeload

RUN_FORMAT = "ksm-run"
LAYERS_FORMAT = "ksm-layers"
MASK_ROLES = ("mask", "binary", "scale")


@dataclass(frozen=True, slots=True)
class Layer:
    """One conv or linear layer, described by its geometry only (dilation 1).

    A linear layer has a 1x1 kernel, stride 1, no padding, one group and 1x1 feature maps.
    """

    name: str
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    kernel_hw: tuple[int, int]
    stride_hw: tuple[int, int] = (1, 1)
    padding_hw: tuple[int, int] = (0, 0)
    groups: int = 1
    input_hw: tuple[int, int] = (1, 1)
    output_hw: tuple[int, int] = (1, 1)
    bias: bool = False

    def __post_init__(self) -> None:
        problems = check_layer(self)
        if problems:
            key, message = problems[0]
            raise InputError(f"layer {self.name!r}: {key}: {message}")

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the weight tensor as PyTorch stores it."""
        if self.kind == "linear":
            return (self.out_channels, self.in_channels)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_hw)

    @property
    def kernel_mask_shape(self) -> tuple[int, int]:
        """Shape of a kernel-wise (KSM) mask: one entry per (output channel, input channel of its group)."""
        return (self.out_channels, self.in_channels // self.groups)


def check_layer(layer: Layer) -> list[tuple[str, str]]:
    """Return (key, message) for every inconsistency in a layer record; empty when it is valid."""
    out: list[tuple[str, str]] = []
    if layer.kind not in ("conv", "linear"):
        out.append(("kind", f"must be 'conv' or 'linear', got {layer.kind!r}"))
        return out
    for key in ("in_channels", "out_channels", "groups"):
        value = getattr(layer, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            out.append((key, f"must be a positive integer, got {value!r}"))
    pairs = {"kernel": layer.kernel_hw, "stride": layer.stride_hw, "input_hw": layer.input_hw,
             "output_hw": layer.output_hw}
    for key, pair in pairs.items():
        if len(pair) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in pair):
            out.append((key, f"must be two positive integers, got {list(pair)!r}"))
    if len(layer.padding_hw) != 2 or any(not isinstance(v, int) or v < 0 for v in layer.padding_hw):
        out.append(("padding", f"must be two non-negative integers, got {list(layer.padding_hw)!r}"))
    if out:
        return out
    if layer.in_channels % layer.groups or layer.out_channels % layer.groups:
        out.append(("groups", (f"{layer.groups} does not divide in_channels {layer.in_channels} "
                              f"and out_channels {layer.out_channels}")))
    for axis in (0, 1):
        size = layer.input_hw[axis] + 2 * layer.padding_hw[axis] - layer.kernel_hw[axis]
        expected = size // layer.stride_hw[axis] + 1 if size >= 0 else 0
        if expected != layer.output_hw[axis]:
            out.append(("output_hw", (f"{list(layer.output_hw)} disagrees with input_hw {list(layer.input_hw)}, "
                                     f"kernel, stride and padding (expected {expected} on axis {axis})")))
            break
    return out


# --------------------------------------------------------------------------------------------
# run.json "layers" records (also the bundled network tables)

_LAYER_KEYS = ("name", "kind", "in_channels", "out_channels", "kernel", "stride", "padding", "groups",
               "input_hw", "output_hw")


def _pair(value: Any) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def layer_from_record(record: Any, where: str) -> Layer:
    """Build a :class:`Layer` from one ``layers`` record of ``docs/run-folder.md``.

    Args:
        record: the decoded JSON object.
        where: ``"<file>: layers[<i>]"``, used to name the failing key.
    """
    if not isinstance(record, dict):
        raise InputError(f"{where}: must be an object, got {type(record).__name__}")
    for key in _LAYER_KEYS:
        if key not in record:
            raise InputError(f"{where}.{key}: missing key")
    try:
        layer = Layer(
            name=str(record["name"]),
            kind=record["kind"],
            in_channels=record["in_channels"],
            out_channels=record["out_channels"],
            kernel_hw=_pair(record["kernel"]),  # type: ignore[arg-type]
            stride_hw=_pair(record["stride"]),  # type: ignore[arg-type]
            padding_hw=_pair(record["padding"]),  # type: ignore[arg-type]
            groups=record["groups"],
            input_hw=_pair(record["input_hw"]),  # type: ignore[arg-type]
            output_hw=_pair(record["output_hw"]),  # type: ignore[arg-type]
            bias=bool(record.get("bias", False)),
        )
    except InputError as exc:
        # "layer 'x': key: message" -> "<file>: layers[i].key: message"
        text = str(exc).split(": ", 1)[1]
        raise InputError(f"{where}.{text}") from None
    except TypeError as exc:
        raise InputError(f"{where}: {exc}") from None
    return layer


def layers_from_records(records: Any, where: str) -> tuple[Layer, ...]:
    """Parse a ``layers`` list; ``where`` names the file."""
    if not isinstance(records, list) or not records:
        raise InputError(f"{where}: layers: must be a non-empty list")
    layers = tuple(layer_from_record(r, f"{where}: layers[{i}]") for i, r in enumerate(records))
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{where}: layers: duplicate layer name {dup!r}")
    return layers


def _check_format(value: Any, expected: str, where: str) -> None:
    """Accept ``"<expected>/1"`` (any minor, e.g. ``1.2``); refuse other names and majors."""
    if not isinstance(value, str) or "/" not in value:
        raise InputError(f"{where}: format: expected '{expected}/1', got {value!r}")
    name, version = value.split("/", 1)
    major = version.split(".", 1)[0]
    if name != expected or major != "1":
        raise InputError(f"{where}: format: unknown format {value!r} (this hwsim reads '{expected}/1')")


def _read_json(path: Path) -> dict[str, Any]:
    safeload.check_file(path, InputError)
    data = safeload.read_json(path, InputError)
    if not isinstance(data, dict):
        raise InputError(f"{path}: top level must be a JSON object")
    return data


# --------------------------------------------------------------------------------------------
# Workloads


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of ``masks.safetensors``: its role, shape, and (binary masks only) its count of zeros."""

    key: str
    role: str
    shape: tuple[int, ...]
    zeros: int | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """What ``ksm-sim`` costs: a network's layers plus, when it comes from a run, the task's facts.

    ``method`` is None for a plain network (no masks charged) unless the user names one.
    """

    source: str
    layers: tuple[Layer, ...]
    task: str | None = None
    method: str | None = None
    top1: float | None = None
    # int8 accuracy measured by ksm-export (metrics.int8): folded task weights, and shared int8
    # backbone with the mask applied on the fly
    top1_int8: float | None = None
    top1_int8_on_the_fly: float | None = None
    batchnorm: str = "task"
    mask_density: float | None = None
    tensors: tuple[TensorInfo, ...] = field(default=())
    # packnet/cpg runs (run.json "sequence"): tasks in the sequence, and per layer
    # (name, weights of earlier tasks the pick mask covers, weights this task's growth added)
    sequence_tasks: int | None = None
    sequence_weights: tuple[tuple[str, int, int], ...] = field(default=())
    # KSM only: False for a run trained without the soft part (train.soft false or no scale stored);
    # its binary zeros are plain zeros, stored by the bitmap alone and applied by a gate.
    ksm_soft: bool = True

    @property
    def head(self) -> Layer | None:
        """The classifier head: the last linear layer, if any."""
        for layer in reversed(self.layers):
            if layer.kind == "linear":
                return layer
        return None


def load_network(name_or_path: str | Path) -> Workload:
    """Read a bundled network table (``resnet50``) or a ``ksm-layers/1`` JSON file."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        bundled = resources.files("hwsim") / "networks" / f"{name_or_path}.json"
        if not bundled.is_file():
            raise InputError(f"--network: unknown network {str(name_or_path)!r} "
                             f"(bundled: {', '.join(bundled_networks()) or 'none'})")
        path = Path(str(bundled))
    data = _read_json(path)
    _check_format(data.get("format"), LAYERS_FORMAT, str(path))
    if "layers" not in data:
        raise InputError(f"{path}: layers: missing key")
    layers = layers_from_records(data["layers"], str(path))
    return Workload(source=str(data.get("network", path.stem)), layers=layers)


def bundled_networks() -> list[str]:
    """Names of the bundled network tables."""
    folder = resources.files("hwsim") / "networks"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


_TOPOLOGY_COLUMNS = ("layer name", "ifmap height", "ifmap width", "filter height", "filter width",
                     "channels", "num filter", "strides")


def load_topology(path: str | Path) -> Workload:
    """Read a SCALE-Sim topology CSV.

    SCALE-Sim's IFMAP sizes already include any padding, and the output is
    ``(H - R) // stride + 1`` (its ``ceil((H - R + s) / s)``), so layers get padding 0. An optional
    ``Groups`` column after ``Strides`` gives grouped and depthwise convolutions (AlexNet's groups of 2,
    a depthwise layer's groups = channels); channel counts it does not divide are refused. Without it, a
    layer whose name contains ``DP`` is depthwise, as in SCALE-Sim: one group per channel.
    """
    path = Path(path)
    safeload.check_file(path, InputError)
    rows = safeload.csv_rows(path, InputError)  # streamed, capped: memory stays flat
    first = next(rows, None)
    if first is None:
        raise InputError(f"{path}: empty topology file")
    header = [cell.lower() for cell in first[1] if cell]
    has_groups = len(header) > len(_TOPOLOGY_COLUMNS) and header[len(_TOPOLOGY_COLUMNS)] == "groups"
    for i, column in enumerate(_TOPOLOGY_COLUMNS):
        if i >= len(header) or header[i] != column:
            raise InputError(f"{path}: header column {i + 1}: expected {column!r}, "
                             f"got {safeload.short(header[i]) if i < len(header) else repr('nothing')}")
    layers = []
    seen: set[str] = set()
    for line, row in rows:
        where = f"{path}: line {line}"
        if len(row) < 8:
            raise InputError(f"{where}: expected 8 values ({', '.join(_TOPOLOGY_COLUMNS)}), got {len(row)}")
        empty = [column for column, cell in zip(_TOPOLOGY_COLUMNS, row) if not cell]
        if empty:
            raise InputError(f"{where}: {empty[0]}: empty")
        name = row[0]
        if name in seen:
            raise InputError(f"{where}: layer name {safeload.short(name)} is used twice (names key the "
                             "layers in the results and in exported mappings)")
        seen.add(name)
        try:
            ih, iw, fh, fw, ch, nf, st = (int(v) for v in row[1:8])
        except ValueError:
            raise InputError(f"{where}: sizes must be integers, got {safeload.short(row[1:8])}") from None
        for column, value in zip(_TOPOLOGY_COLUMNS[1:], (ih, iw, fh, fw, ch, nf, st)):
            if not 0 < value <= safeload.MAX_SIZE:
                raise InputError(f"{where}: {column}: must be in 1..{safeload.MAX_SIZE}, got {safeload.short(value)}")
        if fh > ih or fw > iw:
            raise InputError(f"{where}: filter height/width larger than the ifmap")
        cell = row[8] if has_groups and len(row) > 8 else ""
        if cell:
            try:
                groups = int(cell)
            except ValueError:
                raise InputError(f"{where}: groups must be an integer, got {cell!r}") from None
            if groups <= 0 or ch % groups or nf % groups:
                raise InputError(f"{where}: groups {groups} must divide channels {ch} and num filter {nf}")
        else:
            groups = ch if "DP" in name and nf % ch == 0 else 1
        oh, ow = (ih - fh) // st + 1, (iw - fw) // st + 1
        try:
            layers.append(Layer(name=name, kind="conv", in_channels=ch, out_channels=nf, kernel_hw=(fh, fw),
                                stride_hw=(st, st), padding_hw=(0, 0), groups=groups, input_hw=(ih, iw),
                                output_hw=(oh, ow)))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    if not layers:
        raise InputError(f"{path}: no layers after the header")
    return Workload(source=path.name, layers=tuple(layers))


# --------------------------------------------------------------------------------------------
# Run folders


def _expected_shape(layer: Layer, role: str, method: str, suffix: str) -> tuple[int, ...] | None:
    """The shape a tensor of this role must have for this layer; None when any shape is accepted."""
    if role in MASK_ROLES:
        return layer.kernel_mask_shape if catalogue.get(method).mask.kernel_wise else layer.weight_shape
    if role in ("weight", "head"):
        return layer.weight_shape if suffix == "weight" else (layer.out_channels,)
    if role == "pick":  # CPG: one bit per weight of the layer at the task's (grown) geometry
        return layer.weight_shape
    return None


def load_run(folder: str | Path) -> Workload:
    """Read a ``ksm-run/1`` run folder: ``run.json`` and ``masks.safetensors``.

    Validates the format version, the keys this reader needs, every ``layers`` record, and every
    tensor named in ``tensors`` against its layer's shape. Binary masks are loaded (numpy) to count
    their zeros; other tensors are only opened for their shapes.
    """
    from safetensors import SafetensorError, safe_open  # local: keeps `import hwsim` light

    from hwsim.workload.runcheck import check_binary, check_files

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a run folder (missing directory)")
    run_path, masks_path = folder / "run.json", folder / "masks.safetensors"
    run = _read_json(run_path)
    _check_format(run.get("format"), RUN_FORMAT, str(run_path))
    for key in ("task", "method", "layers", "tensors"):
        if key not in run:
            raise InputError(f"{run_path}: {key}: missing key")
    method = run["method"]
    if catalogue.find(method) is None:
        raise InputError(f"{run_path}: method: unknown method {method!r} (known: {', '.join(catalogue.names())})")
    batchnorm = run.get("batchnorm", "task")
    if batchnorm not in ("task", "frozen"):
        raise InputError(f"{run_path}: batchnorm: must be 'task' or 'frozen', got {batchnorm!r}")
    layers = layers_from_records(run["layers"], str(run_path))
    by_name = {layer.name: layer for layer in layers}
    roles = run["tensors"]
    if not isinstance(roles, dict):
        raise InputError(f"{run_path}: tensors: must be an object of key -> role")
    metrics = run.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise InputError(f"{run_path}: metrics: must be an object")
    top1 = _fraction(metrics, "top1", run_path)
    density = _fraction(metrics, "mask_density", run_path)
    int8 = metrics.get("int8")
    int8 = int8 if isinstance(int8, dict) else {}

    safeload.check_file(masks_path, InputError)
    check_files(folder, run, InputError)
    infos: list[TensorInfo] = []
    try:
        with safe_open(str(masks_path), framework="numpy") as handle:
            stored = set(handle.keys())
            for key, role in roles.items():
                if key not in stored:
                    raise InputError(f"{masks_path}: {key}: missing tensor (named in run.json tensors)")
                shape = tuple(handle.get_slice(key).get_shape())
                base, _, suffix = key.rpartition(".")
                layer = by_name.get(base)
                if role in MASK_ROLES + ("weight",) and layer is None:
                    raise InputError(f"{masks_path}: {key}: no layer {base!r} in run.json layers")
                if role == "head" and layer is None:
                    raise InputError(f"{masks_path}: {key}: no layer {base!r} in run.json layers")
                expected = _expected_shape(layer, role, method, suffix) if layer else None
                if expected is not None and shape != expected:
                    raise InputError(f"{masks_path}: {key}: shape {list(shape)} disagrees with layer "
                                     f"{base!r} (expected {list(expected)} for role {role!r})")
                if role == "batchnorm" and len(shape) != 1:
                    raise InputError(f"{masks_path}: {key}: batchnorm tensors must be 1-D, got {list(shape)}")
                zeros = None
                if role == "binary":
                    binary = handle.get_tensor(key)
                    real = handle.get_tensor(f"{base}.mask") if f"{base}.mask" in stored else None
                    check_binary(key, binary, real, method, (run.get("train") or {}).get("mask_threshold")
                                 if isinstance(run.get("train"), dict) else None, str(masks_path), InputError)
                    zeros = int(np.count_nonzero(binary == 0))
                infos.append(TensorInfo(key=key, role=str(role), shape=shape, zeros=zeros))
    except SafetensorError as exc:
        raise InputError(f"{masks_path}: not a readable safetensors file ({exc})") from None
    seq_tasks, seq_weights = _sequence(run.get("sequence"), by_name, str(run_path)) if "sequence" in run else (None, ())
    train = run.get("train")
    trained_soft = not (isinstance(train, dict) and train.get("soft") is False)
    has_binary = any(t.role == "binary" for t in infos)
    ksm_soft = trained_soft and (any(t.role == "scale" for t in infos) or not has_binary)
    return Workload(source=str(folder), layers=layers, task=str(run["task"]), method=method,
                    top1=top1, batchnorm=batchnorm,
                    top1_int8=_fraction(int8, "top1", run_path, "metrics.int8."),
                    top1_int8_on_the_fly=_fraction(int8, "on_the_fly_top1", run_path, "metrics.int8."),
                    mask_density=density, tensors=tuple(infos),
                    sequence_tasks=seq_tasks, sequence_weights=seq_weights, ksm_soft=ksm_soft)


def _fraction(metrics: dict[str, Any], key: str, where: Path, prefix: str = "metrics.") -> float | None:
    """An accuracy or density recorded in run.json: absent/null, or a number in [0, 1]; anything else
    (a string, NaN, Infinity, 1.5) is refused rather than printed beside the costs."""
    value = metrics.get(key)
    if value is None:
        return None
    if not safeload.is_fraction(value):
        raise InputError(f"{where}: {prefix}{key}: must be a fraction in [0, 1], got {safeload.short(value)}")
    return float(value)


def _sequence(seq: Any, layers: dict[str, Layer], where: str) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    """Read run.json ``sequence`` (packnet, cpg; docs/run-folder.md): (number of tasks, per-layer counts)."""
    if not isinstance(seq, dict):
        raise InputError(f"{where}: sequence: must be an object")
    tasks = seq.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise InputError(f"{where}: sequence.tasks: must be a non-empty list of task names")
    position = seq.get("position")
    if not isinstance(position, int) or isinstance(position, bool) or not 1 <= position <= len(tasks):
        raise InputError(f"{where}: sequence.position: must be an integer in 1..{len(tasks)}, got {position!r}")
    weights = seq.get("weights", {})
    if not isinstance(weights, dict):
        raise InputError(f"{where}: sequence.weights: must be an object of layer -> counts")
    out = []
    for name, counts in weights.items():
        layer = layers.get(name)
        if layer is None:
            raise InputError(f"{where}: sequence.weights.{name}: no such layer in layers")
        if not isinstance(counts, dict):
            raise InputError(f"{where}: sequence.weights.{name}: must be an object")
        values = []
        for key in ("earlier", "grown"):
            v = counts.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= math.prod(layer.weight_shape):
                raise InputError(f"{where}: sequence.weights.{name}.{key}: must be an integer in 0.."
                                 f"{math.prod(layer.weight_shape)} (the layer's weights), got {v!r}")
            values.append(v)
        out.append((str(name), values[0], values[1]))
    return len(tasks), tuple(out)
