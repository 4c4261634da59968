"""Load a dataset once, as uint8 arrays (N x C x H x W), with a seeded validation split.

CIFAR-10 is read from torchvision's on-disk layout by parsing the pickled batches directly
(no integrity check, so a rebuilt copy without `filenames` reads too), and downloaded through
torchvision when missing. Image folders (`root/train/<class>/*.png`, `root/test/<class>/...`)
are decoded once and resized to the space's image size.
"""
from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searcher.errors import UserError

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DataError(UserError):
    """The dataset is missing or unreadable."""


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # uint8, N x C x H x W
    y: np.ndarray  # int64, N

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class SearchData:
    """What every trial of a search trains and validates on (never the test split)."""
    train: Split
    val: Split
    classes: list[str]
    mean: list[float]  # per channel, on the 0..1 scale, from the training split
    std: list[float]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]


# ----------------------------------------------------------------------------- CIFAR-10

def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


def _cifar_folder(data_dir: Path, download: bool) -> Path:
    for folder in (data_dir / CIFAR_FOLDER, data_dir):
        if (folder / CIFAR_TEST).is_file() and all((folder / b).is_file() for b in CIFAR_TRAIN):
            return folder
    if not download:
        raise DataError(f"CIFAR-10 not found in {data_dir}; pass --data-dir with the folder that "
                        f"holds {CIFAR_FOLDER}/")
    try:
        from torchvision.datasets import CIFAR10
        CIFAR10(str(data_dir), train=True, download=True)
    except Exception as exc:  # offline, disk full, ...: all end the same way for the user
        raise DataError(f"CIFAR-10 not found in {data_dir} and the download failed "
                        f"({type(exc).__name__}: {exc}); pass --data-dir or set SEARCHER_DATA_DIR "
                        f"to a folder that holds {CIFAR_FOLDER}/") from None
    return data_dir / CIFAR_FOLDER


def _cifar_classes(folder: Path) -> list[str]:
    path = folder / "batches.meta"
    if path.is_file():
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="bytes")
        names = meta.get(b"label_names", meta.get("label_names"))  # Python 2 or 3 pickles
        if names:
            return [n.decode() if isinstance(n, bytes) else n for n in names]
    return [str(i) for i in range(10)]


def load_cifar10(data_dir: str | Path, train: bool = True, download: bool = True
                 ) -> tuple[Split, list[str]]:
    folder = _cifar_folder(Path(data_dir), download)
    try:
        parts = [_read_batch(folder / b) for b in (CIFAR_TRAIN if train else [CIFAR_TEST])]
    except Exception as exc:
        raise DataError(f"cannot read CIFAR-10 batches in {folder}: {exc}") from None
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Split(x, y), _cifar_classes(folder)


# ----------------------------------------------------------------------------- image folders

def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def load_image_folder(root: str | Path, part: str, image_size: int,
                      classes: list[str] | None = None) -> tuple[Split, list[str]]:
    folder = Path(root) / part
    if not folder.is_dir():
        raise DataError(f"image folder {folder} not found; expected {root}/{part}/<class>/*.png|jpg")
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if len(classes) < 2 or not files:
        raise DataError(f"{folder} needs at least two class folders with images in them")
    try:
        with ThreadPoolExecutor() as pool:  # PIL decodes without the GIL
            images = list(pool.map(lambda p: _decode(p, image_size), files))
    except Exception as exc:
        raise DataError(f"cannot read an image under {folder}: {exc}") from None
    return Split(np.stack(images), np.asarray(labels, np.int64)), classes


# ----------------------------------------------------------------------------- the search's data

def split_validation(data: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    order = np.random.default_rng(seed).permutation(len(data))
    n_val = max(1, int(round(len(data) * fraction)))
    val, train = order[:n_val], order[n_val:]
    return Split(data.x[train], data.y[train]), Split(data.x[val], data.y[val])


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    # dtype= makes numpy reduce in float64 blocks instead of copying the whole array to float.
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0
    std = x.std(axis=(0, 2, 3), dtype=np.float64) / 255.0 + 1e-6
    return mean.tolist(), std.tolist()


def load_split(dataset: str, data_dir: str | Path, part: str, image_size: int = 32,
               classes: list[str] | None = None) -> tuple[Split, list[str]]:
    """The full `part` ("train" or "test") of a dataset, with its class names."""
    if dataset == "cifar10":
        return load_cifar10(data_dir, train=(part == "train"))
    return load_image_folder(data_dir, part, image_size, classes)


def load_search_data(dataset: str, data_dir: str | Path, image_size: int, val_fraction: float,
                     seed: int) -> SearchData:
    full, classes = load_split(dataset, data_dir, "train", image_size)
    train, val = split_validation(full, val_fraction, seed)
    mean, std = channel_stats(train.x)
    return SearchData(train, val, classes, mean, std)
