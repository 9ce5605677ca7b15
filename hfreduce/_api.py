"""The process-wide communicator behind hfreduce's public functions."""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ffcommon.config import env_float, env_int
from hfreduce import _C
from hfreduce._bootstrap import Exchange, Topology, make_exchange, node_key, topology_from_keys
from hfreduce.errors import CollectiveTimeoutError, HFReduceError, UsageError

_DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}
_KIND = {"allreduce": 0, "broadcast": 1, "reduce": 2}
_OPS = {"sum": 0, "avg": 1}

_lock = threading.Lock()
_group: _Group | None = None


class Handle:
    """Handle of an asynchronous collective: ``wait()`` blocks (GIL released) and raises its error, if any.

    A composite collective (allgather, ...) is several steps; its handle waits for all of them, raises
    the first error, and only then writes the outputs (``finish``), so a failed one never looks done.
    """

    __slots__ = ("_states", "_keep", "_what", "_finish")

    def __init__(
        self,
        states: list[_C.WorkState],
        keep: object,
        what: str,
        finish: Callable[[], None] | None = None,
    ) -> None:
        self._states = states
        self._keep = keep  # keeps the buffers alive until the collective is over
        self._what = what
        self._finish = finish

    def is_completed(self) -> bool:
        """Whether the collective finished (successfully or not); never blocks."""
        return all(s.done() for s in self._states)

    def _wait_states(self, timeout_s: float | None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
        for s in self._states:
            left = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if not s.wait(left):
                return False
        return True

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the collective is done; raise its HFReduceError; with ``timeout_s``, raise if still running."""
        if not self._wait_states(timeout_s):
            raise CollectiveTimeoutError(
                f"{self._what} did not complete within {timeout_s:g} s (it is still running)"
            )
        for s in self._states:
            s.raise_if_failed()
        if self._finish is not None:
            finish, self._finish = self._finish, None
            finish()
        self._keep = None
        return True


class _Group:
    """One rank's view of the job: topology, the C++ communicator and the buffers of pending collectives."""

    def __init__(self, topo: Topology, comm: _C.Communicator, settings: dict[str, Any]) -> None:
        self.topo = topo
        self.comm = comm
        self.settings = settings
        self.pending: deque[Handle] = deque()
        heap_addr, heap_bytes = comm.heap_range()
        self.heap_range = (heap_addr, heap_addr + heap_bytes)

    def submit(self, kind: str, buf: object, op: str, root: int, async_op: bool) -> Handle | None:
        ptr, count, dtype = buffer_info(buf, self.topo.rank)
        state = self.step(kind, buf, op, root)
        return self.finish(
            Handle([state], buf, f"rank {self.topo.rank}: {kind} of {count} {dtype}"), async_op
        )

    def step(
        self, kind: str, buf: object, op: str = "sum", root: int = 0, part: tuple[str, str, int] | None = None
    ) -> Any:
        """Queue one allreduce/broadcast/reduce of ``buf``; ``part`` = (composite name, element dtype, root)."""
        if op not in _OPS:
            raise UsageError(f"rank {self.topo.rank}: op={op!r} is not supported (use one of {sorted(_OPS)})")
        ptr, count, dtype = buffer_info(buf, self.topo.rank)
        while self.pending and self.pending[0].is_completed():
            self.pending.popleft()
        name, elem, part_root = part if part is not None else ("", "", -1)
        return self.comm.submit(
            _KIND[kind], _OPS[op], int(root), _DTYPE_CODES[dtype], ptr, count, name, elem, int(part_root)
        )

    def finish(self, handle: Handle, async_op: bool) -> Handle | None:
        """Return ``handle`` (async) or wait for it."""
        if async_op:
            self.pending.append(handle)
            return handle
        handle.wait()
        return None


def buffer_info(buf: object, rank: int) -> tuple[int, int, str]:
    """(address, element count, dtype name) of a writable contiguous CPU buffer, without copying it."""
    mod = type(buf).__module__
    if mod.startswith("torch") and hasattr(buf, "data_ptr"):
        t: Any = buf
        if t.device.type != "cpu":
            raise UsageError(f"rank {rank}: tensor is on {t.device}; HFReduce takes CPU tensors")
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPE_CODES:
            raise UsageError(
                f"rank {rank}: unsupported dtype {dtype} (HFReduce reduces float32, float16, bfloat16)"
            )
        if not t.is_contiguous():
            raise UsageError(
                f"rank {rank}: tensor of shape {tuple(t.shape)} with strides {t.stride()} is not contiguous; "
                "pass t.contiguous() (and copy the result back)"
            )
        return t.data_ptr(), t.numel(), dtype
    if not isinstance(buf, np.ndarray):
        try:
            buf = np.asarray(memoryview(buf))  # type: ignore[arg-type]  # a view, not a copy
        except TypeError as exc:
            raise UsageError(
                f"rank {rank}: {type(buf).__name__} is neither a numpy array, a torch tensor nor a buffer"
            ) from exc
    arr: np.ndarray = buf  # type: ignore[assignment]
    dtype = arr.dtype.name
    if dtype not in _DTYPE_CODES:
        raise UsageError(
            f"rank {rank}: unsupported dtype {dtype} (HFReduce reduces float32, float16, bfloat16)"
        )
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        raise UsageError(
            f"rank {rank}: array of shape {arr.shape} with strides {arr.strides} is not contiguous; "
            "pass np.ascontiguousarray(a) (and copy the result back)"
        )
    if not arr.flags.writeable:
        raise UsageError(f"rank {rank}: array is read-only; HFReduce writes the result in place")
    return arr.__array_interface__["data"][0], arr.size, dtype


def init(
    *,
    timeout_s: float | None = None,
    algo: str | None = None,
    chunk_bytes: int | None = None,
    heap_bytes: int | None = None,
    exchange: Exchange | None = None,
) -> Topology:
    """Join the job (mpirun or env vars), map the node's shared segment and connect node leaders. Idempotent.

    ``exchange`` replaces the start-up rendezvous found from the environment (e.g. a
    :class:`hfreduce.StoreExchange` over torch's store); init closes it when done.
    """
    global _group
    with _lock:
        if _group is not None:
            return _group.topo
        timeout = timeout_s if timeout_s is not None else env_float("HFREDUCE_TIMEOUT_S", 30.0, UsageError)
        if not timeout > 0:
            raise UsageError(
                f"hfreduce.init: timeout_s must be a positive number of seconds, not {timeout!r}"
            )
        settings = {
            "timeout_s": timeout,
            "algo": algo or os.environ.get("HFREDUCE_ALGO", "tree"),
            "chunk_bytes": chunk_bytes or env_int("HFREDUCE_CHUNK_BYTES", 1 << 20, UsageError),
            "depth": env_int("HFREDUCE_PIPELINE_DEPTH", 4, UsageError),
            "heap_bytes": heap_bytes or env_int("HFREDUCE_SHM_HEAP_BYTES", 1 << 30, UsageError),
            "streaming_threshold_bytes": env_int("HFREDUCE_STREAMING_BYTES", 8 << 20, UsageError),
            "debug": os.environ.get("HFREDUCE_DEBUG") == "1",
        }
        if settings["algo"] not in ("tree", "ring"):
            raise UsageError(f"HFREDUCE_ALGO must be 'tree' or 'ring', not {settings['algo']!r}")
        ex = exchange if exchange is not None else make_exchange(max(timeout, 10.0))
        try:
            hostname = socket.gethostname()
            first = ex.allgather(
                {"key": node_key(ex.rank, hostname), "job": uuid.uuid4().hex[:12], "pid": os.getpid()}
            )
            topo = topology_from_keys(ex.rank, [f["key"] for f in first])
            job = first[0]["job"]
            cfg = {
                "rank": topo.rank,
                "world_size": topo.world_size,
                "local_rank": topo.local_rank,
                "local_size": topo.local_size,
                "node": topo.node,
                "num_nodes": topo.num_nodes,
                "local_ranks": topo.local_ranks,
                "node_leaders": topo.node_leaders,
                "shm_name": f"/hfreduce-{job}-n{topo.node}",
                "job_id": int(job, 16),
                **settings,
            }
            comm = _C.Communicator(cfg)
            addr = os.environ.get("HFREDUCE_IFADDR") or (
                ex.my_address() if topo.num_nodes > 1 else "127.0.0.1"
            )
            eps = ex.allgather([addr, comm.port(), topo.rank])
            comm.connect([tuple(eps[r]) for r in topo.node_leaders])
            if topo.local_rank == 0:
                comm.unlink_shm()  # a no-op: the leader's constructor removed the name once its node had mapped it
        finally:
            ex.close()
        _group = _Group(topo, comm, settings)
        return topo


def finalize() -> None:
    """Finish queued collectives, stop the communicator's threads and close connections. Safe to call twice."""
    global _group
    with _lock:
        g, _group = _group, None
    if g is not None:
        for w in list(g.pending):
            try:
                w._wait_states(None)
            except Exception:
                pass
        g.comm.shutdown()


atexit.register(finalize)


def group() -> _Group:
    """The initialised group, or a UsageError."""
    g = _group
    if g is None:
        raise UsageError("hfreduce is not initialised: call hfreduce.init() first")
    return g


def shm_buffer(nbytes: int) -> np.ndarray:
    """A uint8 array of ``nbytes`` inside this rank's part of the node's shared segment."""
    return group().comm.heap_array(int(nbytes))


def wait_all(works: list[Handle], timeout_s: float | None = None) -> None:
    """Wait for every handle in ``works`` (in order)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for w in works:
        w.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))


__all__ = ["HFReduceError", "Handle", "buffer_info", "finalize", "group", "init", "shm_buffer", "wait_all"]
