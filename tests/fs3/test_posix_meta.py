"""POSIX details of the meta service through a real meta server: exact modes, ns times, rename flags."""

from __future__ import annotations

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
