"""Training-step time of KSM, Piggyback and LoRA (rank 8) relative to fine-tuning, interleaved in one process.

Usage: python benchmarks/step_ratio.py --size 128 [--arch mobilenet_v2] [--rounds 6]

Interleaving the methods step by step exposes them to the same machine load, which makes the ratio
steadier than timing each method in its own block on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import test_bench_train as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    bench.SIZE = args.size
    steps = {m: bench._step_fn(args.arch, m) for m in ("finetune", "ksm", "piggyback", "lora")}
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {m: [] for m in steps}
    for _ in range(args.rounds):
        for method, step in steps.items():
            began = time.perf_counter()
            step()
            times[method].append(time.perf_counter() - began)
    ref = statistics.median(times["finetune"])
    print(f"{args.arch} {args.size}x{args.size}, batch {bench.BATCH}: fine-tune step {1000 * ref:.0f} ms (median)")
    for method, values in times.items():
        print(f"  {method:10s} {statistics.median(values) / ref:.2f}x fine-tune")


if __name__ == "__main__":
    main()
