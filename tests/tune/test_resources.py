"""A trial's GPU share and the trials in flight come from the cluster's node types: the real
cluster configs, and a real local Ray that does not autoscale."""
from pathlib import Path

import yaml
from conftest import ROOT

from searcher.tune.resources import (
    DEFAULT_GPU_SHARE,
    Cluster,
    NodeType,
    config_cluster,
    plan,
    trial_slots,
)


def cluster_of(name: str) -> Cluster:
    return config_cluster(yaml.safe_load(Path(ROOT / name).read_text()), name)


def test_cluster_yaml_gpu_workers_from_zero_give_a_gpu_share_and_32_slots():
    cluster = cluster_of("cluster.yaml")
    head = next(t for t in cluster.types if t.head)
    assert head.resources.get("CPU") == 0  # no trial slots on the head
    assert any(t.resources.get("GPU", 0) > 0 and t.count > 0 for t in cluster.types)
    # 8 g5.xlarge workers of 4 CPUs and one GPU: four trials at 1 CPU and a quarter GPU each
    assert trial_slots(cluster, 1, DEFAULT_GPU_SHARE) == 32
    assert trial_slots(cluster, 1, 0.5) == 16  # the GPU is the tighter resource
    assert trial_slots(cluster, 2, DEFAULT_GPU_SHARE) == 16  # now the CPUs are


def test_fake_cluster_has_cluster_yamls_node_types():
    real, fake = cluster_of("cluster.yaml"), cluster_of("tests/fake_cluster.yaml")
    assert [t.head for t in real.types] == [t.head for t in fake.types]
    assert [t.name for t in real.types if not t.head] == [t.name for t in fake.types if not t.head]
    for config in (yaml.safe_load(Path(ROOT / n).read_text())
                   for n in ("cluster.yaml", "tests/fake_cluster.yaml")):
        worker = config["available_node_types"]["gpu_worker"]
        assert worker["min_workers"] == 0 and worker["resources"]["GPU"] == 1
    assert trial_slots(fake, 1, DEFAULT_GPU_SHARE) == 6  # 3 workers x 2 CPUs


def test_cluster_wide_max_workers_counts_the_roomiest_types_first():
    cluster = Cluster([NodeType("head", {"CPU": 0}, 1, head=True),
                       NodeType("small", {"CPU": 1, "GPU": 1}, 10),
                       NodeType("big", {"CPU": 8, "GPU": 2}, 10)], 3, "test")
    assert trial_slots(cluster, 1, 0.25) == 3 * 8  # three big nodes, no small one
    unlimited = Cluster([NodeType("any", {"CPU": 4}, -1)], None, "test")
    assert trial_slots(unlimited, 1, 0) > 100


def test_a_local_ray_without_gpus_or_autoscaler(local_ray):
    sized = plan(1.0, None, None)
    assert sized.gpus_per_trial == 0.0
    assert sized.slots == 2 and "running" in sized.source  # the fixture's two CPUs
    assert plan(1.0, 0.5, 7).slots == 7  # settings win
