"""Methods that learn tasks one after another on shared weights (PackNet, CPG), and their run folders.

Unlike the mask methods, which leave the backbone untouched, PackNet and CPG *change* the shared
weights: task ``t`` owns some weights of every conv/linear layer, later tasks may use (PackNet) or
pick from (CPG) them but never change them. A per-weight uint8 **task index** records the owner
(0 = free, ``t`` = task at position ``t`` of the sequence, 1-based), as in PackNet's code.

A sequence folder (docs/run-folder.md, "Sequences") holds the shared weights once::

    runs/packnet/shared.safetensors    <layer>.weight (float32) + <layer>.task (uint8) per layer
    runs/packnet/<task>/run.json        "sequence": {"position", "tasks", "shared", ...}
    runs/packnet/<task>/masks.safetensors  the task's BatchNorm, head (and CPG pick masks)

Every training phase of every task goes through :func:`ksm.train.train_task`: the method's
``after_backward`` hook zeroes the gradients of weights the current phase may not change and
``after_step`` puts those weights back bit for bit (Adam moves a weight whose gradient is zero
once it has momentum), so earlier tasks' weights and pruned (zeroed) weights never move.

Resumption is at task granularity: a finished task folder is kept, the shared file is the one its
``run.json`` names by sha256, and training goes on with the next task. Biases of backbone conv/linear
layers are frozen (PackNet's default; MobileNetV2 and ResNet convs have none).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.utils import parametrize

import ksm
from ksm.backbones import ARCHS, BackboneSpec, build_backbone, replace_head
from ksm.backbones import sha256_of as file_sha256
from ksm.data import TaskData
from ksm.geometry import layer_records
from ksm.methods import BN_TENSORS, MaskConfig, Method, batchnorms, maskable_layers
from ksm.runfolder import RUN_JSON, RunError, read_run, write_run
from ksm.train import TrainConfig

SHARED = "shared.safetensors"
SHARED_FORMAT = "ksm-shared/1"
MAX_TASKS = 255  # the task index is a uint8; 0 means free


def raw_weight(layer: nn.Module) -> Tensor:
    """The stored weight of a layer (under a parametrization: its ``original``)."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


def index_bits(tasks: int) -> int:
    """Bits of the per-weight task index for ``tasks`` tasks: ``ceil(log2(tasks + 1))`` (0 = free)."""
    return max(1, math.ceil(math.log2(tasks + 1)))


def _slices(shape: torch.Size | tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in shape)


class SequenceMethod(Method):
    """Shared trainable weights with a per-weight task index; subclasses add pruning schedules.

    Phases (``self.phase``): ``"train"`` starts a task (``reset`` restores BatchNorm from the
    backbone and makes a new head); any other phase continues the task (``reset`` keeps them).
    In every phase only the weights owned by the current task move.
    """

    default_batchnorm = "task"
    sequential = True
    eval_split = "test"  # where ``learn`` measures the task when no training phase ends it; "val" during selection

    def __init__(self, arch: str, *, batchnorm: str | None = None, mask: MaskConfig | None = None,
                 prune_ratio: float = 0.5) -> None:
        super().__init__(arch, batchnorm=batchnorm, mask=mask or MaskConfig())
        if not 0.0 <= prune_ratio < 1.0:
            raise ValueError(f"prune ratio must be in [0, 1), not {prune_ratio}")
        self.prune_ratio = prune_ratio
        self.index: dict[str, Tensor] = {}
        self.position = 0
        self.phase = "train"
        self._movable: dict[str, Tensor] = {}
        self._fixed: dict[str, Tensor] = {}

    # -- set-up --------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)
        for name, layer in maskable_layers(model, self.head):
            idx = self.index.get(name)
            if idx is None or idx.shape != raw_weight(layer).shape:
                self.index[name] = torch.zeros(raw_weight(layer).shape, dtype=torch.uint8)

    def begin_task(self, model: nn.Module, position: int) -> None:
        """Give every free weight to the task at ``position`` (PackNet's ``make_finetuning_mask``)."""
        self.position, self.phase = position, "train"
        for idx in self.index.values():
            idx[idx == 0] = position

    def reset(self, model: nn.Module, backbone: dict[str, Tensor], num_classes: int) -> None:
        if self.phase == "train":
            with torch.no_grad():  # BatchNorm from the backbone; channels a growth added start at identity
                for name, bn in batchnorms(model):
                    for key, fill in zip(BN_TENSORS, (1.0, 0.0, 0.0, 1.0)):
                        target, source = getattr(bn, key), backbone[f"{name}.{key}"]
                        target.fill_(fill)
                        target[: source.shape[0]].copy_(source)
            replace_head(model, self.arch, num_classes)
            for _, bn in batchnorms(model):
                bn.requires_grad_(self.batchnorm == "task")
        self._movable, self._fixed = {}, {}
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            weight.requires_grad_(True)
            self._movable[name] = self.index[name] == self.position
            self._fixed[name] = weight.detach().clone()

    # -- hooks of the one training loop --------------------------------------------------------
    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            if weight.grad is not None:
                weight.grad.mul_(self._movable[name])

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            weight.copy_(torch.where(self._movable[name], weight, self._fixed[name]))

    # -- pruning -------------------------------------------------------------------------------
    @torch.no_grad()
    def prune(self, model: nn.Module, keep: dict[str, int]) -> None:
        """Keep the ``keep[layer]`` largest-magnitude weights of the current task in each layer; the
        rest are zeroed and freed (index 0) for later tasks. Ties break by position (stable sort)."""
        for name, layer in maskable_layers(model, self.head):
            weight, idx = raw_weight(layer), self.index[name]
            own = (idx == self.position).flatten().nonzero().squeeze(1)
            drop = own.numel() - keep[name]
            if drop <= 0:
                continue
            order = torch.sort(weight.detach().flatten()[own].abs(), stable=True).indices
            gone = own[order[:drop]]
            weight.view(-1)[gone] = 0.0
            idx.view(-1)[gone] = 0
            self._fixed[name] = weight.detach().clone()
            self._movable[name] = idx == self.position

    def own_counts(self) -> dict[str, int]:
        return {name: int((idx == self.position).sum()) for name, idx in self.index.items()}

    # -- what a task uses ----------------------------------------------------------------------
    def view_mask(self, idx: Tensor, position: int, pick: Tensor | None) -> Tensor:
        """Boolean mask of the weights that task ``position`` uses, given the layer's task index."""
        return (idx >= 1) & (idx <= position)

    def picks(self, model: nn.Module) -> dict[str, Tensor]:
        """Per-layer uint8 pick masks of the current task (CPG only)."""
        return {}

    # -- task state ----------------------------------------------------------------------------
    def state(self, model: nn.Module) -> dict[str, tuple[Tensor, str]]:
        out = super().state(model)
        for name, pick in self.picks(model).items():
            out[f"{name}.pick"] = (pick, "pick")
        return out

    def shared_tensors(self, model: nn.Module) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, layer in maskable_layers(model, self.head):
            out[f"{name}.weight"] = raw_weight(layer).detach().clone().contiguous()
            out[f"{name}.task"] = self.index[name].clone().contiguous()
        return out

    @torch.no_grad()
    def load_shared(self, model: nn.Module, shared: dict[str, Tensor]) -> None:
        """Put the shared weights and task index (as written by :meth:`shared_tensors`) on ``model``."""
        for name, layer in maskable_layers(model, self.head):
            weight = raw_weight(layer)
            weight.copy_(shared[f"{name}.weight"])
            self.index[name] = shared[f"{name}.task"].clone()

    def mask_density(self, model: nn.Module) -> float | None:
        return None

    @torch.no_grad()
    def fold(self, model: nn.Module) -> nn.Module:
        """Models from :func:`load_sequence_task` already hold the task's weights: a plain copy."""
        if any(parametrize.is_parametrized(m, "weight") for _, m in maskable_layers(model, self.head)):
            raise ValueError("fold a model loaded with ksm.sequence.load_sequence_task")
        return copy.deepcopy(model).eval()

    # -- one task --------------------------------------------------------------------------------
    def learn(self, model: nn.Module, backbone: dict[str, Tensor], data: TaskData, cfg: TrainConfig,
              train: Callable[..., dict[str, Any]]) -> tuple[nn.Module, dict[str, Any]]:
        """Train the current task through ``train`` (``train_task`` with the device and progress bound);
        return (the model, possibly replaced by a wider one, and the metrics)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Method hyperparameters recorded in ``run.json`` ``train``."""
        return {"prune_ratio": self.prune_ratio}

    def extra_record(self) -> dict[str, Any]:
        return {}

    def grown_weights(self) -> dict[str, int]:
        """Per layer, the weight elements the current task's growth added (CPG)."""
        return {}


# --------------------------------------------------------------------------------------------
# Sequence folders


@dataclass(frozen=True)
class SequenceSpec:
    """Everything that defines a sequence run besides the data."""

    method: str = "packnet"
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    batchnorm: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # method keyword arguments (prune_ratio, ...)

    def settings(self) -> dict[str, Any]:
        """What a resumed sequence must share with the finished part."""
        return {"method": self.method, "backbone": asdict(self.backbone), "train": self.train.to_json(),
                "mask": asdict(self.mask), "batchnorm": self.batchnorm, "options": dict(sorted(self.options.items()))}


def make_sequence_method(spec: SequenceSpec) -> SequenceMethod:
    from ksm.methods import make_method

    method = make_method(spec.method, spec.backbone.arch, batchnorm=spec.batchnorm, mask=spec.mask,
                         options=spec.options)
    if not isinstance(method, SequenceMethod):
        raise ValueError(  # noqa: TRY004 - a bad option value, reported like the others
            f"{spec.method!r} is not a sequence method (packnet, cpg)")
    return method


def view_sha256(method: SequenceMethod, shared: dict[str, Tensor], position: int,
                picks: dict[str, Tensor], shapes: dict[str, tuple[int, ...]]) -> str:
    """sha256 of the weights task ``position`` uses (its geometry, zeros elsewhere): unchanged by later tasks."""
    h = hashlib.sha256()
    for name in sorted(shapes):
        w, idx = task_weight(method, shared, name, position, picks.get(name), shapes[name])
        h.update(name.encode())
        h.update(w.numpy().tobytes())
        h.update(idx.numpy().tobytes())
    return h.hexdigest()


def task_weight(method: SequenceMethod, shared: dict[str, Tensor], name: str, position: int,
                pick: Tensor | None, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(the weight task ``position`` computes with, its task index), cut to the task's geometry."""
    cut = _slices(shape)
    w, idx = shared[f"{name}.weight"][cut], shared[f"{name}.task"][cut]
    seen = torch.where((idx >= 1) & (idx <= position), idx, torch.zeros_like(idx))
    return torch.where(method.view_mask(idx, position, pick), w, torch.zeros_like(w)), seen


def _atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _finished(folder: Path, tasks: list[str]) -> list[dict[str, Any]]:
    """run.json of the finished tasks, which must be a prefix of ``tasks``."""
    records = []
    for i, task in enumerate(tasks):
        path = folder / task / RUN_JSON
        if not path.exists():
            later = [t for t in tasks[i + 1:] if (folder / t / RUN_JSON).exists()]
            if later:
                raise RunError(f"{folder / later[0]}: finished, but the earlier task {task!r} of the sequence is not")
            break
        records.append(read_run(folder / task)[0])
    return records


def check_sequence(folder: Path, tasks: list[str], *, force: bool, resume: bool) -> int:
    """Refuse a sequence that could not be written; return how many tasks are already finished."""
    if not tasks:
        raise ValueError("a sequence needs at least one task")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"a task appears twice in the sequence {tasks}")
    if len(tasks) > MAX_TASKS:
        raise ValueError(f"at most {MAX_TASKS} tasks per sequence (uint8 task index), got {len(tasks)}")
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder}: exists and is not a folder")
    if force or not folder.exists():
        return 0
    done = _finished(folder, tasks)
    if (done or (folder / SHARED).exists()) and not resume:
        raise RunError(f"{folder}: a sequence is already there ({len(done)} of {len(tasks)} tasks finished); "
                       f"continue it with --resume or start over with --force")
    return len(done)


def run_sequence(spec: SequenceSpec, tasks: list[str], load: Callable[[str], TaskData], folder: Path, *,
                 force: bool = False, resume: bool = False, device: str = "cpu", progress: bool = True,
                 on_task: Callable[[int], None] | None = None,
                 learn: Callable[..., tuple[nn.Module, SequenceMethod, dict[str, Any]]] | None = None
                 ) -> list[dict[str, Any]]:
    """Learn ``tasks`` in order on one backbone; write ``folder/shared.safetensors`` and one run folder per task.

    Args:
        load: task name → :class:`TaskData` (called only for tasks still to train).
        resume: keep finished task folders and continue after the last one.
        on_task: called with the position just written (tests use it to simulate an interruption).
        learn: replaces ``method.learn`` for each task: ``(model, method, backbone, data, cfg) →
            (model, method, metrics)``; the comparison protocol uses it to choose each task's
            learning rates on validation. ``metrics["train"]``, if present, overrides the recorded
            training settings (the chosen rates).
    Returns: the ``run.json`` records of all tasks, in order.
    """
    from ksm.train import train_task

    folder = Path(folder)
    tasks = list(tasks)
    n_done = check_sequence(folder, tasks, force=force, resume=resume)
    folder.mkdir(parents=True, exist_ok=True)
    if force:
        for task in tasks:
            shutil.rmtree(folder / task, ignore_errors=True)
        (folder / SHARED).unlink(missing_ok=True)
    model, digest = build_backbone(spec.backbone)
    backbone = {k: v.detach().clone() for k, v in model.state_dict().items()}
    method = make_sequence_method(spec)
    records = _finished(folder, tasks)[:n_done] if n_done else []
    if records:
        model = _restore(folder, records[-1], spec, method, model, digest, tasks)
    else:
        method.prepare(model)

    def train(model_: nn.Module, data: TaskData, cfg: TrainConfig) -> dict[str, Any]:
        return train_task(model_, method, backbone, data, cfg, device=device, progress=progress)

    for position in range(len(records) + 1, len(tasks) + 1):
        task = tasks[position - 1]
        data = load(task)
        began = time.perf_counter()
        method.begin_task(model, position)
        if learn is None:
            model, metrics = method.learn(model, backbone, data, spec.train, train)
        else:
            model, method, metrics = learn(model, method, backbone, data, spec.train)
        chosen = metrics.pop("train", {})
        model.cpu()
        wall = time.perf_counter() - began
        shared = method.shared_tensors(model)
        picks = method.picks(model)
        shapes = {name: tuple(raw_weight(layer).shape) for name, layer in maskable_layers(model, method.head)}
        counts = {}
        for name in shapes:
            idx = shared[f"{name}.task"]
            earlier = (idx >= 1) & (idx < position)
            counts[name] = {"own": int((idx == position).sum()), "earlier": int(earlier.sum()),
                            "picked": int(picks[name].bool()[earlier].sum()) if name in picks else int(earlier.sum()),
                            "free": int((idx == 0).sum()), "grown": int(method.grown_weights().get(name, 0))}
        used = sum(c["own"] + c["picked"] for c in counts.values())
        metrics["mask_density"] = used / max(sum(math.prod(s) for s in shapes.values()), 1)
        tmp_shared = folder / f".{SHARED}.{position}.tmp"
        # one metadata key: safetensors writes several in no fixed order, and the file's sha256 must be reproducible
        save_file(shared, str(tmp_shared), metadata={"format": SHARED_FORMAT})
        record = {
            "task": data.name,
            "method": method.name,
            "backbone": {"arch": spec.backbone.arch, "weights": spec.backbone.weights, "sha256": digest},
            "batchnorm": method.batchnorm,
            "dataset": data.describe(),
            "metrics": metrics,
            "train": {**spec.train.to_json(), **chosen, **method.options(),
                      **{f"mask_{k}": v for k, v in asdict(spec.mask).items()}, "device": device,
                      "epochs_total": len(metrics["history"]), "wall_seconds": wall,
                      "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                                   "ksm": ksm.__version__, "python": platform.python_version()}},
            "layers": layer_records(model, data.input_size),
            "sequence": {"position": position, "tasks": tasks, "shared": f"../{SHARED}",
                         "shared_sha256": file_sha256(tmp_shared),
                         "view_sha256": view_sha256(method, shared, position, picks, shapes),
                         "index_bits": index_bits(len(tasks)), "settings": spec.settings(), "weights": counts},
            **method.extra_record(),
        }
        if data.name != task:
            raise ValueError(f"task {task!r} loaded as {data.name!r}")
        write_run(folder / task, record, method.state(model), force=True)
        os.replace(tmp_shared, folder / SHARED)
        records.append(read_run(folder / task)[0])
        if on_task is not None:
            on_task(position)
    for stale in folder.glob(f".{SHARED}.*.tmp"):  # left by interrupted writes that resume did not need
        stale.unlink(missing_ok=True)
    return records


def _shared_for(folder: Path, record: dict[str, Any]) -> Path:
    """The shared file of a finished task: the sequence's current one, or a newer one not yet renamed."""
    seq = record["sequence"]
    path = (folder / seq["shared"]).resolve() if not Path(seq["shared"]).is_absolute() else Path(seq["shared"])
    if not path.exists():
        raise RunError(f"{folder / RUN_JSON}: sequence.shared {seq['shared']!r}: {path} is missing")
    return path


def _restore(folder: Path, last: dict[str, Any], spec: SequenceSpec, method: SequenceMethod,
             model: nn.Module, digest: str | None, tasks: list[str]) -> nn.Module:
    """Put a half-finished sequence back: shared weights, task index, and (CPG) width."""
    seq = last["sequence"]
    if seq.get("tasks") != tasks:
        raise RunError(f"{folder / last['task'] / RUN_JSON}: the sequence was started with tasks {seq.get('tasks')}, "
                       f"not {tasks}; name the same tasks in the same order, or start over with --force")
    if seq.get("settings") != json.loads(json.dumps(spec.settings())):
        raise RunError(f"{folder / last['task'] / RUN_JSON}: the sequence was started with other settings "
                       f"{seq.get('settings')}; rerun with the same options or with --force")
    if last["backbone"].get("sha256") != digest:
        raise RunError(f"{folder / last['task'] / RUN_JSON}: backbone sha256 differs from the weights loaded now")
    path = folder / SHARED
    pending = folder / f".{SHARED}.{seq['position']}.tmp"
    if pending.exists() and file_sha256(pending) == seq["shared_sha256"]:
        os.replace(pending, path)  # interrupted between writing the task folder and renaming the file
    if not path.exists() or file_sha256(path) != seq["shared_sha256"]:
        raise RunError(f"{path}: missing or not the file that task {last['task']!r} wrote "
                       f"(sha256 {seq['shared_sha256'][:12]}…); start over with --force")
    model = method.restore_geometry(model, last) if hasattr(method, "restore_geometry") else model
    method.prepare(model)
    method.load_shared(model, load_file(str(path)))
    return model


def load_sequence_task(folder: Path, *, weights: str | None = None) -> tuple[nn.Module, SequenceMethod, dict[str, Any]]:
    """Rebuild task ``folder`` of a sequence on a fresh backbone: a plain model holding exactly the
    weights the task uses (later tasks' and free weights zeroed, CPG pick masks applied)."""
    from ksm.methods import make_method

    folder = Path(folder)
    record, tensors = read_run(folder)
    seq = record.get("sequence")
    if not isinstance(seq, dict) or not {"position", "tasks", "shared"} <= set(seq):
        raise RunError(f"{folder / RUN_JSON}: sequence: missing or incomplete (needs position, tasks, shared)")
    bb = record["backbone"]
    model, digest = build_backbone(BackboneSpec(bb["arch"], weights or bb["weights"]))
    if bb.get("sha256") and digest != bb["sha256"]:
        raise RunError(f"{folder / RUN_JSON}: backbone sha256 {bb['sha256'][:12]}… does not match the weights "
                       f"loaded now ({(digest or 'none')[:12]}…)")
    train = record.get("train", {})
    options = {k: train[k] for k in ("prune_ratio",) if k in train}
    method = make_method(record["method"], bb["arch"], batchnorm=record.get("batchnorm"), options=options)
    assert isinstance(method, SequenceMethod)
    if hasattr(method, "restore_geometry"):
        model = method.restore_geometry(model, record)
    model.requires_grad_(False)
    path = folder / seq["shared"]
    if not path.exists():
        raise RunError(f"{folder / RUN_JSON}: sequence.shared: {path} is missing")
    shared = load_file(str(path))
    try:
        method.load_state(model, tensors)
    except (KeyError, ValueError) as exc:
        raise RunError(f"{folder}/masks.safetensors: {exc}") from None
    position = int(seq["position"])
    shapes: dict[str, tuple[int, ...]] = {}
    picks: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, layer in maskable_layers(model, method.head):
            if f"{name}.weight" not in shared:
                raise RunError(f"{path}: {name}.weight missing")
            shape = tuple(layer.weight.shape)
            if any(a > b for a, b in zip(shape, shared[f"{name}.weight"].shape)):
                raise RunError(f"{path}: {name}.weight {list(shared[f'{name}.weight'].shape)} is smaller than the "
                               f"task's layer {list(shape)}")
            shapes[name] = shape
            pick = tensors.get(f"{name}.pick")
            if pick is not None:
                picks[name] = pick
            w, _ = task_weight(method, shared, name, position, pick, shape)
            layer.weight.copy_(w)
    expected = seq.get("view_sha256")
    if expected and view_sha256(method, shared, position, picks, shapes) != expected:
        raise RunError(f"{path}: the weights task {record['task']!r} uses have changed since it was trained "
                       f"(view sha256 differs from run.json)")
    method.position = position
    return model.eval(), method, record


def phase_history(metrics: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [{**h, "phase": phase} for h in metrics["history"]]


def scaled(cfg: TrainConfig, epochs: int, lr_factor: float) -> TrainConfig:
    return replace(cfg, epochs=epochs, lr_body=cfg.lr_body * lr_factor, lr_head=cfg.lr_head * lr_factor)


__all__ = [
    "ARCHS",
    "SHARED",
    "SequenceMethod",
    "SequenceSpec",
    "check_sequence",
    "index_bits",
    "load_sequence_task",
    "run_sequence",
]
