"""Measure: run each network (and each ANN) on its first N test samples and count its activity on that run.

Takes :class:`~slt_deploy.report.networks.Network` and :class:`~slt_deploy.report.anns.AnnModel` objects; gives
:class:`Measured` / :class:`AnnMeasured`: per-sample counts (never assumed firing rates), the deployed synapse
layers and the measured accuracy. A ticket runs through its snnTorch model and
:func:`slt_deploy.cost.activity.count_snntorch`; a NIR graph through the reference executor
(:class:`slt_deploy.simulate.reference.NIRExecutor`), whose recordings go to
:func:`slt_deploy.cost.activity.count_from_spikes`; an ANN ticket through torch and the same counter; an ONNX file
through onnxruntime and :func:`slt_deploy.cost.onnx_activity.count_onnx`. The prediction is, as in training, the
argmax of the logits summed over time.
"""

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch

from ..cost.activity import NetworkActivity, SynapseLayer, count_from_spikes, count_snntorch, merge_activity, \
    nir_synapse_layer, previous_step
from ..cost.activity import synapse_layers as ticket_synapse_layers
from ..simulate.reference import NIRExecutor
from ..simulate.workload import encoded_test_samples, test_samples, ticket_data
from .anns import AnnModel
from .networks import Network


@dataclass(frozen=True)
class Measured:
    """What the run on N test samples gave: per-sample counts, the deployed layers, measured accuracy."""

    activity: NetworkActivity
    layers: Tuple[SynapseLayer, ...]
    accuracy: float
    samples: int


@dataclass(frozen=True)
class AnnMeasured:
    """The ANN's run on the same samples: accuracy, its activity and (ANN tickets) its deployed layers."""

    accuracy: float
    activity: Optional[NetworkActivity]
    layers: Tuple[SynapseLayer, ...] = ()


def _test_samples(net: Network, samples: int, progress: bool) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    if net.workload is not None:  # the file's values as given (a sequence: (B, T, ...), as event frames are)
        w = net.workload
        raw = w.values if w.values is not None else w.x
        yield torch.from_numpy(raw[:samples]), torch.from_numpy(w.y[:samples])
        return
    yield from test_samples(net.data, samples, progress, f"simulate {net.path.name}", str(net.path))


def encoded(net: Network, samples: int, progress: bool):
    if net.workload is not None:
        w = net.workload
        yield torch.from_numpy(w.x[:samples]).transpose(0, 1), torch.from_numpy(w.y[:samples])
        return
    yield from encoded_test_samples(net.data, samples, net.seed, progress, f"simulate {net.path.name}",
                                    str(net.path))


def _merged(parts: List[NetworkActivity]) -> NetworkActivity:
    # one batch is returned as counted: merging would multiply and divide by the batch size (rounding)
    return parts[0] if len(parts) == 1 else merge_activity(parts)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Prediction as in training: argmax of the logits summed over time."""
    return int((logits.sum(0).argmax(1) == y).sum())


def simulate(net: Network, samples: int, progress: bool = True, device=None) -> Measured:
    """Run the network on its first ``samples`` test samples; counts and accuracy come from that run, counted on
    ``device`` (a torch device; None: the CPU). A ticket runs there too; a NIR graph's executor runs on the CPU."""
    device = torch.device("cpu") if device is None else device
    return _simulate_ticket(net, samples, progress, device) if net.kind == "ticket" else \
        _simulate_nir(net, samples, progress, device)


def _simulate_ticket(net: Network, samples: int, progress: bool, device) -> Measured:
    model = net.ticket.build_model().to(device)
    logits: List[torch.Tensor] = []
    hook = model.register_forward_hook(lambda module, args, output: logits.append(output.detach()))
    parts, correct, n = [], 0, 0
    try:
        for x_seq, y in encoded(net, samples, progress):
            parts.append(count_snntorch(model, x_seq.to(device), source="snntorch"))  # the hook sees this run
            correct += _correct(logits.pop().cpu(), y)
            n += len(y)
    finally:
        hook.remove()
    layers = tuple(ticket_synapse_layers(model.cpu(), net.input_shape))
    return Measured(_merged(parts), layers, correct / n, n)


def _simulate_nir(net: Network, samples: int, progress: bool, device) -> Measured:
    executor = NIRExecutor(net.graph)
    chains = net.chains
    parts, correct, n, layers = [], 0, 0, None
    for x_seq, y in encoded(net, samples, progress):
        logits, trace = executor.run(x_seq, record=True)
        if layers is None:  # a layer's input shape is that of the recorded node feeding it
            layers = tuple(nir_synapse_layer(c, tuple(trace[c.tap].shape[2:]), str(net.path)) for c in chains)
        trace = {name: t.to(device) for name, t in trace.items()}
        inputs = {c.name: previous_step(trace[c.tap]) if c.recurrent else trace[c.tap] for c in chains}
        spikes = {c.target: trace[c.target] for c in chains if c.target is not None}
        parts.append(count_from_spikes(layers, inputs, spikes, source="nir-executor"))
        correct += _correct(logits, y)
        n += len(y)
    return Measured(_merged(parts), layers, correct / n, n)


def measure_ann(ann: AnnModel, net: Network, samples: int) -> AnnMeasured:
    """The ANN on the same test samples as the network.

    An ANN ticket runs in torch the way it was trained and evaluated (its own encoding and T, logits summed over
    time: for a direct-encoded input every step is the same, and the counter computes a layer with a constant
    real-valued input once, so this costs one pass), and its activity is counted by the SNN's own counter (its
    ReLU outputs are the populations' outputs). An ONNX file runs once per raw image in onnxruntime, with every
    Conv/Gemm/MatMul input recorded and counted by the same counter (:mod:`slt_deploy.cost.onnx_activity`).
    """
    from ..exporters.onnx_format import run_onnx

    correct, n, parts = 0, 0, []
    if ann.ticket is not None:
        model = ann.ticket.build_model()
        logits: List[torch.Tensor] = []
        hook = model.register_forward_hook(lambda m, a, o: logits.append(o.detach()))
        try:
            for x_seq, y in encoded_test_samples(ticket_data(ann.ticket), samples, ann.ticket.record.seed, False,
                                                 "ANN", str(ann.path)):
                parts.append(count_snntorch(model, x_seq, source="torch (ANN)"))
                correct += _correct(logits.pop(), y)
                n += len(y)
        finally:
            hook.remove()
        layers = tuple(ticket_synapse_layers(model, ann.input_shape))
        return AnnMeasured(correct / n, _merged(parts), layers)
    from ..cost.onnx_activity import count_onnx

    images = []
    for x, y in _test_samples(net, samples, progress=False):
        if x.dim() == 5:  # event frames (B, T, C, H, W): a frame-based ANN sees the event-count image
            x = x.sum(1)
        pred = torch.from_numpy(run_onnx(ann.path, x.numpy()))
        correct += int((pred.argmax(1) == y).sum())
        n += len(y)
        images.append(x.numpy())
    return AnnMeasured(correct / n, count_onnx(ann.path, images))
