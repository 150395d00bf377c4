"""A sweep's typed settings: how it runs (:class:`SweepOptions`), its jobs (:class:`Job`) and the whole
expanded sweep (:class:`SweepSpec`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import RunConfig, Settings, setting
from ..errors import ConfigError
from .text import show

#: The sections of a sweep file that describe its jobs; every other top-level key is a :class:`SweepOptions` field.
SECTIONS = ("base", "grid", "jobs")


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


def top_keys() -> list:
    """Every key a sweep file may have at its top level."""
    return list(SECTIONS) + [f.name for f in dataclasses.fields(SweepOptions)]


@dataclass(frozen=True)
class Job:
    """One search of the sweep: its full settings and the dotted keys (grid point, job entry) that made it."""

    config: RunConfig
    overrides: Dict[str, Any]

    @property
    def run_name(self) -> str:
        return self.config.run_name()

    def label(self) -> str:
        return ", ".join(f"{k}={show(v)}" for k, v in self.overrides.items()) or "base settings"


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
