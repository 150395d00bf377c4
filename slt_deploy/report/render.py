"""Report rendering: sections of tables and images, as Markdown and as self-contained HTML.

Takes the report's data (:class:`slt_deploy.report.schema.ReportData`, read by attribute); gives the report's
sections (:func:`report_sections`) and their Markdown and HTML text. Computes nothing: every number is in the data.
"""


import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union


from ..cost.energy import COMPONENTS
from .schema import (EnergyRecord, MappingEntry, MatrixRow, NetworkEntry, ReportData,
                     VerdictRow)

# --------------------------------------------------------------------------------------------- rendering

@dataclass(frozen=True)
class Table:
    columns: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: str
    alt: str


@dataclass(frozen=True)
class Heading:
    text: str


Block = Union[str, Table, Image, Heading]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Tuple[Block, ...] = field(default_factory=tuple)


_PREFIXES = ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def energy_unit(joules: float) -> Tuple[float, str]:
    """(scale, unit) so that joules / scale is in [1, 1000) where possible."""
    for scale, unit in _PREFIXES:
        if abs(joules) >= scale:
            return scale, unit
    return _PREFIXES[-1]


def fmt_joules(j: float) -> str:
    scale, unit = energy_unit(j)
    return f"{j / scale:.4g} {unit}"


def fmt_energy(b: Optional[EnergyRecord]) -> str:
    """A breakdown's total, saying what it is: 'unknown: needs X', '>= ' a lower bound (a needed figure is
    unknown or a lower bound), '<= ' an upper bound, '~ ... (estimate)' when it mixes both kinds of bound."""
    if b is None:
        return "-"
    kind = b.kind
    if kind == "unknown":
        return "unknown: needs " + ", ".join(b.unknown)
    value = fmt_joules(b.total)
    if kind == "estimate":
        return f"~{value} (estimate)"
    if kind == "lower bound":
        return f">= {value}"
    if kind == "upper bound":
        return f"<= {value}"
    return value


def fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "unknown"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if abs(s) >= scale:
            return f"{s / scale:.4g} {unit}"
    return f"{s / 1e-9:.4g} ns"


def fmt_bytes(b: Optional[float]) -> str:
    if b is None:
        return "unknown"
    if b >= 1024 ** 2:
        return f"{b / 1024 ** 2:.2f} MiB"
    return f"{b / 1024:.1f} KiB"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _fit(mapping: Optional[MappingEntry]) -> str:
    if mapping is None:
        return "-"
    if mapping.fits is None:
        return "not checked"
    if mapping.fits:
        return f"yes ({mapping.cores_used} cores)" if mapping.cores_used is not None else "yes"
    return "no"


def _summary_table(data: ReportData) -> Table:
    """One row per model: the ANN, then every input; energy per profile and fit per placeable profile."""
    conv = data.convention_45nm.profile
    energy_cols = [p for p in data.profiles if p != conv]  # the convention has its own column
    fit_cols = [p for p in data.profiles if any(p in n.mapping for n in data.networks)]
    ann = data.ann
    cols = ("model", "file", "sparsity", "binary", "T / encoding", "accuracy (record)",
            f"accuracy ({data.networks[0].samples} samples)", f"E 45 nm ({conv})", "% of ANN (45 nm)",
            *[f"E {p}" for p in energy_cols], *[f"fits {p}" for p in fit_cols])
    rows = [(ann.label, Path(ann.file).name, _pct(ann.sparsity), "-", "1 pass / image", "-",
             _pct(ann.accuracy_measured), fmt_energy(ann.convention_45nm), "100.00 %",
             *[fmt_energy(ann.energy.get(p)) for p in energy_cols], *["-" for _ in fit_cols])]
    for n in data.networks:
        rows.append((n.label, Path(n.file).name, _pct(n.sparsity), "yes" if n.binary else "no",
                     f"{n.timesteps} / {n.encoding}", _pct(n.accuracy), _pct(n.accuracy_measured),
                     fmt_energy(n.convention_45nm.snn), f"{n.convention_45nm.percent_of_ann:.2f} %",
                     *[fmt_energy(n.energy.get(p)) for p in energy_cols],
                     *[_fit(n.mapping.get(p)) for p in fit_cols]))
    return Table(cols, tuple(rows))


def _convention_section(data: ReportData) -> Section:
    c = data.convention_45nm
    rows = tuple((n.label, fmt_energy(n.convention_45nm.snn), fmt_energy(n.convention_45nm.ann),
                  f"{n.convention_45nm.percent_of_ann:.2f} %") for n in data.networks)
    pairs = tuple((r.network, r.snn_profile, r.ann_profile,
                   "-" if r.percent is None else f"{r.percent:.2f} %", r.note) for r in data.ratios)
    blocks: List[Block] = [
        f"45 nm convention (profile {c.profile}, both sides): {c.formula}, with E_MAC = "
        f"{c.mac.value} {c.mac.unit} and E_AC = {c.synaptic_op.value} {c.synaptic_op.unit} "
        f"({c.mac.source}). " + data.counting_rule.sentence,
        Table(("model", "E_SNN", "E_ANN", "SNN as % of ANN"), rows)]
    if pairs:
        blocks += [data.counting_rule.sentence + " Per profile pair (SNN profile vs ANN profile of this "
                   "report); a pair with no known total on either side is not computed, one with a bound is an "
                   "estimate.",
                   Table(("model", "SNN profile", "ANN profile", "SNN as % of ANN", "note"), pairs)]
    return Section("SNN energy as % of ANN energy", tuple(blocks))


def _component_names(breakdowns: Sequence[EnergyRecord]) -> List[str]:
    present = {k for b in breakdowns for k in b.components}
    return [k for k in COMPONENTS if k in present]


def _breakdown_table(name: str, data: ReportData) -> Optional[Table]:
    entries = [(n.label, n.energy[name]) for n in data.networks if name in n.energy]
    if name in data.ann.energy:
        entries.insert(0, (data.ann.label, data.ann.energy[name]))
    if not entries:
        return None
    comps = _component_names([b for _, b in entries])
    scale, unit = energy_unit(max(b.total for _, b in entries) or 1e-12)

    def cell(b: EnergyRecord, c: str) -> str:
        if c in b.included:
            return "included"
        if c in b.components:
            return f"{b.components[c] / scale:.4g}" + (f" ({b.bounds[c]} bound)" if c in b.bounds else "")
        return "unknown" if c in b.unknown else "-"

    host = data.counting_rule.host_profile
    names = [f"first_layer ({unit}; SNN: on host {host})" if c == "first_layer" else f"{c} ({unit})" for c in comps]
    rows = tuple((label, *[cell(b, c) for c in comps], fmt_energy(b), ", ".join(b.unknown) or "-")
                 for label, b in entries)
    return Table(("model", *names, "total", "unknown"), rows)


def _energy_section(data: ReportData) -> Section:
    blocks: List[Block] = [data.counting_rule.sentence + " Energy per inference (one sample, T steps for "
                           "the SNN) = counted events x the profile's figure, per component; the first layer is one "
                           "component on both sides (SNN: computed on the host profile "
                           f"{data.counting_rule.host_profile}; ANN: its own first layer)."]
    for name in data.profiles:
        table = _breakdown_table(name, data)
        if table is not None:
            blocks += [Heading(name), table]
    blocks.append(Image(data.plots.energy_breakdown, "energy breakdown per profile"))
    return Section("Energy breakdown per profile", tuple(blocks))


def _bits(b: Optional[int]) -> str:
    return "-" if b is None else f"{b:,}"


def _memory_section(data: ReportData) -> Section:
    blocks: List[Block] = ["Weight memory in bits per layer and synapse encoding (- : not applicable or a needed "
                           "figure is unknown); the best encoding is the smallest known."]
    for name in data.networks[0].memory:
        encodings = list(data.networks[0].memory[name].totals)
        rows = []
        for n in data.networks:
            mem = n.memory[name]
            rows += [(n.label, l.name, *[_bits(l.bits.get(e)) for e in encodings], l.best or "-",
                      _bits(l.neuron_state_bits)) for l in mem.layers]
            rows.append((n.label, "(all layers)", *[_bits(mem.totals[e]) for e in encodings],
                         mem.best_encoding or "-", _bits(mem.neuron_state_bits)))
        blocks += [Heading(name), Table(("model", "layer", *encodings, "best", "neuron state"), tuple(rows))]
    return Section("Memory", tuple(blocks))


def _mapping_section(data: ReportData) -> Section:
    rows = tuple((n.label, p, _fit(m), m.fit_summary) for n in data.networks for p, m in n.mapping.items())
    return Section("Cores and fit", (Table(("model", "profile", "fits", "verdict"), rows),))


def _activity_section(data: ReportData) -> Section:
    rows = []
    for n in data.networks:
        a = n.activity
        s = a.per_sample
        rows.append((n.label, a.source, str(a.samples), str(a.timesteps), f"{s.effective_acs:.6g}",
                     f"{s.effective_macs:.6g}", f"{s.neuron_updates:.6g}", f"{s.output_spikes:.6g}",
                     f"{s.dense_ops:.6g}"))
    return Section("Activity (measured)", (
        "Per sample, summed over timesteps, from a run on the first test samples of each network's dataset "
        "(NeuroBench definitions, except that a layer with a constant real-valued input is counted once per "
        "sample: see the NeuroBench section and slt_deploy.cost.activity). ACs and MACs are effective counts; "
        "dense ops count every weight.",
        Table(("model", "counted by", "samples", "T", "ACs", "MACs", "neuron updates", "output spikes",
               "dense ops"), tuple(rows))))


def _unknown_section(data: ReportData) -> Section:
    rows = tuple((name, ", ".join(p.unknown_figures) or "-", ", ".join(p.excluded_figures) or "-",
                  ", ".join(p.unknown_in_report) or "-", ", ".join(p.unknown_limits) or "-")
                 for name, p in data.profiles.items())
    return Section("Figures the profiles could not use", (
        "Unknown figures are never filled in: a total that needs one is a lower bound.",
        Table(("profile", "unknown (no public figure)", "excluded by convention", "needed here but unknown",
               "unknown limits"), rows)))


def _pct_or(x: Optional[float]) -> str:
    return "unknown" if x is None else f"{100 * x:.2f} %"


def fmt_interval(interval) -> str:
    """An energy interval: one value when its ends meet, '>= x' when open above, 'x - y' otherwise."""
    low, high = interval
    if high == float("inf"):
        return f">= {fmt_joules(low)}" if low > 0 else "unknown"
    if low == high:
        return fmt_joules(low)
    if low <= 0:
        return f"<= {fmt_joules(high)}"
    scale, unit = energy_unit(high)
    return f"{low / scale:.4g} - {high / scale:.4g} {unit}"


def fmt_ratio(interval) -> str:
    low, high = interval
    hi = "inf" if high == float("inf") else f"{100 * high:.3g} %"
    return f"{100 * low:.3g} %" if low == high else f"{100 * low:.3g} - {hi}"


def _fits_cell(r: VerdictRow) -> str:
    fits = "-" if r.fits is None and r.cores is None and not r.why else (
        "not checked" if r.fits is None else f"yes ({r.cores} cores)" if r.fits and r.cores else
        "yes" if r.fits else "no")
    return fits + (f" ({r.why})" if r.why and r.fits is False else "")


def _flip_text(win, lose, today: str, unit, lower_is_better: bool) -> str:
    """One quantity's break-even: where the SNN surely wins and where it surely loses, against today's value."""
    show = unit
    if lower_is_better:  # activity: wins below win, loses above lose
        win_t = None if win is None else ("never" if win <= 0 else f"< {show(win)}")
        lose_t = None if lose is None else ("at any value" if lose <= 0 else f"> {show(lose)}")
    else:                # sparsity: wins above win, loses below lose
        win_t = None if win is None else ("never" if win >= 1 else "at any value" if win <= 0 else f"> {show(win)}")
        lose_t = None if lose is None else ("at any value" if lose >= 1 else None if lose <= 0 else f"< {show(lose)}")
    parts = [f"wins {win_t}" if win_t else "", f"loses {lose_t}" if lose_t else ""]
    text = ", ".join(p for p in parts if p) or "no value decides it (an energy is open-ended)"
    return f"{today}: {text}"


def break_even_cell(r: Union[VerdictRow, MatrixRow]) -> str:
    """Spike activity and weight sparsity at which the decision flips, today's values first."""
    be = r.break_even
    if not be:
        return "-"
    act, sp = be.activity, be.sparsity
    parts = []
    if act.today is not None:
        parts.append(_flip_text(act.win_below, act.lose_above, f"activity {act.today:.3g}/neuron/step",
                                lambda x: f"{x:.3g}", True))
    if sp.today is not None:
        parts.append(_flip_text(sp.win_above, sp.lose_below, f"sparsity {100 * sp.today:.1f} %",
                                lambda x: f"{100 * x:.3g} %", False))
    return "; ".join(parts)


def _latency_cell(r: VerdictRow) -> str:
    source = r.snn_latency_from
    return ("<= " if "upper bound" in str(source) else "") + fmt_seconds(r.snn_latency_s) + (
        f" ({source})" if source not in (None, "profile") else "")


def _verdict_row_cells(r: VerdictRow) -> tuple:
    best = r.best_ann
    if best is None:
        ann_cells = ("-", "-", "-", "-")
    else:
        ann_cells = (f"{best.ann} on {best.ann_profile}", fmt_interval(best.ann_interval_j),
                     _pct(best.ann_accuracy) + match_note(best), fmt_ratio(r.ratio_interval))
    decision = r.decision
    snn = fmt_interval(r.snn_interval_at_scope_j or r.snn_interval_j)
    snn = f"**{snn}**" if r.energy_decision == "SNN" and decision == "SNN" else snn
    if best is not None and decision == "ANN":
        ann_cells = (ann_cells[0], f"**{ann_cells[1]}**") + ann_cells[2:]
    return (r.network, r.profile, _fits_cell(r), r.scope, snn, _latency_cell(r), _pct(r.accuracy), *ann_cells,
            decision, break_even_cell(r))


def match_note(c) -> str:
    """How the ANN's accuracy stands against the SNN's, when it is not a match (verdict rule 4)."""
    if c.accuracy_match == "matched":
        return ""
    more = "more" if c.accuracy_gap > 0 else "less"
    return f" ({more} accurate by {100 * abs(c.accuracy_gap):.2f} points; tolerance {100 * c.tolerance:.2f})"


def verdict_table(data: ReportData) -> Table:
    """The answer first: one row per network x chip, decided by :mod:`slt_deploy.report.verdict`'s rule; only
    a decided winner's energy is bold."""
    rows = tuple(_verdict_row_cells(r) for r in data.verdict)
    return Table(("network", "chip", "fits", "scope", "SNN energy", "SNN latency", "SNN accuracy", "best ANN instead",
                  "ANN energy", "ANN accuracy", "SNN / ANN", "decision", "break-even (today: ...)"), rows)


def _verdict_section(data: ReportData) -> Section:
    ann = data.ann
    trained = "" if ann.trained is not False else " UNTRAINED (the SNN's weights with ReLU, never trained):"
    others = ", ".join(a.label for a in data.ann_others)
    return Section("Verdict: deploy which, where", (
        data.counting_rule.sentence + f" ANN:{trained} {ann.origin}"
        + (f"; also {others}" if others else "") + ". Per inference, one row per network, chip and scope "
        "(chip-dynamic, then chip: static power included), against the cheapest ANN that chip's user could deploy "
        "instead (every ANN of the report on every ANN target) whose accuracy is no more than the tolerance below "
        "the SNN's; an ANN accuracy that is not a match says by how much. Both sides are counted at the row's "
        "scope as intervals from the figures' sourced ranges and bounds; a side wins only when its whole interval "
        "is below the other's, otherwise 'undecided'; where the side cheaper on energy is less accurate by more than "
        "the tolerance, the row is a 'trade-off'. Break-even: the spike activity "
        "(spikes per neuron per step) and weight sparsity at which the SNN would win (or lose) against that ANN, "
        "all else equal.",
        verdict_table(data), _ann_memory_table(data)))


def _matrix_section(data: ReportData) -> Section:
    """Every comparison the verdict chose from: network x chip x ANN x ANN target."""
    rows = tuple((r.network, r.profile, r.ann, r.ann_profile, r.scope,
                  fmt_interval(r.snn_interval_j), fmt_interval(r.ann_interval_j),
                  fmt_ratio(r.ratio_interval), _pct(r.ann_accuracy), r.decision, break_even_cell(r))
                 for r in data.verdict_matrix)
    return Section("Full comparison matrix", (
        "Each pair at each row's scope, by the verdict's rule (a chip's network that does not fit is still costed "
        "here).",
        Table(("network", "SNN on", "ANN", "ANN on", "scope", "SNN energy", "ANN energy", "SNN / ANN",
               "ANN accuracy", "energy decision", "break-even (today: ...)"), rows)))


def _other_anns_section(data: ReportData) -> Optional[Section]:
    """The comparison ANNs given with --also-ann (LT / MPLT tickets...), costed under the same rule."""
    if not data.ann_others:
        return None
    profiles = list(data.ann.energy)
    rows = tuple((a.label, Path(a.file).name, _pct(a.sparsity), _pct(a.accuracy_measured),
                  *[fmt_energy(a.energy.get(p)) for p in profiles],
                  *[fmt_bytes(a.memory[p].dense_bytes) if p in a.memory else "-" for p in profiles])
                 for a in data.anns)
    return Section("Other ANNs", (
        data.counting_rule.sentence + " The report's ANN first, then the ANNs given with --also-ann, on the "
        "same samples.",
        Table(("ANN", "file", "sparsity", "accuracy", *[f"E {p}" for p in profiles],
               *[f"weights {p}" for p in profiles]), rows)))


def _ann_memory_table(data: ReportData) -> Table:
    ann = data.ann
    rows = [(ann.label, p, str(m.weight_bits), fmt_bytes(m.dense_bytes),
             fmt_bytes(m.mem.best_bytes) + f" ({m.mem.best_encoding})" if m.mem is not None and
             m.mem.best_bytes is not None else "-") for p, m in ann.memory.items()]
    for n in data.networks:
        for p, m in n.memory.items():
            rows.append((n.label, p, "-", "-", fmt_bytes(m.best_bytes) + f" ({m.best_encoding})"
                         if m.best_bytes is not None else "unknown"))
    return Table(("model", "profile", "weight bits", "weights, dense", "weights, best encoding"), tuple(rows))


def _neurobench_section(data: ReportData) -> Optional[Section]:
    nets = [n for n in data.networks if n.neurobench is not None and n.neurobench.metrics]
    if not nets:
        return None
    keys = list(nets[0].neurobench.summary)
    rows = tuple((n.label, *[_num(n.neurobench.summary[k]) for k in keys]) for n in nets)

    def theirs(l, what: str):
        return None if l.neurobench is None else getattr(l.neurobench, what)

    layer_rows = tuple((n.label, l.layer, _num(l.acs), _num(l.macs), _num(l.dense),
                        _num(theirs(l, "effective_acs")), _num(theirs(l, "effective_macs")),
                        _num(theirs(l, "dense")), l.note)
                       for n in nets for l in n.neurobench.layers)
    return Section("NeuroBench 2.3.0 on the same network and samples", (
        "NeuroBench's own metrics (Footprint, ConnectionSparsity, ActivationSparsity, MembraneUpdates, "
        "SynapticOperations, ClassificationAccuracy), computed by NeuroBench on the snnTorch network and the same "
        "test samples, per sample.", Table(("model", *keys), rows),
        "Per layer: the project's effective ACs / MACs and dense ops (both rules, whichever this report uses) next "
        "to NeuroBench's (its single_layer_MACs per connection hook); where they differ by design, the note says "
        "why.",
        Table(("model", "layer", "ACs", "MACs", "dense", "NB ACs", "NB MACs", "NB dense", "note"), layer_rows)))


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.6g}"
    return f"{x:,.0f}" if isinstance(x, (int, float)) else str(x)


def _sanafe_rows(n: NetworkEntry) -> List[tuple]:
    rows = []
    for p, sim in (n.sanafe or {}).items():
        for r in sim.runs:
            rows.append((n.label, p, r.architecture, str(r.samples),
                         "-" if r.energy_per_inference_j is None else fmt_joules(r.energy_per_inference_j),
                         fmt_energy(n.energy[p]),
                         fmt_joules(r.analytical_chip_j) if r.analytical_chip_j is not None else "-",
                         fmt_seconds(r.latency_per_timestep_s), fmt_seconds(r.latency_per_inference_s), r.note))
        if sim.note:
            rows.append((n.label, p, "-", "-", "-", "-", "-", "-", "-", sim.note))
    return rows


def _sanafe_section(data: ReportData) -> Optional[Section]:
    rows = [row for n in data.networks for row in _sanafe_rows(n)]
    if not rows:
        return None
    return Section("SANA-FE simulation of the deployed network", (
        "SANA-FE 2.2.9 runs the on-chip part of the deployed network (host layer excluded) replaying the spikes "
        "of the same run; energy per inference and simulated time per timestep and per inference, next to the "
        "analytical model (whole total, and its on-chip events only, which is what SANA-FE simulates). SANA-FE "
        "simulates the events of the run, so its figures follow the effective rule whatever the report's rule is; "
        "latency is SANA-FE's simulated time.",
        Table(("model", "profile", "architecture", "samples", "SANA-FE energy / inference", "analytical total",
               "analytical on-chip events", "latency / timestep", "latency / inference", "note"), tuple(rows))))


# ------------------------------------------------------------------------------------------ the answer first

def _rows_by_chip(data: ReportData, network: str) -> Dict[str, Dict[str, VerdictRow]]:
    """The network's verdict rows: profile -> scope -> row, in the report's profile order."""
    out: Dict[str, Dict[str, VerdictRow]] = {}
    for r in data.verdict:
        if r.network == network:
            out.setdefault(r.profile, {})[r.scope] = r
    return out


def _open_figures(record: Optional[EnergyRecord]) -> List[str]:
    return [] if record is None else list(record.unknown)


def _widest_term(record: EnergyRecord, scope: str) -> Optional[str]:
    """The SNN's part whose interval is widest at ``scope`` (what an undecided row waits on)."""
    order = ("arithmetic", "chip-dynamic", "chip", "board")
    terms = [t for t in record.terms if order.index(t.base) <= order.index(scope) and t.high > t.low]
    if not terms:
        return None
    t = max(terms, key=lambda t: t.high - t.low)
    return f"the SNN's {t.component}, {fmt_interval([t.low, t.high])}"


def deciding_figure(data: ReportData, r: VerdictRow) -> str:
    """The one figure that decides a row (or that it waits on)."""
    if r.decision == "does not fit":
        return r.why or "it does not fit"
    best = r.best_ann
    if best is None:
        return "no ANN target to compare with"
    snn, ann = r.snn_interval_at_scope_j or r.snn_interval_j, best.ann_interval_j
    if r.decision == "trade-off":
        cheaper, mine, other = ("SNN", snn, ann) if r.energy_decision == "SNN" else ("ANN", ann, snn)
        return (f"the {cheaper} is cheaper ({fmt_interval(mine)} vs {fmt_interval(other)}) but "
                f"{100 * abs(best.accuracy_gap):.2f} points less accurate")
    if r.decision == "ANN":
        return f"the ANN's {fmt_joules(ann[1])} is below the SNN's lowest {fmt_joules(snn[0])}"
    if r.decision == "SNN":
        return f"the SNN's highest {fmt_joules(snn[1])} is below the ANN's {fmt_joules(ann[0])}"
    record = data.network(r.network).energy[r.profile]
    ann_record = next((a.energy.get(best.ann_profile) for a in data.anns if a.label == best.ann), None)
    if ann[1] == float("inf") and _open_figures(ann_record):
        return f"{best.ann_profile} publishes no {', '.join(_open_figures(ann_record))}"
    if snn[1] == float("inf") and _open_figures(record):
        return f"{r.profile} publishes no {', '.join(_open_figures(record))}"
    return _widest_term(record, r.scope) or "the two intervals overlap"


def _side(label: str, accuracy: float, interval) -> str:
    return f"{label} {_pct(accuracy)} at {fmt_interval(interval)}"


def _answer_line(data: ReportData, chip: str, rows: Dict[str, VerdictRow]) -> str:
    scopes = list(rows)
    first = rows[scopes[0]]
    say = {"SNN": "deploy the ticket", "ANN": "deploy the ANN"}
    if first.decision == "does not fit" or first.best_ann is None:
        return f"- **{chip}**: {first.decision} ({deciding_figure(data, first)})"
    parts = []
    for scope in scopes:
        r, b = rows[scope], rows[scope].best_ann
        parts.append(f"{scope}: **{say.get(r.decision, r.decision)}**: "
                     f"{_side('SNN', r.accuracy, r.snn_interval_at_scope_j)} vs "
                     f"{_side(f'{b.ann} on {b.ann_profile}', b.ann_accuracy, b.ann_interval_j)}{match_note(b)}; "
                     f"decides: {deciding_figure(data, r)}")
    return f"- **{chip}** (fits: {_fits_cell(first)}): " + "; ".join(parts)


def _usage_text(data: ReportData) -> str:
    usage = data.usage
    rate = ("over each inference's latency (inferences back to back)" if usage is None or usage.rate is None
            else f"over the period of {usage.rate:g} inferences/s")
    tol = ("the standard error of the difference" if usage is None or usage.accuracy_tolerance is None
           else f"{usage.accuracy_tolerance:g} points")
    return f"chip scope charges static power {rate}; an ANN is a match within {tol} of the SNN's accuracy"


def answer_section(data: ReportData) -> Section:
    """At most 15 lines: per chip, which to deploy, at which accuracy and energy, and the figure that decides."""
    chosen = data.usage.chosen_network if data.usage and data.usage.chosen_network else data.networks[0].label
    rows = _rows_by_chip(data, chosen)
    lines = [f"For **{chosen}** ({data.networks[0].samples} test samples; {_usage_text(data)}; "
             f"energies per inference, intervals from the figures' sourced ranges):", ""]
    lines += [_answer_line(data, chip, scopes) for chip, scopes in rows.items()][:12]
    return Section("Answer", ("\n".join(lines),))


def chosen_verdict_table(data: ReportData) -> Table:
    """One row per chip for the chosen network: the ANN it is set against, and the decision at each scope."""
    chosen = data.usage.chosen_network if data.usage and data.usage.chosen_network else data.networks[0].label
    out = []
    for chip, scopes in _rows_by_chip(data, chosen).items():
        r = next(iter(scopes.values()))
        best = r.best_ann
        cells = []
        for scope in ("chip-dynamic", "chip"):
            row = scopes.get(scope) or r
            other = row.best_ann
            name = "" if other is None or best is None or (other.ann, other.ann_profile) == (best.ann, best.ann_profile) \
                else f" ({other.ann} on {other.ann_profile}{match_note(other)})"
            cells += [fmt_interval(row.snn_interval_at_scope_j or row.snn_interval_j),
                      "-" if other is None else fmt_interval(other.ann_interval_j) + name, row.decision]
        ann = "-" if best is None else f"{best.ann} on {best.ann_profile}: {_pct(best.ann_accuracy)}{match_note(best)}"
        out.append((chip, _fits_cell(r), _pct(r.accuracy), ann, *cells))
    return Table(("chip", "fits", "SNN accuracy", "ANN it is set against", "SNN, chip-dynamic", "ANN, chip-dynamic",
                  "decision, chip-dynamic", "SNN, chip", "ANN, chip", "decision, chip"), tuple(out))


def _recipes_text(data: ReportData) -> str:
    if not data.recipes:
        return "Training recipes: not recorded (the inputs carry no training settings)."
    def one(r: dict) -> str:
        return ", ".join(f"{k} {r[k]}" for k in ("optimizer", "lr", "schedule", "epochs", "batch_size") if k in r)
    return "Training recipes (as each side's record keeps them): " + "; ".join(
        f"{label}: {one(r)}" for label, r in data.recipes.items()) + "."


def report_sections(data: ReportData) -> List[Section]:
    """report.md: the answer, the chosen network's verdict per chip, the per-chip fronts; the rest is in the
    appendix (:func:`appendix_sections`)."""
    chosen = data.usage.chosen_network if data.usage and data.usage.chosen_network else data.networks[0].label
    plots = data.plots
    return [Section("slt-deploy report", ()), answer_section(data),
            Section(f"Verdict for {chosen}, one row per chip", (
                "Each chip against the cheapest ANN (every ANN of the report on every ANN target) whose accuracy is "
                "no more than the tolerance below the SNN's (verdict rule 4); decided at chip-dynamic scope and again "
                "at chip scope, where static power is charged (rule 6). A side wins only when its whole interval is "
                "below the other's.", chosen_verdict_table(data), _recipes_text(data))),
            Section("Accuracy vs energy, per chip", (
                Image(plots.pareto, "per chip: the SNN tickets' front and the ANNs' front, accuracy vs energy"),)),
            Section("Appendix", (f"Every other network's verdict, the full comparison matrix, energy breakdowns, "
                                 f"memory, mapping, activity and cross-checks: {APPENDIX_FILE} (and report.json).",))]


APPENDIX_FILE = "report_appendix.md"


def appendix_sections(data: ReportData) -> List[Section]:
    n = data.networks[0].samples
    ann = data.ann
    intro = (f"{data.counting_rule.sentence} Activity counted on a real run of each network on the first {n} "
             f"test samples of its dataset; the ANN ({ann.label}: {ann.origin}) runs on the same samples. "
             f"The first layer is one named component on both sides; in the SNN the host computes it (charged on "
             f"{data.counting_rule.host_profile}). '>=' marks a lower bound, '<=' an upper bound, 'estimate' a "
             f"total mixing both; 'unknown: needs X' a total with no known figure.")
    plots = data.plots
    scatter = Image(plots.accuracy_sparsity_energy, "accuracy vs sparsity vs energy")
    sections = [Section("slt-deploy report: appendix", (intro,)), _verdict_section(data),
                Section("Break-even: energy against spike activity",
                        (Image(plots.break_even, "SNN energy against spike activity, with the best ANN"),)),
                _matrix_section(data),
                Section("Side by side", (data.counting_rule.sentence, _summary_table(data), scatter)),
                _convention_section(data), _energy_section(data), _memory_section(data), _mapping_section(data),
                _activity_section(data)]
    sections += [s for s in (_other_anns_section(data), _neurobench_section(data), _sanafe_section(data))
                 if s is not None]
    return sections + [_unknown_section(data)]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(sections: Sequence[Section]) -> str:
    lines: List[str] = []
    for i, s in enumerate(sections):
        lines += [("# " if i == 0 else "## ") + s.title, ""]
        for b in s.blocks:
            if isinstance(b, Table):
                lines.append("| " + " | ".join(map(_md_cell, b.columns)) + " |")
                lines.append("|" + "---|" * len(b.columns))
                lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b.rows]
            elif isinstance(b, Image):
                lines.append(f"![{b.alt}]({b.path})")
            elif isinstance(b, Heading):
                lines.append(f"### {b.text}")
            else:
                lines.append(b)
            lines.append("")
    return "\n".join(lines)


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}th{background:#eee}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}")


def _bold(text: str) -> str:
    """Markdown's **x** (the better of a pair) as HTML bold."""
    import re

    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


def _embedded(path: str, folder: Optional[Path]) -> str:
    """The image as a data URI, so report.html can be sent alone; its file name if it cannot be read."""
    import base64

    file = Path(folder) / path if folder is not None else Path(path)
    if not file.is_file():
        return path
    return "data:image/png;base64," + base64.b64encode(file.read_bytes()).decode("ascii")


def render_html(sections: Sequence[Section], folder: Optional[Path] = None) -> str:
    """Self-contained HTML: images under ``folder`` are embedded (base64)."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>slt-deploy report</title>",
             f"<style>{_CSS}</style></head><body>"]
    for i, s in enumerate(sections):
        parts.append(f"<h{1 if i == 0 else 2}>{esc(s.title)}</h{1 if i == 0 else 2}>")
        for b in s.blocks:
            if isinstance(b, Table):
                head = "".join(f"<th>{esc(c)}</th>" for c in b.columns)
                body = "".join("<tr>" + "".join(f"<td>{_bold(esc(str(c)))}</td>" for c in r) + "</tr>" for r in b.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Image):
                parts.append(f"<p><img src=\"{esc(_embedded(b.path, folder))}\" alt=\"{esc(b.alt)}\"></p>")
            elif isinstance(b, Heading):
                parts.append(f"<h3>{esc(b.text)}</h3>")
            elif "\n" in b:  # a text of lines: '- ' lines are a list (the answer)
                items = [line for line in b.split("\n") if line.strip()]
                parts += [f"<li>{_bold(esc(line[2:]))}</li>" if line.startswith("- ") else f"<p>{_bold(esc(line))}</p>"
                          for line in items]
            else:
                parts.append(f"<p>{esc(b)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
