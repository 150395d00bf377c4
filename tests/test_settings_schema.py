"""Settings that are wrong -- of the wrong type, out of range, or valid alone but disagreeing with the data or with
each other -- generated from the settings dataclasses themselves, so that a new setting is covered the day it is
added. Every one goes through the command line (as a flag, and as a value in a config file or sweep file) and
must end in exit code 2, exactly one line on stderr, no traceback, no "internal error", and nothing written:
no run folder, no output folder, nothing new in the working directory (issue 26).

The data is scikit-learn's bundled digits (1x8x8, 10 classes) and every run starts from settings that would
train in about a second, so a value that slipped through would show as an exit 0 quickly rather than a hang.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import yaml

from slt_deploy.cli import FLAG_NAMES, main
from slt_deploy.config import RunConfig, Settings
from slt_deploy.sweep import SweepOptions

# What every generated run starts from: a dense MLP on 50 digits, one epoch (a second of CPU, were it to run).
BASE = {"model": {"hidden": [8]}, "data": {"dataset": "digits", "n_train": 50, "n_test": 20},
        "train": {"epochs": 1}, "search": {"method": "dense"}}

# Free-text settings (no type or choice list to derive a wrong value from): a wrong value for each, with the
# settings it needs to be read at all. A new free-text setting fails test_every_setting_is_covered until it
# has an entry here.
FREE_TEXT: Dict[Tuple[str, ...], Tuple[Any, dict]] = {
    ("model", "name"): ("no_such_model", {}),
    ("model", "args"): ("{not json", {}),
    ("model", "weights"): ("/nonexistent/weights.safetensors", {}),
    ("data", "dataset"): ("no_such_dataset", {}),
    ("data", "path"): ("/nonexistent/data folder", {}),
    ("train", "device"): ("tpu", {}),
    ("search", "reference"): ("/nonexistent/reference.safetensors", {"search": {"method": "random"}}),
    ("search", "prunable"): (["no_such_layer"], {}),
    ("runs_dir",): ("/dev/null/runs", {}),
    ("out",): ("/dev/null/out", {}),
    ("address",): ("127.0.0.1:1", {"executor": "ray", "connect_timeout_s": 0.5}),  # refused at once
}

# Valid alone, wrong together or for the data: (label, settings, what the message must name).
INCONSISTENT: List[Tuple[str, dict, str]] = [
    ("num-classes-vs-data", {"model": {"num_classes": 5}}, "num"),
    ("input-shape-vs-data", {"model": {"input_shape": [3, 32, 32]}}, "input"),
    ("flat-input-shape-vs-data", {"model": {"input_shape": [64]}}, "input"),
    ("hidden-count-vs-model", {"model": {"name": "convnet", "hidden": [4, 4]}}, "hidden"),
    ("recurrent-vs-reset", {"model": {"recurrent": True}}, "recurrent"),
    ("patch-keep-vs-model", {"model": {"patch_keep": 0.5}}, "patch_keep"),
    ("binary-activations-vs-model", {"model": {"binary_activations": True}}, "binary_activations"),
    ("args-vs-registered-model", {"model": {"args": "{}"}}, "args"),
    ("n-train-vs-data", {"data": {"n_train": 100000}}, "n_train"),
    ("n-test-vs-data", {"data": {"n_test": 100000}}, "n_test"),
    ("events-vs-images", {"data": {"encoding": "events"}}, "events"),
    ("images-vs-events", {"data": {"dataset": "nmnist", "path": "/nonexistent/nmnist"}}, "events"),
    ("timesteps-vs-limit", {"data": {"timesteps": 10 ** 6}}, "timesteps"),
    ("early-time-vs-timesteps", {"search": {"method": "imp", "early_time": True}, "data": {"timesteps": 2}},
     "timesteps"),
    ("early-time-vs-method", {"search": {"early_time": True}}, "early_time"),
    ("rewind-vs-epochs", {"search": {"method": "imp", "rewind_epoch": 1}}, "rewind_epoch"),
    ("eb-epochs-vs-epochs", {"search": {"method": "eb", "eb_max_epochs": 5}}, "eb_max_epochs"),
    # a seed every later stage refuses (a ticket's record holds 0..2**63-1): refused where it enters (issue 32)
    ("seed-beyond-63-bits", {"search": {"seed": 10 ** 23}}, "seed"),
]


# ------------------------------------------------------------------------------------------ the generator

def _fields(cls, prefix: Tuple[str, ...] = ()):
    """(path, field, type hint) of every user-facing setting of ``cls``, nested groups walked into."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.metadata.get("internal"):
            continue
        if isinstance(hint, type) and issubclass(hint, Settings):
            yield from _fields(hint, prefix + (f.name,))
        else:
            yield prefix + (f.name,), f, hint


def _strip_optional(hint):
    if typing.get_origin(hint) is typing.Union:
        return [a for a in typing.get_args(hint) if a is not type(None)][0]
    return hint


def wrong_values(path: Tuple[str, ...], f, hint) -> List[Tuple[str, Any, dict]]:
    """(label, value, extra settings) of wrong values for one setting, derived from its declared type."""
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    out: List[Tuple[str, Any, dict]] = []
    if path in FREE_TEXT:
        value, extra = FREE_TEXT[path]
        out.append(("wrong", value, extra))
    if f.metadata.get("choices"):
        out.append(("not-a-choice", "no_such_choice", {}))
    if hint is bool:
        out += [("text", "maybe", {}), ("number", 2, {})]
    elif hint is int:
        out += [("text", "many", {}), ("fraction", 2.5, {}), ("negative", -1, {})]
    elif hint is float:
        out += [("text", "much", {}), ("nan", math.nan, {}), ("inf", math.inf, {}), ("negative", -1.0, {})]
    elif hint is str:
        out.append(("list", [1, 2], {}))
    elif origin in (tuple, list):
        item = args[0] if args else str
        out += [("zero", [0], {}), ("negative", [-1], {}), ("text", ["wide"], {})] if item is int else \
            [("number-list", [[1]], {})]
    return out


def _nested(path: Tuple[str, ...], value) -> dict:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


def _merge(into: dict, update: dict) -> dict:
    into = json.loads(json.dumps(into))
    for key, value in update.items():
        into[key] = _merge(into.get(key, {}), value) if isinstance(value, dict) and isinstance(into.get(key), dict) \
            else value
    return into


def _flags(settings: dict, prefix: Tuple[str, ...] = ()) -> List[str]:
    """Command-line flags for a (nested) settings mapping, written as a user types them."""
    out = []
    for key, value in settings.items():
        path = prefix + (key,)
        if isinstance(value, dict):
            out += _flags(value, path)
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else \
            ("true" if value is True else "false" if value is False else str(value))
        out += ["--" + FLAG_NAMES.get(path, key.replace("_", "-")), text]
    return out


def _groups(cls, prefix: Tuple[str, ...] = ()):
    """(path, its first plain setting's field) of every settings group (section) of ``cls``: model, model.neuron"""
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if isinstance(hint, type) and issubclass(hint, Settings):
            first = next(g for _, g, _ in _fields(hint))
            yield prefix + (f.name,), first
            yield from _groups(hint, prefix + (f.name,))


def section_cases() -> List[Tuple[str, dict, tuple, dict]]:
    """A section given as a list or a number, in a config file, with (the 4th item) a flag of that section given
    too (merged into the section before validation: the crash of issue 26)."""
    return [(f"{'.'.join(path)}=section-{label}", _nested(path, value), (path[-1],),
             _nested(path + (first.name,), first.default))  # the flag's value is valid: its default
            for path, first in _groups(RunConfig) for label, value in (("list", [1, 2]), ("number", 3))]


def run_cases() -> List[Tuple[str, dict, Optional[str]]]:
    """(case id, settings on top of BASE, what the message must name) for every RunConfig setting."""
    cases = []
    for path, f, hint in _fields(RunConfig):
        for label, value, extra in wrong_values(path, f, hint):
            cases.append((f"{'.'.join(path)}={label}", _merge(extra, _nested(path, value)), _named(path, value)))
    return cases + [(label, settings, (name,)) for label, settings, name in INCONSISTENT]


def sweep_option_cases() -> List[Tuple[str, dict, Optional[str]]]:
    cases = []
    for path, f, hint in _fields(SweepOptions):
        for label, value, extra in wrong_values(path, f, hint):
            cases.append((f"sweep.{'.'.join(path)}={label}", _merge(extra, _nested(path, value)),
                          _named(path, value)))
    return cases


def _named(path: Tuple[str, ...], value) -> tuple:
    """What the message must name: the setting, or the wrong value itself (a text value, e.g. an unknown model
    or a missing folder; "unknown model 'x'" names the setting by its value)."""
    return (path[-1],) + ((value,) if isinstance(value, str) and value else ())


# ------------------------------------------------------------------------------------------ the runs

def _plain(text) -> str:
    """Compared without case, "_" or "-": model.num_classes and --num-classes name the same setting."""
    return str(text).replace("_", "").replace("-", "").lower()


class Runner:
    """Runs ``slt_deploy.cli.main`` in process in an empty working directory and checks the outcome."""

    def __init__(self, root: Path, capsys):
        self.root, self.capsys = root, capsys
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.out = root / "out"
        self.failures: List[str] = []
        self.runs = 0

    def check(self, case: str, argv: List[str], name: Optional[tuple]) -> None:
        self.runs += 1
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own refusals (a bad choice) exit from inside the parser
            rc = exc.code
        err = self.capsys.readouterr().err
        lines = err.strip().splitlines()
        problem = None
        if rc != 2:
            problem = f"exit {rc}"
        elif len(lines) != 1 or not err.endswith("\n") or err.count("\n") != 1:
            problem = f"{len(err.splitlines())} lines"
        elif "Traceback" in err or "internal error" in err:
            problem = "traceback or internal error"
        elif name and not any(_plain(n) in _plain(lines[0]) for n in name if n):
            problem = f"{name!r} not named"
        elif self.out.exists() or any(self.cwd.iterdir()):
            problem = f"wrote {sorted(p.name for p in [*self.cwd.iterdir(), self.out] if p.exists())}"
        if problem:
            self.failures.append(f"{case} [{' '.join(argv[:1])}]: {problem}: {err.strip()[:300]}")
        for p in [self.out, *self.cwd.iterdir()]:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


@pytest.fixture
def runner(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLT_DEPLOY_DEBUG", "0")
    monkeypatch.setenv("SLT_DEPLOY_MAX_ELEMENTS", "67108864")  # --max-elements cases set it; restored after
    r = Runner(tmp_path, capsys)
    monkeypatch.chdir(r.cwd)
    return r


def test_every_setting_is_covered():
    """Each user-facing setting of RunConfig and SweepOptions gets at least one wrong value (a new free-text
    setting needs an entry in FREE_TEXT)."""
    for cls, cases in ((RunConfig, run_cases()), (SweepOptions, sweep_option_cases())):
        named = {case.split("=")[0].removeprefix("sweep.") for case, _, _ in cases}
        missing = [".".join(p) for p, _, _ in _fields(cls) if ".".join(p) not in named]
        assert not missing, f"settings with no wrong value generated: {missing}"
    assert len(run_cases()) > 100


def test_search_refuses_every_wrong_setting(runner):
    """Every case as flags on the command line and as a config file: exit 2, one line, nothing written."""
    for case, settings, name in run_cases():
        argv = ["search", *_flags(BASE), *_flags(settings), "--runs-dir", str(runner.out), "--no-progress"]
        runner.check(f"{case} (flags)", argv, name)
        config = runner.root / "config.yaml"
        config.write_text(yaml.safe_dump(_merge(BASE, settings)))
        runner.check(f"{case} (config)", ["search", "--config", str(config), "--runs-dir", str(runner.out),
                                          "--no-progress"], name)
    for case, settings, name, flag in section_cases():  # config files only: a flag cannot give a section
        config = runner.root / "config.yaml"
        config.write_text(yaml.safe_dump(_merge(BASE, settings)))
        for extra in ([], _flags(flag)):
            runner.check(f"{case} (config {' '.join(extra)})", ["search", "--config", str(config), *extra,
                                                                "--runs-dir", str(runner.out), "--no-progress"], name)
    print(f"{runner.runs} runs refused")
    assert not runner.failures, f"{len(runner.failures)} of {runner.runs} runs failed:\n" + \
        "\n".join(runner.failures)


def _path_of(nested: dict) -> Tuple[str, ...]:
    key, value = next(iter(nested.items()))
    return (key,) + (_path_of(value) if isinstance(value, dict) else ())


def _leaf(nested: dict):
    value = next(iter(nested.values()))
    return _leaf(value) if isinstance(value, dict) else value


def _job_key(settings: dict) -> dict:
    """The sweep's one job, an override of a default (a sweep needs one) that the case does not set."""
    return {"search.seed": 0} if "seed" not in settings.get("search", {}) else {"train.batch_size": 128}


def test_sweep_refuses_every_wrong_setting(runner):
    """The same settings as a sweep's base (and the sweep's own options): exit 2, one line, no lock, no folder."""
    for case, settings, name in run_cases():
        spec = {"base": _merge(BASE, settings), "jobs": [_job_key(settings)], "executor": "serial",
                "runs_dir": str(runner.out)}
        sweep = runner.root / "sweep.yaml"
        sweep.write_text(yaml.safe_dump(spec))
        runner.check(case, ["sweep", str(sweep), "--no-progress"], name)
    for case, settings, name, flag in section_cases():  # a section as a list, with a grid key inside it
        spec = {"base": _merge(BASE, settings), "grid": {".".join(_path_of(flag)): [_leaf(flag)]},
                "executor": "serial", "runs_dir": str(runner.out)}
        sweep = runner.root / "sweep.yaml"
        sweep.write_text(yaml.safe_dump(spec))
        runner.check(case, ["sweep", str(sweep), "--no-progress"], name)
    for case, settings, name in sweep_option_cases():
        spec = _merge({"base": BASE, "jobs": [_job_key({})], "executor": "serial",
                       "runs_dir": str(runner.out)}, settings)
        if "address" in settings:
            spec.pop("executor")
            spec["executor"] = "ray"
        sweep = runner.root / "sweep.yaml"
        sweep.write_text(yaml.safe_dump(spec))
        runner.check(case, ["sweep", str(sweep), "--no-progress"], name)
    print(f"{runner.runs} runs refused")
    assert not runner.failures, f"{len(runner.failures)} of {runner.runs} runs failed:\n" + \
        "\n".join(runner.failures)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A valid ticket of the 1x8x8 digits MLP and its NIR graph (from the hostile corpus' helpers)."""
    import importlib.util

    from slt_deploy.cli import export_formats
    from slt_deploy.export import export_ticket

    spec = importlib.util.spec_from_file_location("hostile_corpus", Path(__file__).with_name("test_hostile_corpus.py"))
    corpus = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("hostile_corpus", corpus)  # its dataclasses look their module up by name
    spec.loader.exec_module(corpus)
    root = tmp_path_factory.mktemp("schema")
    ticket = corpus._valid_ticket(root / "ticket.safetensors")
    return {"ticket": ticket, "nir": export_ticket(ticket, "nir", root / "model.nir", formats=export_formats()),
            "onnx": export_ticket(ticket, "onnx", root / "ann.onnx", formats=export_formats())}


def test_other_subcommands_refuse_settings_that_disagree(runner, artifacts, tmp_path):
    """simulate, report, deploy and export with settings that disagree with the network or the data."""
    import numpy as np

    nir, ticket, out = str(artifacts["nir"]), str(artifacts["ticket"]), str(runner.out)
    wrong_shape = tmp_path / "wrong shape.npz"  # 1x4x4 samples for a 1x8x8 network
    np.savez(wrong_shape, x_train=np.zeros((4, 1, 4, 4), np.uint8), y_train=np.arange(4) % 2,
             x_test=np.zeros((2, 1, 4, 4), np.uint8), y_test=np.arange(2))
    many = tmp_path / "many classes.npz"  # 12 classes for 10 outputs
    np.savez(many, x_train=np.zeros((12, 1, 8, 8), np.uint8), y_train=np.arange(12),
             x_test=np.zeros((12, 1, 8, 8), np.uint8), y_test=np.arange(12))
    import io
    import zipfile

    header = io.BytesIO()  # an input file declaring 1.3 G float32 elements in 128 bytes
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1 << 22, 5, 1, 8, 8)})
    (tmp_path / "bomb.npy").write_bytes(header.getvalue() + bytes(64))
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("x.npy", header.getvalue() + bytes(64))
    sim = ["simulate", nir, "--backend", "reference", "--no-progress", "--json", f"{out}/sim.json"]
    rep = ["report", nir, "--ann", str(artifacts["onnx"]), "--profiles", "loihi2", "--out", out, "--no-progress"]
    dep = ["deploy", ticket, "--profile", "loihi2", "--backend", "fast-fixed", "--out", out, "--no-progress"]
    cases = [
        ("simulate samples 0", [*sim, "--samples", "0"], "samples"),
        ("simulate timesteps 0", [*sim, "--dataset", "digits", "--timesteps", "0"], "timesteps"),
        ("simulate dt negative", [*sim, "--dt", "-1"], "dt"),
        ("simulate dt nan", [*sim, "--dt", "nan"], "dt"),
        ("simulate events on images", [*sim, "--dataset", "digits", "--encoding", "events"], "events"),
        ("simulate dataset shape", [*sim, "--dataset", "mnist"], "shape"),
        ("simulate npz shape", [*sim, "--data-path", str(wrong_shape)], "shape"),
        ("simulate npz classes", [*sim, "--data-path", str(many)], "12 classes"),
        ("simulate npy declares too much", [*sim, "--input", str(tmp_path / "bomb.npy")], "limit"),
        ("simulate npz declares too much", [*sim, "--input", str(tmp_path / "bomb.npz")], "limit"),
        ("report samples 0", [*rep, "--samples", "0"], "samples"),
        ("report dataset shape", [*rep, "--dataset", "mnist", "--samples", "5"], "shape"),
        ("deploy samples 0", [*dep, "--samples", "0"], "samples"),
        ("deploy npz shape", [*dep, "--data-path", str(wrong_shape)], "shape"),
        ("deploy npz classes", [*dep, "--data-path", str(many)], "12 classes"),
        ("deploy dataset shape", [*dep, "--data-path", str(Path(__file__).parents[2] / "shared" / "data" / "mnist")],
         "shape"),
        ("export first layer", ["export", ticket, "--format", "nir", "--first-layer", "chip", "--out",
                                f"{out}/x.nir"], "first-layer"),
        ("max-elements below the model", ["--max-elements", "10", "search", *_flags(BASE), "--runs-dir", out,
                                          "--no-progress"], "limit"),
    ]
    for case, argv, name in cases:
        runner.check(case, argv, (name,))
    print(f"{runner.runs} runs refused")
    assert not runner.failures, f"{len(runner.failures)} of {runner.runs} runs failed:\n" + \
        "\n".join(runner.failures)


def test_the_base_settings_run(runner, capsys):
    """The control: BASE alone is valid and trains (so each refusal above is the wrong value's doing), as flags
    and as a config file, in about a second."""
    runs = runner.out
    assert main(["search", *_flags(BASE), "--runs-dir", str(runs), "--no-progress"]) == 0, capsys.readouterr().err
    (ticket,) = runs.glob("*/ticket.safetensors")
    config = runner.root / "config.yaml"
    config.write_text(yaml.safe_dump(BASE))
    assert main(["search", "--config", str(config), "--runs-dir", str(runs), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out and list(runs.glob("*/ticket.safetensors")) == [ticket]


# ------------------------------------------------------------------------------- every subcommand's float flags

def float_flags() -> List[Tuple[str, str]]:
    """(subcommand, flag) of every flag of every subcommand whose value is a float, found in the parser itself
    (a flag is a float flag when its type turns "0.5" into a float), so a new one is covered the day it is added.
    ``search`` takes its settings as text converted by the settings' types: those are :func:`run_cases`."""
    import argparse

    from slt_deploy.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if not action.option_strings or not callable(action.type):
                continue
            try:
                is_float = isinstance(action.type("0.5"), float)
            except Exception:
                is_float = False
            if is_float:
                out.append((name, action.option_strings[0]))
    return out


def _float_flag_base(command: str, artifacts: dict, out: str) -> List[str]:
    """A valid command line of ``command`` (what each float flag is added to)."""
    nir, ticket = str(artifacts["nir"]), str(artifacts["ticket"])
    return {"simulate": ["simulate", nir, "--backend", "reference", "--no-progress", "--samples", "5"],
            "report": ["report", nir, "--ann", str(artifacts["onnx"]), "--profiles", "loihi2", "--out", out,
                       "--samples", "5", "--no-progress"],
            "deploy": ["deploy", ticket, "--profile", "loihi2", "--backend", "fast-fixed", "--out", out,
                       "--samples", "5", "--no-progress"]}[command]


def test_every_float_flag_of_every_subcommand_refuses_nan_and_inf(runner, artifacts):
    """nan, inf, -inf and text for every float flag of every subcommand (deploy's --max-accuracy-drop, simulate's
    and report's --dt...): exit 2, one line naming the flag, nothing written; a flag that sets a setting
    (--max-accuracy-drop: search.max_accuracy_drop) also refuses what the setting refuses (a negative drop)."""
    flags = float_flags()
    assert {("deploy", "--max-accuracy-drop"), ("simulate", "--dt"), ("report", "--dt")} <= set(flags), flags
    for command, flag in flags:
        base = _float_flag_base(command, artifacts, str(runner.out))
        for value in ("nan", "inf", "-inf", "NaN", "much"):
            runner.check(f"{command} {flag} {value}", [*base, flag, value], (flag,))
    runner.check("deploy --max-accuracy-drop -1", [*_float_flag_base("deploy", artifacts, str(runner.out)),
                                                   "--max-accuracy-drop", "-1"], ("max_accuracy_drop",))
    print(f"{runner.runs} runs refused")
    assert not runner.failures, f"{len(runner.failures)} of {runner.runs} runs failed:\n" + "\n".join(runner.failures)
