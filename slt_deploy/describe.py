"""Human-readable summaries of the project's artifacts (``slt-deploy inspect``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import torch

from .errors import SltError
from .ticket import Ticket
from .utils import format_table


def describe_ticket(ticket: Ticket) -> Dict:
    r = ticket.record
    model = ticket.build_model()
    from .models import prunable_layers

    layers = []
    for name, layer in prunable_layers(model).items():
        w = layer.weight.detach()
        magnitudes = torch.unique(w[w != 0].abs())
        layers.append({"layer": name, "type": type(layer).__name__, "shape": "x".join(map(str, w.shape)),
                       "weights": w.numel(), "nonzero": int((w != 0).sum()),
                       "sparsity": f"{100 * r.layer_sparsity.get(name, 0.0):.2f} %",
                       "masked": "yes" if name in ticket.mask else "no",
                       # a binary (multi-prize) layer: every nonzero weight is +-alpha
                       "binary": f"+-{float(magnitudes[0]):.6g}" if len(magnitudes) == 1 else "no"})
    return {"record": json.loads(r.to_json()), "layers": layers}


def _kind(p: Path) -> str:
    """What a file is, from its first bytes (extensions lie)."""
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        from .exporters.netx_format import is_netx

        return "netx" if is_netx(p) else "nir"
    if p.suffix.lower() == ".onnx":
        return "onnx"
    if p.suffix.lower() == ".json":
        return "deploy" if p.name.endswith("deploy.json") else "report"
    return "ticket"


def describe_report_file(p: Path, kind: str, as_json: bool) -> str:
    """A report.json (its verdict table) or deploy.json (its summary), read through the one loader: a file of
    another version or tool is refused in one line naming the field."""
    from .report.schema import load_deploy, load_report, to_json

    record = load_deploy(p) if kind == "deploy" else load_report(p)
    if as_json:
        return json.dumps(to_json(record), indent=2)
    if kind == "deploy":
        from .deploy import render_summary

        return f"deploy {p}\n" + render_summary(record)
    from .report.render import Section, render_markdown, verdict_table

    return render_markdown([Section(f"report {p}", (verdict_table(record),))])


def describe_nir_file(p: Path, as_json: bool) -> str:
    from .exporters.nir_format import describe_nir, format_table as nir_table, read_nir

    graph = read_nir(p)
    rows = describe_nir(graph)
    if as_json:
        return json.dumps({"metadata": _jsonable(graph.metadata or {}), "nodes": rows}, indent=2, default=str)
    meta = graph.metadata or {}
    head = f"NIR graph {p}: {len(graph.nodes)} nodes, {len(graph.edges)} edges"
    if meta:
        head += "\n  " + ", ".join(f"{k} {v}" for k, v in sorted(meta.items()) if not isinstance(v, dict))
    return head + "\n" + nir_table(rows)


def describe_netx_file(p: Path, as_json: bool) -> str:
    from .exporters.netx_format import check_netx_file, describe_netx

    check_netx_file(p)  # validated at the door, as lava-dl would trust it
    rows = describe_netx(p)
    if as_json:
        return json.dumps({"layers": rows}, indent=2, default=str)
    return (f"netx network {p}: {len(rows)} layers (lava-dl netx HDF5; weights are Loihi mantissas)\n"
            + format_table(rows, list(rows[0])))


def describe_onnx_file(p: Path, as_json: bool) -> str:
    from .exporters.onnx_format import onnx_macs, total_macs

    layers = onnx_macs(p)
    rows = [{"layer": m.name, "op": m.op_type, "output": "x".join(map(str, m.output_shape)),
             "weights": m.weight_count, "nonzero": m.nonzero_weights, "dense MACs": m.dense_macs,
             "effective MACs": m.effective_macs} for m in layers]
    if as_json:
        return json.dumps(rows, indent=2)
    dense, effective = total_macs(layers)
    return (f"ONNX model {p}: {dense} dense MACs, {effective} effective MACs per sample\n"
            + format_table(rows, list(rows[0]) if rows else ["layer"]))


def _jsonable(d: dict) -> dict:
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d.items()}


def describe_front(run_dir: Path, as_json: bool = False) -> str:
    """An energy-objective run: every round's point as a table (front and chosen marked); writes front.png."""
    from .paths import RunPaths
    from .search.plots import plot_front
    from .yamlio import read_file

    paths = RunPaths(run_dir)
    front = read_file(paths.front, "front file")
    if as_json:
        return json.dumps(front, indent=2)
    on_front = {(p["round"], p["timesteps"]) for p in front["front"]}
    chosen = (front["chosen"]["round"], front["chosen"]["timesteps"])
    rows = [{"round": p["round"], "T": p["timesteps"], "sparsity": f"{100 * p['sparsity']:.2f} %",
             "held-out acc": f"{100 * p['accuracy']:.2f} %", "test acc": f"{100 * p['test_accuracy']:.2f} %",
             "spikes": f"{p['spikes']:.1f}", "synops": f"{p['synops']:.0f}",
             f"energy ({front['profile']})": f"{1e9 * p['energy_j']:.3f} nJ" + (
                 "" if p["energy_kind"] == "exact" else f" ({p['energy_kind']})"),
             "front": ("chosen" if (p["round"], p["timesteps"]) == chosen else
                       "yes" if (p["round"], p["timesteps"]) in on_front else "")} for p in front["points"]]
    plot_front(front, paths.front_plot, title=paths.root.name)
    c = front["chosen"]
    head = [f"run {run_dir}: energy objective on {front['profile']} (a host-computed first layer charged on "
            f"{front['host']}), accuracy on {front['accuracy_on']}",
            f"  dense round {100 * front['reference_accuracy']:.2f} %, allowed drop {front['max_accuracy_drop']} "
            f"points, T={front['timesteps']}, Early-Time's T_early={front['t_early']}",
            f"  front: {len(front['front'])} of {len(front['points'])} points; chosen: {c['label']} "
            f"({c['ticket']}), {1e9 * c['energy_j']:.3f} nJ", ""]
    cols = list(rows[0]) if rows else []
    return "\n".join(head) + format_table(rows, cols) + f"\nwrote {paths.front_plot}"


def describe_file(path: str | Path, as_json: bool = False) -> str:
    """A ticket, a NIR graph, a netx network or an ONNX model, as a table (or JSON); a report.json (its verdict)
    or deploy.json (its summary); a run directory of the energy objective, as its accuracy-energy front."""
    p = Path(path)
    if p.is_dir():
        from .paths import RunPaths

        if not RunPaths(p).front.is_file():
            raise SltError(f"{p}: a directory; inspect takes a file, or a run directory with front.json (a search "
                           f"with --objective energy)")
        return describe_front(p, as_json)
    if not p.is_file():
        raise SltError(f"{p}: no such file")
    kind = _kind(p)
    if kind == "nir":
        return describe_nir_file(p, as_json)
    if kind == "netx":
        return describe_netx_file(p, as_json)
    if kind == "onnx":
        return describe_onnx_file(p, as_json)
    if kind in ("report", "deploy"):
        return describe_report_file(p, kind, as_json)
    info = describe_ticket(Ticket.load(p))
    if as_json:
        return json.dumps(info, indent=2)
    r = info["record"]
    acc = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
    head = [f"ticket {p}",
            f"  model     {r['model']['name']} {tuple(r['model']['input_shape'])} -> {r['model']['num_classes']} "
            f"classes, widths {tuple(r['model']['hidden'])}"
            + (", recurrent (RLeaky)" if r["model"].get("recurrent") else ""),
            f"  neuron    beta {r['model']['neuron']['beta']}, threshold {r['model']['neuron']['threshold']}, "
            f"reset {r['model']['neuron']['reset']}",
            f"  method    {r['method']} (round {r['round']}), seed {r['seed']}",
            f"  data      {r['dataset']}, {r['encoding']} encoding, T={r['timesteps']}",
            f"  accuracy  {acc}   sparsity {100 * r['sparsity']:.2f} %   search time {sum(r['wall_time_s']):.1f} s",
            ""]
    return "\n".join(head) + format_table(info["layers"], ["layer", "type", "shape", "weights", "nonzero",
                                                          "sparsity", "masked", "binary"])
