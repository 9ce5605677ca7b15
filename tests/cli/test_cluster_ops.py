"""Operating a ``haictl up --data-dir DIR`` cluster from later shells that do not name DIR.

One real cluster for the module (8 processes). ``status``, ``down``, ``serve`` and the client verbs
find it through the client config ``up`` wrote; jobs see FS3_MGMTD and the HAI_* variables; a
killed server restarted with ``haictl serve`` (in the background or the foreground) shows UP and
is stopped by ``down``; ``fs status`` shows chains and targets. Every haictl call is a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from cli_helpers import Haictl, wait_for

from fireflyer import cluster


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ops")
    h = Haictl(root)
    data = root / "c"
    state = json.loads(h.ok("up", "--data-dir", str(data), "--json"))
    yield h, data, state
    if (data / cluster.STATE_FILE).exists():
        h("down", "--data-dir", str(data))


def _status(h: Haictl) -> dict:
    res = h("status", "--json")
    assert res.stdout, res.stderr
    return json.loads(res.stdout)


def test_status_and_client_verbs_find_the_data_dir_cluster(up) -> None:
    h, data, state = up
    st = _status(h)  # no --data-dir: found through data_dir in the client config
    assert st["mgmtd"] == state["mgmtd"] and all(p["alive"] for p in st["processes"].values())
    assert f'data_dir = "{data}"' in (h.root / "client.toml").read_text()
    assert "node1" in h.ok("nodes") and h.ok("fs", "ls", "/") is not None


def test_jobs_get_fs3_and_hai_variables(up) -> None:
    h, _data, state = up
    job_id = json.loads(h.ok("submit", "--json", "--name", "envjob", "--", "env"))["job_id"]
    wait_for(
        lambda: json.loads(h.ok("show", "--json", str(job_id)))["state"] == "completed", 60, "the job to end"
    )
    env = dict(line.split("=", 1) for line in h.ok("logs", str(job_id)).splitlines() if "=" in line)
    assert env["FS3_MGMTD"] == state["mgmtd"]
    assert env["HAI_JOB_ID"] == str(job_id) and env["HAI_JOB_NAME"] == "envjob" and env["HAI_RESUMED"] == "0"
    assert env["HAI_NODE_NAME"] in ("node1", "node2") and env["HAI_SUSPEND_ADDR"].startswith("tcp://")
    assert env["RANK"] == "0" and env["WORLD_SIZE"] == "1"
    assert "FS3_MOUNT" not in env  # no node of this cluster has an fs3 mount


def test_fs_status_shows_chains_targets_and_capacity(up) -> None:
    h, _data, _state = up
    info = json.loads(h.ok("fs", "status", "--json"))
    assert len(info["chains"]) >= 1 and info["repairs"] == []
    for ch in info["chains"]:
        assert ch["serving"] == ch["replicas"] == 3 and len({t["node_id"] for t in ch["targets"]}) == 3
        for t in ch["targets"]:
            assert (
                t["state"] == "SERVING"
                and t["alive"]
                and t["disk_total_bytes"] > 0
                and t["chunks"] is not None
            )
            assert t["read_only"] is False and t["reserve_bytes"] >= 0
    text = h.ok("fs", "status")
    assert "3/3 serving, ok" in text and "repairs in progress:\n  none" in text


def test_serve_restarts_a_killed_server_which_status_shows_and_down_stops(up) -> None:
    h, data, state = up
    old = _status(h)["processes"]
    # dry-run: the restarted server gets the ports up chose, from DIR/cluster.toml
    assert (
        h.ok("serve", "storage", "--index", "1", "--data-dir", str(data), "--dry-run").split()
        == old["storage-1"]["argv"]
    )
    # up ran a standby mgmtd (index 1); serve finds its argv the same way
    assert (
        h.ok("serve", "mgmtd", "--index", "1", "--data-dir", str(data), "--dry-run").split()
        == old["mgmtd-1"]["argv"]
    )

    os.killpg(old["storage-1"]["pid"], signal.SIGKILL)
    wait_for(lambda: not _status(h)["processes"]["storage-1"]["alive"], 10, "storage-1 to be seen dead")
    res = h("status")
    assert res.returncode == 1 and "DOWN" in res.stdout

    out = h.ok("serve", "storage", "--index", "1", "--data-dir", str(data), "--detach")
    assert "storage-1 serves again" in out
    new = _status(h)["processes"]
    assert new["storage-1"]["alive"] and new["storage-1"]["pid"] != old["storage-1"]["pid"]
    again = h("serve", "storage", "--index", "1", "--detach")  # no --data-dir: the recorded cluster
    assert again.returncode == 1 and "already running" in again.stderr
    wait_for(lambda: json.loads(h.ok("fs", "status", "--json"))["chains"][0]["serving"] == 3, 60,
          "the restarted storage's targets to serve again")  # fmt: skip

    for role, proc in (("agent", "agent-node2"), ("scheduler", "scheduler"), ("meta", "meta")):
        os.killpg(old[proc]["pid"], signal.SIGKILL)
        h.ok("serve", role, *(["--name", "node2"] if role == "agent" else []), "--detach")
        assert _status(h)["processes"][proc]["alive"], proc
    assert "node2" in h.ok("nodes") and h.ok("fs", "ls", "/") is not None  # each serves again

    # a foreground serve (not a group leader, as under a non-interactive shell) is registered too
    os.killpg(old["storage-2"]["pid"], signal.SIGKILL)
    fg = subprocess.Popen(h.argv("serve", "storage", "--index", "2"), env=h.env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(
            lambda: _status(h)["processes"]["storage-2"]["pid"] == fg.pid,
            30,
            "the foreground serve to register",
        )
        st = h.ok("status")
        assert st.count(" up ") == len(old) == 9, st  # mgmtd, its standby mgmtd-1, meta, 3 storage, ...

        res = h("down")
        assert res.returncode == 0, res.stderr
        assert fg.wait(timeout=15) is not None
    finally:
        if fg.poll() is None:
            fg.kill()
    every = {*(p["pid"] for p in old.values()), *(p["pid"] for p in new.values()), fg.pid}
    assert [pid for pid in every if cluster._alive(pid)] == []

    res = h("status")
    assert res.returncode == 1
    assert str(data / cluster.STATE_FILE) in res.stderr and "client.toml" in res.stderr
    assert str(h.root / "home" / ".fireflyer" / "local" / cluster.STATE_FILE) in res.stderr
