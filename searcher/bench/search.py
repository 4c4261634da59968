"""What the search machinery costs around the training itself, measured on a real search.

Claims (goals in engine.GOALS, shown in the `engine` subcommand's table):
- slot_utilisation  summed trial training time / (search wall time x trial slots), a real search
                    on the local Ray with its MLflow logging (goal >= 0.85)
- trial_overhead_s  median over trials of (trial wall time - its training time) (goal < 1 s)
- memory            peak RSS of the driver; RSS and unique memory (USS) of a trial process, and
                    what a bare process importing what a trial imports already holds
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any


def bench_search(data_dir: Path, trials: int, epochs: int) -> dict[str, Any]:
    """A real search on the local Ray: slot utilisation, per-trial overhead and memory."""
    import resource

    import ray

    from searcher.spec.space import load_space
    from searcher.tracking import store as tracking
    from searcher.training.data import load_search_data
    from searcher.tune.tuner import run_search

    with tempfile.TemporaryDirectory() as tmp:
        space_file = Path(tmp) / "bench_space.py"
        space_file.write_text(_BENCH_SPACE)
        space = load_space(space_file, {"num_samples": trials, "epochs": epochs,
                                        "grace_period": epochs, "first_look": False,
                                        "storage_path": f"{tmp}/ray"})  # no trial stopped
        data = load_search_data("cifar10", data_dir, 32, 0.1, 0)
        client = tracking.connect(f"sqlite:///{tmp}/mlflow.db")
        parent = tracking.start_search_run(client, space, {})
        result = run_search(space, data, client.tracking_uri, parent)
        slots = int(ray.cluster_resources().get("CPU", 1) // space.settings.cpus_per_trial)
        ray.shutdown()
    train_s, overhead, rss, private = [], [], [], []
    for rec in result.records:
        busy = sum(h["epoch_time_s"] + h["eval_time_s"] for h in rec.history)
        train_s.append(busy)
        overhead.append((rec.finished_at or rec.started_at) - rec.started_at - busy)
        rss += [h["rss_mb"] for h in rec.history]
        private += [h["private_mb"] for h in rec.history]
    baseline = _import_private_mb()
    return {"trials": len(result.records), "epochs": epochs, "slots": slots,
            "wall_s": round(result.wall_time_s, 2), "train_s": round(sum(train_s), 2),
            "slot_utilisation": round(sum(train_s) / (result.wall_time_s * slots), 3),
            "trial_overhead_s": round(statistics.median(overhead), 3),
            "dataset_mb": round((data.train.x.nbytes + data.val.x.nbytes) / 2**20, 1),
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "trial_peak_rss_mb": round(max(rss), 1),
            "trial_peak_private_mb": round(max(private), 1),
            # private memory of a bare process after importing what a trial imports
            "import_private_mb": round(baseline, 1),
            "trial_extra_private_mb": round(max(private) - baseline, 1),
            "dataset_shared": all(h.get("dataset_shared", 0) for h in
                                  (r.history[-1] for r in result.records if r.history))}


def _import_private_mb() -> float:
    import subprocess
    code = ("import torch, ray, searcher.tune.trainable as t; print(t._memory_mb()['private_mb'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


_BENCH_SPACE = '''
def space(trial):
    trial.suggest_int("stages", 2, 2)
    trial.suggest_categorical("filters", [16, 24, 32])
    trial.suggest_float("lr", 0.01, 0.1, log=True)
    return {"padding": "same", "batch_norm": True, "head": "gap", "batch_size": 128}
'''


