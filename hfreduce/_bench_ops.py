"""The ``--op`` sweep on every rank: one composite collective timed as hfreduce, MPI and gloo calls.

One of the two rank-side sweeps ``hfreduce.bench`` runs (the other, allreduce, is ``_bench_allreduce``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import numpy as np

from hfreduce._bench_rank import _PATTERN, IMPLS, _init_gloo, _quiet_wait, _sizes, memcpy_gbps
from hfreduce._bench_report import emit_result


class _OpBuffers:
    """Input/output buffers of one composite collective for each implementation, with reference values."""

    def __init__(self, op: str, dtype: str, count: int, rank: int, world: int) -> None:
        import torch

        import hfreduce

        self.op, self.rank, self.world, self.count = op, rank, world, count
        k = count // world
        sizes = {  # (input elements, output elements)
            "allgather": (k, count),
            "reduce_scatter": (count, k),
            "all_to_all": (count, count),
            "gather": (k, count),
            "scatter": (count, k),
        }[op]
        tdt = getattr(torch, dtype)
        self.bufs: dict[str, tuple[Any, Any]] = {}
        for impl in IMPLS:
            if impl == "hfr-shm":
                pair = tuple(hfreduce.zeros(n, tdt) for n in sizes)
            else:
                pair = tuple(torch.zeros(n, dtype=tdt) for n in sizes)
            self.bufs[impl] = pair
        n_in = sizes[0]
        base = torch.arange(n_in, dtype=torch.int64) % _PATTERN
        self.pattern = (base + rank + 1).to(tdt)
        if op == "scatter":  # only the root's input matters: every rank fills the root's values
            self.pattern = (base + 1).to(tdt)
        self.k = k

    def fill(self, impl: str) -> None:
        self.bufs[impl][0].copy_(self.pattern)

    def expected(self) -> Any:
        import torch

        k, w, me = self.k, self.world, self.rank
        i = torch.arange(k, dtype=torch.int64)
        if self.op in ("allgather", "gather"):
            return torch.cat([(i % _PATTERN) + r + 1 for r in range(w)]).float()
        if self.op == "reduce_scatter":
            return (((me * k + i) % _PATTERN) * w + w * (w + 1) // 2).float()
        if self.op == "all_to_all":
            return torch.cat([((me * k + i) % _PATTERN) + r + 1 for r in range(w)]).float()
        return (((me * k + i) % _PATTERN) + 1).float()  # scatter from rank 0

    def verify(self, impl: str) -> str | None:
        out = self.bufs[impl][1]
        if self.op == "gather" and self.rank != 0:
            return None
        got, want = out.float(), self.expected()
        bad = (got != want).nonzero().flatten()
        if bad.numel() == 0:
            return None
        j = int(bad[0])
        return f"{bad.numel()} of {got.numel()} elements wrong; first at {j}: got {float(got[j])}, want {float(want[j])}"


def _run_op(impl: str, op: str, inp: Any, out: Any, comm: Any, rank: int, world: int) -> None:
    """One ``op`` (rooted ones at rank 0) with implementation ``impl``."""
    import torch.distributed as dist
    from mpi4py import MPI

    import hfreduce

    if impl in ("hfr-shm", "hfr"):
        if op == "allgather":
            hfreduce.allgather(out, inp)
        elif op == "reduce_scatter":
            hfreduce.reduce_scatter(out, inp)
        elif op == "all_to_all":
            hfreduce.all_to_all(out, inp)
        elif op == "gather":
            hfreduce.gather(inp, out if rank == 0 else None, root=0)
        else:
            hfreduce.scatter(out, inp if rank == 0 else None, root=0)
    elif impl == "mpi":
        a, b = inp.numpy(), out.numpy()
        if op == "allgather":
            comm.Allgather(a, b)
        elif op == "reduce_scatter":
            comm.Reduce_scatter_block(a, b, op=MPI.SUM)
        elif op == "all_to_all":
            comm.Alltoall(a, b)
        elif op == "gather":
            comm.Gather(a, b if rank == 0 else None, root=0)
        else:
            comm.Scatter(a if rank == 0 else None, b, root=0)
    else:
        if op == "allgather":
            dist.all_gather_into_tensor(out, inp)
        elif op == "reduce_scatter":
            dist.reduce_scatter(out, list(inp.chunk(world)))
        elif op == "all_to_all":
            dist.all_to_all_single(out, inp)
        elif op == "gather":
            dist.gather(inp, list(out.chunk(world)) if rank == 0 else None, dst=0)
        else:
            dist.scatter(out, list(inp.chunk(world)) if rank == 0 else None, src=0)


def _worker_op(opts: dict) -> int:
    """``--op``: time one composite collective for each implementation, size by size."""
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    import hfreduce

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    op, dtype = opts["op"], opts["dtype"]
    itemsize = 4 if dtype == "float32" else 2
    sizes = [b for b in _sizes(opts["min_bytes"], opts["max_bytes"], opts["factor"], itemsize * world)]
    if not sizes:
        raise click.UsageError(f"no size between --min-bytes and --max-bytes holds {world} parts of {dtype}")
    ceiling = memcpy_gbps(max(opts["memcpy_bytes"], 1 << 20)) if rank == 0 else 0.0
    _quiet_wait(comm)
    topo = hfreduce.init()
    if not dist.is_initialized():
        _init_gloo(comm, rank, world)
    impls = [i for i in IMPLS if not (i == "mpi" and dtype != "float32") and i in opts["impls"]]
    rows = []
    t_start = time.perf_counter()
    for nbytes in sizes:
        count = nbytes // itemsize
        bufs = _OpBuffers(op, dtype, count, rank, world)
        row: dict[str, Any] = {"bytes": nbytes, "count": count, "dtype": dtype}
        for impl in impls:
            inp, out = bufs.bufs[impl]

            def one(
                impl: str = impl,
                inp: Any = inp,
                out: Any = out,
                bufs: _OpBuffers = bufs,
                nbytes: int = nbytes,
            ) -> float:
                if opts["check"]:
                    bufs.fill(impl)
                comm.Barrier()
                t0 = time.perf_counter()
                _run_op(impl, op, inp, out, comm, rank, world)
                dt = time.perf_counter() - t0
                if opts["check"]:
                    errs = [(r, e) for r, e in enumerate(comm.allgather(bufs.verify(impl))) if e]
                    if errs:
                        if rank == 0:
                            for r, e in errs:
                                print(
                                    f"CHECK FAILED: {op} {impl} {nbytes} bytes: rank {r}: {e}",
                                    file=sys.stderr,
                                )
                        raise SystemExit(1)
                return dt

            if not opts["check"]:
                bufs.fill(impl)
            warm = [one() for _ in range(opts["warmup"])]
            est = comm.allreduce(min(warm) if warm else 0.0, op=MPI.MAX)
            iters = opts["iters"] or max(
                opts["min_iters"], min(opts["max_iters"], int(opts["time_budget_s"] / max(est, 1e-6)))
            )
            ts = np.array([one() for _ in range(iters)])
            slowest = np.empty_like(ts)
            comm.Allreduce(ts, slowest, op=MPI.MAX)
            t = float(np.median(slowest))
            algbw = nbytes / t / 1e9
            row[impl] = {
                "time_us": t * 1e6,
                "min_us": float(slowest.min()) * 1e6,
                "iters": iters,
                "algbw_gbps": algbw,
                "busbw_gbps": algbw * (world - 1) / world,
            }
        rows.append(row)
        if rank == 0 and opts["progress"]:
            print(
                f"# {nbytes} bytes done ({time.perf_counter() - t_start:.1f} s)", file=sys.stderr, flush=True
            )
    if rank == 0:
        emit_result(
            {"op": op, "np": world, "nodes": topo.num_nodes, "local_world_size": topo.local_size},
            dtype,
            ceiling,
            impls,
            rows,
            t_start,
            opts,
        )
    comm.Barrier()
    return 0
