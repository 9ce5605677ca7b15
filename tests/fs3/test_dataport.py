"""The storage data port: chunk reads over framed TCP with Read's checks, bad frames, timeouts, wire CRCs."""

from __future__ import annotations

import os
import socket
import threading
import time

import grpc
import pytest

from fs3 import errors as E
from fs3 import wire as W
from fs3.client.dataport import ChecksumError, DataPortPool, PartialRead, ReadRequest
from fs3.crc import crc32c
from fs3.protos import common_pb2 as cpb
from fs3.protos import storage_pb2 as spb
from fs3.protos import storage_pb2_grpc
from fs3.storage.dataport import DataServer
from fs3.storage.service import StorageService

S = cpb.TargetState
INODE = 7


def _commit(svc: StorageService, tid: int, index: int, content: bytes, version: int = 1) -> None:
    store = svc.targets.stores[tid]
    store.stage((INODE, index), version, content, 1)
    store.commit((INODE, index))


def _req(
    tid: int, index: int, offset: int = 0, length: int = 0, relaxed: bool = False, size: int = 0
) -> ReadRequest:
    return ReadRequest(
        tid, INODE, index, offset, length, memoryview(bytearray(size or length or 4 << 20)), 0, relaxed
    )


def test_items_get_reads_checks_and_answers(node, mixed_chunks):
    _, _, data = node
    big, small = mixed_chunks
    reqs = [
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
    ]
    pool = DataPortPool(timeout_s=10)
    got = pool.read(data.address, reqs)
    assert len(got) == len(reqs)

    def body(i: int) -> bytes:
        return bytes(reqs[i].sink[: got[i].n])

    assert got[0].status == W.STATUS_DATA and got[0].chunk_length == len(big) and body(0) == big
    assert got[0].committed_version == 1
    assert body(1) == small[10:110] and got[1].chunk_length == len(small)
    assert got[2].status == W.STATUS_HOLE and got[2].n == 0
    assert got[3].status == W.STATUS_ERROR and got[3].error.startswith("EPENDING: chunk 7:2")
    assert got[4].status == W.STATUS_DATA and body(4) == b"old" * 10
    assert got[5].error.startswith("ENOTSERVING: target 102") and "WAITING" in got[5].error
    assert body(6) == b"waiting target"
    assert got[7].error.startswith("ECHECKSUM: chunk 7:3")
    assert got[8].error.startswith("ENOENT: target 999")
    assert body(9) == small[900:]
    # the connection survives per-item errors and is reused
    again = pool.read(data.address, [_req(101, 1)])
    assert again[0].n == len(small)
    pool.close()


def test_errors_match_what_grpc_read_aborts_with(node):
    svc, ch, data = node
    _commit(svc, 101, 0, b"x" * 10)
    svc.targets.stores[101].stage((INODE, 0), 2, b"y", 1)
    stub = storage_pb2_grpc.StorageStub(ch)
    pool = DataPortPool(timeout_s=10)
    for tid in (101, 102, 999):
        with pytest.raises(grpc.RpcError) as ei:
            list(
                stub.Read(spb.ReadReq(target_id=tid, chunk=spb.ChunkId(inode_id=INODE, index=0)), timeout=10)
            )
        (r,) = pool.read(data.address, [_req(tid, 0)])
        assert r.status == W.STATUS_ERROR and r.error == ei.value.details()
    pool.close()


def _raw(data: DataServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", data.port), timeout=10)
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    """Whether the server hung up without answering (a FIN, or a reset when our bytes went unread)."""
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    "frame",
    [
        b"XXXX" + bytes(12),  # wrong magic
        W.BATCH_HEADER.pack(W.MAGIC, 99, 0, 1),  # unknown version
        W.BATCH_HEADER.pack(W.MAGIC, W.VERSION, 0, 0),  # no items
        W.BATCH_HEADER.pack(W.MAGIC, W.VERSION, 0, W.MAX_ITEMS + 1),  # too many items
    ],
    ids=["magic", "version", "zero-items", "too-many-items"],
)
def test_malformed_request_closes_only_that_connection(node, frame):
    svc, _, data = node
    _commit(svc, 101, 0, b"fine")
    s = _raw(data)
    s.sendall(frame)
    assert _closed_by_peer(s)  # closed without an answer
    s.close()
    (r,) = DataPortPool(timeout_s=10).read(data.address, [_req(101, 0)])
    assert r.n == 4


def test_truncated_request_and_out_of_range_ids_do_not_hurt_the_server(node):
    svc, _, data = node
    _commit(svc, 101, 0, b"fine")
    s = _raw(data)
    s.sendall(W.BATCH_HEADER.pack(W.MAGIC, W.VERSION, 0, 2) + bytes(30))  # half an item, then hang up
    s.close()
    pool = DataPortPool(timeout_s=10)
    bad = ReadRequest(
        101, 0, 0, 0, 10, memoryview(bytearray(10))
    )  # inode 0 has no chunks: a hole, as on gRPC
    huge = ReadRequest(101, INODE, 1 << 40, 0, 10, memoryview(bytearray(10)))  # index past MAX_INDEX
    r0, r1, r2 = pool.read(data.address, [bad, huge, _req(101, 0)])
    assert r0.status == W.STATUS_HOLE and r1.error.startswith("EINVAL: chunk 7:1099511627776")
    assert r2.n == 4


class _FakeServer:
    """A data port that answers every item with ``reply(item_header_fields, payload)``-style bytes."""

    def __init__(self, answer) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = answer
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            head = memoryview(bytearray(W.BATCH_HEADER.size))
            W.recv_exact(c, head)
            n = W.BATCH_HEADER.unpack(head)[3]
            W.recv_exact(c, memoryview(bytearray(n * W.READ_ITEM.size)))
            try:
                self.answer(c)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def test_wire_checksum_mismatch_is_an_error_unless_verification_is_off():
    payload = os.urandom(1000)
    fake = _FakeServer(
        lambda c: c.sendall(
            W.ITEM_HEADER.pack(0, W.STATUS_DATA, 1, 1000, 1000, crc32c(payload) ^ 1, 0) + payload
        )
    )
    with pytest.raises(PartialRead) as ei:
        DataPortPool(timeout_s=10).read(fake.address, [_req(101, 0, 0, 1000)])
    assert isinstance(ei.value.cause, ChecksumError) and ei.value.results == []
    (r,) = DataPortPool(timeout_s=10, verify=False).read(fake.address, [_req(101, 0, 0, 1000)])
    assert r.n == 1000
    fake.close()


def test_more_bytes_than_asked_or_a_wrong_item_number_is_a_protocol_error():
    fake = _FakeServer(lambda c: c.sendall(W.ITEM_HEADER.pack(0, W.STATUS_DATA, 1, 5000, 5000, 0, 0)))
    with pytest.raises(PartialRead) as ei:
        DataPortPool(timeout_s=10).read(fake.address, [_req(101, 0, 0, 1000)])
    assert isinstance(ei.value.cause, W.ProtocolError) and "5000 bytes" in str(ei.value.cause)
    fake.close()
    fake = _FakeServer(lambda c: c.sendall(W.ITEM_HEADER.pack(3, W.STATUS_HOLE, 0, 0, 0, 0, 0)))
    with pytest.raises(PartialRead) as ei:
        DataPortPool(timeout_s=10).read(fake.address, [_req(101, 0, 0, 1000)])
    assert "item 3" in str(ei.value.cause)
    fake.close()


def test_a_server_that_stops_answering_times_out():
    stall = threading.Event()
    fake = _FakeServer(
        lambda c: (
            c.sendall(W.ITEM_HEADER.pack(0, W.STATUS_DATA, 1, 100, 100, 0, 0) + b"x" * 10),
            stall.wait(30),
        )
    )
    t0 = time.monotonic()
    with pytest.raises(PartialRead) as ei:
        DataPortPool(timeout_s=1).read(fake.address, [_req(101, 0, 0, 100)])
    assert isinstance(ei.value.cause, TimeoutError)
    assert time.monotonic() - t0 < 20  # bounded by the timeout, not by the stalled peer
    stall.set()
    fake.close()


def test_pool_reconnects_after_the_server_restarts(node):
    svc, _, data = node
    _commit(svc, 101, 0, b"abc")
    pool = DataPortPool(timeout_s=10)
    assert pool.read(data.address, [_req(101, 0)])[0].n == 3
    port = data.port
    data.stop()
    time.sleep(0.1)
    with pytest.raises(OSError):  # the pooled connection is dead; it is dropped with the error
        pool.read(data.address, [_req(101, 0)])
    again = DataServer("127.0.0.1", port, svc.reader.read_item, "test-node-2")
    again.start()
    try:
        assert pool.read(again.address, [_req(101, 0)])[0].n == 3
    finally:
        again.stop()
    pool.close()


def test_crc32c_matches_the_reference_on_every_length_and_alignment():
    import google_crc32c

    assert crc32c(b"123456789") == 0xE3069283
    blob = os.urandom((1 << 20) + 64)
    for n in (0, 1, 7, 8, 9, 255, 256, 767, 768, 769, 8191, 24575, 24576, 24577, 100_000, 1 << 20):
        for off in (0, 1, 5):
            view = memoryview(blob)[off : off + n]
            assert crc32c(view) == google_crc32c.value(bytes(view)), (n, off)
            k = n // 3
            assert crc32c(view[k:], crc32c(view[:k])) == google_crc32c.value(bytes(view)), (n, off)
    assert crc32c(bytearray(b"abc")) == crc32c(b"abc") == crc32c(memoryview(b"xabc")[1:])
    with pytest.raises(ValueError):
        crc32c(memoryview(bytearray(100))[::2])


def test_crc32c_software_fallback_matches(monkeypatch):
    import google_crc32c

    from fs3 import crc

    monkeypatch.setattr(crc, "_native_crc32c", None)
    data = os.urandom(5000)
    assert crc.crc32c(memoryview(data)) == google_crc32c.value(data)
    assert crc.crc32c(data[100:], crc.crc32c(data[:100])) == google_crc32c.value(data)


def test_connections_over_the_limit_are_refused_and_the_rest_keep_working(node):
    svc, _, _ = node
    _commit(svc, 101, 0, b"abc")
    small = DataServer("127.0.0.1", 0, svc.reader.read_item, "small", max_connections=2)
    small.start()
    try:
        pools = [DataPortPool(timeout_s=10) for _ in range(2)]
        for p in pools:  # two connections held open in their pools
            assert p.read(small.address, [_req(101, 0)])[0].n == 3
        with pytest.raises(OSError):
            DataPortPool(timeout_s=10).read(small.address, [_req(101, 0)])
        assert pools[0].read(small.address, [_req(101, 0)])[0].n == 3  # the open ones still serve
    finally:
        small.stop()


def test_data_port_of_a_busy_port_is_a_clear_error(node):
    _, _, data = node
    with pytest.raises(OSError, match=rf"blocked: data port 127.0.0.1:{data.port}"):
        DataServer("127.0.0.1", data.port, lambda *a: None, "blocked")


# ---- updates ------------------------------------------------------------------------------------
def _update_header(tid: int, index: int, data: bytes, **kw) -> spb.UpdateReq:
    h = spb.UpdateReq(
        chain_id=1, chain_version=1, target_id=tid, chunk=spb.ChunkId(inode_id=INODE, index=index),
        type=spb.WRITE, offset=0, length=len(data), chunk_size=1 << 20, payload_crc32c=crc32c(data),
        from_client=True,
    )  # fmt: skip
    for k, v in kw.items():
        setattr(h, k, v)
    return h


def test_update_applies_like_grpc_update_and_errors_match(node):
    svc, ch, data = node
    pool = DataPortPool(timeout_s=10)
    blob = os.urandom(100_000)
    rsp = pool.update(data.address, _update_header(101, 5, blob), blob, "test")
    assert rsp.committed_version == 1 and rsp.chunk_length == len(blob) and rsp.chunk_crc32c == crc32c(blob)
    got = _req(101, 5)
    (r,) = pool.read(data.address, [got])
    assert bytes(got.sink[: r.n]) == blob and r.committed_version == 1

    stub = storage_pb2_grpc.StorageStub(ch)
    from fs3.wire import update_pieces as pieces

    bad = [
        _update_header(101, 6, blob, chain_version=0),  # stale chain version
        _update_header(101, 6, blob, payload_crc32c=1),  # corrupted in flight
        _update_header(102, 6, blob),  # WAITING target takes no writes
        _update_header(101, 6, blob, chunk_size=1000),  # not a power of two
    ]
    for h in bad:
        raw = h.SerializeToString()  # before pieces() puts the first piece into h.data
        with pytest.raises(grpc.RpcError) as ei:
            stub.Update(pieces(h, blob), timeout=10)
        status, body = pool.update_raw(data.address, raw, blob)
        assert status == W.STATUS_ERROR and body.decode() == ei.value.details()
        with pytest.raises(E.FS3Error) as mine:
            pool.update(data.address, spb.UpdateReq.FromString(raw), blob, "test")
        assert type(mine.value) is type(E.from_rpc_error(ei.value))
        assert E.wire_message(mine.value) == ei.value.details()
    assert svc.targets.stores[101].meta((INODE, 6)) is None  # nothing of the rejected writes landed
    pool.close()


@pytest.mark.parametrize(
    "tail",
    [
        W.UPDATE_HEAD.pack(W.MAX_UPDATE_HEADER_BYTES + 1, 0),  # header too long
        W.UPDATE_HEAD.pack(10, W.MAX_PAYLOAD_BYTES + 1),  # payload over the largest chunk
        W.UPDATE_HEAD.pack(5, 0) + b"\xff\xff\xff\xff\xff",  # not a protobuf
    ],
    ids=["long-header", "huge-payload", "garbage-header"],
)
def test_malformed_update_is_answered_einval_closes_the_connection_and_writes_nothing(node, tail):
    svc, _, data = node
    s = _raw(data)
    s.sendall(W.BATCH_HEADER.pack(W.MAGIC, W.VERSION, W.OP_UPDATE, 1) + tail)
    head = memoryview(bytearray(W.REPLY.size))
    W.recv_exact(s, head)
    status, n = W.REPLY.unpack(head)
    body = memoryview(bytearray(n))
    W.recv_exact(s, body)
    assert status == W.STATUS_ERROR and bytes(body).startswith(b"EINVAL: data port update: "), bytes(body)
    assert _closed_by_peer(s)
    s.close()
    assert svc.targets.stores[101].chunk_ids(INODE) == []
    blob = b"still serving"
    rsp = DataPortPool(timeout_s=10).update(data.address, _update_header(101, 0, blob), blob, "test")
    assert rsp.committed_version == 1


def test_cluster_without_data_ports_reads_and_writes_over_grpc(tmp_path):
    from fs3 import LocalCluster, LocalClusterConfig

    cfg = LocalClusterConfig(
        num_storage=3, replicas=3, num_chains=3, chunk_size=64 << 10, fsync=False, data_ports=False
    )
    with LocalCluster(cfg, tmp_path / "c") as c:
        cl = c.client()
        assert all(n.data_address == "" for n in cl.refresh_routing().nodes)
        blob = os.urandom(10 * (64 << 10) + 5)
        cl.write_bytes("/g", blob)  # forwarded down each chain over gRPC
        assert cl.read_bytes("/g") == blob
        assert cl.stats.data_port_items == 0 and cl.stats.data_port_updates == 0
        # every replica ends with every chunk: forwarded down the chains, or (for a server whose
        # lease lapsed on a loaded machine) resynced when it returns, over gRPC either way
        c.wait_serving()

        def chunks(i: int) -> int:
            return sum(1 for _ in c.storage_dir(i).glob("target-*/chunks/*/*"))

        deadline = time.monotonic() + 30
        while any(chunks(i) != 11 for i in range(3)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [chunks(i) for i in range(3)] == [11, 11, 11]
