"""One pass of the scale benchmark: a search whose trainable only reports, at a given concurrency, timed from the driver."""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from searcher.bench.cpu import CpuMeter

CHECKPOINT_BYTES = 16_384  # a small CNN's weights are larger; the driver only moves a path
START_S = 40  # what a pass costs beyond its steady state here: Tune's start and end
ACTOR_START_S = 1.5  # and per trial actor to start (64 took 60-90 s on 2 cores)



def _trainable(config: dict[str, Any], epochs: int, interval: float,
               barrier: tuple[str, int] | None = None) -> None:
    """Almost free: a score from the config, a small checkpoint, a report every `interval` s.
    `barrier` (folder, n): first wait until n trial processes have started (see `_wait`)."""
    import tempfile as tf

    from ray import tune
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # as a search's trainable does
    if barrier:
        _wait(Path(barrier[0]), barrier[1])
    score = 1.0 / (1.0 + abs(math.log10(config["lr"]) + 1.5)) * (0.5 + 0.1 * config["stages"])
    for epoch in range(1, epochs + 1):
        if interval:
            time.sleep(interval)
        with tf.TemporaryDirectory() as directory:
            Path(directory, "checkpoint.pt").write_bytes(b"\0" * CHECKPOINT_BYTES)
            tune.report({"val_acc": score * epoch / epochs, "val_loss": 1 - score, "epoch": epoch,
                         "train_loss": 1.0 / epoch, "images_per_s": 0.0, "n_params": 1,
                         "mmacs": 0.1}, checkpoint=tune.Checkpoint.from_directory(directory))


def _wait(folder: Path, processes: int, timeout_s: float = 120.0) -> None:
    """Until `processes` trial processes have come here (a file each in `folder`, on this
    machine): then every slot has its actor.

    Without it a pass of instant trials ran one trial at a time. Tune reuses a finished trial's
    actor for the next pending trial and removes the actor it had started for that one
    (`TuneController._maybe_reuse_cached_actor`); when trials end faster than a worker process
    starts (seconds here), every pending trial takes the one reused actor and the other slots'
    actors are removed before they are up: 16 slots, 1 running. A real trial outlives an actor's
    start, so a search is not held back by this; the benchmark's instant trials were.
    A reused actor comes back here for its next trial and passes at once.
    """
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while sum(1 for _ in folder.iterdir()) < processes and time.monotonic() < deadline:
        time.sleep(0.05)


def _timed_logger():
    """Our MLflow callback, with the time its calls take on Tune's loop added up."""
    from searcher.tune.trial_logger import MLflowTrialLogger

    class Timed(MLflowTrialLogger):
        loop_s = 0.0

        def _timed(name):  # noqa: N805 - a decorator factory inside the class body
            def call(self, *args, **kwargs):
                start = time.perf_counter()
                try:
                    return getattr(MLflowTrialLogger, name)(self, *args, **kwargs)
                finally:
                    type(self).loop_s += time.perf_counter() - start
            return call

        on_trial_start = _timed("on_trial_start")
        on_trial_result = _timed("on_trial_result")
        on_checkpoint = _timed("on_checkpoint")
        on_trial_complete = _timed("on_trial_complete")
    return Timed


def one_search(space_file: Path, uri: str | None, concurrency: int, trials: int, epochs: int,
               interval: float, pass_s: float, folder: Path,
               server_pid: int | None = None) -> dict[str, Any]:
    """One search of almost-free trials, `pass_s` s from its first result (its trial actors all
    up, see `_wait`); `uri` None: no MLflow logging. CPU seconds are counted by part (driver,
    the MLflow server `server_pid`, the rest) from the first result to the pass's end."""
    import ray
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.stopper import Stopper

    from searcher.spec.space import load_space
    from searcher.tune.study_searcher import StudySearcher
    from searcher.tune.tuner import checkpoint_config, configure_tune, make_study

    space = load_space(space_file, {"epochs": epochs, "num_samples": trials, "grace_period": 1,
                                    "reduction_factor": 2, "seed": 0,
                                    "first_look": False})  # its scheduler counts epochs
    s = space.settings
    folder.mkdir(parents=True)
    study = make_study(space, folder)
    searcher = StudySearcher(study, space.sample, lambda params: None, s.metric, s.mode, epochs)

    meter = CpuMeter(server_pid)

    class Clock(tune.Callback):
        results, first, last = 0, 0.0, 0.0

        def on_trial_result(self, *args, **kwargs):
            Clock.results += 1
            Clock.last = time.perf_counter()
            if not Clock.first:
                Clock.first = Clock.last
                meter.start()

    class Steady(Stopper):
        """Ends the pass `pass_s` s after its first result, or if none came in the time its
        actors should have taken to start."""
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            now = time.perf_counter()
            done = bool((Clock.first and now - Clock.first >= pass_s)
                        or now - start >= pass_s + START_S + ACTOR_START_S * concurrency)
            if done:
                meter.stop()
            return done

    configure_tune()  # as a search runs Tune
    callbacks: list[Any] = [Clock()]
    logger = None
    if uri:
        client = MlflowClient(uri)
        exp = client.create_experiment(f"scale-{folder.name}")
        parent = client.create_run(exp).info.run_id
        Timed = _timed_logger()
        Timed.loop_s = 0.0
        logger = Timed(uri, parent, space, state_folder=folder, quiet=True)
        callbacks.append(logger)
    cpus = ray.cluster_resources().get("CPU", 1)
    started = folder / "started"  # the trial processes up (see `_wait`)
    started.mkdir()
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, epochs=epochs, interval=interval,
                             barrier=(str(started), min(concurrency, trials))),
        {"cpu": cpus / (concurrency + 1)})  # a sliver: concurrency is not capped by the cores
    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
        metric=s.metric, mode=s.mode, search_alg=searcher, num_samples=trials,
        scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1,
                                reduction_factor=2),
        max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=folder.name, storage_path=str(folder.parent / "ray"),
                                  callbacks=callbacks, verbose=0, stop=Steady(),
                                  checkpoint_config=checkpoint_config(s.metric, s.mode)))
    start = time.perf_counter()  # before Tune starts: Steady reads it
    results = tuner.fit()
    end = time.perf_counter()
    meter.stop()  # if the trials ran out before the pass's time
    steady = max(Clock.last - Clock.first, 1e-9)
    run = {"logging": bool(uri), "concurrency": concurrency, "trials": len(results),
           "errors": sum(r.error is not None for r in results),
           "results": Clock.results, "seconds": round(steady, 2),
           "results_per_s": round((Clock.results - 1) / steady, 1) if Clock.results > 1 else 0.0,
           "first_result_s": round(Clock.first - start, 2) if Clock.results else None,
           "drain_s": round(end - Clock.last, 2) if Clock.results else None}
    cpu = meter.seconds()
    if cpu:
        run["cpu_s"] = cpu
        run["cpu_ms_per_result"] = {k: round(1000 * v / max(Clock.results, 1), 2)
                                    for k, v in cpu.items()}
    if logger is not None:
        per_result = type(logger).loop_s / max(Clock.results, 1)
        run["callback_ms_per_result"] = round(1000 * per_result, 3)
        run["unlogged"] = len(logger.unlogged)
    return run
