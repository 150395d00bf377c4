"""How many threads the toolkit computes with, and how they wait: one place for torch, BLAS and onnxruntime.

Why this module exists. torch (GNU OpenMP, ``libgomp``), numpy's BLAS (OpenBLAS's own pool) and onnxruntime
each start a pool of worker threads, by default one per core of the machine. Between two parallel regions a
GNU OpenMP worker does not sleep: it *spins* on the CPU for ``GOMP_SPINCOUNT`` (300,000 by default) checks
before it blocks, and a training step has thousands of small parallel regions. Alone on the machine that costs
little; with a second job on the same cores (a sweep's workers, a second terminal, CI beside an editor), the
spinning threads take the cores the other job's threads are waiting for, and both collapse: two identical
searches side by side on 2 cores took 16-20x the time of one alone (issue 31), 2.8x with passive waiting.

The rules, in order:

- **Wait policy.** ``OMP_WAIT_POLICY=PASSIVE`` (a waiting thread sleeps; libgomp then sets its spin count to 0)
  unless the user set it. OpenMP reads it once, when its runtime starts, i.e. when torch or numpy is first
  imported; so :func:`prepare_environment` runs when ``slt_deploy`` is imported (``slt_deploy/__init__.py``, the
  first import of the ``slt-deploy`` command), is passed to the sweep's workers in their environment
  (:func:`worker_environment`, Ray's ``runtime_env``) and is set by ``tests/conftest.py`` before it imports torch.
- **Thread count** (:func:`resolve`): the ``--threads`` flag, else ``OMP_NUM_THREADS`` (the user's setting for
  every OpenMP program), else the cores this process may run on (``os.sched_getaffinity``: a ``taskset`` or a
  container's cpuset counts, the machine's core count does not).
- **Inter-op threads: 1.** The toolkit runs one graph at a time; torch's and onnxruntime's inter-op pools would
  only add threads that wait.
- **Applied alike** (:func:`apply`): ``torch.set_num_threads`` / ``set_num_interop_threads``, BLAS through
  threadpoolctl (installed with scikit-learn), and every onnxruntime session the toolkit opens
  (:func:`session_options`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Mapping, MutableMapping, Optional

from .errors import ConfigError

#: the environment a process needs before its OpenMP runtime starts (user settings win: set only when absent)
WAIT_POLICY = "PASSIVE"
#: the thread-count variables of OpenMP, MKL and OpenBLAS, set together for a child process
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ThreadSettings:
    """The resolved choice: ``threads`` compute threads per process (torch intra-op, BLAS, onnxruntime
    intra-op), ``interop`` inter-op threads, and ``source``: where the count came from."""

    threads: int
    interop: int = 1
    source: str = "affinity"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity call on this platform
        return max(1, os.cpu_count() or 1)


def _count(value, where: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}={value!r} is not a whole number of threads") from None
    if n < 1:
        raise ConfigError(f"{where}={n} must be >= 1 thread")
    return n


def resolve(flag: Optional[int] = None, environ: Optional[Mapping[str, str]] = None,
            cores: Optional[int] = None) -> ThreadSettings:
    """The thread settings from the ``--threads`` flag, else ``OMP_NUM_THREADS``, else the affinity mask."""
    environ = os.environ if environ is None else environ
    if flag is not None:
        return ThreadSettings(_count(flag, "--threads"), source="--threads")
    if environ.get("OMP_NUM_THREADS", "").strip():
        # OpenMP also allows a list ("4,2") for nested levels; the first entry is the outer level
        first = environ["OMP_NUM_THREADS"].split(",")[0]
        return ThreadSettings(_count(first, "OMP_NUM_THREADS"), source="OMP_NUM_THREADS")
    return ThreadSettings(available_cores() if cores is None else cores, source="affinity")


def prepare_environment(environ: Optional[MutableMapping[str, str]] = None) -> None:
    """Set the wait policy for OpenMP runtimes not started yet (the user's own setting wins)."""
    environ = os.environ if environ is None else environ
    environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def worker_environment(settings: ThreadSettings) -> Dict[str, str]:
    """The environment of a child process (a sweep worker) that runs ``settings.threads`` threads."""
    env = {name: str(settings.threads) for name in THREAD_VARIABLES}
    env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", WAIT_POLICY)
    return env


_APPLIED: Optional[ThreadSettings] = None


def apply(settings: ThreadSettings) -> ThreadSettings:
    """Use ``settings`` in this process: torch's pools, BLAS, and the onnxruntime sessions opened from now on.

    Libraries not loaded yet read the thread-count variables when they start (set here for them and for child
    processes); torch and BLAS already loaded are told directly. torch accepts an inter-op count only before its
    first parallel work; later it keeps the pool it has (idle unless a graph forks work).
    """
    global _APPLIED
    import sys

    os.environ.update({name: str(settings.threads) for name in THREAD_VARIABLES})
    prepare_environment()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(settings.threads)
        if torch.get_num_interop_threads() != settings.interop:
            try:
                torch.set_num_interop_threads(settings.interop)
            except RuntimeError:
                pass
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # scikit-learn brings it; without it BLAS keeps the count it started with
            pass
        else:
            threadpool_limits(limits=settings.threads, user_api="blas")
    _APPLIED = settings
    return settings


def current() -> ThreadSettings:
    """The settings applied in this process, else those :func:`resolve` gives now."""
    return _APPLIED if _APPLIED is not None else resolve()


def session_options(options=None):
    """onnxruntime ``SessionOptions`` with the toolkit's thread counts (a new object unless one is given)."""
    if options is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
    settings = current()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.interop
    return options


__all__ = ["ThreadSettings", "WAIT_POLICY", "THREAD_VARIABLES", "available_cores", "resolve",
           "prepare_environment", "worker_environment", "apply", "current", "session_options"]
