"""Hardware profiles: one YAML data file per target, validated on load into frozen dataclasses.

Every number a cost estimate uses lives in a profile file (``hardware_profiles/*.yaml``), never in code, and
carries its source and a status. A profile looks like::

    name: loihi
    kind: neuromorphic            # neuromorphic | ann | reference (costs both sides with one convention)
    description: Intel Loihi (1), 14 nm
    mapping: partition            # how a network is placed on cores (see slt_deploy.cost.mapping)
    figures:                      # per-event energies, powers, latencies
      synaptic_op: {value: 23.6, unit: pJ, source: "Davies et al., IEEE Micro 2018, Table 2",
                    status: pre-silicon, note: "minimum"}
    limits:                       # architecture limits, memories, precisions
      cores: {value: 128, unit: count, source: "...", status: published}
    synapse_format:               # optional: Loihi-style per-axon synapse entries (see slt_deploy.cost.mapping)
      word_bits: {value: 64, unit: bits, source: "...", status: published}
    simulator: xylosim            # optional: the vendor's own simulator a deploy to this target ends with
                                  # (a backend of slt_deploy.simulate, e.g. xylosim, sinabs)

Each entry is ``{value, unit, source, status, note}``. ``value: null`` marks a figure nobody has published
(status ``unknown``) or one a convention leaves out (status ``excluded``); costs never invent it, they report
it as unknown. Units are checked against the set allowed for that entry and converted to SI (J, W, s) or to
bits/counts when used. Users can pass their own file to :func:`load_profile`.
"""

from __future__ import annotations

import math
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ..errors import SltError
from ..utils import format_table


class ProfileError(SltError):
    """A hardware profile is missing, malformed or out of range; the message names the file and field."""


# ------------------------------------------------------------------------------------------------ schema

ENERGY_UNITS = {"pJ": 1e-12, "nJ": 1e-9, "uJ": 1e-6}
POWER_UNITS = {"W": 1.0, "mW": 1e-3, "uW": 1e-6}
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
BIT_UNITS = {"bits": 1, "bytes": 8, "KiB": 8 * 1024}
COUNT_UNITS = {"count": 1, "Ki": 1024}

KINDS = ("neuromorphic", "ann", "reference")
MAPPINGS = ("partition", "layer_per_core", "chip", "none")
ENCODINGS = ("dense", "sparse", "runlength", "binary")

STATUSES = {
    "measured": "published measurement on silicon",
    "pre-silicon": "published pre-silicon (simulated or designed) figure",
    "published": "published specification or per-operation figure (paper, datasheet, library documentation)",
    "derived": "arithmetic on published figures; the note gives the arithmetic",
    "estimate": "estimate by us; the note gives the reasoning",
    "unverified": "reported by secondary sources only; the note says so",
    "unknown": "no public figure; value must be null",
    "excluded": "left out by this profile's convention; value must be null; the note says why",
    "included": "already counted in another figure; value must be 0; the note names which",
}
_NEEDS_NOTE = ("derived", "estimate", "unverified", "excluded", "included")
_NULL_STATUSES = ("unknown", "excluded")


@dataclass(frozen=True)
class _Spec:
    """What one entry may hold: its units (name -> scale to the base unit), value type and range."""

    units: Mapping[str, float]
    value_type: str           # "number", "int", "ints" (int or one int per core), "names", "bool"
    minimum: float
    help: str
    exclusive_minimum: bool = False
    choices: Tuple[str, ...] = ()  # "names": the allowed names (default: the synapse encodings)


def _energy(help: str) -> _Spec:
    return _Spec(ENERGY_UNITS, "number", 0.0, help)


FIGURES: Dict[str, _Spec] = {
    "synaptic_op": _energy("energy of one effective synaptic operation with a binary (spike) input: one "
                           "accumulate of one nonzero weight (an AC)"),
    "mac": _energy("energy of one effective multiply-accumulate with a real-valued input (the first layer of "
                   "a direct-encoded SNN; every layer of an ANN)"),
    "neuron_update": _energy("energy of one neuron's state update in one timestep"),
    "spike_out": _energy("energy of one output spike, generated and routed to its destination"),
    "memory_access": _energy("energy of one weight read from memory, charged once per synaptic op or MAC, for "
                             "targets whose op energy leaves memory out"),
    "static_power": _Spec(POWER_UNITS, "number", 0.0, "static (leakage and idle) power of the chip"),
    "timestep_latency": _Spec(TIME_UNITS, "number", 0.0, "wall time of one SNN timestep", exclusive_minimum=True),
    "inference_latency": _Spec(TIME_UNITS, "number", 0.0, "wall time of one ANN inference",
                               exclusive_minimum=True),
}

_SNN_FIGURES = ("synaptic_op", "mac", "neuron_update", "spike_out", "memory_access", "static_power",
                "timestep_latency")
_ANN_FIGURES = ("mac", "memory_access", "static_power", "inference_latency")
REQUIRED_FIGURES: Dict[str, Tuple[str, ...]] = {
    "neuromorphic": _SNN_FIGURES,
    "ann": _ANN_FIGURES,
    "reference": _SNN_FIGURES + ("inference_latency",),
}

LIMITS: Dict[str, _Spec] = {
    "cores": _Spec(COUNT_UNITS, "int", 1, "number of cores"),
    "neurons_per_core": _Spec(COUNT_UNITS, "ints", 1, "neurons (compartments, neuron-memory entries) per core; "
                              "a list gives one value per core"),
    "synaptic_memory_per_core": _Spec(BIT_UNITS, "ints", 1, "synaptic (weight) memory per core"),
    "kernel_memory_per_core": _Spec(COUNT_UNITS, "ints", 1, "kernel (weight) memory entries per core"),
    "kernel_address_pow2": _Spec({}, "bool", 0, "kernel memory is addressed with kernel size and output "
                                 "channels each rounded up to a power of two"),
    "fan_in_per_core": _Spec(COUNT_UNITS, "int", 1, "input axons per core"),
    "fan_out_per_core": _Spec(COUNT_UNITS, "int", 1, "output axons per core (one per neuron and destination core)"),
    "neurons_per_chip": _Spec(COUNT_UNITS, "int", 1, "neurons per chip"),
    "synapses_per_chip": _Spec(COUNT_UNITS, "int", 1, "synapses per chip"),
    "input_channels": _Spec(COUNT_UNITS, "int", 1, "input channels of the chip"),
    "hidden_neurons": _Spec(COUNT_UNITS, "int", 1, "hidden neurons of the chip"),
    "output_neurons": _Spec(COUNT_UNITS, "int", 1, "output neurons of the chip"),
    "weight_bits": _Spec(BIT_UNITS, "int", 1, "bits per stored weight (the deployment precision)"),
    "neuron_state_bits": _Spec(BIT_UNITS, "int", 1, "bits of state per neuron"),
    "threshold_bits": _Spec(BIT_UNITS, "int", 1, "bits of a neuron's firing threshold (optional)"),
    "encodings": _Spec({}, "names", 0, f"synapse encodings the target stores: {', '.join(ENCODINGS)}"),
    "weight_sharing": _Spec({}, "bool", 0, "conv kernels are stored once per layer (true) or every synapse "
                            "of the unrolled layer is stored (false)"),
    "dense_compute": _Spec({}, "bool", 0, "the device computes every MAC of a layer whatever its inputs and weights "
                           "(dense kernels, no zero skipping): it is charged dense MACs under either counting rule"),
    "reset_modes": _Spec({}, "names", 0, "neuron resets the chip implements: zero, subtract (optional; a network "
                         "using another one does not fit)", choices=("zero", "subtract")),
}
_PER_CORE_LISTS = ("neurons_per_core", "synaptic_memory_per_core", "kernel_memory_per_core")
_COMMON_LIMITS = ("weight_bits", "neuron_state_bits", "encodings", "weight_sharing")
REQUIRED_LIMITS: Dict[str, Tuple[str, ...]] = {
    "partition": ("cores", "neurons_per_core", "synaptic_memory_per_core", "fan_in_per_core",
                  "fan_out_per_core") + _COMMON_LIMITS,
    "layer_per_core": ("cores", "neurons_per_core", "kernel_memory_per_core", "kernel_address_pow2")
    + _COMMON_LIMITS,
    "chip": ("input_channels", "hidden_neurons", "output_neurons") + _COMMON_LIMITS,
    "none": _COMMON_LIMITS,
}

SYNAPSE_FORMAT: Dict[str, _Spec] = {
    "word_bits": _Spec(BIT_UNITS, "int", 1, "entries are rounded up to whole words of this size"),
    "entry_prefix_bits": _Spec(BIT_UNITS, "int", 0, "fixed prefix of every synapse entry"),
    "max_synapses_per_entry": _Spec(COUNT_UNITS, "int", 1, "synapses one entry can hold"),
    "index_bits_min": _Spec(BIT_UNITS, "int", 0, "smallest neuron-index field"),
    "index_bits_max": _Spec(BIT_UNITS, "int", 1, "largest neuron-index field"),
    "skip_bits_min": _Spec(BIT_UNITS, "int", 0, "smallest run-length skip field"),
    "skip_bits_max": _Spec(BIT_UNITS, "int", 1, "largest run-length skip field"),
    "delay_bits": _Spec(BIT_UNITS, "int", 0, "synaptic delay bits stored per synapse"),
}

_TOP_KEYS = ("name", "kind", "description", "mapping", "scope", "figures", "limits", "synapse_format", "sanafe",
             "weight_memory", "simulator")
_ENTRY_KEYS = ("value", "unit", "source", "status", "note", "bound", "range", "scope", "conditions", "inconsistent")
_READING_KEYS = ("value", "source", "note")
_MEMORY_KEYS = ("value", "unit", "word_bits", "capacity", "source", "status", "note", "conditions")
# ``bound``: the figure is a published minimum (lower) or a worst case (upper); a total charging both kinds is an
# estimate, not a bound.
BOUNDS = ("lower", "upper")

#: What an energy covers, narrowest first. ``arithmetic``: the synaptic arithmetic alone (ACs, MACs);
#: ``chip-dynamic``: everything the chip does per event (arithmetic, memory reads, neuron updates, spikes);
#: ``chip``: chip-dynamic plus static (leakage, idle) power over the inference; ``board``: the whole device's
#: supply (a measured board or development kit: regulators, I/O, host MCU). A verdict compares two energies at
#: one scope (slt_deploy.report.verdict).
SCOPES = ("arithmetic", "chip-dynamic", "chip", "board")
#: The host that computes the first layer of a host-fed SNN on a chip: an int8 accelerator next to the chip, at the
#: precision of the chip's own weights (Loihi, Xylo, DYNAP-CNN store 8-bit weights); ``--host-profile fp32-45nm``
#: for a float host. The default of the report, the energy search and the CLI.
HOST_PROFILE = "int8-45nm"
#: The ANN targets a chip's user could deploy instead: ``deploy`` compares its chip with these.
ANN_TARGETS = ("int8-45nm", "fp32-45nm")
#: The scope each figure belongs to when it does not say otherwise (``scope:`` on a figure says what it covers,
#: e.g. TrueNorth's all-in synaptic event covers ``chip``, an MLPerf Tiny energy per MAC ``board``).
FIGURE_SCOPES = {"synaptic_op": "arithmetic", "mac": "arithmetic", "memory_access": "chip-dynamic",
                 "neuron_update": "chip-dynamic", "spike_out": "chip-dynamic", "static_power": "chip",
                 "timestep_latency": "chip", "inference_latency": "chip"}
#: A profile's scope when it does not give one: what its totals cover when every figure is known.
DEFAULT_SCOPES = {"reference": "arithmetic", "ann": "chip-dynamic", "neuromorphic": "chip"}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# ------------------------------------------------------------------------------------------------ types

@dataclass(frozen=True)
class Figure:
    """One per-event energy, power or latency: ``value`` in ``unit`` (None when unknown)."""

    name: str
    value: Optional[float]
    unit: str
    source: str
    status: str
    note: str = ""
    bound: str = ""           # "", "lower" or "upper" (see BOUNDS)
    range: Optional[Tuple[float, float]] = None  # sourced (low, high) around value, in ``unit``
    scope: str = ""           # what the figure covers (SCOPES); "" = FIGURE_SCOPES[name]
    conditions: str = ""      # what it was measured or designed under (chip, node, voltage, network)
    # published readings of this figure whose source contradicts itself: kept for the record (in ``unit``), never
    # the value, an end of the range or a bound
    inconsistent: Tuple["SetAsideReading", ...] = ()

    @property
    def known(self) -> bool:
        return self.value is not None

    @property
    def covers(self) -> str:
        return self.scope or FIGURE_SCOPES[self.name]

    def si(self) -> Optional[float]:
        """The value in J, W or s (None when unknown)."""
        if self.value is None:
            return None
        return self.value * FIGURES[self.name].units[self.unit]

    def interval(self) -> Tuple[float, float]:
        """(low, high) in SI units: ``range`` when given, else the value, open on the side a ``bound`` leaves
        open (a published minimum has no upper end, a worst case no lower one); unknown: (0, inf)."""
        if self.value is None:
            return 0.0, math.inf
        scale = FIGURES[self.name].units[self.unit]
        if self.range is not None:
            return self.range[0] * scale, self.range[1] * scale
        v = self.value * scale
        return {"lower": (v, math.inf), "upper": (0.0, v)}.get(self.bound, (v, v))


@dataclass(frozen=True)
class SetAsideReading:
    """A published reading of a figure left out because its source is internally inconsistent (``note`` says how,
    e.g. a static power above the same run's total power)."""

    value: float
    source: str
    note: str


@dataclass(frozen=True)
class MemoryLevel:
    """One level of a weight store (``weight_memory``): ``read_j`` per access of ``word_bits``, holding up to
    ``capacity_bits`` (None: unbounded, e.g. DRAM)."""

    name: str
    read_j: float
    word_bits: int
    capacity_bits: Optional[int]
    source: str
    status: str
    note: str = ""

    def per_bit(self) -> float:
        return self.read_j / self.word_bits


def read_energy_per_bit(levels: Tuple[MemoryLevel, ...], storage_bits: float
                        ) -> Optional[Tuple[float, MemoryLevel, Optional[MemoryLevel]]]:
    """Energy per bit read from a weight store of ``S = storage_bits``, growing smoothly with its size.

    The levels of ``weight_memory`` (capacity ``C_i`` bits, read energy per bit ``e_i = read_j / word_bits``,
    smallest first) are points of one curve, not a step function (Horowitz's 8 KB / 32 KB / 1 MB SRAM reads are
    three sizes of one technology)::

        e(S) = e_1                                   S <= C_1
        e(S) = e_i (S / C_i) ** k_i                  C_i < S <= C_{i+1}  (both on chip)
               k_i = ln(e_{i+1} / e_i) / ln(C_{i+1} / C_i)
        e(S) = e_off                                 S > C_n, the largest bounded level (the unbounded level:
                                                     off-chip DRAM; None when the profile has none)

    i.e. ln e is linear in ln S between two neighbouring points: an SRAM's access energy grows roughly as the
    square root of its capacity (its wire length; k = 0.5 between Horowitz's 8 and 32 KB points, 0.46 between
    32 KB and 1 MB), so a store one byte over a point costs that point's energy, not the next one's. Leaving the
    chip is the one step kept on purpose: DRAM is another technology with its own per-access energy, and a store
    larger than the largest on-chip level must be read from it.

    Returns (J per bit, the level at or above S, the level below S that the curve comes from, or None)."""
    bounded = [m for m in levels if m.capacity_bits is not None]
    if not levels:
        return None
    if not bounded or storage_bits > bounded[-1].capacity_bits:
        off = [m for m in levels if m.capacity_bits is None]
        return (off[0].per_bit(), off[0], bounded[-1] if bounded else None) if off else None
    if storage_bits <= bounded[0].capacity_bits:
        return bounded[0].per_bit(), bounded[0], None
    for below, above in zip(bounded, bounded[1:]):
        if storage_bits <= above.capacity_bits:
            k = math.log(above.per_bit() / below.per_bit()) / math.log(above.capacity_bits / below.capacity_bits)
            return below.per_bit() * (storage_bits / below.capacity_bits) ** k, above, below
    raise AssertionError("unreachable: storage_bits <= the largest bounded capacity")


@dataclass(frozen=True)
class WeightRead:
    """One weight read from a store (:meth:`HardwareProfile.weight_read`): ``joules`` per weight, the per-bit
    energy of the store's size, and the levels whose points it lies between."""

    joules: float
    per_bit_j: float
    storage_bits: float
    bits_per_weight: float
    level: MemoryLevel                 # the smallest level that holds the store (DRAM beyond the chip)
    below: Optional[MemoryLevel]       # the level the curve comes from (None: at or below the smallest)

    def describe(self) -> str:
        size = f"{self.storage_bits / 8 / 1024:.1f} KiB"
        if self.below is None:
            where = f"at most {self.level.name}'s size: its {self.per_bit_j * 1e12:.4g} pJ per bit"
        elif self.level.capacity_bits is None:
            where = f"larger than {self.below.name}: off chip ({self.level.name}), {self.per_bit_j * 1e12:.4g} pJ per bit"
        else:
            where = (f"between {self.below.name} and {self.level.name}: {self.per_bit_j * 1e12:.4g} pJ per bit "
                     f"(interpolated in log size)")
        return (f"weights ({size} at {self.bits_per_weight:.4g} bits each) read from a store {where} -> "
                f"{self.joules * 1e12:.4g} pJ per weight")


LimitValue = Union[None, int, bool, Tuple[int, ...], Tuple[str, ...]]


@dataclass(frozen=True)
class Limit:
    """One architecture limit or synapse-format constant (None when unknown)."""

    name: str
    value: LimitValue
    unit: str
    source: str
    status: str
    note: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None

    def scaled(self) -> LimitValue:
        """The value in base units (bits or counts); lists are scaled element-wise; names and flags unchanged."""
        spec = LIMITS.get(self.name) or SYNAPSE_FORMAT[self.name]
        if self.value is None or not spec.units:
            return self.value
        scale = int(spec.units[self.unit])
        if isinstance(self.value, tuple):
            return tuple(v * scale for v in self.value)
        return self.value * scale


@dataclass(frozen=True)
class HardwareProfile:
    """A validated hardware profile. ``figures``/``limits``/``synapse_format`` are read-only mappings."""

    name: str
    kind: str
    description: str
    mapping: str
    figures: Mapping[str, Figure]
    limits: Mapping[str, Limit]
    synapse_format: Mapping[str, Limit]
    path: str
    # SANA-FE architectures: "loihi" (its calibrated one) or a file in hardware_profiles/sanafe/
    sanafe: Tuple[str, ...] = ()
    scope: str = "chip"                          # what a total covers when every figure is known (SCOPES)
    weight_memory: Tuple[MemoryLevel, ...] = ()  # by capacity, smallest first; see weight_read
    # the vendor's own simulator (a backend name of slt_deploy.simulate) a deploy to this target ends with;
    # None: the vendor ships none that the project runs
    simulator: Optional[str] = None

    def weight_read(self, storage_bits: float, bits_per_weight: float) -> Optional["WeightRead"]:
        """The energy of one weight read from a store of ``storage_bits`` (:func:`read_energy_per_bit` of
        ``weight_memory``) times ``bits_per_weight`` (a wide word delivers several narrow weights read in
        sequence; a sparse store's index bits are read with each weight). None when the profile has no
        weight_memory section, or no level holds the store."""
        per_bit = read_energy_per_bit(self.weight_memory, storage_bits)
        if per_bit is None:
            return None
        return WeightRead(per_bit[0] * bits_per_weight, per_bit[0], float(storage_bits), float(bits_per_weight),
                          per_bit[1], per_bit[2])

    def figure(self, name: str) -> Optional[Figure]:
        """The figure, or None when the profile does not list it (e.g. ``synaptic_op`` on an ANN target)."""
        if name not in FIGURES:
            raise KeyError(f"unknown figure {name!r}; figures: {', '.join(FIGURES)}")
        return self.figures.get(name)

    def energy(self, name: str) -> Optional[float]:
        """A figure in SI units (J, W, s), or None when unknown or not listed."""
        fig = self.figure(name)
        return fig.si() if fig is not None else None

    def limit(self, name: str) -> LimitValue:
        """A limit in base units (bits, counts), or None when unknown or not listed."""
        if name not in LIMITS:
            raise KeyError(f"unknown limit {name!r}; limits: {', '.join(LIMITS)}")
        lim = self.limits.get(name)
        return lim.scaled() if lim is not None else None

    def format_constant(self, name: str) -> Optional[int]:
        lim = self.synapse_format.get(name)
        return lim.scaled() if lim is not None else None

    @property
    def encodings(self) -> Tuple[str, ...]:
        return tuple(self.limit("encodings") or ())

    def to_dict(self) -> dict:
        """Plain dict in the YAML file's shape (lists for tuples), e.g. to embed in a report."""
        def entries(section: Mapping[str, Any]) -> dict:
            out = {}
            for name, e in section.items():
                value = list(e.value) if isinstance(e.value, tuple) else e.value
                out[name] = {"value": value, "unit": e.unit, "source": e.source, "status": e.status, "note": e.note}
                for key in ("bound", "scope", "conditions"):
                    if getattr(e, key, ""):
                        out[name][key] = getattr(e, key)
                if getattr(e, "range", None) is not None:
                    out[name]["range"] = list(e.range)
            return out

        data = {"name": self.name, "kind": self.kind, "description": self.description, "mapping": self.mapping,
                "figures": entries(self.figures), "limits": entries(self.limits)}
        if self.synapse_format:
            data["synapse_format"] = entries(self.synapse_format)
        if self.sanafe:
            data["sanafe"] = list(self.sanafe)
        if self.simulator:
            data["simulator"] = self.simulator
        data["scope"] = self.scope
        if self.weight_memory:
            data["weight_memory"] = {m.name: {"value": m.read_j * 1e12, "unit": "pJ", "word_bits": m.word_bits,
                                              "capacity": None if m.capacity_bits is None else
                                              m.capacity_bits / 8 / 1024, "source": m.source,
                                              "status": m.status, "note": m.note} for m in self.weight_memory}
        return data

    def unknown_figures(self) -> Tuple[str, ...]:
        return tuple(n for n, f in self.figures.items() if f.value is None and f.status == "unknown")

    def unknown_limits(self) -> Tuple[str, ...]:
        return tuple(n for n, l in self.limits.items() if l.value is None)


# ------------------------------------------------------------------------------------------------ loading

def _profiles_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("slt_deploy.hardware_profiles")))


def _shipped() -> Dict[str, Path]:
    return {p.stem: p for p in sorted(_profiles_dir().glob("*.yaml"))}


def profile_names() -> List[str]:
    """Names of the profiles shipped with the package."""
    return list(_shipped())


def list_profiles() -> List[HardwareProfile]:
    """Every shipped profile, loaded and validated, sorted by name."""
    return [load_profile(path) for path in _shipped().values()]


# other names of shipped profiles: Speck is the sensor + DYNAP-CNN processor chip (SOURCES.md section 7)
ALIASES = {"speck": "dynapcnn"}


def host_of(profile: HardwareProfile, host: HardwareProfile) -> HardwareProfile:
    """The profile that charges the host-computed first layer of an SNN costed on ``profile``: a reference profile
    costs both sides itself (the 45 nm convention charges its own MACs); a chip's is charged on ``host``."""
    return profile if profile.kind == "reference" else host


def load_profile(name_or_path: Union[str, Path]) -> HardwareProfile:
    """Load a shipped profile by name, or any profile file by path (``.yaml``/``.yml`` or an existing file)."""
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if isinstance(name_or_path, Path) or path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return _load_file(path)
    shipped = _shipped()
    text = ALIASES.get(text, text)
    if text not in shipped:
        raise ProfileError(f"unknown hardware profile {text!r}; available: {', '.join(shipped)} "
                           f"(or pass the path of a profile YAML file)")
    return _load_file(shipped[text])


def _load_file(path: Path) -> HardwareProfile:
    from ..yamlio import read_file

    return parse_profile(read_file(path, "hardware profile", ProfileError, mapping=False), where=str(path))


def parse_profile(data: Any, where: str = "<profile>") -> HardwareProfile:
    """Validate a profile's parsed YAML (a mapping) and build the :class:`HardwareProfile`."""
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a mapping with keys {', '.join(_TOP_KEYS)}")
    _no_unknown(data, _TOP_KEYS, where, "")
    for key in ("name", "kind", "description", "mapping", "figures", "limits"):
        if key not in data:
            raise ProfileError(f"{where}: missing required field {key!r}")
    name = _text(data["name"], where, "name")
    if not _NAME_RE.match(name):
        raise ProfileError(f"{where}: name {name!r} must be lowercase letters, digits, '-' or '_'")
    kind = _choice(data["kind"], KINDS, where, "kind")
    mapping = _choice(data["mapping"], MAPPINGS, where, "mapping")
    description = _text(data["description"], where, "description")

    weight_memory = _weight_memory(data.get("weight_memory"), where)
    required = tuple(f for f in REQUIRED_FIGURES[kind] if not (weight_memory and f == "memory_access"))
    figures = _section(data["figures"], FIGURES, required, where, "figures", Figure)
    scope = _choice(data.get("scope", DEFAULT_SCOPES[kind]), SCOPES, where, "scope")
    limits = _section(data["limits"], LIMITS, REQUIRED_LIMITS[mapping], where, "limits", Limit)
    fmt_data = data.get("synapse_format")
    synapse_format = ({} if fmt_data is None else
                      _section(fmt_data, SYNAPSE_FORMAT, tuple(SYNAPSE_FORMAT), where, "synapse_format", Limit))
    _check_consistency(limits, synapse_format, mapping, where)
    sanafe = data.get("sanafe") or []
    if not isinstance(sanafe, list) or not all(isinstance(a, str) and a for a in sanafe):
        raise ProfileError(f"{where}: sanafe must be a list of SANA-FE architecture names (loihi or a file in "
                           f"hardware_profiles/sanafe/)")
    return HardwareProfile(name=name, kind=kind, description=description, mapping=mapping,
                           figures=types.MappingProxyType(figures), limits=types.MappingProxyType(limits),
                           synapse_format=types.MappingProxyType(synapse_format), path=where,
                           sanafe=tuple(sanafe), scope=scope, weight_memory=weight_memory,
                           simulator=_simulator(data.get("simulator"), where))


def _simulator(value: Any, where: str) -> Optional[str]:
    """``simulator``: absent/null, or a registered simulate backend (checked here, so a typo fails on load)."""
    if value is None:
        return None
    from ..simulate import BACKENDS

    return _choice(value, tuple(BACKENDS), where, "simulator")


def _weight_memory(data: Any, where: str) -> Tuple[MemoryLevel, ...]:
    """``weight_memory``: level name -> {value (read energy), unit, word_bits, capacity (KiB, null = unbounded),
    source, status, note}; returned smallest first."""
    if data is None:
        return ()
    if not isinstance(data, dict) or not data:
        raise ProfileError(f"{where}: weight_memory must be a mapping of level name -> {{{', '.join(_MEMORY_KEYS)}}}")
    levels = []
    for name, entry in data.items():
        field = f"weight_memory.{name}"
        if not isinstance(entry, dict):
            raise ProfileError(f"{where}: {field} must be a mapping with keys {', '.join(_MEMORY_KEYS)}")
        _no_unknown(entry, _MEMORY_KEYS, where, f"{field}.")
        for key in ("value", "unit", "word_bits", "capacity", "source", "status"):
            if key not in entry:
                raise ProfileError(f"{where}: {field}.{key} is missing (capacity: null for an unbounded level)")
        status = _choice(entry["status"], tuple(s for s in STATUSES if s not in _NULL_STATUSES + ("included",)),
                         where, f"{field}.status")
        note = entry.get("note") or ""
        if status in _NEEDS_NOTE and not str(note).strip():
            raise ProfileError(f"{where}: {field}.note is required when status is {status} ({STATUSES[status]})")
        unit = _choice(entry["unit"], tuple(ENERGY_UNITS), where, f"{field}.unit")
        read = _number(entry["value"], _Spec(ENERGY_UNITS, "number", 0.0, "", exclusive_minimum=True), where,
                       f"{field}.value", integer=False)
        word = _number(entry["word_bits"], _Spec(BIT_UNITS, "int", 1, ""), where, f"{field}.word_bits", integer=True)
        cap = entry["capacity"]
        cap_bits = None if cap is None else _number(cap, _Spec(BIT_UNITS, "number", 0.0, "", exclusive_minimum=True),
                                                    where, f"{field}.capacity (KiB)", integer=False) * 8 * 1024
        levels.append(MemoryLevel(str(name), read * ENERGY_UNITS[unit], word, cap_bits,
                                  _text(entry["source"], where, f"{field}.source"), status, str(note).strip()))
    levels.sort(key=lambda m: math.inf if m.capacity_bits is None else m.capacity_bits)
    if sum(m.capacity_bits is None for m in levels) > 1:
        raise ProfileError(f"{where}: weight_memory has more than one unbounded level (capacity: null)")
    return tuple(levels)


def _no_unknown(data: dict, valid, where: str, prefix: str) -> None:
    unknown = sorted(str(k) for k in set(data) - set(valid))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                           f"valid keys: {', '.join(valid)}")


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{where}: {field} must be a non-empty string, got {value!r}")
    return value.strip()


def _choice(value: Any, choices, where: str, field: str) -> str:
    if value not in choices:
        raise ProfileError(f"{where}: {field}={value!r} is not one of: {', '.join(choices)}")
    return value


def _section(data: Any, specs: Mapping[str, _Spec], required: Tuple[str, ...], where: str, section: str, cls):
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: {section} must be a mapping of entry name -> "
                           f"{{value, unit, source, status, note}}")
    _no_unknown(data, specs, where, f"{section}.")
    missing = [k for k in required if k not in data]
    if missing:
        raise ProfileError(f"{where}: {section}.{missing[0]} is missing (required here: {', '.join(required)}; "
                           f"use value: null with status: unknown when no figure is known)")
    return {key: _entry(key, data[key], specs[key], where, f"{section}.{key}", cls) for key in data}


def _entry(name: str, data: Any, spec: _Spec, where: str, field: str, cls):
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: {field} must be a mapping with keys {', '.join(_ENTRY_KEYS)}")
    _no_unknown(data, _ENTRY_KEYS, where, f"{field}.")
    for key in ("value", "source", "status") + (("unit",) if spec.units else ()):
        if key not in data:
            raise ProfileError(f"{where}: {field}.{key} is missing")
    status = _choice(data["status"], tuple(STATUSES), where, f"{field}.status")
    source = _text(data["source"], where, f"{field}.source")
    note = data.get("note") or ""
    if not isinstance(note, str):
        raise ProfileError(f"{where}: {field}.note must be a string")
    if status in _NEEDS_NOTE and not note.strip():
        raise ProfileError(f"{where}: {field}.note is required when status is {status} ({STATUSES[status]})")
    unit = data.get("unit")
    if spec.units:
        if unit not in spec.units:
            raise ProfileError(f"{where}: {field}.unit {unit!r} is not allowed; use one of: "
                               f"{', '.join(spec.units)}")
    elif unit not in (None, "", "-"):
        raise ProfileError(f"{where}: {field} takes no unit, got {unit!r}")
    value = data["value"]
    if value is None:
        if status not in _NULL_STATUSES:
            raise ProfileError(f"{where}: {field}.value is null but status is {status}; "
                               f"use status unknown (no public figure) or excluded")
    else:
        if status in _NULL_STATUSES:
            raise ProfileError(f"{where}: {field}.value must be null when status is {status}, got {value!r}")
        value = _value(value, spec, where, f"{field}.value")
        if status == "included" and value != 0:
            raise ProfileError(f"{where}: {field}.value must be 0 when status is included (counted elsewhere)")
    bound = data.get("bound") or ""
    if bound and bound not in BOUNDS:
        raise ProfileError(f"{where}: {field}.bound {bound!r} is not one of: {', '.join(BOUNDS)}")
    extra = {}
    if cls is Figure:
        extra = {"bound": bound, "range": _range(data.get("range"), value, spec, where, field),
                 "scope": _choice(data["scope"], SCOPES, where, f"{field}.scope") if data.get("scope") else "",
                 "conditions": str(data.get("conditions") or "").strip(),
                 "inconsistent": _set_aside(data.get("inconsistent"), spec, where, f"{field}.inconsistent")}
    else:
        for key in ("bound", "range", "scope", "inconsistent"):
            if data.get(key):
                raise ProfileError(f"{where}: {field}.{key} applies to energy figures only")
    return cls(name=name, value=value, unit=unit if spec.units else "", source=source, status=status,
               note=note.strip(), **extra)


def _set_aside(data: Any, spec: _Spec, where: str, field: str) -> Tuple[SetAsideReading, ...]:
    """``inconsistent``: a list of {value, source, note}, each a reading the profile does not use; the note
    (required) says what in the source contradicts it."""
    if data is None:
        return ()
    if not isinstance(data, list) or not data:
        raise ProfileError(f"{where}: {field} must be a list of {{{', '.join(_READING_KEYS)}}}")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ProfileError(f"{where}: {field}[{i}] must be a mapping with keys {', '.join(_READING_KEYS)}")
        _no_unknown(item, _READING_KEYS, where, f"{field}[{i}].")
        for key in _READING_KEYS:
            if key not in item:
                raise ProfileError(f"{where}: {field}[{i}].{key} is missing (the note says what is inconsistent)")
        out.append(SetAsideReading(float(_number(item["value"], spec, where, f"{field}[{i}].value", integer=False)),
                                   _text(item["source"], where, f"{field}[{i}].source"),
                                   _text(item["note"], where, f"{field}[{i}].note")))
    return tuple(out)


def _range(data: Any, value: Any, spec: _Spec, where: str, field: str) -> Optional[Tuple[float, float]]:
    """A figure's sourced [low, high]: two numbers around its value (the note says where each end comes from)."""
    if data is None:
        return None
    if value is None or not isinstance(data, list) or len(data) != 2:
        raise ProfileError(f"{where}: {field}.range must be [low, high] around a known value, got {data!r}")
    low, high = (float(_number(v, spec, where, f"{field}.range", integer=False)) for v in data)
    if not low <= value <= high:
        raise ProfileError(f"{where}: {field}.range [{low}, {high}] must contain value {value}")
    return float(low), float(high)


def _value(value: Any, spec: _Spec, where: str, field: str):
    kind = spec.value_type
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: {field} must be true or false, got {value!r}")
        return value
    if kind == "names":
        names = spec.choices or ENCODINGS
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ProfileError(f"{where}: {field} must be a non-empty list of: {', '.join(names)}")
        bad = [v for v in value if v not in names]
        if bad or len(set(value)) != len(value):
            raise ProfileError(f"{where}: {field} {value!r} must list distinct {'encodings' if not spec.choices else 'names'} "
                               f"from: {', '.join(names)}")
        return tuple(value)
    if kind == "ints" and isinstance(value, list):
        if not value:
            raise ProfileError(f"{where}: {field} must not be an empty list")
        return tuple(_number(v, spec, where, field, integer=True) for v in value)
    return _number(value, spec, where, field, integer=kind in ("int", "ints"))


def _number(value: Any, spec: _Spec, where: str, field: str, integer: bool):
    if isinstance(value, str):  # YAML 1.1 reads "1e-12" (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ProfileError(f"{where}: {field} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProfileError(f"{where}: {field} must be a finite number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ProfileError(f"{where}: {field} must be an integer, got {value!r}")
        value = int(value)
    if value < spec.minimum or (spec.exclusive_minimum and value == spec.minimum):
        rel = ">" if spec.exclusive_minimum else ">="
        raise ProfileError(f"{where}: {field}={value!r} is out of range (must be {rel} {spec.minimum:g})")
    return value


def _check_consistency(limits: Dict[str, Limit], fmt: Dict[str, Limit], mapping: str, where: str) -> None:
    cores = limits.get("cores")
    for name in _PER_CORE_LISTS:
        lim = limits.get(name)
        if lim is None or not isinstance(lim.value, tuple):
            continue
        if mapping == "partition":
            raise ProfileError(f"{where}: limits.{name}.value must be one number: mapping partition assumes "
                               f"identical cores")
        if cores is None or cores.value is None or len(lim.value) != cores.value:
            raise ProfileError(f"{where}: limits.{name}.value lists {len(lim.value)} cores but limits.cores is "
                               f"{cores.value if cores else None}")
    for low, high in (("index_bits_min", "index_bits_max"), ("skip_bits_min", "skip_bits_max")):
        if fmt and fmt[low].value > fmt[high].value:
            raise ProfileError(f"{where}: synapse_format.{low}={fmt[low].value} exceeds {high}={fmt[high].value}")
    enc = limits.get("encodings")
    if enc is not None and enc.value and "runlength" in enc.value and not fmt:
        raise ProfileError(f"{where}: limits.encodings lists runlength, which needs a synapse_format section")


def profiles_table() -> str:
    """Every shipped profile: name, kind, description, then each figure's value, unit, status and source."""
    blocks = []
    for p in list_profiles():
        rows = [{"figure": f.name, "value": "null" if f.value is None else f"{f.value:g}", "unit": f.unit,
                 "status": f.status, "source": f.source} for f in p.figures.values()]
        head = f"{p.name} ({p.kind}, mapping {p.mapping}): {p.description}"
        blocks.append(head + "\n" + _indent(format_table(rows, ["figure", "value", "unit", "status", "source"])))
    return "\n\n".join(blocks)



def _indent(text: str) -> str:
    return "\n".join(("  " + line).rstrip() for line in text.splitlines())
