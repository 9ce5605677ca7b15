"""Namespace operations through a real meta server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import re
import stat
import threading

import pytest

from fs3 import errors as E


@pytest.fixture
def fs(ns_cluster, request):
    """A root client and a fresh top directory named after the test."""
    cl = ns_cluster.client()
    top = "/" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:200]
    cl.mkdir(top, mode=0o777)
    return cl, top


def test_mkdir_create_stat_listdir(fs):
    cl, top = fs
    cl.mkdir(f"{top}/d")
    cl.mkdir(f"{top}/d/e/f", parents=True)
    cl.write_bytes(f"{top}/d/file", b"hello")
    assert cl.listdir(f"{top}/d") == ["e", "file"]
    st = cl.stat(f"{top}/d/file")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 5 and st.st_nlink == 1
    assert cl.stat(f"{top}/d").is_dir()
    assert list(cl.walk(f"{top}/d")) == [
        (f"{top}/d", ["e"], ["file"]),
        (f"{top}/d/e", ["f"], []),
        (f"{top}/d/e/f", [], []),
    ]
    with pytest.raises(FileExistsError):
        cl.mkdir(f"{top}/d")
    with pytest.raises(FileNotFoundError) as ei:
        cl.stat(f"{top}/nope")
    assert ei.value.filename == f"{top}/nope"
    with pytest.raises(NotADirectoryError):
        cl.listdir(f"{top}/d/file")
    assert cl.stat_inode(st.st_ino).st_size == 5


def test_scandir_stat_matches_lstat_of_each_entry(fs, ns_cluster):
    cl, top = fs
    cl.mkdir(f"{top}/sub", mode=0o750)
    cl.write_bytes(f"{top}/file", b"x" * 12345)
    cl.symlink("file", f"{top}/link")
    listed = cl.scandir_stat(top)
    assert [name for name, _ in listed] == ["file", "link", "sub"]
    for name, st in listed:
        assert st == cl.lstat(f"{top}/{name}"), name
    with pytest.raises(NotADirectoryError):
        cl.scandir_stat(f"{top}/file")
    # the listing obeys the directory's read permission like listdir
    cl.chmod(f"{top}/sub", 0o700)
    other = ns_cluster.client(uid=1234, gid=1234)
    with pytest.raises(PermissionError):
        other.scandir_stat(f"{top}/sub")


def test_rename_is_atomic_and_checks_loops(fs):
    cl, top = fs
    cl.mkdir(f"{top}/a/b/c", parents=True)
    cl.write_bytes(f"{top}/x", b"1")
    cl.write_bytes(f"{top}/y", b"22")
    cl.rename(f"{top}/x", f"{top}/y")  # replaces y
    assert cl.read_bytes(f"{top}/y") == b"1" and not cl.exists(f"{top}/x")
    with pytest.raises(ValueError):
        cl.rename(f"{top}/a", f"{top}/a/b/c/inside")  # into its own subtree
    cl.rename(f"{top}/a/b", f"{top}/b2")
    assert cl.listdir(f"{top}/b2") == ["c"] and cl.listdir(f"{top}/a") == []
    with pytest.raises(E.DirectoryNotEmpty):
        cl.rename(f"{top}/a", f"{top}/b2")
    with pytest.raises(IsADirectoryError):
        cl.rename(f"{top}/y", f"{top}/b2")
    cl.rename(f"{top}/b2", f"{top}/a")  # onto an empty directory
    assert cl.listdir(f"{top}/a") == ["c"]


def test_concurrent_renames_keep_one_entry(fs):
    """Racing renames of one file to many names: exactly one name survives (serializable transactions)."""
    cl, top = fs
    cl.write_bytes(f"{top}/src", b"data")
    results = []

    def mv(i: int) -> None:
        try:
            cl.rename(f"{top}/src", f"{top}/dst{i}")
            results.append(i)
        except FileNotFoundError:
            pass

    threads = [threading.Thread(target=mv, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1
    assert cl.listdir(top) == [f"dst{results[0]}"]


def test_unlink_rmdir_symlink_hardlink_truncate(fs):
    cl, top = fs
    cl.write_bytes(f"{top}/f", b"abcdef" * 1000)
    cl.link(f"{top}/f", f"{top}/g")
    assert cl.stat(f"{top}/f").st_nlink == 2
    cl.remove(f"{top}/f")
    assert cl.read_bytes(f"{top}/g") == b"abcdef" * 1000  # data lives while a link remains
    cl.symlink("g", f"{top}/s")
    assert cl.readlink(f"{top}/s") == "g"
    assert cl.lstat(f"{top}/s").is_symlink() and cl.stat(f"{top}/s").is_file()
    assert cl.read_bytes(f"{top}/s")[:6] == b"abcdef"
    cl.symlink(f"{top}/loop2", f"{top}/loop1")
    cl.symlink(f"{top}/loop1", f"{top}/loop2")
    with pytest.raises(E.TooManyLinks):
        cl.stat(f"{top}/loop1")
    cl.truncate(f"{top}/g", 10)
    assert cl.read_bytes(f"{top}/g") == b"abcdefabcd"
    cl.truncate(f"{top}/g", 20)
    assert cl.read_bytes(f"{top}/g") == b"abcdefabcd" + bytes(10)
    cl.mkdir(f"{top}/d")
    cl.write_bytes(f"{top}/d/x", b"")
    with pytest.raises(E.DirectoryNotEmpty):
        cl.rmdir(f"{top}/d")
    with pytest.raises(IsADirectoryError):
        cl.remove(f"{top}/d")
    with pytest.raises(NotADirectoryError):
        cl.rmdir(f"{top}/g")
    with pytest.raises(PermissionError):
        cl.link(f"{top}/d", f"{top}/dlink")
    cl.remove(f"{top}/d/x")
    cl.rmdir(f"{top}/d")
    assert sorted(cl.listdir(top)) == ["g", "loop1", "loop2", "s"]


def test_layout_comes_from_the_directory(fs, ns_cluster):
    cl, top = fs
    cl.mkdir(f"{top}/big", chunk_size=128 << 10, stripe=1)
    cl.write_bytes(f"{top}/big/f", os.urandom(300 << 10))
    st = cl.stat(f"{top}/big/f")
    assert st.chunk_size == 128 << 10 and st.stripe == 1 and len(st.chains) == 1
    cl.write_bytes(f"{top}/g", b"x")
    st2 = cl.stat(f"{top}/g")
    assert st2.chunk_size == 64 << 10 and len(st2.chains) == ns_cluster.num_chains
    with pytest.raises(ValueError):
        cl.mkdir(f"{top}/bad", chunk_size=1000)


def test_permissions_are_checked(fs, ns_cluster):
    root, top = fs
    root.mkdir(f"{top}/private", mode=0o700)
    root.write_bytes(f"{top}/private/secret", b"s")
    root.write_bytes(f"{top}/public", b"p")
    root.chmod(f"{top}/public", 0o644)
    alice = ns_cluster.client(uid=1000, gid=1000)
    with pytest.raises(PermissionError):
        alice.listdir(f"{top}/private")
    with pytest.raises(PermissionError):
        alice.stat(f"{top}/private/secret")
    assert alice.read_bytes(f"{top}/public") == b"p"
    with pytest.raises(PermissionError):
        alice.open(f"{top}/public", "r+b")
    with pytest.raises(PermissionError):
        alice.chmod(f"{top}/public", 0o777)
    with pytest.raises(PermissionError):
        alice.chown(f"{top}/public", 1000, 1000)
    alice.mkdir(f"{top}/alice")  # top is 0777
    alice.write_bytes(f"{top}/alice/mine", b"m")
    st = alice.stat(f"{top}/alice/mine")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    alice.chmod(f"{top}/alice", 0o500)
    with pytest.raises(PermissionError):
        alice.write_bytes(f"{top}/alice/other", b"x")
    with pytest.raises(PermissionError):
        alice.remove(f"{top}/alice/mine")
    root.write_bytes(f"{top}/alice/byroot", b"r")  # root bypasses
    root.chown(f"{top}/public", 1000, 1000)
    alice.chmod(f"{top}/public", 0o600)
    alice.utime(f"{top}/public", (1.0, 2.0))
    st = alice.stat(f"{top}/public")
    assert st.st_mode & 0o777 == 0o600 and st.st_mtime == 2.0


@pytest.mark.parametrize(
    "path, exc",
    [
        ("/a/../b", ValueError),
        ("/a/./b", ValueError),
        ("/a\0b", ValueError),
        ("relative/path", ValueError),
        ("/" + "n" * 256, E.NameTooLong),
        ("/" + "é" * 128, E.NameTooLong),  # 256 bytes in UTF-8
    ],
)
def test_bad_paths_are_rejected(fs, path, exc):
    cl, top = fs
    before = cl.listdir("/")
    with pytest.raises(exc):
        cl.mkdir(path)
    with pytest.raises(exc):
        cl.write_bytes(path, b"x")
    assert cl.listdir("/") == before


def test_bad_input_at_the_grpc_level(fs, ns_cluster):
    """Raw gRPC requests with bad input get a clear status, and nothing is created."""
    import grpc

    from fs3 import _rpc
    from fs3.protos import meta_pb2 as mpb
    from fs3.protos import meta_pb2_grpc

    cl, top = fs
    with _rpc.channel(ns_cluster.meta_address) as ch:
        stub = meta_pb2_grpc.MetaStub(ch)
        with pytest.raises(grpc.RpcError) as ei:
            stub.Mkdir(mpb.MkdirReq(path=f"{top}/../etc"), timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'..'" in ei.value.details()
        with pytest.raises(grpc.RpcError) as ei:
            stub.Open(mpb.OpenReq(path=top + "/" + "x" * 300, flags=os.O_CREAT | os.O_WRONLY), timeout=10)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ENAMETOOLONG" in ei.value.details()
        with pytest.raises(grpc.RpcError) as ei:
            stub.StatInode(mpb.StatInodeReq(inode_id=987654321), timeout=10)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND and "inode 987654321" in ei.value.details()
        with pytest.raises(grpc.RpcError) as ei:
            stub.Close(mpb.CloseReq(inode_id=987654321, length=5), timeout=10)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as ei:
            stub.Truncate(mpb.TruncateReq(path=f"{top}/nofile", length=1), timeout=10)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(FileNotFoundError):
        cl.stat_inode(987654321)
    assert cl.listdir(top) == []


def test_max_file_size_is_enforced(fs, ns_cluster):
    cl, top = fs
    limit = ns_cluster.config.max_file_size
    with cl.open(f"{top}/f", "wb") as f:
        with pytest.raises(E.FileTooLarge):
            f.pwrite(b"x", limit)
        f.pwrite(b"y", limit - 1)  # the last allowed byte
    assert cl.stat(f"{top}/f").st_size == limit
    with pytest.raises(E.FileTooLarge):
        cl.truncate(f"{top}/f", limit + 1)
    assert cl.stat(f"{top}/f").st_size == limit


def test_statfs_reports_capacity(fs):
    cl, top = fs
    cl.write_bytes(f"{top}/f", b"z" * 1000)
    s = cl.statfs()
    assert s.total_bytes > s.free_bytes > 0 and s.used_bytes >= 1000 and s.inodes >= 2


def test_namespace_survives_meta_restart(fs, ns_cluster):
    cl, top = fs
    cl.mkdir(f"{top}/keep/deep", parents=True)
    cl.write_bytes(f"{top}/keep/deep/f", b"persist" * 100)
    ns_cluster.kill_meta()
    impatient = ns_cluster.client(connect_retry_s=0.3)
    with pytest.raises(E.ClusterTimeout) as ei:
        impatient.stat(f"{top}/keep")
    assert ns_cluster.meta_address in str(ei.value)
    ns_cluster.start_meta()
    assert cl.listdir(f"{top}/keep/deep") == ["f"]
    assert cl.read_bytes(f"{top}/keep/deep/f") == b"persist" * 100
    cl.write_bytes(f"{top}/after", b"a")  # inode ids keep growing after the restart
    assert cl.stat(f"{top}/after").st_ino > cl.stat(f"{top}/keep/deep/f").st_ino
