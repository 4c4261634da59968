"""The benchmarks' command line: the quality benchmark's smoke run end to end, and the engine
benchmark still answering as it did before the benchmarks became a package."""
import json
import math
import subprocess
import sys

import pytest
from conftest import ROOT
from mlflow.tracking import MlflowClient

from searcher.bench import anytime
from searcher.bench.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.long
def test_quality_smoke_writes_the_figures(local_ray, tmp_path):
    """The smoke run with the space's baselines, then a warm-started run learning from it: the
    figures of both, the baselines' runs left out of them, and what each warm start learnt."""
    out = tmp_path / "q.json"
    assert main(["quality", "--smoke", "--with-baselines", "--keep", str(tmp_path / "kept"),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    q = result["quality"]
    seeds = q["seeds"]
    assert isinstance(seeds, int) and seeds >= 2
    assert q["budget_s"] > 0
    assert q["default"]["sampler"] == "tpe" and q["random"]["sampler"] == "random"
    for name in ("default", "random"):
        block = q[name]
        # a search that got no result in its few seconds (a busy machine) is null, never absent
        assert len(block["final_best"]) == seeds
        assert all(v is None or 0.0 <= v <= 1.0 for v in block["final_best"])
        assert len(block["trials"]) == len(block["infeasible"]) == seeds
        assert all(isinstance(n, int) and n >= 0 for n in block["trials"] + block["infeasible"])
        curve = q["curves"][name]
        points = len(q["curves"]["t_s"])
        assert len(curve["mean"]) == len(curve["min"]) == len(curve["max"]) == points
    fraction = q["time_to_random_best_fraction"]
    assert isinstance(fraction, (int, float)) and math.isfinite(fraction) and fraction >= 0
    assert len(q["runs"]) == 2 * seeds
    assert sum(r["trials"] for r in q["runs"]) > 0  # the searches really trained something
    for run in q["runs"]:  # the nets each trained, and how busy the machine was beside it
        assert 0 <= run["trained"] <= run["trials"]
        assert run["load"]["other_cores"] >= 0 and run["load"]["wall_s"] > 0
    assert q["busy"] == [{"sampler": r["sampler"], "seed": r["seed"],
                          "other_cores": r["load"]["other_cores"]}
                         for r in q["runs"] if r["load"]["busy"]]
    for key in ("date", "machine", "cpus", "torch", "ray", "optuna", "mlflow"):
        assert key in result
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    _baselines_are_not_counted(q, tmp_path / "kept")

    # A second run whose default sampler learns from the first run's kept searches, each from
    # the other seed's, against the first run's random figures.
    warm = tmp_path / "warm.json"
    assert main(["quality", "--smoke", "--with-baselines", "--warm-start", str(tmp_path / "kept"),
                 "--baseline-from", str(out), "--keep", str(tmp_path / "warm"),
                 "--json", str(warm)]) == 0
    w = json.loads(warm.read_text())["quality"]
    assert w["warm_start"]["from_seed"] == [1, 0]
    assert w["random"] == q["random"]  # random sampling ignores history: not run again
    for seed, source, learnt in zip((0, 1), (1, 0), w["warm_start"]["trials"]):
        measured = [r for r in _runs(tmp_path / "kept" / f"tpe-{source}", "trial")
                    if "val_acc" in r.data.metrics]
        assert learnt == len(measured) > 0  # every trial that measured something
        (parent,) = _runs(tmp_path / "warm" / f"tpe-{seed}", "search")
        assert parent.data.metrics["warm_start_trials"] == learnt


def _baselines_are_not_counted(q, kept):
    """With --with-baselines the space's baseline runs first in every search, for both samplers,
    and neither its score nor its epochs count in the figures."""
    assert q["settings"]["with_baselines"] is True
    for sampler, name in (("tpe", "default"), ("random", "random")):
        for i, seed in enumerate(q["seed_numbers"]):
            trials = _runs(kept / f"{sampler}-{seed}", "trial")
            baseline = [r for r in trials if r.data.tags.get("searcher.baseline") == "hand_made"]
            assert len(baseline) == 1  # ran first, for both samplers
            sampled = [r.data.metrics["best_val_acc"] for r in trials
                       if r.info.run_id != baseline[0].info.run_id
                       and "best_val_acc" in r.data.metrics]
            # the baseline's score is not counted (a busy machine may leave no sampled score)
            assert q[name]["final_best"][i] == (round(max(sampled), 4) if sampled else None)
            client = MlflowClient(f"sqlite:///{kept / f'{sampler}-{seed}' / 'mlflow.db'}")
            epochs = {r.info.run_id: sum(1 for m in client.get_metric_history(r.info.run_id,
                                                                              "val_acc")
                                         if m.step)  # a first look (step 0) is no epoch result
                      for r in trials}
            (run,) = [r for r in q["runs"] if r["sampler"] == sampler and r["seed"] == seed]
            assert run["epoch_results"] == sum(epochs.values()) - epochs[baseline[0].info.run_id]


def _runs(kept, role):
    """The MLflow runs of `role` ("search", "trial") in a search kept by the quality benchmark."""
    client = MlflowClient(f"sqlite:///{kept / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, f"tags.`searcher.role` = '{role}'")


def test_each_warm_started_search_learns_from_another_seeds_kept_search(tmp_path):
    from searcher.bench.quality_search import warm_source
    from searcher.errors import UserError
    for seed in (3, 4, 5):
        (tmp_path / f"tpe-{seed}").mkdir()
        (tmp_path / f"tpe-{seed}" / "mlflow.db").touch()
    (tmp_path / "random-6").mkdir()  # random's searches teach nothing: not a source
    (tmp_path / "random-6" / "mlflow.db").touch()
    assert {s: warm_source(tmp_path, s) for s in range(7)} == {0: 3, 1: 4, 2: 5, 3: 5, 4: 3,
                                                                5: 4, 6: 3}
    lone = tmp_path / "lone"
    (lone / "tpe-0").mkdir(parents=True)
    (lone / "tpe-0" / "mlflow.db").touch()
    assert warm_source(lone, 1) == 0
    with pytest.raises(UserError, match="no kept tpe search of another seed"):
        warm_source(lone, 0)


@pytest.mark.slow
def test_engine_options_without_a_subcommand():
    out = subprocess.run([sys.executable, "-m", "searcher.bench", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for option in ("--data-dir", "--images", "--trials", "--no-search", "--json"):
        assert option in out.stdout
    assert "quality" in out.stdout  # where the other benchmarks are


def test_unknown_subcommand_is_one_line(capsys):
    assert main(["qualty"]) == 2
    assert "unknown subcommand 'qualty'" in capsys.readouterr().err


def test_anytime_curves_and_time_to_reach():
    slow, fast = [(5.0, 0.3), (2.0, 0.2), (8.0, 0.25)], [(1.0, 0.4), (6.0, 0.6)]
    curve = anytime.best_so_far(slow, [0.0, 2.0, 4.0, 5.0, 10.0])
    assert math.isnan(curve[0]) and list(curve[1:]) == [0.2, 0.2, 0.3, 0.3]
    both = anytime.curves([slow, fast], [1.0, 2.0, 6.0])
    assert math.isnan(both.mean(0)[0])  # one seed has no result yet: no mean
    assert both.mean(0)[1:] == pytest.approx([0.3, 0.45])
    # the mean reaches 0.44 when the fast run gets 0.6 at 6 s: 60% of a 10 s budget
    assert anytime.time_to_reach([slow, fast], 0.44, 10.0) == 0.6
    assert anytime.time_to_reach([slow, fast], 0.9, 10.0) == anytime.NEVER
    assert anytime.time_to_reach([slow, fast], float("nan"), 10.0) == anytime.NEVER
    # random's final mean from a run where a seed's search got no result in its budget
    assert anytime.time_to_reach([slow, fast], None, 10.0) == anytime.NEVER


def test_scale_smoke_writes_the_figures(local_ray, tmp_path):
    out = tmp_path / "s.json"
    assert main(["scale", "--smoke", "--json", str(out)]) == 0
    sc = json.loads(out.read_text())["scale"]
    for key in ("results_per_s_on", "results_per_s_off", "overhead_ratio", "trials",
                "ask_ms_at_1000", "max_concurrent_trials_2s"):
        assert key in sc
    assert sc["trials"] == 8 and sc["results_per_s_on"] > 0 and sc["results_per_s_off"] > 0
    assert sc["overhead_ratio"] > 0 and sc["ask_ms_at_1000"] > 0
    assert sc["ask_ms_optuna_log_ndtr"] > 0  # the same proposals timed with Optuna's own
    assert isinstance(sc["max_concurrent_trials_2s"], int)
    on = next(r for r in sc["runs"] if r["logging"])
    assert on["errors"] == 0 and on["unlogged"] == 0  # every result reached the MLflow server
    assert on["callback_ms_per_result"] > 0
    # CPU by part: the server works only with logging on, the trials' processes always
    off = next(r for r in sc["runs"] if not r["logging"])
    assert on["cpu_s"]["mlflow_server"] > 0 and on["cpu_s"]["driver"] > 0
    assert off["cpu_s"]["mlflow_server"] < on["cpu_s"]["mlflow_server"]
    assert on["cpu_s"]["rest"] > 0
    assert sc["cores_for_goal"]["all"] == pytest.approx(
        sum(sc["cores_for_goal"][p] for p in ("driver", "mlflow_server", "rest")), abs=0.02)


def _quality_run(seeds, finals, means, grid=(0.0, 5.0, 10.0)):
    """A quality result as `quality.summarise` writes it, per sampler label: final bests per
    seed and the mean curve on `grid` (min and max set to the mean)."""
    q = {"seeds": len(seeds), "seed_numbers": seeds, "budget_s": grid[-1], "metric": "val_acc",
         "samplers": ["tpe", "random"], "curves": {"t_s": list(grid)}, "runs": [],
         "settings": {"epochs": 4, "data": "/somewhere"}}
    for label, sampler in (("default", "tpe"), ("random", "random")):
        q[label] = {"sampler": sampler, "final_best": finals[label], "trials": [3] * len(seeds),
                    "infeasible": [0] * len(seeds), "best_so_far_at": {"1.0": means[label][-1]}}
        q["curves"][label] = {k: means[label] for k in ("mean", "min", "max")}
    return {"date": "2026-11-30", "torch": "x", "quality": q}


def test_quality_runs_pool_into_the_figures_over_all_their_seeds():
    from searcher.bench.quality_pool import PoolError, pool
    a = _quality_run([0], {"default": [0.6], "random": [0.5]},
                     {"default": [None, 0.4, 0.6], "random": [None, 0.5, 0.5]})
    b = _quality_run([1], {"default": [0.8], "random": [0.7]},
                     {"default": [0.2, 0.8, 0.8], "random": [0.1, 0.3, 0.7]})
    a["quality"]["default"]["best_so_far_at"]["0.25"] = None  # seed 0 had no result by then
    b["quality"]["default"]["best_so_far_at"]["0.25"] = 0.2
    q = pool([a, b], ["a.json", "b.json"])["quality"]
    assert q["seeds"] == 2 and q["seed_numbers"] == [0, 1]
    assert math.isnan(q["default"]["best_so_far_at"]["0.25"])  # not every seed: no mean
    assert q["default"]["best_so_far_at"]["1.0"] == pytest.approx(0.7)
    assert q["default"]["final_best"] == [0.6, 0.8] and q["random"]["final_best_mean"] == 0.6
    # the pooled mean curve is NaN until every seed has a result, then the seeds' mean
    assert q["curves"]["default"]["mean"] == [None, 0.6, 0.7]
    assert q["curves"]["random"]["max"] == [None, 0.5, 0.7]
    # random's pooled final mean 0.6 is reached by the default's pooled mean at 5 s of 10
    assert q["time_to_random_best_fraction"] == 0.5
    with pytest.raises(PoolError, match="seed appears in more than one run"):
        pool([a, a], ["a.json", "a.json"])
    other = _quality_run([2], {"default": [0.1], "random": [0.1]},
                         {"default": [0.1] * 3, "random": [0.1] * 3})
    other["quality"]["settings"]["epochs"] = 8
    with pytest.raises(PoolError, match="settings differ.*epochs"):
        pool([a, other], ["a.json", "c.json"])
    warm = _quality_run([2], {"default": [0.7], "random": [0.1]},
                        {"default": [0.7] * 3, "random": [0.1] * 3})
    warm["quality"]["warm_start"] = {"kept": "kept", "from_seed": [0], "trials": [9], "best": [0.6]}
    with pytest.raises(PoolError, match="w.json: a warm-started run"):
        pool([a, warm], ["a.json", "w.json"])


def test_quality_baseline_from_an_earlier_run_stands_in_for_random(tmp_path):
    from searcher.bench import quality
    from searcher.bench.quality_pool import PoolError
    earlier = _quality_run([0, 1], {"default": [0.6, 0.8], "random": [0.5, 0.7]},
                           {"default": [None, 0.4, 0.7], "random": [None, 0.5, 0.6]})
    earlier["quality"]["settings"] = {"time_budget_s": 10.0, "epochs": 4, "grace_period": 1,
                                      "reduction_factor": 2, "train_images": 100,
                                      "val_images": 20, "metric": "val_acc", "smoke": False}
    earlier["quality"]["random"]["final_best_mean"] = 0.6
    earlier["quality"]["runs"] = [{"sampler": "random", "seed": 0}, {"sampler": "tpe", "seed": 0}]
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    argv = ["--data-dir", "x", "--seeds", "2", "--budget", "10", "--train-images", "100",
            "--val-images", "20", "--baseline-from", str(path)]
    args = quality.parse_args(argv)
    assert args.samplers == ["tpe"]  # random is not run again
    baseline = quality.earlier_baseline(args)
    runs = [{"sampler": "tpe", "seed": s, "final_best": best, "trials": 2, "infeasible": 0,
             "trained": 2, "events": [(t, best)], "settings": {"epochs": 4}}
            for s, (t, best) in enumerate([(2.0, 0.7), (4.0, 0.5)])]
    q = quality.summarise(runs, args, baseline)
    assert q["samplers"] == ["tpe", "random"] and q["baseline_from"] == str(path)
    assert q["random"]["final_best"] == [0.5, 0.7] and q["random"]["final_best_mean"] == 0.6
    assert q["curves"]["random"]["mean"] == [None, 0.5, 0.6]
    # the default's mean curve is 0.6 from 4 s, when both seeds have a result: 0.4 of 10 s
    assert q["time_to_random_best_fraction"] == 0.4
    assert [r["sampler"] for r in q["runs"]] == ["random", "tpe", "tpe"]
    with pytest.raises(PoolError, match=r"seeds \[0, 1\] are not this run's \[1, 2\]"):
        quality.earlier_baseline(quality.parse_args(argv + ["--first-seed", "1"]))
    with pytest.raises(PoolError, match="another task.*epochs"):
        quality.earlier_baseline(quality.parse_args(argv + ["--epochs", "8"]))
    with pytest.raises(PoolError, match=r"another task \(first_look differ"):
        quality.earlier_baseline(quality.parse_args(argv + ["--first-look"]))


def test_journal_bench_times_both_backends(tmp_path):
    out = tmp_path / "j.json"
    assert main(["journal", "--trials", "20", "--repeats", "1", "--dir", str(tmp_path),
                 "--json", str(out)]) == 0
    j = json.loads(out.read_text())["journal"]
    assert j["ms_per_trial"]["optuna_fsync"] > 0 and j["ms_per_trial"]["searcher_flushed"] > 0
    assert j["ratio"] == pytest.approx(
        j["ms_per_trial"]["searcher_flushed"] / j["ms_per_trial"]["optuna_fsync"], abs=0.002)
