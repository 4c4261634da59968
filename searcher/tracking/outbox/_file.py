"""The outbox's journal as a file of JSON lines in the search's state folder."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from searcher.tracking.outbox._base import Journal, changed, checked


class FileJournal(Journal):
    """The journal as JSON lines in `path`; accepted writes are marked by {"ack": [seq, ...]}."""

    def __init__(self, path: Path):
        self.path = path
        cut_torn_tail(path)  # else the next write would be glued to it and lost with it
        # Unbuffered: each line goes to the kernel (which keeps it past a SIGKILL of this
        # process) as it is written, and a failed write leaves nothing behind to be flushed later.
        self._file = open(path, "ab", buffering=0)

    def write(self, op: dict[str, Any]) -> None:
        self._append(json.dumps(op, separators=(",", ":")))

    def ack(self, seqs: list[int]) -> None:
        self._append(json.dumps({"ack": seqs}))

    def _append(self, line: str) -> None:
        data = memoryview((line + "\n").encode())
        while data:  # a write the disk takes in part returns short; the next one raises
            data = data[self._file.write(data):]

    def clear(self) -> None:
        self._file.truncate(0)

    def last(self) -> int:
        """The last sequence number in use."""
        return max((op["seq"] for op in self._lines() if "ack" not in op), default=0)

    def pending(self, size: int, after: int = 0,
                upto: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """See `Outbox.chunks`. Two passes, so that only the accepted writes' numbers and one
        chunk of writes are in memory: the marks of acceptance first, then the writes."""
        acked = set()
        for entry in self._lines(acks_only=True):
            acked.update(entry["ack"])
        chunk = []
        for op in self._lines():
            seq = op.get("seq", 0)
            if "ack" in op or seq <= after or seq in acked:
                continue
            if upto is not None and seq > upto:
                break  # written after the reading began (numbers only grow down the file)
            chunk.append(op)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _lines(self, acks_only: bool = False) -> Iterator[dict[str, Any]]:
        """Each entry, checked (`checked`). A last line that is not JSON is a write cut short
        (see cut_torn_tail), which never returned: skipped. Anywhere else it is a change made
        outside searcher, and a one-line UserError."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            torn = None
            for number, line in enumerate(f, 1):
                if torn:
                    raise torn
                if acks_only and not line.startswith(b'{"ack"'):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    torn = changed(f"{self.path}: line {number}", f"not JSON ({exc})")
                    continue
                yield checked(entry, f"{self.path}: line {number}")

    def close(self) -> None:
        self._file.close()

    def __str__(self) -> str:
        return str(self.path)


def cut_torn_tail(path: Path | str) -> int:
    """Cut a journal of lines back to its last complete line; returns the bytes cut.

    A write cut short (a killed driver between two write calls, a full disk, a head that lost
    power) leaves its line without the newline. Appending after it would join the next write to
    it in one unreadable line, and a reader skips (the outbox) or stops at (Optuna) that line:
    the next write would be lost. The torn write itself never returned, so nothing relied on it.
    Call it before the first append, with no other writer active."""
    try:
        with open(path, "r+b") as f:
            end = keep = f.seek(0, os.SEEK_END)
            while keep > 0:
                step = min(keep, 1 << 16)
                f.seek(keep - step)
                newline = f.read(step).rfind(b"\n")
                if newline >= 0:
                    keep += newline + 1 - step
                    break
                keep -= step
            if keep < end:
                f.truncate(keep)
            return end - keep
    except FileNotFoundError:
        return 0
