"""Warm start: the finished trials of earlier searches of a space, as Optuna trials to learn from.

`--warm-start` names earlier searches in the MLflow store: an experiment (all its searches), one
search's parent run id, or "latest" (the newest search of this space). Each of their trial runs
is replayed through the current space function so that Optuna gets its parameters with today's
distributions; a trial whose parameters no longer fit the space (a changed range, a removed
choice, another conditional branch) is skipped and counted. Runs that never measured anything
(infeasible, failed) are left out. How far each trial got decides what Optuna is told, as in a
live search (see study_searcher): all of this search's epochs -> COMPLETE, fewer -> PRUNED.
Each carries its cost (multiply-adds per image) as a live trial does, so that the sampler's cost
discount (fidelity.rung_view) weighs earlier trials and new ones alike.

A hand-made baseline that an earlier search ran to the end on the same data (the same training
and validation images and labels, by the digests the search logged with its datasets; the same
epochs and metric) is known already: `WarmStart.baselines` names it, and
the search does not run it again. A baseline trains all its epochs (ASHA spares it), so a second
measurement of it would take a large share of a small budget's slots to repeat a known score.
"""
from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from searcher.errors import UserError
from searcher.redaction import redact
from searcher.sampling.fidelity import COST_ATTR
from searcher.spec.feasibility import Cost
from searcher.spec.space import Space, quiet_optuna
from searcher.tracking.readback import all_runs, param_value, trial_runs
from searcher.tracking.store import logged_digests
from searcher.tracking.tags import (
    FIRST_LOOK,
    OUTCOME_TAG,
    ROLE_TAG,
    WARM_START_FILE,
    WARM_START_TAG,
)
from searcher.tune.study_searcher import SAME_DATA_ATTR, WARM_START_ATTR


# With the same data, the settings that make two searches' scores of one configuration the same
# measurement.
SAME_MEASURE = ("epochs", "metric")


@dataclass
class MeasuredBaseline:
    """A baseline an earlier search ran to the end on the same data."""
    value: float  # its best score
    epochs: int
    run_id: str  # its trial run
    search: str  # that search's parent run
    n_params: int | None = None


@dataclass
class WarmStart:
    sources: list[str]  # parent run ids of the searches learnt from
    trials: list[FrozenTrial] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # why -> how many
    baselines: dict[str, MeasuredBaseline] = field(default_factory=dict)  # name -> measurement

    def summary(self) -> dict[str, Any]:
        return {"sources": self.sources, "trials": len(self.trials), "skipped": self.skipped,
                "baselines_measured": {n: asdict(b) for n, b in self.baselines.items()}}


def load_warm_start(client: MlflowClient, space: Space, spec: str, cost: Cost | None = None,
                    digests: dict[str, str] | None = None) -> WarmStart:
    """The trials of the searches `spec` names, fitted to `space`; UserError if none match.
    `cost`: a proposal's cost from its parameters (feasibility.proposal_cost), as the search's.
    `digests`: this search's data (tracking.data_digests); without them no baseline counts as
    measured."""
    found = WarmStart(_search_runs(client, space, spec))
    with quiet_optuna():  # each trial is replayed in a scratch study: no line per study
        for parent in found.sources:
            _learn(client, space, parent, cost, digests, found)
    return found


def _learn(client: MlflowClient, space: Space, parent: str, cost: Cost | None,
           digests: dict[str, str] | None, found: WarmStart) -> None:
    """Adds the trials of the search `parent` to `found`, and the baselines it measured on the
    data this search uses."""
    search = client.get_run(parent)
    same_data = _same_data(search, space, digests)
    for run in trial_runs(client, search):
        params = {k: param_value(v) for k, v in run.data.params.items()}
        trial, why = _as_trial(client, run, params, space, cost, same_data)
        if trial is None:
            found.skipped[why] = found.skipped.get(why, 0) + 1
            continue
        found.trials.append(trial)
        name = space.baseline_of(params)
        if (same_data and name and name not in found.baselines
                and trial.state == TrialState.COMPLETE):
            epochs = {k: v for k, v in trial.intermediate_values.items() if k != FIRST_LOOK}
            found.baselines[name] = MeasuredBaseline(
                max(epochs.values()), max(epochs),
                run.info.run_id, parent, _int(run.data.metrics.get("n_params")))


def recorded_baselines(client: MlflowClient, parent: str) -> dict[str, MeasuredBaseline]:
    """The baselines the warm-started search `parent` did not run, as its warm_start.json has
    them: what a resumed search ranks its trials against, since it does not load its warm start
    again (its study holds the learnt trials already)."""
    if not client.get_run(parent).data.tags.get(WARM_START_TAG):
        return {}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(client.download_artifacts(parent, WARM_START_FILE, scratch))
        recorded = json.loads(path.read_text())
    return {n: MeasuredBaseline(**b) for n, b in recorded.get("baselines_measured", {}).items()}


def _search_runs(client: MlflowClient, space: Space, spec: str) -> list[str]:
    where = f"tags.`{ROLE_TAG}` = 'search'"
    if spec != "latest":
        try:
            run = client.get_run(spec)
        except MlflowException:
            run = None
        if run is not None:
            if run.data.tags.get(ROLE_TAG) != "search":
                raise UserError(f"--warm-start {spec}: that run is not a search's parent run")
            return [spec]
    name = space.name if spec == "latest" else spec
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        runs = []
    elif spec == "latest":  # the newest only
        runs = client.search_runs([experiment.experiment_id], where, max_results=1,
                                  order_by=["attributes.start_time DESC"])
    else:
        runs = all_runs(client, [experiment.experiment_id], where,
                        order_by=["attributes.start_time DESC"])
    if not runs:
        raise UserError(f"--warm-start {spec}: no search run or experiment of that name in "
                        f"{redact(client.tracking_uri)}; give an experiment, a search's run id "
                        f"or 'latest'")
    return [runs[0].info.run_id] if spec == "latest" else [r.info.run_id for r in runs]


def _same_data(search: Any, space: Space, digests: dict[str, str] | None) -> bool:
    """Whether the search `search` scored its trials as this search of `space` on the data of
    `digests` would."""
    ours = space.settings.to_dict()
    return (bool(digests) and logged_digests(search) == digests
            and all(search.data.params.get(k) == str(ours[k]) for k in SAME_MEASURE))


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _fits(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high  # type: ignore[attr-defined]


def _replay(space: Space, params: dict[str, Any]) -> tuple[dict[str, BaseDistribution] | None, str]:
    """The distributions the space gives `params` today, or None with the reason they don't fit."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params)
    trial = study.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns on a fixed value outside its range
        try:
            constants = space.fn(trial) or {}
        except Exception:  # e.g. a categorical value that is no longer a choice
            return None, "no longer in the space"
    suggested = trial.params
    if {**suggested, **constants} != params:
        return None, "no longer in the space"
    if not all(_fits(trial.distributions[k], v) for k, v in suggested.items()):
        return None, "no longer in the space"
    return trial.distributions, ""


def _as_trial(client: MlflowClient, run: Any, params: dict[str, Any], space: Space,
              cost: Cost | None, same_data: bool = False) -> tuple[FrozenTrial | None, str]:
    """The run `run` (with its `params` parsed) as an Optuna trial, or None and why not."""
    s = space.settings
    outcome = run.data.tags.get(OUTCOME_TAG)
    if outcome not in ("completed", "stopped early", "running"):  # infeasible, failed or lost
        return None, f"measured nothing: {outcome or 'never started'}"
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, s.metric)}
    if not history:  # e.g. cut by the time budget in its first epoch
        return None, "measured nothing: stopped before its first epoch"
    distributions, why = _replay(space, params)
    if distributions is None:
        return None, why
    last = max(history)
    complete = outcome == "completed" and last >= s.epochs
    attrs: dict[str, Any] = {WARM_START_ATTR: run.info.run_id}
    if same_data:  # its result holds for this search: not to be trained again
        attrs[SAME_DATA_ATTR] = True
    mmacs = cost(params) if cost else None  # params: all the trial ran with, constants too
    if mmacs is not None:
        attrs[COST_ATTR] = mmacs
    return optuna.trial.create_trial(
        params={k: params[k] for k in distributions}, distributions=distributions,
        state=TrialState.COMPLETE if complete else TrialState.PRUNED,
        value=history[last] if complete else None, intermediate_values=history,
        user_attrs=attrs), ""
