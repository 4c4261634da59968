"""The outbox's journal file: what a cut write leaves behind does not swallow the next one."""
from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from searcher.mlflow_writer import Writer
from searcher.outbox import OUTBOX_FILE, Outbox
from test_mlflow_writer import parent, steps, trial_ops  # noqa: F401 (parent: a fixture)


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
