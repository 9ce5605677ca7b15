"""``fs3.pio`` over the fs3 native client: positional files and namespace calls on a cluster."""

from __future__ import annotations

from typing import Any


class FS3PositionalFile:
    """An ``FS3File`` seen through the ``PositionalFile`` shape (``pread(offset, size)`` order)."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def __repr__(self) -> str:
        return f"FS3PositionalFile({self._f.name!r})"

    def pread(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``."""
        return self._f.pread(size, offset)

    def preadinto(self, buf: Any, offset: int) -> int:
        """Fill ``buf`` from ``offset``; returns bytes read."""
        return self._f.preadinto(memoryview(buf).cast("B"), offset)

    def pwrite(self, data: Any, offset: int) -> int:
        """Write all of ``data`` at ``offset`` (the chunks of one call go out in parallel)."""
        return self._f.pwrite(data, offset)

    def size(self) -> int:
        """Length in bytes as this handle knows it."""
        return self._f.size

    def truncate(self, length: int) -> None:
        """Set the length."""
        self._f.truncate(length)

    def fsync(self) -> None:
        """Flush and record the length in meta."""
        self._f.fsync()

    def close(self) -> None:
        """End the write session (idempotent)."""
        self._f.close()


_MODES = {"r": "rb", "r+": "r+b", "w": "w+b", "x": "x+b"}


class FS3FileSystem:
    """``fs3.pio.FileSystem`` over an ``FS3Client``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def open(self, path: str, mode: str = "r") -> FS3PositionalFile:
        """Open ``path`` for positional I/O (modes r, r+, w, x)."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        return FS3PositionalFile(self.client.open(path, _MODES[mode]))

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src``."""
        self.client.rename(src, dst)

    def remove(self, path: str) -> None:
        """Delete a file."""
        self.client.remove(path)

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return self.client.exists(path)

    def makedirs(self, path: str) -> None:
        """``mkdir -p``."""
        self.client.makedirs(path)
