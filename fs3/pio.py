"""Positional (offset-addressed) file I/O over a local file or an fs3 file, for the dataset and checkpoints.

The packed-dataset reader and the checkpoint code only need ``pread``/``pwrite`` by offset, which
both a local file descriptor and an fs3 client file provide; this module gives them one shape
(``PositionalFile``) and one small file-system facade (``FileSystem``: open, rename, remove, ...),
so the same code runs against local disk and against the cluster.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class PReadable(Protocol):
    """Anything that returns up to ``size`` bytes at ``offset`` (short only at end of file)."""

    def pread(self, offset: int, size: int) -> bytes: ...


@runtime_checkable
class PWritable(Protocol):
    """Anything that writes all of ``data`` at ``offset`` and returns the byte count."""

    def pwrite(self, data: Any, offset: int) -> int: ...


class PositionalFile(PReadable, PWritable, Protocol):
    """A file used only by offset: thread-safe pread/pwrite, plus size, fsync and close."""

    def size(self) -> int: ...

    def fsync(self) -> None: ...

    def close(self) -> None: ...


_MODES = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "x": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


class LocalFile:
    """A local file used by offset; ``pread``/``pwrite`` are thread-safe (no shared file position)."""

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self.path = os.fspath(path)
        self.mode = mode
        self._fd = os.open(self.path, _MODES[mode] | getattr(os, "O_CLOEXEC", 0), 0o644)

    def __repr__(self) -> str:
        return f"LocalFile({self.path!r}, {self.mode!r})"

    def pread(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
        out = bytearray(size)
        n = self.preadinto(out, offset)
        return bytes(out) if n == size else bytes(out[:n])

    def preadinto(self, buf: Any, offset: int) -> int:
        """Fill ``buf`` from ``offset``; returns the bytes read (fewer only at end of file)."""
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n == 0:
                break
            done += n
        return done

    def pwrite(self, data: Any, offset: int) -> int:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)
        return done

    def size(self) -> int:
        """Current length in bytes."""
        return os.fstat(self._fd).st_size

    def truncate(self, length: int) -> None:
        """Set the length to ``length`` bytes."""
        os.ftruncate(self._fd, length)

    def fsync(self) -> None:
        """Make written data durable."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSystem(Protocol):
    """The few namespace operations the dataset and checkpoint code need."""

    def open(self, path: str, mode: str = "r") -> PositionalFile: ...

    def rename(self, src: str, dst: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def exists(self, path: str) -> bool: ...

    def makedirs(self, path: str) -> None: ...


class LocalFileSystem:
    """``FileSystem`` over the local (or mounted) file system."""

    def open(self, path: str, mode: str = "r") -> LocalFile:
        """Open ``path`` for positional I/O (modes r, r+, w, x)."""
        return LocalFile(path, mode)

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``."""
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        """Delete a file."""
        os.unlink(path)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents if missing."""
        os.makedirs(path, exist_ok=True)


def get_filesystem(client: Any = None) -> FileSystem:
    """The local file system, or the fs3 cluster behind ``client`` (an ``fs3.client.FS3Client``)."""
    if client is None:
        return LocalFileSystem()
    from fs3._fs3pio import FS3FileSystem

    return FS3FileSystem(client)
