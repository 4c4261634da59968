"""How a round of the outbox's writes becomes MLflow calls.

A run's metrics and tags in a round (those of its end too) become one `log_batch`; a trial's run
is created once, after looking it up by its trial id under the search's parent (a creation whose
answer was lost, a timeout or a killed driver, may have made it); a trial's best checkpoint is
uploaded once per round. A write MLflow refuses as invalid (HTTP 4xx) is set aside, named in
`rejected`, so that it cannot block the rest forever.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from searcher.tracking.tags import trial_filter

# below MLflow's per-log_batch limits (1000 metrics, 100 params, 100 tags)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 900, 90, 90


class Sender:
    """The MLflow calls for the writes of one search, under its parent run."""

    def __init__(self, tracking_uri: str, parent_run_id: str,
                 on_created: Callable[[str, str], None] = lambda trial, run: None):
        self.client = MlflowClient(tracking_uri)
        self.parent_run_id, self.on_created = parent_run_id, on_created
        self.run_ids: dict[str, str] = {}  # Tune trial id -> its MLflow run
        self.rejected: list[str] = []  # writes MLflow refused as invalid, or whose files are gone
        self._parent: Any = None

    def round(self, ops: list[dict[str, Any]]) -> tuple[list[int], Exception | None]:
        """Send a round of writes, in order, until one fails; returns the writes done with (sent,
        or refused as invalid and set aside in `rejected`) and the failure that stopped it, if
        the store is unreachable."""
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
                return done, None
            return done, exc
        return done, None

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
