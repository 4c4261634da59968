"""`python -m searcher.promote`: test a search's best checkpoint and make it the champion model.

It takes the best trial of a search (by default the latest), evaluates its checkpoint on the test
split (the only step that ever touches it), logs it as an MLflow PyTorch model, registers a
version, and moves the alias `champion` there only if it beats the current champion's test
accuracy (or with --force). Afterwards `mlflow.pytorch.load_model("models:/NAME@champion")`
gives a module that takes uint8 images (N x C x H x W), whose `argmax(1)` is the class label, and
that answers `.eval()` and `.to(device)` like any nn.Module.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import warnings
from typing import Any

from searcher.errors import UserError, one_line_errors

PROG = "python -m searcher.promote"
ALIAS = "champion"
TEST_ACC_TAG = "test_acc"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--experiment", help="MLflow experiment (a space's name); default: the one of "
                                        "the latest search")
    p.add_argument("--run-id", help="the search's parent run; default: the latest search")
    p.add_argument("--tracking-uri", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///mlflow.db in this folder")
    p.add_argument("--data-dir", help="dataset folder for the test split; default: the one the "
                                      "search used")
    p.add_argument("--model-name", help="registered model name; default: the experiment's name")
    p.add_argument("--force", action="store_true",
                   help="move the alias even if the current champion tests better")
    return p.parse_args(argv)


def _latest_search(client, experiment: str | None, run_id: str | None):
    from searcher.tracking import ROLE_TAG
    if run_id:
        try:
            return client.get_run(run_id)
        except Exception:
            raise UserError(f"no run {run_id} in the tracking store") from None
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise UserError(f"no experiment {experiment!r} in the tracking store; run a search first")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"tags.`{ROLE_TAG}` = 'search'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise UserError("no search found in the tracking store; run python -m searcher.run first")
    return runs[0]


def _best_trial(client, search) -> Any:
    from searcher.tracking import ROLE_TAG, best_key
    metric, mode = search.data.tags["searcher.metric"], search.data.tags["searcher.mode"]
    runs = client.search_runs(
        [search.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{search.info.run_id}' and tags.`{ROLE_TAG}` = 'trial'",
        order_by=[f"metrics.`{best_key(metric)}` {'DESC' if mode == 'max' else 'ASC'}"])
    for run in runs:
        if best_key(metric) in run.data.metrics and client.list_artifacts(run.info.run_id, "checkpoint"):
            return run
    raise UserError(f"search {search.info.run_id} has no trial with a checkpoint to promote")


def _test_split(search, ckpt: dict[str, Any], data_dir: str | None):
    from searcher.data import load_split
    params = search.data.params
    data_dir = data_dir or params.get("data_dir")
    if data_dir in (None, "None"):
        from searcher.settings import Settings
        data_dir = Settings().resolved_data_dir()
    return load_split(params.get("dataset", "cifar10"), data_dir, "test",
                      int(params.get("image_size", 32)), ckpt["classes"])[0]


def _champion_accuracy(client, name: str) -> tuple[str | None, float | None]:
    try:
        version = client.get_model_version_by_alias(name, ALIAS)
    except Exception:  # no such model or no alias yet
        return None, None
    value = version.tags.get(TEST_ACC_TAG)
    return version.version, float(value) if value is not None else None


def log_champion_model(model: Any, example: Any, classes: list[str]) -> Any:
    """Log `model` (a searcher Classifier) in the active MLflow run as TorchScript; returns the
    ModelInfo.

    Why TorchScript and not torch.export (pt2): MLflow loads a pt2 model as the program's
    `.module()`, whose `.eval()` and `.train()` raise NotImplementedError and whose device is
    baked into the graph, so the first thing every PyTorch user does with it fails. A scripted
    module keeps nn.Module's `.eval()` and `.to(device)` (the input follows the weights'
    device), and `torch.jit.load` rebuilds it from TorchScript code and tensors: no Python
    object is unpickled and no searcher is needed. Scripting rather than tracing keeps that
    device step dynamic. TorchScript is deprecated in favour of torch.export; MLflow's pt2
    loader is where that change has to come from.
    """
    import mlflow
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        signature = infer_signature(example, model(torch.from_numpy(example)).numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation, once per submodule
        scripted = torch.jit.script(model)
    # MLflow files a ScriptModule under its "pickle" format and warns about pickles, but it
    # writes it with torch.jit.save: a TorchScript archive, not a pickle of Python objects.
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return mlflow.pytorch.log_model(
            scripted, name="model", signature=signature, input_example=example,
            serialization_format="pickle", metadata={"classes": classes})
    finally:
        quiet.setLevel(level)


def promote(tracking_uri: str | None = None, experiment: str | None = None,
            run_id: str | None = None, data_dir: str | None = None,
            model_name: str | None = None, force: bool = False) -> dict[str, Any]:
    """Promote the best trial of a search; returns what happened (also printed by the CLI)."""
    import mlflow
    import torch

    from searcher import tracking
    from searcher.checkpoint import classifier_from_checkpoint, load_checkpoint
    from searcher.engine import evaluate

    client = tracking.connect(tracking_uri)
    search = _latest_search(client, experiment, run_id)
    trial = _best_trial(client, search)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(trial.info.run_id, "checkpoint", tmp)
        ckpt = load_checkpoint(local)
    model = classifier_from_checkpoint(ckpt)
    test = _test_split(search, ckpt, data_dir)
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
    result = evaluate(model, x, y, prepare=lambda batch: batch, autocast=contextlib.nullcontext)
    test_acc, test_loss = result["val_acc"], result["val_loss"]

    name = model_name or client.get_experiment(search.info.experiment_id).name
    mlflow.set_tracking_uri(client.tracking_uri)
    with mlflow.start_run(experiment_id=search.info.experiment_id, run_name=f"promote {trial.info.run_name}",
                          tags={tracking.ROLE_TAG: "promotion",
                                "mlflow.parentRunId": search.info.run_id,
                                "searcher.source_trial_run": trial.info.run_id}) as run:
        mlflow.log_metrics({"test_acc": test_acc, "test_loss": test_loss})
        info = log_champion_model(model, test.x[:4], ckpt["classes"])
    version = mlflow.register_model(info.model_uri, name,
                                    tags={TEST_ACC_TAG: str(test_acc), "source_run": trial.info.run_id})
    old_version, old_acc = _champion_accuracy(client, name)
    moved = force or old_acc is None or test_acc > old_acc
    if moved:
        client.set_registered_model_alias(name, ALIAS, version.version)
    return {"model": name, "version": version.version, "test_acc": test_acc, "test_loss": test_loss,
            "val": trial.data.metrics.get(tracking.best_key(search.data.tags["searcher.metric"])),
            "trial": f"{trial.data.tags.get(tracking.TRIAL_ID_TAG)} ({trial.info.run_name})",
            "champion_before": old_version,
            "champion_before_acc": old_acc, "moved": moved, "promotion_run": run.info.run_id}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with one_line_errors(PROG):
        r = promote(args.tracking_uri, args.experiment, args.run_id, args.data_dir,
                    args.model_name, args.force)
        print(f"Trial {r['trial']}: validation {r['val']:.4f}, test accuracy {r['test_acc']:.4f} "
              f"(test loss {r['test_loss']:.4f})")
        print(f"Registered models:/{r['model']}/{r['version']}")
        if r["champion_before"] is None:
            print(f"No champion before: models:/{r['model']}@{ALIAS} is now version {r['version']}")
        elif r["moved"]:
            print(f"Beats champion version {r['champion_before']} "
                  f"(test accuracy {r['champion_before_acc']:.4f})"
                  f"{' (forced)' if args.force else ''}: models:/{r['model']}@{ALIAS} moved to "
                  f"version {r['version']}")
        else:
            print(f"Does not beat champion version {r['champion_before']} (test accuracy "
                  f"{r['champion_before_acc']:.4f}): models:/{r['model']}@{ALIAS} stays; "
                  f"--force moves it anyway")
        print(f'Load it: mlflow.pytorch.load_model("models:/{r["model"]}@{ALIAS}")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
