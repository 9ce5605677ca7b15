"""The FUSE inode table: each kernel-visible inode's paths and lookup counts, and path joining.

The backend speaks paths, FUSE inode numbers; this is the one place that maps between them.
"""

from __future__ import annotations

import errno
import os

import pyfuse3


class _Inodes:
    """FUSE inode → the paths it is known by, with kernel lookup counts (touched from the trio thread only)."""

    def __init__(self) -> None:
        self.paths: dict[int, set[str]] = {pyfuse3.ROOT_INODE: {"/"}}
        self.lookups: dict[int, int] = {}

    def path(self, ino: int) -> str:
        paths = self.paths.get(ino)
        if not paths:
            # the name the kernel resolved was replaced or removed meanwhile (e.g. by rename):
            # ESTALE makes the VFS redo the path walk with a fresh lookup
            raise pyfuse3.FUSEError(errno.ESTALE)
        return min(paths)  # deterministic choice among hard links

    def remember(self, ino: int, path: str, lookup: bool = True) -> None:
        self.paths.setdefault(ino, set()).add(path)
        if lookup:
            self.lookups[ino] = self.lookups.get(ino, 0) + 1

    def forget(self, ino: int, n: int, open_inos: set[int]) -> None:
        left = self.lookups.get(ino, 0) - n
        if left > 0:
            self.lookups[ino] = left
            return
        self.lookups.pop(ino, None)
        if ino != pyfuse3.ROOT_INODE and ino not in open_inos:
            self.paths.pop(ino, None)

    def removed(self, path: str) -> None:
        """``path`` no longer exists: drop it (and, for a directory, everything below it)."""
        prefix = path.rstrip("/") + "/"
        for ino, paths in self.paths.items():
            if ino == pyfuse3.ROOT_INODE:
                continue
            stale = {p for p in paths if p == path or p.startswith(prefix)}
            paths -= stale

    def exchanged(self, a: str, b: str) -> None:
        """What lived at or below ``a`` now lives at or below ``b``, and the other way round."""
        pa, pb = a.rstrip("/") + "/", b.rstrip("/") + "/"
        for paths in self.paths.values():
            swapped = {
                b + p[len(a) :]
                if p == a or p.startswith(pa)
                else a + p[len(b) :]
                if p == b or p.startswith(pb)
                else p
                for p in paths
            }
            paths.clear()
            paths |= swapped

    def renamed(self, src: str, dst: str) -> None:
        """Everything at or below ``src`` now lives at or below ``dst``."""
        self.removed(dst)
        prefix = src.rstrip("/") + "/"
        for paths in self.paths.values():
            moved = {p for p in paths if p == src or p.startswith(prefix)}
            if moved:
                paths -= moved
                paths |= {dst + p[len(src) :] for p in moved}


def _join(parent: str, name: bytes) -> str:
    n = os.fsdecode(name)
    if "/" in n or n in ("", ".", ".."):
        raise pyfuse3.FUSEError(errno.EINVAL)
    return ("/" if parent == "/" else parent + "/") + n


def _parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"
