"""Chunk engine of one storage target.

Layout under the target's data directory: ``index.db`` (SQLite WAL: chunk id -> committed version,
CRC32C, length, chain version) and ``chunks/<inode:016x>/<index:08x>`` holding the committed bytes.
An update is staged as ``<index>.p`` (written, optionally fsynced) and committed by an atomic
``rename`` followed by the index update, so a crash leaves either the old or the new chunk; the
CRC32C in the index is checked on every read (reads take no lock; see ``read_into``). Pending state
is in memory only: a restarted target is resynced from its predecessor anyway. Updates are not
thread-safe per chunk: callers hold the chunk lock.
"""

from __future__ import annotations

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

    def __init__(self, root: str | os.PathLike, target_id: int, fsync: bool = True) -> None:
        self.root = Path(root)
        self.target_id = target_id
        self.fsync = fsync
        (self.root / "chunks").mkdir(parents=True, exist_ok=True)
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
        for p in (self.root / "chunks").glob("*/*.p"):  # uncommitted leftovers of a crash
            p.unlink()

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
        """Write ``content`` as pending ``version``; return its CRC32C."""
        path = self._path(cid, pending=True)
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
            if self.fsync:
                os.fsync(f.fileno())
        crc = crc32c(content)
        self._pending[cid] = (version, crc, len(content), chain_version)
        return crc

    def commit(self, cid: tuple[int, int]) -> ChunkMetaRow:
        """Make the pending version the committed one (rename, then index)."""
        version, crc, length, cver = self._pending.pop(cid)
        with self._lock:
            self._committing += 1
        try:
            os.replace(self._path(cid, pending=True), self._path(cid))
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                    (*cid, version, crc, length, cver),
                )
                row = ChunkMetaRow(cid[0], cid[1], version, crc, length, cver)
                self._meta[cid] = row
        finally:
            with self._lock:
                self._committing -= 1
                self._commits += 1
        return row

    def abort(self, cid: tuple[int, int]) -> None:
        """Drop a pending version."""
        if self._pending.pop(cid, None) is not None:
            self._path(cid, pending=True).unlink(missing_ok=True)

    def remove(self, cid: tuple[int, int]) -> bool:
        """Delete the chunk; True if it existed."""
        self.abort(cid)
        with self._lock:
            existed = self._meta.pop(cid, None) is not None
            self._db.execute("DELETE FROM chunks WHERE inode = ? AND idx = ?", cid)
        self._path(cid).unlink(missing_ok=True)
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

    def space(self) -> tuple[int, int, int]:
        """(total bytes, free bytes, chunk count) of the target's file system."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, len(self._meta)
