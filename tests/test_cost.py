"""Activity counts, energy, memory and mapping on hand-computed tiny networks.

Every expected number below is worked out by hand in the comment next to it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from slt_deploy.cost import activity as A
from slt_deploy.cost import mapping as M
from slt_deploy.config import ModelConfig, NeuronConfig
from slt_deploy.cost import ann_energy, ann_energy_from_layers, energy_ratio, snn_energy
from slt_deploy.models import SpikingNet, build_model, leaky
from slt_deploy.cost.profiles import ProfileError, load_profile

# Linear 3 -> 2; nonzero weights per input column: 1, 0, 2
W_LIN = torch.tensor([[1.0, 0.0, 2.0],
                      [0.0, 0.0, 3.0]])


def linear_layer(weight=W_LIN, target="fc_lif", name="fc", source=None) -> A.SynapseLayer:
    return A.SynapseLayer(name, "linear", weight, (weight.shape[1],), (weight.shape[0],), source, target)


def linear_net(weight=W_LIN, threshold=1.0) -> SpikingNet:
    fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        fc.weight.copy_(weight)
    body = nn.Sequential(OrderedDict(fc=fc, fc_lif=leaky(NeuronConfig(beta=0.5, threshold=threshold))))
    return SpikingNet(body, ModelConfig())


# ------------------------------------------------------------------------------------------- op counts

def test_linear_binary_input_counts_acs():
    # t0 = [1,0,1] hits 1 + 2 = 3 nonzero weights; t1 = [0,1,1] hits 0 + 2 = 2  -> 5 ACs
    x = torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]])          # (T=2, B=1, 3)
    act = A.count_snntorch(linear_net(), x)
    fc = act.layer("fc")
    assert (act.timesteps, act.samples) == (2, 1)
    assert fc.input_binary and fc.effective_synops == 5 and fc.effective_acs == 5 and fc.effective_macs == 0
    assert fc.dense_ops == 2 * 3 * 2                                    # in x out x T
    assert fc.input_events == 4
    assert fc.neuron_updates == 2 * 2                                   # 2 neurons x T
    assert (fc.weights, fc.nonzero_weights, fc.neurons, fc.fan_in, fc.fan_out) == (6, 3, 2, 3, 2)
    # output spikes counted from the Leaky outputs: rerun the body step by step
    net = linear_net()
    net.reset_state()
    spikes = sum(int(torch.count_nonzero(net.body(x_t))) for x_t in x)
    assert spikes > 0 and fc.output_spikes == spikes


def test_linear_real_valued_input_counts_macs():
    # same nonzero pattern as above, real values -> 5 MACs (direct-encoded first layer)
    x = torch.tensor([[[0.5, 0.0, 2.0]], [[0.0, -3.0, 1.0]]])
    fc = A.count_snntorch(linear_net(), x).layer("fc")
    assert not fc.input_binary and fc.effective_macs == 5 and fc.effective_acs == 0


def test_count_is_per_sample_mean_over_batch():
    x = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]], [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # B = 2
    act = A.count_snntorch(linear_net(threshold=100.0), x)
    # sample 0: 3 + 2 = 5; sample 1: 0 + 3 = 3 -> mean 4
    assert act.samples == 2 and act.layer("fc").effective_synops == 4.0
    assert act.layer("fc").output_spikes == 0


def test_tiny_conv_counts_exactly():
    w = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])                       # taps (0,0) and (1,1)
    x = torch.eye(3).view(1, 1, 1, 3, 3)                                # diagonal spikes, T = B = 1
    layer = A.SynapseLayer("conv", "conv", w, (1, 3, 3), (1, 2, 2), None, None)
    act = A.count_from_spikes([layer], {"conv": x})
    conv = act.layer("conv")
    # out(i,j) = x[i,j] + x[i+1,j+1]: 2, 0, 0, 2 -> 4; dense: 4 positions x 4 taps = 16
    assert conv.effective_synops == 4 and conv.dense_ops == 16 and conv.input_binary
    # padding 1: every nonzero input meets every nonzero weight once -> 3 x 2 = 6; dense: 9 inputs x 4 taps
    padded = A.SynapseLayer("conv", "conv", w, (1, 3, 3), (1, 4, 4), None, None, padding=(1, 1))
    conv = A.count_from_spikes([padded], {"conv": x}).layer("conv")
    assert conv.effective_synops == 6 and conv.dense_ops == 36
    assert padded.fan_out == 4 and padded.fan_in == 4


def test_sparse_layer_synops_proportional_to_nonzero_weights_hit():
    g = torch.Generator().manual_seed(0)
    dense_w = torch.randn(20, 100, generator=g)
    keep = torch.zeros(2000, dtype=torch.bool)
    keep[torch.randperm(2000, generator=g)[:100]] = True                # 95 % sparse: 100 of 2000 kept
    sparse_w = dense_w * keep.view(20, 100)
    spikes = (torch.rand(4, 3, 100, generator=g) < 0.3).float()         # same spikes for both
    dense = A.count_from_spikes([linear_layer(dense_w, None)], {"fc": spikes}).layer("fc")
    sparse = A.count_from_spikes([linear_layer(sparse_w, None)], {"fc": spikes}).layer("fc")
    # exactly: each input spike hits the nonzero weights of its column
    hits = (spikes.sum((0, 1)) * (sparse_w != 0).sum(0)).sum() / 3
    assert sparse.effective_synops == pytest.approx(float(hits))
    assert dense.effective_synops == pytest.approx(float(spikes.sum() / 3 * 20))
    assert sparse.dense_ops == dense.dense_ops
    # all inputs active: exactly 5 % of the dense layer's synaptic ops
    ones = torch.ones(2, 1, 100)
    d = A.count_from_spikes([linear_layer(dense_w, None)], {"fc": ones}).layer("fc").effective_synops
    s = A.count_from_spikes([linear_layer(sparse_w, None)], {"fc": ones}).layer("fc").effective_synops
    assert s / d == pytest.approx(0.05, abs=0) and s == 2 * 100


def test_conv_bn_pool_fold_into_one_conv():
    torch.manual_seed(0)
    conv, bn, pool = nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.AvgPool2d(2)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 2.0)
    body = nn.Sequential(OrderedDict(conv=conv, bn=bn, pool=pool, lif=leaky(NeuronConfig()), flat=nn.Flatten(),
                                     readout=nn.Linear(3 * 4 * 4, 5)))
    net = SpikingNet(body, ModelConfig()).eval()
    layers = A.synapse_layers(net, (2, 8, 8))
    folded = layers[0]
    assert folded.weight.shape == (3, 2, 4, 4) and folded.stride == (2, 2) and folded.output_shape == (3, 4, 4)
    x = torch.rand(2, 2, 8, 8)
    with torch.no_grad():
        ref = pool(bn(conv(x))) - pool(bn(conv(torch.zeros_like(x))))   # BN offset is a bias, not a synapse
    got = F.conv2d(x.double(), folded.weight, stride=folded.stride, padding=folded.padding)
    assert torch.allclose(got.float(), ref, atol=1e-5)
    assert (layers[1].source, layers[1].target) == ("lif", None)


def test_pool_before_linear_folds_into_linear():
    torch.manual_seed(1)
    fc = nn.Linear(2 * 2 * 2, 3, bias=False)
    body = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 1, bias=False), lif=leaky(NeuronConfig()),
                                     pool=nn.AvgPool2d(2), flat=nn.Flatten(), readout=fc))
    layers = A.synapse_layers(SpikingNet(body, ModelConfig()), (1, 4, 4))
    readout = layers[1]
    assert readout.input_shape == (2, 4, 4) and readout.weight.shape == (3, 32)
    s = (torch.rand(5, 2, 4, 4) > 0.5).float()
    with torch.no_grad():
        ref = fc(nn.Flatten()(nn.AvgPool2d(2)(s)))
    assert torch.allclose((s.flatten(1).double() @ readout.weight.T).float(), ref, atol=1e-6)


def test_snntorch_counter_on_real_models():
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="resnet19", hidden=(4, 8, 8, 8), input_shape=(3, 16, 16),
                                  num_classes=10, neuron=NeuronConfig(threshold=0.05)))
    x = torch.rand(3, 2, 3, 16, 16)
    act = A.count_snntorch(net, x)
    assert net.training                                                  # mode restored
    stem = act.layer("stem")
    assert not stem.input_binary and stem.effective_macs > 0             # direct-encoded input: MACs
    shortcut = act.layer("layer1_0.shortcut")                            # identity skip: one synapse per input
    assert shortcut.input_binary and shortcut.effective_synops == shortcut.input_events
    assert shortcut.neuron_updates == 0 and shortcut.output_spikes == 0  # carried by layer1_0.conv2
    assert act.layer("layer1_0.conv2").neuron_updates == 4 * 16 * 16 * 3
    assert act.output_spikes > 0
    assert act.neuron_updates == sum(l.neurons * 3 for l in act.layers if l.neuron_updates)


def test_count_from_spikes_rejects_bad_recordings():
    layer = linear_layer()
    with pytest.raises(A.CountError, match="no input recorded for layer fc"):
        A.count_from_spikes([layer], {})
    with pytest.raises(A.CountError, match=r"layer fc: input shape \(2, 1, 4\) is not \(T, B, 3\)"):
        A.count_from_spikes([layer], {"fc": torch.ones(2, 1, 4)})
    with pytest.raises(A.CountError, match="no output spikes recorded for population fc_lif"):
        A.count_from_spikes([layer], {"fc": torch.ones(2, 1, 3)})
    body = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    with pytest.raises(A.CountError, match=r"layer 1 \(Tanh\) is not supported"):
        A.count_snntorch(SpikingNet(body, ModelConfig()), torch.ones(2, 1, 3))


def test_ann_relu_outputs_are_counted_like_spikes():
    """An ANN twin's ReLU is a population: the next layer's effective MACs are nonzero activations x nonzero
    weights, and a constant real-valued input (the same image every step) is computed once."""
    lin1, lin2 = nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [-1.0, -1.0, 0.0]]))  # unit 1 is negative: ReLU -> 0
        lin2.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 3.0]]))
    net = SpikingNet(nn.Sequential(OrderedDict(fc1=lin1, act1=nn.ReLU(), fc2=lin2)), ModelConfig(spiking=False))
    x = torch.tensor([[[0.5, 2.0, 0.0]]]).repeat(3, 1, 1)  # T = 3 copies of one sample
    a = A.count_snntorch(net, x)
    fc1, fc2 = a.layer("fc1"), a.layer("fc2")
    assert fc1.effective_macs == 2 + 1 and fc1.computed_once and fc1.dense_ops == 6  # x0 -> 2 weights, x1 -> 1
    assert fc2.effective_macs == 2 and fc2.computed_once and fc2.dense_ops == 4       # only unit 0 is active
    assert fc1.output_spikes == 3                                                     # nonzero activations


def test_rleaky_recurrent_layer_counts_the_previous_steps_spikes():
    """RLeaky's recurrent Linear is a synapse layer from the population onto itself, fed the spikes of the step
    before (none at step 0). Hand case: both neurons fire at every step (input current 2, threshold 1); the
    recurrent weight has one nonzero, in column 1, so each step after the first makes 1 effective AC."""
    import snntorch as snn

    fc, out = nn.Linear(1, 2, bias=False), nn.Linear(2, 1, bias=False)
    lif = snn.RLeaky(beta=0.5, threshold=1.0, reset_mechanism="subtract", init_hidden=True, all_to_all=True,
                     linear_features=2)
    with torch.no_grad():
        fc.weight.fill_(2.0)
        out.weight.fill_(1.0)
        lif.recurrent.weight.copy_(torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
        lif.recurrent.bias.zero_()
    net = SpikingNet(nn.Sequential(OrderedDict(fc=fc, lif=lif, readout=out)), ModelConfig())
    a = A.count_snntorch(net, torch.ones(3, 1, 1))  # T = 3, one sample
    rec = a.layer("lif.recurrent")
    assert rec.population == "lif" and a.layer("fc").output_spikes == 6        # 2 neurons x 3 steps
    assert rec.input_events == 4 and rec.effective_acs == 2                     # steps 1 and 2 only
    assert rec.dense_ops == 4 * 3 and rec.neuron_updates == 0 and rec.output_spikes == 0
    layers = A.synapse_layers(net, (1,))
    assert [(l.name, l.source, l.target, l.recurrent) for l in layers] == [
        ("fc", None, "lif", False), ("lif.recurrent", "lif", "lif", True), ("readout", "lif", None, False)]
    spikes = torch.ones(3, 1, 2)
    assert A.previous_step(spikes)[:, 0].tolist() == [[0, 0], [1, 1], [1, 1]]


def test_merge_activity_weights_by_samples():
    net = linear_net(threshold=100.0)
    a = A.count_snntorch(net, torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 1.0]]]))      # 5 synops, 1 sample
    b = A.count_snntorch(net, torch.zeros(2, 3, 3))                                        # 0 synops, 3 samples
    merged = A.merge_activity([a, b])
    assert merged.samples == 4 and merged.layer("fc").effective_synops == pytest.approx(5 / 4)


# ----------------------------------------------------------------------------------------------- energy

def activity(acs=0.0, macs=0.0, updates=0.0, spikes=0.0, timesteps=2) -> A.NetworkActivity:
    layers = []
    if macs:
        layers.append(A.LayerActivity("l0", "conv", "p0", 1, macs, macs, False, updates, spikes, 1, 1, 1, 1, 1))
        updates = spikes = 0.0
    layers.append(A.LayerActivity("l1", "linear", "p1", 1, acs, acs, True, updates, spikes, 1, 1, 1, 1, 1))
    return A.NetworkActivity(tuple(layers), timesteps, 1, "test")


def test_cmos45_reproduces_the_standard_formula():
    # E_SNN = 4.6 pJ x 1,000 first-layer MACs + 0.9 pJ x 20,000 SOPs = 4.6 + 18 = 22.6 nJ
    snn = snn_energy(activity(acs=20_000, macs=1_000, updates=500, spikes=300), "cmos45")
    assert snn.total == pytest.approx(22.6e-9)
    assert dict(snn.components) == pytest.approx({"synaptic_op": 18e-9, "mac": 4.6e-9})
    assert snn.complete and set(snn.unused) == {"neuron_update", "spike_out", "memory_access", "static_power"}
    # E_ANN = 4.6 pJ x 100,000 dense MACs = 460 nJ -> SNN is 22.6 / 460 = 4.913 % of the ANN
    ann = ann_energy(100_000, 10_000, "cmos45")
    assert ann.total == pytest.approx(460e-9)
    assert 100 * energy_ratio(snn, ann) == pytest.approx(100 * 22.6 / 460)


def test_snn_energy_is_counts_times_figures():
    act = activity(acs=1_000, macs=50, updates=200, spikes=40, timesteps=4)
    loihi = load_profile("loihi")
    e = snn_energy(act, loihi)
    assert e.counts["synaptic_op"] == 1_000 and e.counts["neuron_update"] == 200 and e.counts["spike_out"] == 40
    assert e.components["synaptic_op"] == pytest.approx(1_000 * 23.6e-12)
    assert e.components["neuron_update"] == pytest.approx(200 * 81e-12)
    assert e.components["spike_out"] == pytest.approx(40 * 1.7e-12)
    assert e.components["memory_access"] == 0.0                          # included in the synaptic op
    assert e.total == pytest.approx(sum(e.counts[k] * loihi.energy(k) for k in e.components))
    # the real-valued layer's MACs and the static power have no Loihi figure: reported, not invented
    assert set(e.unknown) == {"mac", "static_power"} and not e.complete
    # TrueNorth's 26 pJ is all-in: everything else is included (0), nothing unknown but the MACs
    tn = snn_energy(act, "truenorth")
    assert tn.total == pytest.approx(1_000 * 26e-12) and tn.unknown == ("mac",)


def test_host_first_layer_is_one_component_charged_on_the_host():
    """A layer fed by the network input is computed by the host: one 'first_layer' component at the host's
    mac + memory_access per op, whatever the chip; under the dense rule every weight counts."""
    layers = (A.LayerActivity("fc1", "linear", "p1", 10, 300, 800, False, 40, 6, 800, 600, 20, 40, 20,
                              computed_once=True, from_input=True),
              A.LayerActivity("fc2", "linear", "p2", 6, 90, 400, True, 20, 0, 200, 150, 10, 20, 10))
    act = A.NetworkActivity(layers, 4, 1, "test")
    e = snn_energy(act, "loihi", host="fp32-45nm")
    assert e.components["first_layer"] == pytest.approx(300 * (4.6e-12 + 5e-12))  # fp32-45nm: MAC + SRAM read
    assert e.counts["synaptic_op"] == 90 and "mac" not in e.unknown               # the chip runs no MAC
    assert e.kind == "estimate"  # loihi's synaptic_op/spike_out are minimums, its neuron_update a worst case
    d = snn_energy(act, "cmos45", ops="dense")
    assert {k: v for k, v in d.components.items() if v} == pytest.approx(
        {"first_layer": 800 * 4.6e-12, "synaptic_op": 400 * 0.9e-12})
    kept = snn_energy(act, "cmos45", host_first_layer=False)  # event input: the first layer stays on chip
    assert "first_layer" not in kept.components and kept.counts["mac"] == 300


def test_static_energy_needs_power_and_latency(tmp_path):
    act = activity(acs=10, timesteps=5)
    xylo = snn_energy(act, "xylo")                                       # 219 uW but no timestep latency
    assert "static_power" in xylo.unused and "timestep_latency" in xylo.unknown
    assert "static_power" not in xylo.components
    data = yaml.safe_load(Path(load_profile("loihi2").path).read_text())
    data["figures"]["timestep_latency"] = {"value": 10, "unit": "us", "source": "test", "status": "measured"}
    path = tmp_path / "l2.yaml"
    path.write_text(yaml.safe_dump(data))
    e = snn_energy(act, load_profile(path))
    assert e.components["static_power"] == pytest.approx(0.232 * 10e-6 * 5)    # P x latency x T
    assert e.counts["static_power"] == pytest.approx(50e-6)


def test_ann_energy_dense_or_effective_and_from_layers():
    # INT8: 0.3 pJ per MAC + a weight read; 1,000 int8 weights (1,000 bytes) fit the 8 KB SRAM:
    # 5 pJ per 32-bit read / 4 weights per word = 1.25 pJ per weight
    e = ann_energy(1_000, 100, "int8-45nm", storage=(8_000, 8))
    assert e.components["mac"] == pytest.approx(1_000 * 0.3e-12)
    assert e.components["memory_access"] == pytest.approx(1_000 * 1.25e-12)
    assert e.unknown == ("static_power",)
    skip = ann_energy(1_000, 100, "int8-45nm", skip_zeros=True, storage=(8_000, 8))
    assert skip.total == pytest.approx(100 * 1.55e-12)
    # without the weights' size the weight read is unknown
    assert "memory_access" in ann_energy(1_000, 100, "int8-45nm").unknown
    layers = [SimpleNamespace(dense_macs=600, effective_macs=60, weight_count=600),
              SimpleNamespace(dense_macs=400, effective_macs=40, weight_count=400)]
    # 1,000 fp32 weights = 3.9 KiB: the 8 KB SRAM, 5 pJ per 32-bit weight
    assert ann_energy_from_layers(layers, "fp32-45nm").total == pytest.approx(1_000 * (4.6 + 5) * 1e-12)


def test_energy_rejects_the_wrong_kind_of_profile():
    with pytest.raises(ProfileError, match="profile int8-45nm is an ANN target"):
        snn_energy(activity(acs=1), "int8-45nm")
    with pytest.raises(ProfileError, match="profile loihi is a neuromorphic target"):
        ann_energy(10, 5, "loihi")


# ----------------------------------------------------------------------------------------------- memory

def row_layer(nonzero_neurons, n_neurons, name="row") -> A.SynapseLayer:
    """One input axon feeding ``n_neurons`` neurons, nonzero weights at ``nonzero_neurons``."""
    w = torch.zeros(n_neurons, 1)
    w[list(nonzero_neurons), 0] = 0.5
    return A.SynapseLayer(name, "linear", w, (1,), (n_neurons,), None, "pop")


def test_plain_formulas():
    assert M.dense_bits(100, 8) == 800
    # CSR: 10 nonzeros x (8 + ceil(log2 25) = 5) + (4 rows + 1) x ceil(log2 11) = 4 -> 130 + 20
    assert M.sparse_bits(10, 4, 25, 8) == 150
    assert M.binary_bits(torch.tensor([0.5, -0.5, 0.5, -0.5])) == 4 * 1 + 32      # two values: 1 bit each
    assert M.binary_bits(torch.tensor([0.5, 0.0, -0.5, 0.0])) == 4 * 2 + 32       # ternary: sign + mask
    assert M.binary_bits(torch.tensor([0.5, 0.25])) is None                       # not binary
    # sinabs example: 16 -> 32 channels, 3x3 kernel: 16 x 2^(4 + 5) = 8 Ki entries; 64x64 output = 128 Ki neurons
    conv = A.SynapseLayer("c", "conv", torch.ones(32, 16, 3, 3), (16, 64, 64), (32, 64, 64), padding=(1, 1))
    assert M.kernel_entries(conv, pow2=True) == 8 * 1024 and M.kernel_entries(conv, pow2=False) == 16 * 32 * 9


def test_loihi_entry_formats_and_word_rounding():
    fmt = M.SynapseFormat.of(load_profile("loihi"))
    assert int(M.entry_words(60, 20, 8, fmt)) == 8                       # 20 + 480 = 500 bits -> 8 words
    # 70 adjacent synapses into a 70-neuron core, 8-bit weights, index bits ceil(log2 70) = 7:
    #   sparse:    10 + 60 x (8+7) = 910 -> 15 words; 10 + 10 x 15 = 160 -> 3 words; 18 words = 1152 bits
    #   dense:     17 + 60 x 8 = 497 -> 8 words;  17 + 80 = 97 -> 2 words; 10 words = 640 bits
    #   runlength: skip 2 (min): 17 + 60 x 10 = 617 -> 10 words; 17 + 100 = 117 -> 2 words; 768 bits
    mem = M.layer_memory(row_layer(range(70), 70), "loihi")
    assert mem.bits == {"dense": 640, "sparse": 1152, "runlength": 768} and mem.best == "dense"
    assert mem.neuron_state_bits == 70 * 48
    # nonzeros at 0, 40, 41 of 50 neurons (index bits 6):
    #   sparse: 10 + 3 x 14 = 52 -> 1 word; dense: span 42: 16 + 336 = 352 -> 6 words
    #   runlength: gap 39 > 31 starts a new entry: [0] 16 + 10 and [40, 41] 16 + 20 -> 2 words
    mem = M.layer_memory(row_layer([0, 40, 41], 50), "loihi")
    assert mem.bits == {"dense": 384, "sparse": 64, "runlength": 128}
    # gaps 4 and 0: skip field ceil(log2 5) = 3 bits: 16 + 3 x 11 = 49 -> 1 word
    assert M.layer_memory(row_layer([0, 5, 6], 50), "loihi").bits["runlength"] == 64


def test_shared_and_crossbar_storage():
    w = torch.tensor([[0.5, 0.0], [0.0, -0.5], [0.5, 0.5]])             # 3 x 2, 4 nonzero, ternary
    layer = A.SynapseLayer("fc", "linear", w, (2,), (3,), None, "p")
    fp32 = M.layer_memory(layer, "fp32-45nm")
    # dense 6 x 32; CSR: 4 x (32 + 1) + 4 x ceil(log2 5) = 132 + 12
    assert fp32.bits == {"dense": 192, "sparse": 144} and fp32.storage == "shared"
    # TrueNorth crossbar: 2 axons x 3 neurons x 1 bit
    assert M.layer_memory(layer, "truenorth").bits == {"binary": 6}


# ---------------------------------------------------------------------------------------------- mapping

def partition_profile(tmp_path, **limits) -> Path:
    data = yaml.safe_load(Path(load_profile("loihi2").path).read_text())
    data["name"] = "tiny"
    values = dict(cores=2, neurons_per_core=4, synaptic_memory_per_core=1000, fan_in_per_core=8,
                  fan_out_per_core=8, weight_bits=8)
    values.update(limits)
    for key, value in values.items():
        unit = "bits" if key in ("synaptic_memory_per_core", "weight_bits") else "count"
        data["limits"][key] = {"value": value, "unit": unit, "source": "test", "status": "published"}
    data["limits"]["weight_sharing"] = {"value": False, "source": "test", "status": "published"}
    data["limits"].pop("neurons_per_chip")
    data["limits"].pop("synapses_per_chip")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def fc(n_in, n_out, name="fc", source=None, target="t") -> A.SynapseLayer:
    return A.SynapseLayer(name, "linear", torch.ones(n_out, n_in), (n_in,), (n_out,), source, target)


def test_partition_just_fits_and_just_fails(tmp_path):
    tiny = partition_profile(tmp_path)
    ok = M.map_network([fc(8, 8)], tiny)                                 # 8 neurons -> 2 cores of 4
    assert ok.fits and ok.cores_used == 2 and ok.verdict == "tiny: fits on 2 cores"
    pop = ok.populations[0]
    assert (pop.neurons_per_core, pop.max_core_fan_in, pop.encoding, pop.max_core_bits) == (4, 8, "dense", 256)
    too_many = M.map_network([fc(8, 9)], tiny)                           # 9 neurons need 3 cores
    assert too_many.fits is False
    assert too_many.failures[0] == ("layer fc (population t): the network needs at least 3 cores for its neurons "
                                    "(limit passed here), cores = 2")
    # cores run out because memory splits a layer finer than neurons_per_core: 4 cores of 2 > 3 cores
    memory_bound = M.map_network([fc(8, 8)], partition_profile(tmp_path, synaptic_memory_per_core=128, cores=3))
    assert memory_bound.failures[0] == "layer fc (population t): the network needs 4 cores (limit passed here, at 4), cores = 3"
    fan_in = M.map_network([fc(9, 4)], tiny)                             # one neuron already sees 9 axons
    assert "a core of 1 neuron(s) has 9 input axons, fan_in_per_core = 8" in fan_in.failures[0]
    # memory of one neuron with 8 inputs: dense 8 x 1 x 8 = 64 bits (sparse: 64 + 9 x 4 = 100)
    assert M.map_network([fc(8, 1)], partition_profile(tmp_path, synaptic_memory_per_core=64)).fits
    tight = M.map_network([fc(8, 1)], partition_profile(tmp_path, synaptic_memory_per_core=63))
    assert tight.fits is False and "needs 64 bits of synaptic memory (dense), synaptic_memory_per_core = 63" \
        in tight.failures[0]
    # memory forces smaller cores: 2 neurons x 8 axons x 8 bits = 128 fits, 3 neurons = 192 does not
    split = M.map_network([fc(8, 4)], partition_profile(tmp_path, synaptic_memory_per_core=128, cores=4))
    assert split.fits and split.populations[0].neurons_per_core == 2 and split.cores_used == 2


def test_partition_output_axons_limit_core_size(tmp_path):
    # A (8 neurons) feeds B (8 neurons, 2 cores of 4): every A neuron needs 2 output axons
    net = [fc(4, 8, "a", None, "A"), fc(8, 8, "b", "A", "B")]
    fits = M.map_network(net, partition_profile(tmp_path, cores=8, fan_out_per_core=8))
    assert [p.neurons_per_core for p in fits.populations] == [4, 4] and fits.populations[0].max_core_fan_out == 8
    smaller = M.map_network(net, partition_profile(tmp_path, cores=8, fan_out_per_core=7))
    assert smaller.fits and smaller.populations[0].neurons_per_core == 3 and smaller.cores_used == 3 + 2


def test_partition_places_a_recurrent_population(tmp_path):
    """A population onto itself (RLeaky): its recurrent axons add to its cores' fan-in, and its output axons go
    to its own cores, whose number depends on the split being tried."""
    net = [fc(4, 8, "a", None, "A"), fc(8, 8, "A.recurrent", "A", "A")]
    ok = M.map_network(net, partition_profile(tmp_path, cores=4, fan_in_per_core=12))
    assert ok.fits and ok.cores_used == 2
    pop = ok.populations[0]
    assert (pop.neurons_per_core, pop.max_core_fan_in, pop.max_core_fan_out) == (4, 12, 8)  # 4 neurons x 2 cores
    # fewer neurons per core means more cores of A to reach: 1 x 8, 2 x 4, 3 x 3, 4 x 2 output axons, all > 7
    narrow = M.map_network(net, partition_profile(tmp_path, cores=8, fan_in_per_core=12, fan_out_per_core=7))
    assert narrow.fits is False
    assert "a core of 1 neuron(s) needs 8 output axons, fan_out_per_core = 7" in narrow.failures[0]


def test_dynapcnn_one_layer_per_core():
    small = A.SynapseLayer("c1", "conv", torch.ones(4, 2, 3, 3), (2, 8, 8), (4, 8, 8), None, "l1", padding=(1, 1))
    assert M.map_network([small], "dynapcnn").fits
    # the sinabs example: 32 x 64 x 64 = 128 Ki neurons exceed every core's neuron memory (64 Ki at most)
    big = A.SynapseLayer("c2", "conv", torch.ones(32, 16, 3, 3), (16, 64, 64), (32, 64, 64), None, "l2",
                         padding=(1, 1))
    result = M.map_network([big], "dynapcnn")
    assert result.fits is False
    assert result.failures[0] == "layer c2 (population l2): needs 131072 neuron memory entries, largest neurons_per_core = 65536"
    ten = [fc(4, 4, f"f{i}", None if i == 0 else f"p{i - 1}", f"p{i}") for i in range(10)]
    assert "needs 10 cores (one per layer), cores = 9" in M.map_network(ten, "dynapcnn").failures[0]


def test_xylo_chip_sizes():
    net = [fc(16, 1000, "hidden", None, "h"), fc(1000, 8, "readout", "h", None)]
    assert M.map_network(net, "xylo").fits
    wide = [fc(17, 1000, "hidden", None, "h"), fc(1000, 8, "readout", "h", None)]
    assert M.map_network(wide, "xylo").failures == ("layer hidden: 17 inputs, input_channels = 16",)
    big = [fc(16, 1001, "hidden", None, "h"), fc(1001, 8, "readout", "h", None)]
    assert M.map_network(big, "xylo").failures == ("network: 1001 hidden neurons, hidden_neurons = 1000",)


def test_large_network_fails_early_on_neuron_capacity():
    net = build_model(ModelConfig(name="vgg16", hidden=(64, 128, 256, 512, 512), input_shape=(3, 32, 32),
                                  num_classes=10))
    layers = A.synapse_layers(net, (3, 32, 32))
    # cores for 1,024-neuron cores: conv1 64x32x32 -> 64, conv2 (pooled) 64x16x16 -> 16, conv3 -> 32,
    # conv4 (pooled) -> 8, conv5 256x8x8 -> 16: 136 > 128 at conv5
    result = M.map_network(layers, "loihi")
    assert result.fits is False and result.failures[0].startswith("layer conv5 (population conv5_lif): the network "
                                                                  "needs at least 136 cores")
    big = M.map_network(layers, "loihi2")                # 8,192 neurons per core: too many synapses to unroll
    assert big.fits is None and "unrolled synapses" in big.unchecked[-1]


def test_ann_targets_have_nothing_to_map():
    result = M.map_network([fc(4, 4)], "int8-45nm")
    assert result.fits is None and "no mapping limits" in result.verdict


def test_real_model_maps_on_every_profile():
    net = build_model(ModelConfig(name="convnet", hidden=(4, 8, 16), input_shape=(1, 28, 28), num_classes=10))
    layers = A.synapse_layers(net, (1, 28, 28))
    assert M.map_network(layers, "loihi").fits
    assert M.map_network(layers, "dynapcnn").fits
    tn = M.map_network(layers, "truenorth")                               # fc1 sees 392 axons > 256
    assert tn.fits is False and tn.failures[0].startswith("layer fc1 (population fc1_lif)")


def test_breakdown_to_dict_is_plain():
    d = snn_energy(activity(acs=10, macs=2), "cmos45").to_dict()
    assert d["components"] == pytest.approx({"synaptic_op": 9e-12, "mac": 9.2e-12}) and d["complete"] is True
    assert d["total"] == pytest.approx(18.2e-12)


def test_constant_real_valued_input_is_computed_once_but_spikes_every_step():
    """Direct encoding: the same real-valued input every step is one computation per sample (Kim et al.)."""
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])  # nonzero weights per input column: 1, 0, 2
    layer = A.SynapseLayer("fc", "linear", w, (3,), (2,), None, None)
    x = torch.tensor([0.5, 0.7, 0.0]).expand(4, 1, 3)  # T=4, B=1, identical at every step
    (direct,) = A.count_from_spikes([layer], {"fc": x}).layers
    assert direct.computed_once and not direct.input_binary
    assert direct.effective_macs == 1.0  # input 0 hits 1 weight, input 1 hits none, input 2 is zero
    assert direct.dense_ops == 6.0 and direct.input_events == 8.0  # dense once; events are still per step
    varying = x.clone()
    varying[3, 0, 1] = 0.9  # one step differs: nothing can be reused, every step is computed
    (each_step,) = A.count_from_spikes([layer], {"fc": varying}).layers
    assert not each_step.computed_once and each_step.effective_macs == 4.0 and each_step.dense_ops == 24.0
    spikes = torch.tensor([1.0, 0.0, 1.0]).expand(4, 1, 3)  # binary input is never folded: 2 ACs per step
    (binary,) = A.count_from_spikes([layer], {"fc": spikes}).layers
    assert binary.input_binary and not binary.computed_once and binary.effective_acs == 4 * 3.0
