"""The backend registry: every simulator a NIR graph can run on, registered by name where it is defined.

A backend is ``run(graph, x, first_layer="host", **options) -> BackendRun`` on (N, T, *input) samples. The
project's own backends register in :mod:`.run`; the vendors' simulators (:mod:`.xylo`, :mod:`.speck`) register in
their own modules, which import their vendor library only inside the run, so registering costs no heavy import.
A backend registered ``whole_chip`` runs every layer on the vendor's chip, the first one included (the chip
takes its input itself): its first layer is never computed on a host. A backend may register a ``check``, run
before anything is written (``deploy``): ``check(graph, encoding, limit, where)`` raises a one-line ConfigError
for a network or input its chip cannot take (``limit(key)``: the profile's limit of that name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class BackendRun:
    """What a backend returns: per-step outputs (N, T, classes) and spikes per layer (N, T, ...)."""

    outputs: np.ndarray
    spikes: Dict[str, np.ndarray]
    seconds: float
    notes: Tuple[str, ...] = ()
    # explain(layer, step, backend's spikes, reference's spikes) -> why they differ there (vendor simulators,
    # whose neuron semantics differ from the reference's in known ways)
    explain: Optional[Callable[[str, int, float, float], str]] = None


Backend = Callable[..., BackendRun]
Check = Callable[[object, str, Callable[[str], object], str], None]

#: name -> run function, in registration order
BACKENDS: Dict[str, Backend] = {}
_WHOLE_CHIP: set = set()
_CHECKS: Dict[str, Check] = {}


def register_backend(name: str, whole_chip: bool = False,
                     check: Optional[Check] = None) -> Callable[[Backend], Backend]:
    """Decorator: register ``run`` as backend ``name`` (a name registered twice is an error), with its chip's
    ``check`` if it has one."""
    def add(run: Backend) -> Backend:
        if name in BACKENDS:
            raise ValueError(f"backend {name!r} is registered twice")
        BACKENDS[name] = run
        if whole_chip:
            _WHOLE_CHIP.add(name)
        if check is not None:
            _CHECKS[name] = check
        return run
    return add


def check_network(name: str, graph, encoding: str, limit: Callable[[str], object], where: str) -> None:
    """Backend ``name``'s check of a network and its input encoding (nothing for a backend without one)."""
    backend(name)
    if name in _CHECKS:
        _CHECKS[name](graph, encoding, limit, where)


def backend(name: str) -> Backend:
    """The run function of backend ``name``; an unknown name is one ConfigError listing the valid ones."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def runs_whole_chip(name: str) -> bool:
    """True for a vendor's simulator that runs every layer on its chip, the first included."""
    return name in _WHOLE_CHIP


#: NIR node types that are neurons (they may state their own time step)
NEURON_TYPES = ("LIF", "IF", "CubaLIF", "LI", "I")


def graph_dt(graph) -> Optional[float]:
    """The time step the graph states (graph metadata ``dt``, or every neuron node's own), else None."""
    meta = graph.metadata or {}
    if "dt" in meta:
        return float(meta["dt"])
    neurons = [n for n in graph.nodes.values() if type(n).__name__ in NEURON_TYPES]
    own = {float(n.metadata["dt"]) for n in neurons if "dt" in (n.metadata or {})}
    if neurons and len(own) == 1 and all("dt" in (n.metadata or {}) for n in neurons):
        return own.pop()
    return None
