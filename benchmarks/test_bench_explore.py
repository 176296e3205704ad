"""Speed of ksm-explore: a 10,000-point sweep of ResNet-50 (the issue's goal: under a minute on two cores).

Run: pytest benchmarks/test_bench_explore.py -s (prints points/s). The sweep: 10 on-chip SRAM sizes x
10 array heights x 10 array widths x 5 mask-scale precisions = 5,000 edge_npu designs, each costing
ResNet-50 with KSM masks folded and on the fly. For scale: ZigZag 3.9.1 (``get_hardware_performance_zigzag``,
LOMA energy optimisation) needs a median 5.35 s for ONE layer on this machine (0.52-16.8 s over the 18
single layers of tests/hwsim/fixtures/zigzag_cases.json, their ``wall_s``, read below), i.e. minutes per
ResNet-50 point.

The plain ``pytest`` of the README and CI (the test paths of pyproject.toml, no path named) runs the same
sweep at a tenth of the size, 1,000 points on 2 processes, and checks the same things (every point costed,
both modes, every design); naming this file or ``benchmarks/`` on the command line, or
``--benchmark-enable``, runs the 10,000 points. The speed is what this file is for, and it asserts no time.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

from hwsim.explore.ksm_explore import explore

SPEC = """
name: bench-resnet50-10k
profiles: [edge_npu]
axes:
  levels.sram_1MB.size_bytes: {log: [65536, 16777216], num: 10, integer: true}
  array.rows: [4, 8, 12, 16, 24, 32, 48, 64, 96, 128]
  array.cols: [4, 8, 12, 16, 24, 32, 48, 64, 96, 128]
  precision_bits.mask_scale: [1, 2, 4, 8, 16]
workloads: [{network: resnet50}]
methods: [ksm]
modes: [folded, on_the_fly]
tasks: 8
"""
# the suite's run: 5 sizes x 5 heights x 4 widths x 5 precisions = 500 designs x 2 modes = 1,000 points
SUITE_AXES = {
    "  levels.sram_1MB.size_bytes: {log: [65536, 16777216], num: 10, integer: true}":
        "  levels.sram_1MB.size_bytes: {log: [65536, 16777216], num: 5, integer: true}",
    "  array.rows: [4, 8, 12, 16, 24, 32, 48, 64, 96, 128]": "  array.rows: [4, 12, 32, 64, 128]",
    "  array.cols: [4, 8, 12, 16, 24, 32, 48, 64, 96, 128]": "  array.cols: [8, 24, 48, 96]",
}
# ZigZag's own time per layer, as its reference runs recorded it (the one figure the docs quote)
_WALL = sorted(c["wall_s"] for c in json.loads(
    (Path(__file__).resolve().parents[1] / "tests" / "hwsim" / "fixtures" / "zigzag_cases.json").read_text())["cases"])
ZIGZAG_SECONDS_PER_LAYER = (_WALL[0], statistics.median(_WALL), _WALL[-1])
RESNET50_LAYERS = 54


def _full_size(config: pytest.Config) -> bool:
    """The whole 10,000 points when asked for by path or with --benchmark-enable; a tenth in the suite's run."""
    named = config.args_source != pytest.Config.ArgsSource.TESTPATHS
    return named or not config.getoption("benchmark_disable", default=True)


@pytest.mark.slow
def test_10k_point_resnet50_sweep_under_a_minute(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    text, points, designs = SPEC, 10_000, 5_000
    if not _full_size(request.config):
        for full, part in SUITE_AXES.items():
            assert full in text
            text = text.replace(full, part)
        points, designs = 1_000, 500
    spec = tmp_path / "bench.yaml"
    spec.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    result = explore(spec, tmp_path / "out", workers=2, progress=False, figures=False)
    wall = time.perf_counter() - start
    frame, stats = result["frame"], result["stats"]
    assert len(frame) == points and stats["costed"] == points
    assert frame["mode"].value_counts().to_dict() == {"folded": designs, "on_the_fly": designs}
    assert frame["energy_j"].gt(0).all() and frame["latency_s"].gt(0).all()
    rate = len(frame) / wall
    low, median, high = ZIGZAG_SECONDS_PER_LAYER
    print(f"\n{points:,} ResNet-50 points in {wall:.1f} s end to end ({rate:.0f} points/s; costing alone "
          f"{stats['rate']:.0f} points/s on 2 processes); ZigZag: median {median:.2f} s per layer "
          f"({low:.2f}-{high:.1f} s), ~{median * RESNET50_LAYERS:.0f} s per ResNet-50 point")
