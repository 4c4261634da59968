"""Every space file: its baselines and many sampled points build and run a forward pass."""
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from conftest import ROOT

from searcher.spec.params import split_params
from searcher.spec.space import SpaceError, load_space
from searcher.training.model import InfeasibleArchitecture, build_model, feasible_cost

SPACES = sorted((ROOT / "spaces").glob("*.py"))
SAMPLES = 60
RANDOM_SAMPLES = 300


def test_there_are_space_files():
    assert {p.name for p in SPACES} >= {"cifar10.py"}


@pytest.mark.slow
@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_sampled_points_build_and_give_finite_logits(path):
    space = load_space(path)
    s = space.settings
    num_classes = 10 if s.dataset == "cifar10" else 2
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    for name, params in space.baselines.items():
        study.enqueue_trial(params)
    built, infeasible = 0, 0
    for i in range(SAMPLES + len(space.baselines)):
        trial = study.ask()
        params = space.sample(trial)
        if i < len(space.baselines):
            assert space.baseline_of(params) == list(space.baselines)[i]
        arch, train = split_params(params, num_classes=num_classes, in_channels=3,
                                   image_size=s.image_size, epochs=s.epochs)
        try:
            cost = feasible_cost(arch, s.max_params, s.max_mmacs)
        except InfeasibleArchitecture:
            assert i >= len(space.baselines), "a baseline must be feasible"
            infeasible += 1
            study.tell(trial, 0.0)
            continue
        model = build_model(arch).eval()
        assert sum(p.numel() for p in model.parameters()) == cost.params
        with torch.no_grad():
            out = model(torch.randn(2, 3, s.image_size, s.image_size))
        assert out.shape == (2, num_classes)
        assert torch.isfinite(out).all(), params
        built += 1
        study.tell(trial, float(i % 7))
    assert built >= SAMPLES // 2, f"only {built} of {SAMPLES} sampled points were feasible"


@pytest.mark.slow
@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_random_proposals_are_rarely_infeasible(path):
    # Every infeasible proposal is a trial slot spent on nothing; a space should be shaped so
    # that even blind sampling seldom leaves its limits (measure() on meta costs milliseconds).
    space = load_space(path)
    s = space.settings
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    infeasible = []
    for _ in range(RANDOM_SAMPLES):
        trial = study.ask()
        params = space.sample(trial)
        arch, _ = split_params(params, num_classes=10, in_channels=3, image_size=s.image_size,
                               epochs=s.epochs)
        try:
            feasible_cost(arch, s.max_params, s.max_mmacs)
        except InfeasibleArchitecture as exc:
            infeasible.append(str(exc))
        study.tell(trial, 0.0)
    assert len(infeasible) <= RANDOM_SAMPLES // 10, infeasible[:5]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "myspace.py"
    path.write_text(body)
    return path


GOOD = textwrap.dedent("""
    def space(trial):
        trial.suggest_int("stages", 1, 2)
        trial.suggest_categorical("filters", [8, 16])
""")


def test_a_minimal_space_loads_with_default_settings(tmp_path):
    space = load_space(write(tmp_path, GOOD), {"epochs": 2})
    assert space.name == "myspace" and space.settings.epochs == 2
    assert space.sample(optuna.trial.FixedTrial({"stages": 1, "filters": 8})) == {"stages": 1, "filters": 8}


@pytest.mark.parametrize("body, words", [
    ("X = 1\n", "no `space(trial)` function"),
    (GOOD + "SETTINGS = {'epoch': 3}\n", "unknown setting 'epoch'"),
    (GOOD + "SETTINGS = {'epochs': -1}\n", "epochs=-1"),
    ("def space(trial):\n    trial.suggest_int('stages', 1, 2\n", "syntax error"),
    ("def space(trial):\n    trial.suggest_int('stages', 1, 2)\n    trial.suggest_int('filterz', 1, 2)\n",
     "unknown parameter 'filterz'"),
    ("def space(trial):\n    trial.suggest_int('stages', 1, 2)\n    return {'x': [1]}\n",
     "constants must be"),
    (GOOD + "BASELINES = {'b': {'stages': 1}}\n", "baseline 'b'"),
    (GOOD + "BASELINES = {'b': {'stages': 1, 'filters': 8, 'lr': 0.1}}\n", "'lr' is not a parameter"),
    (GOOD + "BASELINES = {'b': {'stages': 9, 'filters': 8}}\n", "baseline 'b'"),
    # A float where an int belongs is refused, never truncated (1.5 filters is no network).
    (GOOD + "    return {'dense_layers': 1.0, 'dense_units': 16}\n", "dense_layers=1.0: must be an int"),
    (GOOD + "    return {'dense_layers': 1, 'dense_units': 16.5}\n", "dense_units=16.5: must be an int"),
    (GOOD + "    return {'stage1.kernel': 3.0}\n", "stage1.kernel=3.0: must be an int"),
    (GOOD + "    return {'batch_size': 64.0}\n", "batch_size=64.0: must be an int"),
    ("def space(trial):\n    trial.suggest_int('stages', 1, 2)\n"
     "    trial.suggest_float('filters', 8, 32)\n", "filters="),
])
def test_bad_space_files_fail_with_the_file_named(tmp_path, body, words):
    path = write(tmp_path, body)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(path) in str(info.value) and words in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="no such space file"):
        load_space(tmp_path / "nope.py")


def test_space_function_pickles_by_its_text(tmp_path):
    import pickle
    space = load_space(write(tmp_path, GOOD))
    clone = pickle.loads(pickle.dumps(space.fn))
    params = space.sample(optuna.trial.FixedTrial({"stages": 2, "filters": 16}))
    assert clone(optuna.trial.FixedTrial({"stages": 2, "filters": 16})) is None
    assert params == {"stages": 2, "filters": 16}


def test_a_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    path = tmp_path / "latin1.py"
    path.write_bytes(("# Espace de recherche, r\u00e9seaux convolutifs\n" + GOOD).encode("latin-1"))
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}:1: not UTF-8") and "save the file as UTF-8" in str(info.value)
    assert "\n" not in str(info.value)
