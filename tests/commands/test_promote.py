"""Promotion without a search: a tiny checkpoint logged as a trial in a real sqlite store, promoted
by `promote()` itself, then loaded and used the way a PyTorch user would."""
from __future__ import annotations

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
from searcher.tracking.champion import load_champion
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


def logged_search(tmp_path: Path, tiny_cifar: Path, uri: str,
                  metrics: dict[str, float] | None = None) -> Path:
    """A parent run as a search writes it, and one trial run holding a checkpoint (with
    `metrics` besides its score, e.g. the speed a search records)."""
    (tmp_path / "tiny.py").write_text(SPACE)
    space = load_space(tmp_path / "tiny.py", {"data_dir": str(tiny_cifar)})
    client = tracking.connect(uri)
    parent = tracking.start_search_run(client, space, {})
    ckpt_dir = log_trial(client, parent, tmp_path / "ckpt", ARCH, 0.5, "abc_00000",
                         "4-8 bn res gap sgd", metrics)
    client.set_terminated(parent)
    return ckpt_dir


def promoted_store(root: Path, tiny_cifar: Path) -> tuple[str, Path]:
    """A real sqlite store under `root` whose one search's trial is promoted to
    models:/tiny@champion: (its tracking URI, the checkpoint promoted)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ckpt_dir = logged_search(root, tiny_cifar, uri)
    promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))
    return uri, ckpt_dir


def log_trial(client, parent: str, ckpt_dir: Path, arch: dict, score: float, trial_id: str,
              name: str, metrics: dict[str, float] | None = None) -> Path:
    """One trial run of the search `parent`, holding a checkpoint of `arch` scored `score`."""
    torch.manual_seed(0)
    net = build_model(arch)
    ckpt_dir.mkdir()
    save_checkpoint(ckpt_dir, arch=arch, train={}, metrics={"val_acc": score},
                    classes=[f"class{i}" for i in range(10)], mean=[0.3, 0.4, 0.5],
                    std=[0.2, 0.2, 0.25], trainer_state={"model": net.state_dict()})
    experiment = client.get_run(parent).info.experiment_id
    trial = client.create_run(experiment, run_name=name,
                              tags={MLFLOW_PARENT_RUN_ID: parent, tags.ROLE_TAG: "trial",
                                    tags.TRIAL_ID_TAG: trial_id}).info.run_id
    client.log_metric(trial, tags.best_key("val_acc"), score)
    for key, value in (metrics or {}).items():
        client.log_metric(trial, key, value)
    client.log_artifacts(trial, str(ckpt_dir), "checkpoint")
    client.set_terminated(trial)
    return ckpt_dir


def test_the_champion_behaves_like_an_nn_module(tmp_path, tiny_cifar):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ckpt_dir = logged_search(tmp_path, tiny_cifar, uri)
    result = promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))
    assert result["moved"] and result["trial"] == "abc_00000 (4-8 bn res gap sgd)"

    images = load_cifar10(tiny_cifar, train=False, download=False)[0].x  # uint8, N x 3 x 32 x 32
    expected = classifier_from_checkpoint(load_checkpoint(ckpt_dir))(torch.from_numpy(images))
    mlflow.set_tracking_uri(uri)
    model = load_champion("models:/tiny@champion")
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

    # What the store holds is data: weights and the architecture that rebuilds them.
    local = Path(mlflow.artifacts.download_artifacts("models:/tiny@champion",
                                                     dst_path=str(tmp_path / "m")))
    assert sorted(f.name for f in (local / "data").iterdir()) == ["model.json",
                                                                  "weights.safetensors"]
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


# Promotion under a budget (docs/promotion.md#promotion-under-a-budget)

def _one_line_refusal(capsys, argv: list[str]) -> str:
    capsys.readouterr()  # what came before
    with pytest.raises(SystemExit) as exit_:
        promote_mod.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_champion_over_the_latency_bound_is_refused_and_the_alias_stays(tmp_path, tiny_cifar,
                                                                         capsys):
    # The search recorded a latency no machine reaches (as a faster machine's might read here):
    # the trial is chosen by its record, and only the exported model's timing can refuse it.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri, {"latency_ms": 1e-9, "n_params": 562})
    client = MlflowClient(uri)
    assert promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))["moved"]
    argv = ["--experiment", "tiny", "--tracking-uri", uri, "--data-dir", str(tiny_cifar),
            "--force", "--max-latency-ms", "1e-6"]
    line = _one_line_refusal(capsys, argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert "the exported model has a median latency of" in line, line
    assert f"at batch 1 on {device}, over --max-latency-ms 1e-06" in line, line
    assert "nothing registered, models:/tiny@champion stays at version 1" in line, line
    assert [str(v.version) for v in client.search_model_versions("name='tiny'")] == ["1"]
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    promotions = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                                    f"tags.`{tags.ROLE_TAG}` = 'promotion'",
                                    order_by=["attributes.start_time ASC"])
    assert [r.info.status for r in promotions] == ["FINISHED", "FAILED"]  # the refused one

    # At another batch than the search timed at, the trials are timed here, before any export.
    line = _one_line_refusal(capsys, [*argv, "--batch", "2"])
    assert "no trial of search" in line and "1 timed here at batch 2" in line, line
    assert "abc_00000, has a median latency of" in line, line
    assert [str(v.version) for v in client.search_model_versions("name='tiny'")] == ["1"]


def test_max_params_passes_over_the_best_trial_to_the_next(tmp_path, tiny_cifar):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri, {"n_params": 562})
    client = MlflowClient(uri)
    search = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                                f"tags.`{tags.ROLE_TAG}` = 'search'")[0]
    small = {"stages": [{"filters": 2}], "head": "gap"}  # 86 parameters
    log_trial(client, search.info.run_id, tmp_path / "small", small, 0.4, "abc_00001",
              "2 gap sgd", {"n_params": 86})
    result = promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar),
                                 max_params=100)
    assert result["trial"] == "abc_00001 (2 gap sgd)" and result["n_params"] == 86
    version = client.get_model_version("tiny", result["version"])
    assert version.tags["source_trial_run"] != search.info.run_id
    assert client.get_model_version_by_alias("tiny", "champion").version == result["version"]


def test_a_promoted_version_carries_its_measured_speed_within_the_bound(tmp_path, tiny_cifar,
                                                                        capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri)  # an older search: no speed recorded
    assert promote_mod.main(["--experiment", "tiny", "--tracking-uri", uri, "--data-dir",
                             str(tiny_cifar), "--batch", "2", "--max-latency-ms", "10000"]) == 0
    out = capsys.readouterr().out
    assert "Registered models:/tiny/1: 562 parameters, median latency" in out, out
    version = MlflowClient(uri).get_model_version_by_alias("tiny", "champion")
    speed = {k[len("searcher."):]: v for k, v in version.tags.items()
             if k.startswith("searcher.") and not k.startswith("searcher.sha256.")}
    assert set(speed) == {"latency_ms", "latency_p95_ms", "latency_batch", "throughput_ips",
                          "throughput_batch", "latency_device", "latency_threads"}
    assert 0 < float(speed["latency_ms"]) <= 10000
    assert float(speed["latency_p95_ms"]) >= float(speed["latency_ms"])
    assert speed["latency_batch"] == "2" and float(speed["throughput_ips"]) > 0
    assert speed["latency_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert speed["latency_threads"] == str(torch.get_num_threads())


@pytest.mark.parametrize("args, says", [
    (["--max-latency-ms", "0"], "--max-latency-ms 0: must be positive"),
    (["--max-params", "0"], "--max-params 0: must be at least 1"),
    (["--batch", "0"], "--batch 0: must be at least 1"),
])
def test_bad_budget_options_are_one_line_before_the_store_is_touched(tmp_path, capsys, args,
                                                                     says):
    from searcher.commands.promote import main as promote_main
    with pytest.raises(SystemExit) as exit_:
        promote_main(["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not (tmp_path / "m.db").exists()


def test_a_champion_whose_test_acc_tag_is_not_a_number_is_one_line(tmp_path, tiny_cifar, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged_search(tmp_path, tiny_cifar, uri)
    promote_mod.promote(uri, experiment="tiny", data_dir=str(tiny_cifar))
    client = MlflowClient(uri)
    client.set_model_version_tag("tiny", "1", promote_mod.TEST_ACC_TAG, "{[]: 1}")
    capsys.readouterr()  # MLflow's bars of the first promotion
    with pytest.raises(SystemExit) as exit_:
        promote_mod.main(["--experiment", "tiny", "--tracking-uri", uri,
                          "--data-dir", str(tiny_cifar)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert "Traceback" not in err and "version 1) has the tag test_acc = '{[]: 1}'" in line, line
    assert str(client.get_model_version_by_alias("tiny", "champion").version) == "1"
    assert [str(v.version) for v in client.search_model_versions("name = 'tiny'")] == ["1"]
