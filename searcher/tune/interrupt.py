"""Ctrl-C during a search: Tune stops it after one last save of its state, and the search must
then stay resumable.

Tune's own SIGINT handler makes `Tuner.fit()` return normally, as if the search had ended: the
search would close its running trials as cut by the budget and mark itself finished, and
`--resume` would find nothing to continue. `InterruptWatch`, a Tune callback, notes the signal
(SIGINT, or the SIGTERM of `ray job stop`; it wraps Tune's handler, which Tune installs before callbacks are set up), so the trial logger
leaves its running trials open and the search leaves its record unfinished. `stop` ends a search
the same way for a reason of the search's own (a full disk), which the driver ends with, or
for `searcher cancel`.
"""
from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ray import tune

_fired = False
_reason: str | None = None
_cancelled: str | None = None


def fired() -> bool:
    """Whether a SIGINT (or `stop`) stopped the search now running (or the last one)."""
    return _fired


def reason() -> str | None:
    """Why `stop` stopped the search, in one line; None after a SIGINT."""
    return _reason


def cancelled() -> str | None:
    """Who cancelled the search now running (`searcher cancel`), e.g. "cancelled by ann"."""
    return _cancelled


def stop(why: str, cancelled: bool = False) -> None:
    """Stop the search as a Ctrl-C does: Tune saves where every trial stands, the trials stay
    open and the search resumable. Call from a Tune callback; Tune's stop handler, which it
    installs for SIGUSR1 as well as SIGINT, is called directly, without its warning.
    `cancelled`: asked for (`searcher cancel`), so ended as a Ctrl-C is, not as an error."""
    global _fired, _reason, _cancelled
    if _fired:
        return
    tunes = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    if not callable(tunes):  # Tune runs off the main thread and installed no handler
        from searcher.errors import UserError
        raise UserError(why)
    _fired = True
    if cancelled:
        _cancelled = why
    else:
        _reason = why
    tune_log = logging.getLogger("ray.tune.tune")
    level = tune_log.level
    tune_log.setLevel(logging.ERROR)
    try:
        tunes(signal.SIGUSR1, None)
    finally:
        tune_log.setLevel(level)


class InterruptWatch(tune.Callback):
    def setup(self, **info: Any) -> None:
        global _fired, _reason, _cancelled
        _fired, _reason, _cancelled = False, None, None
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers live on the main thread only; Tune installs none either
        tunes = signal.getsignal(signal.SIGINT)

        def noted(signum: int, frame: Any) -> None:
            global _fired
            _fired = True
            if callable(tunes):
                tunes(signum, frame)  # Tune's: stop, save, and put back the handler before it
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, noted)
        # `ray job stop` (and a `kill`) sends SIGTERM, then SIGKILL 3 s later: the same stop,
        # so that what Tune saves in those seconds is saved as after a Ctrl-C.
        signal.signal(signal.SIGTERM, noted)
