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
