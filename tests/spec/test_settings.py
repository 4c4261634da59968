import pytest

from searcher.spec.settings import METRICS, Settings, SettingsError, make_settings


def test_defaults_are_valid_and_mode_follows_metric():
    s = make_settings({})
    assert s == Settings()
    assert make_settings({"metric": "val_loss"}).mode == "min" == METRICS["val_loss"]
    assert s.mode == "max"


def test_values_are_coerced_where_natural():
    s = make_settings({"time_budget_s": 60, "cpus_per_trial": 2, "gpus_per_trial": None})
    assert s.time_budget_s == 60.0 and isinstance(s.time_budget_s, float)
    assert s.cpus_per_trial == 2.0 and s.gpus_per_trial is None
    assert make_settings({"strict_data": True}).strict_data is True


@pytest.mark.parametrize("values, words", [
    ({"epoch": 3}, "unknown setting 'epoch'"),
    ({"epochs": "3"}, "expected int"),
    ({"epochs": True}, "expected int"),
    ({"strict_data": 1}, "expected bool"),
    ({"strict_data": "yes"}, "expected bool"),
    ({"epochs": 0}, "at least 1"),
    ({"metric": "accuracy"}, "must be one of val_acc, val_loss"),
    ({"num_samples": -1}, "needs time_budget_s"),
    ({"grace_period": 9, "epochs": 4}, "between 1 and epochs"),
    ({"dataset": "imagenet"}, "must be one of cifar10, folder"),
    ({"dataset": "cifar10", "image_size": 64}, "32x32"),
    ({"val_fraction": 1.5}, "between 0 and 1"),
    ({"cost_weight": -0.1}, "cost_weight=-0.1: must be 0 or more"),
    ({"max_latency_ms": 0}, "max_latency_ms=0.0: must be positive"),
    ({"latency_batch": 0}, "latency_batch=0: must be at least 1"),
    ({"second_objective": "flops"}, "must be one of latency_ms, params, mmacs"),
])
def test_impossible_settings_name_the_setting(values, words):
    with pytest.raises(SettingsError, match=words):
        make_settings(values)


def test_the_reference_point_is_fixed_by_the_settings():
    from searcher.spec.objectives import REFERENCE_LATENCY_MS, front_objectives, reference_point
    assert reference_point(make_settings({}), 10) == (0.1, REFERENCE_LATENCY_MS)
    bounded = make_settings({"max_latency_ms": 2.5})
    assert front_objectives(bounded) == ("val_acc", "latency_ms")
    assert reference_point(bounded, 4) == (0.25, 2.5)
    sized = make_settings({"second_objective": "params", "max_params": 100_000})
    assert front_objectives(sized) == ("val_acc", "n_params")
    assert reference_point(sized, 10) == (0.1, 100_000.0)
