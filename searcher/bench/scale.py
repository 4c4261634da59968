"""`python -m searcher.bench scale`: does the driver keep up with many trials, MLflow logging on?

Claim checked (issue 9): with logging on, the driver sustains >= 128 results/s (256 trials at one
report per 2 s) with <= 10% overhead against logging off, and a proposal (Optuna's ask, TPE as
`make_sampler` builds it) takes <= 50 ms with 1,000 finished trials.

How it is measured, within --budget-s (default 11 minutes; the JSON is rewritten after each
step, so a run cut short still leaves what it measured):
- ask latency (`ask_latency`, first: no Ray running): median ms of ~20 proposals on the real
  space (spaces/cifar10.py) with 250, 500 and 1,000 finished trials; above 50 ms, a profile.
- throughput: the real machinery, the search's own StudySearcher (TPE), ASHA and our
  MLflowTrialLogger writing to a real `mlflow server` subprocess (SQLite behind it, or
  --backend-uri), drives trials that cost almost nothing: each reports a result with a small
  checkpoint every --interval seconds (0: as fast as it can, so the driver is the limit). After
  a short warm-up pass (not measured), at each concurrency a pass with logging off, then on.
  Trials wait for every slot's actor to be up before their first report (`_wait`), and a pass
  ends --pass-s seconds after its first result; results/s = results / seconds from the first
  result to the last (steady state, not actor start-up); overhead_ratio = results/s off over
  results/s on, i.e. the driver's seconds per result with logging on over those with it off.
  The time the logger's callbacks take on Tune's loop is timed per result; the writer's drain
  after the last result is reported apart
  (`drain_s`): no trial waits on it. A pass that would not fit in what is left is skipped.
  A pass counts only in steady state: results over at least --min-steady-s seconds (starting many
  trial actors on few cores can take most of a short pass). The top-level figures are those of
  the largest concurrency whose two passes both count.
- CPU per result, by part (`cpu`): the driver, the MLflow server and the rest of the machine (the
  trial processes, Ray's own), in CPU-ms per result over the same window as results/s; and, from
  the top pair's pass with logging on, `cores_for_goal`: the cores each part needs for 128
  results/s at those costs. Results/s say how fast this machine goes with every part on the
  same cores; the costs carry over to a cluster, where the trials run elsewhere.
- max_concurrent_trials_2s_head: the trials at one report per 2 s that a driver with a core of
  its own would serve at most 90% busy, from its CPU-ms per result with logging on (the cluster
  case: the server on other cores, the trials on workers). A derived figure, not a measured one.
- max_concurrent_trials_2s: the trials, each reporting once per 2 s, that the driver serves with
  logging on while at most 90% busy: floor(0.9 x 2 s x R), R the highest results/s with logging
  on among the counted concurrencies whose overhead_ratio was <= 1.10 (0 if none was).
Trials ask for a sliver of a logical CPU, so concurrency is not capped by this machine's cores;
the cores are shared by the driver, the trials' processes and the MLflow server alike.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from searcher.bench.ask_latency import ask_latency
from searcher.bench.scale_report import summarise, table
from searcher.bench.scale_search import ACTOR_START_S, CHECKPOINT_BYTES, START_S, one_search
from searcher.errors import one_line_errors

PROG = "python -m searcher.bench scale"
VERSIONS = ("ray", "optuna", "mlflow")

FULL = {"concurrency": [16, 64], "trials": [2000, 2000], "epochs": 4, "pass_s": 30,
        "ask_at": [250, 500, 1000], "repeats": 20, "budget_s": 660, "min_steady_s": 20.0,
        "warm_up_s": 10.0}
SMOKE = {"concurrency": [4], "trials": [8], "epochs": 2, "pass_s": 120, "ask_at": [0, 20],
         "repeats": 3, "budget_s": 600, "min_steady_s": 0.0,
         "warm_up_s": 0.0}

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


# ----------------------------------------------------------------------------- one search


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, for CI")
    parser.add_argument("--concurrency", type=int, nargs="+", help="trials at once, growing")
    parser.add_argument("--trials", type=int, nargs="+", help="most trials per concurrency")
    parser.add_argument("--epochs", type=int, help="results per trial that ASHA lets through")
    parser.add_argument("--interval", type=float, default=0.0,
                        help="seconds between a trial's reports (0: as fast as it can)")
    parser.add_argument("--pass-s", type=float, help="seconds per search from its first result")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run")
    parser.add_argument("--ask-at", type=int, nargs="+", help="history sizes to time ask at")
    parser.add_argument("--repeats", type=int, help="proposals timed per history size")
    parser.add_argument("--space", default="spaces/cifar10.py", help="space for ask latency")
    parser.add_argument("--backend-uri", help="the MLflow server's store (default: SQLite)")
    parser.add_argument("--no-off", action="store_true", help="logging on only")
    parser.add_argument("--min-steady-s", type=float,
                        help="a pass counts if its results span this many seconds")
    parser.add_argument("--warm-up-s", type=float, help="a first pass, not measured (0: none)")
    parser.add_argument("--json", help="write the figures here (after each step)")
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
    started = time.perf_counter()
    result = {**machine_info("cpu", VERSIONS),
              "settings": {"interval_s": args.interval, "epochs": args.epochs,
                           "pass_s": args.pass_s, "budget_s": args.budget_s,
                           "checkpoint_bytes": CHECKPOINT_BYTES,
                           "backend": args.backend_uri or "sqlite (mlflow server)"},
              "skipped": []}
    runs: list[dict[str, Any]] = []

    def save(ask: dict[str, Any] | None) -> None:  # after each step: a cut run keeps its figures
        result["scale"] = summarise(runs, ask, args.min_steady_s)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        if args.json:
            write_json(args.json, result)

    print(f"[scale] ask latency on {args.space} at {args.ask_at} finished trials", flush=True)
    ask = ask_latency(Path(args.space), args.ask_at, args.repeats)
    print(f"[scale] ask ms: {ask['ask_ms']}; at {ask['log_ndtr_ms'].get('size')}, Optuna's own "
          f"log_ndtr {ask['log_ndtr_ms'].get('optuna')} ms, scipy's "
          f"{ask['log_ndtr_ms'].get('scipy')} ms", flush=True)
    save(ask)
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
                # Not measured: Ray's first actors and worker processes start here, not in the
                # first measured pass (which is logging off, and was the slower of a pair more
                # often than not before this).
                if args.warm_up_s:
                    print(f"[scale] warm-up: {args.warm_up_s:g} s, not measured", flush=True)
                    one_search(space_file, None, args.concurrency[0], args.trials[0],
                               args.epochs, args.interval, args.warm_up_s, root / "warm-up",
                               server.pid)
                for concurrency, trials in zip(args.concurrency, args.trials):
                    for uri in ((None,) if not args.no_off else ()) + (server.uri,):
                        name = f"c{concurrency}-{'on' if uri else 'off'}"
                        left = args.budget_s - (time.perf_counter() - started)
                        if left < args.pass_s + START_S + ACTOR_START_S * concurrency:
                            print(f"[scale] {name}: skipped, {left:.0f} s left", flush=True)
                            result["skipped"].append(name)
                            continue
                        print(f"[scale] {name}: up to {trials} trials for {args.pass_s:g} s, "
                              f"{concurrency} at once ({time.strftime('%H:%M:%S')})", flush=True)
                        runs.append(one_search(space_file, uri, concurrency, trials, args.epochs,
                                               args.interval, args.pass_s, root / name,
                                               server.pid))
                        print(f"[scale] {name}: {runs[-1]['results']} results in "
                              f"{runs[-1]['seconds']} s = {runs[-1]['results_per_s']}/s",
                              flush=True)
                        save(ask)
        finally:
            if started_ray:
                ray.shutdown()
    save(ask)
    print(table(result["scale"]))
    if ask["profile"]:
        print(ask["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
