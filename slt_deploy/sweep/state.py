"""What a running sweep knows: each job's state, the events it reports, and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .settings import Job
from .text import duration


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
        eta = "?" if self.eta_s is None else duration(self.eta_s)
        return (f"sweep: done {self.done}/{self.total} ({self.reused} reused), running {self.running}, "
                f"failed {self.failed}, elapsed {duration(self.elapsed_s)}, ETA {eta}")


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
