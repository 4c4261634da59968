"""Bad input ends with one clear line and exit status 2, before Ray starts and with nothing written."""
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import ROOT, free_port


def run(args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "searcher.run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


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


@pytest.mark.parametrize("form", ["--address {}", "RAY_ADDRESS=ray://{}"])
def test_unreachable_ray_cluster_is_one_line_and_logs_nothing(tmp_path, tiny_cifar, form):
    address = f"127.0.0.1:{free_port()}"  # free a moment ago: nothing listens there
    (tmp_path / "space.py").write_text(GOOD)
    db = tmp_path / "m.db"
    option, env = (["--address", address], {}) if form.startswith("--") else \
        ([], {"RAY_ADDRESS": f"ray://{address}"})
    start = time.monotonic()
    out = run([str(tmp_path / "space.py"), "--tracking-uri", f"sqlite:///{db}",
               "--data-dir", str(tiny_cifar), *option], tmp_path, env)
    assert time.monotonic() - start < 30, "ray.init was left to retry"
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Ray cluster" in lines[0], out.stderr
    assert address in lines[0]
    if db.exists():  # the store may be opened, but no search run may be left in it
        with sqlite3.connect(db) as con:
            assert con.execute("select count(*) from runs").fetchone() == (0,)


def test_strict_stops_at_an_unreadable_image_with_one_line(tmp_path):
    from PIL import Image
    for name in ("cats", "dogs"):
        (tmp_path / "pets" / "train" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pets" / "train" / name / "0.png")
    (tmp_path / "pets" / "train" / "cats" / "1.jpg").write_bytes(b"")
    (tmp_path / "space.py").write_text(GOOD + "SETTINGS = {'dataset': 'folder', 'image_size': 8}\n")
    out = run([str(tmp_path / "space.py"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
               "--data-dir", str(tmp_path / "pets"), "--strict"], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read image" in lines[0] and "1.jpg" in lines[0], out.stderr
