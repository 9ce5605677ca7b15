"""``FS3Client``: thread-safe Python API of fs3 (POSIX-like names, OSError subclasses from fs3.errors).

Meta handles the namespace; after ``open`` the client computes chunk -> chain from the file's layout
and talks to the storage chains directly, many chunks at once on a thread pool (meta is off the data
path). Routing (chain table, target states) is polled from mgmtd and refreshed on stale-version errors.
"""

from __future__ import annotations

import io
import logging
import os
import stat as _stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc

from fs3 import _dataport as W
from fs3 import _rpc
from fs3 import errors as E
from fs3.client.dataport import DataPortPool, PartialRead, ReadRequest
from fs3.crc import crc32c
from fs3.protos import common_pb2 as cpb
from fs3.protos import meta_pb2 as mpb
from fs3.protos import meta_pb2_grpc, mgmtd_pb2_grpc, storage_pb2_grpc
from fs3.protos import mgmtd_pb2 as gpb
from fs3.protos import storage_pb2 as spb

S = cpb.TargetState
_TYPE_BITS = {1: _stat.S_IFREG, 2: _stat.S_IFDIR, 3: _stat.S_IFLNK}
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


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _wire_fields(raw: bytes, what: str) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a serialized message of varint and length-delimited fields only.

    Length-delimited values are views into ``raw``, so a 1 MiB chunk payload is never copied.
    """
    mv = memoryview(raw)
    i = 0
    while i < len(mv):
        key, i = _varint(mv, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(mv, i)
            yield field, value
        elif wire == 2:
            n, i = _varint(mv, i)
            yield field, mv[i : i + n]
            i += n
        else:
            raise E.IOFailure("storage reply", f"unexpected wire type {wire} in {what} field {field}")


def parse_read_rsp(raw: bytes) -> tuple[bool, memoryview]:
    """(found, data) of a serialized ``ReadRsp``, the data a view into ``raw``.

    Parsing with protobuf copies a 1 MiB payload twice (into the message, then out of it as ``bytes``);
    the chunk read path is copy-bound on the client, so it decodes the fields itself.
    """
    found, data = False, memoryview(b"")
    for number, value in _wire_fields(raw, "ReadRsp"):
        if number == 1:
            found = bool(value)
        elif number == 4:
            data = value  # type: ignore[assignment]
    return found, data


def parse_batch_read_rsp(raw: bytes) -> tuple[int, bool, int, memoryview, str]:
    """(item, found, chunk_length, data, error) of a serialized ``BatchReadRsp``, the data a view into ``raw``.

    Same reason as :func:`parse_read_rsp`: decoding by hand keeps the 1 MiB payload uncopied.
    """
    item = chunk_length = 0
    found, data, error = False, memoryview(b""), ""
    for number, value in _wire_fields(raw, "BatchReadRsp"):
        if number == 1:
            item = value  # type: ignore[assignment]
        elif number == 2:
            found = bool(value)
        elif number == 4:
            chunk_length = value  # type: ignore[assignment]
        elif number == 5:
            data = value  # type: ignore[assignment]
        elif number == 6:
            error = bytes(value).decode("utf-8", "replace")  # type: ignore[arg-type]
    return item, found, chunk_length, data, error


# A chunk span of one read: (chunk index, offset in the chunk, length, offset in the caller's buffer).
Span = tuple[int, int, int, int]
BATCH_MAX_ITEMS = 32  # chunks per BatchRead RPC
BATCH_MAX_BYTES = 64 << 20  # bytes requested per BatchRead RPC


@dataclass(frozen=True)
class FileStat:
    """``os.stat_result``-like view of an inode, plus its layout."""

    st_ino: int
    st_mode: int  # type bits | permission bits
    st_uid: int
    st_gid: int
    st_nlink: int
    st_size: int  # bytes
    st_atime: float
    st_mtime: float
    st_ctime: float
    chunk_size: int = 0  # bytes (files: their own; dirs: default for children, 0 = table default)
    stripe: int = 0
    chains: tuple[int, ...] = ()
    symlink_target: str = ""

    @classmethod
    def from_inode(cls, ino: cpb.Inode) -> FileStat:
        """Build from the wire inode."""
        return cls(
            st_ino=ino.inode_id,
            st_mode=_TYPE_BITS.get(ino.type, 0) | ino.mode,
            st_uid=ino.uid,
            st_gid=ino.gid,
            st_nlink=ino.nlink,
            st_size=ino.size,
            st_atime=ino.atime,
            st_mtime=ino.mtime,
            st_ctime=ino.ctime,
            chunk_size=ino.layout.chunk_size,
            stripe=ino.layout.stripe,
            chains=tuple(ino.layout.chains),
            symlink_target=ino.symlink_target,
        )

    def is_dir(self) -> bool:
        """Whether this is a directory."""
        return _stat.S_ISDIR(self.st_mode)

    def is_file(self) -> bool:
        """Whether this is a regular file."""
        return _stat.S_ISREG(self.st_mode)

    def is_symlink(self) -> bool:
        """Whether this is a symbolic link."""
        return _stat.S_ISLNK(self.st_mode)


@dataclass(frozen=True)
class StatFs:
    """Capacity of the cluster (for ``df``)."""

    total_bytes: int
    free_bytes: int
    used_bytes: int  # sum of file sizes
    inodes: int


@dataclass(frozen=True)
class TargetUsage:
    """One storage target as ``df`` shows it: where it lives, its chain state and what it stores.

    ``chunks``/``used_bytes``/``disk_*`` are None when its node did not answer (dead or unreachable).
    """

    target_id: int
    node_id: int
    chain_id: int
    state: str  # SERVING, SYNCING, WAITING, LASTSRV, OFFLINE (the chain table's view)
    address: str  # the node's gRPC address
    alive: bool  # the node's lease with mgmtd
    chunks: int | None
    used_bytes: int | None  # sum of the target's committed chunk lengths
    disk_total_bytes: int | None  # the target's file system (shared by a node's targets)
    disk_free_bytes: int | None
    data_address: str = ""  # the node's data port (chunk reads and updates); "" = gRPC only


@dataclass
class ClientStats:
    """Counters a caller (or test) can inspect; ``corrupt_reads`` lists replicas that failed a checksum."""

    corrupt_reads: list[str] = field(default_factory=list)
    pending_retries: int = 0
    write_retries: int = 0
    batch_reads: int = 0  # BatchRead RPCs issued
    batch_fallbacks: int = 0  # chunk spans of a batch re-read one by one with read_chunk (failed items)
    data_port_items: int = 0  # chunk reads answered over storage data ports (the rest went over gRPC)
    data_port_updates: int = 0  # chunk writes acknowledged over storage data ports


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
        self.user = mpb.User(uid=uid, gid=gid, groups=list(groups))
        self.timeout_s = timeout_s
        self.verify_reads = verify_reads  # check each read's bytes against the CRC32C the server sent
        self.use_data_port = data_port  # chunk reads and writes over storage data ports (False: gRPC only)
        self.connect_retry_s = connect_retry_s  # how long meta calls retry while meta is unreachable
        self.client_id = f"client-{uuid.uuid4().hex[:12]}"
        self.stats = ClientStats()
        self._mgmtd = mgmtd_pb2_grpc.MgmtdStub(_rpc.channel(mgmtd))
        self._routing_lock = threading.Lock()
        self._routing = cpb.RoutingInfo()
        self._routing_t = 0.0
        self.refresh_routing()
        if meta is None:
            metas = [n.address for n in self._routing.nodes if n.role == "meta" and n.alive]
            if not metas:
                raise E.NotServing("meta", "no meta server registered with mgmtd; pass meta=")
            meta = metas[0]
        self.meta_address = meta
        self._meta_channel = _rpc.channel(meta)
        self._meta = meta_pb2_grpc.MetaStub(self._meta_channel)
        self._stubs: dict[str, storage_pb2_grpc.StorageStub] = {}
        self._stubs_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="fs3-io")
        self._data = DataPortPool(timeout_s, per_address=io_threads, verify=verify_reads)
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release threads and channels."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)
            self._data.close()
            self._meta_channel.close()

    def __enter__(self) -> FS3Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- routing -----------------------------------------------------------------------------
    def refresh_routing(self) -> cpb.RoutingInfo:
        """Fetch the chain table and target states from mgmtd now."""
        try:
            routing = self._mgmtd.GetRouting(gpb.GetRoutingReq(), timeout=10).routing
        except grpc.RpcError as exc:
            raise E.from_rpc_error(exc, f"mgmtd {self.mgmtd_address}") from None
        with self._routing_lock:
            if routing.routing_version >= self._routing.routing_version:
                self._routing = routing
            self._routing_t = time.monotonic()
            return self._routing

    @property
    def routing(self) -> cpb.RoutingInfo:
        """The cached routing info (refreshed at most every second when read through here)."""
        if time.monotonic() - self._routing_t > 1.0:
            try:
                self.refresh_routing()
            except E.FS3Error:
                pass
        return self._routing

    def _chain(self, chain_id: int) -> cpb.Chain:
        for c in self.routing.chains:
            if c.chain_id == chain_id:
                return c
        raise E.NotFound(f"chain {chain_id}", "not in the chain table")

    def _node(self, node_id: int) -> cpb.NodeInfo | None:
        """The routing table's entry for ``node_id`` (the table is replaced, never mutated)."""
        return next((n for n in self._routing.nodes if n.node_id == node_id), None)

    def _address(self, node_id: int) -> str:
        node = self._node(node_id)
        if node is None:
            raise E.NotFound(f"node {node_id}", "not registered with mgmtd")
        return node.address

    def _data_address(self, node_id: int) -> str:
        """The node's data port ("" when it has none, or the client was told not to use them)."""
        node = self._node(node_id) if self.use_data_port else None
        return node.data_address if node is not None else ""

    def _stub(self, node_id: int) -> storage_pb2_grpc.StorageStub:
        return self._storage(node_id)[0]

    def _raw_read(self, node_id: int) -> Callable[..., Iterator[bytes]]:
        """``Storage/Read`` whose replies stay serialized: ``read_chunk`` takes the payload out uncopied."""
        return self._storage(node_id)[1]

    def _raw_batch_read(self, node_id: int) -> Callable[..., Iterator[bytes]]:
        """``Storage/BatchRead`` whose replies stay serialized (decoded by ``parse_batch_read_rsp``)."""
        return self._storage(node_id)[2]

    def _storage(
        self, node_id: int
    ) -> tuple[storage_pb2_grpc.StorageStub, Callable[..., Iterator[bytes]], Callable[..., Iterator[bytes]]]:
        addr = self._address(node_id)
        with self._stubs_lock:
            entry = self._stubs.get(addr)
            if entry is None:
                ch = _rpc.channel(addr)
                raw = ch.unary_stream("/fs3.Storage/Read", request_serializer=spb.ReadReq.SerializeToString)
                batch = ch.unary_stream(
                    "/fs3.Storage/BatchRead", request_serializer=spb.BatchReadReq.SerializeToString
                )
                entry = self._stubs[addr] = (storage_pb2_grpc.StorageStub(ch), raw, batch)
            return entry

    # ---- meta calls --------------------------------------------------------------------------
    def _call(self, method: str, request: object, what: str) -> object:
        deadline = time.monotonic() + self.connect_retry_s
        while True:
            try:
                return getattr(self._meta, method)(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                # UNAVAILABLE: not connected, the request never reached meta; retry for a while (restart)
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise E.from_rpc_error(exc, f"{what} (meta {self.meta_address})") from None
                time.sleep(0.1)

    @staticmethod
    def _check_path(path: str) -> str:
        if not isinstance(path, str):
            path = os.fsdecode(path)
        if not path.startswith("/"):
            raise E.InvalidArgument(path, "fs3 paths must be absolute")
        return path

    def stat(self, path: str, follow_symlinks: bool = True) -> FileStat:
        """Stat ``path`` (following a final symlink unless ``follow_symlinks`` is False)."""
        path = self._check_path(path)
        rsp = self._call("Stat", mpb.PathReq(user=self.user, path=path, follow=follow_symlinks), path)
        return FileStat.from_inode(rsp.inode)

    def lstat(self, path: str) -> FileStat:
        """Stat without following a final symlink."""
        return self.stat(path, follow_symlinks=False)

    def stat_inode(self, inode_id: int) -> FileStat:
        """Stat by inode id (NotFound for an unknown id)."""
        rsp = self._call(
            "StatInode", mpb.StatInodeReq(user=self.user, inode_id=inode_id), f"inode {inode_id}"
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
        req = mpb.MkdirReq(
            user=self.user,
            path=path,
            mode=mode,
            parents=parents,
            layout=cpb.Layout(chunk_size=chunk_size, stripe=stripe),
        )
        return FileStat.from_inode(self._call("Mkdir", req, path).inode)

    def makedirs(self, path: str, mode: int = 0o755, exist_ok: bool = True) -> FileStat:
        """``mkdir -p``."""
        if not exist_ok and self.exists(path):
            raise E.AlreadyExists(path, "file exists")
        return self.mkdir(path, mode, parents=True)

    def listdir(self, path: str = "/") -> list[str]:
        """Names in directory ``path``, sorted."""
        return [e.name for e in self.scandir(path)]

    def scandir(self, path: str = "/") -> list[mpb.DirEntry]:
        """Entries (name, inode_id, type 1 file / 2 dir / 3 symlink) of directory ``path``."""
        path = self._check_path(path)
        return list(self._call("List", mpb.ListReq(user=self.user, path=path), path).entries)

    def scandir_stat(self, path: str = "/") -> list[tuple[str, FileStat]]:
        """(name, lstat) of every entry of directory ``path``, in one meta round trip (like readdirplus)."""
        path = self._check_path(path)
        rsp = self._call("List", mpb.ListReq(user=self.user, path=path, with_inodes=True), path)
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

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` to ``dst`` (replacing a compatible ``dst``)."""
        src, dst = self._check_path(src), self._check_path(dst)
        rsp = self._call("Rename", mpb.RenameReq(user=self.user, src=src, dst=dst), f"{src} -> {dst}")
        if rsp.freed:
            self._remove_chunks(rsp.inode, 0)

    def remove(self, path: str) -> None:
        """Remove a file or symlink (its chunks are deleted once the last link is gone)."""
        path = self._check_path(path)
        rsp = self._call("Unlink", mpb.UnlinkReq(user=self.user, path=path), path)
        if rsp.freed:
            self._remove_chunks(rsp.inode, 0)

    unlink = remove

    def rmdir(self, path: str) -> None:
        """Remove an empty directory."""
        path = self._check_path(path)
        self._call("Unlink", mpb.UnlinkReq(user=self.user, path=path, directory=True), path)

    def symlink(self, target: str, path: str) -> None:
        """Create symlink ``path`` pointing at ``target`` (os.symlink argument order)."""
        path = self._check_path(path)
        self._call("Symlink", mpb.SymlinkReq(user=self.user, path=path, target=target), path)

    def readlink(self, path: str) -> str:
        """The target of symlink ``path``."""
        st = self.lstat(path)
        if not st.is_symlink():
            raise E.InvalidArgument(path, "not a symbolic link")
        return st.symlink_target

    def link(self, src: str, dst: str) -> None:
        """Hard-link ``dst`` to the file ``src``."""
        src, dst = self._check_path(src), self._check_path(dst)
        self._call("Link", mpb.LinkReq(user=self.user, src=src, dst=dst), dst)

    def truncate(self, path: str, length: int) -> None:
        """Set the size of file ``path`` to ``length`` bytes."""
        path = self._check_path(path)
        if length < 0:
            raise E.InvalidArgument(path, "negative length")
        rsp = self._call("Truncate", mpb.TruncateReq(user=self.user, path=path, length=length), path)
        self._cut_chunks(rsp.inode, length, rsp.old_size)

    def chmod(self, path: str, mode: int) -> None:
        """Change permission bits (owner or root)."""
        path = self._check_path(path)
        self._call("SetAttr", mpb.SetAttrReq(user=self.user, path=path, set_mode=True, mode=mode), path)

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Change owner (root only)."""
        path = self._check_path(path)
        self._call(
            "SetAttr", mpb.SetAttrReq(user=self.user, path=path, set_owner=True, uid=uid, gid=gid), path
        )

    def utime(self, path: str, times: tuple[float, float] | None = None) -> None:
        """Set (atime, mtime); now if ``times`` is None."""
        path = self._check_path(path)
        now = time.time()
        atime, mtime = times if times is not None else (now, now)
        req = mpb.SetAttrReq(user=self.user, path=path, set_times=True, atime=atime, mtime=mtime)
        self._call("SetAttr", req, path)

    def statfs(self) -> StatFs:
        """Cluster capacity: storage targets' disks (each replica counts) and the namespace totals."""
        rsp = self._call("StatFs", mpb.StatFsReq(user=self.user), "statfs")
        total = free = 0
        seen: set[str] = set()
        for n in self.routing.nodes:
            if n.role != "storage" or not n.alive:
                continue
            try:
                space = self._stub(n.node_id).Space(spb.TargetSpaceReq(), timeout=10)
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
        space: dict[int, spb.TargetSpace] = {}
        for n in routing.nodes:
            if n.role != "storage" or not n.alive:
                continue
            try:
                for t in self._stub(n.node_id).Space(spb.TargetSpaceReq(), timeout=10).targets:
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
                        rsp = self._stub(t.node_id).DumpChunkMeta(
                            spb.DumpChunkMetaReq(target_id=t.target_id), timeout=30
                        )
                        used = sum(m.length for m in rsp.chunks)
                    except grpc.RpcError:
                        pass
                out.append(
                    TargetUsage(
                        target_id=t.target_id,
                        node_id=t.node_id,
                        chain_id=chain.chain_id,
                        state=S.Name(t.state),
                        address=node.address if node else "",
                        data_address=node.data_address if node else "",
                        alive=bool(node and node.alive),
                        chunks=sp.chunks if sp else None,
                        used_bytes=used,
                        disk_total_bytes=sp.total_bytes if sp else None,
                        disk_free_bytes=sp.free_bytes if sp else None,
                    )
                )
        return out

    # ---- files -------------------------------------------------------------------------------
    def open(self, path: str, mode: str = "r", perm: int = 0o644, encoding: str | None = None) -> io.IOBase:
        """Open ``path`` like the builtin ``open``: binary modes give an :class:`FS3File`, text modes wrap it."""
        base = mode.replace("b", "").replace("t", "")
        if base not in _MODES:
            raise E.InvalidArgument(path, f"unsupported mode {mode!r}")
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
        from fs3.client.file import FS3File

        path = self._check_path(path)
        req = mpb.OpenReq(user=self.user, path=path, flags=flags, mode=perm, client_id=self.client_id)
        rsp = self._call("Open", req, path)
        if rsp.truncated:
            self._remove_chunks(rsp.inode, 0)
        return FS3File(self, path, rsp.inode, rsp.session_id, flags)

    def read_bytes(self, path: str) -> bytes:
        """The whole content of file ``path``."""
        with self.open(path, "rb") as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or replace file ``path`` with ``data``."""
        with self.open(path, "wb") as f:
            f.write(data)

    # ---- chunk I/O (internal) ----------------------------------------------------------------
    def _max_file_size(self) -> int:
        return self._routing.max_file_size or (1 << 40)

    def _chain_for(self, ino: cpb.Inode, index: int) -> int:
        lay = ino.layout
        return lay.chains[index % len(lay.chains)]

    def _wait_new_routing(self, chain_id: int, version: int) -> None:
        """Poll mgmtd until ``chain_id`` moves past ``version`` (bounded wait)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                self.refresh_routing()
            except E.FS3Error:
                pass
            if self._chain(chain_id).version != version:
                return
            time.sleep(0.05)

    def write_chunk(self, ino: cpb.Inode, index: int, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` of chunk ``index`` through the chain's head; retries across failovers."""
        cs = ino.layout.chunk_size
        end = index * cs + offset + len(data)
        if end > self._max_file_size():
            raise E.FileTooLarge(
                f"inode {ino.inode_id}", f"write ends at {end} > max file size {self._max_file_size()}"
            )
        chain_id = self._chain_for(ino, index)
        crc = crc32c(data)
        deadline = time.monotonic() + self.timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            chain = self._chain(chain_id)
            head = chain.targets[0] if chain.targets else None
            if head is None or head.state != S.SERVING:
                last = E.NotServing(f"chain {chain_id}", "no serving head")
                self._wait_new_routing(chain_id, chain.version)
                continue
            header = spb.UpdateReq(
                chain_id=chain_id,
                chain_version=chain.version,
                target_id=head.target_id,
                chunk=spb.ChunkId(inode_id=ino.inode_id, index=index),
                type=spb.WRITE,
                offset=offset,
                length=len(data),
                chunk_size=cs,
                payload_crc32c=crc,
                from_client=True,
                max_file_size=self._max_file_size(),
            )
            try:
                self._send_update(
                    head.node_id, header, data, f"chain {chain_id} head target {head.target_id}"
                )
                return
            except E.FS3Error as exc:
                err = exc
            if isinstance(
                err, E.StaleChainVersion | E.NotServing | E.ClusterTimeout | E.NotFound | E.IOFailure
            ):
                last = err
                self.stats.write_retries += 1
                self._wait_new_routing(chain_id, chain.version)
                continue
            raise err
        raise E.ClusterTimeout(
            f"chain {chain_id}", f"write not acknowledged within {self.timeout_s:.0f} s: {last}"
        )

    def _send_update(self, node_id: int, header: spb.UpdateReq, data: bytes | memoryview, what: str) -> None:
        """One chunk update to ``node_id``, acknowledged once its chain committed it (data port or gRPC).

        Raises the FS3Error the node answered, ClusterTimeout when it could not be reached.
        """
        address = self._data_address(node_id)
        if address:
            self._data.update(address, header, data, what)
            self.stats.data_port_updates += 1
            return
        from fs3.storage.service import pieces

        try:
            self._stub(node_id).Update(pieces(header, data), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise E.from_rpc_error(exc, what) from None

    def read_chunk(self, ino: cpb.Inode, index: int, offset: int, length: int, out: memoryview) -> int:
        """Read ``length`` bytes at ``offset`` of chunk ``index`` into ``out``; returns bytes found (rest zero)."""
        chain_id = self._chain_for(ino, index)
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        relaxed = False
        last: Exception | None = None
        while time.monotonic() < deadline:
            chain = self._chain(chain_id)
            serving = [t for t in chain.targets if t.state == S.SERVING]
            if not serving:
                last = E.NotServing(f"chain {chain_id}", "no serving replica")
                self._wait_new_routing(chain_id, chain.version)
                continue
            k = (self.first_replica(ino.inode_id, index, len(serving)) + attempt) % len(serving)
            order = serving[k:] + serving[:k]
            if attempt > 0 and not relaxed:
                order = [serving[-1]] + [t for t in order if t is not serving[-1]]  # prefer the tail on retry
            for t in order:
                req = spb.ReadReq(
                    target_id=t.target_id,
                    chunk=spb.ChunkId(inode_id=ino.inode_id, index=index),
                    offset=offset,
                    length=length,
                    relaxed=relaxed,
                    chain_version=chain.version,
                )
                try:
                    return self._read_replica(t, req, out)
                except E.FS3Error as exc:
                    err = exc
                if isinstance(err, E.ChecksumMismatch):
                    msg = (
                        f"chain {chain_id} target {t.target_id} chunk {ino.inode_id}:{index}: {err.strerror}"
                    )
                    logging.warning("corrupt replica, reading another: %s", msg)
                    self.stats.corrupt_reads.append(msg)
                    last = err
                    continue
                if isinstance(err, E.ChunkPending):
                    self.stats.pending_retries += 1
                    last = err
                    break  # back off, then retry at the tail
                if isinstance(err, E.InvalidArgument | E.FileTooLarge):
                    raise err
                last = err  # unavailable / not serving: try the next replica
            attempt += 1
            if attempt > 50:
                relaxed = True
            time.sleep(min(0.05, 0.002 * attempt))
            if isinstance(last, E.ClusterTimeout | E.NotServing):
                self._wait_new_routing(chain_id, chain.version)
        if isinstance(last, E.ChecksumMismatch):
            raise last
        raise E.ClusterTimeout(f"chain {chain_id}", f"chunk {ino.inode_id}:{index} not readable: {last}")

    def _read_replica(self, t: cpb.ChainTarget, req: spb.ReadReq, out: memoryview) -> int:
        """One read of ``req`` from replica ``t`` (data port if it has one, else gRPC); bytes found.

        ``out[found:req.length]`` is zeroed. Raises the FS3Error the replica answered, or
        ClusterTimeout when it could not be reached.
        """
        length = req.length
        if length == 0:
            return 0  # (on the data port, length 0 means "to the chunk's end")
        address = self._data_address(t.node_id)
        if address:
            dreq = ReadRequest(
                t.target_id, req.chunk.inode_id, req.chunk.index, req.offset, length, out[:length],
                req.chain_version, req.relaxed,
            )  # fmt: skip
            try:
                (r,) = self._data.read(address, [dreq])
            except OSError as exc:
                raise E.ClusterTimeout(f"target {t.target_id} (data port {address})", str(exc)) from None
            self.stats.data_port_items += 1
            if r.status == W.STATUS_ERROR:
                raise E.from_wire(r.error, f"target {t.target_id}")
            out[r.n : length] = bytes(length - r.n)
            return r.n
        try:
            n = 0
            for raw in self._raw_read(t.node_id)(req, timeout=self.timeout_s):
                found, d = parse_read_rsp(raw)
                if n == 0 and not found and not d:
                    break
                out[n : n + len(d)] = d
                n += len(d)
            out[n:length] = bytes(length - n)
            return n
        except grpc.RpcError as exc:
            raise E.from_rpc_error(exc, f"target {t.target_id}") from None

    @staticmethod
    def first_replica(inode_id: int, index: int, n_serving: int) -> int:
        """Position among a chain's serving replicas that reads of chunk ``index`` try first.

        Hashed over (inode, chunk) rather than ``index % n``: with the layout's shuffled chain order,
        ``index % n`` can send every chunk of a file to the same storage node.
        """
        return ((inode_id * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) >> 17) % n_serving

    def read_chunks(self, ino: cpb.Inode, spans: list[Span], out: memoryview) -> None:
        """Read every span into ``out[buf_off : buf_off + length]`` (bytes past a chunk's end read as zero).

        Spans are grouped by the storage node of the replica ``read_chunk`` would try first and fetched
        with one ``BatchRead`` per node (capped at BATCH_MAX_ITEMS / BATCH_MAX_BYTES), nodes in
        parallel: one RPC per chunk costs milliseconds of CPU on both ends. Any item that fails, or
        every item of a failed batch, is re-read with ``read_chunk``, which owns retries, failover and
        corruption handling.
        """
        if len(spans) <= 1:
            for s in spans:
                self.read_chunk(ino, s[0], s[1], s[2], out[s[3] : s[3] + s[2]])
            return
        groups: dict[int, list[tuple[Span, int, int]]] = {}
        fallback: list[Span] = []
        for s in spans:
            chain_id = self._chain_for(ino, s[0])
            try:
                chain = self._chain(chain_id)
            except E.NotFound:
                fallback.append(s)
                continue
            serving = [t for t in chain.targets if t.state == S.SERVING]
            if not serving:
                fallback.append(s)
                continue
            t = serving[self.first_replica(ino.inode_id, s[0], len(serving))]  # read_chunk's first choice
            groups.setdefault(t.node_id, []).append((s, t.target_id, chain.version))
        batches: list[tuple[int, list[tuple[Span, int, int]]]] = []
        for node_id, items in groups.items():
            cur: list[tuple[Span, int, int]] = []
            cur_bytes = 0
            for it in items:
                if cur and (len(cur) >= BATCH_MAX_ITEMS or cur_bytes + it[0][2] > BATCH_MAX_BYTES):
                    batches.append((node_id, cur))
                    cur, cur_bytes = [], 0
                cur.append(it)
                cur_bytes += it[0][2]
            batches.append((node_id, cur))
        for failed in self.parallel([lambda b=b: self._batch_read(ino, b[0], b[1], out) for b in batches]):
            fallback.extend(failed)
        if fallback:
            self.stats.batch_fallbacks += len(fallback)
            self.parallel(
                [
                    lambda s=s: self.read_chunk(ino, s[0], s[1], s[2], out[s[3] : s[3] + s[2]])
                    for s in fallback
                ]
            )

    def _batch_read(
        self, ino: cpb.Inode, node_id: int, items: list[tuple[Span, int, int]], out: memoryview
    ) -> list[Span]:
        """One BatchRead of ``items`` ((span, target_id, chain_version)) from ``node_id``; the spans not read.

        Never raises for storage errors: an item is done only when its whole range arrived, so a broken
        stream leaves the rest to the caller's per-chunk fallback.
        """
        self.stats.batch_reads += 1
        address = self._data_address(node_id)
        if address:
            return self._data_batch_read(ino, node_id, address, items, out)
        req = spb.BatchReadReq(
            items=[
                spb.ReadReq(
                    target_id=tid,
                    chunk=spb.ChunkId(inode_id=ino.inode_id, index=s[0]),
                    offset=s[1],
                    length=s[2],
                    chain_version=cv,
                )
                for s, tid, cv in items
            ]
        )
        k = len(items)
        seen, ok = [False] * k, [False] * k
        got, want = [0] * k, [0] * k
        try:
            for raw in self._raw_batch_read(node_id)(req, timeout=self.timeout_s):
                i, found, chunk_length, d, error = parse_batch_read_rsp(raw)
                if i >= k:
                    raise E.IOFailure(f"storage node {node_id}", f"BatchRead answered item {i} of {k}")
                s = items[i][0]
                if not seen[i]:
                    seen[i] = True
                    if error:
                        err = E.from_wire(error, f"target {items[i][1]}")
                        logging.debug("batch read item failed, reading it alone: %s", err)
                        continue
                    ok[i] = True
                    want[i] = max(0, min(chunk_length, s[1] + s[2]) - s[1]) if found else 0
                if not ok[i]:
                    continue
                n = got[i]
                if n + len(d) > want[i]:
                    ok[i] = False  # more data than the item asked for: distrust it
                    continue
                base = s[3] + n
                out[base : base + len(d)] = d
                got[i] = n + len(d)
        except (grpc.RpcError, E.FS3Error) as exc:
            logging.debug("BatchRead to storage node %d failed: %s", node_id, exc)
        failed = []
        for i, (s, _, _) in enumerate(items):
            if ok[i] and got[i] == want[i]:
                if want[i] < s[2]:
                    out[s[3] + want[i] : s[3] + s[2]] = bytes(s[2] - want[i])
            else:
                failed.append(s)
        return failed

    def _data_batch_read(
        self, ino: cpb.Inode, node_id: int, address: str, items: list[tuple[Span, int, int]], out: memoryview
    ) -> list[Span]:
        """``_batch_read`` over the node's data port: the payload lands in ``out`` straight from the socket."""
        reqs = [
            ReadRequest(tid, ino.inode_id, s[0], s[1], s[2], out[s[3] : s[3] + s[2]], cv)
            for s, tid, cv in items
        ]
        try:
            results = self._data.read(address, reqs)
        except PartialRead as exc:
            logging.debug("data port read from storage node %d broke off: %s", node_id, exc.cause)
            results = exc.results
        except OSError as exc:
            logging.debug("data port of storage node %d (%s) unreachable: %s", node_id, address, exc)
            results = []
        self.stats.data_port_items += len(results)
        failed = [s for s, _, _ in items[len(results) :]]
        for (s, tid, _), r in zip(items, results, strict=False):
            if r.status == W.STATUS_ERROR:
                logging.debug("data port item failed, reading it alone: target %d: %s", tid, r.error)
                failed.append(s)
            elif r.n < s[2]:
                out[s[3] + r.n : s[3] + s[2]] = bytes(s[2] - r.n)  # past the chunk's end, or a hole
        return failed

    def parallel(self, fns: list) -> list:
        """Run callables on the I/O pool; re-raise the first error."""
        if len(fns) == 1:
            return [fns[0]()]
        futs = [self._pool.submit(f) for f in fns]
        return [f.result() for f in futs]

    def _remove_chunks(self, ino: cpb.Inode, first_index: int) -> None:
        """Delete chunks with index >= first_index on every chain of the file's layout."""
        if ino.type != 1 or not ino.layout.chains:
            return

        def one(chain_id: int) -> None:
            deadline = time.monotonic() + self.timeout_s
            while True:
                chain = self._chain(chain_id)
                head = chain.targets[0]
                req = spb.RemoveRangeReq(
                    chain_id=chain_id,
                    chain_version=chain.version,
                    target_id=head.target_id,
                    inode_id=ino.inode_id,
                    first_index=first_index,
                )
                try:
                    self._stub(head.node_id).RemoveRange(req, timeout=self.timeout_s)
                    return
                except grpc.RpcError as exc:
                    if time.monotonic() > deadline:
                        raise E.from_rpc_error(exc, f"chain {chain_id}") from None
                    self._wait_new_routing(chain_id, chain.version)

        self.parallel([lambda c=c: one(c) for c in sorted(set(ino.layout.chains))])

    def _cut_chunks(self, ino: cpb.Inode, length: int, old_size: int) -> None:
        """After a truncate to ``length``: drop whole chunks past it and cut the boundary chunk."""
        cs = ino.layout.chunk_size
        if not cs:
            return
        self._remove_chunks(ino, (length + cs - 1) // cs)
        if length % cs:
            index = length // cs
            chain_id = self._chain_for(ino, index)
            from fs3.storage.service import pieces

            deadline = time.monotonic() + self.timeout_s
            while True:
                chain = self._chain(chain_id)
                head = chain.targets[0]
                header = spb.UpdateReq(
                    chain_id=chain_id,
                    chain_version=chain.version,
                    target_id=head.target_id,
                    chunk=spb.ChunkId(inode_id=ino.inode_id, index=index),
                    type=spb.TRUNCATE,
                    length=length % cs,
                    chunk_size=cs,
                    from_client=True,
                )
                try:
                    self._stub(head.node_id).Update(pieces(header, b""), timeout=self.timeout_s)
                    return
                except grpc.RpcError as exc:
                    if time.monotonic() > deadline:
                        raise E.from_rpc_error(exc, f"chain {chain_id}") from None
                    self._wait_new_routing(chain_id, chain.version)


from fs3.client.file import FS3File  # noqa: E402  (circular: FS3File uses FS3Client)
