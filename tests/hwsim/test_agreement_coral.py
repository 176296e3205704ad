"""Whole networks against published silicon: the Coral Edge TPU's time per inference (issue 23).

Coral publishes the time per inference of int8 models on its USB Accelerator (coral.ai, "Edge TPU performance
benchmarks", Table 1, column "Desktop CPU + USB Accelerator (USB 3.0) with Edge TPU"; the table and its source
are ``fixtures/coral/coral_table.json``). The networks here are exported from torchvision and timm with random
weights (``scripts/export_reference_graphs.py``; ``fixtures/coral/README.md`` gives the command), read through
the ONNX reader and costed in steady state (``--steady-state``: parameters that fit the 8 MB SRAM stay there
across inferences, as the Edge TPU compiler caches them) on the ``edge_tpu`` profile, which was not fitted to
any of them.

docs/hwsim.md's table is this file's output: ``.venv/bin/python tests/hwsim/test_agreement_coral.py``; its
``before`` columns are the same file run on the code before graphs: ``git worktree add ../before 9332a2a &&
PYTHONPATH=../before .venv/bin/python tests/hwsim/test_agreement_coral.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hwsim import load_profile, simulate
from hwsim.workload.onnx_reader import load_onnx

FIXTURES = Path(__file__).parent / "fixtures" / "coral"
TABLE = json.loads((FIXTURES / "coral_table.json").read_text(encoding="utf-8"))
RECORDS = {r["network"]: r for r in TABLE["records"]}
WITHIN = 1.5  # issue 23's bound on the ratio, either way
# Predicted faster than measured by more than WITHIN: every parameter and activation of these two networks fits
# on chip, so the profile's time is its 64 x 64 array's compute plus SRAM port time, and the chip sustains less
# on their depthwise layers than the mapping finds. Kept as strict expected failures, not tuned away.
TOO_FAST = ("mobilenet_v1", "mobilenet_v2")


def cost(network: str) -> tuple[float, dict]:
    """ksm-sim's steady-state latency (ms) of one Coral network on edge_tpu, and its result record."""
    work, _ = load_onnx(FIXTURES / f"{network}.onnx", warn=False)
    result = simulate(work, load_profile("edge_tpu"), steady_state=True)
    return result.latency_s * 1e3, result.to_dict(with_layers=False)


def comparison() -> pd.DataFrame:
    """One row per network: Coral's published time, ksm-sim's, their ratio, and where ksm-sim's time goes (also
    runs on the code before graphs, which lacks the memory plan's keys: ``PYTHONPATH=<old checkout>``)."""
    rows = []
    clock = load_profile("edge_tpu").clock_hz
    for network, rec in RECORDS.items():
        ms, d = cost(network)
        t = d["totals"]
        lb = t["latency_breakdown_cycles"]
        rows.append({"network": rec["coral_name"] + (" †" if rec.get("note") else ""),
                     "Coral (ms)": rec["coral_ms"], "ksm-sim (ms)": round(ms, 2),
                     "ratio": round(ms / rec["coral_ms"], 2),
                     "compute (ms)": round(lb["compute"] / clock * 1e3, 2),
                     "stalls (ms)": round(lb["stall"] / clock * 1e3, 2),
                     "waiting for USB (ms)": round(lb["onload"] / clock * 1e3, 2),
                     "weights over USB (MB)": round(t["dram_read_bytes"]["weights"] / 1e6, 2),
                     "activations over USB (MB)": round((t["dram_read_bytes"]["inputs"] + t["dram_write_bytes"]["outputs"])
                                                        / 1e6, 2)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("network", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, reason="predicted 1.6-1.8x faster than measured: the whole network sits on chip and the "
                        "profile's array (a third-party estimate) computes its depthwise layers faster than "
                        "the chip does")) if n in TOO_FAST else n for n in RECORDS])
def test_whole_network_within_1_5x_of_coral(network: str) -> None:
    ms, _ = cost(network)
    ratio = ms / RECORDS[network]["coral_ms"]
    assert 1 / WITHIN <= ratio <= WITHIN, f"{network}: ksm-sim {ms:.2f} ms vs Coral {RECORDS[network]['coral_ms']} ms"


def test_every_activation_stays_on_chip_and_only_the_weights_that_do_not_fit_cross_usb() -> None:
    """The mechanism behind the agreement: with the graph, no tensor of these networks is spilled to the host,
    and the USB time is the parameters beyond the room the SRAM leaves beside the activations (ResNet-50's
    25 MB, Inception v3's 24 MB, the last layers of EfficientNet-EdgeTPU-M), which the compiler streams every
    inference; a network whose parameters all fit crosses USB with the image and the logits only."""
    streamed = set()
    for network in RECORDS:
        work, _ = load_onnx(FIXTURES / f"{network}.onnx", warn=False)
        _, d = cost(network)
        res, host = d["residency"], d["totals"]["dram_read_bytes"]
        assert res["buffers_spilled"] == 0, network
        assert d["totals"]["dram_write_bytes"]["outputs"] == 1000, network  # the logits, int8
        h, w = RECORDS[network]["input_hw"]
        assert 3 * h * w <= host["inputs"] <= 3 * (h + 6) * (w + 6), network  # the image once, int8, padding included
        if len(res["weights_cached_layers"]) < len(work.layers):
            streamed.add(network)
            assert host["weights"] > 0 and res["weights_cached_bytes"] <= 8 * 2 ** 20, network
        else:
            assert host["weights"] == 0, network
    assert streamed == {"resnet50", "inception_v3", "efficientnet_edgetpu_m"}


if __name__ == "__main__":
    print(comparison().to_markdown(index=False))
