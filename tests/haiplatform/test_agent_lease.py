"""Never two live runs of one job: with its agent stopped (SIGSTOP, as a hung or partitioned node),
the run's supervisor kills it when its lease runs out, and the scheduler starts the job elsewhere only
after lease expiry plus the kill grace; the job's own output shows the runs never overlapped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hai_helpers import processes_with_env, wait_for

from fireflyer.netns import HostNet, NetnsUnavailable

STUBBORN = Path(__file__).resolve().parent / "stubborn_job.py"


def _ticks(path: Path) -> dict[str, list[float]]:
    """Run seq -> times at which that run (main rank or its daemon) wrote the shared file."""
    runs: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            runs.setdefault(parts[1], []).append(float(parts[3]))
    return runs


def test_stopped_agent_is_fenced_before_the_job_runs_elsewhere(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"], lease_s=3, term_s=1)
    mark = uuid.uuid4().hex
    out = tmp_path / "job"
    out.mkdir()
    # The rank ignores SIGTERM and leaves a daemon; both append to one file, as a checkpoint writer would.
    job = c.admin.submit(
        {
            "command": f"exec {sys.executable} {STUBBORN} {out}",
            "workdir": str(out),
            "env": {"HAI_TEST_MARK": mark},
        }
    )
    wait_for(lambda: (out / "daemon-1.pid").exists() and (out / "main-1.pid").exists(), 30, "the first run")
    first = c.admin.job(job).assigned_nodes[0]
    agent = c.launcher.procs[f"agent-{first}"].popen.pid
    os.kill(agent, signal.SIGSTOP)
    try:
        wait_for(lambda: (out / "main-2.pid").exists(), 60, "the job to run again on the other node")
        info = c.admin.job(job)
        assert info.run_seq == 2 and first not in info.assigned_nodes
        hist = [t.reason for t in c.admin.job(job).history]
        assert any(f"node {first} down" in r and "fenced off" in r for r in hist), hist
        wait_for(lambda: len(_ticks(out / "ticks").get("2", [])) >= 3, 30, "the second run to write")
        runs = _ticks(out / "ticks")
        assert max(runs["1"]) < min(runs["2"]), "two runs of the job wrote at the same time"
        alive = processes_with_env("HAI_TEST_MARK", mark)
        assert {env["HAI_RUN_SEQ"] for env in alive.values()} == {"2"}, alive
        log = (c.root / first / "logs" / f"job-{job}" / "rank-0.log").read_text()
        assert "lease expired" in log
    finally:
        os.kill(agent, signal.SIGCONT)
    c.admin.cancel(job)
    wait_for(lambda: not processes_with_env("HAI_TEST_MARK", mark), 15, "the job's processes to be gone")


@pytest.mark.netns
def test_partitioned_node_is_fenced_before_the_job_runs_elsewhere(cluster_factory, tmp_path):
    try:
        net = HostNet(1, gateway=True).up()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    c = None
    try:
        # The scheduler listens on every address; n1's agent lives on its own "host" (a namespace).
        c = cluster_factory(["n2"], lease_s=3, term_s=1, host="0.0.0.0")
        c.launcher.start(
            "agent-n1",
            net.argv(0, [sys.executable, "-m", "haiplatform.agent", "--scheduler", f"{net.gateway_address}:{c.port}",
                         "--node-name", "n1", "--host", net.address(0), "--work-dir", str(c.root / "n1"),
                         "--token-file", str(c.root / "admin.token"), "--slots", "8"]),
        )  # fmt: skip
        c.wait_nodes_up(["n1", "n2"])
        c.admin.drain("n2", "keep the first run on n1")
        mark = uuid.uuid4().hex
        out = tmp_path / "job"
        out.mkdir()
        job = c.admin.submit(
            {
                "command": [sys.executable, str(STUBBORN), str(out)],
                "workdir": str(out),
                "env": {"HAI_TEST_MARK": mark},
            }
        )
        wait_for(
            lambda: (out / "daemon-1.pid").exists() and (out / "main-1.pid").exists(), 30, "the first run"
        )
        assert list(c.admin.job(job).assigned_nodes) == ["n1"]
        c.admin.undrain("n2")
        subprocess.run(["ip", "-n", net.names[0], "link", "set", f"{net.prefix}v0", "down"], check=True)
        wait_for(lambda: (out / "main-2.pid").exists(), 60, "the job to run again on n2")
        assert list(c.admin.job(job).assigned_nodes) == ["n2"]
        wait_for(lambda: len(_ticks(out / "ticks").get("2", [])) >= 3, 30, "the second run to write")
        runs = _ticks(out / "ticks")
        assert max(runs["1"]) < min(runs["2"]), "two runs of the job wrote at the same time"
        alive = processes_with_env("HAI_TEST_MARK", mark)
        assert {env["HAI_RUN_SEQ"] for env in alive.values()} == {"2"}, alive
        assert "lease expired" in (c.root / "n1" / "logs" / f"job-{job}" / "rank-0.log").read_text()
        c.admin.cancel(job)
        wait_for(lambda: not processes_with_env("HAI_TEST_MARK", mark), 15, "the job's processes to be gone")
    finally:
        if c is not None and "agent-n1" in c.launcher.procs:
            c.launcher.stop("agent-n1", grace_s=2)  # its supervisors then end their runs
        net.down()


def test_scheduler_outage_longer_than_the_lease_requeues_instead_of_failing(cluster_factory, tmp_path):
    c = cluster_factory(["n1"], lease_s=2, term_s=1, node_timeout_s=10)  # n1 reconnects in time
    mark = uuid.uuid4().hex
    out = tmp_path / "job"
    out.mkdir()
    job = c.admin.submit(
        {
            "command": [sys.executable, str(STUBBORN), str(out)],
            "workdir": str(out),
            "env": {"HAI_TEST_MARK": mark},
        }
    )
    wait_for(lambda: (out / "main-1.pid").exists(), 30, "the first run")
    c.kill_scheduler()
    log = c.root / "n1" / "logs" / f"job-{job}" / "rank-0.log"
    wait_for(lambda: "lease expired" in log.read_text(), 30, "the run to be fenced")
    wait_for(lambda: not processes_with_env("HAI_TEST_MARK", mark), 15, "the fenced run to be gone")
    c.start_scheduler()
    wait_for(lambda: (out / "main-2.pid").exists(), 60, "the job to run again")
    hist = [(t.to_state, t.reason) for t in c.admin.job(job).history]
    assert ("queued", next(r for s, r in hist if "fenced on n1" in r)) in hist, hist
    assert "failed" not in [s for s, _ in hist], hist
    c.admin.cancel(job)
    wait_for(lambda: not processes_with_env("HAI_TEST_MARK", mark), 15, "the job's processes to be gone")
