"""CRAQ chunk update on one target: validate the request, stage version v+1, forward it, commit.

Write path (3FS design notes): the head checks the chain version, takes the chunk lock, stages pending
v+1, forwards to its successor (``forward``); the tail commits and ACKs; each node commits on the ACK
and compares its CRC32C with its successor's. Syncing successors get full-chunk replaces. The gRPC
``Update`` and the data port both call :meth:`ChunkUpdater.update`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from fs3 import errors
from fs3.crc import crc32c
from fs3.protos import common_pb2, storage_pb2
from fs3.protos.common_pb2 import TargetState
from fs3.storage.forward import Forwarder
from fs3.storage.store import ChunkStore
from fs3.storage.targets import Targets

MAX_CHUNK_BYTES = 64 << 20


def validate(req: storage_pb2.UpdateReq, data: bytes | bytearray) -> None:
    """Check an update's header against its payload; InvalidArgument/ChecksumMismatchError/FileTooLarge."""
    name = f"chunk {req.chunk.inode_id}:{req.chunk.index}"
    cs = req.chunk_size
    if cs == 0 or cs & (cs - 1) or cs > MAX_CHUNK_BYTES:
        raise errors.InvalidArgument(name, f"chunk_size {cs} is not a power of two <= 64 MiB")
    if req.chunk.inode_id == 0:
        raise errors.InvalidArgument(name, "inode id 0 is invalid")
    if req.type == storage_pb2.WRITE and req.offset + len(data) > cs:
        raise errors.InvalidArgument(
            name, f"write [{req.offset}, {req.offset + len(data)}) exceeds chunk size {cs}"
        )
    if req.type == storage_pb2.TRUNCATE and req.length > cs:
        raise errors.InvalidArgument(name, f"truncate length {req.length} > chunk size {cs}")
    if req.type in (storage_pb2.WRITE, storage_pb2.FULL_REPLACE):
        if len(data) != req.length:
            raise errors.InvalidArgument(name, f"payload {len(data)} bytes, header says {req.length}")
        if crc32c(data) != req.payload_crc32c:
            raise errors.ChecksumMismatchError(name, "payload checksum mismatch in flight")
        end = req.chunk.index * cs + req.offset + len(data)
        if req.max_file_size and req.type == storage_pb2.WRITE and end > req.max_file_size:
            raise errors.FileTooLarge(name, f"write ends at {end} > max file size {req.max_file_size}")
    if req.type == storage_pb2.UPDATE_TYPE_UNSPECIFIED:
        raise errors.InvalidArgument(name, "update type is required")


def receive_payload(first: storage_pb2.UpdateReq, rest: Iterator[storage_pb2.UpdateReq]) -> bytes:
    """The payload of a gRPC Update stream, refused (EINVAL) as soon as it outgrows what the header announces.

    A stream that keeps sending past its ``length`` (at most one chunk) is cut off there instead
    of being buffered whole, so a rejected 200 MB stream costs at most one chunk of memory.
    """
    name = f"chunk {first.chunk.inode_id}:{first.chunk.index}"
    if first.type == storage_pb2.UPDATE_TYPE_UNSPECIFIED:
        raise errors.InvalidArgument(name, "update type is required")
    announced = first.length if first.type in (storage_pb2.WRITE, storage_pb2.FULL_REPLACE) else 0
    limit = min(announced, MAX_CHUNK_BYTES)
    parts, total = [first.data], len(first.data)
    for m in itertools.chain([None], rest):
        if m is not None:
            parts.append(m.data)
            total += len(m.data)
        if total > limit:
            raise errors.InvalidArgument(
                name, f"payload exceeds the {limit} bytes its header announces (length {first.length})"
            )
    return b"".join(parts)


def new_content(store: ChunkStore, req: storage_pb2.UpdateReq, data: bytes, cid: tuple[int, int]) -> bytes:
    """The chunk's bytes after applying ``req`` to its committed content (reads it unless replaced whole)."""
    if req.type == storage_pb2.FULL_REPLACE:
        return data
    m = store.meta(cid)
    old_len = m.length if m else 0
    if req.type == storage_pb2.WRITE:
        if req.offset == 0 and len(data) >= old_len:
            return data
        base = bytearray(store.read(cid))
        if len(base) < req.offset:
            base.extend(bytes(req.offset - len(base)))
        base[req.offset : req.offset + len(data)] = data
        return bytes(base)
    if req.type == storage_pb2.TRUNCATE:
        base = store.read(cid)
        return base[: req.length] + bytes(max(0, req.length - len(base)))
    raise errors.InvalidArgument(f"chunk {cid[0]}:{cid[1]}", f"unexpected update type {req.type}")


class ChunkUpdater:
    """Applies chunk updates to this node's targets and passes them down their chains."""

    def __init__(self, targets: Targets, forwarder: Forwarder) -> None:
        self.targets = targets
        self.forwarder = forwarder
        # (target, chunk id, why) -> True once a corrupt replica is repaired; caller holds the chunk lock
        self.repair_locked: Callable[[int, tuple[int, int], str], bool] | None = None

    def update(self, req: storage_pb2.UpdateReq, data: bytes | bytearray) -> storage_pb2.UpdateRsp:
        """Validate, check the chain and this target's place in it, then apply under the chunk lock.

        Answers once the chain has committed the update; raises the FS3Error to send back.
        """
        validate(req, data)
        store = self.targets.store(req.target_id)
        chain = self.targets.check_version(req.chain_id, req.chain_version)
        pos = next((i for i, t in enumerate(chain.targets) if t.target_id == req.target_id), None)
        if pos is None:
            raise errors.NotFound(f"target {req.target_id}", f"not in chain {req.chain_id}")
        state = chain.targets[pos].state
        if req.from_client and (pos != 0 or state != TargetState.SERVING):
            raise errors.NotServing(
                f"target {req.target_id}", f"not the serving head of chain {req.chain_id}"
            )
        if state not in (TargetState.SERVING, TargetState.SYNCING):
            raise errors.NotServing(
                f"target {req.target_id}", f"state {TargetState.Name(state)} takes no writes"
            )
        cid = (req.chunk.inode_id, req.chunk.index)
        with self.targets.lock(req.target_id, cid):
            return self._apply_and_forward(store, chain, pos, req, data, cid)  # type: ignore[arg-type]

    def _apply_and_forward(
        self,
        store: ChunkStore,
        chain: common_pb2.Chain,
        pos: int,
        req: storage_pb2.UpdateReq,
        data: bytes,
        cid: tuple[int, int],
    ) -> storage_pb2.UpdateRsp:
        m = store.meta(cid)
        committed = m.committed_version if m else 0
        if req.type == storage_pb2.REMOVE:
            store.remove(cid)
            if not req.sync:
                self.forwarder.forward_update(chain, pos, req, data, b"", 0, 0)
            return storage_pb2.UpdateRsp(committed_version=0)
        if req.from_client:
            u = max(committed, m.pending_version if m else 0) + 1
        else:
            u = req.update_version
            if not req.sync and req.type != storage_pb2.FULL_REPLACE:
                if committed >= u:  # duplicate of an update this replica already committed
                    return storage_pb2.UpdateRsp(
                        committed_version=committed, chunk_crc32c=m.crc, chunk_length=m.length
                    )
                if committed != u - 1:
                    return storage_pb2.UpdateRsp(committed_version=committed, need_full=True)
        try:
            content = new_content(store, req, data, cid)
        except errors.ChecksumMismatchError:
            if not req.from_client:
                return storage_pb2.UpdateRsp(committed_version=committed, need_full=True)  # heal from pred.
            # the head has no predecessor: copy a good replica from a successor, then apply the write
            if self.repair_locked is None or not self.repair_locked(req.target_id, cid, "write"):
                raise
            content = new_content(store, req, data, cid)
        crc = store.stage(cid, u, content, chain.version)
        try:
            if not req.sync:
                u = self.forwarder.forward_update(
                    chain, pos, req, data, content, u, crc, store=store, cid=cid
                )
        except BaseException:
            store.abort(cid)
            raise
        row = store.commit(cid)
        return storage_pb2.UpdateRsp(
            committed_version=row.committed_version, chunk_crc32c=row.crc, chunk_length=row.length
        )

    def remove_range(self, request: storage_pb2.RemoveRangeReq) -> storage_pb2.RemoveRangeRsp:
        """Delete the inode's chunks with index >= ``first_index`` here, then down the chain."""
        store = self.targets.store(request.target_id)
        chain = self.targets.check_version(request.chain_id, request.chain_version)
        if all(t.target_id != request.target_id for t in chain.targets):
            raise errors.NotFound(f"target {request.target_id}", f"not in chain {request.chain_id}")
        removed = 0
        for cid in store.chunk_ids(request.inode_id, request.first_index):
            with self.targets.lock(request.target_id, cid):
                removed += store.remove(cid)
        self.forwarder.forward_remove_range(request)
        return storage_pb2.RemoveRangeRsp(removed=removed)
