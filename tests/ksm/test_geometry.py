"""Layer geometry for hwsim: hooks on a hand-built net, and the bundled tables (layers and graph, exported
through hwsim's ONNX reader) against torchvision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from ksm.network.bundle_networks import FOLDER, NETWORKS, network_table
from ksm.network.geometry import layer_records


def test_records_cover_grouped_depthwise_biasless_and_linear() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Conv2d(8, 16, (1, 3), padding=(0, 1), groups=2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    recs = layer_records(net, (15, 15))
    assert [r["name"] for r in recs] == ["0", "1", "2", "5"]
    assert recs[0] == {"name": "0", "kind": "conv", "in_channels": 3, "out_channels": 8, "kernel": [3, 3],
                       "stride": [2, 2], "padding": [1, 1], "groups": 1, "bias": False,
                       "input_hw": [15, 15], "output_hw": [8, 8]}
    assert recs[1]["groups"] == 8 and recs[1]["output_hw"] == [8, 8]
    assert recs[2]["kernel"] == [1, 3] and recs[2]["padding"] == [0, 1] and recs[2]["groups"] == 2
    assert recs[3]["kind"] == "linear" and recs[3]["in_channels"] == 16 and recs[3]["out_channels"] == 5


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bundled_tables_match_torchvision(name: str) -> None:
    committed = json.loads((FOLDER / f"{name}.json").read_text())
    assert committed == json.loads(json.dumps(network_table(name)))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bundled_layers_are_the_forward_hooks_layers(name: str) -> None:
    """The table's layers come from the ONNX reader; the forward hooks of ksm.network.geometry (what ksm-train
    records in run.json) give the same layers, field for field, so a run folder maps onto the bundled graph."""
    committed = json.loads((FOLDER / f"{name}.json").read_text())
    hooks = layer_records(NETWORKS[name](weights=None), (224, 224))
    assert committed["layers"] == json.loads(json.dumps(hooks))


def test_resnet50_table_has_every_conv() -> None:
    table = json.loads((Path(FOLDER) / "resnet50.json").read_text())
    kinds = [r["kind"] for r in table["layers"]]
    assert kinds.count("conv") == 53 and kinds.count("linear") == 1
