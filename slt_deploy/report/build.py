"""Report data: run every input, count its activity, cost it per profile, write the files."""


import dataclasses
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import nir
import numpy as np
import torch

from ..cost.activity import NetworkActivity, SynapseLayer, count_from_spikes, count_snntorch, merge_activity, \
    nir_synapse_layer
from ..cost.activity import synapse_layers as ticket_synapse_layers
from ..config import DataConfig
from ..cost.energy import EnergyBreakdown, ann_energy_from_layers, energy_ratio, snn_energy
from ..errors import SltError
from ..cost.mapping import binary_bits, layer_memory, map_network
from ..cost.profiles import FIGURES, HardwareProfile, load_profile
from ..ticket import Ticket
from ..utils import atomic_path, check_output_dir, check_output_path, write_json_atomic, write_text_atomic
from ..exporters.nir_format import SPIKING_NODES
from ..simulate.reference import WEIGHT_NODES, NIRExecutor, SynapseChain, synapse_chains
from ..simulate.workload import (encoded_test_samples, graph_input_shape, load_input_file, nir_data, nir_metadata,
                                 test_samples, ticket_data)
from .plots import plot_accuracy_sparsity_energy, plot_energy_breakdown
from .render import render_html, render_markdown, report_sections


PathLike = Union[str, Path]

FORMAT = "slt-deploy.report/1"
# The SNN papers' 45 nm convention is itself a profile (hardware_profiles/cmos45.yaml): no numbers live here.
CONVENTION_PROFILE = "cmos45"
FILES = {"json": "report.json", "markdown": "report.md", "html": "report.html", "ann_twin": "ann_twin.onnx",
         "energy_breakdown": "energy_breakdown.png", "accuracy_sparsity_energy": "accuracy_sparsity_energy.png"}


class ReportError(SltError):
    """The report's inputs do not fit together (ANN vs ticket, missing metadata, unsupported graph)."""


# ------------------------------------------------------------------------------------------------- types

@dataclass(frozen=True)
class Network:
    """One report input as read from its file; nothing simulated yet."""

    path: Path
    kind: str                        # "ticket" or "nir"
    method: str
    sparsity: float
    round: int
    record_accuracy: Optional[float]
    timesteps: int
    encoding: str
    data: DataConfig
    seed: int
    input_shape: Tuple[int, ...]
    num_classes: int
    weight_layers: int               # conv/linear layers (ticket) or weight nodes (NIR)
    ticket: Optional[Ticket] = None
    graph: Any = None                # nir.NIRGraph for kind "nir"
    chains: Tuple[SynapseChain, ...] = ()  # its synapse layers, read (and so checked) when the file is loaded
    workload: Any = None             # simulate.workload.Workload when the samples come from --input
    warnings: Tuple[str, ...] = ()   # e.g. an assumed dt
    resets: Tuple[Tuple[str, str], ...] = ()  # (what, reset mode) of its spiking layers, checked per profile

    @property
    def dense(self) -> bool:
        return self.method == "dense" or (self.round == 0 and self.sparsity == 0)


@dataclass(frozen=True)
class Measured:
    """What the run on N test samples gave: per-sample counts, the deployed layers, measured accuracy."""

    activity: NetworkActivity
    layers: Tuple[SynapseLayer, ...]
    accuracy: float
    samples: int


@dataclass(frozen=True)
class AnnModel:
    """The ANN side of the comparison: an ONNX file and the MACs read from its graph."""

    path: Path
    origin: str
    macs: tuple                      # onnx_format.LayerMACs per conv/linear node
    input_shape: Optional[Tuple[int, ...]]
    num_classes: Optional[int]

    @property
    def dense_macs(self) -> int:
        return sum(m.dense_macs for m in self.macs)

    @property
    def effective_macs(self) -> int:
        return sum(m.effective_macs for m in self.macs)

    @property
    def sparsity(self) -> float:
        total = sum(m.weight_count for m in self.macs)
        return 1.0 - sum(m.nonzero_weights for m in self.macs) / total if total else 0.0


@dataclass(frozen=True)
class ReportResult:
    """Paths of the written files and the report's data (the content of report.json)."""

    json: Path
    markdown: Path
    html: Path
    plots: Dict[str, Path]
    data: dict


# ------------------------------------------------------------------------------------------------ API

@dataclass(frozen=True)
class GraphInputs:
    """Samples and time step for NIR graph inputs (``--input FILE`` or ``--dataset``, ``--dt``); tickets keep
    their own data. None everywhere: the dataset a graph's metadata names, at its own dt."""

    input: Optional[PathLike] = None       # .npz/.npy with x and y (labels are needed for accuracy)
    data: Optional[DataConfig] = None
    encoding: Optional[str] = None
    timesteps: Optional[int] = None
    dt: Optional[float] = None
    lenient: bool = False                  # read graphs whose shapes differ only by unit dimensions


def build_report(inputs: Sequence[PathLike], *, ann: Optional[PathLike] = None, profiles: Sequence[str],
                 out: PathLike, samples: int = 200, progress: bool = True,
                 graph_inputs: Optional[GraphInputs] = None) -> ReportResult:
    """Simulate each input on its first ``samples`` test samples, cost it on ``profiles``, write the report.

    ``inputs``: tickets or NIR graphs; ``ann``: the ANN as ONNX (default: the ANN twin of the first ticket);
    ``profiles``: shipped profile names or profile files. Every input is read and checked (profiles, ANN
    against each network) before anything is simulated or written.
    """
    if not inputs:
        raise ReportError("report: give at least one ticket or NIR file")
    if not profiles:
        raise ReportError("report: give at least one hardware profile (--profiles NAME_OR_FILE ...)")
    if samples < 1:
        raise ReportError(f"report: samples={samples} must be >= 1")
    out = Path(out)
    check_output_dir(out)  # before anything is simulated: the folder, then each file it will hold
    for name in FILES.values():
        check_output_path(out / name)
    loaded = _load_profiles(profiles)
    convention = load_profile(CONVENTION_PROFILE)
    networks = [load_network(p, graph_inputs, samples) for p in inputs]
    with tempfile.TemporaryDirectory(prefix="slt-report-") as scratch:
        ann_model = _ann_model(ann, networks, Path(scratch))
        for net in networks:
            check_ann_matches(ann_model, net)
        measured = [simulate(net, samples, progress) for net in networks]
        ann_accuracy = _ann_accuracy(ann_model, networks[0], samples)
        if ann is None:  # keep the twin the report describes next to it
            ann_model = _keep_twin(ann_model, out / FILES["ann_twin"])
    data = report_data(networks, measured, ann_model, ann_accuracy, loaded, convention, samples)
    data["inputs"] = [str(p) for p in inputs]
    data["warnings"] = [f"{net.path.name}: {w}" for net in networks for w in net.warnings]
    for p, spec in zip(loaded, profiles):  # as the user named it (a shipped name or their file)
        data["profiles"][p.name]["given_as"] = str(spec)
    plots = _write_plots(data, out)
    data["plots"] = {k: p.name for k, p in plots.items()}
    paths = {k: out / FILES[k] for k in ("json", "markdown", "html")}
    sections = report_sections(data)
    write_json_atomic(paths["json"], data)
    write_text_atomic(paths["markdown"], render_markdown(sections))
    write_text_atomic(paths["html"], render_html(sections))
    return ReportResult(paths["json"], paths["markdown"], paths["html"], plots, data)


def _load_profiles(specs: Sequence[str]) -> List[HardwareProfile]:
    """Load each profile (ProfileError propagates); two with one name would collide in the report."""
    profiles: List[HardwareProfile] = []
    for spec in specs:
        p = load_profile(spec)
        if any(q.name == p.name for q in profiles):
            raise ReportError(f"report: profile name {p.name!r} is given twice ({spec}); names must be unique")
        profiles.append(p)
    return profiles


# ------------------------------------------------------------------------------------------ inputs

def load_network(path: PathLike, graph_inputs: Optional[GraphInputs] = None, samples: int = 200) -> Network:
    """A ticket (safetensors) or a NIR graph (HDF5, told apart by its first bytes); ``graph_inputs`` gives a
    graph its samples and dt (``samples``: how many to read from an input file)."""
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"{p}: no such file")
    if p.suffix.lower() == ".onnx":
        raise ReportError(f"{p}: an ONNX model is the ANN side; pass it with --ann")
    with open(p, "rb") as f:
        is_hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
    return _nir_network(p, graph_inputs or GraphInputs(), samples) if is_hdf5 else _ticket_network(p)


def _ticket_network(p: Path) -> Network:
    from ..models import prunable_layers

    from ..exporters.nir_format import ticket_to_nir

    ticket = Ticket.load(p)
    r = ticket.record
    ticket_to_nir(ticket, source=str(p))  # what cannot be deployed (attention, an ANN) says so here, in one line
    layers = len(prunable_layers(ticket.build_model()))
    return Network(path=p, kind="ticket", method=r.method, sparsity=float(r.sparsity), round=r.round,
                   record_accuracy=r.accuracy, timesteps=r.timesteps, encoding=r.encoding, data=ticket_data(ticket),
                   seed=r.seed, input_shape=tuple(r.model.input_shape), num_classes=r.model.num_classes,
                   weight_layers=layers, ticket=ticket, resets=(("every spiking layer", r.model.neuron.reset),))


def _nir_network(p: Path, given: GraphInputs, samples: int) -> Network:
    from ..simulate.run import load_graph, with_dt

    graph, _, repairs = load_graph(p, given.lenient)
    graph, _, warned = with_dt(graph, given.dt)
    warned = repairs + warned
    meta = nir_metadata(graph)
    workload = None
    if given.input is not None:
        workload = load_input_file(given.input, shape=graph_input_shape(graph), encoding=given.encoding,
                                   timesteps=given.timesteps, seed=int(meta.get("seed", 0)), samples=samples)
        if workload.y is None:
            raise ReportError(f"{given.input}: the report measures accuracy, so the input file needs labels y "
                              f"(slt-deploy simulate runs without them)")
        data = DataConfig(dataset=workload.source, timesteps=workload.x.shape[1])
    elif given.data is not None:
        data = given.data
    else:
        data = nir_data(graph, p).replace(**{k: v for k, v in (("encoding", given.encoding),
                                                              ("timesteps", given.timesteps)) if v is not None})
    weights = [n for n in graph.nodes.values() if isinstance(n, WEIGHT_NODES)]
    inputs = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    outputs = [n for n in graph.nodes.values() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ReportError(f"{p}: the report needs one Input and one Output node, the graph has "
                          f"{len(inputs)} and {len(outputs)}")
    sparsity = meta.get("sparsity")
    if sparsity is None:  # a graph from another tool: measure it on the stored weights
        sizes = [np.asarray(n.weight).size for n in weights]
        sparsity = 1.0 - sum(np.count_nonzero(n.weight) for n in weights) / sum(sizes) if sizes else 0.0
    return Network(path=p, kind="nir", method=str(meta.get("method", "nir")), sparsity=float(sparsity),
                   round=int(meta.get("round", -1)), record_accuracy=meta.get("accuracy"),
                   timesteps=data.timesteps, encoding=workload.encoding if workload else data.encoding, data=data,
                   seed=int(meta.get("seed", 0)), input_shape=_nir_shape(inputs[0].input_type),
                   num_classes=math.prod(_nir_shape(outputs[0].output_type)), weight_layers=len(weights),
                   graph=graph, chains=tuple(synapse_chains(graph, str(p))), workload=workload,
                   warnings=tuple(warned),
                   resets=tuple((f"layer {name}", str((node.metadata or {}).get("reset", "zero")))
                                for name, node in graph.nodes.items() if isinstance(node, SPIKING_NODES)))


def _nir_shape(types: dict) -> Tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(next(iter(types.values()))).ravel())


# ----------------------------------------------------------------------------------------- simulation

def _test_samples(net: Network, samples: int, progress: bool) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    if net.workload is not None:  # the file's values as given (a sequence: (B, T, ...), as event frames are)
        w = net.workload
        raw = w.values if w.values is not None else w.x
        yield torch.from_numpy(raw[:samples]), torch.from_numpy(w.y[:samples])
        return
    yield from test_samples(net.data, samples, progress, f"simulate {net.path.name}", str(net.path))


def _encoded(net: Network, samples: int, progress: bool):
    if net.workload is not None:
        w = net.workload
        yield torch.from_numpy(w.x[:samples]).transpose(0, 1), torch.from_numpy(w.y[:samples])
        return
    yield from encoded_test_samples(net.data, samples, net.seed, progress, f"simulate {net.path.name}",
                                    str(net.path))


def _merged(parts: List[NetworkActivity]) -> NetworkActivity:
    # one batch is returned as counted: merging would multiply and divide by the batch size (rounding)
    return parts[0] if len(parts) == 1 else merge_activity(parts)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Prediction as in training: argmax of the logits summed over time."""
    return int((logits.sum(0).argmax(1) == y).sum())


def simulate(net: Network, samples: int, progress: bool = True) -> Measured:
    """Run the network on its first ``samples`` test samples; counts and accuracy come from that run."""
    return _simulate_ticket(net, samples, progress) if net.kind == "ticket" else _simulate_nir(net, samples, progress)


def _simulate_ticket(net: Network, samples: int, progress: bool) -> Measured:
    model = net.ticket.build_model()
    logits: List[torch.Tensor] = []
    hook = model.register_forward_hook(lambda module, args, output: logits.append(output.detach()))
    parts, correct, n = [], 0, 0
    try:
        for x_seq, y in _encoded(net, samples, progress):
            parts.append(count_snntorch(model, x_seq, source="snntorch"))  # the hook sees this very run
            correct += _correct(logits.pop(), y)
            n += len(y)
    finally:
        hook.remove()
    layers = tuple(ticket_synapse_layers(model, net.input_shape))
    return Measured(_merged(parts), layers, correct / n, n)


def _simulate_nir(net: Network, samples: int, progress: bool) -> Measured:
    executor = NIRExecutor(net.graph)
    chains = net.chains
    parts, correct, n, layers = [], 0, 0, None
    for x_seq, y in _encoded(net, samples, progress):
        logits, trace = executor.run(x_seq, record=True)
        if layers is None:  # a layer's input shape is that of the recorded node feeding it
            layers = tuple(nir_synapse_layer(c, tuple(trace[c.tap].shape[2:]), str(net.path)) for c in chains)
        inputs = {c.name: trace[c.tap] for c in chains}
        spikes = {c.target: trace[c.target] for c in chains if c.target is not None}
        parts.append(count_from_spikes(layers, inputs, spikes, source="nir-executor"))
        correct += _correct(logits, y)
        n += len(y)
    return Measured(_merged(parts), layers, correct / n, n)


# ------------------------------------------------------------------------------------------------- ANN

def _ann_model(ann: Optional[PathLike], networks: Sequence[Network], scratch: Path) -> AnnModel:
    from ..exporters.onnx_format import export_ticket_onnx, onnx_macs

    if ann is not None:
        path, origin = Path(ann), "given with --ann"
    else:
        first = next((n for n in networks if n.kind == "ticket"), None)
        if first is None:
            raise ReportError("report: no ANN to compare with: pass --ann ANN.onnx (the ANN twin is derived from a "
                              "ticket, and every input is a NIR graph)")
        path = export_ticket_onnx(first.path, scratch / FILES["ann_twin"])
        origin = (f"ANN twin of {first.path.name}: its architecture and masked weights with ReLU for LIF, one pass "
                  f"per image; a cost reference, not a trained ANN")
    macs = tuple(onnx_macs(path))
    in_shape, classes = _onnx_io(path)
    return AnnModel(path, origin, macs, in_shape, classes)


def _onnx_io(path: Path) -> Tuple[Optional[Tuple[int, ...]], Optional[int]]:
    """(one sample's input shape, number of outputs) of an ONNX model; None where a dimension is symbolic."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph  # validated by onnx_macs already
    initializers = {t.name for t in graph.initializer}

    def dims(value) -> Optional[Tuple[int, ...]]:
        d = value.type.tensor_type.shape.dim[1:]  # the batch axis left out
        return tuple(int(x.dim_value) for x in d) if all(x.HasField("dim_value") for x in d) else None

    inputs = [v for v in graph.input if v.name not in initializers]
    if not inputs or not graph.output:
        raise ReportError(f"{path}: the ANN model needs an input and an output, it has {len(inputs)} and "
                          f"{len(graph.output)}")
    inp = inputs[0]
    out = dims(graph.output[0])
    return dims(inp), (math.prod(out) if out is not None else None)


def check_ann_matches(ann: AnnModel, net: Network) -> None:
    """Refuse an ANN that is not the same task and depth as the network: input shape, classes, layer count."""
    problems = []
    if ann.input_shape is not None and tuple(ann.input_shape) != tuple(net.input_shape):
        problems.append(f"input shape {tuple(ann.input_shape)} vs {tuple(net.input_shape)}")
    if ann.num_classes is not None and ann.num_classes != net.num_classes:
        problems.append(f"{ann.num_classes} vs {net.num_classes} classes")
    if len(ann.macs) != net.weight_layers:
        problems.append(f"{len(ann.macs)} vs {net.weight_layers} conv/linear layers")
    if problems:
        raise ReportError(f"ANN {ann.path} does not match {net.path}: {'; '.join(problems)}")


def _ann_accuracy(ann: AnnModel, net: Network, samples: int) -> float:
    """The ANN's accuracy on the same test samples (raw images, one pass each) via onnxruntime."""
    from ..exporters.onnx_format import run_onnx

    correct, n = 0, 0
    for x, y in _test_samples(net, samples, progress=False):
        if x.dim() == 5:  # event frames (B, T, C, H, W): a frame-based ANN sees the event-count image
            x = x.sum(1)
        logits = run_onnx(ann.path, x.numpy())
        correct += int((torch.from_numpy(logits).argmax(1) == y).sum())
        n += len(y)
    return correct / n


def _keep_twin(ann: AnnModel, dest: Path) -> AnnModel:
    with atomic_path(dest) as tmp:
        shutil.copyfile(ann.path, tmp)
    return dataclasses.replace(ann, path=dest)


# -------------------------------------------------------------------------------------------- data

def _labels(networks: Sequence[Network], measured: Sequence[Measured]) -> List[str]:
    """Row label: method and sparsity (and 'binary'); the dense ticket is the dense SNN; duplicates get the file."""
    labels = []
    for net, m in zip(networks, measured):
        label = "dense SNN" if net.dense else f"{net.method} {100 * net.sparsity:.1f} %"
        labels.append(label + (" binary" if _binary(m.layers) else ""))
    return [f"{l} ({n.path.name})" if labels.count(l) > 1 else l for l, n in zip(labels, networks)]


def _binary(layers: Sequence[SynapseLayer]) -> bool:
    """Every layer's weights take at most the values {-alpha, 0, +alpha} (a binary-weight ticket)."""
    return all(binary_bits(l.weight) is not None for l in layers)


def _snn_capable(p: HardwareProfile) -> bool:
    return p.kind != "ann"


def _ann_capable(p: HardwareProfile) -> bool:
    return p.kind != "neuromorphic"


def _placeable(p: HardwareProfile) -> bool:
    """A profile with core or chip limits (mapping none: a cost convention or an ANN target, nothing to fit)."""
    return _snn_capable(p) and p.mapping != "none"


def _comparable(snn: HardwareProfile, ann: HardwareProfile, convention: HardwareProfile) -> bool:
    """A chip against an ANN target, or a reference profile against itself (the 45 nm one has its own section).

    A chip against a reference convention would mix what each side counts (the convention leaves out memory,
    neurons and static power), so such pairs are not formed.
    """
    if snn.kind == "neuromorphic":
        return ann.kind == "ann"
    return snn.name == ann.name and snn.name != convention.name


def _memory_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile) -> dict:
    """Weight bits per layer and encoding; totals per encoding (None if any layer's is unknown); best."""
    mems = [layer_memory(l, profile) for l in layers]
    totals = {e: (sum(m.bits[e] for m in mems) if all(m.bits.get(e) is not None for m in mems) else None)
              for e in profile.encodings}
    known = {e: b for e, b in totals.items() if b is not None}
    best = min(known, key=known.get) if known else None
    # a population driven by several layers (a residual sum) holds its neuron state once
    state = list({l.population: m.neuron_state_bits for l, m in zip(layers, mems)}.values())
    return {"layers": [{"name": m.name, "bits": dict(m.bits), "best": m.best, "storage": m.storage,
                        "neuron_state_bits": m.neuron_state_bits} for m in mems],
            "totals": totals, "best_encoding": best, "best_bits": known.get(best),
            "neuron_state_bits": sum(state) if all(s is not None for s in state) else None}


def _mapping_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile, resets=()) -> dict:
    r = map_network(layers, profile, dict(resets))
    return {"fits": r.fits, "cores_used": r.cores_used, "verdict": r.verdict, "failures": list(r.failures),
            "unchecked": list(r.unchecked), "notes": list(r.notes),
            "populations": [{"population": p.population, "layers": list(p.layers), "neurons": p.neurons,
                             "cores": p.cores, "neurons_per_core": p.neurons_per_core, "encoding": p.encoding,
                             "synapse_bits": p.synapse_bits} for p in r.populations]}


def _activity_entry(a: NetworkActivity) -> dict:
    totals = {k: getattr(a, k) for k in ("effective_acs", "effective_macs", "effective_synops", "dense_ops",
                                         "neuron_updates", "output_spikes", "input_events")}
    return {"source": a.source, "samples": a.samples, "timesteps": a.timesteps, "per_sample": totals,
            "layers": [dataclasses.asdict(l) for l in a.layers]}


def _network_entry(net: Network, m: Measured, label: str, profiles: Sequence[HardwareProfile],
                   convention: HardwareProfile, ann45: EnergyBreakdown) -> dict:
    snn45 = snn_energy(m.activity, convention)
    return {
        "label": label, "file": str(net.path), "kind": net.kind, "method": net.method,
        "sparsity": net.sparsity, "dense": net.dense, "binary": _binary(m.layers), "timesteps": net.timesteps,
        "encoding": net.encoding, "dataset": net.data.dataset, "accuracy": net.record_accuracy,
        "accuracy_measured": m.accuracy, "samples": m.samples, "activity": _activity_entry(m.activity),
        "energy": {p.name: snn_energy(m.activity, p).to_dict() for p in profiles if _snn_capable(p)},
        "convention_45nm": {"snn": snn45.to_dict(), "ann": ann45.to_dict(),
                            "percent_of_ann": 100.0 * energy_ratio(snn45, ann45)},
        "memory": {p.name: _memory_entry(m.layers, p) for p in profiles if _snn_capable(p)},
        "mapping": {p.name: _mapping_entry(m.layers, p, net.resets) for p in profiles if _placeable(p)},
    }


def _ann_entry(ann: AnnModel, accuracy: float, profiles: Sequence[HardwareProfile],
               ann45: EnergyBreakdown) -> dict:
    capable = [p for p in profiles if _ann_capable(p)]
    return {
        "label": "ANN", "file": str(ann.path), "origin": ann.origin, "sparsity": ann.sparsity,
        "dense_macs": ann.dense_macs, "effective_macs": ann.effective_macs, "accuracy_measured": accuracy,
        "layers": [{"name": m.name, "op": m.op_type, "dense_macs": m.dense_macs, "effective_macs": m.effective_macs,
                    "weights": m.weight_count, "nonzero_weights": m.nonzero_weights} for m in ann.macs],
        "energy": {p.name: ann_energy_from_layers(ann.macs, p).to_dict() for p in capable},
        "energy_skip_zeros": {p.name: ann_energy_from_layers(ann.macs, p, skip_zeros=True).to_dict()
                              for p in capable},
        "convention_45nm": ann45.to_dict(),
    }


def _pairs(networks: Sequence[dict], ann: dict, profiles: Sequence[HardwareProfile],
           convention: HardwareProfile) -> List[dict]:
    """SNN energy as % of ANN energy per comparable profile pair; computed only when both totals are complete."""
    pairs = [(s.name, a.name) for s in profiles for a in profiles
             if _snn_capable(s) and _ann_capable(a) and _comparable(s, a, convention)]
    out = []
    for net in networks:
        for sp, ap in pairs:
            snn, a = net["energy"][sp], ann["energy"][ap]
            entry = {"network": net["label"], "snn_profile": sp, "ann_profile": ap, "percent": None, "note": ""}
            missing = [f"{sp}: {x}" for x in snn["unknown"]] + [f"{ap}: {x}" for x in a["unknown"]]
            if missing:
                entry["note"] = "not computed, unknown figure(s) " + ", ".join(missing)
            elif a["total"] <= 0:
                entry["note"] = f"not computed, ANN energy on {ap} is 0"
            else:
                entry["percent"] = 100.0 * snn["total"] / a["total"]
            out.append(entry)
    return out


def _profile_entry(p: HardwareProfile, networks: Sequence[dict], ann: dict) -> dict:
    breakdowns = [n["energy"][p.name] for n in networks if p.name in n["energy"]]
    breakdowns += [ann["energy"][p.name]] if p.name in ann["energy"] else []
    return {
        "name": p.name, "kind": p.kind, "mapping": p.mapping, "description": p.description,
        "unknown_figures": list(p.unknown_figures()),
        "excluded_figures": [n for n, f in p.figures.items() if f.status == "excluded"],
        "unknown_limits": list(p.unknown_limits()),
        "unknown_in_report": [f for f in FIGURES if any(f in b["unknown"] for b in breakdowns)],
        "unused_in_report": [f for f in FIGURES if any(f in b["unused"] for b in breakdowns)],
        "figures": p.to_dict()["figures"],
    }


def report_data(networks: Sequence[Network], measured: Sequence[Measured], ann: AnnModel, ann_accuracy: float,
                profiles: Sequence[HardwareProfile], convention: HardwareProfile, samples: int) -> dict:
    """Every number of the report as a JSON-ready dict (report.json); md/html/plots are rendered from it."""
    ann45 = ann_energy_from_layers(ann.macs, convention)
    labels = _labels(networks, measured)
    nets = [_network_entry(n, m, l, profiles, convention, ann45) for n, m, l in zip(networks, measured, labels)]
    ann_entry = _ann_entry(ann, ann_accuracy, profiles, ann45)
    figures = convention.to_dict()["figures"]
    return {
        "format": FORMAT,
        "samples_requested": samples,
        "convention_45nm": {"profile": convention.name, "mac": figures["mac"], "synaptic_op": figures["synaptic_op"],
                            "formula": "E_SNN = E_MAC x MACs of real-valued-input layers + E_AC x synaptic ops (ACs); "
                                       "E_ANN = E_MAC x dense MACs; % = 100 x E_SNN / E_ANN"},
        "profiles": {p.name: _profile_entry(p, nets, ann_entry) for p in profiles},
        "ann": ann_entry,
        "networks": nets,
        "ratios": _pairs(nets, ann_entry, profiles, convention),
    }


def _write_plots(data: dict, out: Path) -> Dict[str, Path]:
    return {"energy_breakdown": plot_energy_breakdown(data, out / FILES["energy_breakdown"]),
            "accuracy_sparsity_energy": plot_accuracy_sparsity_energy(data, out / FILES["accuracy_sparsity_energy"])}
