"""KSM's training step against Piggyback's and fine-tuning's, interleaved in one process.

Usage (from the repository root)::

    python benchmarks/step_ratio.py                       # MobileNetV2 + ResNet-18, 64 and 128 px
    python benchmarks/step_ratio.py --arch resnet18 --size 64 --rounds 20

Interleaving the methods step by step exposes them to the same machine load, which keeps the
ratios steady on a shared machine where the absolute times are not. Each method runs with its
default BatchNorm policy (KSM and fine-tuning: task BatchNorm, trained, statistics updated;
Piggyback: frozen). Training BatchNorm costs the same whatever the mask, so the table also times
Piggyback with task BatchNorm: ``KSM / Piggyback (task BN)`` compares the masks alone.

On the CPU, KSM's mask runs fused (``ksm/methods/fused_mask.py``, bit for bit the ATen reference); the
table also times the reference path (``KSM_FUSED_MASK=0``) in the same rounds, so the column
``KSM ref / Piggyback (task BN)`` shows what the fusion buys.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_bench_train as bench

# (label, method, batchnorm policy); None is the method's default.
CASES = (("finetune", "finetune", None), ("ksm", "ksm", None), ("ksm_reference", "ksm", None),
         ("piggyback", "piggyback", None), ("piggyback_bntask", "piggyback", "task"), ("lora", "lora", None))


def reference_mask(step: Callable[[], object]) -> Callable[[], object]:
    """The step with KSM's mask on its ATen reference path (ksm.methods.fused_mask reads the switch per call)."""
    def run() -> object:
        before = os.environ.get("KSM_FUSED_MASK")
        os.environ["KSM_FUSED_MASK"] = "0"
        try:
            return step()
        finally:
            if before is None:
                del os.environ["KSM_FUSED_MASK"]
            else:
                os.environ["KSM_FUSED_MASK"] = before
    return run


def time_interleaved(steps: dict[str, Callable[[], object]], rounds: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds of every timed step of each case, the cases alternating step by step."""
    for step in steps.values():  # warm-up: kernels, allocator, autotuning
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync()
            began = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - began)
    return times


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a's step / b's step in the same round: steps taken moments apart share
    the machine's load, so their ratio is steadier than a ratio of medians on a shared machine."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def ratio_row(arch: str, size: int, batch: int, rounds: int, device: str = "cpu",
              sync: Callable[[], None] = lambda: None) -> dict[str, object]:
    steps = {label: bench._step_fn(arch, method, batchnorm=bn, device=device, size=size, batch=batch)
             for label, method, bn in CASES}
    steps["ksm_reference"] = reference_mask(steps["ksm_reference"])
    times = time_interleaved(steps, rounds, sync)
    return {"arch": arch, "px": size, "batch": batch, "fine-tune ms": 1000 * statistics.median(times["finetune"]),
            "KSM / Piggyback": paired_ratio(times, "ksm", "piggyback"),
            "KSM / Piggyback (task BN)": paired_ratio(times, "ksm", "piggyback_bntask"),
            "KSM ref / Piggyback (task BN)": paired_ratio(times, "ksm_reference", "piggyback_bntask"),
            "KSM / fine-tune": paired_ratio(times, "ksm", "finetune"),
            "Piggyback / fine-tune": paired_ratio(times, "piggyback", "finetune"),
            "LoRA r8 / fine-tune": paired_ratio(times, "lora", "finetune")}


def ratio_table(archs: list[str], sizes: list[int], batch: int, rounds: int, device: str = "cpu",
                sync: Callable[[], None] = lambda: None) -> pd.DataFrame:
    return pd.DataFrame([ratio_row(a, s, batch, rounds, device, sync) for a in archs for s in sizes])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", help="repeatable; default mobilenet_v2 and resnet18")
    parser.add_argument("--size", type=int, action="append", help="input side in pixels; default 64 and 128")
    parser.add_argument("--batch", type=int, default=bench.BATCH)
    parser.add_argument("--rounds", type=int, default=12, help="timed steps per case")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    table = ratio_table(args.arch or ["mobilenet_v2", "resnet18"], args.size or [64, 128], args.batch, args.rounds)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"median over {args.rounds} rounds of the per-round ratio, cases interleaved step by step\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
