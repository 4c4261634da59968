"""Bad input ends with one clear line and exit status 2, before Ray starts and with nothing written."""
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.slow  # runs the command as a process, each one importing torch and Ray


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
    (GOOD, ["--seed", "-1"], "seed=-1"),
    (GOOD + "    return {'dense_layers': 1.0, 'dense_units': 16}\n", [], "dense_layers=1.0"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, body, extra, words):
    space = tmp_path / "space.py"
    space.write_text(textwrap.dedent(body))
    out = run([str(space), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", *extra], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("python -m searcher.run: error:") and words in lines[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "ray_results").exists()  # nothing started, nothing half-written
    assert not (tmp_path / "m.db").exists() or _runs(tmp_path / "m.db") == 0


def _runs(db) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from runs").fetchone()[0]


def _recorded_search(tmp_path, tiny_cifar):
    """A search as `searcher.commands.run` leaves it for --resume: its record, written by the state API."""
    from searcher.spec.settings import make_settings
    from searcher.tune.state import SearchState
    (tmp_path / "space.py").write_text(GOOD)
    folder = tmp_path / "ray_results" / "space-20250101-000000-abcd"
    folder.mkdir(parents=True)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    settings = make_settings({"data_dir": str(tiny_cifar), "seed": 3, "tracking_uri": uri})
    SearchState(folder).write_record({
        "parent_run_id": "0" * 32, "tracking_uri": uri, "tune_path": str(folder),
        "space_file": str(tmp_path / "space.py"), "settings": settings.to_dict(),
        "created": time.time()})
    return folder, settings


@pytest.mark.parametrize("option, value, setting", [
    ("--seed", "4", "seed"), ("--data-dir", "other", "data_dir")])
def test_resume_with_another_seed_or_data_dir_is_one_line(tmp_path, tiny_cifar, option, value,
                                                          setting):
    # Another seed or data folder would change the validation split in the middle of the search.
    folder, settings = _recorded_search(tmp_path, tiny_cifar)
    record = (folder / "searcher_search.json").read_text()
    # An unreachable cluster: if the check is missing, the command fails fast there instead of
    # starting a Ray of its own.
    out = run([str(tmp_path / "space.py"), "--resume", option, value, "--address",
               f"127.0.0.1:{free_port()}"], tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    recorded = getattr(settings, setting)
    assert f"--{setting.replace('_', '-')}" in lines[0] and str(recorded) in lines[0], lines[0]
    assert (folder / "searcher_search.json").read_text() == record
    assert not (tmp_path / "m.db").exists() or _runs(tmp_path / "m.db") == 0


def test_resume_with_an_edited_space_file_is_one_line(tmp_path, tiny_cifar):
    # Tune's saved state runs the space as the search began it; an edited file must not pass
    # for it.
    import hashlib
    folder, _ = _recorded_search(tmp_path, tiny_cifar)
    record = json.loads((folder / "searcher_search.json").read_text())
    record["space_sha256"] = hashlib.sha256(GOOD.encode()).hexdigest()
    (folder / "searcher_search.json").write_text(json.dumps(record))
    (tmp_path / "space.py").write_text(GOOD.replace("1, 2", "1, 3"))  # a stage more
    out = run([str(tmp_path / "space.py"), "--resume", "--address", f"127.0.0.1:{free_port()}"],
              tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "is not the space file space-20250101-000000-abcd ran" in lines[0], lines[0]
    assert "changed since" in lines[0]


def test_resume_may_repeat_the_recorded_seed_and_data_dir(tmp_path, tiny_cifar):
    from searcher.commands.run import check_resume_overrides
    _, settings = _recorded_search(tmp_path, tiny_cifar)
    check_resume_overrides(settings.to_dict(), {"seed": 3, "data_dir": str(tiny_cifar),
                                                "num_samples": 5})  # a limit: may change


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
