"""The journal interface: where an outbox's writes wait until MLflow accepted them.

Two backends: a file of JSON lines in the search's state folder (`FileJournal`), or rows in the
study's database (`DatabaseJournal`), which outlives the head machine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator

from searcher.errors import UserError

# A write's kind -> the fields it carries besides seq, op, trial and what
# (searcher.tune.trial_logger writes them, searcher.tracking.sending sends them).
_FIELDS = {"create": {"name": str, "tags": dict, "params": list},
           "metrics": {"metrics": list}, "tags": {"tags": dict},
           "checkpoint": {}, "close": {"status": str, "metrics": list, "tags": dict}}


class Journal(ABC):
    """Writes numbered by the outbox (`op["seq"]`), appended in order, marked accepted by number."""

    @abstractmethod
    def write(self, op: dict[str, Any]) -> None:
        """Append one write; durable when it returns. OSError on a full disk."""

    @abstractmethod
    def ack(self, seqs: list[int]) -> None:
        """Mark the writes numbered `seqs` accepted by MLflow."""

    @abstractmethod
    def clear(self) -> None:
        """Drop everything: call only when every write in it was accepted."""

    @abstractmethod
    def last(self) -> int:
        """The last sequence number in use (0 for an empty journal)."""

    @abstractmethod
    def pending(self, size: int, after: int = 0,
                upto: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The writes not accepted, numbered past `after` and up to `upto`, in order, in lists
        of at most `size`: a long outage's backlog is never in memory whole."""

    def close(self) -> None:
        """Release the file or connection."""


def checked(entry: Any, where: str) -> dict[str, Any]:
    """`entry` as read back from a journal, if it is a write (or a mark of acceptance) this
    package wrote; else a one-line UserError naming `where` (a file's line, a database's row).
    A journal is the only record of writes MLflow has not taken: one changed outside searcher
    stops the search rather than losing its writes, or sending something else, silently."""
    why = _why_not(entry)
    if why:
        raise changed(where, f"not a write of searcher's outbox ({why})")
    return entry


def changed(where: str, what: str) -> UserError:
    """The one-line error for a journal entry at `where` that is `what` (not JSON, not a write)."""
    return UserError(f"{where} is {what}: the journal was changed outside searcher; nothing was "
                     f"sent from it. Restore it, or remove it to go on without the writes it holds")


def _why_not(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    if "ack" in entry:
        ok = (len(entry) == 1 and isinstance(entry["ack"], list)
              and all(type(s) is int for s in entry["ack"]))
        return None if ok else "a mark of acceptance that is not a list of numbers"
    kind = entry.get("op")
    if kind not in _FIELDS:
        return f"no known kind of write: op {str(kind)[:40]!r}"
    if type(entry.get("seq")) is not int or entry["seq"] < 1:
        return "no sequence number"
    for field, kind_of in {"trial": str, "what": str, **_FIELDS[kind]}.items():
        if not isinstance(entry.get(field), kind_of):
            return f"a {kind} write whose {field} is not a {kind_of.__name__}"
    return None
