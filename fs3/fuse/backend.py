"""The narrow, path-based file-system interface that the FUSE layer drives.

``FS3Operations`` only talks to a ``Backend``: ``FS3Backend`` (in ``fs3_backend``) maps it onto the
fs3 client and its errors; ``LocalBackend`` maps it onto a local directory, so the FUSE layer's own
overhead can be measured (and debugged) apart from the cluster. Every failure is an ``OSError``
carrying a POSIX errno, which the FUSE layer hands to the kernel unchanged.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat as stat_mod
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_libc = ctypes.CDLL(None, use_errno=True)  # renameat2, which the os module lacks
_AT_FDCWD = -100


@dataclass
class Attr:
    """What ``stat`` reports about one inode; ``ino`` is the backend's stable inode id."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    blocks: int = -1  # 512-byte blocks allocated; -1: derive from size
    rdev: int = 0  # device nodes: the device number

    @property
    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)


@dataclass
class FsStats:
    """Capacity for ``statfs``: bytes total/free and inode counts."""

    total_bytes: int
    free_bytes: int
    total_inodes: int
    free_inodes: int
    block_size: int = 4096
    name_max: int = 255


class BackendFile(Protocol):
    """An open file: positional I/O, thread-safe."""

    def pread(self, offset: int, size: int) -> bytes: ...

    def pwrite(self, data: bytes, offset: int) -> int: ...

    def truncate(self, length: int) -> None: ...

    def flush(self) -> None: ...

    def push(self) -> None: ...

    def note_size(self, size: int) -> None: ...

    def note_truncate(self, length: int) -> None:
        """The file now has ``length`` bytes (truncated through another handle)."""
        ...

    def fsync(self) -> None: ...

    def fstat(self) -> Attr: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """Path-based namespace and data operations (paths are absolute, '/'-separated)."""

    def lstat(self, path: str) -> Attr: ...

    def listdir(self, path: str) -> list[tuple[str, Attr]]: ...

    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> Attr: ...

    def rmdir(self, path: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def rename(self, src: str, dst: str, flags: int) -> None:
        """renameat2: ``flags`` 0, RENAME_NOREPLACE (1) or RENAME_EXCHANGE (2)."""
        ...

    def symlink(self, target: str, path: str, uid: int, gid: int) -> Attr: ...

    def readlink(self, path: str) -> str: ...

    def link(self, src: str, dst: str) -> Attr: ...

    def chmod(self, path: str, mode: int) -> None: ...

    def chown(self, path: str, uid: int, gid: int) -> None: ...

    def utime(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None: ...

    def truncate(self, path: str, length: int) -> None: ...

    def open(self, path: str, flags: int) -> BackendFile: ...

    def create(self, path: str, mode: int, flags: int, uid: int, gid: int) -> tuple[BackendFile, Attr]: ...

    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        """A FIFO, socket or device node (``mode`` carries the type bits)."""
        ...

    def getxattr(self, path: str, name: bytes) -> bytes: ...

    def setxattr(self, path: str, name: bytes, value: bytes) -> None: ...

    def listxattr(self, path: str) -> list[bytes]: ...

    def removexattr(self, path: str, name: bytes) -> None: ...

    def statfs(self) -> FsStats: ...


class _InodeIds:
    """Never-reused inode ids over a local file system's recycled ``st_ino`` numbers.

    The kernel caches attributes and pages per FUSE inode id, so an id must name one object for the
    mount's lifetime (as fs3's monotonically allocated ids do). Local file systems hand a freed
    ``st_ino`` to the next file created (a rename over a file frees one at once): each object created
    through this backend gets a fresh id, and a number first seen otherwise keeps the id it was given.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held across a create and its registration (see LocalBackend)
        self._ids: dict[int, int] = {}
        self._next = 1

    def of(self, st_ino: int) -> int:
        with self.lock:
            return self.of_locked(st_ino)

    def fresh(self, st_ino: int) -> int:
        """``st_ino`` now names a newly created object (caller holds ``lock``)."""
        self._ids.pop(st_ino, None)
        return self.of_locked(st_ino)

    def of_locked(self, st_ino: int) -> int:
        """The id of ``st_ino`` (caller holds ``lock``)."""
        ino = self._ids.get(st_ino)
        if ino is None:
            ino = self._ids[st_ino] = self._next
            self._next += 1
        return ino


def _attr_of(st: os.stat_result, ino: int) -> Attr:
    return Attr(
        ino=ino,
        mode=st.st_mode,
        nlink=st.st_nlink,
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size,
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        blocks=st.st_blocks,
        rdev=st.st_rdev,
    )


class _LocalFile:
    def __init__(self, fd: int, ids: _InodeIds) -> None:
        self._fd = fd
        self._ids = ids

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self._fd, data, offset)

    def truncate(self, length: int) -> None:
        os.ftruncate(self._fd, length)

    def flush(self) -> None:
        pass

    def push(self) -> None:
        pass

    def note_size(self, size: int) -> None:
        pass

    def note_truncate(self, length: int) -> None:
        pass

    def fsync(self) -> None:
        os.fsync(self._fd)

    def fstat(self) -> Attr:
        st = os.fstat(self._fd)
        return _attr_of(st, self._ids.of(st.st_ino))

    def close(self) -> None:
        os.close(self._fd)


class LocalBackend:
    """A local directory as a backend (a passthrough file system), to measure the FUSE layer alone."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(errno.ENOTDIR, "backend root is not a directory", root)
        self._ids = _InodeIds()

    def _attr(self, st: os.stat_result) -> Attr:
        return _attr_of(st, self._ids.of(st.st_ino))

    def _made(self, path: str, make: Callable[[], object]) -> None:
        """Run ``make`` (which creates ``path``) and give the new object a fresh inode id."""
        with self._ids.lock:
            make()
            self._ids.fresh(os.lstat(self._p(path)).st_ino)

    def _p(self, path: str) -> str:
        return self.root + path if path != "/" else self.root

    def lstat(self, path: str) -> Attr:
        return self._attr(os.lstat(self._p(path)))

    def listdir(self, path: str) -> list[tuple[str, Attr]]:
        out = []
        with os.scandir(self._p(path)) as it:
            for e in it:
                try:
                    out.append((e.name, self._attr(e.stat(follow_symlinks=False))))
                except FileNotFoundError:
                    continue
        return out

    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> Attr:
        self._made(path, lambda: os.mkdir(self._p(path), mode))
        os.lchown(self._p(path), uid, gid)
        return self.lstat(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._p(path))

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def rename(self, src: str, dst: str, flags: int) -> None:
        if not flags:
            os.rename(self._p(src), self._p(dst))
            return
        rc = _libc.renameat2(
            _AT_FDCWD, os.fsencode(self._p(src)), _AT_FDCWD, os.fsencode(self._p(dst)), flags
        )
        if rc != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), dst)

    def symlink(self, target: str, path: str, uid: int, gid: int) -> Attr:
        self._made(path, lambda: os.symlink(target, self._p(path)))
        os.lchown(self._p(path), uid, gid)
        return self.lstat(path)

    def readlink(self, path: str) -> str:
        return os.readlink(self._p(path))

    def link(self, src: str, dst: str) -> Attr:
        os.link(self._p(src), self._p(dst), follow_symlinks=False)
        return self.lstat(dst)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._p(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.lchown(self._p(path), uid, gid)

    def utime(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        st = os.lstat(self._p(path))
        ns = (
            st.st_atime_ns if atime_ns is None else atime_ns,
            st.st_mtime_ns if mtime_ns is None else mtime_ns,
        )
        os.utime(self._p(path), ns=ns, follow_symlinks=False)

    def truncate(self, path: str, length: int) -> None:
        os.truncate(self._p(path), length)

    def open(self, path: str, flags: int) -> _LocalFile:
        flags &= ~(os.O_CREAT | os.O_EXCL | os.O_APPEND)
        return _LocalFile(os.open(self._p(path), flags | os.O_CLOEXEC), self._ids)

    def create(self, path: str, mode: int, flags: int, uid: int, gid: int) -> tuple[_LocalFile, Attr]:
        flags &= ~os.O_APPEND
        flags |= os.O_CLOEXEC
        with self._ids.lock:
            try:  # O_EXCL tells a file born now (fresh id) from one that was there (its known id)
                fd = os.open(self._p(path), flags | os.O_CREAT | os.O_EXCL, mode)
                born = True
            except FileExistsError:
                if flags & os.O_EXCL:
                    raise
                fd, born = os.open(self._p(path), flags & ~os.O_CREAT), False
            st = os.fstat(fd)
            ino = self._ids.fresh(st.st_ino) if born else self._ids.of_locked(st.st_ino)
        if born:
            os.fchown(fd, uid, gid)
        return _LocalFile(fd, self._ids), _attr_of(os.fstat(fd), ino)

    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        self._made(path, lambda: os.mknod(self._p(path), mode, rdev))
        os.lchown(self._p(path), uid, gid)
        return self.lstat(path)

    def getxattr(self, path: str, name: bytes) -> bytes:
        return os.getxattr(self._p(path), name, follow_symlinks=False)

    def setxattr(self, path: str, name: bytes, value: bytes) -> None:
        os.setxattr(self._p(path), name, value, follow_symlinks=False)

    def listxattr(self, path: str) -> list[bytes]:
        return [os.fsencode(n) for n in os.listxattr(self._p(path), follow_symlinks=False)]

    def removexattr(self, path: str, name: bytes) -> None:
        os.removexattr(self._p(path), name, follow_symlinks=False)

    def statfs(self) -> FsStats:
        st = os.statvfs(self.root)
        return FsStats(
            total_bytes=st.f_blocks * st.f_frsize,
            free_bytes=st.f_bavail * st.f_frsize,
            total_inodes=st.f_files,
            free_inodes=st.f_ffree,
            block_size=st.f_bsize,
            name_max=st.f_namemax,
        )
