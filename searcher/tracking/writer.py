"""MLflow writes off Tune's loop: a thread sends the durable outbox's writes, batched.

Tune runs callbacks inline on its control loop, and a trial waits in `tune.report` until the
driver has taken its result; one `log_batch` is a request to the tracking server, long beside
a result's turn on the loop. So the trial logger only describes each write as data (a dict) and
hands it to `Writer.put`, which appends it to the outbox (`searcher.tracking.outbox`: one JSON
line, or one committed row in the study's database; either far cheaper than the request) and
wakes the writer thread. The thread sends what has piled up in batches: a run's metrics and tags
in a round (those of its end too) become one `log_batch`, a trial's run is created once and its
best checkpoint uploaded once per batch.

Why not MLflow's own async logging (`synchronous=False`, `mlflow.utils.async_logging`): its
queue is unbounded and in memory, a failed batch is logged and dropped, and it covers
metrics/params/tags only, not run creation, termination or artifacts. Here:
- nothing is lost in an outage: a failed write stays at the head of the queue, in order, and is
  retried every RETRY_AFTER_S; a write MLflow rejects as invalid (HTTP 4xx) is set aside, named
  in `unlogged`, instead of blocking the rest forever;
- nothing is lost with the driver: `--resume` replays the outbox (`replay`), skipping what
  MLflow already holds (a run per trial, an epoch per step);
- a trial has one run: before making it the writer looks it up by its trial id under the
  search's parent, since a creation whose answer was lost (a timeout, a killed driver) may
  have made it;
- memory is bounded: at most MAX_IN_MEMORY writes are held in memory; past that they wait in the
  journal only and are read back, a chunk at a time, once the thread caught up; a replay reads
  the journal a chunk at a time too. Tune's loop never waits on MLflow, in an outage either, nor
  on the reading of the journal, which is done outside the lock `put` takes; the bound on a
  long outage is the disk the journal grows on, a short JSON record per write;
- a full disk raises nothing in Tune's callback: the write is kept in memory and `full` says
  what is wrong, for the trial logger to stop the search, resumable, once space is freed;
- the journal is emptied whenever everything in it was accepted, so it stays small.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from searcher.tracking.outbox import CHUNK, Outbox, replayable
from searcher.tracking.sending import Sender

RETRY_AFTER_S = 15.0  # how long the thread waits before trying an unreachable store again
BATCH = 500  # writes taken per round; a round sends one log_batch per run at most
MAX_IN_MEMORY = 20_000  # writes held in memory; more wait in the outbox's journal only


class Writer(Sender):
    """Sends the outbox's writes to the tracking store from a thread of its own; how a round of
    writes becomes MLflow calls is `Sender`'s."""

    def __init__(self, tracking_uri: str, parent_run_id: str, outbox: Outbox,
                 on_created: Callable[[str, str], None] = lambda trial, run: None):
        super().__init__(tracking_uri, parent_run_id, on_created)
        self.outbox = outbox
        self.failing_since: float | None = None
        self.sent = 0  # writes accepted, for the benchmark
        self._queue: deque[dict[str, Any]] = deque()
        self._spilled = False  # writes past MAX_IN_MEMORY wait in the journal only
        self._queued_upto = outbox.last  # the journal's writes past this one wait there only
        self._busy = False  # a round is in flight
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------- Tune's side

    def put(self, op: dict[str, Any]) -> None:
        """Queue one write (a dict with "op", "trial", "what" and its data); never blocks on MLflow."""
        with self._lock:
            self.outbox.append(op)
            if len(self._queue) < MAX_IN_MEMORY and not self._spilled:
                self._queue.append(op)
                self._queued_upto = op["seq"]
            else:
                self._spilled = True
        self._wake.set()

    @property
    def full(self) -> str | None:
        """Why the outbox could not keep a write (a full disk), in one line; else None."""
        return self.outbox.full

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="searcher-mlflow-writer",
                                        daemon=True)
        self._thread.start()

    def drain(self, give_up_after_failure: bool = True) -> None:
        """Wait until every write is accepted; in an outage, after one more attempt, return."""
        retried = False
        while True:
            with self._lock:
                idle = not self._queue and not self._spilled and not self._busy
            if idle:
                return
            if self.failing_since is not None and give_up_after_failure:
                if retried:
                    return
                retried, self.failing_since = True, None
                self._retry_now = True
                self._wake.set()
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)
        self.outbox.close()

    def unsent(self) -> list[str]:
        if not self.outbox.durable:
            with self._lock:
                return [op["what"] for op in self._queue] + self.rejected
        return [op["what"] for chunk in self.outbox.chunks() for op in chunk] + self.rejected

    # ------------------------------------------------------------------------- the thread

    _retry_now = False

    def _loop(self) -> None:
        while not self._stop:
            with self._lock:
                refill = not self._queue and self._spilled
            if refill:
                self._refill()
            with self._lock:
                ops = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                self._busy = bool(ops)
            if not ops:
                with self._lock:
                    if not self._queue and not self._spilled:
                        self.outbox.clear()  # everything in the journal was accepted
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            left = self._send(ops)
            with self._lock:
                self._queue.extendleft(reversed(left))
                self._busy = False
            if left:
                self._wait_to_retry()

    def _refill(self) -> None:
        """Queue the next writes that wait in the journal only. The journal is read outside the
        lock: `put`, on Tune's loop, takes it, and a long backlog takes seconds to read. Only
        this thread takes writes off the queue, so it stays empty meanwhile."""
        with self._lock:
            after, upto = self._queued_upto, self.outbox.last
        chunk = next(self.outbox.chunks(MAX_IN_MEMORY, after, upto), [])
        chunk = self._replayable(chunk)
        with self._lock:
            self._queue.extend(chunk)
            self._queued_upto = chunk[-1]["seq"] if chunk else upto
            self._spilled = self._queued_upto != self.outbox.last  # put wrote more meanwhile

    _replaying: tuple[int, dict[str, str], dict[str, set[int]], set[str]] | None = None

    def _replayable(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`ops` less a killed driver's writes that MLflow holds already (see `replay`), those
        marked accepted."""
        if self._replaying is None or not ops or ops[0]["seq"] > self._replaying[0]:
            return ops
        upto, runs, logged, ended = self._replaying
        old = [op for op in ops if op["seq"] <= upto]
        keep = replayable(old, runs, logged, ended)
        kept = {op["seq"] for op in keep}
        with self._lock:
            self.outbox.ack([op["seq"] for op in old if op["seq"] not in kept])
        return keep + ops[len(old):]

    def _wait_to_retry(self) -> None:
        until = time.time() + RETRY_AFTER_S
        while time.time() < until and not self._stop and not self._retry_now:
            time.sleep(0.1)  # not the wake event: Tune's writes set it many times a second
        self._retry_now = False

    def replay(self, runs: dict[str, str], logged: dict[str, set[int]],
               ended: set[str]) -> list[dict[str, Any]]:
        """Send what a killed driver left in the outbox, in this thread, before Tune starts;
        `runs`, `logged` and `ended` say what MLflow holds already (see `replayable`). Returns
        the writes the store did not accept; they stay queued for the thread."""
        self.run_ids.update(runs)
        upto = self.outbox.last
        self._replaying = (upto, runs, logged, ended)
        left, done = [], 0
        for chunk in self.outbox.chunks(CHUNK, 0, upto):  # never the whole backlog at once
            keep = self._replayable(chunk)
            left, done = self._send(keep) if keep else [], chunk[-1]["seq"]
            if left:  # the store is down: the rest waits in the journal, for the thread
                break
        with self._lock:
            self._queue.extend(left)
            self._queued_upto = done if left else upto
            self._spilled = self._queued_upto != self.outbox.last
        return left

    def _send(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send a round of writes; returns those not accepted (the first failure and all after
        it, in order), having marked the rest as accepted in the outbox."""
        done, failure = self.round(ops)
        if failure is None:
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = time.time()
            print(f"[searcher] MLflow unreachable ({type(failure).__name__}); training goes on, "
                  f"updates are kept in the outbox and retried", flush=True)
        finished = set(done)
        with self._lock:
            self.outbox.ack(sorted(finished))
        # Only once the journal says so: a driver killed before the ack replays these writes on
        # --resume, and a checkpoint's upload needs its staged files again then.
        for op in ops:
            if op["seq"] in finished:
                self.outbox.release(op)
        self.sent += len(finished)
        return [op for op in ops if op["seq"] not in finished]
