"""Checkpoints: a torch state dict saved as one file with a tensor index, in large parallel writes.

The paper's checkpoint manager writes tensors in chunks with batch writes and records a per-tensor
index and offset so that loading is one batch read; this is that, for local disk or fs3.

File layout (integers little-endian)::

    0   header, 48 bytes: magic "FS3CKPT\\x01" (8) | version u32 | flags u32 | table_len u64 | skel_len u64
        | table_crc32c u32 | skel_crc32c u32 | header_crc32c u32 | 0 u32
    48  table: JSON list of {"dtype", "shape", "offset" (from data start), "nbytes", "crc32c"}
        skeleton: pickle of the state dict with every tensor replaced by its table position
    data start = align(48 + table_len + skel_len, 4096); each tensor 64-byte aligned

The file is written under a temporary name, fsynced and renamed over the target, so a crash mid-save
never destroys the previous checkpoint. Loading checks every CRC and returns bit-identical tensors.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fs3.dataset import crc32c
from fs3.errors import PackedChecksumError, PackedFormatError
from fs3.pio import get_filesystem

MAGIC = b"FS3CKPT\x01"
VERSION = 1
_HEADER = struct.Struct("<8sIIQQIII4x")
HEADER_BYTES = _HEADER.size  # 48
_TENSOR_ALIGN = 64
_DATA_ALIGN = 4096

__all__ = ["save_state_dict", "load_state_dict", "CheckpointStats"]


@dataclass(frozen=True)
class CheckpointStats:
    """What one save or load moved: bytes of tensor data, tensor count, wall time."""

    path: str
    tensor_bytes: int
    num_tensors: int
    seconds: float

    @property
    def gbps(self) -> float:
        """Tensor data rate in GB/s."""
        return self.tensor_bytes / self.seconds / 1e9 if self.seconds > 0 else float("inf")


class _TensorRef:
    """Stands for table entry ``index`` inside the pickled skeleton."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _SkeletonPickler(pickle.Pickler):
    def __init__(self, buf: io.BytesIO, tensors: list[torch.Tensor]) -> None:
        super().__init__(buf, protocol=4)
        self._tensors = tensors

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            self._tensors.append(obj)
            return ("tensor", len(self._tensors) - 1)
        return None


# What a weights_only load may construct besides plain containers, numbers and strings.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "Size"): torch.Size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
}


class _SkeletonUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, tensors: list[torch.Tensor], weights_only: bool) -> None:
        super().__init__(io.BytesIO(data))
        self._tensors = tensors
        self._weights_only = weights_only

    def persistent_load(self, pid: Any) -> Any:
        kind, index = pid
        if kind != "tensor" or not 0 <= index < len(self._tensors):
            raise PackedFormatError(f"checkpoint skeleton refers to unknown tensor {pid!r}")
        return self._tensors[index]

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if self._weights_only:
            raise pickle.UnpicklingError(
                f"checkpoint needs {module}.{name}, which weights_only=True does not allow; "
                "pass weights_only=False if you trust the file"
            )
        return super().find_class(module, name)


def _dtype_from_name(name: str) -> torch.dtype:
    dt = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise PackedFormatError(f"checkpoint has unknown dtype {name!r}")
    return dt


def _as_bytes(t: torch.Tensor) -> np.ndarray:
    """The raw bytes of a dense tensor, as a uint8 numpy view (copied to CPU/contiguous if needed)."""
    if t.layout != torch.strided:
        raise TypeError(f"cannot checkpoint a {t.layout} tensor; convert it to dense first")
    if t.is_quantized:
        raise TypeError("cannot checkpoint a quantized tensor")
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.numel() == 0:
        return np.empty(0, dtype=np.uint8)
    return t.reshape(-1).view(torch.uint8).numpy()


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _write_pieces(
    f: Any, items: list[tuple[int, np.ndarray]], piece_bytes: int, pool: ThreadPoolExecutor
) -> None:
    """Write (offset, bytes) items as pieces of about ``piece_bytes``: big items split, small ones merged."""
    futures = []
    stage = bytearray()
    stage_off = 0

    def flush() -> None:
        nonlocal stage
        if stage:
            futures.append(pool.submit(f.pwrite, bytes(stage), stage_off))
            stage = bytearray()

    for off, arr in items:
        n = arr.nbytes
        if n >= piece_bytes // 2:
            flush()
            for s in range(0, n, piece_bytes):
                futures.append(pool.submit(f.pwrite, arr[s : s + piece_bytes], off + s))
            continue
        if stage and (off < stage_off + len(stage) or off - (stage_off + len(stage)) > _DATA_ALIGN):
            flush()
        if not stage:
            stage_off = off
        stage += b"\0" * (off - (stage_off + len(stage)))
        stage += memoryview(arr)
        if len(stage) >= piece_bytes:
            flush()
    flush()
    for fut in futures:
        fut.result()


def save_state_dict(
    state_dict: Any,
    path: str,
    *,
    client: Any = None,
    piece_bytes: int = 16 << 20,
    max_workers: int = 8,
) -> CheckpointStats:
    """Save ``state_dict`` (any picklable nest of tensors) to ``path`` on local disk or fs3 ``client``.

    Tensors are written in pieces of ``piece_bytes`` by ``max_workers`` threads; the file appears
    atomically at ``path`` only once it is complete and fsynced.
    """
    if piece_bytes < 4096:
        raise ValueError(f"piece_bytes must be >= 4096, got {piece_bytes}")
    t0 = time.perf_counter()
    tensors: list[torch.Tensor] = []
    buf = io.BytesIO()
    _SkeletonPickler(buf, tensors).dump(state_dict)
    skeleton = buf.getvalue()
    raws = [_as_bytes(t) for t in tensors]
    with ThreadPoolExecutor(max_workers, thread_name_prefix="ckpt") as pool:
        crcs = list(pool.map(crc32c, raws))
        table = []
        rel = 0
        for t, raw, crc in zip(tensors, raws, crcs, strict=True):
            rel = _align(rel, _TENSOR_ALIGN)
            table.append(
                {
                    "dtype": str(t.dtype).removeprefix("torch."),
                    "shape": list(t.shape),
                    "offset": rel,
                    "nbytes": raw.nbytes,
                    "crc32c": crc,
                }
            )
            rel += raw.nbytes
        table_bytes = json.dumps(table, separators=(",", ":")).encode()
        data_start = _align(HEADER_BYTES + len(table_bytes) + len(skeleton), _DATA_ALIGN)
        head = _HEADER.pack(
            MAGIC, VERSION, 0, len(table_bytes), len(skeleton), crc32c(table_bytes), crc32c(skeleton), 0
        )
        head = head[:40] + struct.pack("<I", crc32c(head[:40])) + head[44:]

        fs = get_filesystem(client)
        tmp = f"{path}.saving-{os.getpid()}"
        f = fs.open(tmp, "w")
        try:
            items = [(data_start + e["offset"], raw) for e, raw in zip(table, raws, strict=True)]
            _write_pieces(f, items, piece_bytes, pool)
            pad = data_start - HEADER_BYTES - len(table_bytes) - len(skeleton)
            f.pwrite(head + table_bytes + skeleton + b"\0" * pad, 0)
            f.fsync()
            f.close()
            fs.rename(tmp, path)
        except BaseException:
            f.close()
            try:
                fs.remove(tmp)
            except OSError:
                pass
            raise
    total = sum(r.nbytes for r in raws)
    return CheckpointStats(path, total, len(tensors), time.perf_counter() - t0)


def _read_into(f: Any, out: np.ndarray, offset: int) -> None:
    """Fill ``out`` from ``offset`` exactly, with ``preadinto`` if the file has it."""
    readinto = getattr(f, "preadinto", None)
    if readinto is not None:
        n = readinto(out, offset)
    else:
        data = f.pread(offset, out.nbytes)
        n = len(data)
        out[:n] = np.frombuffer(data, dtype=np.uint8)
    if n != out.nbytes:
        raise PackedFormatError(
            f"checkpoint truncated: wanted {out.nbytes} bytes at offset {offset}, got {n}"
        )


def load_state_dict(
    path: str,
    *,
    client: Any = None,
    weights_only: bool = True,
    verify: bool = True,
    piece_bytes: int = 16 << 20,
    max_workers: int = 8,
    stats: list[CheckpointStats] | None = None,
) -> Any:
    """Load what ``save_state_dict`` wrote at ``path``: tensors bit-exact, on the CPU.

    ``weights_only`` (default) refuses to unpickle anything but containers, numbers, strings and
    torch dtypes/sizes. Appends a ``CheckpointStats`` to ``stats`` if given.
    """
    t0 = time.perf_counter()
    f = get_filesystem(client).open(path, "r")
    try:
        head = f.pread(0, HEADER_BYTES)
        if len(head) != HEADER_BYTES or head[:8] != MAGIC:
            raise PackedFormatError(f"{path}: not an fs3 checkpoint")
        magic, version, _flags, table_len, skel_len, table_crc, skel_crc, head_crc = _HEADER.unpack(head)
        if crc32c(head[:40]) != head_crc:
            raise PackedChecksumError(f"{path}: checkpoint header checksum mismatch")
        if version != VERSION:
            raise PackedFormatError(f"{path}: checkpoint version {version} is not supported")
        meta = f.pread(HEADER_BYTES, table_len + skel_len)
        if len(meta) != table_len + skel_len:
            raise PackedFormatError(f"{path}: checkpoint truncated in its index")
        table_bytes, skeleton = meta[:table_len], meta[table_len:]
        if crc32c(table_bytes) != table_crc or crc32c(skeleton) != skel_crc:
            raise PackedChecksumError(f"{path}: checkpoint index checksum mismatch")
        table = json.loads(table_bytes)
        data_start = _align(HEADER_BYTES + table_len + skel_len, _DATA_ALIGN)
        raws = [torch.empty(int(e["nbytes"]), dtype=torch.uint8) for e in table]
        jobs = []
        for e, raw in zip(table, raws, strict=True):
            arr = raw.numpy()
            off = data_start + int(e["offset"])
            for s in range(0, arr.nbytes, piece_bytes):
                jobs.append((arr[s : s + piece_bytes], off + s))
        with ThreadPoolExecutor(max_workers, thread_name_prefix="ckpt-load") as pool:
            for fut in [pool.submit(_read_into, f, a, o) for a, o in jobs]:
                fut.result()
            if verify:
                got = list(pool.map(lambda r: crc32c(r.numpy()), raws))
                for k, (e, c) in enumerate(zip(table, got, strict=True)):
                    if c != int(e["crc32c"]):
                        raise PackedChecksumError(f"{path}: tensor {k} fails its CRC32C check")
    finally:
        f.close()
    tensors = []
    for e, raw in zip(table, raws, strict=True):
        dt = _dtype_from_name(e["dtype"])
        shape = tuple(int(d) for d in e["shape"])
        tensors.append(raw.view(dt).reshape(shape) if raw.numel() else torch.empty(shape, dtype=dt))
    result = _SkeletonUnpickler(skeleton, tensors, weights_only).load()
    if stats is not None:
        total = sum(int(e["nbytes"]) for e in table)
        stats.append(CheckpointStats(path, total, len(table), time.perf_counter() - t0))
    return result
