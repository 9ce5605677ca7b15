"""POSIX details through a real meta server: exact modes, ns times, rename flags, xattrs, special files."""

from __future__ import annotations

import errno
import os
import re
import stat

import grpc
import pytest

from fs3 import _rpc
from fs3.protos import meta_pb2 as pb
from fs3.protos import meta_pb2_grpc


@pytest.fixture
def fs(ns_cluster, request):
    """A root client, a raw meta stub and a fresh top directory named after the test."""
    cl = ns_cluster.client()
    top = "/" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:200]
    cl.mkdir(top, mode=0o777)
    ch = _rpc.channel(ns_cluster.meta_address)
    try:
        yield cl, meta_pb2_grpc.MetaStub(ch), top
    finally:
        ch.close()


ROOT = pb.User(uid=0, gid=0)


def test_mode_zero_is_exact_and_absent_mode_gets_the_default(fs):
    cl, meta, top = fs
    cl.mkdir(f"{top}/d0", mode=0)
    assert stat.S_IMODE(cl.stat(f"{top}/d0").st_mode) == 0
    cl.open_flags(f"{top}/f0", os.O_CREAT | os.O_WRONLY, 0).close()
    assert stat.S_IMODE(cl.stat(f"{top}/f0").st_mode) == 0
    # a request without the field (an older client) still gets 0755 / 0644
    meta.Mkdir(pb.MkdirReq(user=ROOT, path=f"{top}/dd"))
    rsp = meta.Open(pb.OpenReq(user=ROOT, path=f"{top}/fd", flags=os.O_CREAT | os.O_RDONLY))
    assert stat.S_IMODE(cl.stat(f"{top}/dd").st_mode) == 0o755
    assert rsp.inode.mode == 0o644 and stat.S_IMODE(cl.stat(f"{top}/fd").st_mode) == 0o644


def test_times_are_integer_nanoseconds_with_now_and_omit(fs):
    cl, meta, top = fs
    cl.write_bytes(f"{top}/t", b"x")
    ns = 1_700_000_000_123_456_789  # not representable as a double
    meta.SetAttr(pb.SetAttrReq(user=ROOT, path=f"{top}/t", atime_ns=ns, mtime_ns=ns + 1))
    ino = meta.Stat(pb.PathReq(user=ROOT, path=f"{top}/t")).inode
    assert (ino.atime_ns, ino.mtime_ns) == (ns, ns + 1)
    # mtime omitted, atime now: only atime moves
    before = ino.ctime_ns
    meta.SetAttr(pb.SetAttrReq(user=ROOT, path=f"{top}/t", atime_now=True))
    ino = meta.Stat(pb.PathReq(user=ROOT, path=f"{top}/t")).inode
    assert ino.mtime_ns == ns + 1 and ino.atime_ns > ns and ino.ctime_ns >= before
    # another user: explicit times need ownership (EPERM), "now" needs write permission (EACCES)
    other = pb.User(uid=4321, gid=4321)
    cl.chmod(f"{top}/t", 0o666)
    with pytest.raises(grpc.RpcError) as ei:
        meta.SetAttr(pb.SetAttrReq(user=other, path=f"{top}/t", mtime_ns=5))
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED and "EPERM" in ei.value.details()
    meta.SetAttr(pb.SetAttrReq(user=other, path=f"{top}/t", atime_now=True, mtime_now=True))
    cl.chmod(f"{top}/t", 0o644)
    with pytest.raises(grpc.RpcError) as ei:
        meta.SetAttr(pb.SetAttrReq(user=other, path=f"{top}/t", atime_now=True, mtime_now=True))
    assert "EACCES" in ei.value.details()


def _rename(meta, src: str, dst: str, flags: int) -> None:
    meta.Rename(pb.RenameReq(user=ROOT, src=src, dst=dst, flags=flags))


def test_rename_noreplace_and_exchange(fs):
    cl, meta, top = fs
    cl.write_bytes(f"{top}/a", b"A")
    cl.write_bytes(f"{top}/b", b"BB")
    cl.mkdir(f"{top}/d")
    cl.write_bytes(f"{top}/d/inner", b"I")
    with pytest.raises(grpc.RpcError) as ei:
        _rename(meta, f"{top}/a", f"{top}/b", 1)
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    _rename(meta, f"{top}/a", f"{top}/c", 1)
    assert cl.read_bytes(f"{top}/c") == b"A" and not cl.exists(f"{top}/a")
    # exchange a file and a directory in different parents: both names stay, contents swap
    _rename(meta, f"{top}/c", f"{top}/d", 2)
    assert cl.read_bytes(f"{top}/d") == b"A" and cl.listdir(f"{top}/c") == ["inner"]
    assert cl.stat(f"{top}/c").st_nlink == 2
    cl.mkdir(f"{top}/e")
    _rename(meta, f"{top}/c", f"{top}/e/x", 1)
    _rename(meta, f"{top}/e/x", f"{top}/d", 2)  # dir moves up, file moves down
    assert cl.listdir(f"{top}/d") == ["inner"] and cl.read_bytes(f"{top}/e/x") == b"A"
    assert cl.stat(f"{top}/e").st_nlink == 2 and cl.stat(top).st_nlink == 4  # d, e + . + ..
    for flags, dst, code in [
        (2, f"{top}/missing", grpc.StatusCode.NOT_FOUND),
        (3, f"{top}/b", grpc.StatusCode.INVALID_ARGUMENT),
        (4, f"{top}/b", grpc.StatusCode.INVALID_ARGUMENT),
        (2, f"{top}/d/inner", grpc.StatusCode.INVALID_ARGUMENT),  # a directory into itself
    ]:
        with pytest.raises(grpc.RpcError) as ei:
            _rename(meta, f"{top}/d", dst, flags)
        assert ei.value.code() == code, (flags, dst)


OTHER = (4321, 4321)


def _errno_of(fn) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno
    return 0


def test_xattrs_set_get_list_remove_with_linux_errors(fs, ns_cluster):
    cl, _, top = fs
    p = f"{top}/f"
    cl.write_bytes(p, b"x")
    cl.setxattr(p, "user.a", b"1")
    cl.setxattr(p, b"user.b", b"")
    cl.setxattr(p, "trusted.t", b"T")
    cl.setxattr(p, "security.s", b"S")
    assert cl.getxattr(p, "user.a") == b"1" and cl.getxattr(p, "user.b") == b""
    assert cl.listxattr(p) == ["security.s", "trusted.t", "user.a", "user.b"]
    assert _errno_of(lambda: cl.setxattr(p, "user.a", b"2", os.XATTR_CREATE)) == errno.EEXIST
    assert _errno_of(lambda: cl.setxattr(p, "user.new", b"2", os.XATTR_REPLACE)) == errno.ENODATA
    cl.setxattr(p, "user.a", b"2", os.XATTR_REPLACE)
    assert cl.getxattr(p, "user.a") == b"2"
    assert _errno_of(lambda: cl.getxattr(p, "user.none")) == errno.ENODATA
    assert _errno_of(lambda: cl.getxattr(p, "user." + "n" * 251)) == errno.ERANGE  # 256 bytes
    assert _errno_of(lambda: cl.setxattr(p, "user.big", b"v" * 65537)) == errno.E2BIG
    cl.setxattr(p, "user.max", b"v" * 65536)
    assert len(cl.getxattr(p, "user.max")) == 65536
    assert _errno_of(lambda: cl.setxattr(p, "foo.bar", b"1")) == errno.EOPNOTSUPP
    assert _errno_of(lambda: cl.setxattr(p, "system.posix_acl_access", b"1")) == errno.EOPNOTSUPP
    cl.removexattr(p, "user.b")
    assert _errno_of(lambda: cl.removexattr(p, "user.b")) == errno.ENODATA
    # another user: user.* by permission bits, trusted.* hidden, security.* readable but not writable
    other = ns_cluster.client(uid=OTHER[0], gid=OTHER[1])
    cl.chmod(p, 0o644)
    assert other.getxattr(p, "user.a") == b"2"
    assert other.listxattr(p) == ["security.s", "user.a", "user.max"]
    assert _errno_of(lambda: other.getxattr(p, "trusted.t")) == errno.ENODATA
    assert other.getxattr(p, "security.s") == b"S"
    assert _errno_of(lambda: other.setxattr(p, "user.a", b"3")) == errno.EACCES
    assert _errno_of(lambda: other.setxattr(p, "trusted.t", b"3")) == errno.EPERM
    assert _errno_of(lambda: other.setxattr(p, "security.s", b"3")) == errno.EPERM
    cl.chmod(p, 0o000)
    assert _errno_of(lambda: other.getxattr(p, "user.a")) == errno.EACCES
    # user.* only on regular files and directories
    cl.symlink("f", f"{top}/ln")
    assert _errno_of(lambda: cl.setxattr(f"{top}/ln", "user.a", b"1", follow_symlinks=False)) == errno.EPERM
    assert _errno_of(lambda: cl.getxattr(f"{top}/ln", "user.a", follow_symlinks=False)) == errno.ENODATA
    assert cl.getxattr(f"{top}/ln", "user.a") == b"2"  # followed to f
    cl.mkdir(f"{top}/d")
    cl.setxattr(f"{top}/d", "user.dir", b"D")
    assert cl.listxattr(f"{top}/d") == ["user.dir"]
    # the attributes go with the inode
    cl.remove(p)
    cl.write_bytes(p, b"y")
    assert cl.listxattr(p) == []


def test_mknod_makes_metadata_only_special_files(fs, ns_cluster):
    cl, _, top = fs
    other = ns_cluster.client(uid=OTHER[0], gid=OTHER[1])
    other.mkfifo(f"{top}/fifo", 0o640)
    other.mknod(f"{top}/sock", stat.S_IFSOCK | 0o600)
    st = cl.lstat(f"{top}/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == OTHER[0]
    assert stat.S_ISSOCK(cl.lstat(f"{top}/sock").st_mode)
    dev = os.makedev(1, 3)
    assert _errno_of(lambda: other.mknod(f"{top}/null", stat.S_IFCHR | 0o666, dev)) == errno.EPERM
    cl.mknod(f"{top}/null", stat.S_IFCHR | 0o666, dev)
    cl.mknod(f"{top}/blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    st = cl.lstat(f"{top}/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == dev and st.st_size == 0
    assert stat.S_ISBLK(cl.lstat(f"{top}/blk").st_mode)
    assert _errno_of(lambda: cl.mknod(f"{top}/null", stat.S_IFIFO)) == errno.EEXIST
    assert _errno_of(lambda: cl.mknod(f"{top}/d", stat.S_IFDIR)) == errno.EINVAL
    # no data in fs3: opening one through the native client is refused, unlink works as for files
    assert _errno_of(lambda: cl.open_flags(f"{top}/fifo", os.O_RDONLY)) == errno.EPERM
    cl.mknod(f"{top}/plain", 0o600)  # no type bits: a regular empty file, as os.mknod does
    assert stat.S_ISREG(cl.lstat(f"{top}/plain").st_mode)
    for n in ("fifo", "sock", "null", "blk", "plain"):
        cl.remove(f"{top}/{n}")
    assert cl.listdir(top) == []


def test_deep_paths_have_no_total_length_limit(fs):
    cl, _, top = fs
    path = top
    for i in range(40):  # 40 components of 200 bytes: 8 KB, twice Linux's PATH_MAX for one argument
        path += "/" + f"{i:03d}" + "d" * 197
        cl.mkdir(path)
    cl.write_bytes(path + "/f", b"deep")
    assert len(path) > 8000 and cl.read_bytes(path + "/f") == b"deep"
    assert _errno_of(lambda: cl.mkdir(path + "/" + "n" * 256)) == errno.ENAMETOOLONG


def test_lchown_and_link_times_leave_the_target_alone(fs):
    cl, _, top = fs
    cl.write_bytes(f"{top}/t", b"t")
    cl.symlink(f"{top}/t", f"{top}/ln")
    cl.symlink("../nowhere", f"{top}/dangling")
    cl.chown(f"{top}/ln", 65534, 65534, follow_symlinks=False)
    assert (cl.lstat(f"{top}/ln").st_uid, cl.stat(f"{top}/t").st_uid) == (65534, 0)
    cl.utime(f"{top}/dangling", ns=(7, 8), follow_symlinks=False)
    assert cl.lstat(f"{top}/dangling").st_mtime_ns == 8
    assert _errno_of(lambda: cl.utime(f"{top}/dangling", ns=(7, 8))) == errno.ENOENT
