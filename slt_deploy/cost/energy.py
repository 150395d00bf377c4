"""Energy per inference: counted events x the profile's per-event energies, broken down by component.

One counting rule for both sides (``ops``, see :data:`OPS_RULES`):

- ``effective``: a synaptic op / MAC is a (nonzero input x nonzero weight) pair, measured on a real run: spikes
  for the SNN, the ANN's real activations on the same samples (its ReLU outputs, counted by the same counter,
  :mod:`slt_deploy.cost.activity`);
- ``dense``: every weight of every layer call, whatever the input (``dense_ops``).

The layer fed by the network input is the *first layer*, a named component on both sides. In the SNN it is
computed by the host when the deployment says so (``host_first_layer``: real-valued or host-encoded input;
the compiler's ``first_layer="host"``), once per sample for a constant (direct-encoded) input and every step
otherwise, and charged on the ``host`` profile (its ``mac`` + ``memory_access`` per op). In the ANN it is the
first layer of the ANN on the ANN's own profile. Per sample::

    E_SNN = first_layer (host ops x (host mac + host memory_access))
          + synaptic_op   x on-chip ops with binary (spike) input
          + mac           x on-chip ops with real-valued input
          + memory_access x all on-chip ops (one weight read each)
          + neuron_update x neuron updates (neurons x T)
          + spike_out     x output spikes
          + static_power  x timestep_latency x T

    E_ANN = first_layer (its ops x (mac + memory_access)) + mac x other ops + memory_access x other ops
          + static_power x inference_latency

A component whose figure is unknown (``value: null``) is left out and named in ``unknown``, so the total is
then a lower bound (``complete`` False). Figures a profile's convention excludes, or that cannot be used
(static power without a latency), are named in ``unused``; figures already counted in another one are named in
``included``. Figures marked ``bound: lower`` / ``upper`` in the profile are named in ``bounds``: a total that
charges both kinds is an estimate, not a bound. With the ``cmos45`` profile on both sides (MAC 4.6 pJ, AC 0.9
pJ, everything else excluded) this is the SNN literature's formula (hardware_profiles/SOURCES.md section 7)::

    E_SNN = 4.6 pJ x first-layer MACs + 0.9 pJ x SOPs,   E_ANN = 4.6 pJ x MACs,

with both sides counted by the same rule.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Tuple

from .activity import LayerActivity, NetworkActivity
from .profiles import FIGURES, HardwareProfile, ProfileError, load_profile

OPS_RULES = ("effective", "dense")
#: Energy components in report order: the first layer, then the profile figures.
COMPONENTS = ("first_layer",) + tuple(FIGURES)
RULE_SENTENCE = {
    "effective": "Counting rule: effective ops = nonzero input x nonzero weight, measured on the same test samples "
                 "for both sides (spikes for the SNN, real activations for the ANN).",
    "dense": "Counting rule: dense ops = every weight of every layer call, for both sides (inputs ignored).",
}


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
    included: Tuple[str, ...] = ()      # figures counted inside another one (status included)
    bounds: Mapping[str, str] = types.MappingProxyType({})  # charged figure -> "lower" / "upper"
    ops: str = "effective"
    latency: float = None               # seconds per inference, None when unknown

    @property
    def total(self) -> float:
        return float(sum(self.components.values()))

    @property
    def complete(self) -> bool:
        return not self.unknown

    @property
    def kind(self) -> str:
        """What the total is: exact, lower/upper bound, estimate (bounds both ways) or unknown (nothing known)."""
        kinds = set(self.bounds.values())
        if self.unknown:
            own = sum(v for k, v in self.components.items() if k != "first_layer")
            if not self.components or self.total <= 0 or (self.side == "snn" and own <= 0):
                return "unknown"  # nothing of the target itself is known (a host layer alone is not its cost)
            kinds.add("lower")
        if not kinds:
            return "exact"
        return "estimate" if kinds == {"lower", "upper"} else f"{kinds.pop()} bound"

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``dataclasses.asdict`` cannot copy the read-only mappings)."""
        return {"profile": self.profile, "side": self.side, "total": self.total, "complete": self.complete,
                "components": dict(self.components), "counts": dict(self.counts), "unknown": list(self.unknown),
                "unused": list(self.unused), "notes": list(self.notes), "included": list(self.included),
                "bounds": dict(self.bounds), "kind": self.kind, "ops": self.ops, "latency": self.latency}


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
        self.included: List[str] = []
        self.bounds: Dict[str, str] = {}

    def charge(self, name: str, count: float) -> None:
        fig = self.profile.figure(name)
        self.counts[name] = self.counts.get(name, 0.0) + float(count)
        if fig is not None and fig.value is not None:
            self.components[name] = self.components.get(name, 0.0) + float(count) * fig.si()
            if fig.status == "included":
                self.included.append(name)
            if fig.bound and count > 0:
                self.bounds[name] = fig.bound
        elif count > 0:
            self._missing(name)

    def charge_first_layer(self, ops: float, host: HardwareProfile) -> None:
        """The first layer's ops on ``host`` (its mac + memory_access per op), as one component."""
        self.counts["first_layer"] = float(ops)
        energy = 0.0
        for name in ("mac", "memory_access"):
            fig = host.figure(name)
            if fig is not None and fig.value is not None:
                energy += float(ops) * fig.si()
                if fig.bound and ops > 0:
                    self.bounds[f"first_layer ({host.name} {name})"] = fig.bound
            elif ops > 0 and not (fig is not None and fig.status == "excluded"):
                self.unknown.append(f"first_layer ({host.name} {name})")
        self.components["first_layer"] = energy

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

    def result(self, side: str, notes: Tuple[str, ...] = (), ops: str = "effective",
               latency=None) -> EnergyBreakdown:
        return EnergyBreakdown(self.profile.name, side, types.MappingProxyType(dict(self.components)),
                               types.MappingProxyType(dict(self.counts)), tuple(dict.fromkeys(self.unknown)),
                               tuple(dict.fromkeys(self.unused)), notes, tuple(dict.fromkeys(self.included)),
                               types.MappingProxyType(dict(self.bounds)), ops, latency)


def _check_ops(ops: str) -> None:
    if ops not in OPS_RULES:
        raise ValueError(f"ops={ops!r} is not one of: {', '.join(OPS_RULES)}")


def layer_ops(layer: LayerActivity, ops: str) -> float:
    """The layer's ops per sample under the counting rule."""
    return layer.effective_synops if ops == "effective" else layer.dense_ops


def _latency(profile: HardwareProfile, name: str, steps: int):
    fig = profile.figure(name)
    return fig.si() * steps if fig is not None and fig.value is not None else None


def snn_energy(activity: NetworkActivity, profile, *, ops: str = "effective", host=None,
               host_first_layer: bool = True) -> EnergyBreakdown:
    """Energy of one SNN inference (one sample, T steps) on a neuromorphic or reference profile.

    ``host``: the profile the host-computed first layer is charged on (default: ``profile`` itself, as the
    45 nm convention charges it); ``host_first_layer`` False keeps the first layer on chip (event input).
    """
    _check_ops(ops)
    profile = load_profile(profile)
    host = profile if host is None else load_profile(host)
    if profile.kind == "ann":
        raise ProfileError(f"{profile.path}: profile {profile.name} is an ANN target (kind ann); "
                           f"use ann_energy, or a neuromorphic or reference profile")
    ledger = _Ledger(profile)
    on_host = [l for l in activity.layers if host_first_layer and l.from_input]
    chip = [l for l in activity.layers if l not in on_host]
    if on_host:
        ledger.charge_first_layer(sum(layer_ops(l, ops) for l in on_host), host)
    ledger.charge("synaptic_op", sum(layer_ops(l, ops) for l in chip if l.input_binary))
    ledger.charge("mac", sum(layer_ops(l, ops) for l in chip if not l.input_binary))
    ledger.charge("neuron_update", activity.neuron_updates)
    ledger.charge("spike_out", activity.output_spikes)
    ledger.charge("memory_access", sum(layer_ops(l, ops) for l in chip))
    ledger.static("timestep_latency", activity.timesteps)
    where = f"on the host ({host.name})" if on_host else "on chip"
    notes = (f"counts from {activity.source or 'a run'} over {activity.samples} sample(s), T = {activity.timesteps}",
             f"first layer {where}" + (", computed once per sample (constant input)"
                                       if any(l.computed_once for l in on_host) else ""))
    return ledger.result("snn", notes, ops, _latency(profile, "timestep_latency", activity.timesteps))


def ann_energy(dense_macs: float, effective_macs: float, profile, *, skip_zeros: bool = False) -> EnergyBreakdown:
    """Energy of one ANN inference from MAC totals alone (no activity measured: no first-layer component).

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
    return ledger.result("ann", (f"charged {which}: dense {dense_macs:g}, effective {effective_macs:g}",),
                         "effective" if skip_zeros else "dense", _latency(profile, "inference_latency", 1))


def ann_energy_from_activity(activity: NetworkActivity, profile, *, ops: str = "effective") -> EnergyBreakdown:
    """Energy of one ANN inference from its activity measured on real samples (one pass, T = 1)."""
    _check_ops(ops)
    profile = load_profile(profile)
    if profile.kind == "neuromorphic":
        raise ProfileError(f"{profile.path}: profile {profile.name} is a neuromorphic target; use snn_energy, "
                           f"or an ANN or reference profile")
    ledger = _Ledger(profile)
    first = [l for l in activity.layers if l.from_input]
    rest = [l for l in activity.layers if not l.from_input]
    if first:
        ledger.charge_first_layer(sum(layer_ops(l, ops) for l in first), profile)
    ledger.charge("mac", sum(layer_ops(l, ops) for l in rest))
    ledger.charge("memory_access", sum(layer_ops(l, ops) for l in rest))
    ledger.static("inference_latency", 1)
    return ledger.result("ann", (f"counts from {activity.source or 'a run'} over {activity.samples} sample(s), "
                                 f"one pass each",), ops, _latency(profile, "inference_latency", 1))


def ann_energy_from_layers(layers: Iterable, profile, *, skip_zeros: bool = False) -> EnergyBreakdown:
    """:func:`ann_energy` of per-layer MAC counts: any objects with ``dense_macs`` and ``effective_macs``
    (e.g. ``slt_deploy.exporters.onnx_format.LayerMACs``)."""
    layers = list(layers)
    return ann_energy(sum(l.dense_macs for l in layers), sum(l.effective_macs for l in layers), profile,
                      skip_zeros=skip_zeros)
