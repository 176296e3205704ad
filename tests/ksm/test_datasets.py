"""Readers of the default suite's published formats and of Piggyback's image-folder layout."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ksm.cli.ksm_train import main
from ksm.data.datasets import (_NumpyOnlyUnpickler, folder_task, limit_train, load_digits, normalise_gray,
                               read_idx, read_numpy_pickle, stratified_split, suite_task)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip_and_truncation(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "ok.gz", images)
    assert np.array_equal(read_idx(tmp_path / "ok.gz"), images)
    with gzip.open(tmp_path / "bad.gz", "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz")


def test_numpy_pickle_reader_refuses_other_objects(tmp_path: Path) -> None:
    good = tmp_path / "good.gz"
    with gzip.open(good, "wb") as handle:
        pickle.dump(np.arange(6).reshape(2, 3), handle)
    assert read_numpy_pickle(good).shape == (2, 3)
    evil = tmp_path / "evil.gz"
    with gzip.open(evil, "wb") as handle:
        pickle.dump({"x": Path("/")}, handle)  # a class outside numpy
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_numpy_pickle(evil)
    assert _NumpyOnlyUnpickler.ALLOWED  # the allow-list is explicit


def test_stratified_split_is_disjoint_balanced_and_fixed() -> None:
    labels = np.repeat(np.arange(4), 25)
    tr, te = stratified_split(labels, 60, 40)
    assert len(tr) == 60 and len(te) == 40 and not set(tr) & set(te)
    assert np.bincount(labels[tr]).tolist() == [15] * 4
    assert np.array_equal(tr, stratified_split(labels, 60, 40)[0])


def test_digits_split_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path))
    task = suite_task("digits", (16, 16), max_train=100)
    meta = task.describe()
    assert meta["train_size"] == 100 and meta["test_size"] == 359 and meta["num_classes"] == 10
    assert meta["split_seed"] == 0 and meta["input_size"] == [16, 16]
    assert (tmp_path / "data" / "digits-16x16.npz").exists()  # converted arrays are cached
    x, y = next(task.batches("train", 8, torch.Generator().manual_seed(0)))
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_limit_train_keeps_the_test_split() -> None:
    raw = load_digits()
    small = limit_train(raw, 50)
    assert len(small["y_train"]) == 50 and len(small["y_test"]) == len(raw["y_test"])


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(ValueError, match="fashion_mnist"):
        suite_task("cifar10", (32, 32))


def _image_folder(root: Path, task: str = "flowers") -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("daisy", "rose"):
            folder = root / task / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return root


def test_image_folder_task_with_piggyback_transforms(tmp_path: Path) -> None:
    task = folder_task(_image_folder(tmp_path), "flowers", input_size=32, workers=0)
    assert task.num_classes == 2 and task.sizes == {"train": 6, "test": 4}
    x, y = next(task.batches("train", 4, torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 32, 32)
    x, _ = next(task.batches("test", 4, None))
    assert x.shape == (4, 3, 32, 32)


def test_cropped_variant_resizes_without_cropping(tmp_path: Path) -> None:
    task = folder_task(_image_folder(tmp_path, "cubs_cropped"), "cubs_cropped", input_size=24, workers=0)
    assert task.extra["augmentation"] == "piggyback_cropped"
    x, _ = next(task.batches("test", 2, None))
    assert x.shape == (2, 3, 24, 24)


def test_layout_errors_say_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Piggyback layout"):
        folder_task(tmp_path, "flowers")
    (tmp_path / "flowers" / "train" / "a").mkdir(parents=True)
    (tmp_path / "flowers" / "train" / "b").mkdir(parents=True)
    (tmp_path / "flowers" / "test").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"train/a: no images"):
        folder_task(tmp_path, "flowers")


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    bad = root / "flowers" / "test" / "rose" / "0.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"rose/0\.jpg: not a readable image"):  # before any training
        folder_task(root, "flowers", input_size=32, workers=0)


@pytest.mark.parametrize("content", [b"", b"not an image", b"\xff\xd8\xff"])
def test_a_bad_image_in_the_test_split_is_refused_before_training(tmp_path: Path, content: bytes) -> None:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            folder = tmp_path / "data" / "flowers" / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "data" / "flowers" / "test" / "b" / "1.png").write_bytes(content)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, ["--task", "flowers", "--data-root", str(tmp_path / "data"), "--runs-dir",
                                       str(runs), "--weights", "none", "--input-size", "16", "--no-progress"])
    assert result.exit_code == 1 and "test/b/1.png: not a readable image" in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not runs.exists() or not any(runs.iterdir())


# Issue 26, item 4: a data folder is checked, both splits, before any training.
def _tiny_folder(root: Path, classes: tuple[str, ...] = ("a", "b"), n: int = 3) -> Path:
    """DIR/flowers/{train,test}/<class>/<i>.jpg, 8×8 images."""
    for split in ("train", "test"):
        for cls in classes:
            folder = root / "flowers" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.jpg")
    return root


def test_a_one_class_folder_is_refused(tmp_path: Path) -> None:  # it reported "top-1 100%"
    with pytest.raises(ValueError, match=r"flowers/train: 1 class folder\(s\) \['a'\]; a classifier needs"):
        folder_task(_tiny_folder(tmp_path, ("a",)), "flowers", input_size=8, workers=0)


@pytest.mark.parametrize("target", ["..", "."])
def test_a_symlink_loop_is_refused_not_counted(tmp_path: Path, target: str) -> None:  # 126 images for 6 files
    root = _tiny_folder(tmp_path)
    (root / "flowers" / "train" / "a" / "loop").symlink_to(target)
    with pytest.raises(ValueError, match=r"train/a/loop: a link to .*a folder already read"):
        folder_task(root, "flowers", input_size=8, workers=0)


def test_a_class_folder_linking_to_itself_is_refused(tmp_path: Path) -> None:  # it was an OSError traceback
    root = _tiny_folder(tmp_path)
    (root / "flowers" / "test" / "c").symlink_to("c")
    with pytest.raises(ValueError, match=r"test/c: a symbolic link that loops"):
        folder_task(root, "flowers", input_size=8, workers=0)


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_half_written_jpeg_is_refused_before_training(tmp_path: Path, split: str) -> None:
    root = _tiny_folder(tmp_path)  # its header passed verify(); decoding failed mid-run, a traceback
    image = root / "flowers" / split / "b" / "1.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    image.write_bytes(image.read_bytes()[:1500])  # of 3,093 bytes
    with pytest.raises(ValueError, match=rf"{split}/b/1\.jpg: not a readable image \(OSError\)"):
        folder_task(root, "flowers", input_size=8, workers=0)


def test_a_class_of_one_split_only_is_refused(tmp_path: Path) -> None:
    root = _tiny_folder(tmp_path)
    (root / "flowers" / "test" / "b").rename(root / "flowers" / "test" / "c")
    with pytest.raises(ValueError, match=r"flowers/train/b: a class of train only"):
        folder_task(root, "flowers", input_size=8, workers=0)


def test_a_good_folder_lists_what_imagefolder_lists(tmp_path: Path) -> None:
    """Nested folders, upper-case suffixes, other files and a class folder linked from elsewhere: the same
    samples, in the same order, as torchvision's ImageFolder (so a good folder trains exactly as before)."""
    from torchvision.datasets import ImageFolder

    root = _tiny_folder(tmp_path / "data", ("a", "b", "c"))
    for split in ("train", "test"):
        nested = root / "flowers" / split / "a" / "z" / "deeper"
        nested.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(nested / "X.JPG")
        (root / "flowers" / split / "b" / "notes.txt").write_text("not an image")
        elsewhere = tmp_path / f"elsewhere-{split}"
        (root / "flowers" / split / "c").rename(elsewhere)
        (root / "flowers" / split / "c").symlink_to(elsewhere)
    task = folder_task(root, "flowers", input_size=8, workers=0)
    for split in ("train", "test"):
        assert task.sizes[split] == 10
        reference = ImageFolder(str(root / "flowers" / split)).samples
        x, y = next(task.batches(split, 10, None))
        assert [label for _, label in reference] == y.tolist() and x.shape == (10, 3, 8, 8)


def test_a_truncated_cache_is_converted_again_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path))
    first = suite_task("digits", (8, 8))
    cache = tmp_path / "data" / "digits-8x8.npz"
    cache.write_bytes(cache.read_bytes()[:5000])  # it was a BadZipFile traceback
    again = suite_task("digits", (8, 8))
    assert [r.message for r in caplog.records] == [f"{cache}: unreadable cache (truncated or corrupt: "
                                                   f"BadZipFile); converting digits again from its source"]
    for split in ("train", "test"):
        assert torch.equal(next(first.batches(split, 400, None))[0], next(again.batches(split, 400, None))[0])
    with np.load(cache) as rebuilt:
        assert len(rebuilt["y_train"]) == 1438


def test_a_good_cache_is_read_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("KSM_CACHE_DIR", str(tmp_path))
    (tmp_path / "data").mkdir()
    arrays = {"x_train": np.full((4, 8, 8), 7, np.uint8), "y_train": np.array([0, 1, 0, 1]),
              "x_test": np.full((2, 8, 8), 9, np.uint8), "y_test": np.array([1, 0])}
    np.savez(tmp_path / "data" / "digits-8x8.npz", **arrays)
    task = suite_task("digits", (8, 8))
    assert task.sizes == {"train": 4, "test": 2} and not caplog.records
    x, y = next(task.batches("test", 2, None))
    assert y.tolist() == [1, 0]
    assert torch.equal(x, normalise_gray(torch.full((2, 8, 8), 9, dtype=torch.uint8)))
