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
from typing import Iterator, Optional, Tuple

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from ..config import ModelConfig, NeuronConfig


def _neuron_args(neuron: NeuronConfig) -> dict:
    args = dict(beta=neuron.beta, threshold=neuron.threshold, reset_mechanism=neuron.reset,
                spike_grad=surrogate.atan(alpha=neuron.surrogate_alpha), init_hidden=True)
    if neuron.alpha > 0:  # a synaptic current: snnTorch Synaptic / RSynaptic (NIR CubaLIF)
        args["alpha"] = neuron.alpha
    return args


def leaky(neuron: NeuronConfig) -> nn.Module:
    """The project's neuron: snnTorch Leaky (Synaptic when ``neuron.alpha > 0``), ATan surrogate, hidden state
    kept inside the module."""
    return (snn.Synaptic if neuron.alpha > 0 else snn.Leaky)(**_neuron_args(neuron))


def recurrent_leaky(neuron: NeuronConfig, width: int) -> nn.Module:
    """:func:`leaky` with an all-to-all recurrent ``nn.Linear(width, width)`` (snnTorch RLeaky, or RSynaptic with
    a synaptic current): the layer's input at step t adds ``recurrent(spk[t-1])``. Its recurrent weight is a
    prunable Linear like any other (``<name>.recurrent``): its synapses are stored and counted on the chip as the
    feed-forward ones are."""
    kind = snn.RSynaptic if neuron.alpha > 0 else snn.RLeaky
    return kind(**_neuron_args(neuron), all_to_all=True, linear_features=width)


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


# layers without state across timesteps: applied to all T steps at once as one (T*B, ...) batch
_STATELESS = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.Flatten, nn.ReLU, nn.Identity)


def layerwise_supported(module: nn.Module) -> bool:
    """Whether :func:`run_layerwise` knows every module of ``module`` (else the per-step loop is used)."""
    if is_neuron(module) or isinstance(module, _STATELESS + (nn.BatchNorm2d,)):
        return True
    if isinstance(module, (nn.Sequential, ResidualBlock)):
        return all(layerwise_supported(m) for m in module.children())
    return False


def constant_prefix(body: nn.Module) -> int:
    """How many leading layers of ``body`` keep no state across steps: fed the same input at every step, they
    give the same output at every step, so it is computed once.

    A BatchNorm in training mode ends the prefix: it updates its running statistics once per call, so calling it
    once instead of T times would change them. Bodies other than a plain ``nn.Sequential`` (a subclass may
    have its own forward) have no prefix.
    """
    if type(body) is not nn.Sequential:
        return 0
    n = 0
    for module in body:
        if not (isinstance(module, _STATELESS) or (isinstance(module, nn.BatchNorm2d) and not module.training)):
            break
        n += 1
    return n


def is_constant_in_time(x_seq: torch.Tensor) -> bool:
    """Whether every step of a (T, B, ...) input equals the first (direct encoding). A time axis of stride 0 (the
    input broadcast over time, as :func:`~slt_deploy.data.encode` gives a direct-encoded batch) is constant
    without looking; otherwise the steps are compared (``torch.equal``: half the time of ``==`` then ``all``)."""
    if x_seq.shape[0] <= 1:
        return False
    return x_seq.stride(0) == 0 or torch.equal(x_seq[1:], x_seq[:1].expand_as(x_seq[1:]))


def run_layerwise(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """``module`` over a (T, B, ...) sequence, one layer at a time: each synapse layer sees all T steps as one
    batch and only the neurons step through time (the multi-step mode of SpikingJelly-style libraries).

    The numbers are those of the per-step loop: a conv/linear/pool applied to T*B samples computes each
    sample as it would alone, BatchNorm in training mode still normalizes (and updates its running statistics)
    one timestep at a time, and each neuron is the same snnTorch ``Leaky`` called once per step.
    """
    if isinstance(module, nn.Sequential):
        for child in module:
            x_seq = run_layerwise(child, x_seq)
        return x_seq
    if isinstance(module, ResidualBlock):
        return module.forward_layerwise(x_seq)
    if isinstance(module, _STATELESS) or (isinstance(module, nn.BatchNorm2d) and not module.training):
        out = module(x_seq.flatten(0, 1))
        return out.unflatten(0, x_seq.shape[:2])
    return torch.stack([module(x_t) for x_t in x_seq])  # neurons; BatchNorm's per-step batch statistics


class SpikingNet(nn.Module):
    """Runs ``body`` for every timestep of a (T, B, ...) input and returns the (T, B, classes) logits.

    ``layerwise = True`` runs the same network layer by layer over all T steps (:func:`run_layerwise`, the
    faster path on a GPU, where it makes few large kernels instead of T small ones); bodies with modules it
    does not know (the Spikformer) keep the per-step loop.
    """

    #: an input that is the same at every step (direct encoding) runs the stateless leading layers once
    #: (:func:`constant_prefix`); False runs every layer at every step (NeuroBench's own counting wants that)
    compute_once = True

    def __init__(self, body: nn.Module, config: ModelConfig):
        super().__init__()
        self.body = body
        self.config = config
        self.layerwise = False

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
        body = self.body
        once = constant_prefix(body) if self.compute_once and is_constant_in_time(x_seq) else 0
        if once:
            # the input is the same at every step: the stateless leading layers run once per sample and their
            # output feeds every step (Kim et al.); autograd sums the T steps' gradients into that one output
            head = x_seq[0]
            for module in list(body)[:once]:
                head = module(head)
            body = self._after(once)
            if not (self.layerwise and layerwise_supported(body)):
                # the one tensor fed to every step: autograd adds the T steps' gradients into it (an expanded
                # view iterated step by step would stack them into a (T, ...) tensor first, then sum it)
                return torch.stack([self.step(head, body) for _ in range(x_seq.shape[0])])
            x_seq = head.unsqueeze(0).expand(x_seq.shape[0], *head.shape)
        if self.layerwise and layerwise_supported(body):
            return run_layerwise(body, x_seq)
        return torch.stack([self.step(x_t, body) for x_t in x_seq])

    def _after(self, once: int) -> nn.Sequential:
        """The body's layers after its first ``once``, as one ``nn.Sequential`` built once (not at every
        forward: building one costs about as much as a small layer), rebuilt when the body's layers change."""
        key = (once, tuple(map(id, self.body)))
        memo = getattr(self, "_after_memo", None)  # a (key, layers) tuple: not a submodule, not in the state dict
        if memo is None or memo[0] != key:
            memo = self._after_memo = (key, nn.Sequential(OrderedDict(list(self.body.named_children())[once:])))
        return memo[1]

    def step(self, x_t: torch.Tensor, body: Optional[nn.Module] = None) -> torch.Tensor:
        """One time step (of ``body``, default the whole network). A spiking output neuron built with
        ``output=True`` returns (spk, mem): its spikes are the output (a user network's spiking readout; its
        prediction is the spike count)."""
        out = (self.body if body is None else body)(x_t)
        return out[0] if isinstance(out, tuple) else out

    def neurons(self) -> Iterator[Tuple[str, nn.Module]]:
        for name, module in self.body.named_modules():
            if is_neuron(module):
                yield name, module

    def recurrent_weights(self) -> Tuple[str, ...]:
        """Names (within ``body``) of the recurrent weight layers of RLeaky-style neurons."""
        return tuple(f"{name}.recurrent" for name, m in self.neurons()
                     if isinstance(getattr(m, "recurrent", None), nn.Module))


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

    def forward_layerwise(self, x_seq):
        """:meth:`forward` over a (T, B, ...) sequence (see :func:`run_layerwise`)."""
        out = run_layerwise(self.lif1, run_layerwise(self.bn1, run_layerwise(self.conv1, x_seq)))
        out = run_layerwise(self.bn2, run_layerwise(self.conv2, out))
        return run_layerwise(self.lif2, out + run_layerwise(self.shortcut, x_seq))
