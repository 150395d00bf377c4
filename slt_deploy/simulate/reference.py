"""A small reference executor for NIR graphs (torch, float32, batched, one step at a time).

It is the ground truth the later stages (Lava compile, simulate) are compared against, and it runs any valid
NIR graph built from the supported nodes, not only ours: parameters may be scalars or anything that
broadcasts against the node's input.

Time is discretized with forward Euler and step ``dt`` (argument, else the node's ``"dt"`` metadata, else the
graph's, else 1e-4 s). For ``tau dv/dt = (v_leak - v) + r I`` one step is

    v <- (1 - k) v + (r k) I + k v_leak,     k = dt / tau,

with the three coefficients computed in float64 and rounded once to float32. For snnTorch's convention
(``tau = dt/(1-beta)``, ``r = 1/(1-beta)``, ``v_leak = 0``) they are exactly ``beta``, ``1`` and ``0``, so the
update is bit-identical to snnTorch's ``beta * mem + input``.

Spikes and resets follow snnTorch (``reset_delay=True``): ``s_t = [v_t > v_threshold]`` and the reset of a
spike is applied at the next step. The reset mode comes from the node's ``"reset"`` metadata (default
``"zero"``, NIR's own semantics):

- ``zero``:     ``v_t = decay * (v_reset if s_{t-1} else v_{t-1}) + gain * I_t``
- ``subtract``: ``v_t = decay * v_{t-1} + gain * I_t - v_threshold * s_{t-1}``
- ``hold``:     ``v_t = v_reset if s_{t-1} else decay * v_{t-1} + gain * I_t`` (snnTorch ``Synaptic``, zero reset)
- ``none``:     ``v_t = decay * v_{t-1} + gain * I_t`` (never reset)

Several edges into a node are summed. Stateful nodes keep their state across the steps of one
:meth:`NIRExecutor.run` call and start from zero at every call. A cycle through a spiking node is a recurrent
layer: the edge leaving the spiking node on the cycle carries its spikes of the previous step (zero at the first
step), so ``I_t = W_in x_t + W_rec s_{t-1} + b`` as in snnTorch's ``RLeaky``
(:func:`~slt_deploy.exporters.nir_format.recurrent_edges`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import nir
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ExportError
from ..utils import registrar
from ..exporters.nir_checks import euler_step
from ..exporters.nir_format import DEFAULT_DT, RESET_MODES, execution_order, predecessors

# (input, state) -> (output, new state); the state is None at the first step of a run.
Op = Callable[[torch.Tensor, Any], Tuple[torch.Tensor, Any]]
_COMPILERS: Dict[type, Callable[[str, Any, float], Op]] = {}


_compiles = registrar(_COMPILERS, "NIR executor handler")


def _tensor(value, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float64)).to(dtype)


def nir_ints(value, n: int) -> Tuple[int, ...]:
    arr = np.asarray(value).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, n)
    return tuple(int(x) for x in arr)


def _stateless(fn: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    return lambda x, state: (fn(x), None)


@_compiles(nir.Input, nir.Output)
def _identity(name, node, dt):
    return _stateless(lambda x: x)


@_compiles(nir.Affine, nir.Linear)
def _affine(name, node, dt):
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise ExportError(f"node {name!r} ({type(node).__name__}): only 2-D weights are supported, got shape "
                          f"{weight.shape}")
    w = _tensor(weight)
    b = _tensor(node.bias) if isinstance(node, nir.Affine) else None
    return _stateless(lambda x: F.linear(x, w, b))


@_compiles(nir.Conv2d)
def _conv2d(name, node, dt):
    w, b = _tensor(node.weight), _tensor(node.bias)
    padding = node.padding if isinstance(node.padding, str) else nir_ints(node.padding, 2)
    stride, dilation, groups = nir_ints(node.stride, 2), nir_ints(node.dilation, 2), int(node.groups)
    return _stateless(lambda x: F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation,
                                         groups=groups))


@_compiles(nir.AvgPool2d, nir.SumPool2d)
def _pool2d(name, node, dt):
    kernel, stride, padding = nir_ints(node.kernel_size, 2), nir_ints(node.stride, 2), nir_ints(node.padding, 2)
    # same kernel as torch.nn.AvgPool2d (bit-identical); a sum pool divides by 1
    divisor = 1 if isinstance(node, nir.SumPool2d) else None
    return _stateless(lambda x: F.avg_pool2d(x, kernel, stride, padding, divisor_override=divisor))


@_compiles(nir.Flatten)
def _flatten(name, node, dt):
    # NIR dims exclude the batch dimension
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = (start + 1 if start >= 0 else start), (end + 1 if end >= 0 else end)
    return _stateless(lambda x: torch.flatten(x, start, end))


@_compiles(nir.Scale)
def _scale(name, node, dt):
    s = _tensor(node.scale)
    return _stateless(lambda x: x * s)


@_compiles(nir.Threshold)
def _threshold(name, node, dt):
    thr = _tensor(node.threshold)
    return _stateless(lambda x: (x > thr).to(x.dtype))


def _euler(name: str, tau, r, v_leak, dt: float, what: str = "tau"):
    """(decay, gain, leak) of one forward-Euler step, in float64 then float32; leak is None when zero."""
    k = euler_step(name, what, tau, dt)  # refuses tau <= 0 and tau < dt, as every other backend does
    leak = k * np.asarray(v_leak, dtype=np.float64)
    return _tensor(1.0 - k), _tensor(np.asarray(r, dtype=np.float64) * k), \
        (_tensor(leak) if bool((leak != 0).any()) else None)


@dataclass
class _Membrane:
    """Spiking membrane shared by LIF, IF and CubaLIF (see the module docstring for the maths)."""

    decay: torch.Tensor
    gain: torch.Tensor
    leak: Optional[torch.Tensor]
    threshold: torch.Tensor
    v_reset: torch.Tensor
    reset: str

    def step(self, current: torch.Tensor, v: Optional[torch.Tensor], spiked: Optional[torch.Tensor]):
        if v is None:  # first step: zero state shaped like the input and the parameters together
            v = torch.zeros(torch.broadcast_shapes(current.shape, self.threshold.shape))
            spiked = torch.zeros_like(v)
        if self.reset == "zero":
            v = torch.where(spiked.bool(), self.v_reset, v)
        # written in snnTorch's order, so the float32 result is bit-identical: (beta * v + I) - thr * s
        v = self.decay * v + self.gain * current
        if self.leak is not None:
            v = v + self.leak
        if self.reset == "subtract":
            v = v - spiked * self.threshold
        elif self.reset == "hold":
            v = torch.where(spiked.bool(), self.v_reset, v)
        spikes = (v > self.threshold).to(torch.float32)
        return v, spikes


def _reset_mode(name: str, node) -> str:
    reset = str((node.metadata or {}).get("reset", "zero"))
    if reset not in RESET_MODES:
        raise ExportError(f"node {name!r}: unknown reset mode {reset!r} in metadata; known: {', '.join(RESET_MODES)}")
    return reset


def _membrane(name, node, decay, gain, leak) -> _Membrane:
    v_reset = node.v_reset if node.v_reset is not None else np.zeros_like(node.v_threshold)
    return _Membrane(decay, gain, leak, _tensor(node.v_threshold), _tensor(v_reset), _reset_mode(name, node))


def _spiking(mem: _Membrane) -> Op:
    def op(x, state):
        v, s = mem.step(x, *(state or (None, None)))
        return s, (v, s)
    return op


@_compiles(nir.LIF)
def _lif(name, node, dt):
    return _spiking(_membrane(name, node, *_euler(name, node.tau, node.r, node.v_leak, dt)))


@_compiles(nir.IF)
def _if(name, node, dt):
    # dv/dt = r I: v <- v + (dt r) I  (r = 1/dt gives v + I)
    gain = _tensor(np.asarray(node.r, dtype=np.float64) * dt)
    return _spiking(_membrane(name, node, _tensor(1.0), gain, None))


@_compiles(nir.CubaLIF)
def _cubalif(name, node, dt):
    # tau_syn dI/dt = -I + w_in x  ->  I <- (1 - k_s) I + (w_in k_s) x ; the membrane then uses the new I
    syn_decay, syn_gain, _ = _euler(name, node.tau_syn, node.w_in, 0.0, dt, "tau_syn")
    mem = _membrane(name, node, *_euler(name, node.tau_mem, node.r, node.v_leak, dt, "tau_mem"))

    def op(x, state):
        i_syn, v, s = state if state is not None else (torch.zeros(()), None, None)
        i_syn = syn_decay * i_syn + syn_gain * x
        v, s = mem.step(i_syn, v, s)
        return s, (i_syn, v, s)
    return op


@_compiles(nir.LI)
def _li(name, node, dt):
    decay, gain, leak = _euler(name, node.tau, node.r, node.v_leak, dt)

    def op(x, v):
        v = decay * (v if v is not None else torch.zeros(())) + gain * x
        if leak is not None:
            v = v + leak
        return v, v
    return op


@_compiles(nir.I)
def _integrator(name, node, dt):
    gain = _tensor(np.asarray(node.r, dtype=np.float64) * dt)

    def op(x, v):
        v = (v if v is not None else torch.zeros(())) + gain * x
        return v, v
    return op


Outputs = Union[torch.Tensor, Dict[str, torch.Tensor]]


class NIRExecutor:
    """Runs a NIR graph on a (T, B, *input_shape) sequence and returns (T, B, *output_shape)."""

    def __init__(self, graph, dt: Optional[float] = None):
        if not isinstance(graph, nir.NIRGraph):
            raise ExportError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
        graph_dt = float((graph.metadata or {}).get("dt", DEFAULT_DT))
        self.graph = graph
        self.order, recurrent = execution_order(graph)
        self.delayed = set(map(tuple, recurrent))  # edges carrying the previous step's spikes
        self.preds = predecessors(graph)
        inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
        if len(inputs) != 1:
            raise ExportError(f"the executor needs exactly one Input node, the graph has {len(inputs)}")
        self.input = inputs[0]
        self.outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
        if not self.outputs:
            raise ExportError("the graph has no Output node")
        self.ops: Dict[str, Op] = {}
        for name in self.order:
            node = graph.nodes[name]
            compile_node = _COMPILERS.get(type(node))
            if compile_node is None:
                known = ", ".join(sorted(t.__name__ for t in _COMPILERS))
                raise ExportError(f"node {name!r} has type {type(node).__name__}, which the NIR executor does not "
                                  f"support; supported: {known}")
            node_dt = dt if dt is not None else float((node.metadata or {}).get("dt", graph_dt))
            self.ops[name] = compile_node(name, node, float(node_dt))
            if not self.preds[name] and name != self.input:
                raise ExportError(f"node {name!r} has no incoming edge and is not the Input node")

    def _shape(self, name: str) -> Tuple[int, ...]:
        """Output shape of a spiking node (its declared output type, else its threshold's shape)."""
        node = self.graph.nodes[name]
        declared = next(iter((node.output_type or {}).values()), None)
        if declared is not None and np.asarray(declared).size:
            return tuple(int(d) for d in np.asarray(declared).ravel())
        return tuple(np.shape(node.v_threshold))

    @property
    def input_shape(self) -> Optional[Tuple[int, ...]]:
        shape = self.graph.nodes[self.input].input_type.get("input")
        return None if shape is None else tuple(int(d) for d in np.asarray(shape).ravel())

    @torch.no_grad()
    def run(self, x_seq, *, record: bool = False):
        """Run every step of ``x_seq`` (T, B, *input_shape).

        Returns the output tensor (T, B, ...) for a graph with one Output node, else a dict by Output name.
        With ``record=True`` returns ``(outputs, per_node)`` where ``per_node[name]`` is that node's per-step
        output (T, B, ...): spikes for spiking nodes, currents for weight nodes.
        """
        x_seq = torch.as_tensor(x_seq, dtype=torch.float32)
        expected = self.input_shape
        if x_seq.dim() < 2 or (expected is not None and tuple(x_seq.shape[2:]) != expected):
            raise ExportError(f"input of shape {tuple(x_seq.shape)} does not match (T, B, {expected})")
        states: Dict[str, Any] = {name: None for name in self.order}
        trace: Dict[str, list] = {name: [] for name in self.order} if record else {}
        outs: Dict[str, list] = {name: [] for name in self.outputs}
        previous: Dict[str, torch.Tensor] = {}  # spikes of the last step, for recurrent edges
        for x_t in x_seq:
            values: Dict[str, torch.Tensor] = {}
            for name in self.order:
                if name == self.input:
                    x = x_t
                else:
                    x = None
                    for src in self.preds[name]:  # NIR sums every edge into a node
                        if (src, name) in self.delayed:
                            value = previous.get(src)
                            if value is None:  # before the first step: no spike (zeros of the node's shape)
                                value = torch.zeros((x_t.shape[0],) + self._shape(src))
                        else:
                            value = values[src]
                        x = value if x is None else x + value
                try:
                    values[name], states[name] = self.ops[name](x, states[name])
                except RuntimeError as exc:  # torch shape errors: name the node instead of a traceback
                    raise ExportError(f"node {name!r} ({type(self.graph.nodes[name]).__name__}) failed on input "
                                      f"of shape {tuple(x.shape)}: {str(exc).splitlines()[0]}") from None
                if record:
                    trace[name].append(values[name])
            for name in self.outputs:
                outs[name].append(values[name])
            previous = {src: values[src] for src, _ in self.delayed}
        stacked = {name: torch.stack(v) for name, v in outs.items()}
        result: Outputs = stacked[self.outputs[0]] if len(stacked) == 1 else stacked
        if record:
            return result, {name: torch.stack(v) for name, v in trace.items()}
        return result


# ------------------------------------------------------------------ the graph as synapse layers

# NIR node kinds the activity counter knows
WEIGHT_NODES = (nir.Affine, nir.Linear, nir.Conv2d)
_NIR_SPIKING = (nir.LIF, nir.IF, nir.CubaLIF)
_NIR_READOUT = (nir.LI, nir.I)   # non-spiking readouts (leaky integrator, integrator)


@dataclass(frozen=True)
class SynapseChain:
    """One synapse layer of a NIR graph: its weight node (None: an identity edge between two populations),
    the node whose recorded output is its input (``tap``), the pooling folded into it, and its populations."""

    name: str
    node: Any
    tap: str
    source: Optional[str]
    pre: Tuple[Any, ...] = ()        # AvgPool2d nodes between the tap and a Linear/Affine
    post: Tuple[Any, ...] = ()       # AvgPool2d nodes between a Conv2d and its neuron
    target: Optional[str] = None     # spiking node; None for the non-spiking readout
    delayed: bool = False            # its input edge carries the tap's spikes of the previous step (a cycle)

    @property
    def recurrent(self) -> bool:
        """On a cycle (RLeaky's recurrent weight, or a projection of a cycle through several layers): its input
        is the previous step's spikes (:func:`~slt_deploy.exporters.nir_format.recurrent_edges`)."""
        return self.delayed


def _one(names: List[str], node: str, direction: str, where: str) -> str:
    if len(names) != 1:
        raise ExportError(f"{where}: node {node!r} has {len(names)} {direction}s; synapse "
                          f"layers with one input and one output path")
    return names[0]


def synapse_chains(graph, where: str = "graph") -> List[SynapseChain]:
    """Synapse layers of a NIR graph, in execution order, the way the activity counter
    (:mod:`slt_deploy.cost.activity`) sees a ticket:
    weight node (Affine/Linear/Conv2d) fed by the Input or a spiking node through Flatten/AvgPool2d, feeding
    a spiking node (through AvgPool2d/Flatten) or, for the readout, the Output (directly or through LI).
    A spiking node fed straight by another (a residual identity skip) is a one-to-one layer. A recurrent
    weight node (on a cycle through its spiking node) is a layer from that population onto itself
    (:attr:`SynapseChain.recurrent`)."""
    preds = predecessors(graph)
    succs: Dict[str, List[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        succs[src].append(dst)
    chains: List[SynapseChain] = []
    order, recurrent = execution_order(graph)
    delayed = set(map(tuple, recurrent))
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, WEIGHT_NODES):
            chains.append(_weight_chain(name, graph, preds, succs, where, delayed))
        elif isinstance(node, _NIR_SPIKING):
            for p in preds[name]:
                if isinstance(graph.nodes[p], _NIR_SPIKING + (nir.Input,)):
                    source = p if isinstance(graph.nodes[p], _NIR_SPIKING) else None
                    chains.append(SynapseChain(f"{p}->{name}", None, p, source, target=name,
                                               delayed=(p, name) in delayed))
    # a recurrent weight node has no in-step input, so the execution order may put it first: list it after the
    # feed-forward layers into its population, as snnTorch's model order does (the first layer into a population
    # carries the population's neuron updates and spikes in the counts)
    ordered = [c for c in chains if not c.recurrent]
    for chain in (c for c in chains if c.recurrent):
        into = [i for i, c in enumerate(ordered) if c.target == chain.target]
        ordered.insert(into[-1] + 1 if into else len(ordered), chain)
    chains = ordered
    targets = {c.target for c in chains}
    for name, node in graph.nodes.items():
        if isinstance(node, _NIR_SPIKING) and name not in targets:
            raise ExportError(f"{where}: spiking node {name!r} is not fed by a weight node; its synapses "
                              f"cannot be counted")
    if not chains:
        raise ExportError(f"{where}: the graph has no Affine, Linear or Conv2d node")
    return chains


def _weight_chain(name: str, graph, preds, succs, where: str, delayed=frozenset()) -> SynapseChain:
    pre: List[Any] = []
    after, tap = name, _one(preds[name], name, "input", where)
    while isinstance(graph.nodes[tap], (nir.Flatten, nir.AvgPool2d)):
        if isinstance(graph.nodes[tap], nir.AvgPool2d):
            pre.insert(0, graph.nodes[tap])
        after, tap = tap, _one(preds[tap], tap, "input", where)
    if not isinstance(graph.nodes[tap], _NIR_SPIKING + (nir.Input,)):
        raise ExportError(f"{where}: weight node {name!r} is fed by {tap!r} ({type(graph.nodes[tap]).__name__}); "
                          f"supported are inputs from the Input or a spiking node via Flatten/AvgPool2d")
    if pre and isinstance(graph.nodes[name], nir.Conv2d):
        raise ExportError(f"{where}: pooling before conv node {name!r} cannot be folded into it")
    post: List[Any] = []
    nxt = _one(succs[name], name, "output", where)
    while isinstance(graph.nodes[nxt], (nir.Flatten, nir.AvgPool2d)):
        if isinstance(graph.nodes[nxt], nir.AvgPool2d):
            post.append(graph.nodes[nxt])
        nxt = _one(succs[nxt], nxt, "output", where)
    target = _target(name, nxt, graph, succs, where)
    source = tap if isinstance(graph.nodes[tap], _NIR_SPIKING) else None
    return SynapseChain(name, graph.nodes[name], tap, source, tuple(pre), tuple(post), target,
                        delayed=(tap, after) in delayed)


def _target(name: str, nxt: str, graph, succs, where: str) -> Optional[str]:
    node = graph.nodes[nxt]
    if isinstance(node, _NIR_SPIKING):
        return nxt
    if isinstance(node, nir.Output):
        return None
    if isinstance(node, _NIR_READOUT) and all(isinstance(graph.nodes[s], nir.Output) for s in succs[nxt]):
        return None  # a leaky-integrator readout: non-spiking, like an Affine wired to the Output
    raise ExportError(f"{where}: weight node {name!r} feeds {nxt!r} ({type(node).__name__}); supported are "
                      f"a spiking node or the Output after it")
