"""Activity and operation counts measured on a real run (never assumed firing rates).

A network is seen as *synapse layers* (:class:`SynapseLayer`): one conv or linear map from a population's
spikes (or the network input) to a neuron population. BatchNorm and average pooling are linear, so they are
folded into the synapse layer the way a neuromorphic compiler deploys it (Lava has no pooling or BatchNorm
process): conv -> BN -> AvgPool becomes one conv with a larger kernel and stride, AvgPool -> Flatten ->
Linear one linear map on the unpooled spikes. Counts are taken on these deployed layers.

Definitions (NeuroBench 2.3.0, per sample, summed over timesteps; hardware_profiles/SOURCES.md section 7):

- ``input_events``     = number of nonzero input elements.
- ``effective_synops`` = number of (nonzero input x nonzero weight) pairs. For a conv, with ``a = [x != 0]``
  and ``m = [W != 0]``: ``sum(conv2d(a, m))`` (same stride/padding/groups), so padding taps never count;
  for a linear layer ``sum(a @ m.T) = sum_i a_i * (number of nonzero weights in column i)``. They are ACs
  when every input element of the run is in {-1, 0, 1} (``input_binary``) and MACs otherwise, so a
  direct-encoded first layer counts as MACs. (NeuroBench classifies per layer call; a layer's input type
  never changes between steps here, so classifying per layer over the run is the same.)
  A real-valued input that is identical at every step (direct encoding) is computed once per sample and its
  result fed every step (Kim et al.; the SNN energy papers' "first-layer FLOPs"), so that layer's MACs and
  dense ops count one step (``computed_once``).
- ``dense_ops``        = the same count with every input and weight nonzero: ``sum(conv2d(1, 1)) * T``,
  ``in * out * T`` for linear (times 1 instead of T for a layer computed once).
- ``neuron_updates``   = neurons x T (every neuron updates every step; the non-spiking readout integrates).
- ``output_spikes``    = nonzero outputs of the population's spiking neuron (0 for the readout).

A recurrent layer (snnTorch ``RLeaky``'s all-to-all ``recurrent`` Linear, a NIR weight node on a cycle through
its spiking node) is a synapse layer from a population onto itself (``source == target``) whose input at step t
is the population's spikes of step t-1 (zero at step 0): :func:`previous_step` of the recorded spikes.

Several layers may drive one population (a residual block sums two branches before its second neuron). The
population's ``neuron_updates`` and ``output_spikes`` are carried by the first of those layers only, so that
sums over layers count each neuron once.

:func:`count_from_spikes` is the one counting mechanism: it takes each layer's recorded input tensor
(T, B, ...) and weights, so Lava or any simulator can produce the same counts. :func:`count_snntorch` records
those tensors from an snnTorch run with forward hooks and calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SltError
from ..simulate.reference import nir_ints

if TYPE_CHECKING:
    from ..simulate.fastsim import SimResult
    from ..simulate.reference import SynapseChain


class CountError(SltError):
    """A network or recorded activity cannot be counted (unsupported layer, missing or mis-shaped tensor)."""


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True, eq=False)
class SynapseLayer:
    """One deployed synapse layer (BatchNorm and average pooling already folded in).

    ``weight`` is (C_out, C_in/groups, kH, kW) for ``kind="conv"`` and (out, in) for ``kind="linear"``, where
    ``in`` is the flattened ``input_shape``. ``source`` and ``target`` name the populations (spiking neuron
    modules) it connects; ``source=None`` is the network input, ``target=None`` the non-spiking readout.
    """

    name: str
    kind: str
    weight: torch.Tensor
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    source: Optional[str] = None
    target: Optional[str] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        if self.kind not in ("conv", "linear"):
            raise CountError(f"layer {self.name}: kind {self.kind!r} is not conv or linear")
        want = 4 if self.kind == "conv" else 2
        if self.weight.dim() != want:
            raise CountError(f"layer {self.name}: a {self.kind} weight needs {want} dims, "
                             f"got shape {tuple(self.weight.shape)}")
        if self.kind == "linear" and self.weight.shape[1] != math.prod(self.input_shape):
            raise CountError(f"layer {self.name}: weight takes {self.weight.shape[1]} inputs but input_shape "
                             f"{self.input_shape} has {math.prod(self.input_shape)}")

    @property
    def population(self) -> str:
        """The population this layer drives (its target, or the layer itself for the readout)."""
        return self.target if self.target is not None else self.name

    @property
    def recurrent(self) -> bool:
        """A population onto itself: its input is the previous step's spikes (:func:`previous_step`)."""
        return self.source is not None and self.source == self.target

    @property
    def weights(self) -> int:
        return int(self.weight.numel())

    @property
    def nonzero_weights(self) -> int:
        return int(torch.count_nonzero(self.weight))

    @property
    def neurons(self) -> int:
        return math.prod(self.output_shape)

    @property
    def input_neurons(self) -> int:
        return math.prod(self.input_shape)

    @property
    def fan_in(self) -> int:
        """Weights per output neuron: C_in/groups * kH * kW, or ``in`` for linear."""
        return int(self.weight[0].numel())

    @property
    def fan_out(self) -> int:
        """Most output neurons one input element connects to (all weights counted, padding excluded)."""
        if self.kind == "linear":
            return int(self.weight.shape[0])
        ones_w = torch.ones_like(self.weight, dtype=torch.float64)
        hits = F.conv_transpose2d(torch.ones((1, *self.output_shape), dtype=torch.float64), ones_w,
                                  stride=self.stride, padding=self.padding, dilation=self.dilation,
                                  groups=self.groups)
        return int(hits.max())


@dataclass(frozen=True)
class LayerActivity:
    """Counts of one synapse layer, per sample, summed over timesteps (see the module docstring)."""

    name: str
    kind: str
    population: str
    input_events: float
    effective_synops: float
    dense_ops: float
    input_binary: bool
    neuron_updates: float
    output_spikes: float
    weights: int
    nonzero_weights: int
    neurons: int
    fan_in: int
    fan_out: int
    computed_once: bool = False  # real-valued input identical at every step: computed once per sample
    from_input: bool = False     # fed by the network input (the layer a host computes for non-event input)

    @property
    def effective_acs(self) -> float:
        return self.effective_synops if self.input_binary else 0.0

    @property
    def effective_macs(self) -> float:
        return 0.0 if self.input_binary else self.effective_synops


@dataclass(frozen=True)
class NetworkActivity:
    """Per-layer counts of a run over ``samples`` inputs of ``timesteps`` steps; ``source`` names the backend."""

    layers: Tuple[LayerActivity, ...]
    timesteps: int
    samples: int
    source: str

    def layer(self, name: str) -> LayerActivity:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers: {', '.join(l.name for l in self.layers)}")

    def _sum(self, attr: str) -> float:
        return sum(getattr(l, attr) for l in self.layers)

    @property
    def effective_acs(self) -> float:
        return self._sum("effective_acs")

    @property
    def effective_macs(self) -> float:
        return self._sum("effective_macs")

    @property
    def effective_synops(self) -> float:
        return self._sum("effective_synops")

    @property
    def dense_ops(self) -> float:
        return self._sum("dense_ops")

    @property
    def neuron_updates(self) -> float:
        return self._sum("neuron_updates")

    @property
    def output_spikes(self) -> float:
        return self._sum("output_spikes")

    @property
    def input_events(self) -> float:
        return self._sum("input_events")


# ------------------------------------------------------------------------------------------- counting

def count_from_spikes(layers: Sequence[SynapseLayer], inputs: Mapping[str, torch.Tensor],
                      spikes: Optional[Mapping[str, torch.Tensor]] = None, source: str = "") -> NetworkActivity:
    """Count a run from each layer's recorded input and each population's recorded output spikes.

    ``inputs[layer.name]``: the layer's input, (T, B, *layer.input_shape) (trailing dims may be flattened).
    ``spikes[population]``: that population's output spikes, (T, B, ...), for every layer with a target.
    All tensors of one run share T and B. Returns per-sample counts (totals divided by B).
    """
    spikes = spikes or {}
    if not layers:
        raise CountError("no synapse layers to count")
    out: List[LayerActivity] = []
    seen_populations = set()
    tb: Optional[Tuple[int, int]] = None
    for layer in layers:
        if layer.name not in inputs:
            raise CountError(f"no input recorded for layer {layer.name}; recorded: {', '.join(inputs) or 'none'}")
        x = inputs[layer.name].detach()
        if x.dim() < 3 or math.prod(x.shape[2:]) != layer.input_neurons:
            raise CountError(f"layer {layer.name}: input shape {tuple(x.shape)} is not (T, B, "
                             f"{', '.join(map(str, layer.input_shape))})")
        if tb is None:
            tb = (x.shape[0], x.shape[1])
        elif tuple(x.shape[:2]) != tb:
            raise CountError(f"layer {layer.name}: input has (T, B) = {tuple(x.shape[:2])}, other layers {tb}")
        steps, batch = tb
        counts = _count_layer(layer, x.reshape(steps, batch, *layer.input_shape))

        first = layer.population not in seen_populations
        seen_populations.add(layer.population)
        n_spikes = 0.0
        if first and layer.target is not None:
            if layer.target not in spikes:
                raise CountError(f"no output spikes recorded for population {layer.target} (layer {layer.name})")
            s = spikes[layer.target].detach()
            if tuple(s.shape[:2]) != tb or math.prod(s.shape[2:]) != layer.neurons:
                raise CountError(f"population {layer.target}: spikes of shape {tuple(s.shape)} do not match "
                                 f"(T, B) = {tb} and {layer.neurons} neurons")
            n_spikes = float(torch.count_nonzero(s)) / batch
        out.append(LayerActivity(
            name=layer.name, kind=layer.kind, population=layer.population,
            input_events=counts["events"] / batch, effective_synops=counts["effective"] / batch,
            dense_ops=counts["dense"] * counts["steps_computed"], input_binary=counts["binary"],
            computed_once=counts["steps_computed"] == 1 and steps > 1, from_input=layer.source is None,
            neuron_updates=float(layer.neurons * steps) if first else 0.0, output_spikes=n_spikes,
            weights=layer.weights, nonzero_weights=layer.nonzero_weights, neurons=layer.neurons,
            fan_in=layer.fan_in, fan_out=layer.fan_out))
    return NetworkActivity(layers=tuple(out), timesteps=tb[0], samples=tb[1], source=source)


def previous_step(spikes: torch.Tensor) -> torch.Tensor:
    """A recurrent layer's input from its population's recorded (T, B, ...) spikes: step t gets the spikes of
    step t-1, step 0 gets zeros (snnTorch RLeaky, NIR recurrent edges)."""
    return torch.cat([torch.zeros_like(spikes[:1]), spikes[:-1]])


def _count_layer(layer: SynapseLayer, x: torch.Tensor) -> dict:
    """Totals over the run (all steps and samples) for one layer; x is (T, B, *input_shape).

    Indicators are convolved in float32 (each output is an integer <= fan_in < 2^24, so exact) and summed in
    float64 (exact up to 2^53), on the device the input is on.
    """
    m = (layer.weight.detach() != 0).to(device=x.device, dtype=torch.float32)
    binary = bool(((x == 0) | (x == 1) | (x == -1)).all())
    events = float(torch.count_nonzero(x))
    # A real-valued input that is the same at every step (direct encoding) is computed once and its result
    # fed to the neurons every step, as Kim et al. and the SNN energy papers do; only then is it counted once.
    if not binary and x.shape[0] > 1 and bool((x == x[:1]).all()):
        x = x[:1]
    effective = 0.0
    # one step at a time: vectorized over the batch, memory bounded by one step's activity
    for x_t in x:
        a = (x_t != 0).to(torch.float32)
        if layer.kind == "conv":
            out = F.conv2d(a, m, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                           groups=layer.groups)
            effective += float(out.to(torch.float64).sum())
        else:
            hits_per_input = a.reshape(a.shape[0], -1).to(torch.float64).sum(0)
            effective += float(hits_per_input @ m.to(torch.float64).sum(0))
    if layer.kind == "conv":
        ones = torch.ones((1, *layer.input_shape), dtype=torch.float64)
        dense_out = F.conv2d(ones, torch.ones(layer.weight.shape, dtype=torch.float64), stride=layer.stride,
                             padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        if tuple(dense_out.shape[1:]) != tuple(layer.output_shape):
            raise CountError(f"layer {layer.name}: conv output {tuple(dense_out.shape[1:])} does not match "
                             f"output_shape {layer.output_shape}")
        dense = float(dense_out.sum())
    else:
        dense = float(m.numel())
    return {"events": events, "effective": effective, "dense": dense, "binary": binary, "steps_computed": x.shape[0]}


def merge_activity(items: Sequence[NetworkActivity]) -> NetworkActivity:
    """Combine runs over several batches of one network into one per-sample average, weighted by samples."""
    if not items:
        raise CountError("no activity to merge")
    base = items[0]
    names = [l.name for l in base.layers]
    for other in items[1:]:
        if [l.name for l in other.layers] != names or other.timesteps != base.timesteps:
            raise CountError("cannot merge activity of different networks or timesteps")
    total = sum(a.samples for a in items)

    def avg(i: int, attr: str) -> float:
        return sum(getattr(a.layers[i], attr) * a.samples for a in items) / total

    layers = []
    for i, layer in enumerate(base.layers):
        layers.append(LayerActivity(
            name=layer.name, kind=layer.kind, population=layer.population,
            input_events=avg(i, "input_events"), effective_synops=avg(i, "effective_synops"),
            dense_ops=layer.dense_ops, input_binary=all(a.layers[i].input_binary for a in items),
            neuron_updates=layer.neuron_updates, output_spikes=avg(i, "output_spikes"), weights=layer.weights,
            nonzero_weights=layer.nonzero_weights, neurons=layer.neurons, fan_in=layer.fan_in,
            fan_out=layer.fan_out, computed_once=all(a.layers[i].computed_once for a in items),
            from_input=layer.from_input))
    return NetworkActivity(layers=tuple(layers), timesteps=base.timesteps, samples=total, source=base.source)


# ----------------------------------------------------------------------------- snnTorch networks

@dataclass
class LayerChain:
    """A synapse layer as found in the body: core conv/linear plus the linear ops folded into it."""

    name: str
    core: Optional[nn.Module]                # None for an identity shortcut
    input_module: nn.Module                  # its forward pre-hook sees the chain's input
    source: Optional[str]
    pre: List[nn.Module] = field(default_factory=list)    # AvgPool2d / Flatten before a Linear
    post: List[nn.Module] = field(default_factory=list)   # BatchNorm / AvgPool2d after the core
    target: Optional[str] = None


def _is_neuron(module: nn.Module) -> bool:
    """A population boundary: a spiking neuron, or the ReLU of an ANN twin (``model.spiking=false``), whose
    nonzero outputs are counted exactly like spikes, so one counter serves both sides of the comparison."""
    import snntorch as snn

    return isinstance(module, (snn.SpikingNeuron, nn.ReLU))


def _parse(body: nn.Module) -> List[LayerChain]:
    """Synapse layers of a SpikingNet body (Conv2d/Linear/BatchNorm/AvgPool2d/Leaky/Flatten/ResidualBlock)."""
    from ..models import ResidualBlock

    chains: List[LayerChain] = []
    pending: List[nn.Module] = []   # pooling/flatten on spikes, waiting for the next Linear
    open_: List[LayerChain] = []        # chains waiting for their neuron
    last_pop: List[Optional[str]] = [None]

    def handle(name: str, m: nn.Module) -> None:
        if isinstance(m, ResidualBlock):
            residual(name, m)
        elif isinstance(m, nn.Sequential):
            for child_name, child in m.named_children():
                handle(f"{name}.{child_name}" if name else child_name, child)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Conv2d) and pending:
                raise CountError(f"layer {name}: pooling or flatten before a conv is not supported")
            chain = LayerChain(name, m, pending[0] if pending else m, last_pop[0], pre=list(pending))
            pending.clear()
            open_.append(chain)
            chains.append(chain)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if not open_:
                raise CountError(f"layer {name}: BatchNorm on spikes cannot be folded into a synapse layer")
            open_[-1].post.append(m)
        elif isinstance(m, nn.AvgPool2d):
            (open_[-1].post if open_ else pending).append(m)
        elif isinstance(m, nn.Flatten):
            if not open_:  # after a neuron: part of the next Linear; before a neuron: only a reshape
                pending.append(m)
        elif _is_neuron(m):
            if not open_:
                raise CountError(f"neuron {name} has no conv or linear layer before it")
            for chain in open_:
                chain.target = name
            open_.clear()
            last_pop[0] = name
            recurrent = getattr(m, "recurrent", None)
            if recurrent is not None:  # RLeaky: the recurrent weight, fed the population's previous spikes
                if not isinstance(recurrent, nn.Linear):
                    raise CountError(f"neuron {name} ({type(m).__name__}): only an all-to-all nn.Linear "
                                     f"recurrence is counted, not {type(recurrent).__name__}")
                # its pre-hook sees the previous step's spikes: RLeaky calls recurrent(spk[t-1])
                chains.append(LayerChain(f"{name}.recurrent", recurrent, recurrent, name, target=name))
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            pass
        else:
            raise CountError(f"layer {name} ({type(m).__name__}) is not supported by the activity counter; "
                             f"supported: Conv2d, Linear, BatchNorm1d/2d, AvgPool2d, Flatten, Leaky, RLeaky, ReLU, "
                             f"ResidualBlock, Identity, Dropout")

    def residual(name: str, block) -> None:
        if open_ or pending:
            raise CountError(f"residual block {name} must follow a neuron")
        src, lif1, lif2 = last_pop[0], f"{name}.lif1", f"{name}.lif2"
        chains.append(LayerChain(f"{name}.conv1", block.conv1, block.conv1, src, post=[block.bn1], target=lif1))
        chains.append(LayerChain(f"{name}.conv2", block.conv2, block.conv2, lif1, post=[block.bn2], target=lif2))
        if isinstance(block.shortcut, nn.Sequential):
            chains.append(LayerChain(f"{name}.shortcut.conv", block.shortcut.conv, block.shortcut.conv, src,
                                 post=[block.shortcut.bn], target=lif2))
        else:  # identity skip: a one-to-one synapse layer with unit weights
            chains.append(LayerChain(f"{name}.shortcut", None, block, src, target=lif2))
        last_pop[0] = lif2

    handle("", body)
    if pending:
        raise CountError("pooling or flatten at the end of the network has no synapse layer to fold into")
    if not chains:
        raise CountError("the network has no conv or linear layer")
    return chains


def _bn_scale(bn: nn.Module, name: str) -> torch.Tensor:
    if bn.running_var is None:
        raise CountError(f"layer {name}: BatchNorm without running statistics cannot be folded")
    scale = 1.0 / torch.sqrt(bn.running_var.detach().double().cpu() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.detach().double().cpu()
    return scale


def _pool_params(pool: nn.AvgPool2d, name: str) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    if _pair(pool.padding) != (0, 0) or pool.ceil_mode or pool.divisor_override is not None:
        raise CountError(f"layer {name}: only average pooling without padding, ceil_mode or divisor_override "
                         f"can be folded")
    kernel = _pair(pool.kernel_size)
    return kernel, _pair(pool.stride if pool.stride is not None else pool.kernel_size)


def deploy_chain(chain: LayerChain, input_shape: Tuple[int, ...]) -> SynapseLayer:
    """The chain as one conv/linear map: BN scales folded into the weights, pooling into kernel and stride.

    conv (kernel K, stride s, padding p) followed by AvgPool (kernel k, stride t) is one conv with kernel
    K + (k-1)*s, stride s*t and padding p, whose weight is W'[j] = sum_{a<k} W[j - a*s] / k^2 (per axis):
    a transposed convolution of a k x k block of ones with W at stride s. The output sizes agree because
    floor((floor(u/s) - (k-1))/t) = floor((u - (k-1)*s)/(s*t)) for u = H + 2p - K.
    AvgPool (k, t) -> Flatten -> Linear W is one linear map on the unpooled input with
    W'[o, c, y, x] = sum over pooling windows (yp, xp) containing (y, x) of W[o, c, yp, xp] / k^2.
    """
    if chain.core is None:  # identity shortcut
        channels = input_shape[0]
        weight = torch.eye(channels, dtype=torch.float64).view(channels, channels, 1, 1)
        return SynapseLayer(chain.name, "conv", weight, input_shape, input_shape, chain.source, chain.target)
    weight = chain.core.weight.detach().double().cpu()
    name = chain.name
    if isinstance(chain.core, nn.Conv2d):
        conv = chain.core
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise CountError(f"layer {name}: only numeric zero padding is supported")
        stride, padding, dilation = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
        for op in chain.post:
            if isinstance(op, nn.AvgPool2d):
                if dilation != (1, 1) or conv.groups != 1:
                    raise CountError(f"layer {name}: pooling can be folded only into an undilated, ungrouped conv")
                kernel, pstride = _pool_params(op, name)
                c_out, c_in, kh, kw = weight.shape
                weight = F.conv_transpose2d(torch.ones((1, 1, *kernel), dtype=torch.float64),
                                            weight.reshape(1, c_out * c_in, kh, kw), stride=stride)
                weight = weight.reshape(c_out, c_in, *weight.shape[-2:]) / (kernel[0] * kernel[1])
                stride = (stride[0] * pstride[0], stride[1] * pstride[1])
            else:
                weight = weight * _bn_scale(op, name).view(-1, 1, 1, 1)
        _, h, w = input_shape
        out_hw = [(size + 2 * p - d * (k - 1) - 1) // s + 1
                  for size, p, d, k, s in zip((h, w), padding, dilation, weight.shape[-2:], stride)]
        return SynapseLayer(name, "conv", weight, tuple(input_shape), (weight.shape[0], *out_hw), chain.source,
                            chain.target, stride, padding, dilation, conv.groups)

    # Linear: fold pooling before it, BatchNorm1d after it
    pools = [op for op in chain.pre if isinstance(op, nn.AvgPool2d)]
    if len(pools) > 1:
        raise CountError(f"layer {name}: more than one pooling before a linear layer is not supported")
    if pools:
        c, h, w = input_shape
        kernel, pstride = _pool_params(pools[0], name)
        hp, wp = (h - kernel[0]) // pstride[0] + 1, (w - kernel[1]) // pstride[1] + 1
        if weight.shape[1] != c * hp * wp:
            raise CountError(f"layer {name}: takes {weight.shape[1]} inputs, pooled input has {c * hp * wp}")
        unpooled = F.conv_transpose2d(weight.reshape(-1, c, hp, wp), torch.ones((c, 1, *kernel),
                                      dtype=torch.float64), stride=pstride, groups=c)
        unpooled = F.pad(unpooled, (0, w - unpooled.shape[-1], 0, h - unpooled.shape[-2]))
        weight = unpooled.reshape(weight.shape[0], -1) / (kernel[0] * kernel[1])
    elif weight.shape[1] != math.prod(input_shape):
        raise CountError(f"layer {name}: takes {weight.shape[1]} inputs, its input has shape {input_shape}")
    for op in chain.post:
        if isinstance(op, nn.AvgPool2d):
            raise CountError(f"layer {name}: pooling after a linear layer is not supported")
        weight = weight * _bn_scale(op, name).view(-1, 1)
    return SynapseLayer(name, "linear", weight, tuple(input_shape), (weight.shape[0],), chain.source, chain.target)


def _record(model: nn.Module, x_seq: torch.Tensor):
    """Run the model once with hooks; returns (chains, inputs per chain, spikes per population)."""
    body = model.body
    chains = _parse(body)
    by_module: Dict[int, List[str]] = {}
    modules: Dict[int, nn.Module] = {}
    for chain in chains:
        by_module.setdefault(id(chain.input_module), []).append(chain.name)
        modules[id(chain.input_module)] = chain.input_module
    inputs: Dict[str, List[torch.Tensor]] = {c.name: [] for c in chains}
    spikes: Dict[str, List[torch.Tensor]] = {}
    handles = []

    def input_hook(key):
        def hook(module, args):
            for name in by_module[key]:
                inputs[name].append(args[0].detach())
        return hook

    def spike_hook(pop):
        def hook(module, args, output):
            spikes[pop].append((output[0] if isinstance(output, tuple) else output).detach())
        return hook

    for key, module in modules.items():
        handles.append(module.register_forward_pre_hook(input_hook(key)))
    for pop in {c.target for c in chains if c.target is not None}:
        spikes[pop] = []
        handles.append(body.get_submodule(pop).register_forward_hook(spike_hook(pop)))
    was_training = model.training
    model.eval()  # BatchNorm uses (and never updates) its running statistics
    try:
        with torch.no_grad():
            model(x_seq)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    stacked_inputs = {n: _steps(v, x_seq.shape[0]) for n, v in inputs.items()}
    stacked_spikes = {p: _steps(v, x_seq.shape[0]) for p, v in spikes.items()}
    return chains, stacked_inputs, stacked_spikes


def _steps(recorded: List[torch.Tensor], steps: int) -> torch.Tensor:
    """One module's recorded tensors as (T, B, ...). A module the model ran once for all T steps (its input is
    the same at every step: :func:`slt_deploy.models.layers.constant_prefix`) fed that one output every step."""
    if len(recorded) == 1 and steps > 1:
        return recorded[0].unsqueeze(0).expand(steps, *recorded[0].shape)
    return torch.stack(recorded)


def _check_input(x_seq: torch.Tensor) -> None:
    if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 3:
        raise CountError(f"expected an input of shape (T, B, ...), got "
                         f"{tuple(x_seq.shape) if isinstance(x_seq, torch.Tensor) else type(x_seq).__name__}")


def count_snntorch(model: nn.Module, x_seq: torch.Tensor, source: str = "snntorch") -> NetworkActivity:
    """Run a :class:`~slt_deploy.models.SpikingNet` on a real (T, B, C, H, W) input and count its activity.

    The run is in eval mode without gradients (BatchNorm uses its running statistics); the model's mode is
    restored afterwards. Counts come from :func:`count_from_spikes` on the recorded layer inputs.
    """
    _check_input(x_seq)
    chains, inputs, spikes = _record(model, x_seq)
    layers = [deploy_chain(c, tuple(inputs[c.name].shape[2:])) for c in chains]
    return count_from_spikes(layers, inputs, spikes, source=source)


def record_run(model: nn.Module, x_seq: torch.Tensor
               ) -> Tuple[List[SynapseLayer], Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """One run of a SpikingNet on (T, B, ...): its deployed layers, each layer's recorded input and each
    population's recorded spikes (what :func:`count_from_spikes` takes, and what a simulator can replay)."""
    _check_input(x_seq)
    chains, inputs, spikes = _record(model, x_seq)
    return [deploy_chain(c, tuple(inputs[c.name].shape[2:])) for c in chains], inputs, spikes


def synapse_layers(model: nn.Module, input_shape: Sequence[int]) -> List[SynapseLayer]:
    """The deployed synapse layers of a SpikingNet for one sample of ``input_shape`` (C, H, W)."""
    x = torch.zeros((1, 1, *input_shape), dtype=next(model.parameters()).dtype,
                    device=next(model.parameters()).device)
    chains, inputs, _ = _record(model, x)
    return [deploy_chain(c, tuple(inputs[c.name].shape[2:])) for c in chains]


# ----------------------------------------------------------------- NIR graphs (reference executor)

def _torch_core(node, where: str) -> nn.Module:
    """The weight node as the torch layer the activity counter folds (only its weight and geometry count)."""
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.float64))
    if isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise CountError(f"{where}: conv padding {node.padding!r} is not supported; give explicit padding")
        groups = int(node.groups)
        layer = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=nir_ints(node.stride, 2),
                          padding=nir_ints(node.padding, 2), dilation=nir_ints(node.dilation, 2), groups=groups,
                          bias=False)
    else:
        layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    layer.weight = nn.Parameter(w, requires_grad=False)
    return layer


def _torch_pool(node) -> nn.AvgPool2d:
    return nn.AvgPool2d(nir_ints(node.kernel_size, 2), nir_ints(node.stride, 2), nir_ints(node.padding, 2))


def nir_synapse_layer(chain: "SynapseChain", input_shape: Tuple[int, ...], where: str) -> SynapseLayer:
    """Fold the chain exactly as the activity counter folds a ticket's layers (deploy_chain, reused
    rather than copied), so a NIR graph and its ticket can never disagree."""
    if chain.node is None and len(input_shape) != 3:
        raise CountError(f"{where}: identity edge {chain.name} between non-conv populations is not supported")
    core = None if chain.node is None else _torch_core(chain.node, where)
    spec = LayerChain(chain.name, core, core or nn.Identity(), chain.source,
                      pre=[_torch_pool(p) for p in chain.pre], post=[_torch_pool(p) for p in chain.post],
                      target=chain.target)
    try:
        return deploy_chain(spec, input_shape)
    except CountError as exc:
        raise CountError(f"{where}: {exc}") from None


# ------------------------------------------------------------- compiled simulations (fast simulator)

def simulation_inputs(result: "SimResult", x, layers: Sequence[SynapseLayer]):
    """The ``(inputs, spikes)`` mappings :func:`slt_deploy.cost.activity.count_from_spikes` takes, from a simulation.

    ``x`` is the (N, T, *input_shape) input the simulation ran on and ``layers`` the model's synapse layers
    (:func:`slt_deploy.cost.activity.synapse_layers`); population names are the NIR node names, which are the
    snnTorch module names. Tensors are (T, N, ...) as the counter expects.
    """
    if not result.spikes:
        raise CountError("the simulation recorded no spikes; run it with record_spikes=True")
    x_seq = torch.as_tensor(np.asarray(x, dtype=np.float64)).transpose(0, 1)
    spikes = {name: torch.from_numpy(np.ascontiguousarray(s.swapaxes(0, 1))) for name, s in result.spikes.items()}
    inputs: Dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer.source is None:
            inputs[layer.name] = x_seq
        elif layer.source in spikes:
            source = spikes[layer.source]
            inputs[layer.name] = previous_step(source) if layer.recurrent else source
        else:
            raise CountError(f"layer {layer.name}: its source population {layer.source!r} was not simulated; "
                           f"simulated: {', '.join(spikes)}")
    return inputs, spikes


def count_simulation(result: "SimResult", x, layers: Sequence[SynapseLayer],
                     source: str = "fastsim") -> NetworkActivity:
    """:func:`count_from_spikes` on a fast-simulator run (:class:`slt_deploy.simulate.fastsim.SimResult`)."""
    inputs, spikes = simulation_inputs(result, x, layers)
    return count_from_spikes(layers, inputs, spikes, source=source)
