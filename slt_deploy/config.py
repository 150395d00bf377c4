"""Typed settings for every stage.

Each settings group is a frozen dataclass whose fields carry their own help text (``field(metadata=...)``).
The same definitions give the CLI flags, the config-file schema (unknown keys are rejected with the list of
valid ones) and the canonical JSON from which a run directory's name is hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Tuple

from .errors import ConfigError
from .limits import limits, short


def setting(default: Any, help: str, choices: Optional[Tuple[str, ...]] = None, internal: bool = False,
            runtime: bool = False, **kw):
    """A dataclass field with its help text (and allowed values) kept next to it.

    ``internal``: filled in by the program (e.g. a hash of the user's model source), not a command-line flag.
    ``runtime=True`` marks a setting that says *where* a run executes, not *what* it computes (the device):
    it is left out of the run-name hash, ``config.json`` and the ticket record (``to_dict(runtime=False)``),
    so the same search on a CPU or a GPU resumes in, and writes, the same run directory.
    """
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple or default_factory for mutable defaults")
    return field(default=default, metadata={"help": help, "choices": choices, "internal": internal,
                                            "runtime": runtime}, **kw)


def is_user_model(name: str) -> bool:
    """A model name of the form ``path/to/file.py:factory`` or ``package.module:factory`` (the user's code)."""
    return ":" in name


class Settings:
    """Mixin: validation, dict round trip with unknown-key rejection, canonical hashing."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(
                    f"{type(self).__name__}.{f.name}={short(value)} is not one of: {', '.join(choices)}")
        self.validate()

    def validate(self) -> None:  # overridden by groups with range checks
        pass

    def to_dict(self, runtime: bool = True) -> dict:
        """Every setting; ``runtime=False`` leaves out the runtime ones (see :func:`setting`)."""
        out = {}
        for f in dataclasses.fields(self):
            if not runtime and f.metadata.get("runtime"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Settings):
                value = value.to_dict(runtime)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Optional[dict], where: str = "", strict: bool = False):
        """Build from a mapping, every value converted to (and checked against) its field's declared type;
        ``strict`` (files the toolkit wrote itself, e.g. a ticket's record) refuses numbers given as text."""
        if data is None:
            return cls()
        return from_mapping(cls, data, where, strict)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def from_mapping(cls, data: Any, where: str = "", strict: bool = False):
    """Any dataclass from a mapping: unknown keys refused with the valid ones, each value converted to its
    field's declared type (nested dataclasses, Optional, Tuple, List, Dict, Any), then the class's own
    checks (``__post_init__`` / ``validate``), every message prefixed with ``where`` (the file and field)."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(short(k) if not isinstance(k, str) else k for k in data if k not in fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}", strict) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None
    except TypeError as exc:  # e.g. a field given twice
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(hint, value, where, strict=False):
    """Convert JSON/YAML/CLI values to the field's declared type, with a clear error when impossible."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _plain_json(value, where)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(inner, value, where, strict)
    if isinstance(hint, type) and issubclass(hint, Settings):
        return hint.from_dict(value, where, strict)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where, strict)
    if origin in (tuple, Tuple, list, typing.List):
        if isinstance(value, str) and not strict:
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {short(value)}")
        item = args[0] if args else str
        out = [_coerce(item, v, f"{where}[{i}]", strict) for i, v in enumerate(value)]
        return out if origin in (list, typing.List) else tuple(out)
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_type, value_type = args if args else (str, Any)
        return {_coerce(key_type, k, where, True): _coerce(value_type, v, f"{where}.{k}", strict)
                for k, v in value.items()}
    try:
        if hint is bool:
            if isinstance(value, str) and not strict:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if not isinstance(value, bool):
                raise ValueError
            return value
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            if strict and not isinstance(value, (int, float)):
                raise ValueError
            if isinstance(value, str) and len(value) > 40:  # int() of a huge digit string is slow
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool) or (strict and not isinstance(value, (int, float))):
                raise ValueError
            out = float(value)
            if not math.isfinite(out):
                raise ValueError
            return out
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: {short(value)} is not a valid {getattr(hint, '__name__', hint)}") from None
    return value


def _plain_json(value, where, depth: int = 0):
    """A free-form value (``Any`` fields): JSON types only, finite numbers, bounded nesting."""
    if depth > 32:
        raise ConfigError(f"{where}: nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_json(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain_json(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise ConfigError(f"{where}: {short(value)} is not a JSON value")


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")

#: The seed's range: every generator is seeded with 63 bits (:func:`slt_deploy.utils.derive_seed`), and a ticket's
#: record refuses a seed outside it, so a search refuses it where it enters.
SEED_MAX = (1 << 63) - 1


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class NeuronConfig(Settings):
    beta: float = setting(0.5, "membrane decay per step (snnTorch Leaky beta), in [0, 1]; 1 = integrate-and-fire "
                          "(no leak), what DYNAP-CNN/Speck run and Xylo comes closest to (with --reset subtract)")
    threshold: float = setting(1.0, "firing threshold (> 0)")
    reset: str = setting("zero", "reset after a spike: zero (what Loihi/Lava implement) or subtract",
                         choices=("zero", "subtract"))
    surrogate_alpha: float = setting(2.0, "slope of the ATan surrogate gradient")
    alpha: float = setting(0.0, "synaptic current decay per step (snnTorch Synaptic alpha) in [0, 1); 0 = no "
                           "synaptic current (Leaky); > 0 needs --reset subtract")

    def validate(self):
        _check(0.0 <= self.beta <= 1.0, f"neuron.beta={self.beta} must be in [0, 1]")
        _check(0.0 <= self.alpha < 1.0, f"neuron.alpha={self.alpha} must be in [0, 1)")
        # snnTorch Synaptic's zero reset also drops the step's input (exported as "hold"), which Lava cannot run
        _check(self.alpha == 0.0 or self.reset == "subtract",
               f"neuron.alpha={self.alpha} (Synaptic neurons) needs neuron.reset=subtract (--reset subtract): "
               f"Synaptic's zero reset also drops the step's input, which Lava cannot run")
        _check(self.threshold > 0, f"neuron.threshold={self.threshold} must be > 0")
        _check(self.surrogate_alpha > 0, f"neuron.surrogate_alpha={self.surrogate_alpha} must be > 0")


@dataclass(frozen=True)
class ModelConfig(Settings):
    name: str = setting("mlp", "model from the registry (slt-deploy models lists them), or the user's own "
                        "network: path/to/file.py:factory or package.module:factory (a callable returning an "
                        "nn.Module)")
    hidden: Tuple[int, ...] = setting((), "layer widths (MLP units or conv channels); empty = model default")
    batchnorm: bool = setting(True, "BatchNorm after conv layers (folded into the conv at export)")
    neuron: NeuronConfig = field(default_factory=NeuronConfig, metadata={"help": "spiking neuron settings"})
    input_shape: Tuple[int, ...] = setting((), "input shape C,H,W; empty = taken from the dataset")
    num_classes: int = setting(0, "number of classes; 0 = taken from the dataset")
    spiking: bool = setting(True, "false = the ANN twin: ReLU in place of every LIF neuron (MPLT / LT baselines)")
    patch_keep: float = setting(1.0, "spikformer: fraction of patches kept before the encoder (MultiSp level 1)")
    binary_activations: bool = setting(False, "spikformer: binarize the ConvPEP output (MultiSp level 3)")
    recurrent: bool = setting(False, "mlp: hidden layers are snnTorch RLeaky (RSynaptic with --alpha > 0) with an "
                              "all-to-all recurrent Linear (needs --reset subtract); its ANN twin is the "
                              "feed-forward ReLU MLP")
    args: str = setting("", "user model: keyword arguments of the factory as a JSON object, e.g. '{\"hidden\": 64}'")
    weights: Optional[str] = setting(None, "weights to start from (safetensors, or a torch state dict "
                                     "read with weights_only=True); IMP and EB rewind to them")
    source_sha256: str = setting("", "user model: sha256 of the factory's source file", internal=True)
    weights_sha256: str = setting("", "sha256 of the weights file", internal=True)

    def label(self) -> str:
        """A short name for run directories and reports: the registry name, or file-stem.factory."""
        if not is_user_model(self.name):
            return self.name
        where, _, factory = self.name.rpartition(":")
        stem = Path(where).stem if where.endswith(".py") else where.rsplit(".", 1)[-1]
        return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{stem}.{factory}")

    def factory_args(self) -> dict:
        """The factory's keyword arguments (``args`` parsed)."""
        return json.loads(self.args) if self.args else {}

    def validate(self):
        _check(all(h > 0 for h in self.hidden), f"model.hidden={short(self.hidden)} must be positive widths")
        _check(all(d > 0 for d in self.input_shape), f"model.input_shape={short(self.input_shape)} must be positive")
        _check(self.num_classes >= 0, f"model.num_classes={self.num_classes} must be >= 0")
        _check(0.0 < self.patch_keep <= 1.0, f"model.patch_keep={self.patch_keep} must be in (0, 1]")
        if self.args:
            try:
                parsed = json.loads(self.args)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"model.args={self.args!r} is not valid JSON ({exc.msg})") from None
            _check(isinstance(parsed, dict), f"model.args={self.args!r} must be a JSON object of keyword arguments")
        # snnTorch RLeaky's zero reset also drops the step's input (the whole next membrane is zeroed), which
        # Lava's LIF cannot run (the NIR export marks it "hold" and compile refuses it): only subtract deploys
        _check(not self.recurrent or self.neuron.reset == "subtract",
               "model.recurrent=true needs model.neuron.reset=subtract (--reset subtract): RLeaky's zero reset "
               "also drops the step's input, which Lava cannot run")
        _check(is_user_model(self.name) or not self.args,
               f"model.args applies to a user model (file.py:factory), not to model {self.name}")


@dataclass(frozen=True)
class DataConfig(Settings):
    dataset: str = setting("mnist", "dataset (slt-deploy datasets lists them)")
    path: Optional[str] = setting(None, "dataset folder; default: the offline MNIST test split in ../shared")
    n_train: int = setting(8000, "training samples taken from the split (0 = all)")
    n_test: int = setting(2000, "test samples taken from the split (0 = all)")
    encoding: str = setting("direct", "input encoding; event datasets are already spikes and use events",
                            choices=("direct", "rate", "latency", "events"))
    timesteps: int = setting(5, "simulation timesteps T")

    def validate(self):
        _check(self.timesteps >= 1, f"data.timesteps={self.timesteps} must be >= 1")
        _check(self.timesteps <= limits().max_timesteps, f"data.timesteps={self.timesteps} is more than the limit of "
               f"{limits().max_timesteps} (SLT_DEPLOY_MAX_TIMESTEPS)")
        _check(self.n_train >= 0 and self.n_test >= 0, "data.n_train and data.n_test must be >= 0")


@dataclass(frozen=True)
class TrainConfig(Settings):
    epochs: int = setting(10, "training epochs per round")
    batch_size: int = setting(128, "minibatch size")
    optimizer: str = setting("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = setting(0.1, "learning rate")
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(5e-4, "L2 weight decay")
    schedule: str = setting("cosine", "learning-rate schedule over the epochs of a round",
                            choices=("cosine", "constant"))
    device: str = setting("auto", "where to train: auto (the GPU when there is one), cpu, cuda or cuda:N; "
                          "not part of the run name, the ticket says which device trained it", runtime=True)

    def validate(self):
        _check(self.epochs >= 1, f"train.epochs={self.epochs} must be >= 1")
        _check(self.batch_size >= 1, f"train.batch_size={self.batch_size} must be >= 1")
        _check(self.lr > 0, f"train.lr={self.lr} must be > 0")
        _check(self.weight_decay >= 0, f"train.weight_decay={self.weight_decay} must be >= 0")
        _check(0.0 <= self.momentum < 1.0, f"train.momentum={self.momentum} must be in [0, 1)")
        _check(DEVICE_PATTERN.fullmatch(self.device) is not None,
               f"train.device={self.device!r} is not one of: auto, cpu, cuda, cuda:N")


#: The search methods the energy objective runs: the ones whose rounds take its hook (slt_deploy/search/energy.py).
ENERGY_METHODS = ("imp", "biprop", "dense")


# Per-network training recipes (issue 30; benchmarks/snn_recipe.py, RESULTS.md section 16). The field defaults
# above stay as they were (run names are hashed from the settings that differ from them); these are what the demo,
# its tickets and energy search train the SNN with (SNN_RECIPE) and what the report's ANN twins and counterparts
# train with (ANN_RECIPE). SGD at lr 0.1 for 5 epochs underfits the spiking MLP (92.4-92.9 % on 2,000 test images,
# seeds 0-2); Adam at lr 5e-3 with the cosine schedule reaches 95.9-96.4 % in the same 5 epochs. The ReLU twin
# does best with it too (95.95-96.4 % against 94.95-95.55 % with SGD), so both recipes are the same today: each
# network is trained by the best recipe measured for it, never the ANN held back to flatter the SNN.
SNN_RECIPE = TrainConfig(optimizer="adam", lr=5e-3, epochs=5, schedule="cosine")
ANN_RECIPE = TrainConfig(optimizer="adam", lr=5e-3, epochs=5, schedule="cosine")


@dataclass(frozen=True)
class UsageConfig(Settings):
    """How the user runs the deployed network: what the report's chip-scope energies assume (report, deploy, demo)."""

    rate: Optional[float] = setting(None, "inferences per second the chip runs (default: back to back): the "
                                    "chip-scope energy per inference adds static power x the period 1/rate on both "
                                    "sides (a rate faster than one inference's known latency is refused)")

    accuracy_tolerance: Optional[float] = setting(None, "points of accuracy an ANN may be below the SNN and still "
                                                  "be its match in the verdict (default: the standard error of "
                                                  "the difference of the two test accuracies)")

    def validate(self):
        _check(self.rate is None or (math.isfinite(self.rate) and self.rate > 0),
               f"usage.rate={self.rate} must be a positive number of inferences per second")
        _check(self.accuracy_tolerance is None or 0.0 <= self.accuracy_tolerance <= 100.0,
               f"usage.accuracy_tolerance={self.accuracy_tolerance} must be in [0, 100] points")


@dataclass(frozen=True)
class SearchConfig(Settings):
    method: str = setting("imp", "ticket search method; biprop = score-based binary ticket in the untrained "
                          "network (MPSLT, or MPLT with model.spiking=false)",
                          choices=("dense", "imp", "eb", "random", "biprop"))
    rounds: int = setting(4, "IMP pruning rounds (sparsity 1 - (1-prune_fraction)^rounds)")
    prune_fraction: float = setting(0.25, "IMP: fraction of the surviving weights pruned per round")
    scope: str = setting("global", "magnitude ranking over all prunable layers or per layer",
                         choices=("global", "layerwise"))
    prunable: Tuple[str, ...] = setting((), "names of prunable layers; empty = every conv and linear layer")
    rewind_epoch: int = setting(1, "IMP: rewind survivors to this epoch of the dense run (0 = initialization)")
    target_sparsity: float = setting(0.9, "EB, random and biprop: sparsity of the ticket, in [0, 1)")
    eb_queue: int = setting(5, "EB: number of masks kept in the FIFO (q)")
    eb_tau: float = setting(0.02, "EB: draw the ticket when the max normalized Hamming distance < tau")
    eb_max_epochs: int = setting(0, "EB: stop searching after this many epochs (0 = train.epochs)")
    reference: Optional[str] = setting(None, "random: ticket whose per-layer sparsity the random mask copies")
    early_time: bool = setting(False, "Early-Time: search at a reduced T_early, train the final ticket at T")
    et_lambda: float = setting(0.6, "ET: pick the smallest t whose normalized KL divergence < lambda")
    et_epochs: int = setting(2, "ET: training epochs before the KL divergences are measured")
    et_direction: str = setting("paper", "ET: KL(P_t || P_T) as in the paper, or KL(P_T || P_t) as the "
                                "official code computes", choices=("paper", "code"))
    seed: int = setting(0, "random seed (initialization, data order, encodings, random masks)")
    # the energy objective (issue 23; slt_deploy/search/energy.py)
    objective: str = setting("accuracy", "what the search aims at: accuracy (the fixed rounds), or energy: each "
                             "round's activity and energy on --cost-profile measured on held-out training samples, "
                             "pruning past the rounds while accuracy holds, an accuracy-energy front (front.json)",
                             choices=("accuracy", "energy"))
    cost_profile: str = setting("cmos45", "energy objective: the hardware profile (name or file) each round is "
                                "costed on")
    max_rounds: int = setting(16, "energy objective: prune past search.rounds up to this many rounds (imp; biprop: "
                              "that many sparsities) while accuracy holds")
    max_accuracy_drop: float = setting(1.0, "energy objective: points of held-out accuracy below the dense round "
                                       "beyond which pruning stops and T stops falling")
    spike_penalty: float = setting(0.0, "activity regulariser in every round's training: loss += weight x the sum "
                                   "over spiking layers of each layer's spikes per neuron per step (0 = none)")
    holdout: int = setting(500, "energy objective: training samples held out of training, on which each round's "
                           "accuracy, activity and energy are measured")

    @property
    def measures_energy(self) -> bool:
        """This search measures every round's energy (the energy objective)."""
        return self.objective == "energy"

    def validate(self):
        _check(self.rounds >= 0, f"search.rounds={self.rounds} must be >= 0")
        _check(self.max_rounds >= 0, f"search.max_rounds={self.max_rounds} must be >= 0")
        _check(self.max_accuracy_drop >= 0, f"search.max_accuracy_drop={self.max_accuracy_drop} must be >= 0")
        _check(self.holdout >= 1, f"search.holdout={self.holdout} must be >= 1")
        _check(self.spike_penalty >= 0, f"search.spike_penalty={self.spike_penalty} must be >= 0")
        _check(bool(self.cost_profile.strip()), "search.cost_profile must name a hardware profile")
        _check(0.0 < self.prune_fraction < 1.0, f"search.prune_fraction={self.prune_fraction} must be in (0, 1)")
        _check(0.0 <= self.target_sparsity < 1.0,
               f"search.target_sparsity={self.target_sparsity} must be in [0, 1)")
        _check(self.rewind_epoch >= 0, f"search.rewind_epoch={self.rewind_epoch} must be >= 0")
        _check(self.eb_queue >= 2, f"search.eb_queue={self.eb_queue} must be >= 2")
        _check(self.eb_tau > 0, f"search.eb_tau={self.eb_tau} must be > 0")
        _check(self.et_lambda > 0, f"search.et_lambda={self.et_lambda} must be > 0")
        _check(self.et_epochs >= 1, f"search.et_epochs={self.et_epochs} must be >= 1")
        _check(self.eb_max_epochs >= 0, f"search.eb_max_epochs={self.eb_max_epochs} must be >= 0 (0 = train.epochs)")
        _check(0 <= self.seed <= SEED_MAX, f"search.seed={short(self.seed)} must be in 0..2**63-1")


@dataclass(frozen=True)
class RunConfig(Settings):
    """Everything that determines a search's result; its hash names the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "model"})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "data"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training"})
    search: SearchConfig = field(default_factory=SearchConfig, metadata={"help": "search"})

    def validate(self):
        if self.search.early_time:
            _check(self.data.timesteps >= 3,
                   f"data.timesteps={self.data.timesteps}: Early-Time needs T >= 3 (T_early is chosen in 2..T-1)")
            _check(self.search.method in ("imp", "eb"),
                   f"search.early_time works with imp or eb, not {self.search.method}")
        _check(self.search.reference is None or self.search.method == "random",
               f"search.reference applies to method random (the ticket whose per-layer sparsity a random mask "
               f"copies), not to method {self.search.method}")
        if self.search.measures_energy:
            _check(self.search.method in ENERGY_METHODS,
                   f"search.objective=energy works with {', '.join(ENERGY_METHODS[:-1])} or {ENERGY_METHODS[-1]}, "
                   f"not {self.search.method}")
            _check(not self.search.early_time, "search.objective=energy picks T itself (Early-Time's estimate on "
                   "the dense round); leave search.early_time off")
        if self.search.method == "eb":
            _check(self.search.eb_max_epochs <= self.train.epochs or self.search.eb_max_epochs == 0,
                   "search.eb_max_epochs must not exceed train.epochs")

    def canonical_json(self) -> str:
        """Only the settings that differ from their defaults, so adding a setting renames no existing run."""
        return json.dumps(_non_default(self), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        # hashed as UTF-8 bytes, with paths that the locale could not decode (surrogate escapes) given back as
        # their bytes: a non-ASCII data path names the same run under a UTF-8 and a C locale
        text = json.dumps(_non_default(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]

    def run_name(self) -> str:
        s = self.search
        method = s.method + ("+et" if s.early_time else "")
        model = self.model.label() + ("" if self.model.spiking else "-ann")
        return f"{method}_{model}_{self.data.dataset}_{self.digest()}"


def check_setting(cls, name: str, value: Any, where: str):
    """``value`` for the setting ``cls.name`` converted and checked by that setting's own definition (its type,
    finiteness and :meth:`Settings.validate` range), wherever else it enters (a subcommand's flag, an API
    argument); raises ConfigError naming ``where``."""
    hint = typing.get_type_hints(cls)[name]
    value = _coerce(hint, value, where)
    try:
        cls(**{name: value})  # the other settings at their (valid) defaults: only this one can fail
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return value


def _non_default(settings: Settings) -> dict:
    out = {}
    for f in dataclasses.fields(settings):
        if f.metadata.get("runtime"):  # where a run executes never renames it
            continue
        value = getattr(settings, f.name)
        if isinstance(value, Settings):
            nested = _non_default(value)
            if nested:
                out[f.name] = nested
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if value != default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


_KIND_NAMES = {list: "list", tuple: "list", str: "string", int: "number", float: "number", bool: "boolean"}


def check_section_types(cls, data: dict, where: str, prefix: str = "") -> None:
    """Every settings group that ``data`` gives (``model``, ``model.neuron``...) is a mapping or empty, checked
    before anything is merged into it: a section given as a YAML list is one line naming it, whatever flags
    are added on top. Walks the dataclasses, so a new group is covered."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if not (isinstance(hint, type) and issubclass(hint, Settings)) or data.get(f.name) is None:
            continue
        value = data[f.name]
        if not isinstance(value, dict):
            kind = _KIND_NAMES.get(type(value), type(value).__name__)
            keys = ", ".join(g.name for g in dataclasses.fields(hint) if not g.metadata.get("internal"))
            raise ConfigError(f"{where}: section {prefix}{f.name} must be a mapping of its settings ({keys}), "
                              f"got a {kind} {short(value)}")
        check_section_types(hint, value, where, f"{prefix}{f.name}.")


def read_config_file(path: str | Path) -> dict:
    """The raw mapping of a YAML or JSON config file (sections model/data/train/search), not yet validated."""
    from .yamlio import read_file

    return read_file(path, "config file")


def load_config_file(path: str | Path) -> RunConfig:
    return RunConfig.from_dict(read_config_file(path), where=str(path))
