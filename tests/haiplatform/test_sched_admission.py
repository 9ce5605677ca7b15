"""Honest admission against a real scheduler: jobs that can never run are refused at submit with the
field and the limit; jobs that wait say why; a job that cannot start now blocks nobody backfill can run."""

from __future__ import annotations

import json

import pytest
from hai_helpers import wait_for

from haiplatform import errors
from haiplatform.protos import scheduler_pb2


def _raw(tmp_path, **fields) -> scheduler_pb2.JobSpec:
    """A JobSpec built without the client's checks, so the scheduler's own are what answers."""
    return scheduler_pb2.JobSpec(**{"command": "true", "workdir": str(tmp_path), "nodes": 1, **fields})


def test_jobs_that_can_never_run_are_rejected_naming_field_and_limit(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"])
    cases = [
        ({"nodes": 3}, r"nodes: 3 is more than the 2 nodes of this cluster"),
        ({"ranks_per_node": 9}, r"ranks_per_node: 9 is more than the 8 slots of the largest node"),
        ({"env": {f"V{i}": "x" for i in range(2000)}}, r"env: 2000 variables is over the limit of 1024"),
        ({"env": {"BIG": "x" * 200_000}}, r"env: \d+ bytes \(NAME=value\) is over the limit of 131072"),
        ({"command": "echo " + "x" * 70_000}, r"command: \d+ bytes is over the limit of 65536"),
        ({"name": "n" * 300}, r"name: 300 characters is over the limit of 256"),
        ({"name": "evil\u202egnp.exe"}, r"name: must not contain control or bidirectional.*U\+202E"),
        ({"name": "two\nlines"}, r"name: must not contain control.*U\+000A"),
        ({"depends_on": [scheduler_pb2.Dependency(kind="afterok", job_id=999)]}, r"depends_on: afterok:999: no such job"),
        ({"array": "0-20000"}, r"array: more than the limit of 10000 tasks"),
    ]  # fmt: skip
    for fields, message in cases:
        with pytest.raises(errors.InvalidSpec, match=message):
            job_id = c.admin.submit(_raw(tmp_path, **fields))  # the scheduler's check
            pytest.fail(f"{message}: accepted as job {job_id}: {c.admin.job(job_id)}")
        if "depends_on" not in fields and set(fields) & {"env", "command", "name", "array"}:
            with pytest.raises(errors.InvalidSpec, match=message):  # the client's, same rule and words
                c.admin.submit({**fields, "command": fields.get("command", "true"), "workdir": str(tmp_path)})
    c.admin.set_quota("user", "alice", 1)
    alice = c.client_for("alice")
    with pytest.raises(errors.InvalidSpec, match=r"nodes: 2 is more than the 1-node quota of user alice"):
        alice.submit({"command": "true", "nodes": 2, "workdir": str(tmp_path)})
    rc, _, err = c.haictl("submit", "--nodes", "3", "--", "true")
    assert rc != 0 and "nodes: 3 is more than the 2 nodes of this cluster" in err
    assert c.admin.jobs() == []  # nothing was queued by any of these


def test_waiting_jobs_say_why_and_do_not_block_backfill(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2"])
    wd = str(tmp_path)
    busy = c.admin.submit({"command": "sleep 60", "workdir": wd, "time_limit_s": 120})
    wait_for(lambda: c.admin.job(busy).state == "running", 30, "the busy job to start")
    big = c.admin.submit({"name": "big", "command": "true", "nodes": 2, "workdir": wd})
    # Ends long before the big job's reserved start (the busy job's time limit): backfills on the idle node.
    short = c.admin.submit({"command": "true", "workdir": wd, "time_limit_s": 5})
    assert c.admin.wait(short, timeout_s=30).state == "completed"
    # No time limit: it could still hold the idle node when the big job may start, so it waits.
    unbounded = c.admin.submit({"command": "true", "workdir": wd})
    wait_for(lambda: c.admin.job(unbounded).pending_reason == "Priority", 10, "the pending reason")
    assert c.admin.job(big).pending_reason == "Resources"
    rc, out, _ = c.haictl("jobs")
    assert rc == 0 and "(Resources)" in out and "(Priority)" in out
    rc, out, _ = c.haictl("show", str(big), "--json")
    assert json.loads(out)["pending_reason"] == "Resources"
    # A job that needs more nodes than are schedulable now (n2 drained) cannot start whatever ends:
    # it keeps waiting for Resources, but the job behind it runs.
    c.admin.drain("n2", "maintenance")  # before the busy node frees up, or the big job would start
    c.admin.cancel(unbounded)
    c.admin.cancel(busy)
    small = c.admin.submit({"command": "true", "workdir": wd})
    assert c.admin.wait(small, timeout_s=30).state == "completed"
    assert c.admin.job(big).state == "queued" and c.admin.job(big).pending_reason == "Resources"
    c.admin.undrain("n2")
    assert c.admin.wait(big, timeout_s=30).state == "completed"
