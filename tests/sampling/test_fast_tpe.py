"""TPE with scipy's log normal CDF: the same function as Optuna's, the same proposals, faster."""
import numpy as np
import optuna
import pytest

from searcher.sampling import fast_tpe


def _proposals(n: int = 30) -> list[dict]:
    sampler = optuna.samplers.TPESampler(seed=3, multivariate=True, group=True,
                                         n_startup_trials=5)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(n):
        trial = study.ask()
        stages = trial.suggest_int("stages", 1, 3)
        lr = trial.suggest_float("lr", 1e-4, 0.3, log=True)
        width = sum(trial.suggest_int(f"stage{i}.filters", 8, 256, log=True)
                    for i in range(1, stages + 1))
        head = trial.suggest_categorical("head", ["flatten", "gap"])
        study.tell(trial, -abs(np.log10(lr) + 2) + 0.001 * width + (head == "gap") * 0.1)
    return [t.params for t in study.trials]


def test_it_replaces_optunas_log_ndtr_with_the_same_function():
    from optuna.samplers._tpe import _truncnorm
    from scipy.special import log_ndtr
    assert fast_tpe.install(), "Optuna's TPE internals moved: fast_tpe no longer applies"
    assert _truncnorm._log_ndtr is log_ndtr
    original = fast_tpe.original()
    x = np.concatenate([np.linspace(-60, 40, 2001), [-20.0, -19.999, 6.0, 6.001]])
    assert log_ndtr(x) == pytest.approx(original(x), rel=1e-10, abs=1e-12)


def test_tpe_proposes_the_same_points_with_either():
    fast_tpe.install()
    fast = _proposals()
    fast_tpe.uninstall()
    try:
        slow = _proposals()
    finally:
        fast_tpe.install()
    # the same points: choices equal, floats to the last few bits (the two agree to ~1e-13)
    assert [sorted(p) for p in fast] == [sorted(p) for p in slow]
    for a, b in zip(fast, slow):
        assert a == {k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v
                     for k, v in b.items()}
