"""The searcher Tune drives, on a real Optuna study (no Ray): what Optuna is told about each trial."""
from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.trial import TrialState

from searcher.sampling.exploration import RandomInterleave
from searcher.sampling.fidelity import COST_ATTR, RungSampler
from searcher.sampling.samplers import make_sampler
from ray.tune.search import Searcher

from searcher.tune.study_searcher import (
    FAILED_ATTR,
    INFEASIBLE_ATTR,
    REPEAT_ATTR,
    StudySearcher,
    close_unfinished,
)

MAX_EPOCHS = 4


def space(trial):
    trial.suggest_categorical("filters", [8, 16, 512])
    trial.suggest_float("lr", 0.01, 0.1, log=True)
    return {"batch_size": 32}


def too_wide(params):
    """Like feasibility.proposal_check: None if trainable, else (reason, by how much it misses)."""
    if params["filters"] == 512:
        return "512 filters exceed the limit", 3.0
    return None


def sample(trial):
    constants = space(trial)
    return {**trial.params, **constants}


def make(sampler="tpe", seed=0):
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, seed))
    return study, StudySearcher(study, sample, too_wide, "val_acc", "max", MAX_EPOCHS)


def train(searcher, trial_id, accuracies):
    for epoch, acc in enumerate(accuracies, start=1):
        searcher.on_trial_result(trial_id, {"val_acc": acc, "epoch": epoch})
    return {"val_acc": accuracies[-1], "epoch": len(accuracies)} if accuracies else {}


def test_infeasible_proposals_never_become_trials_and_are_told_as_constraint_violations():
    study, searcher = make("random")
    proposed = [searcher.suggest(f"t{i}") for i in range(20)]
    assert all(p["filters"] != 512 and p["batch_size"] == 32 for p in proposed)
    infeasible = [t for t in study.trials if INFEASIBLE_ATTR in t.user_attrs]
    assert infeasible, "a third of the choices are infeasible: some proposals must have been"
    for t in infeasible:
        assert t.params["filters"] == 512
        assert t.state == TrialState.PRUNED and t.value is None and not t.intermediate_values
        assert t.constraints == {"feasible": 3.0}  # TPE ranks these below every measured trial
        assert t.user_attrs[INFEASIBLE_ATTR] == "512 filters exceed the limit"
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 20  # one Optuna trial per Tune trial, no more


def test_a_trial_stopped_early_is_pruned_with_its_epochs_and_a_full_one_is_complete():
    study, searcher = make()
    searcher.suggest("stopped")
    searcher.suggest("full")
    searcher.on_trial_complete("stopped", train(searcher, "stopped", [0.30, 0.45]))
    last = train(searcher, "full", [0.20, 0.40, 0.55, 0.61])
    searcher.on_trial_result("full", {"val_acc": 0.40, "epoch": 2})  # replayed after a restart
    searcher.on_trial_complete("full", last)
    searcher.on_trial_complete("full", last)  # Tune may say it twice; told once

    stopped, full = study.trials
    assert stopped.state == TrialState.PRUNED
    assert stopped.intermediate_values == {1: 0.30, 2: 0.45}
    assert full.state == TrialState.COMPLETE and full.value == 0.61
    assert full.intermediate_values == {1: 0.20, 2: 0.40, 3: 0.55, 4: 0.61}
    assert not stopped.constraints and not full.constraints


def test_failed_training_is_a_constraint_violation_and_a_lost_worker_is_a_failure():
    study, searcher = make()
    searcher.suggest("diverged")
    searcher.suggest("lost")
    searcher.on_trial_complete("diverged", {"val_acc": 0.1, "epoch": 0, "failed": 1,
                                            "reason": "TrainingDiverged: loss became nan"})
    searcher.on_trial_complete("lost", error=True)
    diverged, lost = study.trials
    assert diverged.state == TrialState.PRUNED and diverged.constraints == {"feasible": 1.0}
    assert "TrainingDiverged" in diverged.user_attrs[FAILED_ATTR]
    assert not diverged.intermediate_values  # no chance-level "accuracy" was made up
    assert lost.state == TrialState.FAIL


def test_trials_cut_by_the_budget_are_pruned_and_never_run_ones_fail():
    study, searcher = make()
    searcher.suggest("cut")
    searcher.suggest("never ran")
    train(searcher, "cut", [0.3, 0.4, 0.5])
    assert close_unfinished(study) == 2
    cut, never = study.trials
    assert cut.state == TrialState.PRUNED and cut.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}
    assert never.state == TrialState.FAIL


def test_save_and_restore_keep_the_map_from_tune_trials_to_optuna_trials(tmp_path):
    study, searcher = make()
    searcher.suggest("a")
    train(searcher, "a", [0.2, 0.3])
    searcher.save(str(tmp_path / "searcher.pkl"))

    _, restored = make()
    restored.restore(str(tmp_path / "searcher.pkl"))
    train(restored, "a", [0.2, 0.3, 0.5])  # epochs 1-2 replayed from the checkpoint, 3 is new
    restored.on_trial_complete("a", {"val_acc": 0.5, "epoch": 3})
    (trial,) = restored.study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.5}


def test_what_it_saves_does_not_grow_with_finished_trials(tmp_path):
    # Tune pickles the searcher with every snapshot of the experiment: a finished trial leaves
    # nothing in it (its Optuna trial, its epochs), and a replayed end is still ignored.
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))  # as a search's
    study = optuna.create_study(storage=storage, direction="maximize",
                                sampler=make_sampler("random", 0))
    searcher = StudySearcher(study, sample, too_wide, "val_acc", "max", MAX_EPOCHS)
    sizes = []
    for n in range(40):
        searcher.suggest(f"t{n}")
        searcher.on_trial_complete(f"t{n}", train(searcher, f"t{n}", [0.1, 0.2, 0.3, 0.4]))
        searcher.save(str(tmp_path / "searcher.pkl"))
        # The study pickles as its storage's handle (Optuna's own index of its journal grows).
        sizes.append((tmp_path / "searcher.pkl").stat().st_size - len(pickle.dumps(study)))
    assert not searcher._trials and not searcher._reported
    assert sizes[-1] - sizes[9] < 30 * 12  # nothing per finished trial
    searcher.on_trial_complete("t3", {"val_acc": 0.9, "epoch": 4})  # replayed: ignored
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 40 and {t.value for t in done} == {0.4}


def test_samplers_by_name():
    tpe = make_sampler("tpe", seed=1)
    assert isinstance(tpe, RandomInterleave) and isinstance(tpe.inner, RungSampler)
    assert isinstance(tpe.inner.inner, optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", seed=1), optuna.samplers.RandomSampler)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("grid", seed=1)


def test_the_last_result_arrives_with_the_completion_only():
    # Tune passes the result that ends a trial (its last epoch, or the one ASHA stops it on) to
    # on_trial_complete and not to on_trial_result.
    study, searcher = make()
    searcher.suggest("full")
    searcher.suggest("stopped")
    train(searcher, "full", [0.2, 0.4, 0.5])
    searcher.on_trial_complete("full", {"val_acc": 0.6, "epoch": 4})
    searcher.on_trial_complete("stopped", {"val_acc": 0.25, "epoch": 1})
    full, stopped = study.trials
    assert full.state == TrialState.COMPLETE and full.value == 0.6
    assert full.intermediate_values[4] == 0.6
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 0.25}


def test_a_trial_the_study_already_ended_is_not_told_again(tmp_path):
    # A killed driver told Optuna a trial's end after Tune last saved its state; on resume
    # Tune replays that trial, and the searcher must not tell the study again (Optuna refuses).
    study, searcher = make()
    searcher.suggest("a")
    train(searcher, "a", [0.2, 0.3])
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.on_trial_complete("a", {"val_acc": 0.4, "epoch": 3})  # the old driver's last act

    _, restored = make()
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.study = study  # the same storage, as a journal or database is
    train(restored, "a", [0.2, 0.3, 0.45])
    restored.on_trial_complete("a", error=True)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values[3] == 0.4


def test_a_feasible_proposal_carries_its_cost_for_the_sampler():
    study = optuna.create_study(direction="maximize", sampler=make_sampler("random", 0))
    searcher = StudySearcher(study, sample, too_wide, "val_acc", "max", MAX_EPOCHS,
                             cost=lambda params: params["filters"] / 4)
    for i in range(10):
        searcher.suggest(f"t{i}")
    for t in study.trials:
        if INFEASIBLE_ATTR in t.user_attrs:
            assert COST_ATTR not in t.user_attrs
        else:
            assert t.user_attrs[COST_ATTR] == t.params["filters"] / 4


def test_a_first_look_is_step_0_and_never_a_final_value():
    study, searcher = make("random")
    looked, finished = searcher.suggest("a"), searcher.suggest("b")
    assert looked and finished
    searcher.on_trial_complete("a", {"val_acc": 0.9, "epoch": 0})  # stopped at its look
    searcher.on_trial_result("b", {"val_acc": 0.95, "epoch": 0})
    searcher.on_trial_complete("b", train(searcher, "b", [0.3, 0.4, 0.5, 0.6]))
    a, b = study.trials
    assert a.state == TrialState.PRUNED and a.intermediate_values == {0: 0.9}
    assert b.state == TrialState.COMPLETE and b.value == 0.6  # not its look's 0.95
    assert b.intermediate_values == {0: 0.95, 1: 0.3, 2: 0.4, 3: 0.5, 4: 0.6}
    assert study.best_value == 0.6


def over_categories(choices, monkeypatch):
    """A random-sampling study over a space of categorical choices only (few configurations),
    its searcher giving up after 40 asks in a row that bring nothing new."""
    from searcher.tune import study_searcher
    monkeypatch.setattr(study_searcher, "MAX_PROPOSALS_IN_A_ROW", 40)

    def sample(trial):
        for name, values in choices.items():
            trial.suggest_categorical(name, values)
        return dict(trial.params)

    study = optuna.create_study(direction="maximize", sampler=make_sampler("random", 0))
    return study, StudySearcher(study, sample, too_wide, "val_acc", "max", MAX_EPOCHS)


def test_a_configuration_already_run_is_never_proposed_again(monkeypatch):
    # six configurations, two of them infeasible
    study, searcher = over_categories({"filters": [8, 16, 512], "batch_norm": [True, False]},
                                      monkeypatch)
    proposed = [searcher.suggest(f"t{i}") for i in range(5)]
    configs = [tuple(sorted(p.items())) for p in proposed[:4]]
    assert len(set(configs)) == 4  # every feasible configuration once
    assert proposed[4] == Searcher.FINISHED  # none left: the search ends rather than repeat
    repeats = [t for t in study.trials if REPEAT_ATTR in t.user_attrs]
    assert repeats and all(t.state == TrialState.FAIL for t in repeats)
    for t in repeats:
        assert study.trials[t.user_attrs[REPEAT_ATTR]].params == t.params


def test_a_lost_trial_may_run_again_and_an_enqueued_point_always_runs(monkeypatch):
    study, searcher = over_categories({"filters": [8, 512]}, monkeypatch)  # one feasible
    assert searcher.suggest("lost") == {"filters": 8}
    searcher.on_trial_complete("lost", error=True)  # lost with its node: it never measured
    assert searcher.suggest("again") == {"filters": 8}
    searcher.on_trial_complete("again", train(searcher, "again", [0.1, 0.2, 0.3, 0.4]))
    study.enqueue_trial({"filters": 8})  # a baseline, as its author asked: run, repeat or not
    assert searcher.suggest("enqueued") == {"filters": 8}
    assert searcher.suggest("none left") == Searcher.FINISHED
