"""MLflow writes off Tune's loop: a thread sends the durable outbox's writes, batched.

Tune runs callbacks inline on its control loop, and a trial waits in `tune.report` until the
driver has taken its result; one `log_batch` over HTTP costs ~50 ms. So the trial logger only
describes each write as data (a dict) and hands it to `Writer.put`, which appends it to the
outbox (`searcher.tracking.outbox`: one JSON line, tens of microseconds; or one committed row in the study's
database, about a millisecond) and wakes the writer thread. The
thread sends what has piled up in batches: a run's metrics and tags in a round (those of its end
too) become one `log_batch`, a trial's run is created once and its best checkpoint uploaded once
per batch.

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
  long outage is the disk, at ~0.5 kB per result;
- a full disk raises nothing in Tune's callback: the write is kept in memory and `full` says
  what is wrong, for the trial logger to stop the search, resumable, once space is freed;
- the journal is emptied whenever everything in it was accepted, so it stays small.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from searcher.tracking.outbox import CHUNK, Outbox, replayable
from searcher.tracking.tags import trial_filter

RETRY_AFTER_S = 15.0  # how long the thread waits before trying an unreachable store again
BATCH = 500  # writes taken per round; a round sends one log_batch per run at most
MAX_IN_MEMORY = 20_000  # writes held in memory; more wait in the outbox's journal only
# below MLflow's per-log_batch limits (1000 metrics, 100 params, 100 tags)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 900, 90, 90


class Writer:
    """Sends the outbox's writes to the tracking store from a thread of its own."""

    def __init__(self, tracking_uri: str, parent_run_id: str, outbox: Outbox,
                 on_created: Callable[[str, str], None] = lambda trial, run: None):
        self.client = MlflowClient(tracking_uri)
        self.parent_run_id, self.outbox, self.on_created = parent_run_id, outbox, on_created
        self.run_ids: dict[str, str] = {}  # Tune trial id -> its MLflow run
        self.rejected: list[str] = []  # writes MLflow refused as invalid, or whose files are gone
        self.failing_since: float | None = None
        self.sent = 0  # writes accepted, for the benchmark
        self._queue: deque[dict[str, Any]] = deque()
        self._spilled = False  # writes past MAX_IN_MEMORY wait in the journal only
        self._queued_upto = outbox.last  # the journal's writes past this one wait there only
        self._busy = False  # a round is in flight
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._stop = False
        self._parent: Any = None
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
        groups: dict[str, _Group] = {}  # per trial: metrics and tags waiting for one log_batch
        done: list[int] = []
        trying: list[dict[str, Any]] = []  # the writes of the call in flight
        try:
            for i, op in enumerate(ops):
                trial, kind = op["trial"], op["op"]
                group = groups.setdefault(trial, _Group())
                if kind in ("metrics", "tags") and trial in self.run_ids:
                    group.add(op)
                    if group.full():
                        trying = group.ops
                        done += self._flush(trial, group)
                    continue
                if kind == "create":
                    trying = [op]
                    if trial not in self.run_ids:  # else retried or replayed: the run exists
                        self._create(op)
                    # Its parameters ride in the trial's first log_batch, until which the write
                    # is not done: a round that fails after the run was made sends them again.
                    group.add(op)
                    if group.full():
                        trying = group.ops
                        done += self._flush(trial, group)
                    continue
                if kind == "checkpoint" and any(o["op"] == "checkpoint" and o["trial"] == trial
                                                for o in ops[i + 1:]):
                    done.append(op["seq"])  # a better checkpoint of this trial follows
                    continue
                if kind == "close" and trial in self.run_ids and not group.full():
                    # Its metrics and tags ride in the trial's log_batch of this round: a
                    # request fewer per trial, most of which end after an epoch or two.
                    group.add(op)
                    trying = group.ops
                    done += [q for q in self._flush(trial, group) if q != op["seq"]]
                    trying = [op]
                    self.client.set_terminated(self.run_ids[trial], op["status"])
                    done.append(op["seq"])
                    continue
                if kind != "checkpoint":  # an upload need not wait for the trial's metrics
                    trying = group.ops
                    done += self._flush(trial, group)
                trying = [op]
                self._one(op)
                done.append(op["seq"])
            for trial, group in groups.items():
                trying = group.ops
                done += self._flush(trial, group)
        except Exception as exc:
            if _rejected(exc):  # set aside, named in unlogged; the rest goes on next round
                done += self._isolate(trying, exc)
            elif self.failing_since is None:
                self.failing_since = time.time()
                print(f"[searcher] MLflow unreachable ({type(exc).__name__}); training goes on, "
                      f"updates are kept in the outbox and retried", flush=True)
        else:
            self.failing_since = None
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

    def _isolate(self, ops: list[dict[str, Any]], exc: Exception) -> list[int]:
        """One call with several writes was refused: send them one by one, and set aside only
        the ones refused alone. Returns those done with (sent or set aside)."""
        if len(ops) == 1:
            self.rejected.append(f"{ops[0]['what']} (rejected: {str(exc).splitlines()[0][:200]})")
            return [ops[0]["seq"]]
        done = []
        for op in list(ops):
            group = _Group()
            group.add(op)
            try:
                if op["op"] == "close":  # its metrics and tags, then its end
                    self._one(op)
                    done.append(op["seq"])
                else:
                    done += self._flush(op["trial"], group)
            except Exception as again:
                if not _rejected(again):
                    break  # an outage after all: the rest waits for the next round
                done += self._isolate([op], again)
        return done

    def _flush(self, trial: str, group: "_Group") -> list[int]:
        if not group.ops:
            return []
        self.client.log_batch(self.run_ids[trial], metrics=group.metrics, params=group.params,
                              tags=group.tags)
        seqs = [op["seq"] for op in group.ops]
        group.__init__()
        return seqs

    def _create(self, op: dict[str, Any]) -> None:
        """A trial's run, with its tags and the parent's datasets (its parameters go with its
        first log_batch)."""
        if self._parent is None:
            self._parent = self.client.get_run(self.parent_run_id)
        run_id = self._made(op["trial"])
        if run_id is None:
            run_id = self.client.create_run(self._parent.info.experiment_id, tags=op["tags"],
                                            run_name=op["name"]).info.run_id
        self.run_ids[op["trial"]] = run_id
        self.on_created(op["trial"], run_id)
        # The parent's datasets (digests computed once, by the driver) are the trial's too.
        if self._parent.inputs and self._parent.inputs.dataset_inputs:
            self.client.log_inputs(run_id, datasets=self._parent.inputs.dataset_inputs)

    def _made(self, trial: str) -> str | None:
        """The run of `trial` under this search's parent if one exists: a creation whose answer
        was lost (a timeout, a driver killed) may have been made; it is not made again."""
        runs = self.client.search_runs(
            [self._parent.info.experiment_id],
            trial_filter(self.parent_run_id, trial), order_by=["attributes.start_time ASC"],
            max_results=1)
        return runs[0].info.run_id if runs else None

    def _one(self, op: dict[str, Any]) -> None:
        trial, kind = op["trial"], op["op"]
        if kind in ("metrics", "tags"):  # only if its run is unknown: a store that lost it
            raise KeyError(f"no MLflow run for trial {trial}")
        elif kind == "checkpoint":
            self._upload(self.run_ids[trial], self.outbox.source(op), op["what"])
        elif kind == "close":
            run_id = self.run_ids[trial]
            self.client.log_batch(run_id, metrics=[Metric(*m) for m in op["metrics"]],
                                  tags=[RunTag(k, v) for k, v in op["tags"].items()])
            self.client.set_terminated(run_id, op["status"])
        else:
            raise ValueError(f"unknown MLflow write {kind!r}")

    def _upload(self, run_id: str, uri: str, what: str) -> None:
        from pyarrow.fs import FileType
        from ray import tune
        checkpoint = tune.Checkpoint(uri)
        if checkpoint.filesystem.get_file_info(checkpoint.path).type == FileType.NotFound:
            # Tune keeps a trial's best few and its latest; this one was dropped before it went
            # out (a remote storage: a local one is staged as links first).
            self.rejected.append(f"{what} (gone from storage before MLflow took it)")
            return
        with checkpoint.as_directory() as directory:
            if not any(p.is_file() for p in Path(directory).rglob("*")):
                # deleted under us: log_artifacts would upload nothing and say nothing
                self.rejected.append(f"{what} (gone from storage before MLflow took it)")
                return
            self.client.log_artifacts(run_id, directory, "checkpoint")


class _Group:
    """The metrics and tags of one run's writes in a round, for one log_batch."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        self.metrics: list[Metric] = []
        self.params: list[Param] = []
        self.tags: list[RunTag] = []

    def add(self, op: dict[str, Any]) -> None:
        self.ops.append(op)
        self.metrics += [Metric(*m) for m in op.get("metrics", ())]
        self.params += [Param(k, v) for k, v in op.get("params", ())]
        if op["op"] != "create":  # a create's tags went with its run
            self.tags += [RunTag(k, v) for k, v in op.get("tags", {}).items()]

    def full(self) -> bool:
        return (len(self.metrics) >= MAX_METRICS or len(self.tags) >= MAX_TAGS
                or len(self.params) >= MAX_PARAMS)


def _rejected(exc: Exception) -> bool:
    """MLflow refused the write itself (a bad value, a run it does not have): retrying cannot
    help."""
    if isinstance(exc, KeyError):  # the trial's run was never created (its creation rejected)
        return True
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return 400 <= status < 500 and status not in (408, 429)
    return False
