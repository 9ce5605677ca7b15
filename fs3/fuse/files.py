"""File I/O handlers of ``FS3Operations`` (open, create, read, write, flush, fsync, release), as a mixin.

They share the open handles and this mount's file sizes; ``FS3Operations`` supplies ``_call``, ``_inodes``,
``_handles``, ``_sizes`` and ``_append_locks``.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import threading
from dataclasses import dataclass, field

import pyfuse3

from fs3.fuse.backend import BackendFile
from fs3.fuse.inodes import _join

log = logging.getLogger("fs3.fuse")


@dataclass
class _Handle:
    """An open file: the backend file, its inode, and whether writes go to the end (O_APPEND)."""

    file: BackendFile
    ino: int
    append: bool
    writable: bool
    dirty: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _FileOps:
    """The file handlers, mixed into ``FS3Operations`` (whose state and helpers they use)."""

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        """Open an existing file; O_TRUNC truncates, O_APPEND makes every write land at the end."""
        acc = flags & os.O_ACCMODE
        writable = acc in (os.O_WRONLY, os.O_RDWR)
        if writable or flags & os.O_TRUNC:
            self._check_writable()
        path = self._inodes.path(inode)
        if flags & os.O_TRUNC:
            await self._push_others(inode, None)
        f = await self._call(self.backend.open, path, flags & ~(os.O_CREAT | os.O_EXCL))
        if flags & os.O_TRUNC:
            self._truncated(inode, 0, None)
        fh = self._new_fh(_Handle(f, inode, bool(flags & os.O_APPEND), writable))
        return pyfuse3.FileInfo(fh=fh, keep_cache=False)

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        """Create and open a file owned by the caller (EEXIST if it exists and O_EXCL)."""
        self._check_writable()
        path = _join(self._inodes.path(parent_inode), name)
        f, a = await self._call(
            self.backend.create, path, stat_mod.S_IMODE(mode) & ~ctx.umask, flags, ctx.uid, ctx.gid
        )
        e = self._entry(a)
        self._inodes.remember(e.st_ino, path)
        fh = self._new_fh(_Handle(f, e.st_ino, bool(flags & os.O_APPEND), True))
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), e

    def _truncated(self, ino: int, length: int, fh: int | None) -> None:
        """``ino`` now has ``length`` bytes: this mount's other handles must neither read past nor
        report their older writes past it."""
        self._sizes[ino] = length
        for other_fh, h in self._handles.items():
            if other_fh != fh and h.ino == ino:
                h.file.note_truncate(length)

    async def _push_others(self, ino: int, fh: int | None) -> None:
        """Send other handles' buffered writes to the backend, so what this mount wrote is readable."""
        for other_fh, h in list(self._handles.items()):
            if other_fh != fh and h.ino == ino and h.dirty:
                h.dirty = False
                await self._call(h.file.push)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        """Bytes at ``off`` (holes read as zeros; short only at end of file)."""
        h = self._handle(fh)
        await self._push_others(h.ino, fh)
        known = self._sizes.get(h.ino)
        if known is not None:
            h.file.note_size(known)
        return await self._call(h.file.pread, off, size)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        """Write at ``off``, or at the current end for O_APPEND handles."""
        self._check_writable()
        h = self._handle(fh)
        h.dirty = True
        if not h.append:
            n = await self._call(h.file.pwrite, buf, off)
            self._sizes[h.ino] = max(self._sizes.get(h.ino, 0), off + n)
            return n
        await self._push_others(h.ino, fh)
        lock = self._append_locks.setdefault(h.ino, threading.Lock())
        known = self._sizes.get(h.ino, 0)

        def append() -> tuple[int, int]:
            with lock:
                end = max(h.file.fstat().size, known)
                return h.file.pwrite(buf, end), end

        n, at = await self._call(append)
        self._sizes[h.ino] = max(self._sizes.get(h.ino, 0), at + n)
        return n

    async def flush(self, fh: int) -> None:
        """close(2) of one descriptor: push written data so other clients see it."""
        h = self._handle(fh)
        if h.writable:
            h.dirty = False
            await self._call(h.file.flush)

    async def fsync(self, fh: int, datasync: bool) -> None:
        """Make the file's data durable."""
        h = self._handle(fh)
        await self._push_others(h.ino, fh)
        h.dirty = False
        await self._call(h.file.fsync)

    async def release(self, fh: int) -> None:
        """Last close of an open file."""
        h = self._handles.pop(fh, None)
        if h is None:
            return
        try:
            await self._call(h.file.close)
        finally:
            if h.ino not in self._open_inos():
                self._sizes.pop(h.ino, None)
                self._append_locks.pop(h.ino, None)
            if h.ino not in self._inodes.lookups and h.ino not in self._open_inos():
                if h.ino != pyfuse3.ROOT_INODE:
                    self._inodes.paths.pop(h.ino, None)

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        """Permission checks are done by the kernel (default_permissions); only EROFS for writes here."""
        if mode & os.W_OK and self.read_only:
            return False
        return True

    def close_all(self) -> None:
        """Close every open file (after the mount is gone)."""
        for h in list(self._handles.values()):
            try:
                h.file.close()
            except Exception:  # best effort at shutdown
                log.warning("closing a file at unmount failed", exc_info=True)
        self._handles.clear()
