"""`searcher list`: the searches in the tracking store, newest first, one line each.

A line says when the search started, its space (its MLflow experiment), who submitted it, its
status as MLflow keeps it (or who cancelled it), its best score, its trials and where they ran. "resumable" follows the status when `searcher
run SPACE --resume`, started here, would go on with it: its state is in this machine's search
folders, unfinished, and no driver holds it (a search whose study is in a database is not looked
up there). Everything else is read back from MLflow through searcher.tracking.readback.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Any

from searcher.errors import UserError, one_line_errors

PROG = "searcher list"
DEFAULT_LIMIT = 20  # each search shown costs a query of its trial runs
COLUMNS = ("STARTED", "SPACE", "BY", "STATUS", "BEST", "TRIALS", "WHERE", "RUN")


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--tracking-uri", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///mlflow.db in this folder")
    p.add_argument("--experiment", help="only the searches of this MLflow experiment (a space's "
                                        "name)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help=f"the newest N searches (default {DEFAULT_LIMIT}; 0: all)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        if args.limit < 0:
            raise UserError(f"--limit {args.limit}: give a number of searches, or 0 for all")
        print("\n".join(list_searches(args.tracking_uri, args.experiment, args.limit)))
    return 0


def list_searches(tracking_uri: str | None, experiment: str | None = None,
                  limit: int = DEFAULT_LIMIT) -> list[str]:
    """The lines `searcher list` prints: a table of searches, or one line saying there is none."""
    from searcher.redaction import redact
    from searcher.tracking import readback
    from searcher.tracking import store as tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    found: list[Any] = []
    if not _missing_local_store(uri):  # connecting would create an empty one
        client = tracking.connect(uri)
        found = readback.searches(client, experiment)
    if not found:
        where = f"experiment {experiment!r} of {redact(uri)}" if experiment else redact(uri)
        return [f"No searches in {where} yet: start one with `searcher run SPACE_FILE`."]
    names = readback.experiment_names(client)
    shown = found[:limit] if limit else found
    resumable = _resumable(shown)
    rows = [_row(client, run, names.get(run.info.experiment_id, "?"), resumable) for run in shown]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
             for r in [COLUMNS, *rows]]
    if len(found) > len(shown):
        older = len(found) - len(shown)
        lines.append(f"({older} older search{'es' if older > 1 else ''} not shown; --limit 0 "
                     f"lists all)")
    return lines


def _missing_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()


def _row(client: Any, search: Any, space: str, resumable: set[str]) -> tuple[str, ...]:
    from searcher.objective import better
    from searcher.tracking.readback import setting, trial_runs
    from searcher.tracking.tags import CANCELLED_TAG, METRIC_TAG, MODE_TAG, NODES_TAG, best_key

    info, tags = search.info, search.data.tags
    metric, mode = tags.get(METRIC_TAG, "val_acc"), tags.get(MODE_TAG, "max")
    trials = trial_runs(client, search)
    best = None
    for run in trials:  # the trials' own bests: a running search has no summary yet
        value = run.data.metrics.get(best_key(metric))
        if value is not None and better(value, best, mode):
            best = value
    nodes = {n for run in trials for n in run.data.tags.get(NODES_TAG, "").split(",") if n}
    where = setting(search, "address", None) or "local"
    if nodes:
        where += f", {len(nodes)} node{'s' if len(nodes) > 1 else ''}"
    status = info.status.lower()
    if status == "killed" and tags.get(CANCELLED_TAG):  # `searcher cancel`: by whom
        status = tags[CANCELLED_TAG]
    status += ", resumable" if info.run_id in resumable else ""
    # who submitted it (a search on a cluster), else the user MLflow recorded
    by = setting(search, "submitter", None) or info.user_id
    by = "-" if by in ("", "unknown", None) else by  # MLflow's word for no user given
    return (time.strftime("%Y-%m-%d %H:%M", time.localtime(info.start_time / 1000)), space,
            by, status, f"{metric} {best:.4f}" if best is not None else "-", str(len(trials)), where,
            info.run_id)


def _resumable(searches: list[Any]) -> set[str]:
    """The parent run ids of the unfinished searches that `--resume` would go on with from here:
    an unfinished record in the search folders where each logged its state, and no driver."""
    from searcher.spec.settings import Settings
    from searcher.tracking.readback import setting
    from searcher.tune.state import SEARCH_FILE, SearchState, state_root

    roots = {state_root(Settings(storage_path=setting(s, "storage_path", None)))
             for s in searches if s.info.status != "FINISHED"
             and setting(s, "study_storage", None) is None}
    found = set()
    for marker in (m for root in roots for m in root.glob(f"*/{SEARCH_FILE}")):
        try:
            record = SearchState(marker.parent).read_record()
        except UserError:  # damaged: `--resume` refuses it too
            continue
        if not record.get("finished") and not _driver_holds(marker.parent):
            found.add(record.get("parent_run_id"))
    return found


def _driver_holds(folder: Path) -> bool:
    """Whether a driver runs the search in `folder` now: it holds searcher.tune.driver_lock's
    lock. Asked by taking it shared, without waiting, and dropping it at once: a `--resume`
    started in that instant is refused as if a driver held it, and can simply be run again."""
    from searcher.tune.driver_lock import LOCK_FILE

    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:  # never run, or not readable: no driver of this machine's
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock


if __name__ == "__main__":
    sys.exit(main())
