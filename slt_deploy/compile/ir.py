"""The lowered network: a small, typed, Lava-free description of what runs on Loihi.

:func:`slt_deploy.compile.lower` turns a NIR graph into a :class:`LoweredNetwork`; the Lava backend
(:mod:`slt_deploy.simulate.lava`) builds processes from it, and a simulator can reproduce Lava's results from it
alone. Every array is numpy (weights may be ``scipy.sparse.csr_matrix``); nothing here imports Lava or torch.

Order and shapes
----------------
Each population keeps its NIR shape (``(C, H, W)`` or ``(n,)``) and is stored in **Lava's flat order**: Lava
lays images out as WHC, so Lava flat index ``k`` is ``(w, h, c) = unravel(k, (W, H, C))``, which is NIR flat
index ``nir_index[k] = c*H*W + h*W + w``. Every weight matrix is ``(n_target, n_source)`` in Lava flat order on
both sides, so a NIR ``Flatten`` is only this index permutation. The input is stored the same way: the caller's
``x`` (NIR order) is permuted with ``input.nir_index`` before it is used.

Time
----
Lava step ``tau`` is 1-based (Lava's ``time_step``). Samples are streamed back to back, ``T`` steps each; sample
``k``, reference step ``t`` (0-based) is processed by population ``p`` at

    tau = 1 + k*T + t + p.lag

Every synapse layer (Lava Dense/Sparse) sends at step ``tau`` what it accumulated from its input at
``tau - 1``, so a population fed by population ``q`` has ``lag = q.lag + 1`` (``Projection.delay == 1``); the
host-fed first population has lag 0 and a spiking chip input has lag 0 too. The readout current of sample k,
step t appears at ``tau = 1 + k*T + t + readout.lag``. Populations reset their state (u = v = 0) at the start
of the step where ``(tau - 1 - lag) % T == 0`` (Lava ``LIFReset(reset_interval=T, reset_offset=(1+lag) % T)``),
i.e. exactly when their first input of a new sample arrives; synapse buffers need no reset because of the
staggering.

Recurrence (a projection that carries the previous step's spikes, ``Projection.recurrent``)
---------------------------------------------------------------------------------------------
NIR edges carry no delay, and a cycle cannot be computed without one. This project reads a cycle as snnTorch's
``RLeaky`` / ``RSynaptic`` compute their recurrence and as a chip's synapses do
(:func:`slt_deploy.exporters.nir_format.recurrent_edges`): every edge that leaves a spiking node and leads back to
it carries that node's spikes of the *previous* reference step (zero at step 0). For a layer's recurrence onto
itself that is ``I_t = W_in x_t + W_rec s_{t-1} + b`` (the recurrent layer's bias ``b`` is there from step 0 on,
like any bias). For a cycle through several layers ``A -> B -> A`` both projections on the cycle are delayed,
one reference step per synapse layer on the cycle (Loihi's one step per synapse)::

    I_A[t] = W_in x[t] + b_in + W_BA s_B[t-1] ;  I_B[t] = W_AB s_A[t-1] + b_AB ;  s[-1] = 0

so a spike of A reaches B one step later and comes back to A two steps later. (NIRTorch's interpreter delays only
the edge that closes the cycle in its traversal; for a layer's recurrence onto itself the two readings agree.)
Lava's Dense/Sparse already delivers at ``tau`` what it received at ``tau - 1``, so a recurrent projection has
``delay == 1`` and adds no lag: ``lag(target) == lag(source)`` (a forward projection has ``lag(target) ==
lag(source) + 1``; all of a population's inputs must agree). What would cross a sample boundary -- the spikes of
a sample's last step, delivered at the next sample's first step -- is cut by a gate process on the recurrent path
that sends zeros at every step with ``(tau - lag) % T == 0`` (:mod:`slt_deploy.simulate.lava_neurons`).

Synapses (projection ``p`` from ``src`` into ``dst``)
------------------------------------------------------
The backend builds one Lava Dense/Sparse process per (source group, target group) block, where the groups of a
population are its Lava LIF processes (:meth:`Population.groups`; the input and the readout are one group each).
Each process shifts *its own* sum, so the exponent applies per source group ``g``::

    a_p[tau] = W_p @ s_src[tau - 1]                                               (floating_pt)
    a_p[tau] = sum_g int32( shift(W_p[:, g] @ s_src[g][tau - 1], weight_exp_p) )  (fixed_pt)

with ``W_p`` integer mantissas (Lava's per-block clip/truncation leaves the compiler's mantissas unchanged),
``shift(x, e) = x << e`` for ``e > 0`` and the arithmetic (floor) ``x >> -e`` otherwise, and ``int32`` the wrap
of Lava's message channel (never reached below the compiler's ``A_IN_LIMIT`` warning). For ``weight_exp >= 0``
or a one-group source this is ``shift(W_p @ s_src, e)``; for ``weight_exp < 0`` and several source groups the
floors of the group sums are *not* the floor of the total (the quantizer avoids that case where it costs no
weight precision, see :mod:`slt_deploy.compile.quantize`). A population's input is
``a_in[tau] = sum_p a_p[tau]`` (plus the host current for the host-fed population).

Neurons (Lava LIF, one ``du``, ``dv``, ``vth`` per Lava process; the IR keeps per-neuron arrays and the backend
groups neurons with equal values into one process each)
---------------------------------------------------------------------------------------------------------------
floating_pt::

    u = u*(1 - du) + a_in
    v = v*(1 - dv) + u + bias_mant          (bias_exp unused)
    s = v > vth ;  v[s] = 0

fixed_pt (Loihi bit-accurate, lava.proc.lif.models.PyLifModelBitAcc), all integers::

    u = wrap24(trunc0(u * (4096 - (du + 1)) / 4096) + (a_in << 6))
    v = clip(trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp), -(2**23 - 1), 2**23 - 1)
    s = v > (vth << 6) ;  v[s] = 0

with ``trunc0(x / 4096) = sign(x) * (|x| >> 12)`` (rounds toward zero) and ``wrap24`` Lava's 24-bit wrap
(``x > 2**23 -> x - 2**24``, then ``x <= -2**23 -> x + 2**24``). ``du = 4095`` keeps no current
(``u = a_in << 6``), which is snnTorch's Leaky.

Current bias (``Population.current_bias``, the bias of the layer before a CubaLIF node with synaptic memory).
NIR's CubaLIF is ``tau_syn dI/dt = -I + w_in S``, so the Affine's bias is part of ``S`` and accumulates in the
synaptic current ``I``, not in the voltage: ``I_t = a I_{t-1} + g_s (W x_t + b)``. Lava's LIF bias enters ``v``,
so a current bias is added to ``a_in`` before Lava's own update, on this project's Lava process
(:mod:`slt_deploy.simulate.lava_neurons`)::

    u = u*(1 - du) + (a_in + current_bias)                                  (floating_pt, current_bias = g_m g_s b)
    u = wrap24(trunc0(u * (4096 - (du + 1)) / 4096) + ((a_in + current_bias) << 6))   (fixed_pt, integer, a_in units)

(for LIF and IF, with no current memory, the layer's bias is the voltage bias ``bias_mant``: the same thing).

Reset by subtraction (``Population.reset == "subtract"``, snnTorch's default and NIR ``reset: subtract``
metadata) runs on this project's own Lava process (:mod:`slt_deploy.simulate.lava_neurons`), which keeps the
previous step's spikes ``s'`` and subtracts the threshold *undecayed* at the next step, as snnTorch does
(``mem = beta*mem + input - threshold*reset``)::

    v = v*(1 - dv) + u + bias_mant - vth*s' ;  s = v > vth                                         (floating_pt)
    v = clip(trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp) - (vth << 6)*s') ;  s = v > (vth << 6)

with no zeroing; ``s'`` is cleared with u and v at every sample boundary. Threshold folding stays exact
(subtracting theta is subtracting 1 in threshold units).

Host input (``first_layer="host"``, direct encoding, Kim et al.)
-----------------------------------------------------------------
The first synapse layer sees real-valued pixels, so it is computed off-chip and its output is injected as the
first population's ``a_in`` (no synapse, no delay)::

    a_in[tau] = host.scale * (host.weight @ x_lava[k, t] + host.bias)             (floating_pt, scale = 1)
    a_in[tau] = round_half_even(host.scale * (host.weight @ x_lava[k, t] + host.bias))   (fixed_pt)

Readout (non-spiking)
---------------------
The readout is the summed output of the projections into it, read straight from the synapses each step::

    logits[k, t] = a_readout[tau] / readout.scale + readout.bias

In fixed_pt ``a_readout`` is exact: weight_exp is 0 and every row's worst case (sum of its positive, or of its
negative, mantissas) stays within ``READOUT_LIMIT`` (checked by the quantizer), so no channel wraps.
    (then, if readout.decay is set, y_t = decay * y_{t-1} + gain * logits_t on the host: a NIR LI node)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp

Shape = Tuple[int, ...]
Matrix = Union[np.ndarray, sp.csr_matrix]

TARGETS = ("floating_pt", "fixed_pt")
RESETS = ("zero", "subtract")  # reset modes a population can have
FIRST_LAYER_MODES = ("host", "chip")

# Loihi fixed-point ranges (lava.proc.lif.models / lava.proc.dense.models / lava.utils.weightutils)
STATE_BITS = 24                       # u and v
V_LIMIT = 2 ** (STATE_BITS - 1) - 1   # v saturates at +-(2**23 - 1)
DECAY_UNITY = 4096                    # 12-bit decays: du, dv in 0..4095
DECAY_MAX = 4095
VTH_MAX = 2 ** 17 - 1                 # vth mantissa (unsigned 17 bits), compared as vth << 6
ACT_SHIFT = 6                         # a_in << 6 and vth << 6 (MSB alignment)
BIAS_MANT_MAX = 4095                  # signed 13-bit bias mantissa
BIAS_EXP_MAX = 7                      # 3-bit bias exponent
WEIGHT_EXP_RANGE = (-8, 7)
WEIGHT_MIXED = (-256, 254)            # mixed-sign 8-bit weights lose the LSB: even values only
WEIGHT_UNSIGNED = 255                 # single-sign weights: 0..255 (or -255..0)
A_IN_LIMIT = 2 ** (STATE_BITS - 1 - ACT_SHIFT)  # |a_in| < 2**17, else u = a_in << 6 wraps
# Largest |readout current| one synapse process may send. Lava's bit-accurate Dense/Sparse declare a_out as
# np.int32 with precision=16 (lava.proc.dense.models); the precision is not enforced by the CPU models, and the
# channel carries the port's np.int32, so values wrap beyond 2**31 - 1 (the recorder sums its channels in float).
READOUT_LIMIT = 2 ** 31 - 1


def lava_order(nir_shape: Shape) -> Tuple[Shape, np.ndarray]:
    """(Lava shape, nir_index) for a NIR shape: CHW -> WHC; 1-D shapes are unchanged."""
    n = int(np.prod(nir_shape)) if nir_shape else 1
    if len(nir_shape) == 3:
        c, h, w = nir_shape
        return (w, h, c), np.arange(n).reshape(c, h, w).transpose(2, 1, 0).ravel()
    if len(nir_shape) == 2:  # (C, L) 1-D conv feature maps would be (L, C) in Lava
        c, length = nir_shape
        return (length, c), np.arange(n).reshape(c, length).T.ravel()
    return (n,), np.arange(n)


@dataclass(frozen=True, eq=False)
class InputSpec:
    """The network input: NIR shape of one sample and its Lava flat order."""

    name: str
    nir_shape: Shape
    lava_shape: Shape
    nir_index: np.ndarray
    kind: str  # "current" (host computes the first layer) or "spikes" (binary input fed to chip synapses)

    @property
    def size(self) -> int:
        return int(self.nir_index.size)


@dataclass(frozen=True, eq=False)
class Population:
    """A layer of LIF neurons (one NIR neuron node), stored in Lava flat order.

    Arrays are per neuron, shape (n,): float64 for floating_pt, int64 for fixed_pt. ``bias_exp`` is 0 in float.
    """

    name: str
    node_type: str            # NIR type it came from: LIF, IF, CubaLIF
    nir_shape: Shape
    lava_shape: Shape
    nir_index: np.ndarray     # Lava flat position k holds NIR flat neuron nir_index[k]
    du: np.ndarray
    dv: np.ndarray
    vth: np.ndarray
    bias_mant: np.ndarray
    bias_exp: np.ndarray
    lag: int
    reset: str = "zero"       # "zero" (Lava LIF) or "subtract" (slt_deploy.simulate.lava_neurons)
    current_bias: Optional[np.ndarray] = None  # (n,) added to a_in (float; int64 in fixed_pt); None: no current bias

    @property
    def own_process(self) -> bool:
        """Whether Lava runs this population on the project's own LIF process (subtract reset or a current bias)."""
        return self.reset == "subtract" or self.current_bias is not None

    @property
    def size(self) -> int:
        return int(self.nir_index.size)

    def groups(self) -> List[np.ndarray]:
        """Index arrays (Lava flat order) of neurons sharing (du, dv, vth): one Lava LIF process each."""
        keys = np.stack([self.du, self.dv, self.vth], axis=1).astype(np.float64)
        if bool((keys == keys[0]).all()):
            return [np.arange(self.size)]
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        return [np.flatnonzero(inverse == g) for g in range(int(inverse.max()) + 1)]


@dataclass(frozen=True, eq=False)
class Projection:
    """One synapse layer: every linear NIR node between two neuron layers, composed into one matrix."""

    name: str                 # "+"-joined NIR node names, e.g. "conv2+conv2_pool"
    nodes: Tuple[str, ...]
    source: str               # a Population name or the InputSpec name
    target: str               # a Population name or the Readout name
    weight: Matrix            # (n_target, n_source), Lava flat order; float64, or int64 mantissas
    weight_exp: int = 0
    delay: int = 1            # Lava steps between the source's spike and the target's input
    scale: float = 1.0        # fixed_pt: mantissa = q(scale * weight / target threshold) (readout: no
                              # threshold); 1.0 in float
    recurrent: bool = False   # carries the source's spikes of the previous step (module docstring)

    @property
    def nnz(self) -> int:
        return int(self.weight.nnz) if sp.issparse(self.weight) else int(np.count_nonzero(self.weight))

    @property
    def density(self) -> float:
        n = self.weight.shape[0] * self.weight.shape[1]
        return self.nnz / n if n else 0.0

    def dense(self) -> np.ndarray:
        return self.weight.toarray() if sp.issparse(self.weight) else np.asarray(self.weight)

    def csr(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.weight)


@dataclass(frozen=True, eq=False)
class HostLayer:
    """First synapse layer computed off-chip; its (scaled) output is the first population's a_in."""

    name: str
    nodes: Tuple[str, ...]
    target: str
    weight: sp.csr_matrix     # (n_target, n_input), Lava flat order, float64
    bias: np.ndarray          # (n_target,) float64
    scale: np.ndarray         # (n_target,) float64; 1 in float
    limit: float              # max |a_in| (fixed_pt: 2**17 - 1; inf in float)


@dataclass(frozen=True, eq=False)
class Readout:
    """The network output, read every step on the host."""

    name: str                 # the NIR Output node
    kind: str                 # "current": summed projection outputs; "spikes": a population's spikes
    nir_shape: Shape
    lag: int
    source: Optional[str] = None      # kind == "spikes": the population
    scale: Optional[np.ndarray] = None  # kind == "current": logits = a / scale + bias, shape (n,)
    bias: Optional[np.ndarray] = None
    decay: Optional[np.ndarray] = None  # NIR LI before the Output: y = decay*y + gain*logits (None: identity)
    gain: Optional[np.ndarray] = None
    nodes: Tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerQuant:
    """The fixed-point mapping chosen for one population (or the readout)."""

    layer: str
    scale: float               # a_in units per unit of (threshold-normalized) current
    weight_exp: int
    max_mantissa: int          # mantissa given to the largest |weight|
    weight_levels: int         # distinct nonzero mantissas (2 for a binary ticket)
    vth: int                   # vth mantissa (compared as vth << 6); 0 for the readout
    bias_exp: int
    du: int
    dv: int
    weight_error: float        # relative RMS error of the nonzero weights / threshold ratio
    threshold_error: float     # relative error of the threshold against the weight scale
    decay_error: float         # |quantized - real| voltage decay
    note: str = ""

    def line(self) -> str:
        vth = f"vth={self.vth}" if self.vth else "readout"
        return (f"{self.layer}: scale={self.scale:.6g} weight_exp={self.weight_exp} max|w|={self.max_mantissa} "
                f"levels={self.weight_levels} {vth} bias_exp={self.bias_exp} du={self.du} dv={self.dv} "
                f"weight_err={self.weight_error:.2e} thr_err={self.threshold_error:.2e} "
                f"decay_err={self.decay_error:.2e}{' ' + self.note if self.note else ''}")


@dataclass(frozen=True, eq=False)
class LoweredNetwork:
    """Everything needed to run the network in Lava, or to reproduce Lava's results without it."""

    target: str                               # floating_pt or fixed_pt
    first_layer: str                          # host or chip
    input: InputSpec
    populations: Tuple[Population, ...]       # in execution order
    projections: Tuple[Projection, ...]
    readout: Readout
    host: Optional[HostLayer] = None
    quantization: Tuple[LayerQuant, ...] = ()
    metadata: Dict[str, object] = field(default_factory=dict)

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def incoming(self, target: str) -> List[Projection]:
        return [p for p in self.projections if p.target == target]

    @property
    def latency(self) -> int:
        """Lava steps between a sample's first input step and its first readout step."""
        return self.readout.lag

    def summary(self) -> str:
        lines = [f"target={self.target} first_layer={self.first_layer} input={self.input.nir_shape} "
                 f"latency={self.latency} steps"]
        if self.host is not None:
            lines.append(f"  host {self.host.name} -> {self.host.target} ({self.host.weight.nnz} weights)")
        for p in self.populations:
            lines.append(f"  population {p.name} {p.node_type} {p.nir_shape} lag={p.lag} "
                         f"groups={len(p.groups())}{' reset=subtract' if p.reset == 'subtract' else ''}"
                         f"{' current_bias' if p.current_bias is not None else ''}")
        for p in self.projections:
            lines.append(f"  projection {p.name}: {p.source} -> {p.target} {p.weight.shape} "
                         f"density={p.density:.3f} weight_exp={p.weight_exp}{' recurrent' if p.recurrent else ''}")
        lines.append(f"  readout {self.readout.name} ({self.readout.kind}) lag={self.readout.lag}")
        lines.extend("  " + q.line() for q in self.quantization)
        return "\n".join(lines)
