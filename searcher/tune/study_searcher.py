"""Tune's searcher over an Optuna study: proposals, and feedback that says what each trial was.

Ray's OptunaSearch tells Optuna every trial that ASHA stopped as COMPLETE with its last value, so
TPE ranks one-epoch accuracies (taken mid warm-up of a one-cycle schedule) against ten-epoch ones
as if both were final, and it saw networks that cannot be built as chance-level accuracies. Here
Optuna is told what happened:
- every epoch's value, as an intermediate value (`trial.report`);
- a trial that trained all its epochs: COMPLETE, with its final value;
- a trial stopped before that (by ASHA, or by the time budget at the end of a search): PRUNED.
  (TPE itself would rank every COMPLETE trial above every PRUNED one; the sampler it runs behind,
  `fidelity.RungSampler`, compares trials at a common epoch instead);
- a proposal that cannot be built (or trips a limit), before it becomes a trial: a constraint
  violation of the size it missed by, so TPE counts it among the bad points, and no slot is
  spent on it; the next proposal is drawn at once;
- a trial whose training failed (diverged, out of memory): a constraint violation too: the
  region is bad, but no accuracy was measured there;
- a trial too slow for the latency bound (timed on its own device before it trains): a
  constraint violation of the size it missed by, like a proposal over a size limit.
What a trial measured of itself before training (its latency, throughput and size) goes on the
Optuna trial as user attributes with its first result: a Pareto search's sampler models the
second objective from them.
Only public Tune (`Searcher`) and Optuna (ask/tell, report, set_constraint) APIs are used.
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from searcher.sampling.fidelity import COST_ATTR
from searcher.spec.feasibility import Check, Cost
from searcher.tune import limits

INFEASIBLE_ATTR = "infeasible"  # user attribute: why a proposal could not be trained
FAILED_ATTR = "failed"
WARM_START_ATTR = "warm_start_run"  # user attribute: the MLflow run a trial was learnt from
SAME_DATA_ATTR = "same_data"  # ...and True when that run trained on this search's data
# User attribute of a proposal that repeats a trial already run (its number): told FAIL, which
# TPE skips, and never trained: the study holds that configuration's result already.
REPEAT_ATTR = "repeat_of"
# The result keys a trial knows before it trains, kept as user attributes of the same names.
DESCRIPTION = ("latency_ms", "latency_p95_ms", "throughput_ips", "n_params")
MAX_PROPOSALS_IN_A_ROW = 500  # infeasible ones; past this the space is broken, not unlucky


class StudySearcher(Searcher):
    """Proposes trials from `study` by running the define-by-run `sample(trial) -> params`."""

    def __init__(self, study: optuna.Study, sample: Callable[[optuna.Trial], dict[str, Any]],
                 check: Check, metric: str, mode: str, max_epochs: int, cost: Cost | None = None):
        super().__init__(metric=metric, mode=mode)
        self.study, self.sample, self.check, self.max_epochs = study, sample, check, max_epochs
        self.cost = cost
        self._trials: dict[str, optuna.Trial] = {}  # Tune trial id -> its Optuna trial
        self._reported: dict[str, int] = {}  # the last epoch told (0: a first look), per trial
        self._proposed = 0  # trials handed to Tune over the whole search (not infeasible ones)

    def in_flight(self) -> int:
        """Trials proposed and not yet ended (running, or waiting for a slot); safe to call
        from another thread."""
        return len(self._trials)

    # ------------------------------------------------------------------------- proposals

    _proposed = 0  # for a searcher pickled before it counted

    def spent(self) -> bool:
        """Whether it has proposed all the trials the search may run."""
        return 0 < limits.trials() <= self._proposed

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.spent():
            # FINISHED only once none of its trials runs: Tune saves that it finished, and a
            # search resumed with more trials must find itself open (Tune asks again meanwhile).
            return None if self._trials else Searcher.FINISHED
        for _ in range(MAX_PROPOSALS_IN_A_ROW):
            trial = self.study.ask()
            params = self.sample(trial)
            miss = self.check(params)
            repeat = self._repeat_of(trial) if miss is None else None
            if repeat is not None:
                trial.set_user_attr(REPEAT_ATTR, repeat)
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            if miss is None:
                mmacs = self.cost(params) if self.cost else None
                if mmacs is not None:  # known before it trains, so running trials have it too
                    trial.set_user_attr(COST_ATTR, mmacs)
                self._trials[trial_id] = trial
                self._proposed += 1
                return params
            reason, excess = miss
            trial.set_user_attr(INFEASIBLE_ATTR, reason)
            trial.set_constraint("feasible", excess)
            self.study.tell(trial, state=TrialState.PRUNED)
        print(f"[searcher] the last {MAX_PROPOSALS_IN_A_ROW} proposals were all infeasible or "
              f"repeats of trials run; the search stops: widen max_mmacs / max_params or the "
              f"space", flush=True)
        return Searcher.FINISHED

    _run: dict | None = None  # configuration -> the first trial that ran it (None: not built)
    _scanned = 0  # the trials looked at for `_run` so far, by number

    def _repeat_of(self, trial: optuna.Trial) -> int | None:
        """The number of an earlier trial of this search that ran (or runs) the same
        configuration as `trial`, if any. Local search can undo a change it made (a stage added,
        then taken away again), and a small categorical space repeats itself. Trials learnt
        from earlier searches count only if they trained on this search's data; trials that
        never ran (failed: lost before they started, or repeats themselves) do not. Kept as a map, brought
        up to date from the trials added since the last call: the study only grows."""
        if self._run is None:
            self._run, self._scanned = {}, 0
        trials = self.study.get_trials(deepcopy=False)
        for earlier in trials[self._scanned:trial.number]:
            attrs = earlier.user_attrs
            if (earlier.params and earlier.state != TrialState.FAIL
                    and INFEASIBLE_ATTR not in attrs and REPEAT_ATTR not in attrs
                    and (WARM_START_ATTR not in attrs or attrs.get(SAME_DATA_ATTR))):
                self._run.setdefault(_key(earlier.params), earlier.number)
        self._scanned = max(self._scanned, trial.number)
        if "fixed_params" in trials[trial.number].system_attrs:  # enqueued (a baseline):
            return None  # run as its author asked, repeat or not
        key = _key(trial.params)
        number = self._run.get(key)
        if number is not None and trials[number].state == TrialState.FAIL:  # lost since
            del self._run[key]
            return None
        return number

    # ------------------------------------------------------------------------- feedback

    def _told(self, trial: optuna.Trial) -> bool:
        """Whether the study already holds the trial's end: after a resume, Tune can replay a
        trial that the killed driver had told Optuna about after Tune last saved its state."""
        return self.study.get_trials(deepcopy=False)[trial.number].state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        trial = self._trials.get(trial_id)
        if (trial is None or self.metric not in result
                or self._told(trial)):
            return
        if trial_id not in self._reported:  # its first result
            self._describe(trial, result)
        if result.get(INFEASIBLE_ATTR) or result.get(FAILED_ATTR):
            return  # chance level by construction, not a measurement
        # Epoch 0 is a first look (part of the first epoch), told at step 0 like any epoch: the
        # rung view compares trials there, and only a trial told all its epochs is COMPLETE.
        epoch = int(result.get("epoch", 0))
        if epoch > self._reported.get(trial_id, -1):  # a restart replays epochs already told
            trial.report(float(result[self.metric]), step=epoch)
            self._reported[trial_id] = epoch

    def _describe(self, trial: optuna.Trial, result: dict[str, Any]) -> None:
        for key in DESCRIPTION:
            if key in result and key not in trial.user_attrs:
                trial.set_user_attr(key, float(result[key]))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        trial = self._trials.get(trial_id)
        if trial is None:  # not ours, or already ended (a replayed end is ignored)
            return
        result = result or {}
        # Tune hands a trial's last result (the final epoch, or the one ASHA stopped it on) to
        # this call only, not to on_trial_result.
        self.on_trial_result(trial_id, result)
        try:
            self._tell(trial_id, trial, result, error)
        finally:
            # A finished trial leaves nothing here: Tune pickles this searcher with every
            # snapshot of the experiment, so what it held per trial would be paid for again and
            # again as the search grows.
            self._trials.pop(trial_id, None)
            self._reported.pop(trial_id, None)

    def _tell(self, trial_id: str, trial: optuna.Trial, result: dict[str, Any],
              error: bool) -> None:
        if self._told(trial):
            return
        if error:  # a lost node past its retries: says nothing about the configuration
            self.study.tell(trial, state=TrialState.FAIL)
        elif result.get(INFEASIBLE_ATTR) or result.get(FAILED_ATTR):
            # The trial found what the driver could not see (a diverging loss, out of memory,
            # a shape that only the real data shows).
            key = INFEASIBLE_ATTR if result.get(INFEASIBLE_ATTR) else FAILED_ATTR
            trial.set_user_attr(key, str(result.get("reason", "")))
            # by how much it missed, when the trial could tell (a latency over the bound)
            trial.set_constraint("feasible", max(float(result.get("excess", 1.0)), 1e-3))
            self.study.tell(trial, state=TrialState.PRUNED)
        elif self._reported.get(trial_id, -1) >= self.max_epochs:
            self.study.tell(trial, float(result[self.metric]))
        else:
            self.study.tell(trial, state=TrialState.PRUNED)

    # ------------------------------------------------------------------------- resume

    _STATE = ("_trials", "_reported", "_proposed")

    def __getstate__(self) -> dict[str, Any]:
        # The map of configurations run is the study's to rebuild, not Tune's to pickle with
        # every snapshot of the experiment (it grows with every trial).
        return {k: v for k, v in self.__dict__.items() if k not in ("_run", "_scanned")}

    def save(self, checkpoint_path: str) -> None:
        # The study's trials live in its storage; the sampler (with its random state) and the
        # map from Tune's trials to Optuna's pickle with it, as Ray's own OptunaSearch does.
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"study": self.study, **{k: getattr(self, k) for k in self._STATE}}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.study = state.pop("study")
        for key, value in state.items():
            setattr(self, key, value)


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def close_unfinished(study: optuna.Study) -> int:
    """Tell the trials a search left RUNNING: those cut by the time budget (they reported
    epochs) as PRUNED, and any asked but never run (a driver killed in between) as FAIL."""
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.PRUNED if trial.intermediate_values
                   else TrialState.FAIL)
        closed += 1
    return closed
