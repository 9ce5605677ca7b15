"""The storage gRPC servicer: decode each request, call the part that does the work, map errors.

Where the work lives: ``targets`` (heartbeats, routing, the targets' stores and chunk locks),
``update`` (CRAQ update: validate, stage, commit), ``forward`` (down the chain), ``read`` (the read
checks), ``resync`` (feeding a syncing successor), ``scrub`` and ``repair`` (finding corrupt replicas
and copying good ones over them) and ``store`` (the chunk engine). The data port
(``dataport``) calls the same ``ChunkUpdater.update`` and ``ChunkReader.read_item``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from fs3 import errors, wire
from fs3.protos import storage_pb2, storage_pb2_grpc
from fs3.storage.forward import Forwarder
from fs3.storage.read import ChunkReader
from fs3.storage.repair import ChunkRepairer
from fs3.storage.resync import Resyncer
from fs3.storage.scrub import DEFAULT_PAUSE_S, DEFAULT_RATE_BYTES_S, Scrubber
from fs3.storage.targets import Targets
from fs3.storage.update import ChunkUpdater, receive_payload


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
        exit_on_mgmtd_loss: bool = False,
        data_address: str = "",
        reserve_bytes: int | None = None,
        scrub_rate_bytes_s: int = DEFAULT_RATE_BYTES_S,
        scrub_pause_s: float = DEFAULT_PAUSE_S,
    ) -> None:
        self.targets = Targets(
            node_id,
            address,
            data_dir,
            mgmtd,
            heartbeat_s,
            fsync,
            exit_on_mgmtd_loss,
            data_address,
            reserve_bytes,
        )
        self.forwarder = Forwarder(self.targets)
        self.updater = ChunkUpdater(self.targets, self.forwarder)
        self.reader = ChunkReader(self.targets)
        self.resyncer = Resyncer(self.targets, self.forwarder)
        self.targets.routing_listeners.append(self.resyncer.on_routing)
        # corrupt replicas: found by reads and the scrubber, repaired from a good replica of the chain
        self.repairer = ChunkRepairer(self.targets, self.forwarder)
        self.reader.on_corrupt = self.repairer.repair_soon
        self.updater.repair_locked = self.repairer.repair_locked
        self.resyncer.repair_locked = self.repairer.repair_locked
        self.scrubber = Scrubber(self.targets, self.repairer, scrub_rate_bytes_s, scrub_pause_s)

    def start(self) -> None:
        """Send the first (restarted) heartbeat, start the heartbeat thread and the scrubber."""
        self.targets.start()
        self.scrubber.start()

    def stop(self) -> None:
        """Stop heartbeating and scrubbing."""
        self.scrubber.stop()
        self.targets.stop()

    def Update(
        self, request_iterator: Iterator[storage_pb2.UpdateReq], context: grpc.ServicerContext
    ) -> storage_pb2.UpdateRsp:
        try:
            first = next(request_iterator)
            return self.updater.update(first, receive_payload(first, request_iterator))
        except errors.FS3Error as exc:
            errors.abort(context, exc)
        except StopIteration:
            errors.abort(context, errors.InvalidArgument("update", "empty request stream"))

    def Read(
        self, request: storage_pb2.ReadReq, context: grpc.ServicerContext
    ) -> Iterator[storage_pb2.ReadRsp]:
        try:
            got = self.reader.read(request)
        except errors.FS3Error as exc:
            errors.abort(context, exc)
            return
        if got is None:
            yield storage_pb2.ReadRsp(found=False)
            return
        m, content = got
        pieces = wire.reply_pieces(content, request.offset, request.length)
        yield storage_pb2.ReadRsp(
            found=True, committed_version=m.committed_version, chunk_length=len(content), data=next(pieces)
        )
        for data in pieces:
            yield storage_pb2.ReadRsp(data=data)

    def BatchRead(
        self, request: storage_pb2.BatchReadReq, context: grpc.ServicerContext
    ) -> Iterator[storage_pb2.BatchReadRsp]:
        """Many Reads in one stream: each item checked like Read, answered in order, failures per item.

        One RPC per batch instead of per chunk: gRPC Python's per-stream cost dominates small chunks.
        """
        for i, item in enumerate(request.items):
            try:
                got = self.reader.read(item)
            except errors.FS3Error as exc:
                yield storage_pb2.BatchReadRsp(item=i, error=errors.wire_message(exc))
                continue
            except Exception as exc:  # one bad item must not fail the others
                logging.exception("batch read item %d failed", i)
                failure = errors.IOFailure(f"item {i}", repr(exc))
                yield storage_pb2.BatchReadRsp(item=i, error=errors.wire_message(failure))
                continue
            if got is None:
                yield storage_pb2.BatchReadRsp(item=i, found=False)
                continue
            m, content = got
            pieces = wire.reply_pieces(content, item.offset, item.length)
            yield storage_pb2.BatchReadRsp(
                item=i,
                found=True,
                committed_version=m.committed_version,
                chunk_length=len(content),
                data=next(pieces),
            )
            for data in pieces:
                yield storage_pb2.BatchReadRsp(item=i, data=data)

    def DumpChunkMeta(
        self, request: storage_pb2.DumpChunkMetaReq, context: grpc.ServicerContext
    ) -> storage_pb2.DumpChunkMetaRsp:
        try:
            store = self.targets.store(request.target_id)
        except errors.FS3Error as exc:
            errors.abort(context, exc)
        rsp = storage_pb2.DumpChunkMetaRsp()
        for m in store.all_meta():
            rsp.chunks.add(
                chunk=storage_pb2.ChunkId(inode_id=m.inode_id, index=m.index),
                committed_version=m.committed_version,
                pending_version=m.pending_version,
                crc32c=m.crc,
                length=m.length,
                chain_version=m.chain_version,
            )
        return rsp

    def RemoveRange(
        self, request: storage_pb2.RemoveRangeReq, context: grpc.ServicerContext
    ) -> storage_pb2.RemoveRangeRsp:
        try:
            return self.updater.remove_range(request)
        except errors.FS3Error as exc:
            errors.abort(context, exc)

    def Space(
        self, request: storage_pb2.TargetSpaceReq, context: grpc.ServicerContext
    ) -> storage_pb2.TargetSpaceRsp:
        rsp = storage_pb2.TargetSpaceRsp()
        for tid, store in sorted(self.targets.stores.items()):
            total, free, chunks = store.space()
            health = self.repairer.target_health(tid)
            rsp.targets.add(
                target_id=tid,
                total_bytes=total,
                free_bytes=free,
                chunks=chunks,
                reserve_bytes=store.reserve_bytes,
                read_only=store.read_only,
                corrupt_chunks=health.corrupt_chunks,
                repaired_chunks=health.repaired_chunks,
                unrepaired_chunks=self.repairer.unrepaired(tid),
                scrubbed_bytes=health.scrubbed_bytes,
            )
        return rsp
