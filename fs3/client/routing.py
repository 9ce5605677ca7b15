"""The client's routing cache: the chain table, target states and node addresses from mgmtd.

Read through :attr:`RoutingCache.current`, the table is refreshed at most once a second, on a
background thread once a table is cached (a frozen or absent mgmtd never stalls I/O: it goes on over
the last table known); chunk I/O refreshes it at once on stale-version or unreachable-target errors
(``wait_new``). ``mgmtd`` lists every instance (``"h1:p1,h2:p2"``); calls follow the leader. A
fetched table replaces the cached one unless it is older; it is never mutated in place.
"""

from __future__ import annotations

import threading
import time

import grpc

from fs3 import errors
from fs3.mgmtd.client import MgmtdClient
from fs3.protos import common_pb2, mgmtd_pb2

DEFAULT_MAX_FILE_SIZE = 1 << 40  # bytes, when mgmtd sets none


class RoutingCache:
    """The routing of the cluster at ``mgmtd``; safe to share between threads."""

    def __init__(self, mgmtd: str) -> None:
        self.mgmtd_address = mgmtd
        self._mgmtd = MgmtdClient(mgmtd)
        self._lock = threading.Lock()
        self._routing = common_pb2.RoutingInfo()
        self._fetched_t = 0.0
        self._refreshing = False  # a background refresh is in flight

    @property
    def mgmtd_leader(self) -> str:
        """The mgmtd instance that answered as leader last (``HOST:PORT``)."""
        return self._mgmtd.leader

    @property
    def mgmtd_addresses(self) -> list[str]:
        """Every mgmtd instance this client knows."""
        return list(self._mgmtd.addresses)

    def close(self) -> None:
        """Close the mgmtd channels."""
        self._mgmtd.close()

    def refresh(self, timeout_s: float = 10.0) -> common_pb2.RoutingInfo:
        """Fetch the chain table and target states from mgmtd now."""
        try:
            routing = self._mgmtd.GetRouting(mgmtd_pb2.GetRoutingReq(), timeout=timeout_s).routing
        except grpc.RpcError as exc:
            with self._lock:
                self._fetched_t = time.monotonic()  # keep serving on the cached table; retry in a second
            raise errors.from_rpc_error(exc, f"mgmtd {self.mgmtd_address}") from None
        with self._lock:
            if routing.routing_version >= self._routing.routing_version:
                self._routing = routing
            self._fetched_t = time.monotonic()
            return self._routing

    @property
    def current(self) -> common_pb2.RoutingInfo:
        """The cached routing info; older than a second, it is refreshed (in the background once cached)."""
        if time.monotonic() - self._fetched_t > 1.0:
            if not self._routing.chains:
                try:
                    self.refresh()
                except errors.FS3Error:
                    pass
            else:
                with self._lock:
                    start = not self._refreshing
                    self._refreshing = True
                if start:
                    threading.Thread(target=self._refresh_quietly, daemon=True).start()
        return self._routing

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except (errors.FS3Error, ValueError):  # ValueError: closed meanwhile
            pass
        finally:
            self._refreshing = False

    @property
    def cached(self) -> common_pb2.RoutingInfo:
        """The cached routing info as it is (no refresh)."""
        return self._routing

    def chain(self, chain_id: int) -> common_pb2.Chain:
        """Chain ``chain_id`` of the (refreshed) table; NotFound if it has none."""
        for c in self.current.chains:
            if c.chain_id == chain_id:
                return c
        raise errors.NotFound(f"chain {chain_id}", "not in the chain table")

    def node(self, node_id: int) -> common_pb2.NodeInfo | None:
        """The cached table's entry for ``node_id``, or None."""
        return next((n for n in self._routing.nodes if n.node_id == node_id), None)

    def address(self, node_id: int) -> str:
        """The gRPC address of node ``node_id``; NotFound if mgmtd does not know it."""
        node = self.node(node_id)
        if node is None:
            raise errors.NotFound(f"node {node_id}", "not registered with mgmtd")
        return node.address

    def max_file_size(self) -> int:
        """The cluster's file size limit in bytes."""
        return self._routing.max_file_size or DEFAULT_MAX_FILE_SIZE

    def wait_new(self, chain_id: int, version: int) -> None:
        """Poll mgmtd until ``chain_id`` moves past ``version`` (bounded wait, about a second)."""
        deadline = time.monotonic() + 1.0
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.refresh(timeout_s=max(0.2, left))
            except errors.FS3Error:
                pass
            if self.chain(chain_id).version != version:
                return
            time.sleep(0.05)
