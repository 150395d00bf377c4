"""``summary.md``: the sweep's counts, its plots, the mean accuracy tables behind them, every job and the failures."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Dict, List, Optional

from ..utils import write_text_atomic
from .job import JOB_LOG
from .plots import mean, series, std
from .settings import SweepSpec
from .text import show


def write_summary(spec: SweepSpec, rows: List[dict], plots: Dict[str, Path], out_dir: Path,
                  report: Optional[Path] = None) -> Path:
    lines = _counts(spec, rows)
    if plots:
        lines += ["## Plots", ""]
        for key, path in plots.items():
            lines += [f"![accuracy vs {key}]({path.name})", ""]
    for key in plots:
        lines += _accuracy_table(spec, rows, key)
    if report is not None:
        lines += [f"Cost report: [{report.relative_to(out_dir)}]({report.relative_to(out_dir)}).", ""]
    lines += _jobs_table(spec, rows)
    lines += _failures(spec, rows)
    path = out_dir / "summary.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _counts(spec: SweepSpec, rows: List[dict]) -> List[str]:
    counts = collections.Counter(r["status"] for r in rows)
    reused = sum(1 for r in rows if r["reused"])
    return [f"# Sweep {spec.name}", "",
            f"Sweep file: `{spec.source}`. Run directories: `{spec.runs_dir}`. Swept keys: "
            f"{', '.join(f'`{k}`' for k in spec.swept) or 'none'}.", "",
            f"{len(rows)} jobs: {counts['done']} done ({reused} finished by an earlier invocation), "
            f"{counts['failed']} failed, {counts['pending'] + counts['running']} not run. Table: `results.csv`, "
            f"`results.json`.", ""]


def _accuracy_table(spec: SweepSpec, rows: List[dict], key: str) -> List[str]:
    table = series(rows, key, spec.swept)
    xs = sorted({x for points in table.values() for x in points})
    lines = [f"## Mean test accuracy (%) by {'sparsity (%)' if key == 'sparsity' else key} (± std over seeds)",
             "", "| series | " + " | ".join(f"{x:.4g}" for x in xs) + " |", "|---|" + "---|" * len(xs)]
    for label, points in table.items():
        cells = ["" if x not in points else f"{mean(points[x]):.2f}" +
                 (f" ± {std(points[x]):.2f}" if len(points[x]) > 1 else "") for x in xs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def _jobs_table(spec: SweepSpec, rows: List[dict]) -> List[str]:
    lines = ["## Jobs", "", "| run | " + " | ".join(spec.swept) + " | method | sparsity | accuracy | T | "
             "search s | status |", "|---|" + "---|" * (len(spec.swept) + 6)]
    for r in rows:
        pct = (lambda v: "" if v is None else f"{100 * v:.2f} %")
        lines.append(f"| {r['run_name']} | " + " | ".join(show(r[k]) for k in spec.swept) +
                     f" | {r['method']} | {pct(r['sparsity'])} | {pct(r['accuracy'])} | {r['timesteps']} | "
                     f"{'' if r['search_time_s'] is None else r['search_time_s']} | {r['status']} |")
    return lines


def _failures(spec: SweepSpec, rows: List[dict]) -> List[str]:
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return []
    return ["", "## Failures", ""] + [
        f"- `{r['run_name']}` ({', '.join(f'{k}={show(r[k])}' for k in spec.swept)}): {r['error']} "
        f"after {r['attempts']} attempt(s); log `{Path(r['run_dir']) / JOB_LOG}`" for r in failed]
