"""Communicators: the narrow interface HaiScale needs from a collective library, and its two adapters.

HaiScale's DDP only needs an in-place asynchronous sum-allreduce of a flat CPU float tensor, a broadcast
and a barrier. ``HFReduceCommunicator`` is the real one; ``ProcessGroupCommunicator`` wraps a
``torch.distributed`` group (gloo) so the same DDP can be compared against the same wire in benchmarks.
"""

from __future__ import annotations

import datetime
from abc import ABC, abstractmethod
from typing import Protocol

import torch

from fireflyer.haiscale.errors import CommunicationError, HaiScaleError


class Waitable(Protocol):
    """One collective in flight: ``wait()`` blocks until it is done and raises if it failed."""

    def wait(self) -> object: ...


class Communicator(ABC):
    """In-place CPU collectives used by HaiScale; every rank must issue them in the same order."""

    name: str = "abstract"
    rank: int = 0
    world_size: int = 1
    timeout_s: float = 300.0

    @abstractmethod
    def allreduce_async(self, tensor: torch.Tensor) -> Waitable:
        """Start an in-place sum over ranks of a contiguous CPU ``tensor``; returns the work to wait on."""

    @abstractmethod
    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        """Overwrite ``tensor`` on every rank with rank ``src``'s copy (blocking)."""

    @abstractmethod
    def barrier(self) -> None:
        """Block until every rank has reached the barrier."""

    def empty(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat buffer for a bucket; communicators with a zero-copy path return shared memory."""
        return torch.zeros(numel, dtype=dtype)

    def wait(self, work: Waitable, what: str) -> None:
        """Wait for ``work``, turning any failure into a ``CommunicationError`` that names ``what``."""
        try:
            work.wait()
        except HaiScaleError:
            raise
        except Exception as exc:  # the collective library's own error type
            raise CommunicationError(f"rank {self.rank}: {what} failed on {self.name}: {exc}") from exc


class ProcessGroupCommunicator(Communicator):
    """Adapter over a ``torch.distributed`` process group (gloo on CPU), for comparison runs and tests."""

    name = "torch.distributed"

    def __init__(self, group: object | None = None, timeout_s: float = 300.0) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            raise HaiScaleError(
                "ProcessGroupCommunicator: torch.distributed.init_process_group was not called"
            )
        self._dist = dist
        self._group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.timeout_s = timeout_s
        self.name = f"torch.distributed[{dist.get_backend(group)}]"

    def allreduce_async(self, tensor: torch.Tensor) -> Waitable:
        work = self._dist.all_reduce(tensor, group=self._group, async_op=True)
        return _TimedWork(work, self.timeout_s)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        self._dist.broadcast(tensor, src=src, group=self._group)

    def barrier(self) -> None:
        self._dist.barrier(group=self._group)


class _TimedWork:
    """A torch ``Work`` whose ``wait`` gives up after the communicator's timeout."""

    def __init__(self, work: object, timeout_s: float) -> None:
        self._work = work
        self._timeout = datetime.timedelta(seconds=timeout_s)

    def wait(self) -> object:
        return self._work.wait(self._timeout)


class HFReduceCommunicator(Communicator):
    """Adapter over HFReduce (``hfreduce.init()`` from the mpirun or torchrun environment)."""

    name = "hfreduce"

    def __init__(self, timeout_s: float | None = None, use_shared_buffers: bool = True) -> None:
        try:
            import hfreduce
        except ImportError as exc:  # pragma: no cover - hfreduce is part of this package
            raise HaiScaleError(f"HFReduce is not importable: {exc}") from exc
        if not hasattr(hfreduce, "allreduce"):
            raise HaiScaleError("this hfreduce build has no allreduce (is the C++ core built?)")
        self._hf = hfreduce
        _hfreduce_init(hfreduce)
        self.rank = int(_call(hfreduce, ("rank", "get_rank")))
        self.world_size = int(_call(hfreduce, ("world_size", "get_world_size")))
        if timeout_s is None:
            timeout_s = float(_call(hfreduce, ("timeout_s", "get_timeout_s"), default=300.0))
        self.timeout_s = timeout_s
        self._use_shared = use_shared_buffers and hasattr(hfreduce, "empty")

    def allreduce_async(self, tensor: torch.Tensor) -> Waitable:
        return self._hf.allreduce(tensor, op="sum", async_op=True)

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> None:
        self._hf.broadcast(tensor, root=src) if _takes(self._hf.broadcast, "root") else self._hf.broadcast(
            tensor, src
        )

    def barrier(self) -> None:
        self._hf.barrier()

    def empty(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        if not self._use_shared:
            return torch.zeros(numel, dtype=dtype)
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        arr = self._hf.empty(numel, dtype=np_dtype)
        t = arr if isinstance(arr, torch.Tensor) else torch.from_numpy(arr)
        t.zero_()
        return t


def _hfreduce_init(hf: object) -> None:
    is_init = getattr(hf, "is_initialized", None)
    if is_init is not None and is_init():
        return
    hf.init()


def _call(mod: object, names: tuple[str, ...], default: object = None) -> object:
    for n in names:
        attr = getattr(mod, n, None)
        if attr is not None:
            return attr() if callable(attr) else attr
    if default is not None:
        return default
    raise HaiScaleError(f"hfreduce exposes none of {names}")


def _takes(fn: object, kw: str) -> bool:
    import inspect

    try:
        return kw in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def default_communicator() -> Communicator:
    """HFReduce: the communicator HaiScale is built for."""
    return HFReduceCommunicator()
