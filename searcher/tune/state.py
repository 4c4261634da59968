"""Where a search's resumable state lives: its Optuna study and its search record (MLflow parent
run, settings, Tune's path), in files beside Tune's state or in a database any machine can reach.

Without a database (local use) both are files in the search folder: `optuna_journal.log` and
`searcher_search.json`. With `study_storage` (an SQLAlchemy URL such as postgresql://host/optuna)
the study is named after the search and the record is one of its user attributes, so a driver on
another machine, in an empty working folder, resumes it with the same settings; Tune's own state is
on the shared `storage_path`. The search folder then only holds this machine's outputs
(leaderboard.txt, unlogged.txt).
"""
from __future__ import annotations

import functools
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from searcher.errors import UserError
from searcher.redaction import credentials_in, redact  # redact: also this module's, for callers

SEARCH_FILE = "searcher_search.json"  # beside Tune's state: what `--resume` needs to go on
STUDY_FILE = "optuna_journal.log"  # the Optuna study, every ask and tell
RECORD_ATTR = "searcher.search"  # with a database: the study's user attribute holding the record
STUDY_STORAGE_ENV = "SEARCHER_STUDY_STORAGE"
STORAGE_PATH_ENV = "SEARCHER_STORAGE_PATH"
URL_SETTINGS = ("tracking_uri", "study_storage", "storage_path")  # may carry credentials
# The settings a resume may change, kept in the record for the next one: the search holds itself
# to them (searcher.tune.limits), not Tune, which restores its own as they were. A record marked
# OWN_LIMITS is a search started so; one started by an earlier searcher has Tune's limits.
LIMITS = ("num_samples", "time_budget_s")
OWN_LIMITS = "own_limits"


def storage_root(settings) -> str:
    """Where Tune keeps trials and checkpoints: a local folder, NFS, or a URI such as s3://."""
    return (settings.storage_path or os.environ.get(STORAGE_PATH_ENV)
            or str(Path.cwd() / "ray_results"))


def state_root(settings) -> Path:
    """Where the search folders go: beside Tune's state when that is a file system, else in
    ./searcher_state (a journal needs a real file)."""
    root = storage_root(settings)
    return Path.cwd() / "searcher_state" if "://" in root else Path(root)


def study_database(settings) -> str | None:
    """The study's database URL: the `study_storage` setting, else $SEARCHER_STUDY_STORAGE;
    None keeps the study in a journal file in the search folder. A URL carrying a secret, in
    any form, is refused: the settings are logged with every search and kept in its record."""
    url = settings.study_storage or os.environ.get(STUDY_STORAGE_ENV) or None
    found = credentials_in(url) if url else []
    if found:
        raise UserError(f"study_storage {redact(url)} carries {found[0]}, which would be logged "
                        f"with the search; leave it out and put it in ~/.pgpass or $PGPASSWORD")
    return url


@functools.lru_cache(maxsize=None)
def _database(url: str) -> optuna.storages.RDBStorage:
    # One engine per URL and process; pre-ping replaces connections a database restart closed.
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except ImportError as exc:
        raise UserError(f"study_storage {redact(url)}: no database driver ({exc}); install "
                        f"searcher[postgres]") from None
    except Exception as exc:  # SQLAlchemy's OperationalError and kin: one line is what helps
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open the study database {redact(url)} ({first}); start it or "
                        f"fix --study-storage / ${STUDY_STORAGE_ENV}") from None


def check_study_storage(settings) -> None:
    """Fail at once, with one line, if the study's database cannot be opened (before any run)."""
    database = study_database(settings)
    if database is not None:
        _database(database)


@dataclass(frozen=True)
class SearchState:
    """One search's state. `folder` is named after the search (the study and Tune's experiment
    carry the same name); `database` is the study's database, None for the journal file."""
    folder: Path
    database: str | None = None

    @property
    def name(self) -> str:
        return self.folder.name

    def storage(self) -> optuna.storages.BaseStorage:
        if self.database is not None:
            return _database(self.database)
        from searcher.tune.study_journal import FlushedJournalFile
        return optuna.storages.JournalStorage(FlushedJournalFile(str(self.folder / STUDY_FILE)))

    def load_study(self) -> optuna.Study:
        """The search's Optuna study, with every trial told so far (also after a resume)."""
        return optuna.load_study(study_name=self.name, storage=self.storage())

    def write_record(self, record: dict[str, Any]) -> None:
        record = _redacted(record)
        if self.database is None:
            _write_atomically(self.folder / SEARCH_FILE, json.dumps(record, indent=2))
        else:
            self.load_study().set_user_attr(RECORD_ATTR, record)

    def read_record(self) -> dict[str, Any]:
        if self.database is None:
            return _read_record_file(self.folder / SEARCH_FILE)
        return self.load_study().user_attrs[RECORD_ATTR]

    def mark_finished(self) -> None:
        self.write_record({**self.read_record(), "finished": True})


def _redacted(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the secrets its URLs may carry: a tracking URI with a password is
    kept as user:***@ (a resume then takes --tracking-uri again, or MLflow's credentials from
    $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD)."""
    settings = record.get("settings")
    if isinstance(settings, dict):
        settings = {k: redact(v) if k in URL_SETTINGS and isinstance(v, str) else v
                    for k, v in settings.items()}
        record = {**record, "settings": settings}
    if isinstance(record.get("tracking_uri"), str):
        record = {**record, "tracking_uri": redact(record["tracking_uri"])}
    return record


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` by `text` whole: a driver killed mid-write leaves the previous file, which
    `--resume` still reads. The new text is on disk before the rename makes it the file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: rename is atomic
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_record_file(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"the search record {path} is damaged ({exc}), so that search cannot be "
                        f"resumed; remove {path} to resume another search, or pass another "
                        f"search's experiment folder to --resume") from None
    return record


def load_study(folder: Path, database: str | None = None) -> optuna.Study:
    return SearchState(Path(folder), database).load_study()


def _records(database: str) -> dict[str, dict[str, Any]]:
    """Search name -> record, for every searcher study in the database."""
    return {s.study_name: s.user_attrs[RECORD_ATTR]
            for s in _database(database).get_all_studies() if RECORD_ATTR in s.user_attrs}


def new_search_name(space_name: str) -> str:
    """A new search's name (its folder's, its study's, its Tune experiment's): the space's name,
    when it started, and 4 random hex digits."""
    return f"{space_name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def is_search_of(name: str, space_name: str) -> bool:
    """Whether `name` is a search of `space_name` as new_search_name made it; space `tiny`'s
    searches are not those of `tiny-big`."""
    return re.fullmatch(rf"{re.escape(space_name)}-\d{{8}}-\d{{6}}-[0-9a-f]{{4}}", name) is not None


def find_resumable(settings, space_name: str, path: str | None) -> SearchState:
    """The search to resume: `path` (a search folder, or a search's name),
    else this space's latest unfinished search (in the database when there is one)."""
    database = study_database(settings)
    if path and (Path(path) / SEARCH_FILE).is_file():
        return SearchState(Path(path))
    if database is None:
        if path and (state_root(settings) / path / SEARCH_FILE).is_file():  # a search's name
            return SearchState(state_root(settings) / path)
        if path:
            raise UserError(f"{path} is not a searcher experiment folder (no {SEARCH_FILE})")
        candidates = sorted((marker for marker in state_root(settings).glob(f"*/{SEARCH_FILE}")
                             if is_search_of(marker.parent.name, space_name)),
                            key=lambda p: p.stat().st_mtime, reverse=True)
        for marker in candidates:
            if not _read_record_file(marker).get("finished"):
                return SearchState(marker.parent)
        raise UserError(f"no unfinished search of {space_name} under {state_root(settings)}; "
                        f"pass the experiment folder to --resume")
    records = _records(database)
    if path:
        name = Path(path).name
        if name not in records:
            raise UserError(f"no search {name!r} in the study database {redact(database)}; "
                            f"--resume takes a search's name (its experiment folder's name)")
    else:
        open_ = [(r.get("created", 0.0), n) for n, r in records.items()
                 if is_search_of(n, space_name) and not r.get("finished")]
        if not open_:
            raise UserError(f"no unfinished search of {space_name} in the study database "
                            f"{redact(database)}; pass the search's name to --resume")
        name = max(open_)[1]
    return SearchState(state_root(settings) / name, database)
