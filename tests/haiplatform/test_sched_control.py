"""Slurm-class job control against a real scheduler and agents: dependencies, arrays with
HAI_ARRAY_INDEX and a concurrency limit, hold/release, requeue, --begin, and history (accounting)."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from hai_helpers import wait_for

from haiplatform import errors


def test_dependencies_hold_and_release(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    wd = str(tmp_path)
    first = c.admin.submit({"command": "true", "workdir": wd, "hold": True})
    assert c.admin.job(first).pending_reason == "Held"
    rc, out, err = c.haictl("submit", "--afterok", str(first), "--workdir", wd, "--json", "--", "true")
    assert rc == 0, err
    ok = json.loads(out)["job_id"]
    notok = c.admin.submit({"command": "true", "workdir": wd, "depends_on": f"afternotok:{first}"})
    anyway = c.admin.submit({"command": "true", "workdir": wd, "depends_on": [("afterany", first)]})
    assert {c.admin.job(j).pending_reason for j in (ok, notok, anyway)} == {"Dependency"}
    time.sleep(0.5)  # a few cycles: held, nothing may start
    assert c.admin.job(first).state == "queued" and c.admin.job(ok).state == "queued"
    rc, out, err = c.haictl("release", str(first))
    assert rc == 0 and "released by admin" in out, err
    assert c.admin.wait(ok).state == "completed"
    assert c.admin.wait(anyway).state == "completed"
    info = c.admin.wait(notok)
    assert info.state == "cancelled" and f"afternotok:{first}" in info.reason and "never" in info.reason
    assert c.admin.job(ok).started_at >= c.admin.job(first).finished_at
    # A failed job: afternotok runs, afterok is refused at submit (it could never be satisfied).
    bad = c.admin.submit({"command": "exit 3", "workdir": wd})
    assert c.admin.wait(bad).state == "failed"
    assert (
        c.admin.wait(
            c.admin.submit({"command": "true", "workdir": wd, "depends_on": f"afternotok:{bad}"})
        ).state
        == "completed"
    )
    with pytest.raises(
        errors.InvalidSpec, match=rf"depends_on: afterok:{bad} \(job {bad} failed\) can never be satisfied"
    ):
        c.admin.submit({"command": "true", "workdir": wd, "depends_on": f"afterok:{bad}"})
    with pytest.raises(errors.InvalidState, match="only queued jobs can be held"):
        c.admin.hold(bad)
    rc, _, err = c.haictl("submit", "--dependency", "afterwards:1", "--", "true")
    assert rc != 0 and "depends_on: 'afterwards:1' must be KIND:ID" in err


def test_array_tasks_get_their_index_and_respect_the_limit(cluster_factory, tmp_path):
    c = cluster_factory(["n1", "n2", "n3"])
    wd = str(tmp_path)
    ids = c.admin.submit_all({
        "command": 'echo "$HAI_ARRAY_JOB_ID $HAI_ARRAY_INDEX" > "task_$HAI_ARRAY_INDEX"; sleep 0.5',
        "workdir": wd, "array": "0-5%2",
    })  # fmt: skip
    assert len(ids) == 6 and ids == sorted(ids)
    after = c.admin.submit({"command": "true", "workdir": wd, "depends_on": f"afterok:{ids[0]}"})
    rc, out, _ = c.haictl("jobs")
    assert f"({ids[0]}_5)" in out
    infos = [c.admin.wait(j, timeout_s=60) for j in ids]
    assert all(i.state == "completed" for i in infos)
    for k, i in enumerate(infos):
        assert (i.array_id, i.array_index) == (ids[0], k)
        assert (tmp_path / f"task_{k}").read_text().split() == [str(ids[0]), str(k)]
    # At most 2 tasks at once although 3 nodes were free.
    events = sorted([(i.started_at, 1) for i in infos] + [(i.finished_at, -1) for i in infos])
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert peak <= 2
    # The dependency on the array's id waited for every task.
    assert c.admin.wait(after).started_at >= max(i.finished_at for i in infos)


def test_requeue_begin_and_history(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    wd = str(tmp_path)
    job = c.admin.submit(
        {"command": 'echo "$HAI_RUN_SEQ $HAI_RESUMED" >> runs; exec sleep 60', "workdir": wd}
    )
    wait_for(lambda: (tmp_path / "runs").exists(), 30, "the first run")
    rc, out, err = c.haictl("requeue", str(job))
    assert rc == 0, err
    wait_for(lambda: len((tmp_path / "runs").read_text().splitlines()) == 2, 30, "the second run")
    assert (tmp_path / "runs").read_text().splitlines() == ["1 0", "2 1"]
    assert c.admin.job(job).state == "running" and c.admin.job(job).run_seq == 2
    c.admin.cancel(job)
    done = c.admin.submit({"command": "true", "workdir": wd})
    assert c.admin.wait(done).state == "completed"
    c.admin.requeue(done)  # an ended job runs again
    wait_for(lambda: c.admin.job(done).run_seq == 2 and c.admin.job(done).state == "completed", 30, "rerun")
    with pytest.raises(errors.InvalidState, match="already queued"):
        c.admin.requeue(c.admin.submit({"command": "true", "workdir": wd, "hold": True}))

    rc, out, err = c.haictl("submit", "--begin", "+1h", "--workdir", wd, "--json", "--", "true")
    assert rc == 0, err
    tomorrow = c.admin.job(json.loads(out)["job_id"])
    assert tomorrow.pending_reason == "BeginTime" and tomorrow.spec.begin_at > time.time() + 3000
    c.admin.cancel(tomorrow.job_id)
    soon = c.admin.submit({"command": "true", "workdir": wd, "begin_at": time.time() + 2})
    info = c.admin.wait(soon, timeout_s=30)
    assert info.state == "completed" and info.started_at >= info.spec.begin_at

    failed = c.admin.submit({"command": "exit 4", "workdir": wd})
    c.admin.wait(failed)
    rc, out, err = c.haictl("history", "--json")
    assert rc == 0, err
    rows = {r["job_id"]: r for r in json.loads(out)}
    assert rows[job]["state"] == "cancelled" and rows[job]["elapsed_s"] > 0 and rows[job]["node_hours"] > 0
    assert rows[job]["run_seq"] == 2 and rows[failed]["exit_code"] == 4
    rc, out, _ = c.haictl("history", "--state", "failed", "--csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["job_id"]) for r in table] == [failed] and table[0]["exit_code"] == "4"
    rc, out, _ = c.haictl("history", "--by-user", "--json")
    (admin,) = json.loads(out)
    assert (
        admin["user"] == "admin"
        and admin["failed"] == 1
        and admin["cancelled"] >= 1
        and admin["node_hours"] > 0
    )
    rc, out, _ = c.haictl("history", "--since", "-1h", "--user", "nobody", "--json")
    assert rc == 0 and json.loads(out) == []
    rc, out, _ = c.haictl("history", "--until", "2000-01-01", "--json")
    assert rc == 0 and json.loads(out) == []


@pytest.mark.parametrize(("half_life_s", "first_to_start"), [(3600.0, "light"), (0.0, "heavy")])
def test_fair_share_in_the_scheduler_core_lets_the_light_user_go_first(tmp_path, half_life_s, first_to_start):
    from haiplatform.protos import agent_pb2, scheduler_pb2
    from haiplatform.scheduler.core import SchedulerConfig, SchedulerCore
    from haiplatform.scheduler.store import Store

    store = Store.sqlite(str(tmp_path / "s.db"))
    try:
        core = SchedulerCore(store, SchedulerConfig(fairshare_half_life_s=half_life_s))
        admin = core.authenticate(core.bootstrap_admin(tmp_path / "admin.token"))
        heavy, light = (core.authenticate(core.add_user(admin, u, "lab", False)) for u in ("heavy", "light"))
        store.add_usage("heavy", 8 * 3600.0, time.time(), 3600)  # 8 node-hours within the last hour
        core.usage = store.usage()
        core.heartbeat(agent_pb2.HeartbeatRequest(node="n1", slots=8, healthy=True, agent_started_at=1.0))
        spec = scheduler_pb2.JobSpec(command="sleep 1", workdir="/tmp", nodes=1)
        first = core.submit(heavy, spec)
        second = core.submit(light, spec)
        started = [j for j, _ in core.cycle().start]
        # With fair share the older job's user, who has had the nodes, waits; without it, FIFO.
        assert started == [second if first_to_start == "light" else first]
        waiting = first if first_to_start == "light" else second
        assert core.jobs[waiting].state == "queued" and core.pending_reason(core.jobs[waiting]) == "Resources"
    finally:
        store.close()
