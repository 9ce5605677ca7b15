"""Forwarding down the chain: an update (or a range removal) goes to the next live target until it ACKs.

The successor is the next SERVING or SYNCING target after this one; a SYNCING successor gets the
whole chunk (FULL_REPLACE). The ACK must carry the version and CRC32C this node staged: a successor
that is behind or holds other bytes is sent the full chunk once, then the mismatch is an error.
Unreachable successors are waited out through chain changes (mgmtd drops them) up to
FORWARD_DEADLINE_S. Bytes go over the successor's data port if it has one, else gRPC.
"""

from __future__ import annotations

import logging
import time

import grpc

from fs3 import _rpc, errors, wire
from fs3.client.dataport import DataPortPool
from fs3.crc import crc32c
from fs3.protos import common_pb2, storage_pb2, storage_pb2_grpc
from fs3.protos.common_pb2 import TargetState
from fs3.storage.store import ChunkStore
from fs3.storage.targets import Targets

FORWARD_DEADLINE_S = 60.0


def successor(chain: common_pb2.Chain, pos: int) -> common_pb2.ChainTarget | None:
    """The first target after ``pos`` that takes writes (SERVING or SYNCING), or None at the tail."""
    return next(
        (t for t in chain.targets[pos + 1 :] if t.state in (TargetState.SERVING, TargetState.SYNCING)),
        None,
    )


class Forwarder:
    """Sends updates and range removals to this node's successors (connections pooled per peer)."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self._data = DataPortPool(timeout_s=FORWARD_DEADLINE_S / 2, per_address=16)
        self._stubs: dict[str, storage_pb2_grpc.StorageStub] = {}

    def stub(self, node_id: int) -> storage_pb2_grpc.StorageStub:
        """The gRPC stub of storage node ``node_id`` (cached per address)."""
        address = self.targets.node(node_id).address
        stub = self._stubs.get(address)
        if stub is None:
            stub = self._stubs[address] = storage_pb2_grpc.StorageStub(_rpc.channel(address))
        return stub

    def send_update(
        self,
        node_id: int,
        target_id: int,
        header: storage_pb2.UpdateReq,
        payload: bytes | bytearray | memoryview,
    ) -> storage_pb2.UpdateRsp:
        """``header`` + ``payload`` to storage node ``node_id`` (its data port if it has one, else gRPC).

        Raises the FS3Error the node answered, or ClusterTimeout when it could not be reached.
        """
        address = self.targets.node(node_id).data_address
        if address:
            return self._data.update(address, header, payload, f"target {target_id}")
        try:
            return self.stub(node_id).Update(wire.update_pieces(header, payload), timeout=30)
        except grpc.RpcError as exc:
            raise errors.from_rpc_error(exc, f"target {target_id}") from None

    def forward_update(
        self,
        chain: common_pb2.Chain,
        pos: int,
        req: storage_pb2.UpdateReq,
        data: bytes,
        content: bytes,
        u: int,
        crc: int,
        store: ChunkStore | None = None,
        cid: tuple[int, int] | None = None,
    ) -> int:
        """Send the update to the successor until it ACKs; follows chain changes. Returns the version.

        ``content``/``crc`` are the chunk as staged here (version ``u``); ``store``/``cid`` let a head
        that finds its successor ahead (after a failover) restage above the successor's version.
        """
        deadline = time.monotonic() + FORWARD_DEADLINE_S
        full = False
        my_tid = chain.targets[pos].target_id
        while True:
            chain, pos = self.targets.chain_of(my_tid)
            succ = successor(chain, pos)
            if succ is None:
                return u
            if succ.state == TargetState.SYNCING and req.type != storage_pb2.REMOVE:
                full = True
            header = storage_pb2.UpdateReq(
                chain_id=chain.chain_id,
                chain_version=chain.version,
                target_id=succ.target_id,
                chunk=req.chunk,
                chunk_size=req.chunk_size,
                update_version=u,
                max_file_size=req.max_file_size,
            )
            # the payload's CRC32C is already known: ``crc`` is the staged content's, and a WRITE or
            # FULL_REPLACE payload passed update.validate against the request's
            if req.type == storage_pb2.REMOVE:
                header.type, payload, header.payload_crc32c = storage_pb2.REMOVE, b"", 0
            elif full:
                header.type, header.length, payload = storage_pb2.FULL_REPLACE, len(content), content
                header.payload_crc32c = crc
            else:
                header.type, header.offset, header.length, payload = req.type, req.offset, req.length, data
                validated = req.type in (storage_pb2.WRITE, storage_pb2.FULL_REPLACE)
                header.payload_crc32c = req.payload_crc32c if validated else crc32c(payload)
            try:
                rsp = self.send_update(succ.node_id, succ.target_id, header, payload)
            except errors.FS3Error as err:
                if isinstance(err, errors.FileTooLarge | errors.InvalidArgument | errors.NoSpace):
                    raise err from None  # the successor's answer; waiting would not change it
                if time.monotonic() > deadline:
                    raise errors.ClusterTimeout(
                        f"chain {chain.chain_id}", f"successor target {succ.target_id} did not ACK: {err}"
                    ) from None
                logging.info(
                    "forward to target %d failed (%s); waiting for a chain change", succ.target_id, err
                )
                self.targets.wait_routing_change(chain)
                continue
            if req.type == storage_pb2.REMOVE:
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
                raise errors.ChecksumMismatchError(
                    f"chunk {req.chunk.inode_id}:{req.chunk.index}",
                    f"successor target {succ.target_id} has version {rsp.committed_version} crc "
                    f"{rsp.chunk_crc32c:#x}, expected {u} crc {crc:#x}",
                )
            return u

    def forward_remove_range(self, request: storage_pb2.RemoveRangeReq) -> None:
        """Pass a range removal of ``request.target_id``'s chunks on to its successor until one ACKs."""
        deadline = time.monotonic() + FORWARD_DEADLINE_S
        while True:
            chain, pos = self.targets.chain_of(request.target_id)
            succ = successor(chain, pos)
            if succ is None:
                return
            fwd = storage_pb2.RemoveRangeReq(
                chain_id=chain.chain_id,
                chain_version=chain.version,
                target_id=succ.target_id,
                inode_id=request.inode_id,
                first_index=request.first_index,
            )
            try:
                self.stub(succ.node_id).RemoveRange(fwd, timeout=30)
                return
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise errors.ClusterTimeout(f"target {succ.target_id}", str(exc.code())) from None
                self.targets.wait_routing_change(chain)
