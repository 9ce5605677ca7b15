"""What the fs3 benchmarks time: sequential I/O and metadata ops on fs3 (native client), POSIX
paths (local disk, a FUSE mount) and raw loopback TCP, the peers every figure is compared with."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ffcommon.bench import MiB, median_s, run_threads

BLOCK_BYTES = 16 << 20  # bytes per pread/pwrite call: 16 chunks of 1 MiB in flight per native call
PAGE_CACHE_NOTE = (
    "reads follow the writes: the page cache is not dropped (not reliably possible without root and "
    "a quiet machine), so both fs3's storage servers and the local-disk peer read from memory"
)


# ---- payload and ranges ------------------------------------------------------------------
def split_ranges(nbytes: int, parts: int, align: int = MiB) -> list[tuple[int, int]]:
    """``parts`` disjoint (offset, length) ranges covering ``nbytes``, boundaries aligned to ``align``."""
    per = max(align, (nbytes // parts + align - 1) // align * align)
    out = []
    for k in range(parts):
        off = k * per
        n = max(0, min(per, nbytes - off))
        out.append((off, n))
    return out


_PATTERN: dict[int, bytes] = {}


def pattern(nbytes: int = BLOCK_BYTES) -> bytes:
    """A random block of ``nbytes`` (generated once): the payload every writer repeats."""
    if nbytes not in _PATTERN:
        _PATTERN[nbytes] = os.urandom(nbytes)
    return _PATTERN[nbytes]


# ---- peer: raw loopback TCP --------------------------------------------------------------------
def _listener() -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    return srv


def socket_stream_s(nbytes: int, streams: int = 1, block: int = BLOCK_BYTES) -> float:
    """Seconds to move ``nbytes`` over ``streams`` parallel loopback TCP connections (sendall/recv_into)."""
    srv = _listener()
    port = srv.getsockname()[1]
    parts = split_ranges(nbytes, streams)
    payload = memoryview(pattern(block))
    senders: list[socket.socket] = []
    conns: list[socket.socket] = []
    try:
        for _ in parts:
            senders.append(socket.create_connection(("127.0.0.1", port)))
            conns.append(srv.accept()[0])

        def one(k: int) -> None:  # one stream: a sender thread and this receiving thread
            length = parts[k][1]
            s, r = senders[k], conns[k]
            buf = memoryview(bytearray(min(block, 4 * MiB)))

            def send() -> None:
                left = length
                while left > 0:
                    n = min(left, len(payload))
                    s.sendall(payload[:n])
                    left -= n

            t = threading.Thread(target=send)
            t.start()
            got = 0
            while got < length:
                n = r.recv_into(buf, min(len(buf), length - got))
                if n == 0:
                    raise ConnectionError("loopback peer closed early")
                got += n
            t.join()

        t0 = time.perf_counter()
        run_threads(len(parts), one)
        return time.perf_counter() - t0
    finally:
        for c in conns + senders:
            c.close()
        srv.close()


def socket_rtt_rate(n: int, threads: int = 1, msg_bytes: int = 64) -> float:
    """Round trips per second of ``msg_bytes`` request/response over loopback TCP (an RPC's floor)."""
    srv = _listener()
    port = srv.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(threads)]
    servers = [srv.accept()[0] for _ in range(threads)]
    for s in clients + servers:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    per = max(1, n // threads)
    msg = b"x" * msg_bytes

    def recv_exact(s: socket.socket, k: int) -> None:
        got = 0
        while got < k:
            d = s.recv(k - got)
            if not d:
                raise ConnectionError("loopback peer closed early")
            got += len(d)

    def echo(s: socket.socket) -> None:
        for _ in range(per):
            recv_exact(s, msg_bytes)
            s.sendall(msg)

    echoes = [threading.Thread(target=echo, args=(s,), daemon=True) for s in servers]
    for t in echoes:
        t.start()

    def client(k: int) -> None:
        c = clients[k]
        for _ in range(per):
            c.sendall(msg)
            recv_exact(c, msg_bytes)

    try:
        t0 = time.perf_counter()
        run_threads(threads, client)
        return per * threads / (time.perf_counter() - t0)
    finally:
        for t in echoes:
            t.join(5)
        for s in clients + servers:
            s.close()
        srv.close()


# ---- POSIX files: the local-disk peer, and a FUSE mount --------------------------------------
def posix_write_s(path: str | os.PathLike, nbytes: int, threads: int = 1, block: int = BLOCK_BYTES) -> float:
    """Seconds to create ``path`` and pwrite ``nbytes`` (``threads`` disjoint ranges), then fsync and close."""
    payload = memoryview(pattern(block))
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:

        def one(k: int) -> None:
            off, length = split_ranges(nbytes, threads)[k]
            end = off + length
            while off < end:
                n = min(block, end - off)
                done = 0
                while done < n:
                    done += os.pwrite(fd, payload[done:n], off + done)
                off += n

        run_threads(threads, one)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def posix_read_s(path: str | os.PathLike, nbytes: int, threads: int = 1, block: int = BLOCK_BYTES) -> float:
    """Seconds to open ``path`` and pread ``nbytes`` (``threads`` disjoint ranges); checks the length."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:

        def one(k: int) -> None:
            off, length = split_ranges(nbytes, threads)[k]
            buf = memoryview(bytearray(block))
            end = off + length
            while off < end:
                n = os.preadv(fd, [buf[: min(block, end - off)]], off)
                if n == 0:
                    raise OSError(5, f"{path}: short read at {off} of {nbytes}")
                off += n

        run_threads(threads, one)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


@dataclass
class MetaOps:
    """create/stat/listdir on one namespace; ``posix_meta`` and ``fs3_meta`` give the two kinds."""

    create: Callable[[str], None]
    stat: Callable[[str], object]
    listdir: Callable[[str], list[str]]
    mkdir: Callable[[str], None]


def posix_meta() -> MetaOps:
    """Metadata ops on a POSIX path (local disk or a mount)."""

    def create(p: str) -> None:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

    return MetaOps(create=create, stat=os.stat, listdir=os.listdir, mkdir=lambda p: os.mkdir(p))


def fs3_meta(client: Any) -> MetaOps:
    """Metadata ops through an ``FS3Client`` (create = Open(O_CREAT|O_EXCL) + Close, as a POSIX create)."""

    def create(p: str) -> None:
        client.open_flags(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL).close()

    return MetaOps(create=create, stat=client.stat, listdir=client.listdir, mkdir=lambda p: client.mkdir(p))


def meta_rates(
    ops: MetaOps, base: str, files: int, threads: int, repeats: int, listdirs: int = 50
) -> dict[str, float]:
    """Median ops/s of create, stat and listdir with ``threads`` threads; a fresh dir under ``base`` each run.

    create makes ``files`` empty files (split over the threads), stat stats each of them, listdir lists
    the directory of ``files`` entries ``listdirs`` times.
    """
    per = max(1, files // threads)
    n = per * threads
    runs: list[str] = []

    def fresh() -> None:
        d = f"{base}/m{threads}-{len(runs)}"
        ops.mkdir(d)
        runs.append(d)

    def creates() -> None:
        d = runs[-1]
        run_threads(threads, lambda k: [ops.create(f"{d}/f{k}-{i}") for i in range(per)])

    def stats() -> None:
        d = runs[-1]
        run_threads(threads, lambda k: [ops.stat(f"{d}/f{k}-{i}") for i in range(per)])

    lper = max(1, listdirs // threads)

    def listings() -> None:
        d = runs[-1]
        run_threads(threads, lambda k: [ops.listdir(d) for _ in range(lper)])

    out = {"create": n / median_s(creates, repeats, setup=fresh)}
    out["stat"] = n / median_s(stats, repeats)
    out["listdir"] = lper * threads / median_s(listings, repeats)
    return out


# ---- fs3 native client -------------------------------------------------------------------------
def fs3_write_s(client: Any, path: str, nbytes: int, threads: int = 1, block: int = BLOCK_BYTES) -> float:
    """Seconds to create ``path`` on fs3 and pwrite ``nbytes`` (``threads`` disjoint ranges), then close.

    Close reports the length to meta; storage fsyncs each chunk before acknowledging (cluster default).
    """
    payload = memoryview(pattern(block))
    t0 = time.perf_counter()
    f = client.open(path, "wb")
    try:

        def one(k: int) -> None:
            off, length = split_ranges(nbytes, threads)[k]
            end = off + length
            while off < end:
                n = min(block, end - off)
                f.pwrite(payload[:n], off)
                off += n

        run_threads(threads, one)
    finally:
        f.close()
    return time.perf_counter() - t0


def fs3_read_s(client: Any, path: str, nbytes: int, threads: int = 1, block: int = BLOCK_BYTES) -> float:
    """Seconds to open ``path`` on fs3 and preadinto ``nbytes`` (``threads`` disjoint ranges)."""
    t0 = time.perf_counter()
    f = client.open(path, "rb")
    try:

        def one(k: int) -> None:
            off, length = split_ranges(nbytes, threads)[k]
            buf = memoryview(bytearray(block))
            end = off + length
            while off < end:
                n = f.preadinto(buf[: min(block, end - off)], off)
                if n == 0:
                    raise OSError(5, f"{path}: short read at {off} of {nbytes}")
                off += n

        run_threads(threads, one)
    finally:
        f.close()
    return time.perf_counter() - t0


def remove_quiet(fn: Callable[[str], object], path: str | os.PathLike) -> None:
    """``fn(path)`` (a remove), ignoring a path that is already gone."""
    try:
        fn(path)  # type: ignore[arg-type]
    except FileNotFoundError:
        pass
