"""``FS3Client``: thread-safe Python API of fs3 (POSIX-like names, OSError subclasses from fs3.errors).

Meta handles the namespace; after ``open`` the client computes chunk -> chain from the file's layout
and talks to the storage chains directly, many chunks at once on a thread pool (meta is off the data
path). Routing (chain table, target states) is polled from mgmtd and refreshed on stale-version errors.
"""

from __future__ import annotations

import io
import os
import stat as _stat
import time
import uuid
from collections.abc import Iterator

import grpc

from fs3 import _rpc, errors
from fs3.client.chunks import ChunkIO, Span
from fs3.client.file import FS3File
from fs3.client.lease import LeaseKeeper
from fs3.client.routing import RoutingCache
from fs3.client.types import INODE_TYPE, ClientStats, FileStat, StatFs, TargetUsage
from fs3.protos import common_pb2, meta_pb2, meta_pb2_grpc, storage_pb2
from fs3.protos.common_pb2 import TargetState

__all__ = ["ClientStats", "FS3Client", "FileStat", "StatFs", "TargetUsage"]

_MODES = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


class FS3Client:
    """A connection to one fs3 cluster as user ``uid``/``gid``; safe to share between threads."""

    def __init__(
        self,
        mgmtd: str,
        meta: str | None = None,
        uid: int = 0,
        gid: int = 0,
        groups: tuple[int, ...] = (),
        io_threads: int = 16,
        timeout_s: float = 60.0,
        verify_reads: bool = True,
        connect_retry_s: float = 10.0,
        data_port: bool = True,
    ) -> None:
        self.mgmtd_address = mgmtd
        self.user = meta_pb2.User(uid=uid, gid=gid, groups=list(groups))
        self.timeout_s = timeout_s
        self.verify_reads = verify_reads  # check each read's bytes against the CRC32C the server sent
        self.use_data_port = data_port  # chunk reads and writes over storage data ports (False: gRPC only)
        self.connect_retry_s = connect_retry_s  # how long meta calls retry while meta is unreachable
        self.client_id = f"client-{uuid.uuid4().hex[:12]}"
        self.stats = ClientStats()
        self.routing_cache = RoutingCache(mgmtd)
        self.refresh_routing()
        if meta is None:
            metas = [n.address for n in self.routing_cache.cached.nodes if n.role == "meta" and n.alive]
            if not metas:
                raise errors.NotServing("meta", "no meta server registered with mgmtd; pass meta=")
            meta = metas[0]
        self.meta_address = meta
        self._meta_channel = _rpc.channel(meta)
        self._meta = meta_pb2_grpc.MetaStub(self._meta_channel)
        self.chunks = ChunkIO(self.routing_cache, self.stats, timeout_s, io_threads, verify_reads, data_port)
        self.leases = LeaseKeeper(self._meta, self.client_id, timeout_s)
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release threads and channels."""
        if not self._closed:
            self._closed = True
            self.leases.stop()
            self.chunks.close()
            self._meta_channel.close()
            self.routing_cache.close()

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def __enter__(self) -> FS3Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- routing -----------------------------------------------------------------------------
    def refresh_routing(self) -> common_pb2.RoutingInfo:
        """Fetch the chain table and target states from mgmtd now."""
        return self.routing_cache.refresh()

    @property
    def routing(self) -> common_pb2.RoutingInfo:
        """The cached routing info (refreshed at most every second when read through here)."""
        return self.routing_cache.current

    # ---- meta calls --------------------------------------------------------------------------
    def _call(self, method: str, request: object, what: str) -> object:
        deadline = time.monotonic() + self.connect_retry_s
        while True:
            try:
                return getattr(self._meta, method)(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                # UNAVAILABLE: not connected, the request never reached meta; retry for a while (restart)
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise errors.from_rpc_error(exc, f"{what} (meta {self.meta_address})") from None
                time.sleep(0.1)

    @staticmethod
    def _check_path(path: str) -> str:
        if not isinstance(path, str):
            path = os.fsdecode(path)
        if not path.startswith("/"):
            raise errors.InvalidArgument(path, "fs3 paths must be absolute")
        return path

    def stat(self, path: str, follow_symlinks: bool = True) -> FileStat:
        """Stat ``path`` (following a final symlink unless ``follow_symlinks`` is False)."""
        path = self._check_path(path)
        rsp = self._call("Stat", meta_pb2.PathReq(user=self.user, path=path, follow=follow_symlinks), path)
        return FileStat.from_inode(rsp.inode)

    def lstat(self, path: str) -> FileStat:
        """Stat without following a final symlink."""
        return self.stat(path, follow_symlinks=False)

    def stat_inode(self, inode_id: int) -> FileStat:
        """Stat by inode id (NotFound for an unknown id)."""
        rsp = self._call(
            "StatInode", meta_pb2.StatInodeReq(user=self.user, inode_id=inode_id), f"inode {inode_id}"
        )
        return FileStat.from_inode(rsp.inode)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        try:
            self.stat(path)
            return True
        except FileNotFoundError:
            return False

    def mkdir(
        self,
        path: str,
        mode: int = 0o755,
        parents: bool = False,
        chunk_size: int = 0,
        stripe: int = 0,
    ) -> FileStat:
        """Create a directory; ``chunk_size``/``stripe`` set the layout its new files get (0 = inherit)."""
        path = self._check_path(path)
        req = meta_pb2.MkdirReq(
            user=self.user,
            path=path,
            mode=mode,
            parents=parents,
            layout=common_pb2.Layout(chunk_size=chunk_size, stripe=stripe),
        )
        return FileStat.from_inode(self._call("Mkdir", req, path).inode)

    def makedirs(self, path: str, mode: int = 0o755, exist_ok: bool = True) -> FileStat:
        """``mkdir -p``."""
        if not exist_ok and self.exists(path):
            raise errors.AlreadyExists(path, "file exists")
        return self.mkdir(path, mode, parents=True)

    def listdir(self, path: str = "/") -> list[str]:
        """Names in directory ``path``, sorted."""
        return [e.name for e in self.scandir(path)]

    def scandir(self, path: str = "/") -> list[meta_pb2.DirEntry]:
        """Entries (name, inode_id, type 1 file / 2 dir / 3 symlink) of directory ``path``."""
        path = self._check_path(path)
        return list(self._call("List", meta_pb2.ListReq(user=self.user, path=path), path).entries)

    def scandir_stat(self, path: str = "/") -> list[tuple[str, FileStat]]:
        """(name, lstat) of every entry of directory ``path``, in one meta round trip (like readdirplus)."""
        path = self._check_path(path)
        rsp = self._call("List", meta_pb2.ListReq(user=self.user, path=path, with_inodes=True), path)
        return [(e.name, FileStat.from_inode(e.inode)) for e in rsp.entries]

    def walk(self, top: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        """Like ``os.walk`` (top-down, symlinks not followed)."""
        top = self._check_path(top)
        entries = self.scandir(top)
        dirs = [e.name for e in entries if e.type == 2]
        files = [e.name for e in entries if e.type != 2]
        yield top, dirs, files
        for d in dirs:
            yield from self.walk(top.rstrip("/") + "/" + d)

    def rename(self, src: str, dst: str, flags: int = 0) -> None:
        """Atomically rename ``src`` to ``dst`` (replacing a compatible ``dst``); ``flags`` as renameat2:
        ``RENAME_NOREPLACE`` (1) or ``RENAME_EXCHANGE`` (2)."""
        src, dst = self._check_path(src), self._check_path(dst)
        req = meta_pb2.RenameReq(user=self.user, src=src, dst=dst, flags=flags)
        rsp = self._call("Rename", req, f"{src} -> {dst}")
        if rsp.freed:
            self.chunks.remove_chunks(rsp.inode, 0)

    def remove(self, path: str) -> None:
        """Remove a file or symlink (its chunks are deleted once the last link is gone)."""
        path = self._check_path(path)
        rsp = self._call("Unlink", meta_pb2.UnlinkReq(user=self.user, path=path), path)
        if rsp.freed:
            self.chunks.remove_chunks(rsp.inode, 0)

    unlink = remove

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        path = self._check_path(path)
        self._call("Unlink", meta_pb2.UnlinkReq(user=self.user, path=path, directory=True), path)

    def symlink(self, target: str, path: str) -> None:
        """Create symlink ``path`` pointing at ``target`` (os.symlink argument order)."""
        path = self._check_path(path)
        self._call("Symlink", meta_pb2.SymlinkReq(user=self.user, path=path, target=target), path)

    def readlink(self, path: str) -> str:
        """The target of symlink ``path``."""
        st = self.lstat(path)
        if not st.is_symlink():
            raise errors.InvalidArgument(path, "not a symbolic link")
        return st.symlink_target

    def link(self, src: str, dst: str) -> None:
        """Hard-link ``dst`` to the file ``src``."""
        src, dst = self._check_path(src), self._check_path(dst)
        self._call("Link", meta_pb2.LinkReq(user=self.user, src=src, dst=dst), dst)

    def truncate(self, path: str, length: int) -> None:
        """Set the size of file ``path`` to ``length`` bytes."""
        path = self._check_path(path)
        if length < 0:
            raise errors.InvalidArgument(path, "negative length")
        rsp = self._call("Truncate", meta_pb2.TruncateReq(user=self.user, path=path, length=length), path)
        self.chunks.cut_chunks(rsp.inode, length, rsp.old_size)

    def chmod(self, path: str, mode: int, *, follow_symlinks: bool = True) -> None:
        """Change permission bits (owner or root)."""
        path = self._check_path(path)
        req = meta_pb2.SetAttrReq(
            user=self.user, path=path, set_mode=True, mode=mode, no_follow=not follow_symlinks
        )
        self._call("SetAttr", req, path)

    def chown(self, path: str, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
        """Change owner (root only); ``follow_symlinks=False`` is ``lchown``."""
        path = self._check_path(path)
        req = meta_pb2.SetAttrReq(
            user=self.user, path=path, set_owner=True, uid=uid, gid=gid, no_follow=not follow_symlinks
        )
        self._call("SetAttr", req, path)

    def utime(
        self,
        path: str,
        times: tuple[float, float] | None = None,
        *,
        ns: tuple[int | None, int | None] | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        """Set (atime, mtime) like ``os.utime``: ``times`` in seconds or ``ns`` in integer nanoseconds (a
        None element leaves that time alone, utimensat's UTIME_OMIT); both None: now (UTIME_NOW)."""
        path = self._check_path(path)
        if times is not None and ns is not None:
            raise errors.InvalidArgument(path, "utime: give times or ns, not both")
        req = meta_pb2.SetAttrReq(user=self.user, path=path, no_follow=not follow_symlinks)
        if times is not None:
            ns = (round(times[0] * 1e9), round(times[1] * 1e9))
        if ns is None:
            req.atime_now = req.mtime_now = True
        else:
            if ns[0] is not None:
                req.atime_ns = ns[0]
            if ns[1] is not None:
                req.mtime_ns = ns[1]
        self._call("SetAttr", req, path)

    def mknod(self, path: str, mode: int = 0o600, device: int = 0) -> None:
        """Like ``os.mknod``: a FIFO, socket or (root only) device node, metadata only; ``S_IFREG`` or no
        type bits make an empty regular file."""
        path = self._check_path(path)
        fmt = _stat.S_IFMT(mode)
        if fmt in (0, _stat.S_IFREG):
            self.open_flags(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _stat.S_IMODE(mode)).close()
            return
        typ = INODE_TYPE.get(fmt)
        if typ is None or typ in (1, 2, 3):
            raise errors.InvalidArgument(path, f"mknod: file type {fmt:#o} is not a FIFO, socket or device")
        req = meta_pb2.MknodReq(user=self.user, path=path, type=typ, mode=_stat.S_IMODE(mode), rdev=device)
        self._call("Mknod", req, path)

    def mkfifo(self, path: str, mode: int = 0o666) -> None:
        """Like ``os.mkfifo`` (without the umask: modes are exact)."""
        self.mknod(path, _stat.S_IFIFO | _stat.S_IMODE(mode))

    # ---- extended attributes (as os.getxattr & co.) -------------------------------------------
    def _xattr(self, method: str, path: str, follow: bool, name: str | bytes = b"", **kw: object) -> object:
        path = self._check_path(path)
        req = meta_pb2.XattrReq(user=self.user, path=path, follow=follow, name=os.fsencode(name), **kw)
        return self._call(method, req, path)

    def getxattr(self, path: str, attribute: str | bytes, *, follow_symlinks: bool = True) -> bytes:
        """The value of extended attribute ``attribute`` (ENODATA if unset)."""
        return self._xattr("GetXattr", path, follow_symlinks, attribute).value

    def setxattr(
        self, path: str, attribute: str | bytes, value: bytes, flags: int = 0, *, follow_symlinks: bool = True
    ) -> None:
        """Set extended attribute ``attribute``; ``flags`` ``os.XATTR_CREATE`` or ``os.XATTR_REPLACE``."""
        self._xattr("SetXattr", path, follow_symlinks, attribute, value=bytes(value), flags=flags)

    def listxattr(self, path: str, *, follow_symlinks: bool = True) -> list[str]:
        """Names of the extended attributes the caller may see."""
        return [os.fsdecode(n) for n in self._xattr("ListXattr", path, follow_symlinks).names]

    def removexattr(self, path: str, attribute: str | bytes, *, follow_symlinks: bool = True) -> None:
        """Remove extended attribute ``attribute`` (ENODATA if unset)."""
        self._xattr("RemoveXattr", path, follow_symlinks, attribute)

    def statfs(self) -> StatFs:
        """Cluster capacity: storage targets' disks (each replica counts) and the namespace totals."""
        rsp = self._call("StatFs", meta_pb2.StatFsReq(user=self.user), "statfs")
        total = free = 0
        seen: set[str] = set()
        for n in self.routing.nodes:
            if n.role != "storage" or not n.alive:
                continue
            try:
                space = self.chunks.stub(n.node_id).Space(storage_pb2.TargetSpaceReq(), timeout=10)
            except grpc.RpcError:
                continue
            for t in space.targets:  # targets of one node share a disk here: count it once per node
                if n.address not in seen:
                    seen.add(n.address)
                    total += t.total_bytes
                    free += t.free_bytes
        return StatFs(total_bytes=total, free_bytes=free, used_bytes=rsp.used_bytes, inodes=rsp.inodes)

    def target_usage(self, exact_bytes: bool = True) -> list[TargetUsage]:
        """Every target of the chain table with its state, chunk count and bytes stored (for ``df``).

        Asks each storage node's ``Space``; with ``exact_bytes`` also sums chunk lengths from
        ``DumpChunkMeta`` (one message per target, so it costs in proportion to the chunk count).
        """
        routing = self.refresh_routing()
        nodes = {n.node_id: n for n in routing.nodes}
        space: dict[int, storage_pb2.TargetSpace] = {}
        for n in routing.nodes:
            if n.role != "storage" or not n.alive:
                continue
            try:
                for t in self.chunks.stub(n.node_id).Space(storage_pb2.TargetSpaceReq(), timeout=10).targets:
                    space[t.target_id] = t
            except grpc.RpcError:
                continue
        out = []
        for chain in sorted(routing.chains, key=lambda c: c.chain_id):
            for t in chain.targets:
                node = nodes.get(t.node_id)
                sp = space.get(t.target_id)
                used = None
                if sp is not None and exact_bytes:
                    try:
                        rsp = self.chunks.stub(t.node_id).DumpChunkMeta(
                            storage_pb2.DumpChunkMetaReq(target_id=t.target_id), timeout=30
                        )
                        used = sum(m.length for m in rsp.chunks)
                    except grpc.RpcError:
                        pass
                out.append(
                    TargetUsage(
                        target_id=t.target_id,
                        node_id=t.node_id,
                        chain_id=chain.chain_id,
                        state=TargetState.Name(t.state),
                        address=node.address if node else "",
                        data_address=node.data_address if node else "",
                        alive=bool(node and node.alive),
                        chunks=sp.chunks if sp else None,
                        used_bytes=used,
                        disk_total_bytes=sp.total_bytes if sp else None,
                        disk_free_bytes=sp.free_bytes if sp else None,
                        reserve_bytes=sp.reserve_bytes if sp else None,
                        read_only=sp.read_only if sp else None,
                        corrupt_chunks=sp.corrupt_chunks if sp else None,
                        repaired_chunks=sp.repaired_chunks if sp else None,
                        unrepaired_chunks=sp.unrepaired_chunks if sp else None,
                        scrubbed_bytes=sp.scrubbed_bytes if sp else None,
                    )
                )
        return out

    # ---- files -------------------------------------------------------------------------------
    def open(self, path: str, mode: str = "r", perm: int = 0o644, encoding: str | None = None) -> io.IOBase:
        """Open ``path`` like the builtin ``open``: binary modes give an :class:`FS3File`, text modes wrap it."""
        base = mode.replace("b", "").replace("t", "")
        if base not in _MODES:
            raise errors.InvalidArgument(path, f"unsupported mode {mode!r}")
        f = self.open_flags(path, _MODES[base], perm)
        if "b" in mode:
            return f
        if f.readable() and f.writable():
            buf: io.BufferedIOBase = io.BufferedRandom(f, 1 << 20)
        elif f.writable():
            buf = io.BufferedWriter(f, 1 << 20)
        else:
            buf = io.BufferedReader(f, 1 << 20)
        return io.TextIOWrapper(buf, encoding=encoding or "utf-8")

    def open_flags(self, path: str, flags: int, perm: int = 0o644) -> FS3File:
        """Open with ``os.O_*`` flags (the entry point for a FUSE layer)."""
        path = self._check_path(path)
        req = meta_pb2.OpenReq(user=self.user, path=path, flags=flags, mode=perm, client_id=self.client_id)
        rsp = self._call("Open", req, path)
        self.leases.opened(rsp.lease_s)
        try:
            if rsp.truncated:
                self.chunks.remove_chunks(rsp.inode, 0)
            return FS3File(self, path, rsp.inode, rsp.session_id, flags)
        except BaseException:
            self.leases.closed()
            raise

    # ---- chunk I/O (see fs3.client.chunks) ----------------------------------------------------
    def write_chunk(self, ino: common_pb2.Inode, index: int, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` of chunk ``index`` through the chain's head; retries across failovers."""
        self.chunks.write_chunk(ino, index, offset, data)

    def read_chunk(self, ino: common_pb2.Inode, index: int, offset: int, length: int, out: memoryview) -> int:
        """Read ``length`` bytes at ``offset`` of chunk ``index`` into ``out``; returns bytes found (rest zero)."""
        return self.chunks.read_chunk(ino, index, offset, length, out)

    def read_chunks(self, ino: common_pb2.Inode, spans: list[Span], out: memoryview) -> None:
        """Read every span into ``out[buf_off : buf_off + length]``, batched per storage node."""
        self.chunks.read_chunks(ino, spans, out)

    def parallel(self, fns: list) -> list:
        """Run callables on the I/O pool; re-raise the first error."""
        return self.chunks.parallel(fns)

    first_replica = staticmethod(ChunkIO.first_replica)

    def read_bytes(self, path: str) -> bytes:
        """The whole content of file ``path``."""
        with self.open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or replace file ``path`` with ``data``."""
        with self.open(path, "wb") as f:
            f.write(data)
