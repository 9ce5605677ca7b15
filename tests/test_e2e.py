"""The main job end to end: real services, real agents, a real training job, on loopback and across hosts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fireflyer import cluster
from fireflyer.config import load_config
from fireflyer.demo.run import run_demo
from fireflyer.errors import FireflyerError
from fireflyer.netns import HostNet, NetnsUnavailable


def _no_process_left(state: dict) -> list[str]:
    return [name for name, p in state["processes"].items() if cluster._alive(p["pid"])]


@pytest.mark.slow
def test_demo_trains_is_preempted_resumes_and_finishes(tmp_path):
    lines: list[str] = []
    # paced steps leave the preemption (a scheduler cycle and an agent heartbeat away) 4 s to land
    res = run_demo(tmp_path / "ff", ranks_per_node=2, steps=60, samples=2048, preempt_at_step=10,
                   min_step_s=0.08, progress=lines.append)  # fmt: skip
    out = "\n".join(lines)
    r = res.train
    assert r["world_size"] == 4 and r["nodes"] == 2, r
    assert 0 < r["resumed_from"] < 60, r  # it really resumed from a checkpoint taken mid-run
    assert r["heldout_accuracy"] > 0.8, r
    assert r["allreduce_32MiB_busbw_gbps"] > 0
    states = [s for s, _ in res.train_history]
    assert states.index("suspending") < states.index("running", states.index("suspending")), states
    assert "completed" == states[-1]
    assert "HFReduce probe: 2 ranks on 2 nodes" in res.probe_log
    assert "cluster stopped" in out
    assert not (tmp_path / "ff" / cluster.STATE_FILE).exists()


def test_up_status_down_leave_nothing_running(tmp_path):
    env = {**os.environ, "HAI_CLIENT_CONFIG": str(tmp_path / "client.toml")}
    haictl = [sys.executable, "-m", "fireflyer.cli.main"]
    data = str(tmp_path / "c")
    up = subprocess.run(
        [*haictl, "up", "--data-dir", data, "--json"], capture_output=True, text=True, env=env
    )
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    try:
        # mgmtd-1: the standby mgmtd the embedded config runs
        assert set(state["processes"]) == {"mgmtd", "mgmtd-1", "storage-0", "storage-1", "storage-2", "meta",
                                           "scheduler", "agent-node1", "agent-node2"}  # fmt: skip
        assert (tmp_path / "client.toml").stat().st_mode & 0o777 == 0o600
        st = subprocess.run([*haictl, "status", "--data-dir", data], capture_output=True, text=True, env=env)
        assert st.returncode == 0 and st.stdout.count(" up ") == 9, st.stdout
        again = subprocess.run([*haictl, "up", "--data-dir", data], capture_output=True, text=True, env=env)
        assert again.returncode != 0 and "already running" in again.stderr
        nodes = subprocess.run([*haictl, "nodes"], capture_output=True, text=True, env=env)
        assert nodes.returncode == 0 and "node1" in nodes.stdout and "node2" in nodes.stdout, nodes.stderr
        # every fs3 service and the scheduler serve Prometheus metrics where the state says
        assert set(state["metrics"]) == {"scheduler", "mgmtd", "mgmtd-1", "meta", "storage-0", "storage-1",
                                         "storage-2"}  # fmt: skip
        for name, url in state["metrics"].items():
            with urllib.request.urlopen(url, timeout=10) as rsp:
                assert b"grpc_server_handled_total" in rsp.read(), name
        # the status page shows this cluster's fs3 (haictl up passes its mgmtd to the scheduler)
        deadline, panel = time.monotonic() + 30, {}
        while time.monotonic() < deadline and not panel.get("ok"):
            with urllib.request.urlopen(state["web"] + "api/fs3", timeout=10) as rsp:
                panel = json.loads(rsp.read())
            time.sleep(0.5)
        assert panel["configured"] and panel["ok"], panel
        assert panel["states"]["SERVING"] == len(panel["targets"]) and len(panel["nodes"]) == 3, panel
    finally:
        down = subprocess.run([*haictl, "down", "--data-dir", data], capture_output=True, text=True, env=env)
    assert down.returncode == 0, down.stderr
    assert _no_process_left(state) == []
    st = subprocess.run([*haictl, "status", "--data-dir", data], capture_output=True, text=True, env=env)
    assert st.returncode != 0 and "no cluster state" in st.stderr


def test_up_fails_clearly_on_a_taken_port_and_leaves_nothing_running(tmp_path):
    cfg = load_config(None)
    cfg.data_dir = tmp_path
    with socket.socket() as squatter:  # a plain listener: no SO_REUSEPORT, so nobody can share it
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        cfg.storage.servers[1].port = squatter.getsockname()[1]
        with pytest.raises(RuntimeError, match="storage-1 did not start"):
            cluster.up(cfg, progress=lambda s: None, timeout_s=20)
    assert not (tmp_path / cluster.STATE_FILE).exists()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers == "", leftovers


@pytest.mark.netns
@pytest.mark.slow
def test_training_job_across_hosts_in_network_namespaces(tmp_path):
    try:
        net = HostNet(3, gateway=True).up()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        cfg = load_config(None)
        services = net.address(0)  # host 0: mgmtd, meta, storage, scheduler; hosts 1, 2: one agent each
        # fixed ports, as on real hosts: "0 = a free port" can only be resolved for this host's addresses
        cfg.mgmtd.host, cfg.mgmtd.port, cfg.mgmtd.metrics_port = services, 9000, 9001
        for i, sb in enumerate(cfg.mgmtd.standbys):  # the standby mgmtd shares the SQLite file: same host
            sb.host, sb.port, sb.metrics_port = services, 9002 + 2 * i, 9003 + 2 * i
        cfg.meta.host, cfg.meta.port, cfg.meta.metrics_port = services, 9100, 9101
        for i, srv in enumerate(cfg.storage.servers):
            srv.host, srv.port, srv.metrics_port = services, 9200 + i, 9250 + i
        cfg.scheduler.host, cfg.scheduler.port, cfg.scheduler.web_port = services, 9300, 8080
        for i, agent in enumerate(cfg.agents):
            agent.host = net.address(i + 1)
        lines: list[str] = []
        res = run_demo(tmp_path / "ff", config=cfg, ranks_per_node=1, steps=30, samples=1024, preempt=False,
                       min_step_s=0, progress=lines.append,
                       host_prefix=lambda host: net.argv(net.host_of(host), []))  # fmt: skip
        assert res.train["nodes"] == 2 and res.train["world_size"] == 2, res.train
        assert res.train["heldout_accuracy"] > 0.5, res.train
        logs = Path(tmp_path / "ff" / "agents")
        rank_logs = {p.parent.parent.parent.name: p.read_text() for p in logs.glob("*/logs/*/rank-*.log")}
        assert set(rank_logs) == {"node1", "node2"}, "\n".join(lines)
    finally:
        net.down()


def test_free_port_for_a_foreign_address_is_a_clear_error():
    cfg = load_config(None)
    cfg.storage.servers[1].host, cfg.storage.servers[1].port = "192.0.2.7", 9200  # TEST-NET-1: never local
    with pytest.raises(FireflyerError, match=r"^storage\.servers\[1\]\.metrics_port is 0 .* 192\.0\.2\.7"):
        cluster.resolve_ports(cfg)
