"""Thread settings (slt_deploy/threads.py): resolved from the flag, OMP_NUM_THREADS or the affinity mask, applied
to torch, BLAS and onnxruntime alike, and the wait policy in place before the OpenMP runtime starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from slt_deploy import threads
from slt_deploy.errors import ConfigError
from slt_deploy.threads import ThreadSettings


def test_the_flag_wins_over_the_environment_and_the_cores():
    assert threads.resolve(3, {"OMP_NUM_THREADS": "2"}, cores=8) == ThreadSettings(3, 1, "--threads")


def test_omp_num_threads_wins_over_the_cores():
    assert threads.resolve(None, {"OMP_NUM_THREADS": "2"}, cores=8) == ThreadSettings(2, 1, "OMP_NUM_THREADS")
    # OpenMP's nested form: the first entry is the outer level
    assert threads.resolve(None, {"OMP_NUM_THREADS": "4,2"}, cores=8).threads == 4


def test_without_a_setting_the_affinity_mask_decides():
    assert threads.resolve(None, {}, cores=6) == ThreadSettings(6, 1, "affinity")
    assert threads.resolve(None, {"OMP_NUM_THREADS": " "}).threads == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("flag, env, message", [(0, {}, r"--threads=0 must be >= 1"),
                                                (None, {"OMP_NUM_THREADS": "many"}, r"OMP_NUM_THREADS='many'"),
                                                (None, {"OMP_NUM_THREADS": "-1"}, r"OMP_NUM_THREADS=-1")])
def test_a_bad_count_is_refused_with_its_source(flag, env, message):
    with pytest.raises(ConfigError, match=message):
        threads.resolve(flag, env, cores=2)


def test_worker_environment_sets_every_pool_and_the_wait_policy(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert threads.worker_environment(ThreadSettings(3)) == {
        "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's own choice travels on
    assert threads.worker_environment(ThreadSettings(1))["OMP_WAIT_POLICY"] == "ACTIVE"


def test_apply_reaches_torch_blas_and_onnxruntime(monkeypatch):
    from threadpoolctl import threadpool_info
    import onnxruntime as ort

    for name in threads.THREAD_VARIABLES:
        monkeypatch.setenv(name, "1")  # restored after the test
    try:
        threads.apply(ThreadSettings(2, source="test"))
        assert torch.get_num_threads() == 2
        assert {os.environ[name] for name in threads.THREAD_VARIABLES} == {"2"}
        # numpy's own OpenBLAS (other libraries loaded by other tests may bring a BLAS built for one thread)
        blas = [pool["num_threads"] for pool in threadpool_info()
                if pool["user_api"] == "blas" and "numpy" in pool["filepath"]]
        assert blas and set(blas) == {2}
        options = threads.session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
        assert isinstance(options, ort.SessionOptions)
        assert threads.current() == ThreadSettings(2, source="test")
    finally:
        threads.apply(ThreadSettings(1, source="tests"))
    assert torch.get_num_threads() == 1


def _gomp_report(code: str, **env) -> str:
    """libgomp's own report of the settings it started with (OMP_DISPLAY_ENV), for ``python -c code``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], env=dict(clean, OMP_DISPLAY_ENV="VERBOSE", **env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_importing_the_toolkit_makes_openmp_threads_sleep_while_they_wait():
    """GNU OpenMP reads OMP_WAIT_POLICY once, at start: importing slt_deploy first sets it (spin count 0);
    torch imported alone keeps spinning (300,000 checks) - the case the setting is there for."""
    alone = _gomp_report("import torch; torch.ones(2) @ torch.ones(2)")
    assert "GOMP_SPINCOUNT = '300000'" in alone
    ours = _gomp_report("import sys, slt_deploy; assert 'torch' not in sys.modules; "
                        "import torch; torch.ones(2) @ torch.ones(2)")
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in ours and "GOMP_SPINCOUNT = '0'" in ours
    user = _gomp_report("import slt_deploy, torch", OMP_WAIT_POLICY="ACTIVE")  # the user's choice is kept
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in user


def test_the_command_applies_threads_before_torch_starts(slt_deploy_exe):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([slt_deploy_exe, "--threads", "1", "models"], capture_output=True, text=True,
                          env=dict(env, OMP_DISPLAY_ENV="VERBOSE"), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mlp" in done.stdout
    assert "GOMP_SPINCOUNT = '0'" in done.stderr
    applied = subprocess.run([sys.executable, "-c", "import torch; from slt_deploy.cli import main; "
                              "main(['--threads', '3', 'models']); print(torch.get_num_threads(), "
                              "torch.get_num_interop_threads())"], capture_output=True, text=True, env=env, timeout=120)
    assert applied.stdout.split()[-2:] == ["3", "1"], applied.stderr[-2000:]
    bad = subprocess.run([slt_deploy_exe, "--threads", "0", "models"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "slt-deploy: error: --threads=0 must be >= 1 thread"


def test_env_reports_the_thread_settings_and_where_they_came_from(capsys):
    import json

    from slt_deploy.cli import main

    assert main(["--threads", "1", "env"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == "1 (from --threads), inter-op 1, OMP_WAIT_POLICY=PASSIVE"


def test_the_demo_takes_one_thread_unless_the_user_sets_a_count(monkeypatch):
    from slt_deploy.cli import _parser, thread_settings

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    assert thread_settings(_parser().parse_args(["demo"])).threads == 1
    assert thread_settings(_parser().parse_args(["--threads", "2", "demo"])).threads == 2
    assert thread_settings(_parser().parse_args(["profiles"])).threads == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_settings(_parser().parse_args(["demo"])) == threads.ThreadSettings(2, source="OMP_NUM_THREADS")
