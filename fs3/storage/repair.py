"""Repair of a corrupt chunk replica from a good replica of its chain.

A replica whose file fails its CRC32C is fetched whole from another SERVING target of its chain,
accepted only at this replica's committed version with the length and CRC32C this target's index
holds, committed in place (stage + rename, as an update would) and read back to verify. Every
finding is counted per target (``fs3_scrub_corrupt_chunks_total`` ..., and the ``Space`` RPC that
``haictl fs status`` reads). ``repair_locked`` needs the caller to hold the chunk lock: then no
update of the chunk is in flight through this target, so every serving replica has committed the
same version.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import grpc
from prometheus_client import Counter

from fs3 import errors
from fs3.crc import crc32c
from fs3.protos import storage_pb2
from fs3.protos.common_pb2 import TargetState
from fs3.storage.forward import Forwarder
from fs3.storage.targets import Targets

CORRUPT = Counter(
    "fs3_scrub_corrupt_chunks", "Chunk replicas found failing their CRC32C (scrub or reads)", ["target"]
)
REPAIRED = Counter(
    "fs3_scrub_repaired_chunks",
    "Corrupt chunk replicas rewritten from a good replica and verified",
    ["target"],
)
FAILED = Counter(
    "fs3_scrub_repair_failures", "Repairs that found no good replica to copy from (retried later)", ["target"]
)
FETCH_TIMEOUT_S = 10.0
RETRY_AFTER_FAILURE_S = 10.0  # reads do not restart a repair that just found no good copy (no ping-pong)


@dataclass
class TargetHealth:
    """What scrub and repair found on one target since the server started."""

    corrupt_chunks: int = 0
    repaired_chunks: int = 0
    scrubbed_bytes: int = 0


class ChunkRepairer:
    """Finds good copies of corrupt replicas of this node's targets and puts them in place."""

    def __init__(self, targets: Targets, forwarder: Forwarder) -> None:
        self.targets = targets
        self.forwarder = forwarder
        self.health: dict[int, TargetHealth] = {}
        self._corrupt: set[tuple[int, int, int]] = set()  # (target, inode, index) known bad, unrepaired
        self._lock = threading.Lock()
        self._in_flight: set[tuple[int, int, int]] = set()
        self._failed_at: dict[tuple[int, int, int], float] = {}  # monotonic time of the last failed repair

    def target_health(self, target_id: int) -> TargetHealth:
        """The counters of ``target_id`` (created on first use)."""
        with self._lock:
            return self.health.setdefault(target_id, TargetHealth())

    def unrepaired(self, target_id: int) -> int:
        """Replicas of ``target_id`` known corrupt and not repaired yet."""
        with self._lock:
            keys = [k for k in self._corrupt if k[0] == target_id]
        store = self.targets.stores.get(target_id)
        return sum(1 for k in keys if store is not None and store.meta(k[1:]) is not None)  # deleted: gone

    def _found(self, target_id: int, cid: tuple[int, int], why: str) -> None:
        key = (target_id, *cid)
        with self._lock:
            new = key not in self._corrupt
            self._corrupt.add(key)
        if new:  # one incident, however many reads trip over it
            self.target_health(target_id).corrupt_chunks += 1
            CORRUPT.labels(str(target_id)).inc()
            logging.error("target %d: chunk %d:%d is corrupt (%s): repairing", target_id, *cid, why)

    def repair(self, target_id: int, cid: tuple[int, int], why: str) -> bool:
        """Under the chunk lock: re-check the replica and repair it if it is still bad; True if good now."""
        with self.targets.lock(target_id, cid):
            try:
                self.targets.store(target_id).read(cid)
            except errors.ChecksumMismatchError:
                return self.repair_locked(target_id, cid, why)
            except errors.FS3Error:
                return False
        self.cleared(target_id, cid)
        return True  # good again (a newer version was committed meanwhile, or someone else repaired it)

    def repair_soon(self, target_id: int, cid: tuple[int, int], why: str) -> None:
        """Repair on a thread of its own (from a read that found the replica bad); once at a time per chunk."""
        key = (target_id, *cid)
        with self._lock:
            failed = time.monotonic() - self._failed_at.get(key, -1e9) < RETRY_AFTER_FAILURE_S
            if key in self._in_flight or failed:
                return
            self._in_flight.add(key)
        self._found(target_id, cid, why)

        def run() -> None:
            try:
                self.repair(target_id, cid, why)
            except Exception:  # logged; the scrubber retries it on its next pass
                logging.exception("target %d: repair of chunk %d:%d failed", target_id, *cid)
            finally:
                with self._lock:
                    self._in_flight.discard(key)

        threading.Thread(target=run, name="chunk-repair", daemon=True).start()

    def cleared(self, target_id: int, cid: tuple[int, int]) -> None:
        """``cid`` on ``target_id`` reads back correct (repaired, or rewritten by an update)."""
        with self._lock:
            self._corrupt.discard((target_id, *cid))
            self._failed_at.pop((target_id, *cid), None)

    def repair_locked(self, target_id: int, cid: tuple[int, int], why: str) -> bool:
        """Replace the corrupt replica of ``cid`` on ``target_id`` with a verified good copy; caller holds the lock.

        True once the replica reads back correct; False (logged, counted) when no serving replica of
        the chain has a good copy at this replica's committed version.
        """
        self._found(target_id, cid, why)
        store = self.targets.store(target_id)
        m = store.meta(cid)
        if m is None or m.committed_version == 0 or m.pending_version:
            return False
        chain, pos = self.targets.chain_of(target_id)
        peers = [t for i, t in enumerate(chain.targets) if i != pos and t.state == TargetState.SERVING]
        name = f"chunk {cid[0]}:{cid[1]}"
        for peer in peers:
            try:
                version, content = self._fetch(peer.node_id, peer.target_id, cid, chain.version)
            except (grpc.RpcError, errors.FS3Error) as exc:
                code = exc.code().name if isinstance(exc, grpc.RpcError) else exc.strerror
                logging.warning(
                    "target %d: %s: no copy from target %d: %s", target_id, name, peer.target_id, code
                )
                continue
            if version != m.committed_version or len(content) != m.length or crc32c(content) != m.crc:
                logging.warning(
                    "target %d: %s: target %d has version %d, %d bytes; want version %d, %d bytes, crc %#010x",
                    target_id, name, peer.target_id, version, len(content),
                    m.committed_version, m.length, m.crc,
                )  # fmt: skip
                continue
            store.stage(cid, m.committed_version, content, m.chain_version)
            store.commit(cid)
            store.read(cid)  # verify what is now on disk (ChecksumMismatchError if the disk lies)
            self.cleared(target_id, cid)
            self.target_health(target_id).repaired_chunks += 1
            REPAIRED.labels(str(target_id)).inc()
            logging.warning(
                "target %d: repaired %s (version %d) from target %d; verified",
                target_id, name, m.committed_version, peer.target_id,
            )  # fmt: skip
            return True
        FAILED.labels(str(target_id)).inc()
        with self._lock:
            self._failed_at[(target_id, *cid)] = time.monotonic()
        logging.error(
            "target %d: %s: no good replica among %s to repair from",
            target_id, name, [t.target_id for t in peers],
        )  # fmt: skip
        return False

    def _fetch(
        self, node_id: int, target_id: int, cid: tuple[int, int], chain_version: int
    ) -> tuple[int, bytes]:
        """(committed version, whole content) of ``cid`` on a peer target, over gRPC."""
        req = storage_pb2.ReadReq(
            target_id=target_id,
            chunk=storage_pb2.ChunkId(inode_id=cid[0], index=cid[1]),
            offset=0,
            length=0,  # to the chunk's end
            relaxed=True,  # its committed version even if a write is pending there
            chain_version=chain_version,
        )
        version, parts = 0, []
        for i, rsp in enumerate(self.forwarder.stub(node_id).Read(req, timeout=FETCH_TIMEOUT_S)):
            if i == 0:
                if not rsp.found:
                    raise errors.NotFound(f"chunk {cid[0]}:{cid[1]}", f"not on target {target_id}")
                version = rsp.committed_version
            parts.append(rsp.data)
        return version, b"".join(parts)
