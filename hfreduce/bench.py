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

This module is the command and the mpirun launch; each rank runs ``_bench_allreduce`` or ``_bench_ops``
(over ``_bench_rank``), and ``_bench_report`` renders the table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import click

from hfreduce._bench_allreduce import _worker
from hfreduce._bench_ops import _worker_op
from hfreduce._bench_rank import IMPLS, OPS, memcpy_gbps
from hfreduce._bench_report import table

__all__ = ["IMPLS", "OPS", "click_command", "memcpy_gbps", "table"]

_RESULT_PREFIX = "HFREDUCE_BENCH "


def _under_mpirun() -> bool:
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))


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
