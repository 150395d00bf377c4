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

One counting rule for both sides (``ops``: ``effective`` = nonzero input x nonzero weight measured on the same
samples, spikes for the SNN and real activations for the ANN; ``dense`` = every weight), stated in every table.
The first layer is one named component on both sides; the SNN's is computed by the host for every input but
spikes (:func:`slt_deploy.data.encoding.first_layer_on_host`), charged on the host profile
(:data:`slt_deploy.cost.profiles.HOST_PROFILE` by default), once per sample for a constant input. The ANN is,
by default, the dense ANN twin trained with the first ticket's recipe (``search --spiking false --method
dense``, cached in the runs folder); ``--ann`` takes an ANN ticket or ONNX. Mapping follows the deployment: host-computed synapses are off chip.
NeuroBench 2.3.0's own metrics and SANA-FE 2.2.9 runs (profiles naming SANA-FE architectures) sit next to the
project's counts. The report opens with a verdict per (network, profile, ANN target). A figure a profile does not
know is listed as unknown, never filled in: a total with no known figure of the target prints "unknown: needs
X", one missing a figure is a lower bound, one mixing lower and upper bounds an estimate.

Written (each file atomically) into the output folder: ``report.json`` (every number; the other files are
rendered from it), ``report.md``, ``report.html``, ``energy_breakdown.png``,
``accuracy_sparsity_energy.png``, ``accuracy_vs_energy.png`` (Pareto) and, with the untrained twin,
``ann_twin.onnx``; ``report.html`` embeds the images.

Modules, one per stage, each docstring saying what it takes and gives: :mod:`.networks` (the inputs read),
:mod:`.anns` (the ANNs compared with), :mod:`.measure` (runs and counts), :mod:`.crosscheck` (NeuroBench,
SANA-FE), :mod:`.entries` (costs per profile), :mod:`.verdict` (the decision rule), :mod:`.plots` and
:mod:`.render` (images and text), :mod:`.build` (the stages in order) and :mod:`.schema` (report.json and
deploy.json, typed and versioned, with their one loader). Takes tickets or NIR graphs and hardware profiles; gives
a :class:`ReportResult`.
"""

from ..cost.profiles import profiles_table
from .anns import AnnModel, check_ann_matches, train_ann_twin, twin_config
from .build import FILES, FORMAT, ReportResult, build_report
from .measure import AnnMeasured, Measured, measure_ann, simulate
from .networks import GraphInputs, Network, ReportError, load_network
from .render import render_html, render_markdown, report_sections
from .schema import DeployData, ReportData, ReportFileError, load_deploy, load_report
from .verdict import verdict_tables

__all__ = ["FILES", "FORMAT", "AnnMeasured", "measure_ann", "train_ann_twin", "twin_config", "verdict_tables",
           "AnnModel", "Measured", "Network", "GraphInputs", "ReportError", "ReportResult", "build_report",
           "check_ann_matches", "load_network", "profiles_table", "simulate", "render_html", "render_markdown",
           "report_sections", "ReportData", "DeployData", "ReportFileError", "load_report", "load_deploy"]
