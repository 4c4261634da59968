"""Turn a trial's flat parameters (what a space suggests) into an architecture and a training config.

The vocabulary a space file uses:
- `stages` (required): the number of conv stages.
- Stage keys (see `model.Stage`): `filters`, `kernel`, `convs`, `padding`, `activation`, `pool`,
  `dropout`, `batch_norm`, `residual`. A plain key applies to every stage; `stage2.filters`
  overrides it for the second stage (stages count from 1).
- Head keys: `head`, `dense_layers`, `dense_units` (or `dense2.units` per layer),
  `head_activation`, `head_dropout`.
- Training keys (see `engine.TrainConfig`): `optimizer`, `lr`, `momentum`, `weight_decay`,
  `batch_size`, `label_smoothing`, `flip`, `crop`, `schedule`.
Anything else is an error, so a typo in a space file never silently does nothing.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import fields
from typing import Any

from searcher.training.engine import TrainConfig
from searcher.training.model import Arch, Stage

STAGE_KEYS = tuple(f.name for f in fields(Stage))
HEAD_KEYS = ("head", "head_activation", "head_dropout")
DENSE_KEYS = ("dense_layers", "dense_units")
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "epochs")
_PER_STAGE = re.compile(r"^stage(\d+)\.(\w+)$")
_PER_DENSE = re.compile(r"^dense(\d+)\.units$")


class ConfigError(ValueError):
    """A parameter the vocabulary does not know, or a value it cannot use."""


def split_params(params: dict[str, Any], *, num_classes: int, in_channels: int, image_size: int,
                 epochs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (architecture dict, training dict) for the model builder and the trainer."""
    if "stages" not in params:
        raise ConfigError("the space must set `stages` (the number of conv stages)")
    _check_ints(params)
    n_stages = params["stages"]
    if n_stages < 1:
        raise ConfigError(f"stages={n_stages!r}: must be a positive int")
    n_dense = params.get("dense_layers", 0)
    used = {"stages"} | ({"dense_layers"} if "dense_layers" in params else set())

    stages = []
    for i in range(1, n_stages + 1):
        stage = {}
        for key in STAGE_KEYS:
            for name in (f"stage{i}.{key}", key):
                if name in params:
                    stage[key] = params[name]
                    used.add(name)
                    break
        stages.append(stage)

    dense = []
    for j in range(1, n_dense + 1):
        name = f"dense{j}.units" if f"dense{j}.units" in params else "dense_units"
        if name not in params:
            raise ConfigError(f"dense_layers={n_dense} needs `dense_units` or `dense{j}.units`")
        dense.append(params[name])
        used.add(name)

    used |= {key for key in STAGE_KEYS if key in params}  # even if every stage overrides it
    arch = {"stages": stages, "dense": dense, "num_classes": num_classes,
            "in_channels": in_channels, "image_size": image_size}
    for key in HEAD_KEYS:
        if key in params:
            arch[key] = params[key]
            used.add(key)
    train = {key: params[key] for key in TRAIN_KEYS if key in params}
    used |= set(train)
    train["epochs"] = epochs

    leftover = sorted(k for k in params if k not in used and not _unused_conditional(k, n_stages, n_dense))
    if leftover:
        raise ConfigError(f"unknown parameter {leftover[0]!r}; known: stages, {', '.join(STAGE_KEYS)}"
                          f" (also as stageN.KEY), {', '.join(HEAD_KEYS + DENSE_KEYS)}, "
                          f"{', '.join(TRAIN_KEYS)}")
    try:
        Arch.from_dict(arch)
        TrainConfig.from_dict(train)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    return arch, train


_INT_KEYS = ({"stages", "dense_layers", "dense_units"}
             | {f.name for f in fields(Stage) if f.type == "int"}
             | {f.name for f in fields(TrainConfig) if f.type == "int"})


def _check_ints(params: dict[str, Any]) -> None:
    """Refuse a float (or a bool) where an int belongs, e.g. trial.suggest_float("filters", ...):
    1.5 filters is no network, and truncating it would train one the search never proposed."""
    for key, value in params.items():
        m = _PER_STAGE.match(key)
        base = m.group(2) if m else "dense_units" if _PER_DENSE.match(key) else key
        if base in _INT_KEYS and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise ConfigError(f"{key}={value!r}: must be an int (use trial.suggest_int, or an int "
                              f"constant)")


def _unused_conditional(key: str, n_stages: int, n_dense: int) -> bool:
    """A per-stage key for a stage beyond `stages` (or a dense layer beyond `dense_layers`)."""
    if m := _PER_STAGE.match(key):
        return int(m.group(1)) > n_stages and m.group(2) in STAGE_KEYS
    if key in DENSE_KEYS:
        return key == "dense_units" and n_dense == 0
    if m := _PER_DENSE.match(key):
        return int(m.group(1)) > n_dense
    return False
