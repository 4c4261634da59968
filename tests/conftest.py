"""Shared fixtures: tiny data in the real on-disk layouts, a real local Ray, a real MLflow store,
a real PostgreSQL."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pickle
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray, loopback only
# The tests' `mlflow server`s, as the benchmarks' and the cluster configs': no GenAI job runner.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise with a class-dependent bright band: learnable in a few epochs by a small CNN."""
    x = rng.integers(0, 160, (len(labels), 3, 32, 32), dtype=np.uint8)
    for i, c in enumerate(labels):
        x[i, c % 3, (c * 3):(c * 3) + 3, :] = 255
    return x


def write_cifar(root: Path, per_batch: int, seed: int = 0) -> Path:
    """CIFAR-10 in torchvision's layout; like ../shared/data, the batches have no `filenames`."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
             "test_batch"]
    for name in names:
        y = rng.integers(0, 10, per_batch)
        batch = {"batch_label": name, "labels": y.tolist(),
                 "data": _images(y, rng).reshape(per_batch, 3072)}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)],
                     "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return root


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> Path:
    return write_cifar(tmp_path_factory.mktemp("cifar"), per_batch=80)


@pytest.fixture()
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def local_ray():
    import ray
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_matching(text: str) -> None:
    """Kill the processes whose command line mentions `text`, and all their descendants (Ray's
    agents rename themselves, so only their parents carry the session folder). `text` must end
    there, not run on into more digits: tests run side by side (pytest-xdist), and another
    worker's `/tmp/rayf1234` or `127.0.0.1:41235` must survive a kill of `/tmp/rayf123` or
    `127.0.0.1:4123`."""
    mention = re.compile(re.escape(text) + r"(?!\d)")
    doomed = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(mention.search(part) for part in (proc.info["cmdline"] or [])):
            try:
                doomed += [proc, *proc.children(recursive=True)]
            except psutil.Error:
                pass
    for proc in doomed:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(doomed, timeout=10)


BIN = Path(sys.executable).parent  # the venv's console scripts: ray, mlflow
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@contextlib.contextmanager
def ray_head(tag: str, *flags: str, env: dict[str, str] | None = None, port: int | None = None):
    """A Ray head of its own, as on a cluster (`ray start --head` with `flags`), so that a killed
    driver leaves it running. Yields its address; leaving the block stops exactly this head's
    processes and any node that joined it (by its temp dir and by its GCS address)."""
    temp = Path("/tmp") / f"{tag}{os.getpid()}"  # Ray's socket paths must stay short
    port = port or free_port()
    try:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}",
                        f"--temp-dir={temp}", "--include-dashboard=false",
                        "--disable-usage-stats", *flags],
                       check=True, capture_output=True, env=env or RAY_ENV, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        kill_matching(str(temp))  # the head, its agents and the nodes started with its temp dir
        kill_matching(f"127.0.0.1:{port}")  # any other raylet that joined its GCS


@pytest.fixture()
def head():
    """A Ray head of its own with 2 CPUs, as on a cluster, so killing a driver leaves it
    running; its address."""
    with ray_head("rayf", "--num-cpus=2") as address:
        yield address


# A role that may create databases on a running PostgreSQL; .ci/postgres makes this one.
POSTGRES_ENV = "SEARCHER_TEST_POSTGRES"
POSTGRES_DEFAULT = "postgresql://searcher:searcher@127.0.0.1:5432/postgres"


def _postgres_installed() -> bool:
    return any(shutil.which(tool) for tool in ("pg_lsclusters", "pg_ctl", "postgres"))


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a running PostgreSQL where tests create their own databases, with no password
    in it (libpq takes it from $PGPASSWORD, as searcher's docs ask). A PostgreSQL that is
    installed but down (as on a fresh machine) is started with .ci/postgres."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT))
    if url.password:
        os.environ.setdefault("PGPASSWORD", url.password)
    url = url._replace(password=None)  # URL.set takes None for "unchanged"

    def reachable() -> str | None:
        try:
            psycopg.connect(url.render_as_string(), connect_timeout=5).close()
            return None
        except psycopg.OperationalError as exc:
            return str(exc).strip().splitlines()[0]

    if (why := reachable()) is not None:
        if not _postgres_installed():
            pytest.skip(f"PostgreSQL is not installed here ({why}); set {POSTGRES_ENV} to a "
                        f"server where this role may create databases")
        started = subprocess.run([str(ROOT / ".ci" / "postgres")], capture_output=True, text=True)
        if (why := reachable()) is not None:
            pytest.fail(f"PostgreSQL is installed but {url} does not answer ({why}); "
                        f".ci/postgres said: {(started.stdout + started.stderr)[-600:]}")
    return url


@pytest.fixture()
def postgres(postgres_server):
    """new(suffix) -> the URL of a fresh, empty database, dropped after the test."""
    import psycopg

    made = []

    def admin():
        # autocommit: CREATE/DROP DATABASE cannot run in a transaction
        return psycopg.connect(postgres_server.render_as_string(), connect_timeout=5,
                               autocommit=True)

    def new(suffix: str) -> str:
        name = f"searcher_test_{uuid.uuid4().hex[:8]}_{suffix}"
        conn = admin()
        try:
            conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        made.append(name)
        return postgres_server.set(database=name).render_as_string()

    yield new
    with admin() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- a finished search, shared by the whole run ------------------------------------------------

SHARED_SAMPLES, SHARED_EPOCHS = 7, 3  # as SHARED_SPACE's SETTINGS say
SHARED_SPACE = """\
SETTINGS = {"epochs": 3, "num_samples": 7, "grace_period": 1, "reduction_factor": 2,
            "first_look": True, "max_mmacs": 5, "seed": 0}

def space(trial):
    stages = trial.suggest_int("stages", 1, 2)
    for i in range(1, stages + 1):
        trial.suggest_categorical(f"stage{i}.filters", [4, 8, 96])
    trial.suggest_categorical("batch_norm", [True, False])
    trial.suggest_float("lr", 1e-3, 0.3, log=True)
    return {"batch_size": 32, "head": "flatten"}

BASELINES = {"tiny_tutorial": {"stages": 1, "stage1.filters": 8, "batch_norm": False,
                               "lr": 0.05}}
"""


@dataclasses.dataclass(frozen=True)
class FinishedSearch:
    """A real search of SHARED_SPACE (`tiny.py`, experiment "tiny") that ran to its end on tiny
    CIFAR-10 in `data`: a baseline first, trials that ASHA stopped early and trials it let
    finish."""
    root: Path  # mlflow.db and mlartifacts/ (the store), ray/ (Tune's storage), tiny.py, data/

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def space(self) -> Path:
        return self.root / "tiny.py"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def output(self) -> list[str]:
        """What the search printed (a log, not a terminal: no line redrawn)."""
        return (self.root / "output.txt").read_text().splitlines()

    def copy(self, dest: Path) -> FinishedSearch:
        """A copy of the whole search at `dest`, its store's artifact locations moved with it,
        for tests that add to the store (a warm-started search, a promotion)."""
        shutil.copytree(self.root, dest)
        with contextlib.closing(sqlite3.connect(dest / "mlflow.db")) as db, db:
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                           (self.root.as_uri(), dest.as_uri()))
        return FinishedSearch(dest)


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, request) -> FinishedSearch:
    """The run's one finished search, for the tests that read what a search leaves behind. Under
    pytest-xdist the first worker to ask runs it and the others wait for it and read it (a file
    lock in the run's shared temporary folder); nobody writes to it afterwards: a test that adds
    to it takes a copy (`FinishedSearch.copy`)."""
    from filelock import FileLock

    from searcher.commands.run import main as run_main

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    search = FinishedSearch(shared / "finished-search")
    with FileLock(str(shared / "finished-search.lock")):
        if not (search.root / "output.txt").is_file():
            request.getfixturevalue("local_ray")
            shutil.rmtree(search.root, ignore_errors=True)  # a try that failed on another worker
            search.root.mkdir()
            write_cifar(search.data, per_batch=80)
            search.space.write_text(SHARED_SPACE)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                code = run_main([str(search.space), "--data-dir", str(search.data),
                                 "--tracking-uri", search.uri,
                                 "--storage-path", str(search.root / "ray")])
            assert code == 0, printed.getvalue()[-3000:]
            (search.root / "output.txt").write_text(printed.getvalue())
    return search


RESUMABLE_BASELINE = {"stages": 1, "filters": 8, "lr": 0.05}


def resumable_space(epochs: int, num_samples: int) -> str:
    """A tiny space file for kill-and-resume tests: every trial runs all `epochs` (grace period
    = epochs), so a resumed search's runs are easy to count; one baseline goes first."""
    return (f'SETTINGS = {{"epochs": {epochs}, "num_samples": {num_samples}, '
            f'"grace_period": {epochs}, "seed": 0}}\n\n'
            'def space(trial):\n'
            '    trial.suggest_int("stages", 1, 2)\n'
            '    trial.suggest_categorical("filters", [8, 16])\n'
            '    trial.suggest_float("lr", 0.01, 0.1, log=True)\n'
            '    return {"batch_size": 64, "batch_norm": True}\n\n'
            f'BASELINES = {{"first": {RESUMABLE_BASELINE!r}}}\n')


def runs_with_role(client, role: str, experiment: str = "resumable") -> list:
    """The runs of `experiment` tagged with searcher.role `role` ("search", "trial")."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`searcher.role` = '{role}'")


# Tests that take one of these start a real service; they are marked `services` here, so that
# `make test-fast` (-m "not services") leaves them out without each test saying so.
SERVICE_FIXTURES = {"local_ray", "head", "postgres", "postgres_server", "finished_search"}


# The suite runs on both cores (pytest-xdist, `make test`): each worker takes whole modules
# (--dist loadscope), so that a module-scoped fixture (a finished search, a promoted champion, a
# store of a thousand runs) is paid once, and it takes them longest first (--no-loadscope-reorder
# keeps this order), so that no worker is left with a minutes-long test at the end: the cluster
# walk on namespace hosts, then the modules with a test of a minute or more, then those that
# start real services, then the ones that take seconds, then the rest.
_LONGEST_FIRST = ("cluster", "long", "services", "slow")


def _tier(item) -> int:
    return next((i for i, mark in enumerate(_LONGEST_FIRST) if item.get_closest_marker(mark)),
                len(_LONGEST_FIRST))


def _module(item) -> str:
    return item.nodeid.split("::")[0]


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
    tier: dict[str, int] = {}  # a module's: that of its longest test
    for item in items:
        tier[_module(item)] = min(tier.get(_module(item), len(_LONGEST_FIRST)), _tier(item))
    order = {module: n for n, module in enumerate(tier)}
    items.sort(key=lambda item: (tier[_module(item)], order[_module(item)]))  # stable
