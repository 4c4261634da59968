"""The scale benchmark's figures from its passes: the summary (the JSON keys other tools read),
what they imply for a head on a cluster, and the table it prints (`searcher.bench.scale`)."""
from __future__ import annotations

import math
from typing import Any

from searcher.bench.ask_latency import GOAL_ASK_MS
from searcher.bench.cpu import PARTS

GOAL_RESULTS_PER_S, GOAL_OVERHEAD = 128, 1.10
REPORT_EVERY_S = 2.0  # the cluster case: a small CNN's epoch on a GPU share
BUSY_AT_MOST = 0.9


def summarise(runs: list[dict[str, Any]], ask: dict[str, Any] | None,
              min_steady_s: float) -> dict[str, Any]:
    pairs: dict[int, dict[str, Any]] = {}
    for run in runs:
        pairs.setdefault(run["concurrency"], {})["on" if run["logging"] else "off"] = run
    levels = []
    for concurrency, pair in sorted(pairs.items()):
        on, off = pair.get("on"), pair.get("off")
        levels.append({"concurrency": concurrency, "trials": (on or off)["trials"],
                       "results_per_s_off": off and off["results_per_s"],
                       "results_per_s_on": on and on["results_per_s"],
                       "overhead_ratio": round(off["results_per_s"] / on["results_per_s"], 3)
                       if on and off and on["results_per_s"] else None,
                       "driver_ms_per_result_on": on and round(1000 / on["results_per_s"], 2),
                       "callback_ms_per_result": on and on.get("callback_ms_per_result"),
                       "drain_s": on and on["drain_s"],
                       "cpu_ms_per_result_off": off and off.get("cpu_ms_per_result"),
                       "cpu_ms_per_result_on": on and on.get("cpu_ms_per_result"),
                       "steady": bool(on and off and min(on["seconds"], off["seconds"])
                                      >= min_steady_s)})
    paired = [lv for lv in levels if lv["overhead_ratio"] is not None and lv["steady"]]
    top = (paired or [{}])[-1]  # the largest concurrency measured both ways in steady state
    within = [lv["results_per_s_on"] for lv in paired if lv["overhead_ratio"] <= GOAL_OVERHEAD]
    ask_ms = (ask or {}).get("ask_ms") or {}
    return {"results_per_s_on": top.get("results_per_s_on"),
            "results_per_s_off": top.get("results_per_s_off"),
            "overhead_ratio": top.get("overhead_ratio"), "trials": top.get("trials"),
            "ask_ms_at_1000": ask_ms.get("1000", ask_ms[max(ask_ms, key=int)] if ask_ms else None),
            "max_concurrent_trials_2s":
                math.floor(BUSY_AT_MOST * REPORT_EVERY_S * max(within)) if within else 0,
            "cpu_ms_per_result_on": top.get("cpu_ms_per_result_on"),
            "cpu_ms_per_result_off": top.get("cpu_ms_per_result_off"),
            "cores_for_goal": cores_for(top.get("cpu_ms_per_result_on")),
            "max_concurrent_trials_2s_head": head_trials(top.get("cpu_ms_per_result_on")),
            "ask_ms_optuna_log_ndtr": ((ask or {}).get("log_ndtr_ms") or {}).get("optuna"),
            "levels": levels, "ask_ms": ask_ms, "ask_profile": (ask or {}).get("profile"),
            "runs": runs}


def cores_for(ms_per_result: dict[str, float] | None,
              results_per_s: float = GOAL_RESULTS_PER_S) -> dict[str, float] | None:
    """Cores each part needs to sustain `results_per_s` at its measured CPU cost per result
    (and "all": this machine's share of the whole), logging on."""
    if not ms_per_result:
        return None
    cores = {part: round(ms_per_result[part] * results_per_s / 1000, 2) for part in PARTS}
    return {**cores, "all": round(sum(cores.values()), 2)}


def head_trials(ms_per_result: dict[str, float] | None) -> int | None:
    """Trials at one report per 2 s that a driver with a core of its own serves while at most 90%
    busy, at its measured CPU cost per result with logging on (the MLflow server on other cores,
    the trials on workers, as on a cluster). One core: Tune's loop and the writer thread share
    the driver's GIL."""
    if not ms_per_result or not ms_per_result.get("driver"):
        return None
    return math.floor(BUSY_AT_MOST * REPORT_EVERY_S * 1000 / ms_per_result["driver"])


def table(sc: dict[str, Any]) -> str:
    lines = [f"{'concurrency':>11} {'trials':>6} {'res/s off':>9} {'res/s on':>8} "
             f"{'off/on':>6} {'cb ms/res':>9} {'drain s':>7}"]
    for lv in sc["levels"]:
        lines.append(f"{lv['concurrency']:>11} {lv['trials']:>6} {lv['results_per_s_off']!s:>9} "
                     f"{lv['results_per_s_on']!s:>8} {lv['overhead_ratio']!s:>6} "
                     f"{lv['callback_ms_per_result']!s:>9} {lv['drain_s']!s:>7}")
    for lv in sc["levels"]:
        for mode in ("off", "on"):
            ms = lv.get(f"cpu_ms_per_result_{mode}")
            if ms:
                lines.append(f"CPU ms per result, {lv['concurrency']} concurrent, logging {mode}: "
                             + ", ".join(f"{part} {ms[part]}" for part in PARTS))
    if sc.get("cores_for_goal"):
        lines.append(f"cores for {GOAL_RESULTS_PER_S} results/s at those costs (logging on): "
                     + ", ".join(f"{k} {v}" for k, v in sc["cores_for_goal"].items()))
        lines.append(f"trials at one report per {REPORT_EVERY_S:g} s that a driver on a core of "
                     f"its own serves: {sc['max_concurrent_trials_2s_head']}")
    lines.append("ask ms (finished trials -> ms): " +
                 ", ".join(f"{k}: {v}" for k, v in sc["ask_ms"].items()))
    if sc.get("ask_ms_optuna_log_ndtr"):
        lines.append(f"  with Optuna's own log_ndtr instead of scipy's (fast_tpe), in turns at the "
                     f"largest size: {sc['ask_ms_optuna_log_ndtr']} ms")
    lines.append(f"goals: >= {GOAL_RESULTS_PER_S} results/s on ({sc['results_per_s_on']}), "
                 f"overhead <= {GOAL_OVERHEAD} ({sc['overhead_ratio']}), ask <= {GOAL_ASK_MS:g} ms "
                 f"at 1000 ({sc['ask_ms_at_1000']}); trials served at one report per "
                 f"{REPORT_EVERY_S:g} s: {sc['max_concurrent_trials_2s']}")
    return "\n".join(lines)
