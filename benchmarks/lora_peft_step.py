"""Training-step time of ksm.methods.lora_adapters against Hugging Face PEFT's LoRA on the same convs, interleaved.

Usage (PEFT is not a dependency of ksm: install it into a throwaway virtualenv that also sees
torch, e.g. ``python3 -m venv /tmp/peftvenv``, a ``.pth`` file naming this project's site-packages,
``/tmp/peftvenv/bin/pip install peft``)::

    PYTHONPATH=. /tmp/peftvenv/bin/python benchmarks/lora_peft_step.py [--size 64] [--rank 8] [--rounds 8]

Both adapt the same layers (every ungrouped conv of MobileNetV2, depthwise left out, as
``ksm-train --method lora`` does) at the same rank and alpha, train task BatchNorm and the head as
well, and take Adam steps on batch 32; the two are timed step by step in turn so that both see the
same machine load. It also checks that the two compute the same function: PEFT's model with
ksm.methods.lora_adapters's adapter copied in under PEFT's key names gives the same logits.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch import nn
from torch.nn import functional as F


def _train_mode(model: nn.Module) -> list[nn.Parameter]:
    """Task BatchNorm and the head trainable, as ksm's LoRA method trains them."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def base_features(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    model.load_state_dict(state)
    return model.train().features(x)


def main() -> None:
    import peft

    from ksm.methods.lora_adapters import LoRA, branches, to_peft

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = torch.randn(32, 3, args.size, args.size), torch.randint(0, 10, (32,))

    ours = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    base = {k: v.clone() for k, v in ours.state_dict().items()}
    method = LoRA("mobilenet_v2", rank=args.rank, alpha=8.0)
    method.prepare(ours)
    method.reset(ours, base, 10)
    targets = [name for name, _ in branches(ours)]

    theirs = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    theirs.load_state_dict(base)
    config = peft.LoraConfig(r=args.rank, lora_alpha=8, target_modules=targets, modules_to_save=["classifier.1"])
    theirs = peft.get_peft_model(theirs, config)

    # the same function: our adapter (B made non-zero) under PEFT's names gives PEFT's logits
    with torch.no_grad():
        for _, b in branches(ours):
            nn.init.normal_(b.lora_B, std=0.02)
        tensors = {k: v for k, (v, _) in method.state(ours).items()}
        head = {f"base_model.model.classifier.1.{k}": v for k, v in ours.classifier[1].state_dict().items()}
        peft.set_peft_model_state_dict(theirs, {**to_peft(tensors), **head})
        ours.train(), theirs.train()  # batch statistics: a random backbone's eval-mode activations vanish
        mine, pefts = ours.features(x), theirs.base_model.model.features(x)
        changed = (mine - base_features(base, x)).abs().max().item()
        diff = (mine - pefts).abs().max().item()
    print(f"peft {peft.__version__}: same adapter, max |feature difference| {diff:.2e} "
          f"(the adapter itself moves them by {changed:.2e})")

    steps = {}
    for name, model in (("ksm.methods.lora_adapters", ours), ("peft", theirs)):
        model.train()
        optimizer = torch.optim.Adam(_train_mode(model), lr=1e-3)

        def step(model: nn.Module = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        step()  # warm-up
        steps[name] = step
    times: dict[str, list[float]] = {n: [] for n in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - began)
    print(f"mobilenet_v2 {args.size}x{args.size}, batch 32, rank {args.rank}, {len(targets)} convs adapted, "
          f"torch threads {torch.get_num_threads()}, {args.rounds} interleaved rounds (median step):")
    for name, values in times.items():
        print(f"  {name:9s} {1000 * statistics.median(values):7.1f} ms")


if __name__ == "__main__":
    main()
