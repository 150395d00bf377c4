"""The model registry: each model is a builder of a :class:`SpikingNet` body, registered by name."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from torch import nn

from ..config import ModelConfig, is_user_model
from ..errors import ConfigError
from .layers import SpikingNet

@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[ModelConfig], nn.Module]  # returns the body; config is fully resolved
    default_hidden: Tuple[int, ...]
    description: str
    options: Tuple[str, ...] = ()  # the model-specific settings (of MODEL_OPTIONS) the model uses


# ModelConfig settings that only some models use; setting one for another model is an error, not ignored
MODEL_OPTIONS = ("patch_keep", "binary_activations")


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

def resolve_config(cfg: ModelConfig, input_shape: Tuple[int, ...], num_classes: int) -> ModelConfig:
    """Fill in what the model config leaves to the dataset or the model's defaults."""
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
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(cfg: ModelConfig) -> SpikingNet:
    """Build a model from a fully resolved config (see :func:`resolve_config`).

    A user model (``file.py:factory``) is built by its factory, after checking that its source is the one the
    config recorded (:mod:`.user`).
    """
    if is_user_model(cfg.name):
        from .user import build_user_body

        if not cfg.input_shape or cfg.num_classes < 1:
            raise ConfigError(f"model config for {cfg.name} is not resolved: input_shape={cfg.input_shape}, "
                              f"num_classes={cfg.num_classes}")
        return SpikingNet(build_user_body(cfg), cfg)
    spec = model_spec(cfg.name)
    if len(cfg.input_shape) != 3 or cfg.num_classes < 2:
        raise ConfigError(f"model config for {cfg.name} is not resolved: input_shape={cfg.input_shape}, "
                          f"num_classes={cfg.num_classes}")
    return SpikingNet(spec.build(cfg), cfg)


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
