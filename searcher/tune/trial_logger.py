"""The Tune callback that writes one MLflow child run per trial, from the driver.

Trials never talk to MLflow: the driver logs their parameters, per-epoch metrics, best checkpoint
and outcome, so a trial's history lives in exactly one run (also across restarts and resumed
searches). The callback only describes each write; `mlflow_writer` sends them from a thread of
its own, batched, through the durable `outbox`, so Tune's loop (and the trials waiting on it)
never waits on the tracking server, and an unreachable server, or a driver killed meanwhile,
costs nothing but a list of what it never accepted.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_USER
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from ray import tune

from searcher.errors import UserError
from searcher.objective import better
from searcher.redaction import redact
from searcher.spec.space import Space
from searcher.tracking.leaderboard import trial_name
from searcher.tracking.outbox import open_outbox
from searcher.tracking.readback import TrialRecord, trial_records
from searcher.tracking.store import run_user
from searcher.tracking.tags import (
    BASELINE_TAG,
    CPUS_TAG,
    EPOCH_METRICS,
    FIRST_LOOK,
    SPEED_METRICS,
    GPUS_TAG,
    NODES_TAG,
    OUTCOME_DETAIL_TAG,
    OUTCOME_TAG,
    PARENT_TAG,
    RESUMED_TAG,
    ROLE_TAG,
    TRIAL_ID_TAG,
    best_key,
    stopped_at,
)
from searcher.tracking.writer import Writer
from searcher.tune.free_space import FreeSpace
from searcher.tune import interrupt, progress


class MLflowTrialLogger(tune.Callback):
    """Tune callback: one MLflow child run per trial, nested under the search's parent run."""

    def __init__(self, tracking_uri: str, parent_run_id: str, space: Space,
                 state_folder: str | Path | None = None, quiet: bool = False):
        self.tracking_uri, self.parent_run_id, self.space = tracking_uri, parent_run_id, space
        self.metric, self.mode = space.settings.metric, space.settings.mode
        # The outbox lives here, unless `outbox_folder` says where (None: in memory only).
        self.state_folder = str(state_folder) if state_folder else None
        self.quiet = quiet  # no line at all (the scale benchmark's thousands of results)
        self.records: dict[str, TrialRecord] = {}
        self._client: MlflowClient | None = None
        self._writer: Writer | None = None
        self._unsent: list[str] | None = None
        self._disk: FreeSpace | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks; a client does not pickle
        return {**self.__dict__, "_client": None, "records": {}, "_writer": None, "_unsent": None,
                "_disk": None}

    def _send(self, what: str, op: str, trial_id: str, **data: Any) -> None:
        self.writer.put({"op": op, "trial": trial_id, "what": what, **data})
        if self.writer.full:  # a full disk: stop, resumable, rather than lose writes past memory
            interrupt.stop(self.writer.full)
        elif self._disk and (short := self._disk.short()):  # stop while Tune can still save
            interrupt.stop(short)

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            self.setup()
        return self._writer

    def flush(self) -> None:
        """Wait until MLflow accepted every write, or, in an outage, failed once more."""
        if self._writer:
            self._writer.drain()

    @property
    def unlogged(self) -> list[str]:
        """The writes MLflow has not accepted, after one more attempt."""
        if self._unsent is not None:  # the search ended and its writer with it
            return self._unsent
        self.flush()
        return self._writer.unsent() if self._writer else []

    def setup(self, **info) -> None:
        """Called by Tune when a search starts or resumes: pick up the runs already logged, and
        send what a driver killed before left in the outbox."""
        global _ACTIVE
        _ACTIVE = self
        if self._writer is not None:
            return
        folder, database = _OUTBOX_AT or (self.state_folder, None)
        outbox = open_outbox(Path(folder) if folder else None, database)
        self._disk = FreeSpace(folder) if folder else None
        owed = outbox.owes()  # what a driver killed before left
        self._writer = Writer(self.tracking_uri, self.parent_run_id, outbox,
                              on_created=self._created)
        if not self.records:
            self.records = trial_records(self.client, self.parent_run_id, self.metric,
                                                self.mode)
        left = self._writer.replay({t: r.run_id for t, r in self.records.items()},
                                   {t: r.logged for t, r in self.records.items()},
                                   {t for t, r in self.records.items() if r.finished_at})
        if left:
            raise UserError(f"MLflow at {redact(self.tracking_uri)} did not accept the {len(left)} "
                            f"update(s) kept from before (first: {left[0]['what']}); they stay in "
                            f"{outbox.journal}: start the server and resume again")
        if owed:
            # what was sent is in MLflow now: read the trials back with it
            self.records = trial_records(self.client, self.parent_run_id, self.metric,
                                                self.mode)
        self._writer.start()

    def _created(self, trial_id: str, run_id: str) -> None:  # the writer's thread
        if trial_id in self.records:
            self.records[trial_id].run_id = run_id

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _better(self, value: float, than: float | None) -> bool:
        return better(value, than, self.mode)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self.records:  # restarted after a failure: same run goes on
            return
        params = dict(trial.config)
        baseline = self.space.baseline_of(params)
        rec = TrialRecord(trial.trial_id, None, params, baseline)
        self.records[trial.trial_id] = rec
        held = trial.placement_group_factory.required_resources  # what Tune reserved for it
        tags = {PARENT_TAG: self.parent_run_id, ROLE_TAG: "trial",
                TRIAL_ID_TAG: trial.trial_id, OUTCOME_TAG: "running",
                GPUS_TAG: f"{held.get('GPU', 0):g}", CPUS_TAG: f"{held.get('CPU', 0):g}"}
        if baseline:
            tags[BASELINE_TAG] = baseline
        tags[MLFLOW_USER] = run_user(self.space.settings)  # as on the search's run
        # Named by what the trial is; its Tune id stays in the searcher.trial_id tag.
        self._send(f"trial {trial.trial_id}: its run and parameters", "create", trial.trial_id,
                   tags=tags, name=trial_name(params, baseline),
                   params=[(k, str(v)) for k, v in sorted(params.items())])
        for key, value in sorted(params.items()):
            if len(str(value)) > MAX_PARAM_VAL_LENGTH:  # MLflow cuts it, and says so in its log
                progress.say(f"[searcher] trial {trial.trial_id}: parameter {key!r} is "
                             f"{len(str(value)):,} characters; MLflow keeps its first "
                             f"{MAX_PARAM_VAL_LENGTH:,} (the search's Optuna study keeps it whole)")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        rec = self.records[trial.trial_id]
        if result.get("node") and result["node"] not in rec.nodes:
            rec.nodes.append(result["node"])
            self._send(f"trial {rec.trial_id}: its node", "tags", rec.trial_id,
                       tags={NODES_TAG: ",".join(rec.nodes)})
        start = int(result.get("start_epoch", 0))
        if start and start not in rec.resumed_from:  # restarted from a checkpoint of this epoch
            rec.resumed_from.append(start)
            self._send(f"trial {rec.trial_id}: its restart", "tags", rec.trial_id,
                       tags={RESUMED_TAG: ",".join(map(str, rec.resumed_from))})
        if not rec.speed and any(k in result for k in SPEED_METRICS):  # timed before training
            rec.speed = {k: float(result[k]) for k in SPEED_METRICS if k in result}
            rec.n_params = int(result["n_params"]) if "n_params" in result else rec.n_params
            rec.mmacs = float(result["mmacs"]) if "mmacs" in result else rec.mmacs
        if result.get("infeasible") or result.get("failed"):
            kind = "infeasible" if result.get("infeasible") else "failed"
            rec.outcome = f"{kind}: {result.get('reason', '')}"
            return
        epoch = int(result["epoch"])
        if epoch in rec.logged:  # replayed after a resume from an older checkpoint
            rec.new_best = False
            return
        rec.logged.add(epoch)
        rec.epochs, rec.n_params, rec.mmacs = epoch, int(result["n_params"]), float(result["mmacs"])
        now = int(time.time() * 1000)
        self._send(f"trial {rec.trial_id}: epoch {epoch} metrics", "metrics", rec.trial_id,
                   epoch=epoch, metrics=[(k, float(result[k]), now, epoch)
                                         for k in EPOCH_METRICS if k in result])
        if epoch == FIRST_LOOK:  # in MLflow at step 0, never a result: not its best, no history
            rec.new_best = False
            return
        # "at": when the driver had the result, for anytime curves (best so far against time)
        rec.history.append({**{k: float(result[k]) for k in EPOCH_METRICS if k in result},
                            "at": time.time()})
        rec.new_best = self._better(float(result[self.metric]), rec.best)
        if rec.new_best:
            rec.best, rec.best_epoch = float(result[self.metric]), epoch
        if self.quiet or not progress.verbose():  # the progress line counts it instead
            return
        progress.say(f"[searcher] trial {rec.trial_id} epoch {epoch}/{self.space.settings.epochs}: "
                     f"{self.metric}={float(result[self.metric]):.4f} "
                     f"train_loss={result['train_loss']:.3f} ({result['images_per_s']:.0f} img/s)")

    def on_step_end(self, iteration, trials, **info) -> None:
        progress.tick(self.records, trials)  # on every turn of Tune's loop: at once unless due

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # Tune reports the result before saving its checkpoint, so the flag is this epoch's.
        # The best checkpoint goes to MLflow at once: it survives the driver, a node and Tune's
        # own clean-up of old checkpoints.
        rec = self.records[trial.trial_id]
        if rec.new_best:
            where = self.writer.outbox.stage(checkpoint, f"{rec.trial_id}-{rec.best_epoch}")
            self._send(f"trial {rec.trial_id}: its best checkpoint (epoch {rec.best_epoch})",
                       "checkpoint", rec.trial_id, **where)

    def _finish(self, trial_id: str, outcome: str, status: str) -> None:
        rec = self.records.get(trial_id)
        if rec is None or rec.finished_at is not None:  # a resume can replay a trial's end
            return
        rec.outcome, rec.finished_at = outcome, time.time()
        now = int(time.time() * 1000)
        metrics = [("epochs_run", rec.epochs, now, 0)]
        if rec.best is not None:
            metrics += [(best_key(self.metric), rec.best, now, 0), ("best_epoch", rec.best_epoch, now, 0)]
        if rec.n_params is not None:
            metrics.append(("n_params", rec.n_params, now, 0))
        if rec.mmacs is not None:
            metrics.append(("mmacs", rec.mmacs, now, 0))
        metrics += [(k, v, now, 0) for k, v in rec.speed.items()]
        self._send(f"trial {rec.trial_id}: its outcome", "close", rec.trial_id, metrics=metrics,
                   tags={OUTCOME_TAG: outcome.split(":")[0], OUTCOME_DETAIL_TAG: outcome},
                   status=status)
        # A failure also without --verbose: rare, and its reason is more than a count can say.
        if not self.quiet and (progress.verbose() or outcome.startswith("failed")):
            progress.say(_done_line(rec, self.metric, len(self.records)))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        rec = self.records.get(trial.trial_id)
        if rec is None:
            return
        if rec.outcome.startswith("infeasible"):
            self._finish(trial.trial_id, rec.outcome, "FINISHED")
        elif rec.outcome.startswith("failed"):
            self._finish(trial.trial_id, rec.outcome, "FAILED")
        elif rec.epochs < self.space.settings.epochs:
            self._finish(trial.trial_id, stopped_at(rec.epochs), "FINISHED")
        else:
            self._finish(trial.trial_id, "completed", "FINISHED")

    def on_experiment_end(self, trials, **info) -> None:
        # Trials still running when the time budget ran out get no completion call of their own;
        # after a Ctrl-C they stay open, for --resume to go on with.
        known = {t.trial_id for t in trials}
        for rec in list(self.records.values()) if not interrupt.fired() else []:
            if rec.finished_at is None and rec.trial_id in known:
                self._finish(rec.trial_id,
                             f"stopped early: by the time budget at epoch {rec.epochs}", "FINISHED")
            elif rec.finished_at is None:
                # Started just before a killed driver's last save of Tune's state, so the resumed
                # search never knew it and ran another trial in its place.
                self._finish(rec.trial_id, "lost: in flight when the driver was killed, before "
                             "Tune saved it; another trial ran in its place", "KILLED")
        if self._writer:  # what MLflow did not take stays in the outbox for a --resume
            self._writer.drain()
            self._unsent = self._writer.unsent()
            self._writer.stop()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = trial.get_error()
        reason = str(error).strip().splitlines()[-1] if error else "unknown error"
        self._finish(trial.trial_id, f"failed: {reason[:400]}", "FAILED")


_ACTIVE: MLflowTrialLogger | None = None
_OUTBOX_AT: tuple[Path, str | None] | None = None


@contextlib.contextmanager
def outbox_folder(folder: Path, database: str | None = None):
    """Keep the outbox of the search run inside in `folder`, its journal in `database` when the
    search has one (see `outbox.open_outbox`). From here, not from the callback: Tune restores the
    callback it pickled, whose folder is where the search started, maybe on another machine."""
    global _OUTBOX_AT
    _OUTBOX_AT = (folder, database)
    try:
        yield
    finally:
        _OUTBOX_AT = None


def active_logger() -> MLflowTrialLogger | None:
    """The logger of the search running (or last run) in this process.

    On a resume Tune restores its own pickled copy of the callback, so the driver finds the
    records here rather than on the object it created.
    """
    return _ACTIVE


def _done_line(rec: TrialRecord, metric: str, started: int) -> str:
    value = f"{metric}={rec.best:.4f}" if rec.best is not None else f"{metric}=-"
    name = f" ({rec.baseline})" if rec.baseline else ""
    return f"[searcher] trial {rec.trial_id}{name} done: {rec.outcome}, best {value} ({started} trials started)"
