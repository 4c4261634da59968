"""One account per person, for real: an `mlflow server --app-name basic-auth` with
`default_permission = READ` as cluster/start-mlflow.sh starts it; the admin adds alice and bob with
`searcher users add`, each then works with the credentials file the command printed; alice
promotes the admin's search, bob reads it all but may not move her alias or delete her versions."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from searcher.commands import promote as promote_mod
from searcher.commands import users as users_mod
from searcher.tracking import accounts
from tests.commands.test_promote import logged_search
from tests.conftest import BIN, free_port

pytestmark = pytest.mark.services  # starts a real MLflow server with its auth app

ADMIN_PASSWORD = "admin-password-for-tests"
USERS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The cluster's MLflow: basic auth, every user reads everything; its URI."""
    root = tmp_path_factory.mktemp("auth-server")
    (root / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = admin\nauth_cache_ttl_seconds = 60\n")  # as start-mlflow.sh sets it
    port = free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                if requests.get(uri + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def as_admin(monkeypatch, uri: str) -> None:
    """The admin's credentials from the admin's own environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)


def as_user(monkeypatch, home, uri: str) -> None:
    """A user on their own machine: their own ~/.mlflow/credentials, nothing in the environment."""
    for name in USERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)


def refusal(capsys, main, argv: list[str]) -> str:
    capsys.readouterr()  # what came before
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, never a traceback
    return err


@pytest.fixture(scope="module")
def homes(server, tmp_path_factory):
    """alice's and bob's home folders, each with the credentials file `searcher users add`
    printed for them (mode 600), made by the admin; the module's store holds a search by the
    admin, in experiment "tiny"."""
    mp = pytest.MonkeyPatch()
    homes = {}
    try:
        as_admin(mp, server)
        for name in ("alice", "bob"):
            out = _run_capture(users_mod.main, ["add", name])
            lines = out.splitlines()
            assert lines[0].startswith(f"Added the user {name}") and "only place" in lines[0]
            home = tmp_path_factory.mktemp(name)
            (home / ".mlflow").mkdir(mode=0o700)
            (home / ".mlflow" / "credentials").write_text("\n".join(lines[1:]) + "\n")
            (home / ".mlflow" / "credentials").chmod(0o600)
            homes[name] = home
    finally:
        mp.undo()
    return homes


def _run_capture(main, argv: list[str]) -> str:
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def test_the_admin_adds_a_user_per_person_with_one_command(server, homes, monkeypatch, capsys):
    as_admin(monkeypatch, server)
    assert users_mod.main(["list"]) == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["admin  (admin)", "alice", "bob"]
    # alice's printed file is all she needs: the server knows her by it
    text = (homes["alice"] / ".mlflow" / "credentials").read_text()
    assert text.startswith("[mlflow]\nmlflow_tracking_username = alice\n")
    as_user(monkeypatch, homes["alice"], server)
    assert MlflowClient(server).search_experiments() is not None

    as_admin(monkeypatch, server)
    assert "the user alice already exists" in refusal(capsys, users_mod.main, ["add", "alice"])
    assert "there is no user carol" in refusal(capsys, users_mod.main, ["remove", "carol"])
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("short\n"))
    assert "at least 12 characters" in refusal(capsys, users_mod.main,
                                               ["add", "carol", "--password-stdin"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-admin-password")
    assert "401 UNAUTHENTICATED" in refusal(capsys, users_mod.main, ["add", "carol"])
    as_user(monkeypatch, homes["bob"], server)
    err = refusal(capsys, users_mod.main, ["add", "carol"])
    assert "not an admin" in err and "403 PERMISSION_DENIED" in err
    err = refusal(capsys, users_mod.main, ["list", "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    assert "cannot reach the MLflow tracking server" in err


def test_only_a_models_owner_or_an_admin_moves_its_alias(server, homes, tmp_path, tiny_cifar,
                                                          monkeypatch, capsys):
    as_admin(monkeypatch, server)
    logged_search(tmp_path, tiny_cifar, server)  # the head's driver logs searches as the admin

    # alice may only read the admin's experiment: she promotes it all the same, into her model
    as_user(monkeypatch, homes["alice"], server)
    argv = ["--experiment", "tiny", "--data-dir", str(tiny_cifar), "--model-name", "tiny-alice"]
    assert promote_mod.main(argv) == 0
    client = MlflowClient(server)
    version = client.get_model_version_by_alias("tiny-alice", "champion")
    promotion = client.get_run(version.run_id)
    assert client.get_experiment(promotion.info.experiment_id).name == "tiny by alice"

    # bob reads her search and her model, and may not move her alias: one line, nothing logged
    as_user(monkeypatch, homes["bob"], server)
    client = MlflowClient(server)
    assert client.get_run(promotion.info.run_id).info.run_id == promotion.info.run_id
    assert client.get_registered_model("tiny-alice").name == "tiny-alice"
    runs_before = len(client.search_runs([promotion.info.experiment_id]))
    err = refusal(capsys, promote_mod.main, [*argv[:-1], "tiny-alice", "--force"])
    assert err == ("searcher promote: error: models:/tiny-alice belongs to another user (MLflow "
                   "answered 403 PERMISSION_DENIED; you hold READ on it): promote under a model "
                   "name of your own with --model-name, or ask its owner or an admin"
                   ).replace("searcher promote", promote_mod.PROG)
    assert client.get_experiment_by_name("tiny by bob") is None
    assert len(client.search_runs([promotion.info.experiment_id])) == runs_before
    for move in (lambda: client.set_registered_model_alias("tiny-alice", "champion", "1"),
                 lambda: client.delete_registered_model_alias("tiny-alice", "champion"),
                 lambda: client.delete_model_version("tiny-alice", version.version)):
        with pytest.raises(MlflowException) as refused:
            move()
        assert refused.value.error_code == "PERMISSION_DENIED"
    # ... and promotes under a name of his own
    assert promote_mod.main([*argv[:-1], "tiny-bob"]) == 0
    assert client.get_model_version_by_alias("tiny-bob", "champion").version == "1"

    # alice moves her own alias; the admin may move or delete anyone's
    as_user(monkeypatch, homes["alice"], server)
    MlflowClient(server).set_registered_model_alias("tiny-alice", "old", version.version)
    as_admin(monkeypatch, server)
    admin = MlflowClient(server)
    accounts.check_may_update_model(admin, "tiny-alice")  # promote lets an admin into any model
    admin.set_registered_model_alias("tiny-bob", "champion", "1")
    admin.delete_model_version("tiny-alice", version.version)
    assert admin.search_model_versions("name = 'tiny-alice'") == []
