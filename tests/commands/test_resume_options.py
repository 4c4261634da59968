"""What `--resume` may change: the limits, and where things are; every other option that would
do nothing on a resumed search (Tune restores what it saved when the search began) is refused in
one line, before anything starts."""
import json

import pytest
from conftest import free_port
from test_cli import _recorded_search, _runs, run

from searcher.commands.run import check_resume_limits, check_resume_overrides
from searcher.errors import UserError

pytestmark = pytest.mark.slow  # one case runs the command as a process

FIXED = [("epochs", 3), ("sampler", "random"), ("second_objective", "params"),
         ("warm_start", "latest"), ("cpus_per_trial", 2.0), ("gpus_per_trial", 0.5),
         ("max_concurrent_trials", 1), ("max_params", 1000), ("max_latency_ms", 2.0),
         ("latency_batch", 8), ("experiment", "elsewhere")]


@pytest.mark.parametrize("name, value", FIXED)
def test_an_option_a_resume_cannot_honour_is_refused_in_one_line(tmp_path, tiny_cifar, name,
                                                                 value):
    _, settings = _recorded_search(tmp_path, tiny_cifar)
    with pytest.raises(UserError) as refused:
        check_resume_overrides(settings.to_dict(), {name: value})
    line = str(refused.value)
    assert "\n" not in line and f"--{name.replace('_', '-')}" in line, line
    assert f"{name}={getattr(settings, name)}" in line, line
    check_resume_overrides(settings.to_dict(), {name: getattr(settings, name)})  # the same: fine


def test_the_command_refuses_another_epochs_before_anything_starts(tmp_path, tiny_cifar):
    folder, _ = _recorded_search(tmp_path, tiny_cifar)
    before = (folder / "searcher_search.json").read_text()
    out = run([str(tmp_path / "space.py"), "--resume", "--epochs", "3", "--address",
               f"127.0.0.1:{free_port()}"], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "--epochs 3" in lines[0] and "epochs=8" in lines[0], lines[0]
    assert (folder / "searcher_search.json").read_text() == before
    assert not (tmp_path / "m.db").exists() or _runs(tmp_path / "m.db") == 0


def test_the_limits_may_change_on_a_search_that_keeps_its_own(tmp_path, tiny_cifar):
    folder, settings = _recorded_search(tmp_path, tiny_cifar)
    record = {**json.loads((folder / "searcher_search.json").read_text()), "own_limits": True}
    changed = {"num_samples": 40, "time_budget_s": 60.0}
    check_resume_overrides(settings.to_dict(), changed)
    check_resume_limits(record, changed)


@pytest.mark.parametrize("option, value", [("num_samples", 40), ("time_budget_s", 60.0)])
@pytest.mark.parametrize("how", ["finished", "started by an earlier searcher"])
def test_a_limit_that_cannot_apply_is_refused_in_one_line(tmp_path, tiny_cifar, option, value,
                                                          how):
    folder, _ = _recorded_search(tmp_path, tiny_cifar)
    record = json.loads((folder / "searcher_search.json").read_text())
    record = ({**record, "own_limits": True, "finished": True} if how == "finished" else record)
    with pytest.raises(UserError) as refused:
        check_resume_limits(record, {option: value})
    line = str(refused.value)
    flag = "--time-budget" if option == "time_budget_s" else "--num-samples"
    assert "\n" not in line and flag in line and how.split()[0] in line, line
    check_resume_limits(record, {option: record["settings"][option]})  # the same: fine
