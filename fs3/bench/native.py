"""``python -m fs3.bench`` / ``haictl bench fs``: fs3 sequential I/O and metadata rates against peers.

Starts local clusters of real processes (3 storage servers; 3-way and 1-way replication: the chain
table is per cluster, so one cluster each) and measures, through the native client, sequential
write/read of one large file with 1 and N client threads (N threads = disjoint ranges of one file),
and create/stat/listdir rates. Every figure is compared, in the same run, with peers on the same
machine: the local disk (plain pwrite+fsync / pread of the same bytes in the same directory), a raw
loopback TCP stream of the same bytes, and raw TCP request/response round trips for metadata.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ffcommon.bench import MiB, Table, emit, gbps, int_list, median_s, parse_size, ratio
from fs3.bench.measure import (
    BLOCK_BYTES,
    PAGE_CACHE_NOTE,
    fs3_meta,
    fs3_read_s,
    fs3_write_s,
    meta_rates,
    posix_meta,
    posix_read_s,
    posix_write_s,
    remove_quiet,
    socket_rtt_rate,
    socket_stream_s,
)


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
        lambda: fs3_write_s(client, path, size, t), repeats, setup=lambda: remove_quiet(client.remove, path)
    )
    lw = median_s(
        lambda: posix_write_s(local, size, t), repeats, setup=lambda: remove_quiet(os.unlink, local)
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
    remove_quiet(os.unlink, local)


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
    from fs3.cluster import LocalCluster, LocalClusterConfig

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
        cfg = LocalClusterConfig(num_storage=num_storage, replicas=r, chunk_size=chunk_size)
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
    from fs3.cluster import LocalCluster, LocalClusterConfig

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
    with LocalCluster(LocalClusterConfig(replicas=replicas), work_dir=work_dir / "cluster-meta") as cluster:
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
    nbytes = parse_size(size, click.BadParameter)
    reps = int_list(replicas, click.BadParameter)
    if any(not 1 <= r <= 3 for r in reps):
        raise click.BadParameter("replicas must be in 1..3 (3 storage servers)")
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
    cs = parse_size(chunk_size, click.BadParameter)
    if cs & (cs - 1) or cs > 64 * MiB:
        raise click.BadParameter(f"chunk size must be a power of two <= 64 MiB: {chunk_size!r}")
    tables = run(nbytes, int_list(threads, click.BadParameter), reps, repeats, files, data_dir, cs)
    emit(tables, as_json)
