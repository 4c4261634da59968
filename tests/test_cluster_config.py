"""The cluster configs pass Ray's own validation, and keep the security settings they promise."""
from pathlib import Path

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
    assert "aws_secret_access_key" not in text.lower() and "BEGIN" not in text  # no credentials


def test_a_bad_field_is_caught():
    config = yaml.safe_load(Path(ROOT / "cluster.yaml").read_text())
    config["max_workerz"] = 3
    with pytest.raises(Exception, match="max_workerz"):
        validate_config(prepare_config(config))
