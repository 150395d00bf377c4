"""The ticket artifact: the one file every stage reads and writes.

A ticket is a single safetensors file:
- ``state/<name>``: the model's full state dict (weights already multiplied by the mask, biases, BatchNorm
  parameters and running statistics, neuron constants);
- ``mask/<layer>``: one boolean tensor per pruned conv/linear layer;
- header metadata ``slt_deploy.ticket``: a JSON :class:`TicketRecord` (model config with neuron parameters,
  method and hyperparameters, sparsity, timesteps, seed, accuracy, search wall time, library versions).
safetensors never executes code on load, unlike a pickled ``torch.save`` file.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from .config import SEED_MAX, DataConfig, ModelConfig, RunConfig, SearchConfig, from_mapping, is_user_model
from .errors import ConfigError, SltError, TicketError
from .limits import limits, short
from .utils import write_bytes_atomic

FORMAT = "slt-deploy.ticket/1"
#: the method of a dense ticket made from a user's network at its own weights (no search ran)
USER_WEIGHTS_METHOD = "user-weights"
META_KEY = "slt_deploy.ticket"


class Mask(OrderedDict):
    """Layer name -> bool tensor. Refuses anything but 0/1 values."""

    def __setitem__(self, name, value):
        value = torch.as_tensor(value)
        if value.dtype != torch.bool:
            if not bool(((value == 0) | (value == 1)).all()):
                raise ValueError(f"mask for {name} has values other than 0 and 1")
            value = value.bool()
        super().__setitem__(name, value.detach().cpu().contiguous())

    @classmethod
    def ones_like(cls, layers: Mapping[str, nn.Module]) -> "Mask":
        return cls((name, torch.ones_like(m.weight, dtype=torch.bool)) for name, m in layers.items())

    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.values()))

    def total(self) -> int:
        return int(sum(m.numel() for m in self.values()))

    def sparsity(self) -> float:
        total = self.total()
        return 1.0 - self.kept() / total if total else 0.0

    def layer_sparsity(self) -> Dict[str, float]:
        return {name: 1.0 - int(m.sum()) / m.numel() for name, m in self.items()}


@dataclass
class TicketRecord:
    """Everything about a ticket except its tensors; stored as JSON in the file header."""

    model: ModelConfig
    method: str = "dense"                 # dense, imp, imp+et, eb, eb+et, random
    hyperparameters: Dict[str, Any] = field(default_factory=dict)  # the RunConfig of the search
    timesteps: int = 5
    encoding: str = "direct"
    dataset: str = "mnist"
    seed: int = 0
    round: int = 0
    accuracy: Optional[float] = None      # test accuracy (fraction), logits summed over time
    sparsity: float = 0.0                 # zero weights / all conv+linear weights
    layer_sparsity: Dict[str, float] = field(default_factory=dict)
    wall_time_s: List[float] = field(default_factory=list)  # search wall time of each round so far
    extra: Dict[str, Any] = field(default_factory=dict)      # method-specific facts (e.g. T_early, EB epoch)
    # fingerprint of the training split (dataset, path, samples, sha256); its per-sample hashes are the
    # tensor ``data/train_sample_hashes``, against which evaluation data is checked for overlap
    train_data: Dict[str, Any] = field(default_factory=dict)
    versions: Dict[str, str] = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> "TicketRecord":
        """Parse and validate a record: every field converted to its declared type (strictly: a number stored
        as text is refused), then :meth:`validate`; errors name the file and the field."""
        try:
            d = json.loads(text)  # NaN / Infinity parse, and are refused by field (every float must be finite)
        except (json.JSONDecodeError, ValueError) as exc:
            raise TicketError(f"{where}: ticket header is not valid JSON ({getattr(exc, 'msg', exc)})") from None
        except RecursionError:
            raise TicketError(f"{where}: ticket header is nested too deeply") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = short(d.get("format")) if isinstance(d, dict) else None
            raise TicketError(f"{where}: not a slt-deploy ticket (format {found}, expected {FORMAT!r})")
        try:
            record = from_mapping(cls, d, where, strict=True)
            record.validate(where)
        except ConfigError as exc:
            raise TicketError(str(exc)) from None
        return record

    def validate(self, where: str = "ticket") -> None:
        """Ranges and names the types alone do not pin down (raises ConfigError naming the field)."""
        from .data import DATASETS
        from .models import model_spec

        def check(cond: bool, field: str, message: str) -> None:
            if not cond:
                value = getattr(self, field) if hasattr(self, field) else None
                shown = f"{field}={short(value)}" if hasattr(self, field) else field
                raise ConfigError(f"{where}: {shown} {message}")

        try:
            if not is_user_model(self.model.name):  # a user model is checked when it is rebuilt (its source)
                model_spec(self.model.name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: model.name: {exc}") from None
        base, _, suffix = self.method.partition("+")
        check(self.method == USER_WEIGHTS_METHOD or (
              base in SearchConfig.__dataclass_fields__["method"].metadata["choices"] and suffix in ("", "et")),
              "method", f"is not a search method (or {USER_WEIGHTS_METHOD!r})")
        check(1 <= self.timesteps <= limits().max_timesteps, "timesteps",
              f"must be in 1..{limits().max_timesteps} (SLT_DEPLOY_MAX_TIMESTEPS)")
        check(self.encoding in DataConfig.__dataclass_fields__["encoding"].metadata["choices"], "encoding",
              "is not an encoding")
        check(self.dataset in DATASETS, "dataset", f"is not a dataset ({', '.join(DATASETS)})")
        check(0 <= self.seed <= SEED_MAX, "seed", "must be in 0..2**63-1")
        check(0 <= self.round <= 100_000, "round", "must be in 0..100000")
        check(self.accuracy is None or 0.0 <= self.accuracy <= 1.0, "accuracy", "must be a fraction in [0, 1]")
        check(0.0 <= self.sparsity <= 1.0, "sparsity", "must be a fraction in [0, 1]")
        for layer, value in self.layer_sparsity.items():
            check(0.0 <= value <= 1.0, f"layer_sparsity.{short(layer)}={value}", "must be a fraction in [0, 1]")
        for i, value in enumerate(self.wall_time_s):
            check(value >= 0, f"wall_time_s[{i}]={value}", "must be >= 0")
        if self.hyperparameters:
            RunConfig.from_dict(self.hyperparameters, where=f"{where}: hyperparameters")


def library_versions() -> Dict[str, str]:
    from importlib import metadata

    from . import __version__

    out = {"python": platform.python_version(), "slt_deploy": __version__}
    for dist in ("torch", "snntorch", "numpy", "nir", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


TRAIN_HASHES = "data/train_sample_hashes"


@dataclass
class Ticket:
    record: TicketRecord
    state: Dict[str, torch.Tensor]
    mask: Mask
    train_hashes: Optional[torch.Tensor] = None  # int64 hash per training sample (see slt_deploy.data.user)

    @classmethod
    def from_model(cls, model, mask: Mask, record: TicketRecord) -> "Ticket":
        """Snapshot a trained model; refuses a model whose pruned weights are not exactly zero."""
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        for name, keep in mask.items():
            w = state[f"body.{name}.weight"]
            if bool((w[~keep] != 0).any()):
                raise ValueError(f"layer {name}: pruned weights are not zero")
        record.sparsity, record.layer_sparsity = weight_sparsity(model, mask)
        record.versions = record.versions or library_versions()
        return cls(record, state, mask)

    def build_model(self):
        """The trained snnTorch network, in eval mode."""
        from .models import build_model

        try:
            model = build_model(self.record.model)
        except ConfigError as exc:  # a user model whose source is missing or changed
            raise TicketError(f"cannot rebuild the ticket's network: {exc}") from None
        try:
            model.load_state_dict(self.state)
        except RuntimeError as exc:
            raise TicketError(f"ticket weights do not match model {self.record.model.name}: "
                              f"{str(exc).splitlines()[0]}") from None
        return model.eval()

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save

        tensors = {f"state/{k}": v.contiguous() for k, v in self.state.items()}
        tensors.update({f"mask/{k}": v.contiguous() for k, v in self.mask.items()})
        if self.train_hashes is not None:
            tensors[TRAIN_HASHES] = self.train_hashes.to(torch.int64).contiguous()
        # serialized in memory and written by Python, so a full disk or a read-only folder is an OSError
        # (one line, see utils.atomic_path), not the Rust writer's SafetensorError
        write_bytes_atomic(path, save(tensors, metadata={META_KEY: self.record.to_json()}))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Ticket":
        """Read and validate a ticket; anything wrong raises one TicketError naming the file and the field.

        Checked before any tensor is read: the header size, the record (types and ranges), the model's size
        (against the element limit, without allocating it), and that every stored tensor is one the model
        has, with its shape and dtype (weights float32 or float64, masks bool). Then: every tensor finite,
        the neuron constants equal to those the record's model config gives, pruned weights exactly zero
        and the recorded sparsity equal to the weights'.
        """
        from safetensors import safe_open

        from .models import model_skeleton, prunable_layers

        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise TicketError(f"{p}: no such ticket file")
        _check_header_size(p)
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                if META_KEY not in meta:
                    raise TicketError(f"{p}: not a slt-deploy ticket (safetensors file without a ticket record)")
                record = TicketRecord.from_json(meta[META_KEY], where)
                try:
                    skeleton = model_skeleton(record.model, f"{where}: model")
                except ConfigError as exc:
                    message = str(exc)
                    raise TicketError(message if message.startswith(where) else f"{where}: model: {message}") from None
                expected = skeleton.state_dict()
                layers = prunable_layers(skeleton)
                _check_declared(f, where, expected, layers)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except SltError:
            raise
        except Exception as exc:  # safetensors raises several types for corrupt headers
            raise TicketError(f"{p}: not a ticket (cannot read as safetensors: {_first_line(exc)})") from None
        state = {k[len("state/"):]: v for k, v in tensors.items() if k.startswith("state/")}
        mask = Mask((k[len("mask/"):], v) for k, v in tensors.items() if k.startswith("mask/"))
        for k, v in state.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise TicketError(f"{p}: tensor state/{k} has NaN or infinite values")
        # neuron constants are built from the record's config; a user model's come from its weights
        neurons = set() if is_user_model(record.model.name) else \
            {f"body.{name}." for name, module in skeleton.neurons()}
        for k, v in expected.items():  # neuron constants are built from the record's data, not a size
            if any(k.startswith(n) for n in neurons) and v.device.type != "meta" and not torch.equal(
                    state[k].to(v.dtype), v):
                raise TicketError(f"{p}: tensor state/{k}={short(state[k].tolist())} disagrees with the record's "
                                  f"model config (which gives {short(v.tolist())})")
        for name, keep in mask.items():
            w = state[f"body.{name}.weight"]
            if bool((w[~keep] != 0).any()):
                raise TicketError(f"{p}: mask/{name}: {int((w[~keep] != 0).sum())} pruned weights of layer {name} "
                                  f"are not zero")
        zeros = {name: int((state[f"body.{name}.weight"] == 0).sum()) for name in layers}
        total = sum(state[f"body.{name}.weight"].numel() for name in layers)
        measured = sum(zeros.values()) / total if total else 0.0
        if abs(measured - record.sparsity) > 1e-6:
            raise TicketError(f"{p}: sparsity={record.sparsity} disagrees with the weights ({measured:.6f} of them "
                              f"are zero)")
        return cls(record, state, mask, tensors.get(TRAIN_HASHES))


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _check_header_size(p: Path) -> None:
    """A safetensors file starts with the 8-byte length of its JSON header: refuse a huge one unread."""
    with open(p, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise TicketError(f"{p}: not a ticket (file of {len(head)} bytes, too short for safetensors)")
    size = int.from_bytes(head, "little")
    cap = limits().max_text_bytes
    if size > cap:
        raise TicketError(f"{p}: not a ticket (header declares {size:,} bytes, more than the limit of {cap:,})")


_ALLOWED_FLOATS = ("F32", "F64")


def _check_declared(f, where: str, expected: Mapping[str, torch.Tensor], layers: Mapping[str, nn.Module]) -> None:
    """Names, shapes and dtypes the file declares, against the model's (nothing read yet)."""
    seen = set()
    for key in f.keys():
        kind, _, name = key.partition("/")
        declared = f.get_slice(key)
        dtype, shape = declared.get_dtype(), tuple(declared.get_shape())
        if kind == "state" and name in expected:
            want = expected[name]
            if shape != tuple(want.shape):
                raise TicketError(f"{where}: tensor {key} has shape {short(shape)}, the record's model "
                                  f"{short(tuple(want.shape))}")
            ok = dtype in _ALLOWED_FLOATS if want.is_floating_point() else dtype == _SAFETENSORS_DTYPE.get(want.dtype)
            if not ok:
                need = "float32 or float64" if want.is_floating_point() else str(want.dtype).replace("torch.", "")
                raise TicketError(f"{where}: tensor {key} has dtype {dtype}, expected {need}")
            seen.add(name)
        elif key == TRAIN_HASHES:  # one int64 hash per training sample (the train-split fingerprint)
            if dtype != "I64" or len(shape) != 1:
                raise TicketError(f"{where}: tensor {key} must be a 1-d int64 array, not {dtype} {short(shape)}")
        elif kind == "mask" and name in layers:
            if dtype != "BOOL":
                raise TicketError(f"{where}: tensor {key} has dtype {dtype}; masks are boolean")
            if shape != tuple(layers[name].weight.shape):
                raise TicketError(f"{where}: mask for layer {name} does not match its weight (shape {short(shape)}, "
                                  f"weight {short(tuple(layers[name].weight.shape))})")
        else:
            raise TicketError(f"{where}: tensor {short(key)} is not part of the record's model "
                              f"(state/<state dict entry> or mask/<conv or linear layer>)")
    missing = [k for k in expected if k not in seen]
    if missing:
        raise TicketError(f"{where}: tensor state/{missing[0]} is missing ({len(missing)} missing in all)")


_SAFETENSORS_DTYPE = {torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}


def weight_sparsity(model, mask: Mask):
    """(global, per-layer) fraction of zero weights over every conv and linear layer of the model."""
    from .models import prunable_layers

    per_layer, zeros, total = {}, 0, 0
    for name, layer in prunable_layers(model).items():
        w = layer.weight.detach()
        z = int((w == 0).sum())
        per_layer[name] = z / w.numel()
        zeros += z
        total += w.numel()
    return (zeros / total if total else 0.0), per_layer
