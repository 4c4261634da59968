"""The outbox's journal in the study's database, so it outlives the head machine.

With `study_storage` set, the Optuna study and the search record live in a database any machine
reaches; the writes MLflow has not accepted yet live there too, one row per write in
`searcher_outbox`, keyed by the search's name, and deleted once MLflow accepted them. A driver on
another machine, in an empty working folder, `--resume`s the search and replays them.

Each write is its own committed INSERT before `write` returns, so a driver killed at any moment
loses no write it had handed over. That costs one round trip and one WAL flush per write on
Tune's loop, more than the file's append but small beside a trial's epoch, so writes are not
batched.
A database that goes away stops the search, as it stops the Optuna study.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Iterator

import sqlalchemy as sa

from searcher.redaction import redact
from searcher.tracking.outbox._base import Journal, changed, checked

_META = sa.MetaData()
_OUTBOX = sa.Table(
    "searcher_outbox", _META,
    sa.Column("search", sa.String(255), primary_key=True),  # the study's (and folder's) name
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("op", sa.Text, nullable=False),  # the write, as JSON
)
_ACKS_PER_STATEMENT = 5000  # below any driver's limit on bound parameters


@functools.lru_cache(maxsize=None)
def _engine(url: str) -> sa.Engine:
    # One engine per URL and process; pre-ping replaces connections a database restart closed.
    engine = sa.create_engine(url, pool_pre_ping=True)
    _META.create_all(engine, checkfirst=True)
    return engine


class DatabaseJournal(Journal):
    """The journal of search `search`, in the database at `url` (an SQLAlchemy URL)."""

    def __init__(self, url: str, search: str):
        self.url, self.search = url, search
        self._engine = _engine(url)

    def write(self, op: dict[str, Any]) -> None:
        with self._engine.begin() as conn:  # committed when the block ends
            conn.execute(_OUTBOX.insert().values(search=self.search, seq=op["seq"],
                                                 op=json.dumps(op, separators=(",", ":"))))

    def ack(self, seqs: list[int]) -> None:
        with self._engine.begin() as conn:
            for i in range(0, len(seqs), _ACKS_PER_STATEMENT):
                conn.execute(_OUTBOX.delete().where(
                    _OUTBOX.c.search == self.search,
                    _OUTBOX.c.seq.in_(seqs[i:i + _ACKS_PER_STATEMENT])))

    def clear(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(_OUTBOX.delete().where(_OUTBOX.c.search == self.search))

    def last(self) -> int:
        """The last sequence number in use."""
        with self._engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(_OUTBOX.c.seq))
                                .where(_OUTBOX.c.search == self.search)).scalar() or 0

    def pending(self, size: int, after: int = 0,
                upto: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """See `outbox.Outbox.chunks`: a query per chunk, so a long backlog is never in memory
        whole."""
        while True:
            query = (sa.select(_OUTBOX.c.seq, _OUTBOX.c.op)
                     .where(_OUTBOX.c.search == self.search, _OUTBOX.c.seq > after)
                     .order_by(_OUTBOX.c.seq).limit(size))
            if upto is not None:
                query = query.where(_OUTBOX.c.seq <= upto)
            with self._engine.connect() as conn:
                chunk = [self._parsed(seq, text) for seq, text in conn.execute(query)]
            if chunk:
                yield chunk
            if len(chunk) < size:
                return
            after = chunk[-1]["seq"]

    def _parsed(self, seq: int, text: str) -> dict[str, Any]:
        where = f"{self}: row {seq}"
        try:
            return checked(json.loads(text), where)
        except ValueError as exc:  # not JSON: a change made outside searcher
            raise changed(where, f"not JSON ({exc})") from None

    def close(self) -> None:
        pass  # the engine is shared by the process

    def __str__(self) -> str:
        return f"the database {redact(self.url)} (search {self.search})"
