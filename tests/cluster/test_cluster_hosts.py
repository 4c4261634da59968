"""The cluster path as a team walks it, for real: `ray up` of cluster-onprem.yaml over SSH onto
hosts this test makes (tests/cluster/nshosts.py), a search submitted with `searcher submit` from a
"laptop" host (a worker host lost under it), MLflow reached through the documented forward; then
three searches of two users sharing the cluster by weight (one cancelled, resumed, finished),
an MLflow account per user, promotion from the laptop (another user's refused), `ray down`.

The config is cluster-onprem.yaml with its addresses, SSH user and paths changed, nothing else:
the same file mounts, set-up script, MLflow server and start commands run. What the hosts'
"image" brings: Python 3.11 and the project's environment at ~/searcher-env (a link to this
test run's own environment: the hosts cannot download, and setup-node.sh then finds every
requirement installed, as on a baked image); a PostgreSQL server on host `db`; on the head the
two secrets an administrator puts there (~/.pgpass, ~/.searcher/mlflow-admin-password).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nshosts
import pytest
from conftest import ROOT, resumable_space, write_cifar

from searcher.bench.cpu import machine_cpu_s

pytestmark = [pytest.mark.cluster, pytest.mark.services]

DB_PASSWORD = "test-db-password"  # throwaway secrets of throwaway hosts
ADMIN_PASSWORD = "test-admin-password"
EPOCHS = 6  # baselines train all of them: long enough to lose a worker under one (the
# host is lost while one has 3 or more to go, its trials frozen until the store shows that)
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")  # a Ray job's final states
# A Tune trial's process (its actor, named after the function trainable Tune wraps).
TRIAL_PROCESS = "^ray::ImplicitFunc"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _walk_config(text: str, hosts: dict, key: Path, shared: Path) -> str:
    """cluster-onprem.yaml with this test's addresses, user and paths."""
    for old, new in (("10.0.0.10", hosts["head"].ip), ("10.0.0.11", hosts["worker1"].ip),
                     ("10.0.0.12", hosts["worker2"].ip), ("10.0.0.5", hosts["db"].ip),
                     ("ssh_user: searcher", "ssh_user: root"),
                     ("~/.ssh/searcher-cluster", str(key)), ("/shared/", f"{shared}/")):
        assert old in text, old
        text = text.replace(old, new)
    return text


def _start_postgres(db: nshosts.Host, folder: Path) -> None:
    data, sock = folder / "pgdata", folder / "pgsock"
    db.run(f"install -d -o postgres {data} {sock} && runuser -u postgres -- {PG_BIN}/initdb "
           f"-D {data} -A trust >/dev/null")
    with open(data / "pg_hba.conf", "a") as f:
        f.write(f"host all searcher {nshosts.SUBNET}.0/24 scram-sha-256\n")
    db.start(f"runuser -u postgres -- {PG_BIN}/postgres -D {data} -c listen_addresses={db.ip} "
             f"-c unix_socket_directories={sock}", folder / "postgres.log")
    db.run(f"for i in $(seq 100); do {PG_BIN}/pg_isready -q -h {sock} && exit 0; sleep 0.2; done; "
           f"exit 1")
    psql = f"runuser -u postgres -- {PG_BIN}/psql -q -h {sock} -v ON_ERROR_STOP=1"
    db.run(f"{psql} -c \"CREATE ROLE searcher LOGIN PASSWORD '{DB_PASSWORD}'\" && "
           f"{psql} -c 'CREATE DATABASE mlflow OWNER searcher' && "
           f"{psql} -c 'CREATE DATABASE optuna OWNER searcher'")


@pytest.fixture(scope="module")
def network():
    why = nshosts.missing_tools() or (None if PG_BIN else "PostgreSQL is not installed")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the cluster walk cannot run: {why}")
        pytest.skip(why)
    folder = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="searcher-hosts-"))
    folder.chmod(0o755)  # PostgreSQL's user reaches its data folder in here
    net = nshosts.Network(folder)
    net.keep = False
    try:
        yield net
    finally:
        net.close()
        if net.keep:
            print(f"hosts' logs in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder)


# Secrets a user's project may hold, planted in it for the walk (names of the test's own, so
# nothing of the user's is touched): neither `ray up` nor a job may carry them to any node.
PLANTED = (".env.searcher-walk", "cluster/searcher-walk.pem")


def _planted_on(host, folder: str) -> list[str]:
    """The planted files found under `folder` on `host` (the project copy, the jobs' packages)."""
    names = " -o ".join(f"-name {_q(Path(p).name)}" for p in PLANTED)
    return host.run(f"find {folder} \\( {names} \\) 2>/dev/null", check=False).stdout.split()


@pytest.mark.timeout(900)  # 420 s alone; a loaded CI machine takes longer
def test_ray_up_submit_forward_promote_down(network):
    planted = [ROOT / p for p in PLANTED]
    assert not any(p.exists() for p in planted), "a file of the walk's own name is in the way"
    try:
        for p in planted:
            p.write_text("SEARCHER_WALK_SECRET=planted\n")
        _walk(network)
    except BaseException:
        network.keep = True
        raise
    finally:  # what the hosts logged, for a failure's post-mortem
        for p in planted:
            p.unlink(missing_ok=True)
        for name in ("head", "worker1", "worker2"):
            if name in network.hosts:
                network.hosts[name].run(f"cp -r /tmp/ray/session_latest/logs "
                                        f"{network.folder}/{name}/ray-logs", check=False)


def _walk(network) -> None:
    started, cpu = time.monotonic(), [machine_cpu_s()]

    def phase(name: str) -> None:
        """Where the walk's minutes go, for -s or a failure's report, with the machine's CPU
        seconds since the last phase (the walk's own, when it runs alone)."""
        cpu.append(machine_cpu_s())
        print(f"cluster walk: {name} at {time.monotonic() - started:.0f} s "
              f"({cpu[-1] - cpu[-2]:.0f} CPU-s)", file=sys.stderr)

    folder = network.folder
    hosts = {name: network.add(name) for name in ("db", "head", "worker1", "worker2")}
    laptop = network.add("laptop", sshd=False)
    head, worker1, worker2 = hosts["head"], hosts["worker1"], hosts["worker2"]
    _start_postgres(hosts["db"], folder / "db")
    shared = folder / "shared"
    write_cifar(shared / "data", per_batch=300)
    for host in (head, worker1, worker2):  # the image: Python and the project's environment
        host.run(f"ln -s {sys.prefix} ~/searcher-env")
    head.write("~/.pgpass", f"{hosts['db'].ip}:5432:*:searcher:{DB_PASSWORD}\n")
    head.write("~/.searcher/mlflow-admin-password", ADMIN_PASSWORD + "\n")
    # MLflow's artifacts on an export of their own, mounted on the head alone (the config's
    # /srv/mlflow-artifacts): a folder here, bound there in the head's mount namespace only.
    head_only = folder / "head-artifacts"
    head_only.mkdir()
    head.run(f"mount -t tmpfs -o size=1m tmpfs /srv && mkdir /srv/mlflow-artifacts && "
             f"mount --bind {head_only} /srv/mlflow-artifacts")
    config = folder / "cluster.yaml"
    config.write_text(_walk_config((ROOT / "cluster-onprem.yaml").read_text(), hosts,
                                   network.key, shared))
    on_laptop = dict(cwd=ROOT, timeout=600)

    # -- ray up, as the docs say: a token first, then the config --------------------------------
    laptop.run("ray get-auth-token --generate >/dev/null 2>&1", **on_laptop)
    up = laptop.run(f"ray up -y --no-config-cache {config}", **on_laptop)
    assert "setup-node: Python 3.11" in up.stdout + up.stderr
    phase("ray up")
    deadline = time.monotonic() + 240
    # Both workers join: the head's autoscaler runs their set-up over SSH. Each `ray exec` costs
    # a CLI start here and on the head, so the user's check waits for both workers' raylets.
    while not all(any("raylet" in p for p in w.processes()) for w in (worker1, worker2)):
        assert time.monotonic() < deadline, "no raylet started on the workers"
        time.sleep(2)
    while True:
        status = laptop.run(f"ray exec {config} 'ray status'", check=False, **on_laptop).stdout
        if sum(int(n) for n in re.findall(r"^ (\d+) local\.cluster\.node", status, re.M)) == 3:
            break
        assert time.monotonic() < deadline, f"workers did not join:\n{status}"
        time.sleep(5)
    # Nothing gitignored was shipped, nor a secret, to any node.
    assert head.run("test -d ~/searcher/cluster && test ! -e ~/searcher/.venv", check=False
                    ).returncode == 0 and (ROOT / ".venv").is_dir()
    for host in (head, worker1, worker2):
        assert host.run("test -f ~/searcher/cluster/setup-node.sh", check=False).returncode == 0
        assert _planted_on(host, "~/searcher") == [], host.name
    # Ray's token (control of the cluster) and the head's MLflow credentials: the owner's only.
    for host in (head, worker1, worker2):
        modes = host.run("stat -c %a ~/.ray ~/.ray/auth_token").stdout.split()
        assert modes == ["700", "600"], (host.name, modes)
    assert head.run("stat -c %a ~/.mlflow ~/.mlflow/credentials").stdout.split() == ["700", "600"]

    # -- the jobs API through the documented forward; a client without the token is refused ----
    forwards = [laptop.start(f"ray dashboard {config}", folder / "dashboard-forward.log",
                             cwd=ROOT)]
    laptop.run("for i in $(seq 120); do curl -s -o /dev/null http://127.0.0.1:8265 && exit 0; "
               "sleep 0.5; done; exit 1")
    refused = laptop.run("HOME=/tmp/no-token ray job list --address http://127.0.0.1:8265",
                         check=False)
    assert refused.returncode != 0, refused.stdout

    # -- the search, submitted as the docs say, by ann -------------------------------------------
    def searcher(args: str, user: str, **kw) -> str:  # a `searcher` command of `user`'s
        done = laptop.run(f"{sys.executable} -m searcher {args}", env={
            "MLFLOW_TRACKING_USERNAME": user, "SEARCHER_CLUSTER": "http://127.0.0.1:8265"},
            **{**on_laptop, **kw})
        return done.stdout + done.stderr

    out = searcher(f"submit spaces/cifar10.py --data-dir {shared}/data --num-samples 6 "
                   f"--epochs {EPOCHS} --cpus-per-trial 1", "ann")
    job = out.split()[0]  # the search's id, its first job's too
    assert f"searcher cancel {job}" in out, out

    phase("submitted")

    def job_status() -> str:
        """The job's status from the jobs API (what `ray job status` asks, without a CLI start
        each poll)."""
        done = laptop.run("curl -s -H \"Authorization: Bearer $(cat ~/.ray/auth_token)\" "
                          f"http://127.0.0.1:8265/api/jobs/{job}", check=False)
        try:
            return json.loads(done.stdout)["status"]
        except (ValueError, KeyError):
            return "RUNNING"  # the forward or the dashboard busy for a moment

    # A worker host lost mid-search, while a hand-made baseline (ASHA stops none of them) that
    # has reported an epoch on it still has epochs to go: that trial must go on on the other
    # worker. MLflow's store on the db host says which baseline runs where, but it hears of an
    # epoch a moment after it happens, longer on a busy machine: once it shows such a baseline,
    # worker2's trials are frozen (SIGSTOP) until the store has caught up, and the host is lost
    # only if the store still shows one then; a frozen trial cannot finish in the meantime.
    address = json.loads(head.run(f"source ~/searcher-env/bin/activate && RAY_AUTH_MODE=token "
                                  f"python -c {_q(_NODES)}").stdout)
    (on_worker2,) = [node for node, ip in address.items() if ip == worker2.ip]
    deadline, polls = time.monotonic() + 300, 0
    while True:
        polls += 1
        if polls % 10 == 0:  # the job's status costs a CLI start; the store's answer does not
            assert job_status() not in ENDED, "the search ended before a baseline trained there"
        assert time.monotonic() < deadline, "no baseline ever reported from worker2"
        if _in_flight(_baselines_on(hosts["db"], folder / "db", on_worker2)):
            worker2.run(f"pkill -STOP -f {_q(TRIAL_PROCESS)}", check=False)
            if _in_flight(_settled(lambda: _baselines_on(hosts["db"], folder / "db",
                                                         on_worker2))):
                break
            worker2.run(f"pkill -CONT -f {_q(TRIAL_PROCESS)}", check=False)
        time.sleep(0.3)
    worker2.kill()
    phase("worker2 lost")
    deadline = time.monotonic() + 600
    while (state := job_status()) not in ENDED:
        assert time.monotonic() < deadline, "the search did not end"
        time.sleep(3)
    phase("search ended")
    logs = searcher(f"logs {job}", "ann")
    (folder / "job.log").write_text(logs)
    assert state == "SUCCEEDED", logs[-5000:]
    # The job's working directory, unpacked where its driver (head) and trials (worker1) ran:
    # the project is there, the planted secrets are not.
    packages = "/tmp/ray/session_latest/runtime_resources/working_dir_files"
    for host in (head, worker1):
        assert host.run(f"ls {packages}/*/searcher/run.py", check=False).returncode == 0, host.name
        assert _planted_on(host, packages) == [], host.name
    status = searcher(f"status {job}", "ann")  # as the user asks
    assert re.search(rf"^{job}\s+finished\s+ann\s", status, re.M), status
    lines = [line for line in logs.splitlines() if line.startswith("[searcher]")]
    assert re.search(rf"Ray cluster at {head.ip}:6379: 3 nodes", lines[0]), lines[:3]
    assert "ray dashboard" in logs.splitlines()[-1] or any(
        "--remote-port 5000" in line for line in logs.splitlines()[-4:]), logs[-1500:]

    # -- MLflow from the laptop, through the documented forward ----------------------------------
    forwards.append(laptop.start(f"ray dashboard --port 5000 --remote-port 5000 {config}",
                                 folder / "mlflow-forward.log", cwd=ROOT))
    laptop.run("for i in $(seq 120); do curl -s -o /dev/null http://127.0.0.1:5000/health && "
               "exit 0; sleep 0.5; done; exit 1")
    anonymous = laptop.run("curl -s -o /dev/null -w '%{http_code}' "
                           "'http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=5'")
    assert anonymous.stdout == "401"
    laptop.write("~/.mlflow/credentials", "[mlflow]\nmlflow_tracking_username = admin\n"
                                          f"mlflow_tracking_password = {ADMIN_PASSWORD}\n")
    tracking = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    runs = json.loads(laptop.run(
        f"{sys.executable} -c {_q(_RUNS)}", env=tracking, **on_laptop).stdout)
    trials = [r for r in runs if r["parent"]]
    assert len(trials) >= 6 and all(r["status"] == "FINISHED" for r in runs)
    ran_on = [[address[n] for n in (r["nodes"] or "").split(",") if n] for r in trials]
    assert {worker1.ip, worker2.ip} <= {ip for ips in ran_on for ip in ips}, ran_on
    assert head.ip not in {ip for ips in ran_on for ip in ips}  # the head takes no trials
    assert [worker2.ip, worker1.ip] in ran_on, ran_on  # lost its host, went on on the other

    # `searcher list` from the laptop: the search, who submitted it, and where it ran
    listing = laptop.run(f"{sys.executable} -m searcher list", env=tracking, **on_laptop).stdout
    assert re.search(rf"cifar10\s+ann\s+finished\s.*\s{head.ip}:6379, 2 nodes\s", listing), \
        listing
    phase("MLflow read")
    _share(searcher, config, shared, phase)
    _shared_runs_ended_as_they_ran(json.loads(laptop.run(
        f"{sys.executable} -c {_q(_SHARED_RUNS)}", env=tracking, **on_laptop).stdout))
    phase("three searches shared the cluster")
    # -- promote from the laptop -------------------------------------------------------------------
    # one account per person, made by the admin (the laptop's ~/.mlflow/credentials)
    users = {}
    for name in ("ann", "bob"):
        users[name] = {**tracking, "MLFLOW_TRACKING_USERNAME": name,
                       "MLFLOW_TRACKING_PASSWORD": f"{name}-walk-password"}
        laptop.run(f"printf '%s\\n' {name}-walk-password | {sys.executable} -m searcher users add "
                   f"{name} --password-stdin", env=tracking, **on_laptop)
    phase("users added")
    promote = laptop.run(f"{sys.executable} -m searcher promote --experiment cifar10 "
                         f"--data-dir {shared}/data", env=users["ann"], **on_laptop)
    phase("ann promoted")
    assert "champion" in promote.stdout + promote.stderr
    alias = laptop.run(f"{sys.executable} -c {_q(_ALIAS)}", env=users["bob"], **on_laptop).stdout
    assert alias.strip().isdigit()  # bob reads ann's model
    moved = laptop.run(f"{sys.executable} -m searcher promote --experiment cifar10 --force "
                       f"--data-dir {shared}/data", env=users["bob"], check=False, **on_laptop)
    assert moved.returncode == 2 and "belongs to another user" in moved.stderr, moved
    assert len(moved.stderr.strip().splitlines()) == 1, moved.stderr
    again = laptop.run(f"{sys.executable} -c {_q(_ALIAS)}", env=users["bob"], **on_laptop).stdout
    assert again == alias
    # What MLflow keeps, the champion among it, is out of a worker's reach: the worker tries to
    # write where the head's MLflow keeps it, and to reach the server, and both are refused.
    assert list(head_only.rglob("weights.safetensors")), "the champion is not on the head's export"
    assert head.run("stat -c %a /srv/mlflow-artifacts").stdout.strip() == "700"
    tried = worker1.run("touch /srv/mlflow-artifacts/written-by-a-worker", check=False)
    assert tried.returncode != 0 and not list(head_only.rglob("written-by-a-worker"))
    server = worker1.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "
                         f"http://{head.ip}:5000/health", check=False)
    assert server.stdout == "000", server  # nothing listens there: loopback only

    # -- ray down: every process the cluster started, on every host, ends ------------------------
    for forward in forwards:  # the user closes the terminals that held the forwards
        os.killpg(forward.pid, signal.SIGHUP)
        forward.wait(timeout=30)
    phase("promoted")
    laptop.run(f"ray down -y {config}", **on_laptop)
    phase("ray down returned")
    deadline = time.monotonic() + 150
    while left := {h.name: h.processes() for h in (head, worker1) if h.processes()}:
        assert time.monotonic() < deadline, f"still running after ray down: {left}"
        time.sleep(3)
    print(f"cluster walk: {time.monotonic() - started:.0f} s", file=sys.stderr)


# The searches that share the cluster: their space (in the project, so that it ships with the
# jobs), users and weights. A trial trains all its epochs (grace period = epochs), several
# seconds on half a CPU; the cluster has worker1 alone by then: 4 slots of half a CPU. Each
# search has more trials than it can run before the last arrives, however slow the machine
# (they are cancelled once the shares are seen); A is resumed with one trial: it proposes no
# more and ends once the trials it left open have.
SHARE_SPACE = "spaces/searcher-walk-share.py"
SHARERS = {"a": ("ann", 1), "b": ("bob", 1), "p": ("ann", 2)}
SHARE_TRIALS = 200
SHARE_SLOTS = 4


def _share(searcher, config: Path, shared: Path, phase) -> None:
    """A (ann) runs alone on every slot; B (bob, the same weight) and P (ann, twice the weight)
    arrive together and, as A's trials end, hold 1 and 2 slots to A's 1; each is cancelled by its
    user; A is resumed and finishes."""
    space = ROOT / SHARE_SPACE
    space.write_text(resumable_space(3, 1))  # its trials: --num-samples
    ids: dict[str, str] = {}
    slots: list[dict[str, int]] = []
    lines: list[str] = []  # the broker's timeline as `searcher status --timeline` prints it

    def submit(key: str) -> None:
        user, weight = SHARERS[key]
        out = searcher(f"submit {SHARE_SPACE} --data-dir {shared}/data --priority {weight} "
                       f"--num-samples {SHARE_TRIALS} --cpus-per-trial 0.5 "
                       f"--max-concurrent-trials {SHARE_SLOTS}", user)
        ids[key] = out.split()[0]

    def until(seen, limit_s: float = 300.0) -> None:
        """Until the broker's timeline shows a moment where `seen(held by key)`."""
        deadline = time.monotonic() + limit_s
        while True:
            out = searcher("status --timeline", "ann")
            lines[:] = [line for line in out.splitlines() if line.startswith("slots at ")
                        and any(i in line for i in ids.values())]
            slots[:] = [{key: int(n) for key in ids for s, n in re.findall(r"(\S+)=(\d+)", line)
                         if s == ids[key]} for line in lines]
            if any(seen(held) for held in slots):
                return
            assert time.monotonic() < deadline, out[-3000:]
            # the timeline keeps every moment, so a later look misses none; each look is a job
            # on the head (a few CPU-s) that the trials wait for on this 2-core machine
            time.sleep(5)

    try:
        submit("a")
        phase("A submitted")
        until(lambda held: held.get("a") == SHARE_SLOTS)
        phase("A holds all")
        with ThreadPoolExecutor(2) as users:  # bob, and ann again at twice the weight
            for submitted in [users.submit(submit, key) for key in ("b", "p")]:
                submitted.result()
        phase("B and P submitted")
        until(lambda held: (held.get("a"), held.get("b"), held.get("p")) == (1, 1, 2))
        phase("A, B, P at 1, 1, 2")
        early = searcher(f"resume {ids['b']}", "bob", check=False)  # it runs: one line, refused
        assert f"{ids['b']} is still running" in early and len(early.strip().splitlines()) == 1, \
            early
        for line in lines:  # for -s, and a failure's report
            for key, search in ids.items():
                line = line.replace(search, key.upper())
            print(line, file=sys.stderr)
        with ThreadPoolExecutor(len(SHARERS)) as users:  # each user cancels their own, at once
            cancels = {key: users.submit(searcher, f"cancel {ids[key]}", user)
                       for key, (user, _) in SHARERS.items()}
        for key, out in cancels.items():
            assert f"Cancelled {ids[key]}" in out.result(), out.result()
        phase("cancelled")
        table = searcher("status", "bob")
        for key, (user, _) in SHARERS.items():
            assert re.search(rf"^{ids[key]}\s+cancelled\s+{user}\s", table, re.M), table
        out = searcher(f"resume {ids['a']} --num-samples 1", "ann")
        assert f"{ids['a']}.resume-1" in out, out
        phase("A resumed")
        # ann follows it to its end, through a forward of the cluster's config that the
        # command opens and closes itself
        followed = searcher(f"logs {ids['a']} --follow --cluster {config}", "ann", timeout=400)
        phase("A followed to its end")
        assert f"===== {ids['a']}.resume-1 succeeded =====" in followed, followed[-4000:]
        table = searcher("status", "ann")
        assert re.search(rf"^{ids['a']}\s+finished\s", table, re.M), table
    finally:
        space.unlink(missing_ok=True)
    assert f"===== {ids['a']} (failed)" in followed  # its first job, cancelled, then the resume
    assert "cancelled by ann: the search is saved" in followed


def _shared_runs_ended_as_they_ran(runs: list[dict]) -> None:
    """The sharing searches' parent runs: A FINISHED once resumed, B and P KILLED, each saying
    who cancelled it, each logged as its submitter's; each trial ran once; A's all finished, B's
    and P's finished or left open to resume."""
    parents = {r["id"]: r for r in runs if r["role"] == "search"}
    got = []
    for parent in parents.values():
        trials = [r for r in runs if r["parent"] == parent["id"]]
        ids = [t["trial_id"] for t in trials]
        assert len(ids) == len(set(ids)), parent  # none ran twice
        # (a search cancelled as its first trials were granted may have started none)
        assert ids or parent["status"] == "KILLED", parent
        assert all(t["user"] == parent["user"] for t in trials)
        ended = {"FINISHED"} if parent["status"] == "FINISHED" else {"FINISHED", "RUNNING"}
        assert {t["status"] for t in trials} <= ended, (parent, trials)
        got.append((parent["user"], parent["status"], parent["cancelled"]))
    assert sorted(got) == sorted([("ann", "FINISHED", "cancelled by ann"),
                                  ("bob", "KILLED", "cancelled by bob"),
                                  ("ann", "KILLED", "cancelled by ann")]), got


def _baselines_on(db: nshosts.Host, folder: Path, node: str) -> list[tuple[str, str, int]]:
    """(run, status, last epoch) of the baseline trial runs that reported an epoch from `node`,
    as MLflow's store has them."""
    sql = ("SELECT r.run_uuid, r.status, m.step FROM runs r "
           "JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'searcher.nodes' "
           "JOIN tags b ON b.run_uuid = r.run_uuid AND b.key = 'searcher.baseline' "
           "JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = 'val_acc' "
           f"WHERE n.value LIKE '%{node}%' ORDER BY r.run_uuid")
    out = db.run(f"runuser -u postgres -- {PG_BIN}/psql -At -F ' ' -h {folder}/pgsock "
                 f"-d mlflow -c \"{sql}\"").stdout
    return [(run, status, int(step)) for run, status, step in map(str.split, out.splitlines())]


def _in_flight(baselines: list[tuple[str, str, int]]) -> bool:
    """Whether one of `baselines` is running with at least 3 epochs to go."""
    return any(status == "RUNNING" and step <= EPOCHS - 3 for _, status, step in baselines)


def _settled(read, still_s: float = 5.0, limit_s: float = 120.0):
    """What `read()` returns once it has not changed for `still_s` seconds."""
    last, since, deadline = read(), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - since < still_s:
        assert time.monotonic() < deadline, f"the store did not settle: {last}"
        time.sleep(1)
        if (now := read()) != last:
            last, since = now, time.monotonic()
    return last


def _q(code: str) -> str:
    return "'" + code.replace("'", "'\"'\"'") + "'"


_RUNS = """
import json, mlflow
client = mlflow.MlflowClient()
rows = []
for e in client.search_experiments():
    for r in client.search_runs([e.experiment_id], max_results=1000):
        rows.append({"status": r.info.status, "parent": r.data.tags.get("mlflow.parentRunId"),
                     "nodes": r.data.tags.get("searcher.nodes")})
print(json.dumps(rows))
"""

_SHARED_RUNS = """
import json, mlflow
client = mlflow.MlflowClient()
exp = client.get_experiment_by_name("searcher-walk-share")
print(json.dumps([{"id": r.info.run_id, "status": r.info.status, "user": r.info.user_id,
                   "role": r.data.tags.get("searcher.role"),
                   "parent": r.data.tags.get("mlflow.parentRunId"),
                   "trial_id": r.data.tags.get("searcher.trial_id"),
                   "cancelled": r.data.tags.get("searcher.cancelled")}
                  for r in client.search_runs([exp.experiment_id], max_results=1000)]))
"""

_NODES = """
import json, ray
ray.init(address="auto", logging_level="ERROR")
print(json.dumps({n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}))
"""

_ALIAS = """
import mlflow
print(mlflow.MlflowClient().get_model_version_by_alias("cifar10", "champion").version)
"""
