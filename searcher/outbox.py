"""The durable outbox: MLflow writes not yet accepted, and the checkpoint files they need, on disk.

Every write the trial logger describes is one JSON line here until MLflow accepted it (an "ack"
line), so a driver killed during an outage leaves the file behind and `--resume` sends what it
owed (`replayable` drops what MLflow already holds). A best checkpoint waits for its upload as
hard links in `outbox_checkpoints/` beside the file, because Tune deletes a trial's older
checkpoints as new ones come; the links go only once the file marks the upload accepted, or a
driver killed in between would replay an upload whose files are gone.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

OUTBOX_FILE = "mlflow_outbox.jsonl"  # in the search's state folder, beside the Optuna journal
STAGE_FOLDER = "outbox_checkpoints"  # best checkpoints waiting for their upload, beside it


class Outbox:
    """The writes not yet accepted, as JSON lines in `path` (None: memory only, for callers with
    no state folder). Accepted ones are marked by {"ack": [seq, ...]}."""

    def __init__(self, path: Path | None):
        self.path = path
        self.stage_root = path.parent / STAGE_FOLDER if path else None  # None: made when needed
        ops, acked, self._seq = self._scan()
        self._drop_stale_stages({op.get("staged") for op in ops if op["seq"] not in acked})
        self._file = open(path, "a", encoding="utf-8") if path else None

    def append(self, op: dict[str, Any]) -> None:
        self._seq += 1
        op["seq"] = self._seq
        if self._file:
            # flush: to the kernel, which keeps it past a SIGKILL of this process
            self._file.write(json.dumps(op, separators=(",", ":")) + "\n")
            self._file.flush()

    def ack(self, seqs: list[int]) -> None:
        if self._file and seqs:
            self._file.write(json.dumps({"ack": seqs}) + "\n")
            self._file.flush()

    def clear(self) -> None:
        """Empty the file: call only when everything in it was accepted."""
        if self._file:
            self._file.truncate(0)

    def pending(self) -> list[dict[str, Any]]:
        """The writes in the file that MLflow has not accepted, in order."""
        ops, acked, _ = self._scan()
        return [op for op in ops if op["seq"] not in acked]

    def stage(self, checkpoint: Any, name: str) -> dict[str, Any]:
        """Where the writer should upload `checkpoint` from, as the fields of its write (read
        back by `source`): a local one as hard links under the stage folder (microseconds, no
        data copied); a remote one (s3://...) from where it is, named in `unlogged` if Tune
        deleted it first."""
        if checkpoint.filesystem.type_name != "local":
            return {"uri": checkpoint_uri(checkpoint)}
        if self.stage_root is None:
            self.stage_root = Path(tempfile.mkdtemp(prefix="searcher-checkpoints-"))
        source, into = Path(checkpoint.path), self.stage_root / name
        for file in source.rglob("*"):
            if file.is_file():
                target = into / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(file, target)
                except OSError:  # another file system, or links not allowed: copy
                    shutil.copy2(file, target)
        # By name, not path: a resume may see this folder under another path (another machine's
        # mount of the shared storage, another working folder).
        return {"staged": name}

    def source(self, op: dict[str, Any]) -> str:
        """Where a checkpoint write's files are now."""
        return str(self.stage_root / op["staged"]) if op.get("staged") else op["uri"]

    def release(self, op: dict[str, Any]) -> None:
        """The write was accepted (and the file says so): its staged files can go."""
        if op.get("staged"):
            shutil.rmtree(self.stage_root / op["staged"], ignore_errors=True)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def _scan(self) -> tuple[list[dict[str, Any]], set[int], int]:
        ops, acked, last = [], set(), 0
        if self.path and self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:  # cut short by a killed driver: that write never returned
                        continue
                    if "ack" in entry:
                        acked.update(entry["ack"])
                    else:
                        ops.append(entry)
                        last = max(last, entry["seq"])
        return ops, acked, last

    def _drop_stale_stages(self, owed: set[str]) -> None:
        # Links of uploads acked just before a kill: nothing will ever send them.
        if self.stage_root and self.stage_root.is_dir():
            for folder in self.stage_root.iterdir():
                if folder.name not in owed:
                    shutil.rmtree(folder, ignore_errors=True)


def checkpoint_uri(checkpoint: Any) -> str:
    """Where a Tune checkpoint lives, as a URI another process can open."""
    kind = checkpoint.filesystem.type_name
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


def replayable(ops: list[dict[str, Any]], runs: dict[str, str],
               logged: dict[str, set[int]], ended: set[str]) -> list[dict[str, Any]]:
    """The writes of a killed driver's outbox that MLflow does not hold yet: `runs` maps trials
    to their runs, `logged` their epochs in MLflow, `ended` the trials whose runs are closed.
    Writes accepted just before the kill, but not yet marked so, are the ones dropped here."""
    keep = []
    for op in ops:
        trial, kind = op["trial"], op["op"]
        if kind == "create" and trial in runs:
            continue
        if kind == "metrics" and op.get("epoch") in logged.get(trial, ()):
            continue
        if kind == "close" and trial in ended:
            continue
        keep.append(op)
    return keep
