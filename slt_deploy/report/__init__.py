"""Deployment report: accuracy, sparsity, energy, memory and fit of tickets on hardware profiles, against an ANN.

Per input (a ticket, or a NIR graph):

1. the network runs on the first N test samples of its own dataset, with its own encoding and T, and its
   activity is counted on that run (never assumed firing rates): a ticket through its snnTorch model and
   :func:`slt_deploy.cost.activity.count_snntorch`; a NIR graph through the reference executor
   (:class:`slt_deploy.simulate.reference.NIRExecutor`), whose recordings go to
   :func:`slt_deploy.cost.activity.count_from_spikes` with synapse layers read from the graph's nodes;
2. energy per inference on every profile = those counts x the profile's figures
   (:func:`slt_deploy.cost.snn_energy`), by component;
3. weight memory per layer and encoding (:func:`slt_deploy.cost.mapping.layer_memory`), cores and fit verdict
   (:func:`slt_deploy.cost.mapping.map_network`).

The ANN (``--ann`` ONNX file, or else the ANN twin of the first ticket) is charged its dense MACs
(:func:`slt_deploy.cost.ann_energy_from_layers`). "SNN energy as % of ANN energy" is taken on the ``cmos45``
profile for both sides, the SNN literature's 45 nm formula, and for every (SNN profile, ANN profile) pair of
the report whose two totals are complete. A figure a profile does not know is listed as unknown, never filled
in; a total that misses one is a lower bound and marked as such.

Written (each file atomically) into the output folder: ``report.json`` (every number; the other files are
rendered from it), ``report.md``, ``report.html``, ``energy_breakdown.png``,
``accuracy_sparsity_energy.png`` and, without ``--ann``, ``ann_twin.onnx``.

Modules: :mod:`.build` (inputs, simulation, costing, ``report.json``), :mod:`.render` (Markdown/HTML) and
:mod:`.plots`. Takes tickets or NIR graphs and hardware profiles; gives a :class:`ReportResult`.
"""

from ..cost.profiles import profiles_table
from .build import (FILES, FORMAT, AnnModel, Measured, Network, ReportError, ReportResult, build_report,
                    check_ann_matches, load_network, report_data, simulate)
from .render import render_html, render_markdown, report_sections

__all__ = ["FILES", "FORMAT", "AnnModel", "Measured", "Network", "ReportError", "ReportResult", "build_report",
           "check_ann_matches", "load_network", "profiles_table", "report_data", "simulate", "render_html",
           "render_markdown", "report_sections"]
