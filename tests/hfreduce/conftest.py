"""HFReduce test harness: run tests/hfreduce/rank_script.py on N real ranks, under mpirun or env vars.

``ranks`` is parametrised over both launchers (gloo style: one fixture, every test that takes it runs
under both); ``env_ranks`` is the env-var launcher alone, for tests mpirun would interfere with (it
tears the whole job down as soon as one rank dies). Every rank writes ``rank-<r>.json``; ranks are
started through the ``launcher`` fixture, so they are killed when the test ends, even on failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ffcommon.launcher import Launcher, ManagedProcess
from ffcommon.ports import free_port
from tests.conftest import mpirun_argv

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCRIPT = HERE / "rank_script.py"


@dataclass(frozen=True)
class Topo:
    """``np`` ranks in nodes of ``lws`` ranks (None: all on one node), inter-node ``algo``."""

    np: int
    lws: int | None = None
    algo: str = "tree"
    chunk_bytes: int = 4096
    depth: int = 4

    @property
    def num_nodes(self) -> int:
        return 1 if self.lws is None else -(-self.np // self.lws)

    @property
    def id(self) -> str:
        extra = "" if (self.chunk_bytes, self.depth) == (4096, 4) else f"-c{self.chunk_bytes}-d{self.depth}"
        return f"{self.np}r-{self.num_nodes}n-{self.algo}{extra}"

    def env(self) -> dict[str, str]:
        e = {"HFREDUCE_ALGO": self.algo, "HFREDUCE_CHUNK_BYTES": str(self.chunk_bytes),
             "HFREDUCE_PIPELINE_DEPTH": str(self.depth)}  # fmt: skip
        if self.lws is not None:
            e["HFREDUCE_LOCAL_WORLD_SIZE"] = str(self.lws)
        return e


@dataclass
class Job:
    """A started job: its processes and the folder its ranks report into."""

    kind: str
    np: int
    out: Path
    procs: list[ManagedProcess] = field(default_factory=list)

    def wait(self, timeout_s: float, ranks: list[int] | None = None) -> dict[int, dict]:
        """Wait for the processes (of ``ranks`` only, for the env launcher); fail with their logs if they hang."""
        deadline = time.monotonic() + timeout_s
        procs = self.procs if ranks is None or self.kind == "mpirun" else [self.procs[r] for r in ranks]
        for p in procs:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # TimeoutExpired; the launcher fixture kills them
                pytest.fail(f"{p.name} did not finish within {timeout_s:g} s:\n{self.logs()}")
        return self.results()

    def results(self) -> dict[int, dict]:
        res = {}
        for f in self.out.glob("rank-*.json"):
            res[int(f.stem.split("-")[1])] = json.loads(f.read_text())
        return res

    def returncodes(self) -> list[int | None]:
        return [p.popen.poll() for p in self.procs]

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} (rc {p.popen.poll()}) ---\n{p.log_text()[-3000:]}" for p in self.procs
        )


class RankLauncher:
    """Starts ``rank_script.py SCENARIO`` on ``np`` ranks with the chosen launcher."""

    def __init__(self, kind: str, launcher: Launcher, tmp_path: Path) -> None:
        self.kind = kind
        self.launcher = launcher
        self.tmp_path = tmp_path
        self.count = 0

    def start(self, topo: Topo, scenario: str, env: dict[str, str] | None = None,
              prefix=None, script: Path = SCRIPT) -> Job:  # fmt: skip
        """``prefix(rank)`` (env launcher) is an argv to run rank ``rank`` under, e.g. ``ip netns exec``;
        ``script`` is the rank program (``script SCENARIO``, reporting into $HFR_OUT)."""
        self.count += 1
        out = self.tmp_path / f"job{self.count}-{scenario}-{topo.id}"
        out.mkdir()
        full_env = {
            "HFR_OUT": str(out),
            "PYTHONPATH": str(REPO),
            "HFREDUCE_TIMEOUT_S": "20",
            "HFREDUCE_STREAMING_BYTES": "65536",
            "OMP_NUM_THREADS": "1",
            **topo.env(),
            **(env or {}),
        }
        job = Job(self.kind, topo.np, out)
        argv = [sys.executable, str(script), scenario]
        if self.kind == "mpirun":
            exports = [a for k in sorted(full_env) for a in ("-x", k)]
            job.procs.append(self.launcher.start(f"mpirun{self.count}", mpirun_argv(topo.np, exports) + argv,
                                                 env=full_env, cwd=str(REPO)))  # fmt: skip
            return job
        master = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(topo.np)}
        master.update({k: v for k, v in full_env.items() if k.startswith("MASTER")})
        for r in range(topo.np):
            rank_env = {**full_env, **master, "RANK": str(r)}
            rank_argv = (prefix(r) if prefix else []) + argv
            job.procs.append(
                self.launcher.start(f"job{self.count}-rank{r}", rank_argv, env=rank_env, cwd=str(REPO))
            )
        return job

    def run(self, topo: Topo, scenario: str, env: dict[str, str] | None = None, timeout_s: float = 60,
            **kw) -> dict[int, dict]:  # fmt: skip
        """Start the job, wait for it, require a clean exit and one report per rank."""
        job = self.start(topo, scenario, env, **kw)
        res = job.wait(timeout_s)
        assert job.returncodes() == [0] * len(job.procs), job.logs()
        assert sorted(res) == list(range(topo.np)), f"reports from ranks {sorted(res)}\n{job.logs()}"
        for r, rep in res.items():
            assert "exception" not in rep, f"rank {r}: {rep['exception']['traceback']}\n{job.logs()}"
        return res


@pytest.fixture(params=["env", pytest.param("mpirun", marks=pytest.mark.mpi)])
def ranks(request: pytest.FixtureRequest, launcher: Launcher, tmp_path: Path) -> RankLauncher:
    """Runs rank scripts under each launcher in turn."""
    return RankLauncher(request.param, launcher, tmp_path)


@pytest.fixture
def env_ranks(launcher: Launcher, tmp_path: Path) -> RankLauncher:
    """Runs rank scripts with RANK/WORLD_SIZE/MASTER_* env vars, each rank a process of the test."""
    return RankLauncher("env", launcher, tmp_path)


def hfreduce_segments() -> set[str]:
    """Names of hfreduce segments in /dev/shm now."""
    return {p for p in os.listdir("/dev/shm") if p.startswith("hfreduce-")}


# ------------------------------------------------------------------------------ fault worlds
PG_TIMEOUT_S = 3.0  # the timeout the fault tests set through the API (HFREDUCE_TIMEOUT_S says 20)
FAULT_ERRORS = ("CollectiveTimeoutError", "PeerLostError")

# (world, fault, victim): np 2 on one node; np 4 as two "nodes" of two local ranks, losing a
# non-leader (its node's leader forwards the abort over TCP) or a node leader (the TCP links time out).
FAULT_WORLDS = [
    pytest.param(Topo(2), "sigkill", 1, id="2r-1n-sigkill-1"),
    pytest.param(Topo(2), "sigstop", 0, id="2r-1n-sigstop-0"),
    pytest.param(Topo(4, lws=2), "sigkill", 3, id="4r-2n-sigkill-3"),
    pytest.param(Topo(4, lws=2), "sigstop", 2, id="4r-2n-sigstop-2"),
]


def check_fault_world(ranks: RankLauncher, launcher: Launcher, topo: Topo, fault: str, victim: int,
                      env: dict[str, str], script: Path = SCRIPT, scenario: str = "faults",
                      fault_errors: tuple[str, ...] = FAULT_ERRORS) -> tuple[dict[int, dict], Job]:  # fmt: skip
    """Run one fault world (see rank_script.scenario_faults) and check what every survivor saw.

    Rank np-1 makes the mismatched calls, ``victim`` is killed or stopped mid-allreduce. Returns the
    survivors' reports (faults-<rank>.json) and the job, for API-specific checks; prints each rank's
    time to error.
    """
    odd = topo.np - 1
    job = ranks.start(topo, scenario, script=script,
                      env={**env, "HFR_ODD": str(odd), "HFR_VICTIM": str(victim), "HFR_FAULT": fault})  # fmt: skip
    survivors = [r for r in range(topo.np) if r != victim]
    job.wait(90, ranks=survivors)
    fault_at = float((job.out / "fault-at").read_text())
    reports = {}
    for r in survivors:
        path = job.out / f"faults-{r}.json"
        assert path.exists(), f"rank {r} wrote no report\n{job.logs()}"
        out = json.loads(path.read_text())
        reports[r] = out
        assert job.procs[r].popen.returncode not in (0, None), (
            f"rank {r} exited 0 after the fault\n{job.logs()}"
        )
        for name in ("size", "dtype"):
            err = out["mismatch"][name]
            assert err is not None, f"rank {r}: the {name} mismatch raised nothing\n{job.logs()}"
            assert "MismatchError" in (err["type"] + err["msg"]), f"rank {r}: {name}: {err}"
            assert f"rank {odd}" in err["msg"], f"rank {r}: {name}: the error does not name rank {odd}: {err}"
        assert out["usable"], f"rank {r}: not usable after the mismatches"
        err = out["fault"]
        assert err is not None, f"rank {r}: the collective succeeded without rank {victim}\n{job.logs()}"
        assert any(k in err["type"] + err["msg"] for k in fault_errors), f"rank {r}: {err}"
        assert f"rank {victim}" in err["msg"], (
            f"rank {r}: the error does not name rank {victim}: {err['msg']}"
        )
        to_error = err["at"] - fault_at
        # Bounded by the API's timeout, not HFREDUCE_TIMEOUT_S (20 s); the margin absorbs a loaded CI host.
        assert to_error < 15, f"rank {r}: raised {to_error:.1f} s after the fault"
        assert out["after"] is not None, f"rank {r}: a call after the failure succeeded"
        assert out["after_s"] < PG_TIMEOUT_S, (
            f"rank {r}: a call after the failure waited {out['after_s']:.1f} s"
        )
        print(f"FAULT {scenario} {topo.id} {fault} victim={victim} rank={r}: {err['type']} after "
              f"{to_error:.2f} s; next call {out['after']['type']} after {out['after_s'] * 1e3:.1f} ms")  # fmt: skip
    if fault == "sigstop":
        assert job.procs[victim].alive()
        launcher.kill(job.procs[victim].name)
    else:
        job.procs[victim].popen.wait(timeout=10)
        assert job.procs[victim].popen.returncode == -9
    return reports, job
