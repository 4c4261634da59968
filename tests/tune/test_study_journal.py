"""The study's journal file: no fsync on Tune's loop, and Optuna reads every write back."""
import os

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from searcher.tune.state import STUDY_FILE, SearchState


def _study(state: SearchState) -> optuna.Study:
    return optuna.create_study(study_name=state.name, storage=state.storage(),
                               direction="maximize", sampler=optuna.samplers.RandomSampler(0))


def test_the_study_journal_never_fsyncs_and_optuna_reads_it_back(tmp_path, monkeypatch):
    def no_fsync(fd):
        raise AssertionError("the study journal fsynced on Tune's loop")

    monkeypatch.setattr(os, "fsync", no_fsync)
    state = SearchState(tmp_path)
    study = _study(state)
    for value in (0.3, 0.7):
        trial = study.ask()
        trial.suggest_int("stages", 1, 4)
        trial.report(value / 2, 1)
        study.tell(trial, value)
    pruned = study.ask()
    pruned.report(0.1, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    monkeypatch.undo()

    # Optuna's own backend, as a resume on another machine would read the file
    again = optuna.load_study(study_name=state.name, storage=JournalStorage(
        JournalFileBackend(str(tmp_path / STUDY_FILE))))
    assert [t.state.name for t in again.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert again.best_value == pytest.approx(0.7)
    assert again.trials[1].intermediate_values == {1: pytest.approx(0.35)}
    assert again.trials[2].intermediate_values == {1: pytest.approx(0.1)}
    assert not list(tmp_path.glob("*.lock"))  # the writers' lock is released after each write


def test_a_torn_last_line_is_cut_on_open_and_the_study_goes_on(tmp_path):
    # A write cut short (a full disk, a lost head) leaves half a line without its newline;
    # Optuna skips it while it is last, but a write appended after it merges with it into one
    # unreadable line, and the next read of the journal raises.
    state = SearchState(tmp_path)
    study = _study(state)
    for value in (0.3, 0.7):
        trial = study.ask()
        trial.suggest_int("stages", 1, 4)
        study.tell(trial, value)
    journal = tmp_path / STUDY_FILE
    with open(journal, "ab") as f:
        f.write(b'{"op_code":4,"worker_id":"x","trial_id":2,"param_na')  # the torn write

    again = optuna.load_study(study_name=state.name, storage=state.storage())
    trial = again.ask()  # writes after the torn line: crashed before
    trial.suggest_int("stages", 1, 4)
    again.tell(trial, 0.5)

    read = optuna.load_study(study_name=state.name, storage=JournalStorage(
        JournalFileBackend(str(journal))))  # Optuna's own reader, from the file alone
    assert [t.state.name for t in read.trials] == ["COMPLETE"] * 3
    assert [t.value for t in read.trials] == pytest.approx([0.3, 0.7, 0.5])
    assert journal.read_bytes().endswith(b"\n")
