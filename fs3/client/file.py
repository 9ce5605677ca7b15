"""``FS3File``: the file-like object returned by ``FS3Client.open`` (binary, seekable, thread-safe).

Sequential writes are gathered in a write-behind buffer and flushed as whole chunks in parallel;
``pread``/``pwrite`` go straight to storage. The file length is reported to meta on fsync/close
(3FS: eventually consistent while a write session is open).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from typing import TYPE_CHECKING

from fs3 import errors
from fs3.protos import common_pb2, meta_pb2

if TYPE_CHECKING:
    from fs3.client.client import FS3Client
    from fs3.client.types import FileStat


class FS3File(io.RawIOBase):
    """An open fs3 file; see the module docstring."""

    def __init__(
        self, client: FS3Client, path: str, inode: common_pb2.Inode, session_id: int, flags: int
    ) -> None:
        super().__init__()
        self._client = client
        self.name = path
        self._inode = inode
        self._session = session_id
        self._flags = flags
        acc = flags & (os.O_WRONLY | os.O_RDWR)
        self._readable = acc != os.O_WRONLY
        self._writable = acc in (os.O_WRONLY, os.O_RDWR)
        self._append = bool(flags & os.O_APPEND)
        self._size = inode.size  # bytes, as known to this handle
        self._written_end = 0  # the end of what this handle wrote since it last told meta, bytes
        self._pos = 0
        self._wrote = False
        self._lock = threading.RLock()
        cs = inode.layout.chunk_size or (1 << 20)
        self._buf = bytearray()
        self._buf_off = 0
        self._flush_bytes = max(cs * min(max(len(inode.layout.chains), 1), 8), 8 << 20)

    # ---- properties --------------------------------------------------------------------------
    @property
    def inode_id(self) -> int:
        """The file's inode id."""
        return self._inode.inode_id

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk of this file."""
        return self._inode.layout.chunk_size

    @property
    def size(self) -> int:
        """Current size as this handle knows it (its own writes included)."""
        with self._lock:
            return max(self._size, self._buf_off + len(self._buf) if self._buf else 0)

    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fs3 files have no OS file descriptor")

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    # ---- positioned I/O ----------------------------------------------------------------------
    def _spans(self, offset: int, length: int) -> list[tuple[int, int, int, int]]:
        """(chunk index, offset in chunk, length, offset in the caller's buffer) covering the range."""
        cs = self._inode.layout.chunk_size
        spans = []
        pos, done = offset, 0
        while done < length:
            idx, off = divmod(pos, cs)
            n = min(cs - off, length - done)
            spans.append((idx, off, n, done))
            pos += n
            done += n
        return spans

    def pread(self, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (fewer at end of file); does not move the position."""
        buf = bytearray(max(0, min(length, self.size - offset)))
        n = self.preadinto(buf, offset)
        return bytes(buf) if n == len(buf) else bytes(memoryview(buf)[:n])  # one copy, not two

    def preadinto(self, buf: bytearray | memoryview, offset: int) -> int:
        """Fill ``buf`` from ``offset``; returns the bytes read (short at end of file)."""
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("file not open for reading")
        if offset < 0:
            raise errors.InvalidArgument(self.name, "negative offset")
        with self._lock:
            self._flush_locked()
            size = self._size
        length = max(0, min(len(buf), size - offset))
        if length == 0:
            return 0
        out = memoryview(buf).cast("B")
        spans = self._spans(offset, length)
        self._client.read_chunks(self._inode, spans, out)  # batched per storage node
        return length

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> int:
        """Write ``data`` at ``offset`` (all of it, chunks in parallel); does not move the position."""
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        if offset < 0:
            raise errors.InvalidArgument(self.name, "negative offset")
        mv = memoryview(data).cast("B")
        if not len(mv):
            return 0
        end = offset + len(mv)
        if end > self._client.routing_cache.max_file_size():
            raise errors.FileTooLarge(
                self.name, f"write ends at {end} > max file size {self._client.routing_cache.max_file_size()}"
            )
        spans = self._spans(offset, len(mv))
        self._client.parallel(
            [
                lambda s=s: self._client.write_chunk(self._inode, s[0], s[1], mv[s[3] : s[3] + s[2]])
                for s in spans
            ]
        )
        with self._lock:
            self._size = max(self._size, end)
            self._written_end = max(self._written_end, end)
            self._wrote = True
        return len(mv)

    # ---- stream I/O --------------------------------------------------------------------------
    def readinto(self, b: bytearray | memoryview) -> int:
        with self._lock:
            n = self.preadinto(b, self._pos)
            self._pos += n
            return n

    def readall(self) -> bytes:
        with self._lock:
            self._flush_locked()
            data = self.pread(max(0, self._size - self._pos), self._pos)
            self._pos += len(data)
            return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        with self._lock:
            data = self.pread(size, self._pos)
            self._pos += len(data)
            return data

    def write(self, b: bytes | bytearray | memoryview) -> int:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        mv = memoryview(b).cast("B")
        with self._lock:
            if self._append:
                self._pos = self.size
            if self._buf and self._buf_off + len(self._buf) != self._pos:
                self._flush_locked()
            if not self._buf:
                self._buf_off = self._pos
            end = self._pos + len(mv)
            if end > self._client.routing_cache.max_file_size():
                raise errors.FileTooLarge(
                    self.name,
                    f"write ends at {end} > max file size {self._client.routing_cache.max_file_size()}",
                )
            self._buf += mv
            self._pos = end
            if len(self._buf) >= self._flush_bytes:
                self._flush_locked(whole_chunks_only=True)
            return len(mv)

    def _flush_locked(self, whole_chunks_only: bool = False) -> None:
        if not self._buf:
            return
        cs = self._inode.layout.chunk_size
        n = len(self._buf)
        if whole_chunks_only:
            n = ((self._buf_off + n) // cs) * cs - self._buf_off  # keep the partial tail chunk buffered
            if n <= 0:
                return
        data = bytes(self._buf[:n])
        off = self._buf_off
        del self._buf[:n]
        self._buf_off = off + n
        self.pwrite(data, off)

    def flush(self) -> None:
        """Send buffered writes to storage (length reaches meta on fsync/close)."""
        if self.closed:
            return
        with self._lock:
            self._flush_locked()

    def fsync(self) -> None:
        """Flush and make the length durable in meta."""
        with self._lock:
            self._flush_locked()
            self._report(0)

    def _report(self, session: int) -> None:
        rsp = self._client._call(
            "Close",
            meta_pb2.CloseReq(
                user=self._client.user,
                inode_id=self._inode.inode_id,
                session_id=session,
                # what this handle wrote since its last report, not the size it knows: a truncate by
                # another handle or client in between must not be undone
                length=self._written_end,
                wrote=self._wrote,
            ),
            self.name,
        )
        self._written_end = 0
        if rsp.freed:  # the last hold on a file unlinked while open: now its chunks go
            self._client.chunks.remove_chunks(rsp.inode, 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._lock:
            if whence == io.SEEK_SET:
                pos = offset
            elif whence == io.SEEK_CUR:
                pos = self._pos + offset
            elif whence == io.SEEK_END:
                pos = self.size + offset
            else:
                raise errors.InvalidArgument(self.name, f"bad whence {whence}")
            if pos < 0:
                raise errors.InvalidArgument(self.name, "negative seek position")
            self._pos = pos
            return pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        """Cut or extend the file to ``size`` bytes (default: the current position)."""
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        with self._lock:
            self._flush_locked()
            size = self._pos if size is None else size
            if size < 0:
                raise errors.InvalidArgument(self.name, "negative size")
            self._report(0)
            rsp = self._client._call(
                "Truncate",
                meta_pb2.TruncateReq(user=self._client.user, inode_id=self._inode.inode_id, length=size),
                self.name,
            )
            self._client.chunks.cut_chunks(self._inode, size, rsp.old_size)
            self._size = size
            return size

    def note_size(self, size: int) -> None:
        """Another handle of this process wrote up to ``size``: reads through this one reach it."""
        with self._lock:
            self._size = max(self._size, size)

    def note_truncate(self, length: int) -> None:
        """The file was cut or extended to ``length`` through another handle (flush this one first)."""
        with self._lock:
            self._size = length
            self._written_end = 0  # meta's size is ``length`` now; what we wrote past it is gone

    def stat(self) -> FileStat:
        """Stat of the open inode (size includes this handle's unreported writes)."""
        from dataclasses import replace

        st = self._client.stat_inode(self._inode.inode_id)
        return replace(st, st_size=max(st.st_size, self.size))

    def close(self) -> None:
        """Flush, report the length and end the session (readers hold one too: the data outlives an
        unlink or a rename over the file until the last close on any client)."""
        if self.closed:
            return
        try:
            with self._lock:
                if self._writable:
                    try:
                        self._flush_locked()
                    except BaseException:
                        # the write failed (ENOSPC, ...): raise that, but still end the session, so an
                        # unlinked file's chunks are freed and the inode does not stay open forever
                        self._end_session_quietly()
                        raise
                if self._session and not self._client.closed:  # a closed client's sessions just expire
                    self._report(self._session)
        finally:
            super().close()
            if self._session:
                self._client.leases.closed()

    def _end_session_quietly(self) -> None:
        try:
            self._report(self._session)
        except OSError as exc:
            logging.warning(
                "%s: ending the write session after a failed flush failed too: %s", self.name, exc
            )
