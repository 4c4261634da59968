"""Train one configuration from scratch for its full epochs with a given seed: plain PyTorch.

Promotion uses it to retrain a search's top configurations with fresh seeds (was the best score
luck?) and to refit the chosen one on train+validation. No Ray and no MLflow here: `confirm`
runs it in Ray tasks and logs what it returns.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from searcher.objective import better
from searcher.training.data import SearchData, Split, channel_stats
from searcher.training.engine import TrainConfig, Trainer, TrainingDiverged
from searcher.training.model import build_model


@dataclass
class Retrained:
    """What one retrain gives back: its per-epoch history and its best checkpoint's contents."""
    seed: int
    train_images: int  # what the trainer really held: train (+ validation for a refit)
    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None  # the metric at the best epoch; None for a refit (no validation)
    best_epoch: int = 0
    checkpoint: dict[str, Any] | None = None  # save_checkpoint's keywords; None if it diverged
    failure: str | None = None  # why it ended early (the loss diverged)


def merge_train_val(data: SearchData) -> SearchData:
    """Train and validation as one training split, normalised by its own statistics; the
    validation split left empty (a refit has nothing to validate on)."""
    x = np.concatenate([data.train.x, data.val.x])
    y = np.concatenate([data.train.y, data.val.y])
    mean, std = channel_stats(x)
    empty = Split(x[:0], y[:0])
    return SearchData(Split(x, y), empty, data.classes, mean, std, data.skipped)


def _tensors(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    with warnings.catch_warnings():  # arrays from Ray's object store are read-only; only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(split.x), torch.from_numpy(split.y)


def retrain(arch: dict[str, Any], train: dict[str, Any], data: SearchData, seed: int,
            metric: str = "val_acc", mode: str = "max", validate: bool = True,
            device: str | None = None) -> Retrained:
    """Train `arch` with `train` (its full `epochs`) on `data` from seed `seed`.

    With `validate`, each epoch is evaluated and the best epoch's weights are kept, as a search
    keeps its trials' best checkpoints; without (a refit), the last epoch's weights are kept.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = TrainConfig.from_dict(train)
    torch.manual_seed(seed)
    trainer = Trainer(build_model(arch), cfg, _tensors(data.train), _tensors(data.val),
                      data.mean, data.std, device=device, seed=seed)
    out = Retrained(seed, len(trainer.train_x))
    keep = dict(arch=arch, train=train, classes=data.classes, mean=data.mean, std=data.std)
    try:
        while trainer.epoch < cfg.epochs:
            metrics = trainer.train_epoch()
            if validate:
                metrics.update(trainer.evaluate())
            metrics["epoch"] = trainer.epoch
            out.history.append(metrics)
            value = metrics.get(metric)
            if not validate or out.best is None or better(value, out.best, mode):
                out.best, out.best_epoch = value, trainer.epoch
                # Copied now: the trainer goes on changing its tensors in place.
                state = {k: _cpu_copy(v) for k, v in trainer.state_dict().items()}
                out.checkpoint = {**keep, "metrics": metrics, "trainer_state": state}
    except TrainingDiverged as exc:
        out.failure, out.checkpoint = str(exc), None
    if out.best is not None and not math.isfinite(out.best):
        out.failure = out.failure or f"{metric} is {out.best}"
    return out


def _cpu_copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpu_copy(v) for v in value]
    return value
