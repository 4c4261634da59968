"""Random interleaving, on real Optuna studies over the real CIFAR-10 space."""
from __future__ import annotations

import pickle
from pathlib import Path

import optuna

from searcher.sampling.exploration import EVERY, RandomInterleave
from searcher.sampling.samplers import RANDOM_STARTUP, make_sampler
from searcher.spec.space import load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = load_space(Path(__file__).parents[2] / "spaces" / "cifar10.py")


def score(params: dict) -> float:
    """Deterministic, and something for TPE to model: batch norm and a mid-range rate win."""
    return 0.3 + 0.3 * bool(params.get("batch_norm")) - 0.05 * abs(params["lr"] - 0.01) / 0.01


def proposals(study: optuna.Study, n: int) -> list[dict]:
    for _ in range(n):
        trial = study.ask()
        SPACE.sample(trial)
        study.tell(trial, score(trial.params))
    return [t.params for t in study.trials[-n:]]


def test_the_start_up_and_one_in_every_after_it_are_random_samplings_draws_in_order():
    n = RANDOM_STARTUP + 3 * EVERY
    default = proposals(optuna.create_study(direction="maximize",
                                            sampler=make_sampler("tpe", seed=7)), n)
    random = proposals(optuna.create_study(direction="maximize",
                                           sampler=make_sampler("random", seed=7)), n)
    assert default[:RANDOM_STARTUP] == random[:RANDOM_STARTUP]
    later = range(RANDOM_STARTUP, n)
    drawn = [i for i in later if (i - RANDOM_STARTUP + 1) % EVERY == 0]
    assert len(drawn) == 3
    # random sampling's 7th, 8th and 9th draws, in that order: the two searches share them
    assert [default[i] for i in drawn] == random[RANDOM_STARTUP:RANDOM_STARTUP + 3]
    modelled = [default[i] for i in later if i not in drawn]
    assert not any(params in random for params in modelled)  # TPE's own
    # and TPE learned: batch norm in most of its proposals, in about half of random's
    assert sum(p["batch_norm"] for p in modelled) >= len(modelled) - 1


def test_a_warm_started_study_has_no_random_start_up():
    earlier = optuna.create_study(direction="maximize", sampler=make_sampler("random", seed=99))
    proposals(earlier, RANDOM_STARTUP)
    study = optuna.create_study(direction="maximize", sampler=make_sampler("tpe", seed=7))
    study.add_trials(earlier.trials)
    cold = proposals(optuna.create_study(sampler=make_sampler("random", seed=7)), 1)[0]
    warm = proposals(study, EVERY)
    assert warm[0] != cold  # modelled from the earlier trials at once
    assert warm[EVERY - 1] == cold  # the first random turn is random sampling's first draw


def test_the_sampler_pickles_mid_search_and_goes_on_where_it_was():
    sampler = make_sampler("tpe", seed=3)
    assert isinstance(sampler, RandomInterleave)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    proposals(study, RANDOM_STARTUP + EVERY)  # one random turn taken
    study.sampler = pickle.loads(pickle.dumps(sampler))  # the searcher pickles it to resume
    went_on = proposals(study, EVERY)
    random = proposals(optuna.create_study(sampler=make_sampler("random", seed=3)),
                       RANDOM_STARTUP + 2)
    assert went_on[-1] == random[-1]  # the second random turn: random sampling's 8th draw
    assert went_on[0] not in random


def test_the_model_is_asked_only_on_its_turns():
    asked = []

    class Model(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):
            asked.append(trial.number)
            return super().sample_independent(study, trial, name, distribution)

    study = optuna.create_study(sampler=RandomInterleave(Model(seed=0), 0, startup=2, every=2))
    for _ in range(6):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, 0.0)
    assert asked == [2, 4]  # 0 and 1: the start-up; 3 and 5: random turns
