"""`python -m searcher.bench scale`: the driver keeps up with many trials, with MLflow logging on.

Claim: with logging on, the driver sustains >= 128 results/s (256 trials at one report per 2 s)
with <= 10% overhead against logging off, and Optuna's ask (TPE, as `make_sampler` builds it)
stays <= 50 ms at 1,000 finished trials.

How it is measured:
- throughput: the real machinery, the search's own StudySearcher (TPE via `make_sampler`), ASHA
  and our MLflowTrialLogger writing to a real `mlflow server` subprocess (SQLite behind it, or
  --backend-uri), drives trials that cost almost nothing: each reports a result with a small
  checkpoint every --interval seconds (0: as fast as it can, so the driver is the limit). At each
  concurrency of --concurrency, --trials trials (ASHA stops some early) run twice, logging off
  then on. results/s = results / seconds from the start of `fit` to the last result; the on/off
  ratio of those seconds is the overhead (same work: same seed, same proposals, same stops). The
  time the logger's callbacks take on Tune's loop is timed per result; the writer's drain after
  the last result is reported apart (`drain_s`): it delays nothing a trial waits on.
- ask latency: an in-memory study on the real space (spaces/cifar10.py) filled with finished
  trials (random proposals that report epochs as ASHA's rungs would), and `study.ask()` plus the
  space's suggest calls timed at each history size; above 50 ms at 1,000, a profile says where.
- max_concurrent_trials_2s: trials at one report per 2 s that the driver serves while at most
  90% busy (so queueing stays short): floor(0.9 x 2 s x results/s with logging on), from the
  largest concurrency measured, and only where that concurrency's overhead was <= 10%.
Trials ask for a sliver of a logical CPU, so concurrency is not capped by this machine's cores;
the cores are shared by the driver, the trials' processes and the MLflow server alike.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import math
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from searcher.errors import one_line_errors

PROG = "python -m searcher.bench scale"
VERSIONS = ("ray", "optuna", "mlflow")
GOAL_RESULTS_PER_S, GOAL_OVERHEAD, GOAL_ASK_MS = 128, 1.10, 50.0
REPORT_EVERY_S = 2.0  # the cluster case: a small CNN's epoch on a GPU share
BUSY_AT_MOST = 0.9
CHECKPOINT_BYTES = 16_384  # a small CNN's weights are larger; the driver only moves a path

FULL = {"concurrency": [16, 64, 128], "trials": [200, 400, 1000], "epochs": 4,
        "ask_at": [0, 250, 500, 1000]}
SMOKE = {"concurrency": [4], "trials": [8], "epochs": 2, "ask_at": [0, 20]}

SPACE = '''
SETTINGS = {"cpus_per_trial": 1}


def space(trial):
    stages = trial.suggest_int("stages", 1, 3)
    for i in range(1, stages + 1):
        trial.suggest_int(f"stage{i}.filters", 8, 64, log=True)
    trial.suggest_categorical("head", ["flatten", "gap"])
    trial.suggest_float("lr", 0.001, 0.3, log=True)
    return {"batch_size": 64}
'''


# ----------------------------------------------------------------------------- the trainable

def _trainable(config: dict[str, Any], epochs: int, interval: float) -> None:
    """Almost free: a score from the config, a small checkpoint, a report every `interval` s."""
    import tempfile as tf

    from ray import tune
    score = 1.0 / (1.0 + abs(math.log10(config["lr"]) + 1.5)) * (0.5 + 0.1 * config["stages"])
    for epoch in range(1, epochs + 1):
        if interval:
            time.sleep(interval)
        with tf.TemporaryDirectory() as directory:
            Path(directory, "checkpoint.pt").write_bytes(b"\0" * CHECKPOINT_BYTES)
            tune.report({"val_acc": score * epoch / epochs, "val_loss": 1 - score, "epoch": epoch,
                         "train_loss": 1.0 / epoch, "images_per_s": 0.0, "n_params": 1,
                         "mmacs": 0.1}, checkpoint=tune.Checkpoint.from_directory(directory))


# ----------------------------------------------------------------------------- one search

def _timed_logger():
    """Our MLflow callback, with the time its calls take on Tune's loop added up."""
    from searcher.trial_logger import MLflowTrialLogger

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
               interval: float, folder: Path) -> dict[str, Any]:
    """One search of almost-free trials; `uri` None: no MLflow logging at all."""
    from mlflow.tracking import MlflowClient
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from searcher.search import make_study
    from searcher.space import load_space
    from searcher.study_searcher import StudySearcher
    import ray

    space = load_space(space_file, {"epochs": epochs, "num_samples": trials, "grace_period": 1,
                                    "reduction_factor": 2, "seed": 0})
    s = space.settings
    folder.mkdir(parents=True)
    study = make_study(space, folder)
    searcher = StudySearcher(study, space.sample, lambda params: None, s.metric, s.mode, epochs)

    class Clock(tune.Callback):
        results, last = 0, 0.0

        def on_trial_result(self, *args, **kwargs):
            Clock.results += 1
            Clock.last = time.perf_counter()

    callbacks: list[Any] = [Clock()]
    logger = None
    if uri:
        client = MlflowClient(uri)
        exp = client.create_experiment(f"scale-{folder.name}")
        parent = client.create_run(exp).info.run_id
        Timed = _timed_logger()
        Timed.loop_s = 0.0
        try:
            logger = Timed(uri, parent, space, state_folder=folder, quiet=True)
        except TypeError:  # the synchronous logger before mlflow_writer: the "before" figures
            logger = Timed(uri, parent, space)
        callbacks.append(logger)
    cpus = ray.cluster_resources().get("CPU", 1)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, epochs=epochs, interval=interval),
        {"cpu": cpus / (concurrency + 1)})  # a sliver: concurrency is not capped by the cores
    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
        metric=s.metric, mode=s.mode, search_alg=searcher, num_samples=trials,
        scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1,
                                reduction_factor=2),
        max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=folder.name, storage_path=str(folder.parent / "ray"),
                                  callbacks=callbacks, verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(
                                      num_to_keep=1, checkpoint_score_attribute=s.metric,
                                      checkpoint_score_order=s.mode)))
    start = time.perf_counter()
    results = tuner.fit()
    end = time.perf_counter()
    busy = Clock.last - start
    run = {"logging": bool(uri), "concurrency": concurrency, "trials": len(results),
           "errors": sum(r.error is not None for r in results), "results": Clock.results,
           "seconds": round(busy, 2), "results_per_s": round(Clock.results / busy, 1),
           "drain_s": round(end - Clock.last, 2)}
    if logger is not None:
        run["callback_ms_per_result"] = round(1000 * type(logger).loop_s / Clock.results, 3)
        run["unlogged"] = len(logger.unlogged)
    return run


# ----------------------------------------------------------------------------- ask latency

def ask_latency(space_path: Path, sizes: list[int], repeats: int = 5) -> dict[str, Any]:
    """ms per proposal (ask + the space's suggest calls) against finished trials in the study."""
    import optuna

    from searcher.samplers import make_sampler
    from searcher.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    epochs = space.settings.epochs
    filler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1),
                                 direction="maximize")
    study = optuna.create_study(sampler=make_sampler("tpe", 0, len(space.baselines)),
                                direction="maximize")
    rungs = [1, 3, epochs]  # ASHA's rungs (grace 1, factor 3): most trials stop at the first
    ms, profile = {}, None
    for size in sizes:
        while len(study.trials) < size:
            trial = filler.ask()
            space.sample(trial)
            depth = rungs[min(len(rungs) - 1, int(-math.log(1 - trial.number % 9 / 9 + 1e-9, 3)))]
            value = 0.3 + 0.4 * random.Random(trial.number).random()
            done = optuna.trial.create_trial(
                params=trial.params, distributions=trial.distributions,
                intermediate_values={e: value * e / epochs for e in range(1, depth + 1)},
                state=optuna.trial.TrialState.COMPLETE if depth == epochs else
                optuna.trial.TrialState.PRUNED,
                value=value if depth == epochs else None)
            filler.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.add_trial(done)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            trial = study.ask()
            space.sample(trial)
            times.append(time.perf_counter() - start)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # out of the model's way
        ms[str(size)] = round(1000 * sorted(times)[len(times) // 2], 1)
        if size >= 1000 and ms[str(size)] > GOAL_ASK_MS:
            profile = _profile(study, space)
    return {"ask_ms": ms, "profile": profile}


def _profile(study: Any, space: Any) -> str:
    """Where one proposal's time goes: the top functions by cumulative time."""
    import optuna
    profiler = cProfile.Profile()
    profiler.enable()
    trial = study.ask()
    space.sample(trial)
    profiler.disable()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-4000:]


# ----------------------------------------------------------------------------- summary

def summarise(runs: list[dict[str, Any]], ask: dict[str, Any]) -> dict[str, Any]:
    pairs = {}
    for run in runs:
        pairs.setdefault(run["concurrency"], {})["on" if run["logging"] else "off"] = run
    levels = []
    for concurrency, pair in sorted(pairs.items()):
        on, off = pair.get("on"), pair.get("off")
        levels.append({"concurrency": concurrency, "trials": (on or off)["trials"],
                       "results_per_s_off": off and off["results_per_s"],
                       "results_per_s_on": on and on["results_per_s"],
                       "overhead_ratio": round(on["seconds"] / off["seconds"], 3)
                       if on and off else None,
                       "driver_ms_per_result_on": on and round(1000 / on["results_per_s"], 2),
                       "callback_ms_per_result": on and on.get("callback_ms_per_result"),
                       "drain_s": on and on["drain_s"]})
    top = levels[-1]
    ok = top["overhead_ratio"] is not None and top["overhead_ratio"] <= GOAL_OVERHEAD
    served = (math.floor(BUSY_AT_MOST * REPORT_EVERY_S * top["results_per_s_on"])
              if ok and top["results_per_s_on"] else 0)
    ask_ms = ask["ask_ms"]
    at_1000 = ask_ms.get("1000", ask_ms[max(ask_ms, key=int)])
    return {"results_per_s_on": top["results_per_s_on"],
            "results_per_s_off": top["results_per_s_off"],
            "overhead_ratio": top["overhead_ratio"], "trials": top["trials"],
            "ask_ms_at_1000": at_1000, "max_concurrent_trials_2s": served,
            "levels": levels, "ask_ms": ask_ms, "ask_profile": ask["profile"], "runs": runs}


def table(sc: dict[str, Any]) -> str:
    lines = [f"{'concurrency':>11} {'trials':>6} {'res/s off':>9} {'res/s on':>8} "
             f"{'on/off':>6} {'cb ms/res':>9} {'drain s':>7}"]
    for lv in sc["levels"]:
        lines.append(f"{lv['concurrency']:>11} {lv['trials']:>6} {lv['results_per_s_off']!s:>9} "
                     f"{lv['results_per_s_on']!s:>8} {lv['overhead_ratio']!s:>6} "
                     f"{lv['callback_ms_per_result']!s:>9} {lv['drain_s']!s:>7}")
    lines.append("ask ms (finished trials -> ms): " +
                 ", ".join(f"{k}: {v}" for k, v in sc["ask_ms"].items()))
    lines.append(f"goals: >= {GOAL_RESULTS_PER_S} results/s on ({sc['results_per_s_on']}), "
                 f"overhead <= {GOAL_OVERHEAD} ({sc['overhead_ratio']}), ask <= {GOAL_ASK_MS:g} ms "
                 f"at 1000 ({sc['ask_ms_at_1000']}); trials served at one report per "
                 f"{REPORT_EVERY_S:g} s: {sc['max_concurrent_trials_2s']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, for CI")
    parser.add_argument("--concurrency", type=int, nargs="+", help="trials at once, growing")
    parser.add_argument("--trials", type=int, nargs="+", help="trials per concurrency")
    parser.add_argument("--epochs", type=int, help="results per trial that ASHA lets through")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds between a trial's reports (0: as fast as it can)")
    parser.add_argument("--ask-at", type=int, nargs="+", help="history sizes to time ask at")
    parser.add_argument("--space", default="spaces/cifar10.py", help="space for ask latency")
    parser.add_argument("--backend-uri", help="the MLflow server's store (default: SQLite)")
    parser.add_argument("--no-off", action="store_true", help="logging on only")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if len(args.trials) != len(args.concurrency):
        parser.error("give one --trials per --concurrency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    with one_line_errors(PROG):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import ray

    from searcher.bench.common import MlflowServer, machine_info, write_json

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    result = {**machine_info("cpu", VERSIONS)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="searcher-scale-") as tmp:
        root = Path(tmp)
        space_file = root / "scale_space.py"
        space_file.write_text(SPACE)
        started_ray = not ray.is_initialized()
        if started_ray:  # logical CPUs: one a trial at the largest concurrency, and the driver's
            ray.init(num_cpus=max(args.concurrency) + 2, include_dashboard=False,
                     logging_level=logging.WARNING)
        try:
            with MlflowServer(root, args.backend_uri) as server:
                for concurrency, trials in zip(args.concurrency, args.trials):
                    for uri in ((None,) if not args.no_off else ()) + (server.uri,):
                        name = f"c{concurrency}-{'on' if uri else 'off'}"
                        print(f"[scale] {name}: {trials} trials, {concurrency} at once "
                              f"({time.strftime('%H:%M:%S')})", flush=True)
                        run = one_search(space_file, uri, concurrency, trials, args.epochs,
                                         args.interval, root / name)
                        runs.append(run)
                        print(f"[scale] {name}: {run['results']} results in {run['seconds']} s "
                              f"= {run['results_per_s']}/s", flush=True)
        finally:
            if started_ray:
                ray.shutdown()
    print(f"[scale] ask latency on {args.space}", flush=True)
    ask = ask_latency(Path(args.space), args.ask_at)
    result["scale"] = summarise(runs, ask)
    result["settings"] = {"interval_s": args.interval, "epochs": args.epochs,
                          "checkpoint_bytes": CHECKPOINT_BYTES,
                          "backend": args.backend_uri or "sqlite (mlflow server)"}
    print(table(result["scale"]))
    if ask["profile"]:
        print(ask["profile"])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
