"""Every process of a run dies with it: a rank that ignores SIGTERM and one that double-forks a daemon
leave nothing behind after cancel or suspend (checked in /proc), with and without a cgroup per run."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from hai_helpers import processes_with_env, wait_for

from haiplatform.agent.runs import cgroup_v2_parent

STUBBORN = Path(__file__).resolve().parent / "stubborn_job.py"


def _cluster(cluster_factory, cgroup: str):
    c = cluster_factory([], suspend_grace_s=1, term_s=1)
    c.start_agent("n1", ["--cgroup", cgroup])
    c.wait_nodes_up(["n1"])
    return c


def _submit_stubborn(c, out: Path, mark: str) -> int:
    out.mkdir(exist_ok=True)
    return c.admin.submit(
        {"command": f"{sys.executable} {STUBBORN} {out}", "workdir": str(out), "env": {"HAI_TEST_MARK": mark}}
    )


def _alive(mark: str) -> dict[int, dict[str, str]]:
    return processes_with_env("HAI_TEST_MARK", mark)


@pytest.mark.parametrize("cgroup", ["auto", "off"])
def test_cancel_and_suspend_leave_no_process_of_the_run(cluster_factory, tmp_path, cgroup):
    c = _cluster(cluster_factory, cgroup)
    mark = uuid.uuid4().hex
    out = tmp_path / "job"
    job = _submit_stubborn(c, out, mark)
    wait_for(lambda: (out / "daemon-1.pid").exists() and (out / "main-1.pid").exists(), 30, "rank and daemon")
    daemon1 = int((out / "daemon-1.pid").read_text())
    assert daemon1 in _alive(mark)

    # Suspend: the job never calls go_suspend() and ignores SIGTERM; once it is suspended, nothing of it runs.
    c.admin.suspend(job)
    info = c.admin.wait(job, ("suspended",), timeout_s=30)
    assert "did not call go_suspend()" in info.reason, info.reason
    assert _alive(mark) == {}  # the shell leader died of SIGTERM; what it left got SIGKILL

    # Resume: exactly one copy runs, the new one.
    c.admin.resume(job)
    wait_for(lambda: (out / "daemon-2.pid").exists() and (out / "main-2.pid").exists(), 30, "the second run")
    alive = _alive(mark)
    assert {env["HAI_RUN_SEQ"] for env in alive.values()} == {"2"}, alive
    mains = [p for p in alive if p == int((out / "main-2.pid").read_text())]
    assert len(mains) == 1 and int((out / "daemon-2.pid").read_text()) in alive

    # Cancel: the job is terminal at once; its processes are gone within the kill grace.
    c.admin.cancel(job)
    wait_for(lambda: not _alive(mark), 15, "every process of the cancelled run to be gone")
    if cgroup == "auto" and cgroup_v2_parent()[0]:  # the runs' cgroups (named in the agent's log) are gone
        log = c.launcher.procs["agent-n1"].log_text()
        made = [
            Path(line.split(" cgroup ", 1)[1])
            for line in log.splitlines()
            if f"job {job} run " in line and " cgroup /" in line
        ]
        assert len(made) == 2, log
        wait_for(lambda: not any(p.exists() for p in made), 10, "the runs' cgroups to go")


def test_killed_supervisor_fails_the_job_and_its_cgroup_is_emptied(cluster_factory, tmp_path):
    if not cgroup_v2_parent()[0]:
        pytest.skip(
            "no writable cgroup v2 hierarchy: only the cgroup brings back what a dead supervisor left"
        )
    c = _cluster(cluster_factory, "auto")
    mark = uuid.uuid4().hex
    out = tmp_path / "job"
    job = _submit_stubborn(c, out, mark)
    wait_for(lambda: (out / "daemon-1.pid").exists() and (out / "main-1.pid").exists(), 30, "rank and daemon")
    spec = str(c.root / "n1" / "runs" / f"job-{job}-run-1.json")
    sup = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if spec in _cmdline(pid)]
    assert len(sup) == 1, sup
    os.kill(sup[0], signal.SIGKILL)
    info = c.admin.wait(job, timeout_s=30)
    assert info.state == "failed" and "supervisor exited with code -9" in info.reason, info.reason
    wait_for(lambda: not _alive(mark), 15, "every process of the run to be gone")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
