"""One trial inside Ray Tune: build the net, train it epoch by epoch, report and checkpoint.

The only ties to Tune are `tune.report` and `tune.get_checkpoint`; everything else is the plain
PyTorch engine, so a trial behaves the same inside and outside a search.
"""
from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from typing import Any

import psutil
import ray
import torch
from ray import tune

from searcher.spec.params import ConfigError, split_params
from searcher.spec.settings import Settings
from searcher.training.checkpoint import load_checkpoint, save_checkpoint
from searcher.training.data import SearchData
from searcher.training.engine import TrainConfig, Trainer, TrainingDiverged
from searcher.training.latency import TooSlow, measure_speed
from searcher.training.model import InfeasibleArchitecture, build_model, feasible_cost
from searcher.tune.scheduler import CLOCK, clock


def chance_metrics(num_classes: int) -> dict[str, float]:
    """What a network that cannot be built achieves: no better than guessing."""
    return {"val_acc": 1.0 / num_classes, "val_loss": math.log(num_classes)}


def _tensors(data: SearchData) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    # The arrays come zero-copy from Ray's object store and are read-only; training only reads.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train = (torch.from_numpy(data.train.x), torch.from_numpy(data.train.y))
        val = (torch.from_numpy(data.val.x), torch.from_numpy(data.val.y))
    return train, val


def _memory_mb() -> dict[str, float]:
    """Resident memory, and the part of it private to this process and not backed by a file or
    shared memory: what a trial really adds. The shared dataset counts in RSS only."""
    private_kb, anonymous = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            key = line.split(maxsplit=1)[0]
            if "-" in key and not key.endswith(":"):  # a mapping's header: address range first
                fields = line.split()
                anonymous = len(fields) < 6 or fields[5].startswith("[")
            elif anonymous and key in ("Private_Clean:", "Private_Dirty:"):
                private_kb += int(line.split()[1])
    return {"rss_mb": psutil.Process().memory_info().rss / 2**20, "private_mb": private_kb / 1024}


def _in_shared_memory(array: Any) -> bool:
    """Whether `array` lies in a shared mapping (Ray's object store), i.e. was not copied."""
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(v, 16) for v in fields[0].split("-"))
            if start <= address < end:
                return fields[1].endswith("s")
    return False


# Errors that belong to the trial's configuration: retrying them elsewhere gives the same result,
# so the trial ends as failed (at chance level, which tells Optuna the region is bad) and only
# infrastructure errors (a lost node, a killed worker) reach Tune, which retries those.
CONFIG_ERRORS = (TrainingDiverged, torch.OutOfMemoryError, ConfigError)


def run_trial(config: dict[str, Any], data: SearchData, settings: Settings) -> None:
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint saved" per epoch
    torch.set_num_threads(max(1, int(settings.cpus_per_trial)))
    ended = {**chance_metrics(len(data.classes)), "epoch": 0, "node": _node()}
    try:
        _train(config, data, settings)
    except TooSlow as exc:  # timed before training: the sampler is told by how much it missed
        tune.report({**ended, **exc.speed.metrics(), **exc.sizes, "infeasible": 1,
                     "excess": exc.excess, "reason": str(exc)})
    except InfeasibleArchitecture as exc:
        tune.report({**ended, "infeasible": 1, "reason": str(exc)})
    except CONFIG_ERRORS as exc:
        tune.report({**ended, "failed": 1, "reason": f"{type(exc).__name__}: {exc}"})


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def _train(config: dict[str, Any], data: SearchData, settings: Settings) -> None:
    channels, size = data.image_shape[0], data.image_shape[1]
    arch, train = split_params(config, num_classes=len(data.classes), in_channels=channels,
                               image_size=size, epochs=settings.epochs)
    cost = feasible_cost(arch, settings.max_params, settings.max_mmacs)
    sizes = {"n_params": cost.params, "mmacs": cost.macs / 1e6}
    torch.manual_seed(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray hides GPUs a trial did not ask for
    model = build_model(arch).to(device)
    # Timed before the first epoch, on this trial's device and threads: untrained weights run
    # as fast as trained ones, and a net over the bound is never trained.
    resumed = tune.get_checkpoint()
    try:  # one that goes on from a checkpoint was admitted already
        speed = measure_speed(model, data.image_shape, settings.latency_batch,
                              settings.throughput_batch, device,
                              None if resumed else settings.max_latency_ms)
    except TooSlow as exc:
        exc.sizes = sizes
        raise
    trainer = Trainer(model, TrainConfig.from_dict(train), *_tensors(data), data.mean,
                      data.std, device=device, seed=settings.seed)
    if resumed:
        with resumed.as_directory() as directory:
            trainer.load_state_dict(load_checkpoint(directory, device)["trainer"])

    shared, start_epoch = _in_shared_memory(data.train.x), trainer.epoch
    look = settings.first_look_fraction
    while trainer.epoch < settings.epochs:
        # The first look: part of the first epoch, scored as epoch 0; the rest of that epoch
        # follows only if ASHA lets the trial go on. A resume mid-epoch finishes the epoch.
        looking = bool(look) and trainer.epoch == 0 and trainer.step == 0
        metrics = trainer.train_epoch(until=look if looking else 1.0)
        start = time.perf_counter()
        metrics.update(trainer.evaluate(), eval_time_s=time.perf_counter() - start,
                       epoch=trainer.epoch, **sizes, **speed.metrics(), node=_node(),
                       start_epoch=start_epoch, dataset_shared=int(shared), **_memory_mb())
        metrics[CLOCK] = clock(settings, trainer.epoch, looked=looking)
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, arch=arch, train=train, metrics=metrics,
                            classes=data.classes, mean=data.mean, std=data.std,
                            trainer_state=trainer.state_dict())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def make_trainable(data: SearchData, settings: Settings, gpus_per_trial: float):
    """The Tune trainable: data goes into the object store once and is shared by every trial."""
    trainable = tune.with_parameters(run_trial, data=data, settings=settings)
    return tune.with_resources(trainable, {"cpu": settings.cpus_per_trial, "gpu": gpus_per_trial})
