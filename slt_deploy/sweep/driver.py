"""The sweep driver: check the whole sweep, take its lock, submit the unfinished jobs to an executor (retrying
failures), report progress, and aggregate every job into tables, plots, a summary and an optional cost report."""

from __future__ import annotations

import collections
import sys
import time
from typing import Any, Callable, Deque, Dict, Optional

from ..errors import SltError
from .aggregate import AGGREGATE_FILES, cost_report, write_tables
from .executors import make_executor
from .job import JOB_LOG, is_finished, job_device
from .lock import sigterm_interrupts, sigterm_to_interrupt, sweep_lock
from .plots import write_plots
from .settings import SweepOptions, SweepSpec
from .state import JobState, SweepEvent, SweepResult
from .summary import write_summary
from .text import duration

Echo = Callable[[str], None]
OnEvent = Optional[Callable[[SweepEvent], None]]


def check_sweep(spec: SweepSpec) -> None:
    """Check the whole sweep before its first job: any problem is one error naming the sweep file and the job.

    Every job goes through the checks :func:`slt_deploy.search.check_search` makes before a search writes
    anything (data that loads, prunable layer names, ``rewind_epoch < epochs``, the reference ticket...);
    ``runs_dir``, ``out`` and the files written there must be writable, and the report's profiles must load.
    """
    from ..search import check_search

    where = spec.source or spec.name
    try:
        _check_outputs(spec)
    except SltError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    cache: dict = {}  # datasets and models shared by the jobs, loaded or built once
    for i, job in enumerate(spec.jobs, 1):
        try:
            from ..cost.objective import round_meter

            check_search(job.config, spec.runs_dir, cache=cache, meter=round_meter(job.config))
        except SltError as exc:
            raise type(exc)(f"{where}: job {i}/{len(spec.jobs)} ({job.label()}): {exc}") from None


def _check_outputs(spec: SweepSpec) -> None:
    from ..utils import check_output_dir, check_output_path

    check_output_dir(spec.runs_dir)
    check_output_dir(spec.out_dir)
    for name in AGGREGATE_FILES:
        check_output_path(spec.out_dir / name)
    if spec.options.report.profiles:
        from ..cost.profiles import load_profile

        for profile in spec.options.report.profiles:
            load_profile(profile)
        check_output_dir(spec.out_dir / "report")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_sweep(spec: SweepSpec, progress: bool = True, echo: Echo = _stderr, on_event: OnEvent = None) -> SweepResult:
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
    executor = make_executor(spec.options, echo) if todo else None
    running = False
    try:
        with sweep_lock(spec.out_dir), sigterm_interrupts():
            running = True  # from here on _run_sweep closes the executor
            return _run_sweep(spec, progress, echo, on_event, executor)
    finally:
        if executor is not None and not running:  # e.g. another driver holds the lock
            executor.close()


def _run_sweep(spec: SweepSpec, progress: bool, echo: Echo, on_event: OnEvent, executor: Any = None) -> SweepResult:
    loop = _JobLoop(spec, progress, echo, on_event)
    dup = f"; {spec.duplicates} duplicate(s) run once" if spec.duplicates else ""
    echo(f"sweep {spec.name}: {len(loop.states)} jobs, {loop.reused} already finished, {len(loop.todo)} to "
         f"run{dup}")
    startup_s = 0.0
    if loop.todo:
        executor = executor or make_executor(spec.options, echo)
        sigterm_to_interrupt()  # again: Ray's runtime replaced it with its own (abort with a stack dump)
        startup_s = getattr(executor, "startup_s", 0.0)
        loop.limit = _concurrency(spec.options, executor)
        echo(_executor_line(spec.options, executor, loop.limit))
    loop.start = time.perf_counter()
    try:
        loop.run(executor)
    except BaseException:
        loop.stop(executor)
        raise
    finally:
        wall_s = time.perf_counter() - loop.start
        if executor is not None:
            executor.close()
    return _aggregate(spec, loop, echo, startup_s, wall_s)


def _concurrency(opts: SweepOptions, executor) -> int:
    """Jobs in flight at once: ``max_concurrent``, else what the executor holds; one for the serial executor."""
    return 1 if opts.executor == "serial" else (opts.max_concurrent or executor.capacity)


def _executor_line(opts: SweepOptions, executor, limit: int) -> str:
    r = opts.resources
    return (f"sweep: {executor.description}; up to {limit} job(s) at once, {r.cpus:g} CPU(s)"
            f"{f' + {r.gpus:g} GPU' if r.gpus else ''} each, {opts.retries} retr{'y' if opts.retries == 1 else 'ies'}")


class _JobLoop:
    """Submits the pending jobs up to ``limit`` at once, settles each outcome (done, retry, failed) and reports it.

    A job's result is announced once its slot has been refilled, so "running" counts what really runs."""

    def __init__(self, spec: SweepSpec, progress: bool, echo: Echo, on_event: OnEvent):
        self.spec, self.opts, self.progress, self.echo, self.on_event = spec, spec.options, progress, echo, on_event
        self.states = [JobState(job, spec.runs_dir / job.run_name) for job in spec.jobs]
        for st in self.states:
            if is_finished(st.run_dir):
                st.status, st.reused = "done", True
        self.todo: Deque[JobState] = collections.deque(st for st in self.states if st.status == "pending")
        self.reused = len(self.states) - len(self.todo)
        self.in_flight: Dict[Any, JobState] = {}
        self.limit = 1
        self.start = time.perf_counter()

    def run(self, executor) -> None:
        news: Optional[tuple] = None
        while self.todo or self.in_flight:
            self._fill(executor)
            if news:
                self._emit(*news)
                news = None
            handle, outcome = executor.wait(list(self.in_flight))
            news = self._settle(self.in_flight.pop(handle), outcome)
            write_tables(self.spec, self.states, self.spec.out_dir)
        if news:
            self._emit(*news)

    def stop(self, executor) -> None:
        """Interrupted: cancel the jobs in flight and write the tables as they stand."""
        if executor is not None and self.in_flight:
            executor.cancel(list(self.in_flight))
            for st in self.in_flight.values():  # a job may have finished just before it was cancelled
                st.status = "done" if is_finished(st.run_dir) else "pending"
        write_tables(self.spec, self.states, self.spec.out_dir)

    def _fill(self, executor) -> None:
        opts = self.opts
        while self.todo and len(self.in_flight) < self.limit:
            st = self.todo.popleft()
            st.attempts += 1
            st.status = "running"
            args = (job_device(st.job.config, opts.resources).to_dict(), str(self.spec.runs_dir),
                    opts.resources.cpus, st.attempts, opts.retries + 1)
            self.in_flight[executor.submit(args, opts.resources, st.job.run_name)] = st
            self._emit("submitted", st)

    def _settle(self, st: JobState, outcome: dict) -> tuple:
        """Record one job's outcome; the event to announce: done, retry (queued again) or failed."""
        retries = self.opts.retries
        if outcome["ok"]:
            st.status, st.seconds = "done", outcome["seconds"]
            return ("done", st)
        st.errors.append(outcome["error"])
        where = f"{st.job.run_name} ({st.job.label()})"
        if st.attempts <= retries:
            st.status = "pending"
            self.todo.append(st)
            return ("retry", st, f"sweep: {where} failed (attempt {st.attempts}/{retries + 1}): "
                                 f"{outcome['error']}; retrying")
        st.status = "failed"
        return ("failed", st, f"sweep: FAILED {where} after {st.attempts} attempt(s): {outcome['error']} "
                              f"(log: {st.run_dir / JOB_LOG})")

    def _emit(self, kind: str, st: JobState, message: str = "") -> None:
        states = self.states
        finished_now = sum(1 for s in states if s.status in ("done", "failed") and not s.reused)
        remaining = len(self.todo) + len(self.in_flight)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / finished_now * remaining if finished_now else None
        event = SweepEvent(kind, st.job, sum(s.status == "done" for s in states), len(self.in_flight),
                           sum(s.status == "failed" for s in states), len(states), self.reused, elapsed,
                           0.0 if not remaining else eta, message)
        if message:
            self.echo(message)
        if self.progress and kind != "submitted":
            self.echo(event.progress_line())
        if self.on_event is not None:
            self.on_event(event)


def _aggregate(spec: SweepSpec, loop: _JobLoop, echo: Echo, startup_s: float, wall_s: float) -> SweepResult:
    """Tables, plots, the cost report and the summary over every job, and the closing lines."""
    out_dir = spec.out_dir
    rows = write_tables(spec, loop.states, out_dir)
    plots = write_plots(rows, spec.swept, out_dir)
    report = cost_report(spec, rows, out_dir, echo)
    summary = write_summary(spec, rows, plots, out_dir, report)
    labels = {st.job.run_name: st.job.label() for st in loop.states}
    failed = [r for r in rows if r["status"] == "failed"]
    for r in failed:
        echo(f"sweep: failed: {r['run_name']} ({labels[r['run_name']]}): {r['error']}")
    echo(f"sweep {spec.name}: {len(rows) - len(failed)} done ({loop.reused} reused), {len(failed)} failed, "
         f"in {duration(wall_s)}; results in {out_dir}")
    return SweepResult(out_dir, out_dir / "results.json", out_dir / "results.csv", summary, plots, rows, report,
                       spec.options.executor, startup_s, wall_s)

