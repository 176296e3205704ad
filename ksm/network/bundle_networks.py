"""Write the layer tables of the networks that ``hwsim`` bundles (``ksm-sim --network NAME``).

Run once, from the repository root: ``python -m ksm.network.bundle_networks``. Each table lists the
network's conv and linear layers at 224×224 (ImageNet input, 1000 classes) exactly as the
``layers`` records of ``run.json``, taken from torchvision's own model builders; a test in
``tests/ksm/test_bundled_networks.py`` checks the committed files against torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torchvision

from hwsim.fileio.atomic import atomic_write
from ksm.network.geometry import layer_records

NETWORKS = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50,
            "vgg16": torchvision.models.vgg16_bn, "mobilenet_v2": torchvision.models.mobilenet_v2}
INPUT_HW = (224, 224)
FOLDER = Path(__file__).resolve().parents[2] / "hwsim" / "networks"


def network_table(name: str) -> dict[str, Any]:
    """The bundled table of one network (VGG-16 is torchvision's vgg16_bn: same convs, plus BN)."""
    model = NETWORKS[name](weights=None)
    return {"format": "ksm-layers/1", "network": name, "torchvision_builder": NETWORKS[name].__name__,
            "input_hw": list(INPUT_HW), "layers": layer_records(model, INPUT_HW)}


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name in NETWORKS:
        path = FOLDER / f"{name}.json"
        atomic_write(path, json.dumps(network_table(name), indent=1) + "\n")
        print(path)


if __name__ == "__main__":
    main()
