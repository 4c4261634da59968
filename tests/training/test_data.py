import pickle

import numpy as np
import pytest
from conftest import write_cifar
from PIL import Image

from searcher.errors import UserError
from searcher.training.data import (
    DataError,
    load_cifar10,
    load_image_folder,
    load_search_data,
    split_validation,
)


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
    from searcher.training.data import Split
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


def test_a_truncated_cifar_batch_is_named_with_the_fix(tmp_path):
    write_cifar(tmp_path, per_batch=4)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # an interrupted copy
    with pytest.raises(DataError) as error:
        load_cifar10(tmp_path, download=False)
    message = str(error.value)
    assert str(batch) in message and "replace it" in message and "downloaded again" in message
    load_cifar10(tmp_path, train=False, download=False)  # the test batch is intact and still reads


def _photo_folder(root, bad):
    """root/train/{cats,dogs}/ with real PNG and JPEG files, plus `bad` {name: bytes} in cats/."""
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (root / "train" / name).mkdir(parents=True)
        for i, suffix in enumerate(("png", "jpg", "jpeg")):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                root / "train" / name / f"{i}.{suffix}")
    for filename, content in bad.items():
        (root / "train" / "cats" / filename).write_bytes(content)


def test_unreadable_images_are_skipped_and_listed(tmp_path):
    _photo_folder(tmp_path, {"666.jpg": b""})  # 0 bytes, as in the public cats-vs-dogs download
    cats = tmp_path / "train" / "cats"
    (cats / "7.jpg").write_bytes((cats / "1.jpg").read_bytes()[:200])  # a truncated JPEG
    split, classes = load_image_folder(tmp_path, "train", 16)
    assert classes == ["cats", "dogs"]
    assert split.x.shape == (6, 3, 16, 16) and split.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert sorted(split.skipped) == [str(cats / "666.jpg"), str(cats / "7.jpg")]
    data = load_search_data("folder", tmp_path, 16, 0.34, seed=0)
    assert data.skipped == split.skipped and len(data.train) + len(data.val) == 6


def test_strict_stops_at_the_first_unreadable_image(tmp_path):
    _photo_folder(tmp_path, {"666.jpg": b""})
    with pytest.raises(DataError, match=r"cannot read image .*666\.jpg.*without --strict"):
        load_search_data("folder", tmp_path, 16, 0.2, seed=0, strict=True)


def test_a_folder_of_unreadable_images_is_an_error(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / "train" / name).mkdir(parents=True)
        (tmp_path / "train" / name / "0.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 2 images .* can be read"):
        load_image_folder(tmp_path, "train", 16)


class _WritesMarker:
    """A pickle that would run code on load: `open(marker, "w")`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path):
    write_cifar(tmp_path, per_batch=4)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    marker = tmp_path / "ran"
    with open(batch, "wb") as f:  # a batch dropped into a shared folder by someone else
        pickle.dump({"labels": [0], "data": _WritesMarker(marker)}, f)
    with pytest.raises(UserError) as error:
        load_cifar10(tmp_path, download=False)
    message = str(error.value)
    assert str(batch) in message and "\n" not in message
    assert not marker.exists()
    load_cifar10(tmp_path, train=False, download=False)  # the other batches still read


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_cifar_batches_in_every_pickle_protocol_read(tmp_path, protocol):
    write_cifar(tmp_path, per_batch=4)
    folder = tmp_path / "cifar-10-batches-py"
    for name in ("data_batch_1", "test_batch"):  # the fixture's layout, rewritten in `protocol`
        batch = pickle.loads((folder / name).read_bytes())
        batch["data"] = np.ascontiguousarray(batch["data"])
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    test, _ = load_cifar10(tmp_path, train=False, download=False)
    assert test.x.shape == (4, 3, 32, 32) and test.y.shape == (4,)
