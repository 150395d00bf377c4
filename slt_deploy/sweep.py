"""Sweeps: many independent ticket searches, run as Ray tasks (a local Ray runtime by default) or serially.

A sweep file (YAML or JSON)::

    base:                        # a RunConfig mapping, the schema of `slt-deploy search --config` files
      model: {name: mlp, hidden: [100]}
      data: {dataset: mnist, n_train: 2000, timesteps: 4}
    grid:                        # dotted key -> list of values; the jobs are the cartesian product
      search.method: [eb, random]
      search.seed: [0, 1]
    jobs:                        # optional list of overrides; every entry is combined with every grid point
      - {search.method: dense, search.target_sparsity: 0.9}     # an entry's own keys win over the grid's
    runs_dir: runs               # run directories (on a cluster: a folder every node sees)
    resources: {cpus: 1, gpus: 0}
    max_concurrent: 0            # 0 = as many jobs as the resources allow
    retries: 1
    address: null                # null = start a local Ray runtime; auto / HOST:PORT = a cluster

Every job is validated as a :class:`~slt_deploy.config.RunConfig` before anything runs; jobs with the same
run name run once. A job is ``search(config, runs_dir)``: a pure function of its configuration that writes
one run directory named by the configuration's hash, so a job whose final ticket exists is never submitted
again, and a job killed half-way resumes from its checkpoints when the sweep is run again.

Written to the sweep's ``out`` folder (default ``<runs_dir>/sweeps/<sweep file name>``), each file atomically:
``results.json`` and ``results.csv`` (one row per job, read back from the job's ticket), the plots of accuracy
against sparsity per method, against ``data.timesteps`` and against ``model.neuron.beta`` (whichever vary),
``summary.md``, and with ``report.profiles`` the cost report of :func:`slt_deploy.report.build_report` over
the tickets. Each job's output goes to ``<run_dir>/sweep_job.log``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import csv
import dataclasses
import io
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
import traceback
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .config import RunConfig, Settings, setting
from . import threads as thread_settings
from .errors import ConfigError, SltError
from .utils import atomic_path, write_json_atomic, write_text_atomic

FORMAT = "slt-deploy.sweep/1"
JOB_LOG = "sweep_job.log"
TICKET = "ticket.safetensors"  # search writes it atomically, after everything else of the search
PLOTS = {"data.timesteps": ("accuracy_vs_timesteps.png", "timesteps T"),
         "model.neuron.beta": ("accuracy_vs_beta.png", "membrane decay beta")}
SPARSITY_PLOT = "accuracy_vs_sparsity.png"
# Keys averaged over in the plots (seeds), and keys that only move a ticket along its method's sparsity curve.
SEED_KEYS = ("search.seed",)
SPARSITY_KEYS = ("search.method", "search.early_time", "search.target_sparsity", "search.rounds",
                 "search.prune_fraction", "search.reference")


# ------------------------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Resources(Settings):
    cpus: float = setting(1.0, "CPU cores reserved per job; also the job's torch threads")
    gpus: float = setting(0.0, "GPU share reserved per job (0.25 = four jobs per GPU); Ray sets the job's "
                          "CUDA_VISIBLE_DEVICES")

    def validate(self):
        if not self.cpus > 0:
            raise ConfigError(f"resources.cpus={self.cpus} must be > 0")
        if not self.gpus >= 0:
            raise ConfigError(f"resources.gpus={self.gpus} must be >= 0")


@dataclass(frozen=True)
class ReportSettings(Settings):
    profiles: Tuple[str, ...] = setting((), "hardware profiles of a cost report over the sweep's tickets "
                                            "(slt-deploy report); empty = no cost report")
    samples: int = setting(200, "test samples simulated per ticket for the cost report")

    def validate(self):
        if self.samples < 1:
            raise ConfigError(f"report.samples={self.samples} must be >= 1")


@dataclass(frozen=True)
class SweepOptions(Settings):
    """How a sweep runs; everything in a sweep file except ``base``, ``grid`` and ``jobs``."""

    runs_dir: str = setting("runs", "where run directories are written (relative to the current folder; on a "
                                    "cluster, a folder every node sees)")
    out: Optional[str] = setting(None, "folder of results.json/.csv, plots and summary.md; "
                                       "default <runs_dir>/sweeps/<sweep file name>")
    executor: str = setting("ray", "ray: every job is a Ray task; serial: one job after the other in this "
                                   "process, without Ray", choices=("ray", "serial"))
    address: Optional[str] = setting(None, "Ray cluster to run on (auto or HOST:PORT); "
                                           "null = start a local Ray runtime on this machine")
    connect_timeout_s: float = setting(60.0, "seconds to wait for the Ray cluster at address to answer before "
                                              "the sweep gives up")
    max_concurrent: int = setting(0, "jobs in flight at once; 0 = as many as the resources allow")
    retries: int = setting(1, "times a failed job (exception or killed worker) is run again")
    resources: Resources = field(default_factory=Resources, metadata={"help": "resources reserved per job"})
    report: ReportSettings = field(default_factory=ReportSettings, metadata={"help": "optional cost report"})

    def validate(self):
        if self.max_concurrent < 0:
            raise ConfigError(f"max_concurrent={self.max_concurrent} must be >= 0")
        if self.retries < 0:
            raise ConfigError(f"retries={self.retries} must be >= 0")
        if not self.connect_timeout_s > 0:
            raise ConfigError(f"connect_timeout_s={self.connect_timeout_s} must be > 0")
        if self.executor == "serial" and self.address:
            raise ConfigError(f"executor=serial runs in this process; it cannot use address={self.address!r}")


SECTIONS = ("base", "grid", "jobs")


@dataclass(frozen=True)
class Job:
    """One search of the sweep: its full settings and the dotted keys (grid point, job entry) that made it."""

    config: RunConfig
    overrides: Dict[str, Any]

    @property
    def run_name(self) -> str:
        return self.config.run_name()

    def label(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self.overrides.items()) or "base settings"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    options: SweepOptions
    jobs: Tuple[Job, ...]          # distinct run names, in expansion order
    swept: Tuple[str, ...]         # dotted keys set by the grid or the job entries
    duplicates: int = 0            # expanded jobs dropped because an earlier one had the same run name
    source: Optional[str] = None   # the sweep file

    @property
    def runs_dir(self) -> Path:
        return Path(self.options.runs_dir).expanduser().resolve()

    @property
    def out_dir(self) -> Path:
        if self.options.out:
            return Path(self.options.out).expanduser().resolve()
        return self.runs_dir / "sweeps" / self.name

    def with_options(self, **changes) -> "SweepSpec":
        """The same jobs with some options replaced (command-line flags), validated again."""
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **changes))


# ------------------------------------------------------------------------------------------ expansion

#: A grid with more jobs than this runs only when asked twice (``--yes``): a typo in a grid can mean days of work.
MAX_JOBS_WITHOUT_YES = 10_000


def load_sweep(path: str | Path, yes: bool = False) -> SweepSpec:
    """Read and expand a sweep file; any problem is one ConfigError naming the file and the key."""
    from .yamlio import read_file

    p = Path(path)
    data = read_file(p, "sweep file", mapping=False)  # parse_sweep says what a non-mapping should be
    return parse_sweep(data, where=str(p), name=p.stem, yes=yes)


def parse_sweep(data: Any, where: str = "sweep", name: str = "sweep", yes: bool = False) -> SweepSpec:
    """Expand a sweep mapping (the content of a sweep file) into validated, deduplicated jobs.

    More than :data:`MAX_JOBS_WITHOUT_YES` jobs are refused (before they are expanded) unless ``yes``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(_top_keys())}")
    unknown = sorted(set(map(str, data)) - set(_top_keys()))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_top_keys())}")
    try:
        options = SweepOptions.from_dict({k: v for k, v in data.items() if k not in SECTIONS}, where="sweep")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {_strip(exc, 'sweep')}") from None

    base = {} if data.get("base") is None else data["base"]
    if not isinstance(base, dict):
        raise ConfigError(f"{where}: base: expected a mapping with sections model/data/train/search")
    base_flat = _flatten(base, f"{where}: base")

    grid = {} if data.get("grid") is None else data["grid"]
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid: expected a mapping of dotted keys to lists of values")
    axes: List[Tuple[str, list]] = []
    for key, values in grid.items():
        key = str(key)
        _check_key(key, f"{where}: grid")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid: {key}: expected a non-empty list of values, got {_show(values)}")
        axes.append((key, values))

    entries = data.get("jobs")
    if entries is None:
        entries = [{}]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: jobs: expected a non-empty list of mappings (dotted key -> value)")
    entry_flats = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: jobs[{i}]: expected a mapping of dotted keys to values, got {_show(entry)}")
        entry_flats.append(_flatten(entry, f"{where}: jobs[{i}]"))
    if not axes and entry_flats == [{}]:
        raise ConfigError(f"{where}: nothing to run: give grid (dotted key -> list of values) and/or jobs")
    expanded_count = math.prod(len(values) for _, values in axes) * len(entry_flats)
    if expanded_count > MAX_JOBS_WITHOUT_YES and not yes:
        sizes = " x ".join(f"{len(values)} {key}" for key, values in axes)
        raise ConfigError(f"{where}: the sweep expands to {expanded_count:,} jobs ({sizes or 'grid'}"
                          f"{f' x {len(entry_flats)} jobs entries' if len(entry_flats) > 1 else ''}), more than "
                          f"{MAX_JOBS_WITHOUT_YES:,}: pass --yes to run them all")

    points: List[Dict[str, Any]] = [{}]
    for key, values in axes:
        expanded = []
        for point in points:
            for value in values:
                # a grid key naming a whole section takes mappings: its values vary together
                extra = (_flatten(value, f"{where}: grid: {key}", prefix=key) if isinstance(value, dict)
                         else {key: value})
                expanded.append({**point, **extra})
        points = expanded

    swept = list(dict.fromkeys([k for p in points for k in p] + [k for e in entry_flats for k in e]))
    models, datasets = _registries()
    jobs: Dict[str, Job] = {}
    duplicates = 0
    total = len(points) * len(entry_flats)
    for e_idx, entry in enumerate(entry_flats):
        for p_idx, point in enumerate(points):
            overrides = {**point, **entry}
            nested: dict = {}
            for key, value in {**base_flat, **overrides}.items():
                _set(nested, key, copy.deepcopy(value))
            settings = ", ".join(f"{k}={_show(v)}" for k, v in overrides.items()) or "base settings"
            label = f"job {e_idx * len(points) + p_idx + 1}/{total} ({settings})"
            try:
                config = RunConfig.from_dict(nested, where="settings")
            except ConfigError as exc:
                raise ConfigError(f"{where}: {label}: {_strip(exc, 'settings')}") from None
            if config.model.name not in models:
                raise ConfigError(f"{where}: {label}: model.name={config.model.name!r} is not a registered model "
                                  f"(available: {', '.join(models)})")
            if config.data.dataset not in datasets:
                raise ConfigError(f"{where}: {label}: data.dataset={config.data.dataset!r} is not a registered "
                                  f"dataset (available: {', '.join(datasets)})")
            job = Job(config, {k: _plain(v) for k, v in overrides.items()})
            if job.run_name in jobs:
                duplicates += 1
            else:
                jobs[job.run_name] = job
    return SweepSpec(name=name, options=options, jobs=tuple(jobs.values()), swept=tuple(swept),
                     duplicates=duplicates, source=where)


# ------------------------------------------------------------------------------------- whole-sweep checks

AGGREGATE_FILES = ("results.json", "results.csv", "summary.md")


def check_sweep(spec: SweepSpec) -> None:
    """Check the whole sweep before its first job: any problem is one error naming the sweep file and the job.

    Every job goes through the checks :func:`slt_deploy.search.check_search` makes before a search writes
    anything (data that loads, prunable layer names, ``rewind_epoch < epochs``, the reference ticket...);
    ``runs_dir``, ``out`` and the files written there must be writable, and the report's profiles must load.
    """
    from .search import check_search
    from .utils import check_output_dir, check_output_path

    where = spec.source or spec.name
    try:
        check_output_dir(spec.runs_dir)
        check_output_dir(spec.out_dir)
        for name in AGGREGATE_FILES:
            check_output_path(spec.out_dir / name)
        if spec.options.report.profiles:
            from .cost.profiles import load_profile

            for profile in spec.options.report.profiles:
                load_profile(profile)
            check_output_dir(spec.out_dir / "report")
    except SltError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    cache: dict = {}  # datasets and models shared by the jobs, loaded or built once
    for i, job in enumerate(spec.jobs, 1):
        try:
            from .cost.objective import round_meter

            check_search(job.config, spec.runs_dir, cache=cache, meter=round_meter(job.config))
        except SltError as exc:
            raise type(exc)(f"{where}: job {i}/{len(spec.jobs)} ({job.label()}): {exc}") from None


@contextlib.contextmanager
def sweep_lock(out_dir: Path) -> typing.Iterator[Path]:
    """Hold ``<out>/.sweep.lock`` while the sweep runs, so a second driver on the same sweep stops at once.

    An ``flock`` on the file is the lock (the kernel drops it when its holder dies, even by kill -9, so no stale
    lock needs clearing); the file's text says who holds it."""
    import fcntl

    from .utils import output_error

    path = out_dir / ".sweep.lock"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise output_error(path, exc, "cannot create the sweep's lock file") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = " ".join(handle.read().split()) or "another process"
            raise SltError(f"{out_dir}: another sweep driver is running this sweep ({holder}); wait for it to "
                           f"finish or stop it, then run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()} since {_now()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _sigterm_to_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt in the driver (main thread only). Called again after ``ray.init``,
    whose C++ runtime installs a handler that dumps a stack trace and aborts."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def _sigterm_interrupts() -> typing.Iterator[None]:
    """SIGTERM stops the driver like Ctrl-C (jobs in flight cancelled, tables written)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _sigterm_to_interrupt()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


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

    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=max(0.1, min(left, 5.0))).close()
            break
        except OSError as exc:
            if time.monotonic() + 0.5 >= deadline:
                raise fail(_error_line(exc)) from None
            time.sleep(0.5)
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


def _strip(exc: ConfigError, prefix: str) -> str:
    """A Settings error without the placeholder name given to from_dict ("settings.data.timesteps: ...")."""
    text = str(exc)
    return text[len(prefix) + 1:].lstrip() if text.startswith((prefix + ".", prefix + ":")) else text


def _top_keys() -> List[str]:
    return list(SECTIONS) + [f.name for f in dataclasses.fields(SweepOptions)]


def _registries():
    from .data import DATASETS
    from .models import MODELS

    return list(MODELS), list(DATASETS)


def _check_key(key: str, where: str) -> bool:
    """Check a dotted RunConfig key (``model.neuron.beta``); True when it names a whole section."""
    cls: type = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            scope = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"{where}: unknown key {key!r} ({part!r} is not in {scope}; valid: {', '.join(fields)})")
        hint = typing.get_type_hints(cls)[part]
        if isinstance(hint, type) and issubclass(hint, Settings):
            cls = hint
        elif i < len(parts) - 1:
            raise ConfigError(f"{where}: unknown key {key!r} ({'.'.join(parts[:i + 1])} is a setting, not a section)")
        else:
            return False
    return True


def _flatten(mapping: dict, where: str, prefix: str = "") -> Dict[str, Any]:
    """``{search: {method: imp}, data.timesteps: 4}`` -> ``{search.method: imp, data.timesteps: 4}``, checked."""
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if _check_key(full, where):
            if value is None:  # an empty section in YAML ("model:") means its defaults
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {full} is a section: expected a mapping, got {_show(value)}")
            out.update(_flatten(value, where, full))
        else:
            out[full] = value
    return out


def _set(nested: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = nested
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


def _get(config: RunConfig, key: str):
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return _plain(value)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _show(value) -> str:
    return json.dumps(_plain(value), separators=(",", ":")) if isinstance(value, (list, tuple, dict)) else str(value)


# ------------------------------------------------------------------------------------------------ a job

def job_device(config: RunConfig, resources: Resources) -> RunConfig:
    """Where a job with ``train.device=auto`` trains: on the GPU share it reserved (Ray's CUDA_VISIBLE_DEVICES
    shows the job only its GPU, so ``cuda`` is that one), on the CPU when it reserved none, so a job never
    takes a GPU that other jobs reserved. The device is a runtime setting: the run name stays the same."""
    if config.train.device != "auto":
        return config
    return config.replace(train=config.train.replace(device="cuda" if resources.gpus > 0 else "cpu"))


def run_job(config: dict, runs_dir: str, cpus: float, attempt: int, attempts: int) -> dict:
    """One sweep job: ``search`` of ``config`` into ``runs_dir``, its output appended to the run's log.

    Errors of the search are returned, not raised ({"ok": False, "error", ...}), so the serial and the Ray
    executor report them alike and no exception has to travel back pickled; a killed worker is reported by Ray.
    """
    start = time.perf_counter()
    cfg = RunConfig.from_dict(config)
    run_dir = Path(runs_dir) / cfg.run_name()
    threads = max(1, int(cpus))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir / JOB_LOG, "a", buffering=1)
    except OSError as exc:  # e.g. runs_dir not writable, or not mounted on this node
        return {"ok": False, "error": _error_line(exc), "seconds": time.perf_counter() - start}
    with log:
        log.write(f"=== attempt {attempt}/{attempts}  {_now()}  host {socket.gethostname()}  pid {os.getpid()}  "
                  f"{threads} torch thread(s)\n")
        import torch

        before = torch.get_num_threads()
        try:
            from .cost.objective import round_meter
            from .search import search  # in the try: an import that fails in a worker is the job's error

            # a reused Ray worker keeps the thread count of its first task unless it is set for each task
            thread_settings.apply(thread_settings.ThreadSettings(threads, source="sweep resources.cpus"))
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = search(cfg, runs_dir, progress=False, echo=lambda line: print(line, file=log, flush=True),
                                meter=round_meter(cfg))
        except Exception as exc:
            seconds = time.perf_counter() - start
            log.write(traceback.format_exc())
            log.write(f"=== failed after {seconds:.1f} s\n")
            return {"ok": False, "error": _error_line(exc), "seconds": seconds}
        finally:
            torch.set_num_threads(before)
        seconds = time.perf_counter() - start
        log.write(f"=== done in {seconds:.1f} s\n")
    return {"ok": True, "seconds": seconds, "ticket": str(result.ticket_path)}


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def is_finished(run_dir: Path) -> bool:
    return (run_dir / TICKET).is_file()


# ------------------------------------------------------------------------------------------ executors

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
            start = time.perf_counter()
            if address:
                _wait_for_cluster(address, options.connect_timeout_s)
            try:
                # "local" always starts a runtime of our own, even when `ray start` left a cluster (or a stale
                # record of one) on this machine; Ray detects the cores and GPUs (cgroup limits included).
                # workers get the wait policy before they import torch (slt_deploy/threads.py)
                workers = thread_settings.worker_environment(thread_settings.ThreadSettings(
                    max(1, int(options.resources.cpus)), source="sweep resources.cpus"))
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, ignore_reinit_error=True,
                         runtime_env={"env_vars": workers})
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError... depending on the address
                where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
                hint = ""
                if address and "RAY_AUTH_MODE" not in os.environ:  # Ray 2.60 clusters want a token by default
                    hint = (" (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token, "
                            "see Ray's token-auth docs)")
                raise SltError(f"cannot start or reach {where}: {_error_line(exc)}{hint}") from None
            self.started = True
            self.startup_s = time.perf_counter() - start
        total = ray.cluster_resources()
        self.cpus, self.gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        r = options.resources
        fits = int(self.cpus // r.cpus + 1e-9)
        if r.gpus > 0:
            fits = min(fits, int(self.gpus // r.gpus + 1e-9))
        if fits < 1:
            need = f"{r.cpus:g} CPU(s)" + (f" and {r.gpus:g} GPU(s)" if r.gpus else "")
            have = f"{self.cpus:g} CPU(s) and {self.gpus:g} GPU(s)"
            if not address:
                self.close()
                raise ConfigError(f"resources: a job needs {need} but the local Ray runtime has {have}")
            echo(f"sweep: warning: a job needs {need}, the cluster has {have} now (waiting for the autoscaler)")
        self.capacity = max(1, fits)
        where = f"Ray cluster {address}" if address else "local Ray runtime"
        verb = "connected" if address else "started"
        self.description = (f"{where}{f' {verb} in {self.startup_s:.1f} s' if self.started else ''}: "
                            f"{self.cpus:g} CPU(s), {self.gpus:g} GPU(s)")
        self.remote = ray.remote(run_job)

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
            text = _error_line(cause) if isinstance(cause, BaseException) else _error_line(exc)
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


# ------------------------------------------------------------------------------------------ the sweep

@dataclass
class JobState:
    job: Job
    run_dir: Path
    status: str = "pending"        # pending, running, done, failed
    reused: bool = False           # finished before this invocation: not submitted
    attempts: int = 0
    seconds: Optional[float] = None  # wall time of the successful attempt (this invocation)
    errors: List[str] = field(default_factory=list)
    row: Optional[dict] = None


@dataclass(frozen=True)
class SweepEvent:
    """What ``on_event`` receives after each change: the job concerned and the sweep's counts."""

    kind: str                      # submitted, done, retry, failed
    job: Job
    done: int
    running: int
    failed: int
    total: int
    reused: int
    elapsed_s: float
    eta_s: Optional[float]
    message: str = ""

    def progress_line(self) -> str:
        eta = "?" if self.eta_s is None else _duration(self.eta_s)
        return (f"sweep: done {self.done}/{self.total} ({self.reused} reused), running {self.running}, "
                f"failed {self.failed}, elapsed {_duration(self.elapsed_s)}, ETA {eta}")


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    results_json: Path
    results_csv: Path
    summary: Path
    plots: Dict[str, Path]
    rows: List[dict]
    report: Optional[Path] = None
    executor: str = ""
    startup_s: float = 0.0         # Ray start-up (0 when Ray was already running or not needed)
    wall_s: float = 0.0            # from the first submission to the last result

    @property
    def failed(self) -> List[dict]:
        return [r for r in self.rows if r["status"] == "failed"]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_sweep(spec: SweepSpec, progress: bool = True, echo: Callable[[str], None] = _stderr,
              on_event: Optional[Callable[[SweepEvent], None]] = None) -> SweepResult:
    """Run every job of ``spec`` whose run directory is not finished, then aggregate all of them.

    Failed jobs are retried ``retries`` times, then reported; the others still run. Interrupted (Ctrl-C, or
    an exception from ``on_event``), the jobs in flight are cancelled and the tables are written as they stand;
    running the sweep again resumes it. ``echo`` receives failures and, with ``progress``, one line per event.

    The whole sweep is checked first (:func:`check_sweep`); a lock file in the ``out`` folder stops a second
    driver of the same sweep (:func:`sweep_lock`); SIGTERM stops the driver like Ctrl-C.
    """
    check_sweep(spec)
    # the executor first (Ray started, or the cluster reached), before the lock, the out folder or a line of
    # progress: a cluster that cannot be reached is one line and leaves nothing on disk
    todo = any(not is_finished(spec.runs_dir / job.run_name) for job in spec.jobs)
    executor = _make_executor(spec.options, echo) if todo else None
    running = False
    try:
        with sweep_lock(spec.out_dir), _sigterm_interrupts():
            running = True  # from here on _run_sweep closes the executor
            return _run_sweep(spec, progress, echo, on_event, executor)
    finally:
        if executor is not None and not running:  # e.g. another driver holds the lock
            executor.close()


def _make_executor(opts: SweepOptions, echo: Callable[[str], None]):
    return SerialExecutor() if opts.executor == "serial" else RayExecutor(opts, echo)


def _run_sweep(spec: SweepSpec, progress: bool, echo: Callable[[str], None],
               on_event: Optional[Callable[[SweepEvent], None]], executor: Any = None) -> SweepResult:
    opts = spec.options
    runs_dir, out_dir = spec.runs_dir, spec.out_dir
    states = [JobState(job, runs_dir / job.run_name) for job in spec.jobs]
    for st in states:
        if is_finished(st.run_dir):
            st.status, st.reused = "done", True
    todo = collections.deque(st for st in states if st.status == "pending")
    reused = len(states) - len(todo)
    dup = f"; {spec.duplicates} duplicate(s) run once" if spec.duplicates else ""
    echo(f"sweep {spec.name}: {len(states)} jobs, {reused} already finished, {len(todo)} to run{dup}")

    startup_s, wall_s = 0.0, 0.0
    if todo:
        executor = executor or _make_executor(opts, echo)
        _sigterm_to_interrupt()  # again: Ray's runtime replaced it with its own (abort with a stack dump)
        startup_s = getattr(executor, "startup_s", 0.0)
        limit = opts.max_concurrent or executor.capacity
        if opts.executor == "serial":
            limit = 1
        r = opts.resources
        echo(f"sweep: {executor.description}; up to {limit} job(s) at once, {r.cpus:g} CPU(s)"
             f"{f' + {r.gpus:g} GPU' if r.gpus else ''} each, {opts.retries} retr{'y' if opts.retries == 1 else 'ies'}")
    in_flight: Dict[Any, JobState] = {}
    start = time.perf_counter()

    def emit(kind: str, st: JobState, message: str = "") -> None:
        finished_now = sum(1 for s in states if s.status in ("done", "failed") and not s.reused)
        remaining = len(todo) + len(in_flight)
        elapsed = time.perf_counter() - start
        eta = elapsed / finished_now * remaining if finished_now else None
        event = SweepEvent(kind, st.job, sum(s.status == "done" for s in states), len(in_flight),
                           sum(s.status == "failed" for s in states), len(states), reused, elapsed,
                           0.0 if not remaining else eta, message)
        if message:
            echo(message)
        if progress and kind != "submitted":
            echo(event.progress_line())
        if on_event is not None:
            on_event(event)

    # A job's result is announced once its slot has been refilled, so "running" counts what really runs.
    news: Optional[tuple] = None
    try:
        while todo or in_flight:
            while todo and len(in_flight) < limit:
                st = todo.popleft()
                st.attempts += 1
                st.status = "running"
                args = (job_device(st.job.config, opts.resources).to_dict(), str(runs_dir), opts.resources.cpus,
                        st.attempts, opts.retries + 1)
                in_flight[executor.submit(args, opts.resources, st.job.run_name)] = st
                emit("submitted", st)
            if news:
                emit(*news)
                news = None
            handle, outcome = executor.wait(list(in_flight))
            st = in_flight.pop(handle)
            if outcome["ok"]:
                st.status, st.seconds = "done", outcome["seconds"]
                news = ("done", st)
            else:
                st.errors.append(outcome["error"])
                where = f"{st.job.run_name} ({st.job.label()})"
                if st.attempts <= opts.retries:
                    st.status = "pending"
                    todo.append(st)
                    news = ("retry", st, f"sweep: {where} failed (attempt {st.attempts}/{opts.retries + 1}): "
                                         f"{outcome['error']}; retrying")
                else:
                    st.status = "failed"
                    news = ("failed", st, f"sweep: FAILED {where} after {st.attempts} attempt(s): "
                                          f"{outcome['error']} (log: {st.run_dir / JOB_LOG})")
            _write_tables(spec, states, out_dir)
        if news:
            emit(*news)
    except BaseException:
        if executor is not None and in_flight:
            executor.cancel(list(in_flight))
            for st in in_flight.values():  # a job may have finished just before it was cancelled
                st.status = "done" if is_finished(st.run_dir) else "pending"
        _write_tables(spec, states, out_dir)
        raise
    finally:
        wall_s = time.perf_counter() - start
        if executor is not None:
            executor.close()

    rows = _write_tables(spec, states, out_dir)
    plots = write_plots(rows, spec.swept, out_dir)
    report = _cost_report(spec, rows, out_dir, echo)
    summary = write_summary(spec, rows, plots, out_dir, report)
    labels = {st.job.run_name: st.job.label() for st in states}
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        echo(f"sweep: failed: {r['run_name']} ({labels[r['run_name']]}): {r['error']}")
    echo(f"sweep {spec.name}: {len(rows) - len(failed)} done ({reused} reused), {len(failed)} failed, "
         f"in {_duration(wall_s)}; results in {out_dir}")
    return SweepResult(out_dir, out_dir / "results.json", out_dir / "results.csv", summary, plots, rows, report,
                       opts.executor, startup_s, wall_s)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ------------------------------------------------------------------------------------------ aggregate

def _row(spec: SweepSpec, st: JobState) -> dict:
    """One table row; a finished job's numbers are read from its ticket (what the run directory holds)."""
    cfg = st.job.config
    row = {"run_name": st.job.run_name, "status": st.status}
    row.update({key: _get(cfg, key) for key in spec.swept})
    row.update(method=cfg.search.method + ("+et" if cfg.search.early_time else ""), model=cfg.model.name,
               dataset=cfg.data.dataset, timesteps=cfg.data.timesteps, beta=cfg.model.neuron.beta,
               seed=cfg.search.seed, sparsity=None, accuracy=None, search_time_s=None,
               job_time_s=None if st.seconds is None else round(st.seconds, 3), attempts=st.attempts,
               reused=st.reused, error=st.errors[-1] if st.errors else None, run_dir=str(st.run_dir),
               ticket=None)
    if st.status == "done":
        from .ticket import Ticket

        try:
            r = Ticket.load(st.run_dir / TICKET).record
        except SltError as exc:  # a ticket damaged after the run: report it, do not abort the aggregate
            row.update(status="failed", error=str(exc))
            return row
        row.update(method=r.method, timesteps=r.timesteps, seed=r.seed, sparsity=r.sparsity, accuracy=r.accuracy,
                   search_time_s=round(sum(r.wall_time_s), 3), ticket=str(st.run_dir / TICKET))
    return row


def _write_tables(spec: SweepSpec, states: List[JobState], out_dir: Path) -> List[dict]:
    rows = []
    for st in states:
        if st.status == "done" and st.row is None:
            st.row = _row(spec, st)  # tickets are read once
        rows.append(st.row if st.status == "done" else _row(spec, st))
    counts = collections.Counter(r["status"] for r in rows)
    write_json_atomic(out_dir / "results.json", {
        "format": FORMAT, "sweep": spec.source, "name": spec.name, "runs_dir": str(spec.runs_dir),
        "jobs": len(rows), "done": counts["done"], "failed": counts["failed"],
        "pending": counts["pending"] + counts["running"], "duplicates": spec.duplicates,
        "swept_keys": list(spec.swept), "rows": rows})
    buf = io.StringIO()
    columns = list(rows[0]) if rows else ["run_name", "status"]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else _show(v) if isinstance(v, (list, dict)) else v)
                         for k, v in row.items()})
    write_text_atomic(out_dir / "results.csv", buf.getvalue())
    return rows


PLOT_KEYS = ("sparsity", *PLOTS)


def _x(row: dict, key: str):
    """The x value of a finished row for plot ``key``: the ticket's sparsity (%), T or beta."""
    return {"sparsity": lambda: round(100 * row["sparsity"], 4), "data.timesteps": lambda: row["timesteps"],
            "model.neuron.beta": lambda: row["beta"]}[key]()


def _series(rows: List[dict], key: str, swept: Sequence[str]) -> Dict[str, Dict[Any, List[float]]]:
    """{series label: {x: [accuracy %]}} over the finished rows. Seeds are averaged over; every other swept key
    that varies (except the one on the x axis, and for sparsity the keys that set it) makes its own series."""
    done = [r for r in rows if r["status"] == "done" and r["accuracy"] is not None]
    # search.method (and early_time) are the method label, which every series starts with when it varies
    exclude = set(SEED_KEYS) | {key, "search.method", "search.early_time"} | (
        set(SPARSITY_KEYS) if key == "sparsity" else set())
    others = [k for k in swept if k not in exclude and len({_show(r[k]) for r in done}) > 1]
    by_method = key == "sparsity" or len({r["method"] for r in done}) > 1
    out: Dict[str, Dict[Any, List[float]]] = {}
    for r in done:
        parts = ([r["method"]] if by_method else []) + [f"{k.split('.')[-1]}={_show(r[k])}" for k in others]
        out.setdefault(", ".join(parts) or "all jobs", {}).setdefault(_x(r, key), []).append(100 * r["accuracy"])
    return out


def _varies(rows: List[dict], key: str) -> bool:
    done = [r for r in rows if r["status"] == "done" and r["accuracy"] is not None]
    if key == "sparsity":  # one point per method is no curve, but two methods are a comparison
        return len({(_x(r, key), r["method"]) for r in done}) > 1
    return len({_x(r, key) for r in done}) > 1


def write_plots(rows: List[dict], swept: Sequence[str], out_dir: Path) -> Dict[str, Path]:
    """Mean test accuracy (error bars: std over seeds) against sparsity per method, against T and against
    beta: each plot whose x value varies among the finished jobs."""
    plots = {}
    for key in PLOT_KEYS:
        if _varies(rows, key):
            filename, label = (SPARSITY_PLOT, "sparsity (%)") if key == "sparsity" else PLOTS[key]
            plots[key] = _plot(_series(rows, key, swept), label, f"test accuracy vs {label}", out_dir / filename,
                               integer_x=key == "data.timesteps")
    return plots


def _plot(series: Dict[str, Dict[Any, List[float]]], xlabel: str, title: str, path: Path,
          integer_x: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: sweeps run on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, points in series.items():
        xs = sorted(points)
        means = [_mean(points[x]) for x in xs]
        spread = [_std(points[x]) for x in xs]
        ax.errorbar(xs, means, yerr=spread if any(spread) else None, marker="o", capsize=3, label=label)
    if integer_x:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, ncol=2 if len(series) > 6 else 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # format given: the temporary file has no .png suffix
    plt.close(fig)
    return path


def _mean(values: List[float]) -> float:
    return sum(values) / len(values)


def _std(values: List[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _cost_report(spec: SweepSpec, rows: List[dict], out_dir: Path, echo) -> Optional[Path]:
    profiles = spec.options.report.profiles
    tickets = [r["ticket"] for r in rows if r["status"] == "done"]
    if not profiles or not tickets:
        return None
    from .report import build_report

    # the report's trained ANN twin is cached next to the report, so the sweep's runs folder holds only its jobs
    result = build_report(tickets, profiles=list(profiles), out=out_dir / "report",
                          samples=spec.options.report.samples, progress=False, runs_dir=out_dir / "ann_twin_runs")
    echo(f"sweep: cost report {result.markdown}")
    return result.markdown


def write_summary(spec: SweepSpec, rows: List[dict], plots: Dict[str, Path], out_dir: Path,
                  report: Optional[Path] = None) -> Path:
    counts = collections.Counter(r["status"] for r in rows)
    reused = sum(1 for r in rows if r["reused"])
    lines = [f"# Sweep {spec.name}", "",
             f"Sweep file: `{spec.source}`. Run directories: `{spec.runs_dir}`. Swept keys: "
             f"{', '.join(f'`{k}`' for k in spec.swept) or 'none'}.", "",
             f"{len(rows)} jobs: {counts['done']} done ({reused} finished by an earlier invocation), "
             f"{counts['failed']} failed, {counts['pending'] + counts['running']} not run. Table: `results.csv`, "
             f"`results.json`.", ""]
    if plots:
        lines += ["## Plots", ""]
        for key, path in plots.items():
            lines += [f"![accuracy vs {key}]({path.name})", ""]
    for key in plots:
        table = _series(rows, key, spec.swept)
        xs = sorted({x for points in table.values() for x in points})
        lines += [f"## Mean test accuracy (%) by {'sparsity (%)' if key == 'sparsity' else key} (± std over seeds)",
                  "", "| series | " + " | ".join(f"{x:.4g}" for x in xs) + " |", "|---|" + "---|" * len(xs)]
        for label, points in table.items():
            cells = ["" if x not in points else f"{_mean(points[x]):.2f}" +
                     (f" ± {_std(points[x]):.2f}" if len(points[x]) > 1 else "") for x in xs]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if report is not None:
        lines += [f"Cost report: [{report.relative_to(out_dir)}]({report.relative_to(out_dir)}).", ""]
    lines += ["## Jobs", "", "| run | " + " | ".join(spec.swept) + " | method | sparsity | accuracy | T | "
              "search s | status |", "|---|" + "---|" * (len(spec.swept) + 6)]
    for r in rows:
        pct = (lambda v: "" if v is None else f"{100 * v:.2f} %")
        lines.append(f"| {r['run_name']} | " + " | ".join(_show(r[k]) for k in spec.swept) +
                     f" | {r['method']} | {pct(r['sparsity'])} | {pct(r['accuracy'])} | {r['timesteps']} | "
                     f"{'' if r['search_time_s'] is None else r['search_time_s']} | {r['status']} |")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failures", ""]
        lines += [f"- `{r['run_name']}` ({', '.join(f'{k}={_show(r[k])}' for k in spec.swept)}): {r['error']} "
                  f"after {r['attempts']} attempt(s); log `{Path(r['run_dir']) / JOB_LOG}`" for r in failed]
    path = out_dir / "summary.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
