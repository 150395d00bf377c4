"""The report's inputs: each SNN as read from its file (a ticket, or a NIR graph with its samples), nothing run yet.

Takes ticket and NIR paths (and, for graphs, where their samples come from: :class:`GraphInputs`); gives a
:class:`Network` per input, checked when it is read (what cannot be deployed says so here, in one line).
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import nir
import numpy as np

from ..config import DataConfig
from ..data.encoding import first_layer_on_host
from ..errors import SltError
from ..exporters.nir_format import SPIKING_NODES
from ..simulate.reference import WEIGHT_NODES, SynapseChain, synapse_chains
from ..simulate.workload import graph_input_shape, load_input_file, nir_data, nir_metadata, ticket_data
from ..ticket import Ticket

PathLike = Union[str, Path]


class ReportError(SltError):
    """The report's inputs do not fit together (ANN vs ticket, missing metadata, unsupported graph)."""


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

    @property
    def first_layer_on_host(self) -> bool:
        """Whether the deployment computes the first layer on the host (the one rule,
        :func:`slt_deploy.data.encoding.first_layer_on_host`; samples given as a file count as spikes when
        every value is 0 or 1)."""
        return first_layer_on_host(self.encoding, self.workload is not None and self.workload.binary)


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
