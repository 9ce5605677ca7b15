"""The status page's fs3 panel: targets, their chain states, capacity and resyncs in progress.

Read the way ``haictl fs df`` reads them (``FS3Client.target_usage`` from mgmtd's routing and each
storage node's ``Space``; ``statfs`` from meta), by a background thread every ``interval_s``, so a
slow or dead fs3 never delays a page request. A failed poll is reported as the error it was, with
no data: the panel never shows an old answer as the current one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

TARGET_STATES = ("SERVING", "SYNCING", "WAITING", "LASTSRV", "OFFLINE")


def summarize(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per state, per-node disk totals (a node's targets share one disk) and the resyncs."""
    states = dict.fromkeys(TARGET_STATES, 0)
    nodes: dict[int, dict[str, Any]] = {}
    for t in targets:
        states[t["state"]] = states.get(t["state"], 0) + 1
        n = nodes.setdefault(
            t["node_id"],
            {"node_id": t["node_id"], "address": t["address"], "alive": t["alive"], "targets": 0,
             "disk_total_bytes": t["disk_total_bytes"], "disk_free_bytes": t["disk_free_bytes"]},
        )  # fmt: skip
        n["targets"] += 1
    # A SYNCING target is being refilled by its chain predecessor: that is fs3's repair.
    repairs = [
        {"target_id": t["target_id"], "chain_id": t["chain_id"], "node_id": t["node_id"]}
        for t in targets
        if t["state"] == "SYNCING"
    ]
    return {"states": states, "nodes": sorted(nodes.values(), key=lambda n: n["node_id"]), "repairs": repairs}


class Fs3Monitor:
    """Polls one fs3 cluster (by its mgmtd address) in a daemon thread; ``snapshot()`` is the panel."""

    def __init__(self, mgmtd: str, interval_s: float = 5.0, timeout_s: float = 5.0) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s: must be positive")
        self.mgmtd = mgmtd
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {
            "mgmtd": mgmtd,
            "ok": False,
            "error": "not polled yet",
            "checked_at": 0.0,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="web-fs3", daemon=True)

    def start(self) -> None:
        """Poll now (in the thread) and every ``interval_s`` after."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the fs3 client."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        if self._client is not None:
            self._client.close()

    def snapshot(self) -> dict[str, Any]:
        """The latest poll's answer (``ok`` False with ``error`` when it failed)."""
        with self._lock:
            return dict(self._snapshot)

    def poll(self) -> dict[str, Any]:
        """Ask fs3 now; store and return the answer."""
        now = time.time()
        try:
            out = self._read()
        except Exception as exc:  # any failure is the panel's answer; the next poll retries
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if self._client is not None:  # a fresh client next time re-reads meta's address
                self._client.close()
                self._client = None
        out.update(mgmtd=self.mgmtd, checked_at=now)
        with self._lock:
            last_ok = self._snapshot.get("last_ok_at", 0.0)
            out["last_ok_at"] = now if out["ok"] else last_ok
            self._snapshot = out
        return out

    def _read(self) -> dict[str, Any]:
        from dataclasses import asdict

        from fs3.client import FS3Client

        if self._client is None:
            self._client = FS3Client(
                self.mgmtd, timeout_s=self.timeout_s, connect_retry_s=self.timeout_s, io_threads=1
            )
        c = self._client
        targets = [asdict(t) for t in c.target_usage(exact_bytes=False)]
        out: dict[str, Any] = {"ok": True, "error": "", "targets": targets, **summarize(targets)}
        try:
            sf = c.statfs()
            out["capacity"] = {
                "total_bytes": sf.total_bytes,
                "free_bytes": sf.free_bytes,
                "used_bytes": sf.total_bytes - sf.free_bytes,
                "file_bytes": sf.used_bytes,
                "inodes": sf.inodes,
                "error": "",
            }
        except Exception as exc:  # meta down: targets are still worth showing, capacity says why not
            out["capacity"] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    def _loop(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval_s):
                return
