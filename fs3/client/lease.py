"""The client's lease on its open files: one RenewLease to meta, well within the lease, while any is open.

Every open holds a meta session (readers too), so meta keeps an unlinked or replaced inode until the
last close on any client. A client that dies stops renewing; meta then ends its sessions and removes
the chunks nothing else holds (``fs3.meta.gc``).
"""

from __future__ import annotations

import logging
import threading

import grpc

from fs3.protos import meta_pb2, meta_pb2_grpc

log = logging.getLogger("fs3.client.lease")


class LeaseKeeper:
    """Renews ``client_id``'s lease every third of it while the client has open files."""

    def __init__(self, meta: meta_pb2_grpc.MetaStub, client_id: str, timeout_s: float) -> None:
        self._meta = meta
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.lease_s = 30.0  # meta's answer replaces it
        self._open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renewals = 0  # RenewLease calls that succeeded (for tests)

    def opened(self, lease_s: float) -> None:
        """A file was opened (meta granted a session with a lease of ``lease_s``)."""
        with self._lock:
            self._open += 1
            if lease_s > 0:
                self.lease_s = lease_s
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="fs3-lease", daemon=True)
                self._thread.start()

    def closed(self) -> None:
        """A file was closed."""
        with self._lock:
            self._open = max(0, self._open - 1)

    def stop(self) -> None:
        """Stop renewing (client closed): its sessions expire after the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                if self._open == 0:
                    continue
            try:
                rsp = self._meta.RenewLease(
                    meta_pb2.RenewLeaseReq(client_id=self.client_id),
                    timeout=min(self.timeout_s, self.lease_s / 3),
                )
                self.lease_s = rsp.lease_s or self.lease_s
                self.renewals += 1
            except grpc.RpcError as exc:
                log.warning("renewing the lease of %s failed: %s", self.client_id, exc.code())
