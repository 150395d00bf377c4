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
          + static_power  x timestep_latency x T      (at a rate r: static_power / r)

    E_ANN = first_layer (its ops x mac + its weight reads x memory_access) + mac x other ops
          + memory_access x other weight reads + static_power x inference_latency   (at a rate r: / r)

Static power is charged for the time one inference holds the chip (:func:`static_seconds`): its latency when
inferences run back to back, the period 1 / r when the user runs r inferences per second (``rate``), the same
rule on both sides. A figure that holds static power inside (``included``) was measured back to back, so at a
rate the idle time between inferences is unknown and the chip-scope total is open above.

A weight read is one per op, except on targets that store a conv kernel once (``weight_sharing``): there each
weight of a conv layer is read at most once per call (:func:`weight_reads`). On targets with a
``weight_memory`` the read energy follows the size ``S`` (bits) of what the device stores, smoothly, with one rule
for both sides (the SNN's host layer and the ANN, each stored by :func:`slt_deploy.cost.mapping.weight_store`:
best encoding, index bits included)::

    E_read(S) = e(S) x bits_per_weight,   e(S) = e_i (S / C_i) ** (ln(e_{i+1} / e_i) / ln(C_{i+1} / C_i))
                                          for C_i < S <= C_{i+1}; e_1 below C_1; off-chip e_DRAM above C_n

where ``C_i`` and ``e_i`` are the capacity and energy per bit of the profile's memory levels (Horowitz's 8 KB,
32 KB and 1 MB points): ln e is linear in ln S between neighbouring points, so no byte moves a store to the next
level's price; only leaving the chip (DRAM) is a step (:func:`slt_deploy.cost.profiles.read_energy_per_bit`).

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

import math
import types
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from ..errors import ConfigError
from .activity import LayerActivity, NetworkActivity
from .profiles import FIGURE_SCOPES, FIGURES, SCOPES, HardwareProfile, ProfileError, load_profile

OPS_RULES = ("effective", "dense")
#: Energy components in report order: the first layer, then the profile figures.
COMPONENTS = ("first_layer",) + tuple(FIGURES)


@dataclass(frozen=True)
class Term:
    """One charged part of a total, as an interval, with what it covers and what it scales with.

    ``base``: the narrowest scope the part belongs to (a weight read is chip-dynamic); ``covers``: what its
    figure really includes (TrueNorth's all-in synaptic event covers chip: static power inside). ``activity`` /
    ``density``: the part grows linearly with spikes per neuron per step / with the fraction of nonzero weights
    (what break-even solves for)."""

    component: str
    base: str
    covers: str
    low: float
    high: float
    activity: bool = False
    density: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def scoped_interval(terms: Iterable[Term], scope: str, own_scope: str, open_below: Iterable[str] = (),
                    scale_activity: float = 1.0, scale_density: float = 1.0) -> Tuple[float, float]:
    """The total of ``terms`` at ``scope`` as (low, high) joules.

    A term whose base is wider than ``scope`` is left out; one whose figure covers more than ``scope`` counts
    from 0 (part of it lies outside the scope) to its high end. ``open_below`` names the bases of needed figures
    nobody knows: the high end is then unbounded. Beyond the profile's ``own_scope`` (a chip profile asked for a
    board figure) the high end is unbounded too. ``scale_*`` multiply the terms that scale with activity or
    density (break-even).
    """
    rank = SCOPES.index
    low = high = 0.0
    for t in terms:
        if rank(t.base) > rank(scope):
            continue
        k = (scale_activity if t.activity else 1.0) * (scale_density if t.density else 1.0)
        high += t.high * k
        if rank(t.covers) <= rank(scope):
            low += t.low * k
    if any(rank(b) <= rank(scope) for b in open_below) or rank(scope) > rank(own_scope):
        high = math.inf
    return low, high


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
    bounds: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))  # figure -> "lower" / "upper"
    ops: str = "effective"
    latency: float = None               # seconds per inference, None when unknown
    terms: Tuple[Term, ...] = ()        # the total as intervals per part (scopes, what scales)
    scope: str = "chip"                 # what the profile's total covers when every figure is known
    open_below: Tuple[str, ...] = ()    # bases of needed figures nobody knows (their high end is unbounded)

    @property
    def total(self) -> float:
        return float(sum(self.components.values()))

    def interval(self, scope: Optional[str] = None) -> Tuple[float, float]:
        """(low, high) joules at ``scope`` (default: the profile's own); see :func:`scoped_interval`."""
        return scoped_interval(self.terms, scope or self.scope, self.scope, self.open_below)

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
                "bounds": dict(self.bounds), "kind": self.kind, "ops": self.ops, "latency": self.latency,
                "scope": self.scope, "interval": list(self.interval()), "terms": [t.to_dict() for t in self.terms],
                "open_below": list(self.open_below),
                "intervals": {s: list(self.interval(s)) for s in SCOPES}}


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
        self.terms: List[Term] = []
        self.open_below: List[str] = []
        self.memory_notes: List[str] = []

    def charge(self, name: str, count: float, *, activity: bool = False, density: bool = False,
               storage: Optional[Tuple[float, float]] = None) -> None:
        """``count`` events of figure ``name``. ``storage`` (bits stored, bits per weight) picks a weight read's
        energy from the profile's ``weight_memory`` when it has one (memory_access only)."""
        self.counts[name] = self.counts.get(name, 0.0) + float(count)
        read = _weight_read(self.profile, storage) if name == "memory_access" else None
        if read is not None:
            joules, note = read
            self.components[name] = self.components.get(name, 0.0) + float(count) * joules
            self.terms.append(Term(name, "chip-dynamic", "chip-dynamic", count * joules, count * joules,
                                   activity, density))
            self.memory_notes.append(note)
            return
        fig = self.profile.figure(name)
        if fig is not None and fig.value is not None:
            self.components[name] = self.components.get(name, 0.0) + float(count) * fig.si()
            if fig.status == "included":
                self.included.append(name)
            if fig.bound and count > 0:
                self.bounds[name] = fig.bound
            low, high = fig.interval()
            if count > 0:
                self.terms.append(Term(name, FIGURE_SCOPES[name], fig.covers, count * low, count * high,
                                       activity, density))
        elif count > 0:
            self._missing(name)

    def charge_first_layer(self, ops: float, host: HardwareProfile,
                           storage: Optional[Tuple[float, float]] = None, reads: Optional[float] = None) -> None:
        """The first layer's ops on ``host`` (its mac per op + memory_access per weight read, ``reads``
        defaulting to one per op), as one component; ``storage``: (bits stored, bits per weight read) of what
        ``host`` holds (its weight memory level follows it)."""
        self.counts["first_layer"] = float(ops)
        energy = 0.0
        for name in ("mac", "memory_access"):
            count = ops if name == "mac" or reads is None else reads
            read = _weight_read(host, storage) if name == "memory_access" else None
            fig = host.figure(name)
            if read is not None:
                per_op, note = read
                self.memory_notes.append(f"first layer on {host.name}: {note}")
                low = high = per_op
                covers = "chip-dynamic"
            elif fig is not None and fig.value is not None:
                per_op = fig.si()
                low, high = fig.interval()
                covers = fig.covers
                if fig.bound and ops > 0:
                    self.bounds[f"first_layer ({host.name} {name})"] = fig.bound
            else:
                if ops > 0 and not (fig is not None and fig.status == "excluded"):
                    self.unknown.append(f"first_layer ({host.name} {name})")
                    self.open_below.append(FIGURE_SCOPES[name])
                continue
            energy += float(count) * per_op
            if count > 0:
                self.terms.append(Term("first_layer", FIGURE_SCOPES[name], covers, count * low, count * high,
                                       False, True))
        self.components["first_layer"] = energy

    def _missing(self, name: str) -> None:
        fig = self.profile.figure(name)
        if fig is not None and fig.status == "excluded":
            self.unused.append(name)
        else:
            self.unknown.append(name)
            self.open_below.append(FIGURE_SCOPES[name])

    def static(self, latency_name: str, steps: int, rate: Optional[float] = None) -> None:
        """Static power over one inference: :func:`static_seconds` of it (P x latency x steps back to back, P /
        rate at ``rate`` inferences per second); 0 W needs no time."""
        power = self.profile.figure("static_power")
        latency = self.profile.figure(latency_name)
        if power is None or power.value is None:
            self._missing("static_power")
            return
        if power.status == "included" and rate is not None:
            # the all-in figure holding it was measured back to back: the idle time between inferences is not in it
            self.unknown.append("static_power (idle between inferences at the rate asked)")
            self.open_below.append("chip")
            return
        if power.value == 0:
            self.components["static_power"] = 0.0
            self.counts["static_power"] = 0.0
            return
        seconds = static_seconds(self.profile, latency, steps, rate)
        if seconds is None:
            self.unused.append("static_power")
            self._missing(latency_name)
            return
        self.counts["static_power"] = seconds[0]
        self.components["static_power"] = power.si() * seconds[0]
        (p_low, p_high), (t_low, t_high) = power.interval(), seconds[1:]
        self.terms.append(Term("static_power", "chip", power.covers, p_low * t_low, p_high * t_high))

    def result(self, side: str, notes: Tuple[str, ...] = (), ops: str = "effective",
               latency=None) -> EnergyBreakdown:
        notes = tuple(notes) + tuple(dict.fromkeys(self.memory_notes))
        return EnergyBreakdown(self.profile.name, side, types.MappingProxyType(dict(self.components)),
                               types.MappingProxyType(dict(self.counts)), tuple(dict.fromkeys(self.unknown)),
                               tuple(dict.fromkeys(self.unused)), notes, tuple(dict.fromkeys(self.included)),
                               types.MappingProxyType(dict(self.bounds)), ops, latency, tuple(self.terms),
                               self.profile.scope, tuple(dict.fromkeys(self.open_below)))


def static_seconds(profile: HardwareProfile, latency, steps: int, rate: Optional[float]
                   ) -> Optional[Tuple[float, float, float]]:
    """(value, low, high) seconds of static power charged to one inference, the same for both sides::

        back to back (rate None):   t = latency x steps                 (timestep_latency x T, or inference_latency)
        at ``rate`` inferences/s:   t = 1 / rate                        (the chip stays on between inferences)

    None when back to back and the latency is unknown. At a rate whose period is shorter than the inference's
    known latency the chip cannot keep up: a ConfigError naming both."""
    if rate is None:
        if latency is None or latency.value is None:
            return None
        low, high = latency.interval()
        return latency.si() * steps, low * steps, high * steps
    if not rate > 0 or not math.isfinite(rate):
        raise ConfigError(f"rate={rate!r} must be a positive number of inferences per second")
    period = 1.0 / rate
    if latency is not None and latency.value is not None and latency.interval()[0] * steps > period:
        raise ConfigError(f"rate={rate:g}/s: one inference on {profile.name} takes at least "
                          f"{latency.interval()[0] * steps:.4g} s, longer than the period {period:.4g} s")
    return period, period, period


def _weight_read(profile: HardwareProfile, storage: Optional[Tuple[float, float]]) -> Optional[Tuple[float, str]]:
    """(J per weight read, note) from the profile's weight_memory for ``storage`` = (bits stored, bits per
    weight); None when the profile has none or the storage is not known."""
    if storage is None or not profile.weight_memory or not storage[0] or not storage[1]:
        return None
    found = profile.weight_read(storage[0], storage[1])
    return None if found is None else (found.joules, found.describe())


def _check_ops(ops: str) -> None:
    if ops not in OPS_RULES:
        raise ValueError(f"ops={ops!r} is not one of: {', '.join(OPS_RULES)}")


def weight_reads(layers: Iterable[LayerActivity], ops: str, profile: HardwareProfile, timesteps: int) -> float:
    """Weight reads per sample: one per op, except that a target storing each conv kernel once
    (``weight_sharing``) fetches each of a conv layer's weights at most once per call and keeps it while the
    kernel slides (a weight-stationary dataflow): min(ops, nonzero weights x calls), a call per step (once for a
    layer computed once per sample)."""
    shared = bool(profile.limit("weight_sharing"))
    total = 0.0
    for l in layers:
        n = layer_ops(l, ops)
        if shared and l.kind == "conv":
            n = min(n, float(l.nonzero_weights) * (1 if l.computed_once else timesteps))
        total += n
    return total


def layer_ops(layer: LayerActivity, ops: str) -> float:
    """The layer's ops per sample under the counting rule."""
    return layer.effective_synops if ops == "effective" else layer.dense_ops


def _latency(profile: HardwareProfile, name: str, steps: int):
    fig = profile.figure(name)
    return fig.si() * steps if fig is not None and fig.value is not None else None


def dense_storage(layers: Iterable[LayerActivity], profile: HardwareProfile) -> Optional[Tuple[float, float]]:
    """(bits stored, bits per weight read) of ``layers`` stored densely at the profile's weight_bits."""
    bits = profile.limit("weight_bits")
    return (float(sum(l.weights for l in layers)) * bits, float(bits)) if bits else None


def snn_energy(activity: NetworkActivity, profile, *, ops: str = "effective", host=None,
               host_first_layer: bool = True, host_store: Optional[Tuple[float, float]] = None,
               rate: Optional[float] = None) -> EnergyBreakdown:
    """Energy of one SNN inference (one sample, T steps) on a neuromorphic or reference profile.

    ``host``: the profile the host-computed first layer is charged on (default: ``profile`` itself, as the
    45 nm convention charges it); ``host_first_layer`` False keeps the first layer on chip (event input).
    The host's weight reads follow the size of what it stores where its profile has a ``weight_memory``:
    ``host_store`` = :func:`slt_deploy.cost.mapping.weight_store` of the host layer on ``host``, the same rule
    an ANN's store follows (best encoding, index bits included); without it the layer is taken as stored
    densely at the host's weight_bits. ``rate``: inferences per second (None: back to back), which sets the
    static power's time (:func:`static_seconds`).
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
        ledger.charge_first_layer(sum(layer_ops(l, ops) for l in on_host), host,
                                  tuple(host_store[:2]) if host_store else dense_storage(on_host, host),
                                  weight_reads(on_host, ops, host, activity.timesteps))
    spiking = sum(layer_ops(l, ops) for l in chip if l.input_binary)  # grows with the spikes that feed them
    real = sum(layer_ops(l, ops) for l in chip if not l.input_binary)
    ledger.charge("synaptic_op", spiking, activity=True, density=True)
    ledger.charge("mac", real, density=True)
    ledger.charge("neuron_update", activity.neuron_updates)
    ledger.charge("spike_out", activity.output_spikes, activity=True)
    storage = dense_storage(chip, profile)
    ledger.charge("memory_access", spiking, activity=True, density=True, storage=storage)
    if real:
        ledger.charge("memory_access", real, density=True, storage=storage)
    ledger.static("timestep_latency", activity.timesteps, rate)
    where = f"on the host ({host.name})" if on_host else "on chip"
    notes = (f"counts from {activity.source or 'a run'} over {activity.samples} sample(s), T = {activity.timesteps}",
             f"first layer {where}" + (", computed once per sample (constant input)"
                                       if any(l.computed_once for l in on_host) else ""))
    return ledger.result("snn", notes, ops, _latency(profile, "timestep_latency", activity.timesteps))


def ann_energy(dense_macs: float, effective_macs: float, profile, *, skip_zeros: bool = False,
               storage: Optional[Tuple[float, float]] = None, rate: Optional[float] = None) -> EnergyBreakdown:
    """Energy of one ANN inference from MAC totals alone (no activity measured: no first-layer component).

    Charges ``dense_macs`` (a dense accelerator multiplies every weight) or, with ``skip_zeros``,
    ``effective_macs`` (zero weights skipped), once as arithmetic and once as a weight read; ``storage``: (bits
    stored, bits per weight read), which picks the weight memory on profiles with a ``weight_memory``.
    """
    profile = load_profile(profile)
    if profile.kind == "neuromorphic":
        raise ProfileError(f"{profile.path}: profile {profile.name} is a neuromorphic target; use snn_energy, "
                           f"or an ANN or reference profile")
    if dense_macs < 0 or effective_macs < 0 or effective_macs > dense_macs:
        raise ValueError(f"MAC counts must satisfy 0 <= effective ({effective_macs}) <= dense ({dense_macs})")
    macs = effective_macs if skip_zeros else dense_macs
    ledger = _Ledger(profile)
    ledger.charge("mac", macs, density=skip_zeros)
    ledger.charge("memory_access", macs, density=skip_zeros, storage=storage)
    ledger.static("inference_latency", 1, rate)
    which = "effective MACs (zero weights skipped)" if skip_zeros else "dense MACs"
    return ledger.result("ann", (f"charged {which}: dense {dense_macs:g}, effective {effective_macs:g}",),
                         "effective" if skip_zeros else "dense", _latency(profile, "inference_latency", 1))


def ann_energy_from_activity(activity: NetworkActivity, profile, *, ops: str = "effective",
                             storage: Optional[Tuple[float, float]] = None,
                             rate: Optional[float] = None) -> EnergyBreakdown:
    """Energy of one ANN inference from its activity measured on real samples (one pass, T = 1).

    ``storage``: (bits stored, bits per weight read) of the ANN's weights, e.g. a pruned ANN in a sparse
    encoding; default dense at the profile's weight_bits. It picks the weight memory level on profiles with a
    ``weight_memory`` (the whole network is stored on the device, first layer included).
    """
    _check_ops(ops)
    profile = load_profile(profile)
    if profile.kind == "neuromorphic":
        raise ProfileError(f"{profile.path}: profile {profile.name} is a neuromorphic target; use snn_energy, "
                           f"or an ANN or reference profile")
    storage = storage or dense_storage(activity.layers, profile)
    notes = [f"counts from {activity.source or 'a run'} over {activity.samples} sample(s), one pass each"]
    if profile.limit("dense_compute") and ops != "dense":
        # the device skips no zero (its per-MAC figure was derived from dense MAC counts): what it does is dense
        ops = "dense"
        notes.append(f"{profile.name} computes every MAC (limits.dense_compute): charged dense MACs")
    ledger = _Ledger(profile)
    first = [l for l in activity.layers if l.from_input]
    rest = [l for l in activity.layers if not l.from_input]
    if first:
        ledger.charge_first_layer(sum(layer_ops(l, ops) for l in first), profile, storage,
                                  weight_reads(first, ops, profile, activity.timesteps))
    ledger.charge("mac", sum(layer_ops(l, ops) for l in rest), density=True)
    ledger.charge("memory_access", weight_reads(rest, ops, profile, activity.timesteps), density=True,
                  storage=storage)
    ledger.static("inference_latency", 1, rate)
    return ledger.result("ann", tuple(notes), ops, _latency(profile, "inference_latency", 1))


def ann_energy_from_layers(layers: Iterable, profile, *, skip_zeros: bool = False) -> EnergyBreakdown:
    """:func:`ann_energy` of per-layer MAC counts: any objects with ``dense_macs`` and ``effective_macs``
    (e.g. ``slt_deploy.exporters.onnx_format.LayerMACs``); with ``weight_count`` the weights are stored densely
    at the profile's weight_bits."""
    layers = list(layers)
    profile = load_profile(profile)
    bits = profile.limit("weight_bits")
    weights = sum(getattr(l, "weight_count", 0) for l in layers)
    return ann_energy(sum(l.dense_macs for l in layers), sum(l.effective_macs for l in layers), profile,
                      skip_zeros=skip_zeros, storage=(weights * bits, bits) if weights and bits else None)
