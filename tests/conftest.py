"""Shared fixtures: real processes that are always cleaned up, and skips for missing hardware."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ffcommon.launcher import Launcher

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _gpu_available() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without a GPU and ``mpi`` tests without mpirun, with the reason."""
    no_gpu = pytest.mark.skip(reason="no NVIDIA GPU on this machine")
    no_mpi = pytest.mark.skip(reason="mpirun not installed (apt-get install openmpi-bin)")
    have_gpu = _gpu_available()
    have_mpi = shutil.which("mpirun") is not None
    for item in items:
        if "gpu" in item.keywords and not have_gpu:
            item.add_marker(no_gpu)
        if "mpi" in item.keywords and not have_mpi:
            item.add_marker(no_mpi)


@pytest.fixture
def launcher(tmp_path: Path, request: pytest.FixtureRequest):
    """A Launcher whose processes are killed when the test ends; logs are printed on failure."""
    lnch = Launcher(tmp_path / "logs")
    yield lnch
    lnch.stop_all(grace_s=3)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for proc in lnch.procs.values():
            print(f"--- log of {proc.name} ---\n{proc.log_text()[-3000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests leave files worth keeping (screenshots, benchmark tables)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def mpirun_argv(np: int, extra: list[str] | None = None) -> list[str]:
    """``mpirun`` for ``np`` ranks on this machine, as root if we are root, oversubscribing the cores."""
    argv = ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    argv += ["--mca", "btl", "self,vader,tcp", "--mca", "btl_vader_single_copy_mechanism", "none"]
    return argv + (extra or [])
