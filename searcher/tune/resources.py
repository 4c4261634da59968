"""A trial's share of a node and how many trials a search keeps in flight, from the node types the
cluster's autoscaler can start, not only from the nodes that happen to be up at the start.

On an autoscaling cluster whose GPU workers start from 0, a search that looks at the running
nodes sees a head without GPUs: trials then ask for no GPU and the autoscaler starts GPU machines
only for their CPUs. And with a custom searcher Tune keeps one trial pending unless
`max_concurrent_trials` is set (`tune_controller._get_max_pending_trials`), so the autoscaler sees
the demand of one trial at a time. Both are decided here from what the cluster can hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import psutil
import ray
import yaml

DEFAULT_GPU_SHARE = 0.25  # small CNNs leave most of a card idle; four share one
UNLIMITED_SLOTS = 200  # for node types without a maximum: Tune's own pending default (basic search)


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]  # logical resources of one node: CPU, GPU, ...
    count: int  # nodes of this type the cluster can have at once (-1: no limit)
    head: bool = False  # the head is not counted against the cluster's max_workers


@dataclass(frozen=True)
class Cluster:
    types: list[NodeType]
    max_workers: int | None  # the cluster-wide cap on worker nodes of all types together
    source: str  # where the node types came from, for the log line


@dataclass(frozen=True)
class Plan:
    gpus_per_trial: float
    slots: int  # trials kept in flight: what the cluster runs at once, fully scaled
    source: str

    def describe(self, cpus_per_trial: float) -> str:
        return (f"trials take {cpus_per_trial:g} CPU and {self.gpus_per_trial:g} GPU; "
                f"{self.slots} kept in flight ({self.source})")


def plan(cpus_per_trial: float, gpus_per_trial: float | None,
         max_concurrent_trials: int | None) -> Plan:
    """Resolve the GPU share (None: DEFAULT_GPU_SHARE if any node, running or one the autoscaler
    can start, has GPUs; else 0) and the trials to keep in flight (`max_concurrent_trials`, else
    what the cluster holds: the larger of its node types scaled to their maximum and the nodes up
    now, which also covers node types whose resources are detected only at start, as Ray's local
    provider leaves them)."""
    clusters = [c for c in (autoscaler_cluster(), running_cluster()) if c is not None]
    share = gpus_per_trial
    if share is None:
        has_gpus = any(t.resources.get("GPU", 0) > 0 for c in clusters for t in c.types)
        share = DEFAULT_GPU_SHARE if has_gpus else 0.0
    if max_concurrent_trials is not None:
        return Plan(share, max_concurrent_trials, "max_concurrent_trials")
    slots, source = max((trial_slots(c, cpus_per_trial, share), c.source) for c in clusters)
    return Plan(share, max(1, slots), f"what {source} hold")


def per_node(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """How many trials asking `cpus` and `gpus` fit on one node with `resources`."""
    fits = [math.floor(resources.get(name, 0) / need + 1e-9)
            for name, need in (("CPU", cpus), ("GPU", gpus)) if need > 0]
    return min(fits) if fits else 0


def trial_slots(cluster: Cluster, cpus: float, gpus: float) -> int:
    """Trials that fit on the cluster scaled to every type's maximum, the roomiest worker types
    counted first under the cluster's max_workers."""
    sized = sorted(((per_node(t.resources, cpus, gpus), t.count, t.head) for t in cluster.types),
                   reverse=True)
    if any(fit > 0 and count < 0 for fit, count, _ in sized):
        return UNLIMITED_SLOTS
    total, left = 0, cluster.max_workers if cluster.max_workers is not None else math.inf
    for fit, count, head in sized:
        take = count if head else min(count, left)
        total, left = total + fit * take, left if head else left - take
    return int(total)


def running_cluster() -> Cluster:
    """The nodes alive now, each as a type of one."""
    return Cluster([NodeType(n["NodeID"], dict(n["Resources"]), 1)
                    for n in ray.nodes() if n["Alive"]], None, "the nodes running now")


def autoscaler_cluster() -> Cluster | None:
    """The node types this cluster's autoscaler can start, with the head; None when the cluster
    does not autoscale (a local Ray, machines started by hand) or the driver cannot see its
    config. That is the config file the head's autoscaler was started with (`ray up` writes
    ~/ray_bootstrap_config.yaml), found when the driver runs on the head, as `ray job submit`
    and `ray attach` run it; else the node groups the GCS holds where KubeRay reports them."""
    try:  # a Ray Client driver (ray://) has no GCS connection of its own: nothing to read
        path = autoscaling_config_path(ray.get_runtime_context().gcs_address)
        from_gcs = None if path else ray._private.state.state.get_cluster_config()
    except Exception:
        return None
    if path is not None:
        return config_cluster(yaml.safe_load(path.read_text()), f"the node types in {path}")
    if from_gcs is not None and from_gcs.node_group_configs:
        return Cluster([NodeType(g.name, dict(g.resources), g.max_count)
                        for g in from_gcs.node_group_configs], None, "the autoscaler's node types")
    return None


def config_cluster(config: dict, source: str) -> Cluster:
    """The node types of a cluster config in `ray up`'s format."""
    head = config.get("head_node_type")
    return Cluster([NodeType(name, {k: float(v) for k, v in kind.get("resources", {}).items()},
                             1 if name == head else int(kind.get("max_workers", 0)), name == head)
                    for name, kind in config.get("available_node_types", {}).items()],
                   config.get("max_workers"), source)


def autoscaling_config_path(gcs_address: str) -> Path | None:
    """The --autoscaling-config of the autoscaler (Ray's monitor process) serving the GCS at
    `gcs_address`, if it runs on this machine."""
    port = gcs_address.rsplit(":", 1)[-1]
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if not any("autoscaler" in a and a.endswith("monitor.py") for a in args):
            continue
        options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        config = options.get("autoscaling-config")
        if config and options.get("gcs-address", "").rsplit(":", 1)[-1] == port:
            path = Path(config).expanduser()
            return path if path.is_file() else None
    return None


def trial_resources(search) -> tuple[float, float]:
    """CPUs and GPUs per retrain: the search's own per-trial share."""
    from searcher.tracking.readback import setting
    cpus = float(setting(search, "cpus_per_trial", 1.0))
    return cpus, plan(cpus, setting(search, "gpus_per_trial", None), None).gpus_per_trial
