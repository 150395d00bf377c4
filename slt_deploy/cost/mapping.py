"""Weight memory under each synapse encoding, and placement of a network on a profile's cores.

Every constant (weight bits, word size, entry sizes, core limits) comes from the profile; the formulas are:

Per layer, when conv kernels are stored once (``weight_sharing: true``; ANN targets, DYNAP-CNN):

- dense:  ``n * b`` for ``n`` weights of ``b`` bits (``weight_bits``).
- sparse: compressed rows (CSR, one row per output channel/neuron):
  ``nnz * (b + ceil(log2(row_length))) + (rows + 1) * ceil(log2(nnz + 1))``
  (a column index per nonzero, a row pointer per row).
- binary: ``n * ceil(log2(levels)) + alpha_bits`` when the layer's weights take ``levels`` <= 3 values
  {-alpha, 0, +alpha} (1 bit when two values, sign + mask when three) plus one per-layer scale alpha
  (``alpha_bits`` = 32, a float32); not applicable (None) to weights with several magnitudes.
- DYNAP-CNN kernel memory (``kernel_address_pow2``, sinabs documentation): entries
  ``c * 2^(ceil(log2(kx*ky)) + ceil(log2(f)))`` for ``c`` input and ``f`` output channels (a linear layer is
  a conv whose kernel covers its input's spatial size); neuron entries ``f * fx * fy``.

Per core, when every synapse is stored (``weight_sharing`` false or unknown): the layer is unrolled into
(input axon -> neuron) synapses, the neurons are split into cores of ``n`` consecutive neurons, and each core
stores the synapses into its neurons from the input axons that reach it (``axons`` = those axons):

- dense: ``axons * n_core * b`` (a full axon x neuron matrix); binary (a crossbar): ``axons * n_core``;
  sparse (CSR by axon): ``nnz * (b + ceil(log2(n_core))) + (axons + 1) * ceil(log2(nnz + 1))``.
- with a ``synapse_format`` section (Loihi, Intel NxTF; hardware_profiles/SOURCES.md section 7), each axon's synapses into
  the core are stored as entries of at most ``E`` (= ``max_synapses_per_entry``, 60) synapses; each entry has
  ``P`` (= ``entry_prefix_bits``, 10) prefix bits and is rounded up to whole ``word_bits`` (64-bit) words.
  ``i`` (index bits) = ``ceil(log2(n_core))`` clamped to [``index_bits_min``, ``index_bits_max``] (6-10):
  the narrowest field that addresses every neuron of the core. ``d`` = ``delay_bits``.

  * sparse:    only nonzero synapses; entry bits ``P + k * (b + d + i)``.
  * dense:     the run from the axon's first to its last target neuron in the core, zeros included (the
               prefix carries the start index): entry bits ``P + i + k * (b + d)``.
  * runlength: nonzero synapses, each with a skip field holding the gap (neurons skipped) since the
               previous one: entry bits ``P + i + k * (b + d + s)``, ``s = ceil(log2(max_gap + 1))``
               clamped to [``skip_bits_min``, ``skip_bits_max``] (2-5) per axon; a gap wider than the
               widest field (31) starts a new entry.
  A run of ``k`` synapses takes ``floor(k/E)`` full entries and one entry of ``k mod E``; each entry is
  ``ceil(bits / word_bits)`` words. (Reading of the NxTF description: prefix index bits are the same width as
  the per-synapse index; rounding is per entry.)

Neuron state memory: ``neurons * neuron_state_bits``.

Placement (``mapping`` of the profile):

- ``partition`` (Loihi, Loihi 2, TrueNorth): each population (the neurons one or more synapse layers drive)
  gets its own identical cores of ``n`` neurons; ``n`` is the largest value (found by bisection) up to
  ``neurons_per_core`` for which every core fits its synaptic memory (with the smallest supported encoding),
  its input axons (``fan_in_per_core``) and its output axons (``fan_out_per_core``: one per neuron and
  destination core, which depends on the consumers' placement, so populations are placed last to first).
  Then the total cores and the chip's neuron/synapse totals are checked.
- ``layer_per_core`` (DYNAP-CNN): one core per population; cores are matched to populations so that each
  core's kernel and neuron memories hold its population.
- ``chip`` (Xylo): the first layer's inputs, the readout's neurons and all other neurons against the chip's
  input, output and hidden sizes.
- ``none`` (ANN targets): nothing to check.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..simulate.xylo import SIZE_LIMITS, size_failures  # a whole-chip target's sizes, checked one way
from .activity import SynapseLayer
from .profiles import HardwareProfile, load_profile

ALPHA_BITS = 32  # a binary layer's scale alpha is stored as one float32 (a format choice, not hardware)
# Unrolling keeps ~3 int64 per synapse in memory; past this many the per-core check is skipped and reported as
# unchecked (a software guard, not a hardware limit).
MAX_UNROLLED_SYNAPSES = 50_000_000


def ceil_log2(n: int) -> int:
    """Smallest k with 2^k >= n (0 for n <= 1)."""
    n = int(n)
    return 0 if n <= 1 else (n - 1).bit_length()


def _clog2(x: np.ndarray) -> np.ndarray:
    """Element-wise :func:`ceil_log2` of non-negative integers."""
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    big = x > 1
    out[big] = np.array([int(v - 1).bit_length() for v in x[big].tolist()], dtype=np.int64)
    return out


# ------------------------------------------------------------------------------------ layer formulas

def dense_bits(weight_count: int, weight_bits: int) -> int:
    """Every weight stored: ``weight_count * weight_bits``."""
    return int(weight_count) * int(weight_bits)


def sparse_bits(nonzero: int, rows: int, row_length: int, weight_bits: int) -> int:
    """CSR: ``nnz * (b + ceil(log2(row_length))) + (rows + 1) * ceil(log2(nnz + 1))``."""
    return (int(nonzero) * (int(weight_bits) + ceil_log2(row_length))
            + (int(rows) + 1) * ceil_log2(int(nonzero) + 1))


def binary_bits(weight: torch.Tensor, alpha_bits: int = ALPHA_BITS) -> Optional[int]:
    """``n * ceil(log2(levels)) + alpha_bits`` for weights in {-alpha, 0, +alpha}; None otherwise."""
    values = torch.unique(weight.detach())
    magnitudes = torch.unique(values.abs()[values != 0])
    if len(magnitudes) > 1:
        return None
    return int(weight.numel()) * max(1, ceil_log2(len(values))) + alpha_bits


def kernel_entries(layer: SynapseLayer, pow2: bool) -> int:
    """DYNAP-CNN kernel-memory entries of a layer (sinabs): ``c * 2^(ceil(log2(kx ky)) + ceil(log2 f))``."""
    c = layer.input_shape[0]
    f = layer.weight.shape[0]
    k = math.prod(layer.weight.shape[2:]) if layer.kind == "conv" else math.prod(layer.input_shape[1:])
    if not pow2:
        return c * f * k
    return c * 2 ** (ceil_log2(k) + ceil_log2(f))


@dataclass(frozen=True)
class SynapseFormat:
    """Loihi-style synapse entry constants, read from a profile's ``synapse_format`` section."""

    word_bits: int
    prefix_bits: int
    max_per_entry: int
    index_bits_min: int
    index_bits_max: int
    skip_bits_min: int
    skip_bits_max: int
    delay_bits: int

    @classmethod
    def of(cls, profile: HardwareProfile) -> Optional["SynapseFormat"]:
        if not profile.synapse_format:
            return None
        c = profile.format_constant
        return cls(c("word_bits"), c("entry_prefix_bits"), c("max_synapses_per_entry"), c("index_bits_min"),
                   c("index_bits_max"), c("skip_bits_min"), c("skip_bits_max"), c("delay_bits"))

    def index_bits(self, core_neurons):
        return np.clip(_clog2(core_neurons), self.index_bits_min, self.index_bits_max)


def entry_words(synapses, fixed_bits, per_synapse_bits, fmt: SynapseFormat):
    """Words for runs of ``synapses`` synapses: full entries of ``E`` plus one of the remainder, each rounded
    up to whole words. Works element-wise on numpy arrays."""
    synapses = np.asarray(synapses, dtype=np.int64)
    full, rem = np.divmod(synapses, fmt.max_per_entry)
    per_full = -(-(fixed_bits + fmt.max_per_entry * per_synapse_bits) // fmt.word_bits)
    per_rem = -(-(fixed_bits + rem * per_synapse_bits) // fmt.word_bits)
    return full * per_full + np.where(rem > 0, per_rem, 0)


# -------------------------------------------------------------------------------- unrolled synapses

def unrolled_synapses(layer: SynapseLayer) -> Tuple[np.ndarray, np.ndarray]:
    """(input axon, neuron) index pairs of every nonzero synapse of the unrolled layer (C, H, W order)."""
    mask = (layer.weight.detach() != 0).cpu().numpy()
    if layer.kind == "linear":
        neurons, axons = np.nonzero(mask)
        return axons.astype(np.int64), neurons.astype(np.int64)
    co, ci, ky, kx = (a.astype(np.int64) for a in np.nonzero(mask))
    c_in, h, w = layer.input_shape
    c_out, ho, wo = layer.output_shape
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    ci_global = (co // (c_out // layer.groups)) * (c_in // layer.groups) + ci
    oy = np.arange(ho, dtype=np.int64)[None, :, None]
    ox = np.arange(wo, dtype=np.int64)[None, None, :]
    iy = oy * sh - ph + ky[:, None, None] * dh
    ix = ox * sw - pw + kx[:, None, None] * dw
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    shape = valid.shape
    axons = np.broadcast_to(ci_global[:, None, None] * h * w, shape) + iy * w + ix
    neurons = np.broadcast_to(co[:, None, None] * ho * wo, shape) + oy * wo + ox
    return axons[valid], neurons[valid]


@dataclass(frozen=True)
class _Synapses:
    """Unrolled synapses into one population: axons numbered per source, neurons in C, H, W order."""

    axons: np.ndarray
    neurons: np.ndarray
    n_neurons: int


def _population_synapses(layers: Sequence[SynapseLayer]) -> _Synapses:
    offsets: Dict[Optional[str], int] = {}
    axons, neurons, next_offset = [], [], 0
    for layer in layers:
        if layer.source not in offsets:  # each source population has its own axons
            offsets[layer.source] = next_offset
            next_offset += layer.input_neurons
        a, n = unrolled_synapses(layer)
        axons.append(a + offsets[layer.source])
        neurons.append(n)
    return _Synapses(np.concatenate(axons), np.concatenate(neurons), layers[0].neurons)


@dataclass(frozen=True)
class _CoreStats:
    sizes: np.ndarray               # neurons per core
    fan_in: np.ndarray              # input axons per core
    bits: Dict[str, np.ndarray]     # per encoding: bits per core


def _core_stats(syn: _Synapses, n: int, encodings: Sequence[str], weight_bits: Optional[int],
                fmt: Optional[SynapseFormat]) -> _CoreStats:
    n_cores = -(-syn.n_neurons // n)
    sizes = np.full(n_cores, n, dtype=np.int64)
    sizes[-1] = syn.n_neurons - n * (n_cores - 1)
    core = syn.neurons // n
    order = np.lexsort((syn.neurons, syn.axons, core))
    core, axon, neuron = core[order], syn.axons[order], syn.neurons[order]
    start = np.ones(len(core), dtype=bool)
    start[1:] = (core[1:] != core[:-1]) | (axon[1:] != axon[:-1])
    group = np.cumsum(start) - 1
    g_core = core[start]
    fan_in = np.bincount(g_core, minlength=n_cores)
    nnz = np.bincount(core, minlength=n_cores)
    bits: Dict[str, np.ndarray] = {}
    if weight_bits is None:
        return _CoreStats(sizes, fan_in, bits)
    b = weight_bits
    for enc in encodings:
        if fmt is None:
            if enc == "dense":
                bits[enc] = fan_in * sizes * b
            elif enc == "binary":
                bits[enc] = fan_in * sizes
            elif enc == "sparse":
                bits[enc] = nnz * (b + _clog2(sizes)) + (fan_in + 1) * _clog2(nnz + 1)
            continue
        idx = fmt.index_bits(sizes)[g_core]          # per group (axon within a core)
        d = fmt.delay_bits
        if enc == "sparse":
            count = np.bincount(group)
            words = entry_words(count, fmt.prefix_bits, b + d + idx, fmt)
        elif enc == "dense":
            first = neuron[start]
            last = np.maximum.reduceat(neuron, np.flatnonzero(start)) if len(neuron) else neuron
            words = entry_words(last - first + 1, fmt.prefix_bits + idx, b + d, fmt)
        elif enc == "runlength":
            gap = np.zeros(len(neuron), dtype=np.int64)
            gap[1:] = neuron[1:] - neuron[:-1] - 1
            gap[start] = 0
            widest = 2 ** fmt.skip_bits_max - 1
            seg_start = start | (gap > widest)
            inner_gap = np.where(seg_start, 0, gap)
            max_gap = np.maximum.reduceat(inner_gap, np.flatnonzero(start)) if len(gap) else gap
            skip = np.clip(_clog2(max_gap + 1), fmt.skip_bits_min, fmt.skip_bits_max)
            seg_group = group[seg_start]
            seg_len = np.bincount(np.cumsum(seg_start) - 1)
            seg_words = entry_words(seg_len, fmt.prefix_bits + idx[seg_group], b + d + skip[seg_group], fmt)
            words = np.bincount(seg_group, weights=seg_words, minlength=len(g_core)).astype(np.int64)
        else:  # binary with an entry format: not defined by any format; leave it out
            continue
        bits[enc] = np.bincount(g_core, weights=words * fmt.word_bits, minlength=n_cores).astype(np.int64)
    return _CoreStats(sizes, fan_in, bits)


# ------------------------------------------------------------------------------------ layer memory

@dataclass(frozen=True)
class LayerMemory:
    """Weight memory of one synapse layer under each encoding the profile supports (None: not applicable
    or a needed figure is unknown), and the neuron state memory of the population it drives."""

    name: str
    bits: Dict[str, Optional[int]]
    neuron_state_bits: Optional[int]
    storage: str          # "shared" (kernels once per layer) or "unrolled" (every synapse)

    @property
    def best(self) -> Optional[str]:
        known = {e: b for e, b in self.bits.items() if b is not None}
        return min(known, key=known.get) if known else None


def _shared(profile: HardwareProfile) -> bool:
    return profile.limit("weight_sharing") is True


def layer_memory(layer: SynapseLayer, profile) -> LayerMemory:
    """Weight bits per encoding of one layer on a profile (see the module docstring for the formulas).

    Unrolled storage is computed with the layer's neurons split into cores of ``neurons_per_core`` (when the
    profile gives a single value) and summed over those cores.
    """
    profile = load_profile(profile)
    b = profile.limit("weight_bits")
    state = profile.limit("neuron_state_bits")
    neuron_state = layer.neurons * state if state is not None else None
    bits: Dict[str, Optional[int]] = {}
    if _shared(profile):
        pow2 = profile.limit("kernel_address_pow2")
        for enc in profile.encodings:
            if b is None:
                bits[enc] = None
            elif enc == "dense":
                n = kernel_entries(layer, True) if pow2 else layer.weights
                bits[enc] = dense_bits(n, b)
            elif enc == "sparse":
                bits[enc] = sparse_bits(layer.nonzero_weights, layer.weight.shape[0], layer.fan_in, b)
            elif enc == "binary":
                bits[enc] = binary_bits(layer.weight)
            else:  # runlength is defined only per axon (unrolled)
                bits[enc] = None
        return LayerMemory(layer.name, bits, neuron_state, "shared")
    per_core = profile.limit("neurons_per_core")
    n = per_core if isinstance(per_core, int) else layer.neurons
    stats = _core_stats(_population_synapses([layer]), min(n, layer.neurons), profile.encodings, b,
                        SynapseFormat.of(profile))
    for enc in profile.encodings:
        bits[enc] = int(stats.bits[enc].sum()) if enc in stats.bits else None
    return LayerMemory(layer.name, bits, neuron_state, "unrolled")


class WeightStore(NamedTuple):
    """How a set of layers is stored on one profile, chosen by :func:`weight_store`: ``bits`` in all, read
    ``bits_per_weight`` bits per weight read (the weight and, in a sparse store, its index and a share of the
    row pointers), in ``encoding``. The first two fields are the ``storage`` pair the energy model takes."""

    bits: float
    bits_per_weight: float
    encoding: str


def weight_store(layers: Sequence[SynapseLayer], profile) -> Optional[WeightStore]:
    """The one storage rule for weights a device reads, on either side (the SNN's host-computed layer, the
    ANN's layers): every layer in the encoding that is smallest for the set (:func:`layer_memory`'s formulas,
    index bits included; ``binary`` only for layers whose weights take two magnitudes at most), and each read
    fetches the store's bits per weight it holds::

        bits_per_weight = total bits / stored weights   (stored: all weights dense or binary, nonzero sparse)

    None when no encoding's size is known for every layer (e.g. ``weight_bits`` unknown)."""
    profile = load_profile(profile)
    layers = list(layers)
    if not layers:
        return None
    mems = [layer_memory(l, profile) for l in layers]
    totals = {}
    for enc in profile.encodings:
        sizes = [None if enc == "binary" and binary_bits(l.weight) is None else m.bits.get(enc)
                 for l, m in zip(layers, mems)]
        if all(b is not None for b in sizes):
            totals[enc] = sum(sizes)
    if not totals:
        return None
    best = min(totals, key=totals.get)
    stored = sum(l.nonzero_weights if best in ("sparse", "runlength") else l.weights for l in layers)
    return WeightStore(float(totals[best]), float(totals[best]) / max(stored, 1), best)


# ---------------------------------------------------------------------------------------- mapping

@dataclass(frozen=True)
class PopulationMapping:
    """Where one population went: its cores and what the fullest core uses."""

    population: str
    layers: Tuple[str, ...]
    neurons: int
    cores: Optional[int]
    neurons_per_core: Optional[int]
    encoding: Optional[str]
    synapse_bits: Optional[int]       # weight memory over all its cores with that encoding
    max_core_bits: Optional[int]
    max_core_fan_in: Optional[int]
    max_core_fan_out: Optional[int]
    neuron_state_bits: Optional[int]
    core_ids: Tuple[int, ...] = ()     # layer_per_core: the core it was assigned


@dataclass(frozen=True)
class MappingResult:
    """Fit verdict of a network on a profile. ``fits`` is None when no limit could be checked."""

    profile: str
    fits: Optional[bool]
    cores_used: Optional[int]
    populations: Tuple[PopulationMapping, ...]
    failures: Tuple[str, ...]     # each names the layer and the limit that fails
    unchecked: Tuple[str, ...]    # limits that are unknown in the profile, so were not checked
    notes: Tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        if self.fits is None:
            return f"{self.profile}: fit not checked ({'; '.join(self.unchecked) or 'no limits'})"
        if self.fits:
            cores = f" on {self.cores_used} cores" if self.cores_used is not None else ""
            return f"{self.profile}: fits{cores}"
        return f"{self.profile}: does not fit: {self.failures[0]}"


def _populations(layers: Sequence[SynapseLayer]) -> Dict[str, List[SynapseLayer]]:
    pops: Dict[str, List[SynapseLayer]] = {}
    for layer in layers:
        pops.setdefault(layer.population, []).append(layer)
    for name, group in pops.items():
        if len({l.neurons for l in group}) != 1:
            raise ValueError(f"layers driving population {name} disagree on its size")
    return pops


def _reset_failures(resets: Dict[str, str], profile) -> Tuple[List[str], List[str]]:
    """(failures, unchecked) for the populations' reset modes against the profile's ``reset_modes``."""
    needed = {r for r in resets.values() if r != "zero"}
    if not needed:
        return [], []
    allowed = profile.limit("reset_modes")
    if allowed is None:
        return [], [f"reset_modes ({', '.join(sorted(needed))} used)"]
    return [f"{name} resets by {mode}; {profile.name} implements only: {', '.join(allowed)}"
            for name, mode in resets.items() if mode not in allowed], []


def map_network(layers: Sequence[SynapseLayer], profile, resets: Optional[Dict[str, str]] = None) -> MappingResult:
    """Fit of ``layers`` on ``profile``; ``resets`` (what -> reset mode, e.g. ``{"layer fc1_lif": "subtract"}``)
    is checked against the profile's ``reset_modes`` (Loihi 1 resets to zero only)."""
    result = _map_network(layers, profile)
    failures, unchecked = _reset_failures(resets or {}, profile)
    if not failures and not unchecked:
        return result
    failures = failures + list(result.failures)
    unchecked = list(result.unchecked) + unchecked
    fits = False if failures else result.fits
    return dataclasses.replace(result, fits=fits, failures=tuple(failures), unchecked=tuple(unchecked))


def _map_network(layers: Sequence[SynapseLayer], profile) -> MappingResult:
    """Place a network's synapse layers on a profile's cores and say whether (and where) it fails to fit."""
    profile = load_profile(profile)
    layers = list(layers)
    if profile.mapping == "partition":
        return _map_partition(layers, profile)
    if profile.mapping == "layer_per_core":
        return _map_layer_per_core(layers, profile)
    if profile.mapping == "chip":
        return _map_chip(layers, profile)
    return MappingResult(profile.name, None, None, (), (), ("profile has no mapping limits (mapping: none)",))


def _label(pop: str, group: Sequence[SynapseLayer]) -> str:
    names = ", ".join(l.name for l in group)
    return f"layer {names}" if len(group) == 1 and group[0].name == pop else f"layer {names} (population {pop})"


def _map_partition(layers: List[SynapseLayer], profile: HardwareProfile) -> MappingResult:
    pops = _populations(layers)
    limit = {k: profile.limit(k) for k in ("cores", "neurons_per_core", "synaptic_memory_per_core",
                                           "fan_in_per_core", "fan_out_per_core", "neurons_per_chip",
                                           "synapses_per_chip")}
    unchecked = [f"{k} (unknown)" for k in ("neurons_per_core", "synaptic_memory_per_core", "fan_in_per_core",
                                            "fan_out_per_core", "cores") if limit[k] is None]
    if limit["neurons_per_core"] is None:
        return MappingResult(profile.name, None, None, (), (), tuple(unchecked))
    b = profile.limit("weight_bits")
    encodings = profile.encodings
    fmt = SynapseFormat.of(profile)
    notes: List[str] = []
    if b is None:
        unchecked.append("weight_bits (unknown): synaptic memory not checked")
    else:
        notes.append(f"weights stored at weight_bits = {b}; quantizing them to it is the compiler's job")
    if not encodings:
        unchecked.append("encodings (unknown): synaptic memory not checked")
    if not _shared(profile):
        how = "unknown" if profile.limit("weight_sharing") is None else "false"
        notes.append(f"weight_sharing {how}: every synapse of conv layers is stored (unrolled)")
    else:
        notes.append("weight_sharing true: each core is charged the whole kernel of its layer")
    state = profile.limit("neuron_state_bits")

    # cheap checks first: neurons alone may already need more cores than the chip has
    lower, running, failures = 0, 0, []
    for pop, group in pops.items():
        lower += -(-group[0].neurons // limit["neurons_per_core"])
        if limit["cores"] is not None and lower > limit["cores"] and not failures:
            failures.append(f"{_label(pop, group)}: the network needs at least {lower} cores for its neurons "
                            f"(limit passed here), cores = {limit['cores']}")
    if failures:
        return MappingResult(profile.name, False, None, (), tuple(failures), tuple(unchecked), tuple(notes))
    bound = sum(l.nonzero_weights * (math.prod(l.output_shape[1:]) if l.kind == "conv" else 1) for l in layers)
    if bound > MAX_UNROLLED_SYNAPSES:
        unchecked.append(f"per-core limits: up to {bound} unrolled synapses exceed the "
                         f"{MAX_UNROLLED_SYNAPSES} this model unrolls (mapping.MAX_UNROLLED_SYNAPSES)")
        return MappingResult(profile.name, None, lower, (), (), tuple(unchecked), tuple(notes))

    synapses = {pop: _population_synapses(group) for pop, group in pops.items()}
    consumers: Dict[str, List[SynapseLayer]] = {}
    for layer in layers:
        if layer.source is not None:
            consumers.setdefault(layer.source, []).append(layer)
    chunk: Dict[str, int] = {}
    placed: Dict[str, PopulationMapping] = {}

    for pop in reversed(list(pops)):  # consumers first: output axons depend on where the targets sit
        group = pops[pop]
        syn = synapses[pop]
        label = _label(pop, group)
        shared_bits = None
        if _shared(profile) and b is not None:
            per_enc = {}
            for enc in encodings:
                vals = [layer_memory(l, profile).bits.get(enc) for l in group]
                if all(v is not None for v in vals):
                    per_enc[enc] = sum(vals)
            shared_bits = per_enc

        # a recurrent population is its own consumer: its output axons depend on the n being tried
        own_consumer = any(l.population == pop for l in consumers.get(pop, []))
        fixed_dest = None if own_consumer else _destinations(syn.n_neurons, consumers.get(pop, []), chunk)

        def check(n: int):
            stats = _core_stats(syn, n, encodings, None if _shared(profile) else b, fmt)
            dest = fixed_dest if fixed_dest is not None else \
                _destinations(syn.n_neurons, consumers.get(pop, []), {**chunk, pop: n})
            out_axons = np.bincount(np.arange(syn.n_neurons) // n, weights=dest).astype(np.int64)
            if shared_bits is not None:
                core_bits = {e: np.full(len(stats.sizes), v, dtype=np.int64) for e, v in shared_bits.items()}
            else:
                core_bits = stats.bits
            problems = []
            mem = limit["synaptic_memory_per_core"]
            fitting = {e: v for e, v in core_bits.items() if mem is None or v.max() <= mem}
            if mem is not None and core_bits and not fitting:
                e, v = min(core_bits.items(), key=lambda kv: kv[1].max())
                problems.append(f"a core of {n} neuron(s) needs {int(v.max())} bits of synaptic memory "
                                f"({e}), synaptic_memory_per_core = {mem}")
            if limit["fan_in_per_core"] is not None and stats.fan_in.max() > limit["fan_in_per_core"]:
                problems.append(f"a core of {n} neuron(s) has {int(stats.fan_in.max())} input axons, "
                                f"fan_in_per_core = {limit['fan_in_per_core']}")
            if limit["fan_out_per_core"] is not None and out_axons.max() > limit["fan_out_per_core"]:
                problems.append(f"a core of {n} neuron(s) needs {int(out_axons.max())} output axons, "
                                f"fan_out_per_core = {limit['fan_out_per_core']}")
            return problems, stats, fitting or core_bits, out_axons

        hi = min(limit["neurons_per_core"], syn.n_neurons)
        problems, *_ = check(1)
        if problems:
            failures.append(f"{label}: {problems[0]}")
            n = hi
        elif own_consumer:  # its fan-out follows its own core count, ceil(neurons / n): not monotone in n
            n = next(m for m in range(hi, 0, -1) if not check(m)[0])
        else:
            lo = 1
            while lo < hi:  # largest n whose cores all fit (the constraints grow with n)
                mid = (lo + hi + 1) // 2
                if check(mid)[0]:
                    hi = mid - 1
                else:
                    lo = mid
            n = lo
        chunk[pop] = n
        _, stats, core_bits, out_axons = check(n)
        encoding = min(core_bits, key=lambda e: core_bits[e].sum()) if core_bits else None
        placed[pop] = PopulationMapping(
            population=pop, layers=tuple(l.name for l in group), neurons=syn.n_neurons,
            cores=len(stats.sizes), neurons_per_core=n, encoding=encoding,
            synapse_bits=int(core_bits[encoding].sum()) if encoding else None,
            max_core_bits=int(core_bits[encoding].max()) if encoding else None,
            max_core_fan_in=int(stats.fan_in.max()), max_core_fan_out=int(out_axons.max()),
            neuron_state_bits=syn.n_neurons * state if state is not None else None)

    ordered = tuple(placed[p] for p in pops)
    cores_used = sum(p.cores for p in ordered)
    if limit["cores"] is not None and cores_used > limit["cores"]:
        running = 0
        for p in ordered:
            running += p.cores
            if running > limit["cores"]:
                failures.append(f"{_label(p.population, pops[p.population])}: the network needs {cores_used} "
                                f"cores (limit passed here, at {running}), cores = {limit['cores']}")
                break
    total_neurons = sum(p.neurons for p in ordered)
    if limit["neurons_per_chip"] is not None and total_neurons > limit["neurons_per_chip"]:
        failures.append(f"network: {total_neurons} neurons, neurons_per_chip = {limit['neurons_per_chip']}")
    total_synapses = sum(len(s.axons) for s in synapses.values())
    if limit["synapses_per_chip"] is not None and total_synapses > limit["synapses_per_chip"]:
        failures.append(f"network: {total_synapses} synapses, synapses_per_chip = {limit['synapses_per_chip']}")
    return MappingResult(profile.name, not failures, cores_used, ordered, tuple(failures), tuple(unchecked),
                         tuple(notes))


def _destinations(n_neurons: int, consumers: Sequence[SynapseLayer], chunk: Dict[str, int]) -> np.ndarray:
    """Per source neuron: number of distinct destination cores among its consumers (one output axon each)."""
    keys = []
    pop_ids = {p: i for i, p in enumerate(dict.fromkeys(l.population for l in consumers))}
    for layer in consumers:
        axons, neurons = unrolled_synapses(layer)
        # (target population, target core, source neuron): cores of different populations are distinct
        keys.append(np.stack([np.full(len(axons), pop_ids[layer.population], dtype=np.int64),
                              neurons // chunk[layer.population], axons], axis=1))
    if not keys:
        return np.zeros(n_neurons, dtype=np.int64)
    pairs = np.unique(np.concatenate(keys), axis=0)
    return np.bincount(pairs[:, 2], minlength=n_neurons)


def _map_layer_per_core(layers: List[SynapseLayer], profile: HardwareProfile) -> MappingResult:
    pops = _populations(layers)
    cores = profile.limit("cores")
    neuron_mem = profile.limit("neurons_per_core")
    kernel_mem = profile.limit("kernel_memory_per_core")
    pow2 = bool(profile.limit("kernel_address_pow2"))
    b = profile.limit("weight_bits")
    state = profile.limit("neuron_state_bits")
    unchecked = [f"{k} (unknown)" for k, v in (("cores", cores), ("neurons_per_core", neuron_mem),
                                               ("kernel_memory_per_core", kernel_mem)) if v is None]
    if unchecked:
        return MappingResult(profile.name, None, None, (), (), tuple(unchecked))
    n_cores = cores
    neuron_mem = neuron_mem if isinstance(neuron_mem, tuple) else (neuron_mem,) * n_cores
    kernel_mem = kernel_mem if isinstance(kernel_mem, tuple) else (kernel_mem,) * n_cores
    names = list(pops)
    need = {p: (sum(kernel_entries(l, pow2) for l in pops[p]), pops[p][0].neurons) for p in names}
    ok = {p: [c for c in range(n_cores) if need[p][0] <= kernel_mem[c] and need[p][1] <= neuron_mem[c]]
          for p in names}
    assignment = _match(names, ok)
    failures = []
    if len(names) > n_cores:
        failures.append(f"{_label(names[n_cores], pops[names[n_cores]])}: the network needs {len(names)} cores "
                        f"(one per layer), cores = {n_cores}")
    for p in names:
        if p in assignment or failures:
            continue
        kernel, neurons = need[p]
        if kernel > max(kernel_mem):
            failures.append(f"{_label(p, pops[p])}: needs {kernel} kernel memory entries, largest "
                            f"kernel_memory_per_core = {max(kernel_mem)}")
        elif neurons > max(neuron_mem):
            failures.append(f"{_label(p, pops[p])}: needs {neurons} neuron memory entries, largest "
                            f"neurons_per_core = {max(neuron_mem)}")
        elif not ok[p]:
            failures.append(f"{_label(p, pops[p])}: no core has both {kernel} kernel entries "
                            f"(kernel_memory_per_core) and {neurons} neuron entries (neurons_per_core)")
        else:
            failures.append(f"{_label(p, pops[p])}: every core that holds it (kernel_memory_per_core, "
                            f"neurons_per_core) is taken by another layer")
    placed = tuple(PopulationMapping(
        population=p, layers=tuple(l.name for l in pops[p]), neurons=need[p][1], cores=1, neurons_per_core=need[p][1],
        encoding="dense", synapse_bits=need[p][0] * b if b is not None else None,
        max_core_bits=need[p][0] * b if b is not None else None, max_core_fan_in=None, max_core_fan_out=None,
        neuron_state_bits=need[p][1] * state if state is not None else None,
        core_ids=(assignment[p],) if p in assignment else ()) for p in names)
    return MappingResult(profile.name, not failures, len(names), placed, tuple(failures), (),
                         ("kernel entries per sinabs: c * 2^(ceil(log2(kx*ky)) + ceil(log2(f)))",) if pow2 else ())


def _match(items: List[str], options: Dict[str, List[int]]) -> Dict[str, int]:
    """Maximum bipartite matching of items to cores (augmenting paths; a chip has a handful of cores)."""
    owner: Dict[int, str] = {}

    def augment(item: str, seen: set) -> bool:
        for core in options[item]:
            if core in seen:
                continue
            seen.add(core)
            if core not in owner or augment(owner[core], seen):
                owner[core] = item
                return True
        return False

    for item in items:
        augment(item, set())
    return {item: core for core, item in owner.items()}


def _map_chip(layers: List[SynapseLayer], profile: HardwareProfile) -> MappingResult:
    pops = _populations(layers)
    names = list(pops)
    readout = names[-1]
    inputs = sum(l.input_neurons for l in layers if l.source is None)
    hidden = sum(pops[p][0].neurons for p in names[:-1])
    outputs = pops[readout][0].neurons
    first = next(l for l in layers if l.source is None)
    failures, unknown = size_failures({
        "input_channels": (inputs, f"layer {first.name}: {inputs} inputs"),
        "hidden_neurons": (hidden, f"network: {hidden} hidden neurons"),
        "output_neurons": (outputs, f"{_label(readout, pops[readout])}: {outputs} outputs")},
        {key: profile.limit(key) for key in SIZE_LIMITS})
    unchecked = [f"{key} (unknown)" for key in unknown]
    b = profile.limit("weight_bits")
    state = profile.limit("neuron_state_bits")
    placed = []
    for p in names:
        mems = [layer_memory(l, profile) for l in pops[p]]
        enc = mems[0].best
        bits = sum(m.bits[enc] for m in mems) if enc and all(m.bits.get(enc) is not None for m in mems) else None
        placed.append(PopulationMapping(p, tuple(l.name for l in pops[p]), pops[p][0].neurons, None, None, enc,
                                        bits, bits, None, None,
                                        pops[p][0].neurons * state if state is not None else None))
    fits = None if unchecked and not failures else not failures
    return MappingResult(profile.name, fits, None, tuple(placed), tuple(failures), tuple(unchecked))
