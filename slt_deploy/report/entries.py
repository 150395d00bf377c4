"""Entries: what each measured network and ANN costs on every profile, through the cost stage.

Takes the measured runs (:mod:`.measure`) and the report's profiles; gives the typed entries of report.json
(:mod:`.schema`): per network and profile its energy (:func:`slt_deploy.cost.snn_energy`: counts x the
profile's figures, by component, as intervals at every scope), weight memory per layer and encoding
(:func:`slt_deploy.cost.mapping.layer_memory`), cores and fit (:func:`slt_deploy.cost.mapping.map_network`) and
energy and latency per inference; per ANN the same on every ANN-capable profile; the 45 nm convention on both
sides; the point ratios per profile pair.

One counting rule for both sides (``ops``). The SNN's first layer is computed where
:attr:`Network.first_layer_on_host` says; a host-computed one is charged on the profile
:func:`slt_deploy.cost.profiles.host_of` names, and its synapses are off chip (mapping and memory see what the
chip stores: one host current per target neuron, not the layer's weights). A figure a profile does not know is
listed as unknown, never filled in.
"""

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..cost.activity import NetworkActivity, SynapseLayer
from ..cost.energy import RULE_SENTENCE, EnergyBreakdown, ann_energy_from_activity, energy_ratio, snn_energy
from ..cost.mapping import binary_bits, layer_memory, map_network, weight_store
from ..cost.profiles import FIGURES, HardwareProfile, host_of
from .anns import AnnModel
from .crosscheck import CrossChecks
from .measure import AnnMeasured, Measured
from .networks import Network
from .schema import (REPORT_VERSION, AnnEntry, ComparedWith, EnergyRecord, MappingEntry, MemoryEntry, NetworkEntry,
                     PerInference, ProfileEntry, RatioEntry, ReportData, SanafeEntry)
from .verdict import compared

FORMULA_45NM = ("E_SNN = E_MAC x first-layer ops + E_AC x on-chip synaptic ops; E_ANN = E_MAC x all its ops; "
                "% = 100 x E_SNN / E_ANN")


@dataclass(frozen=True)
class CostContext:
    """The report's choices that every costing shares."""

    ops: str
    host: HardwareProfile
    convention: HardwareProfile
    profiles: Tuple[HardwareProfile, ...]
    rate: Optional[float] = None    # inferences per second (None: back to back), for static power at chip scope


# ----------------------------------------------------------------------------------- which profile, which side

def snn_capable(p: HardwareProfile) -> bool:
    return p.kind != "ann"


def ann_capable(p: HardwareProfile) -> bool:
    return p.kind != "neuromorphic"


def placeable(p: HardwareProfile) -> bool:
    """A profile with core or chip limits (mapping none: a cost convention or an ANN target, nothing to fit)."""
    return snn_capable(p) and p.mapping != "none"


def _record(b: EnergyBreakdown) -> EnergyRecord:
    return EnergyRecord.model_validate(b.to_dict(), strict=False)


# --------------------------------------------------------------------------------------- memory and mapping

def binary_layers(layers: Sequence[SynapseLayer]) -> bool:
    """Every layer's weights take at most the values {-alpha, 0, +alpha} (a binary-weight ticket)."""
    return all(binary_bits(l.weight) is not None for l in layers)


def deployed_layers(layers: Sequence[SynapseLayer], host_fed: bool) -> List[SynapseLayer]:
    """The layers as placed on chip. A host-computed layer's synapses stay on the host; its target population is
    on chip and receives one host current per neuron, placed as a one-to-one input (one input axon and one unit
    synapse per neuron), so every chip is checked for what it must really take: n input channels, not the
    layer's weights."""
    if not host_fed:
        return list(layers)
    out = []
    for l in layers:
        if l.source is None:
            n = l.neurons
            l = SynapseLayer(f"{l.name} (host currents)", "linear", torch.eye(n, dtype=torch.float64), (n,), (n,),
                             None, l.target)
        out.append(l)
    return out


def memory_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile) -> MemoryEntry:
    """Weight bits per layer and encoding; totals per encoding (None if any layer's is unknown); best.

    ``binary`` is offered only for layers whose weights take two values (+-alpha, zeros aside)."""
    mems = [layer_memory(l, profile) for l in layers]
    for l, m in zip(layers, mems):
        if "binary" in m.bits and binary_bits(l.weight) is None:
            m.bits["binary"] = None
    totals = {e: (sum(m.bits[e] for m in mems) if all(m.bits.get(e) is not None for m in mems) else None)
              for e in profile.encodings}
    known = {e: b for e, b in totals.items() if b is not None}
    best = min(known, key=known.get) if known else None
    # a population driven by several layers (a residual sum) holds its neuron state once
    state = list({l.population: m.neuron_state_bits for l, m in zip(layers, mems)}.values())
    return MemoryEntry.model_validate({
        "layers": [{"name": m.name, "bits": dict(m.bits), "best": m.best, "storage": m.storage,
                    "neuron_state_bits": m.neuron_state_bits} for m in mems],
        "totals": totals, "best_encoding": best, "best_bits": known.get(best),
        "best_bytes": known[best] / 8 if best else None,
        "neuron_state_bits": sum(state) if all(s is not None for s in state) else None}, strict=False)


def _not_binary(layers: Sequence[SynapseLayer], deployed, profile: HardwareProfile, host_fed: bool) -> dict:
    """A crossbar of one-bit synapses cannot hold a layer whose weights take more than two values."""
    name = next(l.name for l in deployed if l.nonzero_weights and binary_bits(l.weight) is None)
    return {"fits": False, "cores_used": None, "failures": [
                f"layer {name}: weights take more than two values; {profile.name} stores binary synapses only "
                f"(binarize the network first)"],
            "fit_summary": f"{profile.name}: does not fit: layer {name} is not binary", "unchecked": [],
            "notes": [], "populations": [], "host_layers": [l.name for l in layers if host_fed and l.source is None]}


def mapping_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile, host_fed: bool,
                  resets=()) -> MappingEntry:
    """Cores and fit of the deployed layers on ``profile`` (:func:`deployed_layers`)."""
    deployed = deployed_layers(layers, host_fed)
    if profile.encodings == ("binary",) and any(l.nonzero_weights and binary_bits(l.weight) is None
                                                for l in deployed):
        return MappingEntry.model_validate(_not_binary(layers, deployed, profile, host_fed), strict=False)
    r = map_network(deployed, profile, dict(resets))
    host_layers = [l.name for l in layers if host_fed and l.source is None]
    host_note = [f"layer(s) {', '.join(l.name for l in layers if l.source is None)} computed on the host: their "
                 f"synapses are off chip, their target neurons on chip fed host currents"] if host_fed else []
    return MappingEntry.model_validate({
        "fits": r.fits, "cores_used": r.cores_used, "fit_summary": r.verdict, "failures": list(r.failures),
        "unchecked": list(r.unchecked), "notes": list(r.notes) + host_note, "host_layers": host_layers,
        "populations": [{"population": p.population, "layers": list(p.layers), "neurons": p.neurons,
                         "cores": p.cores, "neurons_per_core": p.neurons_per_core, "encoding": p.encoding,
                         "synapse_bits": p.synapse_bits} for p in r.populations]}, strict=False)


def activity_entry(a: NetworkActivity) -> dict:
    totals = {k: getattr(a, k) for k in ("effective_acs", "effective_macs", "effective_synops", "dense_ops",
                                         "neuron_updates", "output_spikes", "input_events")}
    return {"source": a.source, "samples": a.samples, "timesteps": a.timesteps, "per_sample": totals,
            "layers": [dataclasses.asdict(l) for l in a.layers]}


# ------------------------------------------------------------------------------------------------ networks

def labels(networks: Sequence[Network], measured: Sequence[Measured]) -> List[str]:
    """Row label: method and sparsity (and 'binary'); the dense ticket is the dense SNN; duplicates get the file."""
    out = []
    for net, m in zip(networks, measured):
        label = "dense SNN" if net.dense else f"{net.method}, {100 * net.sparsity:.1f} % sparse"
        out.append(label + (" binary" if binary_layers(m.layers) else ""))
    return [f"{l} ({n.path.name})" if out.count(l) > 1 else l for l, n in zip(out, networks)]


def _network_rule(m: Measured, ctx: CostContext, host_fed: bool) -> dict:
    first = [l for l in m.activity.layers if l.from_input]
    return {"ops": ctx.ops, "sentence": RULE_SENTENCE[ctx.ops], "host_profile": ctx.host.name,
            "first_layer_on_host": host_fed, "first_layer": [l.name for l in first],
            "first_layer_computed_once": any(l.computed_once for l in first)}


def _stored_layers(m: Measured, p: HardwareProfile, ctx: CostContext, host_fed: bool) -> List[SynapseLayer]:
    """What ``p`` stores: every layer where ``p`` computes the host layer itself (:func:`host_of`), else only the
    on-chip synapses (the host keeps the first layer's weights)."""
    if host_of(p, ctx.host) is p:
        return list(m.layers)
    return [l for l in m.layers if not (host_fed and l.source is None)]


def _latency(p: HardwareProfile, snn: EnergyRecord, sim: Optional[SanafeEntry]) -> Tuple[Optional[float], str]:
    """The profile's latency per inference (an upper bound where its timestep latency is one), else SANA-FE's."""
    latency, source = snn.latency, "profile"
    step = p.figures.get("timestep_latency")
    if latency is not None and getattr(step, "bound", "") == "upper":
        source = "profile, upper bound"
    if latency is None and sim is not None and sim.runs and sim.runs[0].latency_per_inference_s:
        latency, source = sim.runs[0].latency_per_inference_s, f"SANA-FE ({sim.runs[0].architecture})"
    return latency, source


def per_inference(p: HardwareProfile, snn: EnergyRecord, mapping: Optional[MappingEntry],
                  sim: Optional[SanafeEntry]) -> PerInference:
    """Energy and latency of one inference on ``p``, in one place of report.json."""
    latency, source = _latency(p, snn, sim)
    return PerInference(
        energy_j=float(snn.total) if snn.kind != "unknown" else None, energy_kind=snn.kind,
        energy_unknown=snn.unknown, energy_interval_j=snn.interval, scope=snn.scope, latency_s=latency,
        latency_from=source if latency is not None else None,
        inferences_per_s=1.0 / latency if latency else None,
        fits=None if mapping is None else mapping.fits, cores=None if mapping is None else mapping.cores_used)


def network_entry(net: Network, m: Measured, label: str, ctx: CostContext, ann45: EnergyBreakdown,
                  compared_with: ComparedWith, checks: CrossChecks) -> NetworkEntry:
    """One network's entry, with its cross-checks where they ran."""
    host_fed = net.first_layer_on_host
    snn45 = snn_energy(m.activity, ctx.convention, ops=ctx.ops, host_first_layer=host_fed)
    chips = [p for p in ctx.profiles if snn_capable(p)]
    # a reference profile costs both sides itself; a chip's host layer is charged on the host profile
    energy = {p.name: _record(_snn_energy(m, p, host_of(p, ctx.host), host_fed, ctx)) for p in chips}
    mapping = {p.name: mapping_entry(m.layers, p, host_fed, net.resets) for p in ctx.profiles if placeable(p)}
    sanafe = checks.sanafe or {}
    entry = {
        "label": label, "file": str(net.path), "kind": net.kind, "method": net.method,
        "sparsity": net.sparsity, "dense": net.dense, "binary": binary_layers(m.layers), "timesteps": net.timesteps,
        "encoding": net.encoding, "dataset": net.data.dataset, "accuracy": net.record_accuracy,
        "accuracy_measured": m.accuracy, "samples": m.samples, "activity": activity_entry(m.activity),
        "counting_rule": _network_rule(m, ctx, host_fed), "energy": energy,
        "convention_45nm": {"snn": _record(snn45), "ann": _record(ann45),
                            "percent_of_ann": 100.0 * energy_ratio(snn45, ann45)},
        "memory": {p.name: memory_entry(_stored_layers(m, p, ctx, host_fed), p) for p in chips},
        "mapping": mapping, **checks.fields(), "compared_with": compared_with,
        "per_inference": {p.name: per_inference(p, energy[p.name], mapping.get(p.name), sanafe.get(p.name))
                          for p in chips}}
    return NetworkEntry.model_validate(entry, strict=False)


def _snn_energy(m: Measured, p: HardwareProfile, host: HardwareProfile, host_fed: bool,
                ctx: CostContext) -> EnergyBreakdown:
    """The SNN on ``p``, its host layer stored and read on ``host`` by the ANN's rule (:func:`weight_store`)."""
    host_layers = [l for l in m.layers if host_fed and l.source is None]
    return snn_energy(m.activity, p, ops=ctx.ops, host=host, host_first_layer=host_fed,
                      host_store=weight_store(host_layers, host) if host_layers else None, rate=ctx.rate)


# ---------------------------------------------------------------------------------------------------- ANNs

def _ann_storage(measured: AnnMeasured, profile: HardwareProfile) -> Optional[Tuple[float, float]]:
    """(bits stored, bits per weight read) of the ANN on ``profile`` by the one storage rule both sides follow
    (:func:`weight_store`: best encoding, index bits included), None where its layers are not known (ONNX:
    stored densely by the energy model)."""
    store = weight_store(measured.layers, profile) if measured.layers else None
    return None if store is None else (store.bits, store.bits_per_weight)


def ann_energy(measured: AnnMeasured, profile: HardwareProfile, ops: str,
               rate: Optional[float] = None) -> EnergyBreakdown:
    return ann_energy_from_activity(measured.activity, profile, ops=ops, storage=_ann_storage(measured, profile),
                                    rate=rate)


def _ann_memory(ann: AnnModel, measured: AnnMeasured, p: HardwareProfile) -> dict:
    b = p.limit("weight_bits")
    weights = sum(m.weight_count for m in ann.macs)
    return {"weight_bits": b, "dense_bytes": weights * b / 8 if b else None,
            "mem": memory_entry(measured.layers, p) if measured.layers else None}


def ann_entry(ann: AnnModel, measured: AnnMeasured, ctx: CostContext, label: str, origin: str) -> AnnEntry:
    """An ANN on every ANN-capable profile (and its weights on the host profile too)."""
    capable = [p for p in ctx.profiles if ann_capable(p)]
    stored = capable + ([ctx.host] if ctx.host.name not in {q.name for q in capable} else [])
    return AnnEntry.model_validate({
        "label": label, "file": str(ann.path), "origin": origin, "trained": ann.trained,
        "sparsity": ann.sparsity, "dense_macs": ann.dense_macs, "effective_macs": ann.effective_macs,
        "accuracy_measured": measured.accuracy, "weights": sum(m.weight_count for m in ann.macs),
        "activity": activity_entry(measured.activity) if measured.activity is not None else None,
        "counting_rule": {"ops": ctx.ops, "sentence": RULE_SENTENCE[ctx.ops]},
        "layers": [{"name": m.name, "op": m.op_type, "dense_macs": m.dense_macs, "effective_macs": m.effective_macs,
                    "weights": m.weight_count, "nonzero_weights": m.nonzero_weights} for m in ann.macs],
        "energy": {p.name: _record(ann_energy(measured, p, ctx.ops, ctx.rate)) for p in capable},
        "memory": {p.name: _ann_memory(ann, measured, p) for p in stored},
        "convention_45nm": _record(ann_energy(measured, ctx.convention, ctx.ops))}, strict=False)


def _compared_with(ann: AnnEntry, others: Sequence[AnnEntry]) -> ComparedWith:
    """What a network is compared with, in its own entry (the full ANN entry is the report's ``ann``)."""
    return ComparedWith(label=ann.label, file=ann.file, trained=ann.trained,
                        accuracy_measured=ann.accuracy_measured, counting_rule=ann.counting_rule,
                        others=[a.label for a in others])


# ------------------------------------------------------------------------------------ ratios and profiles

def _ratio(net: NetworkEntry, sp: str, ap: str, ann: AnnEntry) -> RatioEntry:
    snn, a = net.energy[sp], ann.energy[ap]
    missing = [f"{sp}: {x}" for x in snn.unknown] + [f"{ap}: {x}" for x in a.unknown]
    entry = {"network": net.label, "snn_profile": sp, "ann_profile": ap, "percent": None, "note": "",
             "kind": "exact"}
    if snn.kind == "unknown" or a.kind == "unknown":
        entry.update(note="unknown: needs " + ", ".join(missing), kind="unknown")
    elif a.total <= 0:
        entry["note"] = f"not computed, ANN energy on {ap} is 0"
    else:
        entry["percent"] = 100.0 * snn.total / a.total
        kinds = {snn.kind, a.kind} - {"exact"}
        entry["kind"] = "estimate" if kinds else "exact"
        if kinds:
            entry["note"] = (f"estimate: SNN total {snn.kind}, ANN total {a.kind}"
                             + (f"; leaves out unknown {', '.join(missing)}" if missing else ""))
    return RatioEntry.model_validate(entry, strict=False)


def ratios(networks: Sequence[NetworkEntry], ann: AnnEntry, ctx: CostContext) -> List[RatioEntry]:
    """SNN energy as % of ANN energy per profile pair the verdict forms (:func:`.verdict.compared`), the 45 nm
    convention left out (it has its own section); computed only when both totals are known."""
    pairs = [(s.name, a.name) for s in ctx.profiles for a in ctx.profiles
             if snn_capable(s) and ann_capable(a) and compared(s.kind, s.name, a.kind, a.name)
             and s.name != ctx.convention.name]
    return [_ratio(net, sp, ap, ann) for net in networks for sp, ap in pairs]


def profile_entry(p: HardwareProfile, networks: Sequence[NetworkEntry], ann: AnnEntry, given_as: str) -> ProfileEntry:
    breakdowns = [n.energy[p.name] for n in networks if p.name in n.energy]
    breakdowns += [ann.energy[p.name]] if p.name in ann.energy else []
    return ProfileEntry.model_validate({
        "name": p.name, "kind": p.kind, "mapping": p.mapping, "description": p.description,
        "unknown_figures": list(p.unknown_figures()),
        "excluded_figures": [n for n, f in p.figures.items() if f.status == "excluded"],
        "included_figures": [n for n, f in p.figures.items() if f.status == "included"],
        "unknown_limits": list(p.unknown_limits()),
        "unknown_in_report": [f for f in FIGURES if any(f in b.unknown for b in breakdowns)],
        "unused_in_report": [f for f in FIGURES if any(f in b.unused for b in breakdowns)],
        "figures": p.to_dict()["figures"], "given_as": given_as}, strict=False)


# --------------------------------------------------------------------------------------------- the report

@dataclass(frozen=True)
class Measurements:
    """Everything measured: the networks and their runs, the ANNs (the report's first) and their runs, and
    each network's cross-checks (:mod:`.crosscheck`)."""

    networks: Sequence[Network]
    measured: Sequence[Measured]
    anns: Sequence[Tuple[AnnModel, AnnMeasured, str, str]]   # (model, run, label, origin)
    checks: Sequence[CrossChecks]


def report_data(m: Measurements, ctx: CostContext, samples: int, inputs: Sequence[str], warnings: Sequence[str],
                given_as: Sequence[str]) -> ReportData:
    """Every number of the report but the verdict (:mod:`.verdict`) and the plots' file names."""
    anns = [ann_entry(a, am, ctx, label, origin) for a, am, label, origin in m.anns]
    ann45 = ann_energy(m.anns[0][1], ctx.convention, ctx.ops)
    compared_with = _compared_with(anns[0], anns[1:])
    nets = [network_entry(n, r, l, ctx, ann45, compared_with, x)
            for n, r, l, x in zip(m.networks, m.measured, labels(m.networks, m.measured), m.checks)]
    figures = ctx.convention.to_dict()["figures"]
    return ReportData.model_validate({
        "schema_version": REPORT_VERSION, "samples_requested": samples,
        "counting_rule": {"ops": ctx.ops, "sentence": RULE_SENTENCE[ctx.ops], "host_profile": ctx.host.name},
        "host_profile": ctx.host.to_dict(),
        "convention_45nm": {"profile": ctx.convention.name, "mac": figures["mac"],
                            "synaptic_op": figures["synaptic_op"], "formula": FORMULA_45NM},
        "profiles": {p.name: profile_entry(p, nets, anns[0], g) for p, g in zip(ctx.profiles, given_as)},
        "ann": anns[0], "ann_others": anns[1:], "networks": nets, "ratios": ratios(nets, anns[0], ctx),
        "inputs": list(inputs), "warnings": list(warnings)}, strict=False)
