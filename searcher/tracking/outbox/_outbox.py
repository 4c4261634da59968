"""The durable outbox: MLflow writes not yet accepted, and the checkpoint files they need.

Every write the trial logger describes stays in a journal until MLflow accepted it (an "ack"),
so a driver killed during an outage leaves it behind and `--resume` sends what it owed
(`replayable` drops what MLflow already holds). The journal is a file of JSON lines in the
search's state folder, or, when the search has a database (`study_storage`), rows there
(`DatabaseJournal`), because with s3:// storage the state folder is on the head's local disk
and would be lost with it. A best checkpoint on a local file system waits for its upload as hard
links in `outbox_checkpoints/` beside the journal file (with a database: beside Tune's
experiment), because Tune deletes a trial's older checkpoints as new ones come; the links go only
once the journal marks the upload accepted, or a driver killed in between would replay an upload
whose files are gone.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from searcher.errors import UserError
from searcher.tracking.outbox._base import Journal
from searcher.tracking.outbox._database import DatabaseJournal
from searcher.tracking.outbox._file import FileJournal

OUTBOX_FILE = "mlflow_outbox.jsonl"  # in the search's state folder, beside the Optuna journal
STAGE_FOLDER = "outbox_checkpoints"  # best checkpoints waiting for their upload, beside it
# Writes read from the journal at a time: a long outage's backlog is never in memory whole.
CHUNK = 2000


class Outbox:
    """The writes not yet accepted, in a journal (None: memory only, for callers with no state
    folder), and the checkpoint files staged for them."""

    def __init__(self, path: Path | None, journal: Journal | None = None):
        """`path`: a journal file, its checkpoints staged beside it; or `journal` (a database's,
        see `open_outbox`)."""
        self.journal = journal or (FileJournal(path) if path else None)
        # None: chosen with the first checkpoint (`_stage_folder`)
        self.stage_root = path.parent / STAGE_FOLDER if path else None
        # Set when the journal could not be written (a full disk): one line saying so. Nothing
        # more is written to it by this process, whose last write may have left a torn line
        # there that would swallow the next (the next driver cuts it, `cut_torn_tail`): the
        # writes and acceptances since are kept in memory, while the search stops.
        self.full: str | None = None
        self._unwritten: list[dict[str, Any]] = []
        self._acked: set[int] = set()
        self._seq = self.journal.last() if self.journal else 0
        self._drop_stale_stages({self._staged_name(op) for chunk in self.chunks()
                                 for op in chunk if op.get("staged")})
        self._cleared_at: int | None = None  # the last write when the journal was last emptied

    @property
    def durable(self) -> bool:
        """The writes outlive this process (else they are only in the writer's memory)."""
        return self.journal is not None

    @property
    def last(self) -> int:
        """The sequence number of the last write appended."""
        return self._seq

    def append(self, op: dict[str, Any]) -> bool:
        """Give `op` its sequence number and write it to the journal; False if it could not be
        (see `full`): it is then in the caller's memory only."""
        self._seq += 1
        op["seq"] = self._seq
        if not self.journal:
            return True
        if not self.full:
            try:
                self.journal.write(op)
                return True
            except OSError as exc:  # ENOSPC, EFBIG: raised in Tune's callback it ends the search
                self.full = (f"cannot write the MLflow outbox {self.journal} "
                             f"({exc.strerror or exc}): free space there and continue the search "
                             f"with --resume")
        self._unwritten.append(op)
        return False

    def ack(self, seqs: list[int]) -> None:
        if self.full:
            self._acked.update(seqs)
        elif self.journal and seqs:
            self.journal.ack(seqs)

    def clear(self) -> None:
        """Empty the journal: call only when everything in it was accepted."""
        if self.journal and self._cleared_at != self._seq and not self.full:
            self.journal.clear()  # not again while nothing came
            self._cleared_at = self._seq

    def chunks(self, size: int = CHUNK, after: int = 0,
               upto: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The writes in the journal that MLflow has not accepted, in order, those numbered
        past `after` and up to `upto`, in lists of at most `size`."""
        if not self.journal:
            return
        for chunk in self.journal.pending(size, after, upto):
            chunk = [op for op in chunk if op["seq"] not in self._acked]
            if chunk:
                yield chunk
        rest = [op for op in self._unwritten if op["seq"] > after and op["seq"] not in self._acked
                and (upto is None or op["seq"] <= upto)]
        for i in range(0, len(rest), size):
            yield rest[i:i + size]

    def owes(self) -> bool:
        """Whether the journal holds a write MLflow has not accepted."""
        return next(self.chunks(1), None) is not None

    def pending(self) -> list[dict[str, Any]]:
        """All of `chunks` in one list: for a journal known to be short."""
        return [op for chunk in self.chunks() for op in chunk]

    def stage(self, checkpoint: Any, name: str) -> dict[str, Any]:
        """Where the writer should upload `checkpoint` from, as the fields of its write (read
        back by `source`): a local one as hard links under the stage folder (microseconds, no
        data copied); a remote one (s3://...) from where it is, named in `unlogged` if Tune
        deleted it first."""
        uri = checkpoint_uri(checkpoint)
        if checkpoint.filesystem.type_name != "local":
            return {"uri": uri}
        source, into = Path(checkpoint.path), self._stage_folder(uri) / name
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
        return {"staged": name, "uri": uri}

    def source(self, op: dict[str, Any]) -> str:
        """Where a checkpoint write's files are now: staged, else (its links lost with a head)
        where Tune put them."""
        staged = self._staged(op)
        if staged and (staged.is_dir() or "uri" not in op):
            return str(staged)
        return op["uri"]

    def release(self, op: dict[str, Any]) -> None:
        """The write was accepted (and the journal says so): its staged files can go."""
        staged = self._staged(op)
        if staged:
            shutil.rmtree(staged, ignore_errors=True)

    def _staged(self, op: dict[str, Any]) -> Path | None:
        """The folder a checkpoint write's files are staged in, if any."""
        name = self._staged_name(op)
        return self._stage_folder(op.get("uri")) / name if name else None

    def _staged_name(self, op: dict[str, Any]) -> str | None:
        """The name of a write's staged folder, as the journal gives it. Whoever can write the
        journal must not make this process read or delete anything outside the stage folder: a
        name that is not one plain folder name is refused, in one line."""
        name = op.get("staged")
        if not name:
            return None
        if not isinstance(name, str) or name == ".." or Path(name).name != name:
            raise UserError(f"{self.journal}: write {op.get('seq', '?')} names its staged "
                            f"checkpoint {str(name)[:80]!r}, which is not a folder name in the "
                            f"stage folder; refusing to read or delete it")
        return name

    def _stage_folder(self, uri: str | None) -> Path:
        if self.stage_root is None:
            # A journal in a database: beside Tune's experiment (the checkpoint's grandparent),
            # as shared as Tune's own state and on its file system, where the state folder may be
            # on the head's disk (file:// storage). Memory only: a temporary folder.
            self.stage_root = (Path(uri).parents[1] / STAGE_FOLDER if self.durable and uri
                               else Path(tempfile.mkdtemp(prefix="searcher-checkpoints-")))
        return self.stage_root

    def close(self) -> None:
        if self.journal:
            try:
                self.journal.close()
            except OSError:  # what a full disk left unwritten: `full` said so
                pass

    def _drop_stale_stages(self, owed: set[str]) -> None:
        # Links of uploads acked just before a kill: nothing will ever send them.
        if self.stage_root and self.stage_root.is_dir():
            for folder in self.stage_root.iterdir():
                if folder.name not in owed:
                    shutil.rmtree(folder, ignore_errors=True)


def open_outbox(folder: Path | None, database: str | None = None) -> Outbox:
    """The outbox of the search whose state folder is `folder` (None: memory only): its journal
    in `database` under the folder's name (the search's) when there is one, so that a driver on
    another machine finds it; else a file in the folder, its checkpoints staged beside it."""
    if folder is None:
        return Outbox(None)
    if database is None:
        return Outbox(folder / OUTBOX_FILE)
    # Its checkpoints are staged beside Tune's experiment, found from their own path (see
    # `_stage_folder`): the links of an upload accepted just before a kill stay there.
    return Outbox(None, DatabaseJournal(database, folder.name))


def checkpoint_uri(checkpoint: Any) -> str:
    """Where a Tune checkpoint lives, as a URI another process can open."""
    kind = checkpoint.filesystem.type_name
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


def replayable(ops: list[dict[str, Any]], runs: dict[str, str],
               logged: dict[str, set[int]], ended: set[str]) -> list[dict[str, Any]]:
    """The writes of a killed driver's outbox that MLflow does not hold yet: `runs` maps trials
    to their runs, `logged` their epochs in MLflow, `ended` the trials whose runs are closed.
    Writes accepted just before the kill, but not yet marked so, are the ones dropped here. A
    trial's run creation is kept even when its run exists: it is marked accepted only with the
    trial's first log_batch, which carries its parameters, so a run made just before the kill
    may lack them; the writer sends them (again: MLflow takes an equal value twice) into that
    run and makes no second one."""
    keep = []
    for op in ops:
        trial, kind = op["trial"], op["op"]
        if kind == "metrics" and op.get("epoch") in logged.get(trial, ()):
            continue
        if kind == "close" and trial in ended:
            continue
        keep.append(op)
    return keep
