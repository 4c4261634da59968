"""The search record (`searcher_search.json`): what `--resume` needs survives a write cut short,
and a damaged one is one line naming the file, never a JSONDecodeError."""
from __future__ import annotations

import json
import os

import pytest

from searcher.errors import UserError
from searcher.spec.settings import make_settings
from searcher.tune.state import SEARCH_FILE, STUDY_STORAGE_ENV, SearchState, find_resumable

RECORD = {"parent_run_id": "p1", "tune_path": "somewhere", "created": 1.0}


@pytest.fixture()
def settings(tmp_path, monkeypatch):
    monkeypatch.delenv(STUDY_STORAGE_ENV, raising=False)  # the record is a file here
    return make_settings({"storage_path": str(tmp_path / "ray")})


def _state(tmp_path, name="tiny-20300101-000000-abcd") -> SearchState:
    state = SearchState(tmp_path / "ray" / name)
    state.folder.mkdir(parents=True)
    state.write_record(RECORD)
    return state


def test_the_record_reads_back_and_is_found_for_resume(tmp_path, settings):
    state = _state(tmp_path)
    assert state.read_record() == RECORD
    assert find_resumable(settings, "tiny", None).folder == state.folder
    state.mark_finished()
    assert state.read_record() == {**RECORD, "finished": True}
    assert [p.name for p in state.folder.iterdir()] == [SEARCH_FILE]  # no temporary file left


@pytest.mark.parametrize("damage", [b"", b'{"parent_run_id": "p1", "tune_', b"null"])
def test_a_damaged_record_is_one_line_naming_the_file(tmp_path, settings, damage):
    state = _state(tmp_path)
    record = state.folder / SEARCH_FILE
    record.write_bytes(damage)
    for resume in (state.read_record, lambda: find_resumable(settings, "tiny", None)):
        with pytest.raises(UserError) as error:
            resume()
        message = str(error.value)
        assert str(record) in message and "\n" not in message and "--resume" in message
        assert not isinstance(error.value, json.JSONDecodeError)


def test_a_write_cut_short_leaves_the_previous_record(tmp_path, settings, monkeypatch):
    state, raised = _state(tmp_path), None

    def crash(src, dst):  # the driver dies between writing the new record and putting it in place
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    try:
        state.mark_finished()
    except OSError as exc:
        raised = exc
    monkeypatch.undo()
    assert state.read_record() == RECORD  # still resumable, as before the write
    assert str(raised) == "killed"  # and the driver hears of it
    assert find_resumable(settings, "tiny", None).folder == state.folder
    assert [p.name for p in state.folder.iterdir()] == [SEARCH_FILE]


@pytest.mark.parametrize("kept_in", ["file", "database"])
def test_resume_takes_only_its_own_spaces_searches(tmp_path, monkeypatch, kept_in):
    """Space `tiny`'s --resume never picks a search of space `tiny-big`, even a newer one."""
    import optuna

    monkeypatch.delenv(STUDY_STORAGE_ENV, raising=False)
    database = f"sqlite:///{tmp_path / 'optuna.db'}" if kept_in == "database" else None
    settings = make_settings({"storage_path": str(tmp_path / "ray"), "study_storage": database})

    def search(name: str, created: float) -> SearchState:
        state = SearchState(tmp_path / "ray" / name, database)
        state.folder.mkdir(parents=True)
        if database:
            optuna.create_study(study_name=name, storage=database)
        state.write_record({**RECORD, "created": created})
        if database is None:  # files are ordered by their time
            os.utime(state.folder / SEARCH_FILE, (created, created))
        return state

    other = search("tiny-big-20300101-000001-beef", 2.0)
    with pytest.raises(UserError, match="no unfinished search of tiny"):
        find_resumable(settings, "tiny", None)
    own = search("tiny-20300101-000000-abcd", 1.0)  # older than tiny-big's
    assert find_resumable(settings, "tiny", None).name == own.name
    assert find_resumable(settings, "tiny-big", None).name == other.name
