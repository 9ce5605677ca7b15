"""mgmtd has no single point of failure: a standby leads within 10 s of the leader's kill -9 or SIGSTOP,
I/O goes on meanwhile, no server exits, and with every mgmtd down storage serves on the routing it knows."""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest
from click.testing import CliRunner

from ffcommon.db import Database
from fireflyer.cli.main import cli
from fs3 import LocalCluster, LocalClusterConfig
from fs3.mgmtd.client import NOT_LEADER
from fs3.mgmtd.leader import LeaderLease, NotLeader
from fs3.protos import common_pb2 as cpb
from fs3.protos import mgmtd_pb2, mgmtd_pb2_grpc

S = cpb.TargetState
TAKEOVER_LIMIT_S = 10.0


@pytest.fixture
def ha_cluster(tmp_path):
    """Three storage servers, one meta, a leading mgmtd and one standby, on one SQLite database."""
    cfg = LocalClusterConfig(
        num_storage=3, replicas=3, num_chains=3, chunk_size=64 << 10, mgmtd_standbys=1, leader_lease_s=2.0
    )
    with LocalCluster(cfg, work_dir=tmp_path / "c") as c:
        yield c


def ask(address: str, timeout_s: float = 0.5) -> cpb.RoutingInfo:
    """GetRouting from one mgmtd instance itself (no following of the leader)."""
    import fs3._rpc as rpc

    with rpc.channel(address) as ch:
        return mgmtd_pb2_grpc.MgmtdStub(ch).GetRouting(mgmtd_pb2.GetRoutingReq(), timeout=timeout_s).routing


class Load:
    """A writer (new 96 KiB files, each acknowledged on close) and a reader of acknowledged files."""

    def __init__(self, client) -> None:
        self.client = client
        self.acked: dict[str, bytes] = {}
        self.errors: list[BaseException] = []
        self.reads = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write), threading.Thread(target=self._read)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _write(self) -> None:
        i = 0
        while not self._stop.is_set():
            data = os.urandom(96 << 10)
            path = f"/load-{i}"
            try:
                self.client.write_bytes(path, data)
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
                return
            self.acked[path] = data
            i += 1

    def _read(self) -> None:
        while not self._stop.wait(0.02):
            if not self.acked:
                continue
            path = list(self.acked)[-1]
            try:
                assert self.client.read_bytes(path) == self.acked[path], f"{path} read back wrong"
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.reads += 1

    def count(self) -> tuple[int, int]:
        return len(self.acked), self.reads


def scrape(url: str) -> str:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10).read().decode()


def servers_alive(cluster: LocalCluster) -> dict[str, bool]:
    return {
        name: p.popen.poll() is None
        for name, p in cluster.launcher.procs.items()
        if name == "meta" or name.startswith("storage")
    }


@pytest.mark.parametrize("how", ["kill", "sigstop"])
def test_standby_leads_after_leader_dies_while_io_goes_on(ha_cluster, how):
    takeover_under_load(ha_cluster, how)


@pytest.mark.postgres
def test_standby_on_postgres_leads_after_leader_is_killed(tmp_path, postgres_url):
    """The lease row on PostgreSQL, the database that mgmtd instances on different hosts share."""
    from tests.fs3.conftest import _fresh_pg_db

    cfg = LocalClusterConfig(
        num_storage=3, replicas=3, num_chains=3, chunk_size=64 << 10, mgmtd_standbys=1, leader_lease_s=2.0,
        db_url=_fresh_pg_db(postgres_url),
    )  # fmt: skip
    with LocalCluster(cfg, work_dir=tmp_path / "c") as c:
        takeover_under_load(c, "kill")
        # the new leader dies too and the first comes back: until the dead one's lease runs out only a
        # standby answers, and a call waits for the takeover instead of failing
        c.launcher.kill("mgmtd-1")
        c.start_mgmtd(0)
        assert c.routing().chains
        assert "fs3_mgmtd_leader 1.0" in scrape(c.metrics_url("mgmtd"))


def takeover_under_load(c: LocalCluster, how: str) -> None:
    """Kill -9 or SIGSTOP the leader under a writer and a reader; check the standby leads, I/O goes on."""
    leader, standby = (f"{c.config.host}:{p}" for p in c.mgmtd_ports)
    with pytest.raises(grpc.RpcError) as info:
        ask(standby)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert NOT_LEADER in info.value.details() and f"leader is {leader}" in info.value.details()
    assert "fs3_mgmtd_leader 0.0" in scrape(c.metrics_url("mgmtd-1"))
    before = {ch.chain_id: ch.version for ch in ask(leader).chains}
    old_version = ask(leader).routing_version
    cl = c.client(timeout_s=30)
    pid = c.launcher.procs["mgmtd"].popen.pid
    with Load(cl) as load:
        while load.count()[0] < 3 and not load.errors:
            time.sleep(0.05)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
        try:
            while True:
                try:
                    routing = ask(standby)
                    break
                except grpc.RpcError:
                    assert time.monotonic() - t0 < TAKEOVER_LIMIT_S, "no standby took over in time"
                    time.sleep(0.05)
            takeover_s = time.monotonic() - t0
            print(f"mgmtd takeover after {how}: {takeover_s:.2f} s")
            assert "fs3_mgmtd_leader 1.0" in scrape(c.metrics_url("mgmtd-1"))
            at_takeover = load.count()
            # I/O goes on under the new leader, and nothing exited meanwhile
            deadline = time.monotonic() + 30
            while load.count()[0] < at_takeover[0] + 3 or load.count()[1] <= at_takeover[1]:
                assert not load.errors, load.errors
                assert time.monotonic() < deadline, "I/O stalled after the takeover"
                time.sleep(0.05)
        finally:
            if how == "sigstop":
                os.kill(pid, signal.SIGCONT)
    assert not load.errors, load.errors
    assert all(servers_alive(c).values()), servers_alive(c)
    # nothing died: the takeover bumped no chain; the new routing is newer than any the old leader gave
    assert {ch.chain_id: ch.version for ch in routing.chains} == before
    assert routing.routing_version > old_version
    assert all(t.state == S.SERVING for ch in routing.chains for t in ch.targets)
    out = CliRunner().invoke(cli, ["fs", "--mgmtd", c.mgmtd_address, "status"])
    assert out.exit_code == 0 and f"mgmtd leader {standby}, standbys {leader}" in out.output, out.output
    if how == "sigstop":  # the old leader woke up and now stands by, pointing at the new one
        deadline = time.monotonic() + 10
        while True:
            try:
                ask(leader, timeout_s=2)
            except grpc.RpcError as exc:
                if NOT_LEADER in (exc.details() or ""):
                    assert f"leader is {standby}" in exc.details()
                    break
            assert time.monotonic() < deadline, "the woken leader still answers as leader"
            time.sleep(0.1)
    for path, data in load.acked.items():
        assert cl.read_bytes(path) == data, f"acknowledged {path} lost"
    assert len(load.acked) >= 6


def test_storage_serves_with_every_mgmtd_down_and_reregisters(ha_cluster):
    c = ha_cluster
    cl = c.client(timeout_s=30)
    cl.write_bytes("/before", b"x" * 100_000)
    before = {ch.chain_id: ch.version for ch in c.routing().chains}
    for i in range(len(c.mgmtd_ports)):
        c.launcher.kill(c.mgmtd_name(i))
    down_at = time.time()
    # longer than a node lease and than the old "half a lease" exit: storage and meta stay, I/O goes on
    deadline = time.monotonic() + c.config.lease_s + 1.5
    n = 0
    while time.monotonic() < deadline:
        data = os.urandom(70_000)
        cl.write_bytes(f"/down-{n}", data)
        assert cl.read_bytes(f"/down-{n}") == data
        n += 1
    assert cl.read_bytes("/before") == b"x" * 100_000
    assert all(servers_alive(c).values()), servers_alive(c)
    logs = "".join(p.log_text() for name, p in c.launcher.procs.items() if name.startswith("storage"))
    assert "mgmtd unreachable" in logs and "exiting" not in logs
    for i in range(len(c.mgmtd_ports)):
        c.start_mgmtd(i)
    # every server heartbeats to the new leader by itself; nothing was bumped meanwhile
    routing = c.wait_for(
        lambda r: len(r.nodes) == 4 and all(nd.alive and nd.last_heartbeat_s > down_at for nd in r.nodes),
        timeout_s=30,
        what="every server re-registered",
    )
    assert {ch.chain_id: ch.version for ch in routing.chains} == before
    assert all(servers_alive(c).values())
    for k in range(n):
        assert len(cl.read_bytes(f"/down-{k}")) == 70_000
    # a server that (re)starts while no mgmtd answers starts anyway and joins once one is back
    for i in range(len(c.mgmtd_ports)):
        c.launcher.kill(c.mgmtd_name(i))
    c.kill_storage(0)
    c.start_storage(0)
    time.sleep(1.0)
    assert c.launcher.procs["storage-0"].popen.poll() is None, c.launcher.procs["storage-0"].log_text()
    assert "first heartbeat failed" in c.launcher.procs["storage-0"].log_text()
    for i in range(len(c.mgmtd_ports)):
        c.start_mgmtd(i)
    c.wait_for(
        lambda r: all(t.state == S.SERVING for ch in r.chains for t in ch.targets),
        timeout_s=60,
        what="the restarted server resynced and serving",
    )
    assert cl.read_bytes("/before") == b"x" * 100_000


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_leader_lease_one_holder_expiry_and_fencing(backend, tmp_path, request):
    if backend == "postgres":
        from tests.fs3.conftest import _fresh_pg_db

        url = _fresh_pg_db(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'lease.db'}"
    a = LeaderLease(Database(url), "a:1", lease_s=1.0, renew_s=0.2)
    b = LeaderLease(Database(url), "b:2", lease_s=1.0, renew_s=0.2)
    assert a.try_acquire() and not b.try_acquire()
    assert a.is_leader() and not b.is_leader() and b.leader_address == "a:1"
    with pytest.raises(NotLeader, match="leader is a:1"):
        b.check()
    time.sleep(1.2)  # a is frozen: it does not renew, its lease runs out
    assert not a.is_leader()
    assert b.try_acquire() and b.epoch == a.epoch + 1
    # a wakes up: it cannot renew, and its writes are fenced off
    with pytest.raises(NotLeader):
        a.db.run(a.fence)
    assert not a.try_acquire() and a.leader_address == "b:2"
    b.db.run(b.fence)  # the holder passes its own fence
    b.stop(release=True)  # a clean stop hands the lease over at once
    assert a.try_acquire()
    with pytest.raises(ValueError, match="leader_lease_s"):
        LeaderLease(Database(url), "c:3", lease_s=0.3, renew_s=0.2)
