"""The meta schema and its row types, limits and permission check, shared by the store's parts."""

from __future__ import annotations

from typing import NamedTuple

from fs3 import errors as E
from fs3.protos import meta_pb2 as pb

FILE, DIR, SYMLINK, FIFO, SOCK, CHR, BLK = 1, 2, 3, 4, 5, 6, 7
SPECIAL = (FIFO, SOCK, CHR, BLK)  # metadata-only inodes: the kernel does their I/O
ROOT_ID = 1
NAME_MAX = 255
PATH_MAX = 4096  # symlink targets; a path argument is bounded per component (as on Linux, any depth)
PATH_LIMIT = 1 << 20  # bytes: a sanity bound on a resolved path (FUSE sends absolute paths of any depth)
XATTR_NAME_MAX, XATTR_SIZE_MAX, XATTR_LIST_MAX = 255, 65536, 65536  # as Linux
XATTR_CREATE, XATTR_REPLACE = 1, 2
XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.")
DEFAULT_LEASE_S = 30.0  # a client's sessions expire this long after its last renewal
SYMLOOP_MAX = 40
DEFAULT_MAX_FILE_SIZE = 1 << 40  # bytes, when mgmtd's routing info does not say
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2  # renameat2(2) flags
NOW = "now"  # a time argument meaning "meta's clock" (utimensat's UTIME_NOW)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta_inodes (
  id BIGINT PRIMARY KEY, type INTEGER NOT NULL, mode INTEGER NOT NULL, uid BIGINT NOT NULL, gid BIGINT NOT NULL,
  nlink INTEGER NOT NULL, size BIGINT NOT NULL, atime_ns BIGINT NOT NULL, mtime_ns BIGINT NOT NULL,
  ctime_ns BIGINT NOT NULL, chunk_size BIGINT NOT NULL, stripe INTEGER NOT NULL, chains TEXT NOT NULL,
  seed BIGINT NOT NULL, symlink TEXT NOT NULL, parent BIGINT NOT NULL, rdev BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta_dentries (
  parent BIGINT NOT NULL, name TEXT NOT NULL, inode BIGINT NOT NULL, type INTEGER NOT NULL,
  PRIMARY KEY (parent, name));
CREATE TABLE IF NOT EXISTS meta_sessions (
  id BIGINT PRIMARY KEY, inode BIGINT NOT NULL, client TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS meta_sessions_inode ON meta_sessions (inode);
CREATE INDEX IF NOT EXISTS meta_sessions_client ON meta_sessions (client);
CREATE TABLE IF NOT EXISTS meta_clients (client TEXT PRIMARY KEY, lease_until_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta_orphans (
  inode BIGINT PRIMARY KEY, chains TEXT NOT NULL, chunk_size BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta_xattrs (
  inode BIGINT NOT NULL, name BYTEA NOT NULL, value BYTEA NOT NULL, PRIMARY KEY (inode, name));
CREATE TABLE IF NOT EXISTS meta_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)
"""


class InodeRow(NamedTuple):
    """One ``meta_inodes`` row, columns in table order."""

    id: int
    type: int  # FILE, DIR or SYMLINK
    mode: int  # permission bits only (0o7777)
    uid: int
    gid: int
    nlink: int
    size: int  # bytes
    atime_ns: int  # unix nanoseconds
    mtime_ns: int
    ctime_ns: int
    chunk_size: int  # bytes; directories: the default for new children (0 = cluster default)
    stripe: int
    chains: str  # comma-separated chain ids (files only)
    seed: int  # per-file shuffle seed of the chains
    symlink: str  # symlink target (symlinks only)
    parent: int  # parent directory id (directories only, for the rename loop check)
    rdev: int  # device nodes: the device number


COLS = ", ".join(InodeRow._fields)
_INSERT_INODE = f"INSERT INTO meta_inodes ({COLS}) VALUES ({', '.join('?' * len(InodeRow._fields))})"


class Listed(NamedTuple):
    """One directory entry; ``inode`` is set only when the listing asked for inodes."""

    name: str
    inode_id: int
    type: int
    inode: InodeRow | None = None


class Removed(NamedTuple):
    """The inode an unlink or rename removed (None if none) and whether its chunks must be deleted."""

    inode: InodeRow | None
    freed: bool


class Opened(NamedTuple):
    """An opened inode, its session, whether O_TRUNC cut it (from ``old_size`` bytes), the lease in s."""

    inode: InodeRow
    session_id: int
    truncated: bool
    old_size: int
    lease_s: float


class Orphan(NamedTuple):
    """An inode freed by a lease expiry, whose chunks meta still has to remove."""

    inode_id: int
    chains: list[int]
    chunk_size: int


def split_path(path: str) -> list[str]:
    """Validate an absolute path and return its components; raise InvalidArgument/NameTooLong."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise E.InvalidArgument(str(path), "path must be absolute")
    if "\0" in path:
        raise E.InvalidArgument(path.replace("\0", "\\0"), "path contains NUL")
    if len(path) > PATH_LIMIT or len(path.encode()) > PATH_LIMIT:
        raise E.NameTooLong(path[:64] + "...", f"path longer than {PATH_LIMIT} bytes")
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise E.InvalidArgument(path, f"path component {p!r} is not allowed")
        if len(p.encode()) > NAME_MAX:
            raise E.NameTooLong(path, f"component longer than {NAME_MAX} bytes")
    return parts


def allowed(row: InodeRow, user: pb.User, want: int) -> bool:
    """Whether ``user`` has every ``os.R_OK``/``os.W_OK``/``os.X_OK`` bit of ``want`` on ``row``."""
    if user.uid == 0:
        return True
    if user.uid == row.uid:
        bits = row.mode >> 6
    elif user.gid == row.gid or row.gid in user.groups:
        bits = row.mode >> 3
    else:
        bits = row.mode
    return (bits & want) == want


def check(row: InodeRow, user: pb.User, want: int, path: str) -> None:
    """Raise PermissionDenied unless ``allowed(row, user, want)``."""
    if not allowed(row, user, want):
        raise E.PermissionDenied(path, "permission denied")
