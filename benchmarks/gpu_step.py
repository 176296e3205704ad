"""One prepared GPU check: KSM step vs fine-tune step on ResNet-50, batch 64, 224×224, and the
KSM / Piggyback / fine-tune step-ratio table of ``benchmarks/step_ratio.py`` on the GPU.

Run on a machine with one CUDA GPU, from the repository root:

    python benchmarks/gpu_step.py --out gpu_step.json

Without a CUDA device it says so and exits 0 (nothing to measure).

It times, in one process and interleaved (so that clocks and thermals affect both alike), a training
step of each method with channels_last and (with --amp) bfloat16 autocast, and prints each method's
median step time, images per second and ratio to fine-tuning, with the card's name. Random init
(no download needed) and random data: the step's cost does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from ksm.network.backbones import BackboneSpec
from ksm.training.pipeline import RunSpec, build


def make_step(method: str, batch: int, amp: bool, device: str):
    torch.manual_seed(0)
    model, m, backbone, _ = build(RunSpec(method=method, backbone=BackboneSpec("resnet50", "none")))
    m.reset(model, backbone, 200)
    model.to(device, memory_format=torch.channels_last)
    body, head = m.trainable(model)
    optimizer = torch.optim.Adam(body + head, lr=1e-4)
    m.train_mode(model)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 200, (batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--out", default="gpu_step.json")
    parser.add_argument("--ratio-rounds", type=int, default=30,
                        help="timed steps per case of the step-ratio table (0 skips the table)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_step: no CUDA device here; skipped (run benchmarks/step_ratio.py for the CPU table)")
        return
    device = "cuda"
    methods = ["finetune", "ksm", "piggyback", "feature"]
    steps = {m: make_step(m, args.batch, args.amp, device) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for m in methods:  # warm-up: cuDNN autotuning, allocator
        for _ in range(3):
            steps[m]()
    torch.cuda.synchronize()
    for _ in range(args.steps):
        for m in methods:
            torch.cuda.synchronize()
            began = time.perf_counter()
            steps[m]()
            torch.cuda.synchronize()
            times[m].append(time.perf_counter() - began)
    ref = statistics.median(times["finetune"])
    result = {"device": torch.cuda.get_device_name(0), "batch": args.batch, "amp": args.amp,
              "torch": torch.__version__, "methods": {}}
    for m in methods:
        med = statistics.median(times[m])
        result["methods"][m] = {"median_s": med, "images_per_s": args.batch / med, "vs_finetune": med / ref}
        print(f"{m:10s} {1000 * med:8.1f} ms/step {args.batch / med:8.1f} img/s  {med / ref:5.2f}× fine-tune")
    print(f"device: {result['device']}")
    if args.ratio_rounds:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import step_ratio

        table = step_ratio.ratio_table(["mobilenet_v2", "resnet18"], [64, 128], 32, args.ratio_rounds, device,
                                       torch.cuda.synchronize)
        print("\n" + table.to_markdown(index=False, floatfmt=".2f"))
        result["step_ratios"] = table.to_dict(orient="records")
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
