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
