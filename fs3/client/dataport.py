"""Client side of the storage data port (format in ``fs3.wire``): pooled connections, batch reads, updates.

Thread-safe: a connection is used by one thread at a time, taken from and returned to a per-address
pool. A connection that fails in any way is closed, with every idle one to the same address (a
restarted server leaves them all dead); a request that failed on a pooled connection before any
answer is sent once more on a fresh one. Storage servers use the same pool to forward updates.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fs3 import errors, wire
from fs3.crc import crc32c
from fs3.protos import storage_pb2

T = TypeVar("T")


@dataclass
class ReadRequest:
    """One chunk read: ``length`` bytes at ``offset`` of chunk ``index`` into ``sink`` (len >= length)."""

    target_id: int
    inode_id: int
    index: int
    offset: int
    length: int
    sink: memoryview
    chain_version: int = 0
    relaxed: bool = False


@dataclass
class ReadResult:
    """How one item ended: ``status`` is STATUS_DATA/HOLE/ERROR; ``n`` bytes landed in the sink."""

    status: int
    committed_version: int = 0
    chunk_length: int = 0
    n: int = 0
    error: str = ""  # the server's "ENAME: what: why" for STATUS_ERROR


class ChecksumError(ConnectionError):
    """Bytes arrived that do not match the CRC32C the server sent for them (the wire corrupted them)."""


class DataPortPool:
    """Connections to storage data ports, ``per_address`` idle ones kept for reuse."""

    def __init__(self, timeout_s: float, per_address: int = 16, verify: bool = True) -> None:
        self.timeout_s = timeout_s
        self.per_address = per_address
        self.verify = verify
        self._idle: dict[str, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close every idle connection; connections in use close when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for socks in idle.values():
            for s in socks:
                s.close()

    def _take(self, address: str, fresh: bool = False) -> tuple[socket.socket, bool]:
        """(connection, whether it was pooled) to ``address``; OSError if none can be made."""
        if not fresh:
            with self._lock:
                socks = self._idle.get(address)
                if socks:
                    return socks.pop(), True
        host, _, port = address.rpartition(":")
        s = socket.create_connection((host.strip("[]"), int(port)), timeout=min(self.timeout_s, 10.0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire.set_io_timeout(s, self.timeout_s)
        return s, False

    def _give_back(self, address: str, s: socket.socket) -> None:
        with self._lock:
            if not self._closed:
                socks = self._idle.setdefault(address, [])
                if len(socks) < self.per_address:
                    socks.append(s)
                    return
        s.close()

    def _drop(self, address: str, s: socket.socket) -> None:
        s.close()
        with self._lock:
            stale = self._idle.pop(address, [])
        for t in stale:
            t.close()

    def read(self, address: str, reqs: list[ReadRequest]) -> list[ReadResult]:
        """Read ``reqs`` from the data port at ``address``, in one request; results in order.

        Raises OSError when no connection can be made, and ``PartialRead`` (carrying the items answered
        so far) when one breaks off: closed, timed out, a malformed frame or a wire checksum failure.
        """
        results: list[ReadResult] = []
        return self._call(
            address,
            lambda s: self._exchange(s, reqs, results),
            retry=lambda: not results,  # nothing arrived yet: the request can be sent again whole
            wrap=lambda exc: PartialRead(results, exc),
        )

    def update(
        self, address: str, header: storage_pb2.UpdateReq, payload: bytes | bytearray | memoryview, what: str
    ) -> storage_pb2.UpdateRsp:
        """One chunk update (``header`` with its ``data`` empty, and the payload), answered once committed.

        Raises the FS3Error the server answered, or ClusterTimeout naming ``what`` when the connection
        fails: then the update may or may not have been applied, which CRAQ's versions make safe to retry.
        """
        try:
            status, body = self.update_raw(address, header.SerializeToString(), payload)
        except OSError as exc:
            raise errors.ClusterTimeout(f"{what} (data port {address})", str(exc)) from None
        if status == wire.STATUS_ERROR:
            raise errors.from_wire(body.decode("utf-8", "replace"), what)
        return storage_pb2.UpdateRsp.FromString(body)

    def update_raw(
        self, address: str, header: bytes, payload: bytes | bytearray | memoryview
    ) -> tuple[int, bytes]:
        """``update`` on the wire: (status, body) as the server sent them; OSError on transport failure."""
        return self._call(address, lambda s: self._update_on(s, header, payload))

    def _call(
        self,
        address: str,
        fn: Callable[[socket.socket], T],
        retry: Callable[[], bool] = lambda: True,
        wrap: Callable[[Exception], Exception] = lambda exc: exc,
    ) -> T:
        """``fn`` on a connection to ``address``, which goes back to the pool if ``fn`` succeeds.

        If ``fn`` fails on a pooled connection the way one the server closed meanwhile fails (and
        ``retry()`` allows), it runs once more on a fresh connection. A failure of ``fn`` is raised as
        ``wrap(exc)``; a failure to connect as the OSError it is.
        """
        s, pooled = self._take(address)
        while True:
            try:
                out = fn(s)
            except (OSError, ValueError) as exc:
                self._drop(address, s)
                if pooled and _stale(exc) and retry():
                    s, pooled = self._take(address, fresh=True)
                    continue
                err = wrap(exc)
                if err is exc:
                    raise
                raise err from exc
            self._give_back(address, s)
            return out

    @staticmethod
    def _update_on(
        s: socket.socket, header: bytes, payload: bytes | bytearray | memoryview
    ) -> tuple[int, bytes]:
        wire.send_all(
            s,
            [wire.BATCH_HEADER.pack(wire.MAGIC, wire.VERSION, wire.OP_UPDATE, 1), wire.UPDATE_HEAD.pack(len(header), len(payload)),
             header, payload],
        )  # fmt: skip
        head = memoryview(bytearray(wire.REPLY.size))
        wire.recv_exact(s, head)
        status, n = wire.REPLY.unpack(head)
        if status not in (wire.STATUS_DATA, wire.STATUS_ERROR) or n > wire.MAX_UPDATE_HEADER_BYTES:
            raise wire.ProtocolError(f"data port answered an update with status {status}, {n} bytes")
        body = memoryview(bytearray(n))
        wire.recv_exact(s, body)
        return status, bytes(body)

    def _exchange(
        self, s: socket.socket, reqs: list[ReadRequest], results: list[ReadResult]
    ) -> list[ReadResult]:
        """Send ``reqs`` on ``s`` and append each answer to ``results`` as it arrives; returns ``results``."""
        for start in range(0, len(reqs), wire.MAX_ITEMS):
            part = reqs[start : start + wire.MAX_ITEMS]
            frame = bytearray(wire.BATCH_HEADER.pack(wire.MAGIC, wire.VERSION, 0, len(part)))
            for r in part:
                frame += wire.READ_ITEM.pack(
                    r.target_id, r.inode_id, r.index, r.offset, r.length, r.chain_version,
                    wire.FLAG_RELAXED if r.relaxed else 0,
                )  # fmt: skip
            wire.send_all(s, [frame])
            head = memoryview(bytearray(wire.ITEM_HEADER.size))
            for i, r in enumerate(part):
                wire.recv_exact(s, head)
                item, status, version, chunk_length, data_len, crc, err_len = wire.ITEM_HEADER.unpack(head)
                if item != i or status not in (wire.STATUS_DATA, wire.STATUS_HOLE, wire.STATUS_ERROR):
                    raise wire.ProtocolError(
                        f"data port answered item {item} status {status}, expected item {i}"
                    )
                if status == wire.STATUS_ERROR:
                    if err_len > wire.MAX_ERROR_BYTES:
                        raise wire.ProtocolError(f"data port error text of {err_len} bytes")
                    msg = memoryview(bytearray(err_len))
                    wire.recv_exact(s, msg)
                    results.append(ReadResult(wire.STATUS_ERROR, error=bytes(msg).decode("utf-8", "replace")))
                    continue
                if status == wire.STATUS_HOLE:
                    results.append(ReadResult(wire.STATUS_HOLE))
                    continue
                want = r.length if r.length else len(r.sink)
                if data_len > want or data_len > len(r.sink):
                    raise wire.ProtocolError(f"data port sent {data_len} bytes for a read of {want}")
                view = r.sink[:data_len]
                wire.recv_exact(s, view)
                if self.verify and crc32c(view) != crc:
                    raise ChecksumError(
                        f"chunk {r.inode_id}:{r.index} from target {r.target_id}: "
                        f"received bytes fail the sender's CRC32C {crc:#010x}"
                    )
                results.append(ReadResult(wire.STATUS_DATA, version, chunk_length, data_len))
        return results


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` is what a pooled connection that the server closed meanwhile fails with."""
    return isinstance(exc, ConnectionError) and not isinstance(exc, (wire.ProtocolError, ChecksumError))


class PartialRead(ConnectionError):
    """A data-port read broke off: ``results`` holds the items answered before ``cause``."""

    def __init__(self, results: list[ReadResult], cause: BaseException) -> None:
        super().__init__(f"data port read broke off after {len(results)} items: {cause}")
        self.results = results
        self.cause = cause
