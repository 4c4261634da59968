"""The champion is read as TorchScript only: with its model file swapped in the store for a pickle
that would create a file, load_champion, `python -m searcher.predict` and the pyfunc that `mlflow
models serve` runs all refuse it without running it; mlflow.pytorch.load_model runs it."""
from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest
import torch
from conftest import free_port
from mlflow.tracking import MlflowClient
from PIL import Image
from test_promote import logged_search
from test_serving import STARTUP_S

from searcher.commands import promote as promote_mod
from searcher.errors import UserError
from searcher.tracking.champion import load_champion
from searcher.training.data import load_cifar10

pytestmark = pytest.mark.slow  # promotes, serves and predicts in processes of their own


class _CreatesFile:
    """Unpickling this calls open(path, "w"): the marker exists iff the pickle was run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _as_torch_save(file: Path, marker: Path) -> None:
    """What mlflow.pytorch writes for a module it does not script: a torch.save zip."""
    torch.save(_CreatesFile(marker), file)


def _in_torchscript_archive(file: Path, marker: Path) -> None:
    """The real TorchScript archive, with its object pickle (data.pkl) replaced."""
    original = io.BytesIO(file.read_bytes())
    with zipfile.ZipFile(original) as src, zipfile.ZipFile(file, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(_CreatesFile(marker), protocol=2)
            dst.writestr(item, data)


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_cifar):
    """A promoted champion in a real sqlite store: (tracking URI, its model file in the store)."""
    tmp = tmp_path_factory.mktemp("champion")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    logged_search(tmp, tiny_cifar, uri)
    promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("tiny", "champion").version
    stored = Path(urlparse(client.get_model_version_download_uri("tiny", version)).path)
    model_file = stored / "data" / "model.pth"
    assert model_file.is_file()
    return uri, model_file


@pytest.fixture(params=[_as_torch_save, _in_torchscript_archive], ids=["torch_save", "in_jit"])
def swapped(request, champion, tmp_path):
    """The champion's model file swapped in the store: (tracking URI, the marker that would
    exist if the pickle ran); the real file is put back afterwards."""
    uri, model_file = champion
    original = model_file.read_bytes()
    marker = tmp_path / "pickle_ran"
    request.param(model_file, marker)
    mlflow.set_tracking_uri(uri)
    try:
        yield uri, marker
    finally:
        model_file.write_bytes(original)


def test_the_champion_loads_and_serves_as_torchscript(champion, tiny_cifar):
    uri, _ = champion
    mlflow.set_tracking_uri(uri)
    images = load_cifar10(tiny_cifar, train=False, download=False)[0].x[:4]
    model = load_champion("models:/tiny@champion")
    assert isinstance(model, torch.jit.ScriptModule) and not model.training
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    served = mlflow.pyfunc.load_model("models:/tiny@champion")
    assert served.metadata.flavors["python_function"]["loader_module"] == "searcher.tracking.champion"
    np.testing.assert_allclose(served.predict(images), expected, rtol=1e-5, atol=1e-5)


def test_load_champion_refuses_a_swapped_model_file(swapped):
    _, marker = swapped
    with pytest.raises(Exception) as refused:  # the load snippet of docs/promotion.md
        load_champion("models:/tiny@champion")
    assert not marker.exists()
    assert refused.type is UserError and "\n" not in str(refused.value)
    assert "not a TorchScript archive" in str(refused.value)


def test_predict_refuses_a_swapped_model_file_in_one_line(swapped, tmp_path):
    uri, marker = swapped
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    done = subprocess.run([sys.executable, "-m", "searcher.predict", str(folder),
                           "--model", "models:/tiny@champion", "--tracking-uri", uri,
                           "--output", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert not marker.exists()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    err = done.stderr.strip().splitlines()[-1]  # after PyTorch's notice that TorchScript is deprecated
    assert err.startswith("python -m searcher.predict: error: models:/tiny@champion: ")
    assert "not a TorchScript archive" in err and not (tmp_path / "p.csv").exists()


def test_the_served_model_refuses_a_swapped_model_file(swapped):
    _, marker = swapped
    # What `mlflow models serve -m models:/tiny@champion` loads (test_serving runs the server).
    with pytest.raises(Exception) as refused:
        mlflow.pyfunc.load_model("models:/tiny@champion")
    assert not marker.exists()
    assert refused.type is UserError and "not a TorchScript archive" in str(refused.value)


def test_the_swap_runs_code_where_the_file_is_unpickled(champion, tmp_path):
    """The control: the file the tests swap is the one mlflow.pytorch reads, and it would run."""
    uri, model_file = champion
    original = model_file.read_bytes()
    marker = tmp_path / "pickle_ran"
    _as_torch_save(model_file, marker)
    mlflow.set_tracking_uri(uri)
    try:
        with pytest.raises(AttributeError):  # the "model" it unpickled is a file, with no .eval()
            mlflow.pytorch.load_model("models:/tiny@champion")
    finally:
        model_file.write_bytes(original)
    assert marker.exists()


def test_mlflow_models_serve_stops_on_a_swapped_model_file(champion, tmp_path):
    """The serving command of docs/promotion.md, for real: it exits at start-up, and the pickle never ran."""
    uri, model_file = champion
    original = model_file.read_bytes()
    marker = tmp_path / "pickle_ran"
    _as_torch_save(model_file, marker)
    bin_dir = Path(sys.executable).parent  # as test_serving: the server execs `uvicorn` by name
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/tiny@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
        start_new_session=True)  # its own process group: uvicorn goes down with it
    try:
        out, _ = server.communicate(timeout=STARTUP_S)
    except subprocess.TimeoutExpired:  # it served the file: stop it and say so below
        os.killpg(server.pid, signal.SIGKILL)
        out, _ = server.communicate()
    finally:
        model_file.write_bytes(original)
    assert not marker.exists()
    assert server.returncode not in (0, -signal.SIGKILL), out[-2000:]
    assert "model.pth is not a TorchScript archive" in out
