"""Layer records and the three readers that produce them.

A network is a tuple of frozen :class:`Layer` records (conv or linear), in execution order. They come
from one of three places:

- a run folder written by ``ksm-train`` (``run.json`` + ``masks.safetensors``, see
  ``docs/run-folder.md``), read by :func:`load_run` with ``json`` and ``safetensors.numpy``;
- a bundled network table ``hwsim/networks/<name>.json`` (``"format": "ksm-layers/1"``), read by
  :func:`load_network`;
- a SCALE-Sim topology CSV, read by :func:`hwsim.workload.topology.load_topology`.

Beside its layers a :class:`Workload` may carry its graph (:mod:`hwsim.workload.graph`): a bundled table's
``graph``, an ONNX model's, or a run's backbone graph derived at the run's size (:func:`backbone_graph`);
without one its layers are costed as a chain.

Every file is read through its schema (:mod:`hwsim.schemas.run_record`): types, ranges and the cross-field
rules are checked before any work, and a reader fails with one :class:`InputError` line naming the file
and the key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwsim.errors import InputError
from hwsim.fileio import bounded as safeload
from hwsim.schemas.validation import validate
from hwsim.schemas.run_record import LayerRecord, LayerTable, NetworkTable, RunRecord

if TYPE_CHECKING:
    from hwsim.workload.graph import Graph

@dataclass(frozen=True, slots=True)
class Layer:
    """One conv or linear layer, described by its geometry only (dilation 1).

    A linear layer has a 1x1 kernel, stride 1, no padding and one group (an ONNX MatMul's rows are its
    ``input_hw``). The rules are :class:`~hwsim.schemas.run_record.LayerRecord`'s.
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
        # one place for the geometry rules: the schema of a layer record, whichever reader built the layer
        validate(LayerRecord, self.record(), f"layer {safeload.short(self.name)}")

    def record(self) -> dict[str, Any]:
        """The layer as a ``layers`` record of ``docs/run-folder.md``."""
        return {"name": self.name, "kind": self.kind, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel": self.kernel_hw, "stride": self.stride_hw,
                "padding": self.padding_hw, "groups": self.groups, "input_hw": self.input_hw,
                "output_hw": self.output_hw, "bias": self.bias}

    @classmethod
    def from_record(cls, record: LayerRecord) -> Layer:
        """The runtime layer of a validated record."""
        return cls(name=record.name, kind=record.kind, in_channels=record.in_channels,
                   out_channels=record.out_channels, kernel_hw=record.kernel, stride_hw=record.stride,
                   padding_hw=record.padding, groups=record.groups, input_hw=record.input_hw,
                   output_hw=record.output_hw, bias=record.bias)

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


# --------------------------------------------------------------------------------------------
# run.json "layers" records (also the bundled network tables)


def layer_from_record(record: Any, where: str) -> Layer:
    """A :class:`Layer` from one ``layers`` record of ``docs/run-folder.md``; ``where`` names it in errors."""
    return Layer.from_record(validate(LayerRecord, record, where))


def layers_from_records(records: Any, where: str) -> tuple[Layer, ...]:
    """Parse a ``layers`` list (non-empty, names unique); ``where`` names the file."""
    table = validate(LayerTable, {"layers": records}, where)
    return tuple(Layer.from_record(r) for r in table.layers)


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
    # every operator and tensor (hwsim.workload.graph); None: the layers are costed as a chain
    graph: Graph | None = None

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
    safeload.check_file(path, InputError)
    table = _network_table(path)
    return Workload(source=table.network or path.stem, layers=tuple(Layer.from_record(r) for r in table.layers),
                    graph=_graph_of(table))


def _network_table(path: Path) -> NetworkTable:
    """A network table read through its schema (:class:`~hwsim.schemas.run_record.NetworkTable`)."""
    return validate(NetworkTable, safeload.read_json(path, InputError), str(path))


def _graph_of(table: NetworkTable) -> Graph | None:
    """The runtime graph of a table, if it has one."""
    from hwsim.workload.graph import graph_from_record

    return None if table.graph is None else graph_from_record(table.graph)


def bundled_networks() -> list[str]:
    """Names of the bundled network tables."""
    folder = resources.files("hwsim") / "networks"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


# --------------------------------------------------------------------------------------------
# Run folders


def load_run(folder: str | Path) -> Workload:
    """Read a ``ksm-run/1`` run folder: ``run.json`` and ``masks.safetensors``."""
    return load_run_record(folder)[0]


def load_run_record(folder: str | Path) -> tuple[Workload, RunRecord]:
    """Read a ``ksm-run/1`` run folder: (the workload to cost, its validated ``run.json`` record).

    ``run.json`` is validated whole first (:class:`~hwsim.schemas.run_record.RunRecord`: format, method,
    layers, tensor roles against the method, metrics, sequence); then, before anything is costed, the tensor
    file: its sha256 against ``files``, its keys against ``tensors`` (both ways), every tensor against its
    layer's shape, and every binary mask (loaded, numpy) against its real mask and counted for its zeros.
    Other tensors are only opened for their shapes.
    """
    from hwsim.workload.runcheck import check_files, read_record

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a run folder (missing directory)")
    _, run = read_record(folder, InputError)
    masks_path = folder / "masks.safetensors"
    safeload.check_file(masks_path, InputError)
    check_files(folder, run, InputError)
    layers = tuple(Layer.from_record(r) for r in run.layers)
    infos = _tensor_infos(masks_path, run)
    seq = run.sequence
    has_binary = any(t.role == "binary" for t in infos)
    ksm_soft = run.train.soft is not False and (any(t.role == "scale" for t in infos) or not has_binary)
    int8 = run.metrics.int8
    work = Workload(source=str(folder), layers=layers, task=run.task, method=run.method,
                    top1=run.metrics.top1, batchnorm=run.batchnorm,
                    top1_int8=int8.top1 if int8 else None,
                    top1_int8_on_the_fly=int8.on_the_fly_top1 if int8 else None,
                    mask_density=run.metrics.mask_density, tensors=infos,
                    sequence_tasks=len(seq.tasks) if seq else None,
                    sequence_weights=tuple((name, c.earlier, c.grown) for name, c in seq.weights.items()) if seq else (),
                    ksm_soft=ksm_soft, graph=backbone_graph(run.backbone.arch, layers))
    return work, run


def backbone_graph(arch: str, layers: tuple[Layer, ...]) -> Graph | None:
    """The graph of a run's backbone: the bundled network traced from the same torchvision builder, with its
    tensors derived again at the run's input size from the run's own layers
    (:func:`hwsim.workload.graph.at_layers`); None (the layers are costed as a chain) when no bundled network
    is that backbone or its graph does not hold at the run's size."""
    from hwsim.workload.graph import at_layers

    graph = _bundled_graphs().get(arch)
    if graph is None or not layers:
        return None
    return at_layers(graph, layers, (layers[0].in_channels, *layers[0].input_hw))


@functools.lru_cache(maxsize=1)
def _bundled_graphs() -> dict[str, Graph]:
    """torchvision builder (and bundled name) -> the bundled graph: package files, read once per process."""
    out: dict[str, Graph] = {}
    for name in bundled_networks():
        table = _network_table(Path(str(resources.files("hwsim") / "networks" / f"{name}.json")))
        graph = _graph_of(table)
        if graph is None:
            continue
        out[name] = graph
        if table.torchvision_builder:
            out[table.torchvision_builder] = graph
    return out


def _tensor_infos(masks_path: Path, run: RunRecord) -> tuple[TensorInfo, ...]:
    """Every tensor of the file, checked against ``run.json`` by the checks ``ksm`` runs too
    (:func:`~hwsim.workload.runcheck.check_tensors`: the same keys both ways, each of its layer's shape;
    :func:`~hwsim.workload.runcheck.check_binaries`); binary masks are loaded and counted for their zeros,
    the other tensors only opened for their shapes."""
    from safetensors import SafetensorError, safe_open  # local: keeps `import hwsim` light

    from hwsim.workload.runcheck import check_binaries, check_tensors

    where = str(masks_path)
    try:
        with safe_open(where, framework="numpy") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
            check_tensors(run, shapes, where, InputError)
            zeros = check_binaries(run, handle.get_tensor, where, InputError)
    except SafetensorError as exc:
        raise InputError(f"{masks_path}: not a readable safetensors file ({exc})") from None
    return tuple(TensorInfo(key=key, role=role, shape=shapes[key], zeros=zeros.get(key))
                 for key, role in run.tensors.items())
