"""`python -m searcher.promote`: test a search's best checkpoint and make it the champion model.

It takes the best trial of a search (by default the latest), evaluates its checkpoint on the test
split (the only step that ever touches it), logs it as an MLflow model of data only (weights in
safetensors, the architecture in JSON: searcher.tracking.champion), registers a version with
each file's SHA-256, and moves the alias `champion` there only if it beats the current
champion's test accuracy (or with --force). Afterwards `searcher.tracking.champion.load_champion("models:/NAME@champion")`
gives a module that takes uint8 images (N x C x H x W), whose `argmax(1)` is the class label, and
that answers `.eval()` and `.to(device)` like any nn.Module.

`--confirm K` first retrains the search's top K configurations with fresh seeds (see
searcher.tune.confirm) and promotes the best mean's best checkpoint instead of the luckiest trial;
`--refit` retrains the chosen configuration on train+validation before the test.

`--max-latency-ms` and `--max-params` promote the best trial whose net meets them
(searcher.commands.budget); the exported model is timed again here, and its measured speed is
recorded on the registered version whether or not a bound was given.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from typing import Any

from searcher.commands import budget as budgets
from searcher.errors import UserError, one_line_errors
from searcher.tracking import readback as logged
from searcher.tracking.tags import (
    METRIC_TAG,
    MODE_TAG,
    PARENT_TAG,
    ROLE_TAG,
    SOURCE_RUN_TAG,
    SOURCE_TRIAL_TAG,
    TRIAL_ID_TAG,
    best_key,
)

PROG = "python -m searcher.promote"
ALIAS = "champion"
TEST_ACC_TAG = "test_acc"
DEFAULT_SEEDS = 3  # the fewest that give a spread worth reading; each costs a full training


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
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
    p.add_argument("--confirm", type=int, metavar="K",
                   help="retrain the top K configurations with fresh seeds for their full epochs "
                        "(on Ray, in parallel) and promote the best mean's best checkpoint")
    p.add_argument("--seeds", type=int, metavar="S",
                   help=f"seeds per configuration for --confirm (default {DEFAULT_SEEDS})")
    p.add_argument("--refit", action="store_true",
                   help="retrain the chosen configuration on train+validation before the test")
    p.add_argument("--address", help="Ray cluster for --confirm / --refit; default $RAY_ADDRESS, "
                                     "else a local Ray")
    p.add_argument("--max-latency-ms", type=float, metavar="X",
                   help="promote the best trial whose median latency at --batch is at most X ms, "
                        "and refuse the champion if the exported model, timed again on this "
                        "machine, is over it. The median of at least 50 passes after a warm-up: "
                        "single passes are noisy on a busy machine, so the gate compares the "
                        "median (its p95 is recorded beside it)")
    p.add_argument("--batch", type=int, metavar="B",
                   help="images per forward pass for the latency; default: the batch the search "
                        "timed at (its latency_batch), else 1. At another batch the candidates "
                        f"are timed here, the best {budgets.MAX_TIMED} at most")
    p.add_argument("--max-params", type=int, metavar="N",
                   help="promote the best trial with at most N parameters")
    return p.parse_args(argv)


def _check_options(confirm_k: int | None, seeds: int | None) -> None:
    if confirm_k is not None and confirm_k < 1:
        raise UserError(f"--confirm {confirm_k}: K is how many of the top configurations to "
                        f"retrain; it must be at least 1")
    if seeds is not None and confirm_k is None:
        raise UserError("--seeds is the number of retrains per configuration for --confirm; "
                        "give --confirm K with it")
    if seeds is not None and seeds < 1:
        raise UserError(f"--seeds {seeds}: must be at least 1")


def _champion_accuracy(client, name: str) -> tuple[str | None, float | None]:
    try:
        version = client.get_model_version_by_alias(name, ALIAS)
    except Exception:  # no such model or no alias yet
        return None, None
    value = version.tags.get(TEST_ACC_TAG)
    try:
        return version.version, float(value) if value is not None else None
    except ValueError:  # a tag set by hand: nothing to compare the new model with
        raise UserError(f"models:/{name}@{ALIAS} (version {version.version}) has the tag "
                        f"{TEST_ACC_TAG} = {value[:40]!r}, not a number; set it to the version's "
                        f"test accuracy, or delete the tag to have the new model replace it"
                        ) from None


def _candidates(client, search, k: int, runs) -> list[Any]:
    """The top `k` distinct configurations among `runs` (the search's trials in rank order), read
    from their trials' checkpoints."""
    import json

    from searcher.tune.confirm import Candidate
    metric = search.data.tags[METRIC_TAG]
    found, seen = [], set()
    for run in runs:
        ckpt = logged.download_checkpoint(client, run.info.run_id)
        key = json.dumps([ckpt["arch"], ckpt["train"]], sort_keys=True, default=str)
        if key in seen:  # a baseline the sampler proposed again: the same network, trained alike
            continue
        seen.add(key)
        found.append(Candidate(run.info.run_id, run.info.run_name,
                               run.data.tags.get(TRIAL_ID_TAG, run.info.run_id),
                               run.data.metrics[best_key(metric)], dict(run.data.params),
                               ckpt["arch"], ckpt["train"]))
        if len(found) == k:
            break
    if len(found) < k:
        print(f"[searcher] --confirm {k}: the search has only {len(found)} distinct trained "
              f"configuration(s); confirming those", flush=True)
    return found


def _confirm_step(client, search, run, k: int, seeds: int, data,
                  runs) -> tuple[Any, dict[str, Any]]:
    """Retrain the top `k` with `seeds` fresh seeds; record the table in the promotion run and
    return the winner (a confirm.Confirmed) and the table."""
    import mlflow

    from searcher.tune import confirm
    from searcher.tune.resources import trial_resources
    metric, mode = search.data.tags[METRIC_TAG], search.data.tags[MODE_TAG]
    candidates = _candidates(client, search, k, runs)
    seed_list = confirm.fresh_seeds(int(logged.setting(search, "seed", 0)), seeds)
    print(f"[searcher] confirming {len(candidates)} configuration(s) with seeds "
          f"{', '.join(map(str, seed_list))}: {len(candidates) * seeds} retrains", flush=True)
    inputs = search.inputs.dataset_inputs if search.inputs else []
    ranked = confirm.confirm(client, run.info.experiment_id, run.info.run_id, candidates,
                             data, seed_list, metric, mode, *trial_resources(search), inputs)
    record = confirm.table(ranked, metric, mode, seed_list, k)
    mlflow.log_dict(record, "confirm.json")
    mlflow.log_text(confirm.format_table(record) + "\n", "confirm.txt")
    mlflow.log_params({"confirm_candidates": len(candidates), "seed_list": seed_list})
    mlflow.log_metrics({"confirm_mean": ranked[0].mean, "confirm_std": ranked[0].std})
    return ranked[0], record


def _retrain_step(client, search, run, confirm_k: int | None, seeds: int, refit: bool,
                  data, runs) -> tuple[Any, ...]:
    """--confirm and/or --refit inside the promotion run: returns the checkpoint to test, the
    trial it comes from, the run that holds it, the validation figure and its wording, the
    confirmation table (or None) and what the refit did (or None). `runs`: the trials that may
    be chosen, best first."""
    import mlflow

    from searcher.tune import confirm
    from searcher.tune.resources import trial_resources
    mode = search.data.tags[MODE_TAG]
    mlflow.log_params({"confirm_k": confirm_k or 0, "seeds": seeds if confirm_k else 0,
                       "refit": refit})
    record, refit_info, ckpt, source_run = None, None, None, None
    if confirm_k:
        winner, record = _confirm_step(client, search, run, confirm_k, seeds, data, runs)
        best = winner.best_seed(mode)
        ckpt, source_run = confirm.as_checkpoint(winner.retrains[best]), winner.run_ids[best]
        chosen, seed, val = winner.candidate, winner.retrains[best].seed, winner.mean
        val_text = (f"validation mean {winner.mean:.4f} +- {winner.std:.4f} over {seeds} "
                    f"seed(s) (search: {chosen.search_value:.4f})")
    else:
        chosen = _candidates(client, search, 1, runs)[0]
        seed = int(logged.setting(search, "seed", 0))
        val, val_text = chosen.search_value, f"validation {chosen.search_value:.4f}"
    if refit:
        result, source_run = confirm.refit(client, run.info.experiment_id, run.info.run_id,
                                           chosen, data, seed, *trial_resources(search))
        ckpt = confirm.as_checkpoint(result)
        refit_info = {"run": source_run, "train_images": result.train_images, "seed": seed}
        mlflow.log_params({"refit_train_images": result.train_images, "refit_seed": seed})
        val_text += f"; refit on train+validation ({result.train_images} images)"
    return (ckpt, client.get_run(chosen.run_id), source_run, val, val_text, record, refit_info)


def _a_search(client, run) -> Any:
    """`run` if it is a search's parent run; otherwise a UserError naming the search it is in."""

    role = run.data.tags.get(ROLE_TAG)
    if role == "search":
        return run
    what = f"a {role} run" if role else "not a searcher run"
    ancestor = run
    for _ in range(4):  # a trial's or a promotion's parent is the search; a retrain's, its promotion
        parent = ancestor.data.tags.get(PARENT_TAG)
        if not parent:
            break
        try:
            ancestor = client.get_run(parent)
        except Exception:
            break
        if ancestor.data.tags.get(ROLE_TAG) == "search":
            raise UserError(f"--run-id {run.info.run_id} is {what}, not a search; promote its "
                            f"search with --run-id {parent}")
    raise UserError(f"--run-id {run.info.run_id} is {what}, not a search's parent run; pass a "
                    f"search's run id, or leave --run-id out for the latest search")


def _promotion_run(client, search, trial) -> Any:
    """The promotion's run (an ActiveRun), in the search's experiment; for a user who may only
    read it (another's search on a server with accounts), in an experiment of their own."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from searcher.tracking import accounts

    kwargs = {"run_name": f"promote {trial.info.run_name}",
              "tags": {ROLE_TAG: "promotion", PARENT_TAG: search.info.run_id}}
    try:
        return mlflow.start_run(experiment_id=search.info.experiment_id, **kwargs)
    except MlflowException as exc:
        if not accounts.refused(exc):
            raise
    experiment_id = accounts.own_experiment(client, search.info.experiment_id)
    print(f"[searcher] you may only read experiment {search.info.experiment_id}: the promotion "
          f"is logged in your own, {client.get_experiment(experiment_id).name!r}", flush=True)
    return mlflow.start_run(experiment_id=experiment_id, **kwargs)


def promote(tracking_uri: str | None = None, experiment: str | None = None,
            run_id: str | None = None, data_dir: str | None = None,
            model_name: str | None = None, force: bool = False, confirm_k: int | None = None,
            seeds: int | None = None, refit: bool = False, address: str | None = None,
            max_latency_ms: float | None = None, batch: int | None = None,
            max_params: int | None = None) -> dict[str, Any]:
    """Promote the best trial of a search (or, with `confirm_k`, the best mean of its top
    configurations retrained with `seeds` fresh seeds; with `refit`, retrained on
    train+validation) among those that meet `max_latency_ms` at `batch` and `max_params`;
    returns what happened (also printed by the CLI)."""
    import mlflow
    import torch
    from mlflow.exceptions import MlflowException

    from searcher.tracking import accounts, champion
    from searcher.tracking import store as tracking
    from searcher.training.checkpoint import classifier_from_checkpoint
    from searcher.training.engine import evaluate

    _check_options(confirm_k, seeds)
    budgets.check_options(max_latency_ms, max_params, batch)
    seeds = seeds or DEFAULT_SEEDS
    client = tracking.connect(tracking_uri)
    search = _a_search(client, logged.latest_search(client, experiment, run_id))
    name = model_name or client.get_experiment(search.info.experiment_id).name
    accounts.check_may_update_model(client, name)  # another user's model: refused before any work
    metric = search.data.tags[METRIC_TAG]
    budget = budgets.budget_for(search, max_latency_ms, max_params, batch)
    ranked = logged.ranked_trials(client, search, limit=None if confirm_k or budget else 1)
    ckpt = logged.download_checkpoint(client, ranked[0].info.run_id)
    # first: a wrong data folder fails before any timing or training
    test = logged.test_split(search, ckpt, data_dir)
    fits = budgets.fitting(client, search, ranked, budget, test.x.shape[1:])
    trial = next(fits)
    if trial is not ranked[0]:
        ckpt = logged.download_checkpoint(client, trial.info.run_id)
    runs = itertools.chain([trial], fits)
    data = None
    if confirm_k or refit:
        from searcher.tune.tuner import init_ray
        data = logged.search_data(search, data_dir)
        init_ray(address)
    val = trial.data.metrics.get(best_key(metric))
    val_text, source_run, record, refit_info = f"validation {val:.4f}", trial.info.run_id, None, None

    old_version, old_acc = _champion_accuracy(client, name)  # before anything is logged
    mlflow.set_tracking_uri(client.tracking_uri)
    with _promotion_run(client, search, trial) as run:
        if confirm_k or refit:
            ckpt, trial, source_run, val, val_text, record, refit_info = _retrain_step(
                client, search, run, confirm_k, seeds, refit, data, runs)
        mlflow.set_tags({"mlflow.runName": f"promote {trial.info.run_name}",
                         SOURCE_TRIAL_TAG: trial.info.run_id,
                         SOURCE_RUN_TAG: source_run})
        model = classifier_from_checkpoint(ckpt)
        x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
        result = evaluate(model, x, y, prepare=lambda batch: batch, autocast=contextlib.nullcontext)
        test_acc, test_loss = result["val_acc"], result["val_loss"]
        mlflow.log_metrics({"test_acc": test_acc, "test_loss": test_loss})
        info, digests = champion.log_champion(model, ckpt["arch"], test.x[:4])
        # Timed as it is served, before it is registered: a model over the budget leaves the
        # registry and the alias as they were, and its promotion run failed with the reason.
        speed, n_params = champion.measure_exported(info.model_uri, digests, budget.batch,
                                                    budget.throughput_batch, budget.device)
        mlflow.log_metrics({**speed.metrics(), "n_params": n_params})
        budgets.gate(budget, speed, n_params,
                     f"nothing registered, models:/{name}@{ALIAS} "
                     + (f"stays at version {old_version}" if old_version else "is not set"))
    try:
        version = mlflow.register_model(info.model_uri, name,
                                        tags={TEST_ACC_TAG: str(test_acc), "source_run": source_run,
                                              "source_trial_run": trial.info.run_id,
                                              **champion.speed_tags(speed),
                                              **champion.digest_tags(digests)})
        moved = force or old_acc is None or test_acc > old_acc
        if moved:
            client.set_registered_model_alias(name, ALIAS, version.version)
    except MlflowException as exc:  # another user's model, made since the check above
        if not accounts.refused(exc):
            raise
        raise UserError(accounts.model_refused(name)) from None
    return {"model": name, "version": version.version, "test_acc": test_acc, "test_loss": test_loss,
            "val": val, "val_text": val_text,
            "trial": f"{trial.data.tags.get(TRIAL_ID_TAG)} ({trial.info.run_name})",
            "champion_before": old_version, "source_run": source_run, "confirm": record,
            "refit": refit_info, "speed": speed, "n_params": n_params,
            "champion_before_acc": old_acc, "moved": moved, "promotion_run": run.info.run_id}


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The command; `prog` is how its messages name it (`searcher promote` from searcher.commands.cli)."""
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        r = promote(args.tracking_uri, args.experiment, args.run_id, args.data_dir,
                    args.model_name, args.force, args.confirm, args.seeds, args.refit,
                    args.address, args.max_latency_ms, args.batch, args.max_params)
        if r["confirm"]:
            from searcher.tune.confirm import format_table
            print(f"\nConfirmed by retraining ({r['confirm']['metric']}, mean over seeds):\n"
                  f"{format_table(r['confirm'])}\n")
        print(f"Trial {r['trial']}: {r['val_text']}, test accuracy {r['test_acc']:.4f} "
              f"(test loss {r['test_loss']:.4f})")
        speed = r["speed"]
        print(f"Registered models:/{r['model']}/{r['version']}: {r['n_params']:,} parameters, "
              f"median latency {speed.latency_ms:.3g} ms (p95 {speed.latency_p95_ms:.3g}) at "
              f"batch {speed.batch}, {speed.throughput_ips:,.0f} images/s at batch "
              f"{speed.throughput_batch}, on {speed.device} with {speed.threads} thread(s)")
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
        print(f'Load it: searcher.tracking.champion.load_champion("models:/{r["model"]}@{ALIAS}")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
