"""Counts the metric rows a process sends MLflow, through its real client, wrapped.

MLflow's SQL store drops a metric row equal to one it holds, and a replayed write carries the
timestamp it was made with: a write sent twice leaves one row, so the store cannot show it. What
the client sent can. In a test's own process, `recording`; in a driver it starts, `environment`
puts a `sitecustomize` on its path that installs it there.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path

ENV = "SEARCHER_TEST_SENT_METRICS"  # the file a process records its sent metric rows in
TESTS = Path(__file__).resolve().parent


def install(record: Path | str):
    """Record every metric row this process's MlflowClients get accepted, in `record`; returns
    the real `log_batch`."""
    from mlflow.tracking import MlflowClient
    real = MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        result = real(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)
        lines = "".join(json.dumps([run_id, m.key, m.step]) + "\n" for m in metrics)
        with open(record, "a", encoding="utf-8") as f:  # one append per batch, after it went in
            f.write(lines)
        return result

    MlflowClient.log_batch = log_batch
    return real


@contextlib.contextmanager
def recording(record: Path):
    """`install` in this process, until the block ends."""
    from mlflow.tracking import MlflowClient
    real = install(record)
    try:
        yield
    finally:
        MlflowClient.log_batch = real


def environment(env: dict[str, str], folder: Path) -> dict[str, str]:
    """`env` for a child process that records what it sends in `folder / sent.jsonl`."""
    (folder / "sitecustomize.py").write_text(
        "import os\n"
        f"if os.environ.get({ENV!r}):\n"
        "    import sent_metrics\n"
        f"    sent_metrics.install(os.environ[{ENV!r}])\n")
    path = os.pathsep.join(p for p in (str(folder), str(TESTS), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, ENV: str(folder / "sent.jsonl")}


def sent(folder_or_record: Path) -> Counter:
    """How many times each (run, key, step) was sent, over every process that recorded."""
    record = folder_or_record if folder_or_record.suffix else folder_or_record / "sent.jsonl"
    if not record.exists():
        return Counter()
    return Counter(tuple(json.loads(line)) for line in record.read_text().splitlines())
