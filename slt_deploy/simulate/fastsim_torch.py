"""The fast fixed-point simulator on a GPU: :class:`TorchFastSim`, bit-exact with the numpy :class:`FastSim`.

The same network, prepared by :class:`~slt_deploy.simulate.fastsim.FastSim` (effective Lava weights, blocks per
source group, neuron constants), run with torch on the device: the input is sent there once and checked there
(shape, NaN/inf, the 0/1 spikes a chip input needs, whether it repeats at every step), then the host layer, the
synapse products and the neuron loop run there; only the spikes, the readout current and the counts come back
(the readout's few float operations stay on the CPU with numpy, as FastSim computes them). Why it is exact:

- synapse products: integer weights (|w| <= 256) times 0/1 spikes, summed in float32 where every partial sum
  stays below 2**24 and in float64 otherwise (FastSim's own rule): every sum is an integer the format holds
  exactly, so the order in which cuBLAS or cuSPARSE adds them changes nothing; TF32 inputs would be exact too
  (an 8-bit integer needs 8 of TF32's 11 significant bits). The floor shift by the weight exponent and the
  int32 wrap are integer operations on int64 (``>>`` on torch int64 is the same arithmetic shift as numpy's);
- host layer: float64 ``round(scale * (W x + b))``, whose value depends on the order of the sum. It is first
  computed by a matrix product in any order, with a rigorous bound on its distance from scipy's sequential
  sum (the standard dot-product error bound); wherever the bound does not rule out a different rounding (a
  value within the bound of a half-integer), the sample is recomputed in scipy's exact order
  (:meth:`TorchFastSim._host_currents_ordered`), so every current is scipy's to the bit;
- neurons: FastSim's equations in int64 (its ``_decay`` and ``_wrap32`` helpers work on torch tensors as
  they are), choosing the same branch FastSim chooses (no 24-bit wrap while ``|a_in| <= 2**17`` and the current
  keeps no memory, the wrap otherwise; the voltage clip where FastSim's bound says it can act), with its reset by
  subtraction and its current bias (added to a_in, int32 as Lava's).

Only what FastSim's fixed_pt path simulates today is accepted: floating_pt stays on numpy (its float64 sums
would follow a different order here), and a network with a feature this backend does not implement (a setting
added to the IR's populations or projections after this module, a projection that is not feed-forward) is
refused in one line rather than simulated differently. :func:`fast_simulator` picks this backend for large
fixed-point evaluations when torch sees a GPU.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch

from ..compile.ir import A_IN_LIMIT, ACT_SHIFT, V_LIMIT, LoweredNetwork, Population, Projection
from ..compile.errors import CompileError
from ..compile.stream import NOT_FINITE, as_array, check_shape, input_stream, readout_values
from ..errors import ConfigError
from ..utils import resolve_device
from .fastsim import FLOAT32_EXACT, U_HALF, U_WRAP, FastSim, SimError, _decay, _Totals, _wrap32

__all__ = ["TorchFastSim", "fast_simulator", "TORCH_MIN_SAMPLES"]

# the IR fields this backend implements; a field added later (e.g. a reset mode) must be taught here first
KNOWN_FIELDS = {
    Population: {"name", "node_type", "nir_shape", "lava_shape", "nir_index", "du", "dv", "vth", "bias_mant",
                 "bias_exp", "lag", "reset", "current_bias"},
    Projection: {"name", "nodes", "source", "target", "weight", "weight_exp", "delay", "scale"},
}
NODE_TYPES = ("LIF", "IF", "CubaLIF")
GPU_DENSE_MAX_ENTRIES = 2 ** 28   # dense weights up to 1 GiB (float32) on the device; beyond, sparse CSR
TORCH_MIN_SAMPLES = 1000          # below this a GPU's start-up and transfers outweigh the gain
TORCH_CHUNK_ELEMENTS = 2 ** 27    # (sample, step, neuron) entries per layer array in one chunk (int64: 1 GiB)
# input dtypes sent to the device as they are (converted to float64 there: exact, as numpy's conversion)
DEVICE_INPUT_DTYPES = {np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64,
                                             np.float16, np.float32, np.float64)}
HOST_BOUND_SAFETY = 4.0           # the rounding-error bound of the host product, taken this many times over


def check_supported(net: LoweredNetwork) -> None:
    """Refuse, in one line, any network feature the torch backend does not implement."""
    if net.target != "fixed_pt":
        raise SimError(f"the torch fast simulator runs fixed_pt networks only, not {net.target!r}; "
                       f"floating_pt runs on the numpy FastSim")
    for items in (net.populations, net.projections):
        for item in items:
            for f in dataclasses.fields(item):
                if f.name in KNOWN_FIELDS[Population if isinstance(item, Population) else Projection]:
                    continue
                default = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
                value = getattr(item, f.name)
                if default is dataclasses.MISSING or not _same(value, default):
                    raise SimError(f"{type(item).__name__.lower()} {item.name!r}: {f.name}={value!r} is not "
                                   f"implemented by the torch fast simulator; use the numpy FastSim")
    for pop in net.populations:
        if pop.node_type not in NODE_TYPES:
            raise SimError(f"population {pop.name!r}: neuron type {pop.node_type!r} is not implemented by the "
                           f"torch fast simulator; use the numpy FastSim")
    order = {net.input.name: -1, **{p.name: i for i, p in enumerate(net.populations)},
             net.readout.name: len(net.populations)}
    for proj in net.projections:
        if order.get(proj.source, len(order)) >= order.get(proj.target, -1):
            raise SimError(f"projection {proj.name!r}: {proj.source!r} -> {proj.target!r} is not feed-forward "
                           f"(recurrent); the torch fast simulator does not implement it, use the numpy FastSim")


def _same(a, b) -> bool:
    try:
        return bool(np.all(a == b))
    except Exception:  # noqa: BLE001  (incomparable values count as different)
        return False


class TorchFastSim(FastSim):
    """:class:`FastSim` with its input checks, host layer, synapse products and neuron loop in torch on
    ``device`` (fixed_pt only). Made for a GPU: on a CPU it gives the same bits at about numpy's speed (tests
    run it there), which is why :func:`fast_simulator` never picks it there."""

    def __init__(self, lowered: LoweredNetwork, device: str | torch.device = "auto"):
        try:
            self.device = device if isinstance(device, torch.device) else resolve_device(device)
        except ConfigError as exc:
            raise SimError(str(exc)) from None
        check_supported(lowered)
        super().__init__(lowered)
        self._record = True
        # keyed by the synapse object: projections merged into one target can share a name ("ga+gb")
        self._blocks: Dict[int, list] = {}
        self._col_nnz: Dict[int, torch.Tensor] = {}
        for syns in self.synapses.values():
            for syn in syns:
                self._blocks[id(syn)] = [self._on_device(cols, w) for cols, w in syn.blocks]
                self._col_nnz[id(syn)] = torch.as_tensor(syn.col_nnz, device=self.device)
        self._consts = {name: tuple(torch.as_tensor(a, dtype=torch.int64, device=self.device)
                                    for a in (nr.keep_u, nr.keep_v, nr.bias, nr.vth))
                        for name, nr in self.neurons.items()}
        self._current_bias = {name: torch.as_tensor(nr.current_bias, dtype=torch.int64, device=self.device)
                              for name, nr in self.neurons.items() if nr.current_bias is not None}
        self._host = None
        if self.host_weight is not None:
            # the host matrix as (row, k) tables of its k-th stored entry, for _host_currents_on_device
            w = self.host_weight
            per_row = np.diff(w.indptr)
            width = int(per_row.max(initial=0))
            filled = np.arange(width)[None, :] < per_row[:, None]  # row-major: entries in their stored order
            values, columns = np.zeros(filled.shape), np.zeros(filled.shape, dtype=np.int64)
            values[filled], columns[filled] = w.data, w.indices
            host = lowered.host
            self._host_nnz = torch.as_tensor(self.host_nnz, dtype=torch.float64, device=self.device)
            self._host = tuple(torch.as_tensor(a, device=self.device) for a in (
                values.T.copy(), columns.T.copy(), host.bias.astype(np.float64), host.scale.astype(np.float64)))
            # W^T (n_input, n_host) for the unordered product and |W|^T for its error bound; longest row = n
            self._host_product = (self._product_matrix(w.data, w), self._product_matrix(np.abs(w.data), w), width)
        self._lava_to_nir = {p.name: torch.as_tensor(np.argsort(p.nir_index), device=self.device)
                             for p in lowered.populations if len(p.nir_shape) > 1}
        self._input_to_lava = torch.as_tensor(lowered.input.nir_index, device=self.device)

    def _product_matrix(self, data: np.ndarray, like: sp.csr_matrix) -> torch.Tensor:
        """The (n_host, n_input) matrix of ``data`` in ``like``'s places, float64 on the device for
        :meth:`_product`: its transpose dense when it fits, else itself as sparse CSR. Built from copies: scipy
        operations such as ``abs`` sort a matrix's indices in place, which would change the stored order (the
        order of scipy's sums) of the host matrix, whose arrays FastSim shares with the lowered network."""
        rows = np.repeat(np.arange(like.shape[0]), np.diff(like.indptr))
        if like.shape[0] * like.shape[1] <= GPU_DENSE_MAX_ENTRIES // 2:
            dense_t = np.zeros(like.shape[::-1])
            np.add.at(dense_t, (like.indices, rows), data)
            return torch.as_tensor(dense_t, device=self.device)
        csr = sp.csr_matrix((np.array(data, dtype=np.float64), (rows, like.indices)), shape=like.shape)
        csr.sort_indices()  # torch's CSR kernels want each row's columns sorted (the order of the sum is free here)
        with warnings.catch_warnings():  # see _on_device
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
            return torch.sparse_csr_tensor(torch.as_tensor(csr.indptr, dtype=torch.int64),
                                           torch.as_tensor(csr.indices, dtype=torch.int64),
                                           torch.as_tensor(csr.data, dtype=torch.float64),
                                           size=csr.shape).to(self.device)

    def _on_device(self, cols: Optional[np.ndarray], stored) -> Tuple[Optional[torch.Tensor], torch.Tensor, bool]:
        """(source columns, weights, dense): FastSim's (n_source, n_target) block, dense when it fits."""
        n_src, n_tgt = stored.shape
        dtype = torch.float32 if 256 * n_src < FLOAT32_EXACT else torch.float64
        idx = None if cols is None else torch.as_tensor(cols, dtype=torch.int64, device=self.device)
        if n_src * n_tgt <= GPU_DENSE_MAX_ENTRIES:
            dense = stored.toarray() if sp.issparse(stored) else stored
            return idx, torch.as_tensor(np.ascontiguousarray(dense), device=self.device).to(dtype), True
        csr = sp.csr_matrix(stored.T)  # (n_target, n_source): sparse @ spikes^T
        with warnings.catch_warnings():  # torch warns on every CSR construction ("beta"; invariant checks off)
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
            w = torch.sparse_csr_tensor(torch.as_tensor(csr.indptr, dtype=torch.int64),
                                        torch.as_tensor(csr.indices, dtype=torch.int64),
                                        torch.as_tensor(csr.data), size=csr.shape).to(dtype)
        return idx, w.to(self.device), False

    chunk_elements = TORCH_CHUNK_ELEMENTS  # a larger default chunk: the device holds it

    def run(self, x, *, record_spikes: bool = True, count: bool = True, chunk: Optional[int] = None,
            blas_threads: Optional[int] = 1):
        """As :meth:`FastSim.run`; ``x`` may also be a torch tensor (on any device)."""
        self._record = record_spikes
        return super().run(x, record_spikes=record_spikes, count=count, chunk=chunk, blas_threads=blas_threads)

    def _checked_input(self, x) -> torch.Tensor:
        """``x`` as float64 on the device, sent there in one transfer (in its own dtype, converted there) and
        checked there: the same checks and messages as ``check_input``."""
        if isinstance(x, torch.Tensor):
            t = x.detach()
        else:
            a = np.asarray(x)
            if a.dtype not in DEVICE_INPUT_DTYPES or not a.dtype.isnative:
                a = as_array(a)
            with warnings.catch_warnings():  # a read-only array (np.broadcast_to...) is only read here
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.as_tensor(a)
        check_shape(self.net, tuple(t.shape))
        t = t.to(self.device).to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise CompileError(NOT_FINITE)
        return t

    # one chunk: FastSim._run_chunk with the layers on the device ------------------------------------

    def _run_chunk(self, x: torch.Tensor, count: bool, limits: Dict[str, Dict[str, int]]):
        net = self.net
        n, steps = x.shape[:2]
        m = n * steps
        rows: Dict[str, torch.Tensor] = {}
        totals: Dict[str, _Totals] = {}
        host = None
        if net.host is None:  # input spikes: input_stream's check, then its Lava order
            flat = x.reshape(m, -1)
            if not bool(((flat == 0) | (flat == 1)).all()):
                input_stream(net, x.cpu().numpy())  # raises the backend's error
            rows[net.input.name] = flat.index_select(1, self._input_to_lava) != 0
        else:
            host, once, flat = self._host_stream(x)
            if count:  # FastSim's _layer_totals on the device (integer counts: exact in any order)
                per_input = (flat != 0).sum(0, dtype=torch.float64)
                events = float(per_input.sum())
                binary = events == float((flat.abs() == 1).sum())
                one = _Totals(events, float(per_input @ self._host_nnz), binary)
                totals[net.host.name] = one.repeated(steps, once)
        spikes: Dict[str, np.ndarray] = {}
        for pop in net.populations:
            fed = host if net.host is not None and net.host.target == pop.name else None
            a_in = self._current_in(pop.name, (n, steps, pop.size), rows, fed, totals if count else None)
            if pop.name in self._current_bias:  # FastSim's with_current_bias: added to a_in, int32 as Lava's
                a_in = a_in + self._current_bias[pop.name]
                if a_in.numel() and bool((a_in.min() < -2 ** 31) | (a_in.max() >= 2 ** 31)):
                    a_in = _wrap32(a_in)
            s = self._neurons_run(pop.name, a_in, steps, limits[pop.name])
            rows[pop.name] = s.reshape(m, pop.size)
            if self._record or net.readout.source == pop.name:
                spikes[pop.name] = self._nir_order_to_host(pop, s)
        if net.readout.kind == "current":
            shape = (n, steps, int(np.prod(net.readout.nir_shape)))
            current = self._current_in(net.readout.name, shape, rows, None, totals if count else None)
            current = current.cpu().numpy().astype(np.float64)
            outputs = readout_values(net, current.copy())
        else:
            current = np.zeros((n, steps, 0))
            outputs = spikes[net.readout.source].astype(np.float64)
        if not self._record:
            spikes = {}
        fired = {name: float(r.count_nonzero()) for name, r in rows.items()}
        return outputs, current, spikes, (totals, fired)

    def _nir_order_to_host(self, pop: Population, s: torch.Tensor) -> np.ndarray:
        """FastSim's ``_nir_order`` with the permutation done on the device: int8 (N, T, *nir_shape) numpy."""
        if pop.name in self._lava_to_nir:
            s = s.index_select(2, self._lava_to_nir[pop.name])
        return s.cpu().numpy().view(np.int8).reshape(tuple(s.shape[:2]) + tuple(pop.nir_shape))

    def _host_stream(self, x: torch.Tensor) -> Tuple[torch.Tensor, bool, torch.Tensor]:
        """FastSim._host_layer for a host layer, computed on the device: int64 (N, T or 1, n), ``once``, and the
        distinct inputs (N * (1 or T), n_input) on the device."""
        net = self.net
        n, steps = x.shape[:2]
        once = steps > 1 and bool((x == x[:, :1]).all())
        flat = (x[:, :1] if once else x).reshape(-1, net.input.size)
        cur = self._host_currents_on_device(flat)
        if bool((cur.abs() > net.host.limit).any()):
            input_stream(net, x.cpu().numpy())  # raises the backend's error (naming the sample and step)
        return cur.to(torch.int64).reshape(n, 1 if once else steps, -1), once, flat

    def _host_currents_on_device(self, flat: torch.Tensor) -> torch.Tensor:
        """(M, n_input) float64 inputs (NIR order) -> (M, n_host) ``round(scale * (W x + b))``, bit-exact with
        FastSim._host_currents (and so with input_stream, what Lava receives).

        One matrix product in any order gives ``a = scale * (W x + b)`` to within ``d``, a bound on its distance
        from scipy's ordered value: both dot products lie within ``gamma_n * sum|w x|`` of the exact one (gamma_n
        = n u / (1 - n u), n the longest row, u = 2**-53; Higham, Accuracy and Stability of Numerical
        Algorithms, 3.1, for any order of summation, fused multiply-adds included), and the bias addition and
        scaling each round once more (u relative, each). Where no half-integer lies within ``d`` of ``a``,
        scipy's value rounds to the same integer; the samples with any current nearer than that (rare: ``d`` is
        about 1e-9 for MNIST-sized layers) are recomputed in scipy's order.
        """
        w_t, w_abs_t, n_terms = self._host_product
        _, _, bias, scale = self._host
        if flat.shape[0] == 0:
            return torch.zeros((0, bias.shape[0]), dtype=torch.float64, device=self.device)
        sums = self._product(flat, w_t)
        magnitude = self._product(flat.abs(), w_abs_t)  # sum |w x|, itself within gamma_n of its exact value
        u = 2.0 ** -53
        gamma = n_terms * u / (1 - n_terms * u)
        shifted = sums + bias
        approx = shifted * scale
        # |sums - scipy's| <= 2 gamma magnitude (each within gamma of the exact sum; magnitude's own error
        # covered by the safety factor); then one rounding of the bias sum, one of the product
        bound = scale.abs() * (2 * gamma * magnitude + 2 * u * (shifted.abs() + 2 * gamma * magnitude)) \
            + 2 * u * approx.abs()
        bound = HOST_BOUND_SAFETY * bound + 2.0 ** -40
        half_gap = ((approx - torch.floor(approx)) - 0.5).abs()  # distance to the nearest half-integer
        unsure = (half_gap <= bound) | (approx.abs() >= 2.0 ** 50)
        rounded = torch.round(approx)
        redo = unsure.any(1).nonzero().flatten()
        if redo.numel():
            rounded[redo] = self._host_currents_ordered(flat.index_select(0, redo))
        return rounded

    def _product(self, flat: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """(M, n_input) inputs times the host matrix -> (M, n_host), in any order of summation."""
        if matrix.layout == torch.strided:
            return flat @ matrix
        return torch.sparse.mm(matrix, flat.t().contiguous()).t()

    def _host_currents_ordered(self, flat: torch.Tensor) -> torch.Tensor:
        """:meth:`_host_currents_on_device` summed in scipy's order, for every current (M, n_host).

        scipy's CSR product sums each current in the row's stored order, one ``y += a * x`` after the other
        (no fused multiply-add in its generic C++ loop); here the k-th stored entry of every row is added in
        step k, as a separate multiply and add, so each float64 rounding happens as in scipy. A padded entry
        adds 0 * x = +-0, which leaves every sum unchanged. Then the same elementwise bias, scale and
        half-to-even rounding.
        """
        values, columns, bias, scale = self._host
        acc = torch.zeros((flat.shape[0], values.shape[1]), dtype=torch.float64, device=self.device)
        for k in range(values.shape[0]):
            acc += flat[:, columns[k]] * values[k]
        acc += bias
        acc *= scale
        return torch.round(acc)

    def _current_in(self, target: str, shape, rows, host: Optional[torch.Tensor], totals) -> torch.Tensor:
        """FastSim._input_current on the device: int64 (N, T, n) (or (N, 1, n) from the host alone)."""
        a_in = host
        for syn in self.synapses.get(target, []):
            src = rows[syn.proj.source]
            if totals is not None:
                per_input = src.sum(0, dtype=torch.float64)
                totals[syn.proj.name] = _Totals(float(per_input.sum()), float(per_input @ self._col_nnz[id(syn)]),
                                                True)
            total = None
            for cols, w, dense in self._blocks[id(syn)]:
                s = src if cols is None else src.index_select(1, cols)
                if dense:
                    acc = s.to(w.dtype) @ w
                else:
                    acc = torch.sparse.mm(w, s.to(w.dtype).T.contiguous()).T
                acc = acc.to(torch.int64)
                acc = acc << syn.exp if syn.exp > 0 else acc >> -syn.exp
                total = acc if total is None else total + acc
            cur = total.reshape(shape)
            a_in = cur if a_in is None else a_in + cur
        if a_in is None:
            return torch.zeros(shape, dtype=torch.int64, device=self.device)
        if a_in.numel() and bool((a_in.min() < -2 ** 31) | (a_in.max() >= 2 ** 31)):
            a_in = _wrap32(a_in)
        return a_in

    def _neurons_run(self, name: str, a_in: torch.Tensor, steps: int, events: Dict[str, int]) -> torch.Tensor:
        """FastSim's ``_Neurons.run`` (fixed_pt) in int64 on the device: (N, T or 1, n) -> (N, T, n) bool."""
        keep_u, keep_v, bias, vth = self._consts[name]
        subtract = self.neurons[name].subtract
        peak = int(a_in.abs().max()) if a_in.numel() else 0
        wide = peak > A_IN_LIMIT
        u_decays = bool((keep_u != 0).any())
        general = u_decays or wide
        # FastSim's plain branch (no current memory, |a_in| <= 2**17) neither wraps u nor clips v where its
        # bound proves the clip idle: the same choices here, so both backends give the same bits
        clipping = general or subtract or self.neurons[name]._may_clip(peak, steps)
        shifted = a_in << ACT_SHIFT
        if wide:
            shifted = _wrap32(shifted)
        n_samples, t_in, n = shifted.shape
        u = torch.zeros((n_samples, n), dtype=torch.int64, device=self.device)
        v = torch.zeros_like(u)
        out = torch.empty((n_samples, steps, n), dtype=torch.bool, device=self.device)
        wraps = torch.zeros((), dtype=torch.int64, device=self.device)
        clips = torch.zeros_like(wraps)
        for t in range(steps):
            x = shifted[:, t if t_in > 1 else 0]
            if general:
                if u_decays:
                    x = x + _decay(u, keep_u)
                    if wide:
                        x = _wrap32(x)
                u = torch.where(x > U_HALF, x - U_WRAP, torch.where(x <= -U_HALF, x + U_WRAP, x))
                wraps += (u != x).sum()
            else:
                u = x
            y = _decay(v, keep_v) + u + bias
            if subtract and t:  # the threshold, undecayed, for the previous step's spike (no zeroing)
                y = y - vth * out[:, t - 1]
            if wide:
                y = _wrap32(y)
            if clipping:
                v = y.clamp(-V_LIMIT, V_LIMIT)
                clips += (v != y).sum()
            else:
                v = y
            s = v > vth
            out[:, t] = s
            if not subtract:
                v = v.masked_fill(s, 0)
        events["u_wraps"] = events.get("u_wraps", 0) + int(wraps)
        events["v_clips"] = events.get("v_clips", 0) + int(clips)
        events["a_in_peak"] = max(events.get("a_in_peak", 0), peak)
        return out


def fast_simulator(lowered: LoweredNetwork, samples: int, device: str = "auto") -> FastSim:
    """The fast simulator for ``samples`` samples: the torch one on a GPU for a large fixed_pt evaluation
    (``device`` auto, at least :data:`TORCH_MIN_SAMPLES` samples, a network it implements), else numpy's.
    ``device='cpu'`` always gives numpy's; ``cuda``/``cuda:N`` asks for the torch one (a clear error if it
    cannot run)."""
    if device == "cpu":
        return FastSim(lowered)
    if device != "auto":
        return TorchFastSim(lowered, device)
    if lowered.target == "fixed_pt" and samples >= TORCH_MIN_SAMPLES and torch.cuda.is_available():
        try:
            check_supported(lowered)
        except SimError:
            return FastSim(lowered)
        return TorchFastSim(lowered, "cuda")
    return FastSim(lowered)
