"""Report rendering: sections of tables and images, as Markdown and as self-contained HTML."""


import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union


from ..cost.profiles import FIGURES

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


def fmt_energy(b: Optional[dict]) -> str:
    """A breakdown's total; '>= ' marks a lower bound (a needed figure is unknown)."""
    if b is None:
        return "-"
    scale, unit = energy_unit(b["total"])
    return f"{'' if b['complete'] else '>= '}{b['total'] / scale:.4g} {unit}"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _fit(mapping: Optional[dict]) -> str:
    if mapping is None:
        return "-"
    if mapping["fits"] is None:
        return "not checked"
    if mapping["fits"]:
        return f"yes ({mapping['cores_used']} cores)" if mapping["cores_used"] is not None else "yes"
    return "no"


def _summary_table(data: dict) -> Table:
    """One row per model: the ANN, then every input; energy per profile and fit per placeable profile."""
    conv = data["convention_45nm"]["profile"]
    energy_cols = [p for p in data["profiles"] if p != conv]  # the convention has its own column
    fit_cols = [p for p in data["profiles"] if any(p in n["mapping"] for n in data["networks"])]
    ann = data["ann"]
    cols = ("model", "file", "sparsity", "binary", "T / encoding", "accuracy (record)",
            f"accuracy ({data['networks'][0]['samples']} samples)", f"E 45 nm ({conv})", "% of ANN (45 nm)",
            *[f"E {p}" for p in energy_cols], *[f"fits {p}" for p in fit_cols])
    rows = [("ANN", Path(ann["file"]).name, _pct(ann["sparsity"]), "-", "1 pass / image", "-",
             _pct(ann["accuracy_measured"]), fmt_energy(ann["convention_45nm"]), "100.00 %",
             *[fmt_energy(ann["energy"].get(p)) for p in energy_cols], *["-" for _ in fit_cols])]
    for n in data["networks"]:
        rows.append((n["label"], Path(n["file"]).name, _pct(n["sparsity"]), "yes" if n["binary"] else "no",
                     f"{n['timesteps']} / {n['encoding']}", _pct(n["accuracy"]), _pct(n["accuracy_measured"]),
                     fmt_energy(n["convention_45nm"]["snn"]), f"{n['convention_45nm']['percent_of_ann']:.2f} %",
                     *[fmt_energy(n["energy"].get(p)) for p in energy_cols],
                     *[_fit(n["mapping"].get(p)) for p in fit_cols]))
    return Table(cols, tuple(rows))


def _convention_section(data: dict) -> Section:
    c = data["convention_45nm"]
    rows = tuple((n["label"], fmt_energy(n["convention_45nm"]["snn"]), fmt_energy(n["convention_45nm"]["ann"]),
                  f"{n['convention_45nm']['percent_of_ann']:.2f} %") for n in data["networks"])
    pairs = tuple((r["network"], r["snn_profile"], r["ann_profile"],
                   "-" if r["percent"] is None else f"{r['percent']:.2f} %", r["note"]) for r in data["ratios"])
    blocks: List[Block] = [
        f"45 nm convention (profile {c['profile']}, both sides): {c['formula']}, with E_MAC = "
        f"{c['mac']['value']} {c['mac']['unit']} and E_AC = {c['synaptic_op']['value']} {c['synaptic_op']['unit']} "
        f"({c['mac']['source']}). Synaptic ops are counted exactly on the run (nonzero input x nonzero weight).",
        Table(("model", "E_SNN", "E_ANN", "SNN as % of ANN"), rows)]
    if pairs:
        blocks += ["Per profile pair (SNN profile vs ANN profile of this report); a pair with an unknown figure "
                   "on either side is not computed.",
                   Table(("model", "SNN profile", "ANN profile", "SNN as % of ANN", "note"), pairs)]
    return Section("SNN energy as % of ANN energy", tuple(blocks))


def _component_names(breakdowns: Sequence[dict]) -> List[str]:
    present = {k for b in breakdowns for k in b["components"]}
    return [k for k in FIGURES if k in present]


def _breakdown_table(name: str, data: dict) -> Optional[Table]:
    entries = [(n["label"], n["energy"][name]) for n in data["networks"] if name in n["energy"]]
    if name in data["ann"]["energy"]:
        entries.insert(0, ("ANN", data["ann"]["energy"][name]))
    if not entries:
        return None
    comps = _component_names([b for _, b in entries])
    scale, unit = energy_unit(max(b["total"] for _, b in entries) or 1e-12)
    rows = tuple((label, *[f"{b['components'][c] / scale:.4g}" if c in b["components"] else "-" for c in comps],
                  fmt_energy(b), ", ".join(b["unknown"]) or "-") for label, b in entries)
    return Table(("model", *[f"{c} ({unit})" for c in comps], "total", "unknown (total is a lower bound)"), rows)


def _energy_section(data: dict) -> Section:
    blocks: List[Block] = ["Energy per inference (one sample, T steps for the SNN) = counted events x the "
                           "profile's figure, per component."]
    for name in data["profiles"]:
        table = _breakdown_table(name, data)
        if table is not None:
            blocks += [Heading(name), table]
    blocks.append(Image(data["plots"]["energy_breakdown"], "energy breakdown per profile"))
    return Section("Energy breakdown per profile", tuple(blocks))


def _bits(b: Optional[int]) -> str:
    return "-" if b is None else f"{b:,}"


def _memory_section(data: dict) -> Section:
    blocks: List[Block] = ["Weight memory in bits per layer and synapse encoding (- : not applicable or a needed "
                           "figure is unknown); the best encoding is the smallest known."]
    for name in data["networks"][0]["memory"]:
        encodings = list(data["networks"][0]["memory"][name]["totals"])
        rows = []
        for n in data["networks"]:
            mem = n["memory"][name]
            rows += [(n["label"], l["name"], *[_bits(l["bits"].get(e)) for e in encodings], l["best"] or "-",
                      _bits(l["neuron_state_bits"])) for l in mem["layers"]]
            rows.append((n["label"], "(all layers)", *[_bits(mem["totals"][e]) for e in encodings],
                         mem["best_encoding"] or "-", _bits(mem["neuron_state_bits"])))
        blocks += [Heading(name), Table(("model", "layer", *encodings, "best", "neuron state"), tuple(rows))]
    return Section("Memory", tuple(blocks))


def _mapping_section(data: dict) -> Section:
    rows = tuple((n["label"], p, _fit(m), m["verdict"]) for n in data["networks"] for p, m in n["mapping"].items())
    return Section("Cores and fit", (Table(("model", "profile", "fits", "verdict"), rows),))


def _activity_section(data: dict) -> Section:
    rows = []
    for n in data["networks"]:
        a = n["activity"]
        s = a["per_sample"]
        rows.append((n["label"], a["source"], str(a["samples"]), str(a["timesteps"]), f"{s['effective_acs']:.6g}",
                     f"{s['effective_macs']:.6g}", f"{s['neuron_updates']:.6g}", f"{s['output_spikes']:.6g}",
                     f"{s['dense_ops']:.6g}"))
    return Section("Activity (measured)", (
        "Per sample, summed over timesteps, from a run on the first test samples of each network's dataset "
        "(NeuroBench definitions; see slt_deploy.cost.activity).",
        Table(("model", "counted by", "samples", "T", "ACs", "MACs", "neuron updates", "output spikes",
               "dense ops"), tuple(rows))))


def _unknown_section(data: dict) -> Section:
    rows = tuple((name, ", ".join(p["unknown_figures"]) or "-", ", ".join(p["excluded_figures"]) or "-",
                  ", ".join(p["unknown_in_report"]) or "-", ", ".join(p["unknown_limits"]) or "-")
                 for name, p in data["profiles"].items())
    return Section("Figures the profiles could not use", (
        "Unknown figures are never filled in: a total that needs one is a lower bound.",
        Table(("profile", "unknown (no public figure)", "excluded by convention", "needed here but unknown",
               "unknown limits"), rows)))


def report_sections(data: dict) -> List[Section]:
    n = data["networks"][0]["samples"]
    intro = (f"Activity counted on a real run of each network on the first {n} test samples of its dataset. "
             f"ANN: {data['ann']['file']} ({data['ann']['origin']}); charged its dense MACs "
             f"({data['ann']['dense_macs']:,} per image). '>=' marks a lower bound (an unknown figure).")
    scatter = Image(data["plots"]["accuracy_sparsity_energy"], "accuracy vs sparsity vs energy")
    return [Section("slt-deploy report", (intro,)),
            Section("Side by side", (_summary_table(data), scatter)),
            _convention_section(data), _energy_section(data), _memory_section(data), _mapping_section(data),
            _activity_section(data), _unknown_section(data)]


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


def render_html(sections: Sequence[Section]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>slt-deploy report</title>",
             f"<style>{_CSS}</style></head><body>"]
    for i, s in enumerate(sections):
        parts.append(f"<h{1 if i == 0 else 2}>{esc(s.title)}</h{1 if i == 0 else 2}>")
        for b in s.blocks:
            if isinstance(b, Table):
                head = "".join(f"<th>{esc(c)}</th>" for c in b.columns)
                body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Image):
                parts.append(f"<p><img src=\"{esc(b.path)}\" alt=\"{esc(b.alt)}\"></p>")
            elif isinstance(b, Heading):
                parts.append(f"<h3>{esc(b.text)}</h3>")
            else:
                parts.append(f"<p>{esc(b)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
