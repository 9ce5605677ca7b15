"""A storage target on a full disk: ENOSPC reaches the writer at once, replicas agree, deletes free space.

The middle replica of a one-chain cluster lives on a 64 MiB tmpfs. Filled through fs3 it rejects
new chunks below its reserve (ENOSPC, not a timeout); a chain write then commits on no replica.
Filled to the last byte by something else, deleting files still frees space (the index headroom).
"""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

from fs3 import LocalCluster, LocalClusterConfig, errors
from fs3.protos import storage_pb2, storage_pb2_grpc
from fs3.storage.store import ChunkStore

TMPFS_BYTES = 64 << 20
RESERVE_BYTES = 4 << 20
FILE_BYTES = 4 << 20
FULL_NODE = 1  # the middle of chain 1 (nodes 0, 1, 2)


def _tmpfs(path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")


def _umount(path) -> None:
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture(scope="module")
def full_cluster(tmp_path_factory):
    """A 3-replica, 1-chain cluster whose middle target's data directory is a 64 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    work = tmp_path_factory.mktemp("enospc")
    cfg = LocalClusterConfig(
        num_storage=3, replicas=3, num_chains=1, fsync=False, storage_reserve_bytes=RESERVE_BYTES
    )
    cluster = LocalCluster(cfg, work_dir=work)
    mnt = cluster.storage_dir(FULL_NODE)
    _tmpfs(mnt)
    try:
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        _umount(mnt)


def _replica_meta(cluster: LocalCluster) -> list[dict]:
    """Every target's committed chunks of chain 1, {(inode, index): (version, crc, length)}; no pendings."""
    out = []
    chain = next(c for c in cluster.routing().chains if c.chain_id == 1)
    nodes = {n.node_id: n.address for n in cluster.routing().nodes}
    from fs3 import _rpc

    for t in chain.targets:
        with _rpc.channel(nodes[t.node_id]) as ch:
            rsp = storage_pb2_grpc.StorageStub(ch).DumpChunkMeta(
                storage_pb2.DumpChunkMetaReq(target_id=t.target_id), timeout=10
            )
        assert all(m.pending_version == 0 for m in rsp.chunks), f"target {t.target_id} kept a pending write"
        out.append(
            {(m.chunk.inode_id, m.chunk.index): (m.committed_version, m.crc32c, m.length) for m in rsp.chunks}
        )
    return out


def _space(cluster: LocalCluster, node: int) -> storage_pb2.TargetSpace:
    from fs3 import _rpc

    with _rpc.channel(f"{cluster.config.host}:{cluster.storage_ports[node]}") as ch:
        (sp,) = storage_pb2_grpc.StorageStub(ch).Space(storage_pb2.TargetSpaceReq(), timeout=10).targets
    return sp


def test_full_target_answers_enospc_and_replicas_stay_identical(full_cluster, record_property):
    cl = full_cluster.client(timeout_s=30)
    cl.makedirs("/fill")
    written, err, t_fail = 0, None, 0.0
    for i in range(2 * TMPFS_BYTES // FILE_BYTES):  # bounded: twice what could ever fit
        t0 = time.monotonic()
        try:
            cl.write_bytes(f"/fill/f{i}", os.urandom(FILE_BYTES))
        except OSError as exc:
            err, t_fail = exc, time.monotonic() - t0
            break
        written += 1
    assert err is not None, "the tmpfs never filled up"
    assert isinstance(err, errors.NoSpace) and err.errno == errno.ENOSPC, repr(err)
    assert written >= 8, f"only {written} files fit before ENOSPC"

    # one chunk into a new file: the single-request latency of the answer
    with cl.open("/fill/probe", "wb") as f:
        t0 = time.monotonic()
        with pytest.raises(errors.NoSpace) as ei:
            f.pwrite(os.urandom(1 << 20), 0)
        t_chunk = time.monotonic() - t0
    assert ei.value.errno == errno.ENOSPC and "reserve" in ei.value.strerror
    record_property("enospc_file_write_s", round(t_fail, 3))
    record_property("enospc_chunk_write_s", round(t_chunk, 3))
    print(
        f"\nENOSPC after {written} x {FILE_BYTES >> 20} MiB files: file write {t_fail:.3f} s, chunk {t_chunk:.3f} s"
    )

    metas = _replica_meta(full_cluster)
    assert metas[0] == metas[1] == metas[2], "replicas diverged"
    assert len(metas[0]) >= written * (FILE_BYTES >> 20)

    sp = _space(full_cluster, FULL_NODE)
    assert sp.read_only and sp.reserve_bytes == RESERVE_BYTES and sp.free_bytes < RESERVE_BYTES + (1 << 20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the heartbeat carries it to mgmtd's routing
        tgt = next(
            t for c in cl.refresh_routing().chains for t in c.targets if t.node_id == 10001 + FULL_NODE
        )
        if tgt.read_only:
            break
        time.sleep(0.2)
    assert tgt.read_only and 0 < tgt.free_bytes < RESERVE_BYTES + (1 << 20) and tgt.total_bytes == TMPFS_BYTES
    usage = {u.target_id: u for u in cl.target_usage(exact_bytes=False)}
    assert usage[tgt.target_id].read_only and usage[tgt.target_id].disk_total_bytes == TMPFS_BYTES

    # everything that was acknowledged reads back
    for i in range(written):
        assert len(cl.read_bytes(f"/fill/f{i}")) == FILE_BYTES

    # deleting frees the space; new chunks are taken again
    before = _space(full_cluster, FULL_NODE).free_bytes
    for name in cl.listdir("/fill"):
        cl.remove(f"/fill/{name}")
    after = _space(full_cluster, FULL_NODE).free_bytes
    assert after - before >= (written - 1) * FILE_BYTES, (before, after)  # less the index WAL's growth
    cl.write_bytes("/fill/again", b"x" * FILE_BYTES)
    metas = _replica_meta(full_cluster)
    assert metas[0] == metas[1] == metas[2] and len(metas[0]) == FILE_BYTES >> 20


def test_delete_frees_space_on_a_disk_filled_by_something_else(full_cluster):
    cl = full_cluster.client(timeout_s=30)
    cl.makedirs("/other")
    blobs = [os.urandom(FILE_BYTES) for _ in range(3)]
    for i in range(3):
        cl.write_bytes(f"/other/f{i}", blobs[i])
    inodes = {cl.stat(f"/other/f{i}").st_ino for i in range(3)}
    filler = full_cluster.storage_dir(FULL_NODE) / "filler"
    try:
        with open(filler, "wb") as f:  # fill the tmpfs to its last byte
            try:
                for _ in range(TMPFS_BYTES >> 20):
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        try:
            with open(filler, "ab") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with pytest.raises(errors.NoSpace):
            cl.write_bytes("/other/more", os.urandom(1 << 20))
        cut = 3 * FILE_BYTES // 8  # 1.5 chunks: two whole chunks go, the boundary one is cut
        free_before = _space(full_cluster, FULL_NODE).free_bytes
        cl.truncate("/other/f0", cut)
        assert cl.read_bytes("/other/f0") == blobs[0][:cut]
        assert _space(full_cluster, FULL_NODE).free_bytes - free_before >= FILE_BYTES - cut - (1 << 20)
        for i in range(3):
            cl.remove(f"/other/f{i}")  # the index delete needs a page: the headroom gives it one
        sp = _space(full_cluster, FULL_NODE)
        assert sp.free_bytes >= 3 * FILE_BYTES - (1 << 20), sp  # less the headroom, taken back
        metas = _replica_meta(full_cluster)
        assert metas[0] == metas[1] == metas[2]
        assert not [k for k in metas[1] if k[0] in inodes], "deleted chunks are still indexed"
    finally:
        filler.unlink(missing_ok=True)
    cl.write_bytes("/other/after", os.urandom(1 << 20))
    metas = _replica_meta(full_cluster)
    assert metas[0] == metas[1] == metas[2]


def test_leftover_temp_files_are_removed_at_start(tmp_path):
    store = ChunkStore(tmp_path / "t", 1, fsync=False, reserve_bytes=0)
    store.stage((5, 0), 1, b"abc", 1)  # a crash here leaves the .p file behind
    pending = store.corrupt_for_test((5, 0)).with_suffix(".p")
    assert pending.exists()
    again = ChunkStore(tmp_path / "t", 1, fsync=False, reserve_bytes=0)
    assert not pending.exists() and again.meta((5, 0)) is None


def _fill(cl, prefix: str) -> int:
    """Write 4 MiB files until ENOSPC (bounded); the number that fit."""
    for i in range(2 * TMPFS_BYTES // FILE_BYTES):
        try:
            cl.write_bytes(f"{prefix}{i}", os.urandom(FILE_BYTES))
        except errors.NoSpace:
            return i
    raise AssertionError("the tmpfs never filled up")


@pytest.mark.fuse
def test_fuse_writer_gets_enospc(full_cluster, tmp_path):
    import shutil

    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("FUSE is not available here")
    pytest.importorskip("pyfuse3")
    from ffcommon.launcher import Launcher
    from fs3.fuse import mount, unmount

    cl = full_cluster.client(timeout_s=30)
    cl.makedirs("/fuse")
    _fill(cl, "/fuse/f")
    lnch = Launcher(tmp_path / "logs")
    mp = tmp_path / "mnt"
    try:
        mount(lnch, str(mp), mgmtd=full_cluster.mgmtd_address)
        t0 = time.monotonic()
        with pytest.raises(OSError) as ei:
            fd = os.open(mp / "fuse" / "new", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.write(fd, os.urandom(1 << 20))
                os.fsync(fd)
            finally:
                os.close(fd)
        print(f"\nFUSE write+fsync answered ENOSPC in {time.monotonic() - t0:.3f} s")
        assert ei.value.errno == errno.ENOSPC, ei.value
    finally:
        try:
            unmount(mp, lazy=True)
        finally:
            lnch.stop_all(grace_s=3)
    for name in cl.listdir("/fuse"):
        cl.remove(f"/fuse/{name}")
    metas = _replica_meta(full_cluster)
    assert metas[0] == metas[1] == metas[2]


def test_commit_whose_index_cannot_be_written_commits_nothing(tmp_path, monkeypatch):
    store = ChunkStore(tmp_path / "t", 1, fsync=False, reserve_bytes=0)
    store.stage((5, 0), 1, b"old", 1)
    store.commit((5, 0))
    store.stage((5, 0), 2, b"new!", 1)

    def full(sql, args):
        raise errors.NoSpace("chunk 5:0", "chunk index: database or disk is full")

    monkeypatch.setattr(store, "_index_write", full)
    with pytest.raises(errors.NoSpace):
        store.commit((5, 0))
    monkeypatch.undo()
    assert store.read((5, 0)) == b"old" and store.meta((5, 0)).committed_version == 1
    assert not store.corrupt_for_test((5, 0)).with_suffix(".p").exists()
    again = ChunkStore(tmp_path / "t", 1, fsync=False, reserve_bytes=0)
    assert again.read((5, 0)) == b"old"


def test_crash_between_index_and_rename_is_rolled_forward(tmp_path):
    from fs3.crc import crc32c

    store = ChunkStore(tmp_path / "t", 1, fsync=False, reserve_bytes=0)
    store.stage((5, 0), 1, b"v1", 1)
    store.commit((5, 0))
    store.stage((5, 0), 2, b"v2 bytes", 1)
    # the index row of v2 is written, the process dies before the rename
    store._db.execute("INSERT OR REPLACE INTO chunks VALUES (5, 0, 2, ?, 8, 1)", (crc32c(b"v2 bytes"),))
    again = ChunkStore(tmp_path / "t", 1, fsync=False, reserve_bytes=0)
    assert again.read((5, 0)) == b"v2 bytes" and again.meta((5, 0)).committed_version == 2
    assert not again.corrupt_for_test((5, 0)).with_suffix(".p").exists()
