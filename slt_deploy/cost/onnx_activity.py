"""Activity of an ONNX ANN measured in onnxruntime: every Conv/Gemm/MatMul's real input on real samples.

The graph is run once with the input of each Conv, Gemm and MatMul node added as an extra output; each node
becomes a :class:`~slt_deploy.cost.activity.SynapseLayer` (its constant weight in the (out, in) / (C_out,
C_in/groups, kH, kW) layout, its strides, pads, dilations and group), and the recorded inputs go to the one
counting mechanism, :func:`~slt_deploy.cost.activity.count_from_spikes`, as a run of one step: effective MACs =
(nonzero activation x nonzero weight) pairs, dense = every weight. The layer fed by the graph input is the first
layer (``from_input``). Populations are not recorded (``target`` None): an ANN has no spikes to count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..threads import session_options
from .activity import CountError, NetworkActivity, SynapseLayer, count_from_spikes

_OPS = ("Conv", "Gemm", "MatMul")


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _layers(model) -> List[Tuple[str, object, np.ndarray]]:
    """(node input name, node, weight in the counter's layout) for every Conv/Gemm/MatMul with a constant weight."""
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    out = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _OPS:
            continue
        name = node.name or f"{node.op_type}_{index}"
        if len(node.input) < 2 or node.input[1] not in constants:
            raise CountError(f"ONNX node {name!r} ({node.op_type}) has no constant weight; cannot count it")
        w = constants[node.input[1]].astype(np.float64)
        if node.op_type == "Gemm":
            if _attr(node, "transA", 0):
                raise CountError(f"ONNX node {name!r}: Gemm with transA is not an activation x weight product")
            w = w if _attr(node, "transB", 0) else w.T
        elif node.op_type == "MatMul":
            w = w.T
        out.append((node.input[0], node, w))
    return out


def count_onnx(path: Path, batches: Sequence[np.ndarray], source: str = "onnxruntime (ANN)") -> NetworkActivity:
    """Run the ONNX model at ``path`` on each (B, ...) batch and count every layer's effective and dense MACs."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    specs = _layers(model)
    if not specs:
        raise CountError(f"{path}: no Conv, Gemm or MatMul node to count")
    graph_input = next(i.name for i in model.graph.input
                       if i.name not in {t.name for t in model.graph.initializer})
    outputs = {o.name for o in model.graph.output}
    for tensor, *_ in specs:
        if tensor not in outputs and tensor != graph_input:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(tensor))
            outputs.add(tensor)
    options = session_options(ort.SessionOptions())  # the toolkit's thread counts (slt_deploy/threads.py)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    parts = []
    for x in batches:
        x = np.asarray(x, dtype=np.float32)
        values: Dict[str, np.ndarray] = dict(zip(names, session.run(None, {graph_input: x})))
        values[graph_input] = x
        layers, inputs = [], {}
        previous = None
        for tensor, node, w in specs:
            a = values[tensor]
            name = node.name or tensor
            layer = _layer(name, node, w, tuple(a.shape[1:]), None if tensor == graph_input else previous)
            layers.append(layer)
            inputs[name] = torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(0)  # one step: (1, B, ...)
            previous = name
        parts.append(count_from_spikes(layers, inputs, {}, source=source))
    if len(parts) == 1:
        return parts[0]
    from .activity import merge_activity

    return merge_activity(parts)


def _layer(name: str, node, w: np.ndarray, input_shape: Tuple[int, ...], source) -> SynapseLayer:
    weight = torch.from_numpy(w)
    if node.op_type != "Conv":
        return SynapseLayer(name, "linear", weight, input_shape, (w.shape[0],), source, None)
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise CountError(f"ONNX node {name!r}: asymmetric padding {pads} is not supported")
    stride = tuple(_attr(node, "strides", [1, 1]))
    dilation = tuple(_attr(node, "dilations", [1, 1]))
    groups = int(_attr(node, "group", 1))
    _, h, wd = input_shape
    out_hw = [(size + 2 * p - d * (k - 1) - 1) // s + 1
              for size, p, d, k, s in zip((h, wd), pads[:2], dilation, w.shape[-2:], stride)]
    return SynapseLayer(name, "conv", weight, input_shape, (w.shape[0], *out_hw), source, None, stride,
                        tuple(pads[:2]), dilation, groups)
