"""The search's progress while it runs: one status line, not a line per epoch per trial.

    [searcher] 3m/4m, ETA 59s | 42/96 done (28 stopped), 32 running | best val_acc 0.5750 (12bc78ff)

Time used of the time budget, trials ended of `num_samples` (and how many ASHA or the budget
stopped early, how many failed), trials running (and made but not started), the best value so far
and its trial (as the leaderboard names it, * for a hand-made baseline), and when the search
should end. On a terminal the line, without its tag, is redrawn in place about once a second; in
a log (CI, `ray job submit`) a plain line is printed every 30 s, so a long search leaves a short
log. The per-epoch lines stay behind `--verbose`, and every epoch is in MLflow either way.

The counting (`summarize`) and the line (`format_line`) are plain functions of the trial logger's
records, testable without Ray. The trial logger drives the `Display` from Tune's loop, so a tick
must be cheap: it reads a clock and returns until a line is due.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO

from searcher.objective import better
from searcher.spec.settings import Settings
from searcher.tracking.readback import TrialRecord

WIDTH = 100  # the widest line drawn: a person reads it at a glance, a narrow terminal fits it
TTY_EVERY_S = 1.0  # in place on a terminal: often enough to look alive, rarely enough to read
LOG_EVERY_S = 30.0  # in a log: an hour's search leaves 120 lines


@dataclass(frozen=True)
class Progress:
    """Where a search stands: its trials by state, its best so far, its time."""
    elapsed_s: float
    running: int
    completed: int  # trained every epoch
    stopped: int  # stopped early, by ASHA or by the time budget
    failed: int  # failed, or lost with a killed driver
    best: float | None
    best_trial: str | None  # the trial's id, with * for a baseline (as in the leaderboard)
    eta_s: float | None  # None: no trial has ended yet to measure a rate by
    pending: int = 0  # made by Tune, waiting for a worker or for resources
    infeasible: int = 0  # found over a limit by the trial itself (too slow), never trained
    used_s: float | None = None  # of the time budget, earlier runs included; None: elapsed_s

    @property
    def ended(self) -> int:
        return self.completed + self.stopped + self.failed + self.infeasible


def summarize(records: Iterable[TrialRecord], settings: Settings, elapsed_s: float,
              ended_before: int = 0, pending: int = 0, used_s: float | None = None) -> Progress:
    """Count `records` (the trial logger's) `elapsed_s` into this run of the search, whose first
    `ended_before` ended trials ended before it (a resumed search): the rate counts from here.
    `pending`: the trials Tune has made that have not started (no record yet). `used_s`: the time
    the search has used of its budget, its earlier runs included (default `elapsed_s`)."""
    running = completed = stopped = failed = infeasible = 0
    best, best_trial = None, None
    for rec in records:
        if rec.finished_at is None:
            running += 1
        elif rec.outcome.startswith("completed"):
            completed += 1
        elif rec.outcome.startswith("stopped"):
            stopped += 1
        elif rec.outcome.startswith("infeasible"):
            infeasible += 1
        else:
            failed += 1
        if rec.best is not None and better(rec.best, best, settings.mode):
            best, best_trial = rec.best, rec.trial_id + ("*" if rec.baseline else "")
    ended = completed + stopped + failed + infeasible
    left = []
    if settings.time_budget_s:
        left.append(max(0.0, settings.time_budget_s - (elapsed_s if used_s is None else used_s)))
    if settings.num_samples > 0:
        to_go, here = max(0, settings.num_samples - ended), ended - ended_before
        if to_go == 0 or here > 0:  # the trials left, at the rate trials have ended so far
            left.append(elapsed_s * to_go / here if to_go else 0.0)
    return Progress(elapsed_s, running, completed, stopped, failed, best, best_trial,
                    min(left) if left else None, pending, infeasible, used_s)


def format_line(p: Progress, settings: Settings, width: int = WIDTH, final: bool = False,
                tag: bool = True) -> str:
    """The status line, at most `width` long: when the full one is wider, the metric's name goes
    first (the header line names it), then the [searcher] tag, then the end of the line. `tag`
    False: none at all (a line redrawn in place needs none, and a steady width)."""
    used = p.elapsed_s if p.used_s is None else p.used_s
    clock = _duration(used) + (f"/{_duration(settings.time_budget_s)}"
                               if settings.time_budget_s else "")
    budget = f"/{settings.num_samples}" if settings.num_samples > 0 else ""
    cut = [f"{n} {what}" for n, what in ((p.stopped, "stopped"), (p.failed, "failed"),
                                         (p.infeasible, "infeasible")) if n]
    trials = f"{p.ended}{budget} done" + (f" ({', '.join(cut)})" if cut else "") + \
        f", {p.running} running" + (f", {p.pending} pending" if p.pending else "")
    value = f"{p.best:.4f} ({p.best_trial})" if p.best is not None else "-"
    if not final:
        clock += ", ETA " + (_duration(p.eta_s) if p.eta_s is not None else "?")
    tags = ("[searcher] ", "[searcher] ", "") if tag else ("", "")
    for prefix, metric in zip(tags, (f" {settings.metric}", "", "")):
        line = f"{prefix}{clock} | {trials} | best{metric} {value}"
        if len(line) <= width:
            return line
    return line[:width - 3] + "..."


def _duration(seconds: float) -> str:
    """42s, 4m12s, 4m, 12m, 1h05m: seconds matter in the first minutes only (rounded down)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m" + (f"{s % 60:02d}s" if s % 60 else "")
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h" + (f"{s % 3600 // 60:02d}m" if s % 3600 >= 60 else "")


class Display:
    """Draws `format_line` on `out`: in place on a terminal, a plain line at intervals in a log."""

    def __init__(self, settings: Settings, out: TextIO | None = None, verbose: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 used: Callable[[], float | None] = lambda: None):
        """`used`: the time the search has used of its budget, earlier runs included (None:
        the time since this display began)."""
        self.settings, self.verbose, self._clock, self._used = settings, verbose, clock, used
        self.out = out or sys.stdout
        self.tty = self.out.isatty() and os.environ.get("TERM") != "dumb"
        self.every_s = TTY_EVERY_S if self.tty else LOG_EVERY_S
        self._start = clock()
        self._due = self._start if self.tty else self._start + self.every_s
        self._drawn = False  # a status line is on the terminal, with no newline after it
        self._ended_before: int | None = None  # ended before this run: a resumed search's
        how = "redrawn below" if self.tty else f"every {self.every_s:.0f} s"
        direction = "highest" if settings.mode == "max" else "lowest"
        self._write(f"[searcher] progress {how}: time used, trials done, best {settings.metric} "
                    f"({direction}) so far" + ("" if verbose else "; --verbose: a line per epoch")
                    + "\n")

    def tick(self, records: dict[str, TrialRecord], trials: Sequence[Any] = ()) -> None:
        """Draw, if a line is due; called on every step of Tune's loop with Tune's `trials`."""
        if self._ended_before is None:  # the first call, before this run ended any trial
            self._ended_before = _ended(records)
        now = self._clock()
        if now < self._due:
            return
        self._due = now + self.every_s
        self._draw(records, now, final=False, pending=sum(t.status == "PENDING" for t in trials))

    def say(self, line: str) -> None:
        """Print a line of its own (a trial's end, an epoch with --verbose) above the status."""
        self._write(("\r\x1b[K" if self._drawn else "") + line + "\n")
        self._drawn = False
        if self.tty:
            self._due = self._clock()  # drawn again below it at the next tick

    def close(self, records: dict[str, TrialRecord]) -> None:
        """The last state of the search, on a line of its own."""
        self._draw(records, self._clock(), final=True)
        self.end_line()

    def end_line(self) -> None:
        """End the status line, so what is printed next starts on a line of its own."""
        if self._drawn:
            self._write("\n")
            self._drawn = False

    def _draw(self, records: dict[str, TrialRecord], now: float, final: bool,
              pending: int = 0) -> None:
        if self._ended_before is None:
            self._ended_before = _ended(records)
        p = summarize(records.values(), self.settings, now - self._start, self._ended_before,
                      pending, self._used())
        if self.tty:  # one column short of the terminal: a full last column wraps on some
            width = min(WIDTH, shutil.get_terminal_size((WIDTH + 1, 24)).columns - 1)
            self._write("\r" + format_line(p, self.settings, width, final, tag=False) + "\x1b[K")
            self._drawn = True
        else:
            self._write(format_line(p, self.settings, final=final) + "\n")

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not stop the search
            self.out.write(text)
            self.out.flush()


def _ended(records: dict[str, TrialRecord]) -> int:
    return sum(1 for r in records.values() if r.finished_at is not None)


_SHOWN: Display | None = None


@contextlib.contextmanager
def showing(display: Display) -> Iterator[Display]:
    """Show the search's progress on `display` while the block runs.

    Held here, not by the trial logger: Tune restores the logger it pickled when the search
    began, so a resumed search shows its progress as this run asks (--verbose or not).
    """
    global _SHOWN
    _SHOWN = display
    try:
        yield display
    finally:
        _SHOWN = None
        display.end_line()


def tick(records: dict[str, TrialRecord], trials: Sequence[Any] = ()) -> None:
    if _SHOWN is not None:
        _SHOWN.tick(records, trials)


def say(line: str) -> None:
    """Print `line` above the status line, or plainly when no display is showing."""
    if _SHOWN is not None:
        _SHOWN.say(line)
    else:
        print(line, flush=True)


def verbose() -> bool:
    """Whether to print a line per epoch and per trial: with --verbose, or with no display to
    replace them (the trial logger used on its own)."""
    return _SHOWN is None or _SHOWN.verbose
