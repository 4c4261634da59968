"""What the benchmarks share: CIFAR-shaped data on disk and a fixed slice of the real one, one
local Ray and a real search logged into a throwaway store, the machine they ran on, their JSON,
a real MLflow server."""
from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from searcher.training.data import (
    CIFAR_FOLDER,
    CIFAR_TEST,
    DataError,
    SearchData,
    Split,
    load_search_data,
)

if TYPE_CHECKING:
    from searcher.spec.space import Space
    from searcher.tune.tuner import SearchResult
    from searcher.tune.warm_start import WarmStart


def synthetic_cifar(root: Path, per_batch: int, seed: int = 0, learnable: bool = False) -> Path:
    """CIFAR-10-shaped data in torchvision's on-disk layout.

    Random pixels and labels by default (speed figures need only the shapes); with `learnable`, a
    faint band whose colour and place depend on the class: in two epochs on a few hundred images
    a small flatten-head CNN gets about half right and a global-pooling one barely beats chance,
    so architectures differ and a sampler has something to find (the quality smoke run).
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch)
        if learnable:
            x = rng.integers(0, 160, (per_batch, 3, 32, 32), dtype=np.uint8)
            for i, c in enumerate(labels):
                x[i, c % 3, c * 3:c * 3 + 3, :] += 60  # a bright band (255) is learnt by all
            data = x.reshape(per_batch, 3072)
        else:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"labels": labels.tolist(), "data": data}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return root


def reduced_task(data_dir: Path, train_images: int, val_images: int) -> SearchData:
    """The same slice of CIFAR-10's seeded split for every search; copies, so the rest can be
    freed."""
    # A benchmark reads the data it is told to, never a download it was not asked for.
    if not any((folder / CIFAR_TEST).is_file() for folder in (data_dir / CIFAR_FOLDER, data_dir)):
        raise DataError(f"CIFAR-10 not found in {data_dir}; pass --data-dir with the folder that "
                        f"holds {CIFAR_FOLDER}/")
    full = load_search_data("cifar10", data_dir, 32, 0.1, 0)
    return SearchData(Split(full.train.x[:train_images].copy(), full.train.y[:train_images].copy()),
                      Split(full.val.x[:val_images].copy(), full.val.y[:val_images].copy()),
                      full.classes, full.mean, full.std)


@contextlib.contextmanager
def one_ray() -> Iterator[None]:
    """A local Ray for every search of a benchmark, so its start-up is in no search's budget;
    one already running (a test's) is used and left running."""
    import logging

    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def logged_search(space: Space, data: SearchData, folder: Path,
                  warm: WarmStart | None = None) -> SearchResult:
    """One real search of `space` on `data`, as the product runs it, logged into a throwaway
    MLflow store (sqlite) in `folder`."""
    from searcher.tracking import store as tracking
    from searcher.tune.tuner import run_search

    client = tracking.connect(f"sqlite:///{folder / 'mlflow.db'}")
    parent = tracking.start_search_run(client, space, {
        "dataset": "cifar10", "train": len(data.train), "val": len(data.val),
        "classes": data.classes, "image_shape": data.image_shape},
        warm.summary() if warm else None)
    result = run_search(space, data, client.tracking_uri, parent, None, warm)
    client.set_terminated(parent, "FINISHED")
    return result


def machine_info(device: str, packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Where and with what a figure was measured; `packages` adds their installed versions."""
    import torch
    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                            "cpus": os.cpu_count(), "device": device, "torch": torch.__version__}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    from searcher.tracking.store import package_versions
    return {**info, **package_versions(packages)}


def _finite(value: Any) -> Any:
    # NaN ("no result yet") is not JSON; null is, and every reader understands it.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result), indent=2))


# MLflow 3's server also starts a job runner and 7 huey consumers for its GenAI jobs (scorers,
# trace roll-ups), which a search never asks for: ~22 CPU-s of imports in the first ~20 s
# after /health answers, taken from the trials and the driver that share the machine.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_env() -> dict[str, str]:
    """The environment an `mlflow server` of ours runs in: this one, with SERVER_ENV."""
    return {**os.environ, **SERVER_ENV}


class MlflowServer:
    """A real `mlflow server` subprocess on loopback (benchmarks and tests); `stop()` and
    `start()` again keep its store and port, as a server that went away and came back."""

    def __init__(self, folder: Path, backend_uri: str | None = None):
        import socket
        self.folder = Path(folder)
        self.backend_uri = backend_uri or f"sqlite:///{self.folder / 'mlflow-server.db'}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self._proc: Any = None

    def start(self, timeout_s: float = 120) -> "MlflowServer":
        import subprocess
        import sys

        import requests
        mlflow = Path(sys.executable).parent / "mlflow"
        self._proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.folder / "mlflow-artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            env=server_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self._proc.returncode})")
            try:
                if requests.get(self.uri + "/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer at {self.uri} in {timeout_s:.0f} s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        import signal
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)  # its gunicorn/uvicorn workers too
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
