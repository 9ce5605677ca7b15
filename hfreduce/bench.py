"""Benchmark: HFReduce allreduce against Open MPI and torch gloo in one run, nccl-tests style.

``mpirun -np N python -m hfreduce.bench`` (or ``python -m hfreduce.bench --np N`` /
``haictl bench allreduce --np N``, which start mpirun themselves) sweeps sizes from ``--min-bytes``
to ``--max-bytes`` by ``--factor`` and times, per size, in one process group:

- ``hfr-shm``: HFReduce on buffers from :func:`hfreduce.zeros` (in the node's shared segment: zero-copy);
- ``hfr``: HFReduce on private numpy arrays (copy in, reduce, copy out);
- ``mpi``: ``MPI_Allreduce`` (in place) through mpi4py (float32 only: MPI has no 16-bit float type);
- ``gloo``: ``torch.distributed.all_reduce`` over the gloo backend.

``--op allgather|reduce_scatter|all_to_all|gather|scatter`` times that collective instead, the same
four ways (``hfreduce.<op>``, the MPI call, ``torch.distributed`` over gloo; float32 for MPI). Its
size is the whole buffer (the allgather/gather output, the reduce_scatter/scatter input, each rank's
all_to_all buffer); each rank's part is size/n, and busbw = algbw * (n-1)/n.

Each time is the slowest rank's for one iteration (a barrier precedes each), and the median over
iterations after warm-up is quoted; iteration counts adapt to ``--time-budget-s`` per cell.
algbw = bytes / time, busbw = algbw * 2(n-1)/n (nccl-tests' convention). The node's memory-copy
bandwidth (one core, numpy copy of a large buffer) is measured first as the physical ceiling.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import click
import numpy as np

from ffcommon.bench import Column, render_table

IMPLS = ["hfr-shm", "hfr", "mpi", "gloo"]
# --op: the collective to time. busbw factors are nccl-tests': 2(n-1)/n for allreduce, (n-1)/n for the rest.
OPS = ["allreduce", "allgather", "reduce_scatter", "all_to_all", "gather", "scatter"]
_RESULT_PREFIX = "HFREDUCE_BENCH "
_REF_BYTES = 64 << 20  # the size at which the summary quotes ratios
_PATTERN = 13  # reference data: rank r holds (i % 13) + r + 1, exact in bfloat16 for <= 8 ranks


def _under_mpirun() -> bool:
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))


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
        res = {
            "np": world,
            "nodes": topo.num_nodes,
            "local_world_size": topo.local_size,
            "dtype": dtype,
            "kernel_isa": hfreduce.kernel_isa(),
            "memcpy_gbps": ceiling,
            "memcpy_bytes": opts["memcpy_bytes"],
            "checked": opts["check"],
            "impls": impls,
            "rows": rows,
            "wall_s": time.perf_counter() - t_start,
            "load": list(os.getloadavg()),
        }
        print(table(res), flush=True)
        if opts["json"]:
            with open(opts["json"], "w") as f:
                json.dump(res, f, indent=1)
    comm.Barrier()
    return 0


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
        res = {
            "op": op,
            "np": world,
            "nodes": topo.num_nodes,
            "local_world_size": topo.local_size,
            "dtype": dtype,
            "kernel_isa": hfreduce.kernel_isa(),
            "memcpy_gbps": ceiling,
            "memcpy_bytes": opts["memcpy_bytes"],
            "checked": opts["check"],
            "impls": impls,
            "rows": rows,
            "wall_s": time.perf_counter() - t_start,
            "load": list(os.getloadavg()),
        }
        print(table(res), flush=True)
        if opts["json"]:
            with open(opts["json"], "w") as f:
                json.dump(res, f, indent=1)
    comm.Barrier()
    return 0


def _run_worker(opts: dict) -> int:
    """The worker, turning an exception on any rank into an abort of the whole job (no hung peers)."""
    try:
        for one in opts["ops"]:
            rc = (_worker if one == "allreduce" else _worker_op)({**opts, "op": one})
            if rc:
                return rc
        import torch.distributed as dist

        import hfreduce

        dist.destroy_process_group()
        hfreduce.finalize()
        return 0
    except SystemExit as exc:
        if exc.code:
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(int(exc.code) if isinstance(exc.code, int) else 1)
        raise
    except BaseException:
        import traceback

        from mpi4py import MPI

        traceback.print_exc()
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)
        raise


def _fmt_size(b: int) -> str:
    for unit, s in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= s and b % s == 0:
            return f"{b // s}{unit}"
    return str(b)


def _ratio(row: dict, a: str, b: str) -> str:
    if a in row and b in row and row[b]["busbw_gbps"] > 0:
        return f"{row[a]['busbw_gbps'] / row[b]['busbw_gbps']:.2f}"
    return "n/a"


def table(res: dict) -> str:
    """The nccl-tests-style table of a result dict (as written by ``--json``)."""
    impls = res["impls"]
    n = res["np"]
    peers = [p for p in ("mpi", "gloo") if p in impls]
    hfrs = [h for h in ("hfr-shm", "hfr") if h in impls]
    ratio_cols = [(h, p) for p in peers for h in hfrs]
    lines = [
        f"# HFReduce {res.get('op', 'allreduce')} benchmark: np={n}, {res['nodes']} node(s) x {res['local_world_size']} local ranks, "
        f"dtype {res['dtype']}, kernels {res['kernel_isa']}, check {'on' if res['checked'] else 'off'}",
        f"# memcpy ceiling (numpy copy, one core, {_fmt_size(res['memcpy_bytes'])}): {res['memcpy_gbps']:.2f} GB/s",
        "# time = median over iterations of the slowest rank (us); algbw = bytes/time; busbw = algbw*"
        + ("2(n-1)/n" if res.get("op", "allreduce") == "allreduce" else "(n-1)/n")
        + " (GB/s)",
        f"# load {res['load'][0]:.2f}; sweep took {res['wall_s']:.1f} s",
    ]
    lead = [Column("size", 10), Column("count", 11), Column("type", 9)]
    groups = [Column("", c.width) for c in lead] + [
        Column(f"---- {i} ----", 28, "^", gap="  ") for i in impls
    ]
    cols = list(lead)
    for _ in impls:
        cols += [
            Column("time(us)", 10, fmt=".1f", gap="  "),
            Column("algbw", 9, fmt=".3f"),
            Column("busbw", 9, fmt=".3f"),
        ]
    cols += [Column(f"{h}/{p}", 14) for h, p in ratio_cols]
    rows = []
    for row in res["rows"]:
        cells = [row["bytes"], row["count"], row["dtype"]]
        for impl in impls:
            c = row[impl]
            cells += [c["time_us"], c["algbw_gbps"], c["busbw_gbps"]]
        rows.append(cells + [_ratio(row, h, p) for h, p in ratio_cols])
    lines += render_table(groups, [])
    lines += render_table(cols, rows)
    ref = [r for r in res["rows"] if r["bytes"] <= _REF_BYTES]
    if ref and hfrs:
        r = ref[-1]
        parts = [
            f"# at {_fmt_size(r['bytes'])}: busbw "
            + ", ".join(f"{i} {r[i]['busbw_gbps']:.2f}" for i in impls)
        ]
        for h in hfrs:
            vs = [f"{h}/{p} {_ratio(r, h, p)}" for p in peers]
            vs.append(
                f"{h}/memcpy {r[h]['busbw_gbps'] / res['memcpy_gbps']:.2f}" if res["memcpy_gbps"] else ""
            )
            parts.append("#   " + ", ".join(v for v in vs if v))
        lines += parts
    return "\n".join(lines)


def _mpirun_argv(np_: int) -> list[str]:
    argv = ["mpirun", "-np", str(np_), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    argv += ["--mca", "btl", "self,vader,tcp", "--mca", "btl_vader_single_copy_mechanism", "none"]
    for var in ("HFREDUCE_LOCAL_WORLD_SIZE", "PYTHONPATH"):
        argv += ["-x", var]
    return argv


@click.command("allreduce")
@click.option(
    "--np", "np_", default=2, show_default=True, help="Ranks to start under mpirun (ignored under mpirun)."
)
@click.option(
    "--local-world-size",
    type=int,
    default=None,
    help="Ranks per 'node' (sets HFREDUCE_LOCAL_WORLD_SIZE: several nodes on one machine).",
)
@click.option(
    "--op",
    default="allreduce",
    show_default=True,
    help=f"The collective(s) to time, comma-separated, each against MPI and gloo in the same run: {', '.join(OPS)}.",
)
@click.option("--min-bytes", default="1K", show_default=True, help="Smallest size (suffix K, M, G allowed).")
@click.option("--max-bytes", default="256M", show_default=True, help="Largest size.")
@click.option("--factor", default=2, show_default=True, help="Multiply the size by this between rows.")
@click.option(
    "--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True
)
@click.option(
    "--check", is_flag=True, help="Verify every result against a reference sum; exit 1 on a mismatch."
)
@click.option("--json", "json_path", default=None, help="Also write the results as JSON to this file.")
@click.option("--iters", default=0, help="Fixed timed iterations per cell (0: adaptive).")
@click.option("--warmup", default=2, show_default=True, help="Untimed iterations per cell before timing.")
@click.option("--time-budget-s", default=0.12, show_default=True, help="Adaptive: timed seconds per cell.")
@click.option("--min-iters", default=5, show_default=True, help="Adaptive: at least this many iterations.")
@click.option("--max-iters", default=200, show_default=True, help="Adaptive: at most this many iterations.")
@click.option(
    "--impls",
    default=",".join(IMPLS),
    show_default=True,
    help="Comma-separated subset of the implementations to time.",
)
@click.option("--memcpy-mb", default=256, show_default=True, help="Buffer size of the memcpy ceiling (MiB).")
@click.option("--progress", is_flag=True, help="Print a line per finished size to stderr.")
def click_command(
    np_,
    local_world_size,
    op,
    min_bytes,
    max_bytes,
    factor,
    dtype,
    check,
    json_path,
    iters,
    warmup,
    time_budget_s,
    min_iters,
    max_iters,
    impls,
    memcpy_mb,
    progress,
) -> None:
    """HFReduce (shared-segment and private buffers) vs MPI vs gloo, one collective (--op): size/count/time/algbw/busbw.

    \b
    Example:
      haictl bench allreduce --np 2
      python -m hfreduce.bench --np 4 --local-world-size 2 --max-bytes 64M
      mpirun -np 2 python -m hfreduce.bench --min-bytes 4K --max-bytes 1M --check --json out.json
      python -m hfreduce.bench --np 2 --op allgather --max-bytes 16M --check
    """
    ops = op.split(",")
    if set(ops) - set(OPS):
        raise click.UsageError(f"--op: unknown {sorted(set(ops) - set(OPS))}; choose from {OPS}")
    if len(ops) > 1 and json_path:
        raise click.UsageError("--json takes one --op at a time")
    unknown = set(impls.split(",")) - set(IMPLS)
    if unknown:
        raise click.UsageError(f"--impls: unknown {sorted(unknown)}; choose from {IMPLS}")
    if factor < 2:
        raise click.UsageError("--factor must be at least 2")
    opts = {
        "op": op,
        "ops": ops,
        "min_bytes": _parse_bytes(min_bytes),
        "max_bytes": _parse_bytes(max_bytes),
        "factor": factor,
        "dtype": dtype,
        "check": check,
        "json": os.path.abspath(json_path) if json_path else None,
        "iters": iters,
        "warmup": warmup,
        "time_budget_s": time_budget_s,
        "min_iters": min_iters,
        "max_iters": max_iters,
        "impls": impls.split(","),
        "memcpy_bytes": memcpy_mb << 20,
        "progress": progress,
    }
    if _under_mpirun():
        sys.exit(_run_worker(opts))
    if shutil.which("mpirun") is None:
        raise click.ClickException("mpirun not found (apt-get install openmpi-bin)")
    env = dict(os.environ)
    if local_world_size is not None:
        env["HFREDUCE_LOCAL_WORLD_SIZE"] = str(local_world_size)
    else:
        env.setdefault("HFREDUCE_LOCAL_WORLD_SIZE", "")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    argv = _mpirun_argv(np_) + [sys.executable, "-m", "hfreduce.bench"] + _forwarded_args(opts, json_path)
    proc = subprocess.run(argv, env=env)
    if proc.returncode != 0:
        raise click.ClickException(f"benchmark ranks failed (mpirun exit status {proc.returncode})")


def _forwarded_args(opts: dict, json_path: str | None) -> list[str]:
    args = [
        "--op", opts["op"], "--min-bytes", str(opts["min_bytes"]), "--max-bytes", str(opts["max_bytes"]),
        "--factor", str(opts["factor"]), "--dtype", opts["dtype"], "--iters", str(opts["iters"]),
        "--warmup", str(opts["warmup"]), "--time-budget-s", str(opts["time_budget_s"]),
        "--min-iters", str(opts["min_iters"]), "--max-iters", str(opts["max_iters"]),
        "--impls", ",".join(opts["impls"]), "--memcpy-mb", str(opts["memcpy_bytes"] >> 20),
    ]  # fmt: skip
    if opts["check"]:
        args.append("--check")
    if opts["progress"]:
        args.append("--progress")
    if json_path:
        args += ["--json", opts["json"]]
    return args


def _parse_bytes(s: str) -> int:
    s = s.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        return int(float(s[:-1] if mult > 1 else s) * mult)
    except ValueError as exc:
        raise click.BadParameter(f"{s!r} is not a size (e.g. 4096, 64K, 256M)") from exc


if __name__ == "__main__":
    click_command()
