"""The Pareto benchmark: its run end to end on tiny CIFAR-shaped data, and the figures it scores a
search with, on hand-made trial records."""
import json
import math

import pytest

from searcher.bench.__main__ import main
from searcher.bench.pareto_report import (
    best_under_budget,
    front_points,
    search_hypervolume,
    trained_points,
)
from searcher.tracking.readback import TrialRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(best, latency_ms, baseline=None, outcome="completed"):
    return TrialRecord(f"t{best}-{latency_ms}", None, {}, baseline, best=best,
                       speed={} if latency_ms is None else {"latency_ms": latency_ms},
                       outcome=outcome)


@pytest.mark.long
def test_pareto_bench_writes_the_figures_per_seed(local_ray, tiny_cifar, tmp_path):
    out = tmp_path / "p.json"
    assert main(["pareto", "--smoke", "--data-dir", str(tiny_cifar), "--seeds", "2",
                 "--budget", "8", "--keep", str(tmp_path / "kept"), "--json", str(out)]) == 0
    p = json.loads(out.read_text())["pareto"]
    assert p["seeds"] == [0, 1]
    assert p["bound_ms"] == 0.3 and p["budget_s"] == 8
    assert p["reference_point"] == [0.1, 0.3]  # chance accuracy on 10 classes, the bound
    for label in ("default", "random"):
        for key in ("hypervolume", "best_under_budget", "trials", "trained", "too_slow",
                    "infeasible"):
            assert len(p[key][label]) == 2, key
        assert all(isinstance(v, float) and v >= 0 for v in p["hypervolume"][label])
        assert all(v is None or 0.0 <= v <= 1.0 for v in p["best_under_budget"][label])
        assert label in p["mean_hypervolume"] and label in p["mean_best_under_budget"]
    assert p["samplers"] == {"default": "tpe", "random": "random"}
    for key in ("hypervolume_ratio", "best_under_budget_difference"):
        assert key in p
    assert len(p["runs"]) == 4
    for run in p["runs"]:
        # what was scored is what the search trained to an epoch or more, every point within
        # the bound; the rest of the nets it trained were stopped at their first look
        assert len(run["points"]) <= run["trained"] <= run["trials"]
        looked_only = run["ended"].get("stopped@0", 0) + run["ended"].get("budget@0", 0)
        assert run["trained"] - len(run["points"]) <= looked_only
        assert run["load"]["other_cores"] >= 0  # how busy the machine was beside it
        assert all(ms <= 0.3 for _, ms in run["points"])
        # (from the points as written, to 4 digits)
        assert run["hypervolume"] == pytest.approx(
            search_hypervolume([tuple(x) for x in run["points"]], (0.1, 0.3)), abs=1e-3)
    assert [(b["sampler"], b["seed"]) for b in p["busy"]] == [
        (r["sampler"], r["seed"]) for r in p["runs"] if r["load"]["busy"]]
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_best_under_budget_ignores_a_net_over_the_bound():
    records = [_record(0.9, 1.5),  # the most accurate, but over a 1 ms bound
               _record(0.6, 0.8), _record(0.5, 0.3),
               _record(0.95, 0.2, baseline="tutorial"),  # a baseline: not the sampler's find
               _record(None, 2.0, outcome="infeasible: too slow"),  # timed, never trained
               _record(0.7, None)]  # never timed (an older search): not on the plane
    assert best_under_budget(records, 1.0) == 0.6
    assert best_under_budget(records, 2.0) == 0.9
    assert math.isnan(best_under_budget(records, 0.1))  # nothing trained within it


def test_hypervolume_of_a_search_counts_its_sampled_nets_from_the_reference():
    records = [_record(0.6, 0.8), _record(0.5, 0.3), _record(0.4, 0.5),  # dominated
               _record(0.95, 0.2, baseline="tutorial"), _record(0.05, 0.1)]  # below chance
    points = trained_points(records)
    assert sorted(points) == [(0.05, 0.1), (0.4, 0.5), (0.5, 0.3), (0.6, 0.8)]
    assert front_points(points) == [(0.05, 0.1), (0.5, 0.3), (0.6, 0.8)]
    # from (0.1, 1.0): 0.4 x 0.7 for the 0.3 ms net, and 0.1 x 0.2 more for the 0.8 ms one
    assert search_hypervolume(points, (0.1, 1.0)) == pytest.approx(0.4 * 0.7 + 0.1 * 0.2)
    assert search_hypervolume([], (0.1, 1.0)) == 0.0


def test_a_one_objective_variant_is_summarised_beside_the_default_without_random():
    import argparse

    from searcher.bench.pareto import search_overrides
    from searcher.bench.pareto_report import ONE_OBJECTIVE, summarise

    args = argparse.Namespace(seeds=2, first_seed=0, budget=10.0, max_latency_ms=1.0,
                              epochs=1, grace_period=1, reduction_factor=2, space=None,
                              data_dir=None, smoke=True, train_images=10, val_images=10,
                              with_baselines=False, first_look=False)
    one = search_overrides(ONE_OBJECTIVE, 0, args, __import__("pathlib").Path("/tmp/x"))
    assert one["sampler"] == "tpe" and one["second_objective"] is None
    assert one["max_latency_ms"] == 1.0
    runs = [{"sampler": s, "seed": seed, "hypervolume": hv, "best_under_budget": 0.5,
             "trials": 3, "trained": 2, "too_slow": 1, "infeasible": 1,
             "reference_point": [0.1, 1.0], "settings": {}}
            for seed in (0, 1) for s, hv in (("tpe", 0.3), (ONE_OBJECTIVE, 0.2))]
    p = summarise(runs, args)
    assert p["hypervolume"] == {"default": [0.3, 0.3], "one_objective": [0.2, 0.2]}
    assert p["samplers"] == {"default": "tpe", "one_objective": ONE_OBJECTIVE}
    assert math.isnan(p["hypervolume_ratio"])  # no random run to divide by
