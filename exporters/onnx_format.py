"""ONNX export of a ticket: its ANN twin, the SNN unrolled over time, and MAC counts read from the graph.

- :func:`ann_twin`: the ticket's architecture and (masked) weights with every LIF neuron replaced by ReLU, one
  forward pass per image. It is not a trained ANN; it exists to compare costs (dense vs effective MACs) and
  to run the same sparse topology on ONNX edge runtimes.
- :func:`export_onnx` / :func:`check_onnx`: write a module as ONNX (dynamic batch axis, metadata, written
  atomically) and verify it against torch in onnxruntime.
- :func:`export_snn_unrolled_onnx`: the spiking network unrolled over T steps, Heaviside spikes, checked
  against snnTorch.
- :func:`onnx_macs` / :func:`analytical_macs`: per-layer MAC counts from the ONNX graph and, for the
  cross-check, from the torch module.

MAC definitions (per sample, one forward pass; biases are not counted, as in NeuroBench):

- Conv:  ``dense = P * C_out * (C_in / groups) * kH * kW = P * numel(W)``,
  ``effective = P * nnz(W)``, where ``P`` is the number of output positions (product of the output spatial
  dims). Inputs are assumed dense and nonzero, padding taps included, so ``effective / dense`` is exactly
  the layer's weight density and a dense layer has ``effective == dense``. NeuroBench's *activation-aware*
  effective ops (zero inputs and padding taps skipped) need recorded activity and belong to the simulator.
- Gemm (Linear): ``dense = in * out = numel(W)``, ``effective = nnz(W)``.
- MatMul with a constant weight ``(K, N)``: ``dense = R * K * N``, ``effective = R * nnz(W)``, where ``R`` is
  the number of rows per sample (product of the output dims between batch and last).
- MatMul of two activations (spiking self-attention: ``q @ k^T``, ``attn @ v``): no weight to be sparse, so
  ``dense = effective = numel(output) * K`` per sample, with ``K`` the contracted dimension; weight counts 0.
- BatchNorm: 0 MACs. torch's exporter folds it into the preceding conv in eval mode (the folded weights keep
  the mask's zeros as long as no BN scale is exactly zero); a BatchNormalization node that remains (no conv
  before it) is an elementwise affine map and is not a synaptic operation. Pooling, ReLU, Add and other
  elementwise or data-movement ops are 0 MACs too.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import snntorch as snn
import torch
from torch import nn

from slt_deploy.errors import ExportError
from slt_deploy.limits import check_elements, limits, short
from slt_deploy.models import ResidualBlock, SpikingNet
from slt_deploy.threads import session_options
from slt_deploy.utils import atomic_path

TOLERANCE = 1e-5          # max abs difference accepted between onnxruntime and torch
INPUT_NAME, OUTPUT_NAME = "input", "logits"
_CHECK_SEED = 20240611    # fixed, so an export check is reproducible


# --------------------------------------------------------------------------------------------------------
# Module conversion: one rule per module type
# --------------------------------------------------------------------------------------------------------

def _keep(module: nn.Module, name: str) -> nn.Module:
    return module


# Exact types (not isinstance): a subclass may override forward() with something the exporter cannot see.
# Containers are walked into; their children are converted by the same table.
_PASSTHROUGH = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.Flatten, nn.ReLU,
                nn.Identity, nn.Dropout)
_CONTAINERS = (nn.Sequential, nn.ModuleList, ResidualBlock)


def _declared_traceable(module: nn.Module) -> bool:
    """A model's own module may declare ``onnx_traceable = True`` in its class body (not inherited, for the
    reason above): its forward is plain torch ops on its own tensors and children (e.g. the spikformer's
    attention), so it is walked into like a container; its children are checked by the same table and the
    neurons among them converted wherever they sit."""
    return vars(type(module)).get("onnx_traceable", False) is True


def _convert(body: nn.Module, neuron_rule: Callable[[snn.Leaky, str], nn.Module],
             neurons: Tuple[type, ...] = (snn.Leaky,)) -> nn.Module:
    """A deep copy of ``body`` with every neuron of the types ``neurons`` replaced by ``neuron_rule(leaky, name)``.

    The original is never modified. Raises :class:`ExportError` naming the first unsupported layer.
    """
    rules: Dict[type, Callable[[nn.Module, str], nn.Module]] = {t: _keep for t in _PASSTHROUGH + _CONTAINERS}
    rules.update({t: neuron_rule for t in neurons})
    _check_supported(body, rules)
    _check_finite(body)
    out = copy.deepcopy(body)
    for name, module in list(out.named_modules()):
        if type(module) in neurons:
            _set_submodule(out, name, neuron_rule(module, name))
    return out.eval()


def _check_supported(body: nn.Module, rules: Dict[type, Callable]) -> None:
    for name, module in body.named_modules():
        if type(module) not in rules and not _declared_traceable(module):
            supported = ", ".join(sorted(t.__name__ for t in rules))
            raise ExportError(f"layer {name or '(root)'!r} ({type(module).__name__}) is not supported by the "
                              f"ONNX exporter; supported: {supported} (and model modules whose class declares "
                              f"onnx_traceable = True)")


def _check_finite(module: nn.Module) -> None:
    """NaN/inf weights would export silently and poison every count downstream."""
    for name, sub in module.named_modules():
        tensors = list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False))
        for tname, t in tensors:
            if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
                raise ExportError(f"layer {name or '(root)'!r}: {tname} has NaN or infinite values")


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def _body_of(model_or_ticket) -> Tuple[nn.Module, Dict[str, str]]:
    """(body, metadata) of a Ticket, a SpikingNet or a bare body module."""
    from slt_deploy.ticket import Ticket

    from slt_deploy.models.user import as_sequential  # a user's class network: its one-step layer chain

    if isinstance(model_or_ticket, Ticket):
        return as_sequential(model_or_ticket.build_model().body), _ticket_meta(model_or_ticket)
    if isinstance(model_or_ticket, SpikingNet):
        return as_sequential(model_or_ticket.body), {"model": model_or_ticket.config.name}
    if isinstance(model_or_ticket, nn.Module):
        return model_or_ticket, {}
    raise ExportError(f"expected a Ticket, SpikingNet or torch module, got {type(model_or_ticket).__name__}")


def _ticket_meta(ticket) -> Dict[str, str]:
    rec = ticket.record
    return {"model": rec.model.name, "method": rec.method, "sparsity": f"{rec.sparsity:.6f}"}


# --------------------------------------------------------------------------------------------------------
# ANN twin
# --------------------------------------------------------------------------------------------------------

class AnnTwin(nn.Module):
    """``logits = body(x)`` for a (B, C, H, W) image; ``meta`` says where the weights came from."""

    def __init__(self, body: nn.Module, meta: Optional[Dict[str, str]] = None):
        super().__init__()
        self.body = body
        self.meta = dict(meta or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _relu(leaky: snn.Leaky, name: str) -> nn.Module:
    return nn.ReLU()


def ann_twin(model_or_ticket) -> AnnTwin:
    """The ANN counterpart of a spiking model or ticket, in eval mode.

    Same layers, same masked weights and BatchNorm statistics; every ``snn.Leaky`` or ``snn.Synaptic`` (inside
    residual blocks too) becomes ``nn.ReLU`` and the network runs once on the image instead of T times. An
    ``snn.RLeaky`` / ``snn.RSynaptic`` becomes ``nn.ReLU`` too, its recurrent weight dropped: run once there is no
    previous step, so the ANN counterpart of a recurrent layer is feed-forward (as ``model.spiking=false`` builds
    a recurrent mlp); ``meta["recurrence_dropped"]`` names those layers.
    """
    body, meta = _body_of(model_or_ticket)
    dropped = [name for name, m in body.named_modules() if type(m) in (snn.RLeaky, snn.RSynaptic)]
    if dropped:
        meta = {**meta, "recurrence_dropped": ", ".join(dropped)}
    return AnnTwin(_convert(body, _relu, (snn.Leaky, snn.RLeaky, snn.Synaptic, snn.RSynaptic)), meta).eval()


# --------------------------------------------------------------------------------------------------------
# Export and check
# --------------------------------------------------------------------------------------------------------

def export_onnx(module: nn.Module, input_shape: Sequence[int], path: Union[str, Path], *, opset: int = 17,
                metadata: Optional[Dict[str, object]] = None, tolerance: float = TOLERANCE) -> Path:
    """Write ``module`` (eval mode) as ONNX with a dynamic batch axis and check it in onnxruntime.

    ``input_shape`` is one sample's shape, e.g. (C, H, W). ``metadata`` (e.g. source ticket, sparsity) goes
    into the model's ``metadata_props``, plus the conv/linear weight sparsity measured here. The file appears
    only if ``onnx.checker`` passes and onnxruntime matches torch within ``tolerance`` on a random batch.
    """
    _check_finite(module)
    props = {"slt_deploy.weight_sparsity": f"{_weight_sparsity(module):.6f}", **(metadata or {})}
    dummy = _random_input((2, *input_shape), seed=0)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with atomic_path(path) as tmp:
        _torch_export(module, dummy, tmp, opset, axes)
        _finish(tmp, props)
        _require_close(module, tmp, _random_input((3, *input_shape), seed=_CHECK_SEED), tolerance, path)
    return Path(path)


# torch >= 2.9 defaults to the dynamo exporter (which needs onnxscript); the TorchScript exporter is what
# torch 2.3 (Lava's pin) uses, so ask for it explicitly where the argument exists: one exporter on every torch.
_TORCHSCRIPT_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _torch_export(module: nn.Module, example: torch.Tensor, tmp: Path, opset: int, axes: dict) -> None:
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            # EVAL training mode lets the exporter fold BatchNorm into the preceding conv
            torch.onnx.export(module, (example,), str(tmp), opset_version=opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True,
                              training=torch.onnx.TrainingMode.EVAL, **_TORCHSCRIPT_EXPORTER)
    except OSError as exc:
        if exc.errno is None:
            raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {_first_line(exc)}") from None
        raise  # full disk, permissions: atomic_path names the output file
    except Exception as exc:  # the exporter raises many types; the first line names the failing op
        raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {_first_line(exc)}") from None
    finally:
        module.train(was_training)


def _finish(tmp: Path, props: Dict[str, object]) -> None:
    """Add metadata_props, save, and run the ONNX checker on the saved file."""
    import onnx

    model = onnx.load(str(tmp))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(tmp))
    try:
        onnx.checker.check_model(str(tmp))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX graph is invalid: {_first_line(exc)}") from None


def _require_close(module: nn.Module, tmp: Path, x: torch.Tensor, tolerance: float, path) -> None:
    """Refuse an export whose onnxruntime output differs from torch by more than ``tolerance`` times the
    output scale (max(1, max |output|)): an absolute 1e-5 on logits of order 1, and the same float32
    relative precision on the large logits of an ANN twin whose ReLUs, unlike the LIF thresholds of the
    network it mirrors, leave activations unbounded."""
    diff, scale = _difference(module, tmp, x)
    if not diff <= tolerance * max(1.0, scale):  # also catches NaN
        raise ExportError(f"{path}: onnxruntime output differs from torch by {diff:.3g} "
                          f"(> {tolerance:g} x output scale {max(1.0, scale):.3g})")


def check_onnx(module: nn.Module, path: Union[str, Path], x: torch.Tensor) -> float:
    """Max absolute difference between onnxruntime (CPU) and torch (eval mode, no grad) on input ``x``.

    The module is run on a deep copy so that neither its mode nor any neuron state changes.
    """
    return _difference(module, path, x)[0]


def _difference(module: nn.Module, path: Union[str, Path], x: torch.Tensor) -> Tuple[float, float]:
    """(max |onnxruntime - torch|, max |torch output|)."""
    ref = copy.deepcopy(module).eval()
    with torch.no_grad():
        expected = ref(x).detach().cpu().numpy()
    got = run_onnx(path, x.detach().cpu().numpy())
    if got.shape != expected.shape:
        raise ExportError(f"{path}: onnxruntime output shape {got.shape} != torch output shape {expected.shape}")
    if not got.size:
        return 0.0, 0.0
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    return diff, float(np.max(np.abs(expected)))


def run_onnx(path: Union[str, Path], x: np.ndarray) -> np.ndarray:
    """The first output of the ONNX model at ``path`` for input ``x`` (onnxruntime, CPUExecutionProvider)."""
    import onnxruntime as ort

    options = session_options(ort.SessionOptions())  # the toolkit's thread counts (slt_deploy/threads.py)
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ExportError(f"{path}: onnxruntime cannot run this model ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _random_input(shape: Sequence[int], seed: int) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=torch.Generator().manual_seed(seed))


def _weight_sparsity(module: nn.Module) -> float:
    """Zero weights / all weights of the conv and linear layers (NeuroBench's ConnectionSparsity)."""
    weights = [m.weight.detach() for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


def export_ticket_onnx(ticket_path: Union[str, Path], path: Union[str, Path], *, opset: int = 17) -> Path:
    """Load a ticket file and write its ANN twin as ONNX, with the ticket's facts as metadata."""
    from slt_deploy.ticket import Ticket

    ticket = Ticket.load(ticket_path)
    twin = ann_twin(ticket)
    meta = {"slt_deploy.source_ticket": str(ticket_path), **{f"slt_deploy.{k}": v for k, v in twin.meta.items()}}
    return export_onnx(twin, ticket.record.model.input_shape, path, opset=opset, metadata=meta)


# --------------------------------------------------------------------------------------------------------
# Unrolled SNN
# --------------------------------------------------------------------------------------------------------

class HeavisideLeaky(nn.Module):
    """snnTorch ``Leaky`` (``init_hidden=True``, ``reset_delay=True``) with a Heaviside spike, ONNX-traceable.

    Per step, with ``U`` the membrane before the step, ``S(v) = 1[v - theta > 0] * g``:

    - ``R = 1[U - theta > 0]`` (the previous step's spike, detached);
    - zero reset:      ``U' = beta * (1 - R) * U + I``;
    - subtract reset:  ``U' = beta * U + I - R * theta``;
    - no reset:        ``U' = beta * U + I``;
    - output ``S(U')``.

    This is snnTorch's forward with ``surrogate_disable=True`` (the surrogate only changes the backward
    pass). It is re-written rather than traced through because snnTorch keeps the membrane in a buffer that
    ``reset_mem`` re-creates from the previous call's tensor (a trace would bake in the example's batch size)
    and fires through an autograd Function. Here the state lives in a plain attribute for the length of one
    unrolled forward, starting from ``None`` (zero). Equality with snnTorch is checked at every export.
    """

    _RESETS = {"zero", "subtract", "none"}

    def __init__(self, leaky: snn.Leaky, name: str):
        super().__init__()
        flags = {"inhibition": leaky.inhibition, "state_quant": bool(leaky.state_quant),
                 "output=True": leaky.output, "reset_delay=False": not leaky.reset_delay,
                 f"reset_mechanism={leaky._reset_mechanism}": leaky._reset_mechanism not in self._RESETS}
        unsupported = [flag for flag, on in flags.items() if on]
        if unsupported:
            raise ExportError(f"layer {name!r}: Leaky option(s) {', '.join(unsupported)} are not supported by the "
                              f"unrolled ONNX exporter")
        self.reset_mechanism = leaky._reset_mechanism
        self.register_buffer("beta", leaky.beta.detach().clamp(0, 1).clone())
        self.register_buffer("threshold", leaky.threshold.detach().clone())
        self.register_buffer("graded", torch.as_tensor(leaky.graded_spikes_factor).detach().clone())
        self.mem: Optional[torch.Tensor] = None

    def reset_state(self) -> None:
        self.mem = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.mem is None:
            mem = current  # U = 0 before the first step: beta * 0 + I == I exactly, and no reset
        else:
            reset = (self.mem - self.threshold > 0).to(current.dtype)
            if self.reset_mechanism == "zero":
                mem = self.beta * ((1 - reset) * self.mem) + current
            elif self.reset_mechanism == "subtract":
                mem = self.beta * self.mem + current - reset * self.threshold
            else:
                mem = self.beta * self.mem + current
        self.mem = mem
        return (mem - self.threshold > 0).to(current.dtype) * self.graded


class UnrolledSNN(nn.Module):
    """(T, B, C, H, W) -> (T, B, classes): the body run for exactly ``timesteps`` steps from zero state."""

    def __init__(self, body: nn.Module, timesteps: int):
        super().__init__()
        self.body = body
        self.timesteps = timesteps

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        for module in self.body.modules():
            if isinstance(module, HeavisideLeaky):
                module.reset_state()
        return torch.stack([self.body(x_seq[t]) for t in range(self.timesteps)])


def export_snn_unrolled_onnx(spiking_model, input_shape: Sequence[int], timesteps: int, path: Union[str, Path],
                             *, opset: int = 17, metadata: Optional[Dict[str, object]] = None,
                             tolerance: float = TOLERANCE) -> Path:
    """Write the spiking network unrolled over ``timesteps`` as ONNX: input (T, B, C, H, W), output the
    per-step logits (T, B, classes); batch is dynamic, T is fixed.

    Spikes use the Heaviside forward (see :class:`HeavisideLeaky`). The file appears only if onnxruntime
    reproduces the snnTorch model (a deep copy in eval mode) within ``tolerance`` on a random batch.
    """
    if int(timesteps) < 1:
        raise ExportError(f"timesteps={timesteps} must be >= 1")
    from slt_deploy.ticket import Ticket

    if isinstance(spiking_model, Ticket):
        reference, meta = spiking_model.build_model(), _ticket_meta(spiking_model)
    elif isinstance(spiking_model, SpikingNet):
        reference, meta = spiking_model, {"model": spiking_model.config.name}
    else:
        raise ExportError(f"expected a Ticket or SpikingNet, got {type(spiking_model).__name__}")
    body = reference.body
    unrolled = UnrolledSNN(_convert(body, HeavisideLeaky), int(timesteps)).eval()
    props = {"slt_deploy.timesteps": str(timesteps), "slt_deploy.neuron": "snntorch.Leaky, Heaviside spike",
             "slt_deploy.weight_sparsity": f"{_weight_sparsity(body):.6f}",
             **{f"slt_deploy.{k}": v for k, v in meta.items()}, **(metadata or {})}
    shape = (int(timesteps), 2, *input_shape)
    axes = {INPUT_NAME: {1: "batch"}, OUTPUT_NAME: {1: "batch"}}
    with atomic_path(path) as tmp:
        _torch_export(unrolled, _random_input(shape, seed=0), tmp, opset, axes)
        _finish(tmp, props)
        _require_close(reference, tmp, _random_input(shape, seed=_CHECK_SEED), tolerance, path)
    return Path(path)


# --------------------------------------------------------------------------------------------------------
# MAC counts
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerMACs:
    """MACs of one conv/linear layer for one sample (see the module docstring for the definitions)."""

    name: str                    # torch module path, e.g. "body.conv1" (ONNX node "/body/conv1/Conv")
    op_type: str                 # ONNX op: Conv, Gemm or MatMul
    dense_macs: int
    effective_macs: int
    weight_count: int
    nonzero_weights: int
    output_shape: Tuple[int, ...]  # one sample's output, batch dimension left out


def total_macs(layers: Iterable[LayerMACs]) -> Tuple[int, int]:
    """(dense, effective) MACs summed over layers."""
    layers = list(layers)
    return sum(l.dense_macs for l in layers), sum(l.effective_macs for l in layers)


# Ops with no synaptic (weight x input) products; see the module docstring for BatchNormalization.
_ZERO_MAC_OPS = frozenset({
    "Relu", "Add", "Sub", "Mul", "Div", "Neg", "Greater", "Less", "Cast", "Where", "Clip", "Sigmoid",
    "AveragePool", "GlobalAveragePool", "ReduceMean", "BatchNormalization", "Flatten", "Reshape", "Squeeze",
    "Unsqueeze",
    "Concat", "Split", "Slice", "Gather", "Transpose", "Identity", "Constant", "ConstantOfShape", "Shape",
    "Expand", "Dropout",
})


@dataclass(frozen=True)
class _Graph:
    """What a handler needs: constant tensors and static per-value shapes (batch = 1)."""

    constants: Dict[str, np.ndarray]
    shapes: Dict[str, Tuple[int, ...]]
    source: str


def onnx_macs(path_or_model) -> List[LayerMACs]:
    """Per-layer MACs of every Conv, Gemm and MatMul node of an ONNX model (a path or a ``ModelProto``).

    Shapes come from ``onnx.shape_inference.infer_shapes`` with every dynamic input dimension set to 1, so
    the counts are per sample. Weights are read from initializers (or Constant nodes). Other ops count 0
    MACs if they are in the known elementwise/data-movement set, otherwise :class:`ExportError`.
    """
    model, source = _load_onnx(path_or_model)
    _check_ops(model, source)
    graph = _static_graph(model, source)
    return [_MAC_HANDLERS[node.op_type](node, _layer_name(node, index), graph)
            for index, node in enumerate(model.graph.node) if node.op_type in _MAC_HANDLERS]


def _check_ops(model, source: str) -> None:
    """Refuse a graph with an op we cannot count, before spending time on shape inference."""
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _MAC_HANDLERS and node.op_type not in _ZERO_MAC_OPS:
            raise ExportError(f"{source}: node {node.name or index!r} has op type {node.op_type}, which MAC "
                              f"counting does not support")


def _load_onnx(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, "<ModelProto>"
    path = Path(path_or_model)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    cap = 8 * limits().max_elements  # bytes: the element limit in float64
    if path.stat().st_size > cap:
        raise ExportError(f"{path}: ONNX file of {path.stat().st_size:,} bytes is larger than the limit of {cap:,} "
                          f"(slt-deploy --max-elements)")
    try:
        # external data is never followed: a model file could name any file on the machine as its weights
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)  # protobuf parses many non-ONNX byte strings without complaint
    except Exception as exc:  # DecodeError, ValidationError, ...: all mean "not a valid ONNX model"
        raise ExportError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    _check_declared_sizes(model, path)
    return model, str(path)


def _check_declared_sizes(model, path: Path) -> None:
    """Initializers and inputs declare their shapes: refuse external data and sizes above the element limit
    before numpy_helper or shape inference allocates them."""
    import onnx

    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ExportError(f"{path}: initializer {short(t.name)} keeps its data in an external file; "
                              f"slt-deploy reads self-contained ONNX files only")
        if any(d < 0 for d in t.dims):
            raise ExportError(f"{path}: initializer {short(t.name)} has a negative dimension")
        check_elements(math.prod(t.dims), str(path), f"initializer {short(t.name)}")
    for value in model.graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim if d.HasField("dim_value")]
        check_elements(math.prod(dims), str(path), f"input {short(value.name)}")


def _static_graph(model, source: str) -> _Graph:
    import onnx
    from onnx import numpy_helper

    model = copy.deepcopy(model)
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1  # the batch axis (or any symbolic dim): count per sample
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"{source}: ONNX shape inference failed ({_first_line(exc)})") from None
    constants = {t.name: numpy_helper.to_array(t) for t in inferred.graph.initializer}
    for node in inferred.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return _Graph(constants, shapes, source)


def _layer_name(node, index: int) -> str:
    """torch names nodes '/body/conv1/Conv' after the module path: give back 'body.conv1'."""
    name = node.name
    if name.startswith("/") and name.endswith("/" + node.op_type):
        return name[1:-len(node.op_type) - 1].replace("/", ".") or "(root)"
    return name or f"{node.op_type}_{index}"


def _weight(node, position: int, graph: _Graph) -> np.ndarray:
    if len(node.input) <= position or node.input[position] not in graph.constants:
        raise ExportError(f"{graph.source}: node {node.name!r} ({node.op_type}) has no constant weight "
                          f"input; cannot count its MACs")
    return graph.constants[node.input[position]]


def _output_shape(node, graph: _Graph) -> Tuple[int, ...]:
    shape = graph.shapes.get(node.output[0])
    if shape is None:
        raise ExportError(f"{graph.source}: node {node.name!r} ({node.op_type}) has no static output shape")
    return shape[1:]  # drop the batch axis (1)


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv_macs(node, name: str, graph: _Graph) -> LayerMACs:
    """Conv: W is (C_out, C_in/groups, kH, kW), output (C_out, *spatial);
    dense = prod(spatial) * numel(W), effective = prod(spatial) * nnz(W)."""
    w = _weight(node, 1, graph)
    out = _output_shape(node, graph)
    positions = math.prod(out[1:])
    nnz = int(np.count_nonzero(w))
    return LayerMACs(name, "Conv", positions * w.size, positions * nnz, int(w.size), nnz, out)


def _gemm_macs(node, name: str, graph: _Graph) -> LayerMACs:
    """Gemm Y = A' B' + C with A the (1, in) activation and B the weight, stored (in, out), or (out, in) when
    transB=1: dense = in * out = numel(B), effective = nnz(B)."""
    if _attr(node, "transA", 0) or node.input[0] in graph.constants:
        raise ExportError(f"{graph.source}: node {node.name!r} (Gemm) has its weight as input A; only "
                          f"activation x weight Gemms are counted")
    w = _weight(node, 1, graph)
    nnz = int(np.count_nonzero(w))
    return LayerMACs(name, "Gemm", int(w.size), nnz, int(w.size), nnz, _output_shape(node, graph))


def _matmul_macs(node, name: str, graph: _Graph) -> LayerMACs:
    """MatMul X (..., K) @ W (K, N): dense = R * K * N, effective = R * nnz(W), R = rows per sample;
    X (..., M, K) @ Y (..., K, N), both activations: dense = effective = numel(output) * K."""
    out = _output_shape(node, graph)
    if not any(i in graph.constants for i in node.input[:2]):
        left = graph.shapes.get(node.input[0])
        if left is None:
            raise ExportError(f"{graph.source}: node {node.name!r} (MatMul) has no static input shape")
        macs = math.prod(out) * left[-1]
        return LayerMACs(name, "MatMul", macs, macs, 0, 0, out)
    w = _weight(node, 1, graph)
    rows = math.prod(out[:-1])
    nnz = int(np.count_nonzero(w))
    return LayerMACs(name, "MatMul", rows * w.size, rows * nnz, int(w.size), nnz, out)


_MAC_HANDLERS: Dict[str, Callable[..., LayerMACs]] = {
    "Conv": _conv_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
}


def analytical_macs(module: nn.Module, input_shape: Sequence[int]) -> List[LayerMACs]:
    """The same per-layer counts computed from a (B, *input_shape) -> output torch module (e.g. the ANN twin)
    with forward hooks on one zero sample, in call order.

    Conv2d: ``P * numel(W)`` / ``P * nnz(W)``; Linear: ``R * numel(W)`` / ``R * nnz(W)`` with ``R`` the rows
    per sample (1 for a (B, in) input, reported as Gemm as torch exports it; MatMul otherwise).
    """
    records: List[LayerMACs] = []

    def hook(name):
        def record(layer, inputs, output):
            records.append(_torch_layer_macs(name or "(root)", layer, inputs[0], output))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros((1, *input_shape)))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return records


def _torch_layer_macs(name: str, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LayerMACs:
    w = layer.weight.detach()
    numel, nnz = w.numel(), int(torch.count_nonzero(w))
    out = tuple(y.shape[1:])
    if isinstance(layer, nn.Conv2d):
        repeats, op = math.prod(out[1:]), "Conv"
    else:
        repeats, op = math.prod(out[:-1]), ("Gemm" if x.dim() == 2 else "MatMul")
    return LayerMACs(name, op, repeats * numel, repeats * nnz, numel, nnz, out)
