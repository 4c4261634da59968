"""A finished search read back from MLflow: its parent run, its trials best first, their
checkpoints, its settings and its data, for the steps that come after a search (promotion)."""
from __future__ import annotations

import tempfile
from typing import Any

from searcher.errors import UserError


def latest_search(client, experiment: str | None, run_id: str | None):
    """The search `run_id`, else the latest of `experiment`, else the latest anywhere."""
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


def ranked_trials(client, search, limit: int | None = None) -> list[Any]:
    """The search's trials with a score and a checkpoint, best first; the first `limit`."""
    from searcher.tracking import ROLE_TAG, all_runs, best_key
    metric, mode = search.data.tags["searcher.metric"], search.data.tags["searcher.mode"]
    runs = all_runs(
        client, [search.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{search.info.run_id}' and tags.`{ROLE_TAG}` = 'trial'",
        order_by=[f"metrics.`{best_key(metric)}` {'DESC' if mode == 'max' else 'ASC'}"])
    ranked = []
    for run in runs:
        if best_key(metric) in run.data.metrics and client.list_artifacts(run.info.run_id, "checkpoint"):
            ranked.append(run)
            if limit is not None and len(ranked) == limit:
                break
    if not ranked:
        raise UserError(f"search {search.info.run_id} has no trial with a checkpoint to promote")
    return ranked


def download_checkpoint(client, run_id: str) -> dict[str, Any]:
    from searcher.checkpoint import load_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        return load_checkpoint(client.download_artifacts(run_id, "checkpoint", tmp))


def test_split(search, ckpt: dict[str, Any], data_dir: str | None):
    from searcher.data import load_split
    params = search.data.params
    data_dir = data_dir or params.get("data_dir")
    if data_dir in (None, "None"):
        from searcher.settings import Settings
        data_dir = Settings().resolved_data_dir()
    return load_split(params.get("dataset", "cifar10"), data_dir, "test",
                      int(params.get("image_size", 32)), ckpt["classes"])[0]


def setting(search, name: str, default: Any) -> Any:
    """A setting of the search, as its parent run logged it (strings); `default` if absent."""
    import ast
    value = search.data.params.get(name)
    if value is None:
        return default
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):  # a plain string: a path, a name
        return value


def search_data(search, data_dir: str | None):
    """The search's train/validation split again: the same data, fraction and seed."""
    from searcher.data import load_search_data
    from searcher.settings import Settings
    d = Settings()
    data_dir = data_dir or setting(search, "data_dir", None) or d.resolved_data_dir()
    return load_search_data(setting(search, "dataset", d.dataset), str(data_dir),
                            int(setting(search, "image_size", d.image_size)),
                            float(setting(search, "val_fraction", d.val_fraction)),
                            int(setting(search, "seed", d.seed)),
                            bool(setting(search, "strict_data", d.strict_data)))


def trial_resources(search) -> tuple[float, float]:
    """CPUs and GPUs per retrain: the search's own per-trial share."""
    from searcher.resources import plan
    cpus = float(setting(search, "cpus_per_trial", 1.0))
    return cpus, plan(cpus, setting(search, "gpus_per_trial", None), None).gpus_per_trial
