"""pyfuse3 ``Operations`` over a path-based ``Backend`` (the fs3 client, or a local directory).

FUSE speaks inode numbers, the backend speaks paths: the kernel-visible inode number is the backend's
own inode id (the backend root's id swapped with ``ROOT_INODE``), and ``_Inodes`` remembers the paths
each known inode was reached by, for as long as the kernel holds a lookup reference or a file handle.
Backend calls block (gRPC), so each runs on a worker thread: requests from many processes proceed
concurrently, and a dead cluster yields the backend's timeout error (EIO), never a hung mount.

Split by job: ``inodes.py`` (the inode table), ``files.py`` (file I/O), ``xattrs.py`` (extended attributes).
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pyfuse3
import trio

from fs3.fuse.backend import Attr, Backend
from fs3.fuse.files import _FileOps, _Handle
from fs3.fuse.inodes import _Inodes, _join, _parent
from fs3.fuse.xattrs import _XattrOps

log = logging.getLogger("fs3.fuse")
T = TypeVar("T")


class FS3Operations(_FileOps, _XattrOps, pyfuse3.Operations):
    """The FUSE request handlers; ``read_only`` rejects every modification with EROFS."""

    enable_writeback_cache = False

    def __init__(
        self,
        backend: Backend,
        *,
        read_only: bool = False,
        attr_timeout_s: float = 1.0,
        entry_timeout_s: float = 1.0,
        max_threads: int = 32,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.read_only = read_only
        self.attr_timeout_s = attr_timeout_s
        self.entry_timeout_s = entry_timeout_s
        self._inodes = _Inodes()
        self._handles: dict[int, _Handle] = {}
        self._sizes: dict[int, int] = {}  # inode -> size as written through this mount
        self._append_locks: dict[int, threading.Lock] = {}
        self._dirs: dict[int, tuple[str, list[tuple[str, Attr]]]] = {}
        self._next_fh = 1
        self._limiter = trio.CapacityLimiter(max_threads)
        self._root_backend_ino = backend.lstat("/").ino

    # --- helpers -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking backend call on a worker thread, turning ``OSError`` into ``FUSEError``."""
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("backend call %s failed", getattr(fn, "__name__", fn))
            raise pyfuse3.FUSEError(errno.EIO) from None

    def _fuse_ino(self, backend_ino: int) -> int:
        if backend_ino == self._root_backend_ino:
            return pyfuse3.ROOT_INODE
        if backend_ino == pyfuse3.ROOT_INODE:
            return self._root_backend_ino
        return backend_ino

    def _entry(self, a: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = self._fuse_ino(a.ino)
        e.generation = 0
        e.entry_timeout = self.entry_timeout_s
        e.attr_timeout = self.attr_timeout_s
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = a.rdev
        # meta learns a file's length only at flush/fsync: while handles of this mount are writing,
        # what they wrote is the length its readers must see
        e.st_size = max(a.size, self._sizes.get(e.st_ino, 0))
        e.st_blksize = 1 << 20
        e.st_blocks = a.blocks if a.blocks >= 0 else (a.size + 511) // 512
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = a.mtime_ns
        e.st_ctime_ns = a.ctime_ns
        return e

    def _check_writable(self) -> None:
        if self.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)

    def _open_inos(self) -> set[int]:
        return {h.ino for h in self._handles.values()}

    def _new_fh(self, handle: _Handle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> _Handle:
        h = self._handles.get(fh)
        if h is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return h

    # --- namespace -----------------------------------------------------------------------------

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Resolve ``name`` in a directory; counts a kernel reference on the result."""
        parent = self._inodes.path(parent_inode)
        if name == b".":
            path = parent
        elif name == b"..":
            path = _parent(parent)
        else:
            path = _join(parent, name)
        a = await self._call(self.backend.lstat, path)
        e = self._entry(a)
        self._inodes.remember(e.st_ino, path)
        return e

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        """The kernel dropped references; forget paths of inodes nobody holds."""
        open_inos = self._open_inos()
        for ino, n in inode_list:
            self._inodes.forget(ino, n, open_inos)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext | None = None) -> pyfuse3.EntryAttributes:
        """Attributes of an inode, via an open handle if its paths are gone (unlinked while open)."""
        paths = self._inodes.paths.get(inode)
        if not paths:
            for h in self._handles.values():
                if h.ino == inode:
                    return self._entry(await self._call(h.file.fstat))
            raise pyfuse3.FUSEError(errno.ESTALE)
        return self._entry(await self._call(self.backend.lstat, self._inodes.path(inode)))

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        """chmod/chown/truncate/utimes in one request."""
        self._check_writable()
        path = self._inodes.path(inode) if self._inodes.paths.get(inode) else None
        if fields.update_size:
            await self._push_others(inode, None)
            if fh is not None and fh in self._handles:
                await self._call(self._handles[fh].file.truncate, attr.st_size)
            elif path is not None:
                await self._call(self.backend.truncate, path, attr.st_size)
            else:
                raise pyfuse3.FUSEError(errno.ESTALE)
            self._truncated(inode, attr.st_size, fh)
        if path is None:
            return await self.getattr(inode, ctx)
        if fields.update_mode:
            await self._call(self.backend.chmod, path, stat_mod.S_IMODE(attr.st_mode))
        if fields.update_uid or fields.update_gid:
            cur = await self._call(self.backend.lstat, path)
            uid = attr.st_uid if fields.update_uid else cur.uid
            gid = attr.st_gid if fields.update_gid else cur.gid
            await self._call(self.backend.chown, path, uid, gid)
        if fields.update_atime or fields.update_mtime:
            await self._call(
                self.backend.utime,
                path,
                attr.st_atime_ns if fields.update_atime else None,
                attr.st_mtime_ns if fields.update_mtime else None,
            )
        return self._entry(await self._call(self.backend.lstat, path))

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        """Target of a symlink."""
        return os.fsencode(await self._call(self.backend.readlink, self._inodes.path(inode)))

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        """Snapshot the listing (``.`` and ``..`` first), so readdir offsets stay stable while entries change."""
        path = self._inodes.path(inode)
        entries = await self._call(self.backend.listdir, path)
        entries.sort(key=lambda e: e[0])
        here = await self._call(self.backend.lstat, path)
        up = here if path == "/" else await self._call(self.backend.lstat, _parent(path))
        entries[:0] = [(".", here), ("..", up)]
        fh = self._next_fh
        self._next_fh += 1
        self._dirs[fh] = (path, entries)
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """Report entries from ``start_id``; every reported entry counts a kernel reference."""
        if fh not in self._dirs:
            raise pyfuse3.FUSEError(errno.EBADF)
        parent, entries = self._dirs[fh]
        for i in range(start_id, len(entries)):
            name, a = entries[i]
            e = self._entry(a)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), e, i + 1):
                break
            if name not in (".", ".."):  # the kernel counts no lookup for these two
                self._inodes.remember(e.st_ino, _join(parent, os.fsencode(name)))

    async def releasedir(self, fh: int) -> None:
        """Drop the listing snapshot."""
        self._dirs.pop(fh, None)

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Create a directory owned by the caller."""
        self._check_writable()
        path = _join(self._inodes.path(parent_inode), name)
        a = await self._call(self.backend.mkdir, path, stat_mod.S_IMODE(mode) & ~ctx.umask, ctx.uid, ctx.gid)
        e = self._entry(a)
        self._inodes.remember(e.st_ino, path)
        return e

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        """Remove an empty directory (ENOTEMPTY otherwise)."""
        self._check_writable()
        path = _join(self._inodes.path(parent_inode), name)
        await self._call(self.backend.rmdir, path)
        self._inodes.removed(path)

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        """Remove a name; open handles keep working on the file's data."""
        self._check_writable()
        path = _join(self._inodes.path(parent_inode), name)
        await self._call(self.backend.unlink, path)
        self._inodes.removed(path)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        """Atomic rename with renameat2's RENAME_NOREPLACE and RENAME_EXCHANGE."""
        self._check_writable()
        exchange = bool(flags & pyfuse3.RENAME_EXCHANGE)
        src = _join(self._inodes.path(parent_inode_old), name_old)
        dst = _join(self._inodes.path(parent_inode_new), name_new)
        if src == dst:
            return
        if dst.startswith(src.rstrip("/") + "/") or (exchange and src.startswith(dst.rstrip("/") + "/")):
            raise pyfuse3.FUSEError(errno.EINVAL)
        await self._call(self.backend.rename, src, dst, flags)
        if exchange:
            self._inodes.exchanged(src, dst)
        else:
            self._inodes.renamed(src, dst)

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Create a symlink owned by the caller."""
        self._check_writable()
        path = _join(self._inodes.path(parent_inode), name)
        a = await self._call(self.backend.symlink, os.fsdecode(target), path, ctx.uid, ctx.gid)
        e = self._entry(a)
        self._inodes.remember(e.st_ino, path)
        return e

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Hard link: one more name for an existing file."""
        self._check_writable()
        src = self._inodes.path(inode)
        dst = _join(self._inodes.path(new_parent_inode), new_name)
        a = await self._call(self.backend.link, src, dst)
        e = self._entry(a)
        self._inodes.remember(e.st_ino, dst)
        return e

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Regular files, FIFOs, sockets and device nodes (metadata only: the kernel does their I/O,
        and the mount is ``nodev``, so a device node cannot be opened through it)."""
        if stat_mod.S_ISREG(mode):
            fi, e = await self.create(parent_inode, name, mode, os.O_WRONLY | os.O_EXCL, ctx)
            await self.release(fi.fh)
            return e
        self._check_writable()
        path = _join(self._inodes.path(parent_inode), name)
        perm = stat_mod.S_IMODE(mode) & ~ctx.umask
        a = await self._call(self.backend.mknod, path, stat_mod.S_IFMT(mode) | perm, rdev, ctx.uid, ctx.gid)
        e = self._entry(a)
        self._inodes.remember(e.st_ino, path)
        return e

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """Cluster capacity as ``df`` shows it."""
        s = await self._call(self.backend.statfs)
        d = pyfuse3.StatvfsData()
        d.f_bsize = s.block_size
        d.f_frsize = s.block_size
        d.f_blocks = s.total_bytes // s.block_size
        d.f_bfree = s.free_bytes // s.block_size
        d.f_bavail = d.f_bfree
        d.f_files = s.total_inodes
        d.f_ffree = s.free_inodes
        d.f_favail = s.free_inodes
        d.f_namemax = s.name_max
        return d
