"""Promotion under a budget: the best trials whose nets meet a latency and size bound, and the gate
the exported model passes before it may become the champion.

Latency is the median of single forward passes (searcher.training.latency): a busy machine makes
single passes noisy, and the median is what both the search and the gate compare. At the batch the
search timed at, a trial's recorded `latency_ms` and `n_params` decide; at another batch (or for a
trial the search did not time) the net is rebuilt from its checkpoint and timed here.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from searcher.errors import UserError
from searcher.tracking import readback as logged
from searcher.tracking.tags import TRIAL_ID_TAG

MAX_TIMED = 20  # nets timed here before promotion gives up: each costs a second or more


@dataclass(frozen=True)
class Budget:
    """The bounds a champion must meet, and where its latency is timed."""

    max_latency_ms: float | None  # None: no latency bound (the speed is still measured)
    max_params: int | None
    batch: int  # images per pass for the latency
    throughput_batch: int
    device: str  # where the champion is timed: where it would be served on this machine
    search_batch: int | None  # the batch the search timed its trials at; None: it timed none

    def __bool__(self) -> bool:
        return self.max_latency_ms is not None or self.max_params is not None

    def __str__(self) -> str:
        bounds = []
        if self.max_latency_ms is not None:
            bounds.append(f"a median latency of at most {self.max_latency_ms:g} ms at batch "
                          f"{self.batch} on {self.device}")
        if self.max_params is not None:
            bounds.append(f"at most {self.max_params:,} parameters")
        return " and ".join(bounds) or "no bound"

    def miss(self, latency_ms: float | None, n_params: int | None) -> str | None:
        """What breaks the budget, in words; None when nothing does."""
        if self.max_params is not None and n_params is not None and n_params > self.max_params:
            return f"{n_params:,} parameters, over --max-params {self.max_params:,}"
        if (self.max_latency_ms is not None and latency_ms is not None
                and latency_ms > self.max_latency_ms):
            return (f"a median latency of {latency_ms:.3g} ms at batch {self.batch} on "
                    f"{self.device}, over --max-latency-ms {self.max_latency_ms:g}")
        return None


def check_options(max_latency_ms: float | None, max_params: int | None,
                  batch: int | None) -> None:
    """One line for a budget option that cannot be met by any net, before the store is opened."""
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise UserError(f"--max-latency-ms {max_latency_ms:g}: must be positive")
    if max_params is not None and max_params < 1:
        raise UserError(f"--max-params {max_params}: must be at least 1")
    if batch is not None and batch < 1:
        raise UserError(f"--batch {batch}: must be at least 1")


def budget_for(search: Any, max_latency_ms: float | None, max_params: int | None,
               batch: int | None) -> Budget:
    """The budget of a promotion of `search` (its options checked by check_options)."""
    import torch

    search_batch = logged.setting(search, "latency_batch", None)
    search_batch = int(search_batch) if search_batch is not None else None
    return Budget(max_latency_ms, max_params, batch or search_batch or 1,
                  int(logged.setting(search, "throughput_batch", 64)),
                  # as a trial and the served model choose it
                  "cuda" if torch.cuda.is_available() else "cpu", search_batch)


def fitting(client: Any, search: Any, ranked: list[Any], budget: Budget,
            image_shape: tuple[int, ...]) -> Iterator[Any]:
    """The trials of `ranked` (the search's, best first) whose nets meet `budget`, in that order;
    a UserError if none does among the first MAX_TIMED timed here."""
    from searcher.training.checkpoint import classifier_from_checkpoint
    from searcher.training.latency import measure_speed

    if not budget:
        yield from ranked
        return
    timed, misses, found = 0, [], False
    for run in ranked:
        metrics = run.data.metrics
        latency = metrics.get("latency_ms") if budget.batch == budget.search_batch else None
        params = int(metrics["n_params"]) if "n_params" in metrics else None
        if params is None or (latency is None and budget.max_latency_ms is not None):
            if timed == MAX_TIMED:
                break
            ckpt = logged.download_checkpoint(client, run.info.run_id)
            net = classifier_from_checkpoint(ckpt).to(budget.device)
            params = sum(p.numel() for p in net.parameters())
            if budget.max_latency_ms is not None and budget.miss(None, params) is None:
                latency = measure_speed(net, image_shape, budget.batch, 1, budget.device).latency_ms
                timed += 1
        miss = budget.miss(latency, params)
        if miss is None:
            found = True
            yield run
        else:
            misses.append((run, miss))
    if found:
        return
    closest = misses[0] if misses else None
    capped = ", the most it times" if timed == MAX_TIMED else ""
    raise UserError(
        f"no trial of search {search.info.run_id} meets {budget}: {len(misses)} of "
        f"{len(ranked)} trials checked ({timed} timed here at batch {budget.batch}{capped})"
        + (f"; the best, {closest[0].data.tags.get(TRIAL_ID_TAG, closest[0].info.run_name)}, "
           f"has {closest[1]}" if closest else "")
        + "; raise the bound, or promote without it")


def gate(budget: Budget, speed: Any, n_params: int, what: str) -> None:
    """A UserError if the exported model (`speed` timed here, `n_params`) breaks `budget`;
    `what` ends the line: what was left as it was."""
    miss = budget.miss(speed.latency_ms, n_params)
    if miss is not None:
        raise UserError(f"the exported model has {miss} (timed here after export, "
                        f"{speed.threads} thread(s), the median of {speed.runs} passes); {what}")
