"""NIR (Neuromorphic Intermediate Representation) export, serialization and inspection.

NIR is the boundary between training and deployment: this module turns a ticket's snnTorch network into a
:class:`nir.NIRGraph`, writes and reads it (HDF5), and describes it for ``slt-deploy inspect``.

Conventions (the same as snnTorch's own exporter, so other NIR tools read our files the same way):

- Time step ``dt = 1e-4`` s (stored in the graph and every neuron node's metadata as ``"dt"``).
- ``snn.Leaky(beta, threshold)`` becomes ``nir.LIF`` with, per neuron,
  ``tau = dt / (1 - beta)``, ``r = tau / dt = 1 / (1 - beta)``, ``v_leak = 0``, ``v_reset = 0``.
  NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``; one forward-Euler step of length ``dt`` gives
  ``v <- v + (dt/tau) (v_leak - v + r I) = (1 - dt/tau) v + (r dt/tau) I = beta v + I``.
  Neuron parameters are stored as float64: a float32 ``tau`` does not give back the float32 ``beta`` for
  about a third of all betas (``float32(1 - dt/float32(tau)) != beta``), which would break spike-exactness.
- ``beta == 1`` (no leak) becomes ``nir.IF`` with ``r = 1/dt`` (``dv/dt = r I``, Euler: ``v <- v + I``).
- ``snn.RLeaky`` / ``snn.RSynaptic`` become that node plus a recurrent ``Affine`` from it back to itself.
- ``snn.Synaptic(alpha, beta)`` becomes ``nir.CubaLIF`` with ``tau_syn = dt/(1-alpha)``,
  ``w_in = 1/(1-alpha)`` (so ``I <- alpha I + x``), ``tau_mem = dt/(1-beta)``, ``r = 1/(1-beta)``
  (so ``v <- beta v + I``, with the updated current, as snnTorch does).
- Reset. snnTorch (``reset_delay=True``) applies the reset of a spike at the *next* step:
  ``zero``: ``v_t = beta v_{t-1} (1 - s_{t-1}) + I_t``; ``subtract``: ``v_t = beta v_{t-1} + I_t - thr s_{t-1}``;
  ``s_t = [v_t > thr]``. NIR only knows reset-to-``v_reset``, which equals ``zero``. The trained mechanism is
  written to each neuron node's metadata ``"reset"``: ``zero``, ``subtract``, ``none`` (pure integration) or
  ``hold`` (snnTorch ``Synaptic`` with zero reset: the membrane is held at ``v_reset`` for the whole step
  after a spike, input included). Consumers must honour it; :mod:`slt_deploy.simulate.reference` does.
- BatchNorm is folded into the conv/linear layer it directly follows, in float64, then cast to float32:
  ``s = gamma / sqrt(var + eps)``, ``w' = w s``, ``b' = (b - mean) s + beta``.
- The non-spiking readout (the last ``Linear``) is an ``Affine`` node wired straight to the ``Output`` node,
  marked ``"readout": "per-step logits"``. An Affine node is stateless, so its output at each step *is* that
  step's logit vector, whatever the consumer's integration scheme. (An ``LI`` with ``tau = dt`` gives the
  same only under forward Euler; an exact-exponential integrator would return ``(1 - 1/e) I``.)
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import h5py
import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from ..errors import ExportError
from .nir_checks import RESET_MODES, check_nir_file, check_nir_graph  # noqa: F401 (RESET_MODES: re-exported)
from ..models import ResidualBlock
from ..models.spikformer import Spikformer, deployment_advice
from ..utils import check_output_path, registrar, write_bytes_atomic

FORMAT = "slt-deploy.nir/1"
DEFAULT_DT = 1e-4
READOUT = "per-step logits"

Shape = Tuple[int, ...]


# ---------------------------------------------------------------------------------------------------------
# Export: snnTorch network -> NIR graph
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Signal:
    """What flows between layers while walking the network.

    ``sources`` are the nodes whose outputs are summed to form the signal (NIR sums every edge into a node,
    which is how a residual block's two branches meet); ``shape`` is the unbatched shape; ``foldable`` names
    the conv/linear node that produced the signal directly, the only place a BatchNorm may be folded into.
    """

    sources: Tuple[str, ...]
    shape: Shape
    foldable: Optional[str] = None


class _Builder:
    """Accumulates nodes and edges; every handler adds its node through :meth:`add`."""

    def __init__(self, dt: float, source: str, mask: Optional[Mapping[str, torch.Tensor]]):
        self.dt = dt
        self.source = source
        self.mask = dict(mask or {})
        self.nodes: "OrderedDict[str, Any]" = OrderedDict()
        self.edges: List[Tuple[str, str]] = []

    def add(self, name: str, node, signal: _Signal) -> None:
        if name in self.nodes:
            raise ExportError(f"layer name {name!r} is used twice; NIR node names must be unique")
        self.nodes[name] = node
        self.edges.extend((src, name) for src in signal.sources)

    def weight_metadata(self, name: str, weight: np.ndarray) -> Dict[str, Any]:
        meta = {"layer": name, "source": self.source, **weight_stats(weight)}
        keep = self.mask.get(name)
        if keep is not None:  # the ticket's own mask; "density" counts the exported (possibly folded) weights
            meta["mask_density"] = float(keep.float().mean())
        return meta

    def neuron_metadata(self, name: str, reset: str, **extra) -> Dict[str, Any]:
        return {"layer": name, "source": self.source, "reset": reset, "dt": float(self.dt),
                **{k: v for k, v in extra.items() if v is not None}}


Handler = Callable[[_Builder, str, nn.Module, _Signal], _Signal]
_HANDLERS: Dict[type, Handler] = {}

# Layers with no NIR counterpart, and what to use instead (a function of the layer where that depends on it).
_UNSUPPORTED: Dict[type, Any] = {
    nn.MaxPool1d: "Loihi and NIR have no max pooling; use nn.AvgPool2d",
    nn.MaxPool2d: "Loihi and NIR have no max pooling; use nn.AvgPool2d",
    nn.AdaptiveMaxPool2d: "Loihi and NIR have no max pooling; use nn.AvgPool2d",
    nn.AdaptiveAvgPool2d: "use nn.AvgPool2d with an explicit kernel size",
    nn.ReLU: "an ANN activation has no NIR node; use snn.Leaky",
    nn.LayerNorm: "no NIR node and nothing to fold it into; use BatchNorm directly after a conv/linear",
    nn.GroupNorm: "no NIR node and nothing to fold it into; use BatchNorm directly after a conv/linear",
    # refused as a whole, before any node is built: the attention is the part no NIR graph can hold
    Spikformer: deployment_advice,
}


_handles = registrar(_HANDLERS, "NIR export handler")


def _lookup(table: Dict[type, Any], module: nn.Module):
    for cls in type(module).__mro__:  # a subclass of a supported layer uses its parent's handler
        if cls in table:
            return table[cls]
    return None


def _export(b: _Builder, name: str, module: nn.Module, signal: _Signal) -> _Signal:
    handler = _lookup(_HANDLERS, module)
    if handler is not None:
        return handler(b, name, module, signal)
    kind = type(module).__name__
    advice = _lookup(_UNSUPPORTED, module)
    if callable(advice):
        advice = advice(module)
    if advice is None:
        supported = ", ".join(sorted({t.__name__ for t in _HANDLERS}))
        advice = f"no NIR mapping; supported layers: {supported}"
    raise ExportError(f"cannot export layer {name!r} ({kind}): {advice}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _out_shape(name: str, module: nn.Module, shape: Shape) -> Shape:
    """Unbatched output shape, found by running the layer on zeros (exact for every torch layer)."""
    param = next(iter(module.parameters()), None)
    with torch.no_grad():
        try:
            out = module(torch.zeros((1, *shape), device=param.device if param is not None else "cpu"))
        except RuntimeError as exc:
            raise ExportError(f"layer {name!r} ({type(module).__name__}) does not accept input of shape "
                              f"{shape}: {str(exc).splitlines()[0]}") from None
    return tuple(int(d) for d in out.shape[1:])


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _per_neuron(name: str, what: str, value, shape: Shape) -> np.ndarray:
    """A neuron constant (scalar or per-neuron tensor) as a float64 array of the layer's output shape."""
    arr = np.asarray(torch.as_tensor(value).detach().cpu().double().numpy())
    try:
        return np.ascontiguousarray(np.broadcast_to(arr, shape), dtype=np.float64)
    except ValueError:
        raise ExportError(f"layer {name!r}: {what} of shape {arr.shape} does not broadcast to the layer's "
                          f"output shape {shape}") from None


def _summary(arr: np.ndarray):
    """A readable metadata value: the number when all neurons share it, else the whole array."""
    flat = np.asarray(arr).ravel()
    return float(flat[0]) if flat.size and bool((flat == flat[0]).all()) else np.asarray(arr)


def weight_stats(weight: np.ndarray) -> Dict[str, Any]:
    """``density`` (nonzero fraction), ``binary`` (nonzero weights are exactly {-alpha, +alpha}), ``alpha``."""
    w = np.asarray(weight)
    nonzero = w[w != 0]
    stats: Dict[str, Any] = {"density": float(nonzero.size / w.size) if w.size else 0.0, "binary": False}
    values = np.unique(nonzero)
    if values.size == 2 and values[0] == -values[1]:
        stats.update(binary=True, alpha=float(values[1]))
    return stats


@_handles(nn.Sequential)
def _sequential(b, name, module, signal):
    for child, layer in module.named_children():
        signal = _export(b, _join(name, child), layer, signal)
    return signal


@_handles(nn.Identity)
def _identity(b, name, module, signal):
    return signal


@_handles(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
def _dropout(b, name, module, signal):
    return signal  # identity at inference; a following BatchNorm still folds into the layer before it


@_handles(nn.Linear)
def _linear(b, name, module, signal):
    if len(signal.shape) != 1 or signal.shape[0] != module.in_features:
        raise ExportError(f"layer {name!r} (Linear) expects {module.in_features} inputs but receives shape "
                          f"{signal.shape}; put an nn.Flatten before it")
    weight = _f32(module.weight)
    meta = b.weight_metadata(name, weight)
    if module.bias is None:
        node = nir.Linear(weight=weight, metadata=meta)
    else:
        node = nir.Affine(weight=weight, bias=_f32(module.bias), metadata=meta)
    b.add(name, node, signal)
    return _Signal((name,), (module.out_features,), foldable=name)


def _conv_padding(name: str, module: nn.Conv2d) -> Tuple[int, int]:
    """Explicit (H, W) padding; 'same'/'valid' strings do not survive NIR's HDF5 round trip."""
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return (0, 0)
        pads = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        if any(p % 2 for p in pads):
            raise ExportError(f"layer {name!r} (Conv2d): padding='same' with an even kernel pads asymmetrically, "
                              f"which NIR cannot express; give explicit padding")
        return tuple(p // 2 for p in pads)
    return tuple(int(p) for p in module.padding)


@_handles(nn.Conv2d)
def _conv2d(b, name, module, signal):
    if module.padding_mode != "zeros":
        raise ExportError(f"layer {name!r} (Conv2d): padding_mode={module.padding_mode!r} has no NIR "
                          f"equivalent; use padding_mode='zeros'")
    out_shape = _out_shape(name, module, signal.shape)
    weight = _f32(module.weight)
    bias = _f32(module.bias) if module.bias is not None else np.zeros(weight.shape[0], np.float32)
    node = nir.Conv2d(input_shape=tuple(signal.shape[1:]), weight=weight, stride=tuple(module.stride),
                      padding=_conv_padding(name, module), dilation=tuple(module.dilation),
                      groups=int(module.groups), bias=bias, metadata=b.weight_metadata(name, weight))
    b.add(name, node, signal)
    return _Signal((name,), out_shape, foldable=name)


@_handles(nn.BatchNorm1d, nn.BatchNorm2d)
def _batchnorm(b, name, bn, signal):
    """Fold ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` into the conv/linear that produced x."""
    kind = type(bn).__name__
    target = signal.foldable
    if target is None or target not in b.nodes:
        raise ExportError(f"cannot export layer {name!r} ({kind}): BatchNorm is folded into the conv/linear "
                          f"layer it directly follows, and it follows none; place it right after a Conv2d/Linear")
    if bn.running_mean is None or bn.running_var is None:
        raise ExportError(f"cannot export layer {name!r} ({kind}): no running statistics "
                          f"(track_running_stats=False) to fold")
    marked = getattr(bn, "fold_bn_into", None)  # models.batchnorm_for names the layer it belongs to
    if marked is not None and target.rsplit(".", 1)[-1] != marked:
        raise ExportError(f"cannot export layer {name!r} ({kind}): it is marked for layer {marked!r} but follows "
                          f"{target!r}")
    node = b.nodes[target]
    if any(src == target for src, _ in b.edges):
        raise ExportError(f"cannot fold {name!r} into {target!r}: {target!r} already feeds another node")
    w = node.weight.astype(np.float64)
    bias = node.bias.astype(np.float64) if hasattr(node, "bias") else np.zeros(w.shape[0])
    mean = bn.running_mean.detach().cpu().double().numpy()
    var = bn.running_var.detach().cpu().double().numpy()
    gamma = bn.weight.detach().cpu().double().numpy() if bn.weight is not None else np.ones_like(mean)
    shift = bn.bias.detach().cpu().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    if mean.shape[0] != w.shape[0]:
        raise ExportError(f"cannot fold {name!r} ({mean.shape[0]} channels) into {target!r} "
                          f"({w.shape[0]} output channels)")
    scale = gamma / np.sqrt(var + bn.eps)
    weight = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
    bias = ((bias - mean) * scale + shift).astype(np.float32)
    meta = dict(node.metadata)
    for key in ("binary", "alpha"):
        meta.pop(key, None)
    meta.update(weight_stats(weight), batchnorm=name)
    if isinstance(node, nir.Conv2d):
        new = nir.Conv2d(input_shape=node.input_shape, weight=weight, stride=node.stride, padding=node.padding,
                         dilation=node.dilation, groups=node.groups, bias=bias, metadata=meta)
    else:  # Linear or Affine: the folded layer always has a bias
        new = nir.Affine(weight=weight, bias=bias, metadata=meta)
    b.nodes[target] = new
    return _Signal(signal.sources, signal.shape, foldable=None)


@_handles(nn.AvgPool2d)
def _avgpool2d(b, name, module, signal):
    pair = lambda v: tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v, v)))  # noqa: E731
    kernel, padding = pair(module.kernel_size), pair(module.padding)
    stride = pair(module.stride if module.stride is not None else module.kernel_size)
    if module.ceil_mode:
        raise ExportError(f"layer {name!r} (AvgPool2d): ceil_mode=True has no NIR equivalent")
    if any(padding) and not module.count_include_pad:
        raise ExportError(f"layer {name!r} (AvgPool2d): count_include_pad=False with padding has no NIR "
                          f"equivalent")
    divisor = module.divisor_override
    if divisor not in (None, 1, kernel[0] * kernel[1]):
        raise ExportError(f"layer {name!r} (AvgPool2d): divisor_override={divisor} is neither an average "
                          f"nor a sum pool")
    # divisor 1 sums the window: NIR's SumPool2d
    cls = nir.SumPool2d if divisor == 1 and kernel != (1, 1) else nir.AvgPool2d
    out_shape = _out_shape(name, module, signal.shape)
    b.add(name, cls(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding),
                    metadata={"layer": name, "source": b.source}), signal)
    return _Signal((name,), out_shape)


@_handles(nn.Flatten)
def _flatten(b, name, module, signal):
    # NIR shapes have no batch dimension: torch's dims 1.. are NIR's 0..
    if module.start_dim == 0 or module.end_dim == 0:
        raise ExportError(f"layer {name!r} (Flatten): flattening the batch dimension (dim 0) cannot be exported")
    start = module.start_dim - 1 if module.start_dim > 0 else module.start_dim
    end = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
    out_shape = _out_shape(name, module, signal.shape)
    b.add(name, nir.Flatten(input_type={"input": np.array(signal.shape)}, start_dim=start, end_dim=end,
                            metadata={"layer": name, "source": b.source}), signal)
    return _Signal((name,), out_shape)


_STATE_FUNCTIONS = {"_base_sub": "subtract", "_base_zero": "zero", "_base_int": "none"}


def _reset_mode(name: str, neuron) -> str:
    """The reset the neuron really runs, checked against its configuration; refuses what NIR cannot carry."""
    kind = type(neuron).__name__
    configured = ("subtract", "zero", "none")[int(neuron.reset_mechanism_val)]
    running = _STATE_FUNCTIONS.get(getattr(neuron.state_function, "__name__", ""), configured)
    if running != configured:  # the state function is chosen at construction, the buffer may be loaded later
        raise ExportError(f"layer {name!r} ({kind}): reset_mechanism_val says {configured!r} but the neuron runs "
                          f"{running!r}; rebuild it with reset_mechanism={configured!r}")
    if getattr(neuron, "inhibition", False):
        raise ExportError(f"layer {name!r} ({kind}): inhibition (winner-take-all) has no NIR equivalent")
    if getattr(neuron, "state_quant", False):
        raise ExportError(f"layer {name!r} ({kind}): state_quant has no NIR equivalent; export the float network")
    if not bool((torch.as_tensor(neuron.graded_spikes_factor) == 1).all()):
        raise ExportError(f"layer {name!r} ({kind}): graded_spikes_factor != 1 is not supported (NIR spikes are 0/1)")
    if not getattr(neuron, "reset_delay", True) and configured == "subtract":
        raise ExportError(f"layer {name!r} ({kind}): reset_delay=False with subtract reset is not supported; "
                          f"use the default reset_delay=True")
    return configured


def _leak(name: str, what: str, decay: np.ndarray, dt: float, hint: str) -> Tuple[np.ndarray, np.ndarray]:
    """(tau, r) with tau = dt/(1-decay), r = 1/(1-decay); forward Euler then gives v <- decay v + I."""
    if bool((decay >= 1).any()):
        raise ExportError(f"layer {name!r}: {what} = 1 (no leak) has no finite time constant; {hint}")
    return dt / (1.0 - decay), 1.0 / (1.0 - decay)


@_handles(snn.Leaky)
def _leaky(b, name, neuron, signal):
    reset = _reset_mode(name, neuron)
    shape = signal.shape
    beta = _per_neuron(name, "beta", torch.as_tensor(neuron.beta).clamp(0, 1), shape)  # snnTorch clamps too
    thr = _per_neuron(name, "threshold", neuron.threshold, shape)
    zeros = np.zeros(shape, np.float64)
    meta = b.neuron_metadata(name, reset, beta=_summary(beta))
    if bool((beta == 1).all()):  # no leak: IF, dv/dt = r I, Euler with r = 1/dt gives v <- v + I
        node = nir.IF(r=np.full(shape, 1.0 / b.dt), v_threshold=thr, v_reset=zeros, metadata=meta)
    else:
        tau, r = _leak(name, "beta", beta, b.dt, "NIR needs one neuron model per layer: IF needs beta = 1 "
                       "for every neuron, LIF beta < 1")
        node = nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=thr, v_reset=zeros.copy(), metadata=meta)
    b.add(name, node, signal)
    return _Signal((name,), shape)


def _recurrent(b, name, neuron, signal, base: Handler, kind: str) -> _Signal:
    """The neuron node made by ``base`` with a recurrent Affine from it back to itself: the cycle carries the
    previous step's spikes (:func:`recurrent_edges`), which is RLeaky's ``beta*mem + input + recurrent(spk[t-1])``
    and RSynaptic's ``alpha*syn + input + recurrent(spk[t-1])`` (the recurrent bias included, from step 0)."""
    reset = _reset_mode(name, neuron)
    if reset == "zero":  # their zero reset zeroes the whole next-step membrane, input included (as Synaptic)
        reset = "hold"
    recurrent = getattr(neuron, "recurrent", None)
    if not isinstance(recurrent, nn.Linear) or len(signal.shape) != 1:
        raise ExportError(f"layer {name!r} ({kind}): only an all-to-all (nn.Linear) recurrence on a flat layer is "
                          f"exported; got {type(recurrent).__name__} on shape {signal.shape}")
    node_signal = base(b, name, neuron, signal)
    b.nodes[name].metadata["reset"] = reset
    rec_name = _join(name, "recurrent")
    weight = recurrent.weight.detach().double().numpy()
    bias = recurrent.bias.detach().double().numpy() if recurrent.bias is not None else np.zeros(weight.shape[0])
    b.add(rec_name, nir.Affine(weight=weight.astype(np.float32), bias=bias.astype(np.float32),
                               metadata=b.weight_metadata(rec_name, weight)), node_signal)
    b.edges.append((rec_name, name))
    return node_signal


@_handles(snn.RLeaky)
def _rleaky(b, name, neuron, signal):
    """A LIF node with its recurrent Affine (see :func:`_recurrent`)."""
    return _recurrent(b, name, neuron, signal, _leaky, "RLeaky")


@_handles(snn.RSynaptic)
def _rsynaptic(b, name, neuron, signal):
    """A CubaLIF node with its recurrent Affine (see :func:`_recurrent`): the recurrent input joins the synaptic
    current, as NIR's CubaLIF sums every input into ``I``."""
    return _recurrent(b, name, neuron, signal, _synaptic, "RSynaptic")


@_handles(snn.Synaptic)
def _synaptic(b, name, neuron, signal):
    reset = _reset_mode(name, neuron)
    if reset == "zero":
        # snnTorch's Synaptic zeroes the whole next-step membrane (input included), unlike Leaky
        reset = "hold"
    shape = signal.shape
    alpha = _per_neuron(name, "alpha", torch.as_tensor(neuron.alpha).clamp(0, 1), shape)
    beta = _per_neuron(name, "beta", torch.as_tensor(neuron.beta).clamp(0, 1), shape)
    hint = "NIR's CubaLIF needs alpha < 1 and beta < 1"
    tau_syn, w_in = _leak(name, "alpha", alpha, b.dt, hint)  # w_in = tau_syn/dt: I <- alpha I + x
    tau_mem, r = _leak(name, "beta", beta, b.dt, hint)
    node = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r, v_leak=np.zeros(shape),
                       v_threshold=_per_neuron(name, "threshold", neuron.threshold, shape),
                       v_reset=np.zeros(shape), w_in=w_in,
                       metadata=b.neuron_metadata(name, reset, alpha=_summary(alpha), beta=_summary(beta)))
    b.add(name, node, signal)
    return _Signal((name,), shape)


@_handles(ResidualBlock)
def _residual_block(b, name, block, signal):
    """conv1-bn1-lif1-conv2-bn2 and the shortcut both start from the block input; both end in lif2.

    NIR sums every edge into a node, so the two branches become edges into one LIF node, as in
    ``lif2(bn2(conv2(...)) + shortcut(x))``.
    """
    main = signal
    for child in ("conv1", "bn1", "lif1", "conv2", "bn2"):
        main = _export(b, _join(name, child), getattr(block, child), main)
    short = _export(b, _join(name, "shortcut"), block.shortcut, signal)
    if main.shape != short.shape:
        raise ExportError(f"block {name!r}: main branch shape {main.shape} != shortcut shape {short.shape}")
    return _export(b, _join(name, "lif2"), block.lif2, _Signal(main.sources + short.sources, main.shape))


def _unique_name(base: str, taken) -> str:
    name, i = base, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def _clean_metadata(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Metadata NIR can store in HDF5: drop None, turn numpy scalars into Python numbers."""
    out = {}
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def _is_user_class_network(body: nn.Module) -> bool:
    """A user's class network (no handler of its own, not refused by name): read as its one-step layer chain."""
    from ..models.user import is_class_network

    return _lookup(_HANDLERS, body) is None and _lookup(_UNSUPPORTED, body) is None and is_class_network(body)


def _export_layer_chain(b: _Builder, body: nn.Module, shape: Shape, signal: _Signal) -> _Signal:
    """A class network whose ``forward`` handles one step: the layers it applies, in order (read with torch.fx
    by :func:`slt_deploy.models.user.layer_chain`, which refuses anything but a chain); node names are the
    attribute names of the layers."""
    from ..errors import ConfigError
    from ..models.user import layer_chain

    try:
        chain = layer_chain(body, shape)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None
    for name, layer in chain:
        signal = _export(b, name, layer, signal)
    return signal


def network_to_nir(model: nn.Module, *, input_shape: Sequence[int], source: Optional[str] = None,
                   dt: float = DEFAULT_DT, mask: Optional[Mapping[str, torch.Tensor]] = None,
                   metadata: Optional[Mapping[str, Any]] = None):
    """Export a :class:`~slt_deploy.models.SpikingNet` (its ``body``) or an ``nn.Sequential`` of supported layers.

    ``input_shape`` is the unbatched input shape (C, H, W); ``source`` names where the weights come from (a
    ticket path), ``mask`` (layer name -> bool tensor) adds each layer's ``mask_density``, ``metadata`` is
    merged into the graph's metadata. Node names are the torch module names within the body.
    """
    if not (dt > 0 and math.isfinite(dt)):
        raise ExportError(f"dt={dt} must be a positive number of seconds")
    body = getattr(model, "body", model)
    source = str(source) if source is not None else type(model).__name__
    builder = _Builder(float(dt), source, mask)
    shape = tuple(int(d) for d in input_shape)
    was_training = body.training
    body.eval()  # BatchNorm folding uses running statistics, Dropout is skipped: inference semantics
    try:
        in_name = _unique_name("input", dict(body.named_modules()))
        builder.nodes[in_name] = nir.Input(input_type={"input": np.array(shape)})
        # a Sequential body contributes no name of its own: node names are the layer names within it
        root = "" if isinstance(body, nn.Sequential) else type(body).__name__.lower()
        if _is_user_class_network(body):
            out = _export_layer_chain(builder, body, shape, _Signal((in_name,), shape))
        else:
            out = _export(builder, root, body, _Signal((in_name,), shape))
    finally:
        body.train(was_training)
    for src in out.sources:
        node = builder.nodes[src]
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            node.metadata["readout"] = READOUT  # no output neuron: the Output carries per-step logits
    out_name = _unique_name("output", builder.nodes)
    builder.add(out_name, nir.Output(output_type={"output": np.array(out.shape)}), out)
    meta = {"format": FORMAT, "source": source, "dt": float(dt),
            "reset_timing": "next step (snnTorch reset_delay=True)"}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "name"):
        meta["model"] = config.name
    meta.update(metadata or {})
    try:
        return nir.NIRGraph(nodes=dict(builder.nodes), edges=builder.edges, metadata=_clean_metadata(meta),
                            type_check=True)
    except ValueError as exc:  # NIR's own type inference disagrees with ours: report, do not write a bad file
        raise ExportError(f"NIR type check failed for the exported graph: {exc}") from None


def ticket_to_nir(ticket, source: Optional[str] = None, dt: float = DEFAULT_DT):
    """Export a :class:`~slt_deploy.ticket.Ticket` (or the path of one) with its record as graph metadata."""
    from ..ticket import Ticket

    if isinstance(ticket, (str, Path)):
        source = source or str(ticket)
        ticket = Ticket.load(ticket)  # raises TicketError for a file that is not a ticket
    record = ticket.record
    if not record.model.spiking:
        raise ExportError(f"{source or 'ticket'}: an ANN ticket (model.spiking=false, method {record.method}) has no "
                          "spiking neurons to map to NIR or Lava; export it with --format onnx (and give that file "
                          "to slt-deploy report --ann to cost tickets against it)")
    model = ticket.build_model()
    metadata = {
        "method": record.method, "sparsity": float(record.sparsity), "timesteps": int(record.timesteps),
        "encoding": record.encoding, "dataset": record.dataset, "seed": int(record.seed),
        "accuracy": record.accuracy,
    }
    return network_to_nir(model, input_shape=record.model.input_shape, source=source or "ticket", dt=dt,
                          mask=ticket.mask, metadata=metadata)


# ---------------------------------------------------------------------------------------------------------
# Graph structure shared with the executor
# ---------------------------------------------------------------------------------------------------------

def topological_order(graph) -> List[str]:
    """Node names so that every edge goes forward (Kahn's algorithm); a cycle raises ExportError naming it."""
    preds = {name: 0 for name in graph.nodes}
    succs: Dict[str, List[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        if src not in preds or dst not in preds:
            missing = src if src not in preds else dst
            raise ExportError(f"edge {src} -> {dst} refers to a node {missing!r} that is not in the graph")
        succs[src].append(dst)
        preds[dst] += 1
    ready = deque(name for name, n in preds.items() if n == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for dst in succs[name]:
            preds[dst] -= 1
            if preds[dst] == 0:
                ready.append(dst)
    if len(order) != len(preds):
        cycle = _on_cycles(set(preds) - set(order), succs)
        raise ExportError(f"graph has a cycle through node(s) {', '.join(cycle)}; recurrent NIR graphs are "
                          f"not supported")
    return order


SPIKING_NODES = (nir.LIF, nir.IF, nir.CubaLIF)


def recurrent_edges(graph) -> List[Tuple[str, str]]:
    """Edges out of a spiking node (LIF, IF, CubaLIF) that lead back to it: the recurrent paths of a graph.

    Such an edge carries the spikes of the *previous* step (zero before the first), as snnTorch's ``RLeaky`` /
    ``RSynaptic`` compute ``V(spk[t-1])``; every other edge carries the current step's values.
    """
    succs: Dict[str, List[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        if src in succs and dst in succs:
            succs[src].append(dst)
    found = []
    for src, dst in graph.edges:
        if not isinstance(graph.nodes.get(src), SPIKING_NODES):
            continue
        seen, stack = set(), [dst]
        while stack:
            n = stack.pop()
            if n == src:
                found.append((src, dst))
                break
            if n not in seen:
                seen.add(n)
                stack.extend(succs.get(n, []))
    return found


def execution_order(graph) -> Tuple[List[str], List[Tuple[str, str]]]:
    """(node order for one time step, recurrent edges): the order of the graph without its recurrent edges
    (:func:`recurrent_edges`). A cycle with no spiking node on it (an algebraic loop) raises ExportError."""
    delayed = recurrent_edges(graph)
    forward = [e for e in graph.edges if tuple(e) not in set(delayed)]
    try:
        order = topological_order(_Edges(graph.nodes, forward))
    except ExportError as exc:
        raise ExportError(str(exc).replace("recurrent NIR graphs are not supported",
                                           "a cycle needs a spiking node (LIF, IF, CubaLIF) on it")) from None
    return order, delayed


@dataclass(frozen=True)
class _Edges:
    """A graph's nodes with a subset of its edges (what topological_order reads)."""

    nodes: Mapping[str, Any]
    edges: List[Tuple[str, str]]


def _on_cycles(left: set, succs: Dict[str, List[str]]) -> List[str]:
    """Of the nodes Kahn's algorithm could not order, those on a cycle (drop the ones merely downstream)."""
    left = set(left)
    while True:
        sinks = {n for n in left if not any(d in left for d in succs[n])}
        if not sinks:
            return sorted(left)
        left -= sinks


def predecessors(graph) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        out[dst].append(src)
    return out


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------

def write_nir(graph, path) -> Path:
    """Write ``graph`` to ``path`` (HDF5) atomically: a crash leaves the old file or the new one.

    The HDF5 file is built in memory and its bytes written by Python: HDF5's C library writing straight to a
    full disk crashed the process (segfault, h5py 3.16), where a Python write raises ENOSPC, which
    :func:`~slt_deploy.utils.atomic_path` turns into one line naming the file.
    """
    path = Path(path)
    check_output_path(path)
    buffer = io.BytesIO()
    try:
        nir.write(buffer, graph)
    except (TypeError, ValueError) as exc:  # h5py refuses a metadata value (e.g. None, a list of str)
        raise ExportError(f"{path}: cannot write NIR graph: {str(exc).splitlines()[0]}") from None
    write_bytes_atomic(path, buffer.getvalue())
    return path


_TYPE_MISMATCH = re.compile(r"type mismatch: (.+)\.output: (\[[^a-z]*?\]+) -> (.+)\.input: (\[[^a-z]*?\]+)")


def _dims(text: str) -> str:
    return "(" + ", ".join(re.findall(r"\d+", text)) + ")"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failing_node(path: Path) -> str:
    """Why NIR cannot build the graph, naming the node: ``nir.read`` reports neither the node nor, for its
    asserts (unknown type tag, parameters of different shapes), any reason at all."""
    from nir.serialization import hdf2dict

    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                return "not a NIR graph (no 'node' group)"
            nodes = hdf2dict(f["node"]).get("nodes", {})
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # h5py on a damaged object header
        return f"corrupt HDF5 structure ({_first_line(exc)})"
    known = set(nir.ir.__all__)
    for name, data in nodes.items():
        tag = data.get("type") if isinstance(data, dict) else None
        if tag not in known:
            return f"node {name!r} has unknown NIR type {tag!r}"
        try:
            nir.dict2NIRNode(dict(data))  # a copy: some from_dict methods edit their argument
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            return f"node {name!r} ({tag}) is invalid: {_first_line(exc)}"
    return "not a valid NIR graph"


_LENIENT_HINT = "; they differ only by unit dimensions: --lenient (lenient=True) reads it"


def _unit_dims_only(a: str, b: str) -> bool:
    return [d for d in re.findall(r"\d+", a) if d != "1"] == [d for d in re.findall(r"\d+", b) if d != "1"]


def _unit_dims_repairs(graph, path: Path) -> List[str]:
    """Edges whose declared shapes differ only by dimensions of size 1 (``(1,)`` vs ``(1, 1, 1)``, as some
    exporters write their Output): the node downstream adopts the upstream shape. Any other difference is
    refused in one line. Returns one line per repair."""
    def shape(types) -> Optional[Tuple[int, ...]]:
        value = next(iter(types.values()), None) if types else None
        return None if value is None else tuple(int(d) for d in np.asarray(value).ravel())

    repairs = []
    for src, dst in graph.edges:
        out, into = shape(graph.nodes[src].output_type), shape(graph.nodes[dst].input_type)
        if out is None or into is None or out == into:
            continue
        if [d for d in out if d != 1] != [d for d in into if d != 1]:
            raise ExportError(f"{path}: shape mismatch on edge {src} -> {dst}: {src} outputs shape {out} but {dst} "
                              f"expects {into} (not only unit dimensions, so --lenient does not repair it)")
        node = graph.nodes[dst]
        key = next(iter(node.input_type))
        node.input_type = {**node.input_type, key: np.array(out)}
        if isinstance(node, nir.Output):
            node.output_type = {k: np.array(out) for k in node.output_type}
        repairs.append(f"node {dst!r} declared input shape {into}, its source {src!r} gives {out}: read as {out} "
                       f"(they differ only by unit dimensions)")
    return repairs


def read_nir(path, lenient: bool = False):
    """Read a NIR file with NIR's type check, and turn every failure into one ExportError naming the file.

    What ``nir.read`` raises: OSError (h5py: not HDF5, truncated), RuntimeError (h5py: damaged structure),
    KeyError (a group or field missing), AssertionError (unknown type tag, parameters of unequal shapes),
    TypeError (fields that do not fit the type), ValueError (type check: shapes of connected nodes).
    It accepts NaN weights and cycles, which are checked here. ``lenient``: shapes that differ only by unit
    dimensions are repaired (each repair is issued as a warning) instead of refused.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such NIR file")
    if not h5py.is_hdf5(path):
        raise ExportError(f"{path}: not a NIR file (not HDF5)")
    check_nir_file(path)  # declared sizes and structure, before nir.read allocates anything
    try:
        try:
            graph = nir.read(path, type_check=True)
        except ValueError as exc:
            if not (lenient and _TYPE_MISMATCH.search(_first_line(exc))):
                raise
            graph = nir.read(path, type_check=False)
            for line in _unit_dims_repairs(graph, path):
                warnings.warn(f"{path}: {line}", stacklevel=2)
    except (OSError, RuntimeError) as exc:
        raise ExportError(f"{path}: corrupt or truncated HDF5 file ({_first_line(exc)})") from None
    except ValueError as exc:
        m = _TYPE_MISMATCH.search(_first_line(exc))
        if m:
            raise ExportError(f"{path}: shape mismatch on edge {m.group(1)} -> {m.group(3)}: {m.group(1)} outputs "
                              f"shape {_dims(m.group(2))} but {m.group(3)} expects {_dims(m.group(4))}"
                              f"{_LENIENT_HINT if _unit_dims_only(m.group(2), m.group(4)) else ''}") from None
        raise ExportError(f"{path}: {_failing_node(path)} ({_first_line(exc)})") from None
    except (AssertionError, AttributeError, KeyError, TypeError):
        raise ExportError(f"{path}: {_failing_node(path)}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ExportError(f"{path}: holds a single {type(graph).__name__} node, not a NIR graph")
    check_nir_graph(graph, path)  # finite and in-range parameters, typed metadata
    try:
        execution_order(graph)  # cycles through a spiking node are recurrent layers; any other cycle is refused
    except ExportError as exc:
        raise ExportError(f"{path}: {exc}") from None
    return graph


# ---------------------------------------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------------------------------------

def _shape_str(types) -> str:
    if not types:
        return "?"
    value = next(iter(types.values()))
    return "?" if value is None else "x".join(str(int(d)) for d in np.asarray(value).ravel())


def _range(arr) -> str:
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size == 0:
        return "-"
    lo, hi = float(a.min()), float(a.max())
    return f"{lo:.4g}" if lo == hi else f"{lo:.4g}..{hi:.4g}"


def _beta(tau, dt: float) -> str:
    return _range(1 - dt / np.asarray(tau, dtype=np.float64))


# node type -> (node, dt, reset) -> the "neuron" column of describe_nir
_SUMMARIES: Dict[type, Callable[[Any, float, str], str]] = {
    nir.LIF: lambda n, dt, reset: f"beta={_beta(n.tau, dt)} thr={_range(n.v_threshold)} reset={reset}",
    nir.IF: lambda n, dt, reset: f"beta=1 thr={_range(n.v_threshold)} reset={reset}",
    nir.CubaLIF: lambda n, dt, reset: (f"alpha={_beta(n.tau_syn, dt)} beta={_beta(n.tau_mem, dt)} "
                                       f"thr={_range(n.v_threshold)} reset={reset}"),
    nir.LI: lambda n, dt, reset: f"beta={_beta(n.tau, dt)} (no spikes)",
    nir.Threshold: lambda n, dt, reset: f"thr={_range(n.threshold)}",
}


def _neuron_summary(node, graph_dt: float) -> str:
    summary = _SUMMARIES.get(type(node))
    if summary is None:
        return str((node.metadata or {}).get("readout", ""))
    meta = node.metadata or {}
    return summary(node, float(meta.get("dt", graph_dt)), str(meta.get("reset", "zero")))


def describe_nir(graph) -> List[Dict[str, Any]]:
    """One row per node (in execution order) for ``slt-deploy inspect``.

    Sparsity and binary-ness are computed from the stored weights (so they also work for graphs written by
    other tools); ``neuron`` summarizes beta (= 1 - dt/tau), threshold and reset mode.
    """
    graph_dt = float((graph.metadata or {}).get("dt", DEFAULT_DT))
    try:
        order = topological_order(graph)
    except ExportError:
        order = list(graph.nodes)
    rows = []
    for name in order:
        node = graph.nodes[name]
        weight = getattr(node, "weight", None)
        stats = weight_stats(weight) if isinstance(weight, np.ndarray) else None
        rows.append({
            "name": name,
            "type": type(node).__name__,
            "shape": f"{_shape_str(node.input_type)} -> {_shape_str(node.output_type)}",
            "params": int(weight.size) if stats is not None else 0,
            "sparsity": None if stats is None else 1.0 - stats["density"],
            "binary": None if stats is None else bool(stats["binary"]),
            "neuron": _neuron_summary(node, graph_dt),
        })
    return rows


_COLUMNS = (("name", "node"), ("type", "type"), ("shape", "shape (in -> out)"), ("params", "weights"),
            ("sparsity", "sparsity"), ("binary", "binary"), ("neuron", "neuron / note"))


def _cell(key: str, value) -> str:
    if value is None or (key == "params" and value == 0):
        return "-"
    if key == "sparsity":
        return f"{100 * value:.1f}%"
    if key == "binary":
        return "yes" if value else "no"
    return str(value)


def format_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`describe_nir` rows."""
    cells = [[title for _, title in _COLUMNS]]
    cells += [[_cell(key, row.get(key)) for key, _ in _COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
