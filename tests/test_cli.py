"""Bad input ends with one clear line and exit status 2, before Ray starts and with nothing written."""
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT


def run(args, cwd):
    return subprocess.run([sys.executable, "-m", "searcher.run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_documents_the_options(tmp_path):
    out = run(["--help"], tmp_path)
    assert out.returncode == 0
    for option in ("--num-samples", "--time-budget", "--epochs", "--data-dir", "--tracking-uri",
                   "--address", "--storage-path"):
        assert option in out.stdout


GOOD = "def space(trial):\n    trial.suggest_int('stages', 1, 2)\n"


@pytest.mark.parametrize("body, extra, words", [
    ("X = 1\n", [], "no `space(trial)` function"),
    (GOOD + "SETTINGS = {'epochz': 2}\n", [], "unknown setting 'epochz'"),
    (GOOD + "SETTINGS = {'dataset': 'folder'}\n", ["--data-dir", "missing"], "image folder"),
    (GOOD, ["--epochs", "0"], "epochs=0"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, body, extra, words):
    space = tmp_path / "space.py"
    space.write_text(textwrap.dedent(body))
    out = run([str(space), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", *extra], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("python -m searcher.run: error:") and words in lines[0]
    assert not (tmp_path / "ray_results").exists()  # nothing started, nothing half-written


def test_unreachable_tracking_server_is_one_line(tmp_path):
    out = run([str(ROOT / "spaces" / "cifar10.py"), "--tracking-uri", "http://127.0.0.1:9"],
              tmp_path)
    assert out.returncode == 2
    assert "cannot reach the MLflow tracking server" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_promote_without_a_search_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "searcher.promote", "--tracking-uri",
                          f"sqlite:///{tmp_path / 'empty.db'}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "no search found" in out.stderr and len(out.stderr.strip().splitlines()) == 1
