"""`searcher logs`: a search's output on a shared Ray cluster, every job of it in order.

A search's jobs are its first run and each resume (`ID`, `ID.resume-1`, ...); each job's log
follows a line naming it. `--follow` then tails the search's running job until it ends (Ctrl-C
stops following; the search goes on).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from searcher.commands import jobs
from searcher.errors import one_line_errors

PROG = "searcher logs"


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("search", help="the search's id, as `searcher submit` printed it")
    p.add_argument("-f", "--follow", action="store_true",
                   help="then follow its running job's output until it ends")
    jobs.add_cluster_option(p)
    return p.parse_args(argv)


def _header(job: Any) -> str:
    return f"===== {job.submission_id} ({str(job.status).lower()}) ====="


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _tail(cluster: jobs.Cluster, job_id: str) -> None:
    """Print the job's output as it comes, until it ends."""
    import asyncio

    async def follow() -> None:
        async for chunk in cluster.client.tail_job_logs(job_id):
            _write(chunk)

    asyncio.run(follow())


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog), jobs.connect(args.cluster) as cluster:
        its_jobs = cluster.jobs_of(args.search)
        following = its_jobs[-1] if args.follow and str(its_jobs[-1].status) not in jobs.ENDED \
            else None
        for job in its_jobs:
            print(_header(job), flush=True)
            if job is following:  # the whole log comes through the tail, from its start
                _tail(cluster, job.submission_id)
                print(f"===== {job.submission_id} "
                      f"{str(cluster.client.get_job_status(job.submission_id)).lower()} =====")
            else:
                logs = cluster.client.get_job_logs(job.submission_id)
                _write(logs if not logs or logs.endswith("\n") else logs + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
