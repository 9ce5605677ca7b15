"""Real scheduler + agents on loopback: launch env, logs, exit codes, cancel, tokens, drain, health."""

from __future__ import annotations

import json
import os

import pytest
from hai_helpers import log_so_far, wait_for

from haiplatform import errors


def test_job_runs_on_all_nodes_with_launch_env_and_logs(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"])
    cmd = "echo ENV $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $NODE_RANK $HFREDUCE_LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT $HAI_JOB_ID; echo to-stderr >&2"
    rc, out, err = c.haictl(
        "submit",
        "--nodes",
        "2",
        "--ranks-per-node",
        "2",
        "--workdir",
        str(tmp_path),
        "--json",
        "--shell",
        cmd,
    )
    assert rc == 0, err
    job_id = json.loads(out)["job_id"]
    info = c.admin.wait(job_id)
    assert info.state == "completed", info.reason
    assert sorted(info.assigned_nodes) == ["n1", "n2"]
    seen = []
    for rank in range(4):
        text = c.admin.tail_log(job_id, rank).data.decode()
        assert "to-stderr" in text
        fields = next(line for line in text.splitlines() if line.startswith("ENV")).split()[1:]
        seen.append(fields)
        assert fields[:6] == [str(rank), "4", str(rank % 2), "2", str(rank // 2), "2"]
        assert fields[6] == "127.0.0.1" and int(fields[7]) > 0 and fields[8] == str(job_id)
    assert len({f[7] for f in seen}) == 1  # one MASTER_PORT for all ranks
    rc, out, _ = c.haictl("logs", str(job_id), "--rank", "3")
    assert rc == 0 and "ENV 3 4 1 2 1 2" in out
    rc, out, _ = c.haictl("show", str(job_id), "--json")
    states = [t["to"] for t in json.loads(out)["history"]]
    assert states == ["queued", "running", "completed"]
    rc, out, _ = c.haictl("jobs")
    assert rc == 0 and "completed" in out and str(job_id) in out


def test_failing_rank_fails_job_and_stops_the_others(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"])
    job_id = c.admin.submit(
        {
            "command": 'if [ "$RANK" = 1 ]; then exit 3; fi; exec sleep 60',
            "nodes": 2,
            "workdir": str(tmp_path),
        }
    )
    info = c.admin.wait(job_id, timeout_s=30)
    assert info.state == "failed" and info.exit_code == 3
    assert "rank 1" in info.reason and "code 3" in info.reason
    # The sleeping rank 0 is stopped: its node frees up and the next job runs there.
    nxt = c.admin.submit({"command": "true", "nodes": 2, "workdir": str(tmp_path)})
    assert c.admin.wait(nxt, timeout_s=30).state == "completed"


def test_cancel_running_job_kills_its_processes(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    pidfile = tmp_path / "pid"
    job_id = c.admin.submit({"command": f"echo $$ > {pidfile}; exec sleep 120", "workdir": str(tmp_path)})
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the job to start")
    pid = int(pidfile.read_text())
    rc, out, err = c.haictl("cancel", str(job_id))
    assert rc == 0 and "cancelled" in out, err

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 15, f"rank process {pid} to be killed")
    rc, _, err = c.haictl("cancel", str(job_id))
    assert rc != 0 and "already cancelled" in err


def test_tokens_separate_users(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    alice = c.client_for("alice")
    bob = c.client_for("bob")
    job_id = alice.submit({"command": "echo secret; sleep 30", "workdir": str(tmp_path), "priority": "LOW"})
    wait_for(lambda: alice.job(job_id).state == "running", 30, "alice's job to run")
    wait_for(lambda: b"secret" in log_so_far(alice, job_id), 30, "alice's log")
    for action in (lambda: bob.tail_log(job_id), lambda: bob.cancel(job_id), lambda: bob.suspend(job_id)):
        with pytest.raises(errors.PermissionDenied, match="belongs to alice"):
            action()
    with pytest.raises(errors.PermissionDenied, match="only admins"):
        bob.drain("n1")
    with pytest.raises(errors.PermissionDenied, match="group"):
        bob.submit({"command": "true", "group": "alice"})
    assert [j.job_id for j in bob.jobs()] == [job_id]  # listing is public, logs are not
    assert b"secret" in c.admin.tail_log(job_id).data  # an admin may read anyone's logs
    rc, _, err = c.haictl("jobs", token="not-a-token")
    assert rc != 0 and "UNAUTHENTICATED" in err
    rc, out, _ = c.haictl("user", "whoami", token=c.token)
    assert "admin" in out
    assert c.admin.cancel(job_id).state == "cancelled"


def test_drain_and_health_check_keep_jobs_off_a_node(cluster_factory, tmp_path):
    bad = tmp_path / "n2-is-bad"
    c = cluster_factory(["n1"])
    c.start_agent("n2", ["--health-check", f"test ! -e {bad}", "--health-interval-s", "0.2"])
    c.wait_nodes_up(["n1", "n2"])
    rc, out, err = c.haictl("drain", "n1", "--reason", "bad DIMM")
    assert rc == 0, err
    nodes = {n.name: n for n in c.admin.nodes()}
    assert nodes["n1"].drained and nodes["n1"].reason == "bad DIMM"
    j1 = c.admin.submit({"command": "true", "workdir": str(tmp_path)})
    assert list(c.admin.wait(j1).assigned_nodes) == ["n2"]
    bad.touch()
    wait_for(
        lambda: not {n.name: n for n in c.admin.nodes()}["n2"].healthy, 20, "n2 to fail its health check"
    )
    j2 = c.admin.submit({"command": "true", "workdir": str(tmp_path)})
    assert c.admin.job(j2).state == "queued"  # no schedulable node
    rc, out, _ = c.haictl("nodes")
    assert "bad DIMM" in out and "health check exited 1" in out
    c.haictl("undrain", "n1")
    assert list(c.admin.wait(j2).assigned_nodes) == ["n1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "0", "--", "true"], "nodes: must be a positive integer"),
        (["--priority", "URGENT", "--", "true"], "priority: must be one of"),
        (["--ranks-per-node", "-1", "--", "true"], "ranks_per_node: must be a positive integer"),
        (["-e", "RANK=3", "--", "true"], "env: RANK is set by the scheduler"),
        (["--workdir", "relative/dir", "--", "true"], None),  # made absolute by the client: accepted
        ([], "command: is required"),
    ],
)
def test_submit_rejects_bad_fields_naming_them(cluster_factory, args, message):
    c = cluster_factory([])
    rc, out, err = c.haictl("submit", *args)
    if message is None:
        assert rc == 0, err
        return
    assert rc != 0 and message in err, (out, err)


@pytest.mark.parametrize(
    ("suffix", "text", "message"),
    [
        (".yaml", "command: train\nnodes: two\n", "nodes: must be a positive integer"),
        (".toml", 'command = "x"\npriority = "ASAP"\n', "priority: must be one of"),
        (".yaml", "command: x\ngpus: 8\n", "gpus: unknown field"),
        (".yaml", "command: x\nenv: [1, 2]\n", "env: must be a mapping"),
        (".toml", 'command = "echo file"\nnodes = 1\npriority = "HIGH"\n[env]\nA = "1"\n', None),
    ],
)
def test_job_files_validated(cluster_factory, tmp_path, suffix, text, message):
    c = cluster_factory([])
    path = tmp_path / f"job{suffix}"
    path.write_text(text)
    rc, out, err = c.haictl("submit", "-f", str(path), "--json")
    if message is None:
        assert rc == 0, err
        info = c.admin.job(json.loads(out)["job_id"])
        assert info.spec.command == "echo file" and info.priority == 40 and info.spec.env["A"] == "1"
        return
    assert rc != 0 and message in err, (out, err)
