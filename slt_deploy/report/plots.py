"""Report plots (PNG, headless matplotlib).

Takes the report's data (:class:`slt_deploy.report.schema.ReportData`, its verdict rows included) and a path;
gives the PNG file. Computes nothing but what it draws: the break-even line is the verdict's own
(:meth:`~slt_deploy.report.schema.ActivityBreakEven.energy_at`).
"""


from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..cost.energy import COMPONENTS
from ..cost.profiles import SCOPES
from ..utils import atomic_path
from .render import _component_names, energy_unit
from .schema import EnergyRecord, ReportData

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


def _panel_entries(data: ReportData, name: str) -> List[Tuple[str, EnergyRecord]]:
    """(label, breakdown) of every model costed on profile ``name``; the convention panel uses cmos45."""
    if name == data.convention_45nm.profile and name not in data.profiles:
        return [(data.ann.label, data.ann.convention_45nm)] + [(n.label, n.convention_45nm.snn)
                                                               for n in data.networks]
    out = [(data.ann.label, data.ann.energy[name])] if name in data.ann.energy else []
    return out + [(n.label, n.energy[name]) for n in data.networks if name in n.energy]


def plot_energy_breakdown(data: ReportData, path: Path) -> Path:
    """Stacked bars of energy per inference by component, one panel per profile (the convention first), each
    panel on its own scale and unit: a chip's static power (Loihi 2: hundreds of uJ) on a shared axis would flatten
    every other panel to nothing; the verdict's tables compare across chips."""
    plt = _pyplot()
    names = list(dict.fromkeys([data.convention_45nm.profile, *data.profiles]))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False)
    colors = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(COMPONENTS)}
    fig.suptitle(f"Energy per inference by component ({data.counting_rule.ops} ops; each panel its own scale)",
                 fontsize=10)
    for ax, name in zip(axes.flat, names):
        entries = _panel_entries(data, name)
        totals = [b.total for _, b in entries if b.kind != "unknown"]
        scale, unit = energy_unit(max(totals + [1e-12]))
        bottom = np.zeros(len(entries))
        known = [(l, b) for l, b in entries if b.kind != "unknown"]
        for comp in _component_names([b for _, b in known]):
            # a total that is unknown gets no bar (a partial one would read as its cost)
            vals = np.array([0.0 if b.kind == "unknown" else b.components.get(comp, 0.0) / scale
                             for _, b in entries])
            if vals.any():
                ax.bar(range(len(entries)), vals, bottom=bottom, color=colors[comp], label=comp)
            bottom += vals
        unknown = [b for _, b in entries if b.kind == "unknown"]
        if unknown:  # said once per panel (one note per bar overlapped its neighbours); '?' marks which bars
            missing = list(dict.fromkeys(f for b in unknown for f in b.unknown))
            ax.text(0.5, 0.5, f"? unknown for {len(unknown)} of {len(entries)}: needs\n" + ", ".join(missing),
                    transform=ax.transAxes, ha="center", va="center", fontsize=8, wrap=True)
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels([{"exact": "", "lower bound": ">= ", "upper bound": "<= ", "estimate": "~",
                             "unknown": "? "}.get(b.kind, "") + l for l, b in entries],
                           rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"energy / inference ({unit})")
        ax.set_title(name if all(b.kind == "exact" for _, b in entries)
                     else f"{name} (>= lower bound, ~ estimate, ? unknown)", fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=6)
        ax.set_ylim(0, 1.1 * max(totals + [1e-12]) / scale)
        ax.set_xlim(-0.6, len(entries) - 0.4)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_sparsity_energy(data: ReportData, path: Path) -> Path:
    """Measured accuracy against sparsity, colored by energy per inference on the 45 nm convention."""
    plt = _pyplot()
    nets = data.networks
    energy = [n.convention_45nm.snn.total for n in nets]
    scale, unit = energy_unit(max(energy + [1e-12]))
    fig, ax = plt.subplots(figsize=(6, 4))
    points = ax.scatter([100 * n.sparsity for n in nets], [100 * n.accuracy_measured for n in nets],
                        c=[e / scale for e in energy], s=80, cmap="viridis")
    for n in nets:
        ax.annotate(n.label, (100 * n.sparsity, 100 * n.accuracy_measured), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    fig.colorbar(points, ax=ax, label=f"energy / inference, {data.convention_45nm.profile} ({unit})")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(f"accuracy on {nets[0].samples} test samples (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _front(points: List[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """The (energy, accuracy) points no other point beats on both (lower energy, higher accuracy)."""
    front, best = [], -1.0
    for e, a in sorted(points, key=lambda t: (t[0], -t[1])):
        if a > best:
            front.append((e, a))
            best = a
    return front


def chip_points(data: ReportData, chip: str) -> Tuple[List[tuple], List[tuple]]:
    """(SNN points, ANN points) of one chip at chip-dynamic scope: (low J, high J, accuracy %, label) each; the
    ANNs are every ANN of the report on every ANN target the chip is compared with (the verdict's matrix)."""
    rows = [r for r in data.verdict_matrix if r.profile == chip and r.scope == "chip-dynamic"]
    snn = {r.network: (r.snn_interval_j[0], r.snn_interval_j[1], 100 * data.network(r.network).accuracy_measured,
                       r.network) for r in rows}
    ann = {(r.ann, r.ann_profile): (r.ann_interval_j[0], r.ann_interval_j[1], 100 * r.ann_accuracy,
                                    f"{r.ann} on {r.ann_profile}") for r in rows}
    return list(snn.values()), list(ann.values())


def _draw_side(ax, points: List[tuple], color: str, marker: str, label: str) -> None:
    """Each point at its interval's high end (a bar down to the low end); an open one at its low end, marked
    '>' (at least); the side's front as a step line."""
    for low, high, acc, _ in points:
        if high == float("inf"):   # known only from below
            ax.scatter(low, acc, marker=">", s=40, color=color, alpha=0.6)
        elif low <= 0:             # known only from above (an upper bound)
            ax.scatter(high, acc, marker="<", s=40, facecolors="none", edgecolors=color)
        else:
            ax.errorbar(high, acc, xerr=[[high - low], [0]], fmt=marker, ms=6, color=color, capsize=2, alpha=0.85)
    known = [(high, acc) for low, high, acc, _ in points if high != float("inf") and high > 0]
    front = _front(known)
    if front:
        ax.step([f[0] for f in front], [f[1] for f in front], where="post", color=color, lw=1.2, label=label)


def plot_pareto(data: ReportData, path: Path) -> Path:
    """Per chip, accuracy against energy per inference (chip-dynamic scope, log scale): the SNN tickets' front
    (blue) and the ANNs' front (red, every ANN on every ANN target). No text on the points: the tables name
    them; a bar spans an energy's interval, '>' marks an energy known only from below, a hollow '<' one known
    only from above."""
    plt = _pyplot()
    chips = [p for p, e in data.profiles.items() if e.kind == "neuromorphic"
             and any(r.profile == p for r in data.verdict_matrix)]
    cols = min(3, max(1, len(chips)))
    rows = max(1, -(-len(chips) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, chip in zip(axes.flat, chips):
        snn, ann = chip_points(data, chip)
        _draw_side(ax, ann, "tab:red", "s", "ANN front")
        _draw_side(ax, snn, "tab:blue", "o", "SNN front")
        energies = [e for low, high, *_ in snn + ann for e in (low, high) if 0 < e < float("inf")]
        if energies:
            ax.set_xscale("log")
            ax.set_xlim(min(energies) / 2, max(energies) * 2)
        accs = [a for *_, a, _ in snn + ann]
        if accs:
            ax.set_ylim(max(0.0, min(accs) - 2), min(100.0, max(accs) + 1))
        ax.set_title(chip, fontsize=10)
        ax.set_xlabel("energy per inference (J), chip-dynamic", fontsize=8)
        ax.set_ylabel(f"accuracy, {data.networks[0].samples} test samples (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(chips):]:
        ax.axis("off")
    if not chips:
        axes.flat[0].text(0.5, 0.5, "no chip in the report", transform=axes.flat[0].transAxes, ha="center")
    fig.suptitle("SNN tickets (blue) and ANNs on every ANN target (red): accuracy vs energy per inference, per "
                 "chip; '>' at least, hollow '<' at most", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_break_even(data: ReportData, path: Path) -> Path:
    """Per chip: each network's SNN energy against its spike activity (spikes per neuron per step; the band is
    the interval at the verdict's scope), the best ANN's energy as a horizontal band, today's activity marked."""
    plt = _pyplot()
    rows = [r for r in data.verdict if r.break_even and r.break_even.activity.today]
    chips = list(dict.fromkeys(r.profile for r in rows))
    cols = min(3, max(len(chips), 1))
    grid_rows = -(-max(len(chips), 1) // cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(4.4 * cols, 3.4 * grid_rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(chips):]:
        ax.set_visible(bool(not chips and ax is flat[0]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, chip in zip(flat, chips):
        mine = [r for r in rows if r.profile == chip]
        # one scope per chip, the narrowest: a wider scope's static power would flatten every line of the panel
        narrowest = min((r.scope for r in mine), key=SCOPES.index)
        mine = [r for r in mine if r.scope == narrowest]
        top = max(max(2 * r.break_even.activity.today, r.break_even.activity.win_below or 0) for r in mine)
        xs = np.linspace(0.0, 1.2 * top, 50)
        for i, r in enumerate(mine):
            color = colors[i % len(colors)]
            line = r.break_even.activity
            today = line.today
            band = np.array([line.energy_at(x) for x in xs])
            finite = np.isfinite(band[:, 1])
            open_above = "" if finite.all() else " (lower end; open above)"
            ax.plot(xs, band[:, 0], color=color, lw=1.2, label=f"SNN {r.network}{open_above}")
            if finite.all():
                ax.fill_between(xs, band[:, 0], band[:, 1], color=color, alpha=0.2)
            low, high = line.energy_at(today)
            ax.scatter([today], [low], color=color, zorder=3)
            a_low, a_high = r.best_ann.ann_interval_j
            ax.axhline(a_low, color="tab:red", lw=1, ls="--")
            if np.isfinite(a_high) and a_high > a_low:
                ax.axhspan(a_low, a_high, color="tab:red", alpha=0.1)
        best = mine[0].best_ann
        ax.plot([], [], color="tab:red", ls="--", label=f"{best.ann} on {best.ann_profile}")
        fits = "" if mine[0].fits is not False else ", does not fit"
        ax.set_title(f"{chip} (scope {mine[0].scope}{fits})", fontsize=9)
        ax.set_xlabel("spike activity (spikes per neuron per step)", fontsize=8)
        ax.set_ylabel("energy per inference (J)", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    if not chips:
        flat[0].text(0.5, 0.5, "no chip with a known energy and an ANN to compare with",
                     transform=flat[0].transAxes, ha="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
