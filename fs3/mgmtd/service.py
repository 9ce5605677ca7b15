"""The mgmtd servicer: keeps nodes, leases and the chain table; applies the target-state rules.

State lives in the same database as meta (tables ``mgmtd_*``), so a restart keeps the chain table.
Node leases are in memory: after a restart every known node gets a fresh lease.

Several instances may share one database: the one holding the leader lease (``fs3.mgmtd.leader``)
answers; the others answer ``UNAVAILABLE: ENOTLEADER: ...; leader is HOST:PORT`` until the lease
expires, then one of them reloads the tables and leads. Its routing versions start above every
version its predecessor can have handed out (``epoch << 32``), so nobody ignores its routing as old.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

import grpc
from prometheus_client.core import GaugeMetricFamily, Metric

from ffcommon.db import Database
from fs3.mgmtd.client import NOT_LEADER
from fs3.mgmtd.leader import LeaderLease, NotLeader
from fs3.protos import common_pb2, mgmtd_pb2, mgmtd_pb2_grpc
from fs3.protos.common_pb2 import TargetState

_ORDER = {
    TargetState.SERVING: 0,
    TargetState.SYNCING: 1,
    TargetState.WAITING: 2,
    TargetState.LASTSRV: 3,
    TargetState.OFFLINE: 4,
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS mgmtd_config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mgmtd_nodes (node_id BIGINT PRIMARY KEY, address TEXT NOT NULL, role TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mgmtd_chains (chain_id BIGINT PRIMARY KEY, version BIGINT NOT NULL, targets TEXT NOT NULL)
"""

DEFAULT_MAX_FILE_SIZE = 1 << 40
EPOCH_SHIFT = 32  # routing_version = epoch << 32 | changes within the epoch

F = TypeVar("F", bound=Callable[..., Any])


def _leader_only(method: F) -> F:
    """Answer ENOTLEADER (UNAVAILABLE, naming the leader) unless this instance leads."""

    @wraps(method)
    def wrapper(self: MgmtdService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            self.lease.check()
            return method(self, request, context)
        except NotLeader as exc:
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"{NOT_LEADER}: mgmtd {self.lease.address} is a standby; leader is {exc.leader or 'unknown'}",
            )

    return wrapper  # type: ignore[return-value]


class MgmtdService(mgmtd_pb2_grpc.MgmtdServicer):
    """Cluster manager; only the instance holding the leader lease answers and changes the chain table."""

    def __init__(
        self,
        db_url: str,
        lease_s: float = 60.0,
        scan_interval_s: float = 0.2,
        address: str = "",
        leader_lease_s: float = 3.0,
    ) -> None:
        self.db = Database(db_url)
        self.db.executescript(SCHEMA)
        self.lease_s = lease_s
        self._lock = threading.RLock()
        self._reset()
        self.lease = LeaderLease(
            self.db,
            address,
            lease_s=leader_lease_s,
            renew_s=min(0.5, leader_lease_s / 4),
            on_elected=self._take_over,
        )
        self.lease.start()
        self._stop = threading.Event()
        self._scanner = threading.Thread(target=self._scan_loop, args=(scan_interval_s,), daemon=True)
        self._scanner.start()

    def _reset(self) -> None:
        """Empty in-memory state (before a load from the database)."""
        self._nodes: dict[int, dict] = {}  # node_id -> {address, role, last_hb (monotonic), last_wall}
        self._chains: dict[int, dict] = {}  # chain_id -> {version, targets: [[tid, nid, state]]}
        self._local: dict[int, int] = {}  # target_id -> last reported LocalState
        # target_id -> (total bytes, free bytes, read-only) as last reported; not persisted (resent every beat)
        self._space: dict[int, tuple[int, int, bool]] = {}
        self._config = {"chunk_size": 1 << 20, "stripe": 1, "max_file_size": DEFAULT_MAX_FILE_SIZE}
        self._routing_version = 1
        self._fresh: set[int] = set()  # targets of a new chain table that never reported: hold no data
        self._started = time.monotonic()

    def _take_over(self, epoch: int) -> None:
        """On election: reload the tables; every node gets a fresh lease (rebuilt from its heartbeats)."""
        with self._lock:
            self._reset()
            self._load()
            self._routing_version = max(self._routing_version, epoch << EPOCH_SHIFT)

    # ---- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        def load(cur: object) -> tuple:
            return (
                cur.execute("SELECT key, value FROM mgmtd_config"),
                cur.execute("SELECT node_id, address, role FROM mgmtd_nodes"),
                cur.execute("SELECT chain_id, version, targets FROM mgmtd_chains"),
            )

        cfg, nodes, chains = self.db.run(load, write=False)
        for k, v in cfg:
            if k in self._config:
                self._config[k] = int(v)
            elif k == "routing_version":
                self._routing_version = int(v) + 1
            elif k == "fresh_targets":
                self._fresh = set(json.loads(v))
        now = time.monotonic()
        for nid, addr, role in nodes:
            self._nodes[int(nid)] = {"address": addr, "role": role, "last_hb": now, "last_wall": time.time()}
        for cid, ver, targets in chains:
            self._chains[int(cid)] = {"version": int(ver), "targets": json.loads(targets)}
        if chains:
            logging.info("loaded %d chains, %d nodes from the database", len(chains), len(nodes))

    def _save_chains(self, chain_ids: list[int]) -> None:
        rows = [
            (cid, self._chains[cid]["version"], json.dumps(self._chains[cid]["targets"])) for cid in chain_ids
        ]
        rv = self._routing_version
        fresh = json.dumps(sorted(self._fresh))

        def save(cur: object) -> None:
            self.lease.fence(cur)
            for cid, ver, targets in rows:
                cur.execute("DELETE FROM mgmtd_chains WHERE chain_id = ?", (cid,))
                cur.execute("INSERT INTO mgmtd_chains VALUES (?, ?, ?)", (cid, ver, targets))
            cur.execute("DELETE FROM mgmtd_config WHERE key IN ('routing_version', 'fresh_targets')")
            cur.execute("INSERT INTO mgmtd_config VALUES ('routing_version', ?)", (str(rv),))
            cur.execute("INSERT INTO mgmtd_config VALUES ('fresh_targets', ?)", (fresh,))

        self.db.run(save)

    # ---- rules -------------------------------------------------------------------------------
    def _alive(self, node_id: int, now: float) -> bool:
        node = self._nodes.get(node_id)
        last = node["last_hb"] if node else self._started
        return now - last < self.lease_s

    def _reconcile(self) -> None:
        """Apply the state-transition rules to every chain; bump versions of changed chains."""
        now = time.monotonic()
        changed = []
        for cid, chain in self._chains.items():
            old = [list(t) for t in chain["targets"]]
            targets = chain["targets"]
            for t in targets:
                tid, nid, state = t
                if not self._alive(nid, now):
                    if state == TargetState.SERVING:
                        others = [u for u in targets if u is not t and u[2] == TargetState.SERVING]
                        t[2] = TargetState.OFFLINE if others else TargetState.LASTSRV
                    elif state in (TargetState.SYNCING, TargetState.WAITING):
                        t[2] = TargetState.OFFLINE
            has_serving = any(t[2] == TargetState.SERVING for t in targets)
            for t in targets:
                tid, nid, state = t
                if not self._alive(nid, now) or tid not in self._local:
                    continue
                if state == TargetState.LASTSRV and not has_serving:
                    t[2] = TargetState.SERVING
                    has_serving = True
            for t in targets:
                tid, nid, state = t
                if not self._alive(nid, now) or tid not in self._local:
                    continue
                if state in (TargetState.OFFLINE, TargetState.WAITING):
                    t[2] = TargetState.SYNCING if has_serving else TargetState.WAITING
            targets.sort(key=lambda t: _ORDER[t[2]])  # stable: serving keep their order
            if targets != old:
                chain["version"] += 1
                changed.append(cid)
                logging.info(
                    "chain %d -> v%d: %s",
                    cid,
                    chain["version"],
                    [(t[0], TargetState.Name(t[2])) for t in targets],
                )
        if changed:
            self._routing_version += 1
            self._save_chains(changed)

    def _scan_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            if not self.lease.is_leader():
                continue
            try:
                with self._lock:
                    self._reconcile()
            except NotLeader:
                pass  # deposed meanwhile; the next leader reloads from the database
            except Exception:  # keep scanning; the next pass retries
                logging.exception("chain scan failed")

    def stop(self) -> None:
        """Stop the background scanner and hand the leader lease back (a standby takes over at once)."""
        self._stop.set()
        self.lease.stop(release=True)

    # ---- wire --------------------------------------------------------------------------------
    def routing(self) -> common_pb2.RoutingInfo:
        """The current routing table as a message."""
        now = time.monotonic()
        info = common_pb2.RoutingInfo(
            routing_version=self._routing_version,
            chunk_size=self._config["chunk_size"],
            stripe=self._config["stripe"],
            max_file_size=self._config["max_file_size"],
        )
        for cid in sorted(self._chains):
            ch = self._chains[cid]
            msg = info.chains.add(chain_id=cid, version=ch["version"])
            for tid, nid, state in ch["targets"]:
                total, free, read_only = self._space.get(tid, (0, 0, False))
                msg.targets.add(
                    target_id=tid,
                    node_id=nid,
                    state=state,
                    total_bytes=total,
                    free_bytes=free,
                    read_only=read_only,
                )
        for nid in sorted(self._nodes):
            n = self._nodes[nid]
            info.nodes.add(
                node_id=nid,
                address=n["address"],
                role=n["role"],
                alive=self._alive(nid, now),
                last_heartbeat_s=n["last_wall"],
                data_address=n.get("data_address", ""),
            )
        return info

    @_leader_only
    def Heartbeat(
        self, request: mgmtd_pb2.HeartbeatReq, context: grpc.ServicerContext
    ) -> mgmtd_pb2.HeartbeatRsp:
        if request.node_id == 0 or not request.address or request.role not in ("storage", "meta"):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "EINVAL: heartbeat: node_id, address and role are required"
            )
        with self._lock:
            node = self._nodes.get(request.node_id)
            if node is None or node["address"] != request.address or node["role"] != request.role:
                self.db.run(
                    lambda cur: (
                        self.lease.fence(cur),
                        cur.execute("DELETE FROM mgmtd_nodes WHERE node_id = ?", (request.node_id,)),
                        cur.execute(
                            "INSERT INTO mgmtd_nodes VALUES (?, ?, ?)",
                            (request.node_id, request.address, request.role),
                        ),
                    )
                )
                self._routing_version += 1
            if node is not None and node.get("data_address", "") != request.data_address:
                self._routing_version += 1  # clients route reads by it (not persisted: resent every beat)
            self._nodes[request.node_id] = {
                "address": request.address,
                "role": request.role,
                "last_hb": time.monotonic(),
                "last_wall": time.time(),
                "data_address": request.data_address,
            }
            for rep in request.targets:
                old = self._space.get(rep.target_id)
                self._space[rep.target_id] = (rep.total_bytes, rep.free_bytes, rep.read_only)
                if old is not None and old[2] != rep.read_only:
                    self._routing_version += 1
                    logging.info(
                        "target %d: read-only %s (%d bytes free)",
                        rep.target_id,
                        rep.read_only,
                        rep.free_bytes,
                    )
            if request.restarted:
                # A fresh process: all its targets go offline before anything else (3FS recovery step 1).
                changed = []
                for cid, chain in self._chains.items():
                    for t in chain["targets"]:
                        if t[0] in self._fresh:
                            continue  # a target of a new table has no data to be stale about
                        if t[1] == request.node_id and t[2] in (
                            TargetState.SERVING,
                            TargetState.SYNCING,
                            TargetState.WAITING,
                        ):
                            others = [
                                u for u in chain["targets"] if u is not t and u[2] == TargetState.SERVING
                            ]
                            t[2] = (
                                TargetState.OFFLINE
                                if (others or t[2] != TargetState.SERVING)
                                else TargetState.LASTSRV
                            )
                            changed.append(cid)
                    if cid in changed:
                        chain["targets"].sort(key=lambda t: _ORDER[t[2]])
                        chain["version"] += 1
                        logging.info(
                            "node %d restarted: chain %d -> v%d", request.node_id, cid, chain["version"]
                        )
                for tid in [tid for tid, _ in self._local.items()]:
                    if any(
                        t[0] == tid and t[1] == request.node_id
                        for c in self._chains.values()
                        for t in c["targets"]
                    ):
                        self._local.pop(tid, None)
                if changed:
                    self._routing_version += 1
                    self._save_chains(sorted(set(changed)))
            else:
                for rep in request.targets:
                    self._local[rep.target_id] = rep.local_state
                reported = {rep.target_id for rep in request.targets}
                if self._fresh & reported:
                    self._fresh -= reported
                    self._routing_version += 1
                    self._save_chains([])
                self._reconcile()
            return mgmtd_pb2.HeartbeatRsp(routing=self.routing(), lease_s=self.lease_s)

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector: leadership, and on the leader target states, node liveness, chain versions."""
        yield GaugeMetricFamily(
            "fs3_mgmtd_leader",
            "1 while this mgmtd instance holds the leader lease",
            value=int(self.lease.is_leader()),
        )
        if not self.lease.is_leader():
            return
        with self._lock:
            info = self.routing()
        targets = GaugeMetricFamily("fs3_targets", "Storage targets by public state", labels=["state"])
        counts = dict.fromkeys(
            (n for n in common_pb2.TargetState.keys() if n != "TARGET_STATE_UNSPECIFIED"), 0
        )
        for ch in info.chains:
            for t in ch.targets:
                counts[common_pb2.TargetState.Name(t.state)] += 1
        for state, n in counts.items():
            targets.add_metric([state], n)
        nodes = GaugeMetricFamily(
            "fs3_nodes", "Registered fs3 services by role and liveness", labels=["role", "alive"]
        )
        alive: dict[tuple[str, str], int] = {}
        for node in info.nodes:
            key = (node.role, "true" if node.alive else "false")
            alive[key] = alive.get(key, 0) + 1
        for key, n in sorted(alive.items()):
            nodes.add_metric(list(key), n)
        versions = GaugeMetricFamily(
            "fs3_chain_version", "Version of each chain (bumped on every membership change)", labels=["chain"]
        )
        for ch in info.chains:
            versions.add_metric([str(ch.chain_id)], ch.version)
        free = GaugeMetricFamily(
            "fs3_target_free_bytes",
            "Free bytes of each storage target's disk, as last reported",
            labels=["target"],
        )
        read_only = GaugeMetricFamily(
            "fs3_target_read_only", "1 when a target is under its reserve (no new chunks)", labels=["target"]
        )
        for ch in info.chains:
            for t in ch.targets:
                if t.total_bytes:
                    free.add_metric([str(t.target_id)], t.free_bytes)
                    read_only.add_metric([str(t.target_id)], int(t.read_only))
        yield targets
        yield nodes
        yield versions
        yield free
        yield read_only
        yield GaugeMetricFamily("fs3_routing_version", "Routing table version", value=info.routing_version)

    @_leader_only
    def GetRouting(
        self, request: mgmtd_pb2.GetRoutingReq, context: grpc.ServicerContext
    ) -> mgmtd_pb2.GetRoutingRsp:
        with self._lock:
            return mgmtd_pb2.GetRoutingRsp(routing=self.routing())

    @_leader_only
    def SetChainTable(
        self, request: mgmtd_pb2.SetChainTableReq, context: grpc.ServicerContext
    ) -> mgmtd_pb2.SetChainTableRsp:
        if not request.chains:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "EINVAL: chains: at least one chain is required")
        chunk_size = request.chunk_size or (1 << 20)
        if chunk_size & (chunk_size - 1) or not (64 << 10) <= chunk_size <= (64 << 20):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"EINVAL: chunk_size: {chunk_size} is not a power of two in 64 KiB..64 MiB",
            )
        stripe = request.stripe or len(request.chains)
        if stripe > len(request.chains):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"EINVAL: stripe: {stripe} > {len(request.chains)} chains"
            )
        seen: set[int] = set()
        for spec in request.chains:
            if not spec.target_ids or len(spec.target_ids) != len(spec.node_ids):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"EINVAL: chain {spec.chain_id}: target_ids and node_ids must be non-empty and equal length",
                )
            if seen & set(spec.target_ids):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"EINVAL: chain {spec.chain_id}: target reused"
                )
            seen |= set(spec.target_ids)
        with self._lock:
            self._config.update(
                chunk_size=chunk_size,
                stripe=stripe,
                max_file_size=request.max_file_size or DEFAULT_MAX_FILE_SIZE,
            )
            self._fresh = {t for spec in request.chains for t in spec.target_ids}
            for spec in request.chains:
                old = self._chains.get(spec.chain_id)
                self._chains[spec.chain_id] = {
                    "version": (old["version"] + 1) if old else 1,
                    "targets": [
                        [t, n, TargetState.SERVING]
                        for t, n in zip(spec.target_ids, spec.node_ids, strict=True)
                    ],
                }
            self._started = time.monotonic()  # unknown nodes get one lease to show up
            self._routing_version += 1
            cfg = dict(self._config)

            def save_cfg(cur: object) -> None:
                self.lease.fence(cur)
                for k, v in cfg.items():
                    cur.execute("DELETE FROM mgmtd_config WHERE key = ?", (k,))
                    cur.execute("INSERT INTO mgmtd_config VALUES (?, ?)", (k, str(v)))

            self.db.run(save_cfg)
            self._save_chains(list(self._chains))
            return mgmtd_pb2.SetChainTableRsp(routing=self.routing())

    @_leader_only
    def SyncDone(
        self, request: mgmtd_pb2.SyncDoneReq, context: grpc.ServicerContext
    ) -> mgmtd_pb2.SyncDoneRsp:
        with self._lock:
            chain = self._chains.get(request.chain_id)
            if chain is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"ENOENT: chain {request.chain_id}: no such chain")
            if chain["version"] != request.chain_version:
                context.abort(
                    grpc.StatusCode.ABORTED,
                    f"ESTALE: chain {request.chain_id}: version {request.chain_version} != {chain['version']}",
                )
            for t in chain["targets"]:
                if t[0] == request.target_id and t[2] == TargetState.SYNCING:
                    t[2] = TargetState.SERVING
                    chain["targets"].sort(key=lambda t: _ORDER[t[2]])
                    chain["version"] += 1
                    self._routing_version += 1
                    self._save_chains([request.chain_id])
                    logging.info(
                        "chain %d: target %d sync done -> v%d", request.chain_id, t[0], chain["version"]
                    )
                    return mgmtd_pb2.SyncDoneRsp(routing=self.routing())
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"ENOTSERVING: target {request.target_id}: not syncing in chain {request.chain_id}",
            )
