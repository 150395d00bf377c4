"""Human-readable summaries of the project's artifacts (``slt-deploy inspect``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from .errors import SltError
from .ticket import Ticket


def format_table(rows: List[Dict], columns: List[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def describe_ticket(ticket: Ticket) -> Dict:
    r = ticket.record
    model = ticket.build_model()
    from .models import prunable_layers

    layers = []
    for name, layer in prunable_layers(model).items():
        w = layer.weight.detach()
        layers.append({"layer": name, "type": type(layer).__name__, "shape": "x".join(map(str, w.shape)),
                       "weights": w.numel(), "nonzero": int((w != 0).sum()),
                       "sparsity": f"{100 * r.layer_sparsity.get(name, 0.0):.2f} %",
                       "masked": "yes" if name in ticket.mask else "no"})
    return {"record": json.loads(r.to_json()), "layers": layers}


def describe_file(path: str | Path, as_json: bool = False) -> str:
    p = Path(path)
    if not p.exists():
        raise SltError(f"{p}: no such file")
    info = describe_ticket(Ticket.load(p))
    if as_json:
        return json.dumps(info, indent=2)
    r = info["record"]
    acc = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
    head = [f"ticket {p}",
            f"  model     {r['model']['name']} {tuple(r['model']['input_shape'])} -> {r['model']['num_classes']} "
            f"classes, widths {tuple(r['model']['hidden'])}",
            f"  neuron    beta {r['model']['neuron']['beta']}, threshold {r['model']['neuron']['threshold']}, "
            f"reset {r['model']['neuron']['reset']}",
            f"  method    {r['method']} (round {r['round']}), seed {r['seed']}",
            f"  data      {r['dataset']}, {r['encoding']} encoding, T={r['timesteps']}",
            f"  accuracy  {acc}   sparsity {100 * r['sparsity']:.2f} %   search time {sum(r['wall_time_s']):.1f} s",
            ""]
    return "\n".join(head) + format_table(info["layers"], ["layer", "type", "shape", "weights", "nonzero",
                                                          "sparsity", "masked"])
