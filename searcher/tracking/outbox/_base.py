"""The journal interface: where an outbox's writes wait until MLflow accepted them.

Two backends: a file of JSON lines in the search's state folder (`FileJournal`), or rows in the
study's database (`DatabaseJournal`), which outlives the head machine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterator


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
