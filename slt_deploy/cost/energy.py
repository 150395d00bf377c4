"""Energy per inference: counted events x the profile's per-event energies, broken down by component.

SNN side (:func:`snn_energy`), per sample, from a :class:`~slt_deploy.cost.activity.NetworkActivity`::

    E = synaptic_op   x effective ACs (synaptic ops of layers whose input is binary spikes)
      + mac           x effective MACs (synaptic ops of layers with real-valued input, e.g. direct encoding)
      + neuron_update x neuron updates (neurons x T)
      + spike_out     x output spikes
      + memory_access x all effective synaptic ops (one weight read each)
      + static_power  x timestep_latency x T

ANN side (:func:`ann_energy`), per inference, from MAC counts (e.g. ``onnx_macs`` of the ANN twin)::

    E = mac x MACs + memory_access x MACs + static_power x inference_latency

where MACs are the dense count (every weight multiplied, what a dense accelerator runs) or, with
``skip_zeros=True``, the effective count (zero weights skipped).

A component whose figure is unknown (``value: null``) is left out and named in ``unknown``, so the total is
then a lower bound (``complete`` is False). Figures a profile's convention excludes, or that cannot be used
(static power without a latency), are named in ``unused``. With the ``cmos45`` profile (MAC 4.6 pJ, AC 0.9
pJ, everything else excluded) this is the SNN literature's formula (hardware_profiles/SOURCES.md section 7)::

    E_SNN = 4.6 pJ x MACs of real-valued-input layers + 0.9 pJ x SOPs,   E_ANN = 4.6 pJ x MACs,

with SOPs counted exactly (nonzero input x nonzero weight) rather than as firing rate x T x FLOPs; for dense
weights the two agree.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Tuple

from .activity import NetworkActivity
from .profiles import HardwareProfile, ProfileError, load_profile


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one inference on one profile; ``components`` in joules, keyed by figure name."""

    profile: str
    side: str                           # "snn" or "ann"
    components: Mapping[str, float]     # J per inference; only figures with a value
    counts: Mapping[str, float]         # events charged to each figure (static_power: seconds)
    unknown: Tuple[str, ...]            # needed figures whose value is unknown: the total is a lower bound
    unused: Tuple[str, ...]             # figures excluded by convention or not usable (e.g. no latency)
    notes: Tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return float(sum(self.components.values()))

    @property
    def complete(self) -> bool:
        return not self.unknown

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``dataclasses.asdict`` cannot copy the read-only mappings)."""
        return {"profile": self.profile, "side": self.side, "total": self.total, "complete": self.complete,
                "components": dict(self.components), "counts": dict(self.counts), "unknown": list(self.unknown),
                "unused": list(self.unused), "notes": list(self.notes)}


def energy_ratio(snn: EnergyBreakdown, ann: EnergyBreakdown) -> float:
    """SNN energy as a fraction of ANN energy (multiply by 100 for the papers' percentage)."""
    if ann.total <= 0:
        raise ValueError(f"ANN energy on {ann.profile} is {ann.total} J; cannot form a ratio")
    return snn.total / ann.total


class _Ledger:
    """Accumulates components, tracking which figures were unknown or unused."""

    def __init__(self, profile: HardwareProfile):
        self.profile = profile
        self.components: Dict[str, float] = {}
        self.counts: Dict[str, float] = {}
        self.unknown: List[str] = []
        self.unused: List[str] = []

    def charge(self, name: str, count: float) -> None:
        fig = self.profile.figure(name)
        self.counts[name] = float(count)
        if fig is not None and fig.value is not None:
            self.components[name] = float(count) * fig.si()
        elif count > 0:
            self._missing(name)

    def _missing(self, name: str) -> None:
        fig = self.profile.figure(name)
        (self.unused if fig is not None and fig.status == "excluded" else self.unknown).append(name)

    def static(self, latency_name: str, steps: int) -> None:
        """static_power x latency x steps, when the profile gives both (0 W needs no latency)."""
        power = self.profile.figure("static_power")
        latency = self.profile.figure(latency_name)
        if power is None or power.value is None:
            self._missing("static_power")
            return
        if power.value == 0:
            self.components["static_power"] = 0.0
            self.counts["static_power"] = 0.0
            return
        if latency is None or latency.value is None:
            self.unused.append("static_power")
            self._missing(latency_name)
            return
        seconds = latency.si() * steps
        self.counts["static_power"] = seconds
        self.components["static_power"] = power.si() * seconds

    def result(self, side: str, notes: Tuple[str, ...] = ()) -> EnergyBreakdown:
        return EnergyBreakdown(self.profile.name, side, types.MappingProxyType(dict(self.components)),
                               types.MappingProxyType(dict(self.counts)), tuple(dict.fromkeys(self.unknown)),
                               tuple(dict.fromkeys(self.unused)), notes)


def snn_energy(activity: NetworkActivity, profile) -> EnergyBreakdown:
    """Energy of one SNN inference (one sample, T steps) on a neuromorphic or reference profile."""
    profile = load_profile(profile)
    if profile.kind == "ann":
        raise ProfileError(f"{profile.path}: profile {profile.name} is an ANN target (kind ann); "
                           f"use ann_energy, or a neuromorphic or reference profile")
    ledger = _Ledger(profile)
    ledger.charge("synaptic_op", activity.effective_acs)
    ledger.charge("mac", activity.effective_macs)
    ledger.charge("neuron_update", activity.neuron_updates)
    ledger.charge("spike_out", activity.output_spikes)
    ledger.charge("memory_access", activity.effective_synops)
    ledger.static("timestep_latency", activity.timesteps)
    return ledger.result("snn", (f"counts from {activity.source or 'a run'} over {activity.samples} "
                                 f"sample(s), T = {activity.timesteps}",))


def ann_energy(dense_macs: float, effective_macs: float, profile, *, skip_zeros: bool = False) -> EnergyBreakdown:
    """Energy of one ANN inference on an ANN or reference profile.

    Charges ``dense_macs`` (a dense accelerator multiplies every weight) or, with ``skip_zeros``,
    ``effective_macs`` (zero weights skipped), once as arithmetic and once as a weight read.
    """
    profile = load_profile(profile)
    if profile.kind == "neuromorphic":
        raise ProfileError(f"{profile.path}: profile {profile.name} is a neuromorphic target; use snn_energy, "
                           f"or an ANN or reference profile")
    if dense_macs < 0 or effective_macs < 0 or effective_macs > dense_macs:
        raise ValueError(f"MAC counts must satisfy 0 <= effective ({effective_macs}) <= dense ({dense_macs})")
    macs = effective_macs if skip_zeros else dense_macs
    ledger = _Ledger(profile)
    ledger.charge("mac", macs)
    ledger.charge("memory_access", macs)
    ledger.static("inference_latency", 1)
    which = "effective MACs (zero weights skipped)" if skip_zeros else "dense MACs"
    return ledger.result("ann", (f"charged {which}: dense {dense_macs:g}, effective {effective_macs:g}",))


def ann_energy_from_layers(layers: Iterable, profile, *, skip_zeros: bool = False) -> EnergyBreakdown:
    """:func:`ann_energy` of per-layer MAC counts: any objects with ``dense_macs`` and ``effective_macs``
    (e.g. ``slt_deploy.exporters.onnx_format.LayerMACs``)."""
    layers = list(layers)
    return ann_energy(sum(l.dense_macs for l in layers), sum(l.effective_macs for l in layers), profile,
                      skip_zeros=skip_zeros)
