"""The convolutional and fully connected spiking models: mlp, convnet, vgg16, resnet19."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from .layers import ResidualBlock, activation, batchnorm_for, recurrent_leaky
from .registry import _check_hidden, register_model

def _conv_block(prefix: str, layers: OrderedDict, c_in: int, c_out: int, cfg: ModelConfig, pool: bool):
    layers[f"{prefix}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not cfg.batchnorm)
    if cfg.batchnorm:
        layers[f"{prefix}_bn"] = batchnorm_for(prefix, c_out)
    if pool:
        layers[f"{prefix}_pool"] = nn.AvgPool2d(2)
    layers[f"{prefix}_lif"] = activation(cfg)


@register_model("mlp", (300, 100), "Flatten -> Linear/LIF per hidden width -> Linear readout (LeNet-300-100); "
                "--recurrent true: RLeaky hidden layers", options=("recurrent",))
def _mlp(cfg: ModelConfig) -> nn.Module:
    c, h, w = cfg.input_shape
    layers = OrderedDict(flatten=nn.Flatten())
    width = c * h * w
    for i, hidden in enumerate(cfg.hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, hidden)
        # the ANN twin of a recurrent MLP (spiking=false) is the feed-forward ReLU MLP: no recurrence
        recurrent = cfg.recurrent and cfg.spiking
        layers[f"fc{i}_lif"] = recurrent_leaky(cfg.neuron, hidden) if recurrent else activation(cfg)
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
