"""The cluster configs pass Ray's own validation, set nodes up alike, pin one Ray, and keep the
security settings they promise; the AWS roles allow what Ray's AWS provider calls. No Ray starts."""
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIGS = ["cluster.yaml", "cluster-onprem.yaml"]
AWS = ROOT / "cluster" / "aws"
SUBMIT = "searcher submit spaces/cifar10.py"
DOCS = ["README.md", "docs/cluster.md", *CONFIGS]


def _config(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(lines) -> set:
    """Name, extras and specifier of each requirement, comparable across files."""
    reqs = (Requirement(line.split("#")[0].strip()) for line in lines
            if line.split("#")[0].strip())
    return {(canonicalize_name(r.name), frozenset(r.extras), str(r.specifier)) for r in reqs}


def _start_mlflow_args(config: dict) -> list[str]:
    head = [c for c in config["head_setup_commands"] if "cluster/start-mlflow.sh" in c]
    assert len(head) == 1, head
    return head[0].split()[2:]


# ---------------------------------------------------------------- Ray's schema, one set-up


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_validation(name):
    validate_config(prepare_config(_config(name)))  # as `ray up` does; raises on a violation


def test_a_bad_field_is_caught():
    config = _config("cluster.yaml")
    config["max_workerz"] = 3
    with pytest.raises(Exception, match="max_workerz"):
        validate_config(prepare_config(config))


def test_both_configs_set_nodes_up_and_start_them_alike():
    aws, onprem = (_config(n) for n in CONFIGS)
    for config in (aws, onprem):
        assert config["setup_commands"][0] == "bash ~/searcher/cluster/setup-node.sh"
        assert config["file_mounts"]["~/searcher"] == "."
        assert config["rsync_filter"] == [".gitignore", ".rayignore"]  # .venv/, secrets, stores stay
        # the same script; a provider may set Ray's own switches before it (VAR=value ...)
        heads = [re.sub(r"^(\w+=\S* )*", "", c) for c in config["head_start_ray_commands"]]
        assert heads == ["bash ~/searcher/cluster/start-ray.sh head"]
        assert config["worker_start_ray_commands"] == [
            "bash ~/searcher/cluster/start-ray.sh worker $RAY_HEAD_IP"]
        commands = config["setup_commands"] + config["head_setup_commands"]
        assert not any("pip install -e" in c for c in commands)  # code ships with each job
    assert aws["worker_start_ray_commands"] == onprem["worker_start_ray_commands"]


def test_ray_is_pinned_once_and_nodes_install_what_pyproject_declares():
    project = _pyproject()
    declared = _requirements(project["dependencies"] + project["optional-dependencies"]["server"])
    nodes = _requirements((ROOT / "cluster" / "requirements.txt").read_text().splitlines())
    assert nodes == declared
    ray = {r for r in declared if r[0] == "ray"}
    assert ray == {("ray", frozenset({"default", "tune"}), "==2.60.0")}  # the job server too
    aws_head = _requirements((AWS / "requirements.txt").read_text().splitlines())
    assert aws_head == _requirements(project["optional-dependencies"]["aws"])
    assert "cluster/aws/requirements.txt" in " ".join(_config("cluster.yaml")["head_setup_commands"])


def _run_setup_node(script: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    # This Python, calling itself 3.10: whatever setup-node.sh asks it (-c CODE, -m venv) runs.
    fake = tmp_path / "python3.10"
    fake.write_text(f"""#!{sys.executable}
import platform, runpy, sys
sys.version_info = (3, 10, 12, "final", 0)
platform.python_version = lambda: "3.10.12"
flag, arg, *rest = sys.argv[1:]
sys.argv = [arg, *rest]
exec(arg) if flag == "-c" else runpy.run_module(arg, run_name="__main__", alter_sys=True)
""")
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SEARCHER_PYTHON": str(fake),
           "SEARCHER_ENV": str(tmp_path / "env")}
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=30)


def test_setup_node_refuses_a_python_older_than_3_11(tmp_path):
    assert _pyproject()["requires-python"] == ">=3.11"
    done = _run_setup_node(ROOT / "cluster" / "setup-node.sh", tmp_path)
    assert done.returncode != 0
    assert len(done.stderr.splitlines()) == 1 and "3.10.12" in done.stderr and "3.11" in done.stderr
    assert not (tmp_path / "env").exists() and not (tmp_path / ".bashrc").exists()


# ---------------------------------------------------------------- the documented walk


def test_the_submit_line_is_one_string_everywhere():
    """Every page and config submits the same way: `searcher submit`, with the config beside
    it (the command opens the forward); none asks for the raw `ray job submit` line any more."""
    for name in DOCS:
        text = (ROOT / name).read_text()
        assert SUBMIT in text, name
        for line in (ln for ln in text.splitlines() if "searcher submit " in ln and "--cluster"
                     in ln and ln.lstrip("# ").startswith("searcher submit")):
            assert re.match(rf"{re.escape(SUBMIT)} --cluster cluster(-onprem)?\.yaml --data-dir ",
                            line.lstrip("# ")), (name, line)
        assert not re.search(r"^(#   )?RAY_AUTH_MODE=token ray job submit", text, re.M), name


# ---------------------------------------------------------------- AWS: image, roles


def test_aws_image_is_found_not_hard_coded():
    config = _config("cluster.yaml")
    images = {t["node_config"]["ImageId"] for t in config["available_node_types"].values()}
    assert len(images) == 1
    assert not re.fullmatch(r"ami-[0-9a-f]{8,17}", images.pop())  # a placeholder to replace
    script = (AWS / "find-ami.sh").read_text()
    assert "/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id" in script  # Python 3.12
    region = config["provider"]["region"]
    text = (ROOT / "cluster.yaml").read_text() + (ROOT / "docs" / "cluster.md").read_text()
    assert f"cluster/aws/find-ami.sh {region}" in text
    assert f"head-secrets.sh {region}" in " ".join(config["head_setup_commands"])
    assert f"AWS_DEFAULT_REGION={region}" in " ".join(config["setup_commands"])


def test_aws_workers_are_cached_when_idle():
    config = _config("cluster.yaml")
    assert config["provider"]["cache_stopped_nodes"] is True
    # Ray terminates spot instances instead of stopping them: caching needs on-demand workers.
    for node_type in config["available_node_types"].values():
        assert "InstanceMarketOptions" not in node_type["node_config"]
    worker = config["available_node_types"]["gpu_worker"]
    assert worker["resources"] == {"CPU": 4, "GPU": 1}  # searcher/tune/resources.py sizes from it


# Python methods of dicts and lists whose names are also boto3 resource actions (dict.copy is
# not Snapshot.copy): calls by these names in Ray's code are not AWS calls.
_NOT_AWS = {"copy", "update", "get", "load", "reload", "delete", "filter", "all", "wait"}


def _ec2_actions(path: Path) -> set[str]:
    """The IAM actions of the EC2 calls in one of Ray's AWS provider files, by boto3's own
    models: client methods (describe_images), resource actions (instance.terminate,
    create_instances), collections (ec2.instances.filter) and waiters (wait_until_stopped)."""
    import boto3
    from botocore import xform_name
    loader = boto3.Session(region_name="us-east-1")._loader
    by_name = {xform_name(op): op for op in loader.load_service_model("ec2", "service-2")["operations"]}
    waiters = loader.load_service_model("ec2", "waiters-2")["waiters"]
    resources = loader.load_service_model("ec2", "resources-1")
    for spec in [resources["service"], *resources["resources"].values()]:
        for action, a in spec.get("actions", {}).items():
            by_name.setdefault(xform_name(action), a["request"]["operation"])
        for collection, c in spec.get("hasMany", {}).items():
            by_name.setdefault(xform_name(collection), c["request"]["operation"])
        for waiter, w in spec.get("waiters", {}).items():
            by_name.setdefault(f"wait_until_{xform_name(waiter)}",
                               waiters[w["waiterName"]]["operation"])
    source = path.read_text()
    called = set(re.findall(r"\.(\w+)\(", source)) | set(re.findall(r"\.(\w+)\.\w+\(", source))
    return {f"ec2:{by_name[n]}" for n in called - _NOT_AWS if n in by_name}


def _statements(name: str) -> list[dict]:
    policy = json.loads((AWS / name).read_text())
    assert policy["Version"] == "2012-10-17"
    for s in policy["Statement"]:
        s["Action"] = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        s["Resource"] = [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]
        assert s["Effect"] == "Allow" and "*" not in s["Action"]
    return policy["Statement"]


def _allowed(statements: list[dict], prefix: str) -> set[str]:
    return {a for s in statements for a in s["Action"] if a.startswith(prefix)}


@pytest.mark.slow
def test_the_head_role_allows_what_rays_autoscaler_calls_and_no_more():
    from ray.autoscaler._private import aws
    provider = Path(aws.__file__).parent / "node_provider.py"  # the code the head runs
    needed = _ec2_actions(provider)
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances"} <= needed
    head = _statements("head-policy.json")
    assert _allowed(head, "ec2:") == needed
    _scoped_to_this_cluster(head)
    passes = [s for s in head if "iam:PassRole" in s["Action"]]
    assert [s["Resource"] for s in passes] == [["arn:aws:iam::*:role/ray-worker-searcher"]]
    assert [s["Condition"] for s in passes] == [_PASSED_TO_EC2]
    assert _allowed(head, "iam:") == {"iam:PassRole"}
    secrets = {r for s in head if "secretsmanager:GetSecretValue" in s["Action"]
               for r in s["Resource"]}
    assert {r.split(":secret:")[1] for r in secrets} == {"searcher/pgpass-??????",
                                                         "searcher/mlflow-admin-??????"}
    for name in ("searcher/pgpass", "searcher/mlflow-admin"):
        assert name in (AWS / "head-secrets.sh").read_text()


_PASSED_TO_EC2 = {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}


def _scoped_to_this_cluster(statements: list[dict]) -> None:
    """What the head may do in EC2 beyond looking: launch only the config's worker types, tagged
    as this cluster at launch, and start, stop, terminate or re-tag only instances so tagged.
    Describe calls take no resource scoping in IAM: they alone stand on "*"."""
    config = _config("cluster.yaml")
    cluster = {"StringEquals": {"ec2:ResourceTag/ray-cluster-name": config["cluster_name"]}}
    workers = sorted(t["node_config"]["InstanceType"]
                     for name, t in config["available_node_types"].items()
                     if name != config["head_node_type"])
    instances = "arn:aws:ec2:*:*:instance/*"
    for s in statements:
        ec2 = [a for a in s["Action"] if a.startswith("ec2:")]
        if not ec2 or all(a.startswith("ec2:Describe") for a in ec2):
            continue
        assert "*" not in s["Resource"], s["Sid"]
        if s["Resource"] == [instances]:
            launch = s["Action"] == ["ec2:RunInstances"]
            tag_at_launch = s.get("Condition") == {
                "StringEquals": {"ec2:CreateAction": "RunInstances"}}
            assert launch or tag_at_launch or s.get("Condition") == cluster, s["Sid"]
            if launch:
                condition = s["Condition"]["StringEquals"]
                assert condition["aws:RequestTag/ray-cluster-name"] == config["cluster_name"]
                assert sorted(condition["ec2:InstanceType"]) == workers
            if tag_at_launch:
                assert s["Action"] == ["ec2:CreateTags"], s["Sid"]
        else:  # what a launch uses besides the instance: RunInstances only
            assert s["Action"] == ["ec2:RunInstances"] and "Condition" not in s, s["Sid"]
            assert all(":instance/" not in r for r in s["Resource"]), s["Sid"]
    described = [s for s in statements if s["Resource"] == ["*"]]
    assert all(a.startswith("ec2:Describe") for s in described for a in s["Action"])


def test_ray_up_is_allowed_what_rays_aws_code_calls_on_your_machine():
    from ray.autoscaler._private import aws
    folder = Path(aws.__file__).parent
    needed = set().union(*(_ec2_actions(p) for p in folder.glob("*.py")))
    assert {"ec2:CreateSecurityGroup", "ec2:DescribeSubnets"} <= needed  # ray up's bootstrap
    launcher = _statements("launcher-policy.json")
    assert _allowed(launcher, "ec2:") == needed
    passes = [s for s in launcher if "iam:PassRole" in s["Action"]]
    assert [r for s in passes for r in s["Resource"]] == ["arn:aws:iam::*:role/ray-head-searcher"]
    assert [s["Condition"] for s in passes] == [_PASSED_TO_EC2]
    # Ray calls IAM itself only for a head without an instance profile; ours has one.
    head = _config("cluster.yaml")["available_node_types"]["head"]["node_config"]
    assert head["IamInstanceProfile"]["Name"] == "ray-head-searcher"


def test_workers_hold_the_checkpoint_prefix_only_not_mlflows_artifacts():
    """Workers write Tune's checkpoints (SEARCHER_STORAGE_PATH); MLflow's artifacts and models
    lie elsewhere in the bucket, where a worker can neither read nor write."""
    from fnmatch import fnmatchcase

    worker = _statements("worker-policy.json")
    assert {a.split(":")[0] for s in worker for a in s["Action"]} == {"s3"}
    config = _config("cluster.yaml")
    storage = re.search(r"SEARCHER_STORAGE_PATH=s3://([^/'\s]+)/([^'\s]+)",
                        " ".join(config["head_setup_commands"]))
    bucket, prefix = storage.group(1), storage.group(2).strip("/")
    objects = {r for s in worker for r in s["Resource"] if r.startswith(f"arn:aws:s3:::{bucket}/")}
    assert objects == {f"arn:aws:s3:::{bucket}/{prefix}/*"}
    (listing,) = [s for s in worker if "s3:ListBucket" in s["Action"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}
    artifacts = _start_mlflow_args(config)[1]  # s3://BUCKET/mlflow: MLflow's artifacts, models
    assert artifacts.startswith(f"s3://{bucket}/")
    artifact_key = f"arn:aws:s3:::{artifacts[len('s3://'):]}/model/data/weights.safetensors"
    assert not any(fnmatchcase(artifact_key, r) for r in objects)
    config = _config("cluster.yaml")["available_node_types"]["gpu_worker"]["node_config"]
    assert config["IamInstanceProfile"]["Name"] == "ray-worker-searcher"
    trust = json.loads((AWS / "trust-ec2.json").read_text())["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                      "Action": "sts:AssumeRole"}]


# ---------------------------------------------------------------- security, state


@pytest.mark.parametrize("name", [*CONFIGS, *(str(p.relative_to(ROOT)) for p in AWS.iterdir())])
def test_no_credentials_in_what_ships(name):
    text = (ROOT / name).read_text()
    assert "aws_secret_access_key" not in text.lower() and "BEGIN" not in text
    assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text)  # an AWS access key id
    assert not re.search(r"postgresql://[^@/\s]*:[^@/\s]*@", text)  # passwords: ~/.pgpass only


def test_servers_listen_on_loopback_behind_authentication():
    mlflow = (ROOT / "cluster" / "start-mlflow.sh").read_text()
    assert "--app-name basic-auth" in mlflow and "--host 127.0.0.1" in mlflow
    assert "0.0.0.0" not in mlflow and "--serve-artifacts" in mlflow
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in mlflow  # no idle job runner on the head
    ray = (ROOT / "cluster" / "start-ray.sh").read_text()
    assert "RAY_AUTH_MODE=token" in ray and "--dashboard-host=127.0.0.1" in ray
    assert "--num-cpus=0" in ray  # the head takes no trials, as both configs' resources say
    for name in CONFIGS:
        _start_mlflow_args(_config(name))  # every head starts MLflow through the script


@pytest.mark.parametrize("name", CONFIGS)
def test_state_lives_in_postgres_off_the_head(name):
    text = (ROOT / name).read_text()
    config = yaml.safe_load(text)
    head = " ".join(config["head_setup_commands"])
    backend, artifacts = _start_mlflow_args(config)
    study = re.search(r"SEARCHER_STUDY_STORAGE=(\S+?)['\"]? >>", head).group(1)
    assert backend.startswith("postgresql://") and study.startswith("postgresql://")
    assert "sqlite" not in text
    host = urlsplit(backend).hostname
    assert host == urlsplit(study).hostname  # one server, off the head (not its address)
    assert host not in (config["provider"].get("head_ip"), "localhost", "127.0.0.1")
    # two databases: MLflow and Optuna each keep their schema version in `alembic_version`
    assert urlsplit(backend).path != urlsplit(study).path
    # the head has the password: checked to be there, or written from the secret store
    assert ".pgpass" in head or ("head-secrets.sh" in head
                                 and "~/.pgpass" in (AWS / "head-secrets.sh").read_text())
    assert ".pgpass" not in str(config.get("file_mounts"))  # workers never get it
    # MLflow's artifacts off the head's disk and out of the workers' reach: S3 (the workers' role
    # does not cover them, test_workers_hold_the_checkpoint_prefix_only_not_mlflows_artifacts),
    # or on machines you own an export mounted on the head alone, not the workers' /shared.
    commands = " ".join(config["setup_commands"] + config["head_setup_commands"])
    storage = re.search(r"SEARCHER_STORAGE_PATH=(\S+?)['\"]? >>", commands).group(1)
    assert artifacts.startswith(("s3://", "/srv/mlflow-artifacts"))
    assert not artifacts.startswith((f"{storage}/", "/shared/")), artifacts


def test_the_study_setting_is_the_one_the_configs_export():
    from searcher.tune.state import STUDY_STORAGE_ENV
    for name in CONFIGS:
        assert f"{STUDY_STORAGE_ENV}=" in (ROOT / name).read_text()


@pytest.mark.slow
def test_setup_node_installs_once_then_finds_the_environment_ready(tmp_path):
    # An environment that holds every requirement (this test run's own, as a baked image or a
    # restarted cached node would have it): the first run records it, the next installs nothing.
    (tmp_path / "env").symlink_to(sys.prefix)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SEARCHER_ENV": str(tmp_path / "env"),
           "PIP_NO_INDEX": "1"}  # nothing may be downloaded: every requirement is there
    runs = [subprocess.run(["bash", str(ROOT / "cluster" / "setup-node.sh")], env=env,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:]
    assert "installing cluster/requirements.txt" in runs[0].stdout
    assert "installing" not in runs[1].stdout
    assert "Ray 2.60.0" in runs[1].stdout
    bashrc = (tmp_path / ".bashrc").read_text().splitlines()
    assert bashrc == [f"source {tmp_path / 'env'}/bin/activate; export RAY_AUTH_MODE=token"]


def test_start_mlflow_writes_files_mlflow_reads_back_whatever_the_password_holds(tmp_path,
                                                                                 monkeypatch):
    """The head's credentials and auth config, as start-mlflow.sh writes them (run for real up
    to its check for a running server, which a stand-in process answers), read back by
    MLflow's own readers, with a password and a database URL holding `%` and the like; the
    folders and files only their owner can read."""
    import os
    import stat

    from mlflow.server.auth.config import read_auth_config
    from mlflow.utils.credentials import _read_mlflow_creds_from_file

    home, env = tmp_path / "home", tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "activate").write_text("")
    (home / ".searcher").mkdir(parents=True)
    password = "p%w/d?#@x%%y%(z)s"
    (home / ".searcher" / "mlflow-admin-password").write_text(password + "\n")
    backend = "postgresql://mlflow:p%40ss%25@db:5432/mlflow"
    stand_in = subprocess.Popen(["bash", "-c", "exec -a 'mlflow server stand-in --port 5000' "
                                 "sleep 60"])
    try:
        done = subprocess.run(
            ["bash", str(ROOT / "cluster" / "start-mlflow.sh"), backend, str(tmp_path / "art")],
            capture_output=True, text=True, timeout=60,
            env={"HOME": str(home), "SEARCHER_ENV": str(env),
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    finally:
        stand_in.kill()
        stand_in.wait()
    assert done.returncode == 0 and "already running" in done.stdout, done.stderr
    monkeypatch.setenv("HOME", str(home))
    assert _read_mlflow_creds_from_file() == ("admin", password)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(home / ".searcher" / "mlflow-auth.ini"))
    assert read_auth_config().database_uri == backend
    for folder in (home / ".mlflow", home / ".searcher"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in (home / ".mlflow" / "credentials", home / ".searcher" / "mlflow-auth.ini"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


# Secrets, keys, stores and state planted at any depth of a project: none leaves the machine.
PLANTED = [".env", "sub/.env.local", "cluster/deploy.pem", "keys/id_ed25519", "keys/tls.key",
           ".git/config", "runs/mlflow.db", "old/mlruns/0/meta.yaml", "x/ray_results/t/ckpt",
           "x/study.db", ".pgpass"]


def _project_with_planted_secrets(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "searcher", project / "searcher",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in (".gitignore", ".rayignore"):  # the project's own ignore files
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, project / name)
    for name in PLANTED:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("secret\n")
    return project


def _shipped(files: set[str]) -> None:
    assert "searcher/run.py" in files  # the project went
    assert not {f for f in files for p in PLANTED if f == p or f.startswith(p + "/")}, files


@pytest.mark.parametrize("name", CONFIGS)
def test_ray_up_copies_no_secret_key_or_store_to_the_nodes(tmp_path, name):
    """The config's rsync filter, as Ray's SSH runner passes it to rsync, run for real."""
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    project = _project_with_planted_secrets(tmp_path)
    options = {"rsync_filter": _config(name)["rsync_filter"]}
    args = SSHCommandRunner._create_rsync_filter_args(None, options)
    dest = tmp_path / "node"
    subprocess.run(["rsync", "-a", *args, f"{project}/", f"{dest}/"], check=True, cwd=project)
    _shipped({str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()})


def test_a_jobs_working_directory_uploads_no_secret_key_or_store(tmp_path):
    """What `ray job submit --working-dir .` uploads, packed by Ray's own packaging code."""
    import zipfile

    from ray._private.runtime_env.packaging import _zip_files

    project = _project_with_planted_secrets(tmp_path)
    _zip_files(str(project), [], str(tmp_path / "pkg.zip"), include_gitignore=True)
    with zipfile.ZipFile(tmp_path / "pkg.zip") as z:
        _shipped({n for n in z.namelist() if not n.endswith("/")})
