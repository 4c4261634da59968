"""The cluster configs pass Ray's own validation, and keep the security settings they promise."""
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from conftest import ROOT

CONFIGS = ["cluster.yaml", "cluster-onprem.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_validation(name):
    config = yaml.safe_load(Path(ROOT / name).read_text())
    validate_config(prepare_config(config))  # as `ray up` does; raises on a schema violation
    assert any("searcher" in c for c in config["setup_commands"])


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_locked_down(name):
    text = Path(ROOT / name).read_text()
    config = yaml.safe_load(text)
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if c.strip().startswith(("RAY_", "ray start")))
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    server = " ".join(config["head_setup_commands"])
    assert "mlflow server" in server and "--host 0.0.0.0" not in server
    assert "--serve-artifacts" in server
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in server  # no idle job runner on the head
    assert "aws_secret_access_key" not in text.lower() and "BEGIN" not in text  # no credentials


def test_a_bad_field_is_caught():
    config = yaml.safe_load(Path(ROOT / "cluster.yaml").read_text())
    config["max_workerz"] = 3
    with pytest.raises(Exception, match="max_workerz"):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("name", CONFIGS)
def test_state_lives_in_postgres_off_the_head(name):
    text = Path(ROOT / name).read_text()
    config = yaml.safe_load(text)
    head = " ".join(config["head_setup_commands"])
    backend = re.search(r"--backend-store-uri (\S+)", head).group(1)
    study = re.search(r"SEARCHER_STUDY_STORAGE=(\S+?)['\"]? >>", head).group(1)
    assert backend.startswith("postgresql://") and study.startswith("postgresql://")
    assert "sqlite" not in text
    host = urlsplit(backend).hostname
    assert host == urlsplit(study).hostname  # one server, off the head (not its address)
    assert host not in (config["provider"].get("head_ip"), "localhost", "127.0.0.1")
    # two databases: MLflow and Optuna each keep their schema version in `alembic_version`
    assert urlsplit(backend).path != urlsplit(study).path
    assert not re.search(r"postgresql://[^@/\s]*:[^@/\s]*@", text)  # passwords: ~/.pgpass only
    assert ".pgpass" in head and "[postgres]" in head  # the head has the password and the driver
    assert ".pgpass" not in str(config.get("file_mounts"))  # workers never get it
    artifacts = re.search(r"--artifacts-destination (\S+)", head).group(1)
    assert artifacts.startswith(("s3://", "/shared/"))  # shared storage, not the head's disk


def test_the_study_setting_is_the_one_the_configs_export():
    from searcher.state import STUDY_STORAGE_ENV
    for name in CONFIGS:
        assert f"{STUDY_STORAGE_ENV}=" in Path(ROOT / name).read_text()
