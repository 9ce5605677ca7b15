"""``LocalCluster``: mgmtd, meta and N storage servers as real processes on free loopback ports.

Used by the tests, the benchmark and (later) ``haictl up``. Every process is started through
``ffcommon.launcher.Launcher`` in its own process group and is killed when the context exits.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ffcommon import db
from ffcommon.launcher import Launcher
from ffcommon.ports import free_port
from fs3 import admin
from fs3.client import FS3Client
from fs3.protos import common_pb2 as cpb

S = cpb.TargetState


@dataclass
class LocalClusterConfig:
    """Shape and timing of a LocalCluster (not the cluster TOML: that is fireflyer.config.ClusterConfig)."""

    num_storage: int = 3  # storage server processes (node ids 10001..)
    replicas: int = 3  # targets per chain (<= num_storage)
    num_chains: int = 0  # 0 = 2 per storage server
    chunk_size: int = 1 << 20  # bytes
    stripe: int = 0  # chains per file; 0 = all chains
    lease_s: float = 3.0  # mgmtd declares a node dead after this long without heartbeat
    mgmtd_standbys: int = 0  # extra mgmtd instances on the same database (launcher names mgmtd-1, ...)
    leader_lease_s: float = 3.0  # a standby mgmtd takes over after the leader is silent this long
    heartbeat_s: float = 0.5  # storage/meta heartbeat interval
    max_file_size: int = 1 << 40  # bytes
    fsync: bool = True  # fsync chunk files before acknowledging
    data_ports: bool = True  # storage servers serve chunk reads/updates on a data port (False: gRPC only)
    # storage scrubber pace, bytes/s; 0 (the default here, so tests that flip bytes race no repair): off;
    # -1: the server's own default (32 MiB/s, what haictl up and deployments run)
    scrub_rate_bytes_s: int = 0
    scrub_pause_s: float = -1.0  # pause between scrub passes; -1: the server's default (30 s)
    storage_reserve_bytes: int = -1  # free bytes each target keeps back (ENOSPC under it); -1: 5 %, <= 1 GiB
    storage_args: tuple[str, ...] = ()  # extra flags for every storage server (e.g. data-port limits)
    db_url: str = ""  # meta+mgmtd database; "" = SQLite file in the work dir
    host: str = "127.0.0.1"
    extra_env: dict[str, str] = field(default_factory=dict)


class LocalCluster:
    """A running local fs3 cluster; a context manager."""

    def __init__(self, config: LocalClusterConfig | None = None, work_dir: str | Path | None = None) -> None:
        self.config = config or LocalClusterConfig()
        c = self.config
        if not 1 <= c.replicas <= c.num_storage:
            raise ValueError(f"replicas: {c.replicas} must be in 1..num_storage ({c.num_storage})")
        self._tmp = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fs3-cluster-")
            work_dir = self._tmp.name
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.launcher = Launcher(self.work_dir / "logs")
        self.db_url = c.db_url or db.sqlite_url(self.work_dir / "fs3.db")
        self.mgmtd_port = free_port(c.host)
        # every mgmtd instance: index 0 ("mgmtd") starts first and so leads; 1.. ("mgmtd-N") stand by
        self.mgmtd_ports = [self.mgmtd_port, *(free_port(c.host) for _ in range(c.mgmtd_standbys))]
        self.meta_port = free_port(c.host)
        self.storage_ports = [free_port(c.host) for _ in range(c.num_storage)]
        # fixed like every other port: an ephemeral bind at start-up could take a port chosen above for
        # a service not yet (re)started, e.g. meta's after a whole-cluster restart
        self.data_ports = [free_port(c.host) for _ in range(c.num_storage)]
        # Prometheus /metrics of each process, by launcher name (mgmtd, meta, storage-0, ...)
        names = [*map(self.mgmtd_name, range(len(self.mgmtd_ports))), "meta"]
        names += [f"storage-{i}" for i in range(c.num_storage)]
        self.metrics_ports = {n: free_port(c.host) for n in names}
        self.num_chains = c.num_chains or 2 * c.num_storage
        self._clients: list[FS3Client] = []

    # ---- addresses ---------------------------------------------------------------------------
    @property
    def mgmtd_address(self) -> str:
        """Every mgmtd instance, ``HOST:PORT[,HOST:PORT...]`` (what services and clients are given)."""
        return ",".join(f"{self.config.host}:{p}" for p in self.mgmtd_ports)

    @staticmethod
    def mgmtd_name(i: int) -> str:
        """Launcher name of mgmtd instance ``i``: ``mgmtd``, then ``mgmtd-1``, ``mgmtd-2``..."""
        return "mgmtd" if i == 0 else f"mgmtd-{i}"

    @property
    def meta_address(self) -> str:
        return f"{self.config.host}:{self.meta_port}"

    @staticmethod
    def storage_node_id(i: int) -> int:
        """Node id of storage server ``i`` (0-based)."""
        return admin.storage_node_id(i)

    def storage_dir(self, i: int) -> Path:
        """Data directory of storage server ``i``."""
        return self.work_dir / f"storage-{i}"

    def target_dir(self, target_id: int) -> Path:
        """Data directory of one target."""
        node = target_id // 1000 - admin.FIRST_STORAGE_NODE_ID
        return self.storage_dir(node) / f"target-{target_id}"

    # ---- processes ---------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        """Start mgmtd, upload the chain table, start storage servers and meta; wait until all serve."""
        c = self.config
        for i in range(len(self.mgmtd_ports)):
            self.start_mgmtd(i)
        if not self.routing().chains:  # a restart keeps the persisted chain table
            self._upload_chain_table()
        for i in range(c.num_storage):
            self.start_storage(i, wait=False)
        for i in range(c.num_storage):
            from ffcommon.ports import wait_for_port

            wait_for_port(c.host, self.storage_ports[i], 30, self.launcher.procs[f"storage-{i}"].popen)
        self.start_meta()
        self.wait_serving()
        return self

    def start_mgmtd(self, i: int = 0) -> None:
        """(Re)start mgmtd instance ``i`` on its port; it leads if no other instance holds the lease."""
        c = self.config
        name, port = self.mgmtd_name(i), self.mgmtd_ports[i]
        self.launcher.start(
            name,
            admin.mgmtd_argv(c.host, port, self.db_url, c.lease_s, self.metrics_ports[name],
                             leader_lease_s=c.leader_lease_s),
            port=(c.host, port), env=c.extra_env,
        )  # fmt: skip

    def _upload_chain_table(self) -> None:
        c = self.config
        req = admin.chain_table_request(
            c.num_storage, c.replicas, c.chunk_size, self.num_chains, c.stripe, c.max_file_size
        )
        admin.ensure_chain_table(self.mgmtd_address, req)

    def start_storage(self, i: int, wait: bool = True) -> None:
        """(Re)start storage server ``i`` on its port and data directory."""
        c = self.config
        argv = admin.storage_argv(
            i, c.host, self.storage_ports[i], self.storage_dir(i), self.mgmtd_address,
            data_port=self.data_ports[i] if c.data_ports else -1, heartbeat_s=c.heartbeat_s,
            metrics_port=self.metrics_ports[f"storage-{i}"], fsync=c.fsync,
            reserve_bytes=c.storage_reserve_bytes if c.storage_reserve_bytes >= 0 else None,
            scrub_rate_bytes_s=c.scrub_rate_bytes_s if c.scrub_rate_bytes_s >= 0 else None,
            scrub_pause_s=c.scrub_pause_s if c.scrub_pause_s >= 0 else None,
        ) + list(c.storage_args)  # fmt: skip
        self.launcher.start(
            f"storage-{i}", argv, port=(c.host, self.storage_ports[i]) if wait else None, env=c.extra_env
        )

    def start_meta(self) -> None:
        """(Re)start the meta server."""
        c = self.config
        self.launcher.start(
            "meta",
            admin.meta_argv(c.host, self.meta_port, self.db_url, self.mgmtd_address, c.heartbeat_s,
                            self.metrics_ports["meta"]),
            port=(c.host, self.meta_port), env=c.extra_env,
        )  # fmt: skip

    def metrics_url(self, name: str) -> str:
        """Where process ``name`` (``mgmtd``, ``meta``, ``storage-N``) serves Prometheus metrics."""
        return f"http://{self.config.host}:{self.metrics_ports[name]}/metrics"

    def kill_storage(self, i: int) -> None:
        """SIGKILL storage server ``i`` (a crash)."""
        self.launcher.kill(f"storage-{i}")

    def kill_meta(self) -> None:
        """SIGKILL the meta server."""
        self.launcher.kill("meta")

    def stop(self) -> None:
        """Close clients and stop every process."""
        for cl in self._clients:
            try:
                cl.close()
            except Exception:  # best effort on teardown
                pass
        self.launcher.stop_all(grace_s=3)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- state -------------------------------------------------------------------------------
    def routing(self) -> cpb.RoutingInfo:
        """The current routing info from mgmtd."""
        return admin.routing(self.mgmtd_address)

    def wait_serving(self, timeout_s: float = 60.0) -> cpb.RoutingInfo:
        """Wait until every target of every chain is SERVING and meta is registered."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.routing()
            ok = all(t.state == S.SERVING for ch in r.chains for t in ch.targets) and any(
                n.role == "meta" and n.alive for n in r.nodes
            )
            if ok:
                return r
            if time.monotonic() > deadline:
                states = {
                    ch.chain_id: [(t.target_id, S.Name(t.state)) for t in ch.targets] for ch in r.chains
                }
                raise TimeoutError(f"cluster not serving after {timeout_s:.0f} s: {states}")
            time.sleep(0.1)

    def wait_for(
        self, predicate: object, timeout_s: float = 60.0, what: str = "condition"
    ) -> cpb.RoutingInfo:
        """Wait until ``predicate(routing)`` is true."""
        deadline = time.monotonic() + timeout_s
        while True:
            r = self.routing()
            if predicate(r):  # type: ignore[operator]
                return r
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout_s:.0f} s")
            time.sleep(0.1)

    def client(self, uid: int = 0, gid: int = 0, **kwargs: object) -> FS3Client:
        """A client of this cluster (closed with the cluster)."""
        cl = FS3Client(self.mgmtd_address, self.meta_address, uid=uid, gid=gid, **kwargs)  # type: ignore[arg-type]
        self._clients.append(cl)
        return cl
