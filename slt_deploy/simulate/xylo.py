"""Xylo Audio 2 (SYNS61201) in SynSense's own bit-accurate simulator ``xylosim``: fit, quantisation, the run.

Mapping, from the compiler's float IR (``lower(graph, "floating_pt", first_layer="chip")``, so every linear
node between two neuron layers is already one matrix): the input (at most ``input_channels`` = 16 channels,
spike counts per step) -> the hidden populations, in order (``hidden_neurons`` = 1000 together) -> the readout
(``output_neurons`` = 8). The first population takes Xylo's input weights; population k+1 takes population
k's spikes through Xylo's recurrent weight matrix (a block below its diagonal); the output layer takes the
last population's spikes, so that population holds the last hidden neurons (Xylo feeds its output neurons
from the last hidden neurons, ``XyloSim.from_specification``).

Quantisation is rockpool's (``rockpool.transform.quantize_methods.global_quantize``, rockpool 3.1.0): one
scale ``127 / max|w|`` for the input and recurrent weights, hidden biases and thresholds, one for the output
weights and output bias; 8-bit weights, 16-bit thresholds. (rockpool 3.1.0 scales the output bias with the
hidden scale; it is scaled with the output scale here, like the output weights it is added to.)

Xylo's neuron, measured on xylosim 0.1.3 (``tests/test_vendor_flows.py`` pins it on hand-computed cases), all
integers, per step::

    I = I + W s_in ;  I = I - dec(I, dash_syn)          (synaptic current, filtered in the step it arrives)
    V = V - dec(V, dash_mem) + I + bias
    n = min(V // thr, 31) spikes when V >= thr ;  V = V - n * thr
    dec(x, d) = x >> d (arithmetic), but 1 when that is 0 and x > 0

Hidden spikes reach the next population and the output layer one step later, so a sample of T steps runs
``T + depth`` steps (zeros after its input) and each layer is read ``lag`` steps later. Output neurons never
fire here (threshold 2^15 - 1): the prediction is the largest output membrane after the last step, and the
per-step output is the membrane's increment divided by the output scale (so its sum over time is the
membrane, as the reference's logits summed over time).

Where this differs from the project's reference (snnTorch ``Leaky``, NIR ``LIF``/``IF``), named in every run's
notes (:data:`DIFFERENCES`): an snnTorch Leaky has no synaptic current, Xylo always has one (``dash_syn = 1``,
the fastest: half a spike's charge in its step, the rest over the next ones); Xylo's membrane loses at least 1
per step (``beta = 1`` is ``dash_mem = 15``); Xylo fires at ``V >= thr`` and up to 31 times per step (the
reference at ``v > thr``, once); weights and thresholds are 8 and 16 bits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from .backends import BackendRun, register_backend
from .synsense import import_without_samna

DASH_MAX = 15                 # 4-bit bit-shift decays (rockpool XyloSim: dash values 0..15)
MAX_SPIKES_PER_STEP = 31      # measured: xylosim emits at most 31 spikes per neuron and step
THRESHOLD_OUT = 2 ** 15 - 1   # output neurons that never fire: the readout is their membrane
DASH_SYN_LEAKY = 1            # a Leaky (no synaptic current) gets Xylo's fastest synapse

DIFFERENCES = (
    "Xylo filters every input through a synaptic current (dash_syn=1: half a spike's charge in its own step, "
    "the rest over the next steps); the reference's Leaky/IF neuron has none",
    "Xylo's membrane loses at least 1 per step (bit-shift decay, dash_mem=15 for beta=1)",
    "Xylo fires at V >= threshold and up to 31 spikes per step; the reference at v > threshold, once",
    "8-bit weights and 16-bit thresholds (rockpool's global_quantize) against the reference's float32",
)


@dataclass(frozen=True)
class XyloSpec:
    """The quantised Xylo network (rockpool's ``from_specification`` layout) and how to read it back."""

    weights_in: np.ndarray     # (n_in, n_hidden) int
    weights_rec: np.ndarray    # (n_hidden, n_hidden) int, row = source
    weights_out: np.ndarray    # (n_hidden, n_out) int, row = source (only the last population's rows nonzero)
    threshold: np.ndarray      # (n_hidden,)
    bias: np.ndarray
    bias_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    scale_out: float           # output membrane units per unit of the reference's logits
    populations: Tuple[Tuple[str, int, int, np.ndarray], ...]  # (name, first hidden index, size, nir_index)
    input_index: np.ndarray    # Xylo channel k = NIR flat input input_index[k]
    readout_shape: Tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.populations)

    def notes(self) -> List[str]:
        lines = [f"xylo: {self.weights_in.shape[0]} input channels, {self.weights_in.shape[1]} hidden neurons "
                 f"({', '.join(f'{n}: {s}' for n, _, s, _ in self.populations)}), {self.weights_out.shape[1]} "
                 f"outputs; max |w| {int(np.abs(self.weights_in).max(initial=0))} in / "
                 f"{int(np.abs(self.weights_rec).max(initial=0))} rec / {int(np.abs(self.weights_out).max(initial=0))} "
                 f"out; thresholds {int(self.threshold.min())}..{int(self.threshold.max())}; dash_mem "
                 f"{sorted(set(self.dash_mem.tolist()))}, dash_syn {sorted(set(self.dash_syn.tolist()))}"]
        return lines + [f"xylo vs reference: {d}" for d in DIFFERENCES]


def _dash(decay: np.ndarray) -> np.ndarray:
    """Bit-shift decay d with 2^-d closest to the per-step loss ``decay`` (0 = none -> the slowest, 15)."""
    decay = np.asarray(decay, dtype=np.float64)
    out = np.full(decay.shape, DASH_MAX, dtype=np.int64)
    some = decay > 0
    out[some] = np.clip(np.round(-np.log2(decay[some])), 1, DASH_MAX).astype(np.int64)
    return out


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


#: A whole-chip target's sizes, as profile limit keys; their values are the profile's (hardware_profiles/xylo.yaml:
#: 16 inputs, 1,000 hidden neurons, 8 outputs), checked by :func:`size_failures` here and in the cost stage's mapping.
SIZE_LIMITS = ("input_channels", "hidden_neurons", "output_neurons")
LIMIT_KEYS = SIZE_LIMITS + ("weight_bits", "threshold_bits")


def size_failures(sizes: Dict[str, Tuple[int, str]], limits: Dict[str, object]) -> Tuple[List[str], List[str]]:
    """Each of :data:`SIZE_LIMITS` against its limit: ``sizes`` maps a key to (the network's count, a label naming
    where it comes from); ``limits`` a key to the profile's value (None: unknown). Returns (failures, one line
    each: "label, key = limit"; the keys whose limit is unknown)."""
    failures, unknown = [], []
    for key in SIZE_LIMITS:
        value, label = sizes[key]
        limit = limits.get(key)
        if limit is None:
            unknown.append(key)
        elif value > limit:
            failures.append(f"{label}, {key} = {limit}")
    return failures, unknown


def xylo_spec(graph, limits: Optional[Dict[str, object]] = None, name: str = "xylo",
              where: str = "graph") -> XyloSpec:
    """Check the graph against Xylo's limits (``limits``: a profile's values for :data:`LIMIT_KEYS`, given by the
    caller since profiles belong to the cost stage; one line naming the limit when it does not fit) and quantise
    it as rockpool does (rockpool's own 8-bit weight and 16-bit threshold defaults when no limits are given)."""
    from ..compile import lower

    limits = dict(limits or {})
    quantize = import_without_samna("rockpool.transform.quantize_methods")
    net = lower(graph, "floating_pt", first_layer="chip")
    pops = list(net.populations)
    _check(net.readout.kind == "current", f"{where}: {name} needs a non-spiking readout layer (the output "
           f"neurons' membranes are read); the graph's output is a population's spikes")
    _check(len(pops) >= 1, f"{where}: {name} needs at least one hidden spiking layer")
    for p in pops:
        _check(not net.incoming(p.name) or all(not q.recurrent for q in net.incoming(p.name)),
               f"{where}: layer {p.name} is recurrent; this Xylo mapping takes feed-forward layers only")
        _check(p.reset == "subtract", f"{where}: layer {p.name} resets to zero; Xylo subtracts the threshold "
               f"(reset_modes = subtract): search with --reset subtract")
        _check(np.all(p.du >= 1.0) or p.node_type == "CubaLIF", f"{where}: layer {p.name}: unexpected synapse")
    chain = [net.input.name] + [p.name for p in pops]
    for k, p in enumerate(pops):
        srcs = [q.source for q in net.incoming(p.name)]
        _check(srcs == [chain[k]], f"{where}: layer {p.name} is fed by {', '.join(srcs)}; Xylo's layers form one "
               f"chain (input -> hidden layers -> output)")
    into_out = [q.source for q in net.incoming(net.readout.name)]
    _check(into_out == [pops[-1].name], f"{where}: the readout is fed by {', '.join(into_out)}; on {name} only "
           f"the last hidden layer drives the output neurons")
    n_in, hidden, n_out = net.input.size, sum(p.size for p in pops), int(math.prod(net.readout.nir_shape))
    first = net.incoming(pops[0].name)[0]
    failures, _ = size_failures({"input_channels": (n_in, f"layer {first.name}: {n_in} inputs"),
                                 "hidden_neurons": (hidden, f"network: {hidden} hidden neurons"),
                                 "output_neurons": (n_out, f"readout: {n_out} outputs")}, limits)
    _check(not failures, f"{where}: does not fit {name}: {failures[0] if failures else ''}")

    offsets = np.cumsum([0] + [p.size for p in pops])
    w_in = np.zeros((n_in, hidden))
    w_rec = np.zeros((hidden, hidden))
    w_out = np.zeros((hidden, n_out))
    w_in[:, offsets[0]:offsets[1]] = first.dense().T
    for k in range(1, len(pops)):
        w_rec[offsets[k - 1]:offsets[k], offsets[k]:offsets[k + 1]] = net.incoming(pops[k].name)[0].dense().T
    w_out[offsets[-2]:offsets[-1], :] = net.incoming(net.readout.name)[0].dense().T
    threshold = np.concatenate([p.vth for p in pops])
    bias = np.concatenate([p.bias_mant for p in pops])
    _check(net.readout.decay is None, f"{where}: the readout is a leaky integrator (NIR LI); the Xylo mapping "
           f"takes an Affine readout")
    bias_out = (np.zeros(n_out) if net.readout.bias is None
                else np.asarray(net.readout.bias, dtype=np.float64).ravel())
    dash_mem = np.concatenate([_dash(p.dv) for p in pops])
    dash_syn = np.concatenate([np.full(p.size, DASH_SYN_LEAKY) if np.all(p.du >= 1.0) else _dash(p.du)
                               for p in pops])
    n_zero = np.zeros(n_out)
    bits = {k: v for k, v in (("bits_per_weight", limits.get("weight_bits")),
                              ("bits_per_threshold", limits.get("threshold_bits"))) if v is not None}
    q = quantize.global_quantize(
        weights_in=w_in, weights_rec=w_rec, weights_out=w_out, threshold=threshold, threshold_out=n_zero,
        dash_mem=dash_mem, dash_mem_out=np.full(n_out, DASH_MAX), dash_syn=dash_syn, dash_syn_2=dash_syn,
        dash_syn_out=np.full(n_out, DASH_SYN_LEAKY), bias=bias, bias_out=bias_out,
        **bits)
    max_out = max(float(np.abs(w_out).max(initial=0)), float(np.abs(bias_out).max(initial=0)))
    max_q = float(np.abs(np.asarray(q["weights_out"])).max(initial=0))
    scale_out = max_q / max_out if max_out and max_q else 1.0  # rockpool's output scale, read back
    threshold_q = np.asarray(q["threshold"]).astype(np.int64)
    _check(bool(np.all(threshold_q >= 1)), f"{where}: a threshold quantises to {int(threshold_q.min())} on {name} "
           f"(weights much larger than thresholds); Xylo needs thresholds >= 1")
    return XyloSpec(
        weights_in=np.asarray(q["weights_in"])[..., 0].astype(np.int64),
        weights_rec=np.asarray(q["weights_rec"])[..., 0].astype(np.int64),
        weights_out=np.asarray(q["weights_out"]).astype(np.int64), threshold=threshold_q,
        bias=np.asarray(q["bias"]).astype(np.int64), bias_out=np.round(bias_out * scale_out).astype(np.int64),
        dash_mem=np.asarray(q["dash_mem"]).astype(np.int64), dash_syn=np.asarray(q["dash_syn"]).astype(np.int64),
        scale_out=scale_out,
        populations=tuple((p.name, int(offsets[k]), p.size, p.nir_index) for k, p in enumerate(pops)),
        input_index=net.input.nir_index, readout_shape=tuple(net.readout.nir_shape))


def _synapses(xylosim, weights: np.ndarray, target_offset: int = 0) -> List[list]:
    """One list of XyloSynapse per source row (synapse 0 of the target neuron)."""
    return [[xylosim.XyloSynapse(int(j) + target_offset, 0, int(w[j])) for j in np.flatnonzero(w)] for w in weights]


class XyloRun:
    """A xylosim ``XyloLayer`` built from a :class:`XyloSpec`."""

    def __init__(self, spec: XyloSpec):
        xylosim = import_without_samna("xylosim.v2")
        n_hidden = spec.weights_in.shape[1]
        n_out = spec.weights_out.shape[1]
        # xylosim's XyloLayer keeps raw pointers to the XyloSynapse objects: they must outlive it (a temporary
        # list segfaults at evolve), so they are held here (rockpool's XyloSim keeps them the same way)
        self._synapses = (_synapses(xylosim, spec.weights_in), _synapses(xylosim, spec.weights_rec),
                          _synapses(xylosim, spec.weights_out))
        self.spec = spec
        self.layer = xylosim.XyloLayer(
            *self._synapses, [[] for _ in range(n_hidden)], spec.threshold.tolist(), [THRESHOLD_OUT] * n_out,
            True, spec.bias.tolist(), spec.bias_out.tolist(), 0, 0, 0, spec.dash_mem.tolist(),
            [DASH_MAX] * n_out, [[int(d), int(d)] for d in spec.dash_syn], [[DASH_SYN_LEAKY]] * n_out,
            "slt_deploy_xylo")

    def run(self, x_counts: np.ndarray) -> Tuple[np.ndarray, Dict[str, np.ndarray], np.ndarray]:
        """x_counts (N, T, n_in) spike counts in Xylo channel order -> (per-step outputs (N, T, n_out), hidden
        spike counts per population (N, T, n) in Xylo order, final output membranes (N, n_out))."""
        spec, depth = self.spec, self.spec.depth
        n, steps = x_counts.shape[:2]
        outputs = np.zeros((n, steps, spec.weights_out.shape[1]))
        final = np.zeros((n, spec.weights_out.shape[1]), dtype=np.int64)
        spikes = {name: np.zeros((n, steps, size), dtype=np.int64) for name, _, size, _ in spec.populations}
        pad = np.zeros((depth, x_counts.shape[2]), dtype=np.int64)
        for k in range(n):
            self.layer.reset_all()
            self.layer.evolve(np.concatenate([x_counts[k], pad]).astype(int).tolist())
            rec = np.asarray(self.layer.rec_recurrent_spikes, dtype=np.int64)       # (T + depth, n_hidden)
            v_out = np.asarray(self.layer.rec_v_mem_out, dtype=np.int64).T           # (T + depth, n_out)
            for lag, (name, start, size, _) in enumerate(spec.populations):
                spikes[name][k] = rec[lag:lag + steps, start:start + size]
            v = v_out[depth:depth + steps]
            outputs[k] = np.diff(np.concatenate([np.zeros((1, v.shape[1])), v]), axis=0) / spec.scale_out
            final[k] = v[-1]
        return outputs, spikes, final


def explain(layer: str, step: int, actual: float, expected: float) -> str:
    """Why xylosim and the reference differ at the first difference (everything before it agrees)."""
    if actual >= 2:
        return f"Xylo's V reached {actual:g} thresholds and fired {actual:g} spikes in one step; the reference once"
    if step == 0 and actual < expected:
        return ("at the first step Xylo's synaptic current passes half the input charge (dash_syn=1, I = x - x>>1), "
                "the reference all of it")
    if actual < expected:
        return ("Xylo's V is lower: its synaptic current holds back part of the recent input (released over the next "
                "steps), its bit-shift decay takes at least 1 per step, or quantisation rounded it down")
    return ("Xylo's V is higher: charge of earlier input still arriving through its synaptic current, V == threshold "
            "(Xylo fires at V >= threshold), or quantisation rounded it up")


def check_xylo(graph, encoding: str, limit, where: str) -> None:
    """What Xylo cannot take, in one line: real-valued input (its channels take events), sizes over its limits."""
    if encoding not in ("rate", "latency", "events"):
        raise ConfigError(f"{where}: the input is {encoding}-encoded (real values); Xylo's input channels take "
                          f"spike events: search with --encoding rate (or events)")
    xylo_spec(graph, {k: limit(k) for k in LIMIT_KEYS}, where=where)


@register_backend("xylosim", whole_chip=True, check=check_xylo)
def run_xylosim(graph, x: np.ndarray, first_layer: str = "chip", limits: Optional[Dict[str, object]] = None):
    """The ``xylosim`` backend: (N, T, *input) spike counts through the quantised graph in xylosim."""
    start = time.perf_counter()
    x = np.asarray(x)
    _check(bool(np.all(x >= 0)) and bool(np.all(x == np.round(x))),
           "xylosim: Xylo's input channels take spike counts (non-negative integers per step); the input has "
           "other values: use spiking input (--encoding rate, latency or events)")
    spec = xylo_spec(graph, limits)
    flat = x.reshape(x.shape[0], x.shape[1], -1)[..., spec.input_index].astype(np.int64)
    outputs, spikes, _ = XyloRun(spec).run(flat)
    nir_spikes = {}
    for name, _, size, nir_index in spec.populations:
        back = np.zeros_like(spikes[name])
        back[..., nir_index] = spikes[name]
        nir_spikes[name] = back
    out = np.zeros_like(outputs)
    out[..., :] = outputs  # the readout is 1-D: Xylo order is NIR order
    return BackendRun(out, nir_spikes, time.perf_counter() - start, tuple(spec.notes()), explain)
