"""Meta's garbage collector: ends the sessions of clients whose lease ran out and removes the chunks
of the inodes that freed (3FS's meta GC does the same for files removed while open).

A client that closes normally removes its own chunks (Close says ``freed``); this loop handles the
crashed ones. Orphans stay in ``meta_orphans`` until every chain confirmed the removal, so a storage
node that is down only delays it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from fs3 import _rpc
from fs3.meta.store import MetaStore, Orphan
from fs3.protos import common_pb2 as cpb
from fs3.protos import storage_pb2 as spb
from fs3.protos import storage_pb2_grpc

log = logging.getLogger("fs3.meta.gc")


class LeaseCollector:
    """A thread that expires leases every ``interval_s`` and removes the orphans' chunks."""

    def __init__(
        self,
        store: MetaStore,
        routing: Callable[[], cpb.RoutingInfo],
        interval_s: float,
        timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self._routing = routing
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="meta-gc", daemon=True)

    def start(self) -> None:
        """Start collecting in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and close storage channels."""
        self._stop.set()
        for ch in self._channels.values():
            ch.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.collect_once()
            except Exception:
                log.warning("lease collection failed; retrying next round", exc_info=True)

    def collect_once(self) -> int:
        """One round: expire leases, then remove what chunks it can; how many orphans were finished."""
        ended = self.store.expire_leases()
        if ended:
            log.info("expired %d sessions of clients whose lease ran out", ended)
        done = 0
        for orphan in self.store.orphans():
            if self._remove(orphan):
                self.store.orphan_removed(orphan.inode_id)
                done += 1
        return done

    def _stub(self, address: str) -> storage_pb2_grpc.StorageStub:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = _rpc.channel(address)
        return storage_pb2_grpc.StorageStub(ch)

    def _remove(self, orphan: Orphan) -> bool:
        """RemoveRange on the head of each of the orphan's chains; True if all of them answered."""
        if not orphan.chains:
            return True
        routing = self._routing()
        chains = {c.chain_id: c for c in routing.chains}
        nodes = {n.node_id: n for n in routing.nodes}
        ok = True
        for chain_id in sorted(set(orphan.chains)):
            chain = chains.get(chain_id)
            if chain is None or not chain.targets:
                ok = False
                continue
            head = chain.targets[0]
            node = nodes.get(head.node_id)
            if node is None:
                ok = False
                continue
            req = spb.RemoveRangeReq(
                chain_id=chain_id,
                chain_version=chain.version,
                target_id=head.target_id,
                inode_id=orphan.inode_id,
                first_index=0,
            )
            try:
                self._stub(node.address).RemoveRange(req, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                log.info(
                    "removing chunks of orphan inode %d on chain %d: %s",
                    orphan.inode_id,
                    chain_id,
                    exc.code(),
                )
                ok = False
        return ok
