"""Ctrl-C during a search: Tune stops it after one last save of its state, and the search must
then stay resumable.

Tune's own SIGINT handler makes `Tuner.fit()` return normally, as if the search had ended: the
search would close its running trials as cut by the budget and mark itself finished, and
`--resume` would find nothing to continue. `InterruptWatch`, a Tune callback, notes the signal
(it wraps Tune's handler, which Tune installs before callbacks are set up), so the trial logger
leaves its running trials open and the search leaves its record unfinished.
"""
from __future__ import annotations

import signal
import threading
from typing import Any

from ray import tune

_fired = False


def fired() -> bool:
    """Whether a SIGINT stopped the search now running (or the last one)."""
    return _fired


class InterruptWatch(tune.Callback):
    def setup(self, **info: Any) -> None:
        global _fired
        _fired = False
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
