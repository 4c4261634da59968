"""One driver per search: a second driver on a search that one is running (a second `--resume`)
is refused with one line, before it touches anything.

Two drivers on one search collide everywhere: their outbox writes, Optuna's study, Tune's state.
The lock lives as long as the driver that holds it and dies with it, so the next `--resume` of a
killed driver's search takes it over with no clean-up:
- state in files: an exclusive `flock` on `driver.lock` in the search's folder, which the kernel
  drops when the process ends (on NFS the server drops a dead client's locks when its lease
  runs out); the file names the holder, for the refusal;
- state in PostgreSQL (`--study-storage`): a session advisory lock keyed by the search's name,
  which the server drops when the holder's connection closes; its connection is named after the
  holder, for the refusal.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import zlib
from pathlib import Path
from typing import Iterator

from searcher.errors import UserError

LOCK_FILE = "driver.lock"


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"


@contextlib.contextmanager
def hold(name: str, folder: Path, database: str | None = None) -> Iterator[None]:
    """Hold the search `name`'s lock (in `database` when it is PostgreSQL, else in `folder`)
    until the block ends; UserError if another driver holds it."""
    if database is not None and database.startswith("postgresql"):
        with _advisory(name, database):
            yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = path.read_text().strip() or "another process"
            raise UserError(f"search {name} is being run by another driver ({who}); wait for "
                            f"it to end or stop it, then --resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, _holder().encode())
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def _advisory(name: str, database: str) -> Iterator[None]:
    import psycopg

    url = database.replace("postgresql+psycopg://", "postgresql://", 1)
    key = zlib.crc32(f"searcher:{name}".encode())
    with psycopg.connect(url, autocommit=True, application_name=f"searcher driver {_holder()}"[:63]
                         ) as connection:
        taken = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if not taken:
            row = connection.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted", (key,)).fetchone()
            who = row[0] if row and row[0] else "another connection"
            raise UserError(f"search {name} is being run by another driver ({who}); wait for it "
                            f"to end or stop it, then --resume")
        yield  # the lock goes with the connection
