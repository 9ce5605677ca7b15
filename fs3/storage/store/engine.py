"""Chunk engine of one storage target.

Layout under the target's data directory: ``index.db`` (SQLite WAL: chunk id -> committed version,
CRC32C, length, chain version) and ``chunks/<inode:016x>/<index:08x>`` holding the committed bytes.
An update is staged as ``<index>.p`` (written, optionally fsynced) and committed by the index update
followed by an atomic ``rename``: an index that cannot be written (a full disk) commits nothing, and
a crash between the two is rolled forward at start (a ``.p`` whose bytes match the index becomes the
chunk; other ``.p`` files are removed). The CRC32C in the index is checked on every read (reads
take no lock; see ``read_into``). Pending state
is in memory only: a restarted target is resynced from its predecessor anyway. Updates are not
thread-safe per chunk: callers hold the chunk lock.

Space: a chunk that grows is staged only while ``reserve_bytes`` stay free after it (ENOSPC before
any byte is written otherwise), so commits, removals and shrinking updates always find room. A
``headroom`` file of HEADROOM_BYTES is kept beside the index and given up when an index write finds
the disk full (filled by something else), so deleting chunks frees space even then.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fs3 import errors
from fs3.crc import crc32c

MAX_INODE = (1 << 63) - 1
MAX_INDEX = (1 << 32) - 1
HEADROOM_BYTES = 1 << 20  # kept free for index writes on a full disk (see the module docstring)
MAX_DEFAULT_RESERVE_BYTES = 1 << 30


def default_reserve_bytes(total_bytes: int) -> int:
    """The reserve of a target whose file system has ``total_bytes``: 5 %, at most 1 GiB."""
    return min(MAX_DEFAULT_RESERVE_BYTES, total_bytes // 20)


@dataclass
class ChunkMetaRow:
    """Metadata of one chunk replica."""

    inode_id: int
    index: int
    committed_version: int
    crc: int
    length: int
    chain_version: int
    pending_version: int = 0


class ChunkStore:
    """The chunks of one target under ``root``; see the module docstring for the layout."""

    def __init__(
        self, root: str | os.PathLike, target_id: int, fsync: bool = True, reserve_bytes: int | None = None
    ) -> None:
        self.root = Path(root)
        self.target_id = target_id
        self.fsync = fsync
        (self.root / "chunks").mkdir(parents=True, exist_ok=True)
        st = os.statvfs(self.root)
        total = st.f_blocks * st.f_frsize
        # bytes kept free: under it no chunk grows (None: default_reserve_bytes of the file system)
        self.reserve_bytes = default_reserve_bytes(total) if reserve_bytes is None else reserve_bytes
        self._headroom = self.root / "headroom"
        self._refused_need = 0  # free bytes the last refused growing chunk needed (0: none refused since)
        self._db = sqlite3.connect(str(self.root / "index.db"), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL" if fsync else "PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (inode INTEGER NOT NULL, idx INTEGER NOT NULL, "
            "version INTEGER NOT NULL, crc INTEGER NOT NULL, length INTEGER NOT NULL, "
            "chain_version INTEGER NOT NULL, PRIMARY KEY (inode, idx))"
        )
        self._lock = threading.Lock()
        self._committing = 0  # commits between their rename and their index update (under _lock)
        self._commits = 0  # commits finished; with _committing, tells a reader its file may have moved
        self._meta: dict[tuple[int, int], ChunkMetaRow] = {}
        for inode, idx, ver, crc, length, cver in self._db.execute("SELECT * FROM chunks"):
            self._meta[(inode, idx)] = ChunkMetaRow(inode, idx, ver, crc, length, cver)
        self._pending: dict[
            tuple[int, int], tuple[int, int, int, int]
        ] = {}  # -> (version, crc, length, chain_ver)
        for p in (self.root / "chunks").glob("*/*.p"):  # leftovers of a crash
            self._recover_pending(p)
        self._keep_headroom()

    def _recover_pending(self, p: Path) -> None:
        """Finish a commit that crashed between its index update and its rename; drop any other ``.p``."""
        try:
            cid = (int(p.parent.name, 16), int(p.name.removesuffix(".p"), 16))
        except ValueError:
            p.unlink()
            return
        m = self._meta.get(cid)
        if m is not None and m.committed_version:
            content = p.read_bytes()
            if len(content) == m.length and crc32c(content) == m.crc:
                os.replace(p, self._path(cid))
                logging.info(
                    "target %d: chunk %d:%d v%d rolled forward", self.target_id, *cid, m.committed_version
                )
                return
        p.unlink()

    # ---- space -------------------------------------------------------------------------------
    def _no_space(self, cid: tuple[int, int], why: str) -> errors.NoSpace:
        return errors.NoSpace(f"chunk {cid[0]}:{cid[1]} on target {self.target_id}", why)

    def _keep_headroom(self) -> None:
        """(Re)create the headroom file if it is missing; best effort (a full disk leaves it missing)."""
        if self._headroom.exists() and self._headroom.stat().st_size == HEADROOM_BYTES:
            return
        try:
            fd = os.open(self._headroom, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, HEADROOM_BYTES)
            finally:
                os.close(fd)
        except OSError as exc:
            self._headroom.unlink(missing_ok=True)
            logging.warning("target %d: no room for the index headroom file: %s", self.target_id, exc)

    def _index_write(self, sql: str, args: tuple) -> None:
        """One index statement; on a full disk, give up the headroom file and try once more (else ENOSPC)."""
        try:
            self._db.execute(sql, args)
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise
            if not self._headroom.exists():
                raise self._no_space(args[:2], f"chunk index: {exc}") from None  # type: ignore[arg-type]
        logging.warning("target %d: disk full, using the index headroom", self.target_id)
        self._headroom.unlink(missing_ok=True)
        try:
            self._db.execute(sql, args)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise self._no_space(args[:2], f"chunk index: {exc}") from None  # type: ignore[arg-type]
            raise

    def check_room(self, cid: tuple[int, int], length: int) -> None:
        """ENOSPC unless ``length`` bytes can be staged for ``cid``: a growing chunk must leave the reserve."""
        m = self._meta.get(cid)
        grows = m is None or length > m.length
        free = self.free_bytes()
        need = length + (self.reserve_bytes if grows else 0)
        if grows:
            self._refused_need = need if free < need else 0
        if free < need:
            raise self._no_space(
                cid,
                f"{free} bytes free, {length} needed"
                + (f" above the reserve of {self.reserve_bytes}" if grows else ""),
            )

    @property
    def read_only(self) -> bool:
        """Whether the target is under its reserve, or refused a growing chunk and has not freed enough since."""
        free = self.free_bytes()
        return free < self.reserve_bytes or free < self._refused_need

    # ---- paths -------------------------------------------------------------------------------
    def _path(self, cid: tuple[int, int], pending: bool = False) -> Path:
        inode, idx = cid
        if not (0 < inode <= MAX_INODE and 0 <= idx <= MAX_INDEX):
            raise errors.InvalidArgument(f"chunk {inode}:{idx}", "chunk id out of range")
        return self.root / "chunks" / f"{inode:016x}" / (f"{idx:08x}.p" if pending else f"{idx:08x}")

    # ---- queries -----------------------------------------------------------------------------
    def meta(self, cid: tuple[int, int]) -> ChunkMetaRow | None:
        """Committed metadata (with the pending version filled in) or None."""
        m = self._meta.get(cid)
        p = self._pending.get(cid)
        if m is None and p is None:
            return None
        if m is None:
            m = ChunkMetaRow(cid[0], cid[1], 0, 0, 0, 0)
        if p is not None:
            return ChunkMetaRow(
                m.inode_id, m.index, m.committed_version, m.crc, m.length, m.chain_version, p[0]
            )
        return m

    def all_meta(self) -> list[ChunkMetaRow]:
        """Metadata of every chunk (dump-chunkmeta)."""
        with self._lock:
            keys = set(self._meta) | set(self._pending)
        return [m for k in sorted(keys) if (m := self.meta(k)) is not None]

    def read(self, cid: tuple[int, int]) -> bytes:
        """The committed bytes of the chunk, verified against the indexed CRC32C (ChecksumMismatchError)."""
        got = self.read_into(cid, None)
        return b"" if got is None else got[1].obj  # type: ignore[return-value]  # the bytes pread returned

    def read_into(
        self, cid: tuple[int, int], buf: bytearray | None
    ) -> tuple[ChunkMetaRow, memoryview] | None:
        """(meta, committed bytes) of the chunk verified against its CRC32C; None if it has none.

        The bytes are read into ``buf`` (grown to fit) when given, so a data-port connection reuses one
        buffer instead of allocating (and page-faulting) a fresh one per chunk. Raises ChecksumMismatchError
        when the file is missing or fails its checksum. Takes no chunk lock: a commit that renames a new
        version in between is seen as a changed index entry, and the read is retried.
        """
        for attempt in range(5):
            commits = self._commits
            m = self._meta.get(cid)
            if m is None or m.committed_version == 0:
                return None
            try:
                fd = os.open(self._path(cid), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if self._moved(cid, m, commits) and attempt < 4:
                    continue
                raise errors.ChecksumMismatchError(
                    f"chunk {cid[0]}:{cid[1]} on target {self.target_id}", "chunk file missing"
                ) from None
            try:
                size = os.fstat(fd).st_size
                if buf is None:
                    view = memoryview(os.pread(fd, size, 0))
                else:
                    if len(buf) < size:
                        buf.extend(bytes(size - len(buf)))
                    view = memoryview(buf)[: os.preadv(fd, [memoryview(buf)[:size]], 0)]
            finally:
                os.close(fd)
            if len(view) == m.length and crc32c(view) == m.crc:
                return m, view
            if self._moved(cid, m, commits) and attempt < 4:
                continue  # a new version was committed while we read: read that one
            logging.error("target %d: chunk %d:%d fails its checksum", self.target_id, *cid)
            raise errors.ChecksumMismatchError(
                f"chunk {cid[0]}:{cid[1]} on target {self.target_id}",
                f"checksum mismatch (stored crc {m.crc:#010x}, length {m.length}; file {len(view)} bytes)",
            )
        raise AssertionError("unreachable")

    def _moved(self, cid: tuple[int, int], m: ChunkMetaRow, commits: int) -> bool:
        """Whether a commit may have replaced ``cid``'s file since ``m`` was read (then wait for it)."""
        if self._meta.get(cid) is not m:
            return True
        if self._committing or self._commits != commits:
            time.sleep(0.001)  # between a rename and its index update: let it finish
            return True
        return False

    # ---- updates (caller holds the chunk lock) -----------------------------------------------
    def stage(self, cid: tuple[int, int], version: int, content: bytes, chain_version: int) -> int:
        """Write ``content`` as pending ``version``; return its CRC32C. NoSpace (nothing staged) if no room."""
        path = self._path(cid, pending=True)
        self.check_room(cid, len(content))
        try:
            path.parent.mkdir(exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
                if self.fsync:
                    os.fsync(f.fileno())
        except OSError as exc:
            path.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._no_space(cid, f"staging {len(content)} bytes: {exc.strerror}") from None
            raise
        crc = crc32c(content)
        self._pending[cid] = (version, crc, len(content), chain_version)
        return crc

    def commit(self, cid: tuple[int, int]) -> ChunkMetaRow:
        """Make the pending version the committed one (index, then rename).

        If the index cannot be written (NoSpace), nothing is committed and the pending version is dropped.
        """
        version, crc, length, cver = self._pending.pop(cid)
        pending = self._path(cid, pending=True)
        with self._lock:
            self._committing += 1
        try:
            with self._lock:
                try:
                    self._index_write(
                        "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                        (*cid, version, crc, length, cver),
                    )
                except BaseException:
                    pending.unlink(missing_ok=True)
                    raise
            try:
                os.replace(pending, self._path(cid))
            except OSError:
                self._restore_index(cid)
                pending.unlink(missing_ok=True)
                raise
            row = ChunkMetaRow(cid[0], cid[1], version, crc, length, cver)
            with self._lock:
                self._meta[cid] = row
        finally:
            with self._lock:
                self._committing -= 1
                self._commits += 1
        return row

    def _restore_index(self, cid: tuple[int, int]) -> None:
        """Put ``cid``'s index row back to the committed one in memory (after a failed rename); best effort."""
        old = self._meta.get(cid)
        try:
            with self._lock:
                if old is None:
                    self._db.execute("DELETE FROM chunks WHERE inode = ? AND idx = ?", cid)
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                        (*cid, old.committed_version, old.crc, old.length, old.chain_version),
                    )
        except sqlite3.Error as exc:
            logging.error("target %d: chunk %d:%d: index not restored: %s", self.target_id, *cid, exc)

    def abort(self, cid: tuple[int, int]) -> None:
        """Drop a pending version."""
        if self._pending.pop(cid, None) is not None:
            self._path(cid, pending=True).unlink(missing_ok=True)

    def remove(self, cid: tuple[int, int]) -> bool:
        """Delete the chunk; True if it existed. Works on a full disk (index first, then the file)."""
        self.abort(cid)
        with self._lock:
            existed = cid in self._meta
            self._index_write("DELETE FROM chunks WHERE inode = ? AND idx = ?", cid)
            self._meta.pop(cid, None)  # only once the index no longer has it
        self._path(cid).unlink(missing_ok=True)
        if not self._headroom.exists():
            self._keep_headroom()
        return existed

    def chunk_ids(self, inode_id: int, first_index: int = 0) -> list[tuple[int, int]]:
        """Ids of this inode's chunks with index >= first_index."""
        with self._lock:
            return sorted(
                k for k in set(self._meta) | set(self._pending) if k[0] == inode_id and k[1] >= first_index
            )

    def corrupt_for_test(self, cid: tuple[int, int]) -> Path:
        """Path of the committed chunk file (tests flip bytes in it)."""
        return self._path(cid)

    def free_bytes(self) -> int:
        """Bytes available on the target's file system (statvfs ``f_bavail``)."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def space(self) -> tuple[int, int, int]:
        """(total bytes, free bytes, chunk count) of the target's file system."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, len(self._meta)
