"""Spiking models (snnTorch) and their registry.

Every model is a :class:`SpikingNet`: a ``body`` made of ordinary torch layers and snnTorch ``Leaky`` neurons
(``init_hidden=True``, so the body is an ``nn.Sequential``-style network that exporters can walk), run for T
steps by :meth:`SpikingNet.forward`. The last layer is a non-spiking readout: its output at each step is the
logit vector; training averages the per-step cross-entropy over time, evaluation sums the logits over time.

Choices made for deployment (Loihi/Lava have no max pooling and no BatchNorm):
- pooling is average pooling placed *before* the neuron (conv -> BN -> pool -> LIF), so every synapse layer
  receives binary spikes and conv+pool is one linear map for the compiler;
- BatchNorm always directly follows the conv/linear layer it belongs to and is marked for folding
  (``fold_bn_into``), so the exporter folds it into that layer's weights and bias.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Tuple

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from .config import ModelConfig, NeuronConfig
from .errors import ConfigError


def leaky(neuron: NeuronConfig) -> snn.Leaky:
    """The project's neuron: snnTorch Leaky, ATan surrogate, hidden state kept inside the module."""
    return snn.Leaky(
        beta=neuron.beta,
        threshold=neuron.threshold,
        reset_mechanism=neuron.reset,
        spike_grad=surrogate.atan(alpha=neuron.surrogate_alpha),
        init_hidden=True,
    )


def activation(cfg: ModelConfig) -> nn.Module:
    """The model's nonlinearity: the LIF neuron, or ReLU for the ANN twin (``model.spiking=false``).

    The ANN twin keeps the same layers, names and time loop (its output is the same at every step of a
    direct-encoded input), so every search method and the cost comparison treat SNN and ANN alike.
    """
    return leaky(cfg.neuron) if cfg.spiking else nn.ReLU()


def batchnorm_for(layer_name: str, channels: int) -> nn.BatchNorm2d:
    """A BatchNorm2d marked to be folded into the conv layer ``layer_name`` at export."""
    bn = nn.BatchNorm2d(channels)
    bn.fold_bn_into = layer_name
    return bn


def is_neuron(module: nn.Module) -> bool:
    return isinstance(module, snn.SpikingNeuron)


class SpikingNet(nn.Module):
    """Runs ``body`` for every timestep of a (T, B, ...) input and returns the (T, B, classes) logits."""

    def __init__(self, body: nn.Module, config: ModelConfig):
        super().__init__()
        self.body = body
        self.config = config

    def reset_state(self) -> None:
        """Before each sequence: every neuron's membrane to zero, and every module that keeps other
        per-sequence state (a ``start_sequence`` method, e.g. the Spikformer's patch score) told so."""
        for module in self.body.modules():
            if is_neuron(module):
                module.reset_mem()
            elif callable(getattr(module, "start_sequence", None)):
                module.start_sequence()

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.reset_state()
        return torch.stack([self.body(x_t) for x_t in x_seq])

    def neurons(self) -> Iterator[Tuple[str, nn.Module]]:
        for name, module in self.body.named_modules():
            if is_neuron(module):
                yield name, module


class ResidualBlock(nn.Module):
    """ResNet-19 basic block: conv-BN-LIF-conv-BN, plus a (1x1 conv-BN when shapes change) shortcut, then LIF.

    The two branches are summed *before* the second neuron, so in NIR the block is two edges into one LIF.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ModelConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = batchnorm_for("conv1", c_out)
        self.lif1 = activation(cfg)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = batchnorm_for("conv2", c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), bn=batchnorm_for("conv", c_out)))
        else:
            self.shortcut = nn.Identity()
        self.lif2 = activation(cfg)

    def forward(self, x):
        out = self.lif1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.lif2(out + self.shortcut(x))


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


def _conv_block(prefix: str, layers: OrderedDict, c_in: int, c_out: int, cfg: ModelConfig, pool: bool):
    layers[f"{prefix}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batchnorm)
    if cfg.batchnorm:
        layers[f"{prefix}_bn"] = batchnorm_for(prefix, c_out)
    if pool:
        layers[f"{prefix}_pool"] = nn.AvgPool2d(2)
    layers[f"{prefix}_lif"] = activation(cfg)


@register_model("mlp", (300, 100), "Flatten -> Linear/LIF per hidden width -> Linear readout (LeNet-300-100)")
def _mlp(cfg: ModelConfig) -> nn.Module:
    c, h, w = cfg.input_shape
    layers = OrderedDict(flatten=nn.Flatten())
    width = c * h * w
    for i, hidden in enumerate(cfg.hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, hidden)
        layers[f"fc{i}_lif"] = activation(cfg)
        width = hidden
    layers["readout"] = nn.Linear(width, cfg.num_classes)
    return nn.Sequential(layers)


@register_model("convnet", (16, 32, 128),
                "2 x (conv3x3-BN-avgpool2-LIF) -> Linear-LIF -> Linear readout, for 28x28 inputs")
def _convnet(cfg: ModelConfig) -> nn.Module:
    _check_hidden(cfg, 3)
    c, h, w = cfg.input_shape
    c1, c2, fc = cfg.hidden
    layers = OrderedDict()
    _conv_block("conv1", layers, c, c1, cfg, pool=True)
    _conv_block("conv2", layers, c1, c2, cfg, pool=True)
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(c2 * (h // 4) * (w // 4), fc)
    layers["fc1_lif"] = activation(cfg)
    layers["readout"] = nn.Linear(fc, cfg.num_classes)
    return nn.Sequential(layers)


@register_model("vgg16", (64, 128, 256, 512, 512),
                "VGG-16 for 32x32 inputs (Kim et al.): 13 conv3x3-BN-LIF in 5 stages with avgpool, 2 Linear")
def _vgg16(cfg: ModelConfig) -> nn.Module:
    _check_hidden(cfg, 5)
    c, h, w = cfg.input_shape
    convs_per_stage = (2, 2, 3, 3, 3)
    layers = OrderedDict()
    c_in, k = c, 0
    for stage, (width, n) in enumerate(zip(cfg.hidden, convs_per_stage), start=1):
        for i in range(n):
            k += 1
            # pool at the end of each stage, before that stage's last neuron
            _conv_block(f"conv{k}", layers, c_in, width, cfg, pool=(i == n - 1))
            c_in = width
    layers["flatten"] = nn.Flatten()
    features = c_in * (h // 32) * (w // 32)
    if features == 0:
        raise ConfigError(f"model vgg16 needs inputs of at least 32x32, got {h}x{w}")
    layers["fc1"] = nn.Linear(features, cfg.hidden[-1])
    layers["fc1_lif"] = activation(cfg)
    layers["readout"] = nn.Linear(cfg.hidden[-1], cfg.num_classes)
    return nn.Sequential(layers)


@register_model("resnet19", (128, 256, 512, 256),
                "ResNet-19 (Zheng et al., used by Kim et al.): stem + 3/3/2 residual blocks + avgpool + 2 Linear")
def _resnet19(cfg: ModelConfig) -> nn.Module:
    _check_hidden(cfg, 4)
    c, h, w = cfg.input_shape
    w1, w2, w3, fc = cfg.hidden
    layers = OrderedDict()
    layers["stem"] = nn.Conv2d(c, w1, 3, padding=1, bias=False)
    layers["stem_bn"] = batchnorm_for("stem", w1)
    layers["stem_lif"] = activation(cfg)
    c_in = w1
    for stage, (width, blocks, stride) in enumerate(((w1, 3, 1), (w2, 3, 2), (w3, 2, 2)), start=1):
        for b in range(blocks):
            layers[f"layer{stage}_{b}"] = ResidualBlock(c_in, width, stride if b == 0 else 1, cfg)
            c_in = width
    layers["pool"] = nn.AvgPool2d(kernel_size=(h // 4, w // 4))
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(c_in, fc)
    layers["fc1_lif"] = activation(cfg)
    layers["readout"] = nn.Linear(fc, cfg.num_classes)
    return nn.Sequential(layers)


def resolve_config(cfg: ModelConfig, input_shape: Tuple[int, ...], num_classes: int) -> ModelConfig:
    """Fill in what the model config leaves to the dataset or the model's defaults."""
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
    """Build a model from a fully resolved config (see :func:`resolve_config`)."""
    spec = model_spec(cfg.name)
    if len(cfg.input_shape) != 3 or cfg.num_classes < 2:
        raise ConfigError(f"model config for {cfg.name} is not resolved: input_shape={cfg.input_shape}, "
                          f"num_classes={cfg.num_classes}")
    return SpikingNet(spec.build(cfg), cfg)


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


from . import spikformer  # noqa: E402,F401  (last: registers "spikformer", which builds on this module)
