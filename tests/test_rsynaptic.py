"""snnTorch ``RSynaptic`` (a current-based neuron with an all-to-all recurrent Linear) in export, in the search's
models (``--recurrent true --alpha A``) and in user models: the exported graph's reference run is snnTorch's run
spike for spike, and the graph runs on the fast simulators and Lava (the bias of the recurrent Linear and of the
layer before enter the synaptic current, see tests/test_braille_graphs.py)."""

from collections import OrderedDict

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from slt_deploy.config import ModelConfig, NeuronConfig
from slt_deploy.errors import ConfigError
from slt_deploy.exporters.nir_format import network_to_nir, recurrent_edges
from slt_deploy.simulate.run import BACKENDS


def rsynaptic_body(seed=3, reset="subtract"):
    torch.manual_seed(seed)
    body = nn.Sequential(OrderedDict(
        fc=nn.Linear(4, 6),
        lif=snn.RSynaptic(alpha=0.6, beta=0.8, linear_features=6, all_to_all=True, init_hidden=True,
                          reset_mechanism=reset),
        readout=nn.Linear(6, 2)))
    with torch.no_grad():
        body.fc.weight.mul_(1.5)
        body.lif.recurrent.weight.mul_(0.5)
    return body


def snntorch_spikes(body, x):
    """The RSynaptic layer's spikes, stepped by snnTorch itself over (N, T, 4) input."""
    out = []
    with torch.no_grad():
        for sample in torch.from_numpy(x):
            body.lif.reset_mem()  # spikes too: reset_hidden keeps the last spikes, which feed the recurrence
            out.append(np.stack([body.lif(body.fc(x_t)).numpy() for x_t in sample]))
    return np.stack(out)


def test_rsynaptic_exports_to_a_cubalif_cycle_that_is_snntorch_spike_for_spike():
    import nir

    body = rsynaptic_body()
    graph = network_to_nir(body, input_shape=(4,))
    assert isinstance(graph.nodes["lif"], nir.CubaLIF)
    assert recurrent_edges(graph) == [("lif", "lif.recurrent")]
    assert graph.nodes["lif"].metadata["reset"] == "subtract"
    np.testing.assert_array_equal(graph.nodes["lif.recurrent"].bias, body.lif.recurrent.bias.detach().numpy())
    x = (np.random.default_rng(5).random((3, 15, 4)) < 0.6).astype(np.float32)
    expected = snntorch_spikes(body, x)
    assert 0.05 < expected.mean() < 0.9
    np.testing.assert_array_equal(BACKENDS["reference"](graph, x).spikes["lif"], expected)
    for first_layer in ("host", "chip"):
        np.testing.assert_array_equal(BACKENDS["fast-float"](graph, x, first_layer=first_layer).spikes["lif"],
                                      expected)
        fixed = BACKENDS["fast-fixed"](graph, x, first_layer=first_layer).spikes["lif"]
        assert (fixed == expected).mean() >= 0.9
    zero = network_to_nir(rsynaptic_body(reset="zero"), input_shape=(4,))
    assert zero.nodes["lif"].metadata["reset"] == "hold"  # its zero reset drops the step's input too


@pytest.mark.lava
def test_rsynaptic_graph_on_lava():
    body = rsynaptic_body()
    graph = network_to_nir(body, input_shape=(4,))
    x = (np.random.default_rng(5).random((3, 15, 4)) < 0.6).astype(np.float32)
    expected = snntorch_spikes(body, x)
    np.testing.assert_array_equal(BACKENDS["lava-float"](graph, x, first_layer="chip").spikes["lif"], expected)
    np.testing.assert_array_equal(BACKENDS["lava-fixed"](graph, x, first_layer="chip").spikes["lif"],
                                  BACKENDS["fast-fixed"](graph, x, first_layer="chip").spikes["lif"])


def test_search_models_take_synaptic_neurons_and_rsynaptic_with_recurrent():
    """``--alpha A`` gives snnTorch Synaptic neurons (``--recurrent true``: RSynaptic), subtract reset only; the
    exported graph's reference run is the model's own run spike for spike; the default run name is unchanged."""
    from slt_deploy.compile.reference import record_snntorch
    from slt_deploy.config import RunConfig
    from slt_deploy.exporters.onnx_format import ann_twin
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.simulate.reference import NIRExecutor

    with pytest.raises(ConfigError, match=r"^neuron.alpha=0.5 \(Synaptic neurons\) needs neuron.reset=subtract"):
        NeuronConfig(alpha=0.5)
    with pytest.raises(ConfigError, match=r"^neuron.alpha=1.0 must be in \[0, 1\)$"):
        NeuronConfig(alpha=1.0, reset="subtract")
    synaptic = NeuronConfig(alpha=0.5, reset="subtract")
    plain = build_model(resolve_config(ModelConfig(hidden=(6,), neuron=synaptic), (1, 4, 4), 3))
    assert type(plain.body.fc1_lif) is snn.Synaptic
    model = build_model(resolve_config(ModelConfig(hidden=(8, 6), recurrent=True, neuron=synaptic), (1, 4, 4), 3))
    assert [type(model.body.get_submodule(n)) for n in ("fc1_lif", "fc2_lif")] == [snn.RSynaptic, snn.RSynaptic]
    assert float(model.body.fc1_lif.alpha) == 0.5
    assert list(prunable_layers(model)) == ["fc1", "fc1_lif.recurrent", "fc2", "fc2_lif.recurrent", "readout"]
    assert RunConfig().run_name() == "imp_mlp_mnist_44136fa355"  # as before the option existed
    with torch.no_grad():
        model.body.fc1.weight.mul_(3.0)
    graph = network_to_nir(model, input_shape=(1, 4, 4))
    assert sorted(recurrent_edges(graph)) == [("fc1_lif", "fc1_lif.recurrent"), ("fc2_lif", "fc2_lif.recurrent")]
    x_seq = torch.rand(8, 5, 1, 4, 4)  # (T, B, ...)
    _, expected = record_snntorch(model, x_seq)
    _, trace = NIRExecutor(graph).run(x_seq, record=True)
    for name in ("fc1_lif", "fc2_lif"):
        spikes = trace[name].transpose(0, 1).numpy()
        np.testing.assert_array_equal(spikes, expected[name])
    assert 0.02 < expected["fc1_lif"].mean() < 0.95
    twin = ann_twin(model)  # the ANN twin is feed-forward: every RSynaptic becomes ReLU
    assert twin.meta["recurrence_dropped"] == "fc1_lif, fc2_lif"
    assert not any(isinstance(m, (snn.RSynaptic, snn.Synaptic)) for m in twin.modules())


USER_SOURCE = '''
import snntorch as snn
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 8)
        self.lif1 = snn.RSynaptic(alpha=0.7, beta=0.85, linear_features=8, all_to_all=True, init_hidden=True,
                                  reset_mechanism="subtract")
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.lif1(self.fc1(self.flatten(x))))
'''


def test_user_model_with_rsynaptic_exports_spike_for_spike(tmp_path):
    from slt_deploy.compile.reference import record_snntorch
    from slt_deploy.models import build_model, resolve_config
    from slt_deploy.simulate.reference import NIRExecutor

    (tmp_path / "own.py").write_text(USER_SOURCE)
    torch.manual_seed(1)
    model = build_model(resolve_config(ModelConfig(name=f"{tmp_path / 'own.py'}:Net"), (1, 4, 4), 3))
    assert type(model.body.lif1) is snn.RSynaptic
    with torch.no_grad():
        model.body.fc1.weight.mul_(3.0)
    graph = network_to_nir(model, input_shape=(1, 4, 4))
    assert recurrent_edges(graph) == [("lif1", "lif1.recurrent")]
    x_seq = torch.rand(10, 4, 1, 4, 4)
    _, expected = record_snntorch(model, x_seq)
    _, trace = NIRExecutor(graph).run(x_seq, record=True)
    np.testing.assert_array_equal(trace["lif1"].transpose(0, 1).numpy(), expected["lif1"])
    assert 0.02 < expected["lif1"].mean() < 0.95
