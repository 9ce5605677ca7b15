"""HFReduce as a ``torch.distributed`` backend: ``init_process_group(backend="hfreduce")``.

A Python ``ProcessGroup`` over the process-wide HFReduce communicator: ``allreduce``, ``reduce`` and
``reduce_scatter`` (list and tensor; SUM, AVG) on contiguous CPU float32/float16/bfloat16 tensors;
``broadcast``, ``barrier``, ``allgather`` (list and into-tensor), ``all_to_all`` (list and single, equal
splits), ``gather`` and ``scatter`` on any dtype (see ``hfreduce._collectives``), so stock DDP and FSDP
run on it. Every other collective (send/recv, uneven all_to_all) raises ``NotImplementedError``.
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
    GatherOptions,
    ReduceOp,
    ReduceOptions,
    ScatterOptions,
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

    # A Python ProcessGroup has no C++ backend to keep its name (DeviceMesh and FSDP look it up): keep it here.
    def _set_group_name(self, name: str) -> None:
        self._group_name = name

    @property
    def group_name(self) -> str:
        """The name torch registered this group under."""
        name = getattr(self, "_group_name", None)
        if name is None:
            raise HaiScaleError(
                "hfreduce backend: the process group has no name yet (init_process_group sets it)"
            )
        return name

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

    def allgather(
        self,
        output_tensors: list[list[torch.Tensor]],
        input_tensors: list[torch.Tensor],
        opts: Any = None,
    ) -> Any:
        """Every rank's input into each rank's list of outputs (any dtype)."""
        works = [
            self._hf.allgather(outs, inp, async_op=True)
            for outs, inp in zip(output_tensors, input_tensors, strict=True)
        ]
        return self._work(works, output_tensors, "allgather")

    def allgather_coalesced(
        self,
        output_lists: list[list[torch.Tensor]],
        input_list: list[torch.Tensor],
        opts: Any = None,
    ) -> Any:
        """One allgather per input, in issue order."""
        return self.allgather(output_lists, input_list, opts)

    def _allgather_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> Any:
        """all_gather_into_tensor: rank r's input into ``output[r*n:(r+1)*n]``."""
        works = [self._hf.allgather(output, input, async_op=True)]
        return self._work(works, output, "all_gather_into_tensor")

    def allgather_into_tensor_coalesced(
        self,
        outputs: list[torch.Tensor],
        inputs: list[torch.Tensor],
        opts: Any = None,
    ) -> Any:
        """One all_gather_into_tensor per pair."""
        works = [self._hf.allgather(o, i, async_op=True) for o, i in zip(outputs, inputs, strict=True)]
        return self._work(works, outputs, "all_gather_into_tensor (coalesced)")

    def reduce_scatter(
        self,
        output_tensors: list[torch.Tensor],
        input_tensors: list[list[torch.Tensor]],
        opts: Any = None,
    ) -> Any:
        """Sum (or average) part r of every rank's input list into rank r's output."""
        op = _op_name(opts.reduceOp if opts is not None else ReduceOp.SUM)
        works = [
            self._hf.reduce_scatter(o, ins, op=op, async_op=True)
            for o, ins in zip(output_tensors, input_tensors, strict=True)
        ]
        return self._work(works, output_tensors, f"reduce_scatter({op})")

    def _reduce_scatter_base(self, output: torch.Tensor, input: torch.Tensor, opts: Any = None) -> Any:
        """reduce_scatter_tensor: the sum of ``input[r*n:(r+1)*n]`` over ranks into rank r's ``output``."""
        op = _op_name(opts.reduceOp if opts is not None else ReduceOp.SUM)
        works = [self._hf.reduce_scatter(output, input, op=op, async_op=True)]
        return self._work(works, output, f"reduce_scatter_tensor({op})")

    def reduce_scatter_tensor_coalesced(
        self,
        outputs: list[torch.Tensor],
        inputs: list[torch.Tensor],
        opts: Any = None,
    ) -> Any:
        """One reduce_scatter_tensor per pair."""
        op = _op_name(opts.reduceOp if opts is not None else ReduceOp.SUM)
        works = [
            self._hf.reduce_scatter(o, i, op=op, async_op=True) for o, i in zip(outputs, inputs, strict=True)
        ]
        return self._work(works, outputs, f"reduce_scatter_tensor({op}) (coalesced)")

    def alltoall(
        self, output_tensors: list[torch.Tensor], input_tensors: list[torch.Tensor], opts: Any = None
    ) -> Any:
        """all_to_all: input j of rank i into output i of rank j (equal sizes)."""
        works = [self._hf.all_to_all(output_tensors, input_tensors, async_op=True)]
        return self._work(works, output_tensors, "all_to_all")

    def alltoall_base(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        output_split_sizes: list[int],
        input_split_sizes: list[int],
        opts: Any = None,
    ) -> Any:
        """all_to_all_single with equal splits (uneven splits raise NotImplementedError)."""
        if output_split_sizes or input_split_sizes:
            n = self._world_size
            even_in = input.shape[0] // n if input.dim() else 0
            even_out = output.shape[0] // n if output.dim() else 0
            if (
                list(input_split_sizes or [even_in] * n) != [even_in] * n
                or list(output_split_sizes or [even_out] * n) != [even_out] * n
            ):
                raise NotImplementedError(
                    "hfreduce backend: all_to_all_single takes equal splits only, not "
                    f"input_split_sizes={list(input_split_sizes)} output_split_sizes={list(output_split_sizes)}"
                )
        works = [self._hf.all_to_all(output, input, async_op=True)]
        return self._work(works, output, "all_to_all_single")

    def gather(
        self,
        output_tensors: list[list[torch.Tensor]],
        input_tensors: list[torch.Tensor],
        opts: GatherOptions = GatherOptions(),
    ) -> Any:
        """Every rank's input into the root's list of outputs."""
        root = int(opts.rootRank)
        outs = output_tensors[0] if self._rank == root else None
        works = [self._hf.gather(input_tensors[0], outs, root=root, async_op=True)]
        return self._work(works, output_tensors, f"gather to rank {root}")

    def scatter(
        self,
        output_tensors: list[torch.Tensor],
        input_tensors: list[list[torch.Tensor]],
        opts: ScatterOptions = ScatterOptions(),
    ) -> Any:
        """Part r of the root's input list into rank r's output."""
        root = int(opts.rootRank)
        ins = input_tensors[0] if self._rank == root else None
        works = [self._hf.scatter(output_tensors[0], ins, root=root, async_op=True)]
        return self._work(works, output_tensors, f"scatter from rank {root}")

    # torch 2.13's names for the single-tensor forms (the underscored ones are what older releases call).
    all_gather_single = _allgather_base
    all_gather_single_coalesced = allgather_into_tensor_coalesced
    reduce_scatter_single = _reduce_scatter_base
    reduce_scatter_single_coalesced = reduce_scatter_tensor_coalesced
    all_to_all_single = alltoall_base

    # ---- everything else: a clear error naming the collective ---------------------------------
    def _unsupported(self, name: str) -> Any:
        raise NotImplementedError(
            f"hfreduce backend does not support {name}; it implements allreduce (SUM/AVG), broadcast, "
            "reduce, barrier, allgather, reduce_scatter, all_to_all, gather and scatter. Use a gloo group "
            "(dist.new_group(backend='gloo')) for the rest."
        )

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
