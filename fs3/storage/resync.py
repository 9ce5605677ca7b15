"""Resync of a SYNCING successor from the last SERVING target before it (3FS sync worker).

The source compares its chunk metadata with the successor's (``DumpChunkMeta``) and sends, under each
chunk's lock, a full replace of every chunk the successor lacks or holds at another version/CRC32C,
and a removal of every chunk only the successor has; then it tells mgmtd ``SyncDone``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fs3 import errors
from fs3.crc import crc32c
from fs3.protos import common_pb2, mgmtd_pb2, storage_pb2
from fs3.protos.common_pb2 import TargetState
from fs3.storage.forward import Forwarder
from fs3.storage.targets import Targets


class Resyncer:
    """Starts one resync thread per (chain, syncing successor) that this node must feed."""

    def __init__(self, targets: Targets, forwarder: Forwarder) -> None:
        self.targets = targets
        self.forwarder = forwarder
        self._running: set[tuple[int, int]] = set()
        # (target, chunk id, why) -> True once a corrupt replica is repaired; caller holds the chunk lock
        self.repair_locked: Callable[[int, tuple[int, int], str], bool] | None = None

    def on_routing(self, routing: common_pb2.RoutingInfo) -> None:
        """Start a resync for every chain where this node's target is the last serving one before a syncing one."""
        for chain in routing.chains:
            for i, t in enumerate(chain.targets[:-1]):
                nxt = chain.targets[i + 1]
                if (
                    t.node_id == self.targets.node_id
                    and t.state == TargetState.SERVING
                    and nxt.state == TargetState.SYNCING
                ):
                    key = (chain.chain_id, nxt.target_id)
                    if key not in self._running:
                        self._running.add(key)
                        threading.Thread(
                            target=self._resync, args=(chain, t.target_id, nxt), daemon=True
                        ).start()

    def _resync(self, chain: common_pb2.Chain, my_tid: int, succ: common_pb2.ChainTarget) -> None:
        key = (chain.chain_id, succ.target_id)
        try:
            self.resync(chain, my_tid, succ)
        except Exception as exc:  # retried on the next routing update
            logging.warning("resync of target %d (chain %d) failed: %s", succ.target_id, chain.chain_id, exc)
            time.sleep(0.5)
        finally:
            self._running.discard(key)

    def resync(self, chain: common_pb2.Chain, my_tid: int, succ: common_pb2.ChainTarget) -> None:
        """Make ``succ`` hold exactly the committed chunks of target ``my_tid``, then report SyncDone."""
        t0 = time.monotonic()
        store = self.targets.store(my_tid)
        stub = self.forwarder.stub(succ.node_id)
        remote = {
            (c.chunk.inode_id, c.chunk.index): c
            for c in stub.DumpChunkMeta(
                storage_pb2.DumpChunkMetaReq(target_id=succ.target_id), timeout=60
            ).chunks
        }
        local_ids = {(m.inode_id, m.index) for m in store.all_meta()}
        sent = removed = 0
        for cid in sorted(local_ids | set(remote)):
            with self.targets.lock(my_tid, cid):
                lm = store.meta(cid)
                rm = remote.get(cid)
                header = storage_pb2.UpdateReq(
                    chain_id=chain.chain_id,
                    chain_version=chain.version,
                    target_id=succ.target_id,
                    chunk=storage_pb2.ChunkId(inode_id=cid[0], index=cid[1]),
                    chunk_size=64 << 20,
                    sync=True,
                )
                if lm is None or lm.committed_version == 0:
                    if rm is None:
                        continue
                    header.type = storage_pb2.REMOVE  # only remote -> delete
                    self.forwarder.send_update(succ.node_id, succ.target_id, header, b"")
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
                try:
                    content = store.read(cid)
                except errors.ChecksumMismatchError:
                    # our copy is bad: fetch it from another serving replica instead of giving up
                    if self.repair_locked is None or not self.repair_locked(my_tid, cid, "resync source"):
                        raise
                    content = store.read(cid)
                header.type, header.length = storage_pb2.FULL_REPLACE, len(content)
                header.update_version = lm.committed_version
                header.payload_crc32c = crc32c(content)
                rsp = self.forwarder.send_update(succ.node_id, succ.target_id, header, content)
                if rsp.chunk_crc32c != lm.crc:
                    raise errors.ChecksumMismatchError(
                        f"chunk {cid[0]}:{cid[1]}", "resync copy has a different checksum"
                    )
                sent += 1
        self.targets.mgmtd.SyncDone(
            mgmtd_pb2.SyncDoneReq(
                chain_id=chain.chain_id, target_id=succ.target_id, chain_version=chain.version
            ),
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
