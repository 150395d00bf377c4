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
    nir_synapse_layer, previous_step
from ..cost.activity import synapse_layers as ticket_synapse_layers
from ..config import DataConfig
from ..cost.energy import OPS_RULES, RULE_SENTENCE, EnergyBreakdown, ann_energy_from_activity, \
    ann_energy_from_layers, energy_ratio, snn_energy
from ..errors import SltError
from ..cost.mapping import binary_bits, layer_memory, map_network
from ..cost.profiles import FIGURES, HardwareProfile, load_profile
from ..ticket import Ticket
from ..timing import stage
from ..utils import atomic_path, check_output_dir, check_output_path, resolve_device, write_json_atomic, \
    write_text_atomic
from ..exporters.nir_format import SPIKING_NODES
from ..simulate.reference import WEIGHT_NODES, NIRExecutor, SynapseChain, synapse_chains
from ..simulate.workload import (encoded_test_samples, graph_input_shape, load_input_file, nir_data, nir_metadata,
                                 test_samples, ticket_data)
from .plots import plot_accuracy_sparsity_energy, plot_break_even, plot_energy_breakdown, plot_pareto
from .verdict import verdict_tables
from .render import render_html, render_markdown, report_sections


PathLike = Union[str, Path]

FORMAT = "slt-deploy.report/1"
# The SNN papers' 45 nm convention is itself a profile (hardware_profiles/cmos45.yaml): no numbers live here.
CONVENTION_PROFILE = "cmos45"
# The host that computes the first layer of a host-fed SNN: an int8 accelerator next to the chip, at the precision
# of the chip's own weights (Loihi, Xylo, DYNAP-CNN store 8-bit weights); --host-profile fp32-45nm for a float host.
HOST_PROFILE = "int8-45nm"
FILES = {"json": "report.json", "markdown": "report.md", "html": "report.html", "ann_twin": "ann_twin.onnx",
         "energy_breakdown": "energy_breakdown.png", "accuracy_sparsity_energy": "accuracy_sparsity_energy.png",
         "pareto": "accuracy_vs_energy.png", "break_even": "break_even.png"}


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
    weight_layers: int               # feed-forward conv/linear layers (ticket) or weight nodes (NIR): the
                                     # ANN's depth; a recurrent weight (RLeaky) has no ANN counterpart
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
    """The ANN side of the comparison: an ANN ticket (its torch model is run and counted) or an ONNX file."""

    path: Path
    origin: str
    macs: tuple                      # onnx_format.LayerMACs per conv/linear node
    input_shape: Optional[Tuple[int, ...]]
    num_classes: Optional[int]
    ticket: Optional[Ticket] = None  # an ANN ticket (model.spiking false): counted on its real activations
    trained: Optional[bool] = None   # trained as an ANN (True), the SNN's weights with ReLU (False), unknown (None)
    label: str = ""                  # the report's name for it ("" = from its role: ANN, ANN <file>)

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
                 out: PathLike, samples: int = 200, progress: bool = True, ops: str = "effective",
                 host_profile: str = HOST_PROFILE, train_ann: bool = True, runs_dir: Optional[PathLike] = None,
                 neurobench: bool = True, sanafe: bool = True, also_ann: Sequence[PathLike] = (),
                 graph_inputs: Optional[GraphInputs] = None, device: str = "auto") -> ReportResult:
    """Simulate each input on its first ``samples`` test samples, cost it on ``profiles``, write the report.

    ``inputs``: tickets or NIR graphs; ``ann``: an ANN ticket (safetensors, ``model.spiking`` false) or an ONNX
    file; without it, the dense ANN twin of the first ticket trained with the ticket's recipe (search method
    ``dense``, ``model.spiking`` false; trained on demand and cached in ``runs_dir``, default: the runs folder
    the ticket lives in), or with ``train_ann=False`` the ticket's own weights with ReLU, labelled untrained.
    ``ops``: the counting rule for both sides (``effective`` or ``dense``). ``host_profile``: where the
    host-computed first layer of the SNN is charged. ``neurobench`` / ``sanafe``: add NeuroBench's metrics and
    SANA-FE simulations (profiles naming a SANA-FE architecture). ``also_ann``: more ANNs to compare with (ANN
    tickets or ONNX, e.g. LT / MPLT tickets at the SNN ticket's sparsity), measured and costed the same way and
    listed in ``data["ann_others"]``. ``device``: where the networks' activity is counted (``auto``: the GPU
    when there is one; the same counts on any device). Every input is read and checked (profiles, ANN against
    each network) before anything is simulated or written.
    """
    if not inputs:
        raise ReportError("report: give at least one ticket or NIR file")
    if not profiles:
        raise ReportError("report: give at least one hardware profile (--profiles NAME_OR_FILE ...)")
    if samples < 1:
        raise ReportError(f"report: samples={samples} must be >= 1")
    if ops not in OPS_RULES:
        raise ReportError(f"report: ops={ops!r} is not one of: {', '.join(OPS_RULES)}")
    out = Path(out)
    check_output_dir(out)  # before anything is simulated: the folder, then each file it will hold
    for name in FILES.values():
        check_output_path(out / name)
    where = resolve_device(device)  # a GPU that is not there: one line, before anything runs
    loaded = _load_profiles(profiles)
    convention = load_profile(CONVENTION_PROFILE)
    host = load_profile(host_profile)
    if host.kind == "neuromorphic":
        raise ReportError(f"report: host profile {host.name} is a neuromorphic chip; give an ANN or reference "
                          f"profile (it computes the first layer)")
    networks = [load_network(p, graph_inputs, samples) for p in inputs]
    with tempfile.TemporaryDirectory(prefix="slt-report-") as scratch:
        ann_model = _ann_model(ann, networks, Path(scratch), train_ann, runs_dir, progress)
        others = [_ann_model(p, networks, Path(scratch), train_ann, runs_dir, progress) for p in also_ann]
        skipped: List[str] = []
        if ann is None and train_ann:  # the ANN pruned like each ticket, trained with the ticket's recipe
            others = _pruned_anns(networks, runs_dir, progress, skipped) + others
        for net in networks:
            for model in [ann_model, *others]:
                check_ann_matches(model, net)
        measured = [simulate(net, samples, progress, where) for net in networks]
        ann_measured = measure_ann(ann_model, networks[0], samples)
        if ann is None and ann_model.ticket is None:  # keep the twin the report describes next to it
            ann_model = _keep_twin(ann_model, out / FILES["ann_twin"])
    context = _Context(ops, host, convention)
    data = report_data(networks, measured, ann_model, ann_measured, loaded, context, samples)
    data["ann_others"] = []
    for other in others:
        other_measured = measure_ann(other, networks[0], samples)
        entry = _ann_entry(other, other_measured, loaded, context,
                           _ann_energy(other, other_measured, convention, ops))
        entry.update(label=other.label or f"ANN {other.path.stem}",
                     origin=other.origin if other.label else "given with --also-ann")
        data["ann_others"].append(entry)
    if neurobench:
        _add_neurobench(data, networks, samples)
    if sanafe:
        _add_sanafe(data, networks, loaded, samples)
    data["inputs"] = [str(p) for p in inputs]
    data["warnings"] = [f"{net.path.name}: {w}" for net in networks for w in net.warnings] + skipped
    for p, spec in zip(loaded, profiles):  # as the user named it (a shipped name or their file)
        data["profiles"][p.name]["given_as"] = str(spec)
    _per_inference(data)
    data["verdict"], data["verdict_matrix"] = verdict_tables(data)
    plots = _write_plots(data, out)
    data["plots"] = {k: p.name for k, p in plots.items()}
    paths = {k: out / FILES[k] for k in ("json", "markdown", "html")}
    sections = report_sections(data)
    write_json_atomic(paths["json"], data)
    write_text_atomic(paths["markdown"], render_markdown(sections))
    write_text_atomic(paths["html"], render_html(sections, out))
    return ReportResult(paths["json"], paths["markdown"], paths["html"], plots, data)


@dataclass(frozen=True)
class _Context:
    """The report's choices that every costing shares."""

    ops: str
    host: HardwareProfile
    convention: HardwareProfile


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
    model = ticket.build_model()
    layers = len(set(prunable_layers(model)) - set(model.recurrent_weights()))
    return Network(path=p, kind="ticket", method=r.method, sparsity=float(r.sparsity), round=r.round,
                   record_accuracy=r.accuracy, timesteps=r.timesteps, encoding=r.encoding, data=ticket_data(ticket),
                   seed=r.seed, input_shape=tuple(r.model.input_shape), num_classes=r.model.num_classes,
                   weight_layers=layers, ticket=ticket, resets=(("every spiking layer", r.model.neuron.reset),))


def _nir_network(p: Path, given: GraphInputs, samples: int) -> Network:
    from ..simulate.run import load_graph, with_dt

    graph, _, repairs = load_graph(p, given.lenient)
    graph, _, warned = with_dt(graph, given.dt, str(p))
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
    chains = tuple(synapse_chains(graph, str(p)))
    recurrent = [c for c in chains if c.recurrent and c.node is not None]
    sparsity = meta.get("sparsity")
    if sparsity is None:  # a graph from another tool: measure it on the stored weights
        sizes = [np.asarray(n.weight).size for n in weights]
        sparsity = 1.0 - sum(np.count_nonzero(n.weight) for n in weights) / sum(sizes) if sizes else 0.0
    return Network(path=p, kind="nir", method=str(meta.get("method", "nir")), sparsity=float(sparsity),
                   round=int(meta.get("round", -1)), record_accuracy=meta.get("accuracy"),
                   timesteps=data.timesteps, encoding=workload.encoding if workload else data.encoding, data=data,
                   seed=int(meta.get("seed", 0)), input_shape=_nir_shape(inputs[0].input_type),
                   num_classes=math.prod(_nir_shape(outputs[0].output_type)),
                   weight_layers=len(weights) - len(recurrent),
                   graph=graph, chains=chains, workload=workload,
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


def simulate(net: Network, samples: int, progress: bool = True, device=None) -> Measured:
    """Run the network on its first ``samples`` test samples; counts and accuracy come from that run, counted on
    ``device`` (a torch device; None: the CPU). A ticket runs there too; a NIR graph's executor runs on the CPU."""
    device = torch.device("cpu") if device is None else device
    return _simulate_ticket(net, samples, progress, device) if net.kind == "ticket" else \
        _simulate_nir(net, samples, progress, device)


def _simulate_ticket(net: Network, samples: int, progress: bool, device) -> Measured:
    model = net.ticket.build_model().to(device)
    logits: List[torch.Tensor] = []
    hook = model.register_forward_hook(lambda module, args, output: logits.append(output.detach()))
    parts, correct, n = [], 0, 0
    try:
        for x_seq, y in _encoded(net, samples, progress):
            parts.append(count_snntorch(model, x_seq.to(device), source="snntorch"))  # the hook sees this run
            correct += _correct(logits.pop().cpu(), y)
            n += len(y)
    finally:
        hook.remove()
    layers = tuple(ticket_synapse_layers(model.cpu(), net.input_shape))
    return Measured(_merged(parts), layers, correct / n, n)


def _simulate_nir(net: Network, samples: int, progress: bool, device) -> Measured:
    executor = NIRExecutor(net.graph)
    chains = net.chains
    parts, correct, n, layers = [], 0, 0, None
    for x_seq, y in _encoded(net, samples, progress):
        logits, trace = executor.run(x_seq, record=True)
        if layers is None:  # a layer's input shape is that of the recorded node feeding it
            layers = tuple(nir_synapse_layer(c, tuple(trace[c.tap].shape[2:]), str(net.path)) for c in chains)
        trace = {name: t.to(device) for name, t in trace.items()}
        inputs = {c.name: previous_step(trace[c.tap]) if c.recurrent else trace[c.tap] for c in chains}
        spikes = {c.target: trace[c.target] for c in chains if c.target is not None}
        parts.append(count_from_spikes(layers, inputs, spikes, source="nir-executor"))
        correct += _correct(logits, y)
        n += len(y)
    return Measured(_merged(parts), layers, correct / n, n)


# ------------------------------------------------------------------------------------------------- ANN

def _ann_model(ann: Optional[PathLike], networks: Sequence[Network], scratch: Path, train: bool,
               runs_dir: Optional[PathLike], progress: bool) -> AnnModel:
    from ..exporters.onnx_format import export_ticket_onnx, onnx_macs

    first = next((n for n in networks if n.kind == "ticket"), None)
    if ann is not None:
        path = Path(ann)
        if not path.is_file():
            raise ReportError(f"{path}: no such file (--ann)")
        if path.suffix.lower() != ".onnx":
            return _ann_ticket(path, "given with --ann", None)
        macs = tuple(onnx_macs(path))
        in_shape, classes = _onnx_io(path)
        return AnnModel(path, "given with --ann", macs, in_shape, classes)
    if first is None:
        raise ReportError("report: no ANN to compare with: pass --ann ANN.safetensors or ANN.onnx (the ANN twin "
                          "is derived from a ticket, and every input is a NIR graph)")
    if train:
        path = train_ann_twin(first.ticket, first.path, runs_dir, progress)
        return _ann_ticket(path, f"dense ANN twin of {first.path.name} trained with its recipe "
                                 f"(search method dense, model.spiking false)", True)
    path = export_ticket_onnx(first.path, scratch / FILES["ann_twin"])
    macs = tuple(onnx_macs(path))
    in_shape, classes = _onnx_io(path)
    dropped = " (recurrent weights dropped)" if first.ticket.record.model.recurrent else ""
    return AnnModel(path, f"UNTRAINED ANN twin of {first.path.name}: its masked SNN weights with ReLU{dropped}, "
                          f"never trained as an ANN (a cost reference only)", macs, in_shape, classes, trained=False)


def _ann_ticket(path: Path, origin: str, trained: Optional[bool]) -> AnnModel:
    from ..exporters.onnx_format import LayerMACs

    ticket = Ticket.load(path)
    if ticket.record.model.spiking:
        raise ReportError(f"{path}: --ann takes an ANN ticket (model.spiking false) or ONNX; this is a spiking "
                          f"ticket (pass it as an input instead)")
    model = ticket.build_model()
    shape = tuple(ticket.record.model.input_shape)
    layers = ticket_synapse_layers(model, shape)
    macs = tuple(LayerMACs(l.name, "Conv" if l.kind == "conv" else "Gemm", int(_dense_macs(l)),
                           int(round(_dense_macs(l) * l.nonzero_weights / max(l.weights, 1))), int(l.weights),
                           int(l.nonzero_weights), tuple(l.output_shape)) for l in layers)
    if trained is None:
        trained = ticket.record.method != "untrained"
    return AnnModel(path, origin, macs, shape, ticket.record.model.num_classes, ticket=ticket, trained=trained)


def _dense_macs(layer: SynapseLayer) -> float:
    """MACs of one call with every input and weight nonzero (fan_in per output neuron)."""
    return float(layer.neurons * layer.fan_in)


def _runs_folder(ticket_path: Path) -> Path:
    """The runs folder a ticket's run directory sits in (the folder above the one holding config.json)."""
    for parent in ticket_path.resolve().parents:
        if (parent / "config.json").is_file():
            return parent.parent
    return ticket_path.resolve().parent / "runs"


def twin_config(ticket: Ticket):
    """The RunConfig of ``search --spiking false --method dense`` with the ticket's model, data and training."""
    from ..config import ModelConfig, RunConfig, SearchConfig

    hp = dict(ticket.record.hyperparameters)
    base = RunConfig.from_dict({k: hp[k] for k in ("data", "train") if k in hp}, where="ticket settings")
    model = ModelConfig.from_dict(hp["model"]) if "model" in hp else ticket.record.model
    seed = int(hp.get("search", {}).get("seed", ticket.record.seed))
    return dataclasses.replace(base, model=dataclasses.replace(model, spiking=False),
                               search=SearchConfig(method="dense", seed=seed))


@stage("ANN twins")
def train_ann_twin(ticket: Ticket, ticket_path: Path, runs_dir: Optional[PathLike], progress: bool) -> Path:
    """Train (or reuse) the dense ANN twin with the ticket's recipe; returns its ticket path.

    It is the run ``slt-deploy search --spiking false --method dense`` would make with the ticket's settings, in
    the same runs folder, so a finished one is reused and a killed one resumes.
    """
    from ..paths import RunPaths
    from ..search import search

    config = twin_config(ticket)
    folder = Path(runs_dir) if runs_dir is not None else _runs_folder(ticket_path)
    done = RunPaths(folder / config.run_name()).ticket
    if done.is_file():
        return done
    print(f"report: training the dense ANN twin of {ticket_path.name} ({config.train.epochs} epochs) in {folder}")
    return search(config, folder, progress=progress,
                  echo=print if progress else (lambda _msg: None)).ticket_path


# what the energy objective adds to a search (slt_deploy.search.energy): the ANN counterpart is pruned by the
# plain rounds, so these go back to their defaults
_ENERGY_SETTINGS = ("objective", "cost_profile", "max_rounds", "max_accuracy_drop", "spike_penalty", "holdout")


def counterpart_config(ticket: Ticket, rounds: Optional[int] = None):
    """The ticket's own search (method, pruning, training) with ``model.spiking`` false: the ANN pruned the same
    way (an ANN lottery ticket, LT; MPLT for biprop), as Cheng et al. compare. IMP runs ``rounds`` rounds
    (default the ticket's own round), the same global pruning per round, so round k has the ticket's sparsity."""
    from ..config import RunConfig, SearchConfig

    hp = dict(ticket.record.hyperparameters)
    config = RunConfig.from_dict({k: hp[k] for k in ("model", "data", "train", "search") if k in hp},
                                 where="ticket settings")
    defaults = SearchConfig()
    search = dataclasses.replace(config.search, **{k: getattr(defaults, k) for k in _ENERGY_SETTINGS
                                                   if hasattr(defaults, k)})
    if search.method == "imp":
        search = dataclasses.replace(search, rounds=ticket.record.round if rounds is None else rounds)
    return dataclasses.replace(config, model=dataclasses.replace(config.model, spiking=False), search=search)


@stage("ANN twins")
def _pruned_anns(networks: Sequence[Network], runs_dir: Optional[PathLike], progress: bool,
                 skipped: List[str]) -> List[AnnModel]:
    """For each pruned ticket, its ANN counterpart at the same round (so the same sparsity), trained on demand
    and cached in the runs folder like the dense twin; one ANN search (to the largest round asked of it) serves
    every ticket of a run. A ticket whose recorded settings cannot be searched again gets none, said in
    ``skipped``."""
    from ..errors import ConfigError
    from ..paths import RunPaths
    from ..search import search

    wanted = []
    for net in networks:
        t = net.ticket
        if net.kind != "ticket" or net.dense or t.record.method == "dense" or t.record.model.recurrent \
                or not t.record.hyperparameters or not t.record.model.spiking:
            continue
        try:
            wanted.append((net, counterpart_config(t, rounds=0).run_name()))
        except ConfigError as exc:
            skipped.append(f"{net.path.name}: no pruned ANN counterpart: its recorded settings do not search ({exc})")
    deepest = {}
    for net, key in wanted:
        deepest[key] = max(deepest.get(key, 0), net.ticket.record.round)
    out: Dict[Path, AnnModel] = {}
    for net, key in wanted:
        t = net.ticket
        folder = Path(runs_dir) if runs_dir is not None else _runs_folder(net.path)
        try:
            config = counterpart_config(t, rounds=deepest[key])
            paths = RunPaths(folder / config.run_name())
            if not paths.ticket.is_file():
                print(f"report: training the pruned ANN counterpart of {net.path.name} ({config.search.method}, "
                      f"model.spiking false) in {folder}")
                search(config, folder, progress=progress, echo=print if progress else (lambda _msg: None))
        except ConfigError as exc:
            skipped.append(f"{net.path.name}: no pruned ANN counterpart: its recorded settings do not search ({exc})")
            continue
        path = paths.round_ticket(t.record.round) if t.record.method == "imp" else paths.ticket
        if path in out or not path.is_file():
            continue
        model = _ann_ticket(path, f"ANN counterpart of {net.path.name}: its search ({t.record.method}, round "
                                  f"{t.record.round}) with model.spiking false, same recipe", True)
        pruned = f"{100 * model.sparsity:.1f} %"
        out[path] = dataclasses.replace(model, origin=model.origin + f", {pruned} sparse",
                                        label=f"pruned ANN {pruned}")
    return list(out.values())


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
    if ann.ticket is not None and ann.ticket.record.dataset != net.data.dataset:
        problems.append(f"dataset {ann.ticket.record.dataset} vs {net.data.dataset}")
    if problems:
        raise ReportError(f"ANN {ann.path} does not match {net.path}: {'; '.join(problems)}")


@dataclass(frozen=True)
class AnnMeasured:
    """The ANN's run on the same samples: accuracy, its activity and (ANN tickets) its deployed layers."""

    accuracy: float
    activity: Optional[NetworkActivity]
    layers: Tuple[SynapseLayer, ...] = ()


def measure_ann(ann: AnnModel, net: Network, samples: int) -> AnnMeasured:
    """The ANN on the same test samples as the network.

    An ANN ticket runs in torch the way it was trained and evaluated (its own encoding and T, logits summed over
    time: for a direct-encoded input every step is the same, and the counter computes a layer with a constant
    real-valued input once, so this costs one pass), and its activity is counted by the SNN's own counter (its
    ReLU outputs are the populations' outputs). An ONNX file runs once per raw image in onnxruntime, with every
    Conv/Gemm/MatMul input recorded and counted by the same counter (:mod:`slt_deploy.cost.onnx_activity`).
    """
    from ..exporters.onnx_format import run_onnx

    correct, n, parts = 0, 0, []
    if ann.ticket is not None:
        model = ann.ticket.build_model()
        logits: List[torch.Tensor] = []
        hook = model.register_forward_hook(lambda m, a, o: logits.append(o.detach()))
        try:
            for x_seq, y in encoded_test_samples(ticket_data(ann.ticket), samples, ann.ticket.record.seed, False,
                                                 "ANN", str(ann.path)):
                parts.append(count_snntorch(model, x_seq, source="torch (ANN)"))
                correct += _correct(logits.pop(), y)
                n += len(y)
        finally:
            hook.remove()
        layers = tuple(ticket_synapse_layers(model, ann.input_shape))
        return AnnMeasured(correct / n, _merged(parts), layers)
    from ..cost.onnx_activity import count_onnx

    images = []
    for x, y in _test_samples(net, samples, progress=False):
        if x.dim() == 5:  # event frames (B, T, C, H, W): a frame-based ANN sees the event-count image
            x = x.sum(1)
        pred = torch.from_numpy(run_onnx(ann.path, x.numpy()))
        correct += int((pred.argmax(1) == y).sum())
        n += len(y)
        images.append(x.numpy())
    return AnnMeasured(correct / n, count_onnx(ann.path, images))


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


def host_first_layer(net: Network) -> bool:
    """Whether the deployment computes the first layer on the host: every input but event spikes
    (the compiler's ``first_layer="host"``, chosen by :func:`slt_deploy.simulate.run` the same way)."""
    return net.encoding != "events"


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


def _memory_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile) -> dict:
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
    best_layers = [min((e for e in m.bits if m.bits[e] is not None), key=lambda e: m.bits[e], default=None)
                   for m in mems]
    return {"layers": [{"name": m.name, "bits": dict(m.bits), "best": b, "storage": m.storage,
                        "neuron_state_bits": m.neuron_state_bits} for m, b in zip(mems, best_layers)],
            "totals": totals, "best_encoding": best, "best_bits": known.get(best),
            "best_bytes": known[best] / 8 if best else None,
            "neuron_state_bits": sum(state) if all(s is not None for s in state) else None}


def _mapping_entry(layers: Sequence[SynapseLayer], profile: HardwareProfile, host_fed: bool,
                   resets=()) -> dict:
    deployed = deployed_layers(layers, host_fed)
    nonbinary = [l.name for l in deployed if l.nonzero_weights and binary_bits(l.weight) is None]
    if profile.encodings == ("binary",) and nonbinary:  # a crossbar of one-bit synapses cannot hold them
        return {"fits": False, "cores_used": None, "failures": [
                    f"layer {nonbinary[0]}: weights take more than two values; {profile.name} stores binary "
                    f"synapses only (binarize the network first)"],
                "verdict": f"{profile.name}: does not fit: layer {nonbinary[0]} is not binary", "unchecked": [],
                "notes": [], "populations": [],
                "host_layers": [l.name for l in layers if host_fed and l.source is None]}
    r = map_network(deployed, profile, dict(resets))
    return {"fits": r.fits, "cores_used": r.cores_used, "verdict": r.verdict, "failures": list(r.failures),
            "unchecked": list(r.unchecked), "notes": list(r.notes) + (
                [f"layer(s) {', '.join(l.name for l in layers if l.source is None)} computed on the host: their "
                 f"synapses are off chip, their target neurons on chip fed host currents"] if host_fed else []),
            "host_layers": [l.name for l in layers if host_fed and l.source is None],
            "populations": [{"population": p.population, "layers": list(p.layers), "neurons": p.neurons,
                             "cores": p.cores, "neurons_per_core": p.neurons_per_core, "encoding": p.encoding,
                             "synapse_bits": p.synapse_bits} for p in r.populations]}


def _activity_entry(a: NetworkActivity) -> dict:
    totals = {k: getattr(a, k) for k in ("effective_acs", "effective_macs", "effective_synops", "dense_ops",
                                         "neuron_updates", "output_spikes", "input_events")}
    return {"source": a.source, "samples": a.samples, "timesteps": a.timesteps, "per_sample": totals,
            "layers": [dataclasses.asdict(l) for l in a.layers]}


def _network_entry(net: Network, m: Measured, label: str, profiles: Sequence[HardwareProfile],
                   ctx: _Context, ann45: EnergyBreakdown) -> dict:
    host_fed = host_first_layer(net)
    snn45 = snn_energy(m.activity, ctx.convention, ops=ctx.ops, host_first_layer=host_fed)

    def energy(p: HardwareProfile) -> dict:
        # a reference profile costs both sides itself; a chip's host layer is charged on the host profile
        host = p if p.kind == "reference" else ctx.host
        return snn_energy(m.activity, p, ops=ctx.ops, host=host, host_first_layer=host_fed).to_dict()

    return {
        "label": label, "file": str(net.path), "kind": net.kind, "method": net.method,
        "sparsity": net.sparsity, "dense": net.dense, "binary": _binary(m.layers), "timesteps": net.timesteps,
        "encoding": net.encoding, "dataset": net.data.dataset, "accuracy": net.record_accuracy,
        "accuracy_measured": m.accuracy, "samples": m.samples, "activity": _activity_entry(m.activity),
        "counting_rule": {"ops": ctx.ops, "sentence": RULE_SENTENCE[ctx.ops], "host_profile": ctx.host.name,
                          "first_layer_on_host": host_fed,
                          "first_layer": [l.name for l in m.activity.layers if l.from_input],
                          "first_layer_computed_once": any(l.computed_once for l in m.activity.layers
                                                           if l.from_input)},
        "energy": {p.name: energy(p) for p in profiles if _snn_capable(p)},
        "convention_45nm": {"snn": snn45.to_dict(), "ann": ann45.to_dict(),
                            "percent_of_ann": 100.0 * energy_ratio(snn45, ann45)},
        # on a chip only the on-chip synapses are stored (the host keeps the first layer's weights)
        "memory": {p.name: _memory_entry(m.layers if p.kind == "reference" else
                                         [l for l in m.layers if not (host_fed and l.source is None)], p)
                   for p in profiles if _snn_capable(p)},
        "mapping": {p.name: _mapping_entry(m.layers, p, host_fed, net.resets) for p in profiles
                    if _placeable(p)},
    }


def _ann_storage(measured: AnnMeasured, profile: HardwareProfile) -> Optional[Tuple[float, float]]:
    """(bits stored, bits per weight read) of the ANN on ``profile`` in its best encoding (a pruned ANN: CSR
    where it is smaller), None where its layers are not known (ONNX: stored densely by the energy model)."""
    if not measured.layers:
        return None
    mem = _memory_entry(measured.layers, profile)
    bits, enc = mem["best_bits"], mem["best_encoding"]
    if bits is None:
        return None
    stored = sum(l.weights if enc == "dense" else l.nonzero_weights for l in measured.layers)
    return float(bits), float(bits) / max(stored, 1)


def _ann_energy(ann: AnnModel, measured: AnnMeasured, profile: HardwareProfile, ops: str) -> EnergyBreakdown:
    return ann_energy_from_activity(measured.activity, profile, ops=ops, storage=_ann_storage(measured, profile))


def _ann_entry(ann: AnnModel, measured: AnnMeasured, profiles: Sequence[HardwareProfile], ctx: _Context,
               ann45: EnergyBreakdown) -> dict:
    capable = [p for p in profiles if _ann_capable(p)]
    label = "ANN" + ("" if ann.trained is not False else " (untrained)")
    weights = sum(m.weight_count for m in ann.macs)
    memory = {}
    for p in capable + ([ctx.host] if ctx.host.name not in {q.name for q in capable} else []):
        b = p.limit("weight_bits")
        memory[p.name] = {"weight_bits": b, "dense_bytes": weights * b / 8 if b else None,
                          "mem": _memory_entry(measured.layers, p) if measured.layers else None}
    return {
        "label": label, "file": str(ann.path), "origin": ann.origin, "trained": ann.trained,
        "sparsity": ann.sparsity, "dense_macs": ann.dense_macs, "effective_macs": ann.effective_macs,
        "accuracy_measured": measured.accuracy, "weights": weights,
        "activity": _activity_entry(measured.activity) if measured.activity is not None else None,
        "counting_rule": {"ops": ctx.ops, "sentence": RULE_SENTENCE[ctx.ops]},
        "layers": [{"name": m.name, "op": m.op_type, "dense_macs": m.dense_macs, "effective_macs": m.effective_macs,
                    "weights": m.weight_count, "nonzero_weights": m.nonzero_weights} for m in ann.macs],
        "energy": {p.name: _ann_energy(ann, measured, p, ctx.ops).to_dict() for p in capable},
        "memory": memory,
        "convention_45nm": ann45.to_dict(),
    }


def _pairs(networks: Sequence[dict], ann: dict, profiles: Sequence[HardwareProfile],
           convention: HardwareProfile) -> List[dict]:
    """SNN energy as % of ANN energy per comparable profile pair; computed only when both totals are known."""
    pairs = [(s.name, a.name) for s in profiles for a in profiles
             if _snn_capable(s) and _ann_capable(a) and _comparable(s, a, convention)]
    out = []
    for net in networks:
        for sp, ap in pairs:
            snn, a = net["energy"][sp], ann["energy"][ap]
            entry = {"network": net["label"], "snn_profile": sp, "ann_profile": ap, "percent": None, "note": "",
                     "kind": "exact"}
            if snn["kind"] == "unknown" or a["kind"] == "unknown":
                missing = [f"{sp}: {x}" for x in snn["unknown"]] + [f"{ap}: {x}" for x in a["unknown"]]
                entry["note"] = "unknown: needs " + ", ".join(missing)
                entry["kind"] = "unknown"
            elif a["total"] <= 0:
                entry["note"] = f"not computed, ANN energy on {ap} is 0"
            else:
                entry["percent"] = 100.0 * snn["total"] / a["total"]
                kinds = {snn["kind"], a["kind"]} - {"exact"}
                entry["kind"] = "estimate" if kinds else "exact"
                if kinds:
                    missing = [f"{sp}: {x}" for x in snn["unknown"]] + [f"{ap}: {x}" for x in a["unknown"]]
                    entry["note"] = (f"estimate: SNN total {snn['kind']}, ANN total {a['kind']}"
                                     + (f"; leaves out unknown {', '.join(missing)}" if missing else ""))
            out.append(entry)
    return out


def _profile_entry(p: HardwareProfile, networks: Sequence[dict], ann: dict) -> dict:
    breakdowns = [n["energy"][p.name] for n in networks if p.name in n["energy"]]
    breakdowns += [ann["energy"][p.name]] if p.name in ann["energy"] else []
    return {
        "name": p.name, "kind": p.kind, "mapping": p.mapping, "description": p.description,
        "unknown_figures": list(p.unknown_figures()),
        "excluded_figures": [n for n, f in p.figures.items() if f.status == "excluded"],
        "included_figures": [n for n, f in p.figures.items() if f.status == "included"],
        "unknown_limits": list(p.unknown_limits()),
        "unknown_in_report": [f for f in FIGURES if any(f in b["unknown"] for b in breakdowns)],
        "unused_in_report": [f for f in FIGURES if any(f in b["unused"] for b in breakdowns)],
        "figures": p.to_dict()["figures"],
    }


def report_data(networks: Sequence[Network], measured: Sequence[Measured], ann: AnnModel,
                ann_measured: AnnMeasured, profiles: Sequence[HardwareProfile], ctx: _Context,
                samples: int) -> dict:
    """Every number of the report as a JSON-ready dict (report.json); md/html/plots are rendered from it."""
    convention = ctx.convention
    ann45 = _ann_energy(ann, ann_measured, convention, ctx.ops)
    labels = _labels(networks, measured)
    nets = [_network_entry(n, m, l, profiles, ctx, ann45) for n, m, l in zip(networks, measured, labels)]
    ann_entry = _ann_entry(ann, ann_measured, profiles, ctx, ann45)
    figures = convention.to_dict()["figures"]
    return {
        "format": FORMAT,
        "samples_requested": samples,
        "counting_rule": {"ops": ctx.ops, "sentence": RULE_SENTENCE[ctx.ops], "host_profile": ctx.host.name},
        "host_profile": ctx.host.to_dict(),
        "convention_45nm": {"profile": convention.name, "mac": figures["mac"], "synaptic_op": figures["synaptic_op"],
                            "formula": "E_SNN = E_MAC x first-layer ops + E_AC x on-chip synaptic ops; "
                                       "E_ANN = E_MAC x all its ops; % = 100 x E_SNN / E_ANN"},
        "profiles": {p.name: _profile_entry(p, nets, ann_entry) for p in profiles},
        "ann": ann_entry,
        "networks": nets,
        "ratios": _pairs(nets, ann_entry, profiles, convention),
    }


# ------------------------------------------------------------------------------ per inference

def _per_inference(data: dict) -> None:
    """Per network and SNN profile: energy and latency per inference, in one place of report.json (the profile's
    latency, else SANA-FE's simulated one)."""
    ann = data["ann"]
    for n in data["networks"]:
        # what this network is compared with, in its own entry (the full ANN entry is data["ann"])
        n["compared_with"] = {"label": ann["label"], "file": ann["file"], "trained": ann["trained"],
                              "accuracy_measured": ann["accuracy_measured"], "counting_rule": ann["counting_rule"],
                              "others": [a["label"] for a in data.get("ann_others", [])]}
        n["per_inference"] = {}
        for pname, snn in n["energy"].items():
            mapping = n["mapping"].get(pname)
            latency, source = snn.get("latency"), "profile"
            step = data["profiles"][pname]["figures"].get("timestep_latency") or {}
            if latency is not None and step.get("bound") == "upper":
                source = "profile, upper bound"
            sim = (n.get("sanafe") or {}).get(pname)
            if latency is None and sim and sim.get("runs") and sim["runs"][0].get("latency_per_inference_s"):
                latency, source = sim["runs"][0]["latency_per_inference_s"], f"SANA-FE ({sim['runs'][0]['architecture']})"
            n["per_inference"][pname] = {
                "energy_j": snn["total"] if snn["kind"] != "unknown" else None, "energy_kind": snn["kind"],
                "energy_unknown": snn["unknown"], "energy_interval_j": snn["interval"], "scope": snn["scope"],
                "latency_s": latency, "latency_from": source if latency is not None else None,
                "inferences_per_s": 1.0 / latency if latency else None,
                "fits": None if mapping is None else mapping["fits"],
                "cores": None if mapping is None else mapping["cores_used"]}


# ------------------------------------------------------------------------------- cross-checks

@stage("NeuroBench")
def _add_neurobench(data: dict, networks: Sequence[Network], samples: int) -> None:
    """NeuroBench's own metrics on each ticket's snnTorch network and the same samples (NIR inputs: none)."""
    from ..cost.neurobench_metrics import compare_layers, neurobench_metrics, neurobench_summary

    for net, entry in zip(networks, data["networks"]):
        if net.kind != "ticket":
            entry["neurobench"] = {"note": "NeuroBench runs snnTorch models; this input is a NIR graph"}
            continue
        xs, ys = [], []
        for x_seq, y in _encoded(net, samples, progress=False):
            xs.append(x_seq)
            ys.append(y)
        nb = neurobench_metrics(net.ticket.build_model(), torch.cat(xs, 1), torch.cat(ys))
        activity = _activity_from_entry(entry)
        entry["neurobench"] = {"version": nb["version"], "metrics": nb["metrics"], "summary": neurobench_summary(nb),
                               "layers": compare_layers(activity, nb, host_first_layer(net))}


def _activity_from_entry(entry: dict) -> NetworkActivity:
    from ..cost.activity import LayerActivity

    a = entry["activity"]
    return NetworkActivity(tuple(LayerActivity(**l) for l in a["layers"]), a["timesteps"], a["samples"], a["source"])


@stage("SANA-FE")
def _add_sanafe(data: dict, networks: Sequence[Network], profiles: Sequence[HardwareProfile], samples: int) -> None:
    """SANA-FE on the deployed network of each ticket, for every profile that names SANA-FE architectures."""
    from ..cost import sanafe_sim

    for net, entry in zip(networks, data["networks"]):
        entry["sanafe"] = {}
        for p in profiles:
            if not sanafe_sim.architectures(p):
                continue
            if net.kind != "ticket":
                entry["sanafe"][p.name] = {"runs": [], "note": "SANA-FE replays snnTorch runs; this input is NIR"}
                continue
            xs = [x for x, _ in _encoded(net, min(samples, sanafe_sim.MAX_SAMPLES), progress=False)]
            entry["sanafe"][p.name] = sanafe_sim.simulate_profile(
                net.ticket.build_model(), torch.cat(xs, 1), p, host_fed=host_first_layer(net))


def _write_plots(data: dict, out: Path) -> Dict[str, Path]:
    return {"energy_breakdown": plot_energy_breakdown(data, out / FILES["energy_breakdown"]),
            "pareto": plot_pareto(data, out / FILES["pareto"]),
            "accuracy_sparsity_energy": plot_accuracy_sparsity_energy(data, out / FILES["accuracy_sparsity_energy"]),
            "break_even": plot_break_even(data, out / FILES["break_even"])}
