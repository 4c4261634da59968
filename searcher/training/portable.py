"""A trained classifier as data: weights in safetensors, what rebuilds it in JSON, nothing else.

Two files, written and read without pickle and without running code from them:
- `model.json`: the format, the architecture dict the model builder takes, the classes, the
  normalisation (mean, std) and the input shape; parsed with `json`, built by `build_model`.
- `weights.safetensors`: the state dict (tensors only, a JSON header and raw bytes).

Whoever reads the files names the SHA-256 each must have; a file is hashed from the bytes read
and parsed from those same bytes only once its digest matches, so a file swapped in a store is
refused before any of it is interpreted.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from searcher.errors import UserError
from searcher.training.model import Arch, Classifier, build_model

CARD = "model.json"
WEIGHTS = "weights.safetensors"
FILES = (CARD, WEIGHTS)
FORMAT = "searcher.classifier"
VERSION = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model(folder: str | Path, model: Classifier, arch: dict[str, Any],
                image_shape: list[int]) -> dict[str, str]:
    """Write `model` (built from `arch`) into `folder`; returns each file's SHA-256 by name."""
    from safetensors.torch import save

    card = {"format": FORMAT, "version": VERSION, "arch": arch, "classes": list(model.classes),
            "mean": [float(v) / 255.0 for v in model.mean.flatten().tolist()],
            "std": [float(v) / 255.0 for v in model.std.flatten().tolist()],
            "image_shape": [int(d) for d in image_shape]}
    contents = {CARD: json.dumps(card, indent=1, sort_keys=True).encode(),
                # contiguous CPU copies: safetensors stores a tensor's bytes as they lie
                WEIGHTS: save({k: v.detach().cpu().contiguous()
                               for k, v in model.state_dict().items()})}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return {name: sha256(data) for name, data in contents.items()}


def read_model(folder: str | Path, expected: dict[str, str], what: str,
               device: str = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """The classifier in `folder` in eval mode on `device`, and its card (model.json), once each
    file's SHA-256 is `expected[name]`; anything else is a one-line UserError naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if set(expected) != set(FILES):
        missing = ", ".join(sorted(set(FILES) - set(expected))) or "its files"
        raise UserError(f"{what}: no SHA-256 recorded for {missing}; refusing to load it: "
                        f"promote the model again")
    folder = Path(folder)
    data = {}
    for name in FILES:
        try:
            data[name] = (folder / name).read_bytes()
        except OSError as exc:
            raise UserError(f"{what}: cannot read {name} ({exc.strerror or exc}); refusing to "
                            f"load it") from None
        if sha256(data[name]) != expected[name]:
            raise UserError(f"{what}: {name} is not the file that was registered (its SHA-256 "
                            f"is {sha256(data[name])[:16]}..., recorded {expected[name][:16]}...); "
                            f"refusing to load it: someone changed the store, or promote again")
    card = _card(data[CARD], what)
    try:
        state = load(data[WEIGHTS])
    except (SafetensorError, ValueError) as exc:
        raise UserError(f"{what}: {WEIGHTS} is not a safetensors file ({exc}); refusing to "
                        f"load it") from None
    try:
        outputs = Arch.from_dict(card["arch"]).num_classes
        if outputs != len(card["classes"]):
            raise ValueError(f"{len(card['classes'])} class names for the architecture's "
                             f"{outputs} outputs")
        net = build_model(card["arch"])
        model = Classifier(net, card["mean"], card["std"], card["classes"])
        model.load_state_dict(state, strict=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what}: {CARD} and {WEIGHTS} do not make a model ({reason})") from None
    return model.to(device).eval(), card


def _card(data: bytes, what: str) -> dict[str, Any]:
    """model.json parsed and checked: each field of the type the builder and loader need."""
    try:
        card = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{what}: {CARD} is not JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise UserError(f"{what}: {CARD} does not describe a searcher classifier")
    if card.get("version") != VERSION:
        raise UserError(f"{what}: {CARD} is format version {card.get('version')!r}; this searcher "
                        f"reads version {VERSION}: upgrade searcher, or promote the model again")

    def numbers(key: str, n: int | None = None) -> bool:
        v = card.get(key)
        return (isinstance(v, list) and len(v) > 0 and (n is None or len(v) == n)
                and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                        and math.isfinite(x) for x in v))

    shape = card.get("image_shape")
    problems = [
        not isinstance(card.get("arch"), dict) and "arch is not an object",
        not (isinstance(card.get("classes"), list) and card["classes"]
             and all(isinstance(c, str) for c in card["classes"])) and "classes are not names",
        not (numbers("image_shape", 3) and all(isinstance(d, int) and d > 0 for d in shape))
        and "image_shape is not 3 positive integers",
        not (numbers("image_shape", 3) and numbers("mean", shape[0]) and numbers("std", shape[0])
             and all(s > 0 for s in card["std"])) and "mean and std are not one number a channel",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise UserError(f"{what}: {CARD}: {problems[0]}")
    return card


__all__ = ["CARD", "FILES", "WEIGHTS", "read_model", "sha256", "write_model"]
