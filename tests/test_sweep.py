"""Sweeps through a real local Ray runtime: every run directory written, the aggregate equal to the tickets,
nothing finished ever rerun (restart, interruption), a failing job retried and reported while the others
finish, and malformed sweep files refused in one line with exit code 2 before anything is written.

Jobs are tiny (scikit-learn digits, 200 / 100 samples, a 16-unit MLP, 1 epoch, T <= 2) so the file stays well
under a minute on 2 cores; one Ray runtime serves the whole module.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from slt_deploy.report.schema import load_report
from slt_deploy.cli import main
from slt_deploy.sweep import JOB_LOG, ReportSettings, SweepEvent, load_sweep, parse_sweep, run_sweep
from slt_deploy.ticket import Ticket

BASE = {"model": {"hidden": [16]},
        "data": {"dataset": "digits", "n_train": 200, "n_test": 100, "timesteps": 2},
        "train": {"epochs": 1},
        "search": {"target_sparsity": 0.5}}
GRID = {"search.method": ["dense", "random"], "data.timesteps": [1, 2], "model.neuron.beta": [0.5, 0.9]}


@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime (2 CPUs) for the module; sweeps find it running and leave it running."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def write_sweep(folder: Path, name: str = "sweep.yaml", **body) -> Path:
    body.setdefault("base", BASE)
    body.setdefault("runs_dir", str(folder / "runs"))
    path = folder / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def attempts_in_log(run_dir: Path) -> int:
    return (run_dir / JOB_LOG).read_text().count("=== attempt ")


def ticket_mtimes(runs_dir: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in runs_dir.glob("*/ticket.safetensors")}


@pytest.fixture(scope="module")
def grid_sweep(ray_runtime, tmp_path_factory):
    """8 jobs (method x T x beta) run once through Ray; a second entry of ``jobs`` repeats one grid point."""
    folder = tmp_path_factory.mktemp("grid")
    duplicate = {"search.method": "dense", "data.timesteps": 1, "model.neuron.beta": 0.5}
    path = write_sweep(folder, grid=GRID, jobs=[{}, duplicate], max_concurrent=2)
    lines: list = []
    result = run_sweep(load_sweep(path), progress=True, echo=lines.append)
    return path, result, lines


def test_every_job_runs_in_a_ray_worker_and_writes_its_run_directory(grid_sweep):
    path, result, lines = grid_sweep
    spec = load_sweep(path)
    assert len(spec.jobs) == 8 and spec.duplicates == 8  # the repeated entry collapses onto one grid job
    assert result.executor == "ray" and not result.failed
    assert {r["run_name"] for r in result.rows} == {job.run_name for job in spec.jobs}
    for job in spec.jobs:
        run_dir = spec.runs_dir / job.run_name
        assert (run_dir / "ticket.safetensors").is_file() and (run_dir / "config.json").is_file()
        log = (run_dir / JOB_LOG).read_text()
        assert log.count("=== attempt 1/2") == 1 and "=== done in" in log and "ticket " in log
        assert f"pid {os.getpid()} " not in log  # ran in a Ray worker, not in this process
    assert any("done 8/8" in l for l in lines)  # live progress lines
    assert any("ETA" in l for l in lines)


def test_aggregate_equals_the_tickets_of_the_run_directories(grid_sweep):
    path, result, _ = grid_sweep
    data = json.loads(result.results_json.read_text())
    assert data["jobs"] == 8 and data["done"] == 8 and data["failed"] == 0
    assert data["swept_keys"] == list(GRID)
    with open(result.results_csv) as f:
        csv_rows = {r["run_name"]: r for r in csv.DictReader(f)}
    for row in data["rows"]:
        record = Ticket.load(Path(row["run_dir"]) / "ticket.safetensors").record
        assert row["status"] == "done"
        assert row["accuracy"] == record.accuracy and row["sparsity"] == record.sparsity
        assert row["method"] == record.method == row["search.method"]
        assert row["timesteps"] == record.timesteps == row["data.timesteps"]
        assert row["beta"] == record.model.neuron.beta == row["model.neuron.beta"]
        assert row["search_time_s"] == round(sum(record.wall_time_s), 3)
        saved = csv_rows[row["run_name"]]
        assert float(saved["accuracy"]) == record.accuracy and float(saved["sparsity"]) == record.sparsity
        assert saved["search.method"] == record.method and int(saved["data.timesteps"]) == record.timesteps
    # the random tickets are at the target sparsity, the dense ones at zero
    assert {(r["method"], round(r["sparsity"], 2)) for r in data["rows"]} == {("dense", 0.0), ("random", 0.5)}
    for name in ("accuracy_vs_sparsity.png", "accuracy_vs_timesteps.png", "accuracy_vs_beta.png"):
        assert (result.out_dir / name).read_bytes().startswith(b"\x89PNG")
        assert f"({name})" in result.summary.read_text()
    assert set(result.plots) == {"sparsity", "data.timesteps", "model.neuron.beta"}


def test_restart_reruns_only_what_is_not_finished(grid_sweep, tmp_path):
    path, _, _ = grid_sweep
    spec = load_sweep(path)
    runs = tmp_path / "runs"
    shutil.copytree(spec.runs_dir, runs, ignore=shutil.ignore_patterns("sweeps"))
    spec = spec.with_options(runs_dir=str(runs), out=str(tmp_path / "out"))
    before = ticket_mtimes(runs)
    removed = spec.jobs[3].run_name
    shutil.rmtree(runs / removed)

    lines: list = []
    result = run_sweep(spec, progress=False, echo=lines.append)
    assert "8 jobs, 7 already finished, 1 to run" in lines[0]
    after = ticket_mtimes(runs)
    assert set(after) == set(before)
    assert {n for n in before if after[n] != before[n]} == {removed}  # only the missing run was written
    for name in before:
        assert attempts_in_log(runs / name) == 1
    assert [r["reused"] for r in result.rows].count(False) == 1

    lines.clear()  # everything finished: nothing is submitted, not even Ray is needed
    spec = spec.with_options(report=ReportSettings(profiles=("cmos45",), samples=20))
    again = run_sweep(spec, progress=False, echo=lines.append)
    assert "8 jobs, 8 already finished, 0 to run" in lines[0] and not any("Ray" in l for l in lines)
    assert ticket_mtimes(runs) == after
    assert [r["accuracy"] for r in again.rows] == [r["accuracy"] for r in result.rows]
    # the cost report over the sweep's tickets, without a manual step
    report = load_report(tmp_path / "out" / "report" / "report.json")
    assert sorted(report.inputs) == sorted(r["ticket"] for r in again.rows)
    assert again.report == tmp_path / "out" / "report" / "report.md"
    assert "report/report.md" in again.summary.read_text()


def test_serial_executor_gives_the_same_tickets_as_ray(grid_sweep, tmp_path):
    path, ray_result, _ = grid_sweep
    spec = load_sweep(path).with_options(executor="serial", runs_dir=str(tmp_path / "runs"))
    result = run_sweep(spec, progress=False, echo=lambda line: None)
    assert result.executor == "serial" and not result.failed
    assert [(r["run_name"], r["accuracy"], r["sparsity"]) for r in result.rows] == \
           [(r["run_name"], r["accuracy"], r["sparsity"]) for r in ray_result.rows]
    log = (tmp_path / "runs" / result.rows[0]["run_name"] / JOB_LOG).read_text()
    assert f"pid {os.getpid()} " in log  # in this process


def test_interrupted_sweep_resumes_without_rerunning_finished_jobs(ray_runtime, tmp_path):
    path = write_sweep(tmp_path, grid={"search.method": ["dense"], "search.seed": [0, 1, 2, 3]}, max_concurrent=2)
    spec = load_sweep(path)

    def interrupt(event: SweepEvent):  # Ctrl-C as soon as the first job is done, one more still in flight
        if event.kind == "done":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, progress=False, echo=lambda line: None, on_event=interrupt)
    finished = ticket_mtimes(spec.runs_dir)
    assert 1 <= len(finished) < 4
    table = json.loads((spec.out_dir / "results.json").read_text())
    assert table["done"] == len(finished) and table["pending"] == 4 - len(finished)

    lines: list = []
    result = run_sweep(spec, progress=False, echo=lines.append)
    assert f"4 jobs, {len(finished)} already finished, {4 - len(finished)} to run" in lines[0]
    assert not result.failed and len(ticket_mtimes(spec.runs_dir)) == 4
    after = ticket_mtimes(spec.runs_dir)
    for name, mtime in finished.items():
        assert after[name] == mtime and attempts_in_log(spec.runs_dir / name) == 1


def test_a_failing_job_is_retried_reported_and_does_not_stop_the_others(ray_runtime, tmp_path, capsys):
    # A failure the whole-sweep check cannot see in advance: one job's config.json is a folder in its run
    # directory, so that search fails when it writes its settings (the others run normally).
    path = write_sweep(tmp_path, grid={"search.method": ["dense"], "search.seed": [0, 1]},
                       jobs=[{}, {"search.seed": 2}], retries=2, max_concurrent=2)
    (bad_job,) = [j for j in load_sweep(path).jobs if j.config.search.seed == 2]
    blocker = tmp_path / "runs" / bad_job.run_name / "config.json"
    blocker.mkdir(parents=True)
    code = main(["sweep", str(path), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1
    data = json.loads((tmp_path / "runs" / "sweeps" / "sweep" / "results.json").read_text())
    rows = {r["run_name"]: r for r in data["rows"]}
    (bad,) = [r for r in rows.values() if r["status"] == "failed"]
    assert bad["run_name"] == bad_job.run_name and bad["attempts"] == 3 and "OutputError" in bad["error"]
    assert f"{blocker}: is a directory, not a regular file" in bad["error"] and bad["accuracy"] is None
    assert "run the same command again to resume" in bad["error"]
    assert attempts_in_log(Path(bad["run_dir"])) == 3  # the first try and two retries, each logged
    assert "Traceback" in (Path(bad["run_dir"]) / JOB_LOG).read_text()
    good = [r for r in rows.values() if r["status"] == "done"]
    assert len(good) == 2 and all(Path(r["ticket"]).is_file() for r in good)
    # the failure is named with its configuration and error, and the exit line names the job
    (failed_line,) = [l for l in err.splitlines() if l.startswith(f"sweep: FAILED {bad['run_name']} (")]
    assert "search.seed=2" in failed_line and "after 3 attempt(s): OutputError" in failed_line
    assert "retrying" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("slt-deploy: error: 1 of 3 sweep jobs failed: ") and bad["run_name"] in last
    assert "wrote" in out and "Failures" in (tmp_path / "runs" / "sweeps" / "sweep" / "summary.md").read_text()


def _children(pid: int) -> list:
    """Processes descending from ``pid`` (Linux /proc): the Ray runtime this test process started, and only it."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _kill_first_task_worker(killed: list, timeout: float = 60) -> None:
    """SIGKILL the first Ray worker of ours seen running a sweep job (Ray titles the process by the task)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _children(os.getpid()):
            try:
                title = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if title.startswith("ray::sweep:"):  # the task's name, "sweep:<run name>", cut to 15 characters
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.01)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc")
def test_a_killed_worker_is_reported_and_its_job_retried(ray_runtime, tmp_path):
    base = dict(BASE, data=dict(BASE["data"], n_train=1000, timesteps=4), train={"epochs": 3})
    path = write_sweep(tmp_path, base=base, grid={"search.method": ["dense"], "search.seed": [0, 1]},
                       max_concurrent=1, retries=1)
    killed: list = []
    killer = threading.Thread(target=_kill_first_task_worker, args=(killed,), daemon=True)
    killer.start()
    lines: list = []
    result = run_sweep(load_sweep(path), progress=False, echo=lines.append)
    killer.join()
    assert killed, "no worker was seen running a job"
    (retried,) = [r for r in result.rows if r["attempts"] == 2]
    assert not result.failed and retried["status"] == "done" and Path(retried["ticket"]).is_file()
    (line,) = [l for l in lines if "retrying" in l]
    assert line.startswith(f"sweep: {retried['run_name']} (search.method=dense, search.seed=")
    assert "failed (attempt 1/2): WorkerCrashedError" in line
    log = (Path(retried["run_dir"]) / JOB_LOG).read_text()  # the killed attempt may have died before its header
    assert "=== attempt 2/2" in log and log.endswith(" s\n") and "=== done in" in log


MALFORMED = [
    ("base: [unclosed\n", "not valid YAML"),
    ("grdi: {search.seed: [0]}\n", "unknown key(s) grdi; valid keys: base, grid, jobs"),
    ("grid: {search.methd: [dense]}\n", "unknown key 'search.methd'"),
    ("grid: {data.timesteps.x: [1]}\n", "data.timesteps is a setting, not a section"),
    ("grid: {search.method: [dense, imq]}\n", "SearchConfig.method='imq' is not one of"),
    ("grid: {data.timesteps: [2, two]}\n", "data.timesteps: 'two' is not a valid int"),
    ("grid: {data.timesteps: [0]}\n", "data.timesteps=0 must be >= 1"),
    ("grid: {model.name: [mlpx]}\n", "model.name='mlpx' is not a registered model"),
    ("grid: {}\n", "nothing to run"),
    ("grid: {search.seed: 3}\n", "grid: search.seed: expected a non-empty list"),
    ("grid: {search.seed: []}\n", "grid: search.seed: expected a non-empty list"),
    ("jobs: [3]\n", "jobs[0]: expected a mapping"),
    ("grid: {search.seed: [0]}\nmax_concurrent: -1\n", "max_concurrent=-1 must be >= 0"),
    ("grid: {search.seed: [0]}\nresources: {cpu: 1}\n", "resources: unknown key(s) cpu"),
    ("grid: {search.seed: [0]}\nexecutor: slurm\n", "executor='slurm' is not one of"),
    ("base: {search: {method: imp}, data: {timesteps: 2}}\ngrid: {search.early_time: [false, true]}\n",
     "Early-Time needs T >= 3"),
]


@pytest.mark.parametrize("text,message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_sweep_file_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"runs_dir: {tmp_path / 'runs'}\n" + text)
    code = main(["sweep", str(path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"slt-deploy: error: {path}: ") and message in err, err
    assert not (tmp_path / "runs").exists()


def test_malformed_sweep_file_through_the_console_script(tmp_path, slt_deploy_exe, cli_env):
    path = write_sweep(tmp_path, grid={"search.method": ["dense", "nope"]})
    proc = subprocess.run([slt_deploy_exe, "sweep", str(path)], capture_output=True, text=True, env=cli_env,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "search.method=nope" in proc.stderr and str(path) in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_expansion_combines_jobs_with_the_grid_and_the_jobs_keys_win():
    neurons = [{"beta": 0.5}, {"beta": 0.9, "threshold": 0.5}]  # a section as a grid key: keys varied together
    spec = parse_sweep({"base": BASE, "grid": {"search.seed": [0, 1], "model.neuron": neurons},
                        "jobs": [{"search": {"method": "random"}}, {"search.method": "dense", "search.seed": 0}]})
    assert spec.swept == ("search.seed", "model.neuron.beta", "model.neuron.threshold", "search.method")
    random_jobs = [j for j in spec.jobs if j.config.search.method == "random"]
    dense_jobs = [j for j in spec.jobs if j.config.search.method == "dense"]
    assert len(random_jobs) == 4 and len(dense_jobs) == 2 and spec.duplicates == 2  # dense pins the seed
    neuron_pairs = {(j.config.model.neuron.beta, j.config.model.neuron.threshold) for j in random_jobs}
    assert neuron_pairs == {(0.5, 1.0), (0.9, 0.5)}
    assert all(j.config.data.dataset == "digits" and j.config.model.hidden == (16,) for j in spec.jobs)
    assert {j.config.search.seed for j in dense_jobs} == {0}


@pytest.mark.parametrize("name,jobs", [("sweep_methods.yaml", 16), ("sweep_timesteps_decay.yaml", 96)])
def test_example_sweep_files_expand_and_validate(name, jobs):
    spec = load_sweep(Path(__file__).resolve().parents[1] / "examples" / name)
    assert len(spec.jobs) == jobs and spec.options.executor == "ray" and spec.options.address is None


def test_unreachable_cluster_leaves_nothing(tmp_path, slt_deploy_exe, cli_env):
    """A cluster that cannot be reached (a closed loopback port): one line, exit 2, and nothing new on disk -- no
    lock file, no out folder, no runs folder (Ray is reached before the sweep writes anything)."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": BASE, "grid": {"search.method": ["dense"]}, "connect_timeout_s": 1.0,
                                     "runs_dir": str(tmp_path / "runs")}))
    before = sorted(tmp_path.rglob("*"))
    proc = subprocess.run([slt_deploy_exe, "sweep", str(sweep), "--address", "127.0.0.1:1", "--no-progress"],
                          capture_output=True, text=True, env=cli_env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        "slt-deploy: error: cannot reach the Ray cluster at 127.0.0.1:1 within 1 s: ConnectionRefusedError"), \
        proc.stderr
    assert sorted(tmp_path.rglob("*")) == before
