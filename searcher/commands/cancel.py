"""`searcher cancel`: stop a search on a shared Ray cluster, saved so that it can be resumed.

The search's driver is asked, through the cluster's slot broker (a short job on the cluster),
to stop as after a Ctrl-C: its running trials end where they stand and Tune saves the search.
A driver that is not live to hear it (still starting, or queued), or that has not stopped after
WAIT_S, is stopped through the jobs API (SIGTERM, which it takes as a Ctrl-C too). `searcher
resume ID` goes on with the search.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from searcher.commands import jobs
from searcher.errors import UserError, one_line_errors

PROG = "searcher cancel"
WAIT_S = 120  # a driver asked to stop ends its trials and saves Tune's state within this


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("search", help="the search's id, as `searcher submit` printed it")
    jobs.add_cluster_option(p)
    return p.parse_args(argv)


def cancel(cluster: jobs.Cluster, search: str, by: str) -> str:
    """Stop the search's running job; returns how it ended (the job's status)."""
    job = cluster.jobs_of(search)[-1]
    status = str(job.status)
    if status in jobs.ENDED:
        raise UserError(f"{search} is not running (its last job {job.submission_id} is "
                        f"{status.lower()}): nothing to cancel")
    asked = status == "RUNNING" and cluster.helper("cancel", search, by).get("cancelled")
    if asked:
        print(f"Asked {search}'s driver to stop and save the search; waiting for it (up to "
              f"{WAIT_S} s)...", flush=True)
        status = cluster.wait(job.submission_id, WAIT_S)
    if status not in jobs.ENDED:  # not live to hear it, or too slow: SIGTERM, then Ray's SIGKILL
        cluster.client.stop_job(job.submission_id)
        status = cluster.wait(job.submission_id, jobs.STOP_WAIT_S + 30)
    return status


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog), jobs.connect(args.cluster) as cluster:
        status = cancel(cluster, args.search, jobs.submitter())
        if status not in jobs.ENDED:
            raise UserError(f"{args.search} did not stop (its job is still {status.lower()}); "
                            f"`searcher status {args.search}` shows it")
        print(f"Cancelled {args.search}: saved where it stopped. To go on with it:")
        print(f"  searcher resume {args.search} --cluster {shlex.quote(args.cluster)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
