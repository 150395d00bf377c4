"""NIR graph -> :class:`~slt_deploy.compile.ir.LoweredNetwork` (floating point); fixed point is a second pass.

The graph is walked in topological order with one handler per NIR node type (:data:`HANDLERS`). What flows
between handlers is a :class:`_Signal`: an affine function ``y = sum_src M_src @ out(src) + const`` of the
outputs of neuron populations (or of the input), in NIR flat order. Linear nodes (Affine, Linear, Conv2d,
AvgPool2d, SumPool2d, Flatten, Scale) compose into it, so conv -> pool -> LIF becomes one synapse matrix; a
neuron node (LIF, IF, CubaLIF) turns its input signal into one :class:`Projection` per source population and
becomes a population itself; the Output node turns its signal into the readout.

Neuron parameters follow the NIR executor's discretization (forward Euler, coefficients computed in float64 and
rounded once to float32), so for snnTorch graphs ``decay == beta`` and ``gain == 1`` exactly:

    LIF     v <- decay v + gain I + k v_leak      -> Lava du = 1, dv = 1 - decay, rows of W scaled by gain,
                                                     bias = gain * const + k v_leak, vth = v_threshold
    IF      v <- v + (r dt) I                     -> dv = 0, gain = r dt
    CubaLIF I <- a I + g_s x ; v <- d v + g_m I   -> du = 1 - a, dv = 1 - d, rows scaled by g_m g_s,
                                                     current_bias = g_m g_s const (NIR: the bias is part of x)

Per-neuron parameters are kept per neuron; the Lava backend groups neurons with equal (du, dv, vth) into one LIF
process each, and the fixed-point pass folds per-neuron thresholds into the weights (exact for reset to zero and
by subtraction). ``reset: subtract`` metadata gives a subtract-reset population (see :mod:`.ir`).

An edge that carries the previous step's spikes (on a cycle, :func:`~slt_deploy.exporters.nir_format.
recurrent_edges`) makes its source a *delayed* term of the signal (``_Signal.delayed``), and the projection built
from it a recurrent one, whatever the cycle's length; lags then follow ``lag(target) = lag(source)`` for a
recurrent projection and ``lag(source) + 1`` for any other (:func:`_lags`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

import nir
import numpy as np
import scipy.sparse as sp

from ..errors import ExportError
from ..exporters.nir_checks import euler_step
from ..exporters.nir_format import DEFAULT_DT, execution_order, predecessors
from ..utils import registrar
from .errors import CompileError
from .ir import (FIRST_LAYER_MODES, RESETS, TARGETS, HostLayer, InputSpec, LoweredNetwork, Population, Projection,
                 Readout, Shape, lava_order)

# ------------------------------------------------------------------------------------------ linear operators


def _pair(value, name: str, what: str) -> Tuple[int, int]:
    arr = np.asarray(value).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise CompileError(f"node {name!r}: {what} {value!r} is not one or two integers")
    return int(arr[0]), int(arr[1])


def conv_matrix(weight: np.ndarray, in_shape: Shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                groups: int = 1) -> Tuple[sp.csr_matrix, Shape]:
    """``torch.nn.functional.conv2d`` (cross-correlation, zero padding) as a sparse matrix in NIR (CHW) flat order.

    ``weight`` is (C_out, C_in/groups, kH, kW); returns (matrix (C_out*H_out*W_out, C*H*W), (C_out, H_out, W_out)).
    Zero kernel entries (pruned weights) produce no matrix entries.
    """
    c_out, c_in_g, kh, kw = weight.shape
    c, h, w = in_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"kernel {kh}x{kw} does not fit input {h}x{w} with padding {padding}")
    co, ci, i, j = np.nonzero(weight)
    values = weight[co, ci, i, j].astype(np.float64)
    cin = (co // (c_out // groups)) * c_in_g + ci
    ho, wo = (a.ravel() for a in np.meshgrid(np.arange(h_out), np.arange(w_out), indexing="ij"))
    hi = ho[None, :] * sh - ph + i[:, None] * dh
    wi = wo[None, :] * sw - pw + j[:, None] * dw
    valid = (hi >= 0) & (hi < h) & (wi >= 0) & (wi < w)
    rows = (co[:, None] * (h_out * w_out) + ho[None, :] * w_out + wo[None, :])[valid]
    cols = (cin[:, None] * (h * w) + hi * w + wi)[valid]
    data = np.broadcast_to(values[:, None], valid.shape)[valid]
    shape = (c_out * h_out * w_out, c * h * w)
    return sp.csr_matrix((data, (rows, cols)), shape=shape), (c_out, h_out, w_out)


def pool_matrix(in_shape: Shape, kernel, stride, padding, value: float) -> Tuple[sp.csr_matrix, Shape]:
    """Average (value = 1/(kH kW), padding counted) or sum (value = 1) pooling as a depthwise conv matrix."""
    c = in_shape[0]
    weight = np.full((c, 1, kernel[0], kernel[1]), value, dtype=np.float64)
    return conv_matrix(weight, in_shape, stride, padding, (1, 1), groups=c)


# ------------------------------------------------------------------------------------------- lowering state

@dataclass
class _Signal:
    """``y = sum_src terms[src] @ out(src) + const`` in NIR flat order; ``nodes`` are the linear nodes applied."""

    shape: Shape
    terms: "OrderedDict[str, sp.csr_matrix]"
    const: np.ndarray
    nodes: Tuple[str, ...] = ()
    li: Optional[Tuple[str, np.ndarray, np.ndarray]] = None  # (node, decay, gain) of a readout LI node
    delayed: FrozenSet[str] = frozenset()  # sources whose term carries their spikes of the previous step

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def apply(self, name: str, matrix: sp.csr_matrix, shape: Shape, bias: Optional[np.ndarray] = None):
        const = matrix @ self.const
        if bias is not None:
            const = const + bias
        terms = OrderedDict((src, sp.csr_matrix(matrix @ m)) for src, m in self.terms.items())
        return _Signal(tuple(shape), terms, const, self.nodes + (name,), delayed=self.delayed)


def _identity_signal(source: str, shape: Shape, delayed: bool = False) -> _Signal:
    n = int(np.prod(shape))
    return _Signal(tuple(shape), OrderedDict([(source, sp.identity(n, format="csr", dtype=np.float64))]),
                   np.zeros(n), delayed=frozenset([source]) if delayed else frozenset())


@dataclass
class _PopDraft:
    """A population before ordering: per-neuron float parameters in NIR flat order."""

    name: str
    node_type: str
    shape: Shape
    du: np.ndarray
    dv: np.ndarray
    vth: np.ndarray
    bias: np.ndarray
    reset: str = "zero"
    current_bias: Optional[np.ndarray] = None


@dataclass
class _ProjDraft:
    nodes: Tuple[str, ...]
    source: str
    target: str
    matrix: sp.csr_matrix  # NIR flat order, float64
    recurrent: bool = False  # carries the source's spikes of the previous step


@dataclass
class _Lowering:
    graph: "nir.NIRGraph"
    first_layer: str
    dt: float
    input_name: str = ""
    input_shape: Shape = ()
    pops: "OrderedDict[str, _PopDraft]" = field(default_factory=OrderedDict)
    projs: List[_ProjDraft] = field(default_factory=list)
    host: Optional[_ProjDraft] = None
    host_bias: Optional[np.ndarray] = None
    readout: Optional[dict] = None

    def node_dt(self, node) -> float:
        return float((node.metadata or {}).get("dt", self.dt))


Handler = Callable[[_Lowering, str, object, List[_Signal]], _Signal]
HANDLERS: Dict[type, Handler] = {}

# NIR node types with no mapping, and why (the error names them).
UNSUPPORTED: Dict[type, str] = {
    nir.Conv1d: "1-D convolutions are not mapped; only Conv2d",
    nir.Delay: "explicit NIR Delay nodes are not mapped (Lava Dense adds one step per layer by itself)",
    nir.Threshold: "a stateless threshold has no Lava LIF equivalent; use a LIF node",
    nir.CubaLI: "a current-based leaky-integrator readout is not mapped; use LI (or nothing) before the Output",
    nir.I: "a pure integrator is not mapped; use LI before the Output",
    nir.NIRGraph: "nested NIR subgraphs are not supported; flatten the graph first",
}


handles = registrar(HANDLERS, "compile handler")


def _one_input(name: str, node, inputs: List[_Signal]) -> _Signal:
    """Sum the signals on every edge into a node (NIR semantics); they must have the same shape."""
    sig = inputs[0]
    for other in inputs[1:]:
        if other.shape != sig.shape:
            raise CompileError(f"node {name!r} ({type(node).__name__}): inputs of shapes {sig.shape} and "
                               f"{other.shape} cannot be summed")
        if other.li is not None or sig.li is not None:
            raise CompileError(f"node {name!r}: an LI readout node can only feed the Output node")
        terms = OrderedDict(sig.terms)
        for src, m in other.terms.items():
            if src in terms and (src in sig.delayed) != (src in other.delayed):
                raise CompileError(f"node {name!r}: it receives the neuron layer {src!r} both in step and delayed "
                                   f"by one step (through a cycle); such a mix is not mapped")
            terms[src] = sp.csr_matrix(terms[src] + m) if src in terms else m
        sig = _Signal(sig.shape, terms, sig.const + other.const, sig.nodes + other.nodes,
                      delayed=sig.delayed | other.delayed)
    if sig.li is not None and not isinstance(node, nir.Output):
        raise CompileError(f"node {name!r} ({type(node).__name__}) follows the LI node {sig.li[0]!r}; a "
                           f"non-spiking LI node is only supported directly before the Output node")
    return sig


# ---------------------------------------------------------------------------------------------- handlers

@handles(nir.Input)
def _input(low: _Lowering, name, node, inputs):
    shape = tuple(int(d) for d in np.asarray(next(iter(node.input_type.values()))).ravel())
    low.input_name, low.input_shape = name, shape
    return _identity_signal(name, shape)


@handles(nir.Affine, nir.Linear)
def _affine(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.ndim != 2:
        raise CompileError(f"node {name!r} ({type(node).__name__}): weight must be 2-D, got {weight.shape}")
    if sig.shape != (weight.shape[1],):
        raise CompileError(f"node {name!r} ({type(node).__name__}) expects {weight.shape[1]} inputs but receives "
                           f"shape {sig.shape}; a Flatten node is missing")
    bias = np.asarray(node.bias, dtype=np.float64).ravel() if isinstance(node, nir.Affine) else None
    return sig.apply(name, sp.csr_matrix(weight), (weight.shape[0],), bias)


def _conv_padding(name, node, in_hw, kernel, dilation) -> Tuple[int, int]:
    if isinstance(node.padding, str):
        if node.padding == "valid":
            return (0, 0)
        pads = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if node.padding != "same" or any(p % 2 for p in pads):
            raise CompileError(f"node {name!r} (Conv2d): padding {node.padding!r} is not supported")
        return tuple(p // 2 for p in pads)
    return _pair(node.padding, name, "padding")


@handles(nir.Conv2d)
def _conv2d(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    weight = np.asarray(node.weight, dtype=np.float64)
    groups = int(node.groups)
    if len(sig.shape) != 3 or weight.ndim != 4 or sig.shape[0] != weight.shape[1] * groups:
        raise CompileError(f"node {name!r} (Conv2d): weight {weight.shape} (groups={groups}) does not match "
                           f"input shape {sig.shape} (C, H, W)")
    stride, dilation = _pair(node.stride, name, "stride"), _pair(node.dilation, name, "dilation")
    padding = _conv_padding(name, node, sig.shape[1:], weight.shape[2:], dilation)
    try:
        matrix, out_shape = conv_matrix(weight, sig.shape, stride, padding, dilation, groups)
    except ValueError as exc:
        raise CompileError(f"node {name!r} (Conv2d): {exc}") from None
    bias = np.repeat(np.asarray(node.bias, dtype=np.float64).ravel(), out_shape[1] * out_shape[2]) \
        if node.bias is not None else None
    return sig.apply(name, matrix, out_shape, bias)


@handles(nir.AvgPool2d, nir.SumPool2d)
def _pool2d(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    if len(sig.shape) != 3:
        raise CompileError(f"node {name!r} ({type(node).__name__}) needs a (C, H, W) input, got {sig.shape}")
    kernel = _pair(node.kernel_size, name, "kernel_size")
    stride = _pair(node.stride, name, "stride")
    padding = _pair(node.padding, name, "padding")
    value = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (kernel[0] * kernel[1])
    try:
        matrix, out_shape = pool_matrix(sig.shape, kernel, stride, padding, value)
    except ValueError as exc:
        raise CompileError(f"node {name!r} ({type(node).__name__}): {exc}") from None
    return sig.apply(name, matrix, out_shape)


@handles(nir.Flatten)
def _flatten(low, name, node, inputs):
    # NIR flat order is the C-order flattening, so Flatten changes the shape only (Lava order is restored by
    # the population's nir_index permutation)
    sig = _one_input(name, node, inputs)
    ndim = len(sig.shape)
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = start % ndim if ndim else 0, end % ndim if ndim else 0
    shape = sig.shape[:start] + (int(np.prod(sig.shape[start:end + 1])),) + sig.shape[end + 1:]
    return replace(sig, shape=shape, nodes=sig.nodes + (name,))


@handles(nir.Scale)
def _scale(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    scale = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), sig.shape).ravel()
    return sig.apply(name, sp.diags(scale, format="csr"), sig.shape)


def _f32(x) -> np.ndarray:
    """Round a float64 coefficient to float32 and back, as the NIR executor does (exact beta for snnTorch)."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def _per_neuron(name: str, what: str, value, shape: Shape) -> np.ndarray:
    arr = np.asarray(value if value is not None else 0.0, dtype=np.float64)
    try:
        return np.broadcast_to(arr, shape).ravel().copy()
    except ValueError:
        raise CompileError(f"node {name!r}: {what} of shape {arr.shape} does not match the input shape "
                           f"{shape}") from None


def _euler(name, tau, r, shape, dt, what: str = "tau") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    tau = _per_neuron(name, what, tau, shape)
    k = euler_step(name, what, tau, dt)  # tau <= 0 or tau < dt: one line naming the node, as in the reference
    return _f32(1.0 - k), _f32(_per_neuron(name, "r", r, shape) * k), k


def _check_reset(name: str, node) -> str:
    """The node's reset mode (metadata ``reset``, default NIR's reset to ``v_reset``), if it can be mapped."""
    reset = str((node.metadata or {}).get("reset", "zero"))
    if reset not in RESETS:
        advice = {"none": "a neuron that never resets cannot be mapped",
                  "hold": "snnTorch Synaptic's zero reset also drops the next step's input; Lava does not"}
        raise CompileError(f"node {name!r} ({type(node).__name__}): reset mode {reset!r} is not supported (only "
                           f"{' and '.join(RESETS)}); {advice.get(reset, '')}".rstrip("; "))
    v_reset = getattr(node, "v_reset", None)
    if reset == "zero" and v_reset is not None and bool((np.asarray(v_reset) != 0).any()):
        raise CompileError(f"node {name!r} ({type(node).__name__}): v_reset must be 0 (Lava resets to 0), got "
                           f"{np.unique(np.asarray(v_reset))[:3]}")
    return reset


def _add_population(low: _Lowering, name, node, sig: _Signal, *, du, dv, gain, extra_bias, reset,
                    const_gain=None, current_bias: bool = False):
    """Turn the input signal of a neuron node into projections (and host input) plus a population.

    ``current_bias``: the signal's constant enters the synaptic current (CubaLIF), not the voltage bias."""
    thr = _per_neuron(name, "v_threshold", node.v_threshold, sig.shape)
    if not bool((thr > 0).all()):
        raise CompileError(f"node {name!r} ({type(node).__name__}): v_threshold must be > 0, got "
                           f"min {thr.min():.4g}")
    const_gain = gain if const_gain is None else const_gain
    rows = sp.diags(gain, format="csr")
    const = const_gain * sig.const
    bias = extra_bias if current_bias else const + extra_bias
    cur_bias = const if current_bias else None
    for src, matrix in sig.terms.items():
        recurrent = src in sig.delayed
        if src != low.input_name and src not in low.pops and not recurrent:
            raise CompileError(f"node {name!r}: its input from the neuron layer {src!r} comes before that layer "
                               f"is computed, on no cycle")
        scaled = sp.csr_matrix(matrix if bool((gain == 1).all()) else rows @ matrix)
        scaled.eliminate_zeros()
        draft = _ProjDraft(sig.nodes, src, name, scaled, recurrent)
        if src == low.input_name and low.first_layer == "host":
            if low.host is not None:
                raise CompileError(f"node {name!r}: the input feeds more than one neuron layer ({low.host.target!r} "
                                   f"and {name!r}); use first_layer='chip' with spike input")
            in_step = [s for s in sig.terms if s not in sig.delayed]  # recurrent inputs are on chip, in step
            if len(in_step) > 1:
                raise CompileError(f"node {name!r}: the first neuron layer receives the input and other layers "
                                   f"({', '.join(s for s in in_step if s != src)}); not supported with "
                                   f"first_layer='host'")
            # the host current carries the affine bias (into u, so a current bias too); the leak stays the
            # population's own bias (counted once)
            low.host, low.host_bias = draft, const
            bias, cur_bias = extra_bias, None
        else:
            low.projs.append(draft)
    low.pops[name] = _PopDraft(name, type(node).__name__, sig.shape, du, dv, thr, bias, reset, cur_bias)
    return _identity_signal(name, sig.shape)


@handles(nir.LIF)
def _lif(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    reset = _check_reset(name, node)
    decay, gain, k = _euler(name, node.tau, node.r, sig.shape, low.node_dt(node))
    leak = _f32(k * _per_neuron(name, "v_leak", node.v_leak, sig.shape))
    return _add_population(low, name, node, sig, du=np.ones(sig.size), dv=1.0 - decay, gain=gain,
                           extra_bias=leak, reset=reset)


@handles(nir.IF)
def _if(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    reset = _check_reset(name, node)
    gain = _f32(_per_neuron(name, "r", node.r, sig.shape) * low.node_dt(node))
    return _add_population(low, name, node, sig, du=np.ones(sig.size), dv=np.zeros(sig.size), gain=gain,
                           extra_bias=np.zeros(sig.size), reset=reset)


@handles(nir.CubaLIF)
def _cubalif(low, name, node, inputs):
    sig = _one_input(name, node, inputs)
    reset = _check_reset(name, node)
    dt = low.node_dt(node)
    syn_decay, syn_gain, _ = _euler(name, node.tau_syn, node.w_in, sig.shape, dt, "tau_syn")
    mem_decay, mem_gain, k = _euler(name, node.tau_mem, node.r, sig.shape, dt, "tau_mem")
    # NIR: the bias of the layer before is part of the input S, so it accumulates in the current I (Lava's own
    # bias enters v): with current memory it is a current bias (the host-fed layer carries it in its host current)
    in_current = bool((sig.const != 0).any()) and not bool((syn_decay == 0).all())
    leak = _f32(k * _per_neuron(name, "v_leak", node.v_leak, sig.shape))
    return _add_population(low, name, node, sig, du=1.0 - syn_decay, dv=1.0 - mem_decay,
                           gain=mem_gain * syn_gain, extra_bias=leak, reset=reset, current_bias=in_current)


@handles(nir.LI)
def _li(low, name, node, inputs):
    """A leaky integrator is only accepted as the readout filter (applied on the host, exact)."""
    sig = _one_input(name, node, inputs)
    decay, gain, k = _euler(name, node.tau, node.r, sig.shape, low.node_dt(node))
    leak = k * _per_neuron(name, "v_leak", node.v_leak, sig.shape)
    if bool((leak != 0).any()):
        raise CompileError(f"node {name!r} (LI): v_leak != 0 is not supported for the readout")
    return replace(sig, li=(name, decay, gain))


@handles(nir.Output)
def _output(low, name, node, inputs):
    if low.readout is not None:
        raise CompileError(f"node {name!r}: the graph has more than one Output node; only one is supported")
    li = inputs[0].li if len(inputs) == 1 else None
    sig = _one_input(name, node, [replace(s, li=None) for s in inputs])
    nodes = sig.nodes + ((li[0],) if li else ())
    if not sig.nodes and len(sig.terms) == 1 and li is None:
        (src,) = sig.terms
        if src not in low.pops:
            raise CompileError(f"node {name!r}: the Output is wired straight to the Input")
        low.readout = dict(name=name, kind="spikes", shape=sig.shape, source=src, nodes=nodes)
        return sig
    for src, matrix in sig.terms.items():
        if src == low.input_name:
            raise CompileError(f"node {name!r}: the Output depends on the Input through linear nodes only; "
                               f"at least one neuron layer is needed")
        m = sp.csr_matrix(matrix)
        m.eliminate_zeros()
        low.projs.append(_ProjDraft(sig.nodes, src, name, m, src in sig.delayed))
    low.readout = dict(name=name, kind="current", shape=sig.shape, bias=sig.const.copy(), nodes=nodes,
                       decay=li[1] if li else None, gain=li[2] if li else None)
    return sig


# ------------------------------------------------------------------------------------------------- driver

def _node_shape(node) -> Shape:
    """A spiking node's output shape: its declared output type, else its threshold's shape."""
    declared = next(iter((node.output_type or {}).values()), None)
    if declared is not None and np.asarray(declared).size:
        return tuple(int(d) for d in np.asarray(declared).ravel())
    return tuple(np.shape(node.v_threshold))


def _check_structure(graph) -> List[str]:
    """Topological order, with one-line errors for cycles, dangling nodes and unknown node types."""
    if not isinstance(graph, nir.NIRGraph):
        raise CompileError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    try:
        order, _ = execution_order(graph)
    except ExportError as exc:
        raise CompileError(str(exc)) from None
    for name in order:
        node = graph.nodes[name]
        if type(node) in UNSUPPORTED:
            raise CompileError(f"node {name!r} ({type(node).__name__}) cannot be compiled: "
                               f"{UNSUPPORTED[type(node)]}")
        if type(node) not in HANDLERS:
            known = ", ".join(sorted(t.__name__ for t in HANDLERS))
            raise CompileError(f"node {name!r} has type {type(node).__name__}, which the compiler does not map; "
                               f"supported: {known}")
    inputs = [n for n in order if isinstance(graph.nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(graph.nodes[n], nir.Output)]
    if len(inputs) != 1:
        raise CompileError(f"the graph needs exactly one Input node, it has {len(inputs)}")
    if not outputs:
        raise CompileError("the graph has no Output node")
    succ: Dict[str, List[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        succ[src].append(dst)
    preds = predecessors(graph)
    reached, stack = set(), [inputs[0]]
    while stack:
        n = stack.pop()
        if n not in reached:
            reached.add(n)
            stack.extend(succ[n])
    useful, stack = set(), list(outputs)
    while stack:
        n = stack.pop()
        if n not in useful:
            useful.add(n)
            stack.extend(preds[n])
    loose = [n for n in order if n not in reached or n not in useful]
    if loose:
        why = ", ".join(f"{n!r} ({'not reachable from the Input' if n not in reached else 'reaches no Output'})"
                        for n in loose)
        raise CompileError(f"disconnected node(s): {why}")
    return order


def _lags(low: _Lowering, order: List[str]) -> Dict[str, int]:
    """Lava step offset of every population: one step per forward synapse layer, none for a recurrent one (its
    Lava step is the reference's previous step, see :mod:`.ir`); all inputs of a node must agree.

    On a cycle a population's lag may come from a layer computed after it, so ``lag(target) = lag(source) +
    (0 if recurrent else 1)`` is propagated from the input until nothing changes, then checked on every input."""
    lags = {low.input_name: 0}
    if low.host is not None:
        lags[low.host.target] = 0
    changed = True
    while changed:
        changed = False
        for p in low.projs:
            if p.target not in lags and p.source in lags:
                lags[p.target] = lags[p.source] + (0 if p.recurrent else 1)
                changed = True
    for name in order:
        incoming = [p for p in low.projs if p.target == name]
        if name == low.input_name or not incoming:  # the spikes readout reads its population directly
            continue
        arrivals = {p.source: lags[p.source] + (0 if p.recurrent else 1) for p in incoming}
        if low.host is not None and low.host.target == name:
            arrivals[low.input_name] = 0  # the host current
        if len(set(arrivals.values())) > 1:
            paths = ", ".join(f"{src} (+{lag})" for src, lag in arrivals.items())
            raise CompileError(f"node {name!r}: its inputs arrive with different delays ({paths}); paths of unequal "
                               f"length (residual shortcuts, or a cycle entered at two layers) need synaptic "
                               f"delays, which are not mapped yet")
    return lags


def _options(target: str, first_layer: str, sparse_below: float) -> None:
    if target not in TARGETS:
        raise CompileError(f"target {target!r} is not one of: {', '.join(TARGETS)}")
    if first_layer not in FIRST_LAYER_MODES:
        raise CompileError(f"first_layer {first_layer!r} is not one of: {', '.join(FIRST_LAYER_MODES)}")
    if not 0.0 <= sparse_below <= 1.0:
        raise CompileError(f"sparse_below={sparse_below} must be in [0, 1]")


def _store(matrix: sp.csr_matrix, sparse_below: float):
    """Sparse (Lava Sparse) when the density is below the threshold, else a dense array (Lava Dense)."""
    n = matrix.shape[0] * matrix.shape[1]
    if n and matrix.nnz / n < sparse_below:
        out = sp.csr_matrix(matrix)
        out.sort_indices()
        return out
    return matrix.toarray()


def lower_float(graph, *, first_layer: str = "host", sparse_below: float = 0.5) -> LoweredNetwork:
    """Lower a NIR graph to the floating-point IR (see :mod:`slt_deploy.compile.ir` for the equations)."""
    _options("floating_pt", first_layer, sparse_below)
    order = _check_structure(graph)
    delayed = set(map(tuple, execution_order(graph)[1]))
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    low = _Lowering(graph, first_layer, float(meta.get("dt", DEFAULT_DT)))
    preds = predecessors(graph)
    signals: Dict[str, _Signal] = {}
    for name in order:
        node = graph.nodes[name]
        # a recurrent edge carries its spiking node's output of the previous step: the population's own spikes
        inputs = [_identity_signal(p, _node_shape(graph.nodes[p]), delayed=True) if (p, name) in delayed
                  else signals[p] for p in preds[name]]
        signals[name] = HANDLERS[type(node)](low, name, node, inputs)
    if not low.pops:
        raise CompileError("the graph has no neuron node (LIF, IF or CubaLIF) to map to Lava")
    lags = _lags(low, order)

    in_lava_shape, in_index = lava_order(low.input_shape)
    spec = InputSpec(low.input_name, low.input_shape, in_lava_shape, in_index,
                     "current" if first_layer == "host" else "spikes")
    index = {low.input_name: in_index}
    pops = []
    for draft in low.pops.values():
        lava_shape, nir_index = lava_order(draft.shape)
        index[draft.name] = nir_index
        pops.append(Population(
            name=draft.name, node_type=draft.node_type, nir_shape=draft.shape, lava_shape=lava_shape,
            nir_index=nir_index, du=draft.du[nir_index], dv=draft.dv[nir_index], vth=draft.vth[nir_index],
            bias_mant=draft.bias[nir_index], bias_exp=np.zeros(len(nir_index), np.int64), lag=lags[draft.name],
            reset=draft.reset,
            current_bias=None if draft.current_bias is None else draft.current_bias[nir_index]))
    readout_name = low.readout["name"]
    projs = []
    for d in low.projs:
        rows = index.get(d.target, np.arange(d.matrix.shape[0]))  # readout rows stay in NIR order
        m = d.matrix[rows][:, index[d.source]]
        projs.append(Projection(name="+".join(d.nodes) or f"{d.source}->{d.target}", nodes=d.nodes,
                                source=d.source, target=d.target, weight=_store(m, sparse_below),
                                delay=1 if d.recurrent else lags[d.target] - lags[d.source], recurrent=d.recurrent))
    host = None
    if low.host is not None:
        tgt = index[low.host.target]
        n = len(tgt)
        host = HostLayer(name="+".join(low.host.nodes), nodes=low.host.nodes, target=low.host.target,
                         weight=sp.csr_matrix(low.host.matrix[tgt][:, in_index]), bias=low.host_bias[tgt],
                         scale=np.ones(n), limit=float("inf"))
    r = low.readout
    if r["kind"] == "spikes":
        readout = Readout(name=readout_name, kind="spikes", nir_shape=r["shape"], lag=lags[r["source"]],
                          source=r["source"], nodes=r["nodes"])
    else:
        n = int(np.prod(r["shape"]))
        readout = Readout(name=readout_name, kind="current", nir_shape=r["shape"], lag=lags[readout_name],
                          scale=np.ones(n), bias=r["bias"], decay=r["decay"], gain=r["gain"], nodes=r["nodes"])
    keep = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
    return LoweredNetwork(target="floating_pt", first_layer=first_layer, input=spec, populations=tuple(pops),
                          projections=tuple(projs), readout=readout, host=host, metadata=keep)
