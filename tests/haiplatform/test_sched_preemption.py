"""Time-sharing end to end with real training processes: suspend, checkpoint, resume, failover, restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hai_helpers import TRAIN_JOB, log_so_far, train_command, wait_for

from ffcommon.ports import free_port


def _history(client, job_id: int) -> list[tuple[str, str]]:
    return [(t.to_state, t.reason) for t in client.job(job_id).history]


def _progress(workdir) -> bool:
    return (workdir / "ckpt.pt").exists()


def test_low_job_suspends_for_high_job_and_resumes_to_the_same_result(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"])
    steps, step_s = 40, 0.05
    ref_dir, low_dir = tmp_path / "ref", tmp_path / "low"
    ref_dir.mkdir()
    low_dir.mkdir()
    # Uninterrupted reference run of the same 2-node job.
    ref = c.admin.submit(
        {"command": train_command(steps, step_s, ref_dir / "w.json"), "nodes": 2, "workdir": str(ref_dir)}
    )
    assert c.admin.wait(ref, timeout_s=90).state == "completed"

    alice = c.client_for("alice")
    low = alice.submit(
        {"command": train_command(steps, step_s, low_dir / "w.json"), "nodes": 2, "priority": "LOW",
         "workdir": str(low_dir)}
    )  # fmt: skip
    wait_for(lambda: _progress(low_dir), 60, "the LOW job to checkpoint once")
    bob = c.client_for("bob")
    high = bob.submit(
        {
            "command": "echo high ran on $HAI_NODE_NAME",
            "nodes": 2,
            "priority": "HIGH",
            "workdir": str(tmp_path),
        }
    )
    assert bob.wait(high, timeout_s=60).state == "completed"
    low_info = alice.wait(low, timeout_s=90)
    assert low_info.state == "completed", low_info.reason
    assert low_info.run_seq == 2 and low_info.suspend_count == 1

    hist = _history(alice, low)
    states = [s for s, _ in hist]
    assert states == ["queued", "running", "suspending", "suspended", "queued", "running", "completed"], hist
    assert hist[2][1] == f"preempted for job {high}"
    assert "called go_suspend()" in hist[3][1]
    log0 = alice.tail_log(low, 0, 0, 1 << 20).data.decode()
    assert "suspending at step" in log0 and "resumed from step" in log0
    resumed = int(log0.split("resumed from step ")[1].split()[0])
    assert 0 < resumed < steps
    # High ran while low was off the nodes: low's suspension precedes high's start.
    high_start = next(t.at for t in bob.job(high).history if t.to_state == "running")
    low_suspended = next(t.at for t in alice.job(low).history if t.to_state == "suspended")
    assert low_suspended <= high_start
    # Same result as the uninterrupted run, bit for bit.
    assert json.loads((low_dir / "w.json").read_text()) == json.loads((ref_dir / "w.json").read_text())


def test_job_ignoring_suspend_is_stopped_after_grace_period(cluster_factory, tmp_path):
    c = cluster_factory(["n1"], suspend_grace_s=1, term_s=1)
    stubborn = "exec python3 -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"up\", flush=True); time.sleep(600)'"
    low = c.admin.submit({"command": stubborn, "priority": "LOW", "workdir": str(tmp_path)})
    wait_for(lambda: b"up" in log_so_far(c.admin, low), 30, "the stubborn job to start")
    high = c.admin.submit({"command": "true", "priority": "HIGH", "workdir": str(tmp_path)})
    assert c.admin.wait(high, timeout_s=30).state == "completed"
    hist = _history(c.admin, low)
    suspended = next(r for s, r in hist if s == "suspended")
    # SIGTERM was ignored, so SIGKILL (-9) ended it.
    assert "did not call go_suspend() within the grace period" in suspended and "-9" in suspended
    # Requeued; it runs again once the HIGH job is done.
    wait_for(lambda: c.admin.job(low).run_seq == 2 and c.admin.job(low).state == "running", 30, "the rerun")
    c.admin.cancel(low)


def test_same_user_same_priority_never_preempts(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    alice = c.client_for("alice")
    first = alice.submit({"command": "sleep 30", "workdir": str(tmp_path)})
    wait_for(lambda: alice.job(first).state == "running", 30, "first job to run")
    second = alice.submit({"command": "true", "workdir": str(tmp_path)})
    time.sleep(1.0)  # about ten scheduling cycles: the first keeps running, the second waits
    assert alice.job(first).state == "running" and alice.job(second).state == "queued"
    # A user suspend/resume cycle: held while suspended, the second job gets the node.
    alice.suspend(first)
    assert alice.wait(second, timeout_s=30).state == "completed"
    assert alice.job(first).state == "suspended"
    alice.resume(first)
    wait_for(lambda: alice.job(first).state == "running", 30, "resumed job to run")
    alice.cancel(first)


def test_killed_agent_fails_over_and_job_resumes_elsewhere(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"])
    steps, step_s = 60, 0.05
    ref_dir, job_dir = tmp_path / "ref", tmp_path / "job"
    ref_dir.mkdir()
    job_dir.mkdir()
    # Uninterrupted single-rank reference, run directly (outside the scheduler).
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAI_")}
    env.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    ref = subprocess.Popen(
        [sys.executable, str(TRAIN_JOB), str(steps), "0", str(ref_dir / "w.json")], cwd=ref_dir, env=env
    )

    job = c.admin.submit(
        {"command": train_command(steps, step_s, job_dir / "w.json"), "workdir": str(job_dir)}
    )
    wait_for(lambda: _progress(job_dir), 60, "the job to checkpoint once")
    first_node = c.admin.job(job).assigned_nodes[0]
    c.launcher.kill(f"agent-{first_node}")
    info = c.admin.wait(job, timeout_s=90)
    assert info.state == "completed", info.reason
    assert info.run_seq == 2 and list(info.assigned_nodes) != [first_node]
    hist = _history(c.admin, job)
    assert any(s == "queued" and f"node {first_node} down" in r for s, r in hist), hist
    down = {n.name: n for n in c.admin.nodes()}[first_node]
    assert down.state == "down"
    log = c.admin.tail_log(job, 0, 0, 1 << 20).data.decode()
    assert "resumed from step" in log
    assert ref.wait(timeout=60) == 0
    assert json.loads((job_dir / "w.json").read_text()) == json.loads((ref_dir / "w.json").read_text())


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_scheduler_restart_loses_no_job(cluster_factory, tmp_path, backend, request):
    extra = ["--postgres", request.getfixturevalue("fresh_postgres_dsn")] if backend == "postgres" else []
    c = cluster_factory(["n1", "n2"], extra_sched_args=extra)
    marker = tmp_path / "go"
    running = c.admin.submit(
        {
            "command": f"while [ ! -e {marker} ]; do sleep 0.1; done; echo finished",
            "nodes": 2,
            "workdir": str(tmp_path),
        }
    )
    wait_for(lambda: c.admin.job(running).state == "running", 30, "the job to run")
    queued = [
        c.admin.submit({"command": "echo later", "workdir": str(tmp_path), "name": f"q{i}"}) for i in range(3)
    ]
    c.kill_scheduler()
    marker.touch()  # the running job finishes while the scheduler is down
    c.start_scheduler()
    for job_id in [running, *queued]:
        assert c.admin.wait(job_id, timeout_s=60).state == "completed"
    assert b"finished" in c.admin.tail_log(running, 1).data
    assert [j.spec.name for j in c.admin.jobs() if j.job_id in queued] == ["q2", "q1", "q0"]
    assert _history(c.admin, running)[-1][0] == "completed"
