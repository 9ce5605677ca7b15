"""The FUSE ``Backend`` over the fs3 native client: path calls map 1:1, errors keep their errno.

The daemon's client acts as root; the kernel checks permissions (``default_permissions``) and new
inodes are given to the calling user with a ``chown``. A cluster that stops answering turns into
EIO after the client's timeout, so no process hangs on the mount.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

from fs3.client import FS3Client
from fs3.client.client import FileStat
from fs3.fuse.backend import Attr, FsStats

_UNAVAILABLE = {errno.ETIMEDOUT, errno.EAGAIN, errno.ESTALE}


def _attr(st: FileStat) -> Attr:
    return Attr(
        ino=st.st_ino,
        mode=st.st_mode,
        nlink=st.st_nlink,
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size,
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        rdev=st.st_rdev,
    )


def _eio(fn: Any) -> Any:
    """Run ``fn``; a cluster that cannot be reached becomes EIO (what file-system users expect)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.errno in _UNAVAILABLE:
                raise OSError(errno.EIO, f"fs3 cluster unavailable: {exc}") from exc
            raise

    wrapped.__name__ = getattr(fn, "__name__", "call")
    wrapped.__doc__ = fn.__doc__
    return wrapped


class FS3BackendFile:
    """One open ``FS3File``; O_APPEND is handled by the FUSE layer, so the file sees plain offsets.

    Writes go through the file's write-behind buffer (sequential kernel writes become whole-chunk
    parallel writes); a write elsewhere, a read, flush or fsync pushes the buffer out first.
    """

    def __init__(self, f: Any) -> None:
        self._f = f
        self._lock = threading.Lock()

    @_eio
    def pread(self, offset: int, size: int) -> bytes:
        return self._f.pread(size, offset)

    @_eio
    def pwrite(self, data: bytes, offset: int) -> int:
        with self._lock:
            if self._f.tell() != offset:
                self._f.seek(offset)
            return self._f.write(data)

    def note_size(self, size: int) -> None:
        """Another handle of this mount wrote up to ``size``: let reads through this one reach it."""
        self._f.note_size(size)

    def note_truncate(self, length: int) -> None:
        """Another handle of this mount truncated the file to ``length``."""
        self._f.note_truncate(length)

    @_eio
    def truncate(self, length: int) -> None:
        self._f.truncate(length)

    @_eio
    def flush(self) -> None:
        # close(2) of a descriptor: push the data and report the length so other clients see it
        if self._f.writable():
            self._f.fsync()

    @_eio
    def push(self) -> None:
        """Send buffered writes to storage (before another handle reads)."""
        self._f.flush()

    @_eio
    def fsync(self) -> None:
        self._f.fsync()

    @_eio
    def fstat(self) -> Attr:
        return _attr(self._f.stat())

    @_eio
    def close(self) -> None:
        self._f.close()


class FS3Backend:
    """``Backend`` over one ``FS3Client``."""

    def __init__(self, client: FS3Client) -> None:
        self.client = client

    @classmethod
    def connect(cls, mgmtd: str, *, uid: int = 0, gid: int = 0, timeout_s: float = 30.0) -> FS3Backend:
        """Connect to the cluster whose manager listens at ``mgmtd``."""
        return cls(FS3Client(mgmtd, uid=uid, gid=gid, timeout_s=timeout_s))

    def _give(self, path: str, uid: int, gid: int) -> None:
        if (uid, gid) != (self.client.user.uid, self.client.user.gid):
            self.client.chown(path, uid, gid, follow_symlinks=False)

    @_eio
    def lstat(self, path: str) -> Attr:
        return _attr(self.client.lstat(path))

    @_eio
    def listdir(self, path: str) -> list[tuple[str, Attr]]:
        return [(name, _attr(st)) for name, st in self.client.scandir_stat(path)]

    @_eio
    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> Attr:
        st = self.client.mkdir(path, mode)
        self._give(path, uid, gid)
        a = _attr(st)
        a.uid, a.gid = uid, gid
        return a

    @_eio
    def rmdir(self, path: str) -> None:
        self.client.rmdir(path)

    @_eio
    def unlink(self, path: str) -> None:
        self.client.remove(path)

    @_eio
    def rename(self, src: str, dst: str, flags: int) -> None:
        self.client.rename(src, dst, flags=flags)

    @_eio
    def symlink(self, target: str, path: str, uid: int, gid: int) -> Attr:
        self.client.symlink(target, path)
        self._give(path, uid, gid)
        return _attr(self.client.lstat(path))

    @_eio
    def readlink(self, path: str) -> str:
        return self.client.readlink(path)

    @_eio
    def link(self, src: str, dst: str) -> Attr:
        self.client.link(src, dst)
        return _attr(self.client.lstat(dst))

    @_eio
    def chmod(self, path: str, mode: int) -> None:
        self.client.chmod(path, mode, follow_symlinks=False)

    @_eio
    def chown(self, path: str, uid: int, gid: int) -> None:
        self.client.chown(path, uid, gid, follow_symlinks=False)

    @_eio
    def utime(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        self.client.utime(
            path, ns=(atime_ns, mtime_ns), follow_symlinks=False
        )  # None: unchanged (UTIME_OMIT), in one request

    @_eio
    def truncate(self, path: str, length: int) -> None:
        self.client.truncate(path, length)

    @_eio
    def open(self, path: str, flags: int) -> FS3BackendFile:
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_APPEND)
        return FS3BackendFile(self.client.open_flags(path, flags))

    @_eio
    def create(self, path: str, mode: int, flags: int, uid: int, gid: int) -> tuple[FS3BackendFile, Attr]:
        flags = (flags & ~os.O_APPEND) | os.O_CREAT
        if flags & os.O_ACCMODE == os.O_RDONLY:
            flags |= os.O_RDWR
        f = self.client.open_flags(path, flags, mode)
        try:
            self._give(path, uid, gid)
            a = _attr(FileStat.from_inode(f._inode))
        except BaseException:
            f.close()
            raise
        a.uid, a.gid = uid, gid
        return FS3BackendFile(f), a

    @_eio
    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        self.client.mknod(path, mode, rdev)
        self._give(path, uid, gid)
        return _attr(self.client.lstat(path))

    @_eio
    def getxattr(self, path: str, name: bytes) -> bytes:
        return self.client.getxattr(path, name, follow_symlinks=False)

    @_eio
    def setxattr(self, path: str, name: bytes, value: bytes) -> None:
        self.client.setxattr(path, name, value, follow_symlinks=False)

    @_eio
    def listxattr(self, path: str) -> list[bytes]:
        return [os.fsencode(n) for n in self.client.listxattr(path, follow_symlinks=False)]

    @_eio
    def removexattr(self, path: str, name: bytes) -> None:
        self.client.removexattr(path, name, follow_symlinks=False)

    @_eio
    def statfs(self) -> FsStats:
        s = self.client.statfs()
        return FsStats(
            total_bytes=s.total_bytes,
            free_bytes=s.free_bytes,
            total_inodes=s.inodes + (1 << 32),
            free_inodes=1 << 32,
        )
