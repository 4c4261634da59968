"""`searcher status`: the searches on a shared Ray cluster, or one of them, one line each.

A line: the search's id, its state (queued, running, cancelling, finished, cancelled, failed: from
its latest job, and the slot broker for a cancel), who submitted it, the trial slots it holds now,
its quota and weight among the searches sharing the cluster (the broker's view, fetched by a short
job on the cluster: a laptop reaches the broker through the jobs API only), and from its driver's
last progress line the trials done and running and the best value so far. "-": not known.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from searcher.commands import jobs
from searcher.errors import UserError, one_line_errors

PROG = "searcher status"
COLUMNS = ("SEARCH", "STATE", "SUBMITTER", "SLOTS", "QUOTA", "WEIGHT", "DONE", "RUNNING", "BEST")
_STATES = {"PENDING": "queued", "RUNNING": "running", "SUCCEEDED": "finished",
           "STOPPED": "cancelled", "FAILED": "failed"}
# searcher.tune.progress's line: "[searcher] 3m/4m, ETA 59s | 42/96 done (28 stopped),
# 32 running | best val_acc 0.5750 (12bc78ff)"; shortened ones keep the parts read here.
_PROGRESS = re.compile(r"^\[searcher\] [^|]*\| (?P<done>\d+(?:/\d+)?) done(?: \([^)]*\))?, "
                       r"(?P<running>\d+) running[^|]*\| best(?P<best>.*)$")
_CANCELLED = "[searcher] cancelled by "  # searcher.tune.sharing.ShareWatch's line
_FINISHED = re.compile(r"^Search finished \([^)]*\): (?P<done>\d+) trials in ")


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("search", nargs="?", help="a search's id, as `searcher submit` printed it "
                                             "(default: every search on the cluster)")
    p.add_argument("--timeline", action="store_true",
                   help="also the trial slots each search held over time, as the cluster's "
                        "slot broker recorded them")
    jobs.add_cluster_option(p)
    return p.parse_args(argv)


def timeline(view: dict[str, Any]) -> list[str]:
    """'slots at 12:01:05.3: SEARCH=2 SEARCH=2', one line per change the broker recorded."""
    return [f"slots at {time.strftime('%H:%M:%S', time.localtime(t))}.{int(t * 10) % 10}: "
            + (" ".join(f"{s}={n}" for s, n in sorted(held.items())) or "none held")
            for t, held in view.get("timeline", [])]


def progress(logs: str) -> dict[str, str]:
    """Trials done and running and the best so far, from a driver's log: its last progress line,
    or its closing line; "-" for what it does not say."""
    found = {"done": "-", "running": "-", "best": "-"}
    for line in reversed(logs.splitlines()):
        line = line.strip()
        if (m := _FINISHED.match(line)) and found["done"] == "-":
            found.update(done=m["done"], running="0")
        elif m := _PROGRESS.match(line):
            best = re.sub(r"\s*\([^)]*\)\s*$", "", m["best"]).strip().rstrip(".") or "-"
            if found["done"] == "-":
                found.update(done=m["done"], running=m["running"])
            found["best"] = best
            break
    return found


def state(jobs_of_search: list[Any], view: dict[str, Any], logs: str = "") -> str:
    """The search's state from its latest job, a cancel told apart by the broker's record or
    the driver's own line."""
    search = (jobs_of_search[-1].metadata or {}).get(jobs.SEARCH_KEY)
    status = str(jobs_of_search[-1].status)
    cancelled = (search in view.get("cancels", {})
                 or str(view.get("ended", {}).get(search, "")).startswith("cancelled")
                 or _CANCELLED in logs)
    if status == "RUNNING" and search in view.get("cancels", {}):
        return "cancelling"
    if status == "FAILED" and cancelled:
        return "cancelled"
    return _STATES.get(status, status.lower())


def rows(cluster: jobs.Cluster, searches: dict[str, list[Any]],
         view: dict[str, Any]) -> list[tuple[str, ...]]:
    out = []
    for search, its_jobs in searches.items():
        latest = its_jobs[-1]
        broker = view.get("searches", {}).get(search, {})
        try:
            logs = cluster.client.get_job_logs(latest.submission_id)
        except RuntimeError:  # its log gone (the head restarted): the rest still stands
            logs = ""
        p = progress(logs)
        live = broker.get("live", False)
        out.append((search, state(its_jobs, view, logs),
                    (latest.metadata or {}).get(jobs.SUBMITTER_KEY) or broker.get("submitter")
                    or "-",
                    str(broker["held"]) if live and "held" in broker else "-",
                    str(broker["quota"]) if live and "quota" in broker else "-",
                    f"{broker['weight']:g}" if "weight" in broker else "-",
                    p["done"], p["running"], p["best"]))
    return out


def table(rows_: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [COLUMNS, *rows_]) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
            for r in [COLUMNS, *rows_]]


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog), jobs.connect(args.cluster) as cluster:
        searches = ({args.search: cluster.jobs_of(args.search)} if args.search
                    else cluster.searches())
        if not searches:
            print(f"No searches on the cluster at {cluster.address} yet: start one with "
                  f"`searcher submit SPACE_FILE --cluster {args.cluster}`.")
            return 0
        view, note = {}, None
        # The broker knows the searches that run, and how those that failed ended.
        if args.search or args.timeline or any(str(js[-1].status) not in ("SUCCEEDED", "STOPPED")
                                               for js in searches.values()):
            try:
                view = cluster.helper("view")
            except UserError as exc:  # the jobs' own states still stand
                note = f"(slots unknown: {exc})"
        print("\n".join(table(rows(cluster, searches, view))))
        if args.search:
            print("jobs: " + ", ".join(f"{j.submission_id} {str(j.status).lower()}"
                                       for j in searches[args.search]))
        if args.timeline:
            print("\n".join(timeline(view)))
        if note:
            print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
