"""This node's targets: their chunk stores, the routing they are served by, and the heartbeats to mgmtd.

Each heartbeat reports every hosted target's local state (UPTODATE once seen SERVING since this
process started, ONLINE before) and brings the routing back. A newer routing replaces the table
(it is never mutated in place, so readers take no lock), opens stores for newly assigned targets and
wakes whoever waits for a chain change (forwarding, resync).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from fs3 import errors
from fs3.mgmtd.client import MgmtdClient
from fs3.protos import common_pb2, mgmtd_pb2
from fs3.protos.common_pb2 import TargetState
from fs3.storage.store import ChunkStore


class Targets:
    """The targets the chain table assigns to ``node_id``, with the routing and the chunk locks."""

    def __init__(
        self,
        node_id: int,
        address: str,
        data_dir: str,
        mgmtd: str,
        heartbeat_s: float = 1.0,
        fsync: bool = True,
        exit_on_mgmtd_loss: bool = False,
        data_address: str = "",
        reserve_bytes: int | None = None,
    ) -> None:
        self.node_id, self.address = node_id, address
        self.reserve_bytes = reserve_bytes  # per target; None: the store's default for its disk
        self.data_address = data_address  # advertised to clients through mgmtd; "" = gRPC reads only
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.heartbeat_s = heartbeat_s
        self.exit_on_mgmtd_loss = exit_on_mgmtd_loss
        self.mgmtd = MgmtdClient(mgmtd)  # every mgmtd address; calls follow the leader
        self.stores: dict[int, ChunkStore] = {}
        # called with every routing accepted (resync starts from here)
        self.routing_listeners: list[Callable[[common_pb2.RoutingInfo], None]] = []
        self._routing = common_pb2.RoutingInfo()
        self._routing_lock = threading.Lock()
        self._routing_changed = threading.Condition(self._routing_lock)
        self._uptodate: set[int] = set()  # targets seen SERVING since this process started
        self._locks: dict[tuple[int, int, int], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._stop = threading.Event()
        self._lease_s = 60.0
        self._restarted = True
        for d in self.data_dir.glob("target-*"):  # reopen (and clean) existing targets at once
            tid = int(d.name.split("-", 1)[1])
            self.stores[tid] = ChunkStore(d, tid, fsync, reserve_bytes)

    @property
    def routing(self) -> common_pb2.RoutingInfo:
        """The newest routing seen (replaced whole on change, never mutated)."""
        return self._routing

    # ---- heartbeats --------------------------------------------------------------------------
    def start(self) -> None:
        """Send the first (restarted) heartbeat and start the heartbeat thread.

        With no mgmtd answering the server still starts: it serves once a heartbeat gets through
        (the loop keeps sending the restarted one until then).
        """
        try:
            self.heartbeat_once()
        except grpc.RpcError as exc:
            logging.warning("first heartbeat failed (%s): no mgmtd answers yet; retrying", exc.code())
        threading.Thread(target=self._heartbeat_loop, daemon=True).start()

    def stop(self) -> None:
        """Stop heartbeating."""
        self._stop.set()

    def heartbeat_once(self) -> None:
        """Report the targets' local states and free space to mgmtd and take the routing it answers with."""
        reports = []
        for t in self.my_targets():
            report = mgmtd_pb2.TargetReport(
                target_id=t, local_state=common_pb2.UPTODATE if t in self._uptodate else common_pb2.ONLINE
            )
            store = self.stores.get(t)
            if store is not None:
                report.total_bytes, report.free_bytes, _ = store.space()
                report.read_only = store.read_only
            reports.append(report)
        rsp = self.mgmtd.Heartbeat(
            mgmtd_pb2.HeartbeatReq(
                node_id=self.node_id,
                address=self.address,
                role="storage",
                restarted=self._restarted,
                targets=reports,
                data_address=self.data_address,
            ),
            timeout=max(1.0, self.heartbeat_s * 2),
        )
        self._restarted = False
        self._lease_s = rsp.lease_s
        self.set_routing(rsp.routing)

    def _heartbeat_loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.heartbeat_once()
                last_ok = time.monotonic()
            except grpc.RpcError as exc:
                # serve on the last routing known; the next beat that gets through re-registers
                lost_s = time.monotonic() - last_ok
                logging.warning("heartbeat failed (%s), mgmtd unreachable for %.1f s", exc.code(), lost_s)
                if self.exit_on_mgmtd_loss and lost_s > self._lease_s / 2:
                    logging.error("mgmtd unreachable for more than half a lease: exiting (partition safety)")
                    os._exit(3)
            except Exception:  # keep heartbeating
                logging.exception("heartbeat handling failed")

    # ---- routing -----------------------------------------------------------------------------
    def refresh_routing(self) -> None:
        """Ask mgmtd for the routing now (a peer named a newer chain version); failures only log."""
        try:
            self.set_routing(self.mgmtd.GetRouting(mgmtd_pb2.GetRoutingReq(), timeout=2).routing)
        except grpc.RpcError as exc:
            logging.warning("routing refresh failed: %s", exc.code())

    def set_routing(self, routing: common_pb2.RoutingInfo) -> None:
        """Take ``routing`` unless an older one: open new targets' stores, track UPTODATE, tell listeners."""
        with self._routing_lock:
            if routing.routing_version < self._routing.routing_version:
                return
            self._routing = routing
            self._routing_changed.notify_all()
        for chain in routing.chains:
            for t in chain.targets:
                if t.node_id == self.node_id:
                    if t.target_id not in self.stores:
                        d = self.data_dir / f"target-{t.target_id}"
                        self.stores[t.target_id] = ChunkStore(d, t.target_id, self.fsync, self.reserve_bytes)
                    if t.state == TargetState.SERVING:
                        self._uptodate.add(t.target_id)
                    else:
                        self._uptodate.discard(t.target_id)
        for listener in self.routing_listeners:
            listener(routing)

    def wait_routing_change(self, chain: common_pb2.Chain, timeout_s: float = 2.0) -> None:
        """Refresh, then wait up to ``timeout_s`` for ``chain`` to move past its version."""
        self.refresh_routing()
        with self._routing_lock:
            cur = next((c for c in self._routing.chains if c.chain_id == chain.chain_id), None)
            if cur is None or cur.version == chain.version:
                self._routing_changed.wait(timeout_s)

    def my_targets(self) -> list[int]:
        """Ids of the targets the chain table puts on this node."""
        return [t.target_id for c in self._routing.chains for t in c.targets if t.node_id == self.node_id]

    def node(self, node_id: int) -> common_pb2.NodeInfo:
        """The routing table's entry for ``node_id`` (empty if unknown; the table is replaced, never mutated)."""
        return next((n for n in self._routing.nodes if n.node_id == node_id), common_pb2.NodeInfo())

    def chain_of(self, target_id: int) -> tuple[common_pb2.Chain, int]:
        """(chain, position in it) of ``target_id``; NotFound if the chain table has no such target."""
        for c in self._routing.chains:
            for i, t in enumerate(c.targets):
                if t.target_id == target_id:
                    return c, i
        raise errors.NotFound(f"target {target_id}", "no such target in the chain table")

    def check_version(self, chain_id: int, version: int) -> common_pb2.Chain:
        """The current chain, after checking the sender's ``version`` (refresh if the sender is newer)."""
        chain = next((c for c in self._routing.chains if c.chain_id == chain_id), None)
        if chain is None or version > chain.version:
            self.refresh_routing()
            chain = next((c for c in self._routing.chains if c.chain_id == chain_id), None)
        if chain is None:
            raise errors.NotFound(f"chain {chain_id}", "no such chain")
        if version < chain.version:
            raise errors.StaleChainVersion(
                f"chain {chain_id}", f"version {version} < current {chain.version}"
            )
        return chain

    # ---- stores and locks --------------------------------------------------------------------
    def store(self, target_id: int) -> ChunkStore:
        """The chunk store of a hosted target; NotFound if this node does not host it."""
        store = self.stores.get(target_id)
        if store is None:
            raise errors.NotFound(f"target {target_id}", f"not hosted on storage node {self.node_id}")
        return store

    def lock(self, target_id: int, cid: tuple[int, int]) -> threading.Lock:
        """The lock that serializes updates (and resync) of one chunk of one target."""
        key = (target_id, *cid)
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock
