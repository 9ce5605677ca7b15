"""Administration of a running fs3 cluster, whoever started it (``haictl up`` / ``serve``, ``LocalCluster``).

The servers' command lines, the chain table a cluster is created with, its routing info from
mgmtd, the one-time upload of the chain table (3FS's init-cluster) and the wait until every target
serves.
"""

from __future__ import annotations

import sys
import time

import grpc

from fs3 import errors as E
from fs3.mgmtd.client import MgmtdClient
from fs3.protos import common_pb2 as cpb
from fs3.protos import mgmtd_pb2 as gpb

S = cpb.TargetState
FIRST_STORAGE_NODE_ID = 10001  # storage server i (0-based) is node 10001 + i


def storage_node_id(i: int) -> int:
    """Node id of storage server ``i`` (0-based)."""
    return FIRST_STORAGE_NODE_ID + i


# ---- the servers' command lines (LocalCluster, haictl up / serve) --------------------------------
def _opt(flag: str, value: object) -> list[str]:
    return [] if value is None else [flag, str(value)]


def mgmtd_argv(
    host: str,
    port: int,
    db_url: str,
    lease_s: float,
    metrics_port: int | None = None,
    leader_lease_s: float | None = None,
) -> list[str]:
    """``python -m fs3.mgmtd ...``: serve on ``host:port`` with its database at ``db_url`` (shared by
    every instance of the group: the one holding the leader lease answers)."""
    return [sys.executable, "-m", "fs3.mgmtd", "--host", host, "--port", str(port), "--db", db_url,
            "--lease-s", str(lease_s), *_opt("--metrics-port", metrics_port),
            *_opt("--leader-lease-s", leader_lease_s)]  # fmt: skip


def meta_argv(
    host: str,
    port: int,
    db_url: str,
    mgmtd: str,
    heartbeat_s: float | None = None,
    metrics_port: int | None = None,
) -> list[str]:
    """``python -m fs3.meta ...``: serve on ``host:port``, registered with the mgmtd at ``mgmtd``."""
    return [sys.executable, "-m", "fs3.meta", "--host", host, "--port", str(port), "--db", db_url,
            "--mgmtd", mgmtd, *_opt("--heartbeat-s", heartbeat_s), *_opt("--metrics-port", metrics_port)]  # fmt: skip


def storage_argv(
    index: int,
    host: str,
    port: int,
    data_dir: object,
    mgmtd: str,
    data_port: int,
    heartbeat_s: float | None = None,
    metrics_port: int | None = None,
    fsync: bool = True,
    reserve_bytes: int | None = None,
    scrub_rate_bytes_s: int | None = None,
    scrub_pause_s: float | None = None,
) -> list[str]:
    """``python -m fs3.storage ...`` of storage server ``index`` (node ``storage_node_id(index)``);
    ``data_port`` -1 serves no data port, 0 a free one."""
    return [sys.executable, "-m", "fs3.storage", "--host", host, "--port", str(port),
            "--node-id", str(storage_node_id(index)), "--data-dir", str(data_dir), "--mgmtd", mgmtd,
            *_opt("--heartbeat-s", heartbeat_s), *_opt("--metrics-port", metrics_port),
            *([] if fsync else ["--no-fsync"]), *_opt("--scrub-rate-bytes-s", scrub_rate_bytes_s),
            *_opt("--scrub-pause-s", scrub_pause_s), "--data-port", str(data_port),
            *_opt("--reserve-bytes", reserve_bytes)]  # fmt: skip


def chain_table_request(
    num_storage: int,
    replicas: int,
    chunk_size: int,
    num_chains: int = 0,
    stripe: int = 0,
    max_file_size: int = 1 << 40,
) -> gpb.SetChainTableReq:
    """Chains of ``replicas`` targets over storage nodes 10001.., rotated so every node heads some chains."""
    num_chains = num_chains or 2 * num_storage
    req = gpb.SetChainTableReq(
        chunk_size=chunk_size, stripe=stripe or num_chains, max_file_size=max_file_size
    )
    for chain_id in range(1, num_chains + 1):
        nodes = [(chain_id - 1 + r) % num_storage for r in range(replicas)]
        req.chains.add(
            chain_id=chain_id,
            target_ids=[storage_node_id(n) * 1000 + chain_id for n in nodes],
            node_ids=[storage_node_id(n) for n in nodes],
        )
    return req


def routing(mgmtd_address: str, timeout_s: float = 10.0) -> cpb.RoutingInfo:
    """The current routing info (chains, targets, nodes) from the leading mgmtd of ``mgmtd_address``
    (``HOST:PORT[,HOST:PORT...]``: every instance; standbys point to the leader)."""
    client = MgmtdClient(mgmtd_address)
    try:
        return client.GetRouting(gpb.GetRoutingReq(), timeout=timeout_s).routing
    except grpc.RpcError as exc:
        raise E.from_rpc_error(exc, "mgmtd") from None
    finally:
        client.close()


def ensure_chain_table(mgmtd_address: str, req: gpb.SetChainTableReq) -> bool:
    """Upload ``req`` unless mgmtd already has a chain table (3FS's init-cluster); True if uploaded."""
    if routing(mgmtd_address).chains:
        return False
    client = MgmtdClient(mgmtd_address)
    try:
        client.SetChainTable(req, timeout=30)
    finally:
        client.close()
    return True


def wait_cluster_serving(mgmtd_address: str, timeout_s: float = 60.0) -> cpb.RoutingInfo:
    """Wait until every target of every chain is SERVING on a storage node that heartbeats, and a meta is alive.

    Targets of a fresh chain table start SERVING before their servers ever registered: requiring the
    heartbeat as well keeps a server that died at start-up from passing for a serving one.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        r = routing(mgmtd_address)
        alive = {n.node_id for n in r.nodes if n.alive}
        if all(t.state == S.SERVING and t.node_id in alive for ch in r.chains for t in ch.targets) and any(
            n.role == "meta" and n.alive for n in r.nodes
        ):
            return r
        if time.monotonic() > deadline:
            states = {ch.chain_id: [(t.target_id, S.Name(t.state)) for t in ch.targets] for ch in r.chains}
            raise TimeoutError(f"cluster not serving after {timeout_s:.0f} s: {states}")
        time.sleep(0.1)
