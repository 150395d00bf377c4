"""What every benchmark records next to its numbers: the exact command, the machine and the date."""

from __future__ import annotations

import argparse
import os
import platform
from datetime import datetime, timezone

import torch


def add_run_args(ap: argparse.ArgumentParser) -> None:
    """Flags shared by the search benchmarks: seed, where runs and results go, torch threads."""
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default="benchmarks/runs")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 makes CPU time a fair measure on a shared machine")


def provenance(script: str, args: argparse.Namespace) -> dict:
    return {"command": f"python benchmarks/{script} " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
            "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, torch "
                       f"{torch.__version__} threads {torch.get_num_threads()}, CPU, load average at start "
                       f"{os.getloadavg()[0]:.2f}",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
