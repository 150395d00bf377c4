"""Floating-point IR -> Loihi fixed-point IR (the ``fixed_pt`` target), one scale per layer.

What is chosen per population (a layer of LIF neurons), and why:

- **Threshold folding.** With reset to zero, dividing a neuron's incoming weights, bias and threshold by its
  threshold changes nothing, so every population is quantized in threshold units: ``R = W / theta`` (per row),
  ``r = bias / theta``, threshold 1. Per-neuron thresholds therefore cost nothing (one ``vth`` per process).
- **Scale = vth.** In Lava ``a_in = mantissa << weight_exp`` is compared against ``vth << 6`` after ``<< 6``,
  so the effective normalized weight is ``mantissa * 2**weight_exp / vth``. The compiler picks the integer
  ``vth`` and ``weight_exp`` and sets ``mantissa = q(R * vth / 2**weight_exp)``; the threshold is then exact by
  construction and all error sits in the 8-bit mantissas. ``q`` rounds half to even, to even integers for
  mixed-sign matrices (Lava drops their LSB: values in [-256, 254]) and to integers in [0, 255] otherwise.
- **weight_exp** is the exponent closest to 0 for which the largest weight gets a mantissa of at least 128
  while ``vth`` stays in [2**8, 2**14]: a threshold resolution finer than the weights' and 2**23 / (vth << 6)
  >= 8 thresholds of headroom before the 24-bit voltage saturates. ``netx_compatible`` forces 0 (netx has no
  weight exponent for dense layers) and bias_exp 6 (netx's fixed ``bias_exp``).
- **Several source processes.** Lava shifts each source group's sum on its own (see
  :mod:`slt_deploy.compile.ir`), so with ``weight_exp < 0`` a population fed by a multi-group source (several
  decays) gets the floor of every group's sum, not of the total. Exact either way, but when the weights would
  need a negative exponent, such a population takes ``weight_exp = 0`` with ``vth`` above the window (up to
  ``2**17 - 1``) instead, as long as the largest weight still gets a mantissa >= 128: the same weight
  precision, no per-group floors, and 2**17 / vth (1 to 8) thresholds of voltage headroom instead of >= 8
  (the ``LayerQuant`` note says so). Smaller weights keep the negative exponent.
- **vth** (and so the mantissa scale) is the candidate in that window minimizing the squared error of the
  normalized weights and biases. A binary ticket (nonzero weights exactly +-alpha) always gets exactly two
  mantissa levels +-m, and the search picks the m / vth closest to alpha / theta.
- **bias_exp** is the smallest exponent in 0..7 whose 13-bit mantissa holds ``64 * vth * r``.
- **Current bias** (CubaLIF fed through a bias, see :mod:`.ir`) is added to ``a_in``, so it is in a_in units:
  ``round(vth * current_bias / theta)``, the resolution of the weights (its error joins the score of ``vth``).
- **Decays** ``dv = round(4096 (1 - decay))`` (must be <= 4095), ``du = 4095`` (no current memory; Lava adds
  one) for LIF/IF, ``du = round(4096 (1 - alpha)) - 1`` for CubaLIF.
- **Host-fed first population**: the host sends ``round(4096 / theta_i * current_i)``, ``vth = 4096``; its own
  recurrent projection (the only other input it can have) is quantized in the same units.
- **Readout**: ``a = q(W * K)`` with the largest mantissa in [128, 254]; logits are ``a / K + bias`` on the
  host (the bias stays in float). A row whose positive (or negative) mantissas could sum beyond
  ``READOUT_LIMIT`` (the int32 channel) raises :class:`CompileError` naming the readout.

Values no exponent can fit raise :class:`CompileError` naming the layer and the value.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from .errors import CompileError
from . import ir
from .ir import (A_IN_LIMIT, ACT_SHIFT, BIAS_EXP_MAX, BIAS_MANT_MAX, DECAY_MAX, DECAY_UNITY, VTH_MAX,
                 WEIGHT_EXP_RANGE, LayerQuant, LoweredNetwork, Population, Projection)

HOST_VTH = 4096               # threshold mantissa of the host-fed population: currents in theta / 4096
VTH_WINDOW = (2 ** 8, 2 ** 14)
MIN_MANTISSA = 128            # the largest weight uses at least 8 bits (7 + sign for mixed matrices)
NETX_BIAS_EXP = 6
MAX_CANDIDATES = 4096
ACT_SHIFT_UNITS = 2 ** ACT_SHIFT  # v is in units of a_in << 6


def quantize_values(x: np.ndarray, mixed: bool) -> np.ndarray:
    """Lava weight mantissas: round half to even; even integers for mixed-sign matrices."""
    return (2.0 * np.round(x / 2.0) if mixed else np.round(x)).astype(np.int64)


def _data(m) -> np.ndarray:
    return m.data if sp.issparse(m) else np.asarray(m)[np.asarray(m) != 0]


def _is_mixed(m) -> bool:
    d = _data(m)
    return bool(d.size) and bool((d < 0).any()) and bool((d > 0).any())


def _decays(pop: Population) -> Tuple[np.ndarray, np.ndarray, float]:
    dv = np.round(pop.dv * DECAY_UNITY).astype(np.int64)
    du = np.round(pop.du * DECAY_UNITY).astype(np.int64) - 1  # Lava decays u by du + 1
    bad = (dv < 0) | (dv > DECAY_MAX)
    if bad.any():
        decay = 1.0 - float(pop.dv[bad][0])
        raise CompileError(f"layer {pop.name!r}: voltage decay {decay:.6g} needs dv={int(dv[bad][0])}, outside "
                           f"Loihi's 12-bit range 0..{DECAY_MAX} (decay must be >= 1/4096)")
    bad = (du < 0) | (du > DECAY_MAX)
    if bad.any():
        raise CompileError(f"layer {pop.name!r}: current decay {1.0 - float(pop.du[bad][0]):.6g} needs "
                           f"du={int(du[bad][0])}, outside Loihi's range 0..{DECAY_MAX} (a current that never "
                           f"decays cannot be mapped)")
    err = max(float(np.abs((DECAY_UNITY - dv) / DECAY_UNITY - (1.0 - pop.dv)).max()),
              float(np.abs((DECAY_UNITY - du - 1) / DECAY_UNITY - (1.0 - pop.du)).max()))
    return du, dv, err


def _bias_exp(layer: str, bias_eff: np.ndarray, fixed: Optional[int]) -> Tuple[np.ndarray, int]:
    """(mantissas, exponent) with |mantissa| <= 4095; the smallest exponent in 0..7 unless ``fixed``."""
    top = float(np.abs(bias_eff).max()) if bias_eff.size else 0.0
    exps = [fixed] if fixed is not None else range(BIAS_EXP_MAX + 1)
    for k in exps:
        mant = np.round(bias_eff / 2.0 ** k)
        if float(np.abs(mant).max(initial=0.0)) <= BIAS_MANT_MAX:
            return mant.astype(np.int64), int(k)
    limit = BIAS_MANT_MAX * 2 ** (fixed if fixed is not None else BIAS_EXP_MAX)
    raise CompileError(f"layer {layer!r}: bias {top:.6g} (in Loihi voltage units) exceeds the 13-bit bias "
                       f"mantissa x 2**{exps[-1] if fixed is not None else BIAS_EXP_MAX} = {limit}; the bias "
                       f"is too large relative to the threshold")


def _choose_exp(layer: str, max_r: float, m_top: int, netx: bool) -> Tuple[int, int, int]:
    """(weight_exp, vth_lo, vth_hi): the vth candidates that give the largest weight a mantissa in range."""
    def span(e, lo_m):
        return int(np.ceil(lo_m * 2.0 ** e / max_r)), int(np.floor(m_top * 2.0 ** e / max_r))

    if netx:
        lo, hi = span(0, MIN_MANTISSA)
        lo, hi = max(lo, 1), min(hi, VTH_MAX)
        if hi < 1:
            raise CompileError(f"layer {layer!r}: max |weight| / threshold = {max_r:.6g} > {m_top}; it needs "
                               f"weight_exp > 0, which the netx format cannot carry")
        if lo > hi:
            raise CompileError(f"layer {layer!r}: threshold / max |weight| = {1 / max_r:.6g} needs vth > "
                               f"{VTH_MAX} with weight_exp = 0 (netx)")
        return 0, lo, hi
    exps = sorted(range(WEIGHT_EXP_RANGE[0], WEIGHT_EXP_RANGE[1] + 1), key=lambda e: (abs(e), -e))
    for e in exps:  # inside the preferred window: threshold resolution >= 2**8, headroom >= 8 thresholds
        lo, hi = span(e, MIN_MANTISSA)
        lo, hi = max(lo, VTH_WINDOW[0]), min(hi, VTH_WINDOW[1])
        if lo <= hi:
            return e, lo, hi
    best = None
    for e in exps:  # anywhere in Loihi's range, most resolution first
        lo, hi = span(e, 1)
        lo, hi = max(lo, 1), min(hi, VTH_MAX)
        if lo <= hi and (best is None or hi > best[2]):
            best = (e, max(lo, int(np.ceil(MIN_MANTISSA * 2.0 ** e / max_r)) if hi >= MIN_MANTISSA else lo), hi)
    if best is None:
        ratio = 1.0 / max_r
        raise CompileError(f"layer {layer!r}: threshold / max |weight| = {ratio:.6g} does not fit Loihi: vth "
                           f"would be {m_top * 2.0 ** WEIGHT_EXP_RANGE[1] * ratio:.6g} at weight_exp "
                           f"{WEIGHT_EXP_RANGE[1]} and {m_top * 2.0 ** WEIGHT_EXP_RANGE[0] * ratio:.6g} at "
                           f"{WEIGHT_EXP_RANGE[0]} (needs 1..{VTH_MAX})")
    warnings.warn(f"layer {layer!r}: threshold / max |weight| = {1 / max_r:.4g} allows only vth <= {best[2]}, outside "
                  f"[{VTH_WINDOW[0]}, {VTH_WINDOW[1]}]; fixed-point resolution or headroom is reduced")
    return best


def _candidates(lo: int, hi: int, cost: int) -> np.ndarray:
    n = hi - lo + 1
    limit = max(64, min(MAX_CANDIDATES, int(2e7 // max(cost, 1))))
    if n <= limit:
        return np.arange(lo, hi + 1)
    return np.unique(np.round(np.linspace(lo, hi, limit)).astype(np.int64))


def _unique(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return np.unique(values, return_counts=True) if values.size else (values, values.astype(np.int64))


def _nonneg_span(max_r: float, m_top: int) -> Optional[Tuple[int, int]]:
    """vth range above the window that keeps weight_exp = 0 and the largest mantissa >= 128, or None."""
    lo = max(int(np.ceil(MIN_MANTISSA / max_r)), VTH_WINDOW[1])
    hi = min(int(np.floor(m_top / max_r)), VTH_MAX)
    return (lo, hi) if lo <= hi else None


def _quantize_population(pop: Population, incoming: List[Projection], netx: bool, multi_source: bool = False):
    """Choose weight_exp, vth, bias_exp for one chip-fed population; returns (new pop, new projections, record).

    ``multi_source``: some source population has several Lava processes (groups), so a negative weight_exp
    would floor each group's sum separately; weight_exp 0 is preferred then when it costs no weight precision.
    """
    du, dv, decay_err = _decays(pop)
    inv = 1.0 / pop.vth
    norm = [sp.csr_matrix(sp.diags(inv) @ sp.csr_matrix(p.weight)) for p in incoming]
    r = pop.bias_mant * inv
    r_cur = None if pop.current_bias is None else pop.current_bias * inv  # current bias / threshold
    mixed = [_is_mixed(m) for m in norm]
    m_top = 254 if any(mixed) else 255
    max_r = max((float(np.abs(m.data).max()) for m in norm if m.nnz), default=0.0)
    fixed_bexp = NETX_BIAS_EXP if netx else None
    uniq = [_unique(m.data) for m in norm]

    def fit(e: int, cands: np.ndarray):
        best = None
        for vth in cands[::-1]:  # largest first: on a tie the largest weight keeps the largest mantissa
            k = vth / 2.0 ** e  # mantissa per unit of normalized weight
            sse, ref = 0.0, 0.0
            if max_r:
                for (vals, counts), mix in zip(uniq, mixed):
                    q = quantize_values(vals * k, mix)
                    sse += float((counts * (q / k - vals) ** 2).sum())
                    ref += float((counts * vals ** 2).sum())
            try:
                bmant, bexp = _bias_exp(pop.name, ACT_SHIFT_UNITS * vth * r, fixed_bexp)
            except CompileError:
                continue
            bias_sse = float(((bmant * 2.0 ** bexp / (ACT_SHIFT_UNITS * vth) - r) ** 2).sum())
            if r_cur is not None:
                bias_sse += float(((np.round(vth * r_cur) / vth - r_cur) ** 2).sum())
            score = sse + bias_sse
            if best is None or score < best[0] - 1e-15 * max(score, 1.0):
                best = (score, int(vth), bmant, bexp, sse, ref)
        return best

    def candidates(lo, hi):
        return _candidates(lo, hi, sum(u[0].size for u in uniq) + int(np.count_nonzero(r)))

    note = "per-neuron thresholds folded into weights" if np.unique(pop.vth).size > 1 else ""
    best = None
    if max_r == 0.0:  # no weights at all: only the bias drives the layer
        e, cands = 0, np.array([VTH_WINDOW[0]])
    else:
        e, lo, hi = _choose_exp(pop.name, max_r, m_top, netx)
        cands = candidates(lo, hi)
        span = _nonneg_span(max_r, m_top) if e < 0 and multi_source and not netx else None
        if span is not None:
            best = fit(0, candidates(*span))
            if best is not None:
                e = 0
                note = "; ".join(filter(None, [note, f"weight_exp 0 kept for a multi-process source: vth "
                                                     f"{best[1]} > 2**14, {2 ** 17 / best[1]:.3g} thresholds of "
                                                     f"voltage headroom"]))
    if best is None:
        best = fit(e, cands)
    if best is None:  # every candidate failed the bias range: report it for the natural choice
        _bias_exp(pop.name, ACT_SHIFT_UNITS * cands[-1] * r, fixed_bexp)
    _, vth, bmant, bexp, sse, ref = best
    k = vth / 2.0 ** e
    new_projs, levels, top_mant, a_max = [], set(), 0, np.zeros(pop.size)
    for p, m, mix in zip(incoming, norm, mixed):
        q = sp.csr_matrix((quantize_values(m.data * k, mix), m.indices, m.indptr), shape=m.shape)
        q.eliminate_zeros()
        levels.update(np.unique(q.data).tolist())
        top_mant = max(top_mant, int(np.abs(q.data).max(initial=0)))
        pos, neg = q.maximum(0).sum(axis=1).A1, (-q.minimum(0)).sum(axis=1).A1
        a_max += np.maximum(pos, neg) * 2.0 ** e
        weight = q if sp.issparse(p.weight) else q.toarray()
        new_projs.append(replace(p, weight=weight, weight_exp=e, scale=k))
    current_bias = None if r_cur is None else np.round(vth * r_cur).astype(np.int64)
    if current_bias is not None:
        a_max += np.abs(current_bias)
    worst = float(a_max.max(initial=0.0))
    if worst >= A_IN_LIMIT:
        warnings.warn(f"layer {pop.name!r}: if every excitatory (or inhibitory) input spiked in the same step, "
                      f"a_in = {worst:.0f} would exceed 2**17 and Loihi's 24-bit current would wrap")
    n = pop.size
    new_pop = replace(pop, du=du, dv=dv, vth=np.full(n, vth, np.int64), bias_mant=bmant,
                      bias_exp=np.full(n, bexp, np.int64), current_bias=current_bias)
    if current_bias is not None:
        note = "; ".join(filter(None, [note, "current bias in a_in units"]))
    record = LayerQuant(layer=pop.name, scale=float(k * 2.0 ** e), weight_exp=e, max_mantissa=top_mant,
                        weight_levels=len(levels), vth=vth, bias_exp=bexp, du=int(du.max()), dv=int(dv.max()),
                        weight_error=float(np.sqrt(sse / ref)) if ref else 0.0,
                        threshold_error=0.0, decay_error=decay_err, note=note)
    return new_pop, new_projs, record



def _host_unit_projection(pop: Population, proj: Projection, scale: np.ndarray) -> Projection:
    """A projection into the host-fed population (its own recurrence) in that population's units, threshold /
    HOST_VTH: mantissa * 2**weight_exp = round(weight * HOST_VTH / theta), with the smallest weight_exp >= 0 that
    keeps the mantissas in 8 bits."""
    r = sp.csr_matrix(sp.diags(scale) @ sp.csr_matrix(proj.weight))
    r.eliminate_zeros()
    mixed = _is_mixed(r)
    top = 254 if mixed else 255
    max_r = float(np.abs(r.data).max(initial=0.0))
    e = 0
    while max_r / 2.0 ** e > top:
        e += 1
    if e > WEIGHT_EXP_RANGE[1]:
        raise CompileError(f"layer {pop.name!r}: recurrent weight / threshold up to {max_r / HOST_VTH:.4g} does not fit "
                           f"8-bit mantissas with weight_exp <= {WEIGHT_EXP_RANGE[1]}")
    q = sp.csr_matrix((quantize_values(r.data / 2.0 ** e, mixed), r.indices, r.indptr), shape=r.shape)
    q.eliminate_zeros()
    return replace(proj, weight=q if sp.issparse(proj.weight) else q.toarray(), weight_exp=e,
                   scale=float(np.max(scale)))


def _quantize_host(net: LoweredNetwork, pop: Population):
    du, dv, decay_err = _decays(pop)
    scale = HOST_VTH / pop.vth
    bmant, bexp = _bias_exp(pop.name, ACT_SHIFT_UNITS * scale * pop.bias_mant, None)
    n = pop.size
    new_pop = replace(pop, du=du, dv=dv, vth=np.full(n, HOST_VTH, np.int64), bias_mant=bmant,
                      bias_exp=np.full(n, bexp, np.int64))
    host = replace(net.host, scale=scale, limit=float(A_IN_LIMIT - 1))
    record = LayerQuant(layer=pop.name, scale=float(scale.max()), weight_exp=0, max_mantissa=0, weight_levels=0,
                        vth=HOST_VTH, bias_exp=bexp, du=int(du.max()), dv=int(dv.max()), weight_error=0.0,
                        threshold_error=0.5 / HOST_VTH, decay_error=decay_err,
                        note=f"host layer {net.host.name}: currents rounded to threshold/{HOST_VTH}")
    return new_pop, host, record


def _quantize_readout(net: LoweredNetwork, incoming: List[Projection]):
    mats = [sp.csr_matrix(p.weight) for p in incoming]
    mixed = [_is_mixed(m) for m in mats]
    m_top = 254 if any(mixed) else 255
    max_w = max((float(np.abs(m.data).max()) for m in mats if m.nnz), default=0.0)
    uniq = [_unique(m.data) for m in mats]
    best = (np.inf, 1.0, 0.0, 0.0)
    if max_w:
        step = 2 if any(mixed) else 1
        for top in range(m_top, MIN_MANTISSA - 1, -step):  # largest first: ties keep the most precision
            k = top / max_w
            sse = sum(float((c * (quantize_values(v * k, mx) / k - v) ** 2).sum()) for (v, c), mx in zip(uniq, mixed))
            if sse < best[0]:
                best = (sse, k, sse, sum(float((c * v ** 2).sum()) for v, c in uniq))
    _, k, sse, ref = best
    new, levels, top_mant = [], set(), 0
    for p, m, mix in zip(incoming, mats, mixed):
        q = sp.csr_matrix((quantize_values(m.data * k, mix), m.indices, m.indptr), shape=m.shape)
        q.eliminate_zeros()
        levels.update(np.unique(q.data).tolist())
        top_mant = max(top_mant, int(np.abs(q.data).max(initial=0)))
        new.append(replace(p, weight=q if sp.issparse(p.weight) else q.toarray(), weight_exp=0, scale=k))
    n = int(np.prod(net.readout.nir_shape))
    worst, row = _readout_worst_case(new, n)
    if worst > ir.READOUT_LIMIT:
        raise CompileError(f"readout {net.readout.name!r}: output {row} could reach {worst} (every positive or "
                           f"every negative weight of the row active at once, mantissas scaled by {k:.6g}), beyond "
                           f"the {ir.READOUT_LIMIT} Lava's int32 synapse channel carries; the readout fan-in is "
                           f"too large")
    readout = replace(net.readout, scale=np.full(n, k))
    record = LayerQuant(layer=net.readout.name, scale=float(k), weight_exp=0, max_mantissa=top_mant,
                        weight_levels=len(levels), vth=0, bias_exp=0, du=0, dv=0,
                        weight_error=float(np.sqrt(sse / ref)) if ref else 0.0, threshold_error=0.0,
                        decay_error=0.0, note="logits = a / scale + float bias on the host")
    return new, readout, record


def _readout_worst_case(projections: List[Projection], n: int) -> Tuple[int, int]:
    """(largest |readout current| one projection can send, its row): the larger of a row's positive and
    negative mantissa sums (weight_exp is 0). Each projection, and each of its Lava processes, has its own
    int32 channel; a whole projection bounds every block of it."""
    worst, row = 0, 0
    for p in projections:
        q = sp.csr_matrix(p.weight).astype(np.int64)
        reach = np.maximum(q.maximum(0).sum(axis=1).A1, (-q.minimum(0)).sum(axis=1).A1) * 2 ** max(p.weight_exp, 0)
        if reach.size and int(reach.max()) > worst:
            worst, row = int(reach.max()), int(reach.argmax())
    return worst, row


def quantize(net: LoweredNetwork, *, netx_compatible: bool = False) -> LoweredNetwork:
    """The fixed_pt version of a floating_pt :class:`LoweredNetwork` (see the module docstring)."""
    if net.target != "floating_pt":
        raise CompileError(f"quantize expects a floating_pt network, got {net.target}")
    projections = {id(p): p for p in net.projections}
    pops, records, host = [], [], net.host
    groups = {}  # quantized population -> number of Lava processes (sources come first in execution order)
    for pop in net.populations:
        incoming = net.incoming(pop.name)
        if host is not None and host.target == pop.name:
            new_pop, host, rec = _quantize_host(net, pop)
            scale = HOST_VTH / pop.vth
            projections.update({id(p): _host_unit_projection(pop, p, scale) for p in incoming})
        else:
            multi = any(groups.get(p.source, 1) > 1 for p in incoming)
            new_pop, new_projs, rec = _quantize_population(pop, incoming, netx_compatible, multi)
            projections.update({id(old): new for old, new in zip(incoming, new_projs)})
        pops.append(new_pop)
        groups[new_pop.name] = len(new_pop.groups())
        records.append(rec)
    readout = net.readout
    if readout.kind == "current":
        incoming = net.incoming(readout.name)
        new_projs, readout, rec = _quantize_readout(net, incoming)
        projections.update({id(old): new for old, new in zip(incoming, new_projs)})
        records.append(rec)
    return replace(net, target="fixed_pt", populations=tuple(pops),
                   projections=tuple(projections[id(p)] for p in net.projections), readout=readout, host=host,
                   quantization=tuple(records),
                   metadata={**net.metadata, "netx_compatible": bool(netx_compatible)})
