"""Shared test helpers: one torch thread, and the installed ``slt-deploy`` command run as a real subprocess."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
from pathlib import Path

import pytest

# before torch (and its OpenMP runtime) is imported: waiting threads sleep (slt_deploy/threads.py), and one thread
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import torch  # noqa: E402  (after the environment above)

from slt_deploy import threads  # noqa: E402


@pytest.fixture(scope="session")
def slt_deploy_exe() -> str:
    """The console script of this environment (next to the interpreter running the tests)."""
    exe = Path(sys.executable).with_name("slt-deploy")
    found = str(exe) if exe.exists() else shutil.which("slt-deploy")
    assert found, "the slt-deploy console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def cli_env() -> dict:
    """Environment for CLI subprocesses: one thread (deterministic and polite on a shared machine)."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                OMP_WAIT_POLICY="PASSIVE")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The machine is shared and the test networks are too small to gain from threads; one thread also keeps
    float reductions in one order across runs."""
    before = torch.get_num_threads()
    threads.apply(threads.ThreadSettings(1, source="tests"))
    yield
    torch.set_num_threads(before)


def _lava_missing() -> str:
    """Why Lava cannot run here ('' when it can). SLT_REQUIRE_LAVA=1 (CI's Lava environment) turns the skips
    into failures, so a broken Lava install is never mistaken for a machine without Python 3.10."""
    if os.environ.get("SLT_REQUIRE_LAVA") == "1" or importlib.util.find_spec("lava") is not None:
        return ""
    return (f"Lava is not installed: lava-nc 0.10.0 needs Python 3.10, this is {platform.python_version()} "
            f"(the fast simulator is checked against Lava's recorded outputs in tests/data/lava_recorded)")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run where torch sees a CUDA GPU, tests marked ``lava`` where Lava is installed; both
    are skipped, with the reason, elsewhere."""
    skips = {}
    if not torch.cuda.is_available():
        skips["gpu"] = pytest.mark.skip(reason=f"needs a CUDA GPU; torch {torch.__version__} sees none on this machine")
    if _lava_missing():
        skips["lava"] = pytest.mark.skip(reason=_lava_missing())
    for item in items:
        for marker, skip in skips.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
