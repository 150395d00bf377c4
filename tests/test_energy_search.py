"""The energy objective (issue 23): the spike penalty, the front, the rounds, resuming, sweeps, inspect and deploy.

Real searches on scikit-learn's 8x8 digits (a 64-unit spiking MLP, Adam, a few epochs); the cost stage's own
counter and energy code measure every round; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.cost import count_snntorch, snn_energy
from slt_deploy.cost.objective import HOST_PROFILE, EnergyMeter, activity_of, recost, round_meter
from slt_deploy.data import batches, encode, load_dataset
from slt_deploy.describe import describe_file
from slt_deploy.errors import ConfigError, SltError
from slt_deploy.paths import RunPaths
from slt_deploy.search import search
from slt_deploy.search.energy import choose, holdout_split, non_dominated
from slt_deploy.sweep import load_sweep, run_sweep
from slt_deploy.ticket import Ticket
from slt_deploy.utils import generator



def quiet(_line: str) -> None:
    pass


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), f"tensor {k} differs"


def kill_when(argv, env, run_glob: str, runs_dir: Path, timeout: float = 120.0) -> None:
    """Start the CLI, SIGKILL it as soon as a file matching ``runs_dir/*/run_glob`` exists."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if list(runs_dir.glob(f"*/{run_glob}")):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before {run_glob} appeared: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.005)
        pytest.fail(f"{run_glob} did not appear within {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def energy_config(method: str = "imp", penalty: float = 0.0, device: str = "auto", **search_kw) -> RunConfig:
    return RunConfig(model=ModelConfig(hidden=(64,)),
                     data=DataConfig(dataset="digits", n_train=600, n_test=200, timesteps=4),
                     train=TrainConfig(epochs=3, batch_size=32, optimizer="adam", lr=0.01, device=device),
                     search=SearchConfig(**{"method": method, "objective": "energy", "cost_profile": "cmos45",
                                            "holdout": 150, "spike_penalty": penalty, "rewind_epoch": 1,
                                            "rounds": 1, "max_rounds": 3, "prune_fraction": 0.5, **search_kw}))


def run(config: RunConfig, runs_dir: Path):
    return search(config, runs_dir, progress=False, echo=quiet, meter=round_meter(config))


def front_of(result) -> dict:
    return json.loads(RunPaths(result.run_dir).front.read_text())


@pytest.fixture(scope="module")
def imp_energy(tmp_path_factory):
    config = energy_config(device="cpu")
    return config, run(config, tmp_path_factory.mktemp("runs"))


# ---------------------------------------------------------------------------------------- the penalty

def test_the_spike_penalty_lowers_the_measured_activity(tmp_path):
    none = front_of(run(energy_config("dense", 0.0), tmp_path))
    penalised = run(energy_config("dense", 0.5), tmp_path)
    pen = front_of(penalised)
    spikes_none, spikes_pen = none["points"][0]["spikes"], pen["points"][0]["spikes"]
    assert spikes_none > 20 and spikes_pen < 0.6 * spikes_none, (spikes_none, spikes_pen)
    assert pen["points"][0]["energy_j"] < none["points"][0]["energy_j"]
    # logged per epoch: the weighted penalty of each of the 3 epochs, and every layer's rate in the phase history
    (line,) = [json.loads(x) for x in RunPaths(penalised.run_dir).log.read_text().splitlines()
               if json.loads(x)["label"] == "dense"]
    assert len(line["spike_penalty_by_epoch"]) == 3 and all(p > 0 for p in line["spike_penalty_by_epoch"])
    # deterministic: the same search elsewhere measures the same spikes
    again = front_of(run(energy_config("dense", 0.5), tmp_path / "again"))
    assert again["points"][0]["spikes"] == spikes_pen


def test_the_meter_counts_with_the_cost_stage(imp_energy):
    """A round's cost entry is count_snntorch + snn_energy of the held-out samples, nothing else."""
    config, result = imp_energy
    split, held = holdout_split(load_dataset(config.data), config.search.holdout)
    assert len(held) == 150 and len(split.train) == 600 - 150
    paths = RunPaths(result.run_dir)
    entry = json.loads(paths.round_cost(1, 4).read_text())
    model = Ticket.load(paths.round_ticket(1)).build_model()
    gen = generator(config.search.seed, "holdout")
    (x, y), = list(batches(held, 500, shuffle=False))
    activity = count_snntorch(model, encode(x, "direct", 4, gen))
    assert entry["spikes"] == activity.output_spikes and entry["synops"] == activity.effective_synops
    assert entry["energy_j"] == snn_energy(activity, "cmos45", host="cmos45").total
    assert recost(entry, "cmos45")["energy_j"] == entry["energy_j"]
    assert activity_of(entry).effective_macs == activity.effective_macs


def test_the_host_profile_is_the_reports():
    """One host profile: the energy search, the report and the CLI all take the cost stage's."""
    import inspect

    from slt_deploy.cli import build_parser
    from slt_deploy.cost import profiles
    from slt_deploy.report import build_report

    assert HOST_PROFILE is profiles.HOST_PROFILE
    assert inspect.signature(build_report).parameters["host_profile"].default is profiles.HOST_PROFILE
    assert build_parser().parse_args(["report", "t.safetensors", "--profiles", "loihi", "--out", "o"]).host_profile \
        == profiles.HOST_PROFILE


# ------------------------------------------------------------------------------------------- the front

def pt(acc, e, label=""):
    return {"accuracy": acc, "energy_j": e, "label": label}


@pytest.mark.parametrize("points, front", [
    ([pt(0.9, 5), pt(0.8, 3), pt(0.85, 4), pt(0.7, 3.5)], [0, 1, 2]),   # 0.7 @ 3.5 is beaten by 0.8 @ 3
    ([pt(0.9, 5), pt(0.9, 4)], [1]),                                    # equal accuracy: the cheaper
    ([pt(0.9, 4), pt(0.95, 4)], [1]),                                   # equal energy: the more accurate
    ([pt(0.9, 4), pt(0.9, 4)], [0]),                                    # equal points: the first
    ([pt(0.5, 1), pt(0.6, 2), pt(0.7, 3)], [0, 1, 2]),                  # a chain: none dominated
    ([pt(0.9, 1), pt(0.6, 2), pt(0.7, 3)], [0]),                        # one dominates all
])
def test_the_front_keeps_exactly_the_non_dominated_points(points, front):
    assert non_dominated(points) == [points[i] for i in front]


def test_choose_takes_the_cheapest_within_the_drop():
    points = [pt(0.95, 10, "dense"), pt(0.945, 6, "a"), pt(0.94, 4, "b"), pt(0.90, 1, "c")]
    assert choose(points, 0.95, 1.0)["label"] == "b"   # 0.94 >= 0.95 - 0.01
    assert choose(points, 0.95, 0.5)["label"] == "a"
    assert choose(points, 0.95, 0.0)["label"] == "dense"
    assert choose(points, 0.95, 5.0)["label"] == "c"
    assert choose(points, 0.99, 0.0) is None


# ------------------------------------------------------------------------------------------- the rounds

def test_every_round_is_measured_and_the_front_is_the_non_dominated_points(imp_energy):
    config, result = imp_energy
    front = front_of(result)
    points = front["points"]
    rounds = sorted({p["round"] for p in points})
    assert rounds[0] == 0 and rounds == list(range(len(rounds))) and len(rounds) <= 4
    t_early = front["t_early"]
    assert 2 <= t_early <= 4
    per_round = 1 if t_early == 4 else 2  # every round at T, and at T_early when it is smaller
    assert len(points) == per_round * len(rounds)
    assert front["front"] == non_dominated(points)
    assert front["chosen"] == choose(front["front"], front["reference_accuracy"], 1.0)
    # the stopping rule: every round before the last held accuracy (from search.rounds on), the last one ended it
    best = {k: max(p["accuracy"] for p in points if p["round"] == k) for k in rounds}
    floor = front["reference_accuracy"] - 0.01 - 1e-12
    assert all(best[k] >= floor for k in rounds[1:-1])
    assert rounds[-1] == 3 or best[rounds[-1]] < floor
    for p in points:  # each point's ticket is at its T with its own test accuracy, sparsity as recorded
        t = Ticket.load(result.run_dir / p["ticket"])
        assert t.record.timesteps == p["timesteps"] and t.record.round == p["round"]
        assert t.record.accuracy == p["test_accuracy"] and t.record.sparsity == p["sparsity"]
        assert p["sparsity"] == pytest.approx(1 - 0.5 ** p["round"], abs=1e-3)
    chosen = Ticket.load(result.run_dir / front["chosen"]["ticket"])
    assert_same_tensors(Ticket.load(result.ticket_path).state, chosen.state)
    log = [json.loads(x) for x in RunPaths(result.run_dir).log.read_text().splitlines()]
    assert len(log) == len(points) and all("energy_j" in x and "holdout_accuracy" in x for x in log)
    assert (result.run_dir / "front.png").stat().st_size > 1000


def test_biprop_rounds_are_binary_tickets_at_growing_sparsity(tmp_path):
    config = energy_config("biprop", rounds=2, max_rounds=2)
    result = run(config, tmp_path)
    front = front_of(result)
    rounds = sorted({p["round"] for p in front["points"]})
    assert rounds == [0, 1, 2]
    for p in front["points"]:
        t = Ticket.load(result.run_dir / p["ticket"])
        if p["round"]:
            assert t.record.method == "biprop" and t.record.extra["binary"]
            assert p["sparsity"] == pytest.approx(1 - 0.5 ** p["round"], abs=1e-3)


def test_event_input_keeps_its_timesteps(tmp_path):
    """Event frames are binned for T at load time: the energy objective never shortens T for them."""
    config = RunConfig(model=ModelConfig(hidden=(32,)),
                       data=DataConfig(dataset="event-mnist", encoding="events", n_train=300, n_test=100,
                                       timesteps=4),
                       train=TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=0.01),
                       search=SearchConfig(method="dense", objective="energy", holdout=100))
    front = front_of(run(config, tmp_path))
    assert front["t_early"] == 4 and [p["timesteps"] for p in front["points"]] == [4]
    entry = json.loads((next(tmp_path.iterdir()) / front["points"][0]["cost"]).read_text())
    assert entry["host_first_layer"] is False  # event input enters the chip: no host layer


def test_run_names_hash_only_non_default_settings():
    plain = RunConfig()
    assert plain.canonical_json() == "{}"
    explicit = RunConfig(search=SearchConfig(objective="accuracy", cost_profile="cmos45", max_rounds=16,
                                             max_accuracy_drop=1.0, holdout=500, spike_penalty=0.0))
    assert explicit.run_name() == plain.run_name()
    energy = RunConfig(search=SearchConfig(objective="energy"))
    assert energy.run_name() != plain.run_name()
    # the device is a runtime setting: the same energy search on cpu or auto is one run directory
    assert energy_config(device="cpu").run_name() == energy_config(device="auto").run_name()


def test_wrong_settings_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="objective=energy works with imp, biprop or dense"):
        energy_config("eb")
    with pytest.raises(ConfigError, match="Early-Time"):
        energy_config(early_time=True)
    with pytest.raises(SltError, match="nosuch"):
        round_meter(energy_config(cost_profile="nosuch"))
    with pytest.raises(SltError, match="no energy per synaptic op"):
        EnergyMeter("xylo")
    with pytest.raises(SltError, match="ANN target"):
        EnergyMeter("int8-45nm")
    with pytest.raises(ConfigError, match="needs the cost stage's meter"):
        search(energy_config(), tmp_path / "runs", progress=False, echo=quiet)
    with pytest.raises(ConfigError, match="holdout=5000"):
        run(energy_config(holdout=5000), tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cli_energy_flags_and_one_line_errors(tmp_path, slt_deploy_exe, cli_env):
    bad = subprocess.run([slt_deploy_exe, "search", "--runs-dir", str(tmp_path / "r"), "--dataset", "digits",
                          "--objective", "energy", "--cost-profile", "nosuch"], env=cli_env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nosuch" in bad.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    help_text = subprocess.run([slt_deploy_exe, "search", "--help"], env=cli_env, capture_output=True, text=True,
                               timeout=120).stdout
    for flag in ("--objective", "--cost-profile", "--max-rounds", "--max-accuracy-drop", "--holdout",
                 "--spike-penalty"):
        assert flag in help_text


# --------------------------------------------------------------------------------------------- resuming

def test_a_killed_energy_search_resumes_to_the_same_front(tmp_path, slt_deploy_exe, cli_env):
    argv = lambda runs: [slt_deploy_exe, "search", "--runs-dir", str(runs), "--no-progress", "--dataset", "digits",
                         "--n-train", "600", "--n-test", "200", "--hidden", "64", "--timesteps", "4", "--epochs",
                         "3", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01", "--objective", "energy",
                         "--holdout", "150", "--spike-penalty", "0.1", "--rounds", "1", "--max-rounds", "2",
                         "--prune-fraction", "0.5", "--device", "cpu"]
    a, b = tmp_path / "A", tmp_path / "B"
    done = subprocess.run(argv(a), env=cli_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kill_when(argv(b), cli_env, "phases/round_02/checkpoint.safetensors", b)
    (run_b,) = b.iterdir()
    assert not (run_b / "front.json").exists()
    resumed = subprocess.run(argv(b), env=cli_env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "round_02: resuming at epoch" in resumed.stdout
    (run_a,) = a.iterdir()
    fa, fb = (json.loads((r / "front.json").read_text()) for r in (run_a, run_b))
    assert fa["points"] == fb["points"] and fa["chosen"] == fb["chosen"]
    ta, tb = (Ticket.load(r / "ticket.safetensors") for r in (run_a, run_b))
    assert_same_tensors(ta.state, tb.state)


# ----------------------------------------------------------------------------------------------- sweeps

def test_a_serial_sweep_runs_energy_jobs(tmp_path):
    base = {"model": {"hidden": [32]}, "data": {"dataset": "digits", "n_train": 400, "n_test": 100, "timesteps": 3},
            "train": {"epochs": 1, "optimizer": "adam", "lr": 0.01},
            "search": {"method": "dense", "objective": "energy", "holdout": 100}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": base, "grid": {"search.spike_penalty": [0.0, 0.5]},
                                    "runs_dir": str(tmp_path / "runs"), "executor": "serial"}))
    result = run_sweep(load_sweep(path), progress=False, echo=lambda line: None)
    assert not result.failed and len(result.rows) == 2
    fronts = [json.loads((tmp_path / "runs" / r["run_name"] / "front.json").read_text()) for r in result.rows]
    assert all(f["profile"] == "cmos45" and len(f["points"]) >= 1 for f in fronts)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": dict(base, search=dict(base["search"], cost_profile="nosuch")),
                                   "grid": {"search.seed": [0]},
                                   "runs_dir": str(tmp_path / "runs2"), "executor": "serial"}))
    with pytest.raises(SltError, match="nosuch"):
        run_sweep(load_sweep(bad), progress=False, echo=lambda line: None)
    assert not (tmp_path / "runs2").exists() or not any((tmp_path / "runs2").iterdir())


# ------------------------------------------------------------------------------------- inspect and deploy

def test_inspect_shows_the_front_and_writes_the_plot(imp_energy):
    _, result = imp_energy
    (result.run_dir / "front.png").unlink()
    text = describe_file(result.run_dir)
    front = front_of(result)
    assert "chosen" in text and f"{len(front['front'])} of {len(front['points'])} points" in text
    assert len([l for l in text.splitlines() if l.strip().startswith(tuple("0123456789"))]) == len(front["points"])
    assert (result.run_dir / "front.png").is_file()
    with pytest.raises(SltError, match="front.json"):
        describe_file(result.run_dir.parent)


def test_deploy_picks_the_cheapest_ticket_within_the_drop_on_its_profile(imp_energy, tmp_path):
    from slt_deploy.deploy import choose_from_front, deploy

    _, result = imp_energy
    front = front_of(result)
    for profile in ("cmos45", "loihi", "truenorth"):
        for drop in (0.0, 1.0, 100.0):
            c = choose_from_front(result.run_dir, profile, drop)
            costs = [(recost(json.loads((result.run_dir / p["cost"]).read_text()), profile)["energy_j"], p)
                     for p in front["points"]]
            within = [(e, p) for e, p in costs if p["accuracy"] >= front["reference_accuracy"] - drop / 100 - 1e-12]
            cheapest = min(e for e, _ in within)
            assert c.energy_j == cheapest and c.accuracy >= front["reference_accuracy"] - drop / 100 - 1e-12
    with pytest.raises(ConfigError, match="publishes no per-event energy"):
        choose_from_front(result.run_dir, "xylo", 1.0)
    out = deploy(result.run_dir, profile="loihi", out=tmp_path / "dep", backend="fast-fixed", samples=50,
                 progress=False, echo=quiet, max_accuracy_drop=1.0)
    c = choose_from_front(result.run_dir, "loihi", 1.0)
    assert out.record.front_choice.ticket_path == c.ticket_path
    assert_same_tensors(Ticket.load(out.files["ticket"]).state, Ticket.load(c.ticket_path).state)
    assert "chosen from" in out.summary
