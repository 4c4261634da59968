import numpy as np
import pytest
from PIL import Image

from searcher.data import (DataError, load_cifar10, load_image_folder, load_search_data,
                           split_validation)

from conftest import write_cifar


def test_cifar_layout_without_filenames_is_read(tiny_cifar):
    train, classes = load_cifar10(tiny_cifar, train=True, download=False)
    test, _ = load_cifar10(tiny_cifar / "cifar-10-batches-py", train=False, download=False)
    assert train.x.shape == (400, 3, 32, 32) and train.x.dtype == np.uint8
    assert test.x.shape == (80, 3, 32, 32) and train.y.dtype == np.int64
    assert classes[:2] == ["class0", "class1"] and len(classes) == 10


def test_validation_split_is_seeded_and_disjoint():
    x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    split = lambda seed: split_validation(_split(x), 0.1, seed)  # noqa: E731
    (tr1, va1), (_, va2), (_, va3) = split(0), split(0), split(1)
    assert len(va1) == 10 and len(tr1) == 90
    assert set(tr1.x.ravel()).isdisjoint(va1.x.ravel())
    assert (va1.x == va2.x).all() and not (va1.x == va3.x).all()


def _split(x):
    from searcher.data import Split
    return Split(x, np.zeros(len(x), np.int64))


def test_search_data_has_train_stats_and_no_test(tiny_cifar):
    data = load_search_data("cifar10", tiny_cifar, 32, 0.1, seed=0)
    assert len(data.train) == 360 and len(data.val) == 40
    assert data.image_shape == (3, 32, 32)
    expected = data.train.x.astype(np.float64).mean(axis=(0, 2, 3)) / 255
    np.testing.assert_allclose(data.mean, expected, rtol=1e-6)


def test_missing_cifar_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 not found .* --data-dir"):
        load_cifar10(tmp_path, download=False)


def test_image_folder_is_resized_and_labelled_by_folder(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 3), ("test", 2)):
        for name in ("cats", "dogs"):
            (tmp_path / part / name).mkdir(parents=True)
            for i in range(n):
                size = (40 + i, 30)  # sizes differ, as in real photo folders
                Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
                    tmp_path / part / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    train, classes = load_image_folder(tmp_path, "train", 16)
    test, _ = load_image_folder(tmp_path, "test", 16, classes)
    assert classes == ["cats", "dogs"]
    assert train.x.shape == (6, 3, 16, 16) and train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.x.shape == (4, 3, 16, 16)
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "nowhere", "train", 16)


def test_a_second_layout_root_is_found(tmp_path):
    write_cifar(tmp_path, per_batch=4)
    split, _ = load_cifar10(tmp_path / "cifar-10-batches-py", download=False)
    assert len(split) == 20
