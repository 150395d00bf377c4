"""The models stage: snnTorch spiking networks by name.

Takes a :class:`~slt_deploy.config.ModelConfig`; gives a :class:`SpikingNet` (``body`` of torch layers and
snnTorch neurons, run for T steps). :mod:`.layers` holds the building blocks, :mod:`.registry` the registry,
:mod:`.snn` the mlp / convnet / vgg16 / resnet19 builders and :mod:`.spikformer` the spiking transformer,
:mod:`.user` the user's own network (``file.py:factory``).
"""

from .layers import ResidualBlock, SpikingNet, activation, batchnorm_for, is_neuron, leaky
from .registry import MODEL_OPTIONS, MODELS, ModelSpec, build_model, initial_model, model_skeleton, model_spec, \
    prunable_layers, register_model, resolve_config
from . import snn, spikformer  # noqa: E402,F401  (registers the models)

__all__ = ["ResidualBlock", "SpikingNet", "activation", "batchnorm_for", "is_neuron", "leaky", "MODEL_OPTIONS",
           "MODELS", "ModelSpec", "build_model", "initial_model", "model_skeleton", "model_spec", "prunable_layers",
           "register_model", "resolve_config"]
