"""Open files keep their data until the last close on any client (readers too), and a client that
dies without closing loses its hold when its lease runs out (meta then removes the chunks)."""

from __future__ import annotations

import os
import time

import pytest

from fs3 import LocalCluster, LocalClusterConfig
from fs3 import errors as E
from fs3.protos import storage_pb2

LEASE_S = 1.5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two storage servers, two replicas, 64 KiB chunks, and a meta lease of 1.5 s."""
    cfg = LocalClusterConfig(
        num_storage=2,
        replicas=2,
        num_chains=2,
        chunk_size=64 << 10,
        extra_env={"FS3_META_LEASE_S": str(LEASE_S)},
    )
    with LocalCluster(cfg, tmp_path_factory.mktemp("open-files")) as c:
        yield c


def _chunks_of(client, inode_id: int) -> int:
    """Chunks of ``inode_id`` stored on any target."""
    n = 0
    for chain in client.routing.chains:
        for t in chain.targets:
            rsp = client.chunks.stub(t.node_id).DumpChunkMeta(
                storage_pb2.DumpChunkMetaReq(target_id=t.target_id), timeout=10
            )
            n += sum(1 for m in rsp.chunks if m.chunk.inode_id == inode_id)
    return n


def test_reader_keeps_data_after_unlink_and_replace_on_another_client(cluster):
    a, b = cluster.client(), cluster.client()
    data = os.urandom(8 << 20)
    a.write_bytes("/ckpt", data)
    ino = a.stat("/ckpt").st_ino
    with a.open("/ckpt", "rb") as f:
        assert f.read(1000) == data[:1000]
        b.write_bytes("/ckpt.tmp", b"new" * 1000)
        b.rename("/ckpt.tmp", "/ckpt")  # atomic replace, as a trainer saves a checkpoint
        assert b.read_bytes("/ckpt") == b"new" * 1000
        time.sleep(3 * LEASE_S)  # the reader's client renews: the hold outlives several leases
        assert f.read() == data[1000:]
        assert a.stat_inode(ino).st_nlink == 0
    # the last close freed it: inode and chunks gone
    with pytest.raises(FileNotFoundError):
        a.stat_inode(ino)
    assert _chunks_of(a, ino) == 0
    # unlink while two clients read: the data stays until both closed
    a.write_bytes("/u", data[: 1 << 20])
    ino = a.stat("/u").st_ino
    fa, fb = a.open("/u", "rb"), b.open("/u", "rb")
    a.remove("/u")
    assert not a.exists("/u")
    fa.close()
    assert fb.read() == data[: 1 << 20]
    assert _chunks_of(a, ino) > 0
    fb.close()
    assert _chunks_of(a, ino) == 0


def test_a_dead_clients_holds_expire_and_meta_removes_the_chunks(cluster):
    a, b = cluster.client(), cluster.client()
    a.write_bytes("/dead", os.urandom(300 << 10))
    ino = a.stat("/dead").st_ino
    f = a.open("/dead", "rb")
    w = a.open("/dead-w", "wb")
    w.write(b"w" * 1000)
    w.flush()
    a.leases.stop()  # the client stops renewing, as if its process died with the files open
    b.remove("/dead")
    assert b.stat_inode(ino).st_nlink == 0 and _chunks_of(b, ino) > 0
    deadline = time.monotonic() + 10 * LEASE_S + 10
    while True:
        try:
            b.stat_inode(ino)
        except FileNotFoundError:
            break
        assert time.monotonic() < deadline, "the dead client's session did not expire"
        time.sleep(0.2)
    while _chunks_of(b, ino):
        assert time.monotonic() < deadline, "meta did not remove the orphan's chunks"
        time.sleep(0.2)
    # a linked file is untouched by the expiry; the dead reader's close now fails clearly
    w.close()
    assert b.read_bytes("/dead-w") == b"w" * 1000
    with pytest.raises(E.NotFound):
        f.close()
    a.close()
