from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from conftest import ROOT


def test_cluster_yaml_passes_rays_own_validation():
    config = yaml.safe_load(Path(ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # as `ray up` does; raises on a schema violation
    assert config["head_node_type"] in config["available_node_types"]
    assert any("searcher" in c for c in config["setup_commands"])
