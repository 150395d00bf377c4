"""One sweep job: ``search(config, runs_dir)`` in a worker (or this process), its output in the run's log.

A job is a pure function of its configuration that writes one run directory named by the configuration's hash,
so a job whose final ticket exists is finished, and a job killed half-way resumes from its checkpoints."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from pathlib import Path

from .. import threads as thread_settings
from ..config import RunConfig
from .settings import Resources
from .text import error_line, now

JOB_LOG = "sweep_job.log"
TICKET = "ticket.safetensors"  # search writes it atomically, after everything else of the search


def is_finished(run_dir: Path) -> bool:
    return (run_dir / TICKET).is_file()


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
        return {"ok": False, "error": error_line(exc), "seconds": time.perf_counter() - start}
    with log:
        log.write(f"=== attempt {attempt}/{attempts}  {now()}  host {socket.gethostname()}  pid {os.getpid()}  "
                  f"{threads} torch thread(s)\n")
        import torch

        before = torch.get_num_threads()
        try:
            from ..cost.objective import round_meter
            from ..search import search  # in the try: an import that fails in a worker is the job's error

            # a reused Ray worker keeps the thread count of its first task unless it is set for each task
            thread_settings.apply(thread_settings.ThreadSettings(threads, source="sweep resources.cpus"))
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = search(cfg, runs_dir, progress=False, echo=lambda line: print(line, file=log, flush=True),
                                meter=round_meter(cfg))
        except Exception as exc:
            seconds = time.perf_counter() - start
            log.write(traceback.format_exc())
            log.write(f"=== failed after {seconds:.1f} s\n")
            return {"ok": False, "error": error_line(exc), "seconds": seconds}
        finally:
            torch.set_num_threads(before)
        seconds = time.perf_counter() - start
        log.write(f"=== done in {seconds:.1f} s\n")
    return {"ok": True, "seconds": seconds, "ticket": str(result.ticket_path)}
