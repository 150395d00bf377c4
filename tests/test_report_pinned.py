"""A small fixed report, its numbers pinned: the report's refactors must not move any of them.

Two tiny tickets (digits 8x8 -> 32 LIF -> 10, T = 4, weights from a fixed seed, no training: the dense one and
one pruned 50 % by magnitude), their untrained ANN twin (``train_ann=False``, so nothing is trained), four
profiles (a chip, a small chip that does not take the network, the two ANN targets) and the 45 nm convention, on
the first 20 test samples, counted on the CPU. It builds in a few seconds.

Every value below was read from ``report.json`` of the code before issue 29's refactor (commit 9d5b800). A change
that is meant to move a number (issues 30 and 31: training recipe, memory-energy rule, first layer computed once)
updates the table :data:`PINNED` and says why in its commit; a refactor never does.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from slt_deploy.config import DataConfig, ModelConfig
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.report import build_report
from slt_deploy.search.masks import Mask, apply_mask, prune_magnitude
from slt_deploy.ticket import Ticket, TicketRecord

SAMPLES = 20
PROFILES = ["loihi", "xylo", "int8-45nm", "fp32-45nm"]


def _ticket(path: Path, method: str, prune: float, round_: int) -> Path:
    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(32,)), (1, 8, 8), 10))
    with torch.no_grad():
        model.body.fc1.weight.mul_(4.0)  # an untrained layer barely spikes; the counts should see spikes
    layers = prunable_layers(model)
    mask = Mask.ones_like(layers)
    if prune:
        mask = prune_magnitude(layers, mask, prune, "layerwise")
        apply_mask(layers, mask)
    data = DataConfig(dataset="digits", timesteps=4)
    record = TicketRecord(model=model.config, method=method, dataset="digits", timesteps=4, round=round_,
                          accuracy=0.5, hyperparameters={"data": data.to_dict()})
    return Ticket.from_model(model, mask, record).save(path)


def build_pinned_report(folder: Path) -> dict:
    """The fixed report written into ``folder``: report.json as read back, plus the SHA-256 of report.md."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = [_ticket(folder / "dense.safetensors", "dense", 0.0, 0),
              _ticket(folder / "imp.safetensors", "imp", 0.5, 2)]
    result = build_report(inputs, profiles=PROFILES, out=folder / "report", samples=SAMPLES, progress=False,
                          train_ann=False, neurobench=False, sanafe=False, device="cpu")
    digest = hashlib.sha256(result.markdown.read_bytes()).hexdigest()
    return json.loads(result.json.read_text()) | {"_markdown_sha256": digest}


def _rounded(x):
    """Floats to 12 significant digits (a refactor may reorder a sum; the last bits are not the point)."""
    if isinstance(x, float) and math.isfinite(x) and x != 0.0:
        return float(f"{x:.12g}")
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def pinned_values(data: dict) -> dict:
    """The pinned numbers, keyed by where they are in report.json (``networks[label]``, ``verdict[net@chip]``)."""
    out = {"ann.accuracy_measured": data["ann"]["accuracy_measured"],
           "ann.dense_macs": data["ann"]["dense_macs"], "ann.effective_macs": data["ann"]["effective_macs"]}
    for p, b in data["ann"]["energy"].items():
        out[f"ann.energy[{p}].total"] = b["total"]
        out[f"ann.energy[{p}].interval"] = b["interval"]
    for n in data["networks"]:
        key = f"networks[{n['label']}]"
        out[f"{key}.accuracy_measured"] = n["accuracy_measured"]
        out[f"{key}.binary"] = n["binary"]
        out[f"{key}.first_layer_on_host"] = n["counting_rule"]["first_layer_on_host"]
        for k, v in n["activity"]["per_sample"].items():
            out[f"{key}.activity.{k}"] = v
        for p, b in n["energy"].items():
            out[f"{key}.energy[{p}].total"] = b["total"]
            out[f"{key}.energy[{p}].kind"] = b["kind"]
            out[f"{key}.energy[{p}].scope"] = b["scope"]
            out[f"{key}.energy[{p}].interval"] = b["interval"]
        out[f"{key}.convention_45nm.percent_of_ann"] = n["convention_45nm"]["percent_of_ann"]
        for p, m in n["memory"].items():
            out[f"{key}.memory[{p}].best_bits"] = m["best_bits"]
            out[f"{key}.memory[{p}].best_encoding"] = m["best_encoding"]
        for p, m in n["mapping"].items():
            out[f"{key}.mapping[{p}].fits"] = m["fits"]
            out[f"{key}.mapping[{p}].cores_used"] = m["cores_used"]
    for r in data["ratios"]:
        out[f"ratios[{r['network']}@{r['snn_profile']}/{r['ann_profile']}].percent"] = r["percent"]
    for r in data["verdict"]:
        key = f"verdict[{r['network']}@{r['profile']}@{r['scope']}]"  # issue 30: a row per scope
        out[f"{key}.decision"] = r["decision"]
        out[f"{key}.scope"] = r["scope"]
        out[f"{key}.fits"] = r["fits"]
        if r.get("best_ann") is not None:
            out[f"{key}.best_ann"] = f"{r['best_ann']['ann']} on {r['best_ann']['ann_profile']}"
            out[f"{key}.snn_interval_at_scope_j"] = r["snn_interval_at_scope_j"]
            out[f"{key}.ann_interval_j"] = r["best_ann"]["ann_interval_j"]
            out[f"{key}.ratio_interval"] = r["ratio_interval"]
            act, sp = r["break_even"]["activity"], r["break_even"]["sparsity"]
            out[f"{key}.break_even.activity"] = [act["today"], act["win_below"], act["lose_above"]]
            out[f"{key}.break_even.sparsity"] = [sp["today"], sp["win_above"], sp["lose_below"]]
    for r in data["verdict_matrix"]:
        key = f"matrix[{r['network']}@{r['profile']} vs {r['ann']}@{r['ann_profile']}@{r['scope']}]"
        out[f"{key}.decision"] = r["decision"]
        out[f"{key}.ratio_interval"] = r["ratio_interval"]
    return {k: _rounded(v) for k, v in out.items()}


INF = math.inf
# The table. Update a value only with a commit that says which change moves it and why.
PINNED = {
    'ann.accuracy_measured': 0.05,
    'ann.dense_macs': 2368,
    'ann.effective_macs': 2368,
    'ann.energy[fp32-45nm].total': 1.20046662461e-08,
    'ann.energy[fp32-45nm].interval': [1.20046662461e-08, 1.20046662461e-08],
    'ann.energy[int8-45nm].total': 1.865115e-09,
    'ann.energy[int8-45nm].interval': [1.865115e-09, 1.865115e-09],
    'networks[dense SNN].accuracy_measured': 0.1,
    'networks[dense SNN].binary': False,
    'networks[dense SNN].first_layer_on_host': True,
    'networks[dense SNN].activity.dense_ops': 3328.0,
    'networks[dense SNN].activity.effective_acs': 308.5,
    'networks[dense SNN].activity.effective_macs': 1036.8,
    'networks[dense SNN].activity.effective_synops': 1345.3,
    'networks[dense SNN].activity.input_events': 160.45,
    'networks[dense SNN].activity.neuron_updates': 168.0,
    'networks[dense SNN].activity.output_spikes': 30.85,
    'networks[dense SNN].energy[loihi].total': 2.2548085e-08,
    'networks[dense SNN].energy[loihi].kind': 'estimate',
    'networks[dense SNN].energy[loihi].scope': 'chip',
    'networks[dense SNN].energy[loihi].interval': [1.7676085e-08, INF],
    'networks[dense SNN].energy[xylo].total': 1.60704e-09,
    'networks[dense SNN].energy[xylo].kind': 'unknown',
    'networks[dense SNN].energy[xylo].scope': 'chip',
    'networks[dense SNN].energy[xylo].interval': [1.60704e-09, INF],
    'networks[dense SNN].convention_45nm.percent_of_ann': 91.1791486456,
    'networks[dense SNN].memory[loihi].best_bits': 4096,
    'networks[dense SNN].memory[loihi].best_encoding': 'dense',
    'networks[dense SNN].memory[xylo].best_bits': 2560,
    'networks[dense SNN].memory[xylo].best_encoding': 'dense',
    'networks[dense SNN].mapping[loihi].fits': True,
    'networks[dense SNN].mapping[loihi].cores_used': 2,
    'networks[dense SNN].mapping[xylo].fits': False,
    'networks[dense SNN].mapping[xylo].cores_used': None,
    'networks[imp, 50.0 % sparse].accuracy_measured': 0.25,
    'networks[imp, 50.0 % sparse].binary': False,
    'networks[imp, 50.0 % sparse].first_layer_on_host': True,
    'networks[imp, 50.0 % sparse].activity.dense_ops': 3328.0,
    'networks[imp, 50.0 % sparse].activity.effective_acs': 153.1,
    'networks[imp, 50.0 % sparse].activity.effective_macs': 548.7,
    'networks[imp, 50.0 % sparse].activity.effective_synops': 701.8,
    'networks[imp, 50.0 % sparse].activity.input_events': 158.35,
    'networks[imp, 50.0 % sparse].activity.neuron_updates': 168.0,
    'networks[imp, 50.0 % sparse].activity.output_spikes': 28.75,
    'networks[imp, 50.0 % sparse].energy[loihi].total': 1.86653184161e-08,
    'networks[imp, 50.0 % sparse].energy[loihi].kind': 'estimate',
    'networks[imp, 50.0 % sparse].energy[loihi].scope': 'chip',
    'networks[imp, 50.0 % sparse].energy[loihi].interval': [1.37933184161e-08, INF],
    'networks[imp, 50.0 % sparse].energy[xylo].total': 1.39528341614e-09,
    'networks[imp, 50.0 % sparse].energy[xylo].kind': 'unknown',
    'networks[imp, 50.0 % sparse].energy[xylo].scope': 'chip',
    'networks[imp, 50.0 % sparse].energy[xylo].interval': [1.39528341614e-09, INF],
    'networks[imp, 50.0 % sparse].convention_45nm.percent_of_ann': 48.0889510368,
    'networks[imp, 50.0 % sparse].memory[loihi].best_bits': 3392,
    'networks[imp, 50.0 % sparse].memory[loihi].best_encoding': 'runlength',
    'networks[imp, 50.0 % sparse].memory[xylo].best_bits': 2560,
    'networks[imp, 50.0 % sparse].memory[xylo].best_encoding': 'dense',
    'networks[imp, 50.0 % sparse].mapping[loihi].fits': True,
    'networks[imp, 50.0 % sparse].mapping[loihi].cores_used': 2,
    'networks[imp, 50.0 % sparse].mapping[xylo].fits': False,
    'networks[imp, 50.0 % sparse].mapping[xylo].cores_used': None,
    'ratios[dense SNN@loihi/int8-45nm].percent': 1208.93805476,
    'ratios[dense SNN@loihi/fp32-45nm].percent': 187.827670821,
    'ratios[dense SNN@xylo/int8-45nm].percent': None,
    'ratios[dense SNN@xylo/fp32-45nm].percent': None,
    'ratios[imp, 50.0 % sparse@loihi/int8-45nm].percent': 1000.75965376,
    'ratios[imp, 50.0 % sparse@loihi/fp32-45nm].percent': 155.483859638,
    'ratios[imp, 50.0 % sparse@xylo/int8-45nm].percent': None,
    'ratios[imp, 50.0 % sparse@xylo/fp32-45nm].percent': None,
    'verdict[dense SNN@loihi@chip-dynamic].decision': 'ANN',
    'verdict[dense SNN@loihi@chip-dynamic].scope': 'chip-dynamic',
    'verdict[dense SNN@loihi@chip-dynamic].fits': True,
    'verdict[dense SNN@loihi@chip-dynamic].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[dense SNN@loihi@chip-dynamic].snn_interval_at_scope_j': [1.7676085e-08, 3.1729045e-08],
    'verdict[dense SNN@loihi@chip-dynamic].ann_interval_j': [1.865115e-09, 1.865115e-09],
    'verdict[dense SNN@loihi@chip-dynamic].ratio_interval': [9.47720918013, 17.0118437737],
    'verdict[dense SNN@loihi@chip-dynamic].break_even.activity': [0.183630952381, -0.148447299245, -0.212300543903],
    'verdict[dense SNN@loihi@chip-dynamic].break_even.sparsity': [0.0, 2.37793051719, 1.77898407226],
    'verdict[dense SNN@loihi@chip].decision': 'undecided',
    'verdict[dense SNN@loihi@chip].scope': 'chip',
    'verdict[dense SNN@loihi@chip].fits': True,
    'verdict[dense SNN@loihi@chip].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[dense SNN@loihi@chip].snn_interval_at_scope_j': [1.7676085e-08, INF],
    'verdict[dense SNN@loihi@chip].ann_interval_j': [1.865115e-09, INF],
    'verdict[dense SNN@loihi@chip].ratio_interval': [0.0, INF],
    'verdict[dense SNN@loihi@chip].break_even.activity': [0.183630952381, None, None],
    'verdict[dense SNN@loihi@chip].break_even.sparsity': [0.0, None, None],
    'verdict[dense SNN@xylo@chip-dynamic].decision': 'does not fit',
    'verdict[dense SNN@xylo@chip-dynamic].scope': 'chip-dynamic',
    'verdict[dense SNN@xylo@chip-dynamic].fits': False,
    'verdict[dense SNN@xylo@chip-dynamic].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[dense SNN@xylo@chip-dynamic].snn_interval_at_scope_j': [1.60704e-09, INF],
    'verdict[dense SNN@xylo@chip-dynamic].ann_interval_j': [1.865115e-09, 1.865115e-09],
    'verdict[dense SNN@xylo@chip-dynamic].ratio_interval': [0.861630516081, INF],
    'verdict[dense SNN@xylo@chip-dynamic].break_even.activity': [0.183630952381, None, None],
    'verdict[dense SNN@xylo@chip-dynamic].break_even.sparsity': [0.0, None, -0.160590277778],
    'verdict[dense SNN@xylo@chip].decision': 'does not fit',
    'verdict[dense SNN@xylo@chip].scope': 'chip',
    'verdict[dense SNN@xylo@chip].fits': False,
    'verdict[dense SNN@xylo@chip].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[dense SNN@xylo@chip].snn_interval_at_scope_j': [1.60704e-09, INF],
    'verdict[dense SNN@xylo@chip].ann_interval_j': [1.865115e-09, INF],
    'verdict[dense SNN@xylo@chip].ratio_interval': [0.0, INF],
    'verdict[dense SNN@xylo@chip].break_even.activity': [0.183630952381, None, None],
    'verdict[dense SNN@xylo@chip].break_even.sparsity': [0.0, None, None],
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].decision': 'trade-off',  # ANN cheaper, SNN more accurate (issue 30, session 35)
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].scope': 'chip-dynamic',
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].fits': True,
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].snn_interval_at_scope_j': [1.37933184161e-08, 2.56219584161e-08],
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].ann_interval_j': [1.865115e-09, 1.865115e-09],
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].ratio_interval': [7.3954251701, 13.7374684221],
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].break_even.activity': [0.171130952381, -0.211735199881, -0.386287207412],
    'verdict[imp, 50.0 % sparse@loihi@chip-dynamic].break_even.sparsity': [0.5, 2.23906908849, 1.69080944168],
    'verdict[imp, 50.0 % sparse@loihi@chip].decision': 'undecided',
    'verdict[imp, 50.0 % sparse@loihi@chip].scope': 'chip',
    'verdict[imp, 50.0 % sparse@loihi@chip].fits': True,
    'verdict[imp, 50.0 % sparse@loihi@chip].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[imp, 50.0 % sparse@loihi@chip].snn_interval_at_scope_j': [1.37933184161e-08, INF],
    'verdict[imp, 50.0 % sparse@loihi@chip].ann_interval_j': [1.865115e-09, INF],
    'verdict[imp, 50.0 % sparse@loihi@chip].ratio_interval': [0.0, INF],
    'verdict[imp, 50.0 % sparse@loihi@chip].break_even.activity': [0.171130952381, None, None],
    'verdict[imp, 50.0 % sparse@loihi@chip].break_even.sparsity': [0.5, None, None],
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].decision': 'does not fit',
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].scope': 'chip-dynamic',
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].fits': False,
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].snn_interval_at_scope_j': [1.39528341614e-09, INF],
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].ann_interval_j': [1.865115e-09, 1.865115e-09],
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].ratio_interval': [0.748095112708, INF],
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].break_even.activity': [0.171130952381, None, None],
    'verdict[imp, 50.0 % sparse@xylo@chip-dynamic].break_even.sparsity': [0.5, None, 0.331635788676],
    'verdict[imp, 50.0 % sparse@xylo@chip].decision': 'does not fit',
    'verdict[imp, 50.0 % sparse@xylo@chip].scope': 'chip',
    'verdict[imp, 50.0 % sparse@xylo@chip].fits': False,
    'verdict[imp, 50.0 % sparse@xylo@chip].best_ann': 'ANN (untrained) on int8-45nm',
    'verdict[imp, 50.0 % sparse@xylo@chip].snn_interval_at_scope_j': [1.39528341614e-09, INF],
    'verdict[imp, 50.0 % sparse@xylo@chip].ann_interval_j': [1.865115e-09, INF],
    'verdict[imp, 50.0 % sparse@xylo@chip].ratio_interval': [0.0, INF],
    'verdict[imp, 50.0 % sparse@xylo@chip].break_even.activity': [0.171130952381, None, None],
    'verdict[imp, 50.0 % sparse@xylo@chip].break_even.sparsity': [0.5, None, None],
    'matrix[dense SNN@loihi vs ANN (untrained)@int8-45nm@chip-dynamic].decision': 'ANN',
    'matrix[dense SNN@loihi vs ANN (untrained)@int8-45nm@chip-dynamic].ratio_interval': [9.47720918013, 17.0118437737],
    'matrix[dense SNN@loihi vs ANN (untrained)@fp32-45nm@chip-dynamic].decision': 'ANN',
    'matrix[dense SNN@loihi vs ANN (untrained)@fp32-45nm@chip-dynamic].ratio_interval': [1.47243452151, 2.64305931955],
    'matrix[dense SNN@loihi vs ANN (untrained)@int8-45nm@chip].decision': 'undecided',
    'matrix[dense SNN@loihi vs ANN (untrained)@int8-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[dense SNN@loihi vs ANN (untrained)@fp32-45nm@chip].decision': 'undecided',
    'matrix[dense SNN@loihi vs ANN (untrained)@fp32-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[dense SNN@xylo vs ANN (untrained)@int8-45nm@chip-dynamic].decision': 'undecided',
    'matrix[dense SNN@xylo vs ANN (untrained)@int8-45nm@chip-dynamic].ratio_interval': [0.861630516081, INF],
    'matrix[dense SNN@xylo vs ANN (untrained)@fp32-45nm@chip-dynamic].decision': 'undecided',
    'matrix[dense SNN@xylo vs ANN (untrained)@fp32-45nm@chip-dynamic].ratio_interval': [0.133867944935, INF],
    'matrix[dense SNN@xylo vs ANN (untrained)@int8-45nm@chip].decision': 'undecided',
    'matrix[dense SNN@xylo vs ANN (untrained)@int8-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[dense SNN@xylo vs ANN (untrained)@fp32-45nm@chip].decision': 'undecided',
    'matrix[dense SNN@xylo vs ANN (untrained)@fp32-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@int8-45nm@chip-dynamic].decision': 'ANN',
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@int8-45nm@chip-dynamic].ratio_interval': [7.3954251701, 13.7374684221],
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@fp32-45nm@chip-dynamic].decision': 'ANN',
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@fp32-45nm@chip-dynamic].ratio_interval': [1.14899640967, 2.13433325765],
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@int8-45nm@chip].decision': 'undecided',
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@int8-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@fp32-45nm@chip].decision': 'undecided',
    'matrix[imp, 50.0 % sparse@loihi vs ANN (untrained)@fp32-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@int8-45nm@chip-dynamic].decision': 'undecided',
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@int8-45nm@chip-dynamic].ratio_interval': [0.748095112708, INF],
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@fp32-45nm@chip-dynamic].decision': 'undecided',
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@fp32-45nm@chip-dynamic].ratio_interval': [0.116228422143, INF],
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@int8-45nm@chip].decision': 'undecided',
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@int8-45nm@chip].ratio_interval': [0.0, INF],
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@fp32-45nm@chip].decision': 'undecided',
    'matrix[imp, 50.0 % sparse@xylo vs ANN (untrained)@fp32-45nm@chip].ratio_interval': [0.0, INF],
}
# report.md, byte for byte (its wording too): a refactor of render must leave it as it is
REPORT_MD_SHA256 = "9ffab65345cca0f883c4afff976165de53757c550f08c8e62776b69214cecce5"


@pytest.fixture(scope="module")
def pinned_report(tmp_path_factory):
    return build_pinned_report(tmp_path_factory.mktemp("pinned"))


def test_pinned_report_numbers_are_unchanged(pinned_report):
    got = pinned_values(pinned_report)
    assert set(got) == set(PINNED), f"pinned keys differ: {sorted(set(got) ^ set(PINNED))}"
    moved = {k: (PINNED[k], got[k]) for k in PINNED if got[k] != PINNED[k]}
    assert not moved, "pinned report numbers moved (pinned, now): " + "; ".join(f"{k}: {v}" for k, v in moved.items())


def test_pinned_report_markdown_is_unchanged(pinned_report):
    assert pinned_report["_markdown_sha256"] == REPORT_MD_SHA256


def test_pinned_report_covers_every_decision_kind(pinned_report):
    """The fixture is only worth pinning if it exercises the rule's branches: a network that does not fit, a
    decided energy comparison, open-ended intervals and a break-even."""
    decisions = {r["decision"] for r in pinned_report["verdict"]}
    assert "does not fit" in decisions
    assert decisions & {"SNN", "ANN"}
    assert any(math.isinf(v) for r in pinned_report["verdict_matrix"] for v in r["ratio_interval"]) or \
        any(math.isinf(v) for n in pinned_report["networks"] for b in n["energy"].values() for v in b["interval"])
