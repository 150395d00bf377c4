"""The command line: help for every subcommand, settings precedence, stable run names, and bad input.

Bad input must end with exit code 2 and one line on stderr ("slt-deploy: error: ..."), with no traceback and
no run directory left behind. Most cases call :func:`slt_deploy.cli.main` in-process (fast); one runs the
installed console script to cover the real entry point.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest
import torch

from slt_deploy.cli import build_parser, main, run_config_from_args
from slt_deploy.config import RunConfig


def call(argv, capsys):
    """(exit code, stdout, stderr) of ``slt-deploy argv`` run in-process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse exits on --help and on its own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def subcommands():
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


# ------------------------------------------------------------------------------------------------ help

def test_subcommands_are_the_documented_ones():
    assert set(subcommands()) >= {"search", "demo", "inspect", "models", "datasets", "env"}


@pytest.mark.parametrize("command", [None, *subcommands()])
def test_help_works_for_every_subcommand(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    code, out, err = call(argv, capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"usage: slt-deploy{'' if command is None else ' ' + command}")
    if command == "search":  # flags generated from the settings dataclasses, with their help text
        for flag in ("--method", "--rounds", "--prune-fraction", "--rewind-epoch", "--eb-tau", "--et-lambda",
                     "--model", "--data-path", "--timesteps", "--beta", "--runs-dir", "--config"):
            assert flag in out
        assert "rewind survivors to this epoch" in out


def test_listing_commands_print_the_registries(capsys):
    code, out, _ = call(["models"], capsys)
    assert code == 0 and {"mlp", "convnet", "vgg16", "resnet19"} <= {line.split()[0] for line in out.splitlines()}
    code, out, _ = call(["datasets"], capsys)
    assert code == 0 and {"mnist", "fashion-mnist", "cifar10", "digits"} <= {ln.split()[0] for ln in out.splitlines()}
    code, out, _ = call(["env"], capsys)
    assert code == 0 and {"torch", "snntorch", "python"} <= set(json.loads(out))


# -------------------------------------------------------------------------------- settings and names

def test_flags_override_the_config_file(tmp_path):
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("model:\n  hidden: [16]\n  neuron:\n    beta: 0.9\n"
                   "train:\n  epochs: 7\n  lr: 0.05\n"
                   "search:\n  method: eb\n  rounds: 2\n  eb_tau: 0.1\n")
    args = build_parser().parse_args(["search", "--config", str(cfg), "--epochs", "3", "--beta", "0.25",
                                      "--eb-tau", "0.05", "--dataset", "digits"])
    config = run_config_from_args(args)
    # from flags
    assert config.train.epochs == 3 and config.model.neuron.beta == 0.25 and config.search.eb_tau == 0.05
    assert config.data.dataset == "digits"
    # from the file
    assert config.model.hidden == (16,) and config.train.lr == 0.05
    assert config.search.method == "eb" and config.search.rounds == 2
    # from the defaults
    assert config.train.batch_size == 128 and config.model.neuron.threshold == 1.0


@pytest.mark.parametrize("text, flags, check", [
    ("search:\n  early_time: true\ndata:\n  timesteps: 2\n", ["--timesteps", "5"],
     lambda c: c.data.timesteps == 5 and c.search.early_time),
    ("train:\n  epochs: 0\n", ["--epochs", "3"], lambda c: c.train.epochs == 3),
], ids=["early-time-T", "epochs"])
def test_flags_override_a_file_value_that_is_invalid_on_its_own(text, flags, check, tmp_path):
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(text)
    config = run_config_from_args(build_parser().parse_args(["search", "--config", str(cfg), *flags]))
    assert check(config)


def test_same_settings_give_the_same_run_name_whatever_their_source(tmp_path):
    as_json = tmp_path / "s.json"
    as_json.write_text(json.dumps({"model": {"hidden": [32]}, "data": {"dataset": "digits"},
                                   "search": {"rounds": 2}}))
    from_file = run_config_from_args(build_parser().parse_args(["search", "--config", str(as_json)]))
    from_flags = run_config_from_args(build_parser().parse_args(
        ["search", "--hidden", "32", "--dataset", "digits", "--rounds", "2"]))
    assert from_file == from_flags
    assert from_file.run_name() == from_flags.run_name() == f"imp_mlp_digits_{from_file.digest()}"
    assert from_flags.replace(search=from_flags.search.replace(seed=1)).digest() != from_flags.digest()


def test_default_settings_digest_is_pinned():
    # The run directory's name is a hash of the settings that differ from their defaults. Pinned (as open_lth
    # pins its hashes) so that a change that would rename existing runs -- a default changed, a field renamed
    # -- is noticed; adding a new setting with a default must not rename anything.
    assert RunConfig().canonical_json() == "{}"
    assert RunConfig().digest() == "44136fa355"
    assert RunConfig().run_name() == "imp_mlp_mnist_44136fa355"
    lr = RunConfig.from_dict({"train": {"lr": 0.05}, "model": {"spiking": True}})
    assert lr.canonical_json() == '{"train":{"lr":0.05}}'
    assert lr.digest() == "69542c6751"


# ------------------------------------------------------------------------------------------- bad input

def assert_clean_error(code, err, runs_dir: Path, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("slt-deploy: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), "a run directory was created"


FAST = ["--dataset", "digits", "--n-train", "100", "--n-test", "20", "--hidden", "8", "--epochs", "2"]


@pytest.mark.parametrize("argv, needles", [
    (["--model", "nosuchnet"], ["unknown model 'nosuchnet'", "mlp"]),
    (["--dataset", "nosuchdata"], ["nosuchdata", "digits"]),
    (["--target-sparsity", "1.0"], ["target_sparsity=1.0", "[0, 1)"]),
    (["--target-sparsity", "-0.1"], ["target_sparsity=-0.1", "[0, 1)"]),
    (["--early-time", "--timesteps", "2"], ["timesteps=2", "Early-Time"]),
    (["--rewind-epoch", "2"], ["rewind_epoch=2", "train.epochs=2"]),
    (["--prunable", "fc9"], ["fc9", "fc1"]),
    (["--hidden", "x"], ["hidden", "'x'"]),
], ids=["model", "dataset", "sparsity-1", "sparsity-neg", "early-time-T2", "rewind", "prunable", "hidden"])
def test_bad_settings_exit_2_with_one_line(argv, needles, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = call(["search", "--runs-dir", runs, "--no-progress", *FAST, *argv], capsys)
    assert_clean_error(code, err, runs, *needles)


@pytest.mark.parametrize("argv, needles", [
    (["--method", "magic"], ["--method", "'magic'", "imp"]),
    (["--scope", "channel"], ["--scope", "'channel'", "layerwise"]),
    (["--epochz", "3"], ["unrecognized arguments: --epochz 3"]),
], ids=["method", "scope", "unknown-flag"])
def test_argparse_errors_exit_2_with_one_line(argv, needles, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = call(["search", "--runs-dir", runs, *FAST, *argv], capsys)
    assert_clean_error(code, err, runs, *needles)


def test_missing_or_corrupt_data_folder(tmp_path, capsys):
    runs, empty = tmp_path / "runs", tmp_path / "empty"
    empty.mkdir()
    code, _, err = call(["search", "--runs-dir", runs, "--dataset", "fashion-mnist", "--data-path", empty], capsys)
    assert_clean_error(code, err, runs, str(empty / "t10k-images-idx3-ubyte"), "not found")

    code, _, err = call(["search", "--runs-dir", runs, "--dataset", "fashion-mnist",
                         "--data-path", tmp_path / "absent"], capsys)
    assert_clean_error(code, err, runs, "absent", "does not exist")

    (empty / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    (empty / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02")
    code, _, err = call(["search", "--runs-dir", runs, "--dataset", "fashion-mnist", "--data-path", empty], capsys)
    assert_clean_error(code, err, runs, "t10k-images-idx3-ubyte", "truncated IDX")


@pytest.mark.parametrize("name, text, needles", [
    ("bad.yaml", "train:\n  epochs: 2\nsearch:\n  methd: imp\n", ["bad.yaml", "unknown key(s) methd", "method"]),
    ("bad.json", '{"data": {"dataset": "digits"}, "optimiser": {}}', ["bad.json", "unknown key(s) optimiser"]),
    ("broken.yaml", "train: [epochs: 2\n", ["broken.yaml", "not valid YAML"]),
    ("broken.json", '{"train": ', ["broken.json", "not valid JSON"]),
    ("typed.yaml", "train:\n  epochs: many\n", ["typed.yaml", "epochs", "'many' is not a valid int"]),
])
def test_bad_config_file(name, text, needles, tmp_path, capsys):
    runs, cfg = tmp_path / "runs", tmp_path / name
    cfg.write_text(text)
    code, _, err = call(["search", "--runs-dir", runs, "--config", cfg], capsys)
    assert_clean_error(code, err, runs, *needles)


def test_missing_config_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = call(["search", "--runs-dir", runs, "--config", tmp_path / "nope.yaml"], capsys)
    assert_clean_error(code, err, runs, "nope.yaml", "cannot read config file")


def test_inspect_of_a_non_ticket_exits_2(tmp_path, capsys):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x01" * 64)
    code, _, err = call(["inspect", junk], capsys)
    assert_clean_error(code, err, tmp_path / "runs", "junk.safetensors", "not a ticket")


def test_real_console_script_reports_bad_input_on_one_line(slt_deploy_exe, cli_env, tmp_path):
    runs, cfg = tmp_path / "runs", tmp_path / "bad.yaml"
    cfg.write_text("model:\n  widths: [3]\n")
    proc = subprocess.run([slt_deploy_exe, "search", "--runs-dir", str(runs), "--config", str(cfg)],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert_clean_error(proc.returncode, proc.stderr, runs, "unknown key(s) widths")
    assert proc.stdout == ""
