"""Load a dataset once, as uint8 arrays (N x C x H x W), with a seeded validation split.

CIFAR-10 is read from torchvision's on-disk layout by parsing the pickled batches directly
(no integrity check, so a rebuilt copy without `filenames` reads too), admitting only the types a
batch holds: a batch file that would run code is refused, and downloaded through
torchvision when missing. Image folders (`root/train/<class>/*.png`, `root/test/<class>/...`)
are decoded once and resized to the space's image size.
"""
from __future__ import annotations

import hashlib
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
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
    skipped: tuple[str, ...] = ()  # image files that could not be decoded and were left out

    def __len__(self) -> int:
        return len(self.y)

    @cached_property
    def digest(self) -> str:
        """Its images and labels, hashed once: what tells two splits apart in MLflow and in warm
        start. Every byte, not MLflow's default (the first 10,000 values: three CIFAR images), so
        two splits share a digest only if they hold the same images and labels in the same order."""
        h = hashlib.blake2b(digest_size=8)
        for array in (self.x, self.y):
            h.update(str(array.shape).encode())
            h.update(memoryview(np.ascontiguousarray(array)).cast("B"))
        return h.hexdigest()


@dataclass(frozen=True)
class SearchData:
    """What every trial of a search trains and validates on (never the test split)."""
    train: Split
    val: Split
    classes: list[str]
    mean: list[float]  # per channel, on the 0..1 scale, from the training split
    std: list[float]
    skipped: tuple[str, ...] = ()  # unreadable image files left out of train/val (logged in MLflow)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]


# ----------------------------------------------------------------------------- CIFAR-10

def _latin1(text: str, encoding: str) -> bytes:
    # Python 3 writes bytes in pickle protocol 2 as _codecs.encode(text, "latin1"); no other codec.
    if encoding != "latin1":
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


# Every global a CIFAR-10 batch can hold: a uint8 ndarray (numpy 1 and 2 spell its module
# differently; protocol 5 rebuilds it with _frombuffer), the rest is dicts, lists, str, bytes and
# ints, which need none. Anything else in a pickle is code that loading it would run. The numpy
# functions are taken from an array's own reduction, which finds them in any numpy version.
_CIFAR_GLOBALS = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): np.zeros(1, np.uint8).__reduce__()[0]
       for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): np.zeros(1, np.uint8).__reduce_ex__(5)[0]
       for core in ("core", "_core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class _Refused(Exception):
    """The pickle names something a CIFAR-10 batch never holds."""


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _CIFAR_GLOBALS[module, name]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except _Refused as refused:
        raise DataError(f"refusing the CIFAR-10 file {path}: its pickle names {refused}, which no "
                        f"CIFAR-10 batch holds, so loading it would run code; replace it from a "
                        f"copy you trust, or delete {path.parent} to have CIFAR-10 downloaded "
                        f"again") from None
    except Exception as exc:  # truncated, overwritten, not a pickle: the file is what is wrong
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: Exception) -> DataError:
    return DataError(f"cannot read the CIFAR-10 file {path} ({type(exc).__name__}: {exc}); it is "
                     f"damaged or incomplete: replace it from a good copy, or delete {path.parent} "
                     f"to have CIFAR-10 downloaded again")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    try:
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, np.int64)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
    except Exception as exc:  # a pickle, but not of a CIFAR-10 batch
        raise _damaged(path, exc) from None
    return x, y


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
        meta = _unpickle(path)
        names = meta.get(b"label_names", meta.get("label_names"))  # Python 2 or 3 pickles
        if names:
            return [n.decode() if isinstance(n, bytes) else n for n in names]
    return [str(i) for i in range(10)]


def load_cifar10(data_dir: str | Path, train: bool = True, download: bool = True
                 ) -> tuple[Split, list[str]]:
    folder = _cifar_folder(Path(data_dir), download)
    parts = [_read_batch(folder / b) for b in (CIFAR_TRAIN if train else [CIFAR_TEST])]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return Split(x, y), _cifar_classes(folder)


# ----------------------------------------------------------------------------- image folders

def decode_image(path: Path, size: int) -> np.ndarray | str:
    """The image as uint8 C x H x W, or why it cannot be read (empty, truncated, not an image)."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except Exception as exc:  # PIL raises many kinds for bad files; all mean "skip this one"
        return f"{type(exc).__name__}: {exc}"


def load_image_folder(root: str | Path, part: str, image_size: int,
                      classes: list[str] | None = None, strict: bool = False
                      ) -> tuple[Split, list[str]]:
    """Decode `root/part/<class>/*` once. Unreadable images (public downloads ship 0-byte and
    truncated files) are left out and listed in `Split.skipped`; with `strict` the first one is
    an error instead."""
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
    with ThreadPoolExecutor() as pool:  # PIL decodes without the GIL
        decoded = list(pool.map(lambda p: decode_image(p, image_size), files))
    bad = [(path, why) for path, why in zip(files, decoded) if isinstance(why, str)]
    if bad and strict:
        raise DataError(f"cannot read image {bad[0][0]} ({bad[0][1]}); remove or replace it, or "
                        f"run without --strict to skip unreadable images")
    if len(bad) == len(files):
        raise DataError(f"none of the {len(files)} images under {folder} can be read (first: "
                        f"{bad[0][0]}: {bad[0][1]}); check that they are image files")
    keep = [i for i, image in enumerate(decoded) if not isinstance(image, str)]
    return Split(np.stack([decoded[i] for i in keep]), np.asarray(labels, np.int64)[keep],
                 tuple(str(path) for path, _ in bad)), classes


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
               classes: list[str] | None = None, strict: bool = False) -> tuple[Split, list[str]]:
    """The full `part` ("train" or "test") of a dataset, with its class names."""
    if dataset == "cifar10":
        return load_cifar10(data_dir, train=(part == "train"))
    return load_image_folder(data_dir, part, image_size, classes, strict)


def load_search_data(dataset: str, data_dir: str | Path, image_size: int, val_fraction: float,
                     seed: int, strict: bool = False) -> SearchData:
    full, classes = load_split(dataset, data_dir, "train", image_size, strict=strict)
    train, val = split_validation(full, val_fraction, seed)
    mean, std = channel_stats(train.x)
    return SearchData(train, val, classes, mean, std, full.skipped)
