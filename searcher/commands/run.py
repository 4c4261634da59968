"""`python -m searcher.run SPACE_FILE`: run a search and log it to MLflow."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searcher.errors import UserError, one_line_errors
from searcher.redaction import MASK

if TYPE_CHECKING:
    from searcher.spec.space import Space
    from searcher.tracking.readback import TrialRecord
    from searcher.tune.warm_start import MeasuredBaseline

PROG = "python -m searcher.run"

# option -> setting; options left out keep the space file's value
OVERRIDES = {
    "num_samples": (int, "trials to run (-1: until --time-budget is spent)"),
    "time_budget": (float, "wall-clock budget for the whole search, in seconds"),
    "epochs": (int, "the most epochs a trial trains (ASHA's max_t)"),
    "data_dir": (str, "folder holding cifar-10-batches-py/ (or an image folder's root); "
                      "default $SEARCHER_DATA_DIR, else ./data, downloading CIFAR-10 if missing"),
    "strict": (bool, "stop at the first unreadable image instead of skipping it"),
    "tracking_uri": (str, "MLflow tracking URI; default $MLFLOW_TRACKING_URI, else "
                          "sqlite:///mlflow.db in this folder"),
    "address": (str, "Ray cluster to join (default $RAY_ADDRESS, else a local Ray)"),
    "storage_path": (str, "where Tune keeps checkpoints; a shared path (NFS, s3://) on clusters"),
    "study_storage": (str, "database for the Optuna study and what --resume needs, e.g. "
                           "postgresql://searcher@db/optuna (default $SEARCHER_STUDY_STORAGE, "
                           "else a journal file beside Tune's state)"),
    "experiment": (str, "MLflow experiment name (default: the space file's name)"),
    "cpus_per_trial": (float, "CPUs per trial, also its torch threads"),
    "gpus_per_trial": (float, "GPUs per trial, fractions allowed (default 0.25 if the cluster "
                              "has GPU nodes or its autoscaler can start them)"),
    "max_concurrent_trials": (int, "cap on trials running at once (default: what the cluster "
                                   "holds, scaled to its node types' maximum)"),
    "first_look": (bool, "score every trial first after part of its first epoch, where ASHA "
                         "may stop it, instead of after a whole epoch"),
    "seed": (int, "seed for the sampler, the validation split and the trials"),
    "sampler": (str, "Optuna sampler: tpe (default) or random (the baseline to beat)"),
    "warm_start": (str, "learn from earlier searches first: an MLflow experiment, a search's "
                        "parent run id, or 'latest' (this space's newest search)"),
    "second_objective": (str, "search for the Pareto front of the metric and latency_ms, params "
                              "or mmacs (minimised) instead of the metric alone"),
    "max_latency_ms": (float, "record nets slower than this (median, timed in the trial before "
                              "it trains) as infeasible, never trained"),
    "latency_batch": (int, "images per forward pass when timing latency (default 1)"),
    "max_params": (int, "record nets with more parameters as infeasible, never trained"),
    "priority": (float, "the search's weight on a cluster other searches share: its part of the "
                        "trial slots is its priority over the sum of theirs (default 1)"),
    "submitter": (str, "who submits the search (searcher submit sets it): the MLflow user its "
                       "runs show"),
    "verbose": (bool, "print a line per epoch per trial and per finished trial instead of one "
                      "progress line (MLflow records every epoch either way)"),
}
_SETTING_NAME = {"time_budget": "time_budget_s", "strict": "strict_data"}


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Search CNN architectures and hyperparameters: Optuna proposes, "
        "Ray Tune schedules (ASHA), MLflow records.",
        epilog=f"Example: {prog} spaces/cifar10.py --data-dir ../shared/data "
               "--num-samples 12 --epochs 4")
    parser.add_argument("space", help="search-space file, e.g. spaces/cifar10.py")
    parser.add_argument("--resume", nargs="?", const="", metavar="EXPERIMENT_DIR",
                        help="continue an interrupted search (default: this space's latest "
                             "unfinished one): finished trials, Optuna's history and the MLflow "
                             "parent run are kept")
    parser.add_argument("--name", help="the new search's name, SPACE-YYYYmmdd-HHMMSS-XXXX as "
                                       "made by default (searcher submit chooses it)")
    for name, (kind, text) in OVERRIDES.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:  # a plain flag; None when absent, so the space file's value stands
            parser.add_argument(flag, action="store_const", const=True, help=text)
        else:
            parser.add_argument(flag, type=kind, help=text)
    return parser.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {_SETTING_NAME.get(k, k): getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}


# Settings a resumed search must keep, and why. A resume goes on with what Tune saved when the
# search began (the searcher with its sampler and limits on proposals, the scheduler, the
# trial slots, the MLflow logger), which a new value would not reach, or would contradict where
# it does reach (the trials, made anew). Its limits, `num_samples` and `time_budget_s`, may
# change (searcher.tune.limits), and so may where things are and what is printed.
_SPLIT = "would change its validation split mid-search"
_FIXED_ON_RESUME = {
    "seed": _SPLIT,
    "data_dir": _SPLIT,
    "epochs": "ASHA and Optuna, restored as Tune saved them, count a trial's epochs by it",
    "first_look": "ASHA, restored as Tune saved it, keeps its rungs",
    "sampler": "the study's sampler is restored as Tune saved it",
    "second_objective": "the sampler and ASHA, restored as Tune saved them, rank by it",
    "warm_start": "the study learnt from its earlier searches when it began",
    "cpus_per_trial": "the trial slots are restored as Tune saved them",
    "gpus_per_trial": "the trial slots are restored as Tune saved them",
    "max_concurrent_trials": "the trial slots are restored as Tune saved them",
    "max_params": "the searcher, restored as Tune saved it, checks proposals against it",
    "max_latency_ms": "later trials would be held to another bound than earlier ones",
    "latency_batch": "later trials would be timed otherwise than earlier ones",
    "experiment": "its parent run is in that MLflow experiment already",
}


def check_resume_overrides(recorded: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse an option that changes a setting the search being resumed must keep."""
    from searcher.spec.settings import Settings
    for name, why in _FIXED_ON_RESUME.items():
        if overrides.get(name) is None:
            continue
        given, kept = overrides[name], recorded.get(name)
        if name == "data_dir":  # the same folder however it is spelt
            same = (Path(given).expanduser().resolve()
                    == Path(Settings(data_dir=kept).resolved_data_dir()).expanduser().resolve())
        else:
            same = given == kept
        if not same:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"--resume: {flag} {given} differs from the search's recorded "
                            f"{name}={kept}, and {why}; leave {flag} out to resume it, or start "
                            f"a new search")


def check_resume_limits(record: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Refuse a new limit where it cannot apply: to a finished search, and to one started by an
    earlier searcher, whose limits Tune restores as they were."""
    from searcher.tune.state import LIMITS, OWN_LIMITS
    kept = record["settings"]
    for name in LIMITS:
        if overrides.get(name) is None or overrides[name] == kept.get(name):
            continue
        option = {s: o for o, s in _SETTING_NAME.items()}.get(name, name)
        flag = "--" + option.replace("_", "-")
        if record.get("finished"):
            raise UserError(f"--resume: the search has finished, and {flag} cannot reopen it; "
                            f"start a new one (--warm-start {record['parent_run_id']} learns "
                            f"from it)")
        if not record.get(OWN_LIMITS):
            raise UserError(f"--resume: the search was started by an earlier searcher, whose "
                            f"Tune keeps {name}={kept.get(name)} as it was; leave {flag} out "
                            f"to resume it")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The command; `prog` is how its messages name it (`searcher run` from searcher.commands.cli)."""
    args = parse_args(argv, prog)
    with one_line_errors(prog), contextlib.ExitStack() as held:
        return _run(args, held)


def _run(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    # Heavy imports after argument parsing, so --help and bad options answer at once.
    from searcher.tracking import store as tracking
    from searcher.training.data import load_search_data
    from searcher.tune.state import check_study_storage
    from searcher.tune.tuner import check_cluster, init_ray

    if args.address is None and os.environ.get("RAY_ADDRESS"):  # a job's driver: the cluster's
        args.address = os.environ["RAY_ADDRESS"]  # recorded, so the search is listed where it ran
    space, resume, parent = _space_and_resume(args, held)
    s = space.settings
    tracking.check_server(s.tracking_uri)
    check_study_storage(s)
    check_cluster(s.address)  # in seconds, rather than ray.init's minutes of retries
    # Where it runs comes first: Ray joined (or started) before the data is read, and before
    # the parent run exists, so a cluster that fails to answer leaves no run behind.
    print(f"[searcher] {init_ray(s.address)}", flush=True)
    print(f"[searcher] MLflow: {tracking.describe_store(s.tracking_uri)}", flush=True)
    print(f"[searcher] loading {s.dataset} from {s.resolved_data_dir()}", flush=True)
    data = load_search_data(s.dataset, s.resolved_data_dir(), s.image_size, s.val_fraction, s.seed,
                            s.strict_data)
    client = tracking.connect(s.tracking_uri)
    warm, measured = _learnt(client, space, data, resume, parent)
    summary = {"dataset": s.dataset, "data_dir": s.resolved_data_dir(), "classes": data.classes,
               "train": len(data.train), "val": len(data.val), "image_shape": data.image_shape,
               "skipped_images": len(data.skipped)}
    print(f"[searcher] {len(data.train)} training and {len(data.val)} validation images, "
          f"{len(data.classes)} classes", flush=True)
    if data.skipped:
        print(f"[searcher] skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]} "
              f"(all listed in the MLflow run's skipped_images.txt; --strict stops instead)",
              flush=True)
    if parent is None:
        parent = tracking.start_search_run(client, space, summary,
                                           warm.summary() if warm else None, data=data)
    else:
        client.update_run(parent, "RUNNING")
    # Read while the server is known to answer: the closing lines must not need it.
    experiment_id = client.get_run(parent).info.experiment_id
    result = _search(client, space, data, parent, resume, warm, args.name)
    _close(client, space, parent, result, _measured(measured, space), experiment_id,
           len(data.classes))
    return 0


def _space_and_resume(args: argparse.Namespace, held: contextlib.ExitStack):
    """The space with its settings, and for --resume the search found, locked, and its parent
    run; a new search has neither."""
    from searcher.spec.space import load_space
    from searcher.tune import driver_lock
    from searcher.tune.state import find_resumable, is_search_of, redact

    space = load_space(args.space, overrides_from(args))
    if args.name is not None:
        if args.resume is not None:
            raise UserError("--name names a new search; --resume takes the search's name instead")
        if not is_search_of(args.name, space.name):
            raise UserError(f"--name {args.name!r} is not a name for a search of {space.name}: "
                            f"{space.name}-YYYYmmdd-HHMMSS-XXXX (4 hex digits)")
    if args.resume is None:
        return space, None, None
    resume = find_resumable(space.settings, space.name, args.resume or None)
    # One driver per search, taken before anything of the search is read or changed.
    held.enter_context(driver_lock.hold(resume.name, resume.folder, resume.database))
    saved = resume.read_record()
    check_resume_overrides(saved["settings"], overrides_from(args))
    check_resume_limits(saved, overrides_from(args))
    # Tune's saved state holds the space as the search first ran it: an edited file would be
    # shown and logged as the space while the old one is what runs.
    if saved.get("space_sha256", space.sha256) != space.sha256:
        raise UserError(f"--resume: {args.space} is not the space file {resume.name} ran "
                        f"({saved.get('space_file')}); it changed since: resume with the file as "
                        f"it was, or start a new search")
    if MASK in saved["tracking_uri"] and args.tracking_uri is None:
        raise UserError(f"the search's record keeps its tracking URI without its secret "
                        f"({saved['tracking_uri']}): pass it again with --tracking-uri (or "
                        f"the user and password in MLFLOW_TRACKING_USERNAME/PASSWORD)")
    # A search recorded before first looks existed ran without them, and resumes so.
    space = load_space(args.space, {"first_look": False, **saved["settings"],
                                    "tracking_uri": saved["tracking_uri"], **overrides_from(args)})
    parent = saved["parent_run_id"]
    where = f"study database {redact(resume.database)}" if resume.database else resume.folder
    print(f"[searcher] resuming {resume.name} from {where} (MLflow run {parent})", flush=True)
    return space, resume, parent


def _learnt(client, space: Space, data, resume, parent: str | None):
    """The warm start of a new search (None otherwise), and the baselines not run again because
    the searches learnt from measured them on the same data: the new trials rank against them.
    A resumed search reads them back from its parent run; its study holds the learnt trials."""
    from searcher.spec.feasibility import proposal_cost
    from searcher.tracking import store as tracking
    from searcher.tune.warm_start import load_warm_start, recorded_baselines

    s = space.settings
    if resume is not None:
        return None, recorded_baselines(client, parent)
    if not s.warm_start:
        return None, {}
    warm = load_warm_start(client, space, s.warm_start,
                           proposal_cost(s, len(data.classes), data.image_shape),
                           tracking.data_digests(data))
    print(f"[searcher] warm start from {len(warm.sources)} search(es): {len(warm.trials)} "
          f"trials" + "".join(f", {n} skipped ({why})" for why, n in warm.skipped.items()),
          flush=True)
    if warm.baselines:  # measured on the same data already: the budget goes to new trials
        print("[searcher] not run again, measured by the search(es) learnt from: " + ", ".join(
            f"{n} ({s.metric} {b.value:.4f})" for n, b in warm.baselines.items()), flush=True)
    return warm, warm.baselines


def _search(client, space: Space, data, parent: str, resume, warm, name: str | None = None):
    """Run (or resume) the search; the parent run is closed as the search ended, unless it
    finished (then `_close` does, with its summary)."""
    from searcher.tracking.tags import CANCELLED_TAG
    from searcher.tune import interrupt
    from searcher.tune.tuner import run_search

    status = "FAILED"
    try:
        result = run_search(space, data, client.tracking_uri, parent, resume, warm, name)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        if interrupt.cancelled():  # `searcher cancel`: the run says so, and by whom
            with contextlib.suppress(Exception):
                client.set_tag(parent, CANCELLED_TAG, interrupt.cancelled())
        raise
    except UserError:
        if interrupt.fired():  # stopped by the search itself (a full disk): resumable
            status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            with contextlib.suppress(Exception):  # in an outage: the error is the one to tell
                client.set_terminated(parent, status)


def _close(client, space: Space, parent: str, result, learnt: list[TrialRecord],
           experiment_id: str, num_classes: int) -> None:
    """The leaderboard and the Pareto front on disk and in MLflow (what MLflow did not take,
    listed beside it), and the closing lines."""
    from searcher.tracking import store as tracking
    from searcher.tracking.leaderboard import FRONT_MARK, build_leaderboard, format_leaderboard
    from searcher.tracking.pareto import front_line, front_summary

    s = space.settings
    records = result.records + learnt
    front = front_summary(records, s, num_classes)
    rows = build_leaderboard(records, s.metric, s.mode, front["front"])
    text = format_leaderboard(rows, s.metric)
    folder = Path(result.experiment_path)
    (folder / "leaderboard.txt").write_text(text + "\n")
    unlogged = list(result.unlogged)
    try:
        tracking.finish_search_run(client, parent, rows, text, result.study, s.metric,
                                   result.wall_time_s, result.proposals, result.infeasible,
                                   front=front)
    except Exception as exc:  # the server went away: the search's results are still on disk
        unlogged.append(f"the search's summary, plots, leaderboard and Pareto front "
                        f"({type(exc).__name__})")
    if unlogged:
        (folder / "unlogged.txt").write_text("\n".join(unlogged) + "\n")
        print(f"[searcher] MLflow did not accept {len(unlogged)} update(s), listed in "
              f"{folder / 'unlogged.txt'}; first: {unlogged[0]}", flush=True)

    metric, second = front["objectives"]
    print(f"\nSearch finished ({s.sampler} sampler): {len(result.records)} trials in "
          f"{result.wall_time_s / 60:.1f} min ({result.errors} failed); {result.infeasible} of "
          f"{result.proposals} proposals were infeasible and never ran. "
          f"Leaderboard ({s.metric}, * = hand-made baseline, {FRONT_MARK} = on the Pareto front "
          f"of {metric} vs {second}):\n")
    print(text)
    print(f"\n{front_line(front)}")
    print(f"\nMLflow:   experiment '{space.name}', run {parent}")
    print("\n".join(tracking.how_to_browse(client.tracking_uri, experiment_id, parent, space.name,
                                           s.resolved_data_dir())))


def _measured(baselines: dict[str, MeasuredBaseline], space: Space) -> list[TrialRecord]:
    """Leaderboard entries for the baselines the learnt searches measured."""
    from searcher.tracking.readback import TrialRecord
    return [TrialRecord(b.run_id[:8], b.run_id, space.baselines[name], name, best=b.value,
                        epochs=b.epochs, n_params=b.n_params,
                        outcome=f"earlier search {b.search[:8]}")
            for name, b in baselines.items()]


if __name__ == "__main__":
    sys.exit(main())
