"""Public value types of the fs3 client: stat results, capacity, per-target usage, counters."""

from __future__ import annotations

import stat as _stat
from dataclasses import dataclass, field

from fs3.protos import common_pb2

_TYPE_BITS = {
    1: _stat.S_IFREG,
    2: _stat.S_IFDIR,
    3: _stat.S_IFLNK,
    4: _stat.S_IFIFO,
    5: _stat.S_IFSOCK,
    6: _stat.S_IFCHR,
    7: _stat.S_IFBLK,
}
INODE_TYPE = {bits: t for t, bits in _TYPE_BITS.items()}  # S_IFMT bits -> meta inode type


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
    st_atime_ns: int = 0  # exact; st_atime etc. are the same rounded to doubles
    st_mtime_ns: int = 0
    st_ctime_ns: int = 0
    st_rdev: int = 0  # device nodes: the device number

    @classmethod
    def from_inode(cls, ino: common_pb2.Inode) -> FileStat:
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
            st_atime_ns=ino.atime_ns,
            st_mtime_ns=ino.mtime_ns,
            st_ctime_ns=ino.ctime_ns,
            st_rdev=ino.rdev,
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
    reserve_bytes: int | None = None  # free space the target keeps back for deletes and the index
    read_only: bool | None = None  # under its reserve: new chunks get ENOSPC
    corrupt_chunks: int | None = None  # replicas found failing their CRC32C since the server started
    repaired_chunks: int | None = None  # of those, rewritten from a good replica and verified
    unrepaired_chunks: int | None = None  # corrupt now, waiting for a good copy
    scrubbed_bytes: int | None = None  # verified by the background scrubber since the server started


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
