"""NeuroBench 2.3.0's own metrics on the same snnTorch network and samples, next to the project's counts.

The network runs through NeuroBench's ``Benchmark`` (wrapped in its ``SNNTorchModel``) with its static metrics
``Footprint`` and ``ConnectionSparsity`` and its workload metrics ``SynapticOperations``,
``ActivationSparsity``, ``MembraneUpdates`` and ``ClassificationAccuracy``. Per layer, the same loop as
``SynapticOperations`` (NeuroBench's own ``single_layer_MACs`` on each connection hook) gives each layer's
effective ops and dense ops, so a per-layer comparison uses NeuroBench's arithmetic, not a copy of it.

Where the two differ by design: NeuroBench counts every layer at every call, so a direct-encoded first layer
costs T x its MACs; the deployment computes it once per sample on the host
(:mod:`slt_deploy.cost.activity`, ``computed_once``). :func:`compare_layers` says so per layer.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from .activity import NetworkActivity


class _BatchFirst(nn.Module):
    """NeuroBench feeds (batch, time, ...); a SpikingNet takes (time, batch, ...) and returns (T, B, classes)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        # NeuroBench's way: every layer called at every step, constant input or not (it counts each call)
        once = getattr(self.net, "compute_once", False)
        if once:
            self.net.compute_once = False
        try:
            return self.net(data.transpose(0, 1))
        finally:
            if once:
                self.net.compute_once = True


def neurobench_metrics(model: nn.Module, x_seq: torch.Tensor, labels: torch.Tensor) -> dict:
    """NeuroBench's metrics of ``model`` on the (T, B, ...) input ``x_seq``; per sample, as NeuroBench reports.

    Returns ``{"version", "metrics": {name: value}, "layers": {layer name: {"effective_macs",
    "effective_acs", "dense"}}}``, per sample.
    """
    import neurobench
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.abstract.workload_metric import AccumulatedMetric
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.utils.layers.macs import single_layer_MACs
    from neurobench.metrics.workload import (ActivationSparsity, ClassificationAccuracy, MembraneUpdates,
                                             SynapticOperations)
    from neurobench.models import SNNTorchModel

    wrapped = _BatchFirst(model)
    names = {id(m): n[len("net.body."):] if n.startswith("net.body.") else n for n, m in wrapped.named_modules()}
    per_layer: Dict[str, Dict[str, float]] = {}

    class PerLayerSynapticOperations(AccumulatedMetric):
        """SynapticOperations' own loop, kept per connection layer (NeuroBench reports only totals)."""

        def __init__(self):
            super().__init__(requires_hooks=True)
            self.samples = 0

        def reset(self):
            per_layer.clear()
            self.samples = 0

        def __call__(self, nb_model, preds, data):
            for hook in nb_model.connection_hooks:
                entry = per_layer.setdefault(names[id(hook.layer)], {"effective_macs": 0.0, "effective_acs": 0.0,
                                                                     "dense": 0.0})
                for inputs in hook.inputs:
                    if len(inputs) == 1:
                        inputs = inputs[0]
                    # as SynapticOperations does: single_layer_MACs deep-copies the layer, which fails while
                    # the hook (holding the recorded inputs) is attached
                    hook.hook.remove()
                    ops, spiking = single_layer_MACs(inputs, hook.layer)
                    dense, _ = single_layer_MACs(inputs, hook.layer, total=True)
                    hook.register_hook()
                    entry["effective_acs" if spiking else "effective_macs"] += float(ops)
                    entry["dense"] += float(dense)
            self.samples += data[0].size(0)
            return self.compute()

        def compute(self):
            return {k: {m: v / max(self.samples, 1) for m, v in e.items()} for k, e in per_layer.items()}

    nb_model = SNNTorchModel(wrapped, custom_forward=True)
    data = torch.utils.data.TensorDataset(x_seq.transpose(0, 1).contiguous(), labels)
    loader = torch.utils.data.DataLoader(data, batch_size=len(labels), shuffle=False)
    # ClassificationAccuracy compares labels: the prediction is the argmax of the logits summed over time
    bench = Benchmark(nb_model, loader, [], [lambda preds: preds.sum(1).argmax(-1)],
                      [[Footprint, ConnectionSparsity],
                       [ActivationSparsity, MembraneUpdates, SynapticOperations, ClassificationAccuracy,
                        PerLayerSynapticOperations]])
    with torch.no_grad():
        results = bench.run(quiet=True)
    # NeuroBench's manager records 0.0 for a metric that raised (and prints the error to the silenced stdout):
    # a metric that should be a dict and is not has failed, and is not reported as measured
    for name in ("SynapticOperations", "PerLayerSynapticOperations"):
        if not isinstance(results.get(name), dict):
            raise RuntimeError(f"NeuroBench metric {name} failed on this network (it recorded {results.get(name)!r})")
    layers = results.pop("PerLayerSynapticOperations")
    metrics = {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in results.items()}
    return {"version": getattr(neurobench, "__version__", "2.3.0"), "metrics": metrics, "layers": layers}


def compare_layers(activity: NetworkActivity, nb: dict, host_first_layer: bool) -> List[dict]:
    """Per layer: the project's ACs/MACs/dense ops next to NeuroBench's, with the reason when they differ."""
    rows = []
    for layer in activity.layers:
        theirs: Optional[dict] = nb["layers"].get(layer.name)
        row = {"layer": layer.name, "acs": layer.effective_acs, "macs": layer.effective_macs,
               "dense": layer.dense_ops, "neurobench": theirs, "note": ""}
        if theirs is None:
            row["note"] = "no NeuroBench connection layer of this name (folded BatchNorm/pooling or identity)"
        elif layer.computed_once:
            row["note"] = (f"by design: the deployment computes this layer once per sample"
                           f"{' on the host' if host_first_layer and layer.from_input else ''} (constant input); "
                           f"NeuroBench counts it at each of the T = {activity.timesteps} calls")
        elif (theirs["effective_acs"], theirs["effective_macs"]) != (layer.effective_acs, layer.effective_macs):
            row["note"] = "differs"
        else:
            row["note"] = "equal"
        rows.append(row)
    return rows


def neurobench_summary(nb: dict) -> Dict[str, object]:
    """The headline figures, flattened for a table."""
    m = nb["metrics"]
    syn = m.get("SynapticOperations", {})
    return {"Footprint (bytes)": m.get("Footprint"), "ConnectionSparsity": m.get("ConnectionSparsity"),
            "ActivationSparsity": m.get("ActivationSparsity"), "MembraneUpdates": m.get("MembraneUpdates"),
            "Effective_ACs": syn.get("Effective_ACs"), "Effective_MACs": syn.get("Effective_MACs"),
            "Dense": syn.get("Dense"), "ClassificationAccuracy": m.get("ClassificationAccuracy")}


__all__ = ["neurobench_metrics", "compare_layers", "neurobench_summary"]
