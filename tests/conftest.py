"""Shared fixtures: tiny data in the real on-disk layouts, a real local Ray, a real MLflow store."""
from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import numpy as np
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray, loopback only


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
