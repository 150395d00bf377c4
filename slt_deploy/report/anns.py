"""The report's ANN side: which ANNs an SNN is compared with, trained on demand and cached like any search run.

Takes the report's :class:`~slt_deploy.report.networks.Network` inputs and the ANN options (``--ann``,
``--also-ann``, the untrained twin); gives :class:`AnnModel` objects: an ANN ticket (run and counted in torch) or
an ONNX file (run in onnxruntime), each checked against every network (same input, classes and depth).

- By default the dense ANN twin of the first ticket, trained with the ticket's recipe (the run
  ``slt-deploy search --spiking false --method dense`` would make, cached in the runs folder);
- and, for each pruned ticket, its ANN counterpart pruned the same way to the same round (LT; MPLT for biprop);
- ``--ann`` / ``--also-ann``: ANN tickets or ONNX files given by the user;
- ``train_ann=False``: the ticket's own weights with ReLU, exported to ONNX and labelled untrained.
"""

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..timing import stage
from ..cost.activity import SynapseLayer
from ..cost.activity import synapse_layers as ticket_synapse_layers
from ..ticket import Ticket
from ..utils import atomic_path
from .networks import Network, PathLike, ReportError

TWIN_FILE = "ann_twin.onnx"  # the untrained twin, kept next to the report that describes it


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


def choose_ann(ann: Optional[PathLike], networks: Sequence[Network], scratch: Path, train: bool,
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
    path = export_ticket_onnx(first.path, scratch / TWIN_FILE)
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


def _has_counterpart(net: Network) -> bool:
    """A pruned spiking ticket whose recorded search can run again as an ANN (a recurrent weight has no ANN
    counterpart)."""
    t = net.ticket
    return not (net.kind != "ticket" or net.dense or t.record.method == "dense" or t.record.model.recurrent
                or not t.record.hyperparameters or not t.record.model.spiking)


def _skip(net: Network, exc: Exception) -> str:
    return f"{net.path.name}: no pruned ANN counterpart: its recorded settings do not search ({exc})"


def _counterpart_run(net: Network, rounds: int, runs_dir: Optional[PathLike], progress: bool):
    """The run folder (RunPaths) of the ticket's ANN counterpart searched to ``rounds``, trained if missing."""
    from ..paths import RunPaths
    from ..search import search

    folder = Path(runs_dir) if runs_dir is not None else _runs_folder(net.path)
    config = counterpart_config(net.ticket, rounds=rounds)
    paths = RunPaths(folder / config.run_name())
    if not paths.ticket.is_file():
        print(f"report: training the pruned ANN counterpart of {net.path.name} ({config.search.method}, "
              f"model.spiking false) in {folder}")
        search(config, folder, progress=progress, echo=print if progress else (lambda _msg: None))
    return paths


@stage("ANN twins")
def pruned_anns(networks: Sequence[Network], runs_dir: Optional[PathLike], progress: bool,
                skipped: List[str]) -> List[AnnModel]:
    """For each pruned ticket, its ANN counterpart at the same round (so the same sparsity), trained on demand
    and cached in the runs folder like the dense twin; one ANN search (to the largest round asked of it) serves
    every ticket of a run. A ticket whose recorded settings cannot be searched again gets none, said in
    ``skipped``."""
    from ..errors import ConfigError

    wanted, deepest = [], {}
    for net in filter(_has_counterpart, networks):
        try:
            key = counterpart_config(net.ticket, rounds=0).run_name()
        except ConfigError as exc:
            skipped.append(_skip(net, exc))
            continue
        wanted.append((net, key))
        deepest[key] = max(deepest.get(key, 0), net.ticket.record.round)
    out: Dict[Path, AnnModel] = {}
    for net, key in wanted:
        r = net.ticket.record
        try:
            paths = _counterpart_run(net, deepest[key], runs_dir, progress)
        except ConfigError as exc:
            skipped.append(_skip(net, exc))
            continue
        path = paths.round_ticket(r.round) if r.method == "imp" else paths.ticket
        if path in out or not path.is_file():
            continue
        model = _ann_ticket(path, f"ANN counterpart of {net.path.name}: its search ({r.method}, round "
                                  f"{r.round}) with model.spiking false, same recipe", True)
        pruned = f"{100 * model.sparsity:.1f} %"
        out[path] = dataclasses.replace(model, origin=model.origin + f", {pruned} sparse",
                                        label=f"pruned ANN, {pruned} sparse")
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


def keep_twin(ann: AnnModel, dest: Path) -> AnnModel:
    with atomic_path(dest) as tmp:
        shutil.copyfile(ann.path, tmp)
    return dataclasses.replace(ann, path=dest)


def _recipe(ticket: Optional[Ticket]) -> Optional[dict]:
    """A ticket's training settings (optimizer, learning rate, schedule, epochs...), as its record keeps them."""
    if ticket is None or "train" not in (ticket.record.hyperparameters or {}):
        return None
    return {k: v for k, v in ticket.record.hyperparameters["train"].items() if k != "device"}


def recipes(networks: Sequence[Network], anns: Sequence[tuple]) -> Dict[str, dict]:
    """Each side's training recipe as recorded, by the label the report uses (``SNN <file>`` for each distinct
    SNN recipe, the ANN's label for each ANN ticket); networks and ANNs without a record are left out."""
    out: Dict[str, dict] = {}
    for net in networks:
        recipe = _recipe(net.ticket)
        if recipe is not None and recipe not in out.values():
            out[f"SNN {net.path.name}"] = recipe
    for model, _run, label, _origin in anns:
        recipe = _recipe(model.ticket)
        if recipe is not None:
            out[label] = recipe
    return out
