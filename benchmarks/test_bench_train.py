"""Training-step and folding cost of every method, timed in one session so the ratios compare.

Run: ``.venv/bin/python -m pytest benchmarks/test_bench_train.py --benchmark-enable
--benchmark-json=.benchmarks/train.json`` then ``.venv/bin/python benchmarks/ratios.py
.benchmarks/train.json`` for each method's step time relative to fine-tuning. Without
``--benchmark-enable`` (the default in CI) each case runs once as a correctness test.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ksm.backbones import BackboneSpec
from ksm.pipeline import RunSpec, build

BATCH, SIZE, CLASSES = 32, 64, 10


def _step_fn(arch: str, method: str):
    torch.manual_seed(0)
    model, m, backbone, _ = build(RunSpec(method=method, backbone=BackboneSpec(arch, "none")))
    m.reset(model, backbone, CLASSES)
    body, head = m.trainable(model)
    optimizer = torch.optim.Adam([p for p in body + head])
    m.train_mode(model)
    x, y = torch.randn(BATCH, 3, SIZE, SIZE), torch.randint(0, CLASSES, (BATCH,))

    def step() -> float:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


@pytest.mark.benchmark(group="train-step")
@pytest.mark.parametrize("arch", ["mobilenet_v2", "resnet18"])
@pytest.mark.parametrize("method", ["ksm", "piggyback", "finetune", "feature", "lora"])
def test_train_step(benchmark, arch: str, method: str) -> None:
    step = _step_fn(arch, method)
    step()  # warm up oneDNN's kernels outside the timing
    loss = benchmark.pedantic(step, rounds=8, warmup_rounds=1, iterations=1)
    assert loss == loss and loss > 0  # finite, positive cross-entropy


@pytest.mark.benchmark(group="fold")
def test_fold_resnet50(benchmark) -> None:
    model, m, backbone, _ = build(RunSpec(method="ksm", backbone=BackboneSpec("resnet50", "none")))
    m.reset(model, backbone, CLASSES)
    folded = benchmark.pedantic(m.fold, args=(model,), rounds=3, iterations=1)
    assert folded.fc.out_features == CLASSES
