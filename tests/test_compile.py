"""Compiler tests that need no Lava: lowering, layouts, quantization, delays and every refused input."""

import subprocess
import sys
import warnings
from collections import OrderedDict

import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from slt_deploy.compile import CompileError, conv_matrix, first_mismatch, lower
from slt_deploy.compile.ir import lava_order
from slt_deploy.config import ModelConfig, NeuronConfig
from slt_deploy.exporters.nir_format import network_to_nir
from slt_deploy.models import build_model, leaky

DT = 1e-4


def lif_node(n, beta=0.5, thr=1.0, reset="zero"):
    beta, thr = np.broadcast_to(beta, (n,)).astype(np.float64), np.broadcast_to(thr, (n,)).astype(np.float64)
    return nir.LIF(tau=DT / (1 - beta), r=1 / (1 - beta), v_leak=np.zeros(n), v_threshold=thr.copy(),
                   v_reset=np.zeros(n), metadata={"reset": reset, "dt": DT})


def chain(weights, biases=None, beta=0.5, thr=1.0, reset="zero", readout=None):
    """Input -> (Affine -> LIF)* -> Affine readout -> Output, from (n_out, n_in) weight matrices."""
    n_in = weights[0].shape[1]
    nodes = OrderedDict(input=nir.Input(input_type={"input": np.array([n_in])}))
    edges, prev = [], "input"
    for i, w in enumerate(weights):
        b = np.zeros(w.shape[0]) if biases is None else biases[i]
        nodes[f"fc{i}"] = nir.Affine(weight=np.asarray(w, np.float32), bias=np.asarray(b, np.float32))
        nodes[f"lif{i}"] = lif_node(w.shape[0], beta, thr, reset)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    n = weights[-1].shape[0]
    w_r = np.ones((2, n)) if readout is None else readout
    nodes["readout"] = nir.Affine(weight=np.asarray(w_r, np.float32), bias=np.zeros(w_r.shape[0], np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([w_r.shape[0]])})
    edges += [(prev, "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=dict(nodes), edges=edges)


# ------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("c_in,c_out,k,stride,padding,dilation,groups,hw", [
    (3, 4, 3, (1, 1), (1, 1), (1, 1), 1, (7, 6)),
    (2, 4, (3, 2), (2, 1), (0, 2), (1, 2), 2, (9, 8)),
    (4, 4, 3, (2, 2), (1, 1), (2, 1), 4, (8, 8)),
])
def test_conv_lowering_and_whc_layout_match_torch(c_in, c_out, k, stride, padding, dilation, groups, hw):
    torch.manual_seed(0)
    k = (k, k) if isinstance(k, int) else k
    w = torch.randn(c_out, c_in // groups, *k, dtype=torch.float64)
    w[w.abs() < 0.5] = 0  # a pruned kernel: zero entries must vanish from the matrix
    x = torch.randn(1, c_in, *hw, dtype=torch.float64)
    ref = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)[0]
    m, out_shape = conv_matrix(w.numpy(), (c_in, *hw), stride, padding, dilation, groups)
    assert out_shape == tuple(ref.shape)
    assert m.nnz <= int((w != 0).sum()) * out_shape[1] * out_shape[2]
    np.testing.assert_allclose(m @ x[0].numpy().ravel(), ref.numpy().ravel(), atol=1e-12)
    # Lava order: data CHW -> WHC is transpose(2, 1, 0); nir_index maps Lava flat -> NIR flat
    (lw, lh, lc), idx_in = lava_order((c_in, *hw))
    _, idx_out = lava_order(out_shape)
    m_lava = m[idx_out][:, idx_in]
    x_whc = x[0].numpy().transpose(2, 1, 0).ravel()
    assert (lw, lh, lc) == (hw[1], hw[0], c_in)
    np.testing.assert_allclose(m_lava @ x_whc, ref.numpy().transpose(2, 1, 0).ravel(), atol=1e-12)


def small_convnet(batchnorm=False):
    torch.manual_seed(1)
    cfg = ModelConfig(name="convnet", hidden=(4, 6, 12), batchnorm=batchnorm, input_shape=(1, 12, 12),
                      num_classes=3)
    return build_model(cfg).eval()


def test_conv_pool_flatten_linear_compose_into_projections():
    model = small_convnet()
    body = model.body
    net = lower(network_to_nir(model, input_shape=(1, 12, 12)))
    assert [p.name for p in net.projections] == ["conv2+conv2_pool", "flatten+fc1", "readout"]
    assert net.host is not None and net.host.nodes == ("conv1", "conv1_pool")
    pop1, pop2 = net.population("conv1_lif"), net.population("conv2_lif")
    assert pop1.nir_shape == (4, 6, 6) and pop1.lava_shape == (6, 6, 4)
    rng = np.random.default_rng(0)
    s1 = (rng.random((1, 4, 6, 6)) < 0.3).astype(np.float64)  # spikes of conv1_lif in NIR layout
    with torch.no_grad():
        conv = body.conv2.double()
        ref2 = F.avg_pool2d(conv(torch.from_numpy(s1)), 2)[0].numpy()
    proj = net.projections[0]
    got = proj.csr() @ s1[0].transpose(2, 1, 0).ravel() + pop2.bias_mant  # Lava order in and out
    np.testing.assert_allclose(got, ref2.transpose(2, 1, 0).ravel(), atol=1e-6)
    # flatten: torch flattens CHW; the fc projection takes conv2_lif spikes in Lava (WHC) order
    s2 = (rng.random((1, 6, 3, 3)) < 0.3).astype(np.float64)
    with torch.no_grad():
        ref3 = body.fc1.double()(torch.from_numpy(s2).flatten(1))[0].numpy()
    fc = net.projections[1]
    got = fc.dense() @ s2[0].transpose(2, 1, 0).ravel() + net.population("fc1_lif").bias_mant
    np.testing.assert_allclose(got, ref3, atol=1e-6)
    # host layer = conv1 + pool, NIR input order permuted to Lava order
    x = rng.random((1, 1, 12, 12))
    with torch.no_grad():
        ref1 = F.avg_pool2d(body.conv1.double()(torch.from_numpy(x)), 2)[0].numpy()
    got = net.host.weight @ x[0].transpose(2, 1, 0).ravel() + net.host.bias
    np.testing.assert_allclose(got, ref1.transpose(2, 1, 0).ravel(), atol=1e-6)


def test_density_picks_sparse_or_dense():
    model = small_convnet()
    with torch.no_grad():
        model.body.fc1.weight[torch.rand_like(model.body.fc1.weight) < 0.8] = 0
    net = lower(network_to_nir(model, input_shape=(1, 12, 12)))
    kinds = {p.name: sp.issparse(p.weight) for p in net.projections}
    assert kinds == {"conv2+conv2_pool": True, "flatten+fc1": True, "readout": False}
    dense = lower(network_to_nir(model, input_shape=(1, 12, 12)), sparse_below=0.0)
    assert not any(sp.issparse(p.weight) for p in dense.projections)


# -------------------------------------------------------------------------------------- neurons and time


def test_snntorch_lif_maps_to_exact_lava_parameters():
    g = chain([np.eye(3)], beta=np.float32(0.9), thr=1.5)
    pop = lower(g, first_layer="chip").populations[0]
    assert (pop.du == 1).all() and (1 - pop.dv == np.float64(np.float32(0.9))).all()  # v*(1-dv) == beta*v
    assert (pop.vth == 1.5).all()


def test_delays_every_synapse_layer_adds_one_step():
    ws = [np.ones((3, 4)), np.ones((2, 3)), np.ones((2, 2))]
    host = lower(chain(ws))
    assert [p.lag for p in host.populations] == [0, 1, 2] and host.latency == 3
    chip = lower(chain(ws), first_layer="chip")
    assert [p.lag for p in chip.populations] == [1, 2, 3] and chip.latency == 4
    assert all(p.delay == 1 for p in chip.projections)


def test_per_neuron_decays_group_and_thresholds_fold_in_fixed_point():
    g = chain([np.full((4, 2), 0.4)], beta=np.array([0.5, 0.5, 0.25, 0.25]), thr=np.array([1.0, 2.0, 1.0, 2.0]))
    net = lower(g, first_layer="chip")
    assert len(net.populations[0].groups()) == 4  # float: one Lava process per (dv, vth)
    fixed = lower(g, "fixed_pt", first_layer="chip")
    pop = fixed.populations[0]
    assert np.unique(pop.vth).size == 1 and len(pop.groups()) == 2  # thresholds folded, decays grouped
    w = fixed.projections[0].dense()
    assert (w[1] * 2 == w[0]).all()  # threshold 2 halves the neuron's weights


# ------------------------------------------------------------------------------------------ fixed point


@pytest.mark.parametrize("w,thr,vth,mant", [
    ([[0.6]], 1.0, 420, [[252]]),                      # 0.6 * 420 = 252: exact, largest mantissa
    ([[0.3, -0.3, 0.0]], 1.0, 840, [[252, -252, 0]]),  # binary ticket, mixed signs: even mantissas
    ([[0.37, -0.37]], 1.0, 600, [[222, -222]]),         # 0.37 * 600 = 222 is the exact two-level fit
    ([[0.3, -0.3]], 2.0, 1680, [[252, -252]]),          # threshold scales vth only
])
def test_fixed_point_scaling_hand_computed(w, thr, vth, mant):
    net = lower(chain([np.array(w)], thr=thr), "fixed_pt", first_layer="chip")
    q = net.quantization[0]
    assert (q.vth, q.weight_exp) == (vth, 0)
    assert net.projections[0].dense().tolist() == mant
    assert (net.populations[0].vth == vth).all() and (net.populations[0].dv == 2048).all()
    assert (net.populations[0].du == 4095).all()
    assert q.weight_error < 1e-6  # only float32 rounding of the NIR weights
    assert q.weight_levels == len({m for m in mant[0] if m})


def test_fixed_point_bias_decay_and_exponent_rules():
    # bias 0.25 at vth 840: 64 * 840 * 0.25 = 13440 -> needs bias_exp 2 (3360 << 2)
    net = lower(chain([np.array([[0.3, -0.3]])], biases=[np.array([0.25])]), "fixed_pt", first_layer="chip")
    pop = net.populations[0]
    assert (pop.bias_mant[0], pop.bias_exp[0]) == (3360, 2)
    netx = lower(chain([np.array([[0.6]])], biases=[np.array([0.25])], beta=0.9), "fixed_pt", first_layer="chip",
                 netx_compatible=True)
    pop = netx.populations[0]
    assert (pop.bias_mant[0], pop.bias_exp[0]) == (105, 6) and pop.dv[0] == 410  # round(0.1 * 4096)
    # a tiny threshold needs weight_exp > 0 to keep vth >= 2**8; a huge one a negative exponent
    small = lower(chain([np.array([[0.6]])], thr=0.01), "fixed_pt", first_layer="chip").quantization[0]
    big = lower(chain([np.array([[0.6]])], thr=200.0), "fixed_pt", first_layer="chip").quantization[0]
    assert small.weight_exp > 0 and 256 <= small.vth <= 2 ** 14
    assert big.weight_exp < 0 and 256 <= big.vth <= 2 ** 14


def test_fixed_point_host_layer_and_readout():
    net = lower(chain([np.ones((3, 4))], thr=np.array([1.0, 2.0, 4.0])), "fixed_pt")
    assert (net.host.scale == 4096 / np.array([1.0, 2.0, 4.0])).all()
    assert (net.populations[0].vth == 4096).all()
    r = net.readout
    assert (r.scale == 255.0).all()  # all-positive readout weights 1.0: unsigned mantissas up to 255
    assert net.quantization[-1].layer == "output"


def test_multi_process_source_keeps_weight_exp_non_negative():
    """Tiny weights (0.002 per threshold) need weight_exp -2 in the vth window [2**8, 2**14]. Fed by a source
    with two decays (two Lava processes), whose group sums Lava would floor one by one, the layer takes
    weight_exp 0 and vth above 2**14 instead, with the same 8-bit weight precision."""
    ws = [np.full((4, 3), 0.9), np.full((4, 4), 0.002)]
    single = lower(chain(ws), "fixed_pt", first_layer="chip")
    assert single.quantization[1].weight_exp == -2 and single.quantization[1].vth <= 2 ** 14
    multi = lower(chain(ws, beta=np.array([0.5, 0.25, 0.5, 0.25])), "fixed_pt", first_layer="chip")
    assert len(multi.populations[0].groups()) == 2
    q = multi.quantization[1]
    assert (q.weight_exp, multi.projections[1].weight_exp) == (0, 0)
    assert 2 ** 14 < q.vth < 2 ** 17 and q.max_mantissa >= 128 and "multi-process source" in q.note
    assert q.weight_error <= single.quantization[1].weight_error + 1e-3
    # weights too small for 8 bits even at vth = 2**17 - 1 keep the negative exponent (exact per group)
    tiny = lower(chain([ws[0], np.full((4, 4), 0.0006)], beta=np.array([0.5, 0.25, 0.5, 0.25])), "fixed_pt",
                 first_layer="chip")
    assert tiny.quantization[1].weight_exp < 0


def test_readout_beyond_the_synapse_channel_is_refused(monkeypatch):
    from slt_deploy.compile import ir

    g = chain([np.ones((2, 2))], readout=np.array([[1.0, 1.0], [0.5, -1.0]]))
    net = lower(g, "fixed_pt")
    worst = int(np.abs(net.projections[-1].dense()).max()) * 2  # row 0: two positive mantissas of 254
    monkeypatch.setattr(ir, "READOUT_LIMIT", worst)
    lower(g, "fixed_pt")  # exactly at the limit: fine
    monkeypatch.setattr(ir, "READOUT_LIMIT", worst - 1)
    with pytest.raises(CompileError, match=rf"readout 'output': output 0 could reach {worst} .*int32"):
        lower(g, "fixed_pt")


def test_lava_process_limits_are_checked_before_lava_starts():
    from slt_deploy.simulate.lava import run_lava
    from slt_deploy.simulate.lava import MAX_GROUPS_PER_POPULATION, check_lava_limits, lava_process_count

    n = MAX_GROUPS_PER_POPULATION + 8
    thr = 1.0 + 0.01 * np.arange(n)
    g = chain([np.full((n, 3), 0.5)], thr=thr)
    x = np.zeros((1, 2, 3))
    with pytest.raises(CompileError, match=rf"layer 'lif0': {n} distinct \(du, dv, vth\) combinations \({n} "
                                           rf"distinct threshold\(s\), 1 distinct decay.*target='fixed_pt'"):
        run_lava(lower(g, first_layer="chip"), x)
    fixed = lower(g, "fixed_pt", first_layer="chip")  # thresholds folded: one process
    assert check_lava_limits(fixed) == lava_process_count(fixed) == 6  # LIF + recorder, feeder, 2 synapses, sink
    decays = chain([np.full((n, 3), 0.5)], beta=np.linspace(0.2, 0.9, n))
    with pytest.raises(CompileError, match="lif0.*per-neuron decays cannot be folded"):
        check_lava_limits(lower(decays, "fixed_pt", first_layer="chip"))
    # blocks between groups: 2 x 30 groups -> 900 synapse processes
    m = 30
    wide = chain([np.full((m, 3), 0.5), np.full((m, m), 0.1)], beta=np.linspace(0.2, 0.9, m))
    with pytest.raises(CompileError, match=r"needs \d+ Lava processes .* MAX_LAVA_PROCESSES=512"):
        check_lava_limits(lower(wide, "fixed_pt", first_layer="chip"))
    with pytest.raises(CompileError, match="chunk_samples=0"):
        run_lava(fixed, x, chunk_samples=0)


# --------------------------------------------------------------------------------------- refused input


def test_subtract_reset_lowers_and_other_resets_are_refused():
    net = lower(chain([np.ones((2, 2))], reset="subtract"))
    assert [p.reset for p in net.populations] == ["subtract"]
    assert "reset=subtract" in net.summary()
    with pytest.raises(CompileError, match=r"node 'lif0' \(LIF\): reset mode 'none' is not supported \(only zero "
                                           r"and subtract\); a neuron that never resets cannot be mapped"):
        lower(chain([np.ones((2, 2))], reset="none"))


def test_snntorch_subtract_model_lowers_to_subtract_populations():
    cfg = ModelConfig(name="mlp", hidden=(4,), input_shape=(1, 2, 2), num_classes=2,
                      neuron=NeuronConfig(reset="subtract"))
    net = lower(network_to_nir(build_model(cfg), input_shape=(1, 2, 2)), "fixed_pt")
    assert {p.reset for p in net.populations} == {"subtract"}


def test_a_cycle_through_two_layers_lowers_to_recurrent_projections_and_an_algebraic_loop_is_refused():
    """lif0 -> fc1 -> lif1 -> fc0 -> lif0: both projections on the cycle carry the previous step's spikes (one
    step per synapse layer, see ir.py), so both layers share one lag; the input's projection is forward."""
    g = chain([np.ones((2, 2)), np.ones((2, 2))])
    g.edges.append(("lif1", "fc0"))
    net = lower(g, first_layer="chip")
    assert {(p.source, p.target, p.recurrent) for p in net.projections} == {
        ("input", "lif0", False), ("lif1", "lif0", True), ("lif0", "lif1", True), ("lif1", "output", False)}
    assert [p.lag for p in net.populations] == [1, 1] and net.readout.lag == 2
    loop = chain([np.ones((2, 2))])
    loop.nodes["fc0"] = nir.Affine(weight=np.ones((2, 2), np.float32), bias=np.zeros(2, np.float32))
    loop.nodes["scale"] = nir.Scale(scale=np.ones(2))
    loop.edges += [("fc0", "scale"), ("scale", "fc0")]
    with pytest.raises(CompileError, match=r"graph has a cycle through node\(s\) fc0, scale; a cycle needs a "
                                           r"spiking node \(LIF, IF, CubaLIF\) on it"):
        lower(loop)


def test_disconnected_node_is_refused():
    g = chain([np.ones((2, 2))])
    g.nodes["stray"] = lif_node(2)
    g.edges.append(("fc0", "stray"))
    with pytest.raises(CompileError, match=r"disconnected node\(s\): 'stray' \(reaches no Output\)"):
        lower(g)


@pytest.mark.parametrize("node,why", [
    (nir.Threshold(threshold=np.ones(2)), "stateless threshold"),
    (nir.Delay(delay=np.ones(2)), "Delay"),
])
def test_unmappable_node_is_named(node, why):
    g = chain([np.ones((2, 2))])
    g.nodes["odd"] = node
    g.edges.remove(("fc0", "lif0"))
    g.edges += [("fc0", "odd"), ("odd", "lif0")]
    with pytest.raises(CompileError, match=rf"node 'odd' \({type(node).__name__}\) cannot be compiled: .*{why}"):
        lower(g)


def test_unequal_path_delays_are_refused():
    g = chain([np.ones((2, 2)), np.ones((2, 2))])
    g.nodes["skip"] = nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, np.float32))
    g.edges += [("input", "skip"), ("skip", "lif1")]
    with pytest.raises(CompileError, match="lif1.*different delays"):
        lower(g, first_layer="chip")


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=0.0), r"layer 'lif0': voltage decay 0 needs dv=4096"),
    (dict(thr=1e9), r"layer 'lif0': threshold / max \|weight\| = 1\.66667e\+09 does not fit Loihi"),
    (dict(thr=1e-9), r"layer 'lif0': threshold / max \|weight\| = 1\.66667e-09 does not fit Loihi"),
    (dict(biases=[np.array([400.0])]), r"layer 'lif0': bias .* exceeds the 13-bit bias mantissa"),
])
def test_parameters_out_of_loihi_range_name_layer_and_value(kwargs, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CompileError, match=match):
            lower(chain([np.array([[0.6]])], **kwargs), "fixed_pt", first_layer="chip")


def test_bad_options_and_readout_shapes():
    with pytest.raises(CompileError, match="target 'loihi3'"):
        lower(chain([np.ones((2, 2))]), "loihi3")
    with pytest.raises(CompileError, match="first_layer 'fpga'"):
        lower(chain([np.ones((2, 2))]), first_layer="fpga")
    g = chain([np.ones((2, 2))])
    g.nodes["li"] = nir.LI(tau=np.full(2, DT), r=np.ones(2), v_leak=np.zeros(2))
    g.edges.remove(("fc0", "lif0"))
    g.edges += [("fc0", "li"), ("li", "lif0")]
    with pytest.raises(CompileError, match="LI node 'li'"):
        lower(g)


def test_li_readout_is_a_host_filter():
    g = chain([np.ones((2, 2))])
    g.nodes["li"] = nir.LI(tau=np.full(2, DT), r=np.ones(2), v_leak=np.zeros(2))
    g.edges.remove(("readout", "output"))
    g.edges += [("readout", "li"), ("li", "output")]
    r = lower(g).readout
    assert (r.decay == 0).all() and (r.gain == 1).all()  # tau = dt: per-step logits


def test_first_mismatch_names_layer_and_step():
    a = {"l1": np.zeros((2, 3, 4)), "l2": np.zeros((2, 3, 4))}
    b = {k: v.copy() for k, v in a.items()}
    assert first_mismatch(a, b) is None
    b["l2"][1, 2, 3] = 1
    b["l2"][0, 1, 0] = 1
    assert first_mismatch(a, b).startswith("layer 'l2': first mismatch at step 1 (sample 0")


def test_compiler_never_imports_lava():
    code = ("import sys\nfrom slt_deploy.compile import lower\nfrom slt_deploy.models import build_model\n"
            "from slt_deploy.config import ModelConfig\nfrom slt_deploy.exporters.nir_format import network_to_nir\n"
            "from slt_deploy.exporters import netx_format\n"
            "m = build_model(ModelConfig(name='mlp', hidden=(4,), input_shape=(1, 2, 2), num_classes=2))\n"
            "lower(network_to_nir(m, input_shape=(1, 2, 2)), 'fixed_pt')\n"
            "assert not [k for k in sys.modules if k == 'lava' or k.startswith('lava.')], 'lava imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_direct_input_needs_host_mode_in_chip_mode():
    from slt_deploy.compile.stream import input_stream

    net = lower(chain([np.ones((2, 2))]), first_layer="chip")
    with pytest.raises(CompileError, match="binary spike input"):
        input_stream(net, np.full((1, 2, 2), 0.5))
    with pytest.raises(CompileError, match=r"does not match \(N, T, 2\)"):
        input_stream(net, np.zeros((1, 2, 3)))


def test_plain_sequential_lowers():
    body = nn.Sequential(OrderedDict(fc=nn.Linear(4, 3), lif=leaky(NeuronConfig()), readout=nn.Linear(3, 2)))
    net = lower(network_to_nir(body, input_shape=(4,)))
    assert net.host.target == "lif" and net.readout.kind == "current"
