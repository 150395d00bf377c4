"""Deployment report: accuracy, sparsity, energy, memory and fit of tickets on hardware profiles, against an ANN.

Per input (a ticket, or a NIR graph):

1. the network runs on the first N test samples of its own dataset, with its own encoding and T, and its
   activity is counted on that run (never assumed firing rates): a ticket through its snnTorch model and
   :func:`slt_deploy.activity.count_snntorch`; a NIR graph through the reference executor
   (:class:`slt_deploy.nir_executor.NIRExecutor`), whose recordings go to
   :func:`slt_deploy.activity.count_from_spikes` with synapse layers read from the graph's nodes;
2. energy per inference on every profile = those counts x the profile's figures
   (:func:`slt_deploy.cost.snn_energy`), by component;
3. weight memory per layer and encoding (:func:`slt_deploy.mapping.layer_memory`), cores and fit verdict
   (:func:`slt_deploy.mapping.map_network`).

The ANN (``--ann`` ONNX file, or else the ANN twin of the first ticket) is charged its dense MACs
(:func:`slt_deploy.cost.ann_energy_from_layers`). "SNN energy as % of ANN energy" is taken on the ``cmos45``
profile for both sides, the SNN literature's 45 nm formula, and for every (SNN profile, ANN profile) pair of
the report whose two totals are complete. A figure a profile does not know is listed as unknown, never filled
in; a total that misses one is a lower bound and marked as such.

Written (each file atomically) into the output folder: ``report.json`` (every number; the other files are
rendered from it), ``report.md``, ``report.html``, ``energy_breakdown.png``,
``accuracy_sparsity_energy.png`` and, without ``--ann``, ``ann_twin.onnx``.
"""

from __future__ import annotations

import dataclasses
import html
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import nir
import numpy as np
import torch
from torch import nn

from .activity import NetworkActivity, SynapseLayer, count_from_spikes, count_snntorch, merge_activity
from .activity import synapse_layers as ticket_synapse_layers
from .config import DataConfig
from .cost import EnergyBreakdown, ann_energy_from_layers, energy_ratio, snn_energy
from .errors import SltError, TicketError
from .mapping import binary_bits, layer_memory, map_network
from .profiles import FIGURES, HardwareProfile, list_profiles, load_profile
from .ticket import Ticket
from .utils import atomic_path, generator, write_json_atomic, write_text_atomic
from .workload import encoded_test_samples, nir_data, nir_metadata, test_samples, ticket_data

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
    chains: Tuple["NirChain", ...] = ()  # its synapse layers, read (and so checked) when the file is loaded

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

def build_report(inputs: Sequence[PathLike], *, ann: Optional[PathLike] = None, profiles: Sequence[str],
                 out: PathLike, samples: int = 200, progress: bool = True) -> ReportResult:
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
    loaded = _load_profiles(profiles)
    convention = load_profile(CONVENTION_PROFILE)
    networks = [load_network(p) for p in inputs]
    out = Path(out)
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


def profiles_table() -> str:
    """Every shipped profile: name, kind, description, then each figure's value, unit, status and source."""
    from .describe import format_table

    blocks = []
    for p in list_profiles():
        rows = [{"figure": f.name, "value": "null" if f.value is None else f"{f.value:g}", "unit": f.unit,
                 "status": f.status, "source": f.source} for f in p.figures.values()]
        head = f"{p.name} ({p.kind}, mapping {p.mapping}): {p.description}"
        blocks.append(head + "\n" + _indent(format_table(rows, ["figure", "value", "unit", "status", "source"])))
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join(("  " + line).rstrip() for line in text.splitlines())


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

def load_network(path: PathLike) -> Network:
    """A ticket (safetensors) or a NIR graph (HDF5, told apart by its first bytes)."""
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"{p}: no such file")
    if p.suffix.lower() == ".onnx":
        raise ReportError(f"{p}: an ONNX model is the ANN side; pass it with --ann")
    with open(p, "rb") as f:
        is_hdf5 = f.read(8) == b"\x89HDF\r\n\x1a\n"
    return _nir_network(p) if is_hdf5 else _ticket_network(p)


def _ticket_network(p: Path) -> Network:
    from .models import prunable_layers

    from .exporters.nir_format import ticket_to_nir

    ticket = Ticket.load(p)
    r = ticket.record
    ticket_to_nir(ticket, source=str(p))  # what cannot be deployed (attention, an ANN) says so here, in one line
    layers = len(prunable_layers(ticket.build_model()))
    return Network(path=p, kind="ticket", method=r.method, sparsity=float(r.sparsity), round=r.round,
                   record_accuracy=r.accuracy, timesteps=r.timesteps, encoding=r.encoding, data=ticket_data(ticket),
                   seed=r.seed, input_shape=tuple(r.model.input_shape), num_classes=r.model.num_classes,
                   weight_layers=layers, ticket=ticket)


def _nir_network(p: Path) -> Network:
    from .exporters.nir_format import read_nir

    graph = read_nir(p)
    meta = nir_metadata(graph)
    data = nir_data(graph, p)
    weights = [n for n in graph.nodes.values() if isinstance(n, _NIR_WEIGHTS)]
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
                   timesteps=int(meta["timesteps"]), encoding=str(meta["encoding"]), data=data,
                   seed=int(meta.get("seed", 0)), input_shape=_nir_shape(inputs[0].input_type),
                   num_classes=math.prod(_nir_shape(outputs[0].output_type)), weight_layers=len(weights),
                   graph=graph, chains=tuple(nir_chains(graph, str(p))))


def _nir_shape(types: dict) -> Tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(next(iter(types.values()))).ravel())


# ----------------------------------------------------------------------------------------- simulation

def _test_samples(net: Network, samples: int, progress: bool) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    return test_samples(net.data, samples, progress, f"simulate {net.path.name}", str(net.path))


def _encoded(net: Network, samples: int, progress: bool):
    return encoded_test_samples(net.data, samples, net.seed, progress, f"simulate {net.path.name}", str(net.path))


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
    from .nir_executor import NIRExecutor

    executor = NIRExecutor(net.graph)
    chains = net.chains
    parts, correct, n, layers = [], 0, 0, None
    for x_seq, y in _encoded(net, samples, progress):
        logits, trace = executor.run(x_seq, record=True)
        if layers is None:  # a layer's input shape is that of the recorded node feeding it
            layers = tuple(_deploy_chain(c, tuple(trace[c.tap].shape[2:]), str(net.path)) for c in chains)
        inputs = {c.name: trace[c.tap] for c in chains}
        spikes = {c.target: trace[c.target] for c in chains if c.target is not None}
        parts.append(count_from_spikes(layers, inputs, spikes, source="nir-executor"))
        correct += _correct(logits, y)
        n += len(y)
    return Measured(_merged(parts), layers, correct / n, n)


# ------------------------------------------------------------------------- NIR graph -> synapse layers

# NIR node kinds the report knows how to count
_NIR_WEIGHTS = (nir.Affine, nir.Linear, nir.Conv2d)
_NIR_SPIKING = (nir.LIF, nir.IF, nir.CubaLIF)
_NIR_READOUT = (nir.LI, nir.I)   # non-spiking readouts (leaky integrator, integrator)


@dataclass(frozen=True)
class NirChain:
    """One synapse layer of a NIR graph: its weight node (None: an identity edge between two populations),
    the node whose recorded output is its input (``tap``), the pooling folded into it, and its populations."""

    name: str
    node: Any
    tap: str
    source: Optional[str]
    pre: Tuple[Any, ...] = ()        # AvgPool2d nodes between the tap and a Linear/Affine
    post: Tuple[Any, ...] = ()       # AvgPool2d nodes between a Conv2d and its neuron
    target: Optional[str] = None     # spiking node; None for the non-spiking readout


def _one(names: List[str], node: str, direction: str, where: str) -> str:
    if len(names) != 1:
        raise ReportError(f"{where}: node {node!r} has {len(names)} {direction}s; the report counts synapse "
                          f"layers with one input and one output path")
    return names[0]


def nir_chains(graph, where: str) -> List[NirChain]:
    """Synapse layers of a NIR graph, in execution order, the way the activity counter sees a ticket:
    weight node (Affine/Linear/Conv2d) fed by the Input or a spiking node through Flatten/AvgPool2d, feeding
    a spiking node (through AvgPool2d/Flatten) or, for the readout, the Output (directly or through LI).
    A spiking node fed straight by another (a residual identity skip) is a one-to-one layer."""
    from .exporters.nir_format import predecessors, topological_order

    preds = predecessors(graph)
    succs: Dict[str, List[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        succs[src].append(dst)
    chains: List[NirChain] = []
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, _NIR_WEIGHTS):
            chains.append(_weight_chain(name, graph, preds, succs, where))
        elif isinstance(node, _NIR_SPIKING):
            for p in preds[name]:
                if isinstance(graph.nodes[p], _NIR_SPIKING + (nir.Input,)):
                    source = p if isinstance(graph.nodes[p], _NIR_SPIKING) else None
                    chains.append(NirChain(f"{p}->{name}", None, p, source, target=name))
    targets = {c.target for c in chains}
    for name, node in graph.nodes.items():
        if isinstance(node, _NIR_SPIKING) and name not in targets:
            raise ReportError(f"{where}: spiking node {name!r} is not fed by a weight node; the report cannot "
                              f"count its synapses")
    if not chains:
        raise ReportError(f"{where}: the graph has no Affine, Linear or Conv2d node")
    return chains


def _weight_chain(name: str, graph, preds, succs, where: str) -> NirChain:
    pre: List[Any] = []
    tap = _one(preds[name], name, "input", where)
    while isinstance(graph.nodes[tap], (nir.Flatten, nir.AvgPool2d)):
        if isinstance(graph.nodes[tap], nir.AvgPool2d):
            pre.insert(0, graph.nodes[tap])
        tap = _one(preds[tap], tap, "input", where)
    if not isinstance(graph.nodes[tap], _NIR_SPIKING + (nir.Input,)):
        raise ReportError(f"{where}: weight node {name!r} is fed by {tap!r} ({type(graph.nodes[tap]).__name__}); "
                          f"the report supports inputs from the Input or a spiking node via Flatten/AvgPool2d")
    if pre and isinstance(graph.nodes[name], nir.Conv2d):
        raise ReportError(f"{where}: pooling before conv node {name!r} cannot be folded into it")
    post: List[Any] = []
    nxt = _one(succs[name], name, "output", where)
    while isinstance(graph.nodes[nxt], (nir.Flatten, nir.AvgPool2d)):
        if isinstance(graph.nodes[nxt], nir.AvgPool2d):
            post.append(graph.nodes[nxt])
        nxt = _one(succs[nxt], nxt, "output", where)
    target = _target(name, nxt, graph, succs, where)
    source = tap if isinstance(graph.nodes[tap], _NIR_SPIKING) else None
    return NirChain(name, graph.nodes[name], tap, source, tuple(pre), tuple(post), target)


def _target(name: str, nxt: str, graph, succs, where: str) -> Optional[str]:
    node = graph.nodes[nxt]
    if isinstance(node, _NIR_SPIKING):
        return nxt
    if isinstance(node, nir.Output):
        return None
    if isinstance(node, _NIR_READOUT) and all(isinstance(graph.nodes[s], nir.Output) for s in succs[nxt]):
        return None  # a leaky-integrator readout: non-spiking, like an Affine wired to the Output
    raise ReportError(f"{where}: weight node {name!r} feeds {nxt!r} ({type(node).__name__}); the report supports "
                      f"a spiking node or the Output after it")


def _ints(value, n: int = 2) -> Tuple[int, ...]:
    arr = np.asarray(value).ravel()
    return tuple(int(v) for v in (np.repeat(arr, n) if arr.size == 1 else arr))


def _torch_core(node, where: str) -> nn.Module:
    """The weight node as the torch layer the activity counter folds (only its weight and geometry count)."""
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
    if isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise ReportError(f"{where}: conv padding {node.padding!r} is not supported; give explicit padding")
        groups = int(node.groups)
        layer = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_ints(node.stride),
                          padding=_ints(node.padding), dilation=_ints(node.dilation), groups=groups, bias=False)
    else:
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    layer.weight = nn.Parameter(w, requires_grad=False)
    return layer


def _torch_pool(node) -> nn.AvgPool2d:
    return nn.AvgPool2d(_ints(node.kernel_size), _ints(node.stride), _ints(node.padding))


def _deploy_chain(chain: NirChain, input_shape: Tuple[int, ...], where: str) -> SynapseLayer:
    """Fold the chain exactly as the activity counter folds a ticket's layers (activity.deploy_chain, reused
    rather than copied), so a NIR graph and its ticket can never disagree."""
    from . import activity

    if chain.node is None and len(input_shape) != 3:
        raise ReportError(f"{where}: identity edge {chain.name} between non-conv populations is not supported")
    core = None if chain.node is None else _torch_core(chain.node, where)
    spec = activity.LayerChain(chain.name, core, core or nn.Identity(), chain.source,
                               pre=[_torch_pool(p) for p in chain.pre], post=[_torch_pool(p) for p in chain.post],
                               target=chain.target)
    try:
        return activity.deploy_chain(spec, input_shape)
    except activity.CountError as exc:
        raise ReportError(f"{where}: {exc}") from None


# ------------------------------------------------------------------------------------------------- ANN

def _ann_model(ann: Optional[PathLike], networks: Sequence[Network], scratch: Path) -> AnnModel:
    from .exporters.onnx_format import export_ticket_onnx, onnx_macs

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

    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}

    def dims(value) -> Optional[Tuple[int, ...]]:
        d = value.type.tensor_type.shape.dim[1:]  # the batch axis left out
        return tuple(int(x.dim_value) for x in d) if all(x.HasField("dim_value") for x in d) else None

    inp = next(v for v in graph.input if v.name not in initializers)
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
    from .exporters.onnx_format import run_onnx

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


def _mapping_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile) -> dict:
    r = map_network(layers, profile)
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
        "mapping": {p.name: _mapping_entry(m.layers, p) for p in profiles if _placeable(p)},
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


# --------------------------------------------------------------------------------------------- rendering

@dataclass(frozen=True)
class Table:
    columns: Tuple[str, ...]
    rows: Tuple[Tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: str
    alt: str


@dataclass(frozen=True)
class Heading:
    text: str


Block = Union[str, Table, Image, Heading]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Tuple[Block, ...] = field(default_factory=tuple)


_PREFIXES = ((1.0, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ"))


def energy_unit(joules: float) -> Tuple[float, str]:
    """(scale, unit) so that joules / scale is in [1, 1000) where possible."""
    for scale, unit in _PREFIXES:
        if abs(joules) >= scale:
            return scale, unit
    return _PREFIXES[-1]


def fmt_energy(b: Optional[dict]) -> str:
    """A breakdown's total; '>= ' marks a lower bound (a needed figure is unknown)."""
    if b is None:
        return "-"
    scale, unit = energy_unit(b["total"])
    return f"{'' if b['complete'] else '>= '}{b['total'] / scale:.4g} {unit}"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _fit(mapping: Optional[dict]) -> str:
    if mapping is None:
        return "-"
    if mapping["fits"] is None:
        return "not checked"
    if mapping["fits"]:
        return f"yes ({mapping['cores_used']} cores)" if mapping["cores_used"] is not None else "yes"
    return "no"


def _summary_table(data: dict) -> Table:
    """One row per model: the ANN, then every input; energy per profile and fit per placeable profile."""
    conv = data["convention_45nm"]["profile"]
    energy_cols = [p for p in data["profiles"] if p != conv]  # the convention has its own column
    fit_cols = [p for p in data["profiles"] if any(p in n["mapping"] for n in data["networks"])]
    ann = data["ann"]
    cols = ("model", "file", "sparsity", "binary", "T / encoding", "accuracy (record)",
            f"accuracy ({data['networks'][0]['samples']} samples)", f"E 45 nm ({conv})", "% of ANN (45 nm)",
            *[f"E {p}" for p in energy_cols], *[f"fits {p}" for p in fit_cols])
    rows = [("ANN", Path(ann["file"]).name, _pct(ann["sparsity"]), "-", "1 pass / image", "-",
             _pct(ann["accuracy_measured"]), fmt_energy(ann["convention_45nm"]), "100.00 %",
             *[fmt_energy(ann["energy"].get(p)) for p in energy_cols], *["-" for _ in fit_cols])]
    for n in data["networks"]:
        rows.append((n["label"], Path(n["file"]).name, _pct(n["sparsity"]), "yes" if n["binary"] else "no",
                     f"{n['timesteps']} / {n['encoding']}", _pct(n["accuracy"]), _pct(n["accuracy_measured"]),
                     fmt_energy(n["convention_45nm"]["snn"]), f"{n['convention_45nm']['percent_of_ann']:.2f} %",
                     *[fmt_energy(n["energy"].get(p)) for p in energy_cols],
                     *[_fit(n["mapping"].get(p)) for p in fit_cols]))
    return Table(cols, tuple(rows))


def _convention_section(data: dict) -> Section:
    c = data["convention_45nm"]
    rows = tuple((n["label"], fmt_energy(n["convention_45nm"]["snn"]), fmt_energy(n["convention_45nm"]["ann"]),
                  f"{n['convention_45nm']['percent_of_ann']:.2f} %") for n in data["networks"])
    pairs = tuple((r["network"], r["snn_profile"], r["ann_profile"],
                   "-" if r["percent"] is None else f"{r['percent']:.2f} %", r["note"]) for r in data["ratios"])
    blocks: List[Block] = [
        f"45 nm convention (profile {c['profile']}, both sides): {c['formula']}, with E_MAC = "
        f"{c['mac']['value']} {c['mac']['unit']} and E_AC = {c['synaptic_op']['value']} {c['synaptic_op']['unit']} "
        f"({c['mac']['source']}). Synaptic ops are counted exactly on the run (nonzero input x nonzero weight).",
        Table(("model", "E_SNN", "E_ANN", "SNN as % of ANN"), rows)]
    if pairs:
        blocks += ["Per profile pair (SNN profile vs ANN profile of this report); a pair with an unknown figure "
                   "on either side is not computed.",
                   Table(("model", "SNN profile", "ANN profile", "SNN as % of ANN", "note"), pairs)]
    return Section("SNN energy as % of ANN energy", tuple(blocks))


def _component_names(breakdowns: Sequence[dict]) -> List[str]:
    present = {k for b in breakdowns for k in b["components"]}
    return [k for k in FIGURES if k in present]


def _breakdown_table(name: str, data: dict) -> Optional[Table]:
    entries = [(n["label"], n["energy"][name]) for n in data["networks"] if name in n["energy"]]
    if name in data["ann"]["energy"]:
        entries.insert(0, ("ANN", data["ann"]["energy"][name]))
    if not entries:
        return None
    comps = _component_names([b for _, b in entries])
    scale, unit = energy_unit(max(b["total"] for _, b in entries) or 1e-12)
    rows = tuple((label, *[f"{b['components'][c] / scale:.4g}" if c in b["components"] else "-" for c in comps],
                  fmt_energy(b), ", ".join(b["unknown"]) or "-") for label, b in entries)
    return Table(("model", *[f"{c} ({unit})" for c in comps], "total", "unknown (total is a lower bound)"), rows)


def _energy_section(data: dict) -> Section:
    blocks: List[Block] = ["Energy per inference (one sample, T steps for the SNN) = counted events x the "
                           "profile's figure, per component."]
    for name in data["profiles"]:
        table = _breakdown_table(name, data)
        if table is not None:
            blocks += [Heading(name), table]
    blocks.append(Image(data["plots"]["energy_breakdown"], "energy breakdown per profile"))
    return Section("Energy breakdown per profile", tuple(blocks))


def _bits(b: Optional[int]) -> str:
    return "-" if b is None else f"{b:,}"


def _memory_section(data: dict) -> Section:
    blocks: List[Block] = ["Weight memory in bits per layer and synapse encoding (- : not applicable or a needed "
                           "figure is unknown); the best encoding is the smallest known."]
    for name in data["networks"][0]["memory"]:
        encodings = list(data["networks"][0]["memory"][name]["totals"])
        rows = []
        for n in data["networks"]:
            mem = n["memory"][name]
            rows += [(n["label"], l["name"], *[_bits(l["bits"].get(e)) for e in encodings], l["best"] or "-",
                      _bits(l["neuron_state_bits"])) for l in mem["layers"]]
            rows.append((n["label"], "(all layers)", *[_bits(mem["totals"][e]) for e in encodings],
                         mem["best_encoding"] or "-", _bits(mem["neuron_state_bits"])))
        blocks += [Heading(name), Table(("model", "layer", *encodings, "best", "neuron state"), tuple(rows))]
    return Section("Memory", tuple(blocks))


def _mapping_section(data: dict) -> Section:
    rows = tuple((n["label"], p, _fit(m), m["verdict"]) for n in data["networks"] for p, m in n["mapping"].items())
    return Section("Cores and fit", (Table(("model", "profile", "fits", "verdict"), rows),))


def _activity_section(data: dict) -> Section:
    rows = []
    for n in data["networks"]:
        a = n["activity"]
        s = a["per_sample"]
        rows.append((n["label"], a["source"], str(a["samples"]), str(a["timesteps"]), f"{s['effective_acs']:.6g}",
                     f"{s['effective_macs']:.6g}", f"{s['neuron_updates']:.6g}", f"{s['output_spikes']:.6g}",
                     f"{s['dense_ops']:.6g}"))
    return Section("Activity (measured)", (
        "Per sample, summed over timesteps, from a run on the first test samples of each network's dataset "
        "(NeuroBench definitions; see slt_deploy.activity).",
        Table(("model", "counted by", "samples", "T", "ACs", "MACs", "neuron updates", "output spikes",
               "dense ops"), tuple(rows))))


def _unknown_section(data: dict) -> Section:
    rows = tuple((name, ", ".join(p["unknown_figures"]) or "-", ", ".join(p["excluded_figures"]) or "-",
                  ", ".join(p["unknown_in_report"]) or "-", ", ".join(p["unknown_limits"]) or "-")
                 for name, p in data["profiles"].items())
    return Section("Figures the profiles could not use", (
        "Unknown figures are never filled in: a total that needs one is a lower bound.",
        Table(("profile", "unknown (no public figure)", "excluded by convention", "needed here but unknown",
               "unknown limits"), rows)))


def report_sections(data: dict) -> List[Section]:
    n = data["networks"][0]["samples"]
    intro = (f"Activity counted on a real run of each network on the first {n} test samples of its dataset. "
             f"ANN: {data['ann']['file']} ({data['ann']['origin']}); charged its dense MACs "
             f"({data['ann']['dense_macs']:,} per image). '>=' marks a lower bound (an unknown figure).")
    scatter = Image(data["plots"]["accuracy_sparsity_energy"], "accuracy vs sparsity vs energy")
    return [Section("slt-deploy report", (intro,)),
            Section("Side by side", (_summary_table(data), scatter)),
            _convention_section(data), _energy_section(data), _memory_section(data), _mapping_section(data),
            _activity_section(data), _unknown_section(data)]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(sections: Sequence[Section]) -> str:
    lines: List[str] = []
    for i, s in enumerate(sections):
        lines += [("# " if i == 0 else "## ") + s.title, ""]
        for b in s.blocks:
            if isinstance(b, Table):
                lines.append("| " + " | ".join(map(_md_cell, b.columns)) + " |")
                lines.append("|" + "---|" * len(b.columns))
                lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in b.rows]
            elif isinstance(b, Image):
                lines.append(f"![{b.alt}]({b.path})")
            elif isinstance(b, Heading):
                lines.append(f"### {b.text}")
            else:
                lines.append(b)
            lines.append("")
    return "\n".join(lines)


_CSS = ("body{font-family:sans-serif;margin:2em;max-width:110em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}th{background:#eee}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}")


def render_html(sections: Sequence[Section]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\"><title>slt-deploy report</title>",
             f"<style>{_CSS}</style></head><body>"]
    for i, s in enumerate(sections):
        parts.append(f"<h{1 if i == 0 else 2}>{esc(s.title)}</h{1 if i == 0 else 2}>")
        for b in s.blocks:
            if isinstance(b, Table):
                head = "".join(f"<th>{esc(c)}</th>" for c in b.columns)
                body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in b.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Image):
                parts.append(f"<p><img src=\"{esc(b.path)}\" alt=\"{esc(b.alt)}\"></p>")
            elif isinstance(b, Heading):
                parts.append(f"<h3>{esc(b.text)}</h3>")
            else:
                parts.append(f"<p>{esc(b)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------------- plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: the report runs on servers without a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # format given: the temporary file has no .png suffix
    plt.close(fig)
    return path


def _panel_entries(data: dict, name: str) -> List[Tuple[str, dict]]:
    """(label, breakdown) of every model costed on profile ``name``; the convention panel uses cmos45."""
    if name == data["convention_45nm"]["profile"] and name not in data["profiles"]:
        return [("ANN", data["ann"]["convention_45nm"])] + [(n["label"], n["convention_45nm"]["snn"])
                                                           for n in data["networks"]]
    out = [("ANN", data["ann"]["energy"][name])] if name in data["ann"]["energy"] else []
    return out + [(n["label"], n["energy"][name]) for n in data["networks"] if name in n["energy"]]


def plot_energy_breakdown(data: dict, path: Path) -> Path:
    """Stacked bars of energy per inference by component, one panel per profile (the convention first)."""
    plt = _pyplot()
    names = list(dict.fromkeys([data["convention_45nm"]["profile"], *data["profiles"]]))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False)
    colors = {c: plt.get_cmap("tab10")(i) for i, c in enumerate(FIGURES)}
    for ax, name in zip(axes.flat, names):
        entries = _panel_entries(data, name)
        scale, unit = energy_unit(max([b["total"] for _, b in entries] + [1e-12]))
        bottom = np.zeros(len(entries))
        for comp in _component_names([b for _, b in entries]):
            vals = np.array([b["components"].get(comp, 0.0) / scale for _, b in entries])
            ax.bar(range(len(entries)), vals, bottom=bottom, color=colors[comp], label=comp)
            bottom += vals
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels([("" if b["complete"] else ">= ") + l for l, b in entries], rotation=30, ha="right",
                           fontsize=7)
        ax.set_ylabel(f"energy / inference ({unit})")
        ax.set_title(name if all(b["complete"] for _, b in entries) else f"{name} (>= : lower bound)", fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=6)
        else:  # every figure this profile would need is unknown: say so instead of an empty frame
            ax.text(0.5, 0.5, "no known figure", transform=ax.transAxes, ha="center", va="center")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_sparsity_energy(data: dict, path: Path) -> Path:
    """Measured accuracy against sparsity, colored by energy per inference on the 45 nm convention."""
    plt = _pyplot()
    nets = data["networks"]
    energy = [n["convention_45nm"]["snn"]["total"] for n in nets]
    scale, unit = energy_unit(max(energy + [1e-12]))
    fig, ax = plt.subplots(figsize=(6, 4))
    points = ax.scatter([100 * n["sparsity"] for n in nets], [100 * n["accuracy_measured"] for n in nets],
                        c=[e / scale for e in energy], s=80, cmap="viridis")
    for n in nets:
        ax.annotate(n["label"], (100 * n["sparsity"], 100 * n["accuracy_measured"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    fig.colorbar(points, ax=ax, label=f"energy / inference, {data['convention_45nm']['profile']} ({unit})")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(f"accuracy on {nets[0]['samples']} test samples (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _write_plots(data: dict, out: Path) -> Dict[str, Path]:
    return {"energy_breakdown": plot_energy_breakdown(data, out / FILES["energy_breakdown"]),
            "accuracy_sparsity_energy": plot_accuracy_sparsity_energy(data, out / FILES["accuracy_sparsity_energy"])}
