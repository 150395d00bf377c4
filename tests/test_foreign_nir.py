"""Graphs this toolkit did not write: the NIR paper's public graphs and hand-built graphs with what snnTorch
exports never use (a LIF leak ``v_leak != 0``), run on every backend and in both first-layer modes.

The NIR paper's files are read from ``../shared/nir-paper`` (read only); those tests skip when it is absent.
"""

from collections import OrderedDict
from pathlib import Path

import nir
import numpy as np
import pytest

from slt_deploy.exporters.nir_format import read_nir
from slt_deploy.report.schema import load_report
from slt_deploy.simulate.run import BACKENDS

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "nir-paper"  # ../shared next to the repository
needs_paper = pytest.mark.skipif(not PAPER.is_dir(), reason="the NIR paper graphs (../shared/nir-paper) are absent")

FAST = ("reference", "fast-float", "fast-fixed")
LAVA = ("lava-float", "lava-fixed")
ALL = FAST + LAVA


def run(backend, graph, x, first_layer):
    if backend == "reference":
        return BACKENDS[backend](graph, x)
    return BACKENDS[backend](graph, x, first_layer=first_layer)


def backends(*extra, names=ALL):
    """Backends as test parameters (followed by ``extra`` values), the Lava ones marked ``lava``."""
    return [pytest.param(b, *extra, marks=pytest.mark.lava, id="-".join((b,) + extra)) if b in LAVA
            else pytest.param(b, *extra, id="-".join((b,) + extra)) for b in names]


# ----------------------------------------------------------------------------------- the leak (v_leak != 0)

DT = 1e-4


def leaky_graph(v_leak_1, v_leak_2):
    """Input(2) -> Affine -> LIF(3) -> Affine -> LIF(2) -> Affine -> Output, with leaks on both LIF layers."""
    tau = np.array([0.001, 0.0005, 0.002])
    nodes = OrderedDict(
        input=nir.Input(input_type={"input": np.array([2])}),
        fc1=nir.Affine(weight=np.array([[0.15, 0.05], [0.0, 0.2], [0.1, -0.05]], np.float32),
                       bias=np.array([0.0, 0.05, 0.0], np.float32)),
        lif1=nir.LIF(tau=tau, r=tau / DT, v_leak=np.broadcast_to(v_leak_1, (3,)).copy(),
                     v_threshold=np.ones(3), v_reset=np.zeros(3)),
        fc2=nir.Affine(weight=np.array([[0.5, 0.3, 0.4], [0.1, 0.4, 0.3]], np.float32), bias=np.zeros(2, np.float32)),
        lif2=nir.LIF(tau=np.full(2, 0.001), r=np.full(2, 10.0), v_leak=np.broadcast_to(v_leak_2, (2,)).copy(),
                     v_threshold=np.ones(2), v_reset=np.zeros(2)),
        readout=nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, np.float32)),
        output=nir.Output(output_type={"output": np.array([2])}),
    )
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "readout"),
             ("readout", "output")]
    return nir.NIRGraph(nodes=dict(nodes), edges=edges, metadata={"dt": DT})


def euler_spikes(graph, x):
    """The two LIF layers stepped in float64 by hand (reset to zero at the step after a spike)."""
    n = graph.nodes
    out = {}
    layer_in = x.astype(np.float64)
    for fc, lif in (("fc1", "lif1"), ("fc2", "lif2")):
        w, b, node = n[fc].weight.astype(np.float64), n[fc].bias.astype(np.float64), n[lif]
        k = DT / node.tau
        v = np.zeros((x.shape[0], w.shape[0]))
        s = np.zeros_like(v)
        spikes = []
        for t in range(x.shape[1]):
            v = np.where(s > 0, 0.0, v)
            v = (1 - k) * v + node.r * k * (layer_in[:, t] @ w.T + b) + k * node.v_leak
            s = (v > node.v_threshold).astype(np.float64)
            spikes.append(s)
        out[lif] = layer_in = np.stack(spikes, axis=1)
    return out


@pytest.fixture(scope="module")
def leak_input():
    return (np.random.default_rng(3).random((4, 60, 2)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("first_layer", ["host", "chip"])
@pytest.mark.parametrize("backend", backends())
def test_leak_is_counted_once_on_every_backend(backend, first_layer, leak_input):
    """A per-neuron leak (one neuron without) on the first layer, a scalar one on the second."""
    leaks = ([2.0, 0.0, 1.2], 0.8)
    graph = leaky_graph(*leaks)
    expected = euler_spikes(graph, leak_input)
    doubled = euler_spikes(leaky_graph(2 * np.asarray(leaks[0]), 2 * np.asarray(leaks[1])), leak_input)
    for layer in ("lif1", "lif2"):  # the leak drives the spikes: counting it twice would change the counts a lot
        assert doubled[layer].sum() > 1.5 * expected[layer].sum() > 30, layer
    got = run(backend, graph, leak_input, first_layer).spikes
    for layer in ("lif1", "lif2"):
        if backend.endswith("fixed"):  # Loihi's 12-bit decays and quantized bias: same spike count within 5 %
            assert abs(got[layer].sum() - expected[layer].sum()) <= 0.05 * expected[layer].sum(), layer
        else:
            np.testing.assert_array_equal(got[layer].reshape(expected[layer].shape), expected[layer], err_msg=layer)


# ------------------------------------------------------------------------------------ the NIR paper graphs

@needs_paper
@pytest.mark.parametrize("backend,first_layer", backends("host") + backends("chip", names=FAST))
def test_two_lif_neurons_fire_five_times(backend, first_layer):
    """The leak bug's case: host mode on every backend (chip mode on Lava is covered by the test above).
    v_leak = 1.2 > threshold 1, tau = 10 ms, dt = 0.1 ms, no input: the first neuron fires every ~180 steps."""
    graph = read_nir(PAPER / "two_lif_neurons.nir")
    spikes = run(backend, graph, np.zeros((1, 1000, 1), np.float32), first_layer).spikes
    assert int(spikes["lif1"].sum()) == 5
    assert int(spikes["lif2"].sum()) == 0


LIF_EXACT_SPIKES = [460, 510, 710, 760]  # the paper's event-exact solution, also norse's


@pytest.fixture(scope="module")
def lif_input():
    """The LIF experiment's input: the first column of lif_exact.csv, 1000 steps, one sample."""
    table = np.loadtxt(PAPER / "lif_exact.csv", delimiter=",")
    assert list(np.flatnonzero(table[:, 2])) == LIF_EXACT_SPIKES
    return table[:, 0].astype(np.float32).reshape(1, -1, 1)


@needs_paper
@pytest.mark.parametrize("backend", backends())
def test_lif_norse_gives_the_exact_spike_times_on_every_backend(backend, lif_input):
    graph = read_nir(PAPER / "lif_norse.nir")
    spikes = run(backend, graph, lif_input, "chip").spikes["1"]
    assert list(np.flatnonzero(spikes.ravel())) == LIF_EXACT_SPIKES


@needs_paper
def test_simulate_api_takes_arrays_without_labels_and_names_the_assumed_dt(lif_input):
    from slt_deploy.simulate import simulate

    result = simulate(PAPER / "lif_norse.nir", "fast-fixed", x=lif_input, progress=False)
    assert result.accuracy is None and result.reference_accuracy is None
    assert result.prediction_agreement == 1.0 and result.first_mismatch is None and not result.silent
    assert result.spikes_per_sample == {"1": 4.0}
    assert result.first_layer == "chip" and result.dt == 1e-4  # binary input given as a sequence
    assert result.warnings == ["the graph states no dt; assuming dt = 0.0001 s (snnTorch's export convention). "
                               "Tools that integrate one input per step (sinabs IF, r = 1) need --dt 1 (dt= in "
                               "Python)"]
    assert "accuracy unknown (no labels)" in result.summary()
    # the same input as (N, ...) values to encode: 1000 steps of the direct encoding of 0 give no spike at all
    quiet = simulate(PAPER / "lif_norse.nir", "reference", x=np.zeros((2, 1), np.float32), y=[0, 0],
                     timesteps=50, progress=False)
    assert quiet.silent and quiet.accuracy == 1.0 and "NO SPIKES" in quiet.summary()
    assert quiet.warnings[-1].startswith("no neuron spiked in any layer")


@needs_paper
def test_cli_simulate_takes_an_input_file(lif_input, tmp_path, capsys):
    from slt_deploy.cli import main

    np.savez(tmp_path / "in.npz", x=lif_input)
    assert main(["simulate", str(PAPER / "lif_norse.nir"), "--input", str(tmp_path / "in.npz"), "--backend",
                 "fast-float", "--dt", "1e-4", "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out  # dt given
    assert "fast-float on 1 samples of file in.npz (T=1000, given input, first layer on chip): accuracy unknown" in out
    assert "spikes identical in every layer" in out
    np.save(tmp_path / "bad.npy", np.zeros((3, 7)))
    assert main(["simulate", str(PAPER / "lif_norse.nir"), "--input", str(tmp_path / "bad.npy")]) == 2
    assert capsys.readouterr().err.strip() == (
        "slt-deploy: error: file bad.npy: x has shape (3, 7); the graph's input is (1,), so x must be (N, T, 1) "
        "spikes/currents or (N, 1) values")
    assert main(["simulate", str(PAPER / "lif_norse.nir"), "--backend", "reference"]) == 2
    assert "NIR metadata lacks dataset, encoding, timesteps" in capsys.readouterr().err


@needs_paper
@pytest.mark.lava
def test_cnn_sinabs_on_event_mnist():
    """sinabs's IF nodes (r = 1, no dt) integrate one input per step: silent at the default dt, flagged; at
    dt = 1 lava-float equals the reference spike for spike and Loihi fixed point agrees closely (measured on
    4 samples: >= 96 % of spikes per layer, every prediction)."""
    from slt_deploy.simulate import simulate
    from slt_deploy.simulate.workload import dataset_config

    path, data = PAPER / "cnn_sinabs.nir", dataset_config("event-mnist")
    assert data.encoding == "events" and data.timesteps == 5
    silent = simulate(path, "fast-float", samples=2, progress=False, data=data)
    assert silent.silent and silent.dt == 1e-4 and silent.spikes_per_sample == dict.fromkeys(silent.spike_agreement, 0.0)
    lava = simulate(path, "lava-float", samples=2, progress=False, data=data, dt=1)
    assert lava.first_mismatch is None and not lava.silent and lava.first_layer == "chip"
    assert lava.spikes_per_sample["1"] > 100 and lava.warnings == []
    fixed = simulate(path, "fast-fixed", samples=2, progress=False, data=data, dt=1)
    assert fixed.prediction_agreement == 1.0
    assert min(fixed.spike_agreement.values()) >= 0.95


def test_report_runs_a_graph_without_metadata_on_an_input_file(tmp_path, capsys):
    """A graph stripped of slt-deploy's metadata, given its samples as a file of values to encode, reports the
    same accuracy and activity as the same graph with metadata on the same samples."""
    import json

    import torch

    from slt_deploy.cli import main
    from slt_deploy.config import DataConfig, ModelConfig
    from slt_deploy.data import load_dataset
    from slt_deploy.exporters.nir_format import ticket_to_nir, write_nir
    from slt_deploy.exporters.onnx_format import export_ticket_onnx
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.search.masks import Mask
    from slt_deploy.ticket import Ticket, TicketRecord

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(24,)), (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)
    data = DataConfig(dataset="digits", timesteps=4)
    record = TicketRecord(model=model.config, method="dense", dataset="digits", timesteps=4, round=0,
                          hyperparameters={"data": data.to_dict()})
    ticket = Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record).save(tmp_path / "t.safetensors")
    ann = export_ticket_onnx(ticket, tmp_path / "ann.onnx")
    graph = ticket_to_nir(ticket)
    write_nir(graph, tmp_path / "ours.nir")
    graph.metadata = {"dt": graph.metadata["dt"]}
    write_nir(graph, tmp_path / "foreign.nir")
    test = load_dataset(data).test
    np.savez(tmp_path / "digits.npz", x=test.images[:20].astype(np.float32) / 255.0, y=test.labels[:20])

    common = ["--ann", str(ann), "--profiles", "cmos45", "--samples", "20", "--no-progress"]
    assert main(["report", str(tmp_path / "ours.nir"), "--out", str(tmp_path / "a")] + common) == 0
    assert main(["report", str(tmp_path / "foreign.nir"), "--out", str(tmp_path / "b"), "--input",
                 str(tmp_path / "digits.npz"), "--timesteps", "4"] + common) == 0
    a, b = (load_report(tmp_path / d / "report.json").networks[0] for d in "ab")
    assert b.accuracy_measured == a.accuracy_measured
    assert b.activity.per_sample == a.activity.per_sample
    assert b.dataset == "file digits.npz" and b.timesteps == 4
    capsys.readouterr()
    np.savez(tmp_path / "nolabels.npz", x=test.images[:20].astype(np.float32) / 255.0)
    assert main(["report", str(tmp_path / "foreign.nir"), "--out", str(tmp_path / "c"), "--input",
                 str(tmp_path / "nolabels.npz"), "--timesteps", "4"] + common) == 2
    assert "the input file needs labels y" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@needs_paper
def test_lenient_reading_repairs_unit_dimensions_only(tmp_path, lif_input, capsys):
    """lif_rockpool.nir's case: an Output declared (1, 1, 1) behind a neuron of shape (1)."""
    from slt_deploy.cli import main
    from slt_deploy.errors import ExportError

    graph = nir.read(PAPER / "lif_norse.nir")
    graph.nodes["output"].input_type = {"input": np.array([1, 1, 1])}
    graph.nodes["output"].output_type = {"output": np.array([1, 1, 1])}
    nir.write(tmp_path / "unit.nir", graph)
    with pytest.raises(ExportError) as err:
        read_nir(tmp_path / "unit.nir")
    assert str(err.value) == (f"{tmp_path / 'unit.nir'}: shape mismatch on edge 1 -> output: 1 outputs shape (1) but "
                              f"output expects (1, 1, 1); they differ only by unit dimensions: --lenient "
                              f"(lenient=True) reads it")
    np.save(tmp_path / "x.npy", lif_input)
    assert main(["simulate", str(tmp_path / "unit.nir"), "--lenient", "--input", str(tmp_path / "x.npy"),
                 "--backend", "fast-fixed", "--dt", "1e-4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"warning: {tmp_path / 'unit.nir'}: node 'output' declared input shape (1, 1, 1), its "
                          f"source '1' gives (1,): read as (1,) (they differ only by unit dimensions)\n")
    assert "spikes/sample        4.0" in out
    graph.nodes["output"].input_type = {"input": np.array([2, 1])}
    graph.nodes["output"].output_type = {"output": np.array([2, 1])}
    nir.write(tmp_path / "two.nir", graph)
    with pytest.raises(ExportError, match=r"shape mismatch on edge 1 -> output: 1 outputs shape \(1,\) but output "
                                          r"expects \(2, 1\) \(not only unit dimensions"):
        read_nir(tmp_path / "two.nir", lenient=True)


# ----------------------------------------------------------------------------------- reset by subtraction

@pytest.fixture(scope="module")
def subtract_case():
    """An snnTorch-style two-layer network with reset by subtraction and an input that makes it fire often."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0.4, 0.5, (6, 4)), rng.normal(0.5, 0.6, (3, 6))
    tau = DT / (1 - 0.8)  # beta 0.8
    nodes = OrderedDict(input=nir.Input(input_type={"input": np.array([4])}))
    edges, prev = [], "input"
    for i, w in enumerate((w1, w2)):
        n = w.shape[0]
        nodes[f"fc{i}"] = nir.Affine(weight=w.astype(np.float32), bias=np.zeros(n, np.float32))
        nodes[f"lif{i}"] = nir.LIF(tau=np.full(n, tau), r=np.full(n, 5.0), v_leak=np.zeros(n),
                                   v_threshold=np.ones(n), v_reset=np.zeros(n), metadata={"reset": "subtract"})
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["readout"] = nir.Affine(weight=np.ones((2, 3), np.float32), bias=np.zeros(2, np.float32))
    nodes["output"] = nir.Output(output_type={"output": np.array([2])})
    edges += [(prev, "readout"), ("readout", "output")]
    graph = nir.NIRGraph(nodes=dict(nodes), edges=edges, metadata={"dt": DT})
    x = (rng.random((3, 20, 4)) < 0.5).astype(np.float32)
    reference = run("reference", graph, x, "host").spikes
    zero = dict(graph.nodes)
    for name in ("lif0", "lif1"):
        zero[name] = nir.LIF(**{f: getattr(graph.nodes[name], f) for f in ("tau", "r", "v_leak", "v_threshold",
                                                                            "v_reset")})
    zero_spikes = run("reference", nir.NIRGraph(nodes=zero, edges=edges, metadata={"dt": DT}), x, "host").spikes
    assert sum(v.sum() for v in zero_spikes.values()) < 0.85 * sum(v.sum() for v in reference.values())
    return graph, x, reference


def check_subtract(reference, runs):
    """Float runs spike for spike with the reference (snnTorch's subtract semantics); fixed point with the same
    spike counts per layer and >= 95 % of the spikes equal; Lava fixed point bit for bit with the fast simulator."""
    for layer in ("lif0", "lif1"):
        expected = reference[layer]
        for backend in ("fast-float", "lava-float"):
            if backend in runs:
                np.testing.assert_array_equal(runs[backend][layer].reshape(expected.shape), expected,
                                              err_msg=f"{backend} {layer}")
        for backend in ("fast-fixed", "lava-fixed"):
            if backend in runs:
                assert runs[backend][layer].sum() == expected.sum(), (backend, layer)
                assert (runs[backend][layer].reshape(expected.shape) == expected).mean() >= 0.95, (backend, layer)
        if "lava-fixed" in runs:
            np.testing.assert_array_equal(runs["fast-fixed"][layer], runs["lava-fixed"][layer], err_msg=layer)


@pytest.mark.parametrize("first_layer", ["host", "chip"])
def test_subtract_reset_on_the_fast_simulator(first_layer, subtract_case):
    graph, x, reference = subtract_case
    check_subtract(reference, {b: run(b, graph, x, first_layer).spikes for b in ("fast-float", "fast-fixed")})


@pytest.mark.lava
@pytest.mark.parametrize("first_layer", ["host", "chip"])
def test_subtract_reset_on_lava_with_the_projects_own_process(first_layer, subtract_case):
    graph, x, reference = subtract_case
    check_subtract(reference, {b: run(b, graph, x, first_layer).spikes for b in ("fast-fixed",) + LAVA})


# ------------------------------------------------------------------------------------------- recurrence

def rleaky_case(reset="subtract"):
    """Affine -> LIF with a recurrent Affine (bias included) from the LIF back to itself, as snnTorch's RLeaky
    computes it, with the snnTorch RLeaky run on the same input (subtract reset: snnTorch's default)."""
    import snntorch as snn
    import torch

    rng = np.random.default_rng(1)
    n_in, n, beta = 3, 5, 0.8
    w_in = rng.normal(0.5, 0.4, (n, n_in)).astype(np.float32)
    w_rec = rng.normal(0.0, 0.5, (n, n)).astype(np.float32)
    b_rec = rng.normal(0.05, 0.05, n).astype(np.float32)
    nodes = OrderedDict(
        input=nir.Input(input_type={"input": np.array([n_in])}),
        fc=nir.Affine(weight=w_in, bias=np.zeros(n, np.float32)),
        lif=nir.LIF(tau=np.full(n, DT / (1 - beta)), r=np.full(n, 1 / (1 - beta)), v_leak=np.zeros(n),
                    v_threshold=np.ones(n), v_reset=np.zeros(n), metadata={"reset": reset}),
        rec=nir.Affine(weight=w_rec, bias=b_rec),
        readout=nir.Affine(weight=np.ones((2, n), np.float32), bias=np.zeros(2, np.float32)),
        output=nir.Output(output_type={"output": np.array([2])}))
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "readout"),
             ("readout", "output")]
    graph = nir.NIRGraph(nodes=dict(nodes), edges=edges, metadata={"dt": DT})
    x = (rng.random((4, 15, n_in)) < 0.5).astype(np.float32)
    lif = snn.RLeaky(beta=beta, linear_features=n, reset_mechanism=reset, threshold=1.0)
    with torch.no_grad():
        lif.recurrent.weight.copy_(torch.from_numpy(w_rec))
        lif.recurrent.bias.copy_(torch.from_numpy(b_rec))
        expected = []
        for sample in torch.from_numpy(x):
            spk, mem = lif.init_rleaky()
            steps = []
            for x_t in sample:
                spk, mem = lif(torch.from_numpy(w_in) @ x_t, spk, mem)
                steps.append(spk.numpy())
            expected.append(np.stack(steps))
    return graph, x, np.stack(expected)


def test_recurrent_graph_is_snntorch_rleaky_on_the_reference_and_fast_simulator():
    graph, x, snntorch_spikes = rleaky_case()
    reference = run("reference", graph, x, "host").spikes["lif"]
    np.testing.assert_array_equal(reference, snntorch_spikes)
    assert 100 < reference.sum() < 0.9 * reference.size
    for first_layer in ("host", "chip"):
        np.testing.assert_array_equal(run("fast-float", graph, x, first_layer).spikes["lif"], reference)
        fixed = run("fast-fixed", graph, x, first_layer).spikes["lif"]
        assert (fixed == reference).mean() >= 0.9  # quantization, amplified by the recurrence: measured 0.95-0.97
    from slt_deploy.compile import lower

    net = lower(graph, "fixed_pt", first_layer="chip")
    (rec,) = [p for p in net.projections if p.recurrent]
    assert rec.source == rec.target == "lif" and rec.delay == 1
    assert net.population("lif").lag == 1  # the recurrence adds no lag of its own


@pytest.mark.lava
@pytest.mark.parametrize("first_layer", ["host", "chip"])
def test_recurrent_graph_on_lava(first_layer):
    """Lava float spike for spike with the reference; Lava fixed point bit for bit with the fast simulator;
    four samples streamed back to back, so a spike leaking across a sample boundary would show."""
    graph, x, _ = rleaky_case()
    reference = run("reference", graph, x, "host").spikes["lif"]
    np.testing.assert_array_equal(run("lava-float", graph, x, first_layer).spikes["lif"], reference)
    np.testing.assert_array_equal(run("lava-fixed", graph, x, first_layer).spikes["lif"],
                                  run("fast-fixed", graph, x, first_layer).spikes["lif"])


@pytest.mark.lava
def test_subtract_reset_ticket_deploys_and_loihi1_is_refused_in_the_report(tmp_path):
    """A toolkit ticket with reset by subtraction: export -> Lava float spike for spike with the reference ->
    fixed point -> report, whose fit verdict says Loihi 1 cannot run it and Loihi 2 can."""
    import json

    import torch

    from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig
    from slt_deploy.export import export_ticket
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.report import build_report
    from slt_deploy.search.masks import Mask
    from slt_deploy.simulate import simulate
    from slt_deploy.ticket import Ticket, TicketRecord

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(24,), neuron=NeuronConfig(reset="subtract")),
                                       (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)
    data = DataConfig(dataset="digits", timesteps=4)
    record = TicketRecord(model=model.config, method="dense", dataset="digits", timesteps=4, round=0,
                          hyperparameters={"data": data.to_dict()})
    ticket = Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record).save(tmp_path / "t.safetensors")
    graph = export_ticket(ticket, "nir", tmp_path / "t.nir")
    lava = simulate(graph, "lava-float", samples=20, progress=False)
    assert lava.first_mismatch is None and lava.spikes_per_sample["fc1_lif"] > 1
    fixed = simulate(graph, "fast-fixed", samples=20, progress=False)
    assert fixed.prediction_agreement >= 0.95
    report = build_report([ticket], profiles=["loihi", "loihi2"], out=tmp_path / "r", samples=20, progress=False)
    mapping = report.report.networks[0].mapping
    assert mapping["loihi"].fits is False
    assert mapping["loihi"].fit_summary == ("loihi: does not fit: every spiking layer resets by subtract; loihi "
                                            "implements only: zero")
    assert mapping["loihi2"].fits is True


def test_netx_with_the_first_layer_on_chip_and_inspect_reads_netx(tmp_path, capsys):
    import h5py
    import torch

    from slt_deploy.cli import main
    from slt_deploy.config import DataConfig, ModelConfig
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.search.masks import Mask
    from slt_deploy.ticket import Ticket, TicketRecord

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(12,)), (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight[:, ::2] = 0  # 50 % sparse first layer
    data = DataConfig(dataset="digits", timesteps=4)
    record = TicketRecord(model=model.config, method="dense", dataset="digits", timesteps=4, round=0,
                          hyperparameters={"data": data.to_dict()})
    ticket = Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record).save(tmp_path / "t.safetensors")
    assert main(["export", str(ticket), "--format", "netx", "--first-layer", "chip", "--out",
                 str(tmp_path / "chip.h5")]) == 0
    assert main(["export", str(ticket), "--format", "netx", "--out", str(tmp_path / "host.h5")]) == 0
    with h5py.File(tmp_path / "chip.h5") as f:
        types = [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "flatten", "dense", "dense"]
        assert f["layer/2/weight"].shape == (12, 64)  # the first layer is in the file
    with h5py.File(tmp_path / "host.h5") as f:
        assert [f[f"layer/{i}/type"][()].decode() for i in range(len(f["layer"]))] == ["input", "dense"]
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "chip.h5")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"netx network {tmp_path / 'chip.h5'}: 4 layers (lava-dl netx HDF5; weights are Loihi mantissas)"
    row = out[5].split()
    assert row[:4] == ["2", "dense", "12", "12x64"] and row[9] == "CUBA"
    assert 370 <= int(row[4]) <= 384 and float(row[5]) >= 50.0  # 384 kept weights (a few round to mantissa 0)
    assert main(["export", str(ticket), "--format", "nir", "--first-layer", "chip", "--out",
                 str(tmp_path / "x.nir")]) == 2
    assert capsys.readouterr().err.strip() == "slt-deploy: error: --first-layer applies to --format netx, not nir"


def test_cubalif_with_a_bias_runs_host_fed_and_on_chip():
    """A bias into a current-based layer accumulates in its synaptic current (NIR's CubaLIF): in the host current
    when the layer is fed from the host, as the population's current bias on chip."""
    from slt_deploy.compile import lower

    n = 4
    nodes = OrderedDict(
        input=nir.Input(input_type={"input": np.array([3])}),
        fc=nir.Affine(weight=np.array([[0.5, 0.2, 0.0], [0.1, 0.4, 0.3], [0.0, 0.0, 0.6], [0.3, 0.3, 0.3]],
                                      np.float32), bias=np.array([0.05, 0.0, 0.1, -0.02], np.float32)),
        cuba=nir.CubaLIF(tau_syn=np.full(n, DT / 0.5), tau_mem=np.full(n, DT / 0.2), r=np.full(n, 1 / 0.2),
                         v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, 1 / 0.5)),
        readout=nir.Affine(weight=np.ones((2, n), np.float32), bias=np.zeros(2, np.float32)),
        output=nir.Output(output_type={"output": np.array([2])}))
    edges = [("input", "fc"), ("fc", "cuba"), ("cuba", "readout"), ("readout", "output")]
    graph = nir.NIRGraph(nodes=dict(nodes), edges=edges, metadata={"dt": DT})
    x = (np.random.default_rng(4).random((3, 20, 3)) < 0.5).astype(np.float32)
    reference = run("reference", graph, x, "host").spikes["cuba"]
    assert reference.sum() > 20
    for first_layer in ("host", "chip"):
        np.testing.assert_array_equal(run("fast-float", graph, x, first_layer).spikes["cuba"], reference)
        assert (run("fast-fixed", graph, x, first_layer).spikes["cuba"] == reference).mean() >= 0.95
    cuba = lower(graph, first_layer="chip").population("cuba")
    np.testing.assert_allclose(cuba.current_bias, [0.05, 0.0, 0.1, -0.02], rtol=1e-6)  # g_m g_s = 1 here
    assert not cuba.bias_mant.any()


def test_snntorch_rleaky_network_exports_to_a_recurrent_graph_that_runs_everywhere():
    """An snnTorch network with an RLeaky layer (subtract reset, snnTorch's default) exported by this project:
    the graph's reference run is snnTorch's spike for spike, and so are fast-float (and Lava float, tested on
    the same construct above); fast-fixed agrees closely."""
    import snntorch as snn
    import torch
    from torch import nn

    from slt_deploy.exporters.nir_format import network_to_nir, recurrent_edges

    torch.manual_seed(3)
    body = nn.Sequential(OrderedDict(fc=nn.Linear(3, 6), lif=snn.RLeaky(beta=0.8, linear_features=6),
                                     readout=nn.Linear(6, 2)))
    with torch.no_grad():
        body.fc.weight.mul_(3.0)
    graph = network_to_nir(body, input_shape=(3,))
    assert recurrent_edges(graph) == [("lif", "lif.recurrent")]
    assert graph.nodes["lif"].metadata["reset"] == "subtract"
    x = (np.random.default_rng(5).random((3, 12, 3)) < 0.6).astype(np.float32)
    expected = []
    with torch.no_grad():
        for sample in torch.from_numpy(x):
            spk, mem = body.lif.init_rleaky()
            steps = []
            for x_t in sample:
                spk, mem = body.lif(body.fc(x_t), spk, mem)
                steps.append(spk.numpy())
            expected.append(np.stack(steps))
    expected = np.stack(expected)
    assert 10 < expected.sum() < 0.9 * expected.size
    np.testing.assert_array_equal(run("reference", graph, x, "host").spikes["lif"], expected)
    for first_layer in ("host", "chip"):
        np.testing.assert_array_equal(run("fast-float", graph, x, first_layer).spikes["lif"], expected)
        assert (run("fast-fixed", graph, x, first_layer).spikes["lif"] == expected).mean() >= 0.9
    zero = nn.Sequential(OrderedDict(fc=nn.Linear(3, 6), lif=snn.RLeaky(beta=0.8, linear_features=6,
                                                                        reset_mechanism="zero")))
    assert network_to_nir(zero, input_shape=(3,)).nodes["lif"].metadata["reset"] == "hold"


def test_recurrent_mlp_option(tmp_path):
    """``model.recurrent``: RLeaky hidden layers for mlp only, with subtract reset only; its ANN twin (trained,
    or the untrained ONNX one) is the feed-forward ReLU MLP; the default run name is unchanged (the option is
    hashed only when set)."""
    import snntorch as snn
    from torch import nn

    from slt_deploy.config import ModelConfig, NeuronConfig, RunConfig
    from slt_deploy.errors import ConfigError, ExportError
    import torch

    from slt_deploy.exporters.onnx_format import ann_twin, export_snn_unrolled_onnx
    from slt_deploy.models import build_model, prunable_layers, resolve_config

    with pytest.raises(ConfigError, match=r"^model.recurrent=true needs model.neuron.reset=subtract \(--reset "
                                          r"subtract\): RLeaky's zero reset also drops the step's input, which "
                                          r"Lava cannot run$"):
        ModelConfig(recurrent=True)
    subtract = NeuronConfig(reset="subtract")
    with pytest.raises(ConfigError, match=r"^model.recurrent=True applies to mlp, not to model convnet$"):
        resolve_config(ModelConfig(name="convnet", recurrent=True, neuron=subtract), (1, 28, 28), 10)
    snn_model = build_model(resolve_config(ModelConfig(hidden=(6, 5), recurrent=True, neuron=subtract), (1, 8, 8), 10))
    assert [type(snn_model.body.get_submodule(n)) for n in ("fc1_lif", "fc2_lif")] == [snn.RLeaky, snn.RLeaky]
    fc2_lif = snn_model.body.fc2_lif
    assert fc2_lif.reset_mechanism == "subtract" and fc2_lif.recurrent.weight.shape == (5, 5)
    assert list(prunable_layers(snn_model)) == ["fc1", "fc1_lif.recurrent", "fc2", "fc2_lif.recurrent", "readout"]
    assert snn_model.recurrent_weights() == ("fc1_lif.recurrent", "fc2_lif.recurrent")
    ann = build_model(resolve_config(ModelConfig(hidden=(6,), recurrent=True, spiking=False, neuron=subtract),
                                     (1, 8, 8), 10))
    assert type(ann.body.fc1_lif) is nn.ReLU and ann.recurrent_weights() == ()
    assert RunConfig().run_name() == "imp_mlp_mnist_44136fa355"  # as before the option existed
    # the untrained ONNX twin is feed-forward too: each RLeaky becomes ReLU, its recurrent weight dropped
    twin = ann_twin(snn_model)
    assert twin.meta["recurrence_dropped"] == "fc1_lif, fc2_lif"
    assert not any(isinstance(m, snn.RLeaky) for m in twin.modules())
    x = torch.rand(3, 1, 8, 8)
    body = snn_model.body
    by_hand = body.readout(torch.relu(body.fc2(torch.relu(body.fc1(x.flatten(1))))))
    torch.testing.assert_close(twin(x), by_hand)
    with pytest.raises(ExportError, match=r"^layer 'fc1_lif' \(RLeaky\) is not supported by the ONNX exporter"):
        export_snn_unrolled_onnx(snn_model, (1, 8, 8), 3, tmp_path / "x.onnx")  # the SNN keeps its neurons


@pytest.mark.lava
def test_recurrent_mlp_trained_by_the_search_deploys_end_to_end(tmp_path):
    """Issue 13's RLeaky "Done when": an RLeaky network trained by the toolkit (``--recurrent true``) goes
    search (IMP, 1 round) -> export NIR -> reference executor spike for spike with snnTorch -> Lava float spike
    for spike with the reference -> Lava fixed within 1 point -> report, whose recurrent layer's synaptic ops are
    the previous step's spikes times the kept recurrent weights, the same from the ticket and from its graph."""
    import json

    import torch

    from slt_deploy.compile.reference import record_snntorch
    from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig, RunConfig, SearchConfig, TrainConfig
    from slt_deploy.cost.activity import count_simulation, count_snntorch, synapse_layers
    from slt_deploy.export import export_ticket
    from slt_deploy.exporters.nir_format import recurrent_edges
    from slt_deploy.report import build_report
    from slt_deploy.search import search
    from slt_deploy.simulate import simulate
    from slt_deploy.simulate.reference import NIRExecutor
    from slt_deploy.simulate.workload import encoded_test_samples
    from slt_deploy.ticket import Ticket

    samples = 100
    config = RunConfig(model=ModelConfig(hidden=(24,), recurrent=True, neuron=NeuronConfig(reset="subtract")),
                       data=DataConfig(dataset="digits", n_train=400, n_test=samples, timesteps=5),
                       train=TrainConfig(epochs=3, batch_size=50, optimizer="adam", lr=0.01),
                       search=SearchConfig(method="imp", rounds=1, rewind_epoch=1))
    path = search(config, tmp_path / "runs", progress=False, echo=lambda _m: None).ticket_path
    ticket = Ticket.load(path)
    assert 0 < float(ticket.mask["fc1_lif.recurrent"].float().mean()) < 1  # the recurrent weight is pruned too
    graph = read_nir(export_ticket(path, "nir", tmp_path / "t.nir"))
    assert recurrent_edges(graph) == [("fc1_lif", "fc1_lif.recurrent")]

    x_seq, _ = next(encoded_test_samples(config.data, samples, 0, False, "test"))
    _, expected = record_snntorch(ticket.build_model(), x_seq)
    _, trace = NIRExecutor(graph).run(x_seq, record=True)
    spikes = trace["fc1_lif"].transpose(0, 1).numpy()
    np.testing.assert_array_equal(spikes, expected["fc1_lif"])
    assert 0.05 < spikes.mean() < 0.95
    # the fast simulator's recorded spikes, counted, give the snnTorch run's counts (recurrent layer included)
    fast = BACKENDS["fast-float"](graph, x_seq.transpose(0, 1).numpy(), first_layer="host")
    model = ticket.build_model()
    counted = count_simulation(fast, x_seq.transpose(0, 1).numpy(), synapse_layers(model, (1, 8, 8)))
    assert [(l.name, l.effective_synops, l.input_events) for l in counted.layers] == \
        [(l.name, l.effective_synops, l.input_events) for l in count_snntorch(model, x_seq).layers]

    lava = simulate(tmp_path / "t.nir", "lava-float", samples=samples, progress=False)
    assert lava.first_mismatch is None and lava.accuracy == lava.reference_accuracy
    fixed = simulate(tmp_path / "t.nir", "lava-fixed", samples=samples, progress=False)
    assert abs(fixed.accuracy - fixed.reference_accuracy) <= 0.01 + 1e-12  # within 1 point (1 sample here)
    assert lava.reference_accuracy > 0.5

    report = build_report([path, tmp_path / "t.nir"], profiles=["loihi2"], out=tmp_path / "r", samples=samples,
                          progress=False, runs_dir=tmp_path / "runs", neurobench=False, sanafe=False)
    nets = report.report.networks
    kept = ticket.mask["fc1_lif.recurrent"].double().sum(0).numpy()  # kept weights per source neuron
    previous = np.concatenate([np.zeros_like(spikes[:, :1]), spikes[:, :-1]], axis=1)
    by_hand = float((previous.sum(axis=(0, 1)) * kept).sum()) / samples
    for net in nets:
        layers = {l.name: l for l in net.activity.layers}
        assert layers["fc1_lif.recurrent"].effective_synops == pytest.approx(by_hand, rel=1e-12)
        assert net.mapping["loihi2"].fits is True


# ----------------------------------------------------------------------------------- tau < dt (issue 26)

def unstable_graph(tau_mem=5e-5, tau_syn=None):
    """Input(2) -> Affine -> LIF or CubaLIF(3) -> Affine -> Output at dt = 1e-4, one node with tau < dt."""
    if tau_syn is None:
        neuron = nir.LIF(tau=np.array([1e-3, tau_mem, 1e-3]), r=np.ones(3), v_leak=np.zeros(3),
                         v_threshold=np.ones(3), v_reset=np.zeros(3))
    else:
        neuron = nir.CubaLIF(tau_mem=np.full(3, tau_mem), tau_syn=np.full(3, tau_syn), r=np.ones(3),
                             v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3), w_in=np.ones(3))
    nodes = dict(input=nir.Input(input_type={"input": np.array([2])}),
                 fc1=nir.Affine(weight=np.full((3, 2), 0.5, np.float32), bias=np.zeros(3, np.float32)),
                 lif=neuron,
                 readout=nir.Affine(weight=np.eye(2, 3, dtype=np.float32), bias=np.zeros(2, np.float32)),
                 output=nir.Output(output_type={"output": np.array([2])}))
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT})


@pytest.mark.parametrize("backend", backends(names=ALL))
@pytest.mark.parametrize("taus", [(5e-5, None, "tau"), (5e-5, 1e-3, "tau_mem"), (1e-3, 2e-5, "tau_syn")],
                         ids=["lif", "cubalif-mem", "cubalif-syn"])
def test_tau_below_dt_is_refused_on_every_backend(backend, taus):
    """tau < dt makes the forward-Euler decay 1 - dt/tau negative. The fixed-point backends always refused it
    (dv > 4095); the float ones ran it silently (the reference at 45 % accuracy on a real graph). Now every
    backend, float included, refuses it with the same line naming the node, the time constant and dt."""
    from slt_deploy.errors import SltError

    tau_mem, tau_syn, what = taus
    x = np.ones((2, 4, 2), np.float32)
    shortest = min(t for t in (tau_mem, tau_syn) if t is not None) if what != "tau_mem" else tau_mem
    with pytest.raises(SltError, match=rf"node 'lif': {what}={shortest:g} s is shorter than the time step "
                                       rf"dt=0.0001 s, so the forward-Euler decay 1 - dt/{what} = -?[0-9.]+ is "
                                       r"negative"):
        run(backend, unstable_graph(tau_mem, tau_syn), x, "host")


def test_tau_equal_to_dt_runs():
    """tau == dt is decay 0 (snnTorch beta = 0), even with tau stored in float32 a few 1e-9 below dt."""
    graph = unstable_graph(tau_mem=float(np.float32(DT)))
    out = run("reference", graph, np.ones((1, 3, 2), np.float32), "host")
    assert out.spikes["lif"].shape[-1] == 3


def test_cli_names_the_file_and_the_remedy(tmp_path, capsys):
    """simulate and report refuse it before loading any data: one line naming the file, the node and --dt;
    a smaller --dt runs the same graph."""
    from slt_deploy.cli import main
    from slt_deploy.exporters.nir_format import write_nir

    path = write_nir(unstable_graph(), tmp_path / "unstable.nir")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones((2, 4, 2), np.float32))
    for argv in (["simulate", str(path), "--backend", "fast-float", "--input", str(inputs), "--no-progress"],
                 ["report", str(path), "--profiles", "loihi2", "--out", str(tmp_path / "rep"), "--input",
                  str(inputs), "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"slt-deploy: error: {path}: node 'lif': tau=5e-05 s is "
                                                       f"shorter than the time step dt=0.0001 s")
        assert err.rstrip().endswith("the step must be <= 5e-05 s; set the step with --dt")
    assert not (tmp_path / "rep").exists()
    assert main(["simulate", str(path), "--backend", "fast-float", "--input", str(inputs), "--dt", "5e-5",
                 "--no-progress"]) == 0
