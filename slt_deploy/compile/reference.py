"""The snnTorch reference a compiled network is checked against, with every spiking layer recorded.

``snnTorch`` emits float32 spikes whatever the model's dtype; they are exact 0/1 values, so a forward hook casts
them to the model's dtype and the whole network can run in float64. That is the comparison for the
``floating_pt`` target, which computes in float64: a float32 reference differs from any float64 computation in
the last bits, which flips a spike only when a membrane lands within ~1e-7 of the threshold.
"""

from __future__ import annotations

import copy
from typing import Dict, Tuple

import numpy as np


def record_snntorch(model, x_seq, dtype=None) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Run a SpikingNet on ``x_seq`` (T, B, ...) and return (logits (B, T, ...), {layer: spikes (B, T, ...)}).

    ``dtype`` (e.g. ``torch.float64``) runs a copy of the model in that precision. Layer names are the module
    names within ``model.body``, which are the NIR node names the exporter writes.
    """
    import snntorch as snn
    import torch

    if dtype is not None:
        if hasattr(model, "reset_state"):  # hidden state left by training has autograd history: no deepcopy
            model.reset_state()
        model = copy.deepcopy(model).to(dtype)
        x_seq = x_seq.to(dtype)
    records: Dict[str, list] = {}
    hooks = []
    for name, module in model.body.named_modules():
        if isinstance(module, snn.SpikingNeuron):
            def hook(mod, args, out, name=name):
                records.setdefault(name, []).append(out.detach().cpu().numpy().copy())
                return out.to(x_seq.dtype)
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model.eval()(x_seq)
    finally:
        for h in hooks:
            h.remove()
    spikes = {name: np.stack(v).swapaxes(0, 1).astype(np.int8) for name, v in records.items()}
    return logits.detach().cpu().numpy().swapaxes(0, 1), spikes
