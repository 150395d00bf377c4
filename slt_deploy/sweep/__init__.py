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

The package, in the order a sweep runs: ``settings`` (typed options, jobs, the expanded sweep), ``expansion``
(sweep file -> jobs), ``driver`` (checks, the job loop, retries, progress), ``lock`` (one driver per sweep,
SIGTERM), ``executors`` (serial or Ray), ``job`` (one search in a worker), ``state`` (job states, events,
result), ``aggregate`` (results.json/.csv, cost report), ``plots`` and ``summary``.
"""

from __future__ import annotations

from .aggregate import AGGREGATE_FILES, FORMAT
from .driver import check_sweep, run_sweep
from .executors import RayExecutor, SerialExecutor, make_executor
from .expansion import MAX_JOBS_WITHOUT_YES, load_sweep, parse_sweep
from .job import JOB_LOG, TICKET, is_finished, job_device, run_job
from .lock import sweep_lock
from .plots import PLOTS, SPARSITY_PLOT, write_plots
from .settings import SECTIONS, Job, ReportSettings, Resources, SweepOptions, SweepSpec
from .state import JobState, SweepEvent, SweepResult
from .summary import write_summary

__all__ = ["AGGREGATE_FILES", "FORMAT", "JOB_LOG", "MAX_JOBS_WITHOUT_YES", "PLOTS", "SECTIONS", "SPARSITY_PLOT",
           "TICKET", "Job", "JobState", "RayExecutor", "ReportSettings", "Resources", "SerialExecutor",
           "SweepEvent", "SweepOptions", "SweepResult", "SweepSpec", "check_sweep", "is_finished", "job_device",
           "load_sweep", "make_executor", "parse_sweep", "run_job", "run_sweep", "sweep_lock", "write_plots",
           "write_summary"]
