"""The progress display: counts, best and ETA from trial records, the line it draws, how often it
draws on a terminal and in a log, and a real search that shows it instead of a line per epoch."""
from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from conftest import SHARED_SAMPLES, resumable_space

from searcher.commands.run import main as run_main
from searcher.spec.settings import make_settings
from searcher.tracking.readback import TrialRecord
from searcher.tune.progress import WIDTH, Display, format_line, summarize

EPOCH_LINE = re.compile(r"^\[searcher\] trial \S+ epoch \d+/\d+: ")


class Search:
    """Trial events as the trial logger turns them into records: a start, epochs, an end."""

    def __init__(self) -> None:
        self.records: dict[str, TrialRecord] = {}

    def start(self, trial_id: str, baseline: str | None = None) -> TrialRecord:
        self.records[trial_id] = TrialRecord(trial_id, None, {}, baseline)
        return self.records[trial_id]

    def epoch(self, trial_id: str, value: float, mode: str = "max") -> None:
        rec = self.records[trial_id]
        rec.epochs += 1
        if rec.best is None or (value > rec.best if mode == "max" else value < rec.best):
            rec.best, rec.best_epoch = value, rec.epochs

    def end(self, trial_id: str, outcome: str, at: float = 0.0) -> None:
        rec = self.records[trial_id]
        rec.outcome, rec.finished_at = outcome, at


def tid(i: int) -> str:
    """A trial id as Tune gives one with a searcher of its own: 8 hex digits."""
    return f"3f2a{i:04x}"


def thirty_two_at_once(mode: str = "max") -> Search:
    """64 trials started, 32 of them still running; of the 32 ended, 20 ran every epoch, 9 were
    stopped early and 3 failed; the best value belongs to trial 17, a baseline."""
    search = Search()
    for i in range(64):
        search.start(tid(i), baseline="bn_cnn" if i == 17 else None)
        good = 0.5 + i / 1000 if mode == "max" else 1.0 - i / 1000
        search.epoch(tid(i), good - (0.3 if i != 17 else 0.0) * (1 if mode == "max" else -1))
    for i in range(20):
        search.end(tid(i), "completed")
    for i in range(20, 29):
        search.end(tid(i), "stopped early: at epoch 1")
    search.end(tid(29), "failed: CUDA out of memory")
    search.end(tid(30), "failed: TrainingDiverged: loss is nan")
    search.end(tid(31), "lost: in flight when the driver was killed")
    return search


def test_counts_best_and_eta_at_32_trials_at_once():
    settings = make_settings({"num_samples": 200, "time_budget_s": 3600.0, "epochs": 8})
    p = summarize(thirty_two_at_once().records.values(), settings, elapsed_s=725.0)
    assert (p.running, p.ended, p.completed, p.stopped, p.failed) == (32, 32, 20, 9, 3)
    assert p.best_trial == tid(17) + "*" and p.best == pytest.approx(0.517)
    # 32 trials ended in 725 s: the 168 left take about 3,800 s more, past the time budget,
    # which ends the search first
    assert p.eta_s == pytest.approx(3600 - 725)
    line = format_line(p, settings)
    assert len(line) <= WIDTH and line.startswith("[searcher] "), (len(line), line)
    assert "32/200 done (9 stopped, 3 failed), 32 running" in line
    assert "12m/1h" in line and "ETA 47m" in line and f"0.5170 ({tid(17)}*)" in line


def test_the_eta_comes_from_the_trials_left_when_they_end_before_the_time_budget():
    settings = make_settings({"num_samples": 64, "time_budget_s": 36000.0})
    p = summarize(thirty_two_at_once().records.values(), settings, elapsed_s=600.0)
    assert p.eta_s == pytest.approx(600.0 * 32 / 32)  # 32 left at the rate of the 32 ended
    # a resumed search counts its rate from the trials it ended itself
    resumed = summarize(thirty_two_at_once().records.values(), settings, elapsed_s=600.0,
                        ended_before=16)
    assert resumed.eta_s == pytest.approx(600.0 * 32 / 16)
    assert summarize([], settings, elapsed_s=5.0).eta_s == pytest.approx(36000.0 - 5.0)
    untimed = make_settings({"num_samples": 64})
    assert summarize([], untimed, elapsed_s=5.0).eta_s is None  # nothing ended: no rate yet
    assert "ETA ?" in format_line(summarize([], untimed, elapsed_s=5.0), untimed)


def test_the_best_of_a_metric_to_minimise_is_the_lowest():
    settings = make_settings({"metric": "val_loss", "num_samples": -1, "time_budget_s": 600.0})
    p = summarize(thirty_two_at_once("min").records.values(), settings, elapsed_s=30.0)
    assert p.best_trial == tid(17) + "*" and p.best == pytest.approx(1.0 - 0.017)
    line = format_line(p, settings)
    assert "32 done (9 stopped, 3 failed), 32 running" in line  # no trial budget: no "/N"
    assert "30s/10m" in line and len(line) <= WIDTH


def test_the_line_fits_however_large_the_counts():
    settings = make_settings({"num_samples": 99999, "time_budget_s": 360000.0,
                              "metric": "val_loss"})
    search = Search()
    for i in range(5000):
        search.start(f"{i:08x}")
        search.epoch(f"{i:08x}", 1.0 + i, "min")
        if i >= 32:
            search.end(f"{i:08x}", "failed: x" if i % 7 == 0 else "stopped early: at epoch 1")
    p = summarize(search.records.values(), settings, elapsed_s=99999.0)
    assert len(format_line(p, settings)) <= WIDTH
    assert len(format_line(p, settings, width=60)) <= 60
    ended = format_line(p, settings, final=True)
    assert "ETA" not in ended and len(ended) <= WIDTH


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_plain_line_every_30_s_and_one_at_the_end():
    settings = make_settings({"num_samples": 200})
    out, clock = io.StringIO(), Clock()
    display = Display(settings, out=out, clock=clock)
    records = thirty_two_at_once().records
    for step in range(1000):  # Tune's loop calls in several times a second
        clock.now = step * 0.1
        display.tick(records)
    display.say("[searcher] trial 3f2a001d done: failed: CUDA out of memory")
    display.close(records)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    status = [line for line in lines if "running" in line]
    assert len(status) == 4, lines  # at 30, 60 and 90 s, and the last one
    assert lines[-2].startswith("[searcher] trial 3f2a001d done")
    assert "ETA" not in lines[-1]


def test_the_rate_counts_the_trials_ended_since_the_display_began():
    settings = make_settings({"num_samples": 64})
    out, clock = io.StringIO(), Clock()
    display = Display(settings, out=out, clock=clock)
    records: dict[str, TrialRecord] = {}
    display.tick(records)  # Tune's first step: nothing has ended yet
    records.update(thirty_two_at_once().records)  # 32 end before the first line is due
    clock.now = 30.0
    made = [SimpleNamespace(status="PENDING")] * 2 + [SimpleNamespace(status="RUNNING")] * 32
    display.tick(records, made)  # Tune's trials: two made, waiting for a worker
    assert "30s, ETA 30s | 32/64 done (9 stopped, 3 failed), 32 running, 2 pending" in \
        out.getvalue().splitlines()[-1], out.getvalue()


def test_a_terminal_redraws_one_line_in_place_at_most_once_a_second(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    settings = make_settings({"num_samples": 200})
    out, clock = Terminal(), Clock()
    display = Display(settings, out=out, clock=clock)
    records = thirty_two_at_once().records
    for step in range(50):
        clock.now = step * 0.1
        display.tick(records)
    drawn = out.getvalue()
    assert "\n" not in drawn.split("\n", 1)[-1]  # past the header: no new lines, only redraws
    assert 4 <= drawn.count("\r") <= 6
    frame = drawn.split("\r")[-1]  # no tag: the line stays put as it is redrawn
    assert frame.startswith("4s, ETA ? | 32/200 done"), frame  # none ended since it began
    assert "best val_acc 0.5170" in frame and len(frame) - len("\x1b[K") < 100
    display.say("[searcher] trial 3f2a001d done: failed")  # clears the line, then goes on below
    assert out.getvalue().endswith("\r\x1b[K[searcher] trial 3f2a001d done: failed\n")
    display.close(records)
    assert out.getvalue().endswith("\n") and "running" in out.getvalue().splitlines()[-1]


# -- a real search ---------------------------------------------------------------------------


def _search(tmp_path, data, *extra: str) -> None:
    tmp_path.mkdir()
    space = tmp_path / "resumable.py"
    space.write_text(resumable_space(2, 2))
    assert run_main([str(space), "--data-dir", str(data), "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlflow.db'}", "--storage-path",
                     str(tmp_path / "ray"), *extra]) == 0


def test_a_search_shows_progress_and_no_line_per_epoch_unless_verbose(finished_search, local_ray,
                                                                        tiny_cifar, tmp_path,
                                                                        capsys):
    out = finished_search.output  # a search without --verbose
    assert not [line for line in out if EPOCH_LINE.match(line)], out
    done = f"{SHARED_SAMPLES}/{SHARED_SAMPLES} done"
    status = [line for line in out if re.match(rf"\[searcher\] \S+ \| {done}", line)]
    assert status, out  # the last state of the display
    assert "0 running" in status[-1] and "ETA" not in status[-1]
    assert not [line for line in out if " done: completed" in line]  # trial lines: --verbose

    _search(tmp_path / "verbose", tiny_cifar, "--verbose")
    out = capsys.readouterr().out.splitlines()
    epochs = [line for line in out if EPOCH_LINE.match(line)]
    assert len(epochs) == 2 * 2, out  # every epoch of both trials
    assert len([line for line in out if " done: completed" in line]) == 2
    assert [line for line in out if re.match(r"\[searcher\] \S+ \| 2/2 done", line)]


def test_trials_too_slow_for_the_bound_count_as_infeasible_not_failed():
    search = Search()
    for i in range(3):
        search.start(tid(i))
    search.epoch(tid(0), 0.5)
    search.end(tid(0), "completed")
    search.end(tid(1), "infeasible: median latency 2.1 ms at batch 1 on cpu is over max_latency_ms=1")
    search.end(tid(2), "failed: CUDA out of memory")
    settings = make_settings({"num_samples": 3, "epochs": 1})
    p = summarize(search.records.values(), settings, elapsed_s=10.0)
    assert (p.ended, p.completed, p.failed, p.infeasible) == (3, 1, 1, 1)
    assert "3/3 done (1 failed, 1 infeasible)" in format_line(p, settings, final=True)
