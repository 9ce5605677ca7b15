"""The storage node's data port: chunk reads and updates over plain TCP (format in ``fs3.wire``).

One thread per client connection; a client keeps a few connections per storage node and sends a
batch of reads on each, so the per-chunk cost is one file read, one CRC32C pass and one send. An
update runs the same code as ``Storage/Update`` (validation, CRAQ staging, forwarding, commit) and
answers when the chain has committed it.

Bounded: at most ``max_connections`` at once (at the limit the connection idle longest, if idle for
``evict_idle_s``, is closed to admit a new one; else the new one is refused); a connection silent
for ``idle_timeout_s`` (between requests or in the middle of one) is closed; an update's payload
buffer grows as its bytes arrive, never to what the header claims before they do.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable

from fs3 import errors, wire
from fs3.crc import crc32c
from fs3.protos import storage_pb2

# (target, inode, index, offset, length, chain_version, relaxed, buffer) -> (committed_version,
# content (a view into the buffer), CRC32C of content) or None for a hole; raises FS3Error as
# Storage/Read would. The buffer belongs to the connection and is reused for its next item.
ReadFn = Callable[[int, int, int, int, int, int, bool, bytearray], "tuple[int, memoryview, int] | None"]
# (UpdateReq header, payload) -> UpdateRsp once committed down the chain; raises FS3Error.
UpdateFn = Callable[[storage_pb2.UpdateReq, bytearray], storage_pb2.UpdateRsp]


MAX_CONNECTIONS = 2048  # open connections (one thread each)
IDLE_TIMEOUT_S = 60.0  # a connection silent this long is closed
EVICT_IDLE_S = 5.0  # at the connection limit, one idle at least this long makes room for a new one


class DataPortMetrics:
    """Prometheus counters of the data port, once per process (the default registry)."""

    _instance: DataPortMetrics | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        from prometheus_client import Counter

        self.items = Counter(
            "fs3_dataport_items", "Chunk reads answered on the data port, by status", ["status"]
        )
        self.sent = Counter("fs3_dataport_sent_bytes", "Chunk bytes sent on the data port")
        self.updates = Counter(
            "fs3_dataport_updates", "Chunk updates answered on the data port, by status", ["status"]
        )
        self.received = Counter(
            "fs3_dataport_received_bytes", "Update payload bytes received on the data port"
        )
        self.connections = Counter("fs3_dataport_connections", "Data-port connections accepted")

    @classmethod
    def get(cls) -> DataPortMetrics:
        """The process's one instance (Prometheus refuses to register a family twice)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance


class DataServer:
    """Listens on ``host:port`` (0: any free port; see ``port`` after ``start``) and answers reads."""

    def __init__(
        self,
        host: str,
        port: int,
        read: ReadFn,
        name: str = "storage",
        update: UpdateFn | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        evict_idle_s: float = EVICT_IDLE_S,
    ) -> None:
        self.host, self.name = host, name
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.evict_idle_s = min(evict_idle_s, idle_timeout_s)
        self._read = read
        self._update = update
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise OSError(exc.errno, f"{name}: data port {host}:{port}: {exc.strerror}") from None
        self._sock.listen(1024)  # a burst of connects waits here, not in SYN-ACK retransmits
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._idle_since: dict[socket.socket, float] = {}  # connections waiting for their next request
        self._refused = 0  # connections refused since the last log line about it
        self._refused_logged_t = 0.0
        self._conns_lock = threading.Lock()
        self._metrics = DataPortMetrics.get()

    @property
    def address(self) -> str:
        """``host:port`` clients connect to."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> None:
        """Accept connections on a background thread."""
        threading.Thread(target=self._accept_loop, name=f"{self.name}-dataport", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and close every connection (clients see them end, as when the process dies)."""
        self._stop.set()
        with self._conns_lock:
            conns = list(self._conns)
        for s in [self._sock, *conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except OSError as exc:
                if self._stop.is_set():
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logging.warning("data port: cannot accept (%s); retrying", exc.strerror)
                    time.sleep(0.05)  # out of descriptors: do not spin
                continue
            self._metrics.connections.inc()
            with self._conns_lock:
                victim = None
                if len(self._conns) >= self.max_connections:
                    victim = self._longest_idle()
                    if victim is not None:  # gone from the count now; its thread closes it
                        self._conns.discard(victim)
                        self._idle_since.pop(victim, None)
                full = len(self._conns) >= self.max_connections
                if not full:
                    self._conns.add(conn)
            if victim is not None:
                logging.info(
                    "data port: %d connections open, closing the longest idle one", self.max_connections
                )
                _shutdown(victim)
            if full:  # a thread per connection: refuse rather than exhaust the process
                self._refused += 1
                now = time.monotonic()
                if now - self._refused_logged_t >= 1.0:  # a flood must not flood the log too
                    logging.warning(
                        "data port: %d connections open, refused %d (last %s)",
                        self.max_connections,
                        self._refused,
                        peer,
                    )
                    self._refused, self._refused_logged_t = 0, now
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _longest_idle(self) -> socket.socket | None:
        """The connection waiting longest for a request, if for ``evict_idle_s`` or more (under the lock)."""
        if not self._idle_since:
            return None
        conn, since = min(self._idle_since.items(), key=lambda kv: kv[1])
        return conn if time.monotonic() - since >= self.evict_idle_s else None

    def _serve(self, conn: socket.socket, peer: object) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        wire.set_io_timeout(conn, self.idle_timeout_s)
        head = memoryview(bytearray(wire.BATCH_HEADER.size))
        buf = bytearray()
        try:
            while not self._stop.is_set():
                with self._conns_lock:
                    if conn not in self._conns:
                        return  # evicted
                    self._idle_since[conn] = time.monotonic()
                try:
                    wire.recv_exact(conn, head)
                except (ConnectionError, TimeoutError):
                    return  # the client is done with this connection, or silent for idle_timeout_s
                finally:
                    with self._conns_lock:
                        self._idle_since.pop(conn, None)
                magic, version, op, n = wire.BATCH_HEADER.unpack(head)
                if magic != wire.MAGIC or version != wire.VERSION or not 1 <= n <= wire.MAX_ITEMS:
                    logging.warning("data port: bad request header from %s; closing", peer)
                    return
                if op == wire.OP_UPDATE and self._update is not None and n == 1:
                    if not self._serve_update(conn, peer):
                        return
                    continue
                if op != wire.OP_READ:
                    logging.warning("data port: unknown op %d from %s; closing", op, peer)
                    return
                items = memoryview(bytearray(n * wire.READ_ITEM.size))
                wire.recv_exact(conn, items)
                for i in range(n):
                    self._answer(conn, i, wire.READ_ITEM.unpack_from(items, i * wire.READ_ITEM.size), buf)
        except OSError as exc:
            logging.debug("data port connection from %s ended: %s", peer, exc)
        except Exception:  # a bug here must show in the log, not only end the connection
            logging.exception("data port connection from %s failed", peer)
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
                self._idle_since.pop(conn, None)
            conn.close()

    def _serve_update(self, conn: socket.socket, peer: object) -> bool:
        """Receive one update, apply it, answer; False when the request was malformed (answered, then close)."""
        head = memoryview(bytearray(wire.UPDATE_HEAD.size))
        wire.recv_exact(conn, head)
        header_len, payload_len = wire.UPDATE_HEAD.unpack(head)
        if header_len > wire.MAX_UPDATE_HEADER_BYTES or payload_len > wire.MAX_PAYLOAD_BYTES:
            logging.warning(
                "data port: update of %d+%d bytes from %s; closing", header_len, payload_len, peer
            )
            self._reject(
                conn,
                f"header of {header_len} bytes (at most {wire.MAX_UPDATE_HEADER_BYTES}) or payload of "
                f"{payload_len} bytes (at most {wire.MAX_PAYLOAD_BYTES})",
            )
            return False
        raw = memoryview(bytearray(header_len))  # at most 64 KiB
        wire.recv_exact(conn, raw)
        payload = wire.recv_growing(conn, payload_len)  # grows as the bytes arrive
        self._metrics.received.inc(payload_len)
        try:
            req = storage_pb2.UpdateReq.FromString(bytes(raw))
        except Exception:  # protobuf's DecodeError, or worse
            logging.warning("data port: undecodable update header from %s; closing", peer)
            self._reject(conn, f"header of {header_len} bytes is not an UpdateReq")
            return False
        try:
            rsp = self._update(req, payload)  # type: ignore[misc]
        except errors.FS3Error as exc:
            msg = _error_text(exc)
            self._metrics.updates.labels("error").inc()
            wire.send_all(conn, [wire.REPLY.pack(wire.STATUS_ERROR, len(msg)), msg])
            return True
        body = rsp.SerializeToString()
        self._metrics.updates.labels("ok").inc()
        wire.send_all(conn, [wire.REPLY.pack(wire.STATUS_DATA, len(body)), body])
        return True

    def _reject(self, conn: socket.socket, why: str) -> None:
        """Answer a malformed update with EINVAL (the connection is closed after it)."""
        msg = _error_text(errors.InvalidArgument("data port update", why))
        self._metrics.updates.labels("error").inc()
        try:
            wire.send_all(conn, [wire.REPLY.pack(wire.STATUS_ERROR, len(msg)), msg])
        except OSError:
            pass  # the peer is gone or not reading: closing is all that is left

    def _answer(self, conn: socket.socket, i: int, item: tuple[int, ...], buf: bytearray) -> None:
        target, inode, index, offset, length, chain_version, flags = item
        try:
            got = self._read(
                target, inode, index, offset, length, chain_version, bool(flags & wire.FLAG_RELAXED), buf
            )
        except errors.FS3Error as exc:
            self._error(conn, i, exc)
            return
        except Exception as exc:  # one bad item must not end the connection
            logging.exception("data port item %d (target %d chunk %d:%d) failed", i, target, inode, index)
            self._error(conn, i, errors.IOFailure(f"target {target} chunk {inode}:{index}", repr(exc)))
            return
        if got is None:
            self._metrics.items.labels("hole").inc()
            wire.send_all(conn, [wire.ITEM_HEADER.pack(i, wire.STATUS_HOLE, 0, 0, 0, 0, 0)])
            return
        version, content, chunk_crc = got
        end = len(content) if length == 0 else min(len(content), offset + length)
        start = min(offset, end)
        data = content[start:end]
        crc = chunk_crc if start == 0 and end == len(content) else crc32c(data)
        wire.send_all(
            conn, [wire.ITEM_HEADER.pack(i, wire.STATUS_DATA, version, len(content), len(data), crc, 0), data]
        )
        self._metrics.items.labels("data").inc()
        self._metrics.sent.inc(len(data))

    def _error(self, conn: socket.socket, i: int, exc: errors.FS3Error) -> None:
        msg = _error_text(exc)
        self._metrics.items.labels("error").inc()
        wire.send_all(conn, [wire.ITEM_HEADER.pack(i, wire.STATUS_ERROR, 0, 0, 0, 0, len(msg)), msg])


def _shutdown(conn: socket.socket) -> None:
    """Wake the thread blocked on ``conn`` (it sees the connection end and closes it)."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _error_text(exc: errors.FS3Error) -> bytes:
    """The error an item or update answers with: gRPC's status text for ``exc``, capped."""
    return errors.wire_message(exc).encode("utf-8", "replace")[: wire.MAX_ERROR_BYTES]
