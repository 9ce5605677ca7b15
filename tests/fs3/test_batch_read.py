"""BatchRead: many chunk reads per RPC (one per storage node), with per-item errors and per-chunk fallback."""

from __future__ import annotations

import os

import grpc
import pytest

from fs3 import LocalCluster, LocalClusterConfig
from fs3.client.client import FS3Client
from fs3.protos import common_pb2 as cpb
from fs3.protos import storage_pb2 as spb
from fs3.protos import storage_pb2_grpc
from fs3.storage.service import StorageService
from fs3.wire import parse_batch_read_rsp

S = cpb.TargetState
CHUNK = 64 << 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cfg = LocalClusterConfig(num_storage=3, replicas=2, num_chains=3, chunk_size=CHUNK, fsync=False)
    with LocalCluster(cfg, tmp_path_factory.mktemp("batch")) as c:
        yield c


@pytest.fixture(params=["dataport", "grpc"])
def transport(request) -> str:
    """Chunk reads over the storage data ports (the default) or over gRPC BatchRead/Read only."""
    return request.param


def _check_transport(cl: FS3Client, transport: str) -> None:
    if transport == "dataport":
        assert cl.stats.data_port_items > 0
    else:
        assert cl.stats.data_port_items == 0


def test_multi_chunk_reads_across_chains_match_what_was_written(cluster, transport):
    cl = cluster.client(data_port=transport == "dataport")
    size = 20 * CHUNK + 1234  # short last chunk
    expect = bytearray(size)
    with cl.open("/holes", "wb") as f:
        for start, n in [(0, 3 * CHUNK), (5 * CHUNK + 100, 2 * CHUNK), (12 * CHUNK, 1), (size - 5000, 5000)]:
            blob = os.urandom(n)
            f.pwrite(blob, start)
            expect[start : start + n] = blob
    # chunks 3, 4 and 8..11 are holes; chunk 7 ends short inside the file
    before = cl.stats.batch_reads
    with cl.open("/holes", "rb") as f:
        assert f.read() == bytes(expect)
        for off, n in [
            (1, size - 2),
            (CHUNK - 7, 3 * CHUNK + 11),
            (4 * CHUNK + 5, 9 * CHUNK),
            (size - 70000, 10**6),
        ]:
            assert f.pread(n, off) == bytes(expect[off : off + n]), (off, n)
        buf = bytearray(6 * CHUNK + 3)
        assert f.preadinto(buf, 2 * CHUNK + 1) == len(buf)
        assert buf == expect[2 * CHUNK + 1 : 8 * CHUNK + 4]
    assert cl.stats.batch_reads > before
    assert cl.stats.batch_fallbacks == 0
    assert cl.stats.corrupt_reads == []
    _check_transport(cl, transport)


def test_batch_is_capped_per_rpc(cluster, monkeypatch, transport):
    from fs3.client import chunks as client_mod

    monkeypatch.setattr(client_mod, "BATCH_MAX_ITEMS", 2)
    cl = cluster.client(data_port=transport == "dataport")
    data = os.urandom(12 * CHUNK)
    cl.write_bytes("/capped", data)
    before = cl.stats.batch_reads
    assert cl.read_bytes("/capped") == data
    assert cl.stats.batch_reads - before >= 6  # 12 chunks, at most 2 per RPC
    _check_transport(cl, transport)


def test_corrupted_chunk_inside_a_batch_is_read_from_another_replica(cluster3, transport):
    cl = cluster3.client(data_port=transport == "dataport")
    cs = 256 << 10
    data = os.urandom(9 * cs)
    cl.write_bytes("/c", data)
    st = cl.stat("/c")
    index = 4  # in the middle of the batch
    chain_id = st.chains[index % len(st.chains)]
    chain = next(ch for ch in cl.refresh_routing().chains if ch.chain_id == chain_id)
    victim = chain.targets[
        FS3Client.first_replica(st.st_ino, index, len(chain.targets))
    ].target_id  # asked first
    path = cluster3.target_dir(victim) / "chunks" / f"{st.st_ino:016x}" / f"{index:08x}"
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with cl.open("/c", "rb") as f:
        assert f.read() == data
    assert any(f"target {victim}" in r for r in cl.stats.corrupt_reads), cl.stats.corrupt_reads
    assert cl.stats.batch_fallbacks >= 1
    assert cl.stats.batch_reads >= 1
    _check_transport(cl, transport)


def test_batch_spanning_a_killed_storage_server_completes_via_fallback(cluster3, transport):
    cl = cluster3.client(timeout_s=60, data_port=transport == "dataport")
    data = os.urandom(12 * (256 << 10) + 777)
    cl.write_bytes("/k", data)
    r = cl.refresh_routing()  # everything SERVING in the client's view
    st = cl.stat("/k")
    # kill the node that the batch asks for chunk 0, so at least that item must fall back
    chain = next(ch for ch in r.chains if ch.chain_id == st.chains[0])
    node = chain.targets[FS3Client.first_replica(st.st_ino, 0, len(chain.targets))].node_id
    cluster3.kill_storage(node - 10001)
    with cl.open("/k", "rb") as f:
        assert f.read() == data  # batches to the dead node fail; their chunks come from other replicas
    assert cl.stats.batch_fallbacks >= 1
    assert cl.read_bytes("/k") == data
    _check_transport(cl, transport)


# ---- gRPC level: one in-process storage node (the ``node`` fixture) ------------------------------
INODE = 7


def _commit(svc: StorageService, tid: int, index: int, content: bytes, version: int = 1) -> None:
    store = svc.targets.stores[tid]
    store.stage((INODE, index), version, content, 1)
    store.commit((INODE, index))


def _batch(ch: grpc.Channel, items: list[spb.ReadReq]) -> dict[int, tuple[bool, int, bytes, str]]:
    """{item: (found, chunk_length, data, error)} decoded from the raw reply stream."""
    call = ch.unary_stream("/fs3.Storage/BatchRead", request_serializer=spb.BatchReadReq.SerializeToString)
    out: dict[int, tuple[bool, int, bytes, str]] = {}
    order = []
    for raw in call(spb.BatchReadReq(items=items), timeout=10):
        i, found, clen, data, err = parse_batch_read_rsp(raw)
        if i not in out:
            order.append(i)
            out[i] = (found, clen, b"", err)
        f, c, d, e = out[i]
        out[i] = (f, c, d + bytes(data), e)
    assert order == sorted(order), "items must be answered in request order"
    return out


def _req(tid: int, index: int, offset: int = 0, length: int = 0, relaxed: bool = False) -> spb.ReadReq:
    return spb.ReadReq(
        target_id=tid,
        chunk=spb.ChunkId(inode_id=INODE, index=index),
        offset=offset,
        length=length,
        relaxed=relaxed,
    )


def test_batch_read_applies_reads_checks_per_item(node, mixed_chunks):
    _, ch, _ = node
    big, small = mixed_chunks  # big: three 1 MiB pieces
    got = _batch(
        ch,
        [
            _req(101, 0),  # 0: whole big chunk
            _req(101, 1, 10, 100),  # 1: a range
            _req(101, 9),  # 2: a hole
            _req(101, 2),  # 3: pending -> EPENDING
            _req(101, 2, relaxed=True),  # 4: relaxed -> committed version
            _req(102, 0),  # 5: target not serving -> ENOTSERVING
            _req(102, 0, relaxed=True),  # 6: relaxed read of a non-serving target
            _req(101, 3),  # 7: corrupted -> ECHECKSUM
            _req(999, 0),  # 8: no such target -> ENOENT
            _req(101, 1, 900, 500),  # 9: range past the chunk's end -> short
        ],
    )
    assert sorted(got) == list(range(10))
    assert got[0] == (True, len(big), big, "")
    assert got[1] == (True, len(small), small[10:110], "")
    assert got[2] == (False, 0, b"", "")
    assert got[3][3].startswith("EPENDING: chunk 7:2") and got[3][2] == b""
    assert got[4] == (True, 30, b"old" * 10, "")
    assert got[5][3].startswith("ENOTSERVING: target 102") and "WAITING" in got[5][3]
    assert got[6] == (True, 14, b"waiting target", "")
    assert got[7][3].startswith("ECHECKSUM: chunk 7:3") and got[7][2] == b""
    assert got[8][3].startswith("ENOENT: target 999")
    assert got[9] == (True, len(small), small[900:], "")


def test_batch_read_errors_match_what_read_aborts_with(node):
    svc, ch, _ = node
    _commit(svc, 101, 0, b"x" * 10)
    svc.targets.stores[101].stage((INODE, 0), 2, b"y", 1)
    stub = storage_pb2_grpc.StorageStub(ch)
    for req in (_req(101, 0), _req(102, 0), _req(999, 0)):
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Read(req, timeout=10))
        (item,) = _batch(ch, [req]).values()
        assert item[3] == ei.value.details()
