"""The champion served by `mlflow models serve` over loopback, asked the way a user asks it: a JSON
body of raw uint8 images (N x C x H x W integers 0-255) under the key `inputs`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
import torch
from conftest import free_port
from test_promote import logged_search

from searcher.commands import promote as promote_mod
from searcher.tracking.champion import load_champion
from searcher.training.data import load_cifar10

pytestmark = pytest.mark.services  # starts Ray, MLflow or a search of its own

# Loading torch and the model on a loaded 2-core machine can take a minute; a healthy start on
# an idle one takes seconds, so a generous limit costs nothing when all is well.
STARTUP_S = 120


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture()
def served_champion(tmp_path, tiny_cifar):
    """A promoted champion in a real sqlite store, served by a real `mlflow models serve`;
    yields (base URL, tracking URI) and always stops the server."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri)
    promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))

    port = free_port()
    bin_dir = Path(sys.executable).parent
    # --env-manager local: serve in this environment (the default builds a virtualenv, which
    # needs the network). The server execs `uvicorn` by name, so this venv's bin comes first.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/tiny@champion",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True)  # its own process group: uvicorn goes down with it
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {server.returncode} before "
                            f"answering /ping; its output ends:\n{_tail(log_path)}")
            try:
                if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer /ping on {url} within "
                            f"{STARTUP_S} s; its output ends:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield url, uri
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue


def test_the_served_champion_labels_raw_uint8_images_like_the_loaded_one(served_champion,
                                                                        tiny_cifar):
    url, uri = served_champion
    images = load_cifar10(tiny_cifar, train=False, download=False)[0].x[:6]  # uint8 N x 3 x 32 x 32

    # The body a user builds from a numpy array: plain JSON integers, nothing normalised.
    response = requests.post(f"{url}/invocations", json={"inputs": images.tolist()}, timeout=60)
    assert response.status_code == 200, response.text
    logits = np.asarray(response.json()["predictions"], dtype=np.float32)
    assert logits.shape == (6, 10)

    mlflow.set_tracking_uri(uri)
    model = load_champion("models:/tiny@champion")
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    assert logits.argmax(1).tolist() == expected.argmax(1).tolist()
    classes = mlflow.models.get_model_info("models:/tiny@champion").metadata["classes"]
    assert [classes[k] for k in logits.argmax(1)] == [f"class{k}" for k in expected.argmax(1)]

    # A pixel outside 0-255 is refused, not wrapped around into another image.
    bad = images[:1].tolist()
    bad[0][0][0][0] = 256
    refused = requests.post(f"{url}/invocations", json={"inputs": bad}, timeout=60)
    assert refused.status_code == 400 and "256" in refused.json()["message"]

    # Float images in [0, 1], as torchvision's ToTensor gives them, are the same images: the
    # same labels, not a black image's (a schema of uint8 would truncate 0.7 to 0 unseen).
    scaled = (images.astype(np.float64) / 255.0).tolist()
    response = requests.post(f"{url}/invocations", json={"inputs": scaled}, timeout=60)
    assert response.status_code == 200, response.text
    as_floats = np.asarray(response.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(as_floats, expected, rtol=1e-3, atol=1e-3)
    # Floats on the 0..255 scale are neither convention: refused in one line.
    refused = requests.post(f"{url}/invocations",
                            json={"inputs": (images[:1].astype(np.float64) + 0.5).tolist()},
                            timeout=60)
    assert refused.status_code == 400 and "[0, 1]" in refused.json()["message"], refused.text
    # Another layout (N x H x W x C, as PIL gives) is refused, not read as other images.
    refused = requests.post(f"{url}/invocations",
                            json={"inputs": images.transpose(0, 2, 3, 1).tolist()}, timeout=60)
    assert refused.status_code == 400, refused.text
    assert "N x 3 x 32 x 32" in refused.json()["message"], refused.text
