"""Fast batched simulator of a :class:`~slt_deploy.compile.ir.LoweredNetwork`, bit-exact with Lava ``fixed_pt``.

Lava steps every process once per time step and streams samples back to back; this module computes the same
numbers for many samples at once. It needs neither Lava nor torch, only the lowered network.

Why a batch of independent samples is exact
-------------------------------------------
In Lava, population ``p`` handles sample ``k``, reference step ``t`` at Lava step ``1 + k*T + t + p.lag``, resets
its ``u`` and ``v`` to 0 right before a sample's first step, and every synapse layer adds one step of delay,
which ``lag = source.lag + 1`` absorbs exactly (see :mod:`slt_deploy.compile.ir`). So within a sample,
population ``p`` at step ``t`` receives ``W @ s_source[t]`` of the *same* sample and step, and nothing crosses
from one sample to the next. The network is therefore simulated layer by layer: one matrix product gives a
population's input for all samples and steps, then a loop over the ``T`` steps runs its neurons, vectorized
over samples and neurons. Outputs come back aligned with the reference steps, in the same form as
:func:`slt_deploy.simulate.lava.run_lava` (so :func:`slt_deploy.compile.first_mismatch` compares them).

Equations (those of :mod:`slt_deploy.compile.ir`, with what Lava's numpy models do on top)
----------------------------------------------------------------------------------------
Synapses (``lava.proc.dense/sparse.models``, bit-accurate models), projection ``W`` with exponent ``e``::

    W_eff  = Lava's clip_weights + truncate_weights of W, per (target group, source group) block:
             mixed-sign block -> clip to [-256, 255] then floor to even; one sign -> clip to 0..255 (or -255..0)
    a_p    = int32( shift(W_eff[:, g] @ s_src[g], e) summed over the source groups g )
    shift(x, e) = x << e (e > 0), x >> -e (floor) otherwise; applied per Lava process, so per source group

(a Lava process is a group of neurons sharing du, dv, vth; the floor shift of a sum differs from the sum of
the floor shifts, so the per-group split matters only when ``e < 0`` and the source has several groups).
``int32(.)`` is the wrap of Lava's int32 message channels.

Neurons, fixed_pt (``PyLifResetModelBitAcc``), all integers::

    a_in = int32(sum_p a_p [+ host current] [+ current_bias])     (current bias: the project's ProjectLIF)
    x    = trunc0(u * (4096 - (du + 1)) / 4096) + (a_in << 6)
    u    = x - 2**24 if x > 2**23 else x + 2**24 if x <= -2**23 else x      (Lava's one-step 24-bit wrap)
    v    = clip(trunc0(v * (4096 - dv) / 4096) + u + (bias_mant << bias_exp), -(2**23 - 1), 2**23 - 1)
    s    = v > (vth << 6) ;  v[s] = 0     (reset by subtraction: - (vth << 6) * s' inside the clip, no zeroing)

with ``trunc0`` rounding toward zero. While ``|a_in| <= 2**17`` (the compiler's ``A_IN_LIMIT``) nothing leaves
24 bits; above it, the int32 products and sums Lava computes are wrapped as Lava wraps them (``a_in << 6``,
``decayed u + that``, and the three-term voltage sum), in int64. The common case (``du = 4095``, no current
memory, and ``|a_in| <= 2**17``) has no wrap at all and runs in float64, which is exact because every value is
an integer below 2**35 (see ``_Neurons._run_plain``); the clip is skipped only where a bound proves it idle, and
the loop runs in float32 where that bound also proves every value an integer float32 holds exactly
(``_Neurons._float32_exact``: |v| and ``v * keep`` within 24 bits, e.g. dv = 2048 with the demo's currents).
Synaptic currents are exact integers in float32 or float64 (see ``_Synapse.current``); int64 is used only where
Lava's wraps must be emulated.

Neurons, floating_pt (``PyLifResetModelFloat``), in float64 and in Lava's operation order::

    u = u * (1 - du) ; u = u + (a_in + current_bias) ;  v = v * (1 - dv) + u + bias_mant ;  s = v > vth ;  v[s] = 0

Recurrence: populations joined by recurrent projections (a layer onto itself, or a cycle through several,
see :mod:`slt_deploy.compile.ir`) are run together, step by step: at step ``t`` each takes its feed-forward
input plus the recurrent synapses' output of the previous step's spikes (zero at a sample's first step). A
recurrent projection from a layer computed earlier (off the cycle) is its spikes shifted by one step.

Host layer and readout: the host currents (``round_half_even(scale * (W x + b))`` in fixed_pt) are computed
with the very operations of :func:`slt_deploy.compile.stream.input_stream`, the function whose output the Lava
backend feeds to Lava (identical values, tested), once per sample for a direct-encoded input (the same at every
step, which is tested on the input itself); the logits come from
:func:`slt_deploy.compile.stream.readout_values` (``a / scale + bias``, then the optional LI filter).

Speed: temporaries that scale with the input (the input's transpose, the spikes cast for BLAS, the repeated-step
test) are made a block of samples at a time in small reused buffers (``SCRATCH_BYTES``): on this project's VM a
fresh page costs ~3 us, and whole-input temporaries cost more in page faults than in arithmetic.

floating_pt is exact against Lava only up to float64 summation order (numpy BLAS here, Lava sums the columns of
the spiking inputs); a spike can differ only where a membrane lies within ~1e-15 of its threshold.

Activity counts
---------------
:class:`LayerCounts` (per sample, summed over steps) are measured on the deployed matrices: input events,
effective synaptic operations (nonzero input x nonzero weight pairs), output spikes and neuron updates.
:func:`slt_deploy.cost.activity.count_simulation` instead feeds the recorded spikes to the cost stage's counter
with the snnTorch model's synapse layers, giving the energy report's ``NetworkActivity``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from ..compile.errors import CompileError
from ..compile.ir import A_IN_LIMIT, ACT_SHIFT, DECAY_UNITY, STATE_BITS, TARGETS, V_LIMIT, LoweredNetwork, \
    Population, Projection
from ..compile.stream import NOT_FINITE, as_array, check_input, check_shape, input_stream, readout_values, \
    to_nir_order
from ..errors import SltError


__all__ = ["SimError", "FastSim", "SimResult", "LayerCounts", "simulate",
           "lava_weights"]

DECAY_SHIFT = 12                       # decays are MSB-aligned to 12 bits: x * d >> 12
U_WRAP = 2 ** STATE_BITS               # 2**24
U_HALF = 2 ** (STATE_BITS - 1)         # 2**23
MIXED_RANGE = (-256, 255)              # Lava clip_weights(num_bits=8), mixed sign; then the LSB is dropped
SINGLE_SIGN_MAX = 255


class SimError(SltError):
    """The simulator cannot run this network (the message names the layer). Bad input raises
    :class:`~slt_deploy.compile.CompileError`, exactly as ``run_lava`` does."""


# --------------------------------------------------------------------------------------- integer helpers

def _uniform(values: np.ndarray):
    """A per-neuron constant as one Python float when every neuron has the same value, else the array."""
    return float(values[0]) if values.size and bool((values == values[0]).all()) else values


def _wrap32(x: np.ndarray) -> np.ndarray:
    """int64 -> the value an int32 would hold (two's complement wrap), as Lava's int32 arrays and channels do."""
    return ((x + 2 ** 31) & (2 ** 32 - 1)) - 2 ** 31


def _decay(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """trunc0(x * keep / 4096) in int64: adding 4095 to negative products turns the floor shift into a
    truncation toward zero, Lava's ``sign(p) * (|p| >> 12)`` without the two extra passes."""
    p = x * keep
    return (p + ((p >> 63) & (DECAY_UNITY - 1))) >> DECAY_SHIFT


def _wrap24(x: np.ndarray) -> np.ndarray:
    """Lava's current wrap: one subtraction or addition of 2**24, not a full modulo (see the module doc)."""
    return np.where(x > U_HALF, x - U_WRAP, np.where(x <= -U_HALF, x + U_WRAP, x))


def _sign_mode(values: np.ndarray) -> str:
    """lava.utils.weightutils.determine_sign_mode; an all-zero block counts as excitatory there too."""
    neg, pos = (bool(values.min() < 0), bool(values.max() > 0)) if values.size else (False, False)
    return "mixed" if neg and pos else "inhibitory" if neg else "excitatory"


def _clip(w: np.ndarray, low: int, high: int) -> np.ndarray:
    return np.minimum(np.maximum(w, low), high)  # np.clip, without its Python wrappers


def lava_weights(values: np.ndarray) -> np.ndarray:
    """What Lava's Dense/Sparse (``num_weight_bits=8``) do to one block's integer weights before use."""
    w = np.asarray(values, dtype=np.int64)
    mode = _sign_mode(w)
    if mode == "mixed":
        return (_clip(w, *MIXED_RANGE) >> 1) << 1
    if mode == "inhibitory":
        return -_clip(-w, 0, SINGLE_SIGN_MAX)
    return _clip(w, 0, SINGLE_SIGN_MAX)


# ------------------------------------------------------------------------------------------ the pieces

@dataclass
class _Synapse:
    """One projection ready to apply: effective weights split into column blocks (one per source group)."""

    proj: Projection
    blocks: List[Tuple[Optional[np.ndarray], object]]  # (source columns or None for all, W_eff[:, cols].T)
    exp: int
    col_nnz: np.ndarray                                  # nonzero effective weights per source neuron
    peak: float = np.inf                                 # bound on |output| (fixed point)
    counted: Optional[np.ndarray] = None                 # one dense block with col_nnz as one more column

    def current(self, spikes: np.ndarray, fixed: bool, count: bool = False) -> Tuple[np.ndarray, Optional[_Totals]]:
        """(M, n_source) bool spikes -> ((M, n_target) synaptic output, the layer's counts if ``count``).

        Integer weights times 0/1 spikes are summed in floating point: every partial sum is an integer below
        2**24 (float32, chosen only when 256 * fan-in < 2**24) or 2**53 (float64), so the result is exact
        whatever order BLAS or scipy sum in; fixed point's shift by ``exp`` is a multiplication by 2**exp (then
        a floor when exp < 0), exact on these integers. The output is float32 or float64 holding integers; the
        int32 wrap of Lava's channel is applied by the caller. The effective synops, ``sum_rows s @ col_nnz``,
        come out of the same product as one more output column where the weights are one dense block (an exact
        integer sum too: n_source * n_target < 2**24 in float32).
        """
        if count and self.counted is not None:
            both = _dense_product(spikes, self.counted)
            synops = float(both[:, -1].sum(dtype=np.float64))
            return self._shifted(both[:, :-1], fixed), _Totals(float(np.count_nonzero(spikes)), synops, True)
        total = None
        for cols, w in self.blocks:
            s = spikes if cols is None else spikes[:, cols]
            acc = (_spike_matrix(s) @ w).toarray() if sp.issparse(w) else _dense_product(s, w)
            acc = self._shifted(acc, fixed)
            total = acc if total is None else total + acc
        return total, (_layer_totals(spikes, self.col_nnz) if count else None)

    def _shifted(self, acc: np.ndarray, fixed: bool) -> np.ndarray:
        if fixed and self.exp:
            acc = acc.astype(np.float64) * 2.0 ** self.exp
            if self.exp < 0:
                np.floor(acc, out=acc)
        return acc


def _dense_product(spikes: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(M, n_source) bool spikes @ w (n_source, n_target), the spikes cast to w's dtype a block of rows at a time
    into one small buffer (a cast of all of them would be a large array, fresh pages each run)."""
    m, n_src = spikes.shape
    out = np.empty((m, w.shape[1]), w.dtype)
    rows = max(1, SCRATCH_BYTES // (w.itemsize * max(n_src, 1)))
    buf = np.empty((min(rows, m), n_src), w.dtype)
    for i in range(0, m, rows):
        part = buf[:min(rows, m - i)]
        np.copyto(part, spikes[i:i + rows])
        np.matmul(part, w, out=out[i:i + rows])
    return out


def _spike_matrix(s: np.ndarray) -> sp.csr_matrix:
    """A bool (M, n) array as a csr matrix of ones, built directly (scipy's converter makes two passes)."""
    flat = np.flatnonzero(s)
    indptr = np.zeros(s.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(s, axis=1), out=indptr[1:])
    return sp.csr_matrix((np.ones(flat.size), flat % s.shape[1], indptr), shape=s.shape)


def _groups(groups: Dict[str, List[np.ndarray]], name: str, size: int) -> List[np.ndarray]:
    """Lava processes of a layer (``groups``: each population's, by (du, dv, vth)); the input and the readout
    are one process each."""
    return groups[name] if name in groups else [np.arange(size)]


def _population_groups(pop: Population) -> List[np.ndarray]:
    """``pop.groups()``, answered at once for the usual population whose neurons all share (du, dv, vth)."""
    if all(bool((a == a[0]).all()) for a in (pop.du, pop.dv, pop.vth)) if pop.size else True:
        return [np.arange(pop.size)]
    return pop.groups()


class _Entries(NamedTuple):
    """The nonzero entries of a (n_target, n_source) matrix: row, column and value of each."""

    rows: np.ndarray
    cols: np.ndarray
    data: np.ndarray
    shape: Tuple[int, int]

    @classmethod
    def of(cls, weight, dtype: type) -> "_Entries":
        """A dense array's or a sparse matrix's stored entries (duplicates summed), as ``dtype``; read from its
        own arrays where it is dense or already a canonical csr matrix (no scipy conversion on the way)."""
        if not sp.issparse(weight):
            weight = np.asarray(weight)
            rows, cols = np.nonzero(weight)
            return cls(rows, cols, weight[rows, cols].astype(dtype), weight.shape)
        if not (sp.isspmatrix_csr(weight) and weight.has_canonical_format):
            weight = sp.csr_matrix(weight, copy=True)
            weight.sum_duplicates()
        rows = np.repeat(np.arange(weight.shape[0]), np.diff(weight.indptr))
        return cls(rows, weight.indices, weight.data.astype(dtype), weight.shape)

    def nonzero(self) -> "_Entries":
        keep = self.data != 0
        return self if keep.all() else _Entries(self.rows[keep], self.cols[keep], self.data[keep], self.shape)


def _effective_entries(proj: Projection, src_groups, tgt_groups) -> _Entries:
    """The weights Lava really uses: clip/truncate per (target group, source group) block, as the backend
    builds one Dense/Sparse process per block."""
    w = _Entries.of(proj.weight, np.int64)
    if len(src_groups) == 1 and len(tgt_groups) == 1:
        return w._replace(data=lava_weights(w.data)).nonzero()
    tgt_of = np.empty(w.shape[0], np.int64)
    src_of = np.empty(w.shape[1], np.int64)
    for g, idx in enumerate(tgt_groups):
        tgt_of[idx] = g
    for g, idx in enumerate(src_groups):
        src_of[idx] = g
    block = tgt_of[w.rows] * len(src_groups) + src_of[w.cols]
    data = w.data
    for b in np.unique(block):
        sel = block == b
        data[sel] = lava_weights(data[sel])
    return w._replace(data=data).nonzero()


DENSE_MIN_DENSITY = 1 / 50     # below it, a sparse product beats BLAS on binary spikes (measured, 2 cores)
DENSE_MAX_ENTRIES = 2 ** 24     # and dense weights stay below 64 MB (float32)
FLOAT32_EXACT = 2 ** 24         # float32 represents every integer up to this exactly
SCRATCH_BYTES = 2 ** 18         # a scratch array reused block by block: small, so no fresh pages at each run


def _layout(w: _Entries, fixed: bool) -> Tuple[bool, type]:
    """(dense, dtype) for the blocks of a (n_target, n_source) matrix, chosen by speed only (both are exact).

    Fixed point uses float32 when every partial sum of spikes times weights is an integer below 2**24
    (|mantissa| <= 256, so 256 * fan-in < 2**24).
    """
    n_tgt, n_src = w.shape
    size = n_tgt * n_src
    dense = size <= DENSE_MAX_ENTRIES and w.data.size >= DENSE_MIN_DENSITY * size
    return dense, np.float32 if fixed and 256 * n_src < FLOAT32_EXACT else np.float64


def _stored(w: _Entries, dense: bool, dtype: type, cols: Optional[np.ndarray] = None):
    """The matrix (or its source columns ``cols``) transposed to (n_source, n_target), so ``spikes (M, n_source)
    @ stored`` needs no conversion."""
    if cols is not None:  # one source group's columns: renumbered 0..len(cols)-1
        position = np.full(w.shape[1], -1)
        position[cols] = np.arange(cols.size)
        sel = position[w.cols] >= 0
        w = _Entries(w.rows[sel], position[w.cols[sel]], w.data[sel], (w.shape[0], cols.size))
    if dense:
        out = np.zeros(w.shape[::-1], dtype=dtype)
        out[w.cols, w.rows] = w.data
        return out
    return sp.csr_matrix((w.data.astype(np.float64), (w.cols, w.rows)), shape=w.shape[::-1])


def _synapse(proj: Projection, fixed: bool, groups: Dict[str, List[np.ndarray]]) -> _Synapse:
    n_tgt, n_src = proj.weight.shape
    src_groups = _groups(groups, proj.source, n_src)
    if fixed:
        w = _effective_entries(proj, src_groups, _groups(groups, proj.target, n_tgt))
        exp = int(proj.weight_exp)
    else:
        w, exp = _Entries.of(proj.weight, np.float64).nonzero(), 0
    col_nnz = np.bincount(w.cols, minlength=n_src).astype(np.float64)
    # |output| <= fan-in x the largest |weight| (256), shifted; each floor of a group's sum adds at most 1
    peak = float(256 * n_src * 2.0 ** exp + len(src_groups)) if fixed else np.inf
    dense, dtype = _layout(w, fixed)
    counted = None
    if fixed and exp < 0 and len(src_groups) > 1:
        # the floor shift is applied to each Lava process's sum, so each source group is summed on its own
        blocks = [(idx, _stored(w, dense, dtype, idx)) for idx in src_groups]
    elif dense and (dtype == np.float64 or n_src * (n_tgt + 1) < FLOAT32_EXACT):
        counted = _stored(w._replace(shape=(n_tgt + 1, n_src)), dense, dtype)  # one more column: col_nnz
        counted[:, -1] = col_nnz
        blocks = [(None, counted[:, :-1])]  # a view: BLAS takes its row stride as it is
    else:
        blocks = [(None, _stored(w, dense, dtype))]
    return _Synapse(proj, blocks, exp, col_nnz, peak, counted)


@dataclass
class _Neurons:
    """Per-neuron constants of one population, broadcast over the samples."""

    pop: Population
    fixed: bool
    keep_u: np.ndarray   # fixed: 4096 - (du + 1); float: 1 - du
    keep_v: np.ndarray   # fixed: 4096 - dv;       float: 1 - dv
    bias: np.ndarray     # fixed: bias_mant << bias_exp; float: bias_mant
    vth: np.ndarray      # fixed: vth << 6;        float: vth
    current_bias: Optional[np.ndarray] = None  # added to a_in (int64 in fixed point); None: none
    # fixed point, derived once: for the bounds of _v_bound and _float32_exact, and the plain loop's constants
    max_bias: int = field(init=False, default=0)        # max |bias|
    min_dv: int = field(init=False, default=0)          # smallest voltage decay
    keep_odd_bits: int = field(init=False, default=0)   # bits of the largest odd part of keep_v
    vth_single: bool = field(init=False, default=False)  # every vth is a float32 value
    _plain: Dict[type, tuple] = field(init=False, default_factory=dict)  # dtype -> (bias, keep / 4096, vth)

    def __post_init__(self):
        if not (self.fixed and self.keep_v.size):
            return
        self.max_bias = int(np.abs(self.bias).max())
        self.min_dv = int((DECAY_UNITY - self.keep_v).min())
        odd = [k // (k & -k) if k else 0 for k in set(self.keep_v.tolist())]  # keep = odd * 2**k
        self.keep_odd_bits = max(k.bit_length() for k in odd)
        self.vth_single = bool((self.vth.astype(np.float32) == self.vth).all())

    def plain_constants(self, dtype: type) -> tuple:
        """(bias, keep / 4096, vth) as ``dtype`` (float32 only where exact), each a scalar where uniform."""
        if dtype not in self._plain:
            self._plain[dtype] = tuple(_uniform(c.astype(dtype)) for c in (self.bias, self.keep_v / float(DECAY_UNITY),
                                                                             self.vth))
        return self._plain[dtype]

    @property
    def subtract(self) -> bool:
        return self.pop.reset == "subtract"

    @classmethod
    def of(cls, pop: Population, fixed: bool) -> "_Neurons":
        if fixed:
            mant, bexp = pop.bias_mant.astype(np.int64), pop.bias_exp.astype(np.int64)
            bias = np.where(bexp >= 0, mant << np.maximum(bexp, 0), mant >> np.maximum(-bexp, 0))
            keep_u = DECAY_UNITY - (pop.du.astype(np.int64) + 1)
            keep_v = DECAY_UNITY - pop.dv.astype(np.int64)
            cur = None if pop.current_bias is None else pop.current_bias.astype(np.int64)
            return cls(pop, True, keep_u, keep_v, bias, pop.vth.astype(np.int64) << ACT_SHIFT, cur)
        cur = None if pop.current_bias is None else pop.current_bias.astype(np.float64)
        return cls(pop, False, 1.0 - pop.du.astype(np.float64), 1.0 - pop.dv.astype(np.float64),
                   pop.bias_mant.astype(np.float64), pop.vth.astype(np.float64), cur)

    def with_current_bias(self, a_in: np.ndarray) -> np.ndarray:
        """Lava's a_in of the project's LIF process: the synaptic input plus the current bias (int32 in fixed)."""
        if self.current_bias is None:
            return a_in
        a_in = a_in + self.current_bias
        if self.fixed and a_in.size and (a_in.min() < -2 ** 31 or a_in.max() >= 2 ** 31):
            a_in = _wrap32(a_in.astype(np.int64))
        return a_in

    def run(self, a_in: np.ndarray, steps: int, events: Dict[str, int]) -> np.ndarray:
        """(N, T, n) input currents -> (N, T, n) bool spikes; state starts at zero (Lava's per-sample reset).

        ``a_in`` may be (N, 1, n): the same input at every one of the ``steps`` (a direct-encoded host layer);
        it is scratch: the run may overwrite it.
        ``events`` (fixed_pt) accumulates how often the 24-bit limits acted: ``u_wraps``, ``v_clips``, and the
        largest ``|a_in|`` seen (``a_in_peak``).
        """
        if not self.fixed:
            return self._run_float(a_in, steps)
        # a_in holds integers, as int64 or (from the products) float32/float64: exact either way
        peak = int(max(a_in.max(), -a_in.min())) if a_in.size else 0
        # above 2**17, a_in << 6 no longer fits 24 bits and Lava's int32 sums can wrap: emulate them
        wide = peak > A_IN_LIMIT
        u_decays = bool((self.keep_u != 0).any())  # du = 4095 (snnTorch Leaky) keeps no current
        if u_decays or wide:
            shifted = a_in.astype(np.int64) << ACT_SHIFT
            if wide:
                shifted = _wrap32(shifted)
            out, wraps, clips = self._run_general(shifted, steps, u_decays, wide)
        else:  # a subtracted threshold can push v below the bound _may_clip assumes: always clip then
            clipping = self.subtract or self._may_clip(peak, steps)
            single = not clipping and self._float32_exact(peak, steps)
            out, wraps, clips = self._run_plain(a_in, steps, clipping, single)
        events["u_wraps"] = events.get("u_wraps", 0) + wraps
        events["v_clips"] = events.get("v_clips", 0) + clips
        events["a_in_peak"] = max(events.get("a_in_peak", 0), peak)
        return out

    def start(self, n_samples: int) -> Dict[str, object]:
        """The zero state of a step-by-step run (:meth:`advance`)."""
        dtype = np.int64 if self.fixed else np.float64
        return dict(u=np.zeros((n_samples, self.pop.size), dtype), v=np.zeros((n_samples, self.pop.size), dtype),
                    prev=np.zeros((n_samples, self.pop.size), dtype=bool), wraps=0, clips=0, peak=0)

    def advance(self, state: Dict[str, object], a: np.ndarray, out: np.ndarray) -> None:
        """One step of the general update (every wrap emulated, exact when none acts) with ``a`` Lava's summed
        a_in (current bias included); the spikes go into ``out`` (N, n) bool and ``state["prev"]``."""
        u, v, prev = state["u"], state["v"], state["prev"]
        if self.fixed:
            a = a.astype(np.int64)
            state["peak"] = max(state["peak"], int(np.abs(a).max()) if a.size else 0)
            x = _wrap32(_wrap32(a) << ACT_SHIFT)
            x = _wrap32(x + _decay(u, self.keep_u))
            u = _wrap24(x)
            state["wraps"] += int(np.count_nonzero(u != x))
            y = _decay(v, self.keep_v) + u + self.bias
            if self.subtract:
                y = y - self.vth * prev
            y = _wrap32(y)
            v = np.clip(y, -V_LIMIT, V_LIMIT)
            state["clips"] += int(np.count_nonzero(v != y))
        else:
            u = u * self.keep_u
            u = u + a
            v = v * self.keep_v + u + self.bias
            if self.subtract:
                v = v - self.vth * prev
        s = np.greater(v, self.vth, out=out)
        if not self.subtract:
            v[s] = 0
        state.update(u=u, v=v, prev=s)

    def finish(self, state: Dict[str, object], events: Dict[str, int]) -> None:
        if self.fixed:
            events["u_wraps"] = events.get("u_wraps", 0) + state["wraps"]
            events["v_clips"] = events.get("v_clips", 0) + state["clips"]
            events["a_in_peak"] = max(events.get("a_in_peak", 0), state["peak"])

    def _run_plain(self, a_in: np.ndarray, steps: int, clipping: bool, single: bool = False):
        """No current memory and |a_in| <= 2**17: u = a_in << 6 needs no wrap, so v = decay(v) + (u + bias).

        The hot loop of snnTorch-style networks, run in float64 because every value is an integer far below
        2**53: ``v * (keep / 4096)`` is the exact dyadic ``v * keep / 2**12`` (|v * keep| < 2**35), ``trunc``
        of it is Lava's trunc0, and sums, the clip and the comparison are exact too. Reset multiplies by
        the not-spiked mask (0 * v may be -0.0, which equals 0 everywhere it is used). v starts at 0, so the
        first step's v is the drive ``u + bias`` itself; the last step's v is never read again, so not reset.
        ``single``: in float32, where :meth:`_float32_exact` proves it exact (no clip then).
        A contiguous ``a_in`` of the loop's dtype becomes the drive in place (it is scratch);
        a constant shared by every neuron is applied as a scalar (numpy's faster loop), and each step's
        comparison goes to a contiguous mask first (a comparison written into a strided slice is slow).
        """
        n_samples, t_in, n = a_in.shape
        dtype = np.float32 if single else np.float64
        bias, keep, vth = self.plain_constants(dtype)
        in_place = a_in.dtype == dtype  # every step's drive at once, in a_in
        per_step = t_in > 1 and not in_place  # else each step's drive into one buffer
        drive = a_in if in_place else np.empty((n_samples, 1, n), dtype)
        if not per_step:
            np.multiply(a_in, 1 << ACT_SHIFT, out=drive)
            np.add(drive, bias, out=drive)
        v = np.empty((n_samples, n), dtype)
        below = np.empty((n_samples, n), dtype=bool)
        out = np.empty((n_samples, steps, n), dtype=bool)
        clips = 0
        for t in range(steps):
            if per_step:
                np.multiply(a_in[:, t], 1 << ACT_SHIFT, out=drive[:, 0])
                np.add(drive, bias, out=drive)
            step_drive = drive[:, t if t_in > 1 and not per_step else 0]
            if t == 0:
                np.copyto(v, step_drive)
            else:
                np.multiply(v, keep, out=v)
                np.trunc(v, out=v)
                np.add(v, step_drive, out=v)
                if self.subtract:  # the threshold, undecayed, for the previous step's spike
                    v -= np.multiply(out[:, t - 1], vth)
            if clipping:
                clips += int(np.count_nonzero(v > V_LIMIT)) + int(np.count_nonzero(v < -V_LIMIT))
                np.clip(v, -V_LIMIT, V_LIMIT, out=v)
            np.less_equal(v, vth, out=below)
            if not self.subtract and t < steps - 1:
                np.multiply(v, below, out=v)
            np.logical_not(below, out=out[:, t])
        return out, 0, clips

    def _run_general(self, shifted: np.ndarray, steps: int, u_decays: bool, wide: bool):
        """Current memory (CubaLIF) and/or |a_in| > 2**17: Lava's 24-bit current wrap and int32 sums."""
        n_samples, t_in, n = shifted.shape
        u = np.zeros((n_samples, n), np.int64)
        v = np.zeros((n_samples, n), np.int64)
        out = np.empty((n_samples, steps, n), dtype=bool)
        wraps = clips = 0
        for t in range(steps):
            x = shifted[:, t if t_in > 1 else 0]
            if u_decays:
                x = x + _decay(u, self.keep_u)
                if wide:
                    x = _wrap32(x)
            u = _wrap24(x)
            wraps += int(np.count_nonzero(u != x))
            y = _decay(v, self.keep_v) + u + self.bias
            if self.subtract and t:
                y = y - self.vth * out[:, t - 1]
            if wide:
                y = _wrap32(y)
            v = np.clip(y, -V_LIMIT, V_LIMIT)
            clips += int(np.count_nonzero(v != y))
            s = np.greater(v, self.vth, out=out[:, t])
            if not self.subtract:
                v[s] = 0
        return out, wraps, clips

    def _may_clip(self, peak: int, steps: int) -> bool:
        """Whether v can reach +-(2**23 - 1) when u = a_in << 6 with |a_in| <= peak (saves the clip when not)."""
        return self._v_bound(peak, steps) > V_LIMIT

    def _v_bound(self, peak: int, steps: int) -> int:
        """A bound on |v| when u = a_in << 6 with |a_in| <= peak (no subtracted threshold, no clip).

        trunc0 never grows |v|, so |v_t| <= B * min(t, 4096 / dv) with B = (peak << 6) + max|bias|; below
        2**23 - 1 the clip cannot act and skipping it is exact.
        """
        drive = (peak << ACT_SHIFT) + self.max_bias
        dv = self.min_dv
        horizon = steps if dv <= 0 else min(steps, -(-DECAY_UNITY // dv))
        return drive * horizon

    def _float32_exact(self, peak: int, steps: int) -> bool:
        """Whether the plain loop's every value is an integer that float32 holds exactly, so it may run there.

        Every v, drive and sum lies within the bound of :meth:`_v_bound`, so below 2**24 they are exact
        integers in float32; ``v * keep / 4096`` is exact where ``v * keep`` fits 24 bits: the bound's bits plus
        those of keep's odd part (keep = odd * 2**k; a power of two such as dv = 2048, beta = 1/2, adds one).
        The thresholds must be float32 values too. Half the bytes per step of float64's loop.
        """
        if self.subtract or not self.vth_single:
            return False
        return self._v_bound(peak, steps).bit_length() + self.keep_odd_bits <= 24

    def _run_float(self, a_in: np.ndarray, steps: int) -> np.ndarray:
        n_samples, t_in, n = a_in.shape
        u = np.zeros((n_samples, n))
        v = np.zeros((n_samples, n))
        out = np.empty((n_samples, steps, n), dtype=bool)
        for t in range(steps):
            u = u * self.keep_u
            u = u + a_in[:, t if t_in > 1 else 0]
            v = v * self.keep_v + u + self.bias
            if self.subtract and t:
                v = v - self.vth * out[:, t - 1]
            s = v > self.vth
            if not self.subtract:
                v[s] = 0.0
            out[:, t] = s
        return out


# ---------------------------------------------------------------------------------------------- results

@dataclass(frozen=True)
class LayerCounts:
    """Activity of one synapse layer of the deployed network, per sample, summed over the T steps.

    The definitions are :mod:`slt_deploy.cost.activity`'s, applied to the deployed (quantized) matrices:
    ``input_events``: nonzero inputs (spikes, or nonzero pixels for the host layer); ``effective_synops``:
    (nonzero input, nonzero effective weight) pairs, ``sum_t sum_i [x_i != 0] * nnz(W[:, i])``; they are ACs
    when ``input_binary`` and MACs otherwise, and a real-valued input identical at every step (direct
    encoding) is computed once per sample, so its synops count one step (``computed_once``).
    ``output_spikes``: spikes of the target population (0 for the readout); ``neuron_updates``: target
    neurons x T, carried by the first layer into each target only.
    """

    name: str
    source: str
    target: str
    input_events: float
    effective_synops: float
    input_binary: bool
    output_spikes: float
    neuron_updates: float
    neurons: int
    nonzero_weights: int
    computed_once: bool = False


@dataclass
class SimResult:
    """A simulation, aligned like :class:`slt_deploy.simulate.lava.LavaResult`: index [k, t] = sample k, step t."""

    outputs: np.ndarray                 # (N, T, *output_shape): per-step logits (or spikes for a spiking readout)
    spikes: Dict[str, np.ndarray]       # population -> (N, T, *nir_shape) int8 spikes (empty if not recorded)
    readout_current: np.ndarray         # (N, T, n): raw readout synapse output (integers in fixed_pt)
    target: str
    steps: int                          # Lava steps the same run would take: N*T + latency
    latency: int
    counts: Tuple[LayerCounts, ...] = ()
    limits: Dict[str, Dict[str, int]] = field(default_factory=dict)  # fixed_pt: pop -> u_wraps, v_clips, a_in_peak
    seconds: Dict[str, float] = field(default_factory=dict)

    def predictions(self) -> np.ndarray:
        """Class per sample: logits summed over time (the project's evaluation rule)."""
        return self.outputs.reshape(self.outputs.shape[0], self.outputs.shape[1], -1).sum(axis=1).argmax(axis=1)

    def layer_counts(self, name: str) -> LayerCounts:
        for c in self.counts:
            if c.name == name:
                return c
        raise KeyError(f"no layer {name!r}; layers: {', '.join(c.name for c in self.counts)}")


# ------------------------------------------------------------------------------------------- simulator

CHUNK_ELEMENTS = 2 ** 24  # default chunk: about this many (sample, step, neuron) entries per layer array


def _nir_order(pop: Population, spikes: np.ndarray) -> np.ndarray:
    """(N, T, n) bool spikes in Lava order -> int8 (N, T, *nir_shape); 1-D populations need no permutation."""
    if len(pop.nir_shape) <= 1:
        return spikes.view(np.int8).reshape(spikes.shape[:2] + tuple(pop.nir_shape))
    return to_nir_order(pop, spikes.view(np.int8))


class _Totals(NamedTuple):
    """One layer's counts over one chunk (all its samples and steps)."""

    events: float
    synops: float
    binary: bool
    synops_one_step: Optional[float] = None  # host layer fed the same input at every step: one step's synops

    def repeated(self, steps: int, once: bool) -> "_Totals":
        """Counts of one distinct step scaled to ``steps`` when the input repeats (``once``), else as they are."""
        repeat = steps if once else 1
        return _Totals(self.events * repeat, self.synops * repeat, self.binary, self.synops if once else None)


def _all_binary(inputs: np.ndarray) -> bool:
    """Whether every nonzero value of (M, n_input) is +-1; one sample first (it decides most real inputs)."""
    for part in (inputs[:1], inputs):
        size = np.abs(part)
        if not ((size == 0) | (size == 1)).all():
            return False
    return True


def _steps_equal(part: np.ndarray, scratch: np.ndarray) -> bool:
    """Whether every step of every sample of ``part`` (b, T, ...) equals the sample's first (floats: NaN never
    does), compared into ``scratch`` (at least part.size bools).

    In a contiguous ``part`` each step is compared with the one before it as one flat run of memory, the array
    against itself shifted by one step (three times faster in numpy than a step-by-step broadcast); the
    comparisons that straddle two samples are then set aside (marked equal).
    """
    b, steps = part.shape[:2]
    if steps < 2 or part.strides[1] == 0:  # a broadcast step axis repeats one step by construction
        return True
    part = part.reshape(b, steps, -1)
    size, cells = part.shape[2], part.size
    if part.flags.c_contiguous:
        run = part.reshape(-1)
        np.equal(run[size:], run[:-size], out=scratch[:cells - size])
        by_step = scratch[:cells].reshape(part.shape)
        by_step[:, -1] = True  # the last step of each sample against the next sample's first: not a test
        return bool(by_step.all())
    equal = scratch[:cells - b * size].reshape(b, steps - 1, size)
    return bool(np.equal(part[:, 1:], part[:, :1], out=equal).all())


def _layer_totals(inputs: np.ndarray, col_nnz: np.ndarray) -> _Totals:
    """Input events, effective synops and whether the input is binary, over all rows of ``inputs`` (M, n)."""
    active = inputs if inputs.dtype == bool else inputs != 0
    per_input = np.count_nonzero(active, axis=0).astype(np.float64)
    events = float(per_input.sum())
    binary = inputs.dtype == bool or events == np.count_nonzero(np.abs(inputs) == 1)  # all of them +-1
    return _Totals(events, float(per_input @ col_nnz), binary)


class FastSim:
    """A :class:`LoweredNetwork` prepared once (effective weights, neuron constants), run on many inputs.

    ``FastSim(lowered).run(x)`` with ``x`` (N, T, *input_shape) in NIR order, like ``run_lava``.
    """

    def __init__(self, lowered: LoweredNetwork):
        if lowered.target not in TARGETS:
            raise SimError(f"target {lowered.target!r} is not one of: {', '.join(TARGETS)}")
        self.net = lowered
        self.fixed = lowered.target == "fixed_pt"
        self._check_lags()
        self.stages = _stages(lowered)
        self.neurons = {p.name: _Neurons.of(p, self.fixed) for p in lowered.populations}
        self.synapses = {p.target: [] for p in lowered.projections}
        groups = {p.name: _population_groups(p) for p in lowered.populations}
        for proj in lowered.projections:
            self.synapses[proj.target].append(_synapse(proj, self.fixed, groups))
        host = lowered.host
        self.host_nnz = None  # nonzero host weights per input, in NIR order (the caller's x needs no permutation)
        self.host_weight = None
        if host is not None:
            self.host_nnz = np.empty(lowered.input.size)
            self.host_nnz[lowered.input.nir_index] = np.bincount(host.weight.indices, minlength=host.weight.shape[1])
            # the same matrix with its column indices renamed from Lava to NIR input order: every row keeps its
            # entries in their stored order, so each current is summed exactly as input_stream sums it
            w = host.weight
            self.host_weight = sp.csr_matrix((w.data, lowered.input.nir_index[w.indices], w.indptr), shape=w.shape)

    def _check_lags(self) -> None:
        """Every projection must span exactly one Lava step: lag + 1 for a forward one, the same lag for a recurrent
        one (its one step is the reference's previous step), else samples would not be independent."""
        net = self.net
        lags = {net.input.name: 0, net.readout.name: net.readout.lag}
        lags.update({p.name: p.lag for p in net.populations})
        for proj in net.projections:
            if proj.source not in lags or proj.target not in lags:
                raise SimError(f"projection {proj.name!r} connects unknown layers {proj.source!r} -> "
                               f"{proj.target!r}")
            span = lags[proj.target] - lags[proj.source] + (1 if proj.recurrent else 0)
            if span != 1 or proj.delay != 1:
                raise SimError(f"projection {proj.name!r}: {proj.source!r} (lag {lags[proj.source]}) -> "
                               f"{proj.target!r} (lag {lags[proj.target]}) with delay {proj.delay}"
                               f"{' (recurrent)' if proj.recurrent else ''}; only one-step synapse layers are "
                               f"simulated")

    def run(self, x, *, record_spikes: bool = True, count: bool = True, chunk: Optional[int] = None,
            blas_threads: Optional[int] = 1) -> SimResult:
        """Simulate ``x`` (N, T, *input_shape, NIR order), ``chunk`` samples at a time.

        ``chunk`` (default: as many samples as keep each layer's (samples x T x neurons) arrays near 2**24
        elements) bounds memory only; results do not depend on it. ``blas_threads`` caps BLAS threads during
        the run (None: leave them); the default of 1 is the faster choice for these products (thousands of rows
        by hundreds), twice as fast as 2 threads on a loaded 2-core machine. Raises CompileError for input the
        Lava backend would refuse (same checks, same messages).
        """
        with _blas_limit(blas_threads):
            return self._run(x, record_spikes, count, chunk)

    def _run(self, x, record_spikes: bool, count: bool, chunk: Optional[int]) -> SimResult:
        start = time.perf_counter()
        x = self._checked_input(x)
        n, steps = x.shape[:2]
        if chunk is None:
            widest = max([self.net.input.size] + [p.size for p in self.net.populations])
            chunk = max(1, self.chunk_elements // (steps * widest))
        if chunk < 1:
            raise SimError(f"chunk={chunk} must be >= 1")
        limits: Dict[str, Dict[str, int]] = {p.name: {} for p in self.net.populations}
        try:
            parts = [self._run_chunk(x[i:i + chunk], count, limits) for i in range(0, n, chunk)]
        except CompileError:
            input_stream(self.net, as_array(x))  # the same error for the whole input: sample numbers as run_lava
            raise
        def joined(arrays):  # one chunk (the usual case) needs no copy
            return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

        outputs = joined([p[0] for p in parts])
        current = joined([p[1] for p in parts])
        spikes = {name: joined([p[2][name] for p in parts]) for name in parts[0][2]} if record_spikes else {}
        counts = self._counts([p[3] for p in parts], n, steps) if count else ()
        return SimResult(outputs=outputs, spikes=spikes, readout_current=current, target=self.net.target,
                         steps=n * steps + self.net.latency, latency=self.net.latency, counts=counts,
                         limits=limits if self.fixed else {}, seconds={"total": time.perf_counter() - start})

    chunk_elements = CHUNK_ELEMENTS  # default chunk: (sample, step, neuron) entries per layer array

    def _checked_input(self, x):
        """The input as the chunks take it (here a float64 numpy array), checked as the Lava backend checks it.
        With a host layer, each chunk checks its own values (:meth:`_host_layer`), in the pass that finds its
        repeated steps."""
        if self.net.host is None:
            return check_input(self.net, x)
        x = as_array(x)
        check_shape(self.net, x.shape)
        return x

    # one chunk of samples --------------------------------------------------------------------------

    def _run_chunk(self, x: np.ndarray, count: bool, limits: Dict[str, Dict[str, int]]):
        """(outputs, readout current, {population: NIR-order spikes}, (layer totals, population spike totals))."""
        net = self.net
        n, steps = x.shape[:2]
        m = n * steps
        rows: Dict[str, np.ndarray] = {}        # layer -> (N*T, n) bool spikes, Lava order
        totals: Dict[str, _Totals] = {}
        host = None
        if net.host is None:
            rows[net.input.name] = input_stream(net, x)[:, :m].T != 0
        else:
            host, host_totals = self._host_layer(x, count)  # (N, T or 1, n) host currents
            if count:
                totals[net.host.name] = host_totals
        spikes: Dict[str, np.ndarray] = {}
        for stage in self.stages:
            a_ins = {}
            for name in stage:
                pop = net.population(name)
                fed = host if net.host is not None and net.host.target == name else None
                a_in = self._input_current(name, (n, steps, pop.size), rows, fed, totals if count else None, stage)
                a_ins[name] = self.neurons[name].with_current_bias(a_in)
            cycle = [syn for name in stage for syn in self.synapses.get(name, []) if syn.proj.source in stage]
            if cycle:
                out = self._run_cycle(stage, a_ins, cycle, steps, limits)
                if count:  # the spikes of a sample's last step are gated off the recurrent path (see ir.py)
                    for syn in cycle:
                        src = net.population(syn.proj.source)
                        totals[syn.proj.name] = _layer_totals(out[src.name][:, :-1].reshape(-1, src.size),
                                                              syn.col_nnz)
            else:
                (name,) = stage
                out = {name: self.neurons[name].run(a_ins[name], steps, limits[name])}
            for name, s in out.items():
                pop = net.population(name)
                rows[name] = s.reshape(m, pop.size)
                spikes[name] = _nir_order(pop, s)
        if net.readout.kind == "current":
            shape = (n, steps, int(np.prod(net.readout.nir_shape)))
            current = self._input_current(net.readout.name, shape, rows, None, totals if count else None)
            current = current.astype(np.float64)
            outputs = readout_values(net, current)  # it reads current, writes a new array
        else:
            current = np.zeros((n, steps, 0))
            outputs = spikes[net.readout.source].astype(np.float64)
        fired = {name: float(np.count_nonzero(r)) for name, r in rows.items()}
        return outputs, current, spikes, (totals, fired)

    def _host_layer(self, x: np.ndarray, count: bool) -> Tuple[np.ndarray, Optional[_Totals]]:
        """(input_stream's host currents of the chunk ``x`` as (N, T or 1, n), the host layer's counts if
        ``count``), with the backend's checks: NaN and infinities, and currents beyond Loihi's a_in range (the
        backend's error, naming the sample and step).

        Direct encoding repeats each sample at every step. Every (sample, step) current is computed on its own
        (same operations, same order), so computing one step per sample gives the same values for every step,
        and the counts of one step, scaled, are those of all: tried first, given up at the first block of
        samples whose steps differ.
        """
        if x.shape[1] > 1:
            layer = self._host_pass(x, True, count)
            if layer is not None:
                return layer
        return self._host_pass(x, False, count)

    def _host_pass(self, x: np.ndarray, once: bool, count: bool) -> Optional[Tuple[np.ndarray, Optional[_Totals]]]:
        """:meth:`_host_layer` on every step, or on the first only (``once``; None as soon as a sample's steps
        differ), in one pass over the input a block of samples at a time: each block's steps compared, its
        distinct inputs checked for NaN and infinities (steps equal to the first are finite where the first
        is: NaN never equals itself), counted, and transposed into one small buffer for scipy's product (which
        wants each input's values contiguous; a transposed copy of the whole input would be fresh pages at
        every run), while the block is in cache.
        """
        net = self.net
        n, steps = x.shape[:2]
        n_input = net.input.size
        flat = (x[:, :1] if once else x).reshape(-1, n_input)  # (M, n_input) distinct inputs
        m = flat.shape[0]
        rows = max(1, 2 * SCRATCH_BYTES // (8 * n_input))  # two scratches' worth: fewer scipy calls
        scratch = np.empty(min(rows, m) * n_input)
        rows_scratch = np.empty(min(rows, m) * n_input)
        equal = np.empty(min(rows, m) * n_input * steps, dtype=bool) if once else None
        # fixed point's currents within Loihi's range (checked below) are integers below 2**24: float32 holds them
        # exactly (and anything beyond the range stays beyond it), at half the bytes for the neurons to read
        single = self.fixed and net.host.limit < FLOAT32_EXACT
        cur = np.empty((m, net.host.weight.shape[0]), np.float32 if single else np.float64)
        per_input, binary = np.zeros(n_input, np.int64), True
        small = np.uint8 if rows < 2 ** 8 else np.uint16 if rows < 2 ** 16 else np.int64  # holds a block's counts
        for i in range(0, m, rows):
            part = rows_scratch[:flat[i:i + rows].size].reshape(-1, n_input)
            np.copyto(part, flat[i:i + rows])  # contiguous: numpy's loops over strided rows are 3x slower
            part_t = scratch[:part.size].reshape(n_input, part.shape[0])
            np.copyto(part_t, part.T)
            if not np.isfinite(part.sum()) and not np.isfinite(part).all():  # a finite sum: all finite
                raise CompileError(NOT_FINITE)
            if count:  # the mask's rows added up: numpy's fast reduction
                per_input += np.add.reduce((part != 0).view(np.uint8), axis=0, dtype=small)
                binary = binary and _all_binary(part)
            if once and not _steps_equal(x[i:i + rows], equal):  # after the work on the first step: still cached
                return None
            block = self.host_weight @ part_t
            self._host_arithmetic(block, 0)  # on the block while it is in cache
            np.copyto(cur[i:i + rows], block.T)
        if self.fixed and cur.size and (cur.max() > net.host.limit or -cur.min() > net.host.limit):
            input_stream(net, x)
        totals = None
        if count:  # counted on the distinct steps only, then scaled: same numbers, less work
            totals = _Totals(float(per_input.sum()), float(per_input.astype(np.float64) @ self.host_nnz),
                             binary).repeated(steps, once)
        return cur.reshape(n, 1 if once else steps, -1), totals

    def _host_currents(self, flat: np.ndarray) -> np.ndarray:
        """(M, n_input) inputs in NIR order -> (n_host, M) host currents, input_stream's arithmetic op for op.

        ``W x + b`` (floating_pt), then ``round_half_even(scale * .)`` (fixed_pt), with the same scipy product
        (columns are independent and each is summed in W's stored order) and the same elementwise operations,
        so the values are identical (tests compare them); done in place and without input_stream's reordering
        copies of x, it takes a third of the time. Fixed point's values are integers, kept in float64.
        """
        cur = self.host_weight @ np.ascontiguousarray(flat.T)  # scipy wants each input's values contiguous
        self._host_arithmetic(cur, 0)
        return cur

    def _host_arithmetic(self, cur: np.ndarray, axis: int) -> None:
        """input_stream's elementwise steps on the products ``W x``, in place; host neurons along ``axis``."""
        host = self.net.host
        shape = (-1, 1) if axis == 0 else (1, -1)
        np.add(cur, host.bias.reshape(shape), out=cur)
        if self.fixed:
            np.multiply(cur, host.scale.reshape(shape), out=cur)
            np.round(cur, out=cur)

    def _input_current(self, target: str, shape: Tuple[int, int, int], rows, host: Optional[np.ndarray], totals,
                       stage: Tuple[str, ...] = ()):
        """Lava's a_in of ``target``, (N, T, n): its synapse outputs summed (plus the host current, which may be
        (N, 1, n) when every step is the same and nothing else feeds the target). Projections from the layers of
        ``stage`` (a cycle) are added step by step by :meth:`_run_cycle`; a recurrent projection from a layer
        computed before is its spikes one step later (zero at each sample's first step)."""
        a_in = host
        for syn in self.synapses.get(target, []):
            if syn.proj.source in stage:
                continue
            src = rows[syn.proj.source]
            if syn.proj.recurrent:
                n_src = src.shape[1]
                shifted = np.zeros((shape[0], shape[1], n_src), dtype=bool)
                shifted[:, 1:] = src.reshape(shape[0], shape[1], n_src)[:, :-1]
                src = shifted.reshape(-1, n_src)
            cur, layer = syn.current(src, self.fixed, count=totals is not None)
            if totals is not None:
                totals[syn.proj.name] = layer
            cur = cur.reshape(shape)
            a_in = cur if a_in is None else np.add(a_in, cur, dtype=np.float64)  # float32 sums may pass 2**24
        if a_in is None:  # no synapse at all: only the bias drives the layer
            return np.zeros(shape, np.int64 if self.fixed else np.float64)
        if self.fixed and a_in.size and self._may_pass_int32(target, host is not None) and \
                (a_in.min() < -2 ** 31 or a_in.max() >= 2 ** 31):
            # Lava's channels and its a_in array are int32: values beyond it wrap (sums of wraps = wrap of sums)
            a_in = _wrap32(a_in.astype(np.int64))
        return a_in

    def _may_pass_int32(self, target: str, fed_by_host: bool) -> bool:
        """Whether ``target``'s summed input could leave int32 (the sum of its synapses' bounds and the host's)."""
        bound = sum(syn.peak for syn in self.synapses.get(target, []))
        return bound + (self.net.host.limit if fed_by_host else 0) >= 2 ** 31

    def _run_cycle(self, stage: Tuple[str, ...], a_ins: Dict[str, np.ndarray], cycle: List[_Synapse], steps: int,
                   limits: Dict[str, Dict[str, int]]) -> Dict[str, np.ndarray]:
        """Run the populations of one cycle together, step by step: each adds to its feed-forward ``a_ins``
        the recurrent synapses' output of the previous step's spikes (every projection inside a cycle is
        recurrent). Returns {population: (N, T, n) bool spikes}."""
        n_samples = next(iter(a_ins.values())).shape[0]
        states = {name: self.neurons[name].start(n_samples) for name in stage}
        out = {name: np.zeros((n_samples, steps, self.neurons[name].pop.size), dtype=bool) for name in stage}
        for t in range(steps):
            previous = {name: states[name]["prev"] for name in stage}
            for name in stage:
                a_in = a_ins[name]
                a = a_in[:, t if a_in.shape[1] > 1 else 0].astype(np.int64 if self.fixed else np.float64)
                for syn in cycle:
                    if syn.proj.target == name:
                        a = a + syn.current(previous[syn.proj.source], self.fixed)[0].astype(a.dtype)
                self.neurons[name].advance(states[name], a, out[name][:, t])
        for name in stage:
            self.neurons[name].finish(states[name], limits[name])
        return out

    # counts ------------------------------------------------------------------------------------------

    def _counts(self, parts, n: int, steps: int) -> Tuple[LayerCounts, ...]:
        net = self.net
        layers: List[Tuple[str, str, str, int]] = []  # (name, source, target, nonzero weights)
        if net.host is not None:
            layers.append((net.host.name, net.input.name, net.host.target, int(net.host.weight.nnz)))
        for pop_name in [p.name for p in net.populations] + [net.readout.name]:
            for syn in self.synapses.get(pop_name, []):
                layers.append((syn.proj.name, syn.proj.source, syn.proj.target, int(syn.col_nnz.sum())))
        out, seen = [], set()
        for name, source, target, nnz in layers:
            chunks = [totals[name] for totals, _ in parts]
            events = sum(c.events for c in chunks)
            binary = all(c.binary for c in chunks)
            # activity.py's rule: a real-valued input identical at every step of the run is computed once
            once = steps > 1 and not binary and all(c.synops_one_step is not None for c in chunks)
            synops = sum(c.synops_one_step if once else c.synops for c in chunks)
            first = target not in seen
            seen.add(target)
            is_pop = target != net.readout.name
            neurons = net.population(target).size if is_pop else int(np.prod(net.readout.nir_shape))
            spikes = sum(fired[target] for _, fired in parts) if (is_pop and first) else 0.0
            out.append(LayerCounts(name=name, source=source, target=target, input_events=events / n,
                                   effective_synops=synops / n, input_binary=binary, output_spikes=spikes / n,
                                   neuron_updates=float(neurons * steps) if first else 0.0, neurons=neurons,
                                   nonzero_weights=nnz, computed_once=once))
        return tuple(out)


def _stages(net: LoweredNetwork) -> List[Tuple[str, ...]]:
    """The populations in the order they can be simulated: one stage per strongly connected component of the
    projection graph (a cycle's layers together, in network order), stages in topological order."""
    names = [p.name for p in net.populations]
    succ: Dict[str, List[str]] = {name: [] for name in names}
    for proj in net.projections:
        if proj.source in succ and proj.target in succ:
            succ[proj.source].append(proj.target)
    reach = {}
    for name in names:  # the few populations of a network: reachability by search is cheap
        seen, stack = set(), list(succ[name])
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(succ[k])
        reach[name] = seen
    stages: List[Tuple[str, ...]] = []
    placed = set()
    for name in names:
        if name in placed:
            continue
        stage = tuple(k for k in names if k == name or (k in reach[name] and name in reach[k]))
        placed.update(stage)
        stages.append(stage)
    ahead = {k: i for i, stage in enumerate(stages) for k in stage}
    order: List[Tuple[str, ...]] = []
    done: set = set()
    while len(order) < len(stages):  # Kahn over stages: a stage runs once every stage feeding it has run
        for i, stage in enumerate(stages):
            if i in done:
                continue
            feeding = {ahead[k] for k in names if any(t in stage for t in succ[k])} - {i}
            if feeding <= done:
                order.append(stage)
                done.add(i)
                break
        else:
            raise SimError(f"populations {', '.join(names)} cannot be ordered")  # unreachable: stages are a DAG
    return order


def simulate(lowered: LoweredNetwork, x, *, record_spikes: bool = True, count: bool = True,
             chunk: Optional[int] = None, blas_threads: Optional[int] = 1) -> SimResult:
    """Simulate ``x`` (N, T, *input_shape) through ``lowered``; see :class:`FastSim` and the module docstring."""
    return FastSim(lowered).run(x, record_spikes=record_spikes, count=count, chunk=chunk,
                                blas_threads=blas_threads)


_BLAS_CONTROLLER = None  # threadpoolctl's view of the loaded BLAS libraries, built once (it scans them, ~8 ms)


def _blas_limit(threads: Optional[int]):
    """A context capping BLAS threads (threadpoolctl comes with scikit-learn); a no-op without it."""
    global _BLAS_CONTROLLER
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    libraries = [lib for lib in _BLAS_CONTROLLER.lib_controllers if lib.user_api == "blas"]
    if all(lib.num_threads <= threads for lib in libraries):  # already within the cap: nothing to set and reset
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=threads, user_api="blas")
