"""The Optuna study's journal file, written without an fsync per write.

Optuna's `JournalFileBackend` fsyncs the file on every write, and a search writes about ten a
trial (its creation, each parameter, each epoch's value, its end), all on Tune's control loop,
where the fsyncs cost more than the writes themselves. On NFS, where a cluster keeps the search
folder, each fsync is a round trip too.

What the fsync bought: the journal surviving a crash of the machine's kernel or power. What a
search relies on is less: a driver killed (Ctrl-C, SIGKILL, a lost terminal) leaves every write in
the kernel, which puts it on disk, and `--resume` reads it back; the MLflow outbox is kept the same
way (`outbox.FileJournal`). A head that loses power may lose the journal's last seconds (Tune's own
snapshot lags by ~10 s too); a search that must outlive its head keeps the study in a database
(`--study-storage`), as the cluster configs do. The file format and the lock against other
writers are Optuna's own, so Optuna reads the file as ever. A write cut short leaves a torn last
line, which the journal cuts on open (`outbox.cut_torn_tail`): Optuna would read the next write
glued to it as a broken line and fail the study's next `ask()`.
"""
from __future__ import annotations

import json
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from searcher.tracking.outbox import cut_torn_tail


class FlushedJournalFile(JournalFileBackend):
    """Optuna's journal file; a write reaches the kernel (close), not the disk (no fsync)."""

    def __init__(self, file_path: str):
        self._journal_path = file_path
        self._journal_lock = JournalFileSymlinkLock(file_path)
        super().__init__(file_path, self._journal_lock)
        self._journal_lock.acquire()  # a writer holds it for its whole line: no line is torn now
        try:
            cut_torn_tail(file_path)
        finally:
            self._journal_lock.release()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self._journal_lock.acquire()
        try:
            with open(self._journal_path, "ab") as f:
                f.write(text.encode("utf-8"))
        finally:
            self._journal_lock.release()
