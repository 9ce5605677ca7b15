"""HFReduce as a ``torch.distributed`` backend: ``init_process_group(backend="hfreduce")``.

A Python ``ProcessGroup`` over the process-wide HFReduce communicator, for the collectives HFReduce
has: ``allreduce`` (SUM, AVG), ``broadcast``, ``reduce`` (SUM, AVG) and ``barrier``, on contiguous CPU
float32/float16/bfloat16 tensors. Every other collective raises ``NotImplementedError`` naming it.
HFReduce's start-up allgather goes through the store torch hands the backend (its TCPStore already
owns MASTER_PORT). HFReduce has one communicator per process, so only the world group is supported.

Failures: ``init_process_group(timeout=)`` is HFReduce's collective timeout. When a peer dies, stalls
past it, or passes another size or dtype, ``Work.wait()`` raises the ``hfreduce.errors`` exception
(``PeerLostError``, ``CollectiveTimeoutError``, ``MismatchError``) on every rank and ``get_future()``
carries the same error; after a lost or stuck peer every later call raises at once.

Import this module (or ``fireflyer.haiscale``) before ``init_process_group``: the import registers it.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import (
    AllreduceOptions,
    BarrierOptions,
    BroadcastOptions,
    ReduceOp,
    ReduceOptions,
)

from fireflyer.haiscale._futures import future_of
from fireflyer.haiscale.errors import HaiScaleError

BACKEND_NAME = "hfreduce"

_OPS = {ReduceOp.SUM: "sum", ReduceOp.AVG: "avg"}


def _op_name(op: Any) -> str:
    """HFReduce's name for a torch ``ReduceOp``, or a NotImplementedError naming the op."""
    for red, name in _OPS.items():
        if op == red:
            return name
    kind = getattr(op, "op", op)
    raise NotImplementedError(f"hfreduce backend: reduce op {kind} is not supported (use SUM or AVG)")


class _FutureWork(dist.Work):
    """torch's ``Work`` for one call of the backend, over the future the completer thread fulfils.

    ``wait()`` raises the collective's ``hfreduce.errors`` exception (torch's own future-wrapping Work
    returns True even when its future failed, which silently left local values in the tensors) and
    ``get_future()`` carries the same exception.
    """

    def __init__(self, fut: torch.futures.Future, what: str) -> None:
        super().__init__()
        self._fut = fut
        self._what = what

    def wait(self, timeout: datetime.timedelta | None = None) -> bool:
        """Block until done (at most ``timeout``, if non-zero); raise the collective's error."""
        limit = timeout.total_seconds() if timeout else 0.0
        if limit > 0 and not self._fut.done():
            done = threading.Event()
            self._fut.add_done_callback(lambda _: done.set())
            if not done.wait(limit):
                from hfreduce.errors import CollectiveTimeoutError

                raise CollectiveTimeoutError(
                    f"{self._what} did not complete within {limit:g} s (Work.wait timeout)"
                )
        self._fut.wait()
        return True

    def is_completed(self) -> bool:
        """Whether the collective finished, successfully or not."""
        return self._fut.done()

    def is_success(self) -> bool:
        """Whether it finished without an error."""
        return self.exception() is None and self._fut.done()

    def exception(self) -> BaseException | None:
        """The collective's error once it failed, else None."""
        if not self._fut.done():
            return None
        try:
            self._fut.value()
        except Exception as exc:
            return exc
        return None

    def result(self) -> list[torch.Tensor]:
        """The tensors of the call (raises its error if it failed)."""
        return self._fut.wait()

    def get_future(self) -> torch.futures.Future:
        """The future completed with the tensors, or with the error."""
        return self._fut

    def synchronize(self) -> None:
        """CPU collectives: nothing to order on a stream."""


class ProcessGroupHFReduce(dist.ProcessGroup):
    """The world group, reducing through HFReduce; collectives return Works completed by a background thread."""

    def __init__(self, rank: int, world_size: int, timeout: datetime.timedelta) -> None:
        super().__init__(rank, world_size)
        import hfreduce

        self._hf = hfreduce
        self._rank = rank
        self._world_size = world_size
        self._timeout = timeout

    def getBackendName(self) -> str:
        """``"hfreduce"``."""
        return BACKEND_NAME

    def size(self) -> int:
        """Number of ranks."""
        return self._world_size

    def rank(self) -> int:
        """This process's rank."""
        return self._rank

    # ---- supported collectives ---------------------------------------------------------------
    def allreduce(self, tensors: list[torch.Tensor], opts: AllreduceOptions = AllreduceOptions()) -> Any:
        """Sum (or average) each tensor in place across ranks."""
        op = _op_name(opts.reduceOp)
        works = [self._hf.allreduce(t, op=op, async_op=True) for t in tensors]
        return self._work(works, tensors, f"allreduce({op}) of {len(tensors)} tensor(s)")

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any = None) -> Any:
        """One allreduce per tensor (HFReduce pipelines them in issue order)."""
        return self.allreduce(tensors, opts if opts is not None else AllreduceOptions())

    def broadcast(self, tensors: list[torch.Tensor], opts: BroadcastOptions = BroadcastOptions()) -> Any:
        """Copy rank ``opts.rootRank``'s tensors into every rank's."""
        root = int(opts.rootRank)
        works = [self._hf.broadcast(t, root=root, async_op=True) for t in tensors]
        return self._work(works, tensors, f"broadcast from rank {root}")

    def reduce(self, tensors: list[torch.Tensor], opts: ReduceOptions = ReduceOptions()) -> Any:
        """Sum (or average) into rank ``opts.rootRank``'s tensors; the others keep theirs."""
        op = _op_name(opts.reduceOp)
        root = int(opts.rootRank)
        works = [self._hf.reduce(t, root=root, op=op, async_op=True) for t in tensors]
        return self._work(works, tensors, f"reduce({op}) to rank {root}")

    def barrier(self, opts: BarrierOptions = BarrierOptions()) -> Any:
        """Completes once every rank has entered the barrier (a one-element allreduce)."""
        token = torch.zeros(1, dtype=torch.float32)
        works = [self._hf.allreduce(token, op="sum", async_op=True)]
        return self._work(works, [token], "barrier")

    def _work(self, works: list[Any], tensors: list[torch.Tensor], what: str) -> Any:
        fut = future_of(works, lambda: tensors, f"rank {self._rank}: {what}", keep_type=True)
        return _FutureWork(fut, f"rank {self._rank}: {what}")

    # ---- everything else: a clear error naming the collective ---------------------------------
    def _unsupported(self, name: str) -> Any:
        raise NotImplementedError(
            f"hfreduce backend does not support {name}; it implements allreduce (SUM/AVG), broadcast, "
            "reduce and barrier. Use a gloo group (dist.new_group(backend='gloo')) for the rest."
        )

    def allgather(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("allgather")

    def _allgather_base(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("allgather (all_gather_into_tensor)")

    def allgather_coalesced(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("allgather_coalesced")

    def allgather_into_tensor_coalesced(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("allgather_into_tensor_coalesced")

    def gather(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("gather")

    def scatter(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("scatter")

    def reduce_scatter(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("reduce_scatter")

    def _reduce_scatter_base(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("reduce_scatter (reduce_scatter_tensor)")

    def reduce_scatter_tensor_coalesced(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("reduce_scatter_tensor_coalesced")

    def alltoall(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("alltoall")

    def alltoall_base(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("alltoall (all_to_all_single)")

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("send")

    def recv(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("recv")

    def recv_anysource(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("recv (from any source)")

    def monitored_barrier(self, *args: Any, **kwargs: Any) -> Any:
        return self._unsupported("monitored_barrier")


def create_hfreduce_process_group(
    store: dist.Store, rank: int, world_size: int, timeout: datetime.timedelta
) -> ProcessGroupHFReduce:
    """The creator ``init_process_group`` calls: start HFReduce over ``store`` (or reuse it) and wrap it."""
    import hfreduce
    from hfreduce import StoreExchange

    if hfreduce.is_initialized():
        if (hfreduce.get_rank(), hfreduce.get_world_size()) != (rank, world_size):
            raise HaiScaleError(
                f"hfreduce backend: rank {rank} of a group of {world_size}, but HFReduce runs as rank "
                f"{hfreduce.get_rank()} of {hfreduce.get_world_size()}; it supports only the world group"
            )
    else:
        timeout_s = timeout.total_seconds() if timeout is not None else None
        start_s = max(10.0, timeout_s) if timeout_s is not None else 60.0
        # The group's timeout is HFReduce's: a collective whose peer is lost or stuck fails after it.
        hfreduce.init(
            timeout_s=timeout_s,
            exchange=StoreExchange(store, rank, world_size, timeout_s=min(start_s, 300.0)),
        )
    return ProcessGroupHFReduce(rank, world_size, timeout)


def register() -> None:
    """Register ``"hfreduce"`` with ``torch.distributed`` (CPU tensors); safe to call twice."""
    if BACKEND_NAME.upper() in dist.Backend._plugins:
        return
    dist.Backend.register_backend(BACKEND_NAME, create_hfreduce_process_group, devices=["cpu"])


register()
