"""Benchmark of the sweep stage: N identical small searches run serially in this process and through Ray.

The jobs differ only in their seed (so each has its own run directory), both executors start from a fresh,
empty runs folder, and both go through the same code (``slt_deploy.sweep.run_sweep``: skipping, logging,
aggregation). Reported, from one invocation:

- ``serial_s``: wall time of the sweep with ``executor: serial`` (one job after the other, 1 torch thread);
- ``ray_startup_s``: ``ray.init`` of a local runtime, measured on its own;
- ``ray_s``: wall time of the same sweep as Ray tasks (1 CPU each, as many at once as the machine has cores),
  Ray already started; it includes the workers' start-up (each imports torch, snnTorch and the package);
- ``speedup`` = serial_s / ray_s, and ``speedup_with_startup`` = serial_s / (ray_s + ray_startup_s);
- ``overhead_per_job_s`` = (ray_s - serial_s / slots) / N: what Ray costs per job beyond a perfect split of the
  serial work over the ``slots`` concurrent jobs. It has two parts: ``outside_jobs_per_job_s`` =
  (ray_s - sum of the jobs' own wall times / slots) / N, the time a slot spends outside any job (worker start-up
  and imports, scheduling, results), and the rest, jobs running slower side by side than alone (shared cores,
  memory bandwidth, other load on the machine), visible in ``job_s_ray`` against ``job_s_serial``.

    .venv/bin/python benchmarks/sweep_ray.py [--jobs 8] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import slt_deploy.search  # noqa: F401  -- imported before timing: both executors' driver pays it once
from slt_deploy.sweep import parse_sweep, run_sweep
from slt_deploy.utils import write_json_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=8, help="number of identical jobs (distinct seeds)")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--timesteps", type=int, default=5)
    ap.add_argument("--hidden", default="300,100")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)

    sweep = {"base": {"model": {"name": "mlp", "hidden": [int(h) for h in args.hidden.split(",")]},
                      "data": {"dataset": "mnist", "n_train": args.n_train, "n_test": 1000,
                               "timesteps": args.timesteps},
                      "train": {"epochs": args.epochs}, "search": {"method": "dense"}},
             "grid": {"search.seed": list(range(args.jobs))},
             "resources": {"cpus": 1}, "retries": 0}
    results = {"command": "python benchmarks/sweep_ray.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
               "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
                          f"torch {torch.__version__}, CPU, load average at start {os.getloadavg()[0]:.2f}",
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "sweep": sweep, "jobs": args.jobs}

    def run(executor: str):
        with tempfile.TemporaryDirectory(prefix=f"sweep-bench-{executor}-") as runs:
            spec = parse_sweep(dict(sweep, runs_dir=runs, executor=executor), name=f"bench_{executor}")
            start = time.perf_counter()
            result = run_sweep(spec, progress=False, echo=lambda line: print(f"  {line}"))
            wall = time.perf_counter() - start
            assert not result.failed and not any(r["reused"] for r in result.rows), "a job failed or was reused"
            return wall, result.rows

    print(f"### serial: {args.jobs} jobs in this process")
    serial_s, serial_rows = run("serial")

    import ray

    print("### ray: local runtime")
    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    startup_s = time.perf_counter() - start
    slots = int(ray.cluster_resources().get("CPU", 1))
    try:
        ray_s, ray_rows = run("ray")
    finally:
        ray.shutdown()

    ideal = serial_s / min(slots, args.jobs)
    serial_jobs = [r["job_time_s"] for r in serial_rows]
    ray_jobs = [r["job_time_s"] for r in ray_rows]
    results.update(
        slots=slots, serial_s=round(serial_s, 2), ray_startup_s=round(startup_s, 2), ray_s=round(ray_s, 2),
        speedup=round(serial_s / ray_s, 3), speedup_with_startup=round(serial_s / (ray_s + startup_s), 3),
        ideal_parallel_s=round(ideal, 2), overhead_per_job_s=round((ray_s - ideal) / args.jobs, 3),
        outside_jobs_per_job_s=round((ray_s - sum(ray_jobs) / min(slots, args.jobs)) / args.jobs, 3),
        job_s_serial={"mean": round(statistics.mean(serial_jobs), 3), "min": min(serial_jobs), "max": max(serial_jobs)},
        job_s_ray={"mean": round(statistics.mean(ray_jobs), 3), "min": min(ray_jobs), "max": max(ray_jobs)},
        same_tickets=[(r["run_name"], r["accuracy"]) for r in serial_rows] ==
                     [(r["run_name"], r["accuracy"]) for r in ray_rows],
        load_average_at_end=round(os.getloadavg()[0], 2))
    print(json.dumps({k: v for k, v in results.items() if k not in ("sweep", "command")}, indent=2))
    out = Path(args.out) / "sweep_ray.json"
    write_json_atomic(out, results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
