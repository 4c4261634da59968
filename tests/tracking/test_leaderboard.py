"""The end-of-search leaderboard (searcher.tracking.leaderboard): best first, the Pareto front's
trials marked, each trial's latency beside its parameters."""
from __future__ import annotations

from searcher.tracking.leaderboard import FRONT_MARK, build_leaderboard, format_leaderboard
from searcher.tracking.readback import TrialRecord


def record(trial: str, acc: float | None, latency: float | None,
           baseline: str | None = None) -> TrialRecord:
    return TrialRecord(trial, f"run-{trial}", {"stages": 1, "filters": 16, "lr": 0.05}, baseline,
                       best=acc, epochs=3, n_params=12_345, mmacs=1.5,
                       speed={} if latency is None else {"latency_ms": latency},
                       outcome="completed" if acc is not None else "infeasible: too slow")


RECORDS = [record("slow", 0.72, 8.0), record("quick", 0.61, 1.5), record("lost", 0.58, 3.0),
           record("base", 0.66, 2.5, baseline="tutorial"), record("late", None, 90.0),
           record("earlier", 0.70, None)]
FRONT = ("slow", "quick", "base")  # what searcher.tracking.pareto finds on these (val_acc, ms)


def test_rows_carry_the_front_and_the_latency():
    rows = build_leaderboard(RECORDS, "val_acc", "max", FRONT)
    assert [r["trial"] for r in rows] == ["slow", "earlier", "base", "quick", "lost", "late"]
    assert [r["front"] for r in rows] == [True, False, True, True, False, False]
    assert [r["latency_ms"] for r in rows] == [8.0, None, 2.5, 1.5, 3.0, 90.0]
    # The keys the leaderboard had before the front keep their meaning.
    assert {"rank", "trial", "baseline", "val_acc", "epochs", "n_params", "mmacs", "outcome",
            "architecture", "training", "run_id"} <= set(rows[0])
    assert all(r["front"] is False for r in build_leaderboard(RECORDS, "val_acc", "max"))


def test_text_marks_the_front_and_shows_the_latency():
    lines = format_leaderboard(build_leaderboard(RECORDS, "val_acc", "max", FRONT),
                               "val_acc").splitlines()
    assert lines[0].split()[:7] == ["#", "trial", "val_acc", "epochs", "params", "lat_ms",
                                    "outcome"]
    # Each line: rank, the mark, the name (12 wide), then the columns the header names.
    marks = {line[6:18].strip(): line[4] for line in lines[2:]}
    cells = {line[6:18].strip(): line[18:].split()[:4] for line in lines[2:]}
    assert {name for name, mark in marks.items() if mark == FRONT_MARK} == {
        "slow", "quick", "base*"}
    assert cells["base*"] == ["0.6600", "3", "12,345", "2.50"]
    assert cells["earlier"] == ["0.7000", "3", "12,345", "-"]  # never timed here
    assert cells["late"] == ["-", "3", "12,345", "90.00"]  # timed, never scored
