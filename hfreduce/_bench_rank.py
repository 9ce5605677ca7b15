"""Rank-side plumbing shared by both benchmark sweeps: the implementations, sizes, memcpy ceiling, gloo setup.

Kept apart from ``hfreduce.bench`` (the CLI) so the allreduce and ``--op`` sweeps import it without the command.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any

import numpy as np

IMPLS = ["hfr-shm", "hfr", "mpi", "gloo"]
# --op: the collective to time. busbw factors are nccl-tests': 2(n-1)/n for allreduce, (n-1)/n for the rest.
OPS = ["allreduce", "allgather", "reduce_scatter", "all_to_all", "gather", "scatter"]
_PATTERN = 13  # reference data: rank r holds (i % 13) + r + 1, exact in bfloat16 for <= 8 ranks


def _sizes(min_bytes: int, max_bytes: int, factor: int, itemsize: int) -> list[int]:
    out, b = [], max(min_bytes, itemsize)
    while b <= max_bytes:
        out.append(b // itemsize * itemsize)
        b *= factor
    return out


def memcpy_gbps(nbytes: int = 256 << 20, reps: int = 5) -> float:
    """One core's copy bandwidth: median GB/s (bytes copied / time) of ``np.copyto`` between two buffers."""
    src = np.ones(nbytes, np.uint8)
    dst = np.zeros(nbytes, np.uint8)
    np.copyto(dst, src)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        ts.append(time.perf_counter() - t0)
    return nbytes / statistics.median(ts) / 1e9


def _init_gloo(comm: Any, rank: int, world: int) -> None:
    import torch.distributed as dist

    from ffcommon.ports import free_port

    hosts = comm.allgather(socket.gethostname())
    if rank == 0:
        addr = os.environ.get("MASTER_ADDR") or (
            "127.0.0.1" if len(set(hosts)) == 1 else socket.gethostbyname(socket.gethostname())
        )
        port = int(os.environ["MASTER_PORT"]) if os.environ.get("MASTER_PORT") else free_port()
        ep = (addr, port)
    else:
        ep = None
    addr, port = comm.bcast(ep, root=0)
    dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=rank, world_size=world)


def _quiet_wait(comm: Any) -> None:
    """A barrier that sleeps instead of spinning (so a rank measuring memcpy has the machine)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.001)
