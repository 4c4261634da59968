"""Searches that share one Ray cluster: each holds trial slots in proportion to its weight.

One coordination point per cluster, `SlotBroker`, a detached Ray actor on the head (found by
name, made by the first search that needs it), keeps the rule of searcher.tune.shares. Each
search's driver, when it joins a cluster:
- `Membership` joins the broker with the search's weight (`priority`) and slots, and beats every
  BEAT_S from a thread of its own, so the broker can tell a lost driver from a quiet one; the
  beat also brings back a `searcher cancel` of the search;
- `SharedSlots`, the Tune searcher around the study's, asks the broker before each proposal and
  proposes nothing while refused (Tune asks again; Ray's scheduler starts what was proposed);
- `ShareWatch`, a Tune callback, stops the search as a Ctrl-C does once it is cancelled, and
  leaves the broker when the search ends.
Tune pickles the searcher and the callbacks with its state, so they hold only the search's name;
the membership (a thread, an actor handle) lives in this module for the driver's life.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import ray
from ray import tune
from ray.tune.search import Searcher
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from searcher.tune import interrupt
from searcher.tune.shares import Shares

BROKER = "searcher-slots"
NAMESPACE = "searcher"
BEAT_S = 2.0  # well under shares.GONE_S: a driver missing a few beats is not taken for lost
RETRY_S = 1.0  # a refused search asks again after this, not at every step of Tune's loop


@ray.remote(num_cpus=0)
class SlotBroker:
    """The cluster's shares (searcher.tune.shares), and the cancels asked of its searches."""

    def __init__(self) -> None:
        self.shares = Shares()
        self.cancels: dict[str, str] = {}  # search -> who cancelled it
        self.ended: dict[str, str] = {}  # search -> how its last driver ended

    def join(self, search: str, weight: float, slots: int, submitter: str) -> None:
        self.cancels.pop(search, None)  # a resumed search starts uncancelled
        self.ended.pop(search, None)
        self.shares.join(search, weight, slots, submitter, time.time())

    def ask(self, search: str, held: int) -> bool | None:
        """Whether the search may propose a trial; None if the broker does not know it (it was
        restarted, or took the search for lost): the driver joins again."""
        if search not in self.shares.members:
            return None
        return self.shares.ask(search, held, time.time())

    def beat(self, search: str, held: int) -> tuple[bool, str | None]:
        """(known, who cancelled the search or None)."""
        known = search in self.shares.members
        self.shares.beat(search, held, time.time())
        return known, self.cancels.get(search)

    def leave(self, search: str, how: str) -> None:
        self.shares.leave(search, time.time())
        self.ended[search] = how

    def cancel(self, search: str, by: str) -> bool:
        """Ask the search's driver to stop; False if no driver of it is live."""
        live = self.shares.view(time.time()).get(search, {}).get("live", False)
        if live:
            self.cancels[search] = by
        return live

    def view(self) -> dict[str, Any]:
        now = time.time()
        return {"now": now, "searches": self.shares.view(now), "ended": dict(self.ended),
                "cancels": dict(self.cancels),
                "timeline": [(t, dict(held)) for t, held in self.shares.timeline]}


def broker(create: bool = True):
    """The cluster's broker (Ray must be initialised); made on this node, the driver's (the
    head, for a job), if there is none yet and `create`; None if there is none and not `create`."""
    try:
        return ray.get_actor(BROKER, namespace=NAMESPACE)
    except ValueError:
        if not create:
            return None
    here = ray.get_runtime_context().get_node_id()
    return SlotBroker.options(
        name=BROKER, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()


class Membership:
    """A driver's place among the cluster's searches, for as long as it runs its search."""

    def __init__(self, search: str, weight: float, slots: int, submitter: str):
        self.search, self.weight, self.slots, self.submitter = search, weight, slots, submitter
        self.held = lambda: 0  # set by the searcher: the trials it has in flight
        self.cancelled_by: str | None = None
        self._broker = broker()
        self._join()
        self._stop = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="searcher-share-beat", daemon=True)
        self._beats.start()

    def _join(self) -> None:
        ray.get(self._broker.join.remote(self.search, self.weight, self.slots, self.submitter))

    def ask(self) -> bool:
        granted = ray.get(self._broker.ask.remote(self.search, self.held()))
        if granted is None:
            self._join()
            granted = ray.get(self._broker.ask.remote(self.search, self.held()))
        return bool(granted)

    def _beat(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                known, cancelled_by = ray.get(self._broker.beat.remote(self.search, self.held()))
                if not known:
                    self._join()
                self.cancelled_by = self.cancelled_by or cancelled_by
            except Exception:  # noqa: BLE001 - the head busy or restarting: beat again later
                continue

    def leave(self, how: str) -> None:
        self._stop.set()
        self._beats.join(timeout=BEAT_S * 2)
        try:
            ray.get(self._broker.leave.remote(self.search, how), timeout=10)
        except Exception:  # noqa: BLE001 - the broker forgets a silent driver by itself
            pass


_membership: Membership | None = None


def join(search: str, weight: float, slots: int, submitter: str) -> Membership:
    """Join the cluster's shares for this driver's search (once per driver)."""
    global _membership
    if _membership is None or _membership.search != search:
        _membership = Membership(search, weight, slots, submitter)
    return _membership


def membership() -> Membership | None:
    return _membership


def leave(how: str) -> None:
    global _membership
    if _membership is not None:
        _membership.leave(how)
        _membership = None


class SharedSlots(Searcher):
    """Tune's searcher for a search on a shared cluster: `searcher`'s proposals, each once the
    cluster's broker grants the slot it will take."""

    def __init__(self, searcher: Searcher, search: str):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.search = searcher, search
        self._refused_at = float("-inf")

    def _member(self) -> Membership | None:
        member = membership()
        if member is not None:
            member.held = self.searcher.in_flight
        return member

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        member = self._member()
        # A search with all its trials proposed asks for no slot: it wants none
        if member is not None and not self.searcher.spent():
            if time.monotonic() - self._refused_at < RETRY_S:
                return None
            if not member.ask():
                self._refused_at = time.monotonic()
                return None
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._member()
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        self._member()
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

    # Tune saves each wrapper's state beside the wrapped searcher's (SearchGenerator.save_to_dir)
    def get_state(self) -> dict[str, Any]:
        return {"search": self.search}

    def set_state(self, state: dict[str, Any]) -> None:
        self.search = state["search"]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_refused_at": float("-inf")}


class ShareWatch(tune.Callback):
    """Stops the search as a Ctrl-C does once `searcher cancel` asked for it."""

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        member = membership()
        if member is not None and member.cancelled_by and not interrupt.fired():
            print(f"[searcher] cancelled by {member.cancelled_by}: saving the search", flush=True)
            interrupt.stop(f"cancelled by {member.cancelled_by}", cancelled=True)


def _main(argv: list[str]) -> int:
    """`python -m searcher.tune.sharing view|cancel SEARCH BY`, run on the cluster as a short
    job by `searcher status` and `searcher cancel` (a laptop reaches the cluster through its jobs
    API only): prints the broker's view, or whether the search's driver was asked to stop, as
    one JSON line."""
    import json
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    found = broker(create=False)
    if argv[:1] == ["cancel"]:
        answer = {"cancelled": bool(found and ray.get(found.cancel.remote(argv[1], argv[2])))}
    else:
        answer = ray.get(found.view.remote()) if found else {"searches": {}, "timeline": []}
    print("SEARCHER-VIEW " + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv[1:]))
