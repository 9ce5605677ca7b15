"""The meta gRPC servicer: decodes each request, calls ``fs3.meta.store.MetaStore``, maps errors.

The namespace itself (schema, SQL, path resolution, permission checks) lives in ``fs3/meta/store.py``;
this module also keeps the heartbeat to mgmtd whose routing info the store lays new files out over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import grpc

from fs3 import errors as E
from fs3.meta.gc import LeaseCollector
from fs3.meta.store import DEFAULT_LEASE_S, DIR, NOW, InodeRow, MetaStore, Removed
from fs3.mgmtd.client import MgmtdClient
from fs3.protos import common_pb2 as cpb
from fs3.protos import meta_pb2 as pb
from fs3.protos import meta_pb2_grpc
from fs3.protos import mgmtd_pb2 as mpb

T = TypeVar("T")


def inode_msg(row: InodeRow) -> cpb.Inode:
    """The wire form of an inode row."""
    return cpb.Inode(
        inode_id=row.id,
        type=row.type,
        mode=row.mode,
        uid=row.uid,
        gid=row.gid,
        nlink=row.nlink,
        size=row.size,
        atime=row.atime_ns / 1e9,
        mtime=row.mtime_ns / 1e9,
        ctime=row.ctime_ns / 1e9,
        atime_ns=row.atime_ns,
        mtime_ns=row.mtime_ns,
        ctime_ns=row.ctime_ns,
        layout=cpb.Layout(
            chunk_size=row.chunk_size,
            stripe=row.stripe,
            chains=[int(c) for c in row.chains.split(",") if c],
            seed=row.seed,
        ),
        symlink_target=row.symlink,
        parent_id=row.parent if row.type == DIR else 0,
        rdev=row.rdev,
    )


class MetaService(meta_pb2_grpc.MetaServicer):
    """Namespace operations; stateless apart from a cached copy of mgmtd's routing info."""

    def __init__(
        self,
        db_url: str,
        mgmtd: str,
        node_id: int = 100,
        address: str = "",
        heartbeat_s: float = 1.0,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self._routing: cpb.RoutingInfo | None = None
        self._mgmtd = MgmtdClient(mgmtd)  # every mgmtd address; calls follow the leader
        self._node_id, self._address = node_id, address
        self._stop = threading.Event()
        self._routing_ready = threading.Event()
        self._hb = threading.Thread(target=self._heartbeat_loop, args=(heartbeat_s,), daemon=True)
        self.store = MetaStore(db_url, self._routing_info, lease_s=lease_s)
        self.gc = LeaseCollector(self.store, self._routing_info, interval_s=max(0.2, lease_s / 4))
        self._hb.start()
        self.gc.start()

    def stop(self) -> None:
        """Stop heartbeating and collecting."""
        self._stop.set()
        self.gc.stop()

    def _heartbeat_loop(self, interval_s: float) -> None:
        while True:
            try:
                rsp = self._mgmtd.Heartbeat(
                    mpb.HeartbeatReq(node_id=self._node_id, address=self._address, role="meta"), timeout=5
                )
                self._routing = rsp.routing
                if rsp.routing.chains:
                    self._routing_ready.set()
            except grpc.RpcError as exc:
                logging.warning("heartbeat to mgmtd failed: %s", exc.code())
            if self._stop.wait(interval_s):
                return

    def _routing_info(self) -> cpb.RoutingInfo:
        if not self._routing_ready.is_set():
            try:
                self._routing = self._mgmtd.GetRouting(mpb.GetRoutingReq(), timeout=5).routing
            except grpc.RpcError as exc:
                raise E.ClusterTimeout("mgmtd", f"no routing info: {exc.code()}") from exc
            if not self._routing.chains:
                raise E.NotServing("chain table", "no chain table uploaded to mgmtd yet")
            self._routing_ready.set()
        assert self._routing is not None
        return self._routing

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except E.FS3Error as exc:
            E.abort(context, exc)
        except Exception as exc:  # a database failure must reach the caller as a status
            logging.exception("meta transaction failed")
            context.abort(grpc.StatusCode.INTERNAL, f"EIO: meta: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable: context.abort raises")

    # ---- RPCs --------------------------------------------------------------------------------
    def Stat(self, request: pb.PathReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        row = self._call(context, lambda: self.store.stat(request.user, request.path, request.follow))
        return pb.InodeRsp(inode=inode_msg(row))

    def StatInode(self, request: pb.StatInodeReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        row = self._call(context, lambda: self.store.stat_inode(request.inode_id))
        return pb.InodeRsp(inode=inode_msg(row))

    def Mkdir(self, request: pb.MkdirReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        lay = request.layout
        if lay.chunk_size and (
            lay.chunk_size & (lay.chunk_size - 1) or not (64 << 10) <= lay.chunk_size <= (64 << 20)
        ):
            E.abort(
                context,
                E.InvalidArgument(
                    "layout.chunk_size", f"{lay.chunk_size} is not a power of two in 64 KiB..64 MiB"
                ),
            )
        row = self._call(
            context,
            lambda: self.store.mkdir(
                request.user,
                request.path,
                request.mode if request.HasField("mode") else None,
                request.parents,
                lay.chunk_size,
                lay.stripe,
            ),
        )
        return pb.InodeRsp(inode=inode_msg(row))

    def Open(self, request: pb.OpenReq, context: grpc.ServicerContext) -> pb.OpenRsp:
        opened = self._call(
            context,
            lambda: self.store.open(
                request.user,
                request.path,
                request.flags,
                request.mode if request.HasField("mode") else None,
                request.client_id,
            ),
        )
        return pb.OpenRsp(
            inode=inode_msg(opened.inode),
            session_id=opened.session_id,
            truncated=opened.truncated,
            old_size=opened.old_size,
            lease_s=opened.lease_s,
        )

    def Close(self, request: pb.CloseReq, context: grpc.ServicerContext) -> pb.CloseRsp:
        row, freed = self._call(
            context,
            lambda: self.store.close(request.inode_id, request.session_id, request.length, request.wrote),
        )
        return pb.CloseRsp(inode=inode_msg(row), freed=freed)

    def RenewLease(self, request: pb.RenewLeaseReq, context: grpc.ServicerContext) -> pb.RenewLeaseRsp:
        lease_s, n = self._call(context, lambda: self.store.renew_lease(request.client_id))
        return pb.RenewLeaseRsp(lease_s=lease_s, sessions=n)

    def Mknod(self, request: pb.MknodReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        mode = request.mode if request.HasField("mode") else None
        row = self._call(
            context, lambda: self.store.mknod(request.user, request.path, request.type, mode, request.rdev)
        )
        return pb.InodeRsp(inode=inode_msg(row))

    def SetXattr(self, request: pb.XattrReq, context: grpc.ServicerContext) -> pb.XattrRsp:
        r = request
        self._call(context, lambda: self.store.set_xattr(r.user, r.path, r.follow, r.name, r.value, r.flags))
        return pb.XattrRsp()

    def GetXattr(self, request: pb.XattrReq, context: grpc.ServicerContext) -> pb.XattrRsp:
        r = request
        return pb.XattrRsp(
            value=self._call(context, lambda: self.store.get_xattr(r.user, r.path, r.follow, r.name))
        )

    def ListXattr(self, request: pb.XattrReq, context: grpc.ServicerContext) -> pb.XattrRsp:
        r = request
        return pb.XattrRsp(
            names=self._call(context, lambda: self.store.list_xattrs(r.user, r.path, r.follow))
        )

    def RemoveXattr(self, request: pb.XattrReq, context: grpc.ServicerContext) -> pb.XattrRsp:
        r = request
        self._call(context, lambda: self.store.remove_xattr(r.user, r.path, r.follow, r.name))
        return pb.XattrRsp()

    def List(self, request: pb.ListReq, context: grpc.ServicerContext) -> pb.ListRsp:
        listed = self._call(context, lambda: self.store.list(request.user, request.path, request.with_inodes))
        return pb.ListRsp(
            entries=[
                pb.DirEntry(
                    name=e.name,
                    inode_id=e.inode_id,
                    type=e.type,
                    inode=inode_msg(e.inode) if e.inode is not None else None,
                )
                for e in listed
            ]
        )

    @staticmethod
    def _removed(removed: Removed) -> pb.UnlinkRsp:
        rsp = pb.UnlinkRsp(freed=removed.freed)
        if removed.inode is not None:
            rsp.inode.CopyFrom(inode_msg(removed.inode))
        return rsp

    def Rename(self, request: pb.RenameReq, context: grpc.ServicerContext) -> pb.UnlinkRsp:
        return self._removed(
            self._call(
                context, lambda: self.store.rename(request.user, request.src, request.dst, request.flags)
            )
        )

    def Unlink(self, request: pb.UnlinkReq, context: grpc.ServicerContext) -> pb.UnlinkRsp:
        return self._removed(
            self._call(context, lambda: self.store.unlink(request.user, request.path, request.directory))
        )

    def Symlink(self, request: pb.SymlinkReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        row = self._call(context, lambda: self.store.symlink(request.user, request.path, request.target))
        return pb.InodeRsp(inode=inode_msg(row))

    def Link(self, request: pb.LinkReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        row = self._call(context, lambda: self.store.link(request.user, request.src, request.dst))
        return pb.InodeRsp(inode=inode_msg(row))

    def Truncate(self, request: pb.TruncateReq, context: grpc.ServicerContext) -> pb.TruncateRsp:
        row, old_size = self._call(
            context,
            lambda: self.store.truncate(request.user, request.path, request.inode_id, request.length),
        )
        return pb.TruncateRsp(inode=inode_msg(row), old_size=old_size)

    def SetAttr(self, request: pb.SetAttrReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        atime: int | str | None = None
        mtime: int | str | None = None
        if request.set_times:  # float seconds from older clients
            atime, mtime = round(request.atime * 1e9), round(request.mtime * 1e9)
        if request.HasField("atime_ns"):
            atime = request.atime_ns
        if request.HasField("mtime_ns"):
            mtime = request.mtime_ns
        if request.atime_now:
            atime = NOW
        if request.mtime_now:
            mtime = NOW
        row = self._call(
            context,
            lambda: self.store.setattr(
                request.user,
                request.path,
                mode=request.mode if request.set_mode else None,
                owner=(request.uid, request.gid) if request.set_owner else None,
                atime=atime,
                mtime=mtime,
                follow=not request.no_follow,
            ),
        )
        return pb.InodeRsp(inode=inode_msg(row))

    def StatFs(self, request: pb.StatFsReq, context: grpc.ServicerContext) -> pb.StatFsRsp:
        inodes, used = self._call(context, self.store.statfs)
        return pb.StatFsRsp(inodes=inodes, used_bytes=used)
