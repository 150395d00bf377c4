"""One place for each rule the report, the simulator, the energy search and deploy share: a grep of the package
finds one definition, and every user imports it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slt_deploy.cost.profiles import ANN_TARGETS, HOST_PROFILE, host_of, load_profile
from slt_deploy.data.encoding import first_layer_on_host

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted((ROOT / "slt_deploy").rglob("*.py"))


def _where(pattern: str) -> list:
    """(module, line) of every match of ``pattern`` in the package's code (comments and docstrings included)."""
    rx = re.compile(pattern)
    return [(str(p.relative_to(ROOT)), i) for p in PACKAGE for i, line in enumerate(p.read_text().splitlines(), 1)
            if rx.search(line)]


def _modules(pattern: str) -> set:
    return {m for m, _ in _where(pattern)}


def test_the_host_profile_is_named_once():
    # the demo lists every shipped profile by name; any other literal would be a second host default
    assert _modules(r'"int8-45nm"') == {"slt_deploy/cost/profiles.py", "slt_deploy/demo.py"}
    assert HOST_PROFILE == "int8-45nm" and HOST_PROFILE in ANN_TARGETS


def test_the_host_rule_is_written_once():
    """A reference profile computes its own first layer; a chip's is charged on the host profile."""
    assert _where(r'kind == "reference"') == [("slt_deploy/cost/profiles.py", _where(r'kind == "reference"')[0][1])]
    assert _modules(r"\bhost_of\(") >= {"slt_deploy/cost/objective.py", "slt_deploy/report/entries.py"}
    cmos45, loihi, host = load_profile("cmos45"), load_profile("loihi"), load_profile(HOST_PROFILE)
    assert host_of(cmos45, host) is cmos45 and host_of(loihi, host) is host


@pytest.mark.parametrize("encoding, binary, on_host", [
    ("direct", False, True), ("rate", False, True), ("latency", False, True),  # the host feeds currents
    ("events", False, False),                                                  # sensor spikes enter the chip
    ("given", True, False), ("given", False, True),                            # a file: spikes only if 0/1
])
def test_first_layer_placement(encoding, binary, on_host):
    assert first_layer_on_host(encoding, binary) is on_host


def test_first_layer_placement_is_decided_once():
    # the old copies compared the encoding with "events" in each user
    assert not _where(r'"chip" if \w+\.encoding|encoding (!=|==) "events" else "host"')
    assert not _where(r'host_first_layer = .*encoding != "events"|return net.encoding != "events"')
    users = {"slt_deploy/simulate/run.py", "slt_deploy/search/energy.py", "slt_deploy/report/networks.py",
             "slt_deploy/deploy.py"}
    assert users <= _modules(r"\bfirst_layer_on_host\b")


def test_the_pairing_rule_is_written_once():
    """The verdict and the report's point ratios pair an SNN with an ANN target by one function."""
    assert _where(r"^def compared\(") == [("slt_deploy/report/verdict.py", _where(r"^def compared\(")[0][1])]
    assert "slt_deploy/report/entries.py" in _modules(r"\bcompared\(")
    assert not _where(r"def _comparable\(|def _pairs_for\(")


def test_the_ann_targets_are_listed_once():
    assert _modules(r"\bANN_TARGETS\s*=") == {"slt_deploy/cost/profiles.py"}
    assert all(load_profile(a).kind == "ann" for a in ANN_TARGETS)


def test_the_report_places_a_binary_given_input_on_chip_as_the_simulator_does(tmp_path):
    """A sequence given as a file whose every value is 0 or 1 is spikes: the report's network and the simulator
    both feed it to the chip's first layer; real values go to the host."""
    import numpy as np
    import torch

    from slt_deploy.config import DataConfig, ModelConfig
    from slt_deploy.exporters.nir_format import ticket_to_nir, write_nir
    from slt_deploy.models import build_model, prunable_layers, resolve_config
    from slt_deploy.report import GraphInputs, load_network
    from slt_deploy.search.masks import Mask
    from slt_deploy.ticket import Ticket, TicketRecord

    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(8,)), (1, 4, 4), 3))
    record = TicketRecord(model=model.config, method="dense", dataset="digits", timesteps=3,
                          hyperparameters={"data": DataConfig(dataset="digits", timesteps=3).to_dict()})
    ticket = Ticket.from_model(model, Mask.ones_like(prunable_layers(model)), record).save(tmp_path / "t.safetensors")
    graph = write_nir(ticket_to_nir(ticket), tmp_path / "t.nir")
    rng = np.random.default_rng(0)
    y = np.arange(6) % 3
    np.savez(tmp_path / "spikes.npz", x=(rng.random((6, 3, 1, 4, 4)) < 0.3).astype(np.float32), y=y)
    np.savez(tmp_path / "values.npz", x=rng.random((6, 3, 1, 4, 4)).astype(np.float32), y=y)
    spikes = load_network(graph, GraphInputs(input=tmp_path / "spikes.npz"), samples=6)
    values = load_network(graph, GraphInputs(input=tmp_path / "values.npz"), samples=6)
    assert spikes.encoding == values.encoding == "given"
    assert spikes.first_layer_on_host is False and values.first_layer_on_host is True
    assert load_network(ticket).first_layer_on_host is True   # digits, direct encoding
