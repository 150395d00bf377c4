"""``report --device`` and ``deploy --device`` (issue 25): the fast simulator and the activity counting where the
device says, with the same counts on every device. On the CPU: the numpy simulator and its torch twin (run on
the CPU) give the same counts and spikes on networks with the newer neuron features (a current bias, the
subtract reset), and a GPU that is not there is one line. Tests marked ``gpu`` compare a GPU run with the CPU's
(skipped, with the reason, where torch sees no GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from slt_deploy.cli import main
from slt_deploy.compile import lower
from slt_deploy.simulate.fastsim import FastSim
from slt_deploy.simulate.fastsim_torch import TorchFastSim, fast_simulator


def _braille():
    spec = importlib.util.spec_from_file_location("braille_graphs", Path(__file__).with_name("test_braille_graphs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BRAILLE = _braille()


def feed_forward(reset, bias):
    """The Braille-structure graph without its recurrent edge (the torch simulator runs feed-forward networks)."""
    graph = BRAILLE.braille_graph(reset, bias)
    del graph.nodes["w_rec"]
    graph.edges[:] = [e for e in graph.edges if "w_rec" not in e]
    return graph


@pytest.mark.parametrize("reset,bias", BRAILLE.VARIANTS)
def test_numpy_and_torch_fast_simulators_count_the_same_on_the_cpu(reset, bias):
    net = lower(feed_forward(reset, bias), "fixed_pt", first_layer="chip")
    assert (net.population("lif1").current_bias is not None) == bias
    x = BRAILLE.spike_input(20, 25)
    numpy_run = FastSim(net).run(x)
    torch_run = TorchFastSim(net, "cpu").run(x)
    assert numpy_run.counts == torch_run.counts
    assert numpy_run.limits == torch_run.limits
    for name, s in numpy_run.spikes.items():
        np.testing.assert_array_equal(torch_run.spikes[name], s)
    hidden = numpy_run.layer_counts("fc1")
    assert hidden.input_events == float(x.sum()) / len(x)  # every input spike, per sample
    assert 0 < numpy_run.layer_counts("fc2").input_events < hidden.neurons * 25
    assert type(fast_simulator(net, 5000, "cpu")) is FastSim  # --device cpu: numpy


def test_a_missing_gpu_is_one_line_and_nothing_is_written(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    graph = tmp_path / "g.nir"
    from slt_deploy.exporters.nir_format import write_nir

    write_nir(BRAILLE.braille_graph(), graph)
    for argv in (["report", str(graph), "--profiles", "loihi2", "--out", str(tmp_path / "r"), "--device", "cuda"],
                 ["deploy", str(graph), "--profile", "loihi2", "--out", str(tmp_path / "d"), "--device", "cuda:1"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no CUDA GPU is available" in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def small_ticket(path: Path) -> Path:
    """An RSynaptic MLP ticket (subtract reset) on the digits data, untrained."""
    from slt_deploy.config import DataConfig, ModelConfig, NeuronConfig
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.search.masks import Mask
    from slt_deploy.ticket import Ticket, TicketRecord

    torch.manual_seed(0)
    cfg = ModelConfig(name="mlp", hidden=(24,), recurrent=True, neuron=NeuronConfig(reset="subtract", alpha=0.5))
    model = build_model(resolve_config(cfg, (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)
    data = DataConfig(dataset="digits", timesteps=4)
    record = TicketRecord(model=model.config, method="dense", dataset="digits", timesteps=4, round=0,
                          hyperparameters={"data": data.to_dict()})
    return Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record).save(path)


def report_activity(tmp_path: Path, device: str) -> list:
    """The activity of a ticket (run in snnTorch on the device) and of its NIR graph (the executor's trace
    counted on the device), as report.json holds it."""
    from slt_deploy.export import export_ticket
    from slt_deploy.report import build_report, load_report

    tmp_path.mkdir()
    ticket = small_ticket(tmp_path / "t.safetensors")
    export_ticket(ticket, "nir", tmp_path / "t.nir")
    result = build_report([ticket, tmp_path / "t.nir"], profiles=["loihi2"], out=tmp_path / "r", samples=40,
                          progress=False, neurobench=False, sanafe=False, train_ann=False, device=device)
    networks = load_report(result.json).networks
    return [{layer.name: layer for layer in n.activity.layers} for n in networks]


def test_report_counts_with_the_device_setting_on_the_cpu(tmp_path):
    ticket, graph = report_activity(tmp_path / "cpu", "cpu")
    assert ticket == graph  # snnTorch's run and the NIR executor's, counted the same way (recurrence included)
    assert ticket["fc1_lif.recurrent"].effective_synops > 0 and ticket["fc1"].computed_once


@pytest.mark.gpu
def test_report_counts_on_the_gpu_are_the_cpus(tmp_path):
    assert report_activity(tmp_path / "gpu", "cuda") == report_activity(tmp_path / "cpu", "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("reset,bias", BRAILLE.VARIANTS)
def test_fast_simulator_on_the_gpu_counts_as_numpy(reset, bias):
    net = lower(feed_forward(reset, bias), "fixed_pt", first_layer="chip")
    x = BRAILLE.spike_input(2000, 25)
    sim = fast_simulator(net, len(x), "auto")
    assert isinstance(sim, TorchFastSim) and sim.device.type == "cuda"
    gpu, cpu = sim.run(x), FastSim(net).run(x)
    assert gpu.counts == cpu.counts
    for name, s in cpu.spikes.items():
        np.testing.assert_array_equal(gpu.spikes[name], s)
