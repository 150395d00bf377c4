"""Where the jobs run: :class:`SerialExecutor` (one after the other in this process) or :class:`RayExecutor`
(every job a Ray task, on a local runtime or a cluster).

An executor has ``capacity`` and ``description``, and ``submit(args, resources, name) -> handle``,
``wait(handles) -> (handle, outcome)`` (the outcome of :func:`~slt_deploy.sweep.job.run_job`), ``cancel(handles)``
and ``close()``."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Sequence, Tuple

from .. import threads as thread_settings
from ..errors import ConfigError, SltError
from .job import run_job
from .settings import Resources, SweepOptions
from .text import error_line


def make_executor(options: SweepOptions, echo: Callable[[str], None]):
    return SerialExecutor() if options.executor == "serial" else RayExecutor(options, echo)


class SerialExecutor:
    """Runs each job in this process, one at a time, when it is waited for."""

    capacity = 1
    description = "serial, in this process"

    def __init__(self):
        self._queued: Dict[int, tuple] = {}
        self._next = 0

    def submit(self, args: tuple, resources: Resources, name: str) -> int:
        self._next += 1
        self._queued[self._next] = args
        return self._next

    def wait(self, handles: Sequence[int]) -> Tuple[int, dict]:
        handle = handles[0]
        return handle, run_job(*self._queued.pop(handle))

    def cancel(self, handles: Sequence[int]) -> None:
        for h in handles:
            self._queued.pop(h, None)

    def close(self) -> None:
        pass


class RayExecutor:
    """Every job is a Ray task with the requested CPUs and GPU share, on a local runtime or a cluster."""

    def __init__(self, options: SweepOptions, echo: Callable[[str], None]):
        import ray

        self.ray = ray
        self.started = False
        self.startup_s = 0.0
        address = options.address
        if not ray.is_initialized():
            self._start(options)
        total = ray.cluster_resources()
        self.cpus, self.gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        self.capacity = self._capacity(options, echo)
        where = f"Ray cluster {address}" if address else "local Ray runtime"
        verb = "connected" if address else "started"
        self.description = (f"{where}{f' {verb} in {self.startup_s:.1f} s' if self.started else ''}: "
                            f"{self.cpus:g} CPU(s), {self.gpus:g} GPU(s)")
        self.remote = ray.remote(run_job)

    def _start(self, options: SweepOptions) -> None:
        """Start a local Ray runtime, or connect to the cluster at ``options.address``."""
        address = options.address
        start = time.perf_counter()
        if address:
            _wait_for_cluster(address, options.connect_timeout_s)
        try:
            # "local" always starts a runtime of our own, even when `ray start` left a cluster (or a stale
            # record of one) on this machine; Ray detects the cores and GPUs (cgroup limits included).
            # workers get the wait policy before they import torch (slt_deploy/threads.py)
            workers = thread_settings.worker_environment(thread_settings.ThreadSettings(
                max(1, int(options.resources.cpus)), source="sweep resources.cpus"))
            self.ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                          logging_level=logging.ERROR, ignore_reinit_error=True, runtime_env={"env_vars": workers})
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError... depending on the address
            where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
            hint = ""
            if address and "RAY_AUTH_MODE" not in os.environ:  # Ray 2.60 clusters want a token by default
                hint = (" (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token, "
                        "see Ray's token-auth docs)")
            raise SltError(f"cannot start or reach {where}: {error_line(exc)}{hint}") from None
        self.started = True
        self.startup_s = time.perf_counter() - start

    def _capacity(self, options: SweepOptions, echo: Callable[[str], None]) -> int:
        """How many jobs the runtime's CPUs and GPUs hold at once (a local runtime too small is an error)."""
        r = options.resources
        fits = int(self.cpus // r.cpus + 1e-9)
        if r.gpus > 0:
            fits = min(fits, int(self.gpus // r.gpus + 1e-9))
        if fits < 1:
            need = f"{r.cpus:g} CPU(s)" + (f" and {r.gpus:g} GPU(s)" if r.gpus else "")
            have = f"{self.cpus:g} CPU(s) and {self.gpus:g} GPU(s)"
            if not options.address:
                self.close()
                raise ConfigError(f"resources: a job needs {need} but the local Ray runtime has {have}")
            echo(f"sweep: warning: a job needs {need}, the cluster has {have} now (waiting for the autoscaler)")
        return max(1, fits)

    def submit(self, args: tuple, resources: Resources, name: str):
        # Retries are the sweep's own (resubmission), so every attempt's error is kept for the report.
        return self.remote.options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0,
                                   retry_exceptions=False, name=f"sweep:{name}").remote(*args)

    def wait(self, handles: Sequence) -> Tuple[Any, dict]:
        ready: list = []
        while not ready:  # in short waits, so that Ctrl-C and SIGTERM reach the driver at once
            ready, _ = self.ray.wait(list(handles), num_returns=1, timeout=1.0)
        try:
            return ready[0], self.ray.get(ready[0])
        except self.ray.exceptions.RayError as exc:  # worker killed (OOM, signal, node lost), task cancelled
            cause = getattr(exc, "cause", None)  # RayTaskError: what the task itself raised
            text = error_line(cause) if isinstance(cause, BaseException) else error_line(exc)
            return ready[0], {"ok": False, "error": text[:500], "seconds": None}

    def cancel(self, handles: Sequence) -> None:
        for ref in handles:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        # Cancelling is asynchronous: wait until each task is gone (or finished), so that what the run
        # directories hold no longer changes once the sweep has returned.
        with contextlib.suppress(Exception):
            self.ray.wait(list(handles), num_returns=len(handles), timeout=30)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _wait_for_cluster(address: str, timeout_s: float) -> None:
    """Fail within ``timeout_s`` when no Ray cluster answers at ``address``.

    ``ray.init`` keeps retrying an unreachable or silent address for minutes, inside Ray's C++ code where
    neither SIGTERM nor an alarm reaches Python, and Ray's own connect timeouts end the process without a
    message. So a HOST:PORT (or ray://HOST:PORT) address is first probed over TCP (refused or unroutable: one
    line at once), then ``ray.init`` is tried in a child process that is killed at the deadline; only then
    does this process connect. ``auto`` is left to Ray, which answers at once when it finds no cluster."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if address in ("auto", "local") or not sep or not port.isdigit():
        return
    deadline = time.monotonic() + timeout_s

    def fail(reason: str) -> SltError:
        return SltError(f"cannot reach the Ray cluster at {address} within {timeout_s:g} s: {reason} "
                        f"(is the cluster up? see connect_timeout_s)")

    _probe_tcp(host, int(port), deadline, fail)
    probe = ("import logging, ray\n"
             f"ray.init(address={address!r}, include_dashboard=False, log_to_driver=False, "
             "logging_level=logging.ERROR)\nray.shutdown()\n")
    try:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise fail("something listens there but no Ray cluster answered") from None
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith((" ", "["))]
        raise fail(" ".join(lines[-1].split())[:300] if lines else f"exit code {proc.returncode}")


def _probe_tcp(host: str, port: int, deadline: float, fail: Callable[[str], SltError]) -> None:
    """Retry a TCP connection to ``host:port`` until it opens or ``deadline`` (time.monotonic) passes."""
    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host.strip("[]"), port), timeout=max(0.1, min(left, 5.0))).close()
            return
        except OSError as exc:
            if time.monotonic() + 0.5 >= deadline:
                raise fail(error_line(exc)) from None
            time.sleep(0.5)
