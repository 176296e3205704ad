"""Speed of hwsim (pytest-benchmark). Run: pytest benchmarks/test_bench_hwsim.py --benchmark-enable

Goal (issue #3): a full ResNet-50 in under 10 ms on one profile, >= 1000x faster per layer than ZigZag
(6-16 s per layer, shared/research/hwsim-anchors.md §1 and §3.4).
"""

from __future__ import annotations

import pytest

from hwsim import Layer, Workload, bundled_networks, bundled_profiles, load_network, load_profile, simulate


@pytest.mark.benchmark(group="hwsim")
def test_resnet50_one_profile(benchmark) -> None:
    work, profile = load_network("resnet50"), load_profile("edge_npu")
    result = benchmark(simulate, work, profile)
    assert result.macs == 4_089_184_256
    assert len(result.layers) == 54


@pytest.mark.benchmark(group="hwsim")
def test_resnet50_with_ksm_masks_on_the_fly(benchmark) -> None:
    work = load_network("resnet50")
    work = Workload(work.source, work.layers, method="ksm")
    result = benchmark(simulate, work, load_profile("eyeriss"), "on_the_fly")
    assert result.task.mask_storage_bits > 0


@pytest.mark.benchmark(group="hwsim")
def test_all_networks_all_profiles(benchmark) -> None:
    works = [load_network(n) for n in bundled_networks()]
    profiles = [load_profile(p) for p in bundled_profiles()]

    def run() -> list:
        return [simulate(w, p) for w in works for p in profiles]

    results = benchmark(run)
    assert len(results) == len(works) * len(profiles) >= 4 * 6
    assert all(r.energy_j > 0 for r in results)


@pytest.mark.benchmark(group="hwsim")
def test_zigzag_layer(benchmark) -> None:
    """The ResNet-18 conv3_x layer ZigZag needs 6.3 s (tpu_like) / 15.8 s (eyeriss_like) for (§3.4)."""
    layer = Layer("r18_conv3_3x3", "conv", 128, 128, (3, 3), (1, 1), (1, 1), 1, (28, 28), (28, 28))
    work = Workload("r18", (layer,))
    result = benchmark(simulate, work, load_profile("zigzag_eyeriss_like"))
    assert result.macs == 115_605_504
