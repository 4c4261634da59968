"""The training loop on its own: no Ray, no MLflow."""
import copy

import pytest
import torch

from searcher.training.engine import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    random_crop,
    random_flip,
)
from searcher.training.model import build_model

ARCH = {"stages": [{"filters": 8, "batch_norm": True}, {"filters": 16}], "head": "flatten"}


def separable(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randint(0, 120, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    for i, c in enumerate(y.tolist()):
        x[i, c % 3, c * 3:c * 3 + 3, :] = 255
    return x, y


def make_trainer(cfg=TrainConfig(epochs=4, lr=0.05, batch_size=32, crop=2), seed=0):
    torch.manual_seed(seed)
    return Trainer(build_model(ARCH), cfg, separable(512), separable(128, seed=1),
                   [0.3] * 3, [0.3] * 3, seed=seed)


def test_training_learns_a_separable_task():
    trainer = make_trainer()
    before = trainer.evaluate()
    history = [trainer.train_epoch() for _ in range(4)]
    after = trainer.evaluate()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert after["val_acc"] > max(0.5, before["val_acc"] + 0.3)
    assert history[0]["images_per_s"] > 0 and trainer.epoch == 4


def test_resuming_from_state_continues_identically():
    a = make_trainer()
    a.train_epoch()
    state = copy.deepcopy(a.state_dict())  # as torch.save/torch.load would hand it over
    b = make_trainer()
    b.load_state_dict(state)
    b.gen.set_state(a.gen.get_state())
    assert b.epoch == 1
    ra, rb = a.train_epoch(), b.train_epoch()
    assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)


def test_an_epoch_trained_in_parts_is_the_epoch_trained_at_once():
    """A first look trains part of the first epoch; a trial that goes on finishes that epoch,
    in the same process or from the look's checkpoint, and ends where it would have ended."""
    whole = make_trainer()
    whole.train_epoch()
    parts = make_trainer()
    look = parts.train_epoch(until=1 / 3)
    assert parts.epoch == 0 and parts.step == round(parts.steps_per_epoch / 3)
    assert look["images_per_s"] > 0
    state = copy.deepcopy(parts.state_dict())  # the look's checkpoint, mid-epoch
    resumed = make_trainer(seed=1)  # another process: its own seed, its own order
    resumed.load_state_dict(state)
    resumed.gen.set_state(parts.gen.get_state())
    for trainer in (parts, resumed):
        trainer.train_epoch()
        assert trainer.epoch == 1 and trainer.step == 0
        for a, b in zip(whole.model.state_dict().values(), trainer.model.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6)
    assert whole.scheduler.last_epoch == parts.scheduler.last_epoch == whole.steps_per_epoch


def test_divergence_is_an_error():
    trainer = make_trainer(TrainConfig(epochs=2, lr=1e12, batch_size=32, optimizer="sgd"))
    with pytest.raises(TrainingDiverged, match="became"):
        for _ in range(2):
            trainer.train_epoch()


def test_crop_moves_whole_images_and_flip_mirrors():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    assert torch.equal(random_crop(x, 0, g), x)
    cropped = random_crop(x, 2, g)
    assert cropped.shape == x.shape
    for img, out in zip(x, cropped):  # every output is a shifted window of the padded input
        padded = torch.nn.functional.pad(img, (2, 2, 2, 2))
        assert any(torch.equal(padded[:, dy:dy + 8, dx:dx + 8], out)
                   for dy in range(5) for dx in range(5))
    flipped = random_flip(x, g)
    for img, out in zip(x, flipped):
        assert torch.equal(out, img) or torch.equal(out, img.flip(2))
