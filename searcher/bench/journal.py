"""`python -m searcher.bench journal`: what recording a trial in the study's journal costs Tune's loop.

Claim: the search's journal file (`searcher.tune.study_journal.FlushedJournalFile`, no fsync per write)
records a trial in well under half the time of Optuna's `JournalFileBackend` (an fsync per write).
How: in turns, a study on each backend asks, suggests 5 parameters, reports 2 epochs and tells,
--trials times (10 writes a trial, as a search's trials make); the figure is the median ms per
trial over --repeats turns, and the ratio of the two. The file is written where --dir says (the
file system the search folder is on matters: NFS pays a round trip per fsync).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROG = "python -m searcher.bench journal"


def ms_per_trial(backend: Any, path: Path, trials: int) -> float:
    import optuna
    from optuna.storages import JournalStorage

    study = optuna.create_study(storage=JournalStorage(backend(str(path))), direction="maximize",
                                sampler=optuna.samplers.RandomSampler(0))
    start = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        for k in range(5):
            trial.suggest_float(f"x{k}", 0.0, 1.0)
        trial.report(0.1, 1)
        trial.report(0.2, 2)
        study.tell(trial, 0.3)
    return 1000 * (time.perf_counter() - start) / trials


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--trials", type=int, default=300, help="trials per turn (default 300)")
    p.add_argument("--repeats", type=int, default=5, help="turns per backend (default 5)")
    p.add_argument("--dir", help="where the journal files go (default: a temporary folder)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from searcher.bench.common import machine_info, write_json
    from searcher.tune.study_journal import FlushedJournalFile

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backends = {"optuna_fsync": JournalFileBackend, "searcher_flushed": FlushedJournalFile}
    times: dict[str, list[float]] = {name: [] for name in backends}
    with tempfile.TemporaryDirectory(prefix="searcher-journal-", dir=args.dir) as tmp:
        for turn in range(args.repeats):
            for name, backend in backends.items():  # in turns: machine noise falls on both
                times[name].append(ms_per_trial(backend, Path(tmp, f"{name}-{turn}.log"),
                                                args.trials))
    ms = {name: round(statistics.median(v), 3) for name, v in times.items()}
    result = {**machine_info("cpu", ("optuna",)), "journal": {
        "ms_per_trial": ms, "ratio": round(ms["searcher_flushed"] / ms["optuna_fsync"], 3),
        "trials": args.trials, "repeats": args.repeats, "dir": args.dir or tempfile.gettempdir()}}
    print(f"ms of Tune's loop per trial recorded (10 writes): Optuna's journal file "
          f"{ms['optuna_fsync']}, the search's {ms['searcher_flushed']} "
          f"(ratio {result['journal']['ratio']})")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
