"""The ``slt-deploy`` command line: a thin wrapper over the Python API, one function per subcommand.

User errors (:class:`slt_deploy.errors.SltError`) end the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .config import RunConfig, SearchConfig, Settings, check_section_types, read_config_file
from .errors import ConfigError, SettingConflict, SltError
from .limits import Limits, set_max_elements
from . import threads

# settings whose plain field name would be ambiguous on the command line
FLAG_NAMES = {("model", "name"): "model", ("data", "path"): "data-path", ("model", "args"): "model-args"}
DEVICE_HELP = ("where the fast simulator runs and activity is counted: auto (the GPU when there is one), cpu, cuda or "
               "cuda:N; the counts are the same on any device (default: auto)")


def _settings_flags(group: argparse._ArgumentGroup, cls, prefix: tuple) -> None:
    """One flag per settings field (help text and choices taken from the field itself)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + (f.name,)
        hint = hints[f.name]
        if f.metadata.get("internal"):
            continue  # filled in by the program
        if isinstance(hint, type) and issubclass(hint, Settings):
            _settings_flags(group, hint, path)
            continue
        flag = "--" + FLAG_NAMES.get(path, f.name.replace("_", "-"))
        default = f.default if f.default is not dataclasses.MISSING else None
        kw = dict(dest="/".join(path), default=argparse.SUPPRESS,
                  help=f"{f.metadata.get('help', '')} (default: {_show(default)})")
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
        elif hint is bool:
            kw.update(nargs="?", const="true", metavar="BOOL")
        else:
            kw["metavar"] = f.name.upper()  # choices, if any, are shown as {a,b}
        group.add_argument(flag, **kw)


def setting_type(cls, name: str) -> Callable[[str], object]:
    """An argparse ``type`` for a subcommand's flag that sets the setting ``cls.name`` outside a config: the
    value is converted and range-checked by that setting's own definition (:func:`slt_deploy.config.check_setting`),
    so one range holds at every door."""
    from .config import check_setting

    def convert(text: str):
        try:
            return check_setting(cls, name, text, f"{cls.__name__}.{name}")
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return convert


def finite_float(text: str) -> float:
    """An argparse ``type`` for a float flag with no setting behind it: a finite number, as every float setting."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _usage_flags(p: argparse.ArgumentParser) -> None:
    """--rate and --accuracy-tolerance (:class:`~slt_deploy.config.UsageConfig`; help text from its fields)."""
    from .config import UsageConfig

    _settings_flags(p.add_argument_group("usage settings (what the verdict assumes)"), UsageConfig, ("usage",))


def usage_from_args(args: argparse.Namespace):
    """The :class:`~slt_deploy.config.UsageConfig` the flags give (validated: one line naming the setting)."""
    from .config import UsageConfig

    return UsageConfig.from_dict({k.split("/", 1)[1]: v for k, v in vars(args).items() if k.startswith("usage/")},
                                 where="usage settings")


def _show(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "auto"
    return value


def run_config_from_args(args: argparse.Namespace, base: Optional[RunConfig] = None) -> RunConfig:
    """Defaults (or ``base``) < config file < command-line flags; validated once, at the end."""
    data, where = (base or RunConfig()).to_dict(), "settings"
    if getattr(args, "config", None):
        where = str(args.config)
        raw = read_config_file(args.config)
        check_section_types(RunConfig, raw, where)  # a section given as a list, before flags are merged into it
        _merge(data, raw)
    for key, value in vars(args).items():
        if "/" in key:
            *parents, leaf = key.split("/")
            node = data
            for p in parents:
                if node.get(p) is None:  # an empty section in the file (``model:``)
                    node[p] = {}
                node = node[p]
            node[leaf] = value
    return RunConfig.from_dict(data, where=where)


def setting_origin(args: argparse.Namespace, setting: str, value) -> str:
    """A setting (``model.num_classes``) as the user gave it: ``--num-classes 5`` when it came from a flag,
    ``cfg.yaml: model.num_classes=5`` from the config file."""
    path = tuple(setting.split("."))
    given = vars(args).get("/".join(path))
    if given is not None:
        return f"--{FLAG_NAMES.get(path, path[-1].replace('_', '-'))} {given}"
    if getattr(args, "config", None):
        return f"{args.config}: {setting}={value}"
    return f"{setting}={value}"


def _merge(into: dict, update: dict) -> None:
    """Deep merge: sections merge key by key (unknown keys are kept, for from_dict to reject)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _add_search_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file with sections model/data/train/search")
    p.add_argument("--runs-dir", default="runs", help="where run directories are created (default: runs)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    for name, cls in (("model", RunConfig.__dataclass_fields__["model"].default_factory),
                      ("data", RunConfig.__dataclass_fields__["data"].default_factory),
                      ("train", RunConfig.__dataclass_fields__["train"].default_factory),
                      ("search", RunConfig.__dataclass_fields__["search"].default_factory)):
        _settings_flags(p.add_argument_group(f"{name} settings"), cls, (name,))


# -- subcommands --------------------------------------------------------------------------------------

def cmd_search(args) -> int:
    from .cost.objective import round_meter
    from .search import search

    config = run_config_from_args(args)
    try:
        search(config, args.runs_dir, progress=not args.no_progress, meter=round_meter(config))
    except SettingConflict as exc:  # name the setting as the user gave it: a flag or the config file
        if exc.setting is None:
            raise
        raise exc.with_origin(setting_origin(args, exc.setting, exc.value)) from None
    except SltError as exc:  # a setting found wrong once the data is known: say which file it came from
        if args.config and str(args.config) not in str(exc):
            raise type(exc)(f"{args.config}: {exc}") from None
        raise
    return 0


def cmd_sweep(args) -> int:
    from .sweep import load_sweep, run_sweep

    spec = load_sweep(args.file, yes=args.yes)
    changes = {}
    if args.serial:
        changes.update(executor="serial", address=None)
    if args.address:
        changes.update(executor="ray", address=args.address)
    if args.max_concurrent is not None:
        changes["max_concurrent"] = args.max_concurrent
    spec = spec.with_options(**changes)
    result = run_sweep(spec, progress=not args.no_progress)
    for path in (result.results_json, result.results_csv, result.summary, *result.plots.values(),
                 *([result.report] if result.report else [])):
        print(f"wrote {path}")
    if result.failed:
        names = ", ".join(r["run_name"] for r in result.failed)
        print(f"slt-deploy: error: {len(result.failed)} of {len(result.rows)} sweep jobs failed: {names} "
              f"(errors in {result.results_json}; each job's log in its run directory)", file=sys.stderr)
        return 1
    return 0


def thread_settings(args: argparse.Namespace) -> "threads.ThreadSettings":
    """:func:`slt_deploy.threads.resolve` for the command; the demo, left to the affinity mask, takes one thread:
    its 266,200-MAC MLP spends more on two threads' synchronisation than it gains (on 2 cores, alone: 50.9 s
    wall on one thread against 65.8 s on two; benchmarks/RESULTS.md section 17). ``--threads`` or
    ``OMP_NUM_THREADS`` still win."""
    settings = threads.resolve(args.threads)
    if settings.source == "affinity" and getattr(args, "func", None) is cmd_demo:
        return threads.ThreadSettings(1, source="the demo's default (a small MLP runs fastest on one thread)")
    return settings


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress, usage=usage_from_args(args))
    return 0


def export_formats() -> Dict[str, Callable]:
    """The export stage's writers and the compile stage's (netx is written from the compiled network)."""
    from . import compile, export

    return {**export.FORMATS, **compile.FORMATS}


def _model_data_args(args):
    """(ModelConfig or None, DataConfig or None) from --weights/--model-args and --data-path/--dataset/..."""
    from .config import DataConfig, ModelConfig

    model = None
    if args.weights or args.model_args:
        model = ModelConfig.from_dict({"name": args.target, "weights": args.weights, "args": args.model_args or ""},
                                      where=args.command)
    data = None
    if args.data_path or args.dataset:
        raw = {"path": args.data_path, "timesteps": args.timesteps}
        raw.update({k: v for k, v in (("dataset", args.dataset), ("encoding", args.encoding)) if v})
        data = DataConfig.from_dict(raw, where=args.command)
    return model, data


def _add_model_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="FILE", help="a model's trained weights (safetensors, or a torch state "
                                                     "dict read with weights_only=True)")
    p.add_argument("--model-args", metavar="JSON", help="a model factory's keyword arguments as a JSON object")
    p.add_argument("--data-path", metavar="PATH", help="data: FILE.npz (x_train, y_train, x_test, y_test), a "
                                                       "folder of class folders of images, or a dataset folder")
    p.add_argument("--dataset", help="dataset name when --data-path does not tell (slt-deploy datasets)")
    p.add_argument("--encoding", choices=("direct", "rate", "latency", "events"),
                   help="input encoding of a model's data (default: direct, events for spike tensors)")
    p.add_argument("--timesteps", type=int, default=5, help="T of a model given with --weights (default: 5)")


def cmd_export(args) -> int:
    import functools

    from .config import is_user_model
    from .export import export_ticket

    ticket = args.target
    if args.weights or args.model_args or is_user_model(args.target):
        # the user's network at their weights: a dense ticket next to the output (what the file's metadata names)
        from .deploy import ticket_from_model

        model, data = _model_data_args(args)
        if model is None or data is None:
            raise ConfigError(f"export {args.target}: a model needs --weights FILE and its data (--data-path)")
        out = Path(args.out)
        ticket = ticket_from_model(model.replace(name=args.target), data).save(
            out.with_name(out.stem + ".ticket.safetensors"))
        print(f"wrote {ticket}")
    formats = export_formats()
    if args.first_layer:
        if args.format != "netx":
            raise ConfigError(f"--first-layer applies to --format netx, not {args.format}")
        formats["netx"] = functools.partial(formats["netx"], first_layer=args.first_layer)
    path = export_ticket(ticket, args.format, args.out, formats=formats)
    print(f"wrote {path}")
    return 0


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    """Where a NIR graph's samples come from (default: the dataset its metadata names) and its time step."""
    g = p.add_argument_group("input (for graphs written by other tools; default: the dataset the graph's "
                             "metadata names)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE", help=".npz with x (and optional y labels) or .npy with x: "
                     "(N, T, ...) spikes/currents used as they are, or (N, ...) values encoded with --encoding "
                     "over --timesteps steps")
    src.add_argument("--dataset", metavar="NAME", help="run on this dataset's test split (slt-deploy datasets "
                     "lists them)")
    g.add_argument("--data-path", metavar="DIR", help="the dataset's folder (with --dataset)")
    g.add_argument("--encoding", choices=("direct", "rate", "latency", "events"),
                   help="input encoding (default: the graph's, else events for event data, direct otherwise)")
    g.add_argument("--timesteps", type=int, metavar="T", help="timesteps T (default: the graph's, else 5)")
    g.add_argument("--dt", type=finite_float, metavar="SECONDS", help="the graph's time step (default: its dt metadata; "
                   "a graph without one runs at 1e-4 with a warning; sinabs graphs need 1)")
    g.add_argument("--lenient", action="store_true", help="read NIR files whose declared shapes differ only by "
                   "unit dimensions, e.g. (1) vs (1, 1, 1) (each repair is printed); other mismatches are refused")


def _input_kwargs(args, graph_path: Optional[str]) -> dict:
    """simulate()/build_report() keyword arguments from the input flags (None where not given)."""
    if args.data_path and not args.dataset:  # the path alone names the loader (.npz, image folders), else mnist
        from .config import DataConfig
        from .data import infer_dataset

        args.dataset = infer_dataset(DataConfig(path=args.data_path)).dataset
    if args.dataset:
        from .simulate.run import load_graph
        from .simulate.workload import dataset_config

        graph = load_graph(graph_path, args.lenient)[0] \
            if graph_path and Path(graph_path).suffix.lower() in (".nir", ".h5") else None
        data = dataset_config(args.dataset, graph, path=args.data_path, encoding=args.encoding,
                              timesteps=args.timesteps)
        from .data import infer_dataset

        data = infer_dataset(data)  # user data (.npz, image folders): all of it, at an absolute path
        return dict(data=data, dt=args.dt, lenient=args.lenient)
    return dict(input=args.input, encoding=args.encoding, timesteps=args.timesteps, dt=args.dt, lenient=args.lenient)


def cmd_simulate(args) -> int:
    from .simulate import simulate
    from .utils import check_output_path, write_json_atomic

    if args.json:
        check_output_path(args.json)  # before the simulation, not after it
    result = simulate(args.model, args.backend, samples=args.samples, progress=not args.no_progress,
                      first_layer=args.first_layer, **_input_kwargs(args, args.model))
    print(result.summary())
    if args.json:
        write_json_atomic(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def cmd_report(args) -> int:
    from .report import build_report
    from .report import GraphInputs

    usage = usage_from_args(args)
    graphs = [p for p in args.inputs if Path(p).suffix.lower() in (".nir", ".h5")]
    given = GraphInputs(**_input_kwargs(args, graphs[0] if graphs else None))
    result = build_report(args.inputs, ann=args.ann, profiles=args.profiles, out=args.out,
                          samples=args.samples, progress=not args.no_progress, graph_inputs=given, ops=args.ops,
                          host_profile=args.host_profile, train_ann=not args.untrained_ann, runs_dir=args.runs_dir,
                          neurobench=not args.no_neurobench, sanafe=not args.no_sanafe, also_ann=args.also_ann,
                          device=args.device, rate=usage.rate, accuracy_tolerance=usage.accuracy_tolerance)
    for warning in result.report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path in (result.markdown, result.html, result.json, *result.plots.values()):
        print(f"wrote {path}")
    return 0


def cmd_deploy(args) -> int:
    from .deploy import deploy

    model, data = _model_data_args(args)
    result = deploy(args.target, profile=args.profile, out=args.out, backend=args.backend, model=model, data=data,
                    samples=args.samples, allow_overlap=args.allow_overlap, progress=not args.no_progress,
                    device=args.device, max_accuracy_drop=args.max_accuracy_drop, usage=usage_from_args(args))
    print(result.summary)
    for key in ("summary", "json", "report", "nir", "netx"):
        if key in result.files:
            print(f"wrote {result.files[key]}")
    return 0


def cmd_profiles(args) -> int:
    from .report import profiles_table

    print(profiles_table())
    return 0


def cmd_models(args) -> int:
    from .models import MODELS

    for spec in MODELS.values():
        print(f"{spec.name:10s} default widths {','.join(map(str, spec.default_hidden)):20s} {spec.description}")
    print(f"{'FILE.py:FN':10s} {'your own network':35s} a factory returning an snnTorch nn.Module "
          f"(--model-args JSON, --weights FILE; README: Bring your own network)")
    return 0


def cmd_datasets(args) -> int:
    from .data import DATASETS

    for name, loader in DATASETS.items():
        doc = (loader.__doc__ or "").strip().splitlines()
        print(f"{name:14s} {doc[0] if doc else ''}")
    return 0


def cmd_inspect(args) -> int:
    from .describe import describe_file

    print(describe_file(args.file, as_json=args.json))
    return 0


def cmd_env(args) -> int:
    from .ticket import library_versions

    versions = library_versions()
    try:
        from importlib import metadata

        for dist in ("lava-nc", "lava-dl", "nirtorch", "onnx", "onnxruntime"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = "not installed"
    finally:
        settings = threads.current()  # what this process runs with, and where the count came from
        versions["threads"] = (f"{settings.threads} (from {settings.source}), inter-op {settings.interop}, "
                               f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
        print(json.dumps(versions, indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse's own errors (bad choice, unknown flag) as one line, like every other user error."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --epoch must not silently mean --epochs
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"slt-deploy: error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .cost.profiles import HOST_PROFILE

    parser = _Parser(
        prog="slt-deploy",
        description="Find spiking lottery tickets in snnTorch and deploy them to neuromorphic hardware.")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: SLT_DEPLOY_DEBUG=1)")
    parser.add_argument("--max-elements", type=int, metavar="N",
                        help=f"largest model or tensor size any input file may declare, in elements (default: "
                             f"{Limits().max_elements:,}; also SLT_DEPLOY_MAX_ELEMENTS); files declaring more "
                             f"are refused before anything is allocated")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="compute threads for torch, BLAS and onnxruntime (default: OMP_NUM_THREADS, else the "
                             "cores this process may use); waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("search", help="search a winning ticket (IMP, Early-Bird, Early-Time, random, dense)",
                       description="Search a winning ticket. Re-running the same command resumes the run.")
    _add_search_flags(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("sweep", help="run many searches (a grid and/or list of settings) as Ray tasks",
                       description="Expand a sweep file into searches and run them as Ray tasks, on this machine "
                                   "(default) or an existing Ray cluster. Finished runs are never rerun: re-running "
                                   "the command resumes the sweep. Writes results.json/.csv, plots and summary.md; "
                                   "exits 1 naming the jobs that failed.")
    p.add_argument("file", metavar="SWEEP.yaml", help="sweep file: base settings, grid and/or jobs, options "
                                                      "(see examples/sweep_methods.yaml)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="run on this Ray cluster (auto or HOST:PORT) instead "
                                         "of a local Ray runtime")
    where.add_argument("--serial", action="store_true", help="run the jobs one after the other in this process, "
                                                             "without Ray")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="jobs in flight at once (default: the file's "
                                                                     "max_concurrent; 0 = as the resources allow)")
    p.add_argument("--no-progress", action="store_true", help="no progress line per event (failures are "
                                                              "still printed)")
    p.add_argument("--yes", action="store_true", help="run a sweep of more than 10,000 jobs")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo", help="run the whole pipeline on the offline MNIST default",
                       description="Search an IMP ticket on the offline MNIST split and run every later stage.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="fewer epochs and rounds (about a minute)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _usage_flags(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export a ticket to NIR, ONNX (ANN twin or unrolled SNN) or netx",
                       description="Export a ticket (or your network at your weights: file.py:factory --weights "
                                   "FILE --data-path DATA, written as a dense ticket next to the output first); "
                                   "the written file is checked against the ticket first.")
    p.add_argument("target", metavar="TICKET_OR_MODEL", help="a ticket (.safetensors), or your network as "
                                                             "path/to/file.py:factory with --weights")
    _add_model_data_flags(p)
    p.add_argument("--format", required=True, choices=list(export_formats()), help="output format")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--first-layer", choices=("host", "chip"), help="netx: chip includes the first synapse layer "
                   "(the file runs the whole network, fed with spikes); host (default) leaves it to the host")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="print what a ticket, NIR graph, netx network or ONNX model holds",
                       description="Print a ticket's record and per-layer sparsity, a NIR graph's per-node table "
                                   "(type, shape, sparsity, binary, neuron parameters) or an ONNX model's MACs.")
    p.add_argument("file", help="a ticket (.safetensors), NIR graph (.nir/.h5), netx network (.h5) or ONNX model "
                                "(.onnx); a report.json (its verdict) or deploy.json (its summary); or a run "
                                "directory of search --objective energy (its front as a table, and front.png)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    from .simulate import BACKENDS

    p = sub.add_parser("simulate", help="run a NIR graph in Lava (float / Loihi fixed point), the fast simulator "
                                        "or the reference, and check it against the reference",
                       description="Compile a NIR graph once, stream its test samples through it and report "
                                   "accuracy, agreement with the snnTorch-exact reference, spikes per layer, "
                                   "samples/s.")
    p.add_argument("model", metavar="MODEL.nir", help="a NIR graph (e.g. from slt-deploy export --format nir)")
    p.add_argument("--backend", choices=list(BACKENDS), help="default: lava-fixed where Lava is installed "
                   "(Python 3.10), fast-fixed elsewhere")
    p.add_argument("--samples", type=int, default=100, help="test samples (default: 100)")
    p.add_argument("--first-layer", choices=("host", "chip"), help="compute the first synapse layer on the host "
                   "(real-valued input) or on chip (binary spikes only); default: chip for event data and binary "
                   "sequences from --input, host otherwise")
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_input_flags(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("report", help="accuracy, energy, memory and fit of tickets per hardware profile vs the ANN",
                       description="Simulate each ticket (or NIR graph) on test samples, count its operations and "
                                   "cost it on each profile against the ANN; writes report.md/.html/.json + plots.")
    p.add_argument("inputs", nargs="+", metavar="TICKET_OR_NIR", help="tickets (.safetensors) or NIR graphs")
    p.add_argument("--ann", metavar="ANN", help="ANN to compare with: an ANN ticket (.safetensors, model.spiking "
                   "false; run and counted in torch) or ONNX (run in onnxruntime, its layer inputs counted). "
                   "Default: the dense ANN twin of the first ticket trained with its recipe (search --spiking false "
                   "--method dense), trained on demand and cached in the runs folder")
    p.add_argument("--also-ann", nargs="+", default=[], metavar="ANN",
                   help="more ANNs to compare with, measured and costed the same way (ANN tickets such as LT / "
                        "MPLT at the ticket's sparsity, or ONNX)")
    p.add_argument("--ops", choices=("effective", "dense"), default="effective",
                   help="counting rule for both sides: effective = nonzero input x nonzero weight measured on the "
                        "same samples (spikes / ANN activations); dense = every weight (default: effective)")
    p.add_argument("--host-profile", default=HOST_PROFILE, metavar="NAME_OR_FILE",
                   help=f"profile the host-computed first layer of the SNN is charged on (default: {HOST_PROFILE}, "
                        f"the precision of the chip's own 8-bit weights)")
    p.add_argument("--untrained-ann", action="store_true",
                   help="compare with the ticket's own weights run with ReLU (never trained as an ANN; labelled "
                        "untrained) instead of training the dense twin")
    p.add_argument("--runs-dir", default=None,
                   help="where the trained ANN twin is cached (default: the runs folder the first ticket is in)")
    p.add_argument("--no-neurobench", action="store_true", help="leave out NeuroBench's metrics")
    p.add_argument("--no-sanafe", action="store_true", help="leave out the SANA-FE simulations")
    p.add_argument("--profiles", nargs="+", required=True, metavar="NAME_OR_FILE",
                   help="profile names (see: slt-deploy profiles) or profile YAML files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--samples", type=int, default=200, help="test samples simulated for the counts (default: 200)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    _add_input_flags(p)  # applies to the NIR graphs; tickets run on their own data
    _usage_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("deploy", help="a ticket (or your model and weights) on one hardware profile: export, "
                                      "compile, simulate, cost, one-screen summary",
                       description="Export the ticket to NIR (and netx for Loihi), compile and simulate it in Lava "
                                   "float and the chosen backend on its test data, cost it on the profile, and "
                                   "write everything with summary.txt and deploy.json to one folder.")
    p.add_argument("target", metavar="TICKET_OR_MODEL", help="a ticket (.safetensors), or your network as "
                                                             "path/to/file.py:factory (or package.module:factory) "
                                                             "with --weights")
    p.add_argument("--profile", required=True, metavar="NAME_OR_FILE", help="hardware profile (slt-deploy profiles)")
    p.add_argument("--backend", choices=list(BACKENDS), help="default: lava-fixed where Lava is installed "
                   "(Python 3.10), fast-fixed elsewhere")
    p.add_argument("--out", required=True, help="output folder")
    _add_model_data_flags(p)  # --data-path for a ticket: evaluate on other data (default: its test split)
    p.add_argument("--samples", type=int, default=100, help="test samples simulated and costed (default: 100)")
    p.add_argument("--allow-overlap", action="store_true", help="evaluate even on data that overlaps the ticket's "
                                                                "training split (labelled in every output)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--max-accuracy-drop", type=setting_type(SearchConfig, "max_accuracy_drop"), default=None,
                   metavar="POINTS",
                   help="TICKET_OR_MODEL a run directory of search --objective energy: deploy its cheapest ticket on "
                        "--profile within this many points of the dense round (default: the run's own setting)")
    _usage_flags(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("profiles", help="list hardware profiles and their figures (value, unit, status, source)",
                       description="List the shipped hardware profiles with every figure's value, status and source.")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("models", help="list the model registry", description="List the registered models.")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("datasets", help="list the dataset loaders", description="List the dataset loaders.")
    p.set_defaults(func=cmd_datasets)
    p = sub.add_parser("env", help="print library versions (for bug reports)",
                       description="Print the versions of Python and the libraries slt-deploy uses.")
    p.set_defaults(func=cmd_env)
    return parser


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    """Built once per process (argparse's set-up is most of a failing command's time when main is called
    in-process many times, e.g. by the hostile-corpus test)."""
    return build_parser()


def _debug_requested() -> bool:
    return os.environ.get("SLT_DEPLOY_DEBUG", "") not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _utf8_mode_or_exec(argv: Optional[List[str]]) -> None:
    """Under a non-UTF-8 locale (LANG=C with PYTHONUTF8=0, a Latin-1 locale) Python hands a non-ASCII path
    over as surrogate escapes, which h5py, protobuf and torch.onnx refuse ('surrogates not allowed'): restart
    the command once in Python's UTF-8 mode, which gives every path back its real characters. The command
    line's bytes are passed on unchanged (os.execv encodes the escapes back to the original bytes)."""
    if argv is not None or sys.flags.utf8_mode or sys.getfilesystemencoding().lower().replace("-", "") == "utf8":
        return
    env = dict(os.environ, PYTHONUTF8="1")
    os.execve(sys.executable, [sys.executable, "-X", "utf8", "-m", "slt_deploy.cli", *sys.argv[1:]], env)


def main(argv: Optional[List[str]] = None) -> int:
    _utf8_mode_or_exec(argv)
    for stream in (sys.stdout, sys.stderr):  # a non-ASCII path must not crash a print on an ASCII terminal
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or _debug_requested()
    # --debug is global, but a user who adds it after the command (slt-deploy inspect X --debug) means it too
    args = _parser().parse_args([a for a in argv if a != "--debug"])
    try:
        if args.max_elements is not None:
            if args.max_elements < 1:
                raise ConfigError(f"--max-elements {args.max_elements} must be a positive number of elements")
            set_max_elements(args.max_elements)
        threads.apply(thread_settings(args))  # every subcommand, before any work
        return args.func(args)
    except SltError as exc:
        if debug:
            traceback.print_exc()
        print(f"slt-deploy: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("slt-deploy: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `slt-deploy inspect X | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug, not a user error: say so in one line, keep the traceback one flag away
        if debug:
            raise
        print(f"slt-deploy: internal error: {type(exc).__name__}: {_one_line(exc)[:300]} (this is a bug; run "
              f"with slt-deploy --debug or SLT_DEPLOY_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
