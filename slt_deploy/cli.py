"""The ``slt-deploy`` command line: a thin wrapper over the Python API, one function per subcommand.

User errors (:class:`slt_deploy.errors.SltError`) end the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .config import RunConfig, Settings, read_config_file
from .errors import ConfigError, SltError

# settings whose plain field name would be ambiguous on the command line
FLAG_NAMES = {("model", "name"): "model", ("data", "path"): "data-path"}


def _settings_flags(group: argparse._ArgumentGroup, cls, prefix: tuple) -> None:
    """One flag per settings field (help text and choices taken from the field itself)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + (f.name,)
        hint = hints[f.name]
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


def _show(value):
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "auto"
    return value


def run_config_from_args(args: argparse.Namespace, base: Optional[RunConfig] = None) -> RunConfig:
    """Defaults (or ``base``) < config file < command-line flags; validated once, at the end."""
    data, where = (base or RunConfig()).to_dict(), "settings"
    if getattr(args, "config", None):
        where = str(args.config)
        _merge(data, read_config_file(args.config))
    for key, value in vars(args).items():
        if "/" in key:
            *parents, leaf = key.split("/")
            node = data
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return RunConfig.from_dict(data, where=where)


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
    from .search import search

    config = run_config_from_args(args)
    search(config, args.runs_dir, progress=not args.no_progress)
    return 0


def cmd_sweep(args) -> int:
    from .sweep import load_sweep, run_sweep

    spec = load_sweep(args.file)
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


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def export_formats() -> Dict[str, Callable]:
    """The export stage's writers and the compile stage's (netx is written from the compiled network)."""
    from . import compile, export

    return {**export.FORMATS, **compile.FORMATS}


def cmd_export(args) -> int:
    from .export import export_ticket

    path = export_ticket(args.ticket, args.format, args.out, formats=export_formats())
    print(f"wrote {path}")
    return 0


def cmd_simulate(args) -> int:
    from .simulate import simulate
    from .utils import write_json_atomic

    result = simulate(args.model, args.backend, samples=args.samples, progress=not args.no_progress)
    print(result.summary())
    if args.json:
        write_json_atomic(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def cmd_report(args) -> int:
    from .report import build_report

    result = build_report(args.inputs, ann=args.ann, profiles=args.profiles, out=args.out,
                          samples=args.samples, progress=not args.no_progress, ops=args.ops,
                          host_profile=args.host_profile, train_ann=not args.untrained_ann, runs_dir=args.runs_dir,
                          neurobench=not args.no_neurobench, sanafe=not args.no_sanafe, also_ann=args.also_ann)
    for path in (result.markdown, result.html, result.json, *result.plots.values()):
        print(f"wrote {path}")
    return 0


def cmd_profiles(args) -> int:
    from .report import profiles_table

    print(profiles_table())
    return 0


def cmd_models(args) -> int:
    from .models import MODELS

    for spec in MODELS.values():
        print(f"{spec.name:10s} default widths {','.join(map(str, spec.default_hidden)):20s} {spec.description}")
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
    parser = _Parser(
        prog="slt-deploy",
        description="Find spiking lottery tickets in snnTorch and deploy them to neuromorphic hardware.")
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
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo", help="run the whole pipeline on the offline MNIST default",
                       description="Search an IMP ticket on the offline MNIST split and run every later stage.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="fewer epochs and rounds (about a minute)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export a ticket to NIR, ONNX (ANN twin or unrolled SNN) or netx",
                       description="Export a ticket; the written file is checked against the ticket first.")
    p.add_argument("ticket", help="a ticket (.safetensors)")
    p.add_argument("--format", required=True, choices=list(export_formats()), help="output format")
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="print what a ticket, NIR graph or ONNX model holds",
                       description="Print a ticket's record and per-layer sparsity, a NIR graph's per-node table "
                                   "(type, shape, sparsity, binary, neuron parameters) or an ONNX model's MACs.")
    p.add_argument("file", help="a ticket (.safetensors), NIR graph (.nir/.h5) or ONNX model (.onnx)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    from .simulate import BACKENDS

    p = sub.add_parser("simulate", help="run a NIR graph in Lava (float / Loihi fixed point), the fast simulator "
                                        "or the reference, and check it against the reference",
                       description="Compile a NIR graph once, stream its test samples through it and report "
                                   "accuracy, agreement with the snnTorch-exact reference, spikes per layer, "
                                   "samples/s.")
    p.add_argument("model", metavar="MODEL.nir", help="a NIR graph (e.g. from slt-deploy export --format nir)")
    p.add_argument("--backend", default="lava-fixed", choices=list(BACKENDS), help="default: lava-fixed")
    p.add_argument("--samples", type=int, default=100, help="test samples (default: 100)")
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
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
    p.add_argument("--host-profile", default="fp32-45nm", metavar="NAME_OR_FILE",
                   help="profile the host-computed first layer of the SNN is charged on (default: fp32-45nm)")
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
    p.set_defaults(func=cmd_report)

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


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SltError as exc:
        print(f"slt-deploy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("slt-deploy: interrupted (re-run the same command to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
