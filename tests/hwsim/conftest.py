"""Fixtures for hwsim tests: tiny run folders written with json + safetensors.numpy (no torch)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

# A three-layer backbone: a 3x3 conv, a depthwise 3x3 conv, and the classifier head.
LAYERS: list[dict[str, Any]] = [
    {"name": "conv1", "kind": "conv", "in_channels": 3, "out_channels": 8, "kernel": [3, 3], "stride": [1, 1],
     "padding": [1, 1], "groups": 1, "bias": False, "input_hw": [16, 16], "output_hw": [16, 16]},
    {"name": "dw", "kind": "conv", "in_channels": 8, "out_channels": 8, "kernel": [3, 3], "stride": [2, 2],
     "padding": [1, 1], "groups": 8, "bias": False, "input_hw": [16, 16], "output_hw": [8, 8]},
    {"name": "fc", "kind": "linear", "in_channels": 8, "out_channels": 5, "kernel": [1, 1], "stride": [1, 1],
     "padding": [0, 0], "groups": 1, "bias": True, "input_hw": [1, 1], "output_hw": [1, 1]},
]


def weight_shape(rec: dict[str, Any]) -> tuple[int, ...]:
    if rec["kind"] == "linear":
        return (rec["out_channels"], rec["in_channels"])
    return (rec["out_channels"], rec["in_channels"] // rec["groups"], *rec["kernel"])


def make_tensors(method: str, batchnorm: str = "task", seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and roles of a run, as docs/run-folder.md lays them out."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    roles: dict[str, str] = {}
    for rec in LAYERS[:-1]:
        name = rec["name"]
        if method == "ksm":
            shape = (rec["out_channels"], rec["in_channels"] // rec["groups"])
            binary = (rng.random(shape) < 0.75).astype(np.uint8)
            tensors[f"{name}.mask"] = rng.standard_normal(shape).astype(np.float32)
            tensors[f"{name}.binary"] = binary
            tensors[f"{name}.scale"] = np.where(binary == 1, 0, 0.25).astype(np.float16)
            roles.update({f"{name}.mask": "mask", f"{name}.binary": "binary", f"{name}.scale": "scale"})
        elif method == "piggyback":
            shape = weight_shape(rec)
            tensors[f"{name}.mask"] = rng.standard_normal(shape).astype(np.float32)
            tensors[f"{name}.binary"] = (rng.random(shape) < 0.5).astype(np.uint8)
            roles.update({f"{name}.mask": "mask", f"{name}.binary": "binary"})
        elif method == "finetune":
            tensors[f"{name}.weight"] = rng.standard_normal(weight_shape(rec)).astype(np.float32)
            roles[f"{name}.weight"] = "weight"
        if batchnorm == "task":
            for part in ("weight", "bias", "running_mean", "running_var"):
                key = f"{name}_bn.{part}"
                tensors[key] = np.ones(rec["out_channels"], dtype=np.float32)
                roles[key] = "batchnorm"
    head = LAYERS[-1]
    tensors["fc.weight"] = rng.standard_normal(weight_shape(head)).astype(np.float32)
    tensors["fc.bias"] = np.zeros(head["out_channels"], dtype=np.float32)
    roles.update({"fc.weight": "head", "fc.bias": "head"})
    return tensors, roles


def write_run(folder: Path, method: str = "ksm", batchnorm: str = "task", run_overrides: dict | None = None,
              tensors: dict[str, np.ndarray] | None = None, roles: dict[str, str] | None = None) -> Path:
    """Write ``folder/run.json`` and ``folder/masks.safetensors``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    made_tensors, made_roles = make_tensors(method, batchnorm)
    tensors = made_tensors if tensors is None else tensors
    roles = made_roles if roles is None else roles
    run = {
        "format": "ksm-run/1", "task": "toy", "method": method,
        "backbone": {"arch": "toy", "weights": None, "sha256": None}, "batchnorm": batchnorm,
        "dataset": {"name": "toy", "num_classes": 5, "train_size": 10, "test_size": 10, "input_size": [16, 16],
                    "source": "test"},
        "metrics": {"top1": 0.8, "history": [], "mask_density": None, "soft_precision": {}},
        "train": {"seed": 0}, "layers": LAYERS, "tensors": roles, "future_key": "ignored by readers",
    }
    run.update(run_overrides or {})
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    if tensors:
        save_file(tensors, str(folder / "masks.safetensors"))
    else:
        save_file({"unused": np.zeros(1, dtype=np.float32)}, str(folder / "masks.safetensors"))
    return folder


@pytest.fixture
def run_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``run_folder(method="ksm", name="toy", ...)`` writes a run under tmp_path."""

    def make(method: str = "ksm", name: str = "toy", **kwargs: Any) -> Path:
        return write_run(tmp_path / "runs" / name, method=method, **kwargs)

    return make


@pytest.fixture
def tensors_for() -> Callable[..., tuple[dict[str, np.ndarray], dict[str, str]]]:
    """``tensors_for(method, batchnorm="task")`` -> (tensors, roles) of a valid run."""
    return make_tensors


@pytest.fixture
def layer_records() -> list[dict[str, Any]]:
    """The run's ``layers`` records (a fresh copy)."""
    return json.loads(json.dumps(LAYERS))
