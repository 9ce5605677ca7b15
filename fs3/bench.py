"""``python -m fs3.bench`` / ``haictl bench fs``: fs3 sequential I/O and metadata rates against peers.

Starts local clusters of real processes (3 storage servers; 3-way and 1-way replication: the chain
table is per cluster, so one cluster each) and measures, through the native client, sequential
write/read of one large file with 1 and N client threads (N threads = disjoint ranges of one file),
and create/stat/listdir rates. Every figure is compared, in the same run, with peers on the same
machine: the local disk (plain pwrite+fsync / pread of the same bytes in the same directory), a raw
loopback TCP stream of the same bytes, and raw TCP request/response round trips for metadata.

The measurement helpers (median timing, tables, the socket and POSIX peers, native-client I/O) are
also used by ``haictl fs bench`` (FUSE mount vs native client vs local disk).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

BLOCK_BYTES = 16 << 20  # bytes per pread/pwrite call: 16 chunks of 1 MiB in flight per native call
MiB = 1 << 20
PAGE_CACHE_NOTE = (
    "reads follow the writes: the page cache is not dropped (not reliably possible without root and "
    "a quiet machine), so both fs3's storage servers and the local-disk peer read from memory"
)


# ---- timing and tables -------------------------------------------------------------------------
def median_s(fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs; ``setup()`` runs untimed before each."""
    times = []
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_threads(threads: int, fn: Callable[[int], object]) -> None:
    """Run ``fn(k)`` for k in 0..threads-1, each on its own thread; re-raise the first error."""
    if threads == 1:
        fn(0)
        return
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            fn(k)
        except BaseException as exc:  # re-raised below in the caller's thread
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,), name=f"bench-{k}") for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def split_ranges(nbytes: int, parts: int, align: int = MiB) -> list[tuple[int, int]]:
    """``parts`` disjoint (offset, length) ranges covering ``nbytes``, boundaries aligned to ``align``."""
    per = max(align, (nbytes // parts + align - 1) // align * align)
    out = []
    for k in range(parts):
        off = k * per
        n = max(0, min(per, nbytes - off))
        out.append((off, n))
    return out


def gbps(nbytes: int, seconds: float) -> float:
    """Throughput in GB/s (10^9 bytes per second)."""
    return nbytes / max(seconds, 1e-12) / 1e9


def ratio(a: float, b: float) -> float:
    """``a / b``, or NaN when ``b`` is zero."""
    return a / b if b else float("nan")


_PATTERN: dict[int, bytes] = {}


def pattern(nbytes: int = BLOCK_BYTES) -> bytes:
    """A random block of ``nbytes`` (generated once): the payload every writer repeats."""
    if nbytes not in _PATTERN:
        _PATTERN[nbytes] = os.urandom(nbytes)
    return _PATTERN[nbytes]


@dataclass
class Table:
    """An nccl-tests-like table: ``#`` title and notes, then right-aligned columns (units in the headers)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *values: Any) -> None:
        """Append one row (one value per column)."""
        if len(values) != len(self.columns):
            raise ValueError(f"{self.title}: row has {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))

    @staticmethod
    def _cell(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "-"
            return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    def render(self) -> str:
        """The table as text."""
        cells = [[self._cell(v) for v in r] for r in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = [f"# {self.title}"]
        lines += [f"#   {n}" for n in self.notes]
        lines.append("#" + "  ".join(c.rjust(w) for c, w in zip(self.columns, widths, strict=True)))
        lines += [" " + "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Rows as dicts keyed by column header (for ``--json``)."""
        return {
            "title": self.title,
            "notes": self.notes,
            "rows": [dict(zip(self.columns, r, strict=True)) for r in self.rows],
        }


def emit(tables: Sequence[Table], as_json: bool) -> None:
    """Print the tables (text, or one JSON document)."""
    if as_json:
        click.echo(json.dumps([t.as_dict() for t in tables], indent=2, default=str))
    else:
        click.echo("\n\n".join(t.render() for t in tables))


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


def _remove_quiet(fn: Callable[[str], object], path: str | os.PathLike) -> None:
    try:
        fn(path)  # type: ignore[arg-type]
    except FileNotFoundError:
        pass


# ---- the benchmark -----------------------------------------------------------------------------
def _add_io_row(
    table: Table, op: str, r: int, t: int, size: int, fs3_s: float, local_s: float, sock_s: float
) -> None:
    f, lo, so = gbps(size, fs3_s), gbps(size, local_s), gbps(size, sock_s)
    table.add(op, r, t, size / MiB, fs3_s, f, lo, so, ratio(f, lo), ratio(f, so))


def _seq_io_rows(
    table: Table, client: Any, grpc_client: Any, r: int, t: int, size: int, repeats: int, local: Path
) -> None:
    """Write, read and read(grpc) rows for ``t`` threads on an ``r``-way cluster, peers measured right after."""
    path = f"/seq-{t}.bin"
    w = median_s(
        lambda: fs3_write_s(client, path, size, t), repeats, setup=lambda: _remove_quiet(client.remove, path)
    )
    lw = median_s(
        lambda: posix_write_s(local, size, t), repeats, setup=lambda: _remove_quiet(os.unlink, local)
    )
    sk = median_s(lambda: socket_stream_s(size, t), repeats)
    _add_io_row(table, "write", r, t, size, w, lw, sk)
    rd = median_s(lambda: fs3_read_s(client, path, size, t), repeats)
    lr = median_s(lambda: posix_read_s(local, size, t), repeats)
    sk = median_s(lambda: socket_stream_s(size, t), repeats)
    _add_io_row(table, "read", r, t, size, rd, lr, sk)
    rg = median_s(lambda: fs3_read_s(grpc_client, path, size, t), repeats)
    _add_io_row(table, "read(grpc)", r, t, size, rg, lr, sk)
    client.remove(path)
    _remove_quiet(os.unlink, local)


def seq_io_table(
    size: int,
    threads: Sequence[int],
    replicas: Sequence[int],
    repeats: int,
    work_dir: Path,
    num_storage: int = 3,
    chunk_size: int = MiB,
) -> Table:
    """Sequential write/read through the native client per replication factor, with local-disk and socket peers."""
    from fs3.cluster import ClusterConfig, LocalCluster

    table = Table(
        f"fs3 sequential I/O: native client, {num_storage} storage servers, chunk {chunk_size // 1024} KiB, "
        f"{size / MiB:.0f} MiB file, {BLOCK_BYTES // MiB} MiB per pread/pwrite, median of {repeats}",
        ["op", "replicas", "threads", "size(MiB)", "time(s)", "fs3(GB/s)", "local(GB/s)", "socket(GB/s)",
         "fs3/local", "fs3/socket"],
        notes=[
            "threads: client threads on disjoint ranges of one file (socket: that many TCP streams)",
            "local: pwrite+fsync / pread of the same bytes in the same directory as the cluster's data",
            "socket: raw Python TCP stream of the same bytes over 127.0.0.1",
            "fs3 write = open, pwrite, close (every replica fsyncs each chunk before the ACK)",
            "fs3 read: chunk payloads over the storage data ports (framed TCP, CRC32C checked by the server "
            "and again by the client); read(grpc): the same reads over gRPC BatchRead, for comparison",
            PAGE_CACHE_NOTE,
        ],
    )  # fmt: skip
    local = work_dir / "local-peer.bin"
    for r in replicas:
        cfg = ClusterConfig(num_storage=num_storage, replicas=r, chunk_size=chunk_size)
        with LocalCluster(cfg, work_dir=work_dir / f"cluster-r{r}") as cluster:
            client = cluster.client()
            grpc_client = cluster.client(data_port=False)
            client.write_bytes("/warmup", b"x" * chunk_size)  # connect to meta and every storage node
            grpc_client.read_bytes("/warmup")
            for t in threads:
                _seq_io_rows(table, client, grpc_client, r, t, size, repeats, local)
    return table


def meta_table(files: int, threads: Sequence[int], repeats: int, work_dir: Path, replicas: int = 3) -> Table:
    """create/stat/listdir ops/s through the native client vs local disk vs raw TCP round trips."""
    from fs3.cluster import ClusterConfig, LocalCluster

    table = Table(
        f"fs3 metadata: native client, {replicas}-way cluster, {files} files per run, median of {repeats}",
        ["op", "threads", "files", "fs3(ops/s)", "local(ops/s)", "socket-rtt(ops/s)", "fs3/local",
         "fs3/socket"],
        notes=[
            "create = open(O_CREAT|O_EXCL)+close: 2 meta RPCs on fs3; listdir lists a directory of `files` entries",
            "socket-rtt: 64-byte request/response round trips over raw loopback TCP (one RPC's floor)",
        ],
    )  # fmt: skip
    local_base = work_dir / "local-meta"
    local_base.mkdir(parents=True, exist_ok=True)
    with LocalCluster(ClusterConfig(replicas=replicas), work_dir=work_dir / "cluster-meta") as cluster:
        client = cluster.client()
        client.mkdir("/meta")
        for t in threads:
            fs = meta_rates(fs3_meta(client), "/meta", files, t, repeats)
            loc = meta_rates(posix_meta(), str(local_base), files, t, repeats)
            rtt = socket_rtt_rate(max(files, 2000), t)
            for op in ("create", "stat", "listdir"):
                table.add(op, t, files, fs[op], loc[op], rtt, ratio(fs[op], loc[op]), ratio(fs[op], rtt))
    return table


def run(
    size: int = 1 << 30,
    threads: Sequence[int] = (1, 4),
    replicas: Sequence[int] = (3, 1),
    repeats: int = 3,
    files: int = 1000,
    data_dir: str | None = None,
    chunk_size: int = MiB,
) -> list[Table]:
    """Both tables; clusters and peer files live under ``data_dir`` (default: a temp dir, removed after)."""
    with tempfile.TemporaryDirectory(prefix="fs3-bench-", dir=data_dir) as tmp:
        work = Path(tmp)
        return [
            seq_io_table(size, threads, replicas, repeats, work, chunk_size=chunk_size),
            meta_table(files, threads, repeats, work),
        ]


# ---- through a FUSE mount (``haictl fs bench``) --------------------------------------------------
def rmtree(client: Any, path: str) -> None:
    """Remove the fs3 tree at ``path`` through ``client`` (files, then directories, bottom-up)."""
    for e in client.scandir(path):
        child = f"{path.rstrip('/')}/{e.name}"
        if e.type == 2:
            rmtree(client, child)
        else:
            client.remove(child)
    client.rmdir(path)


def dd_table(
    mnt: Path, fs3_dir: str, local: Path, client: Any, size: int, repeats: int, block: int = BLOCK_BYTES
) -> Table:
    """dd-style sequential write (+fsync) and read of ``size`` bytes: FUSE mount vs native client vs local disk."""
    table = Table(
        f"dd-style sequential I/O, one thread, bs {block // MiB} MiB, {size / MiB:.0f} MiB, median of {repeats}",
        ["op", "size(MiB)", "fuse(GB/s)", "native(GB/s)", "local(GB/s)", "fuse/native", "fuse/local"],
        notes=["write = create, pwrite, fsync, close; the same bytes on each path", PAGE_CACHE_NOTE],
    )
    mfile, nfile, lfile = mnt / "dd.bin", f"{fs3_dir}/dd-native.bin", local / "dd.bin"
    w = {
        "fuse": median_s(lambda: posix_write_s(mfile, size, 1, block), repeats),
        "native": median_s(
            lambda: fs3_write_s(client, nfile, size, 1, block), repeats,
            setup=lambda: _remove_quiet(client.remove, nfile),
        ),
        "local": median_s(lambda: posix_write_s(lfile, size, 1, block), repeats),
    }  # fmt: skip
    r = {
        "fuse": median_s(lambda: posix_read_s(mfile, size, 1, block), repeats),
        "native": median_s(lambda: fs3_read_s(client, nfile, size, 1, block), repeats),
        "local": median_s(lambda: posix_read_s(lfile, size, 1, block), repeats),
    }
    for op, t in (("write", w), ("read", r)):
        g = {k: gbps(size, v) for k, v in t.items()}
        table.add(op, size / MiB, g["fuse"], g["native"], g["local"], ratio(g["fuse"], g["native"]),
                  ratio(g["fuse"], g["local"]))  # fmt: skip
    os.unlink(mfile)
    os.unlink(lfile)
    client.remove(nfile)
    return table


def small_files_table(mnt: Path, fs3_dir: str, local: Path, client: Any, files: int, repeats: int) -> Table:
    """Empty-file creates/s, stats/s and listdirs/s: FUSE mount vs native client vs local disk."""
    table = Table(
        f"small files: one thread, {files} files per run, median of {repeats}",
        ["op", "files", "fuse(ops/s)", "native(ops/s)", "local(ops/s)", "fuse/native", "fuse/local"],
        notes=["stat through the mount may be answered by the kernel's attribute cache (1 s)"],
    )
    for d in (mnt / "meta", local / "meta"):
        d.mkdir()
    client.mkdir(f"{fs3_dir}/meta-native")
    fu = meta_rates(posix_meta(), str(mnt / "meta"), files, 1, repeats)
    na = meta_rates(fs3_meta(client), f"{fs3_dir}/meta-native", files, 1, repeats)
    lo = meta_rates(posix_meta(), str(local / "meta"), files, 1, repeats)
    for op in ("create", "stat", "listdir"):
        table.add(op, files, fu[op], na[op], lo[op], ratio(fu[op], na[op]), ratio(fu[op], lo[op]))
    return table


def dataset_table(
    mnt: Path,
    fs3_dir: str,
    client: Any,
    samples: int,
    reads: int,
    repeats: int,
    sample_bytes: int = 4096,
    batch: int = 64,
) -> Table:
    """Random sample reads: ``samples`` 4 KiB files through the mount vs the same samples packed (fs3.dataset)."""
    import random

    from fs3.dataset import PackedReader, pack_files

    src = memoryview(pattern())
    sdir = mnt / "samples"
    sdir.mkdir()
    paths = []
    for i in range(samples):
        p = sdir / f"{i:07d}.bin"
        off = (i * sample_bytes) % (len(src) - sample_bytes)
        with open(p, "wb") as f:
            f.write(src[off : off + sample_bytes])
        paths.append(str(p))
    pack_files(paths, str(mnt / "samples.pack"), names=[os.path.basename(p) for p in paths])
    order = random.Random(0).choices(range(samples), k=reads)
    batches = [order[i : i + batch] for i in range(0, reads, batch)]

    def read_files() -> None:
        for i in order:
            with open(paths[i], "rb", buffering=0) as f:
                if len(f.read()) != sample_bytes:
                    raise OSError(5, f"{paths[i]}: short sample")

    table = Table(
        f"random {sample_bytes // 1024} KiB sample reads: {samples} samples, {reads} random reads per run, "
        f"median of {repeats}",
        ["layout", "access", "via", "reads", "time(s)", "rate(samples/s)", "rate(MB/s)", "vs-files"],
        notes=[
            "files: open+read+close of one small file per sample, through the mount",
            f"packed: one fs3.dataset file; read(i) one pread per sample, read_batch({batch}) coalesced parallel",
            "every sample's CRC32C is checked on the packed paths; the kernel may cache pages of both",
        ],
    )
    base = median_s(read_files, repeats)

    def add(layout: str, access: str, via: str, s: float) -> None:
        table.add(layout, access, via, reads, s, reads / s, reads * sample_bytes / s / 1e6, ratio(base, s))

    add("files", "open+read", "fuse", base)
    for via, opener in (
        ("fuse", lambda: PackedReader.open(str(mnt / "samples.pack"))),
        ("native", lambda: PackedReader.open(f"{fs3_dir}/samples.pack", client=client)),
    ):
        with opener() as r:
            add("packed", "read(i)", via, median_s(lambda r=r: [r.read(i) for i in order], repeats))
            add("packed", f"read_batch({batch})", via,
                median_s(lambda r=r: [r.read_batch(b) for b in batches], repeats))  # fmt: skip
    return table


def mount_bench(
    mgmtd: str | None = None,
    size: int = 1 << 30,
    files: int = 500,
    samples: int = 1000,
    reads: int = 2000,
    repeats: int = 3,
    data_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Table]:
    """Mount the cluster at ``mgmtd`` (None: start a LocalCluster) in a temp dir and run the three tables.

    Everything runs in a fresh ``/fs-bench-*`` directory of the cluster, removed at the end; the mount
    is always unmounted and its daemon stopped, also on failure.
    """
    import contextlib
    import uuid

    from ffcommon.launcher import Launcher
    from fs3.client import FS3Client
    from fs3.cluster import ClusterConfig, LocalCluster
    from fs3.fuse import mount, unmount

    say = log or (lambda _m: None)
    with (
        tempfile.TemporaryDirectory(prefix="fs3-fsbench-", dir=data_dir) as tmp,
        contextlib.ExitStack() as st,
    ):
        work = Path(tmp)
        where = f"running cluster (mgmtd {mgmtd})"
        if mgmtd is None:
            say("starting a local cluster (3 storage servers, 3-way replication)")
            cluster = st.enter_context(LocalCluster(ClusterConfig(), work_dir=work / "cluster"))
            mgmtd, where = cluster.mgmtd_address, "local cluster (3 storage servers, 3-way replication)"
        client = FS3Client(mgmtd)
        st.callback(client.close)
        name = f"fs-bench-{uuid.uuid4().hex[:8]}"
        fs3_dir = f"/{name}"
        client.mkdir(fs3_dir)
        st.callback(rmtree, client, fs3_dir)
        local = work / "local"
        local.mkdir()
        mp = work / "mnt"
        launcher = Launcher(work / "logs")
        say(f"mounting {where} at {mp}")

        def _unmount() -> None:
            try:
                unmount(mp, lazy=True)
            finally:
                launcher.stop_all(grace_s=3)

        st.callback(_unmount)
        mount(launcher, str(mp), mgmtd=mgmtd)
        mdir = mp / name
        tables = [dd_table(mdir, fs3_dir, local, client, size, repeats)]
        tables.append(small_files_table(mdir, fs3_dir, local, client, files, repeats))
        tables.append(dataset_table(mdir, fs3_dir, client, samples, reads, repeats))
        for t in tables:
            t.notes.insert(0, f"cluster: {where}; mount: FUSE (pyfuse3) at a temp dir")
        return tables


def parse_size(s: str) -> int:
    """``256M``, ``1G``, ``4096``, ``8MiB`` -> bytes."""
    t = s.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)
    except ValueError:
        raise click.BadParameter(f"not a size: {s!r}") from None
    if n <= 0:
        raise click.BadParameter(f"size must be positive: {s!r}")
    return n


def _int_list(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of integers: {s!r}") from None


@click.command("fs")
@click.option("--size", default="1G", show_default=True, help="bytes per sequential test (K/M/G suffix)")
@click.option("--threads", default="1,4", show_default=True, help="client thread counts")
@click.option("--replicas", default="3,1", show_default=True, help="replication factors (one cluster each)")
@click.option("--repeats", default=3, show_default=True, help="runs per figure (the median is shown)")
@click.option("--files", default=1000, show_default=True, help="files per metadata run")
@click.option("--chunk-size", default="1M", show_default=True, help="chunk size of the clusters (power of 2)")
@click.option("--data-dir", type=click.Path(file_okay=False), help="where clusters and peer files live")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def fs_bench(
    size: str,
    threads: str,
    replicas: str,
    repeats: int,
    files: int,
    chunk_size: str,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """fs3 native-client sequential I/O and metadata rates vs local disk and raw loopback TCP.

    \b
    Example:
      python -m fs3.bench --size 256M
      haictl bench fs --size 1G --repeats 3 --data-dir /var/tmp
    """
    nbytes = parse_size(size)
    reps = _int_list(replicas)
    if any(not 1 <= r <= 3 for r in reps):
        raise click.BadParameter("replicas must be in 1..3 (3 storage servers)")
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
    cs = parse_size(chunk_size)
    if cs & (cs - 1) or cs > 64 * MiB:
        raise click.BadParameter(f"chunk size must be a power of two <= 64 MiB: {chunk_size!r}")
    tables = run(nbytes, _int_list(threads), reps, repeats, files, data_dir, cs)
    emit(tables, as_json)


if __name__ == "__main__":
    fs_bench()
