"""Vela cycles for a second set of layers the ``ethos_u55`` profile was not fitted to, from deployed networks.

``scripts/vela_fresh_layers.py`` made the first independent set (``tests/hwsim/fixtures/vela/fresh``). This
script makes a second, disjoint from it and from the fitted set (``tests/hwsim/fixtures/vela/sram_only_1ghz``),
by the same method and the same code (it imports ``vela_fresh_layers`` and passes it these models and the
folder ``tests/hwsim/fixtures/vela/fresh2``): int8 TFLite models built in Keras with random weights (seed 0);
Vela 5.2.0 for ``ethos-u55-256``, its Ethos_U55_High_End_Embedded system config at the profile's 1 GHz, memory
mode Sram_Only; Regor's debug database read per operator. The layers are those of networks run on Ethos-U55:
DS-CNN keyword spotting and ResNet-8 (MLPerf Tiny), MobileNetV1 0.25 at 96x96 (visual wake words / person
detection), EfficientNet-Lite0, MobileNetV3.

Never imported by the project. Exact commands (versions of the committed fixture: ethos-u-vela 5.2.0,
tensorflow-cpu 2.21.0 with keras 3.15.1, numpy 2.4.6, Python 3.11.7; onnx 1.23.2 in the project env)::

    VENV=$(mktemp -d)/vela-env
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install ethos-u-vela==5.2.0 tensorflow-cpu==2.21.0
    "$VENV/bin/python" scripts/vela_fresh2_layers.py vela --work "$(mktemp -d)"   # TFLite, Vela, *.json
    .venv/bin/python scripts/vela_fresh2_layers.py onnx                          # *.onnx, "onnx" in *.json

Each model is run as::

    vela NAME.tflite --accelerator-config ethos-u55-256 --config vela_u55_1ghz.ini \
        --system-config Ethos_U55_High_End_Embedded_1GHz --memory-mode Sram_Only \
        --verbose-performance --enable-debug-db --output-dir regor
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vela_fresh_layers as vf  # noqa: E402
import vela_reference as vr  # noqa: E402

OUT = vr.FIXTURES / "fresh2"
SCRIPT = Path(__file__).name

# name -> (input H, W, C; layers: (kind, C_out, kernel, stride, groups)), as vela_fresh_layers.MODELS: Keras
# padding 'same', bias on, no activation (batch norm folded, ReLU fused in the networks; left out here as there).
MODELS: dict[str, tuple[tuple[int, int, int], list]] = {
    # DS-CNN (MLPerf Tiny keyword spotting, 49x10 MFCC input): the stem, one depthwise-separable block, the
    # classifier of the larger KWS models (256 features -> 12 keywords).
    "dscnn_conv10x4s2_1to64_49x10": ((49, 10, 1), [("conv", 64, (10, 4), 2, 1)]),
    "dscnn_dw3x3_64_25x5": ((25, 5, 64), [("dw", 64, 3, 1, 1)]),
    "dscnn_conv1x1_64to64_25x5": ((25, 5, 64), [("conv", 64, 1, 1, 1)]),
    "kws_fc_256to12": ((1, 1, 256), [("fc", 12, 1, 1, 1)]),
    # MobileNetV1 0.25 at 96x96x3 (MLPerf Tiny visual wake words, person detection): stem, a stride-2
    # depthwise layer, a depthwise-separable block at 24x24, a 1x1 at 6x6.
    "mbv1_conv3x3s2_3to8_96": ((96, 96, 3), [("conv", 8, 3, 2, 1)]),
    "mbv1_dw3x3s2_16_48": ((48, 48, 16), [("dw", 16, 3, 2, 1)]),
    "chain_mbv1_dw3x3_32_conv1x1_32to32_24": ((24, 24, 32), [("dw", 32, 3, 1, 1), ("conv", 32, 1, 1, 1)]),
    "mbv1_conv1x1_128to128_6": ((6, 6, 128), [("conv", 128, 1, 1, 1)]),
    # ResNet-8 (MLPerf Tiny image classification, CIFAR-10 32x32): a 3x3 layer of the first stack and the
    # second stack's 1x1 stride-2 shortcut.
    "resnet8_conv3x3_16to16_32": ((32, 32, 16), [("conv", 16, 3, 1, 1)]),
    "resnet8_conv1x1s2_16to32_32": ((32, 32, 16), [("conv", 32, 1, 2, 1)]),
    # EfficientNet-Lite0 (224x224), stage 3 (40 channels, 28x28, MBConv6 k5): the 5x5 depthwise layer on the
    # 240 expanded channels and the 240->40 projection.
    "effnetlite_dw5x5_240_28": ((28, 28, 240), [("dw", 240, 5, 1, 1)]),
    "effnetlite_conv1x1_240to40_28": ((28, 28, 240), [("conv", 40, 1, 1, 1)]),
    # MobileNetV3-Small's first bottleneck (3x3 stride-2 depthwise on 16 channels at 112x112) and
    # MobileNetV3-Large's head (1x1 960->1280 on the pooled 1x1 map).
    "mbv3_dw3x3s2_16_112": ((112, 112, 16), [("dw", 16, 3, 2, 1)]),
    "mbv3_conv1x1_960to1280_1": ((1, 1, 960), [("conv", 1280, 1, 1, 1)]),
    # A 3x3 16->32 layer at 48x48 (person-detection and small-detector backbones).
    "conv3x3_16to32_48": ((48, 48, 16), [("conv", 32, 3, 1, 1)]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    v = sub.add_parser("vela", help="TFLite models, Vela runs, JSON (TensorFlow+Vela env)")
    v.add_argument(
        "--work", type=Path, required=True, help="scratch folder for the .tflite files and Vela output"
    )
    v.add_argument("--only", nargs="*", choices=list(MODELS), help="make only these models (default: all)")
    sub.add_parser("onnx", help="ONNX twins (project env, needs onnx)")
    args = ap.parse_args(argv)
    if args.step == "vela":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        vf.vela_step(args.work.resolve(), args.only, MODELS, OUT)
    else:
        vf.onnx_step(MODELS, OUT, SCRIPT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
