"""Search settings: one dataclass, validated where it enters (space file or command line)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

from searcher.errors import UserError

# The metrics a trial reports that a search can optimise, and their direction. Declared once:
# Tune, Optuna, MLflow and promotion all read the direction from here.
METRICS: dict[str, str] = {"val_acc": "max", "val_loss": "min"}

# What a Pareto search can trade its metric against, by setting value -> the metric a trial
# reports for it; always minimised. All three are known before a trial trains.
SECOND_OBJECTIVES: dict[str, str] = {"latency_ms": "latency_ms", "params": "n_params",
                                     "mmacs": "mmacs"}

DATASETS = ("cifar10", "folder")
# Optuna samplers a search can use (see searcher.sampling.samplers): TPE learns from every trial so far;
# random is the honest baseline any search method has to beat.
SAMPLERS = ("tpe", "random")
DATA_DIR_ENV = "SEARCHER_DATA_DIR"
# NumPy's generators take seeds below 2**32; promotion's retrains use the seeds just above the
# search's (searcher.tune.confirm.fresh_seeds), so a 31-bit seed leaves them room.
MAX_SEED = 2**31 - 1


class SettingsError(UserError):
    """A setting that is unknown or has an impossible value."""


@dataclass(frozen=True)
class Settings:
    # --- data ---
    dataset: str = "cifar10"  # "cifar10" (torchvision layout) or "folder" (root/train/<class>/*)
    data_dir: str | None = None  # None: $SEARCHER_DATA_DIR, else ./data (CIFAR-10 is downloaded there)
    image_size: int = 32  # folder images are resized to this; CIFAR-10 is 32 already
    val_fraction: float = 0.1  # carved from the training set, seeded: 45k/5k on CIFAR-10
    strict_data: bool = False  # False: unreadable images are skipped and listed; True: an error
    # --- objective ---
    metric: str = "val_acc"  # one of METRICS; the direction comes with it
    # None: one objective. Else one of SECOND_OBJECTIVES, minimised beside the metric: the search
    # looks for the Pareto front (see searcher.spec.objectives)
    second_objective: str | None = None
    # --- the sampler ---
    sampler: str = "tpe"  # one of SAMPLERS; "random" is the baseline to compare against
    warm_start: str | None = None  # earlier searches to learn from: experiment, run id or "latest"
    # What TPE gives up in the metric for half the compute: it ranks trials by metric minus
    # cost_weight x log2(the trial's multiply-adds / the median trial's); 0 ignores cost
    # (see searcher.sampling.fidelity)
    cost_weight: float = 0.02
    # --- budget ---
    num_samples: int = 16  # trials; -1 runs until the time budget is spent
    time_budget_s: float | None = None  # wall-clock budget for the whole search
    epochs: int = 8  # the most epochs a trial trains (ASHA's max_t)
    # --- ASHA ---
    grace_period: int = 1  # epochs every trial gets before it can be stopped (but see first_look)
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    # A first rung below an epoch (Hyperband's cheapest budget): every trial is scored on the
    # whole validation set after grace_period / reduction_factor of its first epoch's pass over
    # the training set (a seeded random share of it), and only the trials that rank there go
    # on to finish the epoch. A look's score is never a trial's result (see first_look_fraction).
    # Off by default: in the quality benchmark it cost TPE 2.5 points of mean best (BENCHMARKS.md)
    first_look: bool = False
    # --- resources ---
    cpus_per_trial: float = 1.0  # also the number of torch threads a trial uses
    # None ("auto"): 0.25 when a node of the cluster, or a node type its autoscaler can start,
    # has GPUs, else 0 (see searcher.tune.resources)
    gpus_per_trial: float | None = None
    # None: as many as the cluster holds scaled to its node types' maximum; also how many trials
    # wait at once for the autoscaler (Tune keeps one pending otherwise)
    max_concurrent_trials: int | None = None
    max_params: int = 5_000_000  # larger architectures are recorded infeasible, not trained
    max_mmacs: float = 200.0  # so are those over this many million multiply-adds per image
    # Inference speed is measured in each trial before it trains, on its own device and threads
    # (searcher.training.latency): the median latency at latency_batch images, and the
    # throughput at throughput_batch. A net whose median latency is over max_latency_ms is
    # recorded infeasible, not trained. None: no bound.
    max_latency_ms: float | None = None
    latency_batch: int = 1  # images per timed pass for the latency: 1, as a request is served
    throughput_batch: int = 64  # images per timed pass for the throughput, as a batch job runs
    seed: int = 0  # seeds the sampler, the validation split and every trial
    # --- where things go (command line or environment, rarely the space file) ---
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    address: str | None = None  # None: $RAY_ADDRESS, else a local Ray
    storage_path: str | None = None  # Tune's checkpoints; a shared path (NFS or s3://) on clusters
    # None: $SEARCHER_STUDY_STORAGE, else a journal file in the search folder; on clusters a
    # database URL (postgresql://user@host/optuna), so the study and --resume outlive the head
    study_storage: str | None = None
    experiment: str | None = None  # MLflow experiment; None: the space file's name
    # --- sharing a cluster (searcher.tune.shares) ---
    # The search's weight among the searches on the same cluster: its share of the trial slots
    # is priority / the sum of the priorities of the searches that want slots
    priority: float = 1.0
    submitter: str | None = None  # who submitted it (searcher submit); the runs' MLflow user
    # --- what the driver prints ---
    verbose: bool = False  # a line per epoch per trial, not one progress line (MLflow has them all)

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    @property
    def first_look_fraction(self) -> float | None:
        """The share of the first epoch after which a trial is first scored: one rung below
        grace_period on ASHA's geometric ladder (grace_period / reduction_factor); None when
        first looks are off or that rung is not below an epoch."""
        if not self.first_look or self.grace_period >= self.reduction_factor:
            return None
        return self.grace_period / self.reduction_factor

    def resolved_data_dir(self) -> str:
        return self.data_dir or os.environ.get(DATA_DIR_ENV) or "data"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(s: Settings) -> None:
    def bad(name: str, why: str) -> SettingsError:
        return SettingsError(f"setting {name}={getattr(s, name)!r}: {why}")

    if s.dataset not in DATASETS:
        raise bad("dataset", f"must be one of {', '.join(DATASETS)}")
    if s.sampler not in SAMPLERS:
        raise bad("sampler", f"must be one of {', '.join(SAMPLERS)}")
    if s.metric not in METRICS:
        raise bad("metric", f"must be one of {', '.join(METRICS)}")
    if not 0.0 < s.val_fraction < 1.0:
        raise bad("val_fraction", "must be between 0 and 1")
    if s.image_size < 8:
        raise bad("image_size", "must be at least 8")
    if s.dataset == "cifar10" and s.image_size != 32:
        raise bad("image_size", "CIFAR-10 images are 32x32")
    if s.num_samples == 0 or s.num_samples < -1:
        raise bad("num_samples", "must be a positive count, or -1 with a time budget")
    if s.num_samples == -1 and s.time_budget_s is None:
        raise bad("num_samples", "-1 (unlimited) needs time_budget_s")
    if s.time_budget_s is not None and not s.time_budget_s > 0:
        raise bad("time_budget_s", "must be positive")
    if s.epochs < 1:
        raise bad("epochs", "must be at least 1")
    if not 1 <= s.grace_period <= s.epochs:
        raise bad("grace_period", f"must be between 1 and epochs ({s.epochs})")
    if s.reduction_factor < 2:
        raise bad("reduction_factor", "must be at least 2")
    if not s.cpus_per_trial > 0:
        raise bad("cpus_per_trial", "must be positive")
    if s.gpus_per_trial is not None and s.gpus_per_trial < 0:
        raise bad("gpus_per_trial", "must not be negative")
    if s.max_concurrent_trials is not None and s.max_concurrent_trials < 1:
        raise bad("max_concurrent_trials", "must be at least 1")
    if s.study_storage is not None:
        scheme, sep, rest = s.study_storage.partition("://")
        if not sep or not scheme:
            raise bad("study_storage", "must be a database URL such as postgresql://user@host/optuna")
        if re.match(r"[^@/]*:[^@/]*@", rest):  # settings are logged with every search
            raise bad("study_storage", "carries a password, which would be logged with the "
                                       "search's settings; put it in ~/.pgpass or $PGPASSWORD")
    if not 0 <= s.seed <= MAX_SEED:
        raise bad("seed", f"must be between 0 and {MAX_SEED}")
    if s.max_params < 1:
        raise bad("max_params", "must be positive")
    if not s.cost_weight >= 0:
        raise bad("cost_weight", "must be 0 or more")
    if not s.max_mmacs > 0:
        raise bad("max_mmacs", "must be positive")
    if s.max_latency_ms is not None and not s.max_latency_ms > 0:
        raise bad("max_latency_ms", "must be positive")
    if s.latency_batch < 1:
        raise bad("latency_batch", "must be at least 1")
    if s.throughput_batch < 1:
        raise bad("throughput_batch", "must be at least 1")
    if not s.priority > 0:
        raise bad("priority", "must be positive")
    if s.submitter is not None and not re.fullmatch(r"[\w.@+-]{1,64}", s.submitter):
        raise bad("submitter", "must be a user name: letters, digits and . _ @ + -")
    if s.second_objective is not None and s.second_objective not in SECOND_OBJECTIVES:
        raise bad("second_objective", f"must be one of {', '.join(SECOND_OBJECTIVES)}")


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    """Accept what a Python file or a command line would naturally give; reject the rest."""
    name, annotation = f.name, str(f.type)
    if value is None and annotation.endswith("| None"):
        return None
    kind = _TYPES[annotation.split(" |")[0]]
    if kind is bool and isinstance(value, bool):
        return value
    if isinstance(value, bool) or kind is bool:  # True is an int to Python, not to a setting
        raise SettingsError(f"setting {name}={value!r}: expected {kind.__name__}")
    if kind is float and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise SettingsError(f"setting {name}={value!r}: expected {kind.__name__}")


def make_settings(values: Mapping[str, Any], base: Settings | None = None) -> Settings:
    """Build validated Settings from `values` on top of `base`; unknown keys are an error."""
    base = base or Settings()
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(known)}")
    coerced = {k: _coerce(known[k], v) for k, v in values.items()}
    settings = dataclasses.replace(base, **coerced)
    _check(settings)
    return settings


