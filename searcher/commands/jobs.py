"""A shared Ray cluster's jobs API, for `searcher submit/status/logs/cancel/resume`.

`--cluster` is the jobs API's http(s) address, or a Ray cluster config: then the command opens
`ray dashboard CONFIG` (an SSH forward, on a free local port) for as long as it runs. The token
is Ray's own (`$RAY_AUTH_TOKEN`, `$RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`, as Ray looks it up),
sent whether or not `RAY_AUTH_MODE` is set here. A search is the jobs whose metadata name it: its
first job (submission id = the search's id), then `ID.resume-1`, `ID.resume-2`, ...

What a job carries (entrypoint, runtime_env, metadata) every holder of the cluster's token can
read: it holds names only, never a password.
"""
from __future__ import annotations

import argparse
import configparser
import contextlib
import getpass
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searcher.errors import UserError

CLUSTER_ENV = "SEARCHER_CLUSTER"
SEARCH_KEY, SUBMITTER_KEY, SPACE_KEY = "searcher.search", "searcher.submitter", "searcher.space"
HELPER_KEY = "searcher.helper"  # the short jobs status and cancel run; never listed as searches
RESUME = ".resume-"
VIEW_PREFIX = "SEARCHER-VIEW "
ENDED = {"SUCCEEDED", "FAILED", "STOPPED"}
# A search's job gets this long to save itself after `stop_job`'s SIGTERM before Ray's SIGKILL
# (Ray's default: 3 s, too short for Tune to write its state).
STOP_WAIT_S = 60
FORWARD_WAIT_S = 90  # `ray dashboard CONFIG` reads the config and opens SSH before it answers
HELPER_WAIT_S = 180  # a helper job's first run on a cluster unpacks the project there first


def add_cluster_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", default=os.environ.get(CLUSTER_ENV),
                        help="the cluster: its jobs API (http://127.0.0.1:8265) or its Ray "
                             f"cluster config (cluster.yaml: forwarded over SSH while the "
                             f"command runs); default ${CLUSTER_ENV}")


def submitter() -> str:
    """Who submits: the MLflow user name ($MLFLOW_TRACKING_USERNAME, else ~/.mlflow/credentials),
    else this machine's user. The name only: the password is never read."""
    name = os.environ.get("MLFLOW_TRACKING_USERNAME")
    credentials = Path.home() / ".mlflow" / "credentials"
    if not name and credentials.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(configparser.Error, OSError):
            parser.read(credentials)
            name = parser.get("mlflow", "mlflow_tracking_username", fallback=None)
    return (name or getpass.getuser()).strip()


@dataclass
class Cluster:
    """A connected jobs API (`client`, Ray's JobSubmissionClient) and what the commands ask it."""
    client: Any
    address: str
    cluster: str  # as the user gave it, for the commands printed to follow a search

    def searches(self) -> dict[str, list[Any]]:
        """Every search's jobs, oldest first; the searches by their first job, newest last."""
        found: dict[str, list[Any]] = {}
        for job in self.client.list_jobs():
            search = (job.metadata or {}).get(SEARCH_KEY)
            if search and job.submission_id:
                found.setdefault(search, []).append(job)
        for jobs in found.values():
            jobs.sort(key=lambda j: _resume_number(j.submission_id))
        return dict(sorted(found.items(), key=lambda kv: kv[1][0].start_time or 0))

    def jobs_of(self, search: str) -> list[Any]:
        """The search's jobs, oldest first; a search the cluster does not know is a UserError."""
        jobs = self.searches().get(search)
        if not jobs:
            raise UserError(f"no search {search} on the cluster at {self.address}; `searcher "
                            f"status --cluster {self.cluster}` lists them")
        return jobs

    def wait(self, job_id: str, timeout_s: float, every_s: float = 1.0) -> str:
        """The job's status once it has ended, or as it is when `timeout_s` have passed."""
        deadline = time.monotonic() + timeout_s
        while (status := str(self.client.get_job_status(job_id))) not in ENDED:
            if time.monotonic() > deadline:
                break
            time.sleep(every_s)
        return status

    def helper(self, *args: str) -> dict[str, Any]:
        """Run `python -m searcher.tune.sharing ARGS` on the cluster (the slot broker is reached
        from the cluster only) and return the JSON of its SEARCHER-VIEW line."""
        job = self.client.submit_job(
            entrypoint=entrypoint(["python", "-m", "searcher.tune.sharing", *args]),
            runtime_env={"working_dir": "."}, metadata={HELPER_KEY: args[0]})
        try:
            status = self.wait(job, HELPER_WAIT_S, every_s=0.5)
            logs = self.client.get_job_logs(job)
        finally:
            with contextlib.suppress(Exception):  # ended, or left to end by itself
                if str(self.client.get_job_status(job)) not in ENDED:
                    self.client.stop_job(job)
                else:
                    self.client.delete_job(job)
        for line in reversed(logs.splitlines()):
            if line.startswith(VIEW_PREFIX):
                return json.loads(line[len(VIEW_PREFIX):])
        last = logs.strip().splitlines()[-1:] or [f"no output, status {status}"]
        raise UserError(f"the cluster's slot broker did not answer (`searcher.tune.sharing "
                        f"{args[0]}`: {last[0]})")


def _resume_number(submission_id: str) -> int:
    _, _, n = submission_id.partition(RESUME)
    return int(n) if n.isdigit() else 0


def entrypoint(argv: list[str]) -> str:
    """A job's entrypoint: a shell line, each argument quoted."""
    return shlex.join(argv)


@contextlib.contextmanager
def connect(cluster: str | None) -> Iterator[Cluster]:
    """The cluster's jobs API, for the block; its failures (no answer, a refused token) end as
    one-line UserErrors."""
    if not cluster:
        raise UserError(f"no cluster given: pass --cluster http://HOST:8265 (the jobs API) or "
                        f"--cluster CONFIG.yaml, or set ${CLUSTER_ENV}")
    with contextlib.ExitStack() as held:
        address = _address(cluster, held)
        with _answers(address):
            from ray.job_submission import JobSubmissionClient
            client = JobSubmissionClient(address, headers=_token_header())
            yield Cluster(client, address, cluster)


def _address(cluster: str, held: contextlib.ExitStack) -> str:
    if re.match(r"https?://", cluster):
        return cluster.rstrip("/")
    config = Path(cluster).expanduser()
    if config.suffix in (".yaml", ".yml") or config.is_file():
        if not config.is_file():
            raise UserError(f"--cluster {cluster}: no such cluster config file")
        return held.enter_context(_forward(config))
    raise UserError(f"--cluster {cluster}: give the jobs API's address (http://HOST:8265) or a "
                    f"Ray cluster config file (cluster.yaml)")


def _token_header() -> dict[str, str]:
    """Ray's token as Ray itself finds it, whatever RAY_AUTH_MODE says here; none: no header
    (a cluster without token authentication)."""
    from ray._raylet import AuthenticationTokenLoader
    return dict(AuthenticationTokenLoader.instance().get_token_for_http_header(
        ignore_auth_mode=True) or {})


@contextlib.contextmanager
def _answers(address: str) -> Iterator[None]:
    """The jobs API's failures as one line each."""
    import requests
    from ray.exceptions import AuthenticationError
    try:
        yield
    except AuthenticationError as exc:
        refused = "403" if "403" in str(exc) or "Forbidden" in str(exc) else "401"
        raise UserError(f"the cluster at {address} refused Ray's token ({refused}): copy the "
                        f"cluster's ~/.ray/auth_token to this machine (or set $RAY_AUTH_TOKEN)"
                        ) from None
    except (ConnectionError, requests.ConnectionError, requests.Timeout) as exc:
        raise UserError(f"the cluster's jobs API at {address} does not answer "
                        f"({type(exc).__name__}): is the cluster up (`ray up`), and the forward "
                        f"open (`ray dashboard CONFIG`, or pass --cluster CONFIG.yaml)?") from None
    except RuntimeError as exc:  # the SDK's "Request failed with status code N: ..."
        if "Request failed" not in str(exc):
            raise
        raise UserError(f"the cluster at {address}: {' '.join(str(exc).split())[:300]}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _forward(config: Path) -> Iterator[str]:
    """`ray dashboard CONFIG` on a free local port, in its own process group, closed at exit."""
    port = _free_port()
    ray = Path(sys.executable).parent / "ray"
    argv = [str(ray) if ray.exists() else "ray", "dashboard", "--port", str(port), str(config)]
    with tempfile.TemporaryFile(mode="w+") as err:  # why it failed, if it does
        try:
            forward = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                       start_new_session=True)
        except OSError as exc:
            raise UserError(f"--cluster {config}: cannot run `ray dashboard` ({exc})") from None
        try:
            deadline = time.monotonic() + FORWARD_WAIT_S
            while not _listening(port):
                if forward.poll() is not None:
                    err.seek(0)
                    lines = [ln.strip() for ln in err.read().splitlines() if ln.strip()]
                    why = lines[-1] if lines else f"exit status {forward.returncode}"
                    raise UserError(f"--cluster {config}: `ray dashboard {config}` did not open "
                                    f"the forward ({why[:300]})")
                if time.monotonic() > deadline:
                    raise UserError(f"--cluster {config}: `ray dashboard {config}` did not open "
                                    f"the forward in {FORWARD_WAIT_S} s")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}"
        finally:
            _close(forward)


def _close(forward: subprocess.Popen) -> None:
    """End the forward and what it started (ssh), its whole process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(forward.pid, signal.SIGTERM)
    try:
        forward.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(forward.pid, signal.SIGKILL)
        forward.wait()


def follow_lines(cluster: str, search: str) -> list[str]:
    """The commands that follow a search, as `searcher submit` and `resume` print them."""
    where = f"--cluster {shlex.quote(cluster)}"
    return [f"  searcher status {search} {where}",
            f"  searcher logs {search} --follow {where}",
            f"  searcher cancel {search} {where}"]
