"""A search stops, resumable, while its disk still has room to save where it stands.

Tune writes its experiment state in place: on a full disk that write fails half-way and the
search could no longer resume. So the driver watches the free space where the search keeps its
state (its outbox, its study journal, beside Tune's when the storage is a file system) and stops
the search, as a Ctrl-C does, once less than a margin is left; it refuses to start or resume
below it.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from searcher.errors import UserError

MIN_FREE_ENV = "SEARCHER_MIN_FREE_MB"
# Tune's experiment state and a search's staged checkpoints take a few MB: many times that.
MIN_FREE_MB = 256.0
CHECK_EVERY_S = 1.0  # a statvfs is microseconds, but Tune's loop calls this for every write


def min_free_mb() -> float:
    """The margin: $SEARCHER_MIN_FREE_MB, else MIN_FREE_MB."""
    text = os.environ.get(MIN_FREE_ENV, "").strip()
    if not text:
        return MIN_FREE_MB
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise UserError(f"${MIN_FREE_ENV}={text!r}: must be a number of MB, 0 or more")
    return value


class FreeSpace:
    """Says, at most once a second, whether the disk of `folder` has less than the margin free."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.min_free_mb = min_free_mb()
        self._next = 0.0

    def short(self, now: float | None = None) -> str | None:
        """One line saying what is wrong, or None while there is room (or it was just checked)."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return None
        self._next = now + CHECK_EVERY_S
        folder = self.folder
        while not folder.exists() and folder != folder.parent:  # not made yet: where it will be
            folder = folder.parent
        try:
            free_mb = shutil.disk_usage(folder).free / 2**20
        except OSError:
            return None
        if free_mb >= self.min_free_mb:
            return None
        return (f"only {free_mb:.0f} MB free on the disk of {self.folder}, below the "
                f"{self.min_free_mb:.0f} MB a search keeps to save itself (${MIN_FREE_ENV}): "
                f"free space there and continue the search with --resume")
