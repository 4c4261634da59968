"""One driver per search: a second is refused in one line, a dead driver's lock is taken over."""
from __future__ import annotations

import subprocess
import sys

import pytest

from searcher.errors import UserError
from searcher.tune.driver_lock import hold

_HOLDER = """
import sys, time
from pathlib import Path
from searcher.tune.driver_lock import hold
with hold("s1", Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None):
    print("held", flush=True)
    time.sleep(600)
"""


def _first_driver(*args: str) -> subprocess.Popen:
    driver = subprocess.Popen([sys.executable, "-c", _HOLDER, *args], stdout=subprocess.PIPE,
                              text=True)
    assert driver.stdout.readline().strip() == "held"
    return driver


@pytest.mark.parametrize("store", ["files", "postgres"])
def test_a_second_driver_is_refused_and_a_dead_ones_lock_is_taken_over(store, tmp_path, request):
    database = request.getfixturevalue("postgres")("lock") if store == "postgres" else None
    first = _first_driver(str(tmp_path), *([database] if database else []))
    try:
        with pytest.raises(UserError, match=rf"search s1 is being run by another driver "
                                            rf"\(.*pid {first.pid} on "):
            with hold("s1", tmp_path, database):
                pytest.fail("two drivers held one search")
        with hold("s2", tmp_path / "other", database):  # another search is free
            pass
    finally:
        first.kill()  # a driver killed: no clean-up of its own
        first.wait()
    with hold("s1", tmp_path, database):  # the next driver takes the search over
        pass
