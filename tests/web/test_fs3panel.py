"""The fs3 panel's data against a real fs3 cluster: healthy, a storage server killed and restarted,
meta killed, and an mgmtd nobody listens on; failures are reported as such, never as old data."""

from __future__ import annotations

import time

from ffcommon.ports import free_port
from haiplatform.web.fs3panel import Fs3Monitor, summarize


def _poll_until(monitor: Fs3Monitor, pred, what: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    snap: dict = {}
    while time.monotonic() < deadline:
        snap = monitor.poll()
        if pred(snap):
            return snap
        time.sleep(0.3)
    raise TimeoutError(f"{what}: last answer {snap}")


def test_summary_counts_states_nodes_and_resyncs() -> None:
    def t(target_id: int, node_id: int, state: str, alive: bool = True) -> dict:
        return {"target_id": target_id, "node_id": node_id, "chain_id": target_id % 10, "state": state,
                "address": f"h:{node_id}", "alive": alive, "chunks": 3, "used_bytes": None,
                "disk_total_bytes": 100, "disk_free_bytes": 40, "data_address": ""}  # fmt: skip

    out = summarize(
        [t(11, 1, "SERVING"), t(21, 2, "SYNCING"), t(12, 1, "SERVING"), t(22, 2, "OFFLINE", False)]
    )
    assert out["states"] == {"SERVING": 2, "SYNCING": 1, "WAITING": 0, "LASTSRV": 0, "OFFLINE": 1}
    assert out["repairs"] == [{"target_id": 21, "chain_id": 1, "node_id": 2}]
    assert [(n["node_id"], n["targets"], n["disk_total_bytes"]) for n in out["nodes"]] == [
        (1, 2, 100),
        (2, 2, 100),
    ]


def test_panel_follows_the_cluster_through_failures(fs3_cluster) -> None:
    n_targets = sum(len(ch.targets) for ch in fs3_cluster.routing().chains)
    monitor = Fs3Monitor(fs3_cluster.mgmtd_address, timeout_s=3)
    try:
        snap = _poll_until(monitor, lambda s: s["ok"], "a first answer")
        assert snap["states"]["SERVING"] == n_targets and snap["repairs"] == []
        assert snap["capacity"]["error"] == "" and snap["capacity"]["total_bytes"] > 0
        assert len(snap["nodes"]) == 2 and all(n["alive"] for n in snap["nodes"])

        fs3_cluster.kill_storage(1)
        snap = _poll_until(
            monitor, lambda s: s["ok"] and s["states"]["SERVING"] < n_targets, "storage-1's targets leaving"
        )
        dead = [t for t in snap["targets"] if t["node_id"] == fs3_cluster.storage_node_id(1)]
        assert dead and all(t["chunks"] is None for t in dead)  # its node no longer answers Space

        fs3_cluster.start_storage(1)
        _poll_until(monitor, lambda s: s["ok"] and s["states"]["SERVING"] == n_targets, "storage-1 back")

        fs3_cluster.kill_meta()
        snap = _poll_until(monitor, lambda s: s["ok"] and s["capacity"]["error"], "meta's absence")
        assert snap["states"]["SERVING"] == n_targets  # the targets are still shown; capacity says why not
    finally:
        monitor.stop()


def test_unreachable_mgmtd_is_an_error_in_bounded_time() -> None:
    monitor = Fs3Monitor(f"127.0.0.1:{free_port()}", timeout_s=2)
    t0 = time.monotonic()
    snap = monitor.poll()
    assert time.monotonic() - t0 < 30
    assert snap["ok"] is False and snap["error"] and "targets" not in snap and snap["last_ok_at"] == 0.0
    monitor.stop()
