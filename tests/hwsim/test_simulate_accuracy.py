"""ksm-sim shows the accuracy of the machine a profile describes: int8 on 8-bit profiles when measured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from hwsim.workload.layers import load_run
from hwsim.hardware.profile import load_profile
from hwsim.cost.simulate import simulate


def _top1(folder: Path, profile: Any, mode: str) -> tuple[Any, Any]:
    d = simulate(load_run(folder), profile, mode=mode).to_dict(with_layers=False)
    return d["top1"], d["top1_precision"]


def test_int8_profiles_show_int8_accuracy(run_folder: Callable[..., Path]) -> None:
    metrics = {"top1": 0.8, "history": [], "mask_density": None,
               "int8": {"top1": 0.7, "on_the_fly_top1": 0.75, "precision": "int8"}}
    folder = run_folder("ksm", run_overrides={"metrics": metrics})
    npu = load_profile("edge_npu")
    assert npu.precision_bits.weights == 8 and npu.precision_bits.inputs == 8
    assert _top1(folder, npu, "folded") == (0.7, "int8")
    assert _top1(folder, npu, "on_the_fly") == (0.75, "int8")
    wide = replace(npu, precision_bits=replace(npu.precision_bits, weights=16, inputs=16))
    assert _top1(folder, wide, "folded") == (0.8, "float32")


def test_without_int8_measurement_the_float_accuracy_is_labelled(run_folder: Callable[..., Path]) -> None:
    folder = run_folder("ksm")
    assert _top1(folder, load_profile("edge_npu"), "folded") == (0.8, "float32")
