"""The allreduce sweep on every rank: buffers with reference data, timing per size and implementation.

One of the two rank-side sweeps ``hfreduce.bench`` runs (the other, ``--op``, is ``_bench_ops``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import numpy as np

from hfreduce._bench_rank import _PATTERN, IMPLS, _init_gloo, _quiet_wait, _sizes, memcpy_gbps
from hfreduce._bench_report import emit_result


class _Buffers:
    """Per-rank buffers of the largest size, viewed per size: private (numpy or torch), shared, reference."""

    def __init__(self, dtype: str, max_count: int, rank: int, world: int, check: bool) -> None:
        import torch

        import hfreduce

        self.dtype, self.rank, self.world = dtype, rank, world
        self.torch_dtype = getattr(torch, dtype)
        if dtype == "bfloat16":  # numpy has no bfloat16: torch tensors stand in for the private arrays
            self.private: Any = torch.zeros(max_count, dtype=torch.bfloat16)
            self.shm: Any = hfreduce.zeros(max_count, torch.bfloat16)
        else:
            self.private = np.zeros(max_count, np.dtype(dtype))
            self.shm = hfreduce.zeros(max_count, np.dtype(dtype))
        self.pattern: np.ndarray | None = None
        self.expected: np.ndarray | None = None
        if check:
            base = (np.arange(max_count, dtype=np.int64) % _PATTERN).astype(np.float32)
            self.pattern = base + (rank + 1)
            self.expected = base * world + world * (world + 1) / 2

    def view(self, impl: str, count: int) -> Any:
        """The buffer ``impl`` reduces for ``count`` elements (gloo gets a torch view of the private one)."""
        import torch

        buf = self.shm if impl == "hfr-shm" else self.private
        buf = buf[:count]
        if impl == "gloo" and isinstance(buf, np.ndarray):
            buf = torch.from_numpy(buf)
        return buf

    def fill(self, buf: Any, count: int) -> None:
        assert self.pattern is not None
        src = self.pattern[:count]
        if isinstance(buf, np.ndarray):
            buf[...] = src
        else:
            import torch

            buf.copy_(torch.from_numpy(src))

    def verify(self, buf: Any, count: int) -> str | None:
        """None if ``buf`` holds the reference sum, else a description of the first wrong element."""
        assert self.expected is not None
        got = buf.astype(np.float32) if isinstance(buf, np.ndarray) else buf.float().numpy()
        want = self.expected[:count]
        bad = np.flatnonzero(got != want)
        if bad.size == 0:
            return None
        i = int(bad[0])
        return f"{bad.size} of {count} elements wrong; first at index {i}: got {got[i]!r}, want {want[i]!r}"


def _worker(opts: dict) -> int:
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    import hfreduce

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    dtype = opts["dtype"]
    itemsize = 4 if dtype == "float32" else 2
    sizes = _sizes(opts["min_bytes"], opts["max_bytes"], opts["factor"], itemsize)
    if not sizes:
        raise click.UsageError(
            f"no size between --min-bytes {opts['min_bytes']} and --max-bytes {opts['max_bytes']}"
        )
    ceiling = 0.0
    if rank == 0:
        ceiling = memcpy_gbps(max(opts["memcpy_bytes"], 1 << 20))
    _quiet_wait(comm)
    topo = hfreduce.init()
    if not dist.is_initialized():
        _init_gloo(comm, rank, world)
    bufs = _Buffers(dtype, sizes[-1] // itemsize, rank, world, opts["check"])
    impls = [i for i in IMPLS if not (i == "mpi" and dtype != "float32")]
    impls = [i for i in impls if i in opts["impls"]]

    def run(impl: str, buf: Any) -> None:
        if impl in ("hfr-shm", "hfr"):
            hfreduce.allreduce(buf)
        elif impl == "mpi":
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        else:
            dist.all_reduce(buf)

    def one(impl: str, buf: Any, count: int) -> float:
        if opts["check"]:
            bufs.fill(buf, count)
        comm.Barrier()
        t0 = time.perf_counter()
        run(impl, buf)
        dt = time.perf_counter() - t0
        if opts["check"]:
            err = bufs.verify(buf, count)
            errs = comm.allgather(err)
            bad = [(r, e) for r, e in enumerate(errs) if e]
            if bad:
                if rank == 0:
                    for r, e in bad:
                        print(
                            f"CHECK FAILED: {impl} {count * itemsize} bytes {dtype}: rank {r}: {e}",
                            file=sys.stderr,
                            flush=True,
                        )
                raise SystemExit(1)
        return dt

    rows = []
    t_start = time.perf_counter()
    for nbytes in sizes:
        count = nbytes // itemsize
        row: dict[str, Any] = {"bytes": nbytes, "count": count, "dtype": dtype}
        for impl in impls:
            buf = bufs.view(impl, count)
            warm = [one(impl, buf, count) for _ in range(opts["warmup"])]
            est = comm.allreduce(min(warm) if warm else 0.0, op=MPI.MAX)
            if opts["iters"]:
                iters = opts["iters"]
            else:
                iters = int(opts["time_budget_s"] / max(est, 1e-6))
                iters = max(opts["min_iters"], min(opts["max_iters"], iters))
            ts = np.array([one(impl, buf, count) for _ in range(iters)])
            slowest = np.empty_like(ts)
            comm.Allreduce(ts, slowest, op=MPI.MAX)  # each iteration lasts as long as its slowest rank
            ts = slowest
            t = float(np.median(ts))
            algbw = nbytes / t / 1e9
            row[impl] = {
                "time_us": t * 1e6,
                "min_us": float(ts.min()) * 1e6,
                "iters": iters,
                "algbw_gbps": algbw,
                "busbw_gbps": algbw * 2 * (world - 1) / world,
            }
        rows.append(row)
        if rank == 0 and opts["progress"]:
            print(
                f"# {nbytes} bytes done ({time.perf_counter() - t_start:.1f} s)", file=sys.stderr, flush=True
            )
    if rank == 0:
        emit_result(
            {"np": world, "nodes": topo.num_nodes, "local_world_size": topo.local_size},
            dtype,
            ceiling,
            impls,
            rows,
            t_start,
            opts,
        )
    comm.Barrier()
    return 0
