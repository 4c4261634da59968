"""The MLflow writer: batched writes from a thread, a durable outbox, and its replay (real stores)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sent_metrics
from conftest import TESTS, free_port
from mlflow.tracking import MlflowClient

from searcher.tracking import writer as mlflow_writer
from searcher.tracking.outbox import OUTBOX_FILE, STAGE_FOLDER, FileJournal, Outbox
from searcher.tracking.writer import Writer

pytestmark = pytest.mark.slow  # a real MLflow store per test (its schema takes seconds)


@pytest.fixture()
def parent(tracking_uri):
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("w")
    return client.create_run(exp).info.run_id


def trial_ops(trial: str, epochs: int) -> list[dict]:
    ops = [{"op": "create", "trial": trial, "what": f"{trial} run", "name": trial,
            "tags": {"searcher.trial_id": trial}, "params": [("lr", "0.1")]}]
    for e in range(1, epochs + 1):
        ops.append({"op": "metrics", "trial": trial, "what": f"{trial} epoch {e} metrics",
                    "epoch": e, "metrics": [("val_acc", e / 10, 0, e), ("train_loss", 1 / e, 0, e)]})
    ops.append({"op": "tags", "trial": trial, "what": f"{trial} node", "tags": {"node": "n1"}})
    ops.append({"op": "close", "trial": trial, "what": f"{trial} outcome", "status": "FINISHED",
                "metrics": [("epochs_run", epochs, 0, 0)], "tags": {"searcher.outcome": "completed"}})
    return ops


def steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val_acc"))


def test_writes_arrive_batched_from_the_thread_and_the_outbox_empties(tracking_uri, parent,
                                                                        tmp_path):
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    writer.start()
    for n in range(5):
        for op in trial_ops(f"t{n}", 4):
            writer.put(op)
    writer.drain()
    assert writer.unsent() == [] and writer.rejected == []
    client = MlflowClient(tracking_uri)
    assert len(writer.run_ids) == 5
    for trial, run_id in writer.run_ids.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
        assert run.data.tags["node"] == "n1" and run.data.tags["searcher.trial_id"] == trial
        assert steps(client, run_id) == [1, 2, 3, 4]
    time.sleep(1.5)  # the thread's idle turn
    assert (tmp_path / OUTBOX_FILE).stat().st_size == 0  # all accepted: the file is emptied
    writer.stop()


def test_a_short_trial_costs_four_requests(tracking_uri, parent, tmp_path):
    # Under ASHA most trials end after an epoch or two, so the requests per trial are what the
    # tracking server's CPU goes to: a look for its run (made already, its answer lost?), its
    # run, one log_batch with its parameters, its epochs and its end's metrics and tags, and its
    # end.
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    calls = []
    for name in ("search_runs", "create_run", "log_batch", "set_terminated", "log_artifacts",
                 "log_inputs"):
        def spy(*args, _real=getattr(writer.client, name), _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)
        setattr(writer.client, name, spy)
    assert writer._send([dict(op, seq=i) for i, op in enumerate(trial_ops("a", 2))]) == []
    assert calls == ["search_runs", "create_run", "log_batch", "set_terminated"]
    run = MlflowClient(tracking_uri).get_run(writer.run_ids["a"])
    assert run.data.params == {"lr": "0.1"}
    assert run.info.status == "FINISHED" and run.data.metrics["epochs_run"] == 2
    assert run.data.tags["searcher.outcome"] == "completed" and run.data.tags["node"] == "n1"
    assert steps(MlflowClient(tracking_uri), writer.run_ids["a"]) == [1, 2]


def test_a_run_made_just_before_an_outage_gets_its_parameters_after_it(tracking_uri, parent,
                                                                       tmp_path):
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    up = writer.client.log_batch

    def down(*args, **kwargs):
        raise ConnectionError("the tracking server went away")
    writer.client.log_batch = down  # the run is made, then the server goes
    left = writer._send([dict(op, seq=i) for i, op in enumerate(trial_ops("a", 1))])
    assert "a" in writer.run_ids and [op["op"] for op in left] == ["create", "metrics", "tags",
                                                                   "close"]
    writer.client.log_batch = up
    assert writer._send(left) == []
    client = MlflowClient(tracking_uri)
    exp = client.get_run(parent).info.experiment_id
    (run,) = client.search_runs([exp], "tags.`searcher.trial_id` = 'a'")  # one run, not two
    assert run.data.params == {"lr": "0.1"} and run.info.status == "FINISHED"
    assert steps(client, run.info.run_id) == [1]


def test_a_run_made_just_before_the_driver_died_gets_its_parameters_on_resume(tracking_uri,
                                                                             parent, tmp_path):
    class Killed(BaseException):
        pass

    path = tmp_path / OUTBOX_FILE
    dying = Writer(tracking_uri, parent, Outbox(path))

    def kill(*args, **kwargs):
        raise Killed  # the driver dies between making the run and its first log_batch
    dying.client.log_batch = kill
    for op in trial_ops("a", 2):
        dying.put(op)
    with pytest.raises(Killed):
        dying._send(Outbox(path).pending())
    made = dying.run_ids["a"]
    assert MlflowClient(tracking_uri).get_run(made).data.params == {}

    again = Writer(tracking_uri, parent, Outbox(path))  # --resume: the run is found by its tag
    assert again.replay({"a": made}, {"a": set()}, set()) == []
    client = MlflowClient(tracking_uri)
    exp = client.get_run(parent).info.experiment_id
    (run,) = client.search_runs([exp], "tags.`searcher.trial_id` = 'a'")  # not made twice
    assert run.data.params == {"lr": "0.1"} and run.info.status == "FINISHED"
    assert steps(client, made) == [1, 2] and Outbox(path).pending() == []


def test_an_outage_keeps_every_write_on_disk_and_a_replay_sends_each_once(
        tracking_uri, parent, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    path = tmp_path / OUTBOX_FILE
    down = Writer(f"http://127.0.0.1:{free_port()}", parent, Outbox(path))  # nothing listens
    down.start()
    ops = trial_ops("a", 3) + trial_ops("b", 2)
    for op in ops:
        down.put(op)
    down.drain()
    assert down.unsent() == [op["what"] for op in ops]  # honest, in order
    down._thread = None  # the driver dies: no clean stop, the file is what is left
    assert [op["what"] for op in Outbox(path).pending()] == [op["what"] for op in ops]

    # Half of trial a reached MLflow before the kill but was never marked accepted.
    client = MlflowClient(tracking_uri)
    with sent_metrics.recording(tmp_path / "sent.jsonl"):  # the store hides a row sent twice
        first = Writer(tracking_uri, parent, Outbox(None))
        first._send([dict(op, seq=i) for i, op in enumerate(ops[:3])])  # run, epochs 1-2
        run_a = first.run_ids["a"]

        again = Writer(tracking_uri, parent, Outbox(path))
        assert again.replay({"a": run_a}, {"a": {1, 2}}, set()) == []
    assert set(again.run_ids) == {"a", "b"} and again.run_ids["a"] == run_a
    exp = client.get_run(parent).info.experiment_id
    assert len(client.search_runs([exp], "tags.`searcher.trial_id` = 'a'")) == 1  # one run
    assert steps(client, run_a) == [1, 2, 3]
    assert steps(client, again.run_ids["b"]) == [1, 2]
    sent = sent_metrics.sent(tmp_path / "sent.jsonl")
    for run, epochs in ((run_a, 3), (again.run_ids["b"], 2)):
        for key in ("val_acc", "train_loss"):  # each epoch sent once, before and after the kill
            assert [sent[run, key, e] for e in range(1, epochs + 1)] == [1] * epochs, sent
    assert Outbox(path).pending() == []


def test_a_write_mlflow_rejects_is_named_and_does_not_block_the_rest(tracking_uri, parent,
                                                                      tmp_path):
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    ops = trial_ops("a", 2)
    ops.insert(2, {"op": "tags", "trial": "a", "what": "a: an oversized tag",
                   "tags": {"x" * 300: "v"}})  # MLflow caps tag keys at 250 characters
    for i, op in enumerate(ops):
        op["seq"] = i
    left = writer._send(ops)
    left = writer._send(left)  # the rest, once the bad write is set aside
    assert left == []
    assert writer.rejected == ["a: an oversized tag (rejected: 'tags[0].key' exceeds the "
                               "maximum length of 250 characters)"]
    client = MlflowClient(tracking_uri)  # the good writes sent with it in one batch went in
    assert steps(client, writer.run_ids["a"]) == [1, 2]
    assert client.get_run(writer.run_ids["a"]).data.tags["node"] == "n1"
    assert client.get_run(writer.run_ids["a"]).info.status == "FINISHED"


def test_past_the_memory_bound_writes_wait_in_the_file(tracking_uri, parent, tmp_path,
                                                       monkeypatch):
    monkeypatch.setattr(mlflow_writer, "MAX_IN_MEMORY", 4)
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / OUTBOX_FILE))
    ops = trial_ops("a", 8)
    for op in ops:
        writer.put(op)
    assert len(writer._queue) == 4 and writer._spilled
    lines = (tmp_path / OUTBOX_FILE).read_text().splitlines()
    assert [json.loads(line)["what"] for line in lines] == [op["what"] for op in ops]
    writer.start()
    writer.drain()
    assert writer.unsent() == []
    assert steps(MlflowClient(tracking_uri), writer.run_ids["a"]) == list(range(1, 9))
    writer.stop()


def tune_checkpoint(folder):
    """A Tune checkpoint of one file, as Tune's on_checkpoint hands it over."""
    from ray import tune
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"weights" * 100)
    return tune.Checkpoint.from_directory(str(folder))


def test_a_staged_checkpoint_is_uploaded_after_tune_deleted_its_own(tracking_uri, parent,
                                                                     tmp_path):
    original = tmp_path / "trial" / "checkpoint_000000"
    (tmp_path / "state").mkdir()
    outbox = Outbox(tmp_path / "state" / OUTBOX_FILE)
    where = outbox.stage(tune_checkpoint(original), "t-1")
    staged = tmp_path / "state" / STAGE_FOLDER / "t-1"
    assert where == {"staged": "t-1", "uri": str(original)} and (staged / "checkpoint.pt").is_file()
    shutil.rmtree(original)  # Tune keeps one checkpoint: a better one came before the upload
    writer = Writer(tracking_uri, parent, outbox)
    writer.start()
    writer.put(trial_ops("t", 1)[0])
    writer.put({"op": "checkpoint", "trial": "t", "what": "t checkpoint", **where})
    writer.put(trial_ops("u", 1)[0])
    writer.put({"op": "checkpoint", "trial": "u", "what": "u gone",
                "uri": str(tmp_path / "nowhere")})  # not staged, deleted: named, not skipped
    writer.drain()
    files = MlflowClient(tracking_uri).list_artifacts(writer.run_ids["t"], "checkpoint")
    assert [f.path for f in files] == ["checkpoint/checkpoint.pt"]
    assert not staged.exists()  # uploaded: the links go
    assert writer.unsent() == ["u gone (gone from storage before MLflow took it)"]
    writer.stop()


def test_a_checkpoint_whose_staged_links_went_with_the_head_is_uploaded_from_tune_s_copy(
        tracking_uri, parent, tmp_path):
    (tmp_path / "head").mkdir()
    staging = Outbox(tmp_path / "head" / OUTBOX_FILE)
    original = tmp_path / "shared" / "trial" / "checkpoint_000000"  # file:// storage
    op = {"op": "checkpoint", "trial": "t", "what": "t checkpoint", "seq": 2,
          **staging.stage(tune_checkpoint(original), "t-1")}
    shutil.rmtree(tmp_path / "head")  # the head's local state folder is lost
    (tmp_path / "elsewhere").mkdir()
    writer = Writer(tracking_uri, parent, Outbox(tmp_path / "elsewhere" / OUTBOX_FILE))
    assert writer._send([dict(trial_ops("t", 0)[0], seq=1), op]) == []
    assert writer.unsent() == []
    files = MlflowClient(tracking_uri).list_artifacts(writer.run_ids["t"], "checkpoint")
    assert [f.path for f in files] == ["checkpoint/checkpoint.pt"]


class KilledBeforeTheAck(Outbox):
    """The driver is SIGKILLed after MLflow took a round of writes, before the file says so."""

    def ack(self, seqs):
        raise KeyboardInterrupt  # stands in for the kill: nothing after this line runs


@pytest.mark.parametrize("moved", [False, True])
def test_a_checkpoint_taken_just_before_a_kill_is_still_there_for_the_replay(
        tracking_uri, parent, tmp_path, moved):
    original = tmp_path / "trial" / "checkpoint_000000"
    state = tmp_path / "state"
    state.mkdir()
    dying = Writer(tracking_uri, parent, KilledBeforeTheAck(state / OUTBOX_FILE))
    dying.put(trial_ops("t", 1)[0])
    dying.put({"op": "checkpoint", "trial": "t", "what": "t checkpoint",
               **dying.outbox.stage(tune_checkpoint(original), "t-1")})
    with pytest.raises(KeyboardInterrupt):
        dying._send(list(dying._queue))  # run created, checkpoint uploaded, then the kill
    shutil.rmtree(original)  # Tune went on to a better checkpoint and deleted this one
    if moved:  # resumed where the state folder has another path (another mount, another cwd)
        state = state.rename(tmp_path / "elsewhere")

    again = Writer(tracking_uri, parent, Outbox(state / OUTBOX_FILE))  # --resume: both owed
    assert again.replay({"t": dying.run_ids["t"]}, {"t": set()}, set()) == []
    assert again.unsent() == []  # not "gone from storage": the staged links outlived the kill
    files = MlflowClient(tracking_uri).list_artifacts(dying.run_ids["t"], "checkpoint")
    assert [f.path for f in files] == ["checkpoint/checkpoint.pt"]
    assert not (state / STAGE_FOLDER / "t-1").exists()  # accepted and marked so: the links go


def test_links_of_uploads_acked_before_a_kill_are_dropped_on_reopen(tmp_path):
    outbox = Outbox(tmp_path / OUTBOX_FILE)
    owed = {"op": "checkpoint", "trial": "a", "what": "a", **outbox.stage(
        tune_checkpoint(tmp_path / "a"), "a-1")}
    done = {"op": "checkpoint", "trial": "b", "what": "b", **outbox.stage(
        tune_checkpoint(tmp_path / "b"), "b-2")}
    outbox.append(owed)
    outbox.append(done)
    outbox.ack([done["seq"]])  # killed before its links went
    outbox.close()
    Outbox(tmp_path / OUTBOX_FILE)
    assert sorted(p.name for p in (tmp_path / STAGE_FOLDER).iterdir()) == ["a-1"]


class SlowJournal(FileJournal):
    """A journal whose next reading, once armed, is held up (a long backlog on a slow disk)
    until `go` is set."""

    def __init__(self, path):
        super().__init__(path)
        self.armed, self.reading, self.go = False, threading.Event(), threading.Event()

    def _held(self):
        if self.armed:
            self.armed = False
            self.reading.set()
            self.go.wait(10)

    def read(self):  # how a refill read the journal before it was read in chunks
        self._held()
        return super().read()

    def pending(self, *args, **kwargs):
        self._held()
        yield from super().pending(*args, **kwargs)


def test_tune_s_put_does_not_wait_for_a_refill(tracking_uri, parent, tmp_path, monkeypatch):
    monkeypatch.setattr(mlflow_writer, "MAX_IN_MEMORY", 4)
    journal = SlowJournal(tmp_path / OUTBOX_FILE)
    writer = Writer(tracking_uri, parent, Outbox(None, journal))
    ops = trial_ops("a", 8)
    for op in ops[:-1]:  # 4 in memory, the rest in the journal only
        writer.put(op)
    journal.armed = True
    writer.start()  # sends the 4, then refills from the journal
    assert journal.reading.wait(30)  # the refill is reading the journal, held up
    put = threading.Thread(target=writer.put, args=(ops[-1],))  # Tune's callback
    put.start()
    put.join(5)
    returned = not put.is_alive()
    journal.go.set()  # the read goes on
    put.join()
    assert returned  # put returned while the refill's read was held up
    writer.drain()  # every write once, the one put during the refill included
    assert writer.unsent() == []
    assert steps(MlflowClient(tracking_uri), writer.run_ids["a"]) == list(range(1, 9))
    assert MlflowClient(tracking_uri).get_run(writer.run_ids["a"]).info.status == "FINISHED"
    writer.stop()


FULL_DISK = """
import json, resource, sys
from pathlib import Path
from searcher.tracking.writer import Writer
from searcher.tracking.outbox import Outbox
from test_writer import trial_ops
writer = Writer("http://127.0.0.1:9", "parent", Outbox(Path(sys.argv[1])))  # not started
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))  # writes past 1.5 kB fail: EFBIG
raised = None
for op in trial_ops("a", 20):
    try:
        writer.put(op)
    except OSError as exc:
        raised = repr(exc)
        break
print(json.dumps({"raised": raised, "full": writer.full, "queued": len(writer._queue)}))
"""


def test_a_full_disk_does_not_raise_in_tune_s_callback(tmp_path):
    # The outbox's file cannot grow (RLIMIT_FSIZE: the disk is full, for this process): put
    # keeps each write in memory and says what is wrong once; Tune's loop sees no exception.
    path = tmp_path / OUTBOX_FILE
    here = os.pathsep.join([str(Path(__file__).parent), str(TESTS)])  # test_writer's imports
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": here}, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["raised"] is None
    assert str(path) in report["full"] and report["queued"] == len(trial_ops("a", 20))
    kept = Outbox(path).pending()  # the space freed, --resume: the writes that made it, whole
    assert 0 < len(kept) < report["queued"]
    assert [op["what"] for op in kept] == [op["what"] for op in trial_ops("a", 20)[:len(kept)]]
