"""Packed datasets: many small samples in one file with an index and a CRC32C per sample.

Like FFRecord, this keeps the metadata service out of the training data path (3FS is not built for
millions of small files) and turns a random-sample batch into a few large parallel reads.

File layout (all integers little-endian)::

    0   header, 64 bytes:
          magic "FS3PACK\\x01" (8) | version u32 | flags u32 | num_samples u64 | data_offset u64
          | meta_offset u64 | meta_len u64 | index_crc32c u32 | meta_crc32c u32 | header_crc32c u32 | 0 u32
    64  sample_crc32c u32[N]            CRC32C of each sample's bytes
        sample_offset u64[N+1]          absolute offsets; sample i is [off[i], off[i+1]), off[N] = meta_offset
    data_offset (4 KiB aligned): the samples, back to back
    meta_offset: JSON metadata (e.g. the source file name of each sample)

``header_crc32c`` covers the header's first 56 bytes and ``index_crc32c`` both index arrays, so a torn or
corrupt index is caught at open; the header is written last, so a writer that died leaves no valid magic.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from fs3.crc import crc32c  # re-exported: CRC32C of any contiguous buffer (numpy arrays too)
from fs3.errors import PackedChecksumError, PackedFormatError
from fs3.pio import PReadable, PWritable, get_filesystem

MAGIC = b"FS3PACK\x01"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQQQIII4x")
HEADER_BYTES = _HEADER.size  # 64
_DATA_ALIGN = 4096

__all__ = [
    "PackedWriter",
    "PackedReader",
    "PackedDataset",
    "pack_files",
    "pack_directory",
    "crc32c",
]


def _index_bytes(n: int) -> int:
    return 4 * n + 8 * (n + 1)


def _data_offset(n: int) -> int:
    end = HEADER_BYTES + _index_bytes(n)
    return (end + _DATA_ALIGN - 1) // _DATA_ALIGN * _DATA_ALIGN


class PackedWriter:
    """Appends ``num_samples`` samples to a file in large (``buffer_bytes``) parallel writes.

    The sample count is fixed up front so the index can sit before the data; ``close`` writes the
    index, metadata and finally the header. Not thread-safe: one thread calls ``write``.
    """

    def __init__(
        self,
        f: PWritable,
        num_samples: int,
        *,
        buffer_bytes: int = 8 << 20,
        max_workers: int = 4,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if buffer_bytes <= 0:
            raise ValueError(f"buffer_bytes must be > 0, got {buffer_bytes}")
        self._f = f
        self.num_samples = num_samples
        self.metadata = dict(metadata or {})
        self._crcs = np.zeros(num_samples, dtype="<u4")
        self._offsets = np.zeros(num_samples + 1, dtype="<u8")
        self._count = 0
        self._pos = _data_offset(num_samples)
        self._buf = bytearray()
        self._buf_start = self._pos
        self._buffer_bytes = buffer_bytes
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="pack-write")
        self._pending: list[Future] = []
        self._max_pending = max(2, max_workers * 2)
        self._closed = False

    def write(self, sample: Any) -> int:
        """Append one sample (any buffer); returns its index."""
        if self._closed:
            raise ValueError("write on a closed PackedWriter")
        if self._count >= self.num_samples:
            raise PackedFormatError(
                f"writer was sized for {self.num_samples} samples; sample {self._count} does not fit"
            )
        view = memoryview(sample).cast("B")
        i = self._count
        self._crcs[i] = crc32c(view)
        self._offsets[i] = self._pos
        self._buf += view
        self._pos += len(view)
        self._count += 1
        if len(self._buf) >= self._buffer_bytes:
            self._flush_buffer()
        return i

    def _flush_buffer(self) -> None:
        if not self._buf:
            return
        data, off = bytes(self._buf), self._buf_start
        self._buf = bytearray()
        self._buf_start = self._pos
        self._pending.append(self._pool.submit(self._f.pwrite, data, off))
        if len(self._pending) >= self._max_pending:
            self._drain(keep=self._max_pending // 2)

    def _drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def close(self) -> None:
        """Write the outstanding data, index, metadata and header; raises if samples are missing."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._count != self.num_samples:
                raise PackedFormatError(
                    f"writer was sized for {self.num_samples} samples but got {self._count}"
                )
            self._flush_buffer()
            self._drain()
            meta_offset = self._pos
            self._offsets[self.num_samples] = meta_offset
            meta = json.dumps(self.metadata, separators=(",", ":")).encode()
            index = self._crcs.tobytes() + self._offsets.tobytes()
            self._f.pwrite(index, HEADER_BYTES)
            if meta:
                self._f.pwrite(meta, meta_offset)
            head = _HEADER.pack(
                MAGIC,
                VERSION,
                0,
                self.num_samples,
                _data_offset(self.num_samples),
                meta_offset,
                len(meta),
                crc32c(index),
                crc32c(meta),
                0,
            )
            head = head[:56] + struct.pack("<I", crc32c(head[:56])) + head[60:]
            self._f.pwrite(head, 0)
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop without writing the header (the file stays invalid)."""
        self._closed = True
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> PackedWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class _Range:
    """One coalesced read: [start, end) of the file and the sample indices it covers."""

    start: int
    end: int
    samples: tuple[int, ...]


class PackedReader:
    """Random access to the samples of a packed file through any ``pread(offset, size)``.

    ``read_batch`` sorts the requested samples, merges neighbours that are at most
    ``coalesce_gap_bytes`` apart into reads of at most ``max_read_bytes``, issues those reads in
    parallel and checks each sample's CRC32C. Thread-safe when the file's ``pread`` is.
    """

    def __init__(
        self,
        f: PReadable,
        *,
        verify: bool = True,
        max_workers: int = 8,
        coalesce_gap_bytes: int = 64 << 10,
        max_read_bytes: int = 4 << 20,
        name: str = "",
    ) -> None:
        self._f = f
        self.name = name or repr(f)
        self.verify = verify
        self.coalesce_gap_bytes = coalesce_gap_bytes
        self.max_read_bytes = max_read_bytes
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._load_index()

    def _read_exact(self, offset: int, size: int, what: str) -> bytes:
        data = self._f.pread(offset, size)
        if len(data) != size:
            raise PackedFormatError(
                f"{self.name}: {what}: wanted {size} bytes at offset {offset}, file ended after {len(data)}"
            )
        return data

    def _load_index(self) -> None:
        head = self._read_exact(0, HEADER_BYTES, "header")
        (magic, version, _flags, n, data_off, meta_off, meta_len, index_crc, meta_crc, head_crc) = (
            _HEADER.unpack(head)
        )
        if magic != MAGIC:
            raise PackedFormatError(f"{self.name}: not a packed dataset (magic {magic!r})")
        if crc32c(head[:56]) != head_crc:
            raise PackedChecksumError(f"{self.name}: header checksum mismatch")
        if version != VERSION:
            raise PackedFormatError(f"{self.name}: format version {version} is not supported")
        if data_off != _data_offset(n):
            raise PackedFormatError(f"{self.name}: data_offset {data_off} inconsistent with {n} samples")
        index = self._read_exact(HEADER_BYTES, _index_bytes(n), "index")
        if crc32c(index) != index_crc:
            raise PackedChecksumError(f"{self.name}: index checksum mismatch")
        self._crcs = np.frombuffer(index, dtype="<u4", count=n)
        self._offsets = np.frombuffer(index, dtype="<u8", count=n + 1, offset=4 * n).astype(np.int64)
        if n and (
            self._offsets[0] != data_off or np.any(np.diff(self._offsets) < 0) or self._offsets[n] != meta_off
        ):
            raise PackedFormatError(f"{self.name}: sample offsets are not monotonic")
        self._meta_offset, self._meta_len, self._meta_crc = meta_off, meta_len, meta_crc
        self._metadata: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self._crcs)

    @property
    def metadata(self) -> dict[str, Any]:
        """The JSON metadata stored at pack time (e.g. ``names``), read on first use."""
        if self._metadata is None:
            raw = self._read_exact(self._meta_offset, self._meta_len, "metadata") if self._meta_len else b""
            if raw and crc32c(raw) != self._meta_crc:
                raise PackedChecksumError(f"{self.name}: metadata checksum mismatch")
            self._metadata = json.loads(raw) if raw else {}
        return self._metadata

    def sample_size(self, index: int) -> int:
        """Length in bytes of sample ``index``."""
        i = self._check_index(index)
        return int(self._offsets[i + 1] - self._offsets[i])

    def total_sample_bytes(self) -> int:
        """Sum of all sample lengths."""
        return int(self._offsets[-1] - self._offsets[0]) if len(self) else 0

    def _check_index(self, index: int) -> int:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{self.name}: sample index {index} out of range for {n} samples")
        return i

    def read(self, index: int) -> bytes:
        """Sample ``index`` (verified against its CRC32C unless ``verify=False``)."""
        i = self._check_index(index)
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        data = self._read_exact(start, end - start, f"sample {i}")
        self._verify(i, data)
        return data

    def _verify(self, i: int, data: Any) -> None:
        if self.verify and crc32c(data) != int(self._crcs[i]):
            raise PackedChecksumError(f"{self.name}: sample {i} fails its CRC32C check")

    def plan(self, indices: Iterable[int]) -> list[_Range]:
        """The coalesced reads that ``read_batch(indices)`` would issue."""
        uniq = sorted({self._check_index(i) for i in indices})
        ranges: list[_Range] = []
        cur: list[int] = []
        start = end = 0
        for i in uniq:
            s, e = int(self._offsets[i]), int(self._offsets[i + 1])
            if cur and s - end <= self.coalesce_gap_bytes and e - start <= self.max_read_bytes:
                cur.append(i)
                end = e
                continue
            if cur:
                ranges.append(_Range(start, end, tuple(cur)))
            cur, start, end = [i], s, e
        if cur:
            ranges.append(_Range(start, end, tuple(cur)))
        return ranges

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="pack-read")
            return self._pool

    def _fetch(self, r: _Range) -> dict[int, bytes]:
        blob = self._read_exact(r.start, r.end - r.start, f"samples {r.samples[0]}..{r.samples[-1]}")
        view = memoryview(blob)
        out: dict[int, bytes] = {}
        for i in r.samples:
            s, e = int(self._offsets[i]) - r.start, int(self._offsets[i + 1]) - r.start
            piece = view[s:e]
            self._verify(i, piece)
            out[i] = bytes(piece) if len(r.samples) > 1 else blob
        return out

    def read_batch(self, indices: Sequence[int]) -> list[bytes]:
        """Samples ``indices`` in the given order, fetched with parallel coalesced reads."""
        ranges = self.plan(indices)
        got: dict[int, bytes] = {}
        if len(ranges) == 1:
            got = self._fetch(ranges[0])
        elif ranges:
            for part in self._executor().map(self._fetch, ranges):
                got.update(part)
        return [got[self._check_index(i)] for i in indices]

    def close(self) -> None:
        """Stop the read threads and close the file if it has ``close``."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        close = getattr(self._f, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> PackedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, path: str, client: Any = None, **kwargs: Any) -> PackedReader:
        """Open ``path`` on local disk, or on the fs3 cluster behind ``client``."""
        f = get_filesystem(client).open(path, "r")
        try:
            return cls(f, name=path, **kwargs)
        except BaseException:
            f.close()
            raise


def pack_files(
    paths: Sequence[str],
    dst: str,
    *,
    names: Sequence[str] | None = None,
    client: Any = None,
    src_client: Any = None,
    progress: Callable[[int, int], None] | None = None,
    buffer_bytes: int = 8 << 20,
) -> int:
    """Pack the files ``paths`` (in order) into ``dst``; returns the sample bytes written.

    ``names`` are stored in the metadata (default: the paths); ``dst`` is written to a temporary
    name and renamed into place, so readers never see a half-written dataset.
    """
    dst_fs = get_filesystem(client)
    src_fs = get_filesystem(src_client)
    tmp = f"{dst}.packing-{os.getpid()}"
    meta = {"names": list(names if names is not None else paths)}
    total = 0
    f = dst_fs.open(tmp, "w")
    try:
        with PackedWriter(f, len(paths), buffer_bytes=buffer_bytes, metadata=meta) as w:
            for k, p in enumerate(paths):
                src = src_fs.open(p, "r")
                try:
                    size = src.size()
                    data = src.pread(0, size) if size else b""
                finally:
                    src.close()
                w.write(data)
                total += len(data)
                if progress is not None:
                    progress(k + 1, total)
        f.fsync()
        f.close()
        dst_fs.rename(tmp, dst)
    except BaseException:
        f.close()
        try:
            dst_fs.remove(tmp)
        except OSError:
            pass
        raise
    return total


def pack_directory(src_dir: str, dst: str, *, client: Any = None, **kwargs: Any) -> int:
    """Pack every regular file under the local directory ``src_dir`` (sorted by relative path)."""
    rel: list[str] = []
    for root, dirs, files in os.walk(src_dir):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                rel.append(os.path.relpath(full, src_dir))
    if not rel:
        raise PackedFormatError(f"{src_dir}: no regular files to pack")
    return pack_files([os.path.join(src_dir, r) for r in rel], dst, names=rel, client=client, **kwargs)


def _torch_dataset_base() -> type:
    try:
        from torch.utils.data import Dataset
    except ImportError:  # torch is optional for the reader itself
        return object
    return Dataset


class PackedDataset(_torch_dataset_base()):  # type: ignore[misc]
    """A ``torch.utils.data.Dataset`` over a packed file; each item is ``transform(sample_bytes)``.

    The reader is opened lazily in each process (DataLoader workers fork), through ``opener`` if given
    (a callable returning a ``PReadable``; use it for fs3, whose client must be created after fork).
    ``__getitems__`` lets the DataLoader fetch a whole batch with one parallel ``read_batch``.
    """

    def __init__(
        self,
        path: str,
        *,
        transform: Callable[[bytes], Any] | None = None,
        opener: Callable[[], PReadable] | None = None,
        verify: bool = True,
        max_workers: int = 8,
    ) -> None:
        self.path = path
        self.transform = transform
        self.opener = opener
        self.verify = verify
        self.max_workers = max_workers
        self._reader: PackedReader | None = None
        self._pid = -1
        self._len = len(self._get_reader())

    def _get_reader(self) -> PackedReader:
        if self._reader is None or self._pid != os.getpid():
            f = self.opener() if self.opener is not None else get_filesystem(None).open(self.path, "r")
            self._reader = PackedReader(f, verify=self.verify, max_workers=self.max_workers, name=self.path)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reader"] = None
        state["_pid"] = -1
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Any:
        data = self._get_reader().read(index)
        return self.transform(data) if self.transform else data

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        batch = self._get_reader().read_batch(indices)
        return [self.transform(d) for d in batch] if self.transform else batch
