"""The sweep's tables: ``results.json`` and ``results.csv``, one row per job (a finished job's numbers read back
from its ticket), and the optional cost report over the tickets."""

from __future__ import annotations

import collections
import csv
import io
from pathlib import Path
from typing import Any, List, Optional

from ..config import RunConfig
from ..errors import SltError
from ..utils import write_json_atomic, write_text_atomic
from .job import TICKET
from .settings import SweepSpec
from .state import JobState
from .text import plain, show

FORMAT = "slt-deploy.sweep/1"
AGGREGATE_FILES = ("results.json", "results.csv", "summary.md")


def _get(config: RunConfig, key: str):
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return plain(value)


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
        from ..ticket import Ticket

        try:
            r = Ticket.load(st.run_dir / TICKET).record
        except SltError as exc:  # a ticket damaged after the run: report it, do not abort the aggregate
            row.update(status="failed", error=str(exc))
            return row
        row.update(method=r.method, timesteps=r.timesteps, seed=r.seed, sparsity=r.sparsity, accuracy=r.accuracy,
                   search_time_s=round(sum(r.wall_time_s), 3), ticket=str(st.run_dir / TICKET))
    return row


def write_tables(spec: SweepSpec, states: List[JobState], out_dir: Path) -> List[dict]:
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
        writer.writerow({k: ("" if v is None else show(v) if isinstance(v, (list, dict)) else v)
                         for k, v in row.items()})
    write_text_atomic(out_dir / "results.csv", buf.getvalue())
    return rows


def cost_report(spec: SweepSpec, rows: List[dict], out_dir: Path, echo) -> Optional[Path]:
    """With ``report.profiles``, the cost report of :func:`slt_deploy.report.build_report` over the tickets."""
    profiles = spec.options.report.profiles
    tickets = [r["ticket"] for r in rows if r["status"] == "done"]
    if not profiles or not tickets:
        return None
    from ..report import build_report

    # the report's trained ANN twin is cached next to the report, so the sweep's runs folder holds only its jobs
    result = build_report(tickets, profiles=list(profiles), out=out_dir / "report",
                          samples=spec.options.report.samples, progress=False, runs_dir=out_dir / "ann_twin_runs")
    echo(f"sweep: cost report {result.markdown}")
    return result.markdown
