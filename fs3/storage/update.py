"""The storage servicer: chunk reads/writes with CRAQ chain replication, and resync of a syncing successor.

Write path (3FS design notes): the head checks the chain version, takes the chunk lock, stages pending
v+1, forwards to its successor; the tail commits and ACKs; each node commits on the ACK and compares its
CRC32C with its successor's. Syncing successors get full-chunk replaces. Reads are served from the
committed version; a chunk with a pending version answers EPENDING unless the read is relaxed.
``BatchRead`` answers many reads of this node's targets in one stream, with the same checks per item.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from fs3 import _rpc
from fs3 import errors as E
from fs3.client.dataport import DataPortPool
from fs3.crc import crc32c
from fs3.protos import common_pb2 as cpb
from fs3.protos import mgmtd_pb2 as mpb
from fs3.protos import mgmtd_pb2_grpc, storage_pb2_grpc
from fs3.protos import storage_pb2 as pb
from fs3.storage.store import ChunkStore
from fs3.storage.store.engine import MAX_INDEX, ChunkMetaRow

S = cpb.TargetState
FORWARD_DEADLINE_S = 60.0


def pieces(first: pb.UpdateReq, data: bytes | bytearray | memoryview) -> Iterator[pb.UpdateReq]:
    """The messages of one Update stream: a header with the first piece, then data pieces."""
    mv = memoryview(data)
    first.data = bytes(mv[: _rpc.PIECE_BYTES])
    yield first
    for off in range(_rpc.PIECE_BYTES, len(data), _rpc.PIECE_BYTES):
        yield pb.UpdateReq(data=bytes(mv[off : off + _rpc.PIECE_BYTES]))


class StorageService(storage_pb2_grpc.StorageServicer):
    """One storage node: hosts the targets that the chain table assigns to ``node_id``."""

    def __init__(
        self,
        node_id: int,
        address: str,
        data_dir: str,
        mgmtd: str,
        heartbeat_s: float = 1.0,
        fsync: bool = True,
        exit_on_mgmtd_loss: bool = True,
        data_address: str = "",
    ) -> None:
        self.node_id, self.address = node_id, address
        self.data_address = data_address  # advertised to clients through mgmtd; "" = gRPC reads only
        self._data = DataPortPool(timeout_s=FORWARD_DEADLINE_S / 2, per_address=16)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.heartbeat_s = heartbeat_s
        self.exit_on_mgmtd_loss = exit_on_mgmtd_loss
        self._mgmtd = mgmtd_pb2_grpc.MgmtdStub(_rpc.channel(mgmtd))
        self._stores: dict[int, ChunkStore] = {}
        self._routing = cpb.RoutingInfo()
        self._routing_lock = threading.Lock()
        self._routing_changed = threading.Condition(self._routing_lock)
        self._uptodate: set[int] = set()  # targets seen SERVING since this process started
        self._locks: dict[tuple[int, int, int], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._stubs: dict[str, storage_pb2_grpc.StorageStub] = {}
        self._resyncs: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._lease_s = 60.0
        self._restarted = True
        for d in self.data_dir.glob("target-*"):  # reopen (and clean) existing targets at once
            tid = int(d.name.split("-", 1)[1])
            self._stores[tid] = ChunkStore(d, tid, fsync)

    # ---- routing and heartbeats --------------------------------------------------------------
    def start(self) -> None:
        """Send the first (restarted) heartbeat and start the heartbeat thread."""
        self._heartbeat_once()
        threading.Thread(target=self._heartbeat_loop, daemon=True).start()

    def stop(self) -> None:
        """Stop heartbeating."""
        self._stop.set()

    def _heartbeat_once(self) -> None:
        reports = [
            mpb.TargetReport(target_id=t, local_state=cpb.UPTODATE if t in self._uptodate else cpb.ONLINE)
            for t in self._my_targets()
        ]
        rsp = self._mgmtd.Heartbeat(
            mpb.HeartbeatReq(
                node_id=self.node_id,
                address=self.address,
                role="storage",
                restarted=self._restarted,
                targets=reports,
                data_address=self.data_address,
            ),
            timeout=max(1.0, self.heartbeat_s * 2),
        )
        self._restarted = False
        self._lease_s = rsp.lease_s
        self._set_routing(rsp.routing)

    def _heartbeat_loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._heartbeat_once()
                last_ok = time.monotonic()
            except grpc.RpcError as exc:
                lost_s = time.monotonic() - last_ok
                logging.warning("heartbeat failed (%s), mgmtd unreachable for %.1f s", exc.code(), lost_s)
                if self.exit_on_mgmtd_loss and lost_s > self._lease_s / 2:
                    logging.error("mgmtd unreachable for more than half a lease: exiting (partition safety)")
                    os._exit(3)
            except Exception:  # noqa: BLE001 - keep heartbeating
                logging.exception("heartbeat handling failed")

    def _refresh_routing(self) -> None:
        try:
            self._set_routing(self._mgmtd.GetRouting(mpb.GetRoutingReq(), timeout=5).routing)
        except grpc.RpcError as exc:
            logging.warning("routing refresh failed: %s", exc.code())

    def _set_routing(self, routing: cpb.RoutingInfo) -> None:
        with self._routing_lock:
            if routing.routing_version < self._routing.routing_version:
                return
            self._routing = routing
            self._routing_changed.notify_all()
        for chain in routing.chains:
            for t in chain.targets:
                if t.node_id == self.node_id:
                    if t.target_id not in self._stores:
                        d = self.data_dir / f"target-{t.target_id}"
                        self._stores[t.target_id] = ChunkStore(d, t.target_id, self.fsync)
                    if t.state == S.SERVING:
                        self._uptodate.add(t.target_id)
                    else:
                        self._uptodate.discard(t.target_id)
        self._maybe_resync(routing)

    def _my_targets(self) -> list[int]:
        return [t.target_id for c in self._routing.chains for t in c.targets if t.node_id == self.node_id]

    def _node(self, node_id: int) -> cpb.NodeInfo:
        """The routing table's entry for ``node_id`` (empty if unknown; the table is replaced, never mutated)."""
        return next((n for n in self._routing.nodes if n.node_id == node_id), cpb.NodeInfo())

    def _node_address(self, node_id: int) -> str:
        return self._node(node_id).address

    def _chain_of(self, target_id: int) -> tuple[cpb.Chain, int]:
        for c in self._routing.chains:
            for i, t in enumerate(c.targets):
                if t.target_id == target_id:
                    return c, i
        raise E.NotFound(f"target {target_id}", "no such target in the chain table")

    def _stub(self, address: str) -> storage_pb2_grpc.StorageStub:
        stub = self._stubs.get(address)
        if stub is None:
            stub = self._stubs[address] = storage_pb2_grpc.StorageStub(_rpc.channel(address))
        return stub

    def _store(self, target_id: int) -> ChunkStore:
        store = self._stores.get(target_id)
        if store is None:
            raise E.NotFound(f"target {target_id}", f"not hosted on storage node {self.node_id}")
        return store

    def _lock(self, target_id: int, cid: tuple[int, int]) -> threading.Lock:
        key = (target_id, *cid)
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _check_version(self, chain_id: int, version: int) -> cpb.Chain:
        """The current chain, after checking the sender's ``version`` (refresh if the sender is newer)."""
        chain = next((c for c in self._routing.chains if c.chain_id == chain_id), None)
        if chain is None or version > chain.version:
            self._refresh_routing()
            chain = next((c for c in self._routing.chains if c.chain_id == chain_id), None)
        if chain is None:
            raise E.NotFound(f"chain {chain_id}", "no such chain")
        if version < chain.version:
            raise E.StaleChainVersion(f"chain {chain_id}", f"version {version} < current {chain.version}")
        return chain

    # ---- Update ------------------------------------------------------------------------------
    def Update(self, request_iterator: Iterator[pb.UpdateReq], context: grpc.ServicerContext) -> pb.UpdateRsp:
        try:
            first = next(request_iterator)
            parts = [first.data]
            parts.extend(m.data for m in request_iterator)
            data = b"".join(parts)
            return self._update(first, data)
        except E.FS3Error as exc:
            E.abort(context, exc)
        except StopIteration:
            E.abort(context, E.InvalidArgument("update", "empty request stream"))

    def _validate(self, req: pb.UpdateReq, data: bytes) -> None:
        name = f"chunk {req.chunk.inode_id}:{req.chunk.index}"
        cs = req.chunk_size
        if cs == 0 or cs & (cs - 1) or cs > (64 << 20):
            raise E.InvalidArgument(name, f"chunk_size {cs} is not a power of two <= 64 MiB")
        if req.chunk.inode_id == 0:
            raise E.InvalidArgument(name, "inode id 0 is invalid")
        if req.type == pb.WRITE and req.offset + len(data) > cs:
            raise E.InvalidArgument(
                name, f"write [{req.offset}, {req.offset + len(data)}) exceeds chunk size {cs}"
            )
        if req.type == pb.TRUNCATE and req.length > cs:
            raise E.InvalidArgument(name, f"truncate length {req.length} > chunk size {cs}")
        if req.type in (pb.WRITE, pb.FULL_REPLACE):
            if len(data) != req.length:
                raise E.InvalidArgument(name, f"payload {len(data)} bytes, header says {req.length}")
            if crc32c(data) != req.payload_crc32c:
                raise E.ChecksumMismatch(name, "payload checksum mismatch in flight")
            end = req.chunk.index * cs + req.offset + len(data)
            if req.max_file_size and req.type == pb.WRITE and end > req.max_file_size:
                raise E.FileTooLarge(name, f"write ends at {end} > max file size {req.max_file_size}")
        if req.type == pb.UPDATE_TYPE_UNSPECIFIED:
            raise E.InvalidArgument(name, "update type is required")

    def _update(self, req: pb.UpdateReq, data: bytes) -> pb.UpdateRsp:
        self._validate(req, data)
        store = self._store(req.target_id)
        chain = self._check_version(req.chain_id, req.chain_version)
        pos = next((i for i, t in enumerate(chain.targets) if t.target_id == req.target_id), None)
        if pos is None:
            raise E.NotFound(f"target {req.target_id}", f"not in chain {req.chain_id}")
        state = chain.targets[pos].state
        if req.from_client and (pos != 0 or state != S.SERVING):
            raise E.NotServing(f"target {req.target_id}", f"not the serving head of chain {req.chain_id}")
        if state not in (S.SERVING, S.SYNCING):
            raise E.NotServing(f"target {req.target_id}", f"state {S.Name(state)} takes no writes")
        cid = (req.chunk.inode_id, req.chunk.index)
        with self._lock(req.target_id, cid):
            return self._apply_and_forward(store, chain, pos, req, data, cid)

    def _new_content(self, store: ChunkStore, req: pb.UpdateReq, data: bytes, cid: tuple[int, int]) -> bytes:
        if req.type == pb.FULL_REPLACE:
            return data
        m = store.meta(cid)
        old_len = m.length if m else 0
        if req.type == pb.WRITE:
            if req.offset == 0 and len(data) >= old_len:
                return data
            base = bytearray(store.read(cid))
            if len(base) < req.offset:
                base.extend(bytes(req.offset - len(base)))
            base[req.offset : req.offset + len(data)] = data
            return bytes(base)
        if req.type == pb.TRUNCATE:
            base = store.read(cid)
            return base[: req.length] + bytes(max(0, req.length - len(base)))
        raise E.InvalidArgument(f"chunk {cid[0]}:{cid[1]}", f"unexpected update type {req.type}")

    def _apply_and_forward(
        self,
        store: ChunkStore,
        chain: cpb.Chain,
        pos: int,
        req: pb.UpdateReq,
        data: bytes,
        cid: tuple[int, int],
    ) -> pb.UpdateRsp:
        m = store.meta(cid)
        committed = m.committed_version if m else 0
        if req.type == pb.REMOVE:
            store.remove(cid)
            if not req.sync:
                self._forward(chain, pos, req, data, b"", 0, 0)
            return pb.UpdateRsp(committed_version=0)
        if req.from_client:
            u = max(committed, m.pending_version if m else 0) + 1
        else:
            u = req.update_version
            if not req.sync and req.type != pb.FULL_REPLACE:
                if committed >= u:  # duplicate of an update this replica already committed
                    return pb.UpdateRsp(
                        committed_version=committed, chunk_crc32c=m.crc, chunk_length=m.length
                    )
                if committed != u - 1:
                    return pb.UpdateRsp(committed_version=committed, need_full=True)
        try:
            content = self._new_content(store, req, data, cid)
        except E.ChecksumMismatch:
            if req.from_client:
                raise
            return pb.UpdateRsp(committed_version=committed, need_full=True)  # heal from the predecessor
        crc = store.stage(cid, u, content, chain.version)
        try:
            if not req.sync:
                u = self._forward(chain, pos, req, data, content, u, crc, store=store, cid=cid)
        except BaseException:
            store.abort(cid)
            raise
        row = store.commit(cid)
        return pb.UpdateRsp(
            committed_version=row.committed_version, chunk_crc32c=row.crc, chunk_length=row.length
        )

    def _forward(
        self,
        chain: cpb.Chain,
        pos: int,
        req: pb.UpdateReq,
        data: bytes,
        content: bytes,
        u: int,
        crc: int,
        store: ChunkStore | None = None,
        cid: tuple[int, int] | None = None,
    ) -> int:
        """Send the update to the successor until it ACKs; follows chain changes. Returns the version."""
        deadline = time.monotonic() + FORWARD_DEADLINE_S
        full = False
        my_tid = chain.targets[pos].target_id
        while True:
            chain, pos = self._chain_of(my_tid)
            succ = next((t for t in chain.targets[pos + 1 :] if t.state in (S.SERVING, S.SYNCING)), None)
            if succ is None:
                return u
            if succ.state == S.SYNCING and req.type != pb.REMOVE:
                full = True
            header = pb.UpdateReq(
                chain_id=chain.chain_id,
                chain_version=chain.version,
                target_id=succ.target_id,
                chunk=req.chunk,
                chunk_size=req.chunk_size,
                update_version=u,
                max_file_size=req.max_file_size,
            )
            # the payload's CRC32C is already known: ``crc`` is the staged content's, and a WRITE or
            # FULL_REPLACE payload passed _validate against the request's
            if req.type == pb.REMOVE:
                header.type, payload, header.payload_crc32c = pb.REMOVE, b"", 0
            elif full:
                header.type, header.length, payload = pb.FULL_REPLACE, len(content), content
                header.payload_crc32c = crc
            else:
                header.type, header.offset, header.length, payload = req.type, req.offset, req.length, data
                validated = req.type in (pb.WRITE, pb.FULL_REPLACE)
                header.payload_crc32c = req.payload_crc32c if validated else crc32c(payload)
            try:
                rsp = self.send_update(succ.node_id, succ.target_id, header, payload)
            except E.FS3Error as err:
                if isinstance(err, E.FileTooLarge | E.InvalidArgument):
                    raise err from None
                if time.monotonic() > deadline:
                    raise E.ClusterTimeout(
                        f"chain {chain.chain_id}", f"successor target {succ.target_id} did not ACK: {err}"
                    ) from None
                logging.info(
                    "forward to target %d failed (%s); waiting for a chain change", succ.target_id, err
                )
                self._wait_routing_change(chain)
                continue
            if req.type == pb.REMOVE:
                return u
            if rsp.need_full and not full:
                full = True
                continue
            if rsp.committed_version > u and store is not None and cid is not None:
                # the successor is ahead (we became head after a failover): restage above its version
                u = rsp.committed_version + 1
                crc = store.stage(cid, u, content, chain.version)
                full = True
                continue
            if rsp.committed_version != u or rsp.chunk_crc32c != crc:
                if not full:
                    full = True
                    continue
                raise E.ChecksumMismatch(
                    f"chunk {req.chunk.inode_id}:{req.chunk.index}",
                    f"successor target {succ.target_id} has version {rsp.committed_version} crc "
                    f"{rsp.chunk_crc32c:#x}, expected {u} crc {crc:#x}",
                )
            return u

    def send_update(
        self, node_id: int, target_id: int, header: pb.UpdateReq, payload: bytes | bytearray | memoryview
    ) -> pb.UpdateRsp:
        """``header`` + ``payload`` to storage node ``node_id`` (its data port if it has one, else gRPC).

        Raises the FS3Error the node answered, or ClusterTimeout when it could not be reached.
        """
        address = self._node(node_id).data_address
        if address:
            return self._data.update(address, header, payload, f"target {target_id}")
        try:
            return self._stub(self._node_address(node_id)).Update(pieces(header, payload), timeout=30)
        except grpc.RpcError as exc:
            raise E.from_rpc_error(exc, f"target {target_id}") from None

    def update_for_data_port(self, req: pb.UpdateReq, payload: bytearray) -> pb.UpdateRsp:
        """One data-port update: exactly what ``Update`` does with the same header and payload."""
        return self._update(req, payload)  # type: ignore[arg-type]

    def _wait_routing_change(self, chain: cpb.Chain, timeout_s: float = 2.0) -> None:
        self._refresh_routing()
        with self._routing_lock:
            cur = next((c for c in self._routing.chains if c.chain_id == chain.chain_id), None)
            if cur is None or cur.version == chain.version:
                self._routing_changed.wait(timeout_s)

    # ---- Read --------------------------------------------------------------------------------
    def _read_checked(
        self, request: pb.ReadReq, buf: bytearray | None = None
    ) -> tuple[ChunkMetaRow, bytes | memoryview] | None:
        """(meta, committed content) of ``request``'s chunk after Read's checks; None for a hole.

        With ``buf`` the content is a view into it (see ``ChunkStore.read_into``).

        Raises NotServing (target not SERVING, unless relaxed), ChunkPending (a write is pending,
        unless relaxed), ChecksumMismatch (the stored bytes fail their CRC32C), NotFound (no such target).
        """
        store = self._store(request.target_id)
        chain, pos = self._chain_of(request.target_id)
        if chain.targets[pos].state != S.SERVING and not request.relaxed:
            raise E.NotServing(f"target {request.target_id}", f"state {S.Name(chain.targets[pos].state)}")
        cid = (request.chunk.inode_id, request.chunk.index)
        m = store.meta(cid)
        if m is not None and m.pending_version and not request.relaxed:
            raise E.ChunkPending(f"chunk {cid[0]}:{cid[1]}", f"version {m.pending_version} pending")
        if m is None or m.committed_version == 0:
            return None
        if buf is None:
            return m, store.read(cid)
        return store.read_into(cid, buf)

    def read_for_data_port(
        self,
        target: int,
        inode: int,
        index: int,
        offset: int,
        length: int,
        chain_version: int,
        relaxed: bool,
        buf: bytearray,
    ) -> tuple[int, memoryview, int] | None:
        """(committed version, content in ``buf``, CRC32C) of one data-port item after Read's checks; None: hole."""
        if not 0 <= index <= MAX_INDEX:  # the wire has 64 bits for it, ChunkId 32
            raise E.InvalidArgument(f"chunk {inode}:{index}", "chunk id out of range")
        got = self._read_checked(
            pb.ReadReq(
                target_id=target,
                chunk=pb.ChunkId(inode_id=inode, index=index),
                offset=offset,
                length=length,
                relaxed=relaxed,
                chain_version=chain_version,
            ),
            buf,
        )
        if got is None:
            return None
        m, content = got
        return m.committed_version, content, m.crc  # type: ignore[return-value]

    def Read(self, request: pb.ReadReq, context: grpc.ServicerContext) -> Iterator[pb.ReadRsp]:
        try:
            got = self._read_checked(request)
        except E.FS3Error as exc:
            E.abort(context, exc)
            return
        if got is None:
            yield pb.ReadRsp(found=False)
            return
        m, content = got
        end = len(content) if request.length == 0 else min(len(content), request.offset + request.length)
        mv = memoryview(content)[request.offset : max(request.offset, end)]
        whole = request.offset == 0 and end == len(content) <= _rpc.PIECE_BYTES
        yield pb.ReadRsp(
            found=True,
            committed_version=m.committed_version,
            chunk_length=len(content),
            data=content if whole else bytes(mv[: _rpc.PIECE_BYTES]),  # a whole 1 MiB chunk goes uncopied
        )
        for off in range(_rpc.PIECE_BYTES, len(mv), _rpc.PIECE_BYTES):
            yield pb.ReadRsp(data=bytes(mv[off : off + _rpc.PIECE_BYTES]))

    def BatchRead(self, request: pb.BatchReadReq, context: grpc.ServicerContext) -> Iterator[pb.BatchReadRsp]:
        """Many Reads in one stream: each item checked like Read, answered in order, failures per item.

        One RPC per batch instead of per chunk: gRPC Python's per-stream cost dominates small chunks.
        """
        for i, item in enumerate(request.items):
            try:
                got = self._read_checked(item)
            except E.FS3Error as exc:
                yield pb.BatchReadRsp(item=i, error=E.wire_message(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad item must not fail the others
                logging.exception("batch read item %d failed", i)
                yield pb.BatchReadRsp(item=i, error=E.wire_message(E.IOFailure(f"item {i}", repr(exc))))
                continue
            if got is None:
                yield pb.BatchReadRsp(item=i, found=False)
                continue
            m, content = got
            end = len(content) if item.length == 0 else min(len(content), item.offset + item.length)
            mv = memoryview(content)[item.offset : max(item.offset, end)]
            whole = item.offset == 0 and end == len(content) <= _rpc.PIECE_BYTES
            yield pb.BatchReadRsp(
                item=i,
                found=True,
                committed_version=m.committed_version,
                chunk_length=len(content),
                data=content if whole else bytes(mv[: _rpc.PIECE_BYTES]),  # a whole 1 MiB chunk goes uncopied
            )
            for off in range(_rpc.PIECE_BYTES, len(mv), _rpc.PIECE_BYTES):
                yield pb.BatchReadRsp(item=i, data=bytes(mv[off : off + _rpc.PIECE_BYTES]))

    # ---- management RPCs ---------------------------------------------------------------------
    def DumpChunkMeta(
        self, request: pb.DumpChunkMetaReq, context: grpc.ServicerContext
    ) -> pb.DumpChunkMetaRsp:
        try:
            store = self._store(request.target_id)
        except E.FS3Error as exc:
            E.abort(context, exc)
        rsp = pb.DumpChunkMetaRsp()
        for m in store.all_meta():
            rsp.chunks.add(
                chunk=pb.ChunkId(inode_id=m.inode_id, index=m.index),
                committed_version=m.committed_version,
                pending_version=m.pending_version,
                crc32c=m.crc,
                length=m.length,
                chain_version=m.chain_version,
            )
        return rsp

    def RemoveRange(self, request: pb.RemoveRangeReq, context: grpc.ServicerContext) -> pb.RemoveRangeRsp:
        try:
            store = self._store(request.target_id)
            chain = self._check_version(request.chain_id, request.chain_version)
            pos = next(i for i, t in enumerate(chain.targets) if t.target_id == request.target_id)
            removed = 0
            for cid in store.chunk_ids(request.inode_id, request.first_index):
                with self._lock(request.target_id, cid):
                    removed += store.remove(cid)
            deadline = time.monotonic() + FORWARD_DEADLINE_S
            while True:
                chain, pos = self._chain_of(request.target_id)
                succ = next((t for t in chain.targets[pos + 1 :] if t.state in (S.SERVING, S.SYNCING)), None)
                if succ is None:
                    break
                fwd = pb.RemoveRangeReq(
                    chain_id=chain.chain_id,
                    chain_version=chain.version,
                    target_id=succ.target_id,
                    inode_id=request.inode_id,
                    first_index=request.first_index,
                )
                try:
                    self._stub(self._node_address(succ.node_id)).RemoveRange(fwd, timeout=30)
                    break
                except grpc.RpcError as exc:
                    if time.monotonic() > deadline:
                        raise E.ClusterTimeout(f"target {succ.target_id}", str(exc.code())) from None
                    self._wait_routing_change(chain)
            return pb.RemoveRangeRsp(removed=removed)
        except E.FS3Error as exc:
            E.abort(context, exc)

    def Space(self, request: pb.TargetSpaceReq, context: grpc.ServicerContext) -> pb.TargetSpaceRsp:
        rsp = pb.TargetSpaceRsp()
        for tid, store in sorted(self._stores.items()):
            total, free, chunks = store.space()
            rsp.targets.add(target_id=tid, total_bytes=total, free_bytes=free, chunks=chunks)
        return rsp

    # ---- resync ------------------------------------------------------------------------------
    def _maybe_resync(self, routing: cpb.RoutingInfo) -> None:
        """Start a resync for every chain where this node's target is the last serving one before a syncing one."""
        for chain in routing.chains:
            for i, t in enumerate(chain.targets[:-1]):
                nxt = chain.targets[i + 1]
                if t.node_id == self.node_id and t.state == S.SERVING and nxt.state == S.SYNCING:
                    key = (chain.chain_id, nxt.target_id)
                    if key not in self._resyncs:
                        self._resyncs.add(key)
                        threading.Thread(
                            target=self._resync, args=(chain, t.target_id, nxt), daemon=True
                        ).start()

    def _resync(self, chain: cpb.Chain, my_tid: int, succ: cpb.ChainTarget) -> None:
        key = (chain.chain_id, succ.target_id)
        try:
            self._do_resync(chain, my_tid, succ)
        except Exception as exc:  # noqa: BLE001 - retried on the next routing update
            logging.warning("resync of target %d (chain %d) failed: %s", succ.target_id, chain.chain_id, exc)
            time.sleep(0.5)
        finally:
            self._resyncs.discard(key)

    def _do_resync(self, chain: cpb.Chain, my_tid: int, succ: cpb.ChainTarget) -> None:
        t0 = time.monotonic()
        store = self._store(my_tid)
        stub = self._stub(self._node_address(succ.node_id))
        remote = {
            (c.chunk.inode_id, c.chunk.index): c
            for c in stub.DumpChunkMeta(pb.DumpChunkMetaReq(target_id=succ.target_id), timeout=60).chunks
        }
        local_ids = {(m.inode_id, m.index) for m in store.all_meta()}
        sent = removed = 0
        for cid in sorted(local_ids | set(remote)):
            with self._lock(my_tid, cid):
                lm = store.meta(cid)
                rm = remote.get(cid)
                header = pb.UpdateReq(
                    chain_id=chain.chain_id,
                    chain_version=chain.version,
                    target_id=succ.target_id,
                    chunk=pb.ChunkId(inode_id=cid[0], index=cid[1]),
                    chunk_size=64 << 20,
                    sync=True,
                )
                if lm is None or lm.committed_version == 0:
                    if rm is None:
                        continue
                    header.type = pb.REMOVE  # only remote -> delete
                    self.send_update(succ.node_id, succ.target_id, header, b"")
                    removed += 1
                    continue
                # transfer rules: only local, newer chain version, or a different committed version -> send
                if (
                    rm is not None
                    and rm.committed_version == lm.committed_version
                    and rm.crc32c == lm.crc
                    and rm.pending_version == 0
                ):
                    continue
                content = store.read(cid)
                header.type, header.length = pb.FULL_REPLACE, len(content)
                header.update_version = lm.committed_version
                header.payload_crc32c = crc32c(content)
                rsp = self.send_update(
                    succ.node_id, succ.target_id, header, content
                )  # data port if it has one
                if rsp.chunk_crc32c != lm.crc:
                    raise E.ChecksumMismatch(
                        f"chunk {cid[0]}:{cid[1]}", "resync copy has a different checksum"
                    )
                sent += 1
        self._mgmtd.SyncDone(
            mpb.SyncDoneReq(chain_id=chain.chain_id, target_id=succ.target_id, chain_version=chain.version),
            timeout=10,
        )
        logging.info(
            "resynced target %d of chain %d: %d chunks sent, %d removed, %.2f s",
            succ.target_id,
            chain.chain_id,
            sent,
            removed,
            time.monotonic() - t0,
        )
