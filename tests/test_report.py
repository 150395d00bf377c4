"""The deployment report: its numbers are the cost model applied to counts measured on a real run.

Tiny tickets (digits 8x8 -> 32 LIF -> 10, T = 4) are built here; every expected number is recomputed
independently from activity/cost/mapping, or by hand for the 45 nm formula.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from slt_deploy.cost.activity import count_snntorch, synapse_layers
from slt_deploy.config import DataConfig, ModelConfig
from slt_deploy.cost import ann_energy_from_layers, snn_energy
from slt_deploy.data import encode, load_dataset
from slt_deploy.exporters.nir_format import ticket_to_nir, write_nir
from slt_deploy.exporters.onnx_format import export_onnx, export_ticket_onnx, ann_twin, onnx_macs
from slt_deploy.cost.mapping import layer_memory
from slt_deploy.search.masks import Mask, apply_mask, prune_magnitude
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.cost.profiles import ProfileError, load_profile, profile_names
from slt_deploy.report import ReportError, build_report, load_report, profiles_table
from slt_deploy.report.schema import EnergyRecord
from slt_deploy.ticket import Ticket, TicketRecord

MY_CHIP = Path(__file__).resolve().parents[1] / "examples" / "my_chip.yaml"
T = 4
SAMPLES = 60      # one simulated batch (report.SIM_BATCH = 100), so the counts are not re-averaged
PROFILES = ["loihi", "fp32-45nm", "xylo", str(MY_CHIP)]


def full_markdown(result) -> str:
    """report.md and its appendix (issue 30: the answer first, every other table in report_appendix.md)."""
    return result.markdown.read_text() + result.markdown.with_name("report_appendix.md").read_text()


def make_ticket(path: Path, method: str, prune: float = 0.0, round_: int = 0, hidden=(32,),
                input_shape=(1, 8, 8), accuracy: float = 0.5, spiking: bool = True) -> Path:
    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=hidden, spiking=spiking), input_shape, 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)  # an untrained layer barely spikes; the counts should see spikes
    layers = prunable_layers(model)
    mask = Mask.ones_like(layers)
    if prune:
        mask = prune_magnitude(layers, mask, prune, "layerwise")
        apply_mask(layers, mask)
    data = DataConfig(dataset="digits", timesteps=T)
    # the ANN twin the report trains from these settings: one short epoch keeps the tests fast
    record = TicketRecord(model=model.config, method=method, dataset="digits", timesteps=T, round=round_,
                          accuracy=accuracy, hyperparameters={"data": data.to_dict(),
                                                              "train": {"epochs": 1, "batch_size": 64}})
    return Ticket.from_model(model, mask, record).save(path)


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tickets")
    paths = {"dense": make_ticket(root / "dense.safetensors", "dense"),
             "imp": make_ticket(root / "imp.safetensors", "imp", prune=0.5, round_=2, accuracy=0.25),
             "random": make_ticket(root / "random.safetensors", "random", prune=0.8)}
    paths["nir"] = write_nir(ticket_to_nir(paths["imp"]), root / "imp.nir")
    return paths


@pytest.fixture(scope="module")
def report(tickets, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    inputs = [tickets["dense"], tickets["imp"], tickets["random"], tickets["nir"]]
    result = build_report(inputs, profiles=PROFILES, out=out, samples=SAMPLES, progress=False, sanafe=False)
    return result, load_report(result.json)   # as written to report.json, read back through the one loader


def _first(n: int):
    test = load_dataset(DataConfig(dataset="digits")).test
    x = torch.from_numpy(test.images[:n]).float() / 255.0
    yield encode(x, "direct", T), torch.from_numpy(test.labels[:n])


@pytest.fixture(scope="module")
def first_samples():
    test = load_dataset(DataConfig(dataset="digits")).test
    x = torch.from_numpy(test.images[:SAMPLES]).float() / 255.0
    return encode(x, "direct", T), torch.from_numpy(test.labels[:SAMPLES])


def net_entry(data, file: Path):
    return next(n for n in data.networks if n.file == str(file))


def record(breakdown) -> EnergyRecord:
    """An energy breakdown as report.json holds it."""
    return EnergyRecord.model_validate(breakdown.to_dict(), strict=False)


# ------------------------------------------------------------------------------------------- numbers

def test_energy_is_the_cost_model_on_independent_counts(report, tickets, first_samples):
    _, data = report
    x_seq, labels = first_samples
    for key in ("dense", "imp", "random"):
        model = Ticket.load(tickets[key]).build_model()
        activity = count_snntorch(model, x_seq)
        entry = net_entry(data, tickets[key])
        assert entry.activity.per_sample.output_spikes > 0  # the run really spiked
        assert entry.activity.per_sample.effective_macs == activity.effective_macs
        assert entry.activity.per_sample.effective_acs == activity.effective_acs
        # the host layer is stored and read as an ANN's layer would be (issue 30: weight_store, index bits included)
        from slt_deploy.cost.activity import synapse_layers
        from slt_deploy.cost.mapping import weight_store

        shape = tuple(Ticket.load(tickets[key]).record.model.input_shape)
        host = [l for l in synapse_layers(model, shape) if l.source is None]
        for spec in ("loihi", "xylo", MY_CHIP):
            profile = load_profile(spec)
            assert entry.energy[profile.name] == record(snn_energy(activity, profile, host="int8-45nm",
                                                                   host_store=weight_store(host, "int8-45nm")))
        with torch.no_grad():
            correct = int((model(x_seq).sum(0).argmax(1) == labels).sum())
        assert entry.accuracy_measured == correct / SAMPLES and entry.samples == SAMPLES
        assert entry.accuracy == Ticket.load(tickets[key]).record.accuracy


def test_ann_is_the_trained_twin_counted_by_the_same_rule(report, tickets, first_samples):
    """The ANN is the dense twin trained with the ticket's recipe, run on the same samples, and its energy is the
    cost model on its own measured activations (nonzero activation x nonzero weight)."""
    from slt_deploy.cost import ann_energy_from_activity
    from slt_deploy.report import twin_config

    _, data = report
    ann = data.ann
    assert ann.trained is True and "trained with its recipe" in ann.origin
    twin = Ticket.load(ann.file)
    assert twin.record.method == "dense" and twin.record.model.spiking is False
    config = twin_config(Ticket.load(tickets["dense"]))
    assert Path(ann.file).parent.name == config.run_name()
    x_seq, labels = first_samples
    model = twin.build_model()
    activity = count_snntorch(model, x_seq, source="torch (ANN)")  # run as trained: T steps of the same image
    # a constant real-valued input is computed once: each layer costs one pass, as an ANN does
    assert all(l.computed_once for l in activity.layers)
    assert data.ann.energy["fp32-45nm"] == record(ann_energy_from_activity(activity, "fp32-45nm"))
    with torch.no_grad():
        correct = int((model(x_seq).sum(0).argmax(1) == labels).sum())
    assert ann.accuracy_measured == correct / SAMPLES
    assert set(data.ann.energy) == {"fp32-45nm"}  # chips do not run the ANN
    entry = net_entry(data, tickets["dense"])  # each network says what it is compared with, and its cost
    assert entry.compared_with.accuracy_measured == ann.accuracy_measured and entry.compared_with.trained
    assert entry.per_inference["loihi"].energy_j == entry.energy["loihi"].total


def test_dense_rule_percent_is_the_hand_count(tickets, tmp_path):
    """--ops dense on the 45 nm convention: SNN = 4.6 pJ x first-layer weights (once: constant input)
    + 0.9 pJ x readout weights x T; ANN = 4.6 pJ x every weight; the ratio is the hand count."""
    r = build_report([tickets["dense"]], profiles=["cmos45"], out=tmp_path, samples=SAMPLES, progress=False,
                     ops="dense", neurobench=False, sanafe=False)
    snn = 4.6e-12 * 64 * 32 + 0.9e-12 * 32 * 10 * T
    ann = 4.6e-12 * (64 * 32 + 32 * 10)
    entry = r.report.networks[0]
    assert entry.convention_45nm.percent_of_ann == pytest.approx(100 * snn / ann, rel=1e-12)
    assert entry.counting_rule.ops == "dense" and r.report.ann.energy["cmos45"].ops == "dense"
    text = full_markdown(r)
    assert text.count("Counting rule: dense ops") >= 4 and "Counting rule: effective" not in text


def test_neurobench_layers_equal_the_counts(report, tickets):
    """NeuroBench 2.3.0's own per-layer effective ACs equal the project's; the host layer differs by T, said so."""
    _, data = report
    for key in ("dense", "imp"):
        nb = net_entry(data, tickets[key]).neurobench
        act = {l.name: l for l in net_entry(data, tickets[key]).activity.layers}
        fc1, readout = (next(l for l in nb.layers if l.layer == n) for n in ("fc1", "readout"))
        assert readout.neurobench.effective_acs == act["readout"].effective_synops > 0
        assert readout.note == "equal"
        assert fc1.neurobench.effective_macs == pytest.approx(T * act["fc1"].effective_synops)
        assert "NeuroBench counts it at each of the T = 4 calls" in fc1.note
        # NeuroBench's own metrics, as its result dict names them
        assert nb.metrics["SynapticOperations"]["Effective_ACs"] == readout.neurobench.effective_acs
        assert nb.metrics["ConnectionSparsity"] == pytest.approx(net_entry(data, tickets[key]).sparsity)


def test_sanafe_profile_figures_equal_the_analytical_model():
    """SANA-FE, replaying the run's spikes on the architecture carrying loihi's own figures, gives the analytical
    on-chip total; its calibrated Loihi gives its own."""
    from slt_deploy.cost import sanafe_sim

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(32, 16)), (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)
        model.body.fc2.weight.mul_(4.0)
    test = load_dataset(DataConfig(dataset="digits")).test
    x_seq = encode(torch.from_numpy(test.images[:10]).float() / 255.0, "direct", T)
    result = sanafe_sim.simulate_profile(model, x_seq, load_profile("loihi"), host_fed=True)
    by_arch = {r["architecture"]: r for r in result["runs"]}
    own = by_arch["loihi_profile_figures.yaml"]
    assert own["spikes_per_inference"] > 0
    assert own["energy_per_inference_j"] == pytest.approx(own["analytical_chip_j"], rel=1e-9)
    assert by_arch["loihi"]["energy_per_inference_j"] != pytest.approx(own["analytical_chip_j"], rel=1e-3)
    assert by_arch["loihi"]["latency_per_inference_s"] == pytest.approx(
        T * by_arch["loihi"]["latency_per_timestep_s"])


def test_unknown_and_included_are_printed_as_such(report, tickets, tmp_path):
    r = build_report([tickets["dense"]], profiles=["xylo", "loihi2", "truenorth"], out=tmp_path, samples=SAMPLES,
                     progress=False, neurobench=False, sanafe=False)
    text = full_markdown(r)
    assert r.report.networks[0].energy["xylo"].kind == "unknown"        # no per-event figure published
    assert r.report.networks[0].energy["loihi2"].kind == "upper bound"  # bounds derived from PilotNet
    assert "unknown: needs synaptic_op" in text and ">= 0 " not in text
    assert "| included |" in text or "| included" in text
    # the host layer is off chip: no population of the mapping holds its synapses
    assert r.report.networks[0].mapping["loihi2"].host_layers == ["fc1"]
    assert "data:image/png;base64," in r.html.read_text()


def test_components_sum_to_the_total(report):
    _, data = report
    breakdowns = [data.ann.convention_45nm, *data.ann.energy.values()]
    for n in data.networks:
        breakdowns += [n.convention_45nm.snn, *n.energy.values()]
    for b in breakdowns:
        assert math.isclose(sum(b.components.values()), b.total, rel_tol=1e-12, abs_tol=0)
        assert b.complete == (not b.unknown)


def test_45nm_percent_is_the_papers_formula(report, tickets, first_samples):
    _, data = report
    x_seq, _ = first_samples
    # one rule (effective) on both sides: E_ANN = 4.6 pJ x the trained twin's measured effective MACs
    ann = Ticket.load(data.ann.file).build_model()
    e_ann = 4.6e-12 * count_snntorch(ann, x_seq).effective_synops
    for key in ("dense", "imp", "random"):
        a = count_snntorch(Ticket.load(tickets[key]).build_model(), x_seq)
        # direct encoding: the first layer's synaptic ops are MACs, the readout's (spike inputs) are ACs
        assert a.effective_macs == a.layer("fc1").effective_synops
        assert a.effective_acs == a.layer("readout").effective_synops
        e_snn = 4.6e-12 * a.effective_macs + 0.9e-12 * a.effective_acs
        assert net_entry(data, tickets[key]).convention_45nm.percent_of_ann == pytest.approx(
            100 * e_snn / e_ann, rel=1e-12)
    # pruning removes synaptic ops: the IMP ticket costs less than the dense one on the same samples
    assert (net_entry(data, tickets["imp"]).convention_45nm.percent_of_ann
            < net_entry(data, tickets["dense"]).convention_45nm.percent_of_ann)


def test_nir_input_counts_equal_its_ticket(report, tickets):
    _, data = report
    nir, ticket = net_entry(data, tickets["nir"]), net_entry(data, tickets["imp"])
    assert nir.kind == "nir" and nir.activity.source == "nir-executor"
    assert nir.activity.per_sample == ticket.activity.per_sample
    # the notes name the backend
    without_notes = lambda energy: {k: v.model_copy(update={"notes": []}) for k, v in energy.items()}
    assert without_notes(nir.energy) == without_notes(ticket.energy)
    assert nir.accuracy_measured == ticket.accuracy_measured
    assert nir.accuracy == ticket.accuracy and nir.sparsity == pytest.approx(ticket.sparsity)


def test_nir_conv_graph_with_pooling_counts_equal_its_ticket(tmp_path):
    """conv-BN-avgpool-LIF twice, then linear: NIR's pooling nodes are folded like the ticket's AvgPool2d."""
    from slt_deploy.report import load_network, simulate

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="convnet", hidden=(4, 8, 16)), (1, 8, 8), 10))
    with torch.no_grad():  # amplify the untrained layers so that every population spikes
        model.body.conv1_bn.running_var.fill_(0.05)
        model.body.conv2_bn.running_var.fill_(0.05)
        model.body.conv2.weight.mul_(3.0)
        model.body.fc1.weight.mul_(4.0)
    layers = prunable_layers(model)
    mask = prune_magnitude(layers, Mask.ones_like(layers), 0.5, "layerwise")
    apply_mask(layers, mask)
    record = TicketRecord(model=model.config, method="imp", dataset="digits", timesteps=T,
                          hyperparameters={"data": DataConfig(dataset="digits", timesteps=T).to_dict()})
    ticket = Ticket.from_model(model, mask, record).save(tmp_path / "conv.safetensors")
    graph = write_nir(ticket_to_nir(ticket), tmp_path / "conv.nir")
    a, b = simulate(load_network(ticket), 40, progress=False), simulate(load_network(graph), 40, progress=False)
    assert [l.name for l in b.activity.layers] == ["conv1", "conv2", "fc1", "readout"]
    for la, lb in zip(a.activity.layers, b.activity.layers):
        assert la == lb
        assert la.effective_synops > 0 and (la.output_spikes > 0 or la.name == "readout")
    assert a.accuracy == b.accuracy


def test_memory_and_fit(report, tickets):
    _, data = report
    entry = net_entry(data, tickets["imp"])
    layers = synapse_layers(Ticket.load(tickets["imp"]).build_model(), (1, 8, 8))
    loihi = load_profile("loihi")
    memory = entry.memory["loihi"]
    # the host computes fc1 (direct encoding): only the readout's synapses are stored on chip
    assert [l.name for l in memory.layers] == ["readout"]
    for got, layer in zip(memory.layers, layers[1:]):
        expected = layer_memory(layer, loihi)
        assert got.bits == expected.bits and got.best == expected.best
    totals = {e: sum(l.bits[e] for l in memory.layers) for e in loihi.encodings}
    assert memory.totals == totals and memory.best_encoding == min(totals, key=totals.get)
    assert entry.mapping["loihi"].fits is True and entry.mapping["loihi"].cores_used == 2
    # Xylo has 16 input channels: the 32 host currents into fc1's neurons (one channel each) do not fit
    assert entry.mapping["xylo"].fit_summary == ("xylo: does not fit: layer fc1 (host currents): 32 inputs, "
                                                 "input_channels = 16")
    assert entry.mapping["loihi"].host_layers == ["fc1"]
    assert "fp32-45nm" not in entry.mapping and "fp32-45nm" not in entry.energy


def test_unknown_figures_are_listed_never_invented(report, tickets):
    result, data = report
    loihi = data.profiles["loihi"]
    assert set(loihi.unknown_figures) == {"mac", "static_power", "timestep_latency"}
    dense = net_entry(data, tickets["dense"]).energy["loihi"]
    # the direct-encoded first layer runs on the host (charged there), so Loihi's unknown mac is not needed
    assert "mac" not in dense.unknown and dense.components["first_layer"] > 0 and not dense.complete
    assert loihi.unknown_in_report == ["static_power"]
    xylo = data.profiles["xylo"]
    # no figure of xylo is known: only the host's first layer is, so the chip's total is unknown, not ">= x"
    assert xylo.unknown_in_report
    assert data.profiles["fp32-45nm"].unknown_in_report == ["static_power"]
    # a pair with no known total on either side gets no percentage; one with bounds or unknown parts is an estimate
    assert data.ratios
    for r in data.ratios:
        if r.percent is None:
            assert r.note.startswith("unknown: needs ")
        else:
            assert r.kind == "estimate" and r.note.startswith("estimate: ")
    md = full_markdown(result)
    assert "| loihi | mac, static_power, timestep_latency |" in md
    assert ">= " in md


def test_custom_profile_file_works(report, tickets):
    result, data = report
    profile = load_profile(MY_CHIP)
    for fig in profile.figures.values():  # every figure known and sourced, its reasoning given
        assert fig.value is not None and fig.source and fig.status in ("estimate", "included") and fig.note
    chip = data.profiles[profile.name]
    assert chip.given_as == str(MY_CHIP) and chip.unknown_figures == []
    assert all(n.energy[profile.name].complete for n in data.networks)
    assert net_entry(data, tickets["dense"]).mapping[profile.name].fits is True
    assert f"### {profile.name}" in full_markdown(result)


def test_files_and_side_by_side_table(report, tickets):
    result, data = report
    out = result.json.parent
    for name in ("report.json", "report.md", "report.html", "energy_breakdown.png",
                 "accuracy_sparsity_energy.png", "accuracy_vs_energy.png"):
        assert (out / name).is_file(), name
    for png in result.plots.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files
    labels = [n.label for n in data.networks]
    assert labels == ["dense SNN", "imp, 50.0 % sparse (imp.safetensors)", "random, 80.0 % sparse", "imp, 50.0 % sparse (imp.nir)"]
    assert net_entry(data, tickets["dense"]).dense is True
    page = result.html.read_text()
    assert page.count("<table>") >= 5 and "<th>% of ANN (45 nm)</th>" in page
    assert all(f"<td>{label}</td>" in page for label in ["ANN", *labels])
    assert page.count('<img src="data:image/png;base64,') == 4  # embedded: the page can be sent alone
    md = full_markdown(result)
    assert "| ANN | ticket.safetensors |" in md and "## SNN energy as % of ANN energy" in md


def test_given_ann_is_used_and_no_twin_is_written(tickets, tmp_path):
    ann = export_ticket_onnx(tickets["imp"], tmp_path / "imp_ann.onnx")  # a sparse ANN: zero-skipping helps
    out = tmp_path / "out"
    result = build_report([tickets["dense"]], ann=ann, profiles=["cmos45"], out=out, samples=20, progress=False)
    entry = result.report.ann
    assert entry.origin == "given with --ann" and entry.file == str(ann)
    # an ONNX ANN runs in onnxruntime with its layer inputs recorded: its first layer (the IMP ticket's own fc1 on
    # the same pixels) has that ticket's fc1 effective ops; the readout's are its nonzero ReLU outputs x weights
    imp = Ticket.load(tickets["imp"]).build_model()
    x_seq, _ = next(iter(_first(20)))
    snn_fc1 = count_snntorch(imp, x_seq).layer("fc1").effective_synops
    ann_layers = entry.activity.layers
    assert ann_layers[0].from_input and ann_layers[0].effective_synops == pytest.approx(snn_fc1, rel=1e-12)
    assert 0 < ann_layers[1].effective_synops < ann_layers[1].dense_ops
    assert entry.energy["cmos45"].counts["first_layer"] == ann_layers[0].effective_synops
    assert not (out / "ann_twin.onnx").exists() and result.report.ratios == []
    assert full_markdown(result).count("| ANN | imp_ann.onnx |") == 1


# -------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("hidden, input_shape, problem", [
    ((8,), (1, 28, 28), r"input shape \(1, 28, 28\) vs \(1, 8, 8\)"),
    ((32, 16), (1, 8, 8), r"3 vs 2 conv/linear layers"),
])
def test_ann_that_does_not_match_is_refused(tickets, tmp_path, hidden, input_shape, problem):
    other = Ticket.load(make_ticket(tmp_path / "other.safetensors", "dense", hidden=hidden, input_shape=input_shape))
    onnx_path = export_onnx(ann_twin(other), input_shape, tmp_path / "other.onnx")
    out = tmp_path / "out"
    with pytest.raises(ReportError, match=rf"ANN .*other\.onnx does not match .*dense\.safetensors: {problem}"):
        build_report([tickets["dense"]], ann=onnx_path, profiles=["loihi"], out=out, progress=False)
    assert not out.exists()  # checked before anything is simulated or written


def test_unknown_profile_lists_the_valid_names(tickets, tmp_path):
    with pytest.raises(ProfileError, match=r"unknown hardware profile 'loihi3'; available: .*loihi2.*xylo"):
        build_report([tickets["dense"]], profiles=["loihi3"], out=tmp_path / "out", progress=False)


def test_bad_profile_file_is_refused(tickets, tmp_path):
    data = yaml.safe_load(MY_CHIP.read_text())
    data["figures"]["synaptic_op"]["value"] = -1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=r"bad\.yaml: figures\.synaptic_op\.value=-1 is out of range"):
        build_report([tickets["dense"]], profiles=[str(bad)], out=tmp_path / "out", progress=False)
    data["figures"]["synaptic_op"].update(value=8, unit="pW")
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=r"figures\.synaptic_op\.unit 'pW' is not allowed"):
        build_report([tickets["dense"]], profiles=[str(bad)], out=tmp_path / "out", progress=False)


def test_onnx_as_input_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(ReportError, match=r"model\.onnx: an ONNX model is the ANN side; pass it with --ann"):
        build_report([path], profiles=["loihi"], out=tmp_path / "out", progress=False)


def test_profiles_table_lists_every_figure_with_status_and_source():
    text = profiles_table()
    for name in profile_names():
        assert f"\n{name} (" in f"\n{text}"
    assert re.search(r"\n  synaptic_op +23\.6 +pJ +pre-silicon +Davies et al\., IEEE Micro 38\(1\) 2018, Table 2\n",
                     text)
    assert re.search(r"\n  mac +null +pJ +unknown +Davies", text)
    assert not re.search(r" \n", text)  # no trailing blanks


def test_batches_are_merged_into_a_per_sample_mean(tickets):
    from slt_deploy.report import load_network, simulate
    from slt_deploy.simulate.workload import BATCH as SIM_BATCH

    n = SIM_BATCH + 20  # two batches
    measured = simulate(load_network(tickets["random"]), n, progress=False)
    test = load_dataset(DataConfig(dataset="digits")).test
    x_seq = encode(torch.from_numpy(test.images[:n]).float() / 255.0, "direct", T)
    whole = count_snntorch(Ticket.load(tickets["random"]).build_model(), x_seq)
    assert measured.samples == n and measured.activity.samples == n
    for attr in ("effective_acs", "effective_macs", "neuron_updates", "output_spikes", "dense_ops"):
        assert getattr(measured.activity, attr) == pytest.approx(getattr(whole, attr), rel=1e-12), attr


def test_untrained_twin_is_labelled_so_everywhere(tickets, tmp_path):
    r = build_report([tickets["dense"]], profiles=["cmos45", "fp32-45nm"], out=tmp_path, samples=SAMPLES,
                     progress=False, train_ann=False, neurobench=False, sanafe=False)
    ann = r.report.ann
    assert ann.trained is False and ann.label == "ANN (untrained)" and "UNTRAINED" in ann.origin
    md = full_markdown(r)
    assert "| ANN (untrained) | ann_twin.onnx |" in md                       # side-by-side table
    assert "| ANN (untrained) | cmos45 |" in md                                 # memory table of the verdict
    assert "ANN: UNTRAINED (the SNN's weights with ReLU, never trained)" in md  # verdict's sentence
    assert (tmp_path / "ann_twin.onnx").is_file()


def test_twin_is_the_run_search_would_make(tmp_path):
    """The twin's settings are those of `search --model mlp --spiking false --method dense` with the ticket's
    own: same run name, so the same run (and accuracy) as that command, reused when it exists."""
    from slt_deploy.cli import build_parser, run_config_from_args
    from slt_deploy.config import RunConfig, SearchConfig, TrainConfig
    from slt_deploy.report import twin_config

    ticket_cfg = RunConfig(model=ModelConfig(name="mlp"), data=DataConfig(dataset="mnist", timesteps=5),
                           train=TrainConfig(epochs=5, lr=0.1), search=SearchConfig(method="imp", rounds=4))
    model = build_model(resolve_config(ticket_cfg.model, (1, 28, 28), 10))
    record = TicketRecord(model=model.config, method="imp", hyperparameters=ticket_cfg.to_dict(), timesteps=5)
    ticket = Ticket.load(Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record)
                         .save(tmp_path / "t.safetensors"))
    args = build_parser().parse_args("search --model mlp --spiking false --method dense --epochs 5 --lr 0.1 "
                                     "--timesteps 5".split())
    assert twin_config(ticket).run_name() == run_config_from_args(args).run_name()


def test_also_ann_tickets_are_measured_and_costed_by_the_same_rule(tickets, tmp_path, first_samples):
    """An LT-style ANN ticket (pruned, model.spiking false) given with also_ann runs on the same samples and is
    costed on its own activations; the report lists it with the main ANN."""
    from slt_deploy.cost import ann_energy_from_activity

    lt = make_ticket(tmp_path / "lt.safetensors", "imp", prune=0.5, round_=2, spiking=False)
    r = build_report([tickets["imp"]], profiles=["cmos45", "int8-45nm"], out=tmp_path / "out", samples=SAMPLES,
                     progress=False, train_ann=False, neurobench=False, sanafe=False, also_ann=[lt])
    (other,) = r.report.ann_others
    x_seq, labels = first_samples
    model = Ticket.load(lt).build_model()
    activity = count_snntorch(model, x_seq, source="torch (ANN)")
    # stored in its best encoding (CSR at 50 % sparsity when smaller): bits stored / weights stored per read
    mem = other.memory["int8-45nm"].mem
    stored = sum(l.nonzero_weights if mem.best_encoding != "dense" else l.weights for l in activity.layers)
    storage = (mem.best_bits, mem.best_bits / stored)
    assert other.energy["int8-45nm"] == record(ann_energy_from_activity(activity, "int8-45nm", storage=storage))
    with torch.no_grad():
        assert other.accuracy_measured == int((model(x_seq).sum(0).argmax(1) == labels).sum()) / SAMPLES
    assert other.sparsity == pytest.approx(0.5, abs=0.01) and other.label == "ANN lt"
    assert "| ANN lt | lt.safetensors | " in full_markdown(r)


def test_cli_report_flags_reach_the_report(tickets, tmp_path, capsys):
    from slt_deploy.cli import main

    out = tmp_path / "cli"
    assert main(["report", str(tickets["dense"]), "--profiles", "cmos45", "--out", str(out), "--samples", "20",
                 "--ops", "dense", "--untrained-ann", "--no-neurobench", "--no-sanafe", "--no-progress"]) == 0
    data = load_report(out / "report.json")
    assert data.counting_rule.ops == "dense" and data.ann.trained is False
    assert data.networks[0].neurobench is None and data.networks[0].sanafe is None
    assert main(["report", str(tickets["dense"]), "--profiles", "cmos45", "--out", str(tmp_path / "bad"),
                 "--host-profile", "loihi"]) == 2
    assert "host profile loihi is a neuromorphic chip" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_neurobench_acs_equal_ours_on_a_trained_ticket(tmp_path, first_samples):
    """A ticket trained by the search (IMP, 2 short rounds on digits): NeuroBench's per-layer Effective_ACs equal
    the project's counts exactly; its first layer is T x ours (it counts the constant input at every step)."""
    from slt_deploy.config import RunConfig, SearchConfig, TrainConfig
    from slt_deploy.cost.neurobench_metrics import compare_layers, neurobench_metrics
    from slt_deploy.search import search

    config = RunConfig(model=ModelConfig(name="mlp", hidden=(32, 16)),
                       data=DataConfig(dataset="digits", timesteps=T),
                       train=TrainConfig(epochs=3, batch_size=32, lr=0.1),
                       search=SearchConfig(method="imp", rounds=1, rewind_epoch=0))
    ticket = Ticket.load(search(config, tmp_path / "runs", progress=False, echo=lambda _m: None).ticket_path)
    assert ticket.record.sparsity > 0.2 and ticket.record.accuracy > 0.5  # pruned and trained
    x_seq, labels = first_samples
    model = ticket.build_model()
    ours = count_snntorch(model, x_seq)
    nb = neurobench_metrics(model, x_seq, labels)
    rows = {r["layer"]: r for r in compare_layers(ours, nb, host_first_layer=True)}
    for name in ("fc2", "readout"):
        assert ours.layer(name).effective_acs > 0
        assert rows[name]["neurobench"]["effective_acs"] == ours.layer(name).effective_acs
        assert rows[name]["note"] == "equal"
    assert rows["fc1"]["neurobench"]["effective_macs"] == pytest.approx(T * ours.layer("fc1").effective_macs)
    assert nb["metrics"]["SynapticOperations"]["Effective_ACs"] == pytest.approx(ours.effective_acs)
