"""The outbox's journal file: what a cut write leaves behind does not swallow the next one."""
from __future__ import annotations

import json
import tracemalloc

import pytest
from mlflow.tracking import MlflowClient
from test_writer import parent, steps, trial_ops  # noqa: F401 (parent: a fixture)

from searcher.errors import UserError
from searcher.tracking.outbox import OUTBOX_FILE, Outbox, open_outbox
from searcher.tracking.writer import Writer

pytestmark = pytest.mark.slow  # a real store, and a backlog of many thousand writes


def test_a_torn_last_line_does_not_swallow_the_next_write(tracking_uri, parent, tmp_path):
    path = tmp_path / OUTBOX_FILE
    ops = trial_ops("a", 2)
    dying = Outbox(path)
    for op in ops[:-1]:  # the run, two epochs, a tag; then the driver dies mid-write
        dying.append(op)
    dying.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"op":"metrics","trial":"a","what":"a epoch 3 me')  # cut: no newline

    again = Outbox(path)  # --resume
    again.append(ops[-1])  # the trial's close, written after the torn line
    again.close()
    pending = Outbox(path).pending()
    assert [op["what"] for op in pending] == [op["what"] for op in ops]
    assert pending[-1] == json.loads(json.dumps(ops[-1]))  # intact, sequence number and all
    assert [op["seq"] for op in pending] == list(range(1, len(ops) + 1))

    writer = Writer(tracking_uri, parent, Outbox(path))
    assert writer.replay({}, {}, set()) == [] and writer.unsent() == []
    run = MlflowClient(tracking_uri).get_run(writer.run_ids["a"])
    assert run.info.status == "FINISHED" and run.data.tags["searcher.outcome"] == "completed"
    assert steps(MlflowClient(tracking_uri), writer.run_ids["a"]) == [1, 2]


def test_a_long_backlog_is_read_in_bounded_chunks(tracking_uri, parent, tmp_path):
    # A long outage leaves a journal far larger than memory should hold: opening the outbox,
    # telling whether it owes anything, and replaying it hold a chunk of it at a time. Replayed
    # here are writes MLflow already holds (their epochs are logged), so nothing is sent.
    path = tmp_path / OUTBOX_FILE
    with open(path, "w", encoding="utf-8") as f:
        for seq in range(1, 200_001):
            f.write(json.dumps({"op": "metrics", "trial": f"t{seq % 50}", "epoch": seq,
                                "what": f"t{seq % 50}: epoch {seq} metrics",
                                "metrics": [["val_acc", 0.5, 0, seq]], "seq": seq}) + "\n")
    size = path.stat().st_size
    logged = {f"t{n}": set(range(n, 200_001, 50)) for n in range(50)}  # (before the count)
    Writer(tracking_uri, parent, Outbox(None))  # (its imports too)
    tracemalloc.start()
    try:
        outbox = Outbox(path)
        assert outbox.owes()
        writer = Writer(tracking_uri, parent, outbox)
        assert writer.replay({}, logged, set()) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not Outbox(path).owes()  # all marked accepted
    assert peak < size / 4, (peak, size)  # loaded whole, the parsed writes are ~5x the file


@pytest.mark.parametrize("name", ["../victim", "/tmp/x/../victim", ".."])
def test_a_staged_name_outside_the_stage_folder_is_refused_and_nothing_is_deleted(tmp_path,
                                                                                  name):
    # Whoever can write the journal must not make the driver delete (or upload) anything
    # outside the stage folder beside it.
    from searcher.errors import UserError

    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    path = state / OUTBOX_FILE
    path.write_text(json.dumps({"op": "checkpoint", "trial": "a", "what": "a: checkpoint",
                                "staged": name, "seq": 1}) + "\n")
    with pytest.raises(UserError, match=rf"{OUTBOX_FILE}: write 1 names its staged checkpoint"):
        Outbox(path)  # opening it (--resume) refuses it in one line
    path.write_text("")
    with pytest.raises(UserError, match="not a folder name in the stage folder"):
        Outbox(path).release({"op": "checkpoint", "staged": name, "seq": 2})
    assert (victim / "keep.txt").read_text() == "mine"


CHANGED = [  # a line put in the middle of a journal by someone other than searcher, and the words
    ('{"op":"metrics","trial":"a","what":"a epo', "line 2 is not JSON"),
    ("[1, 2]", "line 2 is not a write of searcher's outbox (a JSON list, not an object)"),
    ('{"op":"drop_runs","trial":"a","what":"x","seq":2}', "no known kind of write: op 'drop_runs'"),
    ('{"op":"metrics","trial":"a","what":"x","seq":2,"metrics":"{[]: 1}"}',
     "a metrics write whose metrics is not a list"),
    ('{"op":"tags","trial":"a","what":"x","tags":{}}', "no sequence number"),
    ('{"ack": ["1; drop"]}', "a mark of acceptance that is not a list of numbers"),
]


@pytest.mark.parametrize("line, words", CHANGED, ids=range(len(CHANGED)))
def test_a_file_journal_changed_outside_searcher_is_one_line_and_keeps_every_write(tmp_path,
                                                                                  line, words):
    path = tmp_path / OUTBOX_FILE
    ops = trial_ops("a", 2)
    first = Outbox(path)
    first.append(ops[0])
    first.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    second = Outbox(path.with_name("other.jsonl"))  # a second line after it, as a resume writes
    for op in ops[1:]:
        second.append(op)
    second.close()
    with open(path, "ab") as f:
        f.write(path.with_name("other.jsonl").read_bytes())
    before = path.read_bytes()
    with pytest.raises(UserError) as refused:
        Outbox(path)  # what a resumed driver opens first
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: line 2 "), message
    assert words in message and "changed outside searcher" in message, message
    assert path.read_bytes() == before  # nothing cut, dropped or sent


def test_a_database_journal_row_changed_outside_searcher_is_one_line(tmp_path):
    import sqlalchemy as sa

    database = f"sqlite:///{tmp_path / 'study.db'}"
    outbox = open_outbox(tmp_path / "tiny-a", database)
    for op in trial_ops("a", 2):
        outbox.append(op)
    with sa.create_engine(database).begin() as conn:
        conn.execute(sa.text("UPDATE searcher_outbox SET op = 'not json' WHERE seq = 2"))
    with pytest.raises(UserError) as refused:
        open_outbox(tmp_path / "tiny-a", database)
    message = str(refused.value)
    assert "\n" not in message and ": row 2 is not JSON" in message, message
    assert "search tiny-a" in message, message
