"""Scrub and repair: flipped bytes in head, middle and tail replicas are found by the scrubber, reported
(log, metric, ``haictl fs status``) and repaired from a good replica; a write on a corrupt head and a
resync from a corrupt source repair instead of failing; an all-corrupt chunk is EIO at once."""

from __future__ import annotations

import errno
import hashlib
import os
import time
import urllib.request

import pytest
from click.testing import CliRunner

from fireflyer.cli.main import cli
from fs3 import LocalCluster, LocalClusterConfig
from fs3.protos import common_pb2 as cpb

S = cpb.TargetState
CHUNK = 64 << 10


def one_chain(**kw: object) -> LocalClusterConfig:
    """Three servers, one chain of three targets: head on storage-0, middle storage-1, tail storage-2."""
    return LocalClusterConfig(num_storage=3, replicas=3, num_chains=1, chunk_size=CHUNK, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scrubbed(tmp_path_factory):
    """A cluster whose scrubbers run fast, back to back."""
    cfg = one_chain(scrub_rate_bytes_s=64 << 20, scrub_pause_s=0.2)
    with LocalCluster(cfg, work_dir=tmp_path_factory.mktemp("scrub") / "c") as c:
        yield c


@pytest.fixture(scope="module")
def unscrubbed(tmp_path_factory):
    """A cluster without scrubbers: only reads, writes and resyncs meet the corruption."""
    with LocalCluster(
        one_chain(scrub_rate_bytes_s=0), work_dir=tmp_path_factory.mktemp("noscrub") / "c"
    ) as c:
        yield c


def chunk_file(cluster: LocalCluster, target_id: int, inode: int, index: int):
    return cluster.target_dir(target_id) / "chunks" / f"{inode:016x}" / f"{index:08x}"


def flip(path, at: int = 1000) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def targets(cluster: LocalCluster) -> list[int]:
    """The chain's targets, head first."""
    (chain,) = cluster.routing().chains
    return [t.target_id for t in chain.targets]


def replica_hashes(cluster: LocalCluster, inode: int, index: int) -> set[str]:
    return {
        hashlib.sha256(chunk_file(cluster, t, inode, index).read_bytes()).hexdigest()
        for t in targets(cluster)
    }


def storage_logs(cluster: LocalCluster) -> str:
    return "".join(p.log_text() for n, p in cluster.launcher.procs.items() if n.startswith("storage"))


def metric(cluster: LocalCluster, proc: str, name: str, target: int) -> float:
    text = urllib.request.urlopen(cluster.metrics_url(proc), timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{target="{target}"}}'):
            return float(line.split()[-1])
    return 0.0


def wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:.0f} s"
        time.sleep(0.2)


def test_scrubber_finds_reports_and_repairs_head_middle_and_tail(scrubbed):
    c = scrubbed
    cl = c.client()
    data = os.urandom(3 * CHUNK)
    cl.write_bytes("/scrub", data)
    ino = cl.stat("/scrub").st_ino
    head, middle, tail = targets(c)
    for index, victim in enumerate((head, middle, tail)):  # chunk 0 bad on the head, 1 on the middle...
        flip(chunk_file(c, victim, ino, index), at=100 + index)
    wait(
        lambda: all(len(replica_hashes(c, ino, i)) == 1 for i in range(3)),
        60,
        "every replica repaired to one content",
    )
    assert cl.read_bytes("/scrub") == data
    usage = {u.target_id: u for u in cl.target_usage(exact_bytes=False)}
    for i, victim in enumerate((head, middle, tail)):
        u = usage[victim]
        assert u.corrupt_chunks == 1 and u.repaired_chunks == 1 and u.unrepaired_chunks == 0, u
        assert metric(c, f"storage-{i}", "fs3_scrub_corrupt_chunks_total", victim) == 1
        assert metric(c, f"storage-{i}", "fs3_scrub_repaired_chunks_total", victim) == 1
        assert metric(c, f"storage-{i}", "fs3_scrub_verified_bytes_total", victim) > 0
    logs = storage_logs(c)
    for index, victim in enumerate((head, middle, tail)):
        assert f"target {victim}: chunk {ino}:{index} is corrupt (scrub)" in logs
        assert f"target {victim}: repaired chunk {ino}:{index} (version 1) from target" in logs
    assert "scrub pass" in logs
    out = CliRunner().invoke(cli, ["fs", "--mgmtd", c.mgmtd_address, "status"])
    assert out.exit_code == 0, out.output
    assert out.output.count("(scrub: 1 corrupt found, 1 repaired)") == 3, out.output


def test_write_on_a_corrupt_head_repairs_it_and_succeeds(unscrubbed):
    c = unscrubbed
    cl = c.client()
    data = bytearray(os.urandom(CHUNK))
    cl.write_bytes("/head", bytes(data))
    ino = cl.stat("/head").st_ino
    head = targets(c)[0]
    flip(chunk_file(c, head, ino, 0))
    with cl.open("/head", "r+b") as f:  # a partial write: the head must read its old bytes
        f.pwrite(b"new bytes", 500)
    data[500:509] = b"new bytes"
    assert cl.read_bytes("/head") == bytes(data)
    assert len(replica_hashes(c, ino, 0)) == 1
    assert f"target {head}: chunk {ino}:0 is corrupt (write)" in storage_logs(c)
    assert f"target {head}: repaired chunk {ino}:0 (version 1) from target" in storage_logs(c)


def test_resync_from_a_corrupt_source_fetches_the_chunk_elsewhere(unscrubbed):
    c = unscrubbed
    cl = c.client()
    head, middle, tail = targets(c)
    c.kill_storage(2)  # the tail goes; the middle will resync it when it returns
    c.wait_for(
        lambda r: any(t.target_id == tail and t.state == S.OFFLINE for t in r.chains[0].targets),
        what="the killed tail to go offline",
    )
    data = os.urandom(2 * CHUNK)
    cl.write_bytes("/during", data)  # the returning tail lacks these chunks
    ino = cl.stat("/during").st_ino
    flip(chunk_file(c, middle, ino, 1))  # the resync source's copy of one of them is bad
    c.start_storage(2)
    c.wait_for(
        lambda r: all(t.state == S.SERVING for t in r.chains[0].targets),
        timeout_s=60,
        what="the tail resynced and serving",
    )
    assert all(len(replica_hashes(c, ino, i)) == 1 for i in range(2))
    assert cl.read_bytes("/during") == data
    logs = c.launcher.procs["storage-1"].log_text()
    assert f"target {middle}: chunk {ino}:1 is corrupt (resync source)" in logs
    assert f"target {middle}: repaired chunk {ino}:1 (version 1) from target {head}" in logs
    assert f"resynced target {tail}" in logs


def test_all_replicas_corrupt_is_eio_at_once_not_at_the_timeout(unscrubbed):
    c = unscrubbed
    cl = c.client(timeout_s=60)
    cl.write_bytes("/allbad", os.urandom(CHUNK))
    ino = cl.stat("/allbad").st_ino
    for t in targets(c):
        flip(chunk_file(c, t, ino, 0))
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        cl.read_bytes("/allbad")
    took = time.monotonic() - t0
    print(f"all-corrupt read: EIO after {took:.3f} s")
    assert info.value.errno == errno.EIO and "checksum" in str(info.value)
    assert took < 30, f"{took:.1f} s: EIO came from the client timeout, not from the replicas"
    with pytest.raises(OSError) as info:  # and a write over it cannot fake a repair
        with cl.open("/allbad", "r+b") as f:
            f.pwrite(b"x", 10)
    assert info.value.errno == errno.EIO
    cl.remove("/allbad")  # leave no unrepairable chunk behind for a later resync of this cluster
