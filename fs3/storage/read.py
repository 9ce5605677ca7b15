"""Chunk reads on one target: the checks every read passes (gRPC Read/BatchRead and the data port).

Reads are served from the committed version; a target that is not SERVING answers ENOTSERVING and a
chunk with a pending version EPENDING, unless the read is relaxed.
"""

from __future__ import annotations

from collections.abc import Callable

from fs3 import errors
from fs3.protos import storage_pb2
from fs3.protos.common_pb2 import TargetState
from fs3.storage.store.engine import MAX_INDEX, ChunkMetaRow
from fs3.storage.targets import Targets


class ChunkReader:
    """Reads committed chunk content of this node's targets."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        # told (target, chunk id, why) of every replica that fails its checksum, to repair it
        self.on_corrupt: Callable[[int, tuple[int, int], str], None] | None = None

    def read(
        self, request: storage_pb2.ReadReq, buf: bytearray | None = None
    ) -> tuple[ChunkMetaRow, bytes | memoryview] | None:
        """(meta, committed content) of ``request``'s chunk after the read checks; None for a hole.

        With ``buf`` the content is a view into it (see ``ChunkStore.read_into``).

        Raises NotServing (target not SERVING, unless relaxed), ChunkPending (a write is pending,
        unless relaxed), ChecksumMismatchError (the stored bytes fail their CRC32C), NotFound (no
        such target).
        """
        store = self.targets.store(request.target_id)
        chain, pos = self.targets.chain_of(request.target_id)
        if chain.targets[pos].state != TargetState.SERVING and not request.relaxed:
            raise errors.NotServing(
                f"target {request.target_id}", f"state {TargetState.Name(chain.targets[pos].state)}"
            )
        cid = (request.chunk.inode_id, request.chunk.index)
        m = store.meta(cid)
        if m is not None and m.pending_version and not request.relaxed:
            raise errors.ChunkPending(f"chunk {cid[0]}:{cid[1]}", f"version {m.pending_version} pending")
        if m is None or m.committed_version == 0:
            return None
        try:
            if buf is None:
                return m, store.read(cid)
            return store.read_into(cid, buf)
        except errors.ChecksumMismatchError:
            if self.on_corrupt is not None:
                self.on_corrupt(request.target_id, cid, "read")
            raise

    def read_item(
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
        """(committed version, content in ``buf``, CRC32C) of one data-port item after the read checks; None: hole."""
        if not 0 <= index <= MAX_INDEX:  # the wire has 64 bits for it, ChunkId 32
            raise errors.InvalidArgument(f"chunk {inode}:{index}", "chunk id out of range")
        got = self.read(
            storage_pb2.ReadReq(
                target_id=target,
                chunk=storage_pb2.ChunkId(inode_id=inode, index=index),
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
