"""A classifier as data (safetensors and JSON): every layer kind a space can choose comes back
from its two files with the same outputs, and a file that is not the one whose SHA-256 was
given, or that does not describe a model, is refused in one line naming it."""
from __future__ import annotations

import json

import pytest
import torch

from searcher.errors import UserError
from searcher.training import portable
from searcher.training.model import ACTIVATIONS, Classifier, build_model

CLASSES = [str(i) for i in range(10)]


def _residual(**stage):
    return {"filters": 8, "residual": True, "batch_norm": True, **stage}


def _every_layer_kind(head: str) -> dict:
    acts = sorted(ACTIVATIONS)
    stages = [_residual(padding="valid", pool="strided", activation=acts[0]),
              *({"filters": 8, "activation": a, "pool": p, "batch_norm": True, "dropout": 0.1}
                for a, p in zip(acts[1:], ["max", "none", "avg", "none", "none", "none"])),
              _residual(filters=16, activation=acts[-1], pool="none")]
    return {"stages": stages, "head": head, "dense": [16], "head_dropout": 0.1,
            "head_activation": "gelu"}


def _trained_like(arch: dict) -> Classifier:
    """A model whose batch-norm statistics are not the defaults, as after training."""
    torch.manual_seed(0)
    model = Classifier(build_model(arch), [0.5, 0.4, 0.3], [0.25, 0.2, 0.2], CLASSES)
    model.train()
    with torch.no_grad():
        model(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    return model.eval()


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_every_layer_kind_comes_back_from_its_files(tmp_path, head):
    arch = _every_layer_kind(head)
    model = _trained_like(arch)
    digests = portable.write_model(tmp_path, model, arch, [3, 32, 32])
    assert sorted(digests) == sorted(portable.FILES)
    loaded, card = portable.read_model(tmp_path, digests, "the model")
    assert card["arch"] == arch and card["classes"] == CLASSES
    assert card["image_shape"] == [3, 32, 32]
    assert not loaded.training
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


@pytest.fixture
def written(tmp_path):
    arch = {"stages": [{"filters": 4, "batch_norm": True}], "head": "gap"}
    return tmp_path, portable.write_model(tmp_path, _trained_like(arch), arch, [3, 32, 32])


def _refused(folder, digests, *words):
    with pytest.raises(UserError) as refused:
        portable.read_model(folder, digests, "models:/m/1")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("models:/m/1: "), message
    assert len(message) < 400, message  # a very long value in a file is not echoed whole
    for word in words:
        assert word in message, message


def test_a_file_that_is_not_the_recorded_one_is_refused_before_it_is_parsed(written):
    folder, digests = written
    (folder / "weights.safetensors").write_bytes(b"\x80\x04 a pickle, say")
    _refused(folder, digests, "weights.safetensors is not the file that was registered",
             "refusing")


def test_missing_digests_or_files_are_refused(written):
    folder, digests = written
    _refused(folder, {"model.json": digests["model.json"]}, "no SHA-256 recorded for "
             "weights.safetensors")
    (folder / "model.json").unlink()
    _refused(folder, digests, "cannot read model.json")


@pytest.mark.parametrize("change, words", [
    (lambda card: "not json {", "model.json is not JSON"),
    (lambda card: [1, 2], "does not describe a searcher classifier"),
    (lambda card: {**card, "version": 99}, "format version 99"),
    (lambda card: {**card, "arch": "{[]: 1}"}, "arch is not an object"),
    (lambda card: {**card, "classes": [1, 2]}, "classes are not names"),
    (lambda card: {**card, "image_shape": [3, 32]}, "image_shape is not 3 positive integers"),
    (lambda card: {**card, "std": [0.2, 0.0, 0.2]}, "mean and std"),
    (lambda card: {**card, "arch": {"stages": [{"filters": 4, "kernel": "x" * 100_000}]}},
     "do not make a model"),
    (lambda card: {**card, "arch": {"stages": [{"filters": 5, "batch_norm": True}],
                                    "head": "gap"}}, "do not make a model"),
    (lambda card: {**card, "classes": ["cat", "dog"]}, "2 class names for the architecture's 10"),
])
def test_a_card_that_does_not_describe_its_weights_is_one_line(written, change, words):
    """Even with its digest recorded (a bug, or a registry someone wrote to), a card is checked."""
    folder, digests = written
    changed = change(json.loads((folder / "model.json").read_text()))
    data = changed.encode() if isinstance(changed, str) else json.dumps(changed).encode()
    (folder / "model.json").write_bytes(data)
    _refused(folder, {**digests, "model.json": portable.sha256(data)}, words)


def test_weights_that_are_not_safetensors_are_one_line(written):
    folder, digests = written
    data = b"\xff" * 64
    (folder / "weights.safetensors").write_bytes(data)
    _refused(folder, {**digests, "weights.safetensors": portable.sha256(data)},
             "weights.safetensors is not a safetensors file")
