"""The suite's own helpers that parallel runs rely on (tests/conftest.py)."""
from __future__ import annotations

import subprocess
import sys

from conftest import kill_matching

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_kill_matching_spares_another_workers_processes_whose_names_run_on():
    """Two pytest-xdist workers start Ray heads in /tmp/rayf<pid>: stopping one worker's head must
    not stop the other's when one pid is a prefix of the other (123 and 1234)."""
    mine = subprocess.Popen([*SLEEP, "--temp-dir=/tmp/rayf123"])
    mine_below = subprocess.Popen([*SLEEP, "--logs-dir=/tmp/rayf123/session_1/logs"])
    theirs = subprocess.Popen([*SLEEP, "--temp-dir=/tmp/rayf1234"])
    try:
        kill_matching("/tmp/rayf123")  # waits for what it kills (and reaps these children)
        assert mine.poll() is not None and mine_below.poll() is not None
        assert theirs.poll() is None
    finally:
        for proc in (mine, mine_below, theirs):
            proc.kill()
            proc.wait()
