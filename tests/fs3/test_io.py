"""Chunk I/O through the native client on a 3-way replicated cluster of real processes."""

from __future__ import annotations

import io
import os
import threading

import grpc
import pytest

from fs3 import LocalCluster, LocalClusterConfig
from fs3 import errors as E
from fs3._rpc import channel
from fs3.crc import crc32c
from fs3.protos import storage_pb2 as spb
from fs3.protos import storage_pb2_grpc
from fs3.wire import update_pieces as pieces

CHUNK = 64 << 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cfg = LocalClusterConfig(
        num_storage=3, replicas=3, num_chains=3, chunk_size=CHUNK, max_file_size=64 << 20
    )
    with LocalCluster(cfg, tmp_path_factory.mktemp("io")) as c:
        yield c


@pytest.fixture
def cl(cluster):
    return cluster.client()


def replica_views(cluster, client):
    """{chain_id: [sorted (chunk, version, crc, length) per target]} straight from every replica."""
    views = {}
    routing = client.refresh_routing()
    addr = {n.node_id: n.address for n in routing.nodes}
    for ch in routing.chains:
        per = []
        for t in ch.targets:
            with channel(addr[t.node_id]) as c:
                rsp = storage_pb2_grpc.StorageStub(c).DumpChunkMeta(
                    spb.DumpChunkMetaReq(target_id=t.target_id)
                )
            per.append(
                sorted(
                    (m.chunk.inode_id, m.chunk.index, m.committed_version, m.crc32c, m.length)
                    for m in rsp.chunks
                )
            )
        views[ch.chain_id] = per
    return views


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK // 2, 3 << 20])
def test_roundtrip_and_replicas_agree(cluster, cl, size):
    data = os.urandom(size)
    path = f"/rt-{size}"
    cl.write_bytes(path, data)
    assert cl.stat(path).st_size == size
    assert cl.read_bytes(path) == data
    for per in replica_views(cluster, cl).values():
        assert per[0] == per[1] == per[2]


def test_positioned_io_holes_and_overwrites(cl):
    with cl.open("/pos", "w+b") as f:
        f.pwrite(b"A" * 100, 5 * CHUNK + 10)  # leaves a hole of 5 chunks
        f.pwrite(b"B" * (2 * CHUNK), CHUNK // 2)  # spans three chunks
        expect = bytearray(5 * CHUNK + 110)
        expect[5 * CHUNK + 10 :] = b"A" * 100
        expect[CHUNK // 2 : CHUNK // 2 + 2 * CHUNK] = b"B" * (2 * CHUNK)
        assert f.pread(len(expect) + 50, 0) == bytes(expect)
        assert f.pread(10, CHUNK * 4) == bytes(10)
        f.seek(-5, io.SEEK_END)
        assert f.read() == b"A" * 5 and f.tell() == len(expect)
        f.seek(3)
        f.write(b"xyz")
        f.flush()
        assert f.pread(6, 0) == b"\0\0\0xyz"
        f.truncate(CHUNK)
        assert f.size == CHUNK
    assert cl.read_bytes("/pos") == bytes(3) + b"xyz" + bytes(CHUNK // 2 - 6) + b"B" * (CHUNK // 2)


def test_append_text_mode_and_small_writes(cl):
    with cl.open("/log.txt", "w") as f:
        f.write("line 1\n")
    with cl.open("/log.txt", "a") as f:
        for i in range(2, 200):
            f.write(f"line {i}\n")
    with cl.open("/log.txt") as f:
        lines = f.read().splitlines()
    assert lines == [f"line {i}" for i in range(1, 200)]
    with pytest.raises(FileExistsError):
        cl.open("/log.txt", "x")
    with pytest.raises(IsADirectoryError):
        cl.open("/", "rb")


def test_concurrent_pwrites_from_threads(cl):
    part = 3 * CHUNK + 123
    blobs = [os.urandom(part) for _ in range(6)]
    with cl.open("/par", "wb") as f:
        ts = [threading.Thread(target=f.pwrite, args=(b, i * part)) for i, b in enumerate(blobs)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert cl.read_bytes("/par") == b"".join(blobs)


def test_remove_deletes_chunks_on_every_replica(cluster, cl):
    cl.write_bytes("/gone", os.urandom(4 * CHUNK))
    ino = cl.stat("/gone").st_ino
    cl.remove("/gone")
    for per in replica_views(cluster, cl).values():
        for rows in per:
            assert not [r for r in rows if r[0] == ino]


def _head_update(cl, **overrides):
    """Send one raw Update to the head of chain 1; returns the RpcError or the response."""
    ch = cl.routing_cache.chain(1)
    head = ch.targets[overrides.pop("position", 0)]
    data = overrides.pop("data", b"payload")
    header = spb.UpdateReq(
        chain_id=1,
        chain_version=ch.version,
        target_id=head.target_id,
        chunk=spb.ChunkId(inode_id=999999, index=0),
        type=spb.WRITE,
        offset=0,
        length=len(data),
        chunk_size=CHUNK,
        payload_crc32c=crc32c(data),
        from_client=True,
    )
    for k, v in overrides.items():
        if k == "index":
            header.chunk.index = v
        else:
            setattr(header, k, v)
    try:
        return cl.chunks.stub(head.node_id).Update(pieces(header, data), timeout=10)
    except grpc.RpcError as exc:
        return exc


@pytest.mark.parametrize(
    "overrides, code, words",
    [
        ({"payload_crc32c": 12345}, grpc.StatusCode.DATA_LOSS, "checksum"),
        ({"chunk_size": 1000}, grpc.StatusCode.INVALID_ARGUMENT, "chunk_size"),
        ({"offset": CHUNK - 2}, grpc.StatusCode.INVALID_ARGUMENT, "exceeds chunk size"),
        ({"max_file_size": CHUNK, "index": 1}, grpc.StatusCode.OUT_OF_RANGE, "EFBIG"),
        ({"chain_version": 0}, grpc.StatusCode.ABORTED, "ESTALE"),
        ({"target_id": 42}, grpc.StatusCode.NOT_FOUND, "target 42"),
        ({"type": spb.UPDATE_TYPE_UNSPECIFIED}, grpc.StatusCode.INVALID_ARGUMENT, "type"),
    ],
)
def test_storage_rejects_bad_updates(cl, overrides, code, words):
    res = _head_update(cl, **overrides)
    assert isinstance(res, grpc.RpcError), res
    assert res.code() == code and words in res.details()
    assert cl.read_chunk(_fake_inode(), 0, 0, 10, memoryview(bytearray(10))) == 0  # nothing was stored


def _fake_inode():
    from fs3.protos import common_pb2 as cpb

    return cpb.Inode(inode_id=999999, type=1, layout=cpb.Layout(chunk_size=CHUNK, stripe=1, chains=[1]))


def test_write_to_a_non_head_is_refused(cl):
    ch = cl.routing_cache.chain(1)
    res = _head_update(cl, target_id=ch.targets[1].target_id, position=1)
    assert isinstance(res, grpc.RpcError) and res.code() == grpc.StatusCode.UNAVAILABLE
    assert "ENOTSERVING" in res.details()


def test_file_size_limit_through_the_file_api(cl, cluster):
    with cl.open("/limit", "wb") as f:
        f.seek(cluster.config.max_file_size - 1)
        f.write(b"z")
        with pytest.raises(E.FileTooLarge):
            f.write(b"too far")
    assert cl.stat("/limit").st_size == cluster.config.max_file_size
