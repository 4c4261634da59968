"""`searcher resume`: go on with a search on a shared Ray cluster that stopped (cancelled,
failed, or its cluster lost), as a new job of it.

The job runs `python -m searcher.run SPACE --resume ID --submitter NAME [options]` in this project
folder, SPACE being the space file the search was submitted with (it must be here, unchanged:
the driver checks it against the search's record). Its submission id is `ID.resume-N`. Its
limits (--time-budget, --num-samples) may change; what the search must keep, the driver keeps.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from searcher.commands import jobs
from searcher.commands.submit import add_run_options, run_options
from searcher.errors import UserError, one_line_errors

PROG = "searcher resume"


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1],
        epilog=f"Example: {prog} cifar10-20250101-120000-ab12 --time-budget 3600 "
               "--cluster cluster.yaml")
    p.add_argument("search", help="the search's id, as `searcher submit` printed it")
    jobs.add_cluster_option(p)
    add_run_options(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        options = run_options(args)
        who = jobs.submitter()
        with jobs.connect(args.cluster) as cluster:
            its_jobs = cluster.jobs_of(args.search)
            latest = its_jobs[-1]
            if str(latest.status) not in jobs.ENDED:
                raise UserError(f"{args.search} is still {str(latest.status).lower()} (job "
                                f"{latest.submission_id}); `searcher cancel {args.search}` "
                                f"stops it first")
            if str(latest.status) == "SUCCEEDED":
                raise UserError(f"{args.search} has finished: nothing to resume (a new search "
                                f"can learn from it: --warm-start)")
            space = (its_jobs[0].metadata or {}).get(jobs.SPACE_KEY)
            if not space:
                raise UserError(f"{args.search}'s first job does not say its space file")
            if not Path(space).is_file():
                raise UserError(f"{space}, the space file {args.search} was submitted with, is "
                                f"not in this folder: run from the project folder it was "
                                f"submitted from")
            job_id = f"{args.search}{jobs.RESUME}{len(its_jobs)}"
            cluster.client.submit_job(
                entrypoint=jobs.entrypoint(["python", "-m", "searcher.run", space, "--resume",
                                            args.search, "--submitter", who, *options]),
                submission_id=job_id,
                runtime_env={"working_dir": ".",
                             "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(jobs.STOP_WAIT_S)}},
                metadata={jobs.SEARCH_KEY: args.search, jobs.SUBMITTER_KEY: who,
                          jobs.SPACE_KEY: space})
        print(f"Resumed {args.search} as job {job_id} ({space}, by {who}). Follow it:")
        print("\n".join(jobs.follow_lines(args.cluster, args.search)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
