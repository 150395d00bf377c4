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

from .config import ModelConfig
from .errors import ConfigError, SltError, TicketError
from .utils import write_bytes_atomic

FORMAT = "slt-deploy.ticket/1"
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
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TicketError(f"{where}: ticket header is not valid JSON ({exc.msg})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise TicketError(f"{where}: not a slt-deploy ticket (format {d.get('format') if isinstance(d, dict) else None!r}, "
                              f"expected {FORMAT!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TicketError(f"{where}: unknown ticket field(s) {', '.join(unknown)}")
        try:
            d["model"] = ModelConfig.from_dict(d.get("model"), where=f"{where}: model")
        except ConfigError as exc:
            raise TicketError(str(exc)) from None
        return cls(**d)


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
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise TicketError(f"{p}: no such ticket file")
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except SltError:
            raise
        except Exception as exc:  # safetensors raises several types for corrupt headers
            raise TicketError(f"{p}: not a ticket (cannot read as safetensors: {str(exc).splitlines()[0]})") from None
        if META_KEY not in meta:
            raise TicketError(f"{p}: not a slt-deploy ticket (safetensors file without a ticket record)")
        record = TicketRecord.from_json(meta[META_KEY], str(p))
        state = {k[len("state/"):]: v for k, v in tensors.items() if k.startswith("state/")}
        try:
            mask = Mask((k[len("mask/"):], v) for k, v in tensors.items() if k.startswith("mask/"))
        except ValueError as exc:
            raise TicketError(f"{p}: {exc}") from None
        for name, keep in mask.items():
            w = state.get(f"body.{name}.weight")
            if w is None or w.shape != keep.shape:
                raise TicketError(f"{p}: mask for layer {name} does not match its weight")
        for k, v in state.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise TicketError(f"{p}: tensor {k} has NaN or infinite values")
        return cls(record, state, mask, tensors.get(TRAIN_HASHES))


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
