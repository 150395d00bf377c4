"""SynSense's own simulators: xylosim (Xylo Audio 2) and sinabs (DYNAP-CNN / Speck), on small real networks."""

from __future__ import annotations

import sys

import nir
import numpy as np
import pytest

from slt_deploy.report.schema import load_deploy
from slt_deploy.errors import ConfigError

pytest.importorskip("xylosim", reason="xylosim comes with the vendors extra (pip install -e \".[vendors]\")")
pytest.importorskip("rockpool", reason="rockpool comes with the vendors extra (pip install -e \".[vendors]\")")

from slt_deploy.simulate import simulate  # noqa: E402
from slt_deploy.simulate.synsense import import_without_samna, samna_is_placeholder  # noqa: E402
from slt_deploy.simulate.xylo import XyloRun, XyloSpec, xylo_spec  # noqa: E402


def _mlp(sizes, rng, reset="subtract", thr=1.0, node=nir.IF):
    """Input -> (Affine -> IF)* -> Affine readout -> Output, dt = 1 (r = 1)."""
    nodes = {"input": nir.Input(input_type=np.array([sizes[0]]))}
    edges, prev = [], "input"
    for k, (a, b) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        nodes[f"fc{k}"] = nir.Affine(weight=rng.uniform(-0.3, 0.6, (b, a)), bias=np.zeros(b))
        meta = {"reset": reset}
        if node is nir.IF:
            nodes[f"lif{k}"] = nir.IF(r=np.ones(b), v_threshold=np.full(b, thr), v_reset=np.zeros(b), metadata=meta)
        else:
            nodes[f"lif{k}"] = nir.LIF(tau=np.full(b, 2.0), r=np.full(b, 2.0), v_leak=np.zeros(b),
                                       v_threshold=np.full(b, thr), v_reset=np.zeros(b), metadata=meta)
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        prev = f"lif{k}"
    nodes["readout"] = nir.Affine(weight=rng.normal(0, 1, (sizes[-1], sizes[-2])), bias=np.zeros(sizes[-1]))
    nodes["output"] = nir.Output(output_type=np.array([sizes[-1]]))
    edges += [(prev, "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def test_placeholder_samna_is_kept_out():
    if not samna_is_placeholder():
        pytest.skip("the installed samna is not PyPI's placeholder (or none is installed)")
    import_without_samna("xylosim.v2")
    assert sys.modules["samna"] is None  # import samna -> ImportError, no pip subprocess
    with pytest.raises(ImportError):
        import samna  # noqa: F401


def _one_neuron(w, thr, dash_syn, bias=0):
    one = np.array([[w]])
    return XyloSpec(weights_in=one, weights_rec=np.zeros((1, 1), np.int64), weights_out=np.array([[1]]),
                    threshold=np.array([thr]), bias=np.array([bias]), bias_out=np.array([0]),
                    dash_mem=np.array([15]), dash_syn=np.array([dash_syn]), scale_out=1.0,
                    populations=(("h", 0, 1, np.arange(1)),), input_index=np.arange(1), readout_shape=(1,))


def test_xylosim_neuron_hand_computed():
    # one input spike of weight 20, dash_syn 1: I = 20 - 10 = 10, then 5, 3 (5 - 5>>1), 2, 1;
    # V (dash_mem 15: at least 1 lost per step) = 10, 10 - 1 + 5 = 14, 14 - 1 + 3 = 16, 17, 17, and 16 in the
    # step the run appends for the output layer's one-step lag
    run = XyloRun(_one_neuron(20, 1000, 1))
    run.run(np.array([[[1], [0], [0], [0], [0]]]))
    assert run.layer.rec_i_syn == [[10, 5, 3, 2, 1, 0]]
    assert run.layer.rec_v_mem == [[10, 14, 16, 17, 17, 16]]
    # bias 10, threshold 6: V = 10 -> 1 spike, V = 4; 4 - 1 + 10 = 13 -> 2 spikes (V >= thr, several), V = 1
    run = XyloRun(_one_neuron(0, 6, 1, bias=10))
    _, spikes, _ = run.run(np.zeros((1, 4, 1), np.int64))
    assert spikes["h"][0, :, 0].tolist() == [1, 2, 1, 2]


def _xylo_model(spec: XyloSpec, x: np.ndarray) -> np.ndarray:
    """The module docstring's integer equations for one hidden layer: hidden spike counts (T, n)."""
    def dec(v, d):
        s = v >> d
        return np.where((s == 0) & (v > 0), 1, s)

    n = spec.weights_in.shape[1]
    i, v, out = np.zeros(n, np.int64), np.zeros(n, np.int64), []
    for t in range(len(x)):
        i = i + x[t] @ spec.weights_in
        i = i - dec(i, spec.dash_syn)
        v = v - dec(v, spec.dash_mem) + i + spec.bias
        k = np.where(v >= spec.threshold, np.minimum(v // spec.threshold, 31), 0)
        v = v - k * spec.threshold
        out.append(k)
    return np.array(out)


def test_xylosim_matches_the_documented_equations_spike_for_spike():
    rng = np.random.default_rng(0)
    graph = _mlp([16, 24, 5], rng)
    spec = xylo_spec(graph)
    x = (rng.random((6, 20, 16)) < 0.3).astype(np.int64)
    _, spikes, _ = XyloRun(spec).run(x)
    assert spikes["lif0"].sum() > 50
    for k in range(len(x)):
        assert np.array_equal(spikes["lif0"][k], _xylo_model(spec, x[k]))


def test_xylosim_backend_against_the_reference_names_the_difference():
    rng = np.random.default_rng(1)
    graph = _mlp([16, 20, 4], rng)
    x = (rng.random((20, 12, 16)) < 0.4).astype(np.float32)
    res = simulate(graph, "xylosim", x=x, y=rng.integers(0, 4, 20), progress=False)
    assert not res.silent
    assert res.first_mismatch is not None and "fc" not in res.first_mismatch.split("'")[1]
    assert any("synaptic current" in n for n in res.notes)
    assert res.notes[0].startswith("first difference: layer lif0") and "why: " in res.notes[0]
    assert res.prediction_agreement > 0.5


@pytest.mark.parametrize("sizes, limit", [([17, 8, 4], "input_channels = 16"),
                                          ([16, 1001, 4], "hidden_neurons = 1000"),
                                          ([16, 8, 9], "output_neurons = 8")])
def test_xylo_refuses_what_does_not_fit(sizes, limit):
    from slt_deploy.cost.profiles import load_profile
    from slt_deploy.simulate.xylo import LIMIT_KEYS

    hw = load_profile("xylo")
    with pytest.raises(ConfigError, match=limit) as info:
        xylo_spec(_mlp(sizes, np.random.default_rng(0)), {k: hw.limit(k) for k in LIMIT_KEYS})
    assert "\n" not in str(info.value)


def test_xylo_refuses_zero_reset():
    with pytest.raises(ConfigError, match="--reset subtract"):
        xylo_spec(_mlp([4, 3, 2], np.random.default_rng(0), reset="zero"))


# ----------------------------------------------------------------------------------------------- sinabs

def _conv(rng, node=nir.IF, w_max=0.05):
    # 18 inputs per neuron: with w_max <= 1/18 one step adds less than the threshold, so v < 2 thr always and
    # sinabs' MultiSpike emits at most one spike per step, as the reference does
    w = rng.uniform(0, w_max, (3, 2, 3, 3))
    meta = {"reset": "subtract"}
    neuron = (nir.IF(r=np.ones((3, 6, 6)), v_threshold=np.ones((3, 6, 6)), v_reset=np.zeros((3, 6, 6)),
                     metadata=meta) if node is nir.IF else
              nir.LIF(tau=np.full((3, 6, 6), 2.0), r=np.full((3, 6, 6), 2.0), v_leak=np.zeros((3, 6, 6)),
                      v_threshold=np.ones((3, 6, 6)), v_reset=np.zeros((3, 6, 6)), metadata=meta))
    nodes = {"input": nir.Input(input_type=np.array([2, 8, 8])),
             "conv": nir.Conv2d(input_shape=(8, 8), weight=w, stride=1, padding=0, dilation=1, groups=1,
                                bias=np.zeros(3)),
             "lif": neuron,
             "flat": nir.Flatten(input_type={"input": np.array([3, 6, 6])}, start_dim=0, end_dim=-1),
             "readout": nir.Affine(weight=rng.normal(0, 1, (4, 108)), bias=np.zeros(4)),
             "output": nir.Output(output_type=np.array([4]))}
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def test_sinabs_is_spike_identical_with_the_reference():
    pytest.importorskip("sinabs")
    rng = np.random.default_rng(0)
    x = (rng.random((10, 8, 2, 8, 8)) < 0.3).astype(np.float32)
    res = simulate(_conv(rng), "sinabs", x=x, y=rng.integers(0, 4, 10), progress=False)
    assert not res.silent and res.spikes_per_sample["lif"] > 20
    assert res.first_mismatch is None and res.prediction_agreement == 1.0


def test_sinabs_multispike_is_the_named_difference():
    pytest.importorskip("sinabs")
    from slt_deploy.simulate.speck import run_sinabs

    rng = np.random.default_rng(0)
    x = (rng.random((10, 8, 2, 8, 8)) < 0.3).astype(np.float32)
    graph = _conv(rng, w_max=0.35)
    res = simulate(graph, "sinabs", x=x, progress=False)
    assert res.first_mismatch is not None and any("MultiSpike" in n for n in res.notes)
    assert "spike(s), reference 1; why: v >= 2 thresholds: sinabs' MultiSpike fired 2" in res.notes[0]
    assert run_sinabs(graph, x).spikes["lif"].max() >= 2  # several spikes in one step: what differs


def test_sinabs_refuses_a_leaky_neuron():
    pytest.importorskip("sinabs")
    rng = np.random.default_rng(0)
    x = (rng.random((2, 4, 2, 8, 8)) < 0.3).astype(np.float32)
    with pytest.raises(ConfigError, match="integrate-and-fire: search with --beta 1"):
        simulate(_conv(rng, nir.LIF), "sinabs", x=x, progress=False)


# ----------------------------------------------------------------------------------------------- deploy

def _digits16(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "vendor_flows" / "digits16.py"
    spec = importlib.util.spec_from_file_location("digits16", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    np.savez(tmp_path / "d16.npz", **module.digits16(timesteps=8))
    return tmp_path / "d16.npz"


@pytest.mark.slow
def test_a_searched_ticket_deploys_on_xylo_and_a_wide_one_is_refused(tmp_path):
    import json

    from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig, RunConfig, SearchConfig, TrainConfig
    from slt_deploy.deploy import deploy
    from slt_deploy.search import search

    data = _digits16(tmp_path)
    neuron = NeuronConfig(beta=1.0, reset="subtract")
    cfg = RunConfig(model=ModelConfig(name="mlp", hidden=(16,), neuron=neuron),
                    data=DataConfig(dataset="npz", path=str(data), encoding="events", timesteps=8, n_train=0,
                                    n_test=0),
                    train=TrainConfig(epochs=2, device="cpu"), search=SearchConfig(method="dense"))
    ticket = search(cfg, runs_dir=tmp_path / "runs", progress=False).ticket_path
    result = deploy(ticket, profile="xylo", backend="fast-fixed", out=tmp_path / "out", samples=40, progress=False,
                    echo=lambda *a: None)
    d = load_deploy(tmp_path / "out" / "deploy.json")
    assert d.fits is True and d.vendor.backend == "xylosim"
    assert d.vendor.accuracy is not None and not d.vendor.silent
    assert "xylosim (the vendor's simulator): accuracy" in result.summary

    wide = RunConfig(model=ModelConfig(name="mlp", hidden=(16,), neuron=neuron),
                     data=DataConfig(dataset="digits", encoding="rate", timesteps=4, n_train=200, n_test=50),
                     train=TrainConfig(epochs=1, device="cpu"), search=SearchConfig(method="dense"))
    ticket = search(wide, runs_dir=tmp_path / "runs", progress=False).ticket_path
    refusal = r"does not fit xylo: layer flatten\+fc1: 64 inputs, input_channels = 16"
    with pytest.raises(ConfigError, match=refusal) as info:
        deploy(ticket, profile="xylo", backend="fast-fixed", out=tmp_path / "refused", samples=10, progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_a_conv_ticket_deploys_on_speck_with_sinabs(tmp_path):
    import json

    import torch

    pytest.importorskip("sinabs")
    from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig
    from slt_deploy.deploy import deploy
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.search.masks import Mask
    from slt_deploy.ticket import Ticket, TicketRecord

    torch.manual_seed(0)
    cfg = ModelConfig(name="convnet", hidden=(4, 8, 16), batchnorm=False,
                      neuron=NeuronConfig(beta=1.0, reset="subtract"))
    model = build_model(resolve_config(cfg, (2, 34, 34), 10))
    with torch.no_grad():  # an untrained network that spikes in every layer
        model.body.conv1.weight.abs_().mul_(0.5)
        model.body.conv2.weight.abs_().mul_(0.5)
        model.body.fc1.weight.abs_().mul_(0.5)
    data = DataConfig(dataset="event-mnist", encoding="events", timesteps=6, n_train=100, n_test=20)
    record = TicketRecord(model=model.config, method="dense", dataset="event-mnist", encoding="events",
                          timesteps=6, round=0, hyperparameters={"data": data.to_dict()})
    ticket = Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record)
    deploy(ticket, profile="speck", backend="fast-fixed", out=tmp_path / "out", samples=10, progress=False,
           echo=lambda *a: None)
    d = load_deploy(tmp_path / "out" / "deploy.json")
    assert d.profile == "dynapcnn" and d.fits is True and d.vendor.backend == "sinabs"
    assert not d.vendor.silent and d.vendor.accuracy is not None
    if d.vendor.first_mismatch is not None:  # only the named firing-rule differences may separate them
        assert "why: v >= " in d.vendor.notes[0] or "why: v == threshold" in d.vendor.notes[0]

    import dataclasses

    leaky_model = build_model(resolve_config(cfg.replace(neuron=NeuronConfig(reset="subtract")), (2, 34, 34), 10))
    leaky = Ticket.from_model(leaky_model, Mask.ones_like(prunable_layers(leaky_model)),
                              dataclasses.replace(record, model=leaky_model.config))
    with pytest.raises(ConfigError, match="integrate-and-fire: search with --beta 1"):
        deploy(leaky, profile="dynapcnn", backend="fast-fixed", out=tmp_path / "refused", samples=10, progress=False)
    assert not (tmp_path / "refused").exists()


def test_xylo_sizes_are_checked_one_way():
    """The cost stage's chip mapping and the xylosim backend share one size check (hand-made counts)."""
    from slt_deploy.simulate.xylo import size_failures

    sizes = {"input_channels": (17, "layer fc1: 17 inputs"), "hidden_neurons": (1000, "network: 1000 hidden"),
             "output_neurons": (9, "readout: 9 outputs")}
    assert size_failures(sizes, {"input_channels": 16, "hidden_neurons": 1000, "output_neurons": None}) == (
        ["layer fc1: 17 inputs, input_channels = 16"], ["output_neurons"])


def test_each_vendor_backend_checks_its_input_before_anything_is_written():
    """The chip checks live with their backends (simulate/backends.py's registry), not in deploy: real-valued
    input is refused for both vendor chips in one line, a backend without a check takes anything."""
    from slt_deploy.errors import ConfigError
    from slt_deploy.simulate.backends import check_network

    def no_limit(key):
        raise AssertionError("the encoding is refused before any limit is read")

    with pytest.raises(ConfigError, match=r"^deploy t on xylo: the input is direct-encoded \(real values\); Xylo"):
        check_network("xylosim", None, "direct", no_limit, "deploy t on xylo")
    with pytest.raises(ConfigError, match=r"^deploy t on speck: the input is rate-encoded; DYNAP-CNN takes events"):
        check_network("sinabs", None, "rate", no_limit, "deploy t on speck")
    assert check_network("fast-fixed", None, "direct", no_limit, "deploy t on loihi") is None
    with pytest.raises(ConfigError, match="unknown backend 'nosuch'"):
        check_network("nosuch", None, "direct", no_limit, "deploy t")
