"""Self-describing checkpoints: weights, the architecture that rebuilds them, config and metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from searcher.training.model import Classifier, build_model

FILENAME = "checkpoint.pt"
FORMAT = 1


def save_checkpoint(directory: str | Path, *, arch: dict[str, Any], train: dict[str, Any],
                    metrics: dict[str, Any], classes: list[str], mean: list[float],
                    std: list[float], trainer_state: dict[str, Any]) -> Path:
    """Write everything needed to rebuild, evaluate and resume the model into `directory`."""
    path = Path(directory) / FILENAME
    torch.save({"format": FORMAT, "arch": arch, "train": train, "metrics": metrics,
                "classes": classes, "mean": mean, "std": std, "trainer": trainer_state}, path)
    return path


def load_checkpoint(directory: str | Path, device: str = "cpu") -> dict[str, Any]:
    # weights_only: a checkpoint is data, never code, even one fetched from a shared store.
    return torch.load(Path(directory) / FILENAME, map_location=device, weights_only=True)


def classifier_from_checkpoint(ckpt: dict[str, Any]) -> Classifier:
    """Rebuild the trained network from the checkpoint alone, wrapped to take raw uint8 images."""
    net = build_model(ckpt["arch"])
    net.load_state_dict(ckpt["trainer"]["model"])
    return Classifier(net, ckpt["mean"], ckpt["std"], ckpt["classes"]).eval()
