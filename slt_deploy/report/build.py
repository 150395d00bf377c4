"""Build the report: read the inputs, measure, cost, decide, write. The stages, in order:

1. :mod:`.networks` and :mod:`.anns`: read every input and choose the ANNs (trained on demand and cached), each
   checked against every network, before anything is simulated or written;
2. :mod:`.measure`: run each network and ANN on the same first N test samples and count its activity;
   :mod:`.crosscheck`: NeuroBench and SANA-FE on the same runs;
3. :mod:`.entries`: energy, memory, mapping and fit per network and profile, through the cost stage;
4. :mod:`.verdict`: the decision per network and chip, at one scope, by intervals;
5. :mod:`.plots` and :mod:`.render`: the images, report.md and report.html, all from report.json's data
   (:class:`~.schema.ReportData`).

Takes paths and options (:func:`build_report`); gives a :class:`ReportResult`.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..cost.energy import OPS_RULES
from ..cost.profiles import HOST_PROFILE, HardwareProfile, load_profile
from ..utils import check_output_dir, check_output_path, resolve_device, write_text_atomic
from .anns import TWIN_FILE, AnnModel, check_ann_matches, choose_ann, keep_twin, pruned_anns, recipes
from .crosscheck import crosschecks
from .entries import CostContext, Measurements, report_data
from .measure import AnnMeasured, measure_ann, simulate
from .networks import GraphInputs, Network, PathLike, ReportError, load_network
from .plots import plot_accuracy_sparsity_energy, plot_break_even, plot_energy_breakdown, plot_pareto
from .render import APPENDIX_FILE, appendix_sections, render_html, render_markdown, report_sections
from ..config import UsageConfig
from .schema import REPORT_VERSION, PlotFiles, ReportData, Usage, write_record
from .verdict import verdict_tables

FORMAT = REPORT_VERSION
# The SNN papers' 45 nm convention is itself a profile (hardware_profiles/cmos45.yaml): no numbers live here.
CONVENTION_PROFILE = "cmos45"
FILES = {"json": "report.json", "markdown": "report.md", "html": "report.html", "ann_twin": TWIN_FILE,
         "appendix": APPENDIX_FILE,
         "energy_breakdown": "energy_breakdown.png", "accuracy_sparsity_energy": "accuracy_sparsity_energy.png",
         "pareto": "accuracy_vs_energy.png", "break_even": "break_even.png"}
PLOTS = {"energy_breakdown": plot_energy_breakdown, "pareto": plot_pareto,
         "accuracy_sparsity_energy": plot_accuracy_sparsity_energy, "break_even": plot_break_even}


@dataclass(frozen=True)
class ReportResult:
    """Paths of the written files and the report's data (the content of report.json)."""

    json: Path
    markdown: Path
    html: Path
    plots: Dict[str, Path]
    report: ReportData              # the content of report.json, typed


@dataclass(frozen=True)
class AnnOptions:
    """Which ANNs the networks are compared with (see :func:`build_report`)."""

    ann: Optional[PathLike] = None
    also: Sequence[PathLike] = ()
    train: bool = True
    runs_dir: Optional[PathLike] = None


def build_report(inputs: Sequence[PathLike], *, ann: Optional[PathLike] = None, profiles: Sequence[str],
                 out: PathLike, samples: int = 200, progress: bool = True, ops: str = "effective",
                 host_profile: str = HOST_PROFILE, train_ann: bool = True, runs_dir: Optional[PathLike] = None,
                 neurobench: bool = True, sanafe: bool = True, also_ann: Sequence[PathLike] = (),
                 graph_inputs: Optional[GraphInputs] = None, device: str = "auto", rate: Optional[float] = None,
                 accuracy_tolerance: Optional[float] = None, chosen: Optional[PathLike] = None) -> ReportResult:
    """Simulate each input on its first ``samples`` test samples, cost it on ``profiles``, write the report.

    ``inputs``: tickets or NIR graphs; ``ann``: an ANN ticket (safetensors, ``model.spiking`` false) or an ONNX
    file; without it, the dense ANN twin of the first ticket trained with the ticket's recipe (search method
    ``dense``, ``model.spiking`` false; trained on demand and cached in ``runs_dir``, default: the runs folder
    the ticket lives in), or with ``train_ann=False`` the ticket's own weights with ReLU, labelled untrained.
    ``ops``: the counting rule for both sides (``effective`` or ``dense``). ``host_profile``: where the
    host-computed first layer of the SNN is charged. ``neurobench`` / ``sanafe``: add NeuroBench's metrics and
    SANA-FE simulations (profiles naming a SANA-FE architecture). ``also_ann``: more ANNs to compare with (ANN
    tickets or ONNX, e.g. LT / MPLT tickets at the SNN ticket's sparsity), measured and costed the same way and
    listed in the report's ``ann_others``. ``device``: where the networks' activity is counted (``auto``: the GPU
    when there is one; the same counts on any device). ``rate``: inferences per second the chip runs (None: back
    to back), which sets the static power charged at chip scope; ``accuracy_tolerance``: points below the SNN's
    accuracy an ANN may be and still be compared with it (None: the standard error of the difference); ``chosen``:
    the input whose verdict opens the report (default: the first). Every input is read and checked (profiles, ANN
    against each network) before anything is simulated or written.
    """
    out = Path(out)
    ctx = _check_arguments(inputs, profiles, samples, ops, host_profile, out, rate, accuracy_tolerance)
    where = resolve_device(device)  # a GPU that is not there: one line, before anything runs
    networks = [load_network(p, graph_inputs, samples) for p in inputs]
    options = AnnOptions(ann, also_ann, train_ann, runs_dir)
    measured, warnings = _measure(networks, options, ctx, samples, progress, where, out, neurobench, sanafe)
    warnings = [f"{net.path.name}: {w}" for net in networks for w in net.warnings] + warnings
    report = report_data(measured, ctx, samples, [str(p) for p in inputs], warnings, [str(p) for p in profiles])
    tolerance = None if accuracy_tolerance is None else accuracy_tolerance / 100.0
    short, matrix = verdict_tables(report.networks, report.profiles, report.anns, tolerance)
    report = report.model_copy(update={"verdict": short, "verdict_matrix": matrix,
                                       "plots": PlotFiles(**{k: FILES[k] for k in PLOTS}),
                                       "usage": Usage(rate=rate, accuracy_tolerance=accuracy_tolerance,
                                                      chosen_network=_chosen_label(report, inputs, chosen)),
                                       "recipes": recipes(networks, measured.anns)})
    return _write(report, out)


def _chosen_label(report: ReportData, inputs: Sequence[PathLike], chosen: Optional[PathLike]) -> str:
    """The label of the network whose verdict opens the report: ``chosen`` (one of the inputs), else the first."""
    index = 0
    if chosen is not None:
        wanted = Path(chosen).resolve()
        matches = [i for i, p in enumerate(inputs) if Path(p).resolve() == wanted]
        if not matches:
            raise ReportError(f"report: the chosen ticket {chosen} is not one of the inputs")
        index = matches[0]
    return report.networks[index].label


def _check_arguments(inputs, profiles: Sequence[str], samples: int, ops: str, host_profile: str,
                     out: Path, rate: Optional[float] = None, tolerance: Optional[float] = None) -> CostContext:
    """Refuse what cannot make a report, in one line, before anything runs or is written."""
    if not inputs:
        raise ReportError("report: give at least one ticket or NIR file")
    if not profiles:
        raise ReportError("report: give at least one hardware profile (--profiles NAME_OR_FILE ...)")
    if samples < 1:
        raise ReportError(f"report: samples={samples} must be >= 1")
    if ops not in OPS_RULES:
        raise ReportError(f"report: ops={ops!r} is not one of: {', '.join(OPS_RULES)}")
    UsageConfig(rate=rate, accuracy_tolerance=tolerance)  # the settings' own ranges, one line each
    check_output_dir(out)  # before anything is simulated: the folder, then each file it will hold
    for name in FILES.values():
        check_output_path(out / name)
    loaded = _load_profiles(profiles)
    host = load_profile(host_profile)
    if host.kind == "neuromorphic":
        raise ReportError(f"report: host profile {host.name} is a neuromorphic chip; give an ANN or reference "
                          f"profile (it computes the first layer)")
    return CostContext(ops, host, load_profile(CONVENTION_PROFILE), tuple(loaded), rate)


def _load_profiles(specs: Sequence[str]) -> List[HardwareProfile]:
    """Load each profile (ProfileError propagates); two with one name would collide in the report."""
    profiles: List[HardwareProfile] = []
    for spec in specs:
        p = load_profile(spec)
        if any(q.name == p.name for q in profiles):
            raise ReportError(f"report: profile name {p.name!r} is given twice ({spec}); names must be unique")
        profiles.append(p)
    return profiles


def _choose_anns(networks: Sequence[Network], options: AnnOptions, scratch: Path,
                 progress: bool) -> Tuple[AnnModel, List[AnnModel], List[str]]:
    """(the report's ANN, the others, why a ticket got no pruned counterpart), each checked against every
    network."""
    main = choose_ann(options.ann, networks, scratch, options.train, options.runs_dir, progress)
    others = [choose_ann(p, networks, scratch, options.train, options.runs_dir, progress) for p in options.also]
    skipped: List[str] = []
    if options.ann is None and options.train:  # the ANN pruned like each ticket, trained with the ticket's recipe
        others = pruned_anns(networks, options.runs_dir, progress, skipped) + others
    for net in networks:
        for model in [main, *others]:
            check_ann_matches(model, net)
    return main, others, skipped


def _ann_rows(main: AnnModel, main_run: AnnMeasured, others: Sequence[AnnModel], networks: Sequence[Network],
              samples: int) -> List[Tuple[AnnModel, AnnMeasured, str, str]]:
    """(model, run, label, origin) of every ANN, the report's first."""
    rows = [(main, main_run, "ANN" + ("" if main.trained is not False else " (untrained)"), main.origin)]
    for other in others:
        rows.append((other, measure_ann(other, networks[0], samples), other.label or f"ANN {other.path.stem}",
                     other.origin if other.label else "given with --also-ann"))
    return rows


def _measure(networks: Sequence[Network], options: AnnOptions, ctx: CostContext, samples: int, progress: bool,
             where, out: Path, neurobench: bool, sanafe: bool) -> Tuple[Measurements, List[str]]:
    """Every network and ANN run on the same samples, with their cross-checks; and the warnings to report."""
    with tempfile.TemporaryDirectory(prefix="slt-report-") as scratch:
        main, others, skipped = _choose_anns(networks, options, Path(scratch), progress)
        measured = [simulate(net, samples, progress, where) for net in networks]
        main_run = measure_ann(main, networks[0], samples)
        if options.ann is None and main.ticket is None:  # keep the twin the report describes next to it
            main = keep_twin(main, out / FILES["ann_twin"])
    anns = _ann_rows(main, main_run, others, networks, samples)
    checks = crosschecks(networks, measured, ctx.profiles, samples, neurobench, sanafe)
    return Measurements(networks, measured, anns, checks), skipped


def _write(report: ReportData, out: Path) -> ReportResult:
    """The plots, report.json and the text rendered from it (each file atomically)."""
    paths = {k: out / FILES[k] for k in ("json", "markdown", "html")}
    plots = {k: draw(report, out / FILES[k]) for k, draw in PLOTS.items()}
    sections, appendix = report_sections(report), appendix_sections(report)
    write_record(report, paths["json"])
    write_text_atomic(paths["markdown"], render_markdown(sections))
    write_text_atomic(out / FILES["appendix"], render_markdown(appendix))
    write_text_atomic(paths["html"], render_html(sections + appendix, out))
    return ReportResult(paths["json"], paths["markdown"], paths["html"], plots, report)
