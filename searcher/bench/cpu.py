"""CPU seconds by where they were spent over a window: the driver, the MLflow server, the rest.

Results/s on a machine whose cores the driver shares with the trials and the tracking server say
how fast this machine goes, not what each part costs. CPU seconds per result, by part, say what a
result costs the head (the driver, and the server if it runs there) and what it costs wherever the
trials run, so they carry over to other machines: a part that costs C CPU-s per result needs
R x C cores to sustain R results/s.
- driver: this process, every thread (Tune's loop, the MLflow writer thread);
- mlflow_server: the server's process and its children (its web workers);
- rest: the whole machine less those two: the trial processes and Ray's own.
"""
from __future__ import annotations

import os

import psutil

PARTS = ("driver", "mlflow_server", "rest")


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent, every process's, since boot."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


class CpuMeter:
    """`start()` and `stop()` bound a window; `seconds()` gives its CPU seconds per part."""

    def __init__(self, server_pid: int | None = None):
        self.server_pid = server_pid
        self._start: dict[str, float] | None = None
        self._stop: dict[str, float] | None = None

    def _read(self) -> dict[str, float]:
        t = psutil.Process(os.getpid()).cpu_times()
        return {"driver": t.user + t.system,
                "mlflow_server": _tree_cpu_s(self.server_pid) if self.server_pid else 0.0,
                "machine": machine_cpu_s()}

    def start(self) -> None:
        self._start, self._stop = self._read(), None

    def stop(self) -> None:
        if self._start is not None and self._stop is None:
            self._stop = self._read()

    def seconds(self) -> dict[str, float] | None:
        """CPU seconds per part in the window; None if it was not both started and stopped."""
        if self._start is None or self._stop is None:
            return None
        d = {k: self._stop[k] - self._start[k] for k in self._start}
        return {"driver": round(d["driver"], 2), "mlflow_server": round(d["mlflow_server"], 2),
                "rest": round(max(d["machine"] - d["driver"] - d["mlflow_server"], 0.0), 2)}
