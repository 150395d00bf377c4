"""ONNX export: ANN twin and unrolled SNN against torch/snnTorch in onnxruntime, MAC counts, error paths.

Real onnx + onnxruntime, tiny networks (each export takes well under a second).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import onnx
import pytest
import snntorch as snn
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from slt_deploy.config import ModelConfig, NeuronConfig
from slt_deploy.errors import ExportError
from slt_deploy.exporters.onnx_format import (LayerMACs, analytical_macs, ann_twin, check_onnx, export_onnx,
                                              export_snn_unrolled_onnx, export_ticket_onnx, onnx_macs, run_onnx,
                                              total_macs)
from slt_deploy.search.masks import Mask, apply_mask, random_mask
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.ticket import Ticket, TicketRecord

# name -> (tiny hidden widths, input shape)
TINY = {
    "mlp": ((32, 16), (1, 28, 28)),
    "convnet": ((4, 8, 16), (1, 28, 28)),
    "vgg16": ((4, 4, 8, 8, 8), (3, 32, 32)),
    "resnet19": ((4, 8, 8, 8), (3, 32, 32)),
}


@pytest.fixture(autouse=True)
def _quiet_exporter():
    # torch.onnx's tracer warnings are about its own internals, not about the model under test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tiny_model(name: str, seed: int = 0, reset: str = "zero"):
    hidden, shape = TINY[name]
    torch.manual_seed(seed)
    cfg = resolve_config(ModelConfig(name=name, hidden=hidden, neuron=NeuronConfig(reset=reset)), shape, 10)
    model = build_model(cfg)
    _randomize_batchnorm(model, seed)
    return model.eval(), shape


def _randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine terms, so folding BN into the conv really changes weights."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))


def sparse_mask(model, sparsity: float = 0.7, seed: int = 3) -> Mask:
    layers = prunable_layers(model)
    shapes = {n: tuple(m.weight.shape) for n, m in layers.items()}
    mask = random_mask(shapes, {n: sparsity for n in shapes}, torch.Generator().manual_seed(seed))
    apply_mask(layers, mask)
    return mask


def onnx_weight_nonzeros(path) -> int:
    return sum(layer.nonzero_weights for layer in onnx_macs(path))


# ---------------------------------------------------------------------------------------------- ANN twin

@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet19"])
def test_twin_onnx_matches_torch(name, tmp_path):
    model, shape = tiny_model(name)
    twin = ann_twin(model)
    path = export_onnx(twin, shape, tmp_path / f"{name}.onnx")
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(7))  # a batch size not used in export
    assert check_onnx(twin, path, x) <= 1e-5
    logits = run_onnx(path, x.numpy())
    assert logits.shape == (4, 10) and np.abs(logits).max() > 1e-2  # not a trivially zero comparison
    assert not any(isinstance(m, snn.Leaky) for m in twin.modules())


def test_twin_leaves_original_untouched():
    model, _ = tiny_model("resnet19")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    neurons = [n for n, _ in model.neurons()]
    twin = ann_twin(model)
    assert [n for n, _ in model.neurons()] == neurons and len(neurons) > 0
    relus = [n for n, m in twin.body.named_modules() if isinstance(m, nn.ReLU)]
    assert relus == neurons  # every Leaky (also inside residual blocks) became a ReLU, in place
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    twin.body.stem.weight.data.zero_()
    assert not torch.equal(model.body.stem.weight, twin.body.stem.weight)  # a copy, not shared storage


def test_twin_shares_the_ticket_mask(tmp_path):
    model, shape = tiny_model("convnet")
    mask = sparse_mask(model, 0.8)
    cfg = model.config
    ticket = Ticket.from_model(model, mask, TicketRecord(model=cfg, method="random"))
    ticket_path = ticket.save(tmp_path / "t.safetensors")
    twin = ann_twin(Ticket.load(ticket_path))
    path = export_onnx(twin, shape, tmp_path / "t.onnx",
                       metadata={"source_ticket": str(ticket_path), "sparsity": ticket.record.sparsity})
    assert onnx_weight_nonzeros(path) == mask.kept()  # BN folding keeps the zeros, adds none
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["source_ticket"] == str(ticket_path)
    assert float(props["sparsity"]) == pytest.approx(mask.sparsity())
    assert float(props["slt_deploy.weight_sparsity"]) == pytest.approx(mask.sparsity(), abs=1e-6)
    # the one-call path the CLI uses records where the weights came from
    path = export_ticket_onnx(ticket_path, tmp_path / "t2.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["slt_deploy.source_ticket"] == str(ticket_path) and props["slt_deploy.method"] == "random"
    assert onnx_weight_nonzeros(path) == mask.kept()


def test_export_is_atomic_when_the_check_fails(tmp_path):
    twin = ann_twin(tiny_model("mlp")[0])
    with pytest.raises(ExportError, match="differs from torch"):
        export_onnx(twin, (1, 28, 28), tmp_path / "m.onnx", tolerance=-1.0)  # no difference can pass
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- MAC counts

def _export(module, shape, tmp_path, name="m.onnx"):
    return export_onnx(module.eval(), shape, tmp_path / name)


def test_linear_macs_by_hand(tmp_path):
    layer = nn.Linear(784, 300)
    (dense,) = onnx_macs(_export(nn.Sequential(OrderedDict(fc=layer)), (784,), tmp_path))
    assert (dense.name, dense.op_type, dense.dense_macs, dense.effective_macs) == ("fc", "Gemm", 235200, 235200)
    assert dense.output_shape == (300,)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, :5] = 1.0
        layer.weight[299, 783] = -2.0
    (sparse,) = onnx_macs(_export(nn.Sequential(OrderedDict(fc=layer)), (784,), tmp_path, "s.onnx"))
    assert (sparse.dense_macs, sparse.effective_macs, sparse.weight_count, sparse.nonzero_weights) == \
        (235200, 6, 235200, 6)


def test_conv_macs_by_hand(tmp_path):
    conv = nn.Conv2d(1, 16, 3, padding=1)
    (layer,) = onnx_macs(_export(nn.Sequential(OrderedDict(conv=conv)), (1, 28, 28), tmp_path))
    assert layer.dense_macs == 28 * 28 * 16 * 9 == 112896
    assert layer.output_shape == (16, 28, 28)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.weight[3, 0, :, 0] = 0.5  # 3 more
        conv.weight[15, 0, 2, 2] = -1.0
    (layer,) = onnx_macs(_export(nn.Sequential(OrderedDict(conv=conv)), (1, 28, 28), tmp_path, "s.onnx"))
    assert (layer.dense_macs, layer.effective_macs, layer.nonzero_weights) == (112896, 28 * 28 * 5, 5)


def test_strided_grouped_conv_macs(tmp_path):
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(4, 8, 3, stride=2, groups=2)))
    (layer,) = onnx_macs(_export(net, (4, 9, 9), tmp_path))
    # output 4x4; each output sees C_in/groups = 2 channels x 3x3
    assert layer.output_shape == (8, 4, 4)
    assert layer.dense_macs == 16 * 8 * 2 * 9
    assert [layer] == analytical_macs(net, (4, 9, 9))


def test_batchnorm_node_counts_zero(tmp_path):
    # BN first: nothing to fold it into, so it stays a BatchNormalization node
    net = nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(2), conv=nn.Conv2d(2, 3, 3)))
    _randomize_batchnorm(net, 0)
    path = _export(net, (2, 6, 6), tmp_path)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    layers = onnx_macs(path)
    assert [l.name for l in layers] == ["conv"] and total_macs(layers) == (16 * 3 * 2 * 9,) * 2


def _hand_graph(nodes, initializers, x_shape, y_shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(a, n) for n, a in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_gemm_transpose_and_matmul_from_hand_built_graphs():
    w = np.zeros((6, 4), np.float32)  # (in, out): transB=0
    w[0, 0] = w[5, 3] = w[2, 1] = 1.0
    gemm = _hand_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=0)], {"w": w},
                       ["batch", 6], ["batch", 4])
    assert onnx_macs(gemm) == [LayerMACs("fc", "Gemm", 24, 3, 24, 3, (4,))]
    gemm_t = _hand_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], {"w": w.T.copy()},
                         ["batch", 6], ["batch", 4])
    assert onnx_macs(gemm_t) == [LayerMACs("fc", "Gemm", 24, 3, 24, 3, (4,))]
    # MatMul on (batch, 5 rows, 6): each of the 5 rows multiplies the weight
    matmul = _hand_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], {"w": w},
                         ["batch", 5, 6], ["batch", 5, 4])
    assert onnx_macs(matmul) == [LayerMACs("mm", "MatMul", 5 * 24, 5 * 3, 24, 3, (5, 4))]
    assert total_macs(onnx_macs(gemm) + onnx_macs(matmul)) == (24 + 120, 3 + 15)


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_macs_equal_analytical_per_layer(name, tmp_path):
    model, shape = tiny_model(name)
    mask = sparse_mask(model, 0.6)
    twin = ann_twin(model)
    layers = onnx_macs(export_onnx(twin, shape, tmp_path / "m.onnx"))
    assert layers == analytical_macs(twin, shape)
    assert [l.name for l in layers] == [f"body.{n}" for n in prunable_layers(model)]
    dense, effective = total_macs(layers)
    assert sum(l.nonzero_weights for l in layers) == mask.kept()
    assert 0 < effective < dense


# ---------------------------------------------------------------------------------------------- unrolled SNN

def _spikes(model, x_seq) -> dict:
    """Neuron name -> (T, B, ...) spikes of the snnTorch model, recorded with forward hooks."""
    record = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: record.setdefault(name, []).append(out))
             for name, m in model.neurons()]
    with torch.no_grad():
        model(x_seq)
    for h in hooks:
        h.remove()
    return {name: torch.stack(s) for name, s in record.items()}


@pytest.mark.parametrize("name,reset", [("mlp", "zero"), ("convnet", "subtract"), ("resnet19", "zero")])
def test_unrolled_snn_matches_snntorch(name, reset, tmp_path):
    model, shape = tiny_model(name, reset=reset)
    sparse_mask(model, 0.5)
    with torch.no_grad():  # stronger weights, so that every layer spikes and neurons fire twice in a row
        for layer in prunable_layers(model).values():
            layer.weight.mul_(8.0)
    x_seq = 2 * torch.rand(4, 3, *shape, generator=torch.Generator().manual_seed(11)) - 1
    spikes = _spikes(model, x_seq)
    assert all(0 < float(s.mean()) < 1 for s in spikes.values())  # no silent or saturated layer
    assert sum(int((s[1:] * s[:-1]).sum()) for s in spikes.values()) > 0  # the reset path is exercised

    path = export_snn_unrolled_onnx(model, shape, 4, tmp_path / "snn.onnx")
    with torch.no_grad():
        expected = model(x_seq).numpy()
    got = run_onnx(path, x_seq.numpy())
    assert got.shape == (4, 3, 10)
    assert np.max(np.abs(got - expected)) <= 1e-5


# ---------------------------------------------------------------------------------------------- errors

def test_corrupt_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\xff\x13 at all")
    with pytest.raises(ExportError, match="bad.onnx.*not a valid ONNX model"):
        onnx_macs(bad)
    with pytest.raises(ExportError, match="missing.onnx: no such ONNX file"):
        onnx_macs(tmp_path / "missing.onnx")


def test_nan_weight_names_the_layer(tmp_path):
    model, shape = tiny_model("convnet")
    with torch.no_grad():
        model.body.conv2.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ExportError, match="'conv2': weight has NaN"):
        ann_twin(model)
    net = nn.Sequential(OrderedDict(fc=nn.Linear(3, 2)))
    with torch.no_grad():
        net.fc.bias[1] = float("inf")
    with pytest.raises(ExportError, match="'fc': bias has NaN or infinite"):
        export_onnx(net, (3,), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("layer,kind", [(nn.MaxPool2d(2), "MaxPool2d"), (nn.LSTM(4, 4), "LSTM")])
def test_unsupported_layer_names_the_layer(layer, kind):
    lif = snn.Leaky(beta=0.5, init_hidden=True)
    body = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 4, 3), odd=layer, lif=lif))
    with pytest.raises(ExportError, match=f"layer 'odd' \\({kind}\\) is not supported"):
        ann_twin(body)


def test_unsupported_onnx_op_names_the_node():
    model = _hand_graph([helper.make_node("MaxPool", ["x"], ["y"], name="pool1", kernel_shape=[2, 2],
                                          strides=[2, 2])], {},
                        ["batch", 1, 4, 4], ["batch", 1, 2, 2])
    with pytest.raises(ExportError, match="'pool1' has op type MaxPool"):
        onnx_macs(model)


def test_unrolled_refuses_unsupported_neuron_options(tmp_path):
    model, shape = tiny_model("mlp")
    model.body.fc2_lif.reset_delay = False
    with pytest.raises(ExportError, match="'fc2_lif': Leaky option\\(s\\) reset_delay=False"):
        export_snn_unrolled_onnx(model, shape, 2, tmp_path / "snn.onnx")
    assert list(tmp_path.iterdir()) == []
