"""The free-space watch that stops a search while it can still save itself."""
import shutil

import pytest

from searcher.errors import UserError
from searcher.tune.free_space import MIN_FREE_ENV, FreeSpace


def test_a_disk_below_the_margin_is_told_in_one_line_once_a_second(tmp_path, monkeypatch):
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    monkeypatch.setenv(MIN_FREE_ENV, str(free_mb + 1024))  # more than there is
    watch = FreeSpace(tmp_path / "not" / "made" / "yet")  # where a search's folder will be
    line = watch.short(now=100.0)
    assert line and "\n" not in line and str(tmp_path) in line and "--resume" in line
    assert watch.short(now=100.5) is None  # checked a moment ago: Tune's loop pays nothing
    assert watch.short(now=101.0) == line


def test_room_enough_is_no_line(tmp_path, monkeypatch):
    monkeypatch.setenv(MIN_FREE_ENV, "0")
    assert FreeSpace(tmp_path).short() is None
    monkeypatch.delenv(MIN_FREE_ENV)
    assert FreeSpace(tmp_path).min_free_mb > 0  # the default keeps a margin


@pytest.mark.parametrize("value", ["lots", "-5"])
def test_a_bad_margin_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv(MIN_FREE_ENV, value)
    with pytest.raises(UserError, match=MIN_FREE_ENV):
        FreeSpace(tmp_path)
