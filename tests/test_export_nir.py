"""NIR export, file round trip and the reference executor, against real snnTorch and NIR (no mocks).

Networks are random-init and tiny; their BatchNorm statistics and gains are calibrated on the data (not
trained) so that every hidden layer spikes, and each spike-exactness test asserts that it does, so it could
fail. Inputs are real MNIST test images, direct encoding (the image at each of T = 5 steps).
"""

from __future__ import annotations

from collections import OrderedDict

import h5py
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from slt_deploy.config import ModelConfig, NeuronConfig
from slt_deploy.data import default_mnist_dir, read_idx
from slt_deploy.errors import ExportError, SltError
from slt_deploy.exporters.nir_format import (DEFAULT_DT, describe_nir, format_table, network_to_nir, read_nir,
                                             ticket_to_nir, write_nir)
from slt_deploy.search.masks import Mask, apply_mask, mask_at_sparsity
from slt_deploy.models import SpikingNet, build_model, prunable_layers
from slt_deploy.simulate.reference import NIRExecutor
from slt_deploy.ticket import Ticket, TicketRecord

T = 5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # default-initialized layers draw from the global generator, seeded anew per process


@pytest.fixture(scope="module")
def mnist() -> torch.Tensor:
    """The first 16 MNIST test images, (16, 1, 28, 28) in [0, 1]."""
    images = read_idx(default_mnist_dir() / "t10k-images-idx3-ubyte.gz")[:16]
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def direct(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0).repeat(T, *([1] * x.dim()))


def calibrate(model: nn.Module, x_seq: torch.Tensor, seed: int = 0) -> None:
    """Make a random-init network spike everywhere, without training.

    BatchNorm gets random gamma/beta and the running statistics of ``x_seq`` (per-channel means and variances
    of real activations, not a fresh layer's 0 and 1); every hidden Linear is scaled to unit output std.
    """
    g = torch.Generator().manual_seed(seed)
    body = model.body
    bns = [m for m in body.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(1.0 + torch.rand(bn.num_features, generator=g))
            bn.bias.copy_(0.5 * torch.rand(bn.num_features, generator=g))
            bn.momentum = 1.0  # the running statistics become those of the batch seen
        if bns:
            model.train()
            model(x_seq)
        for bn in bns:
            bn.momentum = 0.1
        model.eval()
        hidden = [m for name, m in body.named_modules() if isinstance(m, nn.Linear) and name != "readout"]
        for layer in hidden:
            seen = []
            hook = layer.register_forward_hook(lambda mod, inp, out: seen.append(out))
            model(x_seq)
            hook.remove()
            std = torch.cat(seen).std()
            layer.weight.div_(std)
            if layer.bias is not None:
                layer.bias.div_(std)


def snntorch_trace(model: SpikingNet, x_seq: torch.Tensor):
    """snnTorch's logits (T, B, classes) and every neuron layer's spikes (T, B, ...) by layer name."""
    spikes = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: spikes.setdefault(name, []).append(out))
             for name, m in model.neurons()]
    try:
        with torch.no_grad():
            logits = model(x_seq)
    finally:
        for h in hooks:
            h.remove()
    return logits, {name: torch.stack(s) for name, s in spikes.items()}


def assert_spike_exact(model: SpikingNet, graph, x_seq: torch.Tensor) -> dict:
    """Executor vs snnTorch: every hidden layer's spikes equal, per-step logits allclose; returns spike counts."""
    logits, ref = snntorch_trace(model, x_seq)
    out, rec = NIRExecutor(graph).run(x_seq, record=True)
    counts = {}
    for name, spikes in ref.items():
        differ = int((rec[name] != spikes).sum())
        assert differ == 0, f"layer {name}: {differ} of {spikes.numel()} spikes differ"
        counts[name] = int(spikes.sum())
        # a test that could not fail proves nothing: every layer must spike, and not everywhere
        assert 0 < counts[name] < spikes.numel(), f"layer {name}: {counts[name]} spikes of {spikes.numel()}"
    assert out.shape == logits.shape
    torch.testing.assert_close(out, logits, atol=1e-5, rtol=0)
    return counts


def make_ticket(cfg: ModelConfig, x_seq: torch.Tensor, sparsity: float = 0.0, seed: int = 0, **record):
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    layers = prunable_layers(model)
    mask = (mask_at_sparsity(layers, list(layers), sparsity, "global") if sparsity else Mask.ones_like(layers))
    apply_mask(layers, mask)
    calibrate(model, x_seq, seed)  # scaling keeps pruned weights at zero
    return Ticket.from_model(model, mask, TicketRecord(model=cfg, **record)), model


def seq_net(*layers) -> SpikingNet:
    return SpikingNet(nn.Sequential(OrderedDict((str(i), m) for i, m in enumerate(layers))), config=None).eval()


def leaky(beta=0.5, threshold=1.0, reset="zero") -> snn.Leaky:
    return snn.Leaky(beta=beta, threshold=threshold, reset_mechanism=reset, init_hidden=True)


# ------------------------------------------------------------------ parameter mapping, hand-computed cases

def test_linear_lif_mapping_hand_computed():
    fc = nn.Linear(4, 3)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.5, 0.0, -0.5, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, -0.5, 0.0, 0.5]]))
        fc.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    readout = nn.Linear(3, 2, bias=False)
    lif = snn.Leaky(beta=torch.tensor([0.5, 0.75, 0.0]), threshold=0.25, reset_mechanism="subtract",
                    init_hidden=True)
    net = seq_net(nn.Flatten(), fc, lif, readout)
    g = network_to_nir(net, input_shape=(1, 2, 2), source="hand")

    assert [n for n in g.nodes] == ["input", "0", "1", "2", "3", "output"]
    assert ("input", "0") in g.edges and ("3", "output") in g.edges and len(g.edges) == 5
    flat = g.nodes["0"]
    assert isinstance(flat, nir.Flatten) and (flat.start_dim, flat.end_dim) == (0, -1)
    assert list(flat.input_type["input"]) == [1, 2, 2] and list(flat.output_type["output"]) == [4]

    affine = g.nodes["1"]
    assert isinstance(affine, nir.Affine) and affine.weight.dtype == np.float32
    assert np.array_equal(affine.weight, fc.weight.detach().numpy())
    assert np.array_equal(affine.bias, np.float32([0.1, -0.2, 0.3]))
    assert affine.metadata["density"] == 6 / 12 and affine.metadata["binary"] and affine.metadata["alpha"] == 0.5
    assert affine.metadata["layer"] == "1" and affine.metadata["source"] == "hand"

    node = g.nodes["2"]
    assert isinstance(node, nir.LIF)
    dt = DEFAULT_DT
    for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        assert getattr(node, field).shape == (3,), field
    np.testing.assert_allclose(node.tau, [dt / 0.5, dt / 0.25, dt], rtol=1e-15)  # tau = dt / (1 - beta)
    np.testing.assert_allclose(node.r, [2.0, 4.0, 1.0], rtol=1e-15)  # r = tau / dt
    assert np.array_equal(node.v_threshold, [0.25] * 3) and not node.v_leak.any() and not node.v_reset.any()
    assert node.metadata["reset"] == "subtract" and node.metadata["dt"] == dt
    assert np.array_equal(node.metadata["beta"], [0.5, 0.75, 0.0])

    lin = g.nodes["3"]
    assert isinstance(lin, nir.Linear) and np.array_equal(lin.weight, readout.weight.detach().numpy())
    assert lin.metadata["readout"] == "per-step logits" and not lin.metadata["binary"]

    x_seq = torch.rand(T, 6, 1, 2, 2, generator=torch.Generator().manual_seed(1)) * 2
    _, ref = snntorch_trace(net, x_seq)
    out, rec = NIRExecutor(g).run(x_seq, record=True)
    assert torch.equal(rec["2"], ref["2"]) and 0 < ref["2"].sum() < ref["2"].numel()
    torch.testing.assert_close(out, net(x_seq), atol=1e-6, rtol=0)


def test_conv_pool_if_mapping_hand_computed():
    conv, pointwise = nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.uniform_(0.0, 0.5)  # excitatory, so that both layers spike
        pointwise.weight.fill_(1.0)
    net = seq_net(conv, leaky(beta=1.0), nn.AvgPool2d(2), pointwise, leaky(0.25, 0.5),
                  nn.AvgPool2d(2, divisor_override=1), nn.Flatten(), nn.Linear(2, 3))
    g = network_to_nir(net, input_shape=(1, 8, 8))

    c = g.nodes["0"]
    assert isinstance(c, nir.Conv2d) and tuple(c.input_shape) == (8, 8)
    assert tuple(c.stride) == (2, 2) and tuple(c.padding) == (1, 1) and tuple(c.dilation) == (1, 1)
    assert c.groups == 1 and np.array_equal(c.weight, conv.weight.detach().numpy())
    assert np.array_equal(c.bias, conv.bias.detach().numpy()) and list(c.output_type["output"]) == [2, 4, 4]
    nobias = g.nodes["3"]
    assert np.array_equal(nobias.bias, np.zeros(2, np.float32))  # NIR's Conv2d always has a bias

    integrate = g.nodes["1"]  # beta = 1: no leak, NIR's IF (dv/dt = r I, r = 1/dt gives v <- v + I)
    assert isinstance(integrate, nir.IF) and integrate.r.shape == (2, 4, 4)
    np.testing.assert_allclose(integrate.r, 1 / DEFAULT_DT)
    assert integrate.v_threshold.shape == (2, 4, 4) and integrate.metadata["beta"] == 1.0

    pool = g.nodes["2"]
    assert isinstance(pool, nir.AvgPool2d)
    assert list(pool.kernel_size) == [2, 2] and list(pool.stride) == [2, 2] and list(pool.padding) == [0, 0]
    lif = g.nodes["4"]
    assert lif.tau.shape == (2, 2, 2) and np.allclose(lif.tau, DEFAULT_DT / 0.75) and np.all(lif.v_threshold == 0.5)
    assert isinstance(g.nodes["5"], nir.SumPool2d)  # divisor_override=1 sums the window
    flat = g.nodes["6"]
    assert list(flat.input_type["input"]) == [2, 1, 1] and list(flat.output_type["output"]) == [2]

    x_seq = torch.rand(T, 4, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2
    _, ref = snntorch_trace(net, x_seq)
    out, rec = NIRExecutor(g).run(x_seq, record=True)
    for name in ("1", "4"):
        assert torch.equal(rec[name], ref[name]) and ref[name].sum() > 0, name
    torch.testing.assert_close(out, net(x_seq), atol=1e-6, rtol=0)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_synaptic_exports_as_cubalif_spike_exact(mnist, reset):
    torch.manual_seed(3)
    syn = snn.Synaptic(alpha=0.5, beta=0.75, reset_mechanism=reset, init_hidden=True)
    net = seq_net(nn.Flatten(), nn.Linear(784, 32), syn, nn.Linear(32, 10))
    with torch.no_grad():
        net.body[1].weight.mul_(2.0)
    g = network_to_nir(net, input_shape=(1, 28, 28))
    node = g.nodes["2"]
    assert isinstance(node, nir.CubaLIF)
    for field, value in (("tau_syn", DEFAULT_DT / 0.5), ("w_in", 2.0), ("tau_mem", DEFAULT_DT / 0.25), ("r", 4.0)):
        assert getattr(node, field).shape == (32,), field
        np.testing.assert_allclose(getattr(node, field), value, rtol=1e-15, err_msg=field)
    # snnTorch's Synaptic zero reset holds the whole next-step membrane at 0: exported as "hold", not "zero"
    assert node.metadata["reset"] == {"zero": "hold", "subtract": "subtract"}[reset]
    x_seq = direct(mnist[:8])
    _, ref = snntorch_trace(net, x_seq)
    out, rec = NIRExecutor(g).run(x_seq, record=True)
    assert torch.equal(rec["2"], ref["2"]) and 0 < ref["2"].sum() < ref["2"].numel()
    torch.testing.assert_close(out, net(x_seq), atol=1e-5, rtol=0)


def test_batchnorm_is_folded_exactly(mnist):
    conv, fc = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Linear(4 * 14 * 14, 16)
    bn2, bn1 = nn.BatchNorm2d(4), nn.BatchNorm1d(16)
    net = seq_net(conv, bn2, nn.AvgPool2d(2), leaky(), nn.Flatten(), fc, nn.Dropout(0.5), bn1, leaky(),
                  nn.Linear(16, 10))
    torch.manual_seed(4)
    with torch.no_grad():
        for bn in (bn2, bn1):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n) * 0.3)
            bn.running_var.copy_(torch.rand(n) * 0.1 + 0.02)
            bn.weight.copy_(torch.rand(n) + 0.5)
            bn.bias.copy_(torch.rand(n) * 0.5)
    g = network_to_nir(net, input_shape=(1, 28, 28))
    assert not {"1", "6", "7"} & set(g.nodes)  # both BatchNorms folded, Dropout skipped

    # w' = w gamma / sqrt(var + eps), b' = (b - mean) gamma / sqrt(var + eps) + beta, in float64, then float32
    scale = (bn2.weight.double() / torch.sqrt(bn2.running_var.double() + bn2.eps)).detach()
    folded = g.nodes["0"]
    assert np.array_equal(folded.weight, (conv.weight.double() * scale.view(-1, 1, 1, 1)).float().detach().numpy())
    assert np.array_equal(folded.bias, (bn2.bias.double() - bn2.running_mean.double() * scale).float().detach().numpy())
    assert folded.metadata["batchnorm"] == "1"
    assert isinstance(g.nodes["5"], nir.Affine) and g.nodes["5"].metadata["batchnorm"] == "7"

    # folded currents equal conv -> BN (float rounding only), spikes identical
    x_seq = direct(mnist)
    out, rec = NIRExecutor(g).run(x_seq, record=True)
    with torch.no_grad():
        unfolded = torch.stack([bn2(conv(x)) for x in x_seq])
    torch.testing.assert_close(rec["0"], unfolded, atol=1e-5, rtol=1e-5)
    _, ref = snntorch_trace(net, x_seq)
    for name in ("3", "8"):
        assert torch.equal(rec[name], ref[name]) and 0 < ref[name].sum() < ref[name].numel(), name
    torch.testing.assert_close(out, net(x_seq), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ tickets: spike-exact on MNIST

@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_mlp_ticket_spike_exact(tmp_path, mnist, reset):
    cfg = ModelConfig(name="mlp", hidden=(64, 32), input_shape=(1, 28, 28), num_classes=10,
                      neuron=NeuronConfig(beta=0.5, reset=reset))
    x_seq = direct(mnist)
    ticket, _ = make_ticket(cfg, x_seq, sparsity=0.8, method="imp")
    path = ticket.save(tmp_path / "mlp.ticket")
    g = ticket_to_nir(path)
    model = Ticket.load(path).build_model()
    for name, layer in prunable_layers(model).items():  # exact dense float32 weights, zeros included
        assert np.array_equal(g.nodes[name].weight, layer.weight.detach().numpy()), name
        assert g.nodes[name].metadata["density"] == pytest.approx(float((layer.weight != 0).float().mean()))
    assert all(g.nodes[n].metadata["reset"] == reset for n in ("fc1_lif", "fc2_lif"))
    counts = assert_spike_exact(model, g, x_seq)
    assert set(counts) == {"fc1_lif", "fc2_lif"}


def test_convnet_ticket_with_batchnorm_spike_exact(tmp_path, mnist):
    cfg = ModelConfig(name="convnet", hidden=(4, 8, 16), input_shape=(1, 28, 28), num_classes=10)
    x_seq = direct(mnist)
    ticket, _ = make_ticket(cfg, x_seq, sparsity=0.5, seed=1, method="eb")
    g = ticket_to_nir(ticket, source="convnet.ticket")
    assert not any("bn" in name for name in g.nodes)  # every BatchNorm folded
    assert g.nodes["conv1"].metadata["batchnorm"] == "conv1_bn"
    counts = assert_spike_exact(ticket.build_model(), g, x_seq)
    assert set(counts) == {"conv1_lif", "conv2_lif", "fc1_lif"}


def test_resnet19_residual_edges_spike_exact(mnist):
    cfg = ModelConfig(name="resnet19", hidden=(4, 8, 8, 8), input_shape=(3, 32, 32), num_classes=10)
    images = nn.functional.pad(mnist[:4], (2, 2, 2, 2)).repeat(1, 3, 1, 1)  # MNIST as 3 x 32 x 32
    x_seq = direct(images)
    ticket, model = make_ticket(cfg, x_seq, seed=2)
    g = ticket_to_nir(ticket)
    # the two branches of a block are two edges into its second LIF (NIR sums them)
    into = lambda node: sorted(src for src, dst in g.edges if dst == node)  # noqa: E731
    assert into("layer1_1.lif2") == ["layer1_0.lif2", "layer1_1.conv2"]
    assert into("layer2_0.lif2") == ["layer2_0.conv2", "layer2_0.shortcut.conv"]
    counts = assert_spike_exact(model, g, x_seq)
    assert len(counts) == 1 + 2 * 8 + 1


# ------------------------------------------------------------------ round trip

def test_write_read_round_trip_is_bit_identical(tmp_path, mnist):
    cfg = ModelConfig(name="mlp", hidden=(32, 16), input_shape=(1, 28, 28), num_classes=10)
    ticket, model = make_ticket(cfg, direct(mnist[:4]), sparsity=0.75, method="imp+et", timesteps=5)
    # binarize fc2 the way biprop does: alpha * sign(w) * mask
    w = ticket.state["body.fc2.weight"]
    alpha = float(w.abs().sum() / (w != 0).sum())
    ticket.state["body.fc2.weight"] = (alpha * torch.sign(w)).float() * ticket.mask["fc2"]
    ticket.save(tmp_path / "t.ticket")
    g = ticket_to_nir(tmp_path / "t.ticket")
    path = write_nir(g, tmp_path / "out" / "t.nir")
    assert sorted(p.name for p in path.parent.iterdir()) == ["t.nir"]  # atomic: no temporary left behind
    back = read_nir(path)

    assert sorted(back.nodes) == sorted(g.nodes) and sorted(back.edges) == sorted(g.edges)  # HDF5 sorts names
    for name, node in g.nodes.items():
        other = back.nodes[name]
        assert type(other) is type(node)
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                got = getattr(other, field)
                assert got.dtype == value.dtype and np.array_equal(got, value), f"{name}.{field}"
    assert np.array_equal(back.nodes["fc1"].weight, ticket.state["body.fc1.weight"].numpy())
    meta = back.nodes["fc2"].metadata
    assert bool(meta["binary"]) and meta["alpha"] == np.float32(alpha)
    kept = float(ticket.mask["fc2"].float().mean())
    assert meta["density"] == kept < 1 and meta["mask_density"] == kept
    assert meta["source"] == str(tmp_path / "t.ticket")
    assert not bool(back.nodes["fc1"].metadata["binary"]) and back.nodes["fc1"].metadata["layer"] == "fc1"
    assert back.nodes["fc1_lif"].metadata["reset"] == "zero" and back.nodes["fc1_lif"].metadata["beta"] == 0.5
    assert back.nodes["readout"].metadata["readout"] == "per-step logits"
    gm = back.metadata
    assert (gm["method"], gm["timesteps"], gm["encoding"], gm["model"]) == ("imp+et", 5, "direct", "mlp")
    assert gm["sparsity"] == pytest.approx(ticket.record.sparsity) and gm["dt"] == DEFAULT_DT
    # the graph read back runs spike-for-spike like the ticket
    assert_spike_exact(ticket.build_model(), back, direct(mnist[:4]))

    rows = describe_nir(back)
    by_name = {r["name"]: r for r in rows}
    assert by_name["fc2"]["binary"] is True and by_name["fc1"]["binary"] is False
    assert by_name["fc2"]["sparsity"] == pytest.approx(1 - meta["density"])
    assert by_name["fc1_lif"]["neuron"] == "beta=0.5 thr=1 reset=zero"
    assert by_name["fc1"]["shape"] == "784 -> 32"
    table = format_table(rows)
    assert "fc2" in table and "yes" in table and "per-step logits" in table and len(table.splitlines()) == len(rows) + 2


# ------------------------------------------------------------------ an independent consumer

def snntorch_import_run(graph, x_seq):
    """Run ``graph`` through snnTorch's own importer (NIR -> snnTorch via nirtorch).

    Workaround, in this one place: ``import_from_nir`` turns NIR's Flatten(start_dim=0) (NIR shapes have no
    batch dimension) into ``torch.nn.Flatten(0, -1)``, which flattens the batch too. So every sample runs on
    its own without a batch dimension (torch layers and snnTorch neurons accept unbatched input), and the
    neurons, which keep their state inside (``init_hidden=True``), are reset between samples. The importer
    always builds zero-reset neurons (with ``reset_delay=False``, which spikes the same as snnTorch's default
    for zero reset), so it is only a valid reference for zero-reset graphs.
    """
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)
    modules = dict(net.named_modules())
    neurons = {name: modules[name.replace(".", "_")] for name, node in graph.nodes.items()
               if isinstance(node, nir.LIF)}
    outs, spikes = [], {name: [] for name in neurons}
    for sample in x_seq.unbind(1):
        for m in neurons.values():
            m.reset_mem()
        hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: spikes[name].append(out))
                 for name, m in neurons.items()]
        with torch.no_grad():
            outs.append(torch.stack([net(x_t)[0] for x_t in sample]))
        for h in hooks:
            h.remove()
    batch = x_seq.shape[1]
    per_node = {name: torch.stack(s).view(batch, x_seq.shape[0], *s[0].shape).transpose(0, 1)
                for name, s in spikes.items()}
    return torch.stack(outs, dim=1), per_node


@pytest.mark.parametrize("name, hidden", [("mlp", (32, 16)), ("convnet", (4, 8, 16))])
def test_executor_matches_snntorch_importer(mnist, name, hidden):
    cfg = ModelConfig(name=name, hidden=hidden, input_shape=(1, 28, 28), num_classes=10)
    x_seq = direct(mnist[:4])
    ticket, model = make_ticket(cfg, x_seq, sparsity=0.5, seed=5)
    g = ticket_to_nir(ticket)
    theirs, their_spikes = snntorch_import_run(g, x_seq)
    ours, our_spikes = NIRExecutor(g).run(x_seq, record=True)
    assert set(their_spikes) == {n for n, _ in model.neurons()}
    for layer, s in their_spikes.items():
        assert torch.equal(our_spikes[layer], s) and s.sum() > 0, layer
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ graphs from other tools

def test_hand_built_graph_runs_with_hand_checked_spikes():
    f32 = np.float32
    graph = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([2])}),
            "w1": nir.Affine(weight=np.array([[1.0, 0.0], [0.5, 0.5]], f32), bias=np.zeros(2, f32)),
            # decay 1 - dt/tau = 0.5 for both; gain r dt / tau = 1 and 2
            "lif1": nir.LIF(tau=np.array([2e-4, 2e-4]), r=np.array([2.0, 4.0]), v_leak=np.zeros(2),
                            v_threshold=np.ones(2), v_reset=np.zeros(2)),
            "w2": nir.Linear(weight=np.array([[1.0, 1.0], [1.0, 0.0]], f32)),
            # scalar parameters (broadcast): tau = dt, r = 1 gives v = I
            "lif2": nir.LIF(tau=np.array(1e-4), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5)),
            "out": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("in", "w1"), ("w1", "lif1"), ("lif1", "w2"), ("w2", "lif2"), ("lif2", "out")],
        type_check=False,  # scalar parameters do not type-check in NIR, but are valid to broadcast
    )
    x_seq = torch.tensor([0.6, 0.2]).expand(T, 3, 2)  # currents into lif1: 0.6 and 0.4 at every step
    out, rec = NIRExecutor(graph).run(x_seq, record=True)
    # neuron a: v = 0.6, 0.9, 1.05 (spike), 0 + 0.6, 0.9;  neuron b: v = 0.8, 1.2 (spike), 0.8, 1.2 (spike), 0.8
    expected1 = torch.tensor([[0, 0], [0, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.float32)
    assert torch.equal(rec["lif1"], expected1[:, None].expand(T, 3, 2))
    expected2 = torch.stack([expected1.sum(1), expected1[:, 0]], dim=1)  # spike whenever the sum > 0.5
    assert torch.equal(out, expected2[:, None].expand(T, 3, 2))
    # state is reset between calls
    assert torch.equal(NIRExecutor(graph).run(x_seq[:, :1]), out[:, :1])


def test_subtract_reset_comes_from_metadata(mnist):
    cfg = ModelConfig(name="mlp", hidden=(32, 16), input_shape=(1, 28, 28), num_classes=10,
                      neuron=NeuronConfig(beta=0.9, reset="subtract"))
    x_seq = direct(mnist[:8])
    ticket, model = make_ticket(cfg, x_seq, seed=6)
    g = ticket_to_nir(ticket)
    subtract = NIRExecutor(g).run(x_seq)
    g.nodes["fc1_lif"].metadata["reset"] = "zero"  # what a consumer ignoring the metadata would run
    assert not torch.equal(NIRExecutor(g).run(x_seq), subtract)
    g.nodes["fc1_lif"].metadata["reset"] = "sideways"
    with pytest.raises(ExportError, match="fc1_lif.*unknown reset mode 'sideways'"):
        NIRExecutor(g)


# ------------------------------------------------------------------ bad input

def _tiny_graph_file(tmp_path):
    net = seq_net(nn.Flatten(), nn.Linear(16, 8), leaky(), nn.Linear(8, 3))
    return write_nir(network_to_nir(net, input_shape=(1, 4, 4)), tmp_path / "tiny.nir")


def _rewrite(path, dataset, value):
    with h5py.File(path, "r+") as f:
        group = f[dataset.rsplit("/", 1)[0]]
        key = dataset.rsplit("/", 1)[1]
        del group[key]
        if isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        else:
            group.create_dataset(key, data=value)


def test_read_errors_name_the_file_and_the_problem(tmp_path):
    good = _tiny_graph_file(tmp_path)
    raw = good.read_bytes()

    with pytest.raises(ExportError, match=r"missing\.nir: no such NIR file"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "trunc.nir").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ExportError, match=r"trunc\.nir: corrupt or truncated HDF5"):
        read_nir(tmp_path / "trunc.nir")
    damaged = bytearray(raw)
    for i in range(2048, len(damaged), 7):
        damaged[i] ^= 0xFF
    (tmp_path / "damaged.nir").write_bytes(bytes(damaged))
    with pytest.raises(ExportError, match=r"damaged\.nir: (corrupt|invalid|not a NIR)"):
        read_nir(tmp_path / "damaged.nir")

    unknown = tmp_path / "unknown.nir"
    unknown.write_bytes(raw)
    _rewrite(unknown, "node/nodes/2/type", "Banana")
    with pytest.raises(ExportError, match=r"unknown\.nir: node '2' has unknown NIR type 'Banana'"):
        read_nir(unknown)

    unequal = tmp_path / "unequal.nir"
    unequal.write_bytes(raw)
    _rewrite(unequal, "node/nodes/2/tau", np.ones(5))
    with pytest.raises(ExportError, match=r"unequal\.nir: node '2' \(LIF\) is invalid: All parameters must have"):
        read_nir(unequal)

    nan = tmp_path / "nan.nir"
    nan.write_bytes(raw)
    with h5py.File(nan, "r") as f:
        w = f["node/nodes/1/weight"][()]
    w[0, 3] = np.nan
    _rewrite(nan, "node/nodes/1/weight", w)
    with pytest.raises(ExportError, match=r"nan\.nir: node '1' \(Affine\) has NaN or infinite values in 'weight'"):
        read_nir(nan)

    mismatch = tmp_path / "shape.nir"
    mismatch.write_bytes(raw)
    _rewrite(mismatch, "node/nodes/3/weight", np.zeros((3, 5), np.float32))
    with pytest.raises(ExportError, match=r"shape\.nir: shape mismatch on edge 2 -> 3: 2 outputs shape \(8\) but "
                                          r"3 expects \(5\)"):
        read_nir(mismatch)

    ring = nir.NIRGraph(nodes={"in": nir.Input(np.array([3])), "a": nir.Linear(weight=np.eye(3, dtype=np.float32)),
                               "b": nir.Linear(weight=np.eye(3, dtype=np.float32)), "out": nir.Output(np.array([3]))},
                        edges=[("in", "a"), ("a", "b"), ("b", "a"), ("b", "out")], type_check=False)
    write_nir(ring, tmp_path / "ring.nir")
    with pytest.raises(ExportError, match=r"ring\.nir: graph has a cycle through node\(s\) a, b;"):
        read_nir(tmp_path / "ring.nir")


def test_non_ticket_and_non_nir_files_are_refused(tmp_path, mnist):
    cfg = ModelConfig(name="mlp", hidden=(8,), input_shape=(1, 28, 28), num_classes=10)
    ticket, _ = make_ticket(cfg, direct(mnist[:2]))
    ticket.save(tmp_path / "a.ticket")
    with pytest.raises(ExportError, match=r"a\.ticket: not a NIR file \(not HDF5\)"):
        read_nir(tmp_path / "a.ticket")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("data", data=np.arange(3))
    with pytest.raises(ExportError, match=r"other\.h5: not a NIR graph"):
        read_nir(tmp_path / "other.h5")
    nir_file = _tiny_graph_file(tmp_path)
    with pytest.raises(SltError, match=r"tiny\.nir: not a ticket"):  # TicketError, from Ticket.load
        ticket_to_nir(nir_file)


def _marked_bn(layer: str, channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    bn.fold_bn_into = layer  # the marker models.py puts on every BatchNorm
    return bn


@pytest.mark.parametrize("layers, message", [
    ((nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), leaky()), r"layer '1' \(MaxPool2d\).*no max pooling; use nn.AvgPool2d"),
    ((nn.Flatten(), nn.Linear(16, 4), nn.ReLU()), r"layer '2' \(ReLU\).*use snn.Leaky"),
    ((nn.Flatten(), nn.Linear(16, 4), nn.Softmax(dim=1)), r"layer '2' \(Softmax\): no NIR mapping; supported"),
    ((nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.BatchNorm2d(2)), r"layer '2' \(BatchNorm2d\).*directly follows"),
    ((nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.BatchNorm2d(2)), r"layer '2' \(BatchNorm2d\).*directly follows"),
    ((nn.Linear(16, 4),), r"layer '0' \(Linear\) expects 16 inputs but receives shape \(1, 4, 4\)"),
    ((nn.Conv2d(1, 2, 3), _marked_bn("conv9", 2)), r"layer '1' \(BatchNorm2d\): it is marked for layer 'conv9'"),
    ((nn.Flatten(), nn.Linear(16, 4), snn.Leaky(beta=0.5, init_hidden=True, state_quant=lambda x: x)),
     r"layer '2' \(Leaky\): state_quant"),
])
def test_unsupported_layers_are_named(layers, message):
    with pytest.raises(ExportError, match=message):
        network_to_nir(seq_net(*layers), input_shape=(1, 4, 4))


def test_executor_refuses_unknown_nodes_and_bad_input():
    graph = nir.NIRGraph.from_list(nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, np.float32)),
                                   nir.Delay(delay=np.ones(2)), type_check=False)
    with pytest.raises(ExportError, match=r"node 'delay' has type Delay, which the NIR executor does not support"):
        NIRExecutor(graph)
    ok = nir.NIRGraph.from_list(nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, np.float32)))
    with pytest.raises(ExportError, match=r"input of shape \(5, 1, 3\) does not match \(T, B, \(2,\)\)"):
        NIRExecutor(ok).run(torch.zeros(5, 1, 3))


def test_forward_euler_gives_beta_v_plus_i_bit_exactly():
    """tau = dt/(1-beta), r = tau/dt: one Euler step is v <- beta v + I, bit for bit in float32, for any beta.

    The membrane of a LIF is not observable, so the exported (tau, r, v_leak) drive an LI node, whose output
    is its membrane. (With tau stored in float32 about a third of these betas would be off by an ulp.)
    """
    gen = torch.Generator().manual_seed(7)
    beta = torch.cat([torch.tensor([0.0, 0.25, 0.5, 0.9, 0.95, 0.99]), torch.rand(4090, generator=gen)])
    net = seq_net(nn.Flatten(), nn.Identity(), snn.Leaky(beta=beta, init_hidden=True), nn.Linear(4096, 2))
    lif = network_to_nir(net, input_shape=(4096,)).nodes["2"]
    li = nir.NIRGraph.from_list(nir.LI(tau=lif.tau, r=lif.r, v_leak=lif.v_leak))
    x_seq = torch.randn(20, 2, 4096, generator=gen)
    v, expected = torch.zeros(2, 4096), []
    for x in x_seq:
        v = beta * v + x  # snnTorch's state update
        expected.append(v)
    assert torch.equal(NIRExecutor(li).run(x_seq), torch.stack(expected))
