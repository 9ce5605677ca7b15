"""``haictl fs bench``: a FUSE mount of fs3 against the native client and the local disk.

Mounts a cluster (a running one, or a LocalCluster started for the run) in a temp dir and prints
three tables: dd-style sequential I/O, small-file metadata rates, and random sample reads from many
small files vs one packed ``fs3.dataset`` file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ffcommon.bench import MiB, Table, gbps, median_s, ratio
from fs3.bench.measure import (
    BLOCK_BYTES,
    PAGE_CACHE_NOTE,
    fs3_meta,
    fs3_read_s,
    fs3_write_s,
    meta_rates,
    pattern,
    posix_meta,
    posix_read_s,
    posix_write_s,
    remove_quiet,
)


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
            setup=lambda: remove_quiet(client.remove, nfile),
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
    from fs3.cluster import LocalCluster, LocalClusterConfig
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
            cluster = st.enter_context(LocalCluster(LocalClusterConfig(), work_dir=work / "cluster"))
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
