"""The model registry: each model is a builder of a :class:`SpikingNet` body, registered by name."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import math

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from ..config import ModelConfig, is_user_model
from ..errors import ConfigError, SettingConflict
from ..limits import check_elements, short
from .layers import SpikingNet

@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[ModelConfig], nn.Module]  # returns the body; config is fully resolved
    default_hidden: Tuple[int, ...]
    description: str
    options: Tuple[str, ...] = ()  # the model-specific settings (of MODEL_OPTIONS) the model uses


# ModelConfig settings that only some models use; setting one for another model is an error, not ignored
MODEL_OPTIONS = ("patch_keep", "binary_activations", "recurrent")


MODELS: Dict[str, ModelSpec] = {}


def register_model(name: str, default_hidden: Tuple[int, ...], description: str, options: Tuple[str, ...] = ()):
    def wrap(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = ModelSpec(name, fn, default_hidden, description, tuple(options))
        return fn
    return wrap


def _check_hidden(cfg: ModelConfig, n: int) -> None:
    if len(cfg.hidden) != n:
        raise ConfigError(f"model.hidden for {cfg.name} needs {n} widths, got {len(cfg.hidden)}: {cfg.hidden}")

def check_against_data(cfg: ModelConfig, input_shape: Tuple[int, ...], num_classes: int,
                       data: str = "the data") -> None:
    """A model's input shape, where the settings give it, must be the data's, and its class count at least the
    data's (``data`` says which data, for the message): a mismatch fails one line here, not deep inside the
    first training step."""
    shape = tuple(int(d) for d in input_shape)
    if cfg.input_shape and tuple(cfg.input_shape) != shape:
        raise SettingConflict("model.input_shape", ",".join(map(str, cfg.input_shape)),
                              f"{data} has samples of shape {','.join(map(str, shape))} (C,H,W)")
    # more outputs than the data's classes is allowed: an .npz's class count is its largest label + 1, and arrays
    # holding a subset of the classes are legitimate
    if cfg.num_classes and cfg.num_classes < num_classes:
        raise SettingConflict("model.num_classes", cfg.num_classes,
                              f"{data} has {num_classes} classes (labels 0-{num_classes - 1})")


def resolve_config(cfg: ModelConfig, input_shape: Tuple[int, ...], num_classes: int,
                   data: str = "the data") -> ModelConfig:
    """Fill in what the model config leaves to the dataset or the model's defaults, after checking what it
    gives against the dataset's shape and classes (:func:`check_against_data`)."""
    check_against_data(cfg, input_shape, num_classes, data)
    if is_user_model(cfg.name):
        from .user import resolve_user_config

        return resolve_user_config(cfg, input_shape, num_classes)
    spec = model_spec(cfg.name)
    defaults = ModelConfig()
    for option in MODEL_OPTIONS:
        if option not in spec.options and getattr(cfg, option) != getattr(defaults, option):
            users = [m.name for m in MODELS.values() if option in m.options]
            raise ConfigError(f"model.{option}={getattr(cfg, option)!r} applies to {', '.join(users)}, "
                              f"not to model {cfg.name}")
    return cfg.replace(
        hidden=tuple(cfg.hidden) or spec.default_hidden,
        input_shape=tuple(cfg.input_shape) or tuple(input_shape),
        num_classes=cfg.num_classes or num_classes,
    )


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r} (model.name); available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


class _SizesOnly(TorchFunctionMode):
    """Tensors created from a size (``torch.empty``, ``zeros``, ``randn``...) go to the meta device, which
    allocates nothing; tensors created from data (snnTorch's ``torch.as_tensor(beta)``, whose values it reads
    in its constructor) stay real: their data is already in memory."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SIZED_CONSTRUCTORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


_SIZED_CONSTRUCTORS = _device_constructors() - {torch.tensor, torch.as_tensor, torch.asarray, torch.scalar_tensor}


def model_skeleton(cfg: ModelConfig, where: str = "") -> SpikingNet:
    """The model with its sized tensors on the meta device (nothing allocated), after refusing a model whose
    weights (or one input sample) exceed the element limit: what its state dict holds, names, shapes, dtypes,
    and the neuron constants built from the config.

    A user model is the user's own code, not a file to distrust: its factory runs once, for real, and its size
    is checked after (running it under the meta device could change what it builds)."""
    where = where or f"model {cfg.label()}"
    _check_resolved(cfg)
    check_elements(math.prod(cfg.input_shape), where, f"model.input_shape={short(cfg.input_shape)}")
    if is_user_model(cfg.name):
        model = _build(cfg)
    else:
        with _SizesOnly():
            model = _build(cfg)
    check_elements(sum(v.numel() for v in model.state_dict().values()), where,
                   f"the weights of model {cfg.label()} with model.hidden={short(cfg.hidden)}")
    return model


def _check_resolved(cfg: ModelConfig) -> None:
    if is_user_model(cfg.name):
        if not cfg.input_shape or cfg.num_classes < 1:
            raise ConfigError(f"model config for {cfg.name} is not resolved: input_shape={short(cfg.input_shape)}, "
                              f"num_classes={cfg.num_classes}")
        return
    model_spec(cfg.name)
    if len(cfg.input_shape) != 3 or cfg.num_classes < 2:
        raise ConfigError(f"model config for {cfg.name} is not resolved: input_shape={short(cfg.input_shape)}, "
                          f"num_classes={cfg.num_classes}")


def _build(cfg: ModelConfig) -> SpikingNet:
    if is_user_model(cfg.name):
        from .user import build_user_body  # checks that the source is the one the config recorded

        return SpikingNet(build_user_body(cfg), cfg)
    return SpikingNet(model_spec(cfg.name).build(cfg), cfg)


def build_model(cfg: ModelConfig) -> SpikingNet:
    """Build a model from a fully resolved config (see :func:`resolve_config`); a model larger than the element
    limit is refused before it is allocated. A user model (``file.py:factory``) is built by its factory
    (:mod:`.user`)."""
    if is_user_model(cfg.name):
        return model_skeleton(cfg)  # built for real, then size-checked
    model_skeleton(cfg)
    return _build(cfg)


def initial_model(cfg: ModelConfig) -> SpikingNet:
    """The model at its starting point: :func:`build_model`, then the weights of ``cfg.weights`` if given
    (IMP and Early-Bird start from them and rewind to them)."""
    model = build_model(cfg)
    if cfg.weights:
        from .user import load_weights

        load_weights(model.body, cfg.weights, cfg.label())
    return model


def prunable_layers(model: SpikingNet, names: Tuple[str, ...] = ()) -> Dict[str, nn.Module]:
    """Conv and linear layers by qualified name (within ``model.body``); ``names`` restricts the set."""
    layers = OrderedDict((name, m) for name, m in model.body.named_modules()
                         if isinstance(m, (nn.Conv2d, nn.Linear)))
    if not names:
        return layers
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ConfigError(f"search.prunable: unknown layer(s) {', '.join(unknown)}; "
                          f"conv/linear layers of this model: {', '.join(layers)}")
    return OrderedDict((n, layers[n]) for n in names)
