"""Shared fixtures: tiny data in the real on-disk layouts, a real local Ray, a real MLflow store,
a real PostgreSQL."""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import socket
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
    agents rename themselves, so only their parents carry the session folder)."""
    doomed = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(text in part for part in (proc.info["cmdline"] or [])):
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
SERVICE_FIXTURES = {"local_ray", "head", "postgres", "postgres_server"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
