"""Real Lava runs (lava-nc 0.10, CPU): the compiled network against snnTorch, the IR equations and netx.

Each Lava run costs ~1 s of compile and process start-up, so every network is run once per target (all
samples streamed through one run) and the checks share those runs through module fixtures.
"""

import multiprocessing
import warnings
from collections import OrderedDict
from dataclasses import replace

import nir
import numpy as np
import pytest
import torch
from torch import nn

from slt_deploy.simulate import lava as lava_backend
from slt_deploy.compile import CompileError, first_mismatch, lower
from slt_deploy.simulate.lava import run_lava
from slt_deploy.simulate.fastsim import simulate
from slt_deploy.compile.reference import record_snntorch
from slt_deploy.compile.stream import align, input_stream, readout_values, to_nir_order
from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig
from slt_deploy.data import encode, load_mnist
from slt_deploy.exporters.netx_format import write_netx
from slt_deploy.exporters.nir_format import network_to_nir
from slt_deploy.models import build_model, leaky

pytestmark = pytest.mark.lava

N_SAMPLES, T = 16, 5
DT = 1e-4


# --------------------------------------------------------------------------------- IR reference (numpy)

def simulate_ir(net, x, per_group=True):
    """Step-by-step numpy implementation of the equations in slt_deploy.compile.ir (independent of Lava).

    fixed_pt synapses shift each source group's sum (one Lava process each); ``per_group=False`` shifts the
    whole sum instead, the rule the IR once documented, to show where the two differ."""
    fixed = net.target == "fixed_pt"
    groups = {p.name: p.groups() if per_group else [np.arange(p.size)] for p in net.populations}
    groups[net.input.name] = [np.arange(net.input.size)]
    n, t = x.shape[:2]
    stream = input_stream(net, x)
    total = stream.shape[1]
    zeros = (lambda k: np.zeros(k, np.int64)) if fixed else (lambda k: np.zeros(k))
    u = {p.name: zeros(p.size) for p in net.populations}
    v = {p.name: zeros(p.size) for p in net.populations}
    buf = [zeros(pr.weight.shape[0]) for pr in net.projections]
    rec = {p.name: np.zeros((p.size, total), np.int8) for p in net.populations}
    out = np.zeros((int(np.prod(net.readout.nir_shape)), total))
    for c in range(total):
        tau = c + 1
        sent = list(buf)
        spikes = {net.input.name: stream[:, c]} if net.host is None else {}
        for p in net.populations:
            a = sum((sent[i] for i, pr in enumerate(net.projections) if pr.target == p.name), zeros(p.size))
            if net.host is not None and net.host.target == p.name:
                a = a + stream[:, c]
            if (tau - 1 - p.lag) % t == 0:
                u[p.name], v[p.name] = zeros(p.size), zeros(p.size)
            if fixed:
                dec = u[p.name] * (4096 - (p.du + 1))
                uu = np.sign(dec) * (np.abs(dec) >> 12) + (a.astype(np.int64) << 6)
                uu = np.where(uu > 2 ** 23, uu - 2 ** 24, uu)
                uu = np.where(uu <= -2 ** 23, uu + 2 ** 24, uu)
                dec = v[p.name] * (4096 - p.dv)
                vv = np.sign(dec) * (np.abs(dec) >> 12) + uu + (p.bias_mant << p.bias_exp)
                vv = np.clip(vv, -(2 ** 23 - 1), 2 ** 23 - 1)
                s = vv > (p.vth << 6)
            else:
                uu = u[p.name] * (1 - p.du) + a
                vv = v[p.name] * (1 - p.dv) + uu + p.bias_mant
                s = vv > p.vth
            vv = np.where(s, 0, vv)
            u[p.name], v[p.name] = uu, vv
            spikes[p.name] = s.astype(np.int64 if fixed else np.float64)
            rec[p.name][:, c] = s
        out[:, c] = sum((sent[i] for i, pr in enumerate(net.projections) if pr.target == net.readout.name),
                        np.zeros(out.shape[0]))
        for i, pr in enumerate(net.projections):
            if not fixed:
                buf[i] = pr.weight @ spikes[pr.source]
                continue
            acc = np.zeros(pr.weight.shape[0], np.int64)
            for g in groups[pr.source]:
                part = (pr.weight[:, g] @ spikes[pr.source][g]).astype(np.int64)
                acc += part << pr.weight_exp if pr.weight_exp > 0 else part >> -pr.weight_exp
            buf[i] = acc
    spikes = {p.name: to_nir_order(p, align(rec[p.name], p.lag, n, t)) for p in net.populations}
    logits = readout_values(net, align(out, net.readout.lag, n, t)) if net.readout.kind == "current" else None
    return logits, spikes


# ----------------------------------------------------------------------------------------- networks


@pytest.fixture(scope="module")
def mnist():
    ds = load_mnist(DataConfig(n_train=1, n_test=N_SAMPLES)).test
    x = torch.from_numpy(ds.images[:N_SAMPLES]).float() / 255
    return encode(x, "direct", T)  # (T, N, 1, 28, 28)


def calibrate(model, x_seq, pairs, lo=0.05, hi=0.3):
    """Scale each synapse layer until its neurons fire at a rate in [lo, hi] (random weights fire too little)."""
    layers = dict(model.body.named_modules())
    for syn, neuron in pairs:
        for _ in range(20):
            _, spikes = record_snntorch(model, x_seq)
            rate = spikes[neuron].mean()
            if lo <= rate <= hi:
                break
            with torch.no_grad():
                layers[syn].weight.mul_(1.5 if rate < lo else 1 / 1.5)
    return model


def prune(model, names, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = dict(model.body.named_modules())
    with torch.no_grad():
        for name in names:
            w = layers[name].weight
            w.mul_((torch.rand(w.shape, generator=g) < density).to(w.dtype))
    return model


@pytest.fixture(scope="module")
def mlp(mnist):
    torch.manual_seed(0)
    cfg = ModelConfig(name="mlp", hidden=(48, 24), input_shape=(1, 28, 28), num_classes=10)
    return calibrate(build_model(cfg).eval(), mnist, [("fc1", "fc1_lif"), ("fc2", "fc2_lif")])


@pytest.fixture(scope="module")
def convnet(mnist):
    torch.manual_seed(0)
    cfg = ModelConfig(name="convnet", hidden=(4, 8, 24), batchnorm=False, input_shape=(1, 28, 28),
                      num_classes=10)
    model = prune(build_model(cfg).eval(), ["conv2", "fc1"], 0.3)  # a sparse ticket
    return calibrate(model, mnist, [("conv1", "conv1_lif"), ("conv2", "conv2_lif"), ("fc1", "fc1_lif")])


RUNS = {}


def lava_run(name, model, x_seq, target):
    """One Lava run per (network, target), shared by the tests that check it."""
    key = (name, target)
    if key not in RUNS:
        net = lower(network_to_nir(model, input_shape=(1, 28, 28)), target)
        RUNS[key] = (net, run_lava(net, x_seq.transpose(0, 1)))
    return RUNS[key]


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_float_target_is_spike_exact_with_snntorch_on_mnist(name, request, mnist):
    model = request.getfixturevalue(name)
    net, result = lava_run(name, model, mnist, "floating_pt")
    logits, spikes = record_snntorch(model, mnist, torch.float64)
    rates = {k: float(v.mean()) for k, v in spikes.items()}
    assert all(0.02 < r < 0.5 for r in rates.values()), rates  # the comparison is not vacuous
    order = [p.name for p in net.populations]
    mismatch = first_mismatch(result.spikes, spikes, order)
    assert mismatch is None, mismatch
    np.testing.assert_allclose(result.outputs, logits, rtol=0, atol=1e-9)
    assert (result.predictions() == logits.sum(axis=1).argmax(axis=1)).all()
    if name == "convnet":  # the conv lowering ran as Lava Sparse; the MLP as Dense
        assert all(type(p.weight).__name__ == "csr_matrix" for p in net.projections[:2])
    # float32 snnTorch agrees too, up to membranes within float32 rounding of the threshold
    _, spikes32 = record_snntorch(model, mnist)
    flips = sum(int((result.spikes[k] != spikes32[k]).sum()) for k in order)
    assert flips <= 2, first_mismatch(result.spikes, spikes32, order)


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_fixed_point_lava_matches_ir_equations_bit_for_bit(name, request, mnist):
    model = request.getfixturevalue(name)
    net, result = lava_run(name, model, mnist, "fixed_pt")
    logits, spikes = simulate_ir(net, mnist.transpose(0, 1).numpy())
    mismatch = first_mismatch(result.spikes, spikes, [p.name for p in net.populations])
    assert mismatch is None, mismatch
    np.testing.assert_array_equal(result.outputs, logits)
    # and the quantized network behaves like the float one
    _, ref = record_snntorch(model, mnist, torch.float64)
    agree = np.mean([(result.spikes[k] == ref[k]).mean() for k in ref])
    assert agree > 0.97
    float_logits, _ = record_snntorch(model, mnist, torch.float64)
    assert (result.predictions() == float_logits.sum(axis=1).argmax(axis=1)).mean() >= 0.8


def test_chunked_run_equals_one_run(mlp, mnist):
    """16 samples as chunks of 6, 6 and 4 on one built network (host input, lags 0..2, readout latency 3)."""
    net, whole = lava_run("mlp", mlp, mnist, "fixed_pt")
    chunked = run_lava(net, mnist.transpose(0, 1), chunk_samples=6)
    assert (chunked.chunks, whole.chunks, chunked.steps) == (3, 1, whole.steps)
    assert chunked.processes == whole.processes == lava_backend.lava_process_count(net)
    for name, s in whole.spikes.items():
        np.testing.assert_array_equal(chunked.spikes[name], s)
    np.testing.assert_array_equal(chunked.readout_current, whole.readout_current)
    np.testing.assert_array_equal(chunked.outputs, whole.outputs)


def test_float_lava_matches_ir_equations(mlp, mnist):
    net, result = lava_run("mlp", mlp, mnist, "floating_pt")
    logits, spikes = simulate_ir(net, mnist.transpose(0, 1).numpy())
    assert first_mismatch(result.spikes, spikes) is None
    np.testing.assert_allclose(result.outputs, logits, atol=1e-9)


# ------------------------------------------------------------------------------ small hand-made networks


def lif_node(n, beta=0.5, thr=1.0):
    beta = np.broadcast_to(np.asarray(beta, np.float64), (n,))
    return nir.LIF(tau=DT / (1 - beta), r=1 / (1 - beta), v_leak=np.zeros(n),
                   v_threshold=np.broadcast_to(np.asarray(thr, np.float64), (n,)).copy(), v_reset=np.zeros(n))


def chain(weights, beta=0.5, thr=1.0, readout=None):
    n_in = weights[0].shape[1]
    nodes = OrderedDict(input=nir.Input(input_type={"input": np.array([n_in])}))
    edges, prev = [], "input"
    for i, w in enumerate(weights):
        nodes[f"fc{i}"] = nir.Affine(weight=np.asarray(w, np.float32), bias=np.zeros(w.shape[0], np.float32))
        b = beta[i] if isinstance(beta, list) else beta
        th = thr[i] if isinstance(thr, list) else thr
        nodes[f"lif{i}"] = lif_node(w.shape[0], b, th)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    w_r = np.ones((1, weights[-1].shape[0])) if readout is None else readout
    nodes["readout"] = nir.Affine(weight=np.asarray(w_r, np.float32), bias=np.zeros(len(w_r), np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([len(w_r)])})
    edges += [(prev, "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=dict(nodes), edges=edges)


def test_hand_computed_fixed_point_run_and_delay_rule():
    """w = 0.6, theta = 1, beta = 0.5 -> vth 420, w 252: u = 16128 per spike, threshold 420 << 6 = 26880.

    Input spikes at every step: v = 16128, 24192, 28224 (> 26880: spike, reset), 16128, 24192 -> spikes at
    t = 2 only; the float network (0.6, 0.9, 1.05) spikes at t = 2 too. A second layer (w = 1.2, theta = 1)
    fires at every input spike, one Lava step later. Three samples back to back check the staggered reset.
    """
    g = chain([np.array([[0.6]]), np.array([[1.2]])], readout=np.array([[0.5]]))
    x = np.ones((3, 5, 1))
    x[1, 3:] = 0  # sample 1: no input after step 3
    for target in ("fixed_pt", "floating_pt"):
        net = lower(g, target, first_layer="chip")
        assert [p.lag for p in net.populations] == [1, 2] and net.latency == 3
        if target == "fixed_pt":
            assert (net.quantization[0].vth, int(net.projections[0].weight[0, 0])) == (420, 252)
        result = run_lava(net, x)
        expected = np.zeros((3, 5, 1), np.int8)
        expected[:, 2] = 1
        np.testing.assert_array_equal(result.spikes["lif0"], expected)
        np.testing.assert_array_equal(result.spikes["lif1"], expected)
        np.testing.assert_allclose(result.outputs, 0.5 * expected, atol=1e-2)  # readout: 0.5 per spike
    assert multiprocessing.active_children() == []


def test_per_neuron_parameters_run_as_groups():
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(0.4, 0.5, (6, 5)), rng.normal(0.3, 0.6, (4, 6))
    g = chain([w1, w2], beta=[np.array([0.5, 0.5, 0.9, 0.9, 0.25, 0.25]), 0.5],
              thr=[np.array([1.0, 1.5, 1.0, 1.5, 1.0, 1.5]), np.array([0.5, 1.0, 1.0, 2.0])],
              readout=rng.normal(0, 1, (3, 4)))
    x = (rng.random((4, 6, 5)) < 0.5).astype(np.float64)
    for target, chunk in (("floating_pt", 256), ("fixed_pt", 3)):  # chunks of 3 + 1 samples, spike input
        net = lower(g, target, first_layer="chip")
        result = run_lava(net, x, chunk_samples=chunk)
        assert result.processes > 8  # several LIF processes per layer
        assert result.processes == lava_backend.lava_process_count(net)
        logits, spikes = simulate_ir(net, x)
        assert first_mismatch(result.spikes, spikes) is None, target
        np.testing.assert_allclose(result.outputs, logits, atol=1e-9)
        assert result.spikes["lif0"].mean() > 0.05


def test_negative_weight_exp_shifts_each_source_process():
    """lif0: two neurons with different decays (two Lava processes) firing at every step; lif1 gets weights
    [12, 12] with weight_exp -3, IF (dv = 0), vth 5 (320 after << 6). Lava floors each process's sum:
    a = (12 >> 3) + (12 >> 3) = 2, u = 128 -> v = 128, 256, 384 (spike) ...: spikes at t = 2, 5. Flooring
    the total would give a = 24 >> 3 = 3, u = 192 -> spikes at t = 1, 3, 5."""
    g = chain([np.array([[1.2], [1.2]]), np.array([[0.5, 0.5]])], beta=[np.array([0.5, 0.25]), 0.5])
    net = lower(g, "fixed_pt", first_layer="chip")
    assert len(net.populations[0].groups()) == 2
    proj = replace(net.projections[1], weight=np.array([[12, 12]]), weight_exp=-3)
    lif1 = replace(net.populations[1], dv=np.zeros(1, np.int64), vth=np.full(1, 5), bias_mant=np.zeros(1, np.int64))
    net = replace(net, populations=(net.populations[0], lif1),
                  projections=(net.projections[0], proj, net.projections[2]))
    x = np.ones((2, 6, 1))
    result = run_lava(net, x)
    expected = np.zeros((2, 6, 1), np.int8)
    expected[:, [2, 5]] = 1
    assert (result.spikes["lif0"] == 1).all()
    np.testing.assert_array_equal(result.spikes["lif1"], expected)
    _, ir_spikes = simulate_ir(net, x)
    assert first_mismatch(result.spikes, ir_spikes) is None
    assert first_mismatch(result.spikes, simulate(net, x).spikes) is None
    _, whole_sum = simulate_ir(net, x, per_group=False)
    assert whole_sum["lif1"][0, :, 0].tolist() == [0, 1, 0, 1, 0, 1]


# ----------------------------------------------------------------------------------------------- netx


def test_netx_export_runs_in_lava_dl_with_identical_spikes(tmp_path, mnist):
    """A conv net without pooling (netx conv + flatten + dense) and an MLP fed with spikes (chip input)."""
    torch.manual_seed(2)
    neuron = NeuronConfig()
    body = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 3, 3, stride=2, padding=1), conv1_lif=leaky(neuron),
        conv2=nn.Conv2d(3, 4, 3, padding=1), conv2_lif=leaky(neuron), flatten=nn.Flatten(),
        fc=nn.Linear(4 * 14 * 14, 16), fc_lif=leaky(neuron), readout=nn.Linear(16, 10)))
    with torch.no_grad():
        body.conv1.weight.mul_(5)
        body.conv2.weight.mul_(8)
        body.fc.weight.mul_(15)
    x = mnist[:, :4].transpose(0, 1)
    net = write_netx(network_to_nir(body, input_shape=(1, 28, 28)), tmp_path / "conv.h5")
    ours = run_lava(net, x)
    theirs, _ = lava_backend.run_netx(tmp_path / "conv.h5", net, x)
    assert all(ours.spikes[k].mean() > 0.02 for k in ours.spikes)
    assert first_mismatch(theirs, ours.spikes, [p.name for p in net.populations]) is None

    rng = np.random.default_rng(0)
    g = chain([rng.normal(0.2, 0.5, (12, 20)), rng.normal(0.2, 0.5, (6, 12))])
    spikes_in = (rng.random((4, 5, 20)) < 0.4).astype(np.float64)
    net = write_netx(g, tmp_path / "mlp.h5", first_layer="chip")
    ours = run_lava(net, spikes_in)
    theirs, _ = lava_backend.run_netx(tmp_path / "mlp.h5", net, spikes_in)
    assert ours.spikes["lif1"].mean() > 0.05
    assert first_mismatch(theirs, ours.spikes, ["lif0", "lif1"]) is None
    assert multiprocessing.active_children() == []


# --------------------------------------------------------------------------------------------- errors


def test_errors_leave_no_lava_process_running(monkeypatch):
    net = lower(chain([np.array([[0.6]])]), "fixed_pt")
    with pytest.raises(CompileError, match=r"does not match \(N, T, 1\)"):
        run_lava(net, np.zeros((2, 3, 2)))
    with pytest.raises(CompileError, match="host current .* exceeds Loihi's a_in range"):
        run_lava(net, np.full((1, 2, 1), 1e4))
    # an error inside the running Lava workers: the recorder cannot open its file
    real = lava_backend._Builder.recorder

    def broken(self, size, dtype):
        rec, data = real(self, size, dtype)
        rec.proc_params.overwrite("path", "/nonexistent/dir/rec.bin")
        return rec, data

    monkeypatch.setattr(lava_backend._Builder, "recorder", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception):
            run_lava(net, np.ones((1, 2, 1)))
    assert multiprocessing.active_children() == []
