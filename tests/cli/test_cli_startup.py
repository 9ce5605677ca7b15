"""``haictl`` starts fast: --help, --version and the job/fs verbs import no torch, numpy or grpc they do not use.

Each check runs the real entry point in a fresh interpreter under ``-X importtime`` and reads the
list of modules it imported (no timing assertions: the import list is what makes start-up slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fireflyer

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "grpc")


def _imported(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``haictl ARGS`` under -X importtime; return the process and the top-level packages it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fireflyer.cli.main", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )  # fmt: skip
    mods = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "fireflyer" in mods, proc.stderr[-2000:]  # importtime output was parsed
    return proc, mods


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["submit", "--help"], ["jobs", "--help"], ["show", "--help"], ["fs", "--help"],
     ["status", "--help"], ["serve", "--help"]],
    ids=lambda a: " ".join(a),
)  # fmt: skip
def test_help_imports_no_heavy_module(args: list[str]) -> None:
    proc, mods = _imported(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not mods & set(HEAVY), f"haictl {' '.join(args)} imported {sorted(mods & set(HEAVY))}"


def test_version_prints_the_package_version() -> None:
    proc, _ = _imported(["--version"])
    assert proc.stdout.strip() == f"haictl, version {fireflyer.__version__}"


def test_jobs_imports_grpc_but_not_torch_or_numpy() -> None:
    # no scheduler listens on port 1: the command fails fast, after its imports
    proc, mods = _imported(["jobs"], {"HAI_SCHEDULER": "127.0.0.1:1", "HAI_TOKEN": "x"})
    assert proc.returncode == 1 and "error:" in proc.stderr
    assert "grpc" in mods and not mods & {"torch", "numpy"}, sorted(mods & set(HEAVY))


def test_bench_still_lists_every_benchmark() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fireflyer.cli.main", "bench", "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ("allreduce", "sched", "fs", "train"):
        assert f"  {name} " in proc.stdout, proc.stdout


def test_an_unreachable_scheduler_says_where_its_address_came_from(tmp_path: Path) -> None:
    env = {"HAI_CLIENT_CONFIG": str(tmp_path / "client.toml"), "HAI_SCHEDULER": "", "HAI_TOKEN": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "fireflyer.cli.main", "jobs"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "the default address" in proc.stderr and str(tmp_path / "client.toml") in proc.stderr, proc.stderr


def test_fs_without_a_cluster_names_the_client_config_it_read(tmp_path: Path) -> None:
    env = {"HAI_CLIENT_CONFIG": str(tmp_path / "client.toml"), "FS3_MGMTD": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "fireflyer.cli.main", "fs", "ls", "/"], capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip
    assert proc.returncode == 2 and f"{tmp_path / 'client.toml'} does not exist" in proc.stderr, proc.stderr
