"""HaiScale on CUDA gradients: buckets staged GPU → pinned host (HFReduce's shared segment) → CPU reduce → GPU.

The point of HFReduce (Fire-Flyer §IV-D2) is that gradients leave the GPU on the Copy Engines and are
summed by the CPU, so no SM is taken from backward. ``hfreduce._cuda`` (csrc/cuda/) does the copies
with ``cudaMemcpyAsync`` on two non-blocking side streams and never launches a kernel. Per bucket:

1. on the caller's thread, the D2H stream waits for the caller's current stream (the gradients are
   complete) and queues the copy of each chunk (``HAISCALE_CUDA_CHUNK_BYTES``, 4 MiB) into a host
   buffer that lives in HFReduce's shared segment and is pinned with ``cudaHostRegister``;
2. one worker thread per :class:`CudaStaging` waits for chunk i (a stream callback marks it landed,
   GIL released) and starts ``hfreduce.allreduce`` on it while chunk i+1 is still copying; as each
   chunk's allreduce completes, its H2D copy is queued on the H2D stream;
3. ``wait()`` returns once every H2D is queued and makes the caller's current stream wait for them
   (an event): the host does not block on the copy back.

Every collective of a process must go through one worker, so that all ranks issue them in the same
order: :class:`CudaStagingCommunicator` routes CPU collectives (DDP's used-parameter map, barriers)
through the same queue. Importing this module needs neither CUDA nor a GPU; using it without them
raises :class:`CudaUnavailableError` saying what is missing.
"""

from __future__ import annotations

import mmap
import queue
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ffcommon.config import env_int
from fireflyer.haiscale._comm import Communicator, HFReduceCommunicator
from fireflyer.haiscale.errors import CommunicationError, HaiScaleError

_MiB = 1024 * 1024
_PAGE_BYTES = mmap.PAGESIZE
_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_BUILD_HINT = (
    "rebuild with the CUDA extension: FIREFLYER_CUDA=1 python3 setup.py build_ext --inplace "
    "(needs nvcc; FIREFLYER_CUDA_ARCH=sm_90 where no GPU is visible at build time)"
)


class CudaStagingError(HaiScaleError):
    """A CUDA copy, registration or stream operation of the staging failed (carries CUDA's error string)."""


class CudaUnavailableError(CudaStagingError):
    """``hfreduce._cuda`` is not built, or no CUDA GPU/driver is usable in this process."""


def _cuda_module() -> Any:
    """``hfreduce._cuda`` if it is built and sees a GPU, else :class:`CudaUnavailableError`."""
    import hfreduce

    try:
        _cuda = hfreduce.cuda_extension()
    except ImportError as exc:
        raise CudaUnavailableError(f"hfreduce._cuda is not built ({exc}); {_BUILD_HINT}") from exc
    n, why = _cuda.device_count()
    if n == 0:
        raise CudaUnavailableError(f"hfreduce._cuda is built but no CUDA GPU is usable: {why}")
    return _cuda


def is_available() -> bool:
    """Whether CUDA staging can be used here (extension built, driver and a GPU present)."""
    try:
        _cuda_module()
    except CudaUnavailableError:
        return False
    return True


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class HostBuffer:
    """Page-locked host memory for one bucket: a page-aligned slice of HFReduce's shared segment pinned
    with ``cudaHostRegister`` (zero-copy for HFReduce), or, where that fails, ``cudaHostAlloc`` memory
    (HFReduce then copies it into the segment). Pages are never shared with another registration."""

    def __init__(self, cu: Any, nbytes: int, hf: Any | None) -> None:  # hf None: pinned only
        self.nbytes = nbytes
        span = max(_round_up(nbytes, _PAGE_BYTES), _PAGE_BYTES)
        self._raw: Any = None
        self._reg: Any = None
        self.kind = "pinned"
        why = "hfreduce is not initialised"
        if hf is not None:
            try:
                raw = hf.empty(span + _PAGE_BYTES, np.uint8)
                base = raw.__array_interface__["data"][0]
                off = _round_up(base, _PAGE_BYTES) - base
                arr = raw[off : off + span]
                self._reg = cu.HostRegistration(base + off, span)
                self._raw, self.array, self.kind = raw, arr, "shm"
            except Exception as exc:  # segment full or registration refused: fall back
                why = str(exc)
        if self.kind != "shm":
            warnings.warn(
                f"CUDA staging: cannot pin a {nbytes}-byte buffer in HFReduce's shared segment ({why}); "
                "using cudaHostAlloc memory, which HFReduce copies into the segment",
                RuntimeWarning,
                stacklevel=3,
            )
            try:
                self._raw = cu.PinnedBuffer(span)
            except cu.CudaError as exc:
                raise CudaStagingError(f"allocating {span} bytes of pinned host memory: {exc}") from exc
            self.array = np.frombuffer(self._raw, dtype=np.uint8, count=span)
        self.ptr = self.array.__array_interface__["data"][0]

    def view(self, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """The first ``numel`` elements as a CPU tensor of ``dtype`` (no copy)."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        return torch.from_numpy(self.array[: numel * itemsize]).view(dtype)

    def release(self) -> None:
        """Unregister (or free) the memory; views taken before must not be used afterwards."""
        if self._reg is not None:
            self._reg.release()
            self._reg = None
        self._raw = None


class StagedWork:
    """One staged collective: ``wait()`` blocks until the host part is done, raises its error, and makes
    the caller's current CUDA stream wait for the copy back (the host does not wait for that copy)."""

    def __init__(
        self, what: str, keep: object, stream_of: Callable[[], int] | None, timeout_s: float
    ) -> None:
        self.what = what
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._transfer: Any = None
        self._inner: Any = None  # a CPU collective's own Work, for ordered CPU submissions
        self._keep = keep  # the device tensor (and host buffer) stay alive until wait()
        self._stream_of = stream_of
        self._timeout_s = timeout_s

    def is_completed(self) -> bool:
        """Whether the host side has finished (the copy back may still be in flight on the GPU)."""
        return self._done.is_set() and (self._inner is None or self._inner.is_completed())

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until done (default: the staging's timeout); raise its error; order the caller's stream."""
        limit = self._timeout_s if timeout_s is None else timeout_s
        if not self._done.wait(limit):
            raise CommunicationError(f"{self.what}: not done after {limit:g} s (host side still running)")
        if self._error is not None:
            raise self._error
        if self._inner is not None:
            self._inner.wait()
        if self._transfer is not None and self._stream_of is not None:
            try:
                self._transfer.wait_on_stream(self._stream_of())
            except RuntimeError as exc:
                raise CudaStagingError(f"{self.what}: {exc}") from exc
        self._keep = None
        return True

    def synchronize(self, timeout_s: float | None = None) -> None:
        """Like ``wait()``, then also block the host until the result is back on the GPU."""
        self.wait(timeout_s)
        if self._transfer is not None and not self._transfer.synchronize(
            -1.0 if timeout_s is None else float(timeout_s)
        ):
            raise CommunicationError(f"{self.what}: copy back to the GPU not done after {timeout_s:g} s")


class _Op:
    __slots__ = ("work", "kind", "root", "op", "host", "dtype", "numel", "fn")

    def __init__(self, work: StagedWork, kind: str, **kw: Any) -> None:
        self.work, self.kind = work, kind
        self.root = kw.get("root", 0)
        self.op = kw.get("op", "sum")
        self.host: HostBuffer | None = kw.get("host")
        self.dtype: torch.dtype | None = kw.get("dtype")
        self.numel: int = kw.get("numel", 0)
        self.fn: Callable[[], Any] | None = kw.get("fn")


class CudaStaging:
    """Stages CUDA buffers through pinned shared-segment host memory for HFReduce, on one device.

    ``allreduce_async(t)`` (and ``broadcast_async``) take a contiguous CUDA float32/float16/bfloat16
    tensor and return a :class:`StagedWork`; ``submit_cpu(fn)`` runs a CPU collective in the same order.
    One host buffer is kept (pinned) per device buffer address and size: gradient buckets are reused
    every step. Not for concurrent use from several threads; every rank must issue the same sequence.
    """

    def __init__(
        self,
        device: int | torch.device | None = None,
        *,
        chunk_bytes: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._cu = _cuda_module()
        import hfreduce

        self._hf = hfreduce
        if not hfreduce.is_initialized():
            hfreduce.init()  # idempotent; from mpirun/torchrun's environment, else a one-rank job
        if isinstance(device, torch.device):
            device = device.index
        if device is None:
            device = torch.cuda.current_device() if torch.cuda.is_available() else 0
        self.device = int(device)
        self.chunk_bytes = chunk_bytes or env_int("HAISCALE_CUDA_CHUNK_BYTES", 4 * _MiB, HaiScaleError)
        if self.chunk_bytes <= 0 or self.chunk_bytes % 16:
            raise HaiScaleError(f"chunk_bytes={self.chunk_bytes} must be a positive multiple of 16")
        self.timeout_s = float(
            timeout_s if timeout_s is not None else env_int("HFREDUCE_TIMEOUT_S", 300, HaiScaleError)
        )
        try:
            self._stager = self._cu.Stager(self.device)
        except self._cu.CudaError as exc:
            raise CudaUnavailableError(f"CUDA staging on device {self.device}: {exc}") from exc
        self._hosts: dict[tuple[int, int], HostBuffer] = {}
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"haiscale-cuda-staging-{self.device}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ submission (caller's thread)
    def allreduce_async(self, tensor: torch.Tensor, op: str = "sum") -> StagedWork:
        """Sum (``op="avg"``: average) a CUDA tensor in place across ranks, staged through host memory."""
        return self._submit_tensor("allreduce", tensor, op=op)

    def broadcast_async(self, tensor: torch.Tensor, root: int = 0) -> StagedWork:
        """Overwrite a CUDA tensor on every rank with rank ``root``'s copy, staged through host memory."""
        return self._submit_tensor("broadcast", tensor, root=root)

    def allreduce_device_async(
        self, ptr: int, numel: int, dtype: torch.dtype, stream: int = 0, op: str = "sum"
    ) -> StagedWork:
        """``allreduce_async`` of raw device memory (e.g. a ``hfreduce._cuda.DeviceBuffer``); the copy
        back is ordered before later work on CUDA stream ``stream`` (an integer handle)."""
        return self._submit_raw("allreduce", ptr, numel, dtype, stream, lambda: stream, None, op=op)

    def submit_cpu(self, fn: Callable[[], Any], what: str = "CPU collective") -> StagedWork:
        """Run ``fn`` (which issues one CPU collective, returning its Work or None) in queue order."""
        work = StagedWork(what, None, None, self.timeout_s)
        self._queue.put(_Op(work, "cpu", fn=fn))
        return work

    def close(self) -> None:
        """Finish queued work, stop the worker and unpin every host buffer."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        for h in self._hosts.values():
            h.release()
        self._hosts.clear()

    def host_buffer_kinds(self) -> list[str]:
        """``"shm"`` (registered shared segment) or ``"pinned"`` (fallback) for each cached host buffer."""
        return [h.kind for h in self._hosts.values()]

    def _submit_tensor(self, kind: str, t: torch.Tensor, **kw: Any) -> StagedWork:
        if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
            raise HaiScaleError(
                f"CUDA staging takes CUDA tensors, got {getattr(t, 'device', type(t).__name__)}"
            )
        if t.device.index != self.device:
            raise HaiScaleError(f"tensor is on {t.device}, this CudaStaging is for cuda:{self.device}")
        if not t.is_contiguous():
            raise HaiScaleError(f"tensor of shape {tuple(t.shape)} is not contiguous")
        dev = t.device

        def stream_of() -> int:
            return torch.cuda.current_stream(dev).cuda_stream

        return self._submit_raw(kind, t.data_ptr(), t.numel(), t.dtype, stream_of(), stream_of, t, **kw)

    def _submit_raw(
        self,
        kind: str,
        ptr: int,
        numel: int,
        dtype: torch.dtype,
        caller_stream: int,
        stream_of: Callable[[], int],
        keep: object,
        **kw: Any,
    ) -> StagedWork:
        if dtype not in _DTYPES:
            raise HaiScaleError(f"unsupported dtype {dtype} (HFReduce reduces float32, float16, bfloat16)")
        if self._failed is not None:
            raise CommunicationError(f"CUDA staging failed earlier and cannot be used: {self._failed}")
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        host = self._host_for(ptr, nbytes)
        work = StagedWork(
            f"staged {kind} of {numel} {_DTYPES[dtype]} on cuda:{self.device}",
            (keep, host),
            stream_of,
            self.timeout_s,
        )
        try:
            work._transfer = self._stager.begin(ptr, host.ptr, nbytes, self.chunk_bytes, caller_stream)
        except self._cu.CudaError as exc:
            raise CudaStagingError(f"{work.what}: {exc}") from exc
        self._queue.put(_Op(work, kind, host=host, dtype=dtype, numel=numel, **kw))
        return work

    def _host_for(self, ptr: int, nbytes: int) -> HostBuffer:
        key = (ptr, nbytes)
        h = self._hosts.get(key)
        if h is None:
            h = self._hosts[key] = HostBuffer(self._cu, nbytes, self._hf)
        return h

    # ------------------------------------------------------------------ the worker thread
    def _run(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            try:
                if self._failed is not None:
                    raise CommunicationError(
                        f"not started: an earlier staged collective failed: {self._failed}"
                    )
                if op.kind == "cpu":
                    assert op.fn is not None
                    op.work._inner = op.fn()
                else:
                    self._pipeline(op)
            except BaseException as exc:  # handed to the waiter
                if isinstance(exc, self._cu.CudaError):
                    exc = CudaStagingError(f"{op.work.what}: {exc}")
                op.work._error = exc
                if op.kind != "cpu" and self._failed is None:
                    self._failed = exc  # ranks are now out of step: refuse further staged work
            finally:
                op.work._done.set()

    def _pipeline(self, op: _Op) -> None:
        """Chunk i is reduced on the CPU while chunk i+1 is still on the D2H copy engine; each reduced
        chunk goes back on the H2D stream as soon as its collective completes."""
        tr, hf = op.work._transfer, self._hf
        assert op.host is not None and op.dtype is not None
        host = op.host.view(op.dtype, op.numel)
        itemsize = host.element_size()
        works: list[Any] = []
        next_h2d = 0
        deadline_s = self.timeout_s
        for i in range(tr.num_chunks):
            next_h2d = self._drain(tr, works, next_h2d, block=False)
            t0 = time.monotonic()
            if not tr.wait_d2h(i, deadline_s):
                raise CommunicationError(
                    f"{op.work.what}: chunk {i} not copied from the GPU after {time.monotonic() - t0:.0f} s"
                )
            off, ln = tr.chunk(i)
            chunk = host[off // itemsize : (off + ln) // itemsize]
            if op.kind == "allreduce":
                works.append(hf.allreduce(chunk, op=op.op, async_op=True))
            else:
                works.append(hf.broadcast(chunk, root=op.root, async_op=True))
        self._drain(tr, works, next_h2d, block=True)
        tr.finish()

    def _drain(self, tr: Any, works: list[Any], next_h2d: int, block: bool) -> int:
        while next_h2d < len(works) and (block or works[next_h2d].is_completed()):
            works[next_h2d].wait(self.timeout_s)
            tr.start_h2d(next_h2d)
            works[next_h2d] = None
            next_h2d += 1
        return next_h2d


class CudaStagingCommunicator(Communicator):
    """The HaiScale ``Communicator`` for CUDA parameters: CUDA tensors are staged (:class:`CudaStaging`),
    CPU tensors go straight to HFReduce, both through one ordered queue. ``empty()`` returns CUDA
    buckets on this communicator's device."""

    name = "hfreduce+cuda-staging"
    accepts_cuda = True

    def __init__(
        self,
        device: int | torch.device | None = None,
        *,
        inner: HFReduceCommunicator | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        _cuda_module()  # the clear error first, before joining the job
        self.inner = inner if inner is not None else HFReduceCommunicator()
        self.rank, self.world_size, self.timeout_s = (
            self.inner.rank,
            self.inner.world_size,
            self.inner.timeout_s,
        )
        self.staging = CudaStaging(device, chunk_bytes=chunk_bytes, timeout_s=self.timeout_s)
        self.device = torch.device("cuda", self.staging.device)

    def allreduce_async(self, tensor: torch.Tensor) -> StagedWork:
        if tensor.device.type == "cuda":
            return self.staging.allreduce_async(tensor)
        return self.staging.submit_cpu(
            lambda: self.inner.allreduce_async(tensor), "allreduce of a CPU tensor"
        )

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        if tensor.device.type == "cuda":
            self.staging.broadcast_async(tensor, src).wait()
        else:
            self.staging.submit_cpu(
                lambda: self.inner.broadcast(tensor, src), "broadcast of a CPU tensor"
            ).wait()

    def barrier(self) -> None:
        self.staging.submit_cpu(self.inner.barrier, "barrier").wait()

    def empty(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(numel, dtype=dtype, device=self.device)

    def close(self) -> None:
        """Stop the staging worker and unpin its host buffers."""
        self.staging.close()


__all__ = [
    "CudaStaging",
    "CudaStagingCommunicator",
    "CudaStagingError",
    "CudaUnavailableError",
    "HostBuffer",
    "StagedWork",
    "is_available",
]
