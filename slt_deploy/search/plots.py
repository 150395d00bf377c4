"""PNG plots (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import List

from ..utils import atomic_path


def plot_accuracy_vs_sparsity(rounds: List[dict], path: str | Path, title: str = "") -> None:
    """Test accuracy of each round's ticket against its sparsity (the search run's summary plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(100 * r["sparsity"], 100 * r["accuracy"], r["label"]) for r in rounds if "accuracy" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if points:
        xs, ys, labels = zip(*points)
        ax.plot(xs, ys, "o-")
        for x, y, label in points:
            ax.annotate(label, (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_front(front: dict, path: str | Path, title: str = "") -> None:
    """Energy objective: every point's energy (log scale) against its held-out accuracy; the front joined, the
    chosen ticket ringed, the accuracy floor (dense round - max drop) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    nj = lambda p: 1e9 * p["energy_j"]
    pts = front["points"]
    ax.scatter([nj(p) for p in pts], [100 * p["accuracy"] for p in pts], s=14, color="0.6", label="rounds")
    line = sorted(front["front"], key=nj)
    ax.plot([nj(p) for p in line], [100 * p["accuracy"] for p in line], "o-", color="C0", label="front")
    for p in line:
        ax.annotate(f"{100 * p['sparsity']:.0f}% T={p['timesteps']}", (nj(p), 100 * p["accuracy"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    c = front["chosen"]
    ax.scatter([nj(c)], [100 * c["accuracy"]], s=120, facecolors="none", edgecolors="C3", label="chosen")
    ax.axhline(100 * front["reference_accuracy"] - front["max_accuracy_drop"], color="C3", ls="--", lw=0.8,
               label=f"dense - {front['max_accuracy_drop']} points")
    ax.set_xscale("log")
    ax.set_xlabel(f"energy per inference on {front['profile']} (nJ)")
    ax.set_ylabel(f"accuracy, {front['accuracy_on']} (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
