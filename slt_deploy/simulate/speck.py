"""DYNAP-CNN / Speck through sinabs: a NIR graph as sinabs layers, run on event data.

The graph's chain of nodes becomes a ``torch.nn.Sequential`` run on ``(N*T, C, H, W)`` frames, as sinabs
runs networks for DYNAP-CNN: ``Conv2d`` -> ``torch.nn.Conv2d``, ``Affine``/``Linear`` -> ``torch.nn.Linear``,
``SumPool2d`` -> ``sinabs.layers.SumPool2d``, ``AvgPool2d`` -> ``torch.nn.AvgPool2d`` (a sum pool with the
next weights divided by the kernel area on the chip), ``Flatten`` -> ``torch.nn.Flatten``, and each ``IF``
node -> ``sinabs.layers.IAFSqueeze`` with ``MembraneSubtract`` (reset by subtraction; ``MembraneReset`` for a
zero reset) and sinabs' default ``MultiSpike``. Per step, sinabs' IAF computes::

    v = v + I ;  n = floor(v / thr) spikes when v >= thr (MultiSpike) ;  v = v - n * thr   (MembraneReset: v = 0)

The NIR ``IF`` (the project's reference) is ``v = v + (r dt) I``, one spike when ``v > thr``, then
``v = v - thr`` (subtract) or 0: the same dynamics except at ``v == thr`` (sinabs fires, the reference does
not) and ``v >= 2 thr`` (sinabs fires several spikes in the step): :data:`DIFFERENCES`, named in every run.
The gain ``r dt`` scales the IF's input (1 for a ticket's IF nodes). The readout (the last Affine, non-spiking)
runs as a Linear layer whose per-step output is summed over time as the reference's logits are; on the chip
the readout would be a spiking layer read by its spike counts.

DYNAP-CNN's neurons have no leak: a LIF node (beta < 1) is refused in one line; so is a node the chain cannot
carry. The chip's layer limits (cores, kernel and neuron memory per core) are checked by the cost stage's
``layer_per_core`` mapping against ``hardware_profiles/dynapcnn.yaml`` (sinabs documentation): sinabs' own
chip code (``sinabs.backend.dynapcnn``) imports samna at import time, see :mod:`.synsense`.
"""

from __future__ import annotations

import time
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..errors import ConfigError
from .backends import BackendRun, graph_dt, register_backend
from .synsense import import_without_samna

DIFFERENCES = (
    "sinabs' IAF fires at v >= threshold, the reference at v > threshold",
    "sinabs' MultiSpike emits floor(v / threshold) spikes in one step (v >= 2 threshold); the reference one",
    "the readout runs as a non-spiking Linear layer, as in the reference (on the chip it is a spiking layer)",
)


class _Gain(torch.nn.Module):
    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        return x * self.gain


def _chain(graph, where: str) -> List[str]:
    """The graph's nodes from its input to its output: one successor each."""
    import nir

    succ: Dict[str, List[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise ConfigError(f"{where}: sinabs needs a graph with one input, found {len(inputs)}")
    order, name = [], inputs[0]
    while True:
        nxt = succ.get(name, [])
        if not nxt:
            return order
        if len(nxt) > 1:
            raise ConfigError(f"{where}: node {name} feeds {len(nxt)} nodes; DYNAP-CNN runs a chain of layers")
        name = nxt[0]
        if isinstance(graph.nodes[name], nir.Output):
            return order
        order.append(name)


def _ints(value, n: int = 2) -> Tuple[int, ...]:
    arr = np.atleast_1d(np.asarray(value)).astype(int).tolist()
    return tuple(arr * n if len(arr) == 1 else arr)


def sinabs_model(graph, batch_size: int, dt: float = 1.0,
                 where: str = "graph") -> Tuple[torch.nn.Sequential, List[str]]:
    """(the sinabs network, names of its IAF layers = the graph's spiking nodes)."""
    import nir

    layers = import_without_samna("sinabs.layers")
    activation = import_without_samna("sinabs.activation")
    modules, spiking = [], []
    for name in _chain(graph, where):
        node = graph.nodes[name]
        if isinstance(node, nir.Conv2d):
            w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
            if isinstance(node.padding, str):
                raise ConfigError(f"{where}: conv {name} has padding {node.padding!r}; give explicit padding")
            conv = torch.nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                                   stride=_ints(node.stride), padding=_ints(node.padding),
                                   dilation=_ints(node.dilation), groups=int(node.groups), bias=True)
            conv.weight.data = w
            conv.bias.data = torch.as_tensor(np.asarray(node.bias), dtype=torch.float32).reshape(-1) \
                if node.bias is not None else torch.zeros(w.shape[0])
            modules.append((name, conv))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
            lin.weight.data = w
            if isinstance(node, nir.Affine):
                lin.bias.data = torch.as_tensor(np.asarray(node.bias), dtype=torch.float32)
            modules.append((name, lin))
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k, s, p = _ints(node.kernel_size), _ints(node.stride), _ints(node.padding)
            pool = layers.SumPool2d(k, s) if isinstance(node, nir.SumPool2d) and not any(p) else \
                torch.nn.AvgPool2d(k, s, p, divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
            modules.append((name, pool))
        elif isinstance(node, nir.Flatten):
            start, end = int(node.start_dim), int(node.end_dim)
            modules.append((name, torch.nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)))
        elif isinstance(node, nir.IF):
            thr = np.unique(np.asarray(node.v_threshold, dtype=np.float64))
            gain = np.unique(np.asarray(node.r, dtype=np.float64) * dt)
            if thr.size != 1 or gain.size != 1:
                raise ConfigError(f"{where}: layer {name} has per-neuron thresholds or gains; a DYNAP-CNN layer "
                                  f"has one threshold")
            reset = (node.metadata or {}).get("reset", "zero")
            reset_fn = activation.MembraneSubtract() if reset == "subtract" else activation.MembraneReset()
            if gain[0] != 1.0:
                modules.append((f"{name}_gain", _Gain(float(gain[0]))))
            modules.append((name, layers.IAFSqueeze(batch_size=batch_size, spike_threshold=torch.tensor(float(thr[0])),
                                                    reset_fn=reset_fn, min_v_mem=None)))
            spiking.append(name)
        elif isinstance(node, (nir.LIF, nir.CubaLIF)):
            raise ConfigError(f"{where}: layer {name} is a leaky neuron ({type(node).__name__}); DYNAP-CNN neurons "
                              f"are integrate-and-fire: search with --beta 1")
        else:
            raise ConfigError(f"{where}: node {name} ({type(node).__name__}) has no sinabs layer here")
    from collections import OrderedDict

    return torch.nn.Sequential(OrderedDict(modules)), spiking


def explain(layer: str, step: int, actual: float, expected: float) -> str:
    """Why sinabs and the reference differ at the *first* difference: everything before it (earlier steps, earlier
    layers) agrees, so the membranes there are equal and only the firing rules can differ."""
    if actual >= 2:
        return f"v >= {actual:g} thresholds: sinabs' MultiSpike fired {actual:g} spikes in the step, the reference one"
    if actual > expected:
        return "v == threshold: sinabs fires at v >= threshold, the reference only above it"
    return "the membranes differ by float rounding (same inputs, different order of additions)"


def check_speck(graph, encoding: str, limit, where: str) -> None:
    """What DYNAP-CNN cannot take, in one line: input other than events, layers sinabs cannot map."""
    if encoding != "events":
        raise ConfigError(f"{where}: the input is {encoding}-encoded; DYNAP-CNN takes events (--dataset "
                          f"event-mnist, nmnist, ...)")
    sinabs_model(graph, 1, where=where)


@register_backend("sinabs", whole_chip=True, check=check_speck)
def run_sinabs(graph, x: np.ndarray, first_layer: str = "chip"):
    """The ``sinabs`` backend: (N, T, C, H, W) events through the graph's sinabs layers."""
    start = time.perf_counter()
    x = np.asarray(x, dtype=np.float32)
    dt = graph_dt(graph) or 1.0
    outputs, spikes = [], {}
    for i in range(0, len(x), 50):
        batch = torch.from_numpy(x[i:i + 50])
        b, steps = batch.shape[:2]
        model, spiking = sinabs_model(graph, b, dt)
        trace: Dict[str, torch.Tensor] = {}
        hooks = [getattr(model, n).register_forward_hook(lambda m, inp, out, n=n: trace.__setitem__(n, out))
                 for n in spiking]
        with torch.no_grad():
            out = model(batch.reshape(b * steps, *batch.shape[2:]))
        for h in hooks:
            h.remove()
        outputs.append(out.reshape(b, steps, -1).numpy())
        for n in spiking:
            spikes.setdefault(n, []).append(trace[n].reshape(b, steps, *trace[n].shape[1:]).numpy())
    notes = tuple(f"sinabs vs reference: {d}" for d in DIFFERENCES)
    return BackendRun(np.concatenate(outputs), {k: np.concatenate(v) for k, v in spikes.items()},
                      time.perf_counter() - start, notes, explain)
