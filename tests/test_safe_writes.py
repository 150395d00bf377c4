"""Safe writes: every output path is checked before any work, OS errors while writing are one line (exit 2,
no temporary file left), a search stopped by a full disk says how to resume and resumes to the same ticket,
and a sweep is checked as a whole before its first job.

Full and read-only file systems are real: small tmpfs mounts (the tests run as root in CI's container; where
``mount`` is not allowed they are skipped with the reason). A full disk mid-write is also made with a file-size
limit (``RLIMIT_FSIZE``) in a subprocess, which needs no privilege. Jobs are tiny (digits, a 16-unit MLP, one
epoch, T=2).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from slt_deploy.sweep import expansion as sweep_expansion
from slt_deploy.cli import main
from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.errors import OutputError
from slt_deploy.search import search
from slt_deploy.sweep import load_sweep, sweep_lock
from slt_deploy.ticket import Ticket
from slt_deploy.utils import TEMP_SUFFIX, atomic_path, check_output_path

SMALL = {"model": {"hidden": [16]}, "data": {"dataset": "digits", "n_train": 200, "n_test": 100, "timesteps": 2},
         "train": {"epochs": 1}}


def small_config(**search_settings) -> RunConfig:
    return RunConfig(model=ModelConfig(hidden=(16,)),
                     data=DataConfig(dataset="digits", n_train=200, n_test=100, timesteps=2),
                     train=TrainConfig(epochs=1), search=SearchConfig(**{"method": "dense", **search_settings}))


def quiet(_line: str) -> None:
    pass


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slt-deploy: error: "), err
    assert "Traceback" not in err
    return lines[0]


def temp_files(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob(f"*{TEMP_SUFFIX}"))


@pytest.fixture(scope="module")
def ticket(tmp_path_factory) -> Path:
    """A real dense ticket of a tiny run (also the reference for the resumed search)."""
    runs = tmp_path_factory.mktemp("ref")
    return search(small_config(), runs, progress=False, echo=quiet).ticket_path


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(name, size, read_only=False) -> a fresh tmpfs at tmp_path/name, unmounted afterwards."""
    mounted = []

    def mount(name: str, size: str, read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill a tmpfs until about ``leave_bytes`` are free."""
    fs = os.statvfs(folder)
    free = fs.f_bavail * fs.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave_bytes))


# ------------------------------------------------------------------------------------ output paths

@pytest.mark.parametrize("fmt", ["nir", "netx", "onnx"])
def test_a_fifo_as_out_is_refused_without_touching_it(ticket, tmp_path, capsys, fmt):
    fifo = tmp_path / "device"
    os.mkfifo(fifo)
    link = tmp_path / "link.nir"
    link.symlink_to(fifo)
    for out in (fifo, link):
        assert main(["export", str(ticket), "--format", fmt, "--out", str(out)]) == 2
        line = one_error_line(capsys)
        assert f"{out}" in line and "is a FIFO (named pipe), not a regular file: refusing to replace it" in line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()  # neither replaced nor opened
    assert temp_files(tmp_path) == []


def test_a_directory_as_out_is_refused(ticket, tmp_path, capsys):
    assert main(["export", str(ticket), "--format", "nir", "--out", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a directory, not a regular file" in one_error_line(capsys)


def test_a_symlink_is_followed_and_its_target_written(ticket, tmp_path, capsys):
    link = tmp_path / "model.nir"
    link.symlink_to("target.nir")
    assert main(["export", str(ticket), "--format", "nir", "--out", str(link)]) == 0
    assert link.is_symlink() and (tmp_path / "target.nir").is_file()
    assert (tmp_path / "target.nir").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"


def test_a_missing_folder_above_a_file_is_named():
    with pytest.raises(OutputError, match=r"/etc/hostname is not a folder"):
        check_output_path("/etc/hostname/sub/model.nir")


def test_written_files_get_the_users_normal_permissions(ticket, tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(ticket.stat().st_mode) == 0o666 & ~umask  # the search's ticket too, not 0600


# ------------------------------------------------------------------------------ full and read-only disks

@pytest.mark.parametrize("fmt,name", [("nir", "m.nir"), ("netx", "m.h5"), ("onnx", "m.onnx")])
def test_export_onto_a_full_tmpfs_is_one_line(ticket, mount_tmpfs, capsys, fmt, name):
    disk = mount_tmpfs("full", "64k")
    fill(disk, 0)
    assert main(["export", str(ticket), "--format", fmt, "--out", str(disk / name)]) == 2
    line = one_error_line(capsys)
    assert str(disk / name) in line
    assert "not enough free space" in line or "No space left on device" in line
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_write_that_fails_midway_is_one_line_and_leaves_no_temp_file(ticket, tmp_path, cli_env):
    """The file-size limit lets the up-front check pass and makes the write itself fail (EFBIG), as a disk
    filling up during the write would; before, h5py writing NIR onto a full disk segfaulted. One subprocess
    (the limit is per process) exports NIR, netx and a ticket copy."""
    script = (
        "import sys\n"
        "from slt_deploy.cli import main\n"
        "from slt_deploy.ticket import Ticket\n"
        "from slt_deploy.errors import SltError\n"
        f"for fmt in ('nir', 'netx'):\n"
        f"    print(main(['export', {str(ticket)!r}, '--format', fmt, '--out', {str(tmp_path / 'model.out')!r}]))\n"
        f"try:\n"
        f"    Ticket.load({str(ticket)!r}).save({str(tmp_path / 'copy.safetensors')!r})\n"
        f"except SltError as exc:\n"
        f"    print(exc)\n")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=cli_env,
                          preexec_fn=limit, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"2\n2\n{tmp_path / 'copy.safetensors'}: cannot write: File too large\n"
    assert proc.stderr == f"slt-deploy: error: {tmp_path / 'model.out'}: cannot write: File too large\n" * 2
    assert list(tmp_path.iterdir()) == []


def test_read_only_folders_are_refused_before_any_work(ticket, tmp_path, mount_tmpfs, capsys):
    ro = mount_tmpfs("ro", "1m", read_only=True)
    nir_file = tmp_path / "m.nir"
    assert main(["export", str(ticket), "--format", "nir", "--out", str(nir_file)]) == 0
    capsys.readouterr()
    cases = [(["export", str(ticket), "--format", "nir", "--out", str(ro / "sub" / "m.nir")], ro / "sub" / "m.nir"),
             (["simulate", str(nir_file), "--backend", "fast-float", "--samples", "5", "--json", str(ro / "s.json")],
              ro / "s.json"),
             (["report", str(ticket), "--profiles", "loihi2", "--out", str(ro / "report"), "--samples", "5"],
              ro / "report"),
             (["search", "--runs-dir", str(ro / "runs"), "--method", "dense", "--dataset", "digits"], ro / "runs")]
    for argv, shown in cases:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "", f"{argv[0]} worked before checking its output: {out}"  # nothing simulated or trained
        assert err == f"slt-deploy: error: {shown}: cannot write: {ro} is not writable (read-only file system)\n"


def test_a_search_stopped_by_a_full_disk_says_how_to_resume_and_resumes_to_the_same_ticket(
        ticket, mount_tmpfs, capsys):
    disk = mount_tmpfs("runs", "40k")
    config = small_config()
    with pytest.raises(OutputError) as info:
        search(config, disk, progress=False, echo=quiet)
    run_dir = disk / config.run_name()
    message = str(info.value)
    assert "No space left on device" in message or "not enough free space" in message
    assert message.endswith(f"the search so far is kept in {run_dir}: make room or fix the folder, then run "
                            f"the same command again to resume")
    assert temp_files(disk) == []
    # a write killed half-way (kill -9) leaves a temporary file: the resumed run removes it
    stale = run_dir / "phases" / f".checkpoint.safetensors.x1y2{TEMP_SUFFIX}"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"")
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    lines: list = []
    result = search(config, disk, progress=False, echo=lines.append)
    assert lines[0].startswith(f"resuming {run_dir}") and "removed 1 temporary file(s)" in lines[1]
    assert not stale.exists() and temp_files(disk) == []
    resumed, reference = Ticket.load(result.ticket_path), Ticket.load(ticket)
    for name in reference.state:
        assert torch.equal(resumed.state[name], reference.state[name]), name
    assert resumed.record.accuracy == reference.record.accuracy


# ------------------------------------------------------------------------------------------ sweeps

def write_sweep(folder: Path, **body) -> Path:
    body.setdefault("base", SMALL)
    body.setdefault("runs_dir", str(folder / "runs"))
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def sweep_cases(tmp_path: Path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    return [
        ({"grid": {"search.method": ["imp"], "search.rewind_epoch": [0, 1]}},
         "job 2/2 (search.method=imp, search.rewind_epoch=1): search.rewind_epoch=1 must be < train.epochs=1"),
        ({"grid": {"search.method": ["dense"], "search.prunable": [["body.fc9"]]}},
         "search.prunable: unknown layer(s) body.fc9"),
        ({"grid": {"search.method": ["random"]}, "jobs": [{"search.reference": str(tmp_path / "none.safetensors")}]},
         f"{tmp_path / 'none.safetensors'}"),
        ({"grid": {"search.method": ["dense"]},
          "jobs": [{}, {"data.dataset": "mnist", "data.path": str(tmp_path / "no_mnist")}]},
         f"job 2/2 (search.method=dense, data.dataset=mnist, data.path={tmp_path / 'no_mnist'}): "
         f"{tmp_path / 'no_mnist'}: data folder "
         f"does not exist"),
        ({"grid": {"search.method": ["dense"]}, "report": {"profiles": ["loihi9"]}},
         "unknown hardware profile 'loihi9'"),
        ({"grid": {"search.method": ["dense"]}, "runs_dir": str(a_file)}, f"{a_file}: is not a folder"),
        ({"grid": {"search.method": ["dense"]}, "out": str(a_file / "out")},
         f"{a_file / 'out'}: cannot write: {a_file} is not a folder"),
    ]


@pytest.mark.parametrize("case", range(7), ids=["rewind", "prunable", "reference", "data path", "profile",
                                                 "runs_dir is a file", "out under a file"])
def test_a_sweep_is_checked_as_a_whole_before_its_first_job(tmp_path, capsys, case):
    body, message = sweep_cases(tmp_path)[case]
    path = write_sweep(tmp_path, executor="serial", **body)
    assert main(["sweep", str(path)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"slt-deploy: error: {path}: ") and message in line, line
    assert not (tmp_path / "runs").exists()  # no job ran, nothing written


def test_an_unwritable_sweep_out_is_refused(tmp_path, mount_tmpfs, capsys):
    ro = mount_tmpfs("ro", "1m", read_only=True)
    path = write_sweep(tmp_path, executor="serial", grid={"search.method": ["dense"]}, out=str(ro / "out"))
    assert main(["sweep", str(path)]) == 2
    assert f"{ro / 'out'}: cannot write: {ro} is not writable (read-only file system)" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_a_huge_grid_needs_yes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep_expansion, "MAX_JOBS_WITHOUT_YES", 3)
    path = write_sweep(tmp_path, grid={"search.method": ["dense", "random"], "search.seed": [0, 1]})
    assert main(["sweep", str(path)]) == 2
    assert "the sweep expands to 4 jobs (2 search.method x 2 search.seed), more than 3: pass --yes" \
        in one_error_line(capsys)
    assert len(load_sweep(path, yes=True).jobs) == 4


def test_a_second_driver_on_the_same_sweep_is_stopped(tmp_path, capsys):
    path = write_sweep(tmp_path, executor="serial", grid={"search.method": ["dense"]})
    out_dir = load_sweep(path).out_dir
    with sweep_lock(out_dir):
        assert main(["sweep", str(path)]) == 2
        line = one_error_line(capsys)
    assert f"{out_dir}: another sweep driver is running this sweep (pid {os.getpid()} on host " in line
    assert not (tmp_path / "runs" / "sweeps" / "sweep" / "results.json").exists()


def test_an_unreachable_ray_address_fails_within_the_timeout(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_sweep(tmp_path, grid={"search.method": ["dense"]}, address=f"127.0.0.1:{port}",
                       connect_timeout_s=1.5)
    start = time.monotonic()
    assert main(["sweep", str(path), "--no-progress"]) == 2
    assert time.monotonic() - start < 20
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    (line,) = [l for l in err.splitlines() if l.startswith("slt-deploy: error: ")]
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port} within 1.5 s: ConnectionRefusedError" in line


def test_sigterm_stops_the_sweep_driver_promptly(tmp_path, slt_deploy_exe, cli_env):
    # long enough that it cannot finish before the signal, whatever the load (the signal stops it within 10 s)
    base = dict(SMALL, data=dict(SMALL["data"], n_train=1000), train={"epochs": 2000})
    path = write_sweep(tmp_path, base=base, executor="serial", grid={"search.method": ["dense"]})
    proc = subprocess.Popen([slt_deploy_exe, "sweep", str(path), "--no-progress"], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=cli_env)
    try:
        for line in proc.stderr:  # wait until the job runs
            if line.startswith("sweep: serial"):
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        err = proc.stderr.read()
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - start < 10
    assert code == 130 and err.strip().splitlines()[-1].startswith("slt-deploy: interrupted"), err
    results = json.loads((tmp_path / "runs" / "sweeps" / "sweep" / "results.json").read_text())
    assert results["pending"] == 1 and results["done"] == 0, results


def test_an_address_that_is_not_a_ray_cluster_fails_within_the_timeout(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as listener:  # something listens, but it is no Ray cluster: ray.init would hang
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        path = write_sweep(tmp_path, grid={"search.method": ["dense"]}, address=f"127.0.0.1:{port}",
                           connect_timeout_s=3)
        start = time.monotonic()
        assert main(["sweep", str(path), "--no-progress"]) == 2
        assert time.monotonic() - start < 15
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    (line,) = [l for l in err.splitlines() if l.startswith("slt-deploy: error: ")]
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port} within 3 s: something listens there but no Ray " \
           f"cluster answered" in line


DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and util-linux setpriv to drop the capability that bypasses permissions")
def test_a_folder_the_user_cannot_write_is_refused_in_one_line(ticket, tmp_path, slt_deploy_exe, cli_env):
    """Root passes every permission check, so the command runs without CAP_DAC_OVERRIDE (as any user would)."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    out = locked / "sub" / "m.nir"
    proc = subprocess.run([*DROP_DAC, slt_deploy_exe, "export", str(ticket), "--format", "nir", "--out", str(out)],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    if "setpriv:" in proc.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {proc.stderr.strip()}")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"slt-deploy: error: {out}: cannot write: {locked} is not writable (permission denied)\n"
    assert list(locked.iterdir()) == []
