"""Mean test accuracy (error bars: std over seeds) against sparsity per method, against ``data.timesteps`` and
against ``model.neuron.beta``: each plot whose x value varies among the finished jobs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

from ..utils import atomic_path
from .text import show

PLOTS = {"data.timesteps": ("accuracy_vs_timesteps.png", "timesteps T"),
         "model.neuron.beta": ("accuracy_vs_beta.png", "membrane decay beta")}
SPARSITY_PLOT = "accuracy_vs_sparsity.png"
PLOT_KEYS = ("sparsity", *PLOTS)
# Keys averaged over in the plots (seeds), and keys that only move a ticket along its method's sparsity curve.
SEED_KEYS = ("search.seed",)
SPARSITY_KEYS = ("search.method", "search.early_time", "search.target_sparsity", "search.rounds",
                 "search.prune_fraction", "search.reference")

Series = Dict[str, Dict[Any, List[float]]]  # {series label: {x: [accuracy %]}}


def _x(row: dict, key: str):
    """The x value of a finished row for plot ``key``: the ticket's sparsity (%), T or beta."""
    return {"sparsity": lambda: round(100 * row["sparsity"], 4), "data.timesteps": lambda: row["timesteps"],
            "model.neuron.beta": lambda: row["beta"]}[key]()


def series(rows: List[dict], key: str, swept: Sequence[str]) -> Series:
    """{series label: {x: [accuracy %]}} over the finished rows. Seeds are averaged over; every other swept key
    that varies (except the one on the x axis, and for sparsity the keys that set it) makes its own series."""
    done = [r for r in rows if r["status"] == "done" and r["accuracy"] is not None]
    # search.method (and early_time) are the method label, which every series starts with when it varies
    exclude = set(SEED_KEYS) | {key, "search.method", "search.early_time"} | (
        set(SPARSITY_KEYS) if key == "sparsity" else set())
    others = [k for k in swept if k not in exclude and len({show(r[k]) for r in done}) > 1]
    by_method = key == "sparsity" or len({r["method"] for r in done}) > 1
    out: Series = {}
    for r in done:
        parts = ([r["method"]] if by_method else []) + [f"{k.split('.')[-1]}={show(r[k])}" for k in others]
        out.setdefault(", ".join(parts) or "all jobs", {}).setdefault(_x(r, key), []).append(100 * r["accuracy"])
    return out


def _varies(rows: List[dict], key: str) -> bool:
    done = [r for r in rows if r["status"] == "done" and r["accuracy"] is not None]
    if key == "sparsity":  # one point per method is no curve, but two methods are a comparison
        return len({(_x(r, key), r["method"]) for r in done}) > 1
    return len({_x(r, key) for r in done}) > 1


def write_plots(rows: List[dict], swept: Sequence[str], out_dir: Path) -> Dict[str, Path]:
    """Mean test accuracy (error bars: std over seeds) against sparsity per method, against T and against
    beta: each plot whose x value varies among the finished jobs."""
    plots = {}
    for key in PLOT_KEYS:
        if _varies(rows, key):
            filename, label = (SPARSITY_PLOT, "sparsity (%)") if key == "sparsity" else PLOTS[key]
            plots[key] = _plot(series(rows, key, swept), label, f"test accuracy vs {label}", out_dir / filename,
                               integer_x=key == "data.timesteps")
    return plots


def _plot(lines: Series, xlabel: str, title: str, path: Path, integer_x: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: sweeps run on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, points in lines.items():
        xs = sorted(points)
        means = [mean(points[x]) for x in xs]
        spread = [std(points[x]) for x in xs]
        ax.errorbar(xs, means, yerr=spread if any(spread) else None, marker="o", capsize=3, label=label)
    if integer_x:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=7, ncol=2 if len(lines) > 6 else 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # format given: the temporary file has no .png suffix
    plt.close(fig)
    return path


def mean(values: List[float]) -> float:
    return sum(values) / len(values)


def std(values: List[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
