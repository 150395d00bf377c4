"""The compile stage: NIR graph -> lowered network (a Lava-free IR) -> Loihi fixed-point quantization.

Takes a NIR graph (from the export stage); gives a :class:`~slt_deploy.compile.ir.LoweredNetwork`
(documented with the equations in :mod:`slt_deploy.compile.ir`) that the simulate stage runs
(:func:`slt_deploy.simulate.lava.run_lava` builds the Lava processes from it), and the lava-dl netx file
(:data:`FORMATS`, written by :mod:`slt_deploy.exporters.netx_format`). Modules: :mod:`.lower` (NIR -> IR),
:mod:`.quantize` (fixed point), :mod:`.stream` (input/output order and timing), :mod:`.reference` (the
snnTorch recording a compiled network is checked against).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from .errors import CompileError
from .ir import TARGETS, FIRST_LAYER_MODES, LayerQuant, LoweredNetwork
from .lower import conv_matrix, lower_float, pool_matrix
from .quantize import quantize

__all__ = ["CompileError", "LoweredNetwork", "LayerQuant", "TARGETS", "FIRST_LAYER_MODES", "FORMATS", "lower",
           "conv_matrix", "pool_matrix", "first_mismatch"]


def lower(graph, target: str = "floating_pt", *, first_layer: str = "host", sparse_below: float = 0.5,
          netx_compatible: bool = False) -> LoweredNetwork:
    """Lower a NIR graph for Lava.

    ``target``: ``floating_pt`` or ``fixed_pt`` (Loihi bit-accurate). ``first_layer``: ``host`` computes the
    first synapse layer off-chip and injects currents (real-valued, direct-encoded input); ``chip`` keeps it on
    chip and expects binary spike input. Synapse matrices with density below ``sparse_below`` become Lava
    ``Sparse``, the others ``Dense``. ``netx_compatible`` (fixed_pt) restricts the quantization to what the
    lava-dl netx format can carry (weight_exp 0, bias_exp 6).
    """
    if target not in TARGETS:
        raise CompileError(f"target {target!r} is not one of: {', '.join(TARGETS)}")
    net = lower_float(graph, first_layer=first_layer, sparse_below=sparse_below)
    return quantize(net, netx_compatible=netx_compatible) if target == "fixed_pt" else net


def _netx(ticket, ticket_path: Path, out: Path, first_layer: str = "host") -> Path:
    """The netx file of a ticket; ``first_layer="chip"`` includes the first synapse layer (the file then runs the
    whole network on its own, fed with input spikes), ``host`` leaves it to the host (netx's input layer takes
    the first layer's currents)."""
    from ..exporters.netx_format import write_netx
    from ..exporters.nir_format import ticket_to_nir

    write_netx(ticket_to_nir(ticket, source=str(ticket_path)), out, first_layer=first_layer)
    return out


#: Files written from the compiled network, with the export stage's writer signature (ticket, path, out).
FORMATS = {"netx": _netx}


def first_mismatch(actual: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                   layers: Optional[Sequence[str]] = None) -> Optional[str]:
    """None when every layer's (N, T, ...) spikes agree, else a line naming the first differing layer and step.

    Layers are checked in ``layers`` order (default: ``expected``'s), and within a layer the earliest step over
    all samples is reported, since a difference propagates to later steps and layers.
    """
    for name in layers or list(expected):
        if name not in actual:
            return f"layer {name!r}: missing from the compiled run"
        a, e = np.asarray(actual[name]), np.asarray(expected[name])
        if a.shape != e.shape:
            return f"layer {name!r}: shape {a.shape} != reference {e.shape}"
        diff = a.reshape(a.shape[0], a.shape[1], -1) != e.reshape(e.shape[0], e.shape[1], -1)
        if diff.any():
            steps = np.flatnonzero(diff.any(axis=(0, 2)))
            t = int(steps[0])
            samples = np.flatnonzero(diff[:, t].any(axis=1))
            k = int(samples[0])
            neurons = np.flatnonzero(diff[k, t])
            return (f"layer {name!r}: first mismatch at step {t} (sample {k}, {neurons.size} neuron(s), first "
                    f"flat index {int(neurons[0])}); {int(diff.sum())} differing spikes in the layer")
    return None
