"""HaiScale test helpers: run a module or script under a real mpirun and collect each rank's JSON line."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ffcommon.launcher import Launcher
from ffcommon.ports import free_port
from tests.conftest import mpirun_argv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def hfreduce_ready() -> bool:
    """Whether this checkout has HFReduce's Python allreduce (merged from the hfreduce branch)."""
    try:
        import hfreduce
    except ImportError:
        return False
    return hasattr(hfreduce, "allreduce")


COMMS = [
    "gloo",
    pytest.param(
        "hfreduce", marks=pytest.mark.skipif(not hfreduce_ready(), reason="hfreduce allreduce not built")
    ),
]


@dataclass
class MpiRun:
    """What an mpirun job left behind: exit code, full log, the parsed per-rank lines, wall time."""

    rc: int
    log: str
    results: list[dict]
    wall_s: float


@pytest.fixture
def run_mpi(launcher: Launcher):
    """``run_mpi(np, argv, tag, timeout_s)``: run ``python argv`` on ``np`` ranks; lines ``tag {json}``."""
    counter = iter(range(1000))

    def run(np: int, argv: list[str], tag: str, timeout_s: float = 120.0) -> MpiRun:
        name = f"mpirun-{np}-{next(counter)}"
        full = mpirun_argv(np, ["-x", "PYTHONPATH", "-x", "MASTER_PORT", "-x", "MASTER_ADDR"])
        env = {"MASTER_PORT": str(free_port()), "MASTER_ADDR": "127.0.0.1", "PYTHONPATH": str(REPO)}
        t0 = time.monotonic()
        proc = launcher.start(name, [*full, sys.executable, *argv], env=env, cwd=str(REPO))
        try:
            rc = proc.popen.wait(timeout=timeout_s)
        except Exception:
            launcher.stop(name, grace_s=2)
            pytest.fail(f"mpirun -np {np} {argv} did not finish in {timeout_s} s:\n{proc.log_text()[-4000:]}")
        log = proc.log_text()
        results = []
        for line in log.splitlines():
            # Ranks share one log: a line may carry another rank's output glued to its end.
            pos = line.find(tag + " ")
            while pos >= 0:
                start = pos + len(tag) + 1
                obj, end = json.JSONDecoder().raw_decode(line[start:])
                results.append(obj)
                pos = line.find(tag + " ", start + end)
        results.sort(key=lambda r: r.get("rank", 0))
        return MpiRun(rc, log, results, time.monotonic() - t0)

    return run
