"""HaiScale DistributedDataParallel: bucketed gradient allreduce on HFReduce, overlapped with backward.

Each parameter's post-accumulate-grad hook copies its gradient (scaled by 1/world_size, as torch DDP
does) into its bucket's flat buffer; when a bucket's last gradient has arrived, and every earlier
bucket has been started (all ranks must issue collectives in the same order), its allreduce starts
asynchronously. Backward does not wait: the next ``optimizer.step()`` (a global step pre-hook), the
next forward, or an explicit ``synchronize()`` waits for whatever is still in flight and writes the
averaged gradients back into ``param.grad``.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.autograd import Variable

from fireflyer.haiscale._buckets import DEFAULT_BUCKET_CAP_MB, DEFAULT_FIRST_BUCKET_CAP_MB, assign_buckets
from fireflyer.haiscale._comm import Communicator, Waitable, default_communicator
from fireflyer.haiscale.errors import (
    BackwardIncompleteError,
    CommunicationError,
    HaiScaleError,
    UnusedParametersError,
)

_MiB = 1024 * 1024


class _Bucket:
    """A flat buffer holding the gradients of ``param_indices`` at ``offsets``."""

    def __init__(self, index: int, param_indices: list[int], params: list[nn.Parameter], comm: Communicator):
        self.index = index
        self.param_indices = param_indices
        self.offsets: list[int] = []
        total = 0
        for i in param_indices:
            self.offsets.append(total)
            total += params[i].numel()
        self.numel = total
        self.dtype = params[param_indices[0]].dtype
        self.buffer = comm.empty(total, self.dtype)
        self.views = [
            self.buffer[off : off + params[i].numel()].view(params[i].shape)
            for i, off in zip(param_indices, self.offsets, strict=True)
        ]
        self.pending = len(param_indices)
        self.work: Waitable | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.buffer.element_size()


class DistributedDataParallel(nn.Module):
    """Data-parallel wrapper whose gradient allreduce runs on a ``Communicator`` (HFReduce by default).

    Same contract as ``torch.nn.parallel.DistributedDataParallel`` for dense CPU parameters: parameters
    and buffers are broadcast from rank 0 at construction, gradients are averaged over ranks, and
    parameters with no gradient raise ``UnusedParametersError`` unless ``find_unused_parameters=True``.
    ``overlap=False`` starts every allreduce only after backward has finished and waits for it there
    (the no-overlap baseline of the benchmark).
    """

    def __init__(
        self,
        module: nn.Module,
        comm: Communicator | None = None,
        *,
        bucket_cap_mb: float = DEFAULT_BUCKET_CAP_MB,
        first_bucket_cap_mb: float = DEFAULT_FIRST_BUCKET_CAP_MB,
        find_unused_parameters: bool = False,
        gradient_as_bucket_view: bool = False,
        broadcast_buffers: bool = True,
        overlap: bool = True,
    ) -> None:
        super().__init__()
        if bucket_cap_mb <= 0 or first_bucket_cap_mb <= 0:
            raise HaiScaleError(
                f"bucket_cap_mb ({bucket_cap_mb}) and first_bucket_cap_mb ({first_bucket_cap_mb}) must be > 0"
            )
        self.module = module
        self.comm = comm if comm is not None else default_communicator()
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.broadcast_buffers = broadcast_buffers
        self.overlap = overlap

        seen: set[int] = set()
        self._params: list[nn.Parameter] = []
        self._names: list[str] = []
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            cuda_ok = p.device.type == "cuda" and getattr(self.comm, "accepts_cuda", False)
            if p.device.type != "cpu" and not cuda_ok:
                raise HaiScaleError(
                    f"parameter {name!r} is on {p.device}: this communicator reduces CPU tensors; pass "
                    "comm=fireflyer.haiscale.cuda.CudaStagingCommunicator(device) for CUDA gradients"
                )
            if p.layout != torch.strided:
                raise HaiScaleError(
                    f"parameter {name!r} has layout {p.layout}: only dense parameters are supported"
                )
            self._params.append(p)
            self._names.append(name)
        if not self._params:
            raise HaiScaleError("the module has no parameters that require gradients")

        self.bucket_indices = assign_buckets(
            self._params, int(bucket_cap_mb * _MiB), int(first_bucket_cap_mb * _MiB)
        )
        self._buckets = [
            _Bucket(k, idx, self._params, self.comm) for k, idx in enumerate(self.bucket_indices)
        ]
        self._where: list[tuple[int, int]] = [(0, 0)] * len(self._params)  # param -> (bucket, slot)
        for b in self._buckets:
            for slot, i in enumerate(b.param_indices):
                self._where[i] = (b.index, slot)

        self._ready = [False] * len(self._params)
        self._used = torch.zeros(len(self._params), dtype=torch.float32)
        self._used_work: Waitable | None = None
        self._unused_in_forward: list[int] = []
        self._next_launch = 0
        self._in_backward = False
        self._pending = False
        self._require_sync = True
        self._error: HaiScaleError | None = None
        self._lock = threading.Lock()

        self._sync_module_states()
        self._hook_handles = [
            p.register_post_accumulate_grad_hook(self._make_hook(i)) for i, p in enumerate(self._params)
        ]
        _LIVE.add(self)
        _install_optimizer_hook()

    # ----------------------------------------------------------------- public API
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped module after finishing the previous step's gradient synchronization."""
        self._check_usable()
        self.synchronize()
        if self.broadcast_buffers and self.comm.world_size > 1:
            self._broadcast_buffers()
        out = self.module(*args, **kwargs)
        self._unused_in_forward = []
        if self.find_unused_parameters and self._require_sync and torch.is_grad_enabled():
            self._unused_in_forward = self._find_unused(out)
        return out

    def synchronize(self) -> None:
        """Wait for every gradient allreduce still in flight and write the averages into ``param.grad``."""
        with self._lock:
            if not self._pending:
                return
            try:
                for b in self._buckets:
                    assert b.work is not None
                    self.comm.wait(b.work, self._describe(b))
                    b.work = None
                global_used = None
                if self._used_work is not None:
                    self.comm.wait(self._used_work, "allreduce of the used-parameter map")
                    self._used_work = None
                    global_used = self._used > 0
            except HaiScaleError as exc:
                self._error = exc
                self._pending = False
                raise
            for b in self._buckets:
                for slot, i in enumerate(b.param_indices):
                    if global_used is not None and not bool(global_used[i]):
                        continue  # unused on every rank: leave .grad as it was, like torch DDP
                    self._write_back(self._params[i], b.views[slot])
            self._pending = False

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Accumulate gradients locally (no allreduce) inside this context, like torch DDP's ``no_sync``."""
        old = self._require_sync
        self._require_sync = False
        try:
            yield
        finally:
            self._require_sync = old

    def close(self) -> None:
        """Remove the autograd hooks (the module keeps working, unsynchronized)."""
        for h in self._hook_handles:
            h.remove()
        self._hook_handles = []
        _LIVE.discard(self)

    # ----------------------------------------------------------------- internals
    def _make_hook(self, i: int):
        def hook(p: torch.Tensor) -> None:
            self._on_grad_ready(i)

        return hook

    def _on_grad_ready(self, i: int) -> None:
        if not self._require_sync:
            return
        if not self._in_backward:
            self._begin_backward()
        if self._ready[i]:
            raise HaiScaleError(
                f"rank {self.comm.rank}: parameter {self._names[i]!r} received a gradient twice in one backward "
                "pass (reentrant backward or two backward passes without a forward); this is not supported"
            )
        self._copy_in(i)
        self._used[i] = 1.0
        self._mark_ready(i)
        if self.overlap:
            self._launch_ready_buckets()

    def _begin_backward(self) -> None:
        self._check_usable()
        if self._pending:
            raise HaiScaleError(
                f"rank {self.comm.rank}: backward started while the previous step's gradients are still being "
                "reduced; run forward (or call synchronize()) between backward passes"
            )
        self._in_backward = True
        self._ready = [False] * len(self._params)
        self._used.zero_()
        self._next_launch = 0
        for b in self._buckets:
            b.pending = len(b.param_indices)
        Variable._execution_engine.queue_callback(self._end_backward)
        for i in self._unused_in_forward:
            self._copy_in(i)
            self._mark_ready(i)

    def _end_backward(self) -> None:
        self._in_backward = False
        missing = [i for i, r in enumerate(self._ready) if not r]
        if missing and not self.find_unused_parameters:
            names = [self._names[i] for i in missing]
            self._error = UnusedParametersError(
                f"rank {self.comm.rank}: {len(names)} parameter(s) received no gradient in this backward pass: "
                f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}. Pass find_unused_parameters=True "
                "to DistributedDataParallel if the model does not use every parameter in every step, or make "
                "sure all forward outputs take part in the loss"
            )
            raise self._error
        for i in missing:
            self._copy_in(i)
            self._mark_ready(i)
        self._launch_ready_buckets()
        if self._next_launch != len(self._buckets):  # pragma: no cover - every param is ready here
            raise HaiScaleError("internal error: buckets left unlaunched at the end of backward")
        if self.find_unused_parameters:
            self._used_work = self.comm.allreduce_async(self._used)
        self._pending = True
        if not self.overlap:
            self.synchronize()

    def _copy_in(self, i: int) -> None:
        """Put parameter ``i``'s gradient, divided by the world size, into its bucket slot."""
        b_idx, slot = self._where[i]
        view = self._buckets[b_idx].views[slot]
        grad = self._params[i].grad
        if grad is None:
            view.zero_()
        elif _is_alias(grad, view):
            view.div_(self.comm.world_size)
        else:
            # torch DDP multiplies by 1/world_size while copying (one pass over the gradient).
            torch.mul(grad, 1.0 / self.comm.world_size, out=view)

    def _mark_ready(self, i: int) -> None:
        self._ready[i] = True
        b = self._buckets[self._where[i][0]]
        b.pending -= 1

    def _launch_ready_buckets(self) -> None:
        while self._next_launch < len(self._buckets) and self._buckets[self._next_launch].pending == 0:
            b = self._buckets[self._next_launch]
            try:
                b.work = self.comm.allreduce_async(b.buffer)
            except Exception as exc:
                self._error = CommunicationError(
                    f"rank {self.comm.rank}: starting {self._describe(b)}: {exc}"
                )
                raise self._error from exc
            self._next_launch += 1

    def _write_back(self, p: nn.Parameter, view: torch.Tensor) -> None:
        if p.grad is not None and _is_alias(p.grad, view):
            return
        if self.gradient_as_bucket_view:
            p.grad = view
        elif p.grad is None:
            p.grad = view.clone()
        else:
            p.grad.copy_(view)

    def _describe(self, b: _Bucket) -> str:
        first, last = self._names[b.param_indices[0]], self._names[b.param_indices[-1]]
        return f"allreduce of bucket {b.index} ({b.nbytes} bytes, parameters {first} .. {last})"

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._in_backward:
            self._error = BackwardIncompleteError(
                f"rank {self.comm.rank}: the previous backward pass stopped before it finished (an exception "
                "inside backward?); the other ranks cannot be matched any more, restart the job"
            )
            raise self._error

    def _sync_module_states(self) -> None:
        if self.comm.world_size == 1:
            return
        with torch.no_grad():
            for t in list(self.module.parameters()) + list(self.module.buffers()):
                self._broadcast_tensor(t)

    def _broadcast_buffers(self) -> None:
        with torch.no_grad():
            for t in self.module.buffers():
                self._broadcast_tensor(t)

    def _broadcast_tensor(self, t: torch.Tensor) -> None:
        if t.is_contiguous():
            self.comm.broadcast(t.data if isinstance(t, nn.Parameter) else t, 0)
        else:
            tmp = t.detach().contiguous()
            self.comm.broadcast(tmp, 0)
            t.copy_(tmp)

    def _find_unused(self, out: object) -> list[int]:
        """Indices of parameters not reachable from ``out``'s autograd graph (done every forward)."""
        roots = [t.grad_fn for t in _tensors_in(out) if t.grad_fn is not None]
        index = {id(p): i for i, p in enumerate(self._params)}
        used: set[int] = set()
        stack, seen = roots, set()
        while stack:
            fn = stack.pop()
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            var = getattr(fn, "variable", None)
            if var is not None and id(var) in index:
                used.add(index[id(var)])
            stack.extend(nxt for nxt, _ in fn.next_functions)
        # Parameters used directly as outputs (no grad_fn) count as used as well.
        for t in _tensors_in(out):
            if id(t) in index:
                used.add(index[id(t)])
        return [i for i in range(len(self._params)) if i not in used]


def _is_alias(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape


def _tensors_in(obj: object) -> list[torch.Tensor]:
    from torch.utils._pytree import tree_leaves

    return [x for x in tree_leaves(obj) if isinstance(x, torch.Tensor)]


# Every live DDP instance: the global optimizer step pre-hook waits for their gradients.
_LIVE: weakref.WeakSet[DistributedDataParallel] = weakref.WeakSet()
_HOOK_INSTALLED = False


def _install_optimizer_hook() -> None:
    global _HOOK_INSTALLED
    if _HOOK_INSTALLED:
        return
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    def _wait_for_gradients(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        for ddp in list(_LIVE):
            ddp.synchronize()

    register_optimizer_step_pre_hook(_wait_for_gradients)
    _HOOK_INSTALLED = True
