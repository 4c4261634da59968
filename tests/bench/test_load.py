"""A benchmark search's load figure: CPU spent outside the search counts, the search's own
processes (ended ones included) do not, and a busy search is flagged in the report's line."""
from __future__ import annotations

import subprocess
import sys
import time

from searcher.bench import load

BURN_S = 1.5
BURN = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {BURN_S}: pass\n"


def test_a_child_of_the_search_counts_as_the_search_even_once_ended():
    with load.measured() as beside:
        subprocess.run([sys.executable, "-c", BURN], check=True)  # ended and reaped: still ours
    assert beside.figures["own_cpu_s"] >= 0.8 * BURN_S, beside.figures


def test_a_grandchild_reaped_unaccounted_counts_as_the_search(tmp_path):
    # Ray's raylet ignores SIGCHLD: a trial's worker process it started leaves no CPU time in
    # its accounts when it ends. So does this child's grandchild, which burns and ends while
    # the child lives on.
    burn = tmp_path / "burn.py"
    burn.write_text(BURN)
    parent = (f"import signal, subprocess, sys, time\n"
              f"signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
              f"subprocess.Popen([sys.executable, {str(burn)!r}])\n"
              f"time.sleep({BURN_S} + 2)\n")
    with load.measured() as beside:
        subprocess.run([sys.executable, "-c", parent], check=True)
    assert beside.figures["own_cpu_s"] >= 0.6 * BURN_S, beside.figures


def test_work_outside_the_search_is_the_load_beside_it(tmp_path):
    done, burn = tmp_path / "done", tmp_path / "burn.py"
    burn.write_text(BURN)
    # An orphan: its parent exits at once, so it is no descendant of this process, as another
    # user's job on the machine is not.
    with load.measured() as beside:
        subprocess.run(["bash", "-c", f"({sys.executable} {burn} && touch {done}) "
                                      f">/dev/null 2>&1 & exit 0"], check=True)
        deadline = time.monotonic() + 60
        while not done.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert beside.figures["other_cpu_s"] >= 0.8 * BURN_S, beside.figures
    assert beside.busy and beside.figures["other_cores"] > load.BUSY_CORES


def test_the_report_names_each_busy_search():
    runs = [{"sampler": "tpe", "seed": 0, "load": {"other_cores": 0.05, "busy": False}},
            {"sampler": "random", "seed": 3, "load": {"other_cores": 0.61, "busy": True}},
            {"sampler": "tpe", "seed": 1}]  # an older run: no load recorded
    busy = load.busy_runs(runs)
    assert busy == [{"sampler": "random", "seed": 3, "other_cores": 0.61}]
    assert "BUSY" in load.busy_line(busy) and "random seed 3 (0.61)" in load.busy_line(busy)
    assert "BUSY" not in load.busy_line([])
