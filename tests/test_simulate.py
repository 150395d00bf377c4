"""The simulate stage and its CLI: a NIR export of a ticket run on real data by every backend, each checked
against the snnTorch-exact reference; the export formats through the CLI; the demo end to end."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from slt_deploy.cli import main
from slt_deploy.config import DataConfig, ModelConfig
from slt_deploy.data import encode, load_dataset
from slt_deploy.export import export_ticket
from slt_deploy.search.masks import Mask, apply_mask, prune_magnitude
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.report import load_report
from slt_deploy.simulate import simulate
from slt_deploy.ticket import Ticket, TicketRecord

T = 4
SAMPLES = 40


@pytest.fixture(scope="module")
def ticket_path(tmp_path_factory):
    """An 80 %-sparse digits MLP whose layers spike (scaled untrained weights), saved as a ticket."""
    torch.manual_seed(1)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(48, 24)), (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)
        model.body.fc2.weight.mul_(6.0)
    layers = prunable_layers(model)
    mask = prune_magnitude(layers, Mask.ones_like(layers), 0.8, "global")
    apply_mask(layers, mask)
    data = DataConfig(dataset="digits", timesteps=T)
    record = TicketRecord(model=model.config, method="imp", dataset="digits", timesteps=T, round=3,
                          hyperparameters={"data": data.to_dict()})
    return Ticket.from_model(model, mask, record).save(tmp_path_factory.mktemp("t") / "ticket.safetensors")


@pytest.fixture(scope="module")
def nir_path(ticket_path):
    return export_ticket(ticket_path, "nir", ticket_path.parent / "ticket.nir")


def snntorch_predictions(ticket_path, n):
    test = load_dataset(DataConfig(dataset="digits")).test
    x = torch.from_numpy(test.images[:n]).float() / 255.0
    with torch.no_grad():
        logits = Ticket.load(ticket_path).build_model()(encode(x, "direct", T))
    return logits.sum(0).argmax(1).numpy(), test.labels[:n]


def test_reference_backend_reproduces_the_snntorch_ticket(ticket_path, nir_path):
    result = simulate(nir_path, "reference", samples=SAMPLES, progress=False)
    pred, labels = snntorch_predictions(ticket_path, SAMPLES)
    assert result.samples == SAMPLES and result.timesteps == T and result.dataset == "digits"
    assert result.accuracy == pytest.approx(float((pred == labels).mean()))
    assert result.first_mismatch is None and result.prediction_agreement == 1.0
    assert set(result.spike_agreement) == {"fc1_lif", "fc2_lif"}
    assert all(v > 0 for v in result.spikes_per_sample.values())  # the comparison sees real spikes


@pytest.mark.lava
def test_lava_float_is_spike_identical_and_fast_fixed_equals_lava_fixed(nir_path):
    lava_float = simulate(nir_path, "lava-float", samples=SAMPLES, progress=False)
    assert lava_float.first_mismatch is None
    assert all(v == 1.0 for v in lava_float.spike_agreement.values())
    lava_fixed = simulate(nir_path, "lava-fixed", samples=SAMPLES, progress=False)
    fast_fixed = simulate(nir_path, "fast-fixed", samples=SAMPLES, progress=False)
    # bit-exact simulator: the same spikes as Lava's fixed_pt models, so the same agreement and accuracy
    assert fast_fixed.spike_agreement == lava_fixed.spike_agreement
    assert fast_fixed.spikes_per_sample == lava_fixed.spikes_per_sample
    assert fast_fixed.accuracy == lava_fixed.accuracy
    assert any("fixed_pt" in n for n in lava_fixed.notes)  # the chosen quantization is reported


def test_cli_simulate_writes_json_and_rejects_bad_input(nir_path, tmp_path, capsys):
    out = tmp_path / "sim.json"
    assert main(["simulate", str(nir_path), "--backend", "fast-fixed", "--samples", "20", "--json", str(out),
                 "--no-progress"]) == 0
    data = json.loads(out.read_text())
    assert data["backend"] == "fast-fixed" and data["samples"] == 20
    assert main(["simulate", str(tmp_path / "missing.nir"), "--backend", "reference"]) == 2
    assert "missing.nir" in capsys.readouterr().err
    bad = tmp_path / "bad.nir"
    bad.write_bytes(nir_path.read_bytes()[:500])
    assert main(["simulate", str(bad), "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slt-deploy: error:") and "bad.nir" in err and "Traceback" not in err


def test_the_default_loihi_backend_is_lava_where_installed_and_the_fast_simulator_elsewhere(nir_path, tmp_path,
                                                                                            monkeypatch):
    import importlib.util
    import platform

    from slt_deploy.simulate.run import loihi_backend

    lava_here = importlib.util.find_spec("lava") is not None
    assert loihi_backend()[0] == ("lava-fixed" if lava_here else "fast-fixed")
    out = tmp_path / "default.json"  # `simulate` without --backend takes it
    assert main(["simulate", str(nir_path), "--samples", "5", "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["backend"] == loihi_backend()[0]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lava" else real_find_spec(name, *a))
    backend, why = loihi_backend()
    assert backend == "fast-fixed" and f"this is {platform.python_version()}" in why and "lava_recorded" in why


def test_cli_export_writes_each_format(ticket_path, tmp_path):
    for fmt, name in (("nir", "t.nir"), ("onnx", "t.onnx"), ("onnx-snn", "t_snn.onnx"), ("netx", "t.net")):
        assert main(["export", str(ticket_path), "--format", fmt, "--out", str(tmp_path / name)]) == 0
    with h5py.File(tmp_path / "t.net") as f:  # netx: one group per layer, integer weights
        layers = sorted(f["layer"], key=int)
        weights = [np.asarray(f["layer"][k]["weight"]) for k in layers if "weight" in f["layer"][k]]
    assert len(weights) >= 2 and all(np.array_equal(w, np.round(w)) for w in weights)
    assert main(["inspect", str(tmp_path / "t.nir")]) == 0


@pytest.mark.slow
def test_demo_runs_every_stage_on_the_offline_mnist(tmp_path, capsys):
    """The README's main job (quick settings): search -> export -> simulate (Lava where it is installed, the fast
    simulator everywhere) -> report; it names its Loihi simulator and why."""
    from slt_deploy.simulate.run import loihi_backend

    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for stage in ("== 1. search", "== 2. export", "== 3. compile and simulate", "== 4. report"):
        assert stage in text
    loihi, why = loihi_backend()
    assert f"Loihi simulator: {loihi} ({why})" in text
    sims = json.loads((tmp_path / "simulate.json").read_text())
    assert sorted(sims) == (["fast-fixed", "lava-fixed", "lava-float"] if loihi == "lava-fixed" else ["fast-fixed"])
    if loihi == "lava-fixed":
        assert sims["lava-float"]["first_mismatch"] is None  # the deployed network is the trained one
    assert sims["fast-fixed"]["samples"] == 2000
    assert abs(sims["fast-fixed"]["accuracy"] - sims["fast-fixed"]["reference_accuracy"]) <= 0.01
    report = load_report(tmp_path / "report" / "report.json")
    # the energy objective's front: the dense round and every non-dominated ticket, the chosen one among them
    (run,) = [p for p in (tmp_path / "runs").glob("imp_*") if "-ann" not in p.name]  # the SNN's, not the LT's
    # the ANN pruned like the front's tickets, trained with the same recipe, is among the report's ANNs
    assert report.ann_others and all(a.label.startswith("pruned ANN") for a in report.ann_others)
    assert report.verdict and all(r.decision for r in report.verdict)
    front = json.loads((run / "front.json").read_text())
    assert report.inputs == list(dict.fromkeys(
        [str(run / "rounds" / "round_00.safetensors"), *(str(run / p["ticket"]) for p in front["front"])]))
    assert "front:" in text and front["chosen"] in front["front"]
    for name in ("report.md", "report.html", "energy_breakdown.png"):
        assert (tmp_path / "report" / name).is_file()
