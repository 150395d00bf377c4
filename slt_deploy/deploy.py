"""``slt-deploy deploy``: a ticket (or the user's model and weights) to one hardware profile, in one folder.

A driver over the stage APIs: the ticket (made from ``--model``/``--weights`` when given a model) -> NIR
(:mod:`slt_deploy.exporters.nir_format`), and the lava-dl netx file for Loihi profiles
(:data:`slt_deploy.compile.FORMATS`) -> Lava float and the chosen backend on the test data
(:func:`slt_deploy.simulate.simulate`) -> the cost report for that profile (:func:`slt_deploy.report.build_report`)
-> ``summary.txt`` / ``deploy.json``: fits or not and why, cores, accuracy float vs fixed, agreement, energy and
latency per inference and the ANN comparison.

The evaluation data is the ticket's test split, or ``data`` (e.g. the user's ``.npz``); it is checked against
the ticket's training-split fingerprint first and refused when it overlaps, unless ``allow_overlap`` (then the
overlap is printed in the summary and written to ``deploy.json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .config import DataConfig, ModelConfig, is_user_model
from .errors import ConfigError, SltError
from .report.schema import (DEPLOY_VERSION, DeployData, FrontChoice, ReportData, VendorRun, VerdictRow)
from .ticket import USER_WEIGHTS_METHOD, Ticket, TicketRecord

FILES = {"ticket": "ticket.safetensors", "nir": "model.nir", "netx": "model.netx.h5", "ann": "ann_twin.onnx", "simulate": "simulate.json",
         "report": "report", "summary": "summary.txt", "json": "deploy.json"}
LOIHI_PROFILES = ("loihi", "loihi2")


@dataclass
class DeployResult:
    out: Path
    files: dict
    summary: str
    record: Optional[DeployData] = None   # the content of deploy.json, typed


def ticket_from_model(model: ModelConfig, data: DataConfig, progress: bool = True) -> Ticket:
    """A dense ticket of the user's network at its weights (``model.weights``), on ``data`` (its training split
    is fingerprinted, its test split gives the recorded accuracy)."""
    from .data import describe_data, fingerprint, infer_dataset, load_dataset
    from .models import initial_model, prunable_layers, resolve_config
    from .search.train import accuracy
    from .ticket import Mask, library_versions

    import torch

    if not model.weights:
        raise ConfigError(f"deploy {model.name}: give the trained weights with --weights FILE (or deploy a ticket)")
    data = infer_dataset(data)
    split = load_dataset(data)
    resolved = resolve_config(model, split.train.input_shape, split.train.num_classes, describe_data(data))
    net = initial_model(resolved).eval()
    mask = Mask.ones_like(prunable_layers(net))
    fp = fingerprint(split.train, data.path)
    record = TicketRecord(model=resolved, method=USER_WEIGHTS_METHOD,
                          hyperparameters={"data": data.to_dict(), "model": resolved.to_dict()},
                          timesteps=data.timesteps, encoding=data.encoding, dataset=data.dataset,
                          accuracy=accuracy(net, split.test, data, data.timesteps, (0,)),
                          train_data=fp.record(), versions=library_versions())
    ticket = Ticket.from_model(net, mask, record)
    ticket.train_hashes = torch.from_numpy(fp.hashes)
    return ticket


def _with_data(ticket: Ticket, data: DataConfig) -> Ticket:
    """The ticket evaluated on other data: its record's data settings replaced (its training fingerprint kept)."""
    from .data import infer_dataset

    data = infer_dataset(data.replace(timesteps=ticket.record.timesteps, encoding=data.encoding
                                      if data.encoding != DataConfig().encoding else ticket.record.encoding))
    hyper = dict(ticket.record.hyperparameters, data=data.to_dict())
    record = dataclasses.replace(ticket.record, hyperparameters=hyper, dataset=data.dataset, encoding=data.encoding)
    return Ticket(record, ticket.state, ticket.mask, ticket.train_hashes)


def choose_from_front(run_dir: Path, profile: str, max_accuracy_drop: Optional[float] = None) -> FrontChoice:
    """The cheapest ticket on ``profile`` of an energy-objective run whose held-out accuracy is within
    ``max_accuracy_drop`` points (default: the run's own setting) of its dense round.

    Every point's measured counts (``rounds/*.cost.json``) are charged on ``profile`` by the cost stage (the same
    run's counts, not a new run); the front on that profile is formed and the cheapest point within the drop taken.
    """
    from .config import SearchConfig, check_setting
    from .cost.objective import recost
    from .cost.profiles import load_profile
    from .paths import RunPaths
    from .run_files import load_front
    from .search.energy import choose, non_dominated

    paths = RunPaths(Path(run_dir))
    front, costs = load_front(paths.root)  # typed, and checked against every point's cost file
    drop = front.max_accuracy_drop if max_accuracy_drop is None else \
        check_setting(SearchConfig, "max_accuracy_drop", max_accuracy_drop, "--max-accuracy-drop")
    hw = load_profile(profile)
    if hw.kind == "ann":
        raise ConfigError(f"deploy {run_dir}: profile {hw.name} is an ANN target; the front costs spiking tickets")
    points = []
    for p, cost in zip(front.points, costs):
        e = recost(cost.entry(), profile)
        points.append(dict(p.model_dump(), energy_j=e["energy_j"], energy_kind=e["energy_kind"]))
    if any(p["energy_kind"] == "unknown" for p in points):
        raise ConfigError(f"deploy {run_dir}: profile {hw.name} publishes no per-event energy, so no ticket is the "
                          f"cheapest on it; deploy one of {paths.front}'s tickets by path")
    chosen = choose(non_dominated(points), front.reference_accuracy, drop)
    return FrontChoice.model_validate(dict(
        run=str(run_dir), profile=hw.name, label=chosen["label"], ticket_path=str(paths.root / chosen["ticket"]),
        accuracy=chosen["accuracy"], reference_accuracy=front.reference_accuracy, accuracy_on=front.accuracy_on,
        max_accuracy_drop=drop, energy_j=chosen["energy_j"], energy_kind=chosen["energy_kind"], point=chosen),
        strict=False)


def deploy(target, *, profile: str, out, backend: Optional[str] = None, model: Optional[ModelConfig] = None,
           data: Optional[DataConfig] = None, samples: int = 100, allow_overlap: bool = False,
           progress: bool = True, echo=print, max_accuracy_drop: Optional[float] = None,
           device: str = "auto", usage=None) -> DeployResult:
    """Deploy ``target`` (a ticket path, a :class:`Ticket`, an energy-objective run directory -- its cheapest
    ticket on ``profile`` within ``max_accuracy_drop`` points of the dense round, :func:`choose_from_front` --
    or a model name / ``file.py:factory`` whose settings and weights are in ``model``) on ``profile``; every
    file goes to ``out``.

    ``data``: evaluation data (default: the ticket's test split; required for a model). ``samples``: test
    samples simulated and costed. ``device``: where the fast simulator runs and the report counts activity
    (``auto``: the GPU when there is one; the same counts anywhere). ``usage``: a
    :class:`~slt_deploy.config.UsageConfig` (rate, accuracy tolerance) for the report's verdict.
    """
    from .compile import FORMATS as COMPILED
    from .cost.profiles import ANN_TARGETS, load_profile
    from .data.encoding import first_layer_on_host
    from .exporters.nir_format import ticket_to_nir, write_nir
    from .report import build_report
    from .simulate import BACKENDS, simulate
    from .simulate.backends import check_network
    from .report.schema import write_record
    from .simulate.run import loihi_backend
    from .utils import write_json_atomic, write_text_atomic

    backend = backend or loihi_backend()[0]  # lava-fixed where Lava is installed, fast-fixed elsewhere
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if samples < 1:
        raise ConfigError(f"samples={samples} must be >= 1")
    hw = load_profile(profile)  # a bad profile fails before anything is written
    from .utils import resolve_device

    resolve_device(device)  # a GPU that is not there: one line, before anything is written
    out = Path(out)
    choice = None
    if not isinstance(target, Ticket) and Path(str(target)).is_dir():
        choice = choose_from_front(Path(str(target)), profile, max_accuracy_drop)
        target = choice.ticket_path

    # 1. the ticket, on its evaluation data
    ticket, source, data = _ticket_of(target, model, data, progress)
    ticket, eval_data, overlap = _evaluated(ticket, source, data, allow_overlap, samples)
    # 2. export to NIR and check that the backends can compile it, before anything is written
    graph = ticket_to_nir(ticket, source=str(out / FILES["ticket"]))
    if backend != "reference":
        from .compile import lower

        first_layer = "host" if first_layer_on_host(eval_data.encoding) else "chip"
        for target in dict.fromkeys(["floating_pt", "fixed_pt" if backend.endswith("fixed") else "floating_pt"]):
            lower(graph, target, first_layer=first_layer)
    vendor = hw.simulator  # the vendor's own simulator (the profile file's ``simulator``): deploy ends with a run in it
    if vendor is not None:  # a network the vendor's chip cannot take is refused in one line, before writing
        check_network(vendor, graph, eval_data.encoding, hw.limit, f"deploy {source} on {hw.name}")
    # the cost report compares with the ANN twin: a layer it cannot express is refused now, not after writing
    from .exporters.onnx_format import ann_twin

    ann_twin(ticket)
    out.mkdir(parents=True, exist_ok=True)
    files = {"ticket": ticket.save(out / FILES["ticket"])}
    echo(f"deploy {source} -> {hw.name} ({backend}) in {out}")
    files["nir"] = write_nir(graph, out / FILES["nir"])
    netx_note = None
    if hw.name in LOIHI_PROFILES:
        try:
            files["netx"] = COMPILED["netx"](ticket, files["ticket"], out / FILES["netx"])
        except SltError as exc:  # what netx cannot carry (e.g. subtract reset) still simulates in Lava
            netx_note = f"netx file not written: {exc}"  # shown in the summary

    # 3. compile and simulate: Lava float (checked spike for spike) and the chosen backend
    # the float run is Lava's for a Lava backend, the fast simulator's for a fast one (no Lava needed)
    float_backend = "fast-float" if backend.startswith("fast") else "lava-float"
    sims = {}
    for name in dict.fromkeys([float_backend, backend]):
        sims[name] = simulate(files["nir"], name, samples=samples, progress=progress, device=device)
        echo(sims[name].summary().split("\n")[0])
    if vendor is not None:
        sims[vendor] = simulate(files["nir"], vendor, samples=samples, progress=progress)
        echo(sims[vendor].summary().split("\n")[0])
    write_json_atomic(out / FILES["simulate"], {k: v.to_dict() for k, v in sims.items()})
    files["simulate"] = out / FILES["simulate"]

    # 4. the cost report for this profile (and the 45 nm convention's ANN comparison it always carries)
    # The report reads the NIR graph (its executor counts any exported network, a class network included) and
    # the ticket's ANN twin, written here since the report derives a twin only from a ticket input.
    from .exporters.onnx_format import export_ticket_onnx

    files["ann"] = export_ticket_onnx(files["ticket"], out / FILES["ann"])
    targets = [a for a in ANN_TARGETS if a != hw.name] if hw.kind == "neuromorphic" else []  # what it could use instead
    report = build_report([files["nir"]], ann=files["ann"], profiles=[profile, *targets], out=out / FILES["report"],
                          samples=samples, progress=progress, device=device,
                          rate=None if usage is None else usage.rate,
                          accuracy_tolerance=None if usage is None else usage.accuracy_tolerance)
    files["report"] = report.markdown

    extras = {"netx": str(files["netx"]) if "netx" in files else netx_note,
              "vendor": None if vendor is None else _vendor_data(sims[vendor]), "front_choice": choice}
    record = _summary_data(ticket, hw.name, backend, float_backend, sims, report.report, overlap, extras)
    summary = render_summary(record)
    write_record(record, out / FILES["json"])
    write_text_atomic(out / FILES["summary"], summary + "\n")
    files["json"], files["summary"] = out / FILES["json"], out / FILES["summary"]
    return DeployResult(out, {k: Path(v) for k, v in files.items()}, summary, record)


def _ticket_of(target, model: Optional[ModelConfig], data: Optional[DataConfig], progress: bool):
    """(ticket, where it came from, the data still to apply): a Ticket, a ticket file, or a model and its weights
    (a model's ticket records its data, so none is left to apply)."""
    if isinstance(target, Ticket):
        return target, "ticket object", data
    if Path(str(target)).is_file() and not str(target).endswith(".py"):
        return Ticket.load(target), str(target), data
    if is_user_model(str(target)) or model is not None:
        cfg = (model or ModelConfig()).replace(name=str(target))
        if data is None:
            raise ConfigError(f"deploy {target}: a model needs its data (--data-path FILE.npz or --dataset)")
        return ticket_from_model(cfg, data, progress), f"{target} with weights {cfg.weights}", None
    raise ConfigError(f"deploy: {target} is neither a ticket file nor a model (path/to/file.py:factory "
                      f"with --weights)")


def _evaluated(ticket: Ticket, source: str, data: Optional[DataConfig], allow_overlap: bool, samples: int):
    """(ticket, its evaluation data, the overlap with its training split or None): ``data`` checked against the
    ticket, and an allowed overlap labelled in the ticket itself, so every later stage reading it knows."""
    from .simulate.workload import NetworkInput, check_ticket_overlap, ticket_data

    if data is not None:
        ticket = _with_data(ticket, data)
        NetworkInput.of_ticket(ticket, source).check_data(ticket_data(ticket, allow_overlap=True))
    eval_data = ticket_data(ticket, allow_overlap=True)
    overlap = check_ticket_overlap(ticket, eval_data, allow_overlap, samples=samples)
    if overlap is not None:
        ticket = Ticket(dataclasses.replace(ticket.record, extra=dict(ticket.record.extra, overlap=overlap.label())),
                        ticket.state, ticket.mask, ticket.train_hashes)
    return ticket, eval_data, overlap


def _vendor_data(run) -> dict:
    """The vendor simulator's run for the summary: accuracy, agreement with the snnTorch-exact reference and the
    named differences between the two (its notes)."""
    return {"backend": run.backend, "accuracy": run.accuracy, "reference_accuracy": run.reference_accuracy,
            "prediction_agreement": run.prediction_agreement, "spike_agreement": run.spike_agreement,
            "first_mismatch": run.first_mismatch, "silent": run.silent, "notes": list(run.notes)}


def _summary_data(ticket: Ticket, profile: str, backend: str, float_backend: str, sims: dict, report: ReportData,
                  overlap, extras: dict) -> DeployData:
    """deploy.json: the report's entry and verdict row for this chip, read as they are (nothing re-derived)."""
    net = report.networks[0]
    mapping = net.mapping.get(profile)
    energy = net.energy.get(profile)
    latency = net.per_inference.get(profile)
    matrix = [r for r in report.verdict_matrix if r.profile == profile]
    verdict = [r for r in report.verdict if r.profile == profile]
    fl, fx = sims[float_backend], sims[backend]
    return DeployData.model_validate(dict(
        schema_version=DEPLOY_VERSION, profile=profile, backend=backend, model=ticket.record.model.label(),
        method=ticket.record.method, sparsity=ticket.record.sparsity,
        dataset=fl.dataset, samples=fl.samples, timesteps=fl.timesteps,
        overlap=None if overlap is None else {"overlapping": overlap.overlapping, "samples": overlap.samples,
                                              "label": overlap.label()},
        fits=None if mapping is None else mapping.fits,
        fit_summary=None if mapping is None else mapping.fit_summary,
        failures=[] if mapping is None else mapping.failures,
        cores=None if mapping is None else mapping.cores_used,
        float_backend=float_backend,
        accuracy={"snntorch_reference": fl.reference_accuracy, float_backend: fl.accuracy, backend: fx.accuracy},
        float_spike_identical=fl.first_mismatch is None, float_first_mismatch=fl.first_mismatch,
        agreement={"predictions": fx.prediction_agreement, "first_mismatch": fx.first_mismatch},
        energy_per_inference_j=None if energy is None else energy.total,
        energy_complete=None if energy is None else energy.complete,
        energy_unknown=[] if energy is None else energy.unknown,
        # the report's verdict row for this chip (scope, intervals, decision, break-even), and every comparison
        # it chose from
        energy_scope=None if energy is None else energy.scope,
        energy_interval_j=None if energy is None else energy.interval,
        verdict_rows=verdict, verdict_matrix=matrix,
        latency_per_inference_s=None if latency is None else latency.latency_s,
        ann={"accuracy": report.ann.accuracy_measured,
             "origin": "ANN twin of the ticket: its architecture and masked weights with ReLU for LIF, one pass "
                       "per input; a cost reference, not a trained ANN",
             "percent_of_ann_45nm": net.convention_45nm.percent_of_ann,
             # SNN / ANN per ANN target, as the verdict decides it: an interval at one scope
             "ratio_on_profile": [{"ann_profile": r.ann_profile, "scope": r.scope,
                                   "ratio_interval": r.ratio_interval, "decision": r.decision} for r in matrix]},
        **extras), strict=False)


def _pct(x) -> str:
    return "unknown" if x is None else f"{100 * x:.2f} %"


def _choice_line(c: FrontChoice) -> str:
    return (f"chosen from {c.run}: {c.label}, the cheapest on {c.profile} within {c.max_accuracy_drop} points of "
            f"the dense round ({100 * c.accuracy:.2f} % vs {100 * c.reference_accuracy:.2f} % on {c.accuracy_on}; "
            f"{c.energy_j:.4g} J, {c.energy_kind})")


def _verdict_lines(v: Optional[VerdictRow]) -> List[str]:
    from .report.render import break_even_cell, fmt_interval, fmt_ratio

    if v is None or v.best_ann is None:
        return []
    best = v.best_ann
    return [f"verdict at scope {v.scope}: {v.decision} (SNN {fmt_interval(v.snn_interval_at_scope_j)} vs {best.ann} "
            f"on {best.ann_profile} {fmt_interval(best.ann_interval_j)}, SNN/ANN {fmt_ratio(v.ratio_interval)})",
            f"  break-even: {break_even_cell(v)}"]


def _vendor_lines(v: Optional[VendorRun]) -> List[str]:
    if v is None:
        return []
    lines = [f"{v.backend} (the vendor's simulator): accuracy {_pct(v.accuracy)}, predictions agree "
             f"{_pct(v.prediction_agreement)} with snnTorch; " + (
                 "NO SPIKES: the agreement is trivial" if v.silent else
                 "spike-identical in every layer" if v.first_mismatch is None else
                 f"first spike difference: {v.first_mismatch}")]
    return lines + [f"  {n}" for n in v.notes if v.first_mismatch is not None
                    and (" vs reference: " in n or n.startswith("first difference:"))]


def _run_lines(d: DeployData) -> List[str]:
    acc = d.accuracy
    ag = d.agreement
    return [f"accuracy on {d.samples} {d.dataset} test samples (T={d.timesteps}): snnTorch "
            f"{_pct(acc['snntorch_reference'])}, {d.float_backend} {_pct(acc[d.float_backend])}, "
            f"{d.backend} {_pct(acc[d.backend])}",
            f"{d.float_backend} vs snnTorch: " + ("spike-identical in every layer" if d.float_spike_identical
                                                  else f"differs: {d.float_first_mismatch}"),
            f"{d.backend} vs snnTorch: predictions agree {_pct(ag.predictions)}"
            + ("" if ag.first_mismatch is None else f"; first spike difference: {ag.first_mismatch}")]


def _energy_lines(d: DeployData) -> List[str]:
    from .report.render import fmt_ratio

    e = d.energy_per_inference_j
    lines = ["energy per inference: " + ("unknown" if e is None else f"{e:.4g} J" + (
        "" if d.energy_complete else f" (incomplete: unknown {', '.join(d.energy_unknown)})"))]
    lines += [line for v in d.verdict_rows for line in _verdict_lines(v)]
    lat = d.latency_per_inference_s
    lines.append("latency per inference: " + ("unknown (not in this report)" if lat is None else f"{lat:.4g} s"))
    lines.append(f"ANN comparison: ANN accuracy {_pct(d.ann.accuracy)}; SNN energy = "
                 f"{d.ann.percent_of_ann_45nm:.1f} % of the ANN's (45 nm convention)")
    return lines + [f"  vs ANN on {r.ann_profile} ({r.scope}): SNN/ANN {fmt_ratio(r.ratio_interval)}, {r.decision}"
                    for r in d.ann.ratio_on_profile]


def render_summary(d: DeployData) -> str:
    """The one-screen summary."""
    lines: List[str] = [_choice_line(d.front_choice)] if d.front_choice else []
    if d.overlap:
        lines.append(f"!! {d.overlap.label}")
    fits = {True: "FITS", False: "DOES NOT FIT", None: "fit unknown"}[d.fits]
    lines.append(f"{d.model} ({d.method}, {100 * d.sparsity:.1f} % sparse) on {d.profile}: {fits}"
                 + (f" on {d.cores} cores" if d.cores is not None else ""))
    if d.fit_summary:
        lines.append(f"  why: {d.fit_summary}")
    lines += [f"  - {f}" for f in d.failures]
    lines += _run_lines(d) + _energy_lines(d) + _vendor_lines(d.vendor)
    if d.netx and "not written" in d.netx:
        lines.append(d.netx)
    return "\n".join(lines)
