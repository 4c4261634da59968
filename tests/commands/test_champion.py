"""The champion is data: its weights in safetensors and its architecture in JSON, rebuilt by
searcher's model builder, each file checked against the SHA-256 the registry recorded before a
byte of it is parsed. A file swapped in the store (a TorchScript program that rewrites a file
when it runs, a pickle that would, or other weights) is refused in one line by load_champion,
`searcher predict`, the pyfunc and `mlflow models serve`, and the marker file the attack would
rewrite stays as it was; a TorchScript champion of an older searcher is refused the same way."""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest
import torch
from conftest import free_port
from mlflow.tracking import MlflowClient
from PIL import Image
from test_promote import promoted_store
from test_serving import STARTUP_S

from searcher.commands.predict import main as predict_main
from searcher.errors import UserError
from searcher.tracking.champion import load_champion
from searcher.training.checkpoint import classifier_from_checkpoint, load_checkpoint
from searcher.training.data import load_cifar10
from searcher.training.model import Classifier

pytestmark = pytest.mark.slow  # promotes, serves and predicts in processes of their own

UNTOUCHED = b"untouched-marker"  # 16 bytes: what the attack would overwrite, byte for byte


class _RewritesAFile(torch.nn.Module):
    """The attack: a TorchScript forward that maps `path` into memory and overwrites it, as any
    file the loading process may write (torch.from_file with shared=True writes through)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mapped = torch.from_file(self.path, True, 16, dtype=torch.uint8)
        mapped.fill_(65)
        return torch.zeros(images.shape[0], 10) + 0.0 * mapped.float().sum()


class _TruncatesAFile:
    """Unpickling this calls open(path, "w"), which empties the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _program(marker: Path) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        scripted = torch.jit.script(_RewritesAFile(str(marker)))
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def _pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_TruncatesAFile(marker), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_cifar):
    """A promoted champion in a real sqlite store: (tracking URI, the folder of its files in the
    store, the checkpoint it was promoted from)."""
    uri, ckpt_dir = promoted_store(tmp_path_factory.mktemp("champion"), tiny_cifar)
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("tiny", "champion").version
    stored = Path(urlparse(client.get_model_version_download_uri("tiny", version)).path)
    assert (stored / "data").is_dir()
    return uri, stored / "data", ckpt_dir


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    path.write_bytes(UNTOUCHED)
    return path


def _other_weights(data: Path, marker: Path) -> None:
    """The same tensors with other values: a valid safetensors file, and not the registered one."""
    from safetensors.torch import load_file, save_file

    file = data / "weights.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in load_file(file).items()}, file)


def _everywhere(payload):
    """Every file of the model's data folder overwritten with `payload(marker)`."""
    def swap(data: Path, marker: Path) -> None:
        content = payload(marker)
        for file in data.iterdir():
            if file.is_file():
                file.write_bytes(content)
    return swap


SWAPS = {"torchscript_program": _everywhere(_program), "pickle": _everywhere(_pickle),
         "other_weights": _other_weights}


@pytest.fixture(params=list(SWAPS))
def swapped(request, champion, marker):
    """The champion's files swapped in the store: (tracking URI, the marker the attack would
    rewrite); the real files are put back afterwards."""
    uri, data, _ = champion
    originals = {f: f.read_bytes() for f in data.iterdir() if f.is_file()}
    SWAPS[request.param](data, marker)
    mlflow.set_tracking_uri(uri)
    try:
        yield uri, marker
    finally:
        for file, content in originals.items():
            file.write_bytes(content)


def _refusal(text: str) -> None:
    """One line that names a file of the model and refuses it."""
    assert "\n" not in text.strip(), text
    assert ("model.json" in text or "weights.safetensors" in text) and "refusing" in text, text


def test_the_champion_is_data_rebuilt_by_the_model_builder(champion, tiny_cifar):
    uri, data, ckpt_dir = champion
    files = sorted(f.name for f in data.iterdir())
    assert files == ["model.json", "weights.safetensors"]
    # The registry (the tracking database, not the artifact store) holds each file's digest.
    tags = MlflowClient(uri).get_model_version_by_alias("tiny", "champion").tags
    for name in files:
        digest = hashlib.sha256((data / name).read_bytes()).hexdigest()
        assert tags[f"searcher.sha256.{name}"] == digest
    card = json.loads((data / "model.json").read_text())
    assert card["arch"] == load_checkpoint(ckpt_dir)["arch"] and card["image_shape"] == [3, 32, 32]
    raw = (data / "weights.safetensors").read_bytes()  # an 8-byte length, a JSON header, tensors
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert {"mean", "std", "net.0.convs.0.weight"} <= set(header)

    mlflow.set_tracking_uri(uri)
    images = torch.from_numpy(load_cifar10(tiny_cifar, train=False, download=False)[0].x[:4])
    model = load_champion("models:/tiny@champion")
    assert type(model) is Classifier and not model.training
    expected = classifier_from_checkpoint(load_checkpoint(ckpt_dir))
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected(images))
    served = mlflow.pyfunc.load_model("models:/tiny@champion")
    loader = served.metadata.flavors["python_function"]["loader_module"]
    assert loader == "searcher.tracking.champion"
    np.testing.assert_allclose(served.predict(images.numpy()), model(images).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_the_program_runs_where_torchscript_is_loaded(marker):
    """The control: the TorchScript the tests swap in rewrites the marker when it is run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.jit.load(io.BytesIO(_program(marker)))
    program(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert marker.read_bytes() == b"A" * 16


def test_load_champion_refuses_a_swapped_file(swapped):
    _, marker = swapped
    with pytest.raises(UserError) as refused:  # the load snippet of docs/promotion.md
        load_champion("models:/tiny@champion")
    assert marker.read_bytes() == UNTOUCHED
    _refusal(str(refused.value))


def test_the_served_model_refuses_a_swapped_file(swapped):
    _, marker = swapped
    # What `mlflow models serve -m models:/tiny@champion` loads (test_serving runs the server).
    with pytest.raises(UserError) as refused:
        mlflow.pyfunc.load_model("models:/tiny@champion")
    assert marker.read_bytes() == UNTOUCHED
    _refusal(str(refused.value))


@pytest.mark.parametrize("swapped", ["torchscript_program", "other_weights"], indirect=True)
def test_predict_refuses_a_swapped_file_in_one_line(swapped, tmp_path):
    uri, marker = swapped
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    done = subprocess.run([sys.executable, "-m", "searcher.predict", str(folder),
                           "--model", "models:/tiny@champion", "--tracking-uri", uri,
                           "--output", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert marker.read_bytes() == UNTOUCHED
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (err,) = done.stderr.strip().splitlines()
    assert err.startswith("python -m searcher.predict: error: models:/tiny@champion: "), err
    _refusal(err)
    assert not (tmp_path / "p.csv").exists()


def test_mlflow_models_serve_stops_on_a_swapped_file(champion, marker, tmp_path):
    """The serving command of docs/promotion.md, for real: it exits at start-up, and the program
    never ran."""
    uri, data, _ = champion
    originals = {f: f.read_bytes() for f in data.iterdir()}
    SWAPS["torchscript_program"](data, marker)
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
        for file, content in originals.items():
            file.write_bytes(content)
    assert marker.read_bytes() == UNTOUCHED
    assert server.returncode not in (0, -signal.SIGKILL), out[-2000:]
    assert "model.json is not the file that was registered" in out, out[-2000:]


def _register_the_old_way(uri: str, marker: Path) -> None:
    """A champion as searcher 0.2 registered it: TorchScript (here the attack), its pyfunc flavor
    naming searcher's loader module, no digests."""
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("old")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(_RewritesAFile(str(marker)))
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(scripted, name="model", serialization_format="pickle")
    version = mlflow.register_model(info.model_uri, "old").version
    client.set_registered_model_alias("old", "champion", version)
    stored = Path(urlparse(client.get_model_version_download_uri("old", version)).path)
    mlmodel = stored / "MLmodel"
    text = mlmodel.read_text()
    assert "loader_module: mlflow.pytorch" in text
    mlmodel.write_text(text.replace("loader_module: mlflow.pytorch",
                                    "loader_module: searcher.champion"))


def test_a_torchscript_champion_of_an_older_searcher_is_refused_in_one_line(tmp_path, marker,
                                                                          capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register_the_old_way(uri, marker)
    with pytest.raises(UserError) as refused:
        load_champion("models:/old@champion")
    assert "TorchScript" in str(refused.value) and "searcher promote" in str(refused.value)
    with pytest.raises(UserError) as served:
        mlflow.pyfunc.load_model("models:/old@champion")
    assert "TorchScript" in str(served.value) and "searcher promote" in str(served.value)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    capsys.readouterr()  # MLflow's download bars above
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(folder), "--model", "models:/old@champion", "--tracking-uri", uri,
                      "--output", str(tmp_path / "p.csv")])
    assert exit_.value.code == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "models:/old@champion is a TorchScript champion" in err and "searcher promote" in err
    assert marker.read_bytes() == UNTOUCHED and not (tmp_path / "p.csv").exists()
