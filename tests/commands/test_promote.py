"""Promotion without a search: a tiny checkpoint logged as a trial in a real sqlite store, promoted
by `promote()` itself, then loaded and used the way a PyTorch user would."""
from __future__ import annotations

import zipfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from searcher.commands import promote as promote_mod
from searcher.spec.space import load_space
from searcher.tracking import store as tracking
from searcher.tracking import tags
from searcher.training.checkpoint import (
    classifier_from_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from searcher.training.data import load_cifar10
from searcher.training.model import build_model

pytestmark = pytest.mark.slow  # promotes a model into a real store

ARCH = {"stages": [{"filters": 4, "batch_norm": True, "residual": True},
                   {"filters": 8, "padding": "valid", "residual": True, "pool": "strided"}],
        "head": "gap"}
SPACE = "def space(trial):\n    trial.suggest_int('stages', 1, 2)\n"


def logged_search(tmp_path: Path, tiny_cifar: Path, uri: str) -> Path:
    """A parent run as a search writes it, and one trial run holding a checkpoint."""
    (tmp_path / "tiny.py").write_text(SPACE)
    space = load_space(tmp_path / "tiny.py", {"data_dir": str(tiny_cifar)})
    client = tracking.connect(uri)
    parent = tracking.start_search_run(client, space, {})
    torch.manual_seed(0)
    net = build_model(ARCH)
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    save_checkpoint(ckpt_dir, arch=ARCH, train={}, metrics={"val_acc": 0.5},
                    classes=[f"class{i}" for i in range(10)], mean=[0.3, 0.4, 0.5],
                    std=[0.2, 0.2, 0.25], trainer_state={"model": net.state_dict()})
    experiment = client.get_run(parent).info.experiment_id
    trial = client.create_run(experiment, run_name="4-8 bn res gap sgd",
                              tags={MLFLOW_PARENT_RUN_ID: parent, tags.ROLE_TAG: "trial",
                                    tags.TRIAL_ID_TAG: "abc_00000"}).info.run_id
    client.log_metric(trial, tags.best_key("val_acc"), 0.5)
    client.log_artifacts(trial, str(ckpt_dir), "checkpoint")
    client.set_terminated(trial)
    client.set_terminated(parent)
    return ckpt_dir


def test_the_champion_behaves_like_an_nn_module(tmp_path, tiny_cifar):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ckpt_dir = logged_search(tmp_path, tiny_cifar, uri)
    result = promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))
    assert result["moved"] and result["trial"] == "abc_00000 (4-8 bn res gap sgd)"

    images = load_cifar10(tiny_cifar, train=False, download=False)[0].x  # uint8, N x 3 x 32 x 32
    expected = classifier_from_checkpoint(load_checkpoint(ckpt_dir))(torch.from_numpy(images))
    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model("models:/tiny@champion")
    model = model.train().eval().to("cpu")  # what every PyTorch user calls first
    assert isinstance(model, torch.nn.Module) and not model.training
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
    torch.testing.assert_close(logits, expected)
    assert logits.argmax(1).tolist() == expected.argmax(1).tolist()
    if torch.cuda.is_available():  # the input follows the weights to the GPU
        with torch.no_grad():
            on_gpu = model.to("cuda")(torch.from_numpy(images))
        torch.testing.assert_close(on_gpu.cpu(), expected, rtol=1e-4, atol=1e-4)
        model.to("cpu")

    # The same model served: pyfunc is what `mlflow models serve` runs, on raw uint8 images. No
    # input schema (MLflow would cast float pixels to it); the shape is in the metadata.
    info = mlflow.models.get_model_info("models:/tiny@champion")
    assert info.signature.inputs is None and info.metadata["image_shape"] == [3, 32, 32]
    assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 10)
    assert info.metadata["classes"][:2] == ["class0", "class1"]
    served = mlflow.pyfunc.load_model("models:/tiny@champion").predict(images[:4])
    np.testing.assert_allclose(served, expected[:4].detach().numpy(), rtol=1e-5, atol=1e-5)

    # What the store holds is a TorchScript archive (code and tensors), not a pickled module.
    local = Path(mlflow.artifacts.download_artifacts("models:/tiny@champion",
                                                     dst_path=str(tmp_path / "m")))
    (archive,) = (local / "data").glob("model.pth")
    with zipfile.ZipFile(archive) as z:
        assert any("/code/" in n for n in z.namelist())
    assert MlflowClient(uri).get_model_version_by_alias("tiny", "champion").version == result["version"]


def test_promoting_a_trial_run_names_its_search_and_writes_nothing(tmp_path, tiny_cifar, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri)
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (trial,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "trial"]
    parent = trial.data.tags[MLFLOW_PARENT_RUN_ID]
    with pytest.raises(SystemExit) as exit_:
        promote_mod.main(["--run-id", trial.info.run_id, "--tracking-uri", uri,
                          "--data-dir", str(tiny_cifar)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "trial run" in lines[0] and f"--run-id {parent}" in lines[0], lines[0]
    after = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(after) == len(runs)
    assert client.search_registered_models() == []


def test_the_champion_takes_float_images_in_0_1_as_torchvision_gives_them(tmp_path, tiny_cifar):
    # ToTensor() gives float images in [0, 1]; the same pixels as uint8 must give the same logits.
    from searcher.tracking.champion import load_champion
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri)
    promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))
    mlflow.set_tracking_uri(uri)
    model = load_champion("models:/tiny@champion")
    images = torch.from_numpy(load_cifar10(tiny_cifar, train=False, download=False)[0].x[:16])
    with torch.no_grad():
        as_uint8 = model(images)
        as_float = model(images.float() / 255.0)
        as_double = model(images.double() / 255.0)
    torch.testing.assert_close(as_float, as_uint8, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(as_double, as_uint8, rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match=r"\[0, 1\]"):  # floats in 0..255 would be silently wrong
        model(images.float())
