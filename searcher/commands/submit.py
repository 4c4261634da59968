"""`searcher submit`: start a search on a shared Ray cluster as a job, and name it.

The space file is checked here first; the search's id (SPACE-YYYYmmdd-HHMMSS-XXXX) is chosen
here and is the job's submission id, so every later command takes it. The job runs `python -m
searcher.run SPACE --name ID --submitter NAME [options]` in this project folder, shipped with it
(what .gitignore and .rayignore list stays here). The job carries names only: a password in an
option would be readable by every holder of the cluster's token, so it is refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from searcher.commands import jobs
from searcher.commands.run import OVERRIDES
from searcher.errors import UserError, one_line_errors

PROG = "searcher submit"
_NOT_PASSED = ("submitter",)  # set from who submits, not typed


def add_run_options(parser: argparse.ArgumentParser, leave_out: tuple[str, ...] = ()) -> None:
    """`searcher run`'s options, passed on to the job's `python -m searcher.run`."""
    for name, (kind, text) in OVERRIDES.items():
        if name in _NOT_PASSED or name in leave_out:
            continue
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action="store_const", const=True, help=text)
        else:
            parser.add_argument(flag, type=kind, help=text)


def run_options(args: argparse.Namespace) -> list[str]:
    """The run options given, as the job's command line takes them; one with a secret in it
    (a password in a URL) is refused."""
    from searcher.redaction import credentials_in

    argv: list[str] = []
    for name, (kind, _) in OVERRIDES.items():
        value = getattr(args, name, None)
        if value is None or name in _NOT_PASSED:
            continue
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            argv.append(flag)
            continue
        if kind is str and (secrets := credentials_in(value)):
            raise UserError(f"{flag} carries {', '.join(secrets)}, and a job's command line is "
                            f"readable by everyone who holds the cluster's token: leave the "
                            f"secret out (the cluster's head has its own, e.g. ~/.pgpass)")
        argv += [flag, str(value)]
    return argv


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1],
        epilog=f"Example: {prog} spaces/cifar10.py --num-samples 48 --priority 2 "
               "--cluster cluster.yaml")
    p.add_argument("space", help="search-space file inside this project folder, e.g. "
                                 "spaces/cifar10.py")
    jobs.add_cluster_option(p)
    add_run_options(p)
    return p.parse_args(argv)


def space_in_project(space: str, project: Path | None = None) -> str:
    """`space` as the job finds it in the shipped project folder (the current one): relative."""
    project = (project or Path.cwd()).resolve()
    path = Path(space).expanduser().resolve()
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        raise UserError(f"{space} is outside this project folder ({project}), which is what the "
                        f"job ships to the cluster: move it inside, or run from the folder that "
                        f"holds it") from None


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        from searcher.commands.run import overrides_from
        from searcher.spec.space import load_space
        from searcher.tune.state import new_search_name

        if not args.cluster:  # before the space is loaded: the likelier slip, answered first
            with jobs.connect(None):
                pass
        space_file = space_in_project(args.space)
        args.submitter = who = jobs.submitter()
        space = load_space(space_file, overrides_from(args))  # its faults found here, not there
        options = run_options(args)
        search = new_search_name(space.name)
        with jobs.connect(args.cluster) as cluster:
            cluster.client.submit_job(
                entrypoint=jobs.entrypoint(["python", "-m", "searcher.run", space_file,
                                            "--name", search, "--submitter", who, *options]),
                submission_id=search,
                runtime_env={"working_dir": ".",
                             "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(jobs.STOP_WAIT_S)}},
                metadata={jobs.SEARCH_KEY: search, jobs.SUBMITTER_KEY: who,
                          jobs.SPACE_KEY: space_file})
        print(search)
        print(f"Submitted {search} ({space_file}, by {who}) to {cluster.address}. Follow it:")
        print("\n".join(jobs.follow_lines(args.cluster, search)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
