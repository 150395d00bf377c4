"""Report plots (PNG, headless matplotlib)."""


from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..cost.profiles import FIGURES
from ..utils import atomic_path
from .render import _component_names, energy_unit

# ------------------------------------------------------------------------------------------------- plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: the report runs on servers without a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # format given: the temporary file has no .png suffix
    plt.close(fig)
    return path


def _panel_entries(data: dict, name: str) -> List[Tuple[str, dict]]:
    """(label, breakdown) of every model costed on profile ``name``; the convention panel uses cmos45."""
    if name == data["convention_45nm"]["profile"] and name not in data["profiles"]:
        return [("ANN", data["ann"]["convention_45nm"])] + [(n["label"], n["convention_45nm"]["snn"])
                                                           for n in data["networks"]]
    out = [("ANN", data["ann"]["energy"][name])] if name in data["ann"]["energy"] else []
    return out + [(n["label"], n["energy"][name]) for n in data["networks"] if name in n["energy"]]


def plot_energy_breakdown(data: dict, path: Path) -> Path:
    """Stacked bars of energy per inference by component, one panel per profile (the convention first)."""
    plt = _pyplot()
    names = list(dict.fromkeys([data["convention_45nm"]["profile"], *data["profiles"]]))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False)
    colors = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(FIGURES)}
    for ax, name in zip(axes.flat, names):
        entries = _panel_entries(data, name)
        scale, unit = energy_unit(max([b["total"] for _, b in entries] + [1e-12]))
        bottom = np.zeros(len(entries))
        for comp in _component_names([b for _, b in entries]):
            vals = np.array([b["components"].get(comp, 0.0) / scale for _, b in entries])
            ax.bar(range(len(entries)), vals, bottom=bottom, color=colors[comp], label=comp)
            bottom += vals
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels([("" if b["complete"] else ">= ") + l for l, b in entries], rotation=30, ha="right",
                           fontsize=7)
        ax.set_ylabel(f"energy / inference ({unit})")
        ax.set_title(name if all(b["complete"] for _, b in entries) else f"{name} (>= : lower bound)", fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=6)
        else:  # every figure this profile would need is unknown: say so instead of an empty frame
            ax.text(0.5, 0.5, "no known figure", transform=ax.transAxes, ha="center", va="center")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_sparsity_energy(data: dict, path: Path) -> Path:
    """Measured accuracy against sparsity, colored by energy per inference on the 45 nm convention."""
    plt = _pyplot()
    nets = data["networks"]
    energy = [n["convention_45nm"]["snn"]["total"] for n in nets]
    scale, unit = energy_unit(max(energy + [1e-12]))
    fig, ax = plt.subplots(figsize=(6, 4))
    points = ax.scatter([100 * n["sparsity"] for n in nets], [100 * n["accuracy_measured"] for n in nets],
                        c=[e / scale for e in energy], s=80, cmap="viridis")
    for n in nets:
        ax.annotate(n["label"], (100 * n["sparsity"], 100 * n["accuracy_measured"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    fig.colorbar(points, ax=ax, label=f"energy / inference, {data['convention_45nm']['profile']} ({unit})")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(f"accuracy on {nets[0]['samples']} test samples (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
