"""fs3 fixtures: local clusters of real processes, and a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ffcommon.ports import free_port
from fs3 import LocalCluster, LocalClusterConfig

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + argv


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL 15 server initdb'd in a temp dir on a free port; stopped at the end of the session."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg 3 not installed")
    tmp = Path(tempfile.mkdtemp(prefix="fs3-pg-"))
    data = tmp / "data"
    os.chmod(tmp, 0o777)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "pg.log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


def _fresh_pg_db(base_url: str) -> str:
    import psycopg

    name = f"fs3_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ns_cluster(request, tmp_path_factory):
    """A small cluster (1 storage, 1 replica) over SQLite or PostgreSQL, shared by a module's namespace tests."""
    db_url = ""
    if request.param == "postgres":
        db_url = _fresh_pg_db(request.getfixturevalue("postgres_url"))
    cfg = LocalClusterConfig(
        num_storage=2, replicas=2, num_chains=2, chunk_size=64 << 10, db_url=db_url, max_file_size=1 << 30
    )
    with LocalCluster(cfg, tmp_path_factory.mktemp(f"ns-{request.param}")) as c:
        c.backend = request.param
        yield c


@pytest.fixture
def cluster3(tmp_path):
    """A fresh 3-server cluster with 3-way replication and short leases (for failure tests)."""
    cfg = LocalClusterConfig(
        num_storage=3, replicas=3, num_chains=3, chunk_size=256 << 10, lease_s=2.0, heartbeat_s=0.3
    )
    with LocalCluster(cfg, tmp_path / "cluster") as c:
        yield c


@pytest.fixture
def node(tmp_path):
    """(service, gRPC channel, data port) of one in-process storage node 1 with a hand-made chain table.

    Target 101 (chain 1) is SERVING, target 102 (chain 2) WAITING; tests stage chunks in its stores.
    """
    from fs3 import _rpc
    from fs3.protos import common_pb2 as cpb
    from fs3.protos import storage_pb2_grpc
    from fs3.storage.dataport import DataServer
    from fs3.storage.service import StorageService

    svc = StorageService(1, "unused", str(tmp_path / "data"), mgmtd="127.0.0.1:1")
    routing = cpb.RoutingInfo(routing_version=1)
    routing.chains.add(chain_id=1, version=1).targets.add(target_id=101, node_id=1, state=cpb.SERVING)
    routing.chains.add(chain_id=2, version=1).targets.add(target_id=102, node_id=1, state=cpb.WAITING)
    svc.targets.set_routing(routing)
    server = _rpc.make_server(max_workers=4)
    storage_pb2_grpc.add_StorageServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    data = DataServer("127.0.0.1", 0, svc.reader.read_item, "test-node", update=svc.updater.update)
    data.start()
    ch = _rpc.channel(f"127.0.0.1:{port}")
    try:
        yield svc, ch, data
    finally:
        data.stop()
        ch.close()
        server.stop(0)


@pytest.fixture
def mixed_chunks(node):
    """Chunks of inode 7 on ``node`` covering every answer a chunk read can get; returns (big, small).

    Target 101: chunk 0 ``big`` (over 2 MiB), 1 ``small`` (1000 bytes), 2 ``b"old" * 10`` with a
    pending write, 3 corrupted on disk; chunk 9 is a hole. Target 102 (WAITING): chunk 0 ``b"waiting
    target"``. The BatchRead and data-port tests ask for the same items and expect the same answers.
    """
    svc = node[0]

    def commit(tid: int, index: int, content: bytes) -> None:
        svc.targets.stores[tid].stage((7, index), 1, content, 1)
        svc.targets.stores[tid].commit((7, index))

    big, small = os.urandom((2 << 20) + 5), os.urandom(1000)
    commit(101, 0, big)
    commit(101, 1, small)
    commit(101, 2, b"old" * 10)
    svc.targets.stores[101].stage((7, 2), 2, b"new", 1)  # a pending write on chunk 2
    commit(102, 0, b"waiting target")
    commit(101, 3, os.urandom(4096))
    p = svc.targets.stores[101].corrupt_for_test((7, 3))
    p.write_bytes(b"\0" + p.read_bytes()[1:])
    return big, small
