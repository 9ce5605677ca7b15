"""HFReduce: allreduce whose reduction runs on the CPU in the node's shared memory (Fire-Flyer §IV).

Ranks of a node put their data in one POSIX shared-memory segment; every local rank sums one slice
of each chunk with SIMD kernels; one leader per node allreduces the node's partial sums with the
other leaders over TCP by a double binary tree (or a ring, ``HFREDUCE_ALGO=ring``); the result is
copied back to every rank. Chunks pipeline through copy-in, reduce, network and copy-out.

Usage (under ``mpirun -np N python x.py`` or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set)::

    import hfreduce, numpy as np
    hfreduce.init()
    a = np.ones(1 << 20, np.float32)
    hfreduce.allreduce(a)                         # in place: a == world_size
    w = hfreduce.allreduce(torch_tensor, async_op=True)
    ...                                           # overlap compute
    w.wait()                                      # raises HFReduceError if it failed
    g = hfreduce.zeros(1 << 20, np.float32)       # lives in the shared segment: zero-copy allreduce

Contract for HaiScale DDP (and any other caller):
- ``allreduce(tensor, op="sum"|"avg", async_op=True)`` accepts contiguous CPU float32/float16/bfloat16
  torch tensors or numpy arrays (no copy in Python) and returns a :class:`Handle`. Collectives run in
  issue order on one background C++ thread (GIL released), so several may be in flight; every rank
  must issue the same sequence. Do not touch the buffer until ``wait()`` returned.
- ``Handle.wait(timeout_s=None)`` blocks and raises the collective's error; ``Handle.is_completed()`` polls
  (torch's own ``Work`` is what the ``"hfreduce"`` torch backend returns).
- Errors (``hfreduce.errors``): :class:`MismatchError` when ranks disagree on count/dtype/op/root
  (raised on every rank, nothing moved, the communicator stays usable); :class:`CollectiveTimeoutError` /
  :class:`PeerLostError` when a rank died, or stalled longer than the timeout (``init(timeout_s=)``, else
  ``HFREDUCE_TIMEOUT_S``, default 30 s): every survivor raises within about that timeout, naming the
  collective, its sequence number, its size, the lost rank and which ranks had arrived; the communicator
  is then failed and every later call raises at once; :class:`UsageError` for bad input detected
  locally (dtype, non-contiguous, not initialised). No failed collective returns as a success.
- :func:`allgather` (a list of outputs, or one output tensor), :func:`reduce_scatter` (a list of
  inputs, or one input tensor; sum/avg), :func:`all_to_all`, :func:`gather` and :func:`scatter` take
  the same buffers (any dtype except reduce_scatter's float-only) and ``async_op``; they run as
  sequences of the broadcasts/reduces above, each agreed across ranks (hfreduce._collectives).
- Buffers from :func:`empty`/:func:`zeros`/:func:`empty_like` live in the node's shared segment
  and skip the copy-in (and, on one node, the copy-out).

Settings (env): HFREDUCE_TIMEOUT_S, HFREDUCE_DEBUG=1 (log every collective's entry and exit, per rank,
on stderr), HFREDUCE_ALGO (tree|ring), HFREDUCE_LOCAL_WORLD_SIZE (ranks per
"node", to test several nodes on one machine), HFREDUCE_NODE_ID, HFREDUCE_IFADDR (address leaders
advertise), HFREDUCE_CHUNK_BYTES (1 MiB), HFREDUCE_PIPELINE_DEPTH (4), HFREDUCE_SHM_HEAP_BYTES
(1 GiB per rank, sparse), HFREDUCE_STREAMING_BYTES (8 MiB: above it, outputs use streaming stores).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hfreduce._api import Handle, finalize, group, init, wait_all
from hfreduce._api import shm_buffer as _shm_buffer
from hfreduce._bootstrap import StoreExchange, Topology
from hfreduce._C import cpu_features, kernel_isa
from hfreduce._collectives import all_to_all, allgather, gather, reduce_scatter, scatter
from hfreduce._collectives import broadcast as _broadcast_any
from hfreduce.errors import CollectiveTimeoutError, HFReduceError, MismatchError, PeerLostError, UsageError


def is_initialized() -> bool:
    """Whether :func:`init` has run in this process (and :func:`finalize` has not)."""
    from hfreduce import _api

    return _api._group is not None


def get_rank() -> int:
    """This process's rank in the job."""
    return group().topo.rank


def get_world_size() -> int:
    """Number of ranks in the job."""
    return group().topo.world_size


def get_local_rank() -> int:
    """This rank's index on its node."""
    return group().topo.local_rank


def get_local_world_size() -> int:
    """Number of ranks on this rank's node."""
    return group().topo.local_size


def get_num_nodes() -> int:
    """Number of nodes (groups of ranks sharing a segment)."""
    return group().topo.num_nodes


def get_timeout_s() -> float:
    """Seconds a collective waits for a peer before it fails (``init(timeout_s=)`` or ``HFREDUCE_TIMEOUT_S``)."""
    return float(group().settings["timeout_s"])


def allreduce(buf: Any, op: str = "sum", async_op: bool = False) -> Handle | None:
    """Sum (or average, ``op="avg"``) ``buf`` in place across all ranks; a :class:`Handle` if ``async_op``."""
    return group().submit("allreduce", buf, op, 0, async_op)


def broadcast(buf: Any, root: int = 0, async_op: bool = False) -> Handle | None:
    """Copy ``root``'s ``buf`` into every rank's ``buf`` (the allreduce machinery with only root contributing).

    Any dtype: other than float32/float16/bfloat16, the bytes travel as exact 16-bit words."""
    return _broadcast_any(buf, root, async_op)


def reduce(buf: Any, root: int = 0, op: str = "sum", async_op: bool = False) -> Handle | None:
    """Sum ``buf`` across ranks into ``root``'s ``buf``; other ranks' buffers are left as they were."""
    return group().submit("reduce", buf, op, root, async_op)


def barrier() -> None:
    """Block until every rank has called barrier (a one-element allreduce)."""
    group().submit("allreduce", np.zeros(1, np.float32), "sum", 0, False)


def _torch_dtype(dtype: Any) -> Any:
    mod = type(dtype).__module__
    return dtype if mod.startswith("torch") else None


def empty(shape: int | tuple[int, ...], dtype: Any = np.float32) -> Any:
    """An uninitialised array (numpy, or torch if ``dtype`` is a torch dtype) inside the node's shared segment."""
    shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(shape_t)
    tdt = _torch_dtype(dtype)
    if tdt is not None:
        import torch

        itemsize = torch.empty((), dtype=tdt).element_size()
        raw = _shm_buffer(n * itemsize)
        return torch.from_numpy(raw).view(tdt).view(shape_t)
    npdt = np.dtype(dtype)
    raw = _shm_buffer(n * npdt.itemsize)
    return raw.view(npdt).reshape(shape_t)


def zeros(shape: int | tuple[int, ...], dtype: Any = np.float32) -> Any:
    """Like :func:`empty`, filled with zeros (which also faults the pages in)."""
    out = empty(shape, dtype)
    out[...] = 0
    return out


def cuda_extension() -> Any:
    """The CUDA staging extension (``hfreduce._cuda``, used by HaiScale); ImportError where it is not built."""
    from hfreduce import _cuda

    return _cuda


def empty_like(x: Any) -> Any:
    """A shared-segment buffer of ``x``'s shape and dtype (torch tensor for torch input)."""
    return empty(tuple(x.shape), x.dtype)


__all__ = [
    "CollectiveTimeoutError",
    "HFReduceError",
    "Handle",
    "MismatchError",
    "PeerLostError",
    "StoreExchange",
    "Topology",
    "UsageError",
    "all_to_all",
    "allgather",
    "allreduce",
    "barrier",
    "broadcast",
    "cpu_features",
    "cuda_extension",
    "empty",
    "empty_like",
    "finalize",
    "gather",
    "get_local_rank",
    "get_local_world_size",
    "get_num_nodes",
    "get_rank",
    "get_timeout_s",
    "get_world_size",
    "init",
    "is_initialized",
    "kernel_isa",
    "reduce",
    "reduce_scatter",
    "scatter",
    "wait_all",
    "zeros",
]
