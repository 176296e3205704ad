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

from ksm.network.backbones import BackboneSpec
from ksm.training.pipeline import RunSpec, build

BATCH, SIZE, CLASSES = 32, 64, 10


def _step_fn(arch: str, method: str, *, batchnorm: str | None = None, device: str = "cpu", size: int | None = None,
             batch: int | None = None):
    """One training step of ``method`` (random weights and data: the cost does not depend on them)."""
    torch.manual_seed(0)
    size, batch = size or SIZE, batch or BATCH
    model, m, backbone, _ = build(RunSpec(method=method, backbone=BackboneSpec(arch, "none"), batchnorm=batchnorm))
    m.reset(model, backbone, CLASSES)
    model.to(device)
    body, head = m.trainable(model)
    optimizer = torch.optim.Adam([p for p in body + head])
    m.train_mode(model)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    if device.startswith("cuda"):
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

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


def test_step_ratio_table_runs() -> None:
    """benchmarks/step_ratio.py's row on a tiny case: every ratio is a finite positive number."""
    import step_ratio

    row = step_ratio.ratio_row("resnet18", 32, 4, rounds=1)
    assert all(0 < row[k] < 100 for k in row if "/" in k), row


@pytest.mark.benchmark(group="ksm-mask")
@pytest.mark.parametrize("mask_path", ["fused", "reference"])
def test_ksm_mask_forward_backward(benchmark, monkeypatch: pytest.MonkeyPatch, mask_path: str) -> None:
    """KSM's mask alone, forward and backward over every conv of MobileNetV2, on each path."""
    from ksm.methods.soft_masks import KernelSoftMask

    monkeypatch.setenv("KSM_FUSED_MASK", "1" if mask_path == "fused" else "0")
    torch.manual_seed(0)
    model, _, _, _ = build(RunSpec(method="finetune", backbone=BackboneSpec("mobilenet_v2", "none")))
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    masks = [KernelSoftMask(w.shape) for w in weights]
    for mask in masks:
        with torch.no_grad():
            mask.mask.add_(torch.randn_like(mask.mask) * 1e-2)  # some kernels off, a real soft part
    grads = [torch.randn_like(w) for w in weights]

    def run() -> str:
        outs = [mask(w) for mask, w in zip(masks, weights)]
        torch.autograd.backward(outs, grads)
        for mask in masks:
            mask.mask.grad = None
        return type(outs[0].grad_fn).__name__

    node = benchmark.pedantic(run, rounds=20, warmup_rounds=2, iterations=1)
    assert node.startswith("Fused" if mask_path == "fused" else "_KernelSoftMaskFn")
