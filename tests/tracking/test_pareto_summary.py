"""The search's Pareto front as the parent run shows it (searcher.tracking.pareto): the summary
from hand-made trial records (no Ray), and what a real local MLflow store holds once logged."""
from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from searcher.spec.settings import Settings
from searcher.tracking import store as tracking
from searcher.tracking.leaderboard import build_leaderboard, format_leaderboard
from searcher.tracking.pareto import format_front, front_line, front_summary, log_front
from searcher.tracking.readback import TrialRecord


def record(trial: str, acc: float | None, latency: float | None, n_params: int = 10_000,
           baseline: str | None = None) -> TrialRecord:
    speed = {} if latency is None else {"latency_ms": latency, "latency_p95_ms": latency * 1.2,
                                        "throughput_ips": 1000 / latency}
    return TrialRecord(trial, f"run-{trial}", {}, baseline, best=acc, n_params=n_params,
                       mmacs=n_params / 1000, speed=speed, outcome="completed")


# val_acc against latency_ms, reference (0.1, 20): chance on 10 classes and max_latency_ms.
RECORDS = [
    record("t1", 0.60, 2.0),
    record("t2", 0.70, 5.0),
    record("t3", 0.65, 6.0),                     # dominated by t2
    record("t4", 0.75, 9.0, baseline="wide"),
    record("t5", 0.55, 2.0),                     # ties t1's latency, worse: dominated by t1
    record("t6", None, 50.0),                    # too slow: infeasible, timed but never scored
    record("t7", 0.80, None, n_params=900_000),  # an earlier search's baseline: never timed here
    record("t8", 0.05, 1.0),                     # the fastest, but below chance: on the front,
]                                                # outside the reference
SETTINGS = Settings(max_latency_ms=20.0)


def test_front_of_metric_against_latency():
    summary = front_summary(RECORDS, SETTINGS, num_classes=10)
    assert summary["objectives"] == ["val_acc", "latency_ms"]
    assert summary["directions"] == ["max", "min"]
    assert summary["reference"] == [pytest.approx(0.1), 20.0]
    # Only trials with both a metric value and a latency are points.
    assert [p["trial"] for p in summary["points"]] == ["t1", "t2", "t3", "t4", "t5", "t8"]
    assert summary["front"] == ["t8", "t1", "t2", "t4"]  # by latency, fastest first
    ranks = {p["trial"]: (p["front_rank"], p["on_front"]) for p in summary["points"]}
    assert ranks == {"t1": (0, True), "t2": (0, True), "t3": (1, False), "t4": (0, True),
                     "t5": (1, False), "t8": (0, True)}
    # By latency strips: [9, 20] won by t4 (0.75), [5, 9] by t2 (0.70), [2, 5] by t1 (0.60),
    # each measured above chance (0.1); t8 is below chance and adds nothing.
    assert summary["hypervolume"] == pytest.approx(0.65 * 11 + 0.60 * 4 + 0.50 * 3)
    assert summary["bounds"] == {"max_latency_ms": 20.0, "latency_batch": 1,
                                 "max_params": 5_000_000, "max_mmacs": 200.0}
    t4 = next(p for p in summary["points"] if p["trial"] == "t4")
    assert t4 == {"trial": "t4", "run_id": "run-t4", "baseline": "wide", "val_acc": 0.75,
                  "latency_ms": 9.0, "latency_p95_ms": pytest.approx(10.8),
                  "throughput_ips": pytest.approx(1000 / 9), "n_params": 10_000, "mmacs": 10.0,
                  "front_rank": 0, "on_front": True}
    assert front_line(summary) == ("Pareto front (val_acc vs latency_ms): 4 of 6 trials, "
                                   "hypervolume 11.05 (reference 0.1, 20 ms)")
    table = format_front(summary).splitlines()
    assert [line.split()[0] for line in table[4:]] == ["t8", "t1", "t2", "t4*"]


def test_front_of_a_loss_against_parameters():
    # The learnt baseline, never timed, counts here: the front needs its parameters only.
    settings = Settings(metric="val_loss", second_objective="params")
    records = [record("a", 1.2, 3.0, n_params=1_000), record("b", 0.9, None, n_params=50_000),
               record("c", 1.0, 1.0, n_params=60_000), record("d", 1.5, 1.0, n_params=1_000)]
    summary = front_summary(records, settings, num_classes=10)
    assert summary["objectives"] == ["val_loss", "n_params"]
    assert summary["directions"] == ["min", "min"]
    assert summary["reference"] == [pytest.approx(math.log(10)), 5_000_000.0]
    assert summary["front"] == ["a", "b"]  # a beats d (a tie in parameters), b beats c
    assert summary["hypervolume"] == pytest.approx(
        (math.log(10) - 1.2) * (50_000 - 1_000) + (math.log(10) - 0.9) * (5_000_000 - 50_000))


def test_no_points_no_front():
    summary = front_summary([record("x", None, 4.0), record("y", 0.5, None)], SETTINGS, 10)
    assert summary["points"] == [] and summary["front"] == [] and summary["hypervolume"] == 0.0
    assert front_line(summary) == "Pareto front (val_acc vs latency_ms): no trial has both"


@pytest.mark.slow  # a real MLflow store (its schema takes seconds)
def test_the_front_is_logged_to_the_parent_run(tracking_uri, tmp_path):
    client = tracking.connect(tracking_uri)
    run_id = client.create_run(client.create_experiment("front")).info.run_id
    summary = front_summary(RECORDS, SETTINGS, 10)
    log_front(client, run_id, summary)
    _assert_logged(client, run_id, summary, tmp_path)


@pytest.mark.slow
def test_finish_search_run_logs_the_front_and_marks_the_leaderboard(tracking_uri, tmp_path):
    client = tracking.connect(tracking_uri)
    run_id = client.create_run(client.create_experiment("front")).info.run_id
    summary = front_summary(RECORDS, SETTINGS, 10)
    rows = build_leaderboard(RECORDS, "val_acc", "max", summary["front"])
    tracking.finish_search_run(client, run_id, rows, format_leaderboard(rows, "val_acc"),
                               optuna.create_study(direction="maximize"), "val_acc", 1.0,
                               front=summary)
    _assert_logged(client, run_id, summary, tmp_path)
    board = json.loads(Path(client.download_artifacts(run_id, "leaderboard.json",
                                                      str(tmp_path))).read_text())
    assert {r["trial"] for r in board if r["front"]} == {"t1", "t2", "t4", "t8"}
    assert client.get_run(run_id).info.status == "FINISHED"


def _assert_logged(client: MlflowClient, run_id: str, summary: dict, tmp_path) -> None:
    paths = {a.path for a in client.list_artifacts(run_id)}
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"pareto.json", "pareto.txt"} <= paths
    assert "plots/pareto.png" in plots
    png = client.download_artifacts(run_id, "plots/pareto.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logged = json.loads(Path(client.download_artifacts(run_id, "pareto.json",
                                                       str(tmp_path))).read_text())
    assert logged["front"] == ["t8", "t1", "t2", "t4"]
    assert logged["hypervolume"] == pytest.approx(summary["hypervolume"])
    text = Path(client.download_artifacts(run_id, "pareto.txt", str(tmp_path))).read_text()
    assert text.startswith(front_line(summary))
    metrics = client.get_run(run_id).data.metrics
    assert metrics["hypervolume"] == pytest.approx(11.05)
    assert metrics["front_size"] == 4
